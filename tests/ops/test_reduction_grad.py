"""Gradients of the reductions and losses: the ops Caffe2 emits (pinned), their values against
PyTorch autograd and finite differences, and Caffe2's odd corners as literal values.

The pinned structures and values were read from Caffe2 1.x (the Caffe2 bundled with PyTorch
1.10.2): `core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in op.output])`, then
running the forward and gradient ops.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from c2compile import core
from c2compile import hypothesis_test_util as hu
from c2compile.errors import GradientError, OpError, ShapeError, UnsupportedError
from c2compile.ops.testing import check_gradient, gradient_ops, run, run_gradient

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)
F32 = np.float32
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2"]


def _rng(seed):
    return np.random.default_rng(seed)


def _structure(op_type, inputs, outputs=1, **args):
    """[(type, inputs, outputs, [(arg, value)])] of the gradient ops, and the input gradients."""
    _, ops, g_input = gradient_ops(op_type, inputs, outputs, **args)
    assert all(o.is_gradient_op for o in ops)

    def value(a):
        return list(a.ints) if a.ints else a.f if a.HasField("f") else a.i
    return ([(o.type, list(o.input), list(o.output), [(a.name, value(a)) for a in o.arg])
             for o in ops], g_input)


# ----------------------------------------------------------------------------- what Caffe2 emits

@pytest.mark.parametrize("op_type", REDUCE)
def test_reduce_gradient_ops_as_caffe2(op_type):
    ops, g_input = _structure(op_type, ["X"], ["Y"], axes=[1, 2], keepdims=0)
    assert ops == [(op_type + "Gradient", ["Y_grad", "X", "Y"], ["X_grad"],
                    [("axes", [1, 2]), ("keepdims", 0)])]
    assert g_input == ["X_grad"]


def test_loss_gradient_ops_as_caffe2():
    assert _structure("SumElements", ["X"], ["Y"], average=1) == (
        [("SumElementsGradient", ["X", "Y_grad"], ["X_grad"], [("average", 1)])], ["X_grad"])
    assert _structure("AveragedLoss", ["X"], ["Y"]) == (
        [("AveragedLossGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"])
    assert _structure("SquaredL2Distance", ["X", "Y"], ["Z"]) == (
        [("SquaredL2DistanceGradient", ["X", "Y", "Z_grad"], ["X_grad", "Y_grad"], [])],
        ["X_grad", "Y_grad"])
    for op_type in ("LabelCrossEntropy", "CrossEntropy"):
        assert _structure(op_type, ["X", "L"], ["Y"]) == (
            [(op_type + "Gradient", ["X", "L", "Y_grad"], ["X_grad"], [])], ["X_grad", None])


def test_softmax_with_loss_gradient_ops_as_caffe2():
    assert _structure("SoftmaxWithLoss", ["X", "L"], ["P", "loss"]) == (
        [("SoftmaxWithLossGradient", ["X", "L", "P", "loss_grad"], ["X_grad"], [])],
        ["X_grad", None])
    ops, g_input = _structure("SoftmaxWithLoss", ["X", "L", "w"], ["P", "loss"], scale=2.0,
                              label_prob=1, only_loss=1, axis=2)
    assert ops == [("SoftmaxWithLossGradient", ["X", "L", "w", "P", "loss_grad"], ["X_grad"],
                    [("scale", 2.0), ("label_prob", 1), ("only_loss", 1), ("axis", 2)])]
    assert g_input == ["X_grad", None, None]


@pytest.mark.parametrize("op_type,inputs", [
    ("Accuracy", ["X", "L"]), ("ArgMax", ["X"]), ("ArgMin", ["X"]), ("SumElementsInt", ["X"]),
    ("SumSqrElements", ["X"])])
def test_ops_caffe2_gives_no_gradient_are_errors_naming_them(op_type, inputs):
    """Caffe2: SHOULD_NOT_DO_GRADIENT (Accuracy, ArgMax/Min, SumElementsInt), or no gradient
    registered (SumSqrElements): asking for one fails."""
    with pytest.raises(GradientError, match=op_type) as e:
        gradient_ops(op_type, inputs, ["Y"])
    assert e.value.op_type == op_type


# ----------------------------------------------------------------------------- Reduce* values

def _reduce_data(op_type, seed, shape):
    """float32 data with no kink within a finite-difference step: distinct values at least
    0.1 apart for Max/Min (no ties), |x| >= 0.1 for L1 (and L2: norms away from 0)."""
    rng = _rng(seed)
    size = int(np.prod(shape, dtype=np.int64))
    if op_type in ("ReduceMax", "ReduceMin"):
        return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape).astype(F32)
    x = rng.standard_normal(shape)
    if op_type in ("ReduceL1", "ReduceL2"):
        x = np.sign(x + (x == 0)) * (0.1 + np.abs(x))
    return x.astype(F32)


_TORCH_REDUCE = {
    "ReduceSum": lambda x, d, k: x.sum(dim=d, keepdim=k),
    "ReduceMean": lambda x, d, k: x.mean(dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: x.amax(dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: x.amin(dim=d, keepdim=k),
    "ReduceL1": lambda x, d, k: x.abs().sum(dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.linalg.vector_norm(x, dim=d, keepdim=k),
}


@st.composite
def reduce_case(draw):
    op_type = draw(st.sampled_from(REDUCE))
    shape = draw(st.lists(dim, max_size=4))
    args = dict(keepdims=int(draw(st.booleans())))
    axes = tuple(range(len(shape)))
    if shape and draw(st.booleans()):
        axes = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
        args["axes"] = [draw(st.sampled_from([a, a - len(shape)])) for a in axes]
    return op_type, _reduce_data(op_type, draw(seeds), shape), axes, args


@SETTINGS
@given(case=reduce_case())
def test_reduce_gradients_match_torch_and_finite_differences(case):
    op_type, x, axes, args = case
    fn = _TORCH_REDUCE[op_type]
    check_gradient(op_type, [x], torch_fn=lambda t: fn(t, axes, bool(args["keepdims"])), **args)


def test_reduce_gradients_odd_corners_as_caffe2():
    """Caffe2 1.10.2, X below reduced over axis 1 (keepdims=0), dY = [1, 2, 3]: ties all get
    dY, ReduceL1 treats |x| <= 1e-12 as 0, ReduceL2 passes dY itself where the norm is 0."""
    x = np.array([[0., 0., 0.], [1., 1., -2.], [1e-13, 0, 3]], F32)
    dy = np.array([1., 2., 3.], F32)
    want = {
        "ReduceL1": [[0, 0, 0], [2, 2, -2], [0, 0, 3]],
        "ReduceL2": [[1, 1, 1], [0.8164965510368347, 0.8164965510368347, -1.6329931020736694],
                     [9.9999998245167e-14, 0, 3]],
        "ReduceMax": [[1, 1, 1], [2, 2, 0], [0, 0, 3]],
        "ReduceMin": [[1, 1, 1], [0, 0, 2], [0, 3, 0]],
        "ReduceMean": [[0.3333333432674408] * 3, [0.6666666865348816] * 3, [1, 1, 1]],
        "ReduceSum": [[1, 1, 1], [2, 2, 2], [3, 3, 3]],
    }
    for op_type, dx in want.items():
        _, (got,) = run_gradient(op_type, [x], output_grads=[dy], axes=[1], keepdims=0)
        np.testing.assert_array_equal(got, np.array(dx, F32), err_msg=op_type)
    # a NaN maximum matches nothing: dX = 0 (Caffe2: X [[nan, 1]], dY [5] -> [[0, 0]])
    _, (got,) = run_gradient("ReduceMax", [np.array([[np.nan, 1.]], F32)],
                             output_grads=[np.array([5.], F32)], axes=[1], keepdims=0)
    np.testing.assert_array_equal(got, [[0., 0.]])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_reduce_sum_max_min_gradients_keep_the_input_dtype(dtype):
    x = np.array([[3, 1, 3], [0, -2, 5]], dtype)
    dy = np.array([[7], [4]], dtype)
    _, (dx,) = run_gradient("ReduceSum", [x], output_grads=[dy], axes=[1])
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, [[7, 7, 7], [4, 4, 4]])
    _, (dx,) = run_gradient("ReduceMax", [x], output_grads=[dy], axes=[-1])
    np.testing.assert_array_equal(dx, [[7, 0, 7], [0, 0, 4]])
    _, (dx,) = run_gradient("ReduceMin", [x], output_grads=[dy], axes=[1])
    np.testing.assert_array_equal(dx, [[0, 7, 0], [0, 4, 0]])


def test_reduce_gradient_of_an_empty_input_is_empty():
    x = np.zeros((3, 0), F32)
    for op_type in REDUCE:
        _, (dx,) = run_gradient(op_type, [x], axes=[1], keepdims=0)
        assert dx.shape == (3, 0) and dx.dtype == F32


def test_reduce_gradient_bad_inputs_name_the_op_and_blob():
    x = np.ones((2, 3), F32)
    with pytest.raises(ShapeError, match=r"'dY'\[3\] does not hold the 2 values") as e:
        run("ReduceSumGradient", [np.ones(3, F32), x, np.ones(2, F32)], axes=[1],
            input_names=["dY", "X", "Y"])
    assert e.value.op_type == "ReduceSumGradient" and e.value.blob == "dY"
    with pytest.raises(ShapeError, match="is int32 but X is float32"):
        run("ReduceMaxGradient", [np.ones(2, np.int32), x, np.ones(2, F32)], axes=[1])
    with pytest.raises(ShapeError, match="dtype int32"):
        run("ReduceMeanGradient", [np.ones(2, np.int32), x.astype(np.int32),
                                   np.ones(2, np.int32)], axes=[1])


# ----------------------------------------------------------------------------- whole-tensor sums

@SETTINGS
@given(shape=st.lists(dim, max_size=3), average=st.booleans(), seed=seeds)
def test_sum_elements_and_averaged_loss_gradients(shape, average, seed):
    x = _rng(seed).standard_normal(shape).astype(F32)
    check_gradient("SumElements", [x], average=int(average),
                   torch_fn=lambda t: t.mean() if average else t.sum())
    check_gradient("AveragedLoss", [x], torch_fn=lambda t: t.mean())


def test_sum_gradients_pinned_and_empty():
    x = np.zeros((2, 3), F32)
    g = np.array(3.0, F32)
    for op_type, args in (("SumElements", dict(average=1)), ("AveragedLoss", {})):
        _, (dx,) = run_gradient(op_type, [x], output_grads=[g], **args)
        np.testing.assert_array_equal(dx, np.full((2, 3), 0.5, F32))   # Caffe2 1.10.2
        _, (dx,) = run_gradient(op_type, [np.zeros((0, 2), F32)], output_grads=[g], **args)
        assert dx.shape == (0, 2)
    with pytest.raises(ShapeError, match="one gradient value") as e:
        run("SumElementsGradient", [x, np.ones(2, F32)], input_names=["X", "dY"])
    assert e.value.blob == "dY"


# ----------------------------------------------------------------------------- distances, entropies

@SETTINGS
@given(shape=st.lists(dim, max_size=3), seed=seeds)
def test_squared_l2_distance_gradient(shape, seed):
    rng = _rng(seed)
    x, y = (rng.standard_normal(shape).astype(F32) for _ in range(2))
    n = shape[0] if shape else 1
    check_gradient("SquaredL2Distance", [x, y],
                   torch_fn=lambda a, b: 0.5 * ((a - b) ** 2).reshape(n, -1).sum(1))


def test_squared_l2_distance_gradient_pinned():
    x = np.array([[1., 2., 3.], [0.5, 0.5, -1.]], F32)
    _, (dx, dy) = run_gradient("SquaredL2Distance", [x, x * 0.5],
                               output_grads=[np.array([1., 2.], F32)])
    np.testing.assert_array_equal(dx, [[0.5, 1., 1.5], [0.5, 0.5, -1.]])   # Caffe2 1.10.2
    np.testing.assert_array_equal(dy, -dx)
    with pytest.raises(ShapeError, match="one value per row"):
        run("SquaredL2DistanceGradient", [x, x, np.ones((2, 1), F32)], 2)


@st.composite
def xent_case(draw):
    """Probabilities X in [0.2, 1] as [N, ...] (or 1-D: one row), labels for them."""
    shape = draw(st.lists(dim, min_size=1, max_size=3))
    rng = _rng(draw(seeds))
    x = rng.uniform(0.2, 1.0, shape).astype(F32)
    n = shape[0] if len(shape) > 1 else 1
    d = x.size // n
    label = rng.integers(0, d, n).astype(np.int32)
    if draw(st.booleans()):
        label = label.reshape(n, 1)
    soft = rng.uniform(0, 1, (n, d)).astype(F32)
    if d == 1 and draw(st.booleans()):
        soft = soft.reshape(n)
    return x, label, soft, n, d


@SETTINGS
@given(case=xent_case())
def test_cross_entropy_gradients(case):
    x, label, soft, n, d = case
    rows = torch.arange(n)
    check_gradient("LabelCrossEntropy", [x, label], torch_fn=lambda p, l: -torch.log(
        p.reshape(n, d)[rows, l.reshape(n).long()]))
    check_gradient("CrossEntropy", [x, soft], torch_fn=lambda p, t: -(
        t.reshape(n, d) * torch.log(p.reshape(n, d))).sum(1))


def test_cross_entropy_gradients_pinned():
    """Caffe2 1.10.2: probabilities are clipped at 1e-20, so X = 0 gives -dY * 1e20."""
    x = np.array([[0.0, 0.5], [0.3, 0.7]], F32)
    dy = np.array([1., 2.], F32)
    _, (dx, _) = run_gradient("LabelCrossEntropy", [x, np.array([0, 1], np.int32)],
                              output_grads=[dy])
    np.testing.assert_allclose(dx, [[-1e20, 0], [0, -2.857143]], rtol=1e-6)
    _, (dx, _) = run_gradient("CrossEntropy", [x, np.array([[0.5, 0.5], [0, 1]], F32)],
                              output_grads=[dy])
    np.testing.assert_allclose(dx, [[-5e19, -1], [0, -2.857143]], rtol=1e-6)


def test_label_cross_entropy_gradient_checks_labels():
    """Caffe2's gradient writes out of bounds for a bad label; here it is an error."""
    x = np.full((2, 3), 0.5, F32)
    with pytest.raises(OpError, match=r"label 3 is outside the valid range \[0, 3\)") as e:
        run("LabelCrossEntropyGradient", [x, np.array([0, 3], np.int32), np.ones(2, F32)],
            input_names=["X", "L", "dY"])
    assert e.value.blob == "L" and e.value.op_type == "LabelCrossEntropyGradient"


# ----------------------------------------------------------------------------- SoftmaxWithLoss

@st.composite
def swl_case(draw):
    """Logits of any rank split at any axis, int or probability labels, maybe weights."""
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    axis = draw(st.integers(1 if len(shape) > 1 else 0, len(shape) - 1))
    args = dict(axis=draw(st.sampled_from([axis, axis - len(shape)])),
                scale=draw(st.sampled_from([1.0, 0.5, 2.0])),
                average_by_batch_size=int(draw(st.booleans())))
    rng = _rng(draw(seeds))
    n, d = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    x = rng.standard_normal(shape).astype(F32)
    if len(shape) > 1 and draw(st.booleans()):   # probability labels are at least 2-D
        args["label_prob"] = 1
        t = rng.uniform(0.05, 1, (n, d))
        label = (t / t.sum(1, keepdims=True)).astype(F32).reshape(shape)
    else:
        label = rng.integers(0, d, n).astype(np.int32)
        label = label.reshape(draw(st.sampled_from([shape[:axis], shape[:axis] + [1]])))
    ins = [x, label]
    if draw(st.booleans()):
        ins.append(rng.uniform(0.1, 2.0, n).astype(F32))
    return ins, args, n, d


@SETTINGS
@given(case=swl_case(), seed=seeds)
def test_softmax_with_loss_gradient_matches_torch_and_finite_differences(case, seed):
    ins, args, n, d = case

    def torch_fn(x, t, *w):
        logp = torch.log_softmax(x.reshape(n, d), 1)
        if args.get("label_prob"):
            losses = -(t.reshape(n, d) * logp).sum(1)
        else:
            losses = -logp[torch.arange(n), t.reshape(n).long()]
        weight = w[0] if w else torch.ones(n, dtype=torch.float64)
        total = n if args["average_by_batch_size"] else weight.sum()
        return logp.exp().reshape(x.shape), args["scale"] * (losses * weight).sum() / total

    dloss = np.array(_rng(seed).uniform(0.5, 2), F32)
    check_gradient("SoftmaxWithLoss", ins, 2, torch_fn=torch_fn, output_grads=[None, dloss],
                   **args)


# Caffe2 1.10.2: X and labels below, dloss = 2, scale = 3: with weights summing to <= 0 the
# gradient is w_i (P - onehot) unscaled (and the loss 0 only when the sum is exactly 0).
SWL_X = np.array([[1., 2., 3.], [0.5, 0.5, -1.]], F32)
SWL_PINNED = [
    (dict(scale=3.0), [2, 0], [1., -1.], 0.0,
     [[0.09003058, 0.24472849, -0.334759], [0.5501838, -0.4498162, -0.10036755]]),
    (dict(scale=3.0), [2, 0], [2., -3.], 4.7446103,
     [[0.18006116, 0.48945698, -0.669518], [1.6505513, -1.3494486, -0.30110264]]),
    (dict(scale=0.5, label_prob=1, average_by_batch_size=1),
     [[0.25, 0.25, 0.5], [1, 0, 0]], [2., 3.], 1.1779902,
     [[-0.15996942, -0.00527152, 0.16524094], [-0.82527566, 0.6747243, 0.15055135]]),
]


@pytest.mark.parametrize("args,label,weight,loss,dx", SWL_PINNED)
def test_softmax_with_loss_gradient_pinned(args, label, weight, loss, dx):
    label = np.array(label, F32 if args.get("label_prob") else np.int32)
    outs, grads = run_gradient("SoftmaxWithLoss", [SWL_X, label, np.array(weight, F32)], 2,
                               output_grads=[None, np.array(2.0, F32)], **args)
    np.testing.assert_allclose(outs[1], loss, rtol=1e-6)
    np.testing.assert_allclose(grads[0], np.array(dx, F32), rtol=1e-6, atol=1e-7)
    assert grads[1] is None and grads[2] is None


def test_softmax_with_loss_gradient_bad_inputs():
    x, p = SWL_X, np.full((2, 3), 1 / 3, F32)
    g = np.array(1.0, F32)
    with pytest.raises(OpError, match="outside the valid range") as e:
        run("SoftmaxWithLossGradient", [x, np.array([0, 5], np.int32), p, g],
            input_names=["X", "L", "P", "dl"])
    assert e.value.blob == "L" and e.value.op_type == "SoftmaxWithLossGradient"
    with pytest.raises(ShapeError, match="logits' shape") as e:
        run("SoftmaxWithLossGradient", [x, np.array([0, 1], np.int32), p.T.copy(), g],
            input_names=["X", "L", "P", "dl"])
    assert e.value.blob == "P"
    with pytest.raises(UnsupportedError, match="spatial"):
        run("SoftmaxWithLossGradient", [x, np.array([0, 1], np.int32), p, g], spatial=1)


# ----------------------------------------------------------------------------- Caffe2-style test

class TestLossGradientChecks(hu.HypothesisTestCase):
    @settings(max_examples=10, deadline=None)
    @given(n=dim, d=dim, seed=seeds, **hu.gcs_cpu_only)
    def test_squared_l2_distance(self, n, d, seed, gc, dc):
        rng = _rng(seed)
        X, Y = (rng.standard_normal((n, d)).astype(F32) for _ in range(2))
        op = core.CreateOperator("SquaredL2Distance", ["X", "Y"], ["Z"])
        for i in range(2):
            self.assertGradientChecks(gc, op, [X, Y], i, [0])

    @settings(max_examples=10, deadline=None)
    @given(n=dim, d=dim, seed=seeds, **hu.gcs_cpu_only)
    def test_softmax_with_loss(self, n, d, seed, gc, dc):
        rng = _rng(seed)
        X = rng.standard_normal((n, d)).astype(F32)
        label = rng.integers(0, d, n).astype(np.int32)
        op = core.CreateOperator("SoftmaxWithLoss", ["X", "label"], ["P", "loss"])
        self.assertGradientChecks(gc, op, [X, label], 0, [1])
