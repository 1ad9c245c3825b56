"""Cython kernels of the reduction and loss gradients against the reference executor:
Reduce*Gradient, SumElementsGradient, AveragedLossGradient, SquaredL2DistanceGradient,
(Label)CrossEntropyGradient and SoftmaxWithLossGradient.

Each hypothesis example draws a list of cases and compiles them as one module (`check_cpu`).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import workspace
from c2compile.errors import OpError
from c2compile.ops.testing import run
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
dim = st.integers(1, 5)
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2"]
F32 = np.float32


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _floats(draw, shape, nan=False):
    """Normal float32 data, with ties and zeros (and with `nan`, sometimes a NaN)."""
    x = _rng(draw).standard_normal(shape).astype(F32)
    if x.size and draw(st.booleans()):   # ties for Max/Min, zeros for L1/L2
        x.flat[_rng(draw).integers(0, x.size, x.size // 2 + 1)] = draw(st.sampled_from([0, 1]))
    if nan and x.size and draw(st.integers(0, 3)) == 0:
        x.flat[draw(st.integers(0, x.size - 1))] = np.nan
    return x


@st.composite
def reduce_grad_case(draw):
    op_type = draw(st.sampled_from(REDUCE))
    dtype = F32
    if op_type in ("ReduceSum", "ReduceMax", "ReduceMin"):
        dtype = draw(st.sampled_from([F32, F32, np.float64, np.int32, np.int64]))
    shape = draw(st.lists(dim, max_size=4))
    args = dict(keepdims=int(draw(st.booleans())))
    if shape and draw(st.booleans()):
        axes = sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
        args["axes"] = [draw(st.sampled_from([a, a - len(shape)])) for a in axes]
    if np.dtype(dtype).kind == "i":
        x = _rng(draw).integers(-3, 3, shape).astype(dtype)
    else:
        x = _floats(draw, shape, nan=True).astype(dtype)
    (y,) = run(op_type, [x], **args)
    dy = (_rng(draw).standard_normal(y.shape) * 4).astype(dtype)
    return Case(op_type + "Gradient", [dy, x, y], args)


@st.composite
def loss_grad_case(draw):
    """One of the whole-tensor-sum, distance and cross-entropy gradients."""
    op_type = draw(st.sampled_from(["SumElementsGradient", "AveragedLossGradient",
                                    "SquaredL2DistanceGradient", "LabelCrossEntropyGradient",
                                    "CrossEntropyGradient"]))
    rng = _rng(draw)
    if op_type in ("SumElementsGradient", "AveragedLossGradient"):
        x = _floats(draw, draw(st.lists(st.integers(0, 5), max_size=3)))
        args = dict(average=int(draw(st.booleans()))) if op_type == "SumElementsGradient" else {}
        return Case(op_type, [x, rng.standard_normal(()).astype(F32)], args)
    if op_type == "SquaredL2DistanceGradient":
        shape = draw(st.lists(dim, max_size=3))
        n = shape[0] if shape else 1
        ins = [_floats(draw, shape), _floats(draw, shape), rng.standard_normal(n).astype(F32)]
        return Case(op_type, ins, outputs=2)
    shape = draw(st.lists(dim, min_size=1, max_size=3))
    n = shape[0] if len(shape) > 1 else 1
    d = int(np.prod(shape)) // n
    x = rng.uniform(0, 1, shape).astype(F32)
    x.flat[rng.integers(0, x.size)] = draw(st.sampled_from([0.0, 1e-30, 0.5]))  # clipped
    dy = rng.standard_normal(n).astype(F32)
    if op_type == "LabelCrossEntropyGradient":
        label = rng.integers(0, d, n).astype(np.int32)
        return Case(op_type, [x, label.reshape(draw(st.sampled_from([(n,), (n, 1)]))), dy])
    label = rng.uniform(0, 1, (n, d)).astype(F32)
    return Case(op_type, [x, label, dy])


@st.composite
def swl_grad_case(draw):
    """SoftmaxWithLossGradient on the forward's P: int or probability labels, any axis,
    weights that may sum to <= 0, scale, average_by_batch_size."""
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    axis = draw(st.integers(1 if len(shape) > 1 else 0, len(shape) - 1))
    rng = _rng(draw)
    args = dict(axis=draw(st.sampled_from([axis, axis - len(shape)])),
                scale=draw(st.sampled_from([1.0, 0.3, 2.5])),
                average_by_batch_size=int(draw(st.booleans())))
    n, d = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    x = (rng.standard_normal(shape) * 3).astype(F32)
    if len(shape) > 1 and draw(st.booleans()):
        args["label_prob"] = 1
        t = rng.uniform(0, 1, (n, d))
        label = (t / t.sum(1, keepdims=True)).astype(F32).reshape(shape)
    else:
        label = rng.integers(0, d, n).astype(np.int32).reshape(shape[:axis])
    ins = [x, label]
    if draw(st.booleans()):
        ins.append(draw(st.sampled_from([rng.uniform(0.1, 2, n), rng.standard_normal(n),
                                         np.zeros(n)])).astype(F32))
    p, _ = run("SoftmaxWithLoss", ins, 2, **args)
    dloss = np.array(draw(st.sampled_from([1.0, -0.7, 3.0])), F32)
    return Case("SoftmaxWithLossGradient", ins + [p, dloss], args)


@SETTINGS
@given(cases=st.lists(reduce_grad_case(), min_size=6, max_size=12))
def test_reduce_gradients(cases):
    check_cpu(cases)


@SETTINGS
@given(cases=st.lists(loss_grad_case(), min_size=6, max_size=12),
       swl=st.lists(swl_grad_case(), min_size=2, max_size=6))
def test_loss_gradients(cases, swl):
    check_cpu(cases + swl)


def test_edge_cases():
    """Empty inputs, 0-d inputs, reductions over nothing, NaNs, Caffe2's odd corners."""
    e = np.zeros((3, 0), F32)
    x = np.array([[0., 0., 0.], [1., 1., -2.], [1e-13, 0, 3]], F32)
    dy = np.array([1., 2., 3.], F32)
    cases = [Case(t + "Gradient", [dy, x, run(t, [x], axes=[1], keepdims=0)[0]],
                  dict(axes=[1], keepdims=0)) for t in REDUCE]
    cases += [Case(t + "Gradient", [np.zeros(3, F32), e, np.zeros(3, F32)], dict(axes=[1]))
              for t in REDUCE]
    s = np.array(2.5, F32)
    cases += [
        Case("ReduceSumGradient", [s, s, s]),                               # 0-d X
        Case("ReduceMaxGradient", [np.array([5.], F32), np.array([[np.nan, 1.]], F32),
                                   np.array([np.nan], F32)], dict(axes=[1], keepdims=0)),
        Case("SumElementsGradient", [e, s], dict(average=1)),
        Case("AveragedLossGradient", [np.zeros((2, 3), F32), s]),
        Case("SquaredL2DistanceGradient", [s, s, np.array([2.], F32)], outputs=2),
        Case("SquaredL2DistanceGradient", [e.T.copy(), e.T.copy(), np.zeros(0, F32)],
             outputs=2),
        Case("LabelCrossEntropyGradient", [np.zeros((0, 3), F32), np.zeros(0, np.int32),
                                           np.zeros(0, F32)]),
        Case("LabelCrossEntropyGradient", [np.array([0.0, 0.2, np.nan], F32),
                                           np.array([2], np.int32), np.array([1.], F32)]),
        Case("CrossEntropyGradient", [np.array([[0.0, 0.5]], F32), np.array([[0.5, 0.5]], F32),
                                      np.array([1.], F32)]),
        Case("SoftmaxWithLossGradient", [np.ones((2, 3), F32), np.array([0, 2], np.int32),
                                         np.array([1., -1.], F32), np.full((2, 3), 1 / 3, F32),
                                         s], dict(scale=3.0)),           # weights sum to 0
        Case("SoftmaxWithLossGradient", [np.zeros((0, 3), F32), np.zeros(0, np.int32),
                                         np.zeros((0, 3), F32), s]),
    ]
    check_cpu(cases)


def test_bad_labels_name_the_op():
    """A label out of range in a compiled gradient op is an OpError naming it, as the
    reference gives (Caffe2's gradient kernels write out of bounds instead)."""
    x = np.full((2, 3), 0.3, F32)
    lab = np.array([0, 2], np.int32)
    cases = [Case("LabelCrossEntropyGradient", [x, lab, np.ones(2, F32)]),
             Case("SoftmaxWithLossGradient", [x, lab, x, np.array(1., F32)])]
    check_cpu(cases)
    (name,) = [n for n in workspace._ws().nets if n.startswith("cpu_check_")]
    for i, case in enumerate(cases):
        workspace.FeedBlob(f"c{i}_x1", np.array([3, 0], np.int32))
        with pytest.raises(OpError, match="outside the valid range") as err:
            workspace.RunNet(name)
        assert err.value.op_type == case.op_type
        workspace.FeedBlob(f"c{i}_x1", lab)
    workspace.RunNet(name)
    assert_compiled(name)
