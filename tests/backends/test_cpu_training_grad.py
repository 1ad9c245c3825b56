"""Cython kernels of the optimizer updates (MomentumSGD, MomentumSGDUpdate, Adam, Adagrad)
and of the training gradient ops (DropoutGrad, WeightedSumGradient), against the reference.

Each hypothesis example compiles a list of cases as one net (cpu_harness.check_cpu), in place
and out of place. A compiled training net is then run for several steps beside the same net
on the reference executor: the updates must land in the workspace's param and moment blobs
after every run (after the first run an in-place output's buffer is also its input's).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import config, core, workspace
from c2compile.errors import OpError
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
F32 = np.float32
sizes = st.sampled_from([(1,), (3,), (2, 3), (7, 5), (1, 1, 4), (0,)])


def arr(draw, shape, lo=-3.0, hi=3.0):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.uniform(lo, hi, shape).astype(F32)


def other_shape(draw, shape):
    """The same number of elements in another shape (Caffe2 compares sizes only)."""
    n = int(np.prod(shape))
    return draw(st.sampled_from([shape, (n,)]))


# ----------------------------------------------------------------------------- optimizers

@st.composite
def momentum_case(draw):
    shape = draw(sizes)
    update = draw(st.booleans())
    ins = [arr(draw, shape), arr(draw, other_shape(draw, shape)),
           np.array([draw(st.sampled_from([0.1, -0.5, 1.0]))], F32)]
    args = dict(momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
                nesterov=int(draw(st.booleans())))
    place = {k: k for k in (0, 1) if draw(st.booleans())}
    if update:
        ins.append(arr(draw, shape))
        place[2] = 3  # the param is always updated in place
    return Case("MomentumSGDUpdate" if update else "MomentumSGD", ins, args,
                outputs=3 if update else 2, inplace=place)


@st.composite
def adam_case(draw):
    shape = draw(sizes)
    ins = [arr(draw, shape), arr(draw, shape), arr(draw, other_shape(draw, shape), 0, 2),
           arr(draw, shape), np.array([draw(st.sampled_from([-0.01, -1.0, 0.5]))], F32),
           np.array([draw(st.sampled_from([0, 3, 10**6, 2**40]))], np.int64)]
    args = dict(beta1=draw(st.sampled_from([0.9, 0.5])),
                beta2=draw(st.sampled_from([0.999, 0.9])),
                epsilon=draw(st.sampled_from([1e-5, 1e-8, 0.1])))
    outputs = draw(st.sampled_from([3, 4]))
    place = {k: k for k in (0, 1, 2) if draw(st.booleans())}
    return Case("Adam", ins, args, outputs=outputs, inplace=place, rtol=1e-5, atol=1e-5)


@st.composite
def adagrad_case(draw):
    shape = draw(sizes)
    ins = [arr(draw, shape), arr(draw, shape, 0, 2), arr(draw, other_shape(draw, shape)),
           np.array([draw(st.sampled_from([-0.1, -1.0]))], F32)]
    args = dict(epsilon=draw(st.sampled_from([1e-5, 1e-2])),
                decay=draw(st.sampled_from([1.0, 0.9])),
                weight_decay=draw(st.sampled_from([0.0, 0.1])))
    place = {k: k for k in (0, 1) if draw(st.booleans())}
    return Case("Adagrad", ins, args, outputs=draw(st.sampled_from([2, 3, 4])), inplace=place)


@SETTINGS
@given(cases=st.lists(st.one_of(momentum_case(), adam_case(), adagrad_case()),
                      min_size=6, max_size=10))
def test_optimizer_kernels(cases):
    check_cpu(cases)


# ----------------------------------------------------------------------------- gradient ops

@st.composite
def dropout_grad_case(draw):
    shape = draw(sizes)
    is_test = draw(st.booleans())
    dy = arr(draw, shape)
    dy.reshape(-1)[:1] = draw(st.sampled_from([0.0, np.inf, np.nan]))
    ins = [dy]
    if not is_test or draw(st.booleans()):
        mask = np.random.default_rng(draw(st.integers(0, 99))).random(
            other_shape(draw, shape)) < 0.5
        ins.append(mask)
    args = dict(is_test=int(is_test), ratio=draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])))
    return Case("DropoutGrad", ins, args, inplace={0: 0} if draw(st.booleans()) else {})


@st.composite
def weighted_sum_grad_case(draw):
    shape = draw(sizes)
    pairs = draw(st.integers(1, 3))
    grad_on_w = draw(st.booleans())
    ins = [arr(draw, shape)]
    for _ in range(pairs):
        ins += [arr(draw, other_shape(draw, shape)), arr(draw, (1,))]
    return Case("WeightedSumGradient", ins, dict(grad_on_w=int(grad_on_w)),
                outputs=2 * pairs if grad_on_w else pairs)


@SETTINGS
@given(cases=st.lists(st.one_of(dropout_grad_case(), weighted_sum_grad_case()),
                      min_size=6, max_size=10))
def test_training_gradient_kernels(cases):
    check_cpu(cases)


# ----------------------------------------------------------------------------- training nets

def _training_net(name):
    """One training step for four params, each with one of the update rules brew's
    optimizers emit, in place: SGD (WeightedSum), momentum, Adam, Adagrad."""
    net = core.Net(name)
    net.Iter(["iter"], ["iter"])
    net.LearningRate(["iter"], ["lr"], base_lr=-0.1, policy="step", stepsize=2, gamma=0.5)
    net.Negative(["lr"], ["pos_lr"])
    # a gradient that changes every step, through the gradient ops of Dropout (test mode)
    # and WeightedSum
    net.WeightedSum(["g", "ONE", "w_sgd", "DECAY"], ["g"])
    net.DropoutGrad(["g"], ["g_drop"], is_test=1, ratio=0.5)
    net.WeightedSumGradient(["g_drop", "g", "ONE"], ["g2"])
    net.WeightedSum(["w_sgd", "ONE", "g2", "lr"], ["w_sgd"])
    net.MomentumSGDUpdate(["g2", "w_mom_m", "pos_lr", "w_mom"], ["g2", "w_mom_m", "w_mom"],
                          momentum=0.9, nesterov=1)
    net.Adam(["w_adam", "w_adam_m1", "w_adam_m2", "g_drop", "lr", "iter"],
             ["w_adam", "w_adam_m1", "w_adam_m2"], beta1=0.8, beta2=0.99)
    net.Adagrad(["w_ada", "w_ada_h", "g", "lr"], ["w_ada", "w_ada_h"], decay=0.9,
                weight_decay=0.01)
    return net


STATE = ["iter", "g", "w_sgd", "w_mom", "w_mom_m", "w_adam", "w_adam_m1", "w_adam_m2",
         "w_ada", "w_ada_h"]


def _feed(rng):
    shape = (4, 5)
    blobs = {"iter": np.zeros(1, np.int64), "ONE": np.ones(1, F32),
             "DECAY": np.array([0.01], F32), "g": rng.standard_normal(shape).astype(F32)}
    for name in ("w_sgd", "w_mom", "w_adam", "w_ada"):
        blobs[name] = rng.standard_normal(shape).astype(F32)
    for name in ("w_mom_m", "w_adam_m1", "w_adam_m2", "w_ada_h"):
        blobs[name] = np.zeros(shape, F32)
    for k, v in blobs.items():
        workspace.FeedBlob(k, v)


def test_compiled_training_net_updates_params_in_place():
    steps = 5
    history = {}
    for backend in ("reference", "cpu"):
        workspace.SwitchWorkspace(backend, True)
        workspace.ResetWorkspace()
        _feed(np.random.default_rng(0))
        net = _training_net(f"train_{backend}")
        with config.patch(backend=backend):
            workspace.CreateNet(net)
        history[backend] = []
        for _ in range(steps):
            workspace.RunNet(net.Name())
            history[backend].append({b: workspace.FetchBlob(b) for b in STATE})
        if backend == "cpu":
            assert_compiled(net.Name())
    workspace.SwitchWorkspace("default")
    for step, (ref, got) in enumerate(zip(history["reference"], history["cpu"])):
        assert int(got["iter"][0]) == step + 1
        for b in STATE:
            np.testing.assert_allclose(got[b], ref[b], rtol=1e-5, atol=1e-6,
                                       err_msg=f"blob {b} after run {step + 1}")
    # the params did move, every run
    for b in ("w_sgd", "w_mom", "w_adam", "w_ada"):
        for before, after in zip(history["cpu"], history["cpu"][1:]):
            assert not np.array_equal(before[b], after[b]), b


def test_fetched_params_are_not_overwritten_by_later_runs():
    """A fetched param is a copy: the next in-place run does not change it."""
    _feed(np.random.default_rng(1))
    net = _training_net("train_fetch")
    with config.patch(backend="cpu"):
        workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    first = workspace.FetchBlob("w_mom")
    kept = first.copy()
    workspace.RunNet(net.Name())
    np.testing.assert_array_equal(first, kept)
    assert not np.array_equal(workspace.FetchBlob("w_mom"), kept)
    assert_compiled(net.Name())


def test_sgd_net_with_atomic_iter():
    """brew's SGD step: AtomicIter, LearningRate and the in-place WeightedSum update, all
    in one compiled segment (which holds AtomicIter's mutex while it runs)."""
    workspace.RunOperatorOnce(core.CreateOperator("CreateMutex", [], ["mutex"]))
    workspace.FeedBlob("it", np.zeros(1, np.int64))
    workspace.FeedBlob("ONE", np.ones(1, F32))
    w0 = np.arange(6, dtype=F32).reshape(2, 3)
    grad = np.full((2, 3), 0.5, F32)
    workspace.FeedBlob("w", w0)
    workspace.FeedBlob("w_grad", grad)
    net = core.Net("sgd_step")
    net.AtomicIter(["mutex", "it"], ["it"])
    net.LearningRate(["it"], ["lr"], base_lr=-0.1, policy="step", stepsize=1, gamma=0.5)
    net.WeightedSum(["w", "ONE", "w_grad", "lr"], ["w"])
    with config.patch(backend="cpu"):
        workspace.CreateNet(net)
    segments = workspace._ws().nets["sgd_step"].compiled.segments
    assert [(s.compiled, [o.type for o in s.ops]) for s in segments] == [
        (True, ["AtomicIter", "LearningRate", "WeightedSum"])]
    assert segments[0].host_reads == ["mutex"] and "mutex" not in segments[0].inputs
    want = w0.copy()
    for step in range(1, 4):
        workspace.RunNet("sgd_step")
        want = want + F32(-0.1 * 0.5 ** step) * grad
        np.testing.assert_allclose(workspace.FetchBlob("w"), want, rtol=1e-6)
        assert workspace.FetchBlob("it")[0] == step
    # a tensor where the mutex should be: an error naming the op, nothing written
    workspace.FeedBlob("mutex", np.zeros(1, F32))
    with pytest.raises(OpError, match="not the mutex AtomicIter takes") as e:
        workspace.RunNet("sgd_step")
    assert e.value.op_type == "AtomicIter" and e.value.blob == "mutex"
    assert workspace.FetchBlob("it")[0] == 3
