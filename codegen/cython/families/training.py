"""Training kernels (template: training.pyx.j2): Iter, Dropout and LearningRate.

LearningRate compiles the policies whose multiplier is one closed form of the iteration
(fixed, step, exp, inv, poly), with the arguments parsed by the reference's `_Policy` and
baked in; the other policies run on the reference.
"""
from __future__ import annotations

import numpy as np

from c2compile.codegen.cython.families.elementwise import as_float32, literal
from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.errors import C2Error
from c2compile.ops import training as ref


def _iter_supported(op) -> bool:
    # The deprecated zero-input form counts in a blob the workspace may or may not hold.
    return op.num_inputs == 1


@kernel("Iter", template="training.pyx.j2", macro="iter", supports=_iter_supported)
def iter_(k: KernelSpec) -> None:
    """counter + 1, in place on an int64 tensor of one element."""
    k.vars["negative"] = k.error(1, "previous iteration number is negative")
    k.vars["overflow"] = k.error(2, "the iteration counter would overflow int64")


@kernel("Dropout", template="training.pyx.j2", macro="dropout")
def dropout(k: KernelSpec) -> None:
    """is_test: Y = X (mask all true); training: keep with probability 1 - ratio, scaled."""
    ratio = k.args.ratio
    k.vars.update(is_test=bool(k.args.is_test), mask=len(k.outs) == 2,
                  keep=repr(1.0 - ratio),
                  scale=literal(np.float32(1.0 / (1.0 - ratio)), np.float32))
    if not k.args.is_test:
        k.use_rng()


LR_POLICIES = ("fixed", "step", "exp", "inv", "poly")


def _lr_supported(op) -> bool:
    return op.args.policy in LR_POLICIES


@kernel("LearningRate", template="training.pyx.j2", macro="learning_rate",
        supports=_lr_supported)
def learning_rate(k: KernelSpec) -> None:
    """base_lr * multiplier(iter), the multiplier in double as the reference computes it."""
    try:
        ref._multiplier(k.op, 0)  # the reference's own argument checks
    except C2Error as e:
        raise Unsupported(f"invalid arguments, the reference reports them: {e.message}") from None
    p = ref._Policy(k.op)
    policy = k.args.policy
    if policy == "fixed":
        mult = "1.0"
    elif policy == "step":
        mult = f"pow({p('gamma', 0.0)!r}, <double>(it / {p('stepsize', 0)}))"
    elif policy == "exp":
        mult = f"pow({p('gamma', 0.0)!r}, <double>it)"
    elif policy == "inv":
        mult = f"pow(1.0 + {p('gamma', 0.0)!r} * <double>it, {-p('power', 0.0)!r})"
    else:  # poly; Caffe2 keeps max_iter unsigned: unset (-1) is 2**64 - 1
        max_iter = float(p("max_iter", -1) % (1 << 64))
        mult = f"pow(1.0 - <double>it / {max_iter!r}, {p('power', 0.0)!r})"
    k.vars.update(mult=mult, base_lr=literal(as_float32(k.args.base_lr), np.float32))
