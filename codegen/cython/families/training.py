"""Training kernels (template: training.pyx.j2): Iter, Dropout, LearningRate, the gradient
ops DropoutGrad and WeightedSumGradient, and the optimizer updates MomentumSGD(Update),
Adam and Adagrad.

The optimizer updates are one flat loop in Caffe2's float32 order. Each iteration reads
every input element it needs before writing the outputs at that index, so they run in place
(after the first run an in-place output's buffer is also the input the workspace hands back).

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
@kernel("AtomicIter", template="training.pyx.j2", macro="iter", host_inputs=(0,))
def iter_(k: KernelSpec) -> None:
    """counter + 1, in place on an int64 tensor of one element. AtomicIter's mutex (input 0)
    is no kernel input: the segment holds it while the program runs."""
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


# ----------------------------------------------------------------------------- gradient ops

@kernel("DropoutGrad", template="training.pyx.j2", macro="dropout_grad")
def dropout_grad(k: KernelSpec) -> None:
    """is_test: dX = dY; training: dX = dY * mask * (1 / (1 - ratio))."""
    k.vars.update(is_test=bool(k.args.is_test),
                  scale=literal(ref._dropout_scale(k.op), np.float32))


@kernel("WeightedSumGradient", template="training.pyx.j2", macro="weighted_sum_gradient")
def weighted_sum_gradient(k: KernelSpec) -> None:
    """dX_j = w_j * dY; with grad_on_w, dw_j = <dY, X_j> accumulated in double."""
    k.vars.update(pairs=(len(k.ins) - 1) // 2, grad_on_w=bool(k.args.grad_on_w))


# ----------------------------------------------------------------------------- optimizers

def _f32(value) -> str:
    return literal(as_float32(value), np.float32)


@kernel("MomentumSGD", "MomentumSGDUpdate", template="training.pyx.j2", macro="momentum_sgd")
def momentum_sgd(k: KernelSpec) -> None:
    """adjusted = lr * g + momentum * m (or Nesterov's), and param -= adjusted for Update."""
    k.vars.update(momentum=_f32(k.args.momentum), nesterov=bool(k.args.nesterov),
                  with_param=k.op.type == "MomentumSGDUpdate")


@kernel("Adam", template="training.pyx.j2", macro="adam")
def adam(k: KernelSpec) -> None:
    """Moments, then param + lr * correction * m1 / (sqrt(m2) + eps); correction from the
    iteration at run time, in double as Caffe2 computes it."""
    k.vars.update(beta1=_f32(k.args.beta1), beta2=_f32(k.args.beta2),
                  eps=_f32(k.args.epsilon), grad_out=len(k.outs) == 4)


@kernel("Adagrad", template="training.pyx.j2", macro="adagrad")
def adagrad(k: KernelSpec) -> None:
    """moment' = decay * moment + g^2, g = fma(weight_decay, param, grad); param + lr * g /
    (sqrt(moment') + eps), or through effective_lr when that output is asked for."""
    k.vars.update(eps=_f32(k.args.epsilon), decay=_f32(k.args.decay),
                  weight_decay=_f32(k.args.weight_decay) if k.args.weight_decay else None,
                  outputs=len(k.outs))
