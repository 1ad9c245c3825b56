"""Gradient rules: how an op's definition says which ops compute its input gradients.

An op declares its rule next to its forward definition, as Caffe2's gradient makers did:

    @op("Relu", ..., grad=lambda g: [g.op("ReluGradient", [g.O(0), g.GO(0)], [g.GI(0)])])

The rule gets a `GradientContext` `g` for one forward OperatorDef and returns the gradient
OperatorDefs. Names follow Caffe2: `g.I(i)`/`g.O(i)` are the forward op's input/output
names, `g.GO(i)` the gradient flowing into output i (given by the backward pass; an error
when none does), and `g.GI(i)` names input i's gradient `<input>_grad` and records that the
rule produces it. `g.pass_GI(i, name)` hands an existing blob on as input i's gradient
(Caffe2's Add/Sum pass their output gradient through unchanged).

`g.op(type, inputs, outputs, **args)` builds one gradient op as Caffe2's GradientMakerBase
did: the forward op's device option and engine are copied, its arguments are appended after
the rule's own (so ConvGradient sees kernel/pads/strides; an argument the rule sets itself
replaces the forward one; pass `copy_args=False` to copy none), and the op is marked
`is_gradient_op`.

`NO_GRADIENT` marks ops no gradient flows through (StopGradient, fills, comparisons, Iter):
they stop the backward pass silently. An op with no rule at all is an error if the backward
pass reaches it with a gradient.
"""
from __future__ import annotations

from typing import Sequence

from c2compile import utils
from c2compile.core import GradientSlice
from c2compile.errors import GradientError
from c2compile.ops.schema import get_op, parse_args
from c2compile.proto import caffe2_pb2


class _NoGradient:
    def __repr__(self) -> str:
        return "NO_GRADIENT"


NO_GRADIENT = _NoGradient()


class GradientContext:
    """What a gradient rule sees of one forward op (the `g` of the module docstring)."""

    def __init__(self, proto: caffe2_pb2.OperatorDef, g_output: Sequence, index=None):
        self.proto = proto
        self.type = proto.type
        self.index = index
        self.opdef = get_op(proto.type, index=index, name=proto.name)
        self.args, self.given, _ = parse_args(self.opdef, proto.arg, self._where())
        if len(g_output) != len(proto.output):
            raise GradientError(f"got {len(g_output)} output gradients for "
                                f"{len(proto.output)} outputs", **self._where())
        self.g_output = list(g_output)
        self.g_input: list = [None] * len(proto.input)

    def _where(self) -> dict:
        return dict(index=self.index, op_type=self.proto.type, name=self.proto.name)

    def fail(self, message: str, blob: str | None = None):
        raise GradientError(message, blob=blob, **self._where())

    # -- names
    @property
    def num_inputs(self) -> int:
        return len(self.proto.input)

    @property
    def num_outputs(self) -> int:
        return len(self.proto.output)

    def has(self, name: str) -> bool:
        """Whether the forward op set argument `name`."""
        return name in self.given

    def I(self, i: int) -> str:  # noqa: E743 - Caffe2's name
        return self.proto.input[i]

    def O(self, i: int) -> str:  # noqa: E741,E743
        return self.proto.output[i]

    def has_GO(self, i: int) -> bool:
        return self.g_output[i] is not None

    def GO(self, i: int) -> str:
        g = self.g_output[i]
        if g is None:
            self.fail(f"needs the gradient of output {i} '{self.O(i)}', but none flows into "
                      "it (is the output used by the loss?)", blob=self.O(i))
        if isinstance(g, GradientSlice):
            self.fail(f"the gradient of output '{self.O(i)}' is sparse; this op takes dense "
                      "gradients only", blob=self.O(i))
        return str(g)

    def GI(self, i: int) -> str:
        """Name input i's gradient `<input>_grad` and record that the rule computes it."""
        self.g_input[i] = self.I(i) + "_grad"
        return self.g_input[i]

    def pass_GI(self, i: int, name: str) -> str:
        """Input i's gradient is the existing blob `name` (no op computes it)."""
        self.g_input[i] = name
        return name

    # -- building ops
    def op(self, type_: str, inputs: Sequence[str], outputs: Sequence[str], *,
           copy_args: bool = True, **args) -> caffe2_pb2.OperatorDef:
        g = caffe2_pb2.OperatorDef()
        g.type = type_
        g.name = ""  # set, as Caffe2's gradient makers leave it
        g.input.extend(str(i) for i in inputs)
        g.output.extend(str(o) for o in outputs)
        for k, v in args.items():
            g.arg.add().CopyFrom(utils.MakeArgument(k, v))
        if copy_args:  # the rule's own value wins over a forward argument of the same name
            g.arg.extend(a for a in self.proto.arg if a.name not in args)
        if self.proto.HasField("device_option"):
            g.device_option.CopyFrom(self.proto.device_option)
        if self.proto.engine:
            g.engine = self.proto.engine
        g.is_gradient_op = True
        return g


def gradient_for_op(proto, g_output: Sequence, index=None, python_rules=None):
    """(gradient OperatorDefs, input gradients) of one forward op, as Caffe2's
    GradientRegistry.GetGradientForOp returns them: `g_input[i]` is input i's gradient
    name (or GradientSlice), None where no gradient flows to that input.

    `python_rules` ({op type: f(op, g_output) -> (ops, g_input)}, core.GradientRegistry's
    RegisterGradient) serve op types that have no built-in rule, as in Caffe2."""
    rule = get_op(proto.type, index=index, name=proto.name).grad
    if rule is None and python_rules and proto.type in python_rules:
        ops, g_input = python_rules[proto.type](proto, g_output)
        return ([] if ops is None else ops if isinstance(ops, list) else [ops]), list(g_input)
    g = GradientContext(proto, g_output, index)
    if rule is NO_GRADIENT:
        return [], [None] * len(proto.input)
    if rule is None:
        g.fail(f"{proto.type} has no gradient rule, so no gradient can flow back through it "
               f"to {list(proto.input)} (wrap what should not get a gradient in StopGradient)")
    ops = rule(g) or []
    return list(ops), g.g_input
