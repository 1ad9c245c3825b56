"""Run or shape-infer one op by type, for op tests: `run("Relu", [x])`.

Both go through the same binding (argument parsing, arity and in-place checks) and the
same executor entry as a real net. `run` also checks that the op's shape rule predicts
exactly the shapes and dtypes its reference returned.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from c2compile.ops.schema import TensorType, bind
from c2compile.runtime import reference


def make_op(op_type: str, inputs, outputs, device_option=None, **args):
    """An OperatorDef; `inputs`/`outputs` are a count (auto-named) or a list of names."""
    from c2compile import core
    in_names = [f"in{i}" for i in range(inputs)] if isinstance(inputs, int) else list(inputs)
    out_names = [f"out{i}" for i in range(outputs)] if isinstance(outputs, int) else list(outputs)
    return core.CreateOperator(op_type, in_names, out_names, device_option=device_option, **args)


def run(op_type: str, inputs: Sequence, outputs=1, device_option=None, check_infer=True,
        input_names=None, **args) -> list:
    """Outputs of op `op_type` on `inputs` (arrays, in order) with keyword `args`.

    `input_names`/`outputs` as lists of names make in-place forms (same name in and out).
    """
    proto = make_op(op_type, input_names or len(inputs), outputs, device_option, **args)
    op = bind(proto, 0)
    return reference.run_op(op, [np.asarray(x) if isinstance(x, (list, float, int)) else x
                                 for x in inputs], check_infer=check_infer)


def infer(op_type: str, types: Sequence[TensorType], outputs=1, **args) -> list[TensorType]:
    """The shape rule's answer for inputs of the given TensorTypes."""
    op = bind(make_op(op_type, len(types), outputs, **args), 0)
    return op.opdef.infer(op, *types)
