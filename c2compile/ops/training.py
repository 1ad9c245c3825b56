"""Training ops: the iteration counters (Iter; AtomicIter with CreateMutex), learning-rate
schedules (LearningRate), WeightedSum, Dropout, their gradient ops (WeightedSumGradient,
DropoutGrad) and the dense optimizer updates (MomentumSGD, MomentumSGDUpdate, Adam, Adagrad).

Gradient marks are Caffe2's: Iter, AtomicIter and LearningRate pass no gradient
(NO_GRADIENT); CreateMutex and the optimizer updates have no rule (Caffe2's
SHOULD_NOT_DO_GRADIENT: asking for one is an error).

The optimizer updates run in place as Caffe2's optimizers write them (param, moments and
gradient outputs are the input blobs): their references compute each element from the
inputs' old values only, and their kernels read every input element before writing the
outputs at the same index, so an output buffer may be its input's.
"""
from __future__ import annotations

import difflib
import math
import re
import threading

import numpy as np

from c2compile.errors import ArgumentError, OpError
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.schema import REQUIRED, Arg, TensorType, op

_INT64_MAX = np.iinfo(np.int64).max


def _type_of(value) -> TensorType:
    if isinstance(value, np.ndarray):
        return TensorType(value.shape, value.dtype)
    return TensorType(None, None)


# ----------------------------------------------------------------------------- Iter, AtomicIter

def _check_counter(ctx, t, i: int) -> None:
    """The iteration counter, input `i` (or, with no inputs, the output blob): an int64
    tensor of 1 element that the op updates in place."""
    name = ctx.inputs[i] if i < ctx.num_inputs else ctx.outputs[0]
    if i < ctx.num_inputs and name != ctx.outputs[0]:
        ctx.fail(f"{ctx.type} must run in place: its output must be its input '{name}', "
                 f"got '{ctx.outputs[0]}'", cls=ArgumentError)
    if t is None:
        return
    if t.dtype is not None and t.dtype != np.dtype(np.int64):
        ctx.fail(f"iteration counter '{name}' must be int64, got {t.dtype}", blob=name)
    if t.shape is not None and t.size != 1:
        ctx.fail(f"iteration counter '{name}' must have 1 element, got shape "
                 f"{list(t.shape)}", blob=name)


def _incremented(ctx, counter: np.ndarray, i: int) -> np.ndarray:
    """counter + 1, with Caffe2's checks (not negative, no int64 overflow)."""
    _check_counter(ctx, _type_of(counter), i)
    value = int(counter.reshape(-1)[0])
    if value < 0:
        raise ctx.error(OpError, f"previous iteration number {value} is negative",
                        blob=ctx.outputs[0])
    if value >= _INT64_MAX:
        raise ctx.error(OpError, "the iteration counter would overflow int64",
                        blob=ctx.outputs[0])
    return np.full(counter.shape, value + 1, dtype=np.int64)


def _infer_iter(ctx, *ins):
    _check_counter(ctx, ins[0] if ins else None, 0)
    if ins:
        return [TensorType(ins[0].shape, np.int64)]
    return [TensorType((1,), np.int64)]


@op("Iter", inputs=(0, 1), outputs=1, inplace=[(0, 0)], infer=_infer_iter, stateful=True,
    grad=NO_GRADIENT)
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
    return _incremented(ctx, counter, 0)


class Mutex:
    """The blob CreateMutex makes (Caffe2's std::unique_ptr<std::mutex>)."""

    def __init__(self):
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return "<c2compile Mutex>"


# Caffe2: SHOULD_NOT_DO_GRADIENT (no rule). Host-only: its output is no tensor.
@op("CreateMutex", inputs=0, outputs=1, infer=lambda ctx: [TensorType(None, None)],
    host_only=True, stateful=True)
def create_mutex(ctx):
    """A new unlocked mutex (for AtomicIter)."""
    return Mutex()


def _check_mutex(ctx, t) -> None:
    if t.dtype is not None:
        ctx.fail(f"input '{ctx.inputs[0]}' holds a tensor; {ctx.type} takes the mutex "
                 "CreateMutex makes", blob=ctx.inputs[0])


def _infer_atomic_iter(ctx, mutex, counter):
    _check_mutex(ctx, mutex)
    _check_counter(ctx, counter, 1)
    return [TensorType(counter.shape, np.int64)]


# Its kernel reads the counter only; the compiled segment holds the mutex while it runs.
@op("AtomicIter", inputs=2, outputs=1, inplace=[(1, 0)], infer=_infer_atomic_iter,
    grad=NO_GRADIENT)
def atomic_iter(ctx, mutex, counter):
    """Iter under the mutex of input 0: counter (input 1) + 1, in place."""
    if not isinstance(mutex, Mutex):
        _check_mutex(ctx, _type_of(mutex))
        raise ctx.error(OpError, f"input '{ctx.inputs[0]}' holds a {type(mutex).__name__}, "
                        "not the mutex CreateMutex makes", blob=ctx.inputs[0])
    with mutex.lock:
        return _incremented(ctx, counter, 1)


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
    extra_args=True, grad=NO_GRADIENT)
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


def _weighted_sum_gradient(g):
    """Caffe2's GetWeightedSumGradient: WeightedSumGradient([dY, X0, w0, X1, w1, ...]) ->
    [dX0, dX1, ...] and, with grad_on_w, then [dw0, dw1, ...]."""
    inputs = [g.GO(0)] + [g.I(i) for i in range(g.num_inputs)]
    outputs = [g.GI(i) for i in range(0, g.num_inputs, 2)]
    if g.args.grad_on_w:
        outputs += [g.GI(i) for i in range(1, g.num_inputs, 2)]
    return [g.op("WeightedSumGradient", inputs, outputs)]


_GRAD_ON_W = Arg("grad_on_w", "bool", False,
                 "the gradient op also computes the weights' gradients dw_i = <dY, X_i>")


@op("WeightedSum", inputs=(2, None), outputs=1, inplace=[(0, 0)], args=[_GRAD_ON_W],
    infer=_infer_weighted_sum, grad=_weighted_sum_gradient)
def weighted_sum(ctx, *inputs):
    """Y = w0 * X0 + w1 * X1 + ... (float32; each w a 1-element tensor; Y has X0's shape,
    the other X need only the same number of elements)."""
    _infer_weighted_sum(ctx, *[_type_of(x) for x in inputs])
    x0 = inputs[0]
    y = inputs[1].reshape(-1)[0] * x0
    for i in range(2, len(inputs), 2):
        y = y + inputs[i + 1].reshape(-1)[0] * inputs[i].reshape(x0.shape)
    return y.astype(np.float32, copy=False)


def _infer_weighted_sum_gradient(ctx, *ins):
    n = len(ins)
    if n < 3 or n % 2 == 0:
        ctx.fail(f"takes dY and the forward's pairs (dY, X0, w0, X1, w1, ...), got {n} inputs",
                 cls=ArgumentError)
    pairs = n // 2
    want = 2 * pairs if ctx.args.grad_on_w else pairs
    if ctx.num_outputs != want:
        ctx.fail(f"with grad_on_w={int(ctx.args.grad_on_w)} and {pairs} (X, w) pairs it writes "
                 f"{want} outputs, got {ctx.num_outputs}", cls=ArgumentError)
    dy = ins[0]
    for i, t in enumerate(ins):
        if t.dtype is not None and t.dtype != np.dtype(np.float32):
            ctx.fail(f"input '{ctx.inputs[i]}' has dtype {t.dtype}; WeightedSumGradient takes "
                     "float32", blob=ctx.inputs[i])
    for j in range(pairs):
        x, w = ins[2 * j + 1], ins[2 * j + 2]
        if w.shape is not None and w.size != 1:
            ctx.fail(f"weight '{ctx.inputs[2 * j + 2]}' must have 1 element, got shape "
                     f"{list(w.shape)}", blob=ctx.inputs[2 * j + 2])
        # Caffe2 reads X_i only for dw_i, so only then must its size match dY's.
        if ctx.args.grad_on_w and x.shape is not None and dy.shape is not None \
                and x.size != dy.size:
            ctx.fail(f"input '{ctx.inputs[2 * j + 1]}' of shape {list(x.shape)} has {x.size} "
                     f"elements, the gradient '{ctx.inputs[0]}' of shape {list(dy.shape)} has "
                     f"{dy.size}", blob=ctx.inputs[2 * j + 1])
    # Every dX_i takes dY's shape, as in Caffe2 (ResizeLike(dY)), even where X_i had another
    # shape of the same size; each dw_i is a 1-element tensor.
    return [TensorType(dy.shape, np.float32)] * pairs + \
        [TensorType((1,), np.float32)] * (want - pairs)


@op("WeightedSumGradient", inputs=(3, None), outputs=(1, None), args=[_GRAD_ON_W],
    infer=_infer_weighted_sum_gradient)
def weighted_sum_gradient(ctx, dy, *pairs):
    """dX_i = w_i * dY; with grad_on_w also dw_i = sum(dY * X_i), accumulated in float64
    (Caffe2 takes a float BLAS dot: the same to rounding)."""
    _infer_weighted_sum_gradient(ctx, *[_type_of(x) for x in (dy, *pairs)])
    xs, ws = pairs[0::2], pairs[1::2]
    with np.errstate(all="ignore"):
        dxs = [(w.reshape(-1)[0] * dy).astype(np.float32, copy=False) for w in ws]
    if not ctx.args.grad_on_w:
        return dxs
    flat = dy.reshape(-1).astype(np.float64)
    return dxs + [np.array([flat @ x.reshape(-1).astype(np.float64)], np.float32) for x in xs]


# ----------------------------------------------------------------------------- Dropout

def _check_ratio(ctx) -> None:
    ratio = ctx.args.ratio
    if not 0 <= ratio < 1:
        ctx.fail(f"ratio={ratio} must be in [0, 1)", cls=ArgumentError)


def _dropout_scale(ctx) -> np.float32:
    """1 / (1 - ratio), computed in double and stored as a float, as Caffe2 does."""
    return np.float32(1.0 / (1.0 - ctx.args.ratio))


def _infer_dropout(ctx, x):
    _check_ratio(ctx)
    if x.dtype is not None and x.dtype != np.dtype(np.float32):
        ctx.fail(f"input '{ctx.inputs[0]}' has dtype {x.dtype}; Dropout takes float32",
                 blob=ctx.inputs[0])
    return [TensorType(x.shape, np.float32), TensorType(x.shape, np.bool_)][:ctx.num_outputs]


def _dropout_gradient(g):
    """Caffe2's GetDropoutGradient: DropoutGrad([dY]) in test mode, DropoutGrad([dY, mask])
    in training mode."""
    if g.args.is_test:
        return [g.op("DropoutGrad", [g.GO(0)], [g.GI(0)])]
    if g.num_outputs < 2:
        g.fail("a training-mode Dropout (is_test=0) needs its mask output for the gradient; "
               "give the op a second output", blob=g.O(0))
    return [g.op("DropoutGrad", [g.GO(0), g.O(1)], [g.GI(0)])]


_RATIO = Arg("ratio", "float", 0.5, "probability of dropping an element")


@op("Dropout", inputs=1, outputs=(1, 2), inplace=[(0, 0)],
    args=[_RATIO,
          Arg("is_test", "bool", REQUIRED, "nonzero: Y = X (Caffe2 1.x requires it)")],
    infer=_infer_dropout, stateful=True, grad=_dropout_gradient)
def dropout(ctx, X):
    """Training: keep each element with probability 1 - ratio, Y = X * mask / (1 - ratio).
    Test (is_test): Y = X; the optional mask is then all True (Caffe2 leaves it unset)."""
    _infer_dropout(ctx, _type_of(X))
    if ctx.args.is_test:
        y, mask = X.copy(), np.ones(X.shape, np.bool_)
    else:
        ratio = ctx.args.ratio
        mask = ctx.rng.random(X.shape) < 1.0 - ratio
        y = (X * _dropout_scale(ctx) * mask).astype(np.float32, copy=False)
    return (y, mask)[:ctx.num_outputs]


def _infer_dropout_grad(ctx, dy, mask=None):
    _check_ratio(ctx)
    if dy.dtype is not None and dy.dtype != np.dtype(np.float32):
        ctx.fail(f"gradient '{ctx.inputs[0]}' has dtype {dy.dtype}; DropoutGrad takes float32",
                 blob=ctx.inputs[0])
    if not ctx.args.is_test:
        if mask is None:
            ctx.fail("in training mode (is_test=0) DropoutGrad needs the mask as input 1",
                     cls=ArgumentError)
        if mask.dtype is not None and mask.dtype != np.dtype(np.bool_):
            ctx.fail(f"mask '{ctx.inputs[1]}' has dtype {mask.dtype}; DropoutGrad takes a bool "
                     "mask", blob=ctx.inputs[1])
        if mask.shape is not None and dy.shape is not None and mask.size != dy.size:
            ctx.fail(f"mask '{ctx.inputs[1]}' of shape {list(mask.shape)} has {mask.size} "
                     f"elements, the gradient '{ctx.inputs[0]}' of shape {list(dy.shape)} has "
                     f"{dy.size}", blob=ctx.inputs[1])
    return [TensorType(dy.shape, np.float32)]


# Caffe2's DropoutGrad reads is_test with default 0 (only the forward op requires it).
@op("DropoutGrad", inputs=(1, 2), outputs=1, inplace=[(0, 0)],
    args=[_RATIO, Arg("is_test", "bool", False, "nonzero: dX = dY (the mask is not read)")],
    infer=_infer_dropout_grad)
def dropout_grad(ctx, dY, mask=None):
    """Training: dX = dY * mask * (1 / (1 - ratio)) (a NaN in dY stays NaN where the mask
    drops it, as in Caffe2's product); test: dX = dY. The mask needs only dY's size."""
    _infer_dropout_grad(ctx, _type_of(dY), None if mask is None else _type_of(mask))
    if ctx.args.is_test:
        return dY.copy()
    keep = mask.reshape(dY.shape).astype(np.float32)
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in C
        return (dY * keep * _dropout_scale(ctx)).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- optimizer updates
#
# Caffe2 registers these for float32 only and reads each argument as a C++ float; every step
# below is float32 arithmetic in Caffe2's order (caffe2/sgd/momentum_sgd_op.h, adam_op.h,
# adagrad_op.h), so the references agree with Caffe2 to rounding.

def _f32(value) -> np.float32:
    return np.float32(value)


def _check_float32(ctx, ins, indices) -> None:
    for i in indices:
        t = ins[i]
        if t.dtype is not None and t.dtype != np.dtype(np.float32):
            ctx.fail(f"input '{ctx.inputs[i]}' has dtype {t.dtype}; {ctx.type} takes float32",
                     blob=ctx.inputs[i])


def _check_same_size(ctx, ins, first: int, others) -> None:
    """Inputs `others` have as many elements as input `first` (Caffe2 compares sizes only)."""
    a = ins[first]
    for i in others:
        b = ins[i]
        if a.shape is not None and b.shape is not None and a.size != b.size:
            ctx.fail(f"input '{ctx.inputs[i]}' of shape {list(b.shape)} has {b.size} elements, "
                     f"'{ctx.inputs[first]}' of shape {list(a.shape)} has {a.size}",
                     blob=ctx.inputs[i])


def _check_scalar(ctx, t, i, what: str, exactly_one: bool = True) -> None:
    if t.shape is None:
        return
    if t.size == 0 or (exactly_one and t.size != 1):
        ctx.fail(f"{what} '{ctx.inputs[i]}' must have {'1' if exactly_one else 'at least 1'} "
                 f"element, got shape {list(t.shape)}", blob=ctx.inputs[i])


def _scalar(x) -> np.float32:
    return x.reshape(-1)[0]


# -- MomentumSGD, MomentumSGDUpdate

def _momentum_step(ctx, g, m, lr):
    """(adjusted gradient, new moment), flat float32, as Caffe2's momentum_sgd_update."""
    g, m = g.reshape(-1), m.reshape(-1)
    lr, mu = _scalar(lr), _f32(ctx.args.momentum)
    with np.errstate(all="ignore"):
        if not ctx.args.nesterov:
            adjusted = lr * g + mu * m
            return adjusted, adjusted
        m_new = mu * m + lr * g
        return (_f32(1) + mu) * m_new - mu * m, m_new


def _infer_momentum_sgd(ctx, *ins):
    _check_float32(ctx, ins, range(len(ins)))
    _check_scalar(ctx, ins[2], 2, "learning rate")
    _check_same_size(ctx, ins, 0, [1])
    outs = [TensorType(ins[0].shape, np.float32), TensorType(ins[1].shape, np.float32)]
    if ctx.type == "MomentumSGDUpdate":
        # Caffe2 never resizes an out-of-place param output and subtracts from whatever it
        # holds (an empty blob is written out of bounds): only the in-place form is defined.
        if ctx.outputs[2] != ctx.inputs[3]:
            ctx.fail(f"the param output '{ctx.outputs[2]}' must be the param input "
                     f"'{ctx.inputs[3]}': MomentumSGDUpdate updates it in place",
                     cls=ArgumentError, blob=ctx.outputs[2])
        # Caffe2 does not check param's size; a smaller param is written out of bounds.
        _check_same_size(ctx, ins, 0, [3])
        outs.append(TensorType(ins[3].shape, np.float32))
    return outs


_MOMENTUM_ARGS = [
    Arg("momentum", "float", 0.0, "moment decay: m = momentum * m + lr * grad"),
    Arg("nesterov", "bool", False, "use Nesterov's accelerated gradient"),
]


# SHOULD_NOT_DO_GRADIENT in Caffe2: no rule (grad=None), asking for one is an error.
@op("MomentumSGD", inputs=3, outputs=2, inplace=[(0, 0), (1, 1)], args=_MOMENTUM_ARGS,
    infer=_infer_momentum_sgd)
def momentum_sgd(ctx, grad, moment, lr):
    """(adjusted gradient, new moment) from (grad, moment, lr), with no parameter update:
    adjusted = moment_new = lr * grad + momentum * moment; with nesterov moment_new =
    momentum * moment + lr * grad and adjusted = (1 + momentum) * moment_new -
    momentum * moment."""
    _infer_momentum_sgd(ctx, *map(_type_of, (grad, moment, lr)))
    adjusted, m_new = _momentum_step(ctx, grad, moment, lr)
    return adjusted.reshape(grad.shape), m_new.reshape(moment.shape)


@op("MomentumSGDUpdate", inputs=4, outputs=3, inplace=[(0, 0), (1, 1), (3, 2)],
    args=_MOMENTUM_ARGS, infer=_infer_momentum_sgd)
def momentum_sgd_update(ctx, grad, moment, lr, param):
    """MomentumSGD, then param -= adjusted gradient; outputs (adjusted gradient, new moment,
    param), the param output in place on the param input."""
    _infer_momentum_sgd(ctx, *map(_type_of, (grad, moment, lr, param)))
    adjusted, m_new = _momentum_step(ctx, grad, moment, lr)
    new_param = param.reshape(-1) - adjusted
    return adjusted.reshape(grad.shape), m_new.reshape(moment.shape), \
        new_param.reshape(param.shape)


# -- Adam

def _infer_adam(ctx, *ins):
    _check_float32(ctx, ins, range(5))
    _check_scalar(ctx, ins[4], 4, "learning rate")
    it = ins[5]
    if it.dtype is not None and it.dtype != np.dtype(np.int64):
        ctx.fail(f"iteration input '{ctx.inputs[5]}' must be int64, got {it.dtype}",
                 blob=ctx.inputs[5])
    _check_scalar(ctx, it, 5, "iteration input", exactly_one=False)
    _check_same_size(ctx, ins, 3, [0, 1, 2])
    return [TensorType(ins[i].shape, np.float32) for i in (0, 1, 2, 3)][:ctx.num_outputs]


def adam_correction(beta1: float, beta2: float, iteration: int) -> np.float32:
    """sqrt(1 - beta2^t) / (1 - beta1^t) at t = iteration + 1: Caffe2 computes it in double
    (std::pow of a float and an integer) and passes it on as a float."""
    t = float(iteration + 1)
    b1, b2 = float(_f32(beta1)), float(_f32(beta2))
    with np.errstate(all="ignore"):
        return np.float32(np.sqrt(np.float64(1.0) - b2 ** t) / (np.float64(1.0) - b1 ** t))


@op("Adam", inputs=6, outputs=(3, 4), inplace=[(0, 0), (1, 1), (2, 2)],
    args=[Arg("beta1", "float", 0.9), Arg("beta2", "float", 0.999),
          Arg("epsilon", "float", 1e-5)],
    infer=_infer_adam)
def adam(ctx, param, m1, m2, grad, lr, iteration):
    """Adam with Caffe2's bias correction at t = iter + 1 (iter: the int64 counter Iter
    writes, read from its first element):

        m1' = beta1 * m1 + (1 - beta1) * grad;  m2' = beta2 * m2 + (1 - beta2) * grad^2
        grad' = correction * m1' / (sqrt(m2') + epsilon);  param' = param + lr * grad'

    Outputs (param', m1', m2'[, grad']); lr is negative for descent, as brew's optimizer
    makes it. The optional effective gradient grad' does not include lr."""
    with np.errstate(all="ignore"):
        _infer_adam(ctx, *map(_type_of, (param, m1, m2, grad, lr, iteration)))
        b1, b2, eps = _f32(ctx.args.beta1), _f32(ctx.args.beta2), _f32(ctx.args.epsilon)
        corr = adam_correction(b1, b2, int(iteration.reshape(-1)[0]))
        g, lr = grad.reshape(-1), _scalar(lr)
        m1n = m1.reshape(-1) * b1 + g * (_f32(1) - b1)
        m2n = m2.reshape(-1) * b2 + g * g * (_f32(1) - b2)
        denom = np.sqrt(m2n) + eps
        if ctx.num_outputs == 3:   # adam_compute: lr * correction * m1' / denom
            new_param = param.reshape(-1) + lr * corr * m1n / denom
            outs = [new_param]
        else:                      # adam_compute_output_grad: the same in another order
            eff = corr * m1n / denom
            outs = [param.reshape(-1) + lr * eff]
        outs += [m1n, m2n] + ([eff] if ctx.num_outputs == 4 else [])
    shapes = [param.shape, m1.shape, m2.shape, grad.shape]
    return tuple(o.astype(np.float32, copy=False).reshape(s) for o, s in zip(outs, shapes))


# -- Adagrad

def _infer_adagrad(ctx, *ins):
    _check_float32(ctx, ins, range(4))
    # Caffe2 reads lr[0] without checking lr's size
    _check_scalar(ctx, ins[3], 3, "learning rate", exactly_one=False)
    _check_same_size(ctx, ins, 2, [1, 0])
    shapes = [ins[0].shape, ins[1].shape, ins[2].shape, ins[2].shape]
    return [TensorType(s, np.float32) for s in shapes][:ctx.num_outputs]


def adagrad_decayed_grad(grad, param, weight_decay) -> np.ndarray:
    """fma(weight_decay, param, grad), rounded once as C's fma does (the float32 product is
    exact in float64)."""
    if not weight_decay:
        return grad
    return (np.float64(_f32(weight_decay)) * param.astype(np.float64) +
            grad.astype(np.float64)).astype(np.float32)


@op("Adagrad", inputs=4, outputs=(2, 4), inplace=[(0, 0), (1, 1)],
    args=[Arg("epsilon", "float", 1e-5), Arg("decay", "float", 1.0,
                                              "the squared-gradient sum is decayed by it"),
          Arg("weight_decay", "float", 0.0, "L2 penalty: grad + weight_decay * param")],
    infer=_infer_adagrad)
def adagrad(ctx, param, moment, grad, lr):
    """AdaGrad with Caffe2 1.x's decay and weight_decay:

        g = grad + weight_decay * param;  moment' = decay * moment + g^2
        effective_lr = lr / (sqrt(moment') + epsilon);  update = effective_lr * g
        param' = param + update

    Outputs (param', moment'[, effective_lr[, update]]); with two outputs Caffe2 computes
    param + lr * g / (sqrt(moment') + epsilon), in that order."""
    with np.errstate(all="ignore"):
        _infer_adagrad(ctx, *map(_type_of, (param, moment, grad, lr)))
        eps, decay = _f32(ctx.args.epsilon), _f32(ctx.args.decay)
        lr, p = _scalar(lr), param.reshape(-1)
        g = adagrad_decayed_grad(grad.reshape(-1), p, ctx.args.weight_decay)
        h = decay * moment.reshape(-1) + g * g
        denom = np.sqrt(h) + eps
        if ctx.num_outputs == 2:
            outs = [p + lr * g / denom, h]
        else:
            elr = lr / denom
            update = elr * g
            outs = [p + update, h, elr, update]
    shapes = [param.shape, moment.shape, grad.shape, grad.shape]
    return tuple(o.astype(np.float32, copy=False).reshape(s)
                 for o, s in zip(outs[:ctx.num_outputs], shapes))
