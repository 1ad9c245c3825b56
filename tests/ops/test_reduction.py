"""Reductions, losses, Accuracy and ArgMax/ArgMin against PyTorch CPU and pinned Caffe2 facts.

The pinned facts were checked against Caffe2 1.x (the Caffe2 bundled with PyTorch 1.10.2).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from c2compile.errors import ArgumentError, OpError, ShapeError, UnsupportedError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run

SETTINGS = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)
shapes = st.lists(dim, max_size=4)


def _rng(seed):
    return np.random.default_rng(seed)


def _randn(seed, shape, dtype=np.float32):
    return _rng(seed).standard_normal(shape).astype(dtype)


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _close(ours, ref, rtol=1e-5, atol=1e-5, dtype=np.float32):
    assert ours.dtype == dtype, ours.dtype
    ref = np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)


def _names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


# ----------------------------------------------------------------------------- Reduce*

@st.composite
def _reduce_case(draw):
    shape = draw(shapes)
    nd = len(shape)
    if nd and draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        given = [a - nd if draw(st.booleans()) else a for a in axes]   # negative too
    else:
        axes, given = list(range(nd)), None
    return shape, sorted(axes), given, draw(st.booleans())


def _expected_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


_TORCH_REDUCE = {
    "ReduceSum": lambda x, d: torch.sum(x, dim=d, keepdim=True),
    "ReduceMean": lambda x, d: torch.mean(x, dim=d, keepdim=True),
    "ReduceMax": lambda x, d: torch.amax(x, dim=d, keepdim=True),
    "ReduceMin": lambda x, d: torch.amin(x, dim=d, keepdim=True),
    "ReduceL1": lambda x, d: torch.linalg.vector_norm(x, 1, dim=d or None, keepdim=True),
    "ReduceL2": lambda x, d: torch.linalg.vector_norm(x, 2, dim=d or None, keepdim=True),
}


@SETTINGS
@given(case=_reduce_case(), op_type=st.sampled_from(sorted(_TORCH_REDUCE)), seed=seeds)
def test_reduce_float_matches_torch(case, op_type, seed):
    shape, axes, given_axes, keepdims = case
    x = _randn(seed, shape)
    args = {} if given_axes is None else dict(axes=given_axes)
    (y,) = run(op_type, [x], keepdims=int(keepdims), **args)
    # A 0-d input has no axes: torch reduces nothing too (the norms still take abs, as Caffe2).
    ref = _TORCH_REDUCE[op_type](_t(x), tuple(axes))
    _close(y, ref.reshape(_expected_shape(shape, axes, keepdims)))


@SETTINGS
@given(case=_reduce_case(), op_type=st.sampled_from(["ReduceSum", "ReduceMax", "ReduceMin"]),
       dtype=st.sampled_from([np.int32, np.int64, np.float64]), seed=seeds)
def test_reduce_other_dtypes(case, op_type, dtype, seed):
    """ReduceSum/Max/Min also take int32, int64 and double, and keep the dtype."""
    shape, axes, given_axes, keepdims = case
    x = _rng(seed).integers(-50, 50, shape).astype(dtype)
    args = {} if given_axes is None else dict(axes=given_axes)
    (y,) = run(op_type, [x], keepdims=int(keepdims), **args)
    ref = _TORCH_REDUCE[op_type](torch.from_numpy(x), tuple(axes))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref.numpy().reshape(_expected_shape(shape, axes, keepdims)))


def test_reduce_pinned_facts():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    # default: every axis, keepdims=1
    (y,) = run("ReduceSum", [x])
    assert y.shape == (1, 1) and y[0, 0] == 15
    # every axis without keepdims: a 0-d tensor
    (y,) = run("ReduceSum", [x], keepdims=0)
    assert y.shape == () and y == 15
    # an empty axes list also means every axis
    (y,) = run("ReduceMean", [x], axes=[], keepdims=0)
    assert y.shape == () and y == 2.5
    # 0-d input: nothing to reduce (the norms still take the absolute value)
    (y,) = run("ReduceSum", [np.array(3.0, np.float32)])
    assert y.shape == () and y == 3
    (y,) = run("ReduceL1", [np.array(-3.0, np.float32)])
    assert y.shape == () and y == 3
    # empty inputs give Caffe2's initial values
    e = np.zeros((0, 3), np.float32)
    for op_type, value in [("ReduceSum", 0), ("ReduceMean", 0), ("ReduceL2", 0),
                           ("ReduceMax", np.finfo(np.float32).min),
                           ("ReduceMin", np.finfo(np.float32).max)]:
        (y,) = run(op_type, [e], axes=[0])
        np.testing.assert_array_equal(y, np.full((1, 3), value, np.float32))
    (y,) = run("ReduceMax", [np.zeros((2, 0), np.int32)], axes=[1], keepdims=0)
    np.testing.assert_array_equal(y, np.full((2,), np.iinfo(np.int32).min, np.int32))
    # reducing only over other axes of an empty input gives an empty output
    (y,) = run("ReduceSum", [e], axes=[1])
    assert y.shape == (0, 1)


@pytest.mark.parametrize("op_type,x,args,cls", [
    ("ReduceSum", np.ones((2, 3), np.float32), dict(axes=[2]), ArgumentError),
    ("ReduceSum", np.ones((2, 3), np.float32), dict(axes=[-3]), ArgumentError),
    ("ReduceMax", np.ones((2, 3), np.float32), dict(axes=[1, -1]), ArgumentError),  # repeated
    ("ReduceSum", np.ones((2, 3), np.float32), dict(axis=1), ArgumentError),   # unknown arg
    ("ReduceSum", np.ones((), np.float32), dict(axes=[0]), ArgumentError),
    ("ReduceMean", np.ones((2, 3), np.int32), {}, ShapeError),      # float-only in Caffe2
    ("ReduceMean", np.ones((2, 3), np.float64), {}, ShapeError),
    ("ReduceL1", np.ones((2, 3), np.int64), {}, ShapeError),
    ("ReduceSum", np.ones((2, 3), np.bool_), {}, ShapeError),
])
def test_reduce_bad_inputs(op_type, x, args, cls):
    with pytest.raises(cls) as err:
        run(op_type, [x], **args)
    _names_op(err, op_type)


@pytest.mark.parametrize("op_type", ["ReduceSum", "ReduceMean", "SumElements", "AveragedLoss",
                                     "ArgMax"])
def test_no_in_place(op_type):
    with pytest.raises(ArgumentError) as err:
        run(op_type, [np.ones((2, 2), np.float32)], outputs=["in0"])
    _names_op(err, op_type)


def test_reduce_infer():
    (t,) = infer("ReduceMean", [TensorType((2, 3, 4), np.float32)], axes=[0, -1], keepdims=0)
    assert t == TensorType((3,), np.float32)
    (t,) = infer("ReduceSum", [TensorType(None, np.int64)])
    assert t.shape is None and t.dtype == np.int64


# ----------------------------------------------------------------------------- whole-tensor sums

@SETTINGS
@given(shape=shapes, seed=seeds, average=st.booleans())
def test_sum_elements_and_averaged_loss(shape, seed, average):
    x = _randn(seed, shape)
    tx = _t(x)
    (y,) = run("SumElements", [x], average=int(average))
    _close(y, (tx.mean() if average else tx.sum()).reshape(()))
    (y,) = run("SumSqrElements", [x], average=int(average))
    _close(y, ((tx * tx).mean() if average else (tx * tx).sum()).reshape(()))
    (y,) = run("AveragedLoss", [x])
    _close(y, tx.mean().reshape(()))
    xi = _rng(seed).integers(-100, 100, shape).astype(np.int32)
    (y,) = run("SumElementsInt", [xi])
    assert y.shape == () and y.dtype == np.int32 and y == torch.from_numpy(xi).sum().item()


def test_sum_elements_pinned_facts():
    empty = np.zeros((0, 3), np.float32)
    for op_type, args in [("SumElements", {}), ("SumElements", dict(average=1)),
                          ("AveragedLoss", {}), ("SumSqrElements", dict(average=1))]:
        (y,) = run(op_type, [empty], **args)      # averaging nothing gives 0, not NaN
        assert y.shape == () and y.dtype == np.float32 and y == 0
    with pytest.raises(ShapeError) as err:        # SumElements is float-only; see SumElementsInt
        run("SumElements", [np.ones(3, np.int32)])
    _names_op(err, "SumElements")
    with pytest.raises(ShapeError) as err:
        run("SumElementsInt", [np.ones(3, np.float32)])
    _names_op(err, "SumElementsInt")
    with pytest.raises(ArgumentError) as err:     # AveragedLoss always averages: no argument
        run("AveragedLoss", [np.ones(3, np.float32)], average=0)
    _names_op(err, "AveragedLoss")


# ----------------------------------------------------------------------------- SquaredL2Distance

@SETTINGS
@given(shape=shapes, seed=seeds)
def test_squared_l2_distance_matches_torch(shape, seed):
    x, y = _randn(seed, shape), _randn(seed + 1, shape)
    (z,) = run("SquaredL2Distance", [x, y])
    n = shape[0] if shape else 1
    ref = 0.5 * ((_t(x) - _t(y)) ** 2).reshape(n, -1).sum(dim=1)
    _close(z, ref)


def test_squared_l2_distance_bad_inputs():
    with pytest.raises(ShapeError) as err:    # no broadcasting
        run("SquaredL2Distance", [np.ones((2, 3), np.float32), np.ones((1, 3), np.float32)])
    _names_op(err, "SquaredL2Distance")
    with pytest.raises(ShapeError) as err:
        run("SquaredL2Distance", [np.ones((2, 3), np.float32), np.ones((2, 3, 1), np.float32)])
    _names_op(err, "SquaredL2Distance")
    with pytest.raises(ShapeError) as err:
        run("SquaredL2Distance", [np.ones(3), np.ones(3)])
    _names_op(err, "SquaredL2Distance")


# ----------------------------------------------------------------------------- cross entropies

def _probs(seed, n, d):
    return F.softmax(_t(_randn(seed, (n, d)) * 3), dim=1).numpy().astype(np.float32)


@SETTINGS
@given(n=dim, d=dim, seed=seeds, col=st.booleans(), zero=st.booleans())
def test_label_cross_entropy_matches_torch(n, d, seed, col, zero):
    x = _probs(seed, n, d)
    if zero:
        x[0, :] = 0    # clipped at 1e-20: -log(1e-20) = 46.0517
    label = _rng(seed).integers(0, d, n).astype(np.int32)
    (y,) = run("LabelCrossEntropy", [x, label.reshape(n, 1) if col else label])
    ref = F.nll_loss(torch.log(_t(x).clamp_min(1e-20)), torch.from_numpy(label).long(),
                     reduction="none")
    _close(y, ref)


def test_label_cross_entropy_shapes():
    # A 1-D X is one row; extra dims of X flatten into D.
    x = np.array([0.2, 0.5, 0.3], np.float32)
    (y,) = run("LabelCrossEntropy", [x, np.array([1], np.int32)])
    _close(y, np.array([-np.log(0.5)]))
    x3 = np.full((2, 3, 2), 0.25, np.float32)
    (y,) = run("LabelCrossEntropy", [x3, np.array([0, 5], np.int32)])
    _close(y, np.full(2, -np.log(0.25)))


@pytest.mark.parametrize("x_shape,label,cls", [
    ((2, 3), np.array([0, 3], np.int32), OpError),             # label out of range
    ((2, 3), np.array([-1, 0], np.int32), OpError),
    ((2, 3), np.array([0, 1], np.int64), ShapeError),          # Caffe2 reads int32 only
    ((2, 3), np.array([0, 1, 2], np.int32), ShapeError),       # wrong length
    ((2, 3), np.array([[0, 1], [1, 1]], np.int32), ShapeError),
    ((), np.array([0], np.int32), ShapeError),                 # 0-d X
])
def test_label_cross_entropy_bad_inputs(x_shape, label, cls):
    with pytest.raises(cls) as err:
        run("LabelCrossEntropy", [np.full(x_shape, 0.5, np.float32), label])
    _names_op(err, "LabelCrossEntropy")


@SETTINGS
@given(n=dim, d=dim, seed=seeds)
def test_cross_entropy_matches_torch(n, d, seed):
    x, t = _probs(seed, n, d), _probs(seed + 1, n, d)
    (y,) = run("CrossEntropy", [x, t])
    # torch's soft-target cross entropy over log-probabilities (log_softmax of log x is log x)
    ref = F.cross_entropy(torch.log(_t(x).clamp_min(1e-20)), _t(t), reduction="none")
    _close(y, ref, rtol=1e-4)


def test_cross_entropy_pinned_facts():
    # D == 1 may take a 1-D label of length N (Caffe2 reads N*D label values).
    x = np.array([[0.5], [0.25]], np.float32)
    (y,) = run("CrossEntropy", [x, np.array([1, 0], np.float32)])
    np.testing.assert_array_equal(y, np.array([-np.log(np.float32(0.5)), 0], np.float32))
    assert not np.signbit(y[1])
    with pytest.raises(OpError) as err:       # soft labels must be in [0, 1]
        run("CrossEntropy", [np.full((2, 3), 0.3, np.float32),
                             np.array([[0, 2, 0], [.5, .5, 0]], np.float32)])
    _names_op(err, "CrossEntropy")
    for bad in (np.ones((2, 4), np.float32), np.ones((2,), np.float32),
                np.ones((2, 3), np.int32)):
        with pytest.raises(ShapeError) as err:
            run("CrossEntropy", [np.full((2, 3), 0.3, np.float32), bad])
        _names_op(err, "CrossEntropy")


# ----------------------------------------------------------------------------- SoftmaxWithLoss

@st.composite
def _swl_case(draw):
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    nd = len(shape)
    axis = draw(st.integers(0, nd - 1)) if nd > 1 else 0
    axis_arg = draw(st.sampled_from([axis, axis - nd])) if axis != 1 else draw(
        st.sampled_from([None, 1, 1 - nd]))
    return shape, axis, axis_arg


@SETTINGS
@given(case=_swl_case(), seed=seeds, weighted=st.booleans(), label_col=st.booleans(),
       scale=st.sampled_from([1.0, 0.5, 3.0]))
def test_softmax_with_loss_int_labels(case, seed, weighted, label_col, scale):
    shape, axis, axis_arg = case
    if len(shape) < 2 or axis == 0:
        shape, axis, axis_arg = [shape[0], 3], 1, None
    n, d = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    x = _randn(seed, shape) * 3
    lab = _rng(seed).integers(0, d, n).astype(np.int32)
    # labels shaped like the logits up to the axis, optionally with a trailing 1
    lab_in = lab.reshape(tuple(shape[:axis]) + ((1,) if label_col else ()))
    ins = [x, lab_in]
    w = _rng(seed + 1).uniform(0.1, 2.0, n).astype(np.float32)
    if weighted:
        ins.append(w)
    args = dict(scale=scale) if axis_arg is None else dict(scale=scale, axis=axis_arg)
    p, loss = run("SoftmaxWithLoss", ins, 2, **args)
    x2 = _t(x).reshape(n, d)
    _close(p, F.softmax(x2, dim=1).reshape(shape))
    ce = F.cross_entropy(x2, torch.from_numpy(lab).long(), reduction="none")
    ww = _t(w) if weighted else torch.ones(n, dtype=torch.float64)
    _close(loss, (scale * (ce * ww).sum() / ww.sum()).reshape(()), rtol=1e-4)


@SETTINGS
@given(n=dim, d=dim, seed=seeds, weighted=st.booleans())
def test_softmax_with_loss_prob_labels(n, d, seed, weighted):
    x = _randn(seed, (n, d))
    t = _probs(seed + 1, n, d)
    t = (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
    w = _rng(seed + 2).uniform(0.1, 2.0, n).astype(np.float32)
    ins = [x, t, w] if weighted else [x, t]
    p, loss = run("SoftmaxWithLoss", ins, 2, label_prob=1)
    _close(p, F.softmax(_t(x), dim=1))
    ce = F.cross_entropy(_t(x), _t(t), reduction="none")
    ww = _t(w) if weighted else torch.ones(n, dtype=torch.float64)
    _close(loss, ((ce * ww).sum() / ww.sum()).reshape(()), rtol=1e-4)


def test_softmax_with_loss_pinned_facts():
    # Caffe2's doc example: logits [[.1, .4, .7, 1.5, .2]], label 4, scale 5 -> 10.667433
    x = np.array([[.1, .4, .7, 1.5, .2]], np.float32)
    p, loss = run("SoftmaxWithLoss", [x, np.array([4], np.int32)], 2, scale=5.0)
    assert loss.shape == () and loss.dtype == np.float32
    np.testing.assert_allclose(loss, 10.667433, rtol=1e-6)
    np.testing.assert_allclose(p[0, :2], [0.10715417, 0.144643], rtol=1e-6)
    # weights summing to 0 give a loss of 0
    _, loss = run("SoftmaxWithLoss", [np.ones((2, 3), np.float32), np.array([0, 2], np.int32),
                                      np.zeros(2, np.float32)], 2)
    assert loss == 0
    # an empty batch gives a loss of 0
    p, loss = run("SoftmaxWithLoss", [np.ones((0, 3), np.float32), np.zeros(0, np.int32)], 2)
    assert p.shape == (0, 3) and loss == 0
    # axis=0: one row of every element; a 0-d label (labels have `axis` dims) names the class
    x = _randn(3, (2, 3))
    p, loss = run("SoftmaxWithLoss", [x, np.array(4, np.int32)], 2, axis=0)
    _close(p, F.softmax(_t(x).reshape(-1), dim=0).reshape(2, 3))
    _close(loss, F.cross_entropy(_t(x).reshape(1, 6), torch.tensor([4])).reshape(()))


def test_softmax_with_loss_only_loss_changes_nothing():
    # Caffe2's softmax_ops_test passes only_loss; real Caffe2 1.10.2 (CPU) writes the same P
    # and loss with only_loss=1 as without, for int and probability labels, with weights.
    x = _randn(5, (3, 4))
    labels, w = np.array([0, 2, 3], np.int32), np.array([1, 0.5, 2], np.float32)
    for ins, args in (([x, labels], {}), ([x, labels, w], {}),
                      ([x, np.eye(4, dtype=np.float32)[labels], w], dict(label_prob=1))):
        p, loss = run("SoftmaxWithLoss", ins, 2, **args)
        p1, loss1 = run("SoftmaxWithLoss", ins, 2, only_loss=1, **args)
        np.testing.assert_array_equal(p1, p)
        np.testing.assert_array_equal(loss1, loss)


def test_reduce_ops_accept_the_gradient_fastpath_hint():
    # Caffe2's reduce_ops_test passes allow_broadcast_fastpath (read by the gradient only)
    x = _randn(6, (2, 3, 4))
    for op_type in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1",
                    "ReduceL2"):
        (ref,) = run(op_type, [x], axes=[1])
        (y,) = run(op_type, [x], axes=[1], allow_broadcast_fastpath=1)
        np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("ins,args,cls", [
    ([np.ones((2, 3), np.float32), np.array([0, 3], np.int32)], {}, OpError),   # label range
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int64)], {}, ShapeError),
    ([np.ones((2, 3), np.float32), np.array([0, 1, 1], np.int32)], {}, ShapeError),
    ([np.ones((2, 3, 4), np.float32), np.zeros(6, np.int32)], dict(axis=2), ShapeError),
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int32), np.ones(3, np.float32)], {},
     ShapeError),                                                                 # weights
    ([np.ones((1, 3), np.float32), np.array([0, 1, 0], np.float32)], dict(label_prob=1),
     ShapeError),                                                                 # 1-D probs
    ([np.ones((1, 3), np.float32), np.array([[0.5, 0.6, 0]], np.float32)],
     dict(label_prob=1), OpError),                                                # sum != 1
    ([np.ones((1, 3), np.float32), np.array([[1.5, -0.5, 0]], np.float32)],
     dict(label_prob=1), OpError),                                                # negative
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int32)], dict(scale=-1.0),
     ArgumentError),
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int32)], dict(order="NHWC"),
     ArgumentError),
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int32)], dict(axis=2), ArgumentError),
    ([np.ones((2, 3), np.float32), np.array([0, 1], np.int32)], dict(spatial=1),
     UnsupportedError),
])
def test_softmax_with_loss_bad_inputs(ins, args, cls):
    with pytest.raises(cls) as err:
        run("SoftmaxWithLoss", ins, 2, **args)
    _names_op(err, "SoftmaxWithLoss")


def test_softmax_with_loss_arity_and_in_place():
    ins = [np.ones((2, 3), np.float32), np.array([0, 1], np.int32)]
    with pytest.raises(ArgumentError) as err:       # both outputs are required
        run("SoftmaxWithLoss", ins, 1)
    _names_op(err, "SoftmaxWithLoss")
    with pytest.raises(ArgumentError) as err:
        run("SoftmaxWithLoss", ins, outputs=["in0", "loss"])
    _names_op(err, "SoftmaxWithLoss")


# ----------------------------------------------------------------------------- Accuracy

def _accuracy_by_sorting(x, label, top_k):
    """Independent check: position of the label in a stable descending sort of each row."""
    if len(x) == 0:
        return np.nan
    order = np.argsort(-x.astype(np.float64), axis=1, kind="stable")
    pos = np.argmax(order == label[:, None], axis=1)
    return np.mean(pos < top_k)


@SETTINGS
@given(n=dim, d=dim, seed=seeds, top_k=st.integers(1, 6))
def test_accuracy_matches_torch_topk(n, d, seed, top_k):
    x = _randn(seed, (n, d))    # continuous scores: no ties, so torch.topk is unambiguous
    label = _rng(seed).integers(0, d, n).astype(np.int32)
    (acc,) = run("Accuracy", [x, label], top_k=top_k)
    idx = torch.topk(_t(x), min(top_k, d), dim=1).indices
    ref = (idx == torch.from_numpy(label).long()[:, None]).any(dim=1).double().mean()
    _close(acc, ref.reshape(()))


@SETTINGS
@given(n=dim, d=dim, seed=seeds, top_k=st.integers(1, 4))
def test_accuracy_ties_rank_by_class_index(n, d, seed, top_k):
    x = _rng(seed).integers(0, 3, (n, d)).astype(np.float32)    # many ties
    label = _rng(seed + 1).integers(0, d, n).astype(np.int32)
    (acc,) = run("Accuracy", [x, label], top_k=top_k)
    _close(acc, np.float32(_accuracy_by_sorting(x, label, top_k)))


def test_accuracy_pinned_facts():
    ones = np.ones((1, 4), np.float32)
    assert run("Accuracy", [ones, np.array([1], np.int32)])[0] == 0        # class 0 ties ahead
    assert run("Accuracy", [ones, np.array([1], np.int32)], top_k=2)[0] == 1
    assert run("Accuracy", [ones, np.array([0], np.int32)])[0] == 1
    (acc,) = run("Accuracy", [np.zeros((0, 4), np.float32), np.zeros(0, np.int32)])
    assert acc.shape == () and acc.dtype == np.float32 and np.isnan(acc)    # 0 / 0
    with pytest.raises(OpError) as err:
        run("Accuracy", [ones, np.array([4], np.int32)])
    _names_op(err, "Accuracy")
    for x, lab in [(np.ones((1, 2, 2), np.float32), np.array([0], np.int32)),
                   (ones, np.array([[0]], np.int32)), (ones, np.array([0, 0], np.int32)),
                   (ones, np.array([0], np.int64))]:
        with pytest.raises(ShapeError) as err:
            run("Accuracy", [x, lab])
        _names_op(err, "Accuracy")


# ----------------------------------------------------------------------------- ArgMax / ArgMin

@SETTINGS
@given(shape=st.lists(dim, min_size=1, max_size=4), seed=seeds, keepdims=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
       op_type=st.sampled_from(["ArgMax", "ArgMin"]), data=st.data())
def test_arg_ops_match_torch(shape, seed, keepdims, dtype, op_type, data):
    x = _rng(seed).integers(0, 4, shape).astype(dtype)    # ties: the first index wins
    nd = len(shape)
    axis = data.draw(st.integers(-1, nd - 1))
    (y,) = run(op_type, [x], axis=axis, keepdims=int(keepdims))
    fn = torch.argmax if op_type == "ArgMax" else torch.argmin
    ref = fn(torch.from_numpy(x).double(), dim=axis % nd, keepdim=bool(keepdims))
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, ref.numpy())


def test_arg_ops_pinned_facts():
    (y,) = run("ArgMax", [np.arange(6, dtype=np.float32).reshape(2, 3)])   # axis=-1, keepdims
    np.testing.assert_array_equal(y, [[2], [2]])
    # NaN: strict comparisons, so a NaN wins only at index 0
    (y,) = run("ArgMax", [np.array([np.nan, 1, 2], np.float32)])
    assert y.tolist() == [0]
    (y,) = run("ArgMax", [np.array([1, np.nan, 2], np.float32)])
    assert y.tolist() == [2]
    (y,) = run("ArgMin", [np.array([[1, np.nan, 0], [np.nan, 5, -1]], np.float32)], axis=1,
               keepdims=0)
    assert y.tolist() == [2, 0]
    # an empty axis gives index 0
    (y,) = run("ArgMin", [np.zeros((2, 0), np.float32)], axis=1)
    np.testing.assert_array_equal(y, np.zeros((2, 1), np.int64))


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("x,args,cls", [
    (np.ones((2, 3), np.float32), dict(axis=-2), ArgumentError),   # only -1 may be negative
    (np.ones((2, 3), np.float32), dict(axis=2), ArgumentError),
    (np.ones((), np.float32), {}, ArgumentError),
    (np.ones((2, 3), np.bool_), {}, ShapeError),
])
def test_arg_ops_bad_inputs(op_type, x, args, cls):
    with pytest.raises(cls) as err:
        run(op_type, [x], **args)
    _names_op(err, op_type)
