"""Fusion: an activation folded into the op that produces its input.

    Conv -> y, Relu(y) -> z     becomes     Conv with a Relu epilogue -> z

The producer's kernel applies max(., 0) to its output while that output is still in cache,
and the Relu's separate pass over memory (a read and a write of the whole tensor) goes away.
This is only allowed when nobody can see the value the Relu consumed:

* no other op reads it (the Relu is its only reader), and
* it is never published: either the Relu works in place (`Relu(y) -> y`: the pre-activation
  version is overwritten anyway, as brew's LeNet and MLP write it), or the blob is private to
  the net (`private`: a Predictor or `c2compile.compile` publishes only the net's outputs,
  while `workspace.RunNet` keeps Caffe2's rule that every blob a net writes can be fetched).

The pass works on the op list of one compiled segment, in order; what the backend can fold is
its business (`can_fold(op, activation)`).
"""
from __future__ import annotations

from typing import Callable, Iterable

from c2compile.ops.schema import BoundOp

ACTIVATIONS = ("Relu",)


def fold_activations(ops: list[BoundOp], private: Iterable[str],
                     can_fold: Callable[[BoundOp, str], bool]) -> dict[int, int]:
    """{position of a producer in `ops`: position of the activation it absorbs}."""
    private = set(private)
    last_writer: dict[str, int] = {}       # blob -> position of the op that wrote it last
    readers: dict[tuple[str, int], list[int]] = {}  # (blob, writer position) -> reader positions
    source: dict[int, int] = {}            # activation position -> its input's writer
    for j, op in enumerate(ops):
        for blob in op.inputs:
            readers.setdefault((blob, last_writer.get(blob, -1)), []).append(j)
        if op.type in ACTIVATIONS and len(op.inputs) == 1 and op.inputs[0] in last_writer:
            source[j] = last_writer[op.inputs[0]]
        for blob in op.outputs:
            last_writer[blob] = j
    final = {(blob, i) for blob, i in last_writer.items()}
    folded: dict[int, int] = {}
    for j, i in source.items():
        op, blob = ops[j], ops[j].inputs[0]
        if i in folded or len(ops[i].outputs) != 1:
            continue
        if readers.get((blob, i)) != [j]:
            continue  # another op reads the pre-activation value
        if (blob, i) in final and blob not in private:
            continue  # the pre-activation value is what the workspace will show
        if can_fold(ops[i], op.type):
            folded[i] = j
    return folded
