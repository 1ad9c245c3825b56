"""Training ops: the iteration counter (Iter), learning-rate schedules (LearningRate),
WeightedSum and Dropout.
"""
from __future__ import annotations

import difflib
import math
import re

import numpy as np

from c2compile.errors import ArgumentError, OpError
from c2compile.ops.schema import REQUIRED, Arg, TensorType, op

_INT64_MAX = np.iinfo(np.int64).max


def _type_of(value) -> TensorType:
    if isinstance(value, np.ndarray):
        return TensorType(value.shape, value.dtype)
    return TensorType(None, None)


# ----------------------------------------------------------------------------- Iter

def _check_iter(ctx, ins) -> None:
    if ctx.num_inputs and ctx.inputs[0] != ctx.outputs[0]:
        ctx.fail(f"Iter must run in place: its output must be its input '{ctx.inputs[0]}', "
                 f"got '{ctx.outputs[0]}'", cls=ArgumentError)
    if ins:
        t = ins[0]
        if t.dtype is not None and t.dtype != np.dtype(np.int64):
            ctx.fail(f"iteration counter '{ctx.inputs[0]}' must be int64, got {t.dtype}",
                     blob=ctx.inputs[0])
        if t.shape is not None and t.size != 1:
            ctx.fail(f"iteration counter '{ctx.inputs[0]}' must have 1 element, got shape "
                     f"{list(t.shape)}", blob=ctx.inputs[0])


def _infer_iter(ctx, *ins):
    _check_iter(ctx, ins)
    if ins:
        return [TensorType(ins[0].shape, np.int64)]
    return [TensorType((1,), np.int64)]


@op("Iter", inputs=(0, 1), outputs=1, inplace=[(0, 0)], infer=_infer_iter, stateful=True)
def iter_(ctx, *inputs):
    """counter + 1, in place on an int64 tensor of 1 element.

    The deprecated zero-input form counts in its output blob: it starts that blob at 0 when
    the workspace does not hold it yet (so the first run gives [1]), and increments it
    otherwise (as the current run sees it: earlier writes of the same run count).
    """
    if inputs:
        counter = inputs[0]
    else:
        blobs = getattr(ctx.workspace, "blobs", None)
        blobs = {} if blobs is None else blobs
        counter = blobs.get(ctx.outputs[0])
        if not isinstance(counter, np.ndarray):
            counter = np.zeros((1,), np.int64)
    _check_iter(ctx, [_type_of(counter)])
    value = int(counter.reshape(-1)[0])
    if value < 0:
        raise ctx.error(OpError, f"previous iteration number {value} is negative",
                        blob=ctx.outputs[0])
    if value >= _INT64_MAX:
        raise ctx.error(OpError, "the iteration counter would overflow int64",
                        blob=ctx.outputs[0])
    return np.full(counter.shape, value + 1, dtype=np.int64)


# ----------------------------------------------------------------------------- LearningRate

def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _fdiv(a, b) -> float:
    """IEEE float division (x/0 is inf or nan, as in C)."""
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _pow(a, b) -> float:
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(a), np.float64(b)))


class _Policy:
    """Reads a policy's arguments with that policy's own defaults (Caffe2 gives the same
    argument different defaults in different policies).

    The op's own policy reads the op's arguments; a sub-policy of 'composite' reads only its
    `sub_policy_<i>_<name>` arguments, given here as `values` ({name: value}).
    """

    def __init__(self, ctx, values: dict | None = None, prefix: str = ""):
        self.ctx, self.values, self.prefix = ctx, values, prefix
        self.policy = ctx.args.policy if values is None else values.get("policy", "")

    def __call__(self, name, default):
        value = getattr(self.ctx.args, name) if self.values is None else self.values.get(name)
        return default if value is None else value

    def positive(self, name, default, why):
        value = self(name, default)
        if value <= 0:
            self.ctx.fail(f"policy '{self.policy}' needs {self.prefix}{name} > 0 ({why}), got "
                          f"{value}", cls=ArgumentError)
        return value


def _linear_warmup(it, start, num_iter):
    if it >= num_iter:
        return 1.0
    return start + (1.0 - start) * _fdiv(it, num_iter)


def _constant_warmup(it, multiplier, num_iter):
    return 1.0 if it >= num_iter else multiplier


def _inv(it, gamma, power):
    return _pow(1.0 + gamma * it, -power)


def _cyclical(it, base_lr, max_lr, stepsize, decay):
    cycle = _cdiv(it, 2 * stepsize) + 1
    x = abs(_fdiv(it, stepsize) - 2 * cycle + 1)
    return 1.0 + (_fdiv(abs(max_lr), abs(base_lr)) - 1.0) * max(0.0, 1.0 - x) * \
        _pow(decay, _cdiv(it, 2 * stepsize))


def _cosine(it, min_lr, max_lr, period, t_mult, lr_shrink):
    if t_mult != 1.0:
        i = math.floor(_fdiv(math.log(1 - it / period * (1.0 - t_mult)), math.log(t_mult)))
        t_i = _pow(t_mult, i) * period
        t_curr = it - (1.0 - _pow(t_mult, i)) / (1.0 - t_mult) * period
    else:
        i = math.floor(it / period)
        t_i = period
        t_curr = it - t_i * i
    shrink = _pow(lr_shrink, i)
    lo, hi = min_lr * shrink, max_lr * shrink
    return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t_curr / t_i))


def _warmup_then(p, it):
    """(constantThenLinearWarmup's multiplier, or None once both warmups are over;
    the iterations past the warmups)."""
    start = p("start_warmup_multiplier", 0.1)
    c = p("constant_warmup_num_iter", 10000000)
    n = p("linear_warmup_num_iter", 10000000)
    if it < c:
        return _constant_warmup(it, start, c), it - c - n
    if it < c + n:
        return _linear_warmup(it - c, start, n), it - c - n
    return None, it - c - n


def _multiplier(ctx, it: int, p: _Policy | None = None) -> float:
    """Caffe2's learning-rate functor for `ctx.args.policy` (or sub-policy `p`) at `it`."""
    p = _Policy(ctx) if p is None else p
    policy = p.policy
    if policy == "composite":
        # Sub-policy i runs from iteration 1 + sum(num_iters[:i]) on (the last one forever,
        # and iterations before 1 use the first), at the global iteration, times its lr_scale.
        subs = _sub_policies(ctx)
        start, chosen = 1, subs[0]
        for num_iter, sub in zip(ctx.args.sub_policy_num_iters, subs):
            if it >= start:
                chosen = sub
            start += num_iter
        scale, sub_p = chosen
        return _multiplier(ctx, it, sub_p) * scale
    if policy == "fixed":
        return 1.0
    if policy == "step":
        stepsize = p.positive("stepsize", 0, "the step length")
        return _pow(p("gamma", 0.0), _cdiv(it, stepsize))
    if policy == "exp":
        return _pow(p("gamma", 0.0), it)
    if policy == "inv":
        return _inv(it, p("gamma", 0.0), p("power", 0.0))
    if policy == "poly":
        max_iter = p("max_iter", -1)
        if max_iter == 0:
            ctx.fail("policy 'poly' needs max_iter != 0", cls=ArgumentError)
        # Caffe2 keeps max_iter unsigned: unset (-1) means 2**64 - 1, a multiplier of ~1.
        return _pow(1.0 - _fdiv(it, max_iter % (1 << 64)), p("power", 0.0))
    if policy == "alter":
        active_first = p("active_first", True)
        active, inactive = p("active_period", -1), p("inactive_period", -1)
        if active < 0 or inactive < 0 or active + inactive == 0:
            ctx.fail(f"policy 'alter' needs active_period >= 0 and inactive_period >= 0, not "
                     f"both 0; got {active} and {inactive}", cls=ArgumentError)
        first = _cmod(it, active + inactive) < (active if active_first else inactive)
        return float(first == active_first)
    if policy == "hill":
        num_iter = p("num_iter", 0)
        if it < num_iter:
            return _linear_warmup(it, p("start_multiplier", 0.0), num_iter)
        return max(p("end_multiplier", 0.0),
                   _inv(it - num_iter, p("gamma", 0.0), p("power", 0.0)))
    if policy == "slope":
        n1, m1 = p("num_iter_1", 0), p("multiplier_1", 0.0)
        n2, m2 = p("num_iter_2", 0), p("multiplier_2", 0.0)
        if n2 == n1:
            ctx.fail(f"policy 'slope' needs num_iter_2 > num_iter_1, got {n2} and {n1}",
                     cls=ArgumentError)
        if it < n1:
            return m1
        return max(m2, m1 + (it - n1) * (m2 - m1) / (n2 - n1))
    if policy == "gate":
        return p("multiplier_2", 1.0) if it >= p("num_iter", 0) else p("multiplier_1", 1.0)
    if policy == "linearWarmup":
        return _linear_warmup(it, p("start_multiplier", 0.0), p("num_iter", 0))
    if policy == "constantWarmup":
        return _constant_warmup(it, p("multiplier", 0.5), p("num_iter", 0))
    if policy == "pieceWarmup":
        if it < p("n1", 0):
            return p("m1", 0.5)
        if it < p("n2", 0):
            return p("m2", 0.5)
        return p("m3", 0.5)
    if policy == "cyclical":
        stepsize = p.positive("stepsize", 0, "the half-cycle length")
        return _cyclical(it, ctx.args.base_lr, p("max_lr", 0.005), stepsize, p("decay", 1.0))
    if policy == "constantThenLinearWarmup":
        m, _ = _warmup_then(p, it)
        return 1.0 if m is None else m
    if policy == "compositeCyclical":
        step = p.positive("cyclical_step_size", 1000000, "the half-cycle length")
        m, rest = _warmup_then(p, it)
        if m is not None:
            return m
        return _cyclical(rest, ctx.args.base_lr, p("cyclical_max_lr", 0.05), step,
                         p("cyclical_decay", 1.0))
    if policy == "cosine":
        period = p.positive("period", 50, "the cycle length")
        return _cosine(it, p("min_lr", 0.1), p("max_lr", 0.5), period, p("t_mult", 1.0),
                       p("lr_shrink", 0.99))
    if policy == "compositeCosine":
        period = p.positive("cosine_period", 50, "the cycle length")
        m, rest = _warmup_then(p, it)
        if m is not None:
            return m
        return _cosine(rest, p("cosine_min_lr", 0.1), p("cosine_max_lr", 0.5), period,
                       p("cosine_t_mult", 1.0), p("cosine_lr_shrink", 0.99))
    raise AssertionError(policy)


LR_POLICIES = ("fixed", "step", "exp", "inv", "poly", "alter", "hill", "slope", "gate",
               "linearWarmup", "constantWarmup", "pieceWarmup", "cyclical",
               "constantThenLinearWarmup", "compositeCyclical", "cosine", "compositeCosine")


_SUB_ARG = re.compile(r"sub_policy_(\d+)_(\w+)$")


def _read_sub_arg(ctx, name: str, raw, kind: str):
    ok = {"int": raw.HasField("i"), "bool": raw.HasField("i"), "str": raw.HasField("s"),
          "float": raw.HasField("f") or raw.HasField("i")}[kind]
    if not ok:
        ctx.fail(f"argument '{name}': expected a{'n' * (kind == 'int')} {kind}",
                 cls=ArgumentError)
    if kind == "str":
        return raw.s.decode("utf-8")
    if kind == "float":
        return float(raw.f) if raw.HasField("f") else float(raw.i)
    return bool(raw.i) if kind == "bool" else int(raw.i)


def _sub_policies(ctx) -> list[tuple[float, _Policy]]:
    """(lr_scale, _Policy) of each sub-policy of a 'composite' LearningRate."""
    nums = ctx.args.sub_policy_num_iters or []
    if not nums:
        ctx.fail("policy 'composite' needs sub_policy_num_iters (at least one sub-policy)",
                 cls=ArgumentError)
    if any(n <= 0 for n in nums):
        ctx.fail(f"sub_policy_num_iters {nums}: each sub-policy needs a positive number of "
                 "iterations", cls=ArgumentError)
    values: list[dict] = [{} for _ in nums]
    for name, raw in ctx.extra_args.items():
        m = _SUB_ARG.match(name)
        key = m.group(2) if m else None
        kind = {"policy": "str", "lr_scale": "float"}.get(key) or _LR_KINDS.get(key)
        if kind is None or key in ("base_lr", "sub_policy_num_iters"):
            ctx.fail(f"unknown argument '{name}'; a composite LearningRate takes "
                     "sub_policy_<i>_policy, sub_policy_<i>_lr_scale and sub_policy_<i>_<an "
                     "argument of that policy>", cls=ArgumentError)
        i = int(m.group(1))
        if i >= len(nums):
            ctx.fail(f"argument '{name}' names sub-policy {i}, but sub_policy_num_iters "
                     f"{nums} defines {len(nums)}", cls=ArgumentError)
        values[i][key] = _read_sub_arg(ctx, name, raw, kind)
    subs = []
    for i, v in enumerate(values):
        policy = v.get("policy", "")
        if policy == "composite":
            ctx.fail(f"sub_policy_{i}_policy: a composite policy cannot be a sub-policy of "
                     "a composite policy", cls=ArgumentError)
        if policy not in LR_POLICIES:
            ctx.fail(f"sub_policy_{i}_policy={policy!r}: unknown learning rate policy; "
                     f"Caffe2's policies supported here: {', '.join(LR_POLICIES)}",
                     cls=ArgumentError)
        subs.append((v.get("lr_scale", 1.0), _Policy(ctx, v, prefix=f"sub_policy_{i}_")))
    return subs


def _check_policy(ctx) -> None:
    policy = ctx.args.policy
    if policy == "composite":
        _sub_policies(ctx)
        return
    if ctx.extra_args:
        name = next(iter(ctx.extra_args))
        if _SUB_ARG.match(name):
            why = f"sub_policy_<i>_* arguments belong to policy 'composite', not '{policy}'"
        else:
            close = difflib.get_close_matches(name, _LR_KINDS, n=2)
            why = (f"did you mean {', '.join(close)}? " if close else "") + \
                f"LearningRate accepts: {', '.join(_LR_KINDS)}"
        ctx.fail(f"unknown argument '{name}' ({why})", cls=ArgumentError)
    if policy in LR_POLICIES:
        return
    if not policy:
        ctx.fail("must specify a learning rate policy", cls=ArgumentError)
    ctx.fail(f"unknown learning rate policy '{policy}'; Caffe2's policies supported here: "
             f"{', '.join(LR_POLICIES)}", cls=ArgumentError)


def _infer_learning_rate(ctx, it):
    _check_policy(ctx)
    if it.dtype is not None and it.dtype != np.dtype(np.int64):
        ctx.fail(f"iteration input '{ctx.inputs[0]}' must be int64, got {it.dtype}",
                 blob=ctx.inputs[0])
    if it.shape is not None and it.size == 0:
        ctx.fail(f"iteration input '{ctx.inputs[0]}' is empty", blob=ctx.inputs[0])
    return [TensorType((), np.float32)]


_LR_ARGS = [
    Arg("base_lr", "float", REQUIRED, "learning rate at multiplier 1 (negative for descent)"),
    Arg("policy", "str", REQUIRED, "schedule: " + ", ".join(LR_POLICIES) + ", composite"),
    *[Arg(n, "int", None) for n in (
        "stepsize", "max_iter", "num_iter", "active_period", "inactive_period", "n1", "n2",
        "num_iter_1", "num_iter_2", "constant_warmup_num_iter", "linear_warmup_num_iter",
        "cyclical_step_size", "period", "cosine_period")],
    Arg("active_first", "bool", None),
    Arg("sub_policy_num_iters", "ints", None),
    *[Arg(n, "float", None) for n in (
        "power", "gamma", "max_lr", "min_lr", "decay", "start_multiplier", "end_multiplier",
        "multiplier", "multiplier_1", "multiplier_2", "m1", "m2", "m3",
        "start_warmup_multiplier", "cyclical_max_lr", "cyclical_decay", "t_mult", "lr_shrink",
        "cosine_min_lr", "cosine_max_lr", "cosine_t_mult", "cosine_lr_shrink")],
]


_LR_KINDS = {a.name: a.kind for a in _LR_ARGS}


# extra_args: a composite policy's sub_policy_<i>_<name> arguments (checked in _sub_policies)
@op("LearningRate", inputs=1, outputs=1, args=_LR_ARGS, infer=_infer_learning_rate,
    extra_args=True)
def learning_rate(ctx, it):
    """base_lr * policy(iter): a 0-d float32 tensor, read from the int64 counter's first
    element (Caffe2 writes a 0-d tensor)."""
    _infer_learning_rate(ctx, _type_of(it))
    mult = _multiplier(ctx, int(np.asarray(it).reshape(-1)[0]))
    with np.errstate(all="ignore"):
        return np.array(np.float32(ctx.args.base_lr) * np.float32(mult), dtype=np.float32)


# ----------------------------------------------------------------------------- WeightedSum

def _infer_weighted_sum(ctx, *ins):
    if len(ins) % 2:
        ctx.fail(f"takes pairs (X0, w0, X1, w1, ...), got {len(ins)} inputs",
                 cls=ArgumentError)
    x0 = ins[0]
    for i in range(0, len(ins), 2):
        x, w = ins[i], ins[i + 1]
        for t, name in ((x, ctx.inputs[i]), (w, ctx.inputs[i + 1])):
            if t.dtype is not None and t.dtype != np.dtype(np.float32):
                ctx.fail(f"input '{name}' has dtype {t.dtype}; WeightedSum takes float32",
                         blob=name)
        if w.shape is not None and w.size != 1:
            ctx.fail(f"weight '{ctx.inputs[i + 1]}' must have 1 element, got shape "
                     f"{list(w.shape)}", blob=ctx.inputs[i + 1])
        if i and x.shape is not None and x0.shape is not None and x.size != x0.size:
            ctx.fail(f"input '{ctx.inputs[i]}' of shape {list(x.shape)} has {x.size} elements"
                     f", '{ctx.inputs[0]}' of shape {list(x0.shape)} has {x0.size}",
                     blob=ctx.inputs[i])
    return [TensorType(x0.shape, np.float32)]


@op("WeightedSum", inputs=(2, None), outputs=1, inplace=[(0, 0)], infer=_infer_weighted_sum)
def weighted_sum(ctx, *inputs):
    """Y = w0 * X0 + w1 * X1 + ... (float32; each w a 1-element tensor; Y has X0's shape,
    the other X need only the same number of elements)."""
    _infer_weighted_sum(ctx, *[_type_of(x) for x in inputs])
    x0 = inputs[0]
    y = inputs[1].reshape(-1)[0] * x0
    for i in range(2, len(inputs), 2):
        y = y + inputs[i + 1].reshape(-1)[0] * inputs[i].reshape(x0.shape)
    return y.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- Dropout

def _infer_dropout(ctx, x):
    ratio = ctx.args.ratio
    if not 0 <= ratio < 1:
        ctx.fail(f"ratio={ratio} must be in [0, 1)", cls=ArgumentError)
    if x.dtype is not None and x.dtype != np.dtype(np.float32):
        ctx.fail(f"input '{ctx.inputs[0]}' has dtype {x.dtype}; Dropout takes float32",
                 blob=ctx.inputs[0])
    return [TensorType(x.shape, np.float32), TensorType(x.shape, np.bool_)][:ctx.num_outputs]


@op("Dropout", inputs=1, outputs=(1, 2), inplace=[(0, 0)],
    args=[Arg("ratio", "float", 0.5, "probability of dropping an element"),
          Arg("is_test", "bool", REQUIRED, "nonzero: Y = X (Caffe2 1.x requires it)")],
    infer=_infer_dropout, stateful=True)
def dropout(ctx, X):
    """Training: keep each element with probability 1 - ratio, Y = X * mask / (1 - ratio).
    Test (is_test): Y = X; the optional mask is then all True (Caffe2 leaves it unset)."""
    _infer_dropout(ctx, _type_of(X))
    if ctx.args.is_test:
        y, mask = X.copy(), np.ones(X.shape, np.bool_)
    else:
        ratio = ctx.args.ratio
        mask = ctx.rng.random(X.shape) < 1.0 - ratio
        scale = np.float32(1.0 / (1.0 - ratio))
        y = (X * scale * mask).astype(np.float32, copy=False)
    return (y, mask)[:ctx.num_outputs]
