"""Fusion: an activation folded into the op that produces its input.

    Conv -> y, Relu(y) -> z     becomes     Conv with a Relu epilogue -> z

The producer's kernel applies max(., 0) to its output while that output is still in cache,
and the Relu's separate pass over memory (a read of the whole tensor) goes away. Where
nobody can see the value the Relu consumed, that value is never written at all:

* no other op reads it (the Relu is its only reader), and
* it is never published: either the Relu works in place (`Relu(y) -> y`: the pre-activation
  version is overwritten anyway, as brew's LeNet and MLP write it), or the blob is private to
  the net (`private`: a Predictor or `c2compile.compile` publishes only the net's outputs).

Otherwise the fold keeps it (`keep`): the kernel writes y and, from the same chunk while
it is in cache, z = max(y, 0) into a second output. That is how `workspace.RunNet`, which
keeps Caffe2's rule that every blob a net writes can be fetched, still folds SqueezeNet's
`Relu(conv) -> conv_o`, and how a pre-activation that another op reads is folded.

The pass works on the op list of one compiled segment, in order; what the backend can fold is
its business (`can_fold(op, activation)`).
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

from c2compile.ops.schema import BoundOp

ACTIVATIONS = ("Relu",)


class Fold(NamedTuple):
    activation: int  # position in the op list of the activation a producer absorbs
    keep: bool       # the producer's own output is still written (someone sees it)


def fold_activations(ops: list[BoundOp], private: Iterable[str],
                     can_fold: Callable[[BoundOp, str], bool]) -> dict[int, Fold]:
    """{position of a producer in `ops`: the activation it absorbs}."""
    private = set(private)
    touched: dict[str, list[int]] = {}     # blob -> positions of the ops that read or write it
    last_writer: dict[str, int] = {}       # blob -> position of the op that wrote it last
    readers: dict[tuple[str, int], list[int]] = {}  # (blob, writer position) -> reader positions
    source: dict[int, int] = {}            # activation position -> its input's writer
    for j, op in enumerate(ops):
        for blob in {*op.inputs, *op.outputs}:
            touched.setdefault(blob, []).append(j)
        for blob in op.inputs:
            readers.setdefault((blob, last_writer.get(blob, -1)), []).append(j)
        if op.type in ACTIVATIONS and len(op.inputs) == 1 and op.inputs[0] in last_writer:
            source[j] = last_writer[op.inputs[0]]
        for blob in op.outputs:
            last_writer[blob] = j
    final = {(blob, i) for blob, i in last_writer.items()}
    folded: dict[int, Fold] = {}
    for j, i in source.items():
        op, blob = ops[j], ops[j].inputs[0]
        if i in folded or len(ops[i].outputs) != 1 or not can_fold(ops[i], op.type):
            continue
        if any(i < k < j for k in touched[op.outputs[0]]):
            # the activation's output is written at the producer's place: nobody in
            # between may read or write that blob (with an in-place Relu, that is any
            # other reader of the pre-activation value)
            continue
        seen = (readers.get((blob, i)) != [j]  # another op reads the pre-activation value
                or (blob, i) in final and blob not in private)  # the workspace shows it
        folded[i] = Fold(j, keep=seen)
    return folded
