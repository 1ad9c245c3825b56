"""Cython kernels of Softmax, Reduce*, whole-tensor sums, losses, Accuracy and ArgMax/ArgMin
against the reference executor.

Each hypothesis example draws a list of cases and compiles them as one module (`check_cpu`).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import config, core, workspace
from c2compile.errors import OpError, UnsupportedError
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
dim = st.integers(1, 5)
shapes = st.lists(dim, max_size=4)
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2"]
F32 = np.float32


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _floats(draw, shape, scale=1.0, nan=False):
    """Normal float32 data; with `nan`, sometimes a NaN or an infinity somewhere."""
    x = (_rng(draw).standard_normal(shape) * scale).astype(F32)
    if nan and x.size and draw(st.integers(0, 3)) == 0:
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf,
                                                                          -np.inf]))
    return x


def _ints(draw, shape, dtype, lo=-50, hi=50):
    return _rng(draw).integers(lo, hi, shape, endpoint=True).astype(dtype)


@st.composite
def softmax_case(draw):
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    args = {}
    if len(shape) == 1 or draw(st.booleans()):   # the default axis=1 needs 2 dims
        args["axis"] = draw(st.integers(-len(shape), len(shape) - 1))
    return Case("Softmax", [_floats(draw, shape, 3.0, nan=True)], args)


@st.composite
def reduce_case(draw):
    op_type = draw(st.sampled_from(REDUCE))
    dtype = F32
    if op_type in ("ReduceSum", "ReduceMax", "ReduceMin"):
        dtype = draw(st.sampled_from([F32, np.float64, np.int32, np.int64]))
    shape = draw(shapes)
    nd = len(shape)
    args = {}
    if nd and draw(st.booleans()):
        axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        args["axes"] = [a - nd if draw(st.booleans()) else a for a in axes]
    elif draw(st.booleans()):
        args["axes"] = []                       # empty: every axis
    if draw(st.booleans()):
        args["keepdims"] = int(draw(st.booleans()))
    if np.dtype(dtype).kind == "f":
        x = _floats(draw, shape, nan=op_type in ("ReduceMax", "ReduceMin")).astype(dtype)
    elif op_type == "ReduceSum" and draw(st.booleans()):   # sums that wrap
        info = np.iinfo(dtype)
        x = _ints(draw, shape, dtype, info.min, info.max)
    else:
        x = _ints(draw, shape, dtype)
    return Case(op_type, [x], args, atol=1e-5)


@SETTINGS
@given(cases=st.lists(st.one_of(softmax_case(), reduce_case()), min_size=8, max_size=12))
def test_softmax_and_reduce(cases):
    check_cpu(cases)


@st.composite
def sums_case(draw):
    op_type = draw(st.sampled_from(["SumElements", "SumSqrElements", "AveragedLoss",
                                    "SumElementsInt", "SquaredL2Distance"]))
    shape = draw(shapes)
    if op_type == "SumElementsInt":
        return Case(op_type, [_ints(draw, shape, np.int32, -2**31, 2**31 - 1)])   # wraps
    if op_type == "SquaredL2Distance":
        return Case(op_type, [_floats(draw, shape), _floats(draw, shape)])
    args = {} if op_type == "AveragedLoss" else dict(average=int(draw(st.booleans())))
    return Case(op_type, [_floats(draw, shape)], args, atol=1e-5)


@st.composite
def label_xent_case(draw):
    n, d = draw(dim), draw(dim)
    x_shape = draw(st.sampled_from([(n, d), (n, d, 1), (n, 1, d)] + ([(d,)] if n == 1 else [])))
    x = _rng(draw).uniform(0, 1, x_shape).astype(F32)
    x.flat[::3] = 0                             # clipped at 1e-20
    label = _rng(draw).integers(0, d, n).astype(np.int32)
    if draw(st.booleans()):
        label = label.reshape(n, 1)
    return Case("LabelCrossEntropy", [x, label])


@st.composite
def xent_case(draw):
    n, d = draw(dim), draw(dim)
    x = _rng(draw).uniform(0, 1, (n, d)).astype(F32)
    x.flat[::4] = 0
    t = _rng(draw).uniform(0, 1, (n, d)).astype(F32)
    if d == 1 and draw(st.booleans()):
        t = t.reshape(n)
    return Case("CrossEntropy", [x, t])


@st.composite
def swl_case(draw):
    """SoftmaxWithLoss: any axis, int labels (with or without a trailing 1) or probabilities,
    optional weights, scale."""
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    nd = len(shape)
    prob = nd >= 2 and draw(st.booleans())
    axis = draw(st.integers(0, nd - 1))
    n, d = int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))
    args = dict(scale=draw(st.sampled_from([1.0, 0.5, 3.0])))
    if axis != 1 or draw(st.booleans()):
        args["axis"] = draw(st.sampled_from([axis, axis - nd]))
    x = _floats(draw, shape, 4.0)
    if prob:
        args["label_prob"] = 1
        t = _rng(draw).uniform(0, 1, (n, d))
        t[:, ::2] = 0
        t[:, 0] += 0.1
        t = (t / t.sum(axis=1, keepdims=True)).astype(F32).reshape(shape)
    else:
        t = _rng(draw).integers(0, d, n).astype(np.int32).reshape(shape[:axis])
        if draw(st.booleans()):
            t = t.reshape(tuple(shape[:axis]) + (1,))
    ins = [x, t]
    if draw(st.booleans()):
        ins.append(_rng(draw).uniform(0, 2, n).astype(F32))
    return Case("SoftmaxWithLoss", ins, args, outputs=2, atol=1e-5)


@SETTINGS
@given(cases=st.lists(st.one_of(sums_case(), label_xent_case(), xent_case(), swl_case()),
                      min_size=8, max_size=12))
def test_sums_and_losses(cases):
    check_cpu(cases)


@st.composite
def accuracy_case(draw):
    n, d = draw(dim), draw(dim)
    x = (_rng(draw).integers(0, 3, (n, d)).astype(F32) if draw(st.booleans())    # ties
         else _floats(draw, (n, d), nan=True))
    label = _rng(draw).integers(0, d, n).astype(np.int32)
    args = dict(top_k=draw(st.integers(1, d + 1))) if draw(st.booleans()) else {}
    return Case("Accuracy", [x, label], args)


@st.composite
def arg_case(draw):
    op_type = draw(st.sampled_from(["ArgMax", "ArgMin"]))
    shape = draw(st.lists(dim, min_size=1, max_size=4))
    dtype = draw(st.sampled_from([F32, np.float64, np.int32, np.int64]))
    x = _ints(draw, shape, dtype, 0, 3)         # ties: the first index wins
    if np.dtype(dtype).kind == "f" and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = np.nan   # wins only at index 0
    args = {}
    if draw(st.booleans()):
        args["axis"] = draw(st.integers(-1, len(shape) - 1))
    if draw(st.booleans()):
        args["keepdims"] = int(draw(st.booleans()))
    return Case(op_type, [x], args)


@SETTINGS
@given(cases=st.lists(st.one_of(accuracy_case(), arg_case()), min_size=8, max_size=12))
def test_accuracy_and_arg_ops(cases):
    check_cpu(cases)


def _long_rows_with_nan():
    """Rows long enough for the partial accumulators: a NaN, infinities, plain values."""
    x = np.random.default_rng(1).standard_normal((5, 37)).astype(F32)
    x[1, 5] = np.nan
    x[2, 7], x[2, 20] = np.inf, -np.inf
    x[3, 35] = np.nan          # in the tail
    return x


def test_edge_cases():
    """Empty inputs, 0-d and 1-D forms, NaN/inf rows, long rows summed in double."""
    r = np.random.default_rng(0)
    e = np.zeros((0, 3), F32)
    check_cpu([
        Case("Softmax", [np.array([[np.nan, 1, 2], [1, np.inf, 0], [-np.inf] * 3], F32)]),
        Case("Softmax", [e]),
        Case("Softmax", [r.standard_normal((2, 3, 4)).astype(F32) * 30], dict(axis=0)),
        Case("ReduceSum", [e], dict(axes=[0])),
        Case("ReduceMean", [e], dict(axes=[0])),
        Case("ReduceMax", [e], dict(axes=[0])),
        Case("ReduceMin", [np.zeros((2, 0), np.int64)], dict(axes=[1], keepdims=0)),
        Case("ReduceMax", [np.zeros((2, 0), np.int32)], dict(axes=[1], keepdims=0)),
        Case("ReduceSum", [e], dict(axes=[1])),
        Case("ReduceMin", [np.array([[2**63 - 1] * 20, [-2**63, 0] * 10], np.int64)],
             dict(axes=[1])),                                            # int64 extremes
        Case("ReduceMax", [np.array([[-2**31] * 3, [2**31 - 1, 0, 1]], np.int32)], dict(axes=[0])),
        Case("ReduceL1", [np.array(-3.0, F32)]),
        Case("ReduceMax", [np.array([[-np.inf, -np.inf], [np.nan, 1]], F32)], dict(axes=[1])),
        Case("ReduceMax", [_long_rows_with_nan()], dict(axes=[1])),      # NaN in the lanes
        Case("ReduceMin", [_long_rows_with_nan().astype(np.float64)], dict(axes=[-1])),
        Case("ReduceMin", [_long_rows_with_nan()[:, :32]], dict(axes=[0, 1], keepdims=0)),
        Case("ReduceSum", [r.standard_normal((3, 40000)).astype(F32)], dict(axes=[1]),
             atol=1e-4),
        Case("ReduceL2", [r.standard_normal((500, 2, 30)).astype(F32)], dict(axes=[0, 2])),
        Case("SumElements", [e], dict(average=1)),
        Case("SumSqrElements", [r.standard_normal(100000).astype(F32)], dict(average=1)),
        Case("AveragedLoss", [e]),
        Case("SumElementsInt", [np.zeros((0,), np.int32)]),
        Case("SquaredL2Distance", [np.array(2.0, F32), np.array(0.5, F32)]),
        Case("SquaredL2Distance", [np.zeros((0, 3), F32), np.zeros((0, 3), F32)]),
        Case("LabelCrossEntropy", [np.array([0.5, 0.25, 0.0], F32), np.array([2], np.int32)]),
        Case("SoftmaxWithLoss", [e, np.zeros(0, np.int32)], outputs=2),
        Case("SoftmaxWithLoss", [np.ones((2, 3), F32), np.array([0, 2], np.int32),
                                 np.zeros(2, F32)], outputs=2),
        Case("SoftmaxWithLoss", [r.standard_normal((2, 3)).astype(F32), np.array(4, np.int32)],
             dict(axis=0), outputs=2),
        Case("SoftmaxWithLoss", [np.array([[.1, .4, .7, 1.5, .2]], F32),
                                 np.array([4], np.int32)], dict(scale=5.0), outputs=2),
        Case("Accuracy", [np.zeros((0, 4), F32), np.zeros(0, np.int32)]),
        Case("Accuracy", [np.ones((1, 4), F32), np.array([1], np.int32)], dict(top_k=2)),
        Case("ArgMax", [np.zeros((2, 0, 3), F32)], dict(axis=1)),
        Case("ArgMin", [np.array([[1, np.nan, 0], [np.nan, 5, -1]], F32)], dict(keepdims=0)),
        Case("ArgMax", [r.integers(0, 3, (3, 4, 5)).astype(np.int64)], dict(axis=0)),
    ])


def _bad_data_cases():
    """(case, index of the input to replace, bad value) per data-dependent error."""
    x = np.full((2, 3), 0.3, F32)
    lab = np.array([0, 2], np.int32)
    probs = np.array([[0.2, 0.8, 0], [0, 0, 1]], F32)
    return [
        (Case("LabelCrossEntropy", [x, lab]), 1, np.array([0, 3], np.int32)),
        (Case("LabelCrossEntropy", [x, lab]), 1, np.array([-1, 0], np.int32)),
        (Case("CrossEntropy", [x, probs]), 1, np.array([[0, 2, 0], [.5, .5, 0]], F32)),
        (Case("CrossEntropy", [x, probs]), 1, np.array([[0, np.nan, 0], [.5, .5, 0]], F32)),
        (Case("SoftmaxWithLoss", [x, lab], outputs=2), 1, np.array([3, 0], np.int32)),
        (Case("SoftmaxWithLoss", [x, probs], dict(label_prob=1), outputs=2), 1,
         np.array([[1.5, -0.5, 0], [0, 0, 1]], F32)),
        (Case("SoftmaxWithLoss", [x, probs], dict(label_prob=1), outputs=2), 1,
         np.array([[0.5, 0.6, 0], [0, 0, 1]], F32)),
        (Case("Accuracy", [x, lab]), 1, np.array([0, 3], np.int32)),
    ]


def test_data_errors_name_the_op():
    """A label out of range (etc.) in a compiled net is an OpError naming the op, as the
    reference gives; the same compiled module then runs on good data again."""
    bad = _bad_data_cases()
    cases = [c for c, _, _ in bad]
    check_cpu(cases)
    net = workspace._ws().nets
    (name,) = [n for n in net if n.startswith("cpu_check_")]
    for i, (case, j, value) in enumerate(bad):
        blob = f"c{i}_x{j}"
        workspace.FeedBlob(blob, value)
        with pytest.raises(OpError) as err:
            workspace.RunNet(name)
        assert f"op #{i} ({case.op_type}" in str(err.value), str(err.value)
        assert err.value.op_type == case.op_type
        workspace.FeedBlob(blob, case.inputs[j])
    workspace.RunNet(name)
    assert_compiled(name)
    created = workspace._ws().nets[name]
    assert len(created.compiled.segments[0].variants) == 1   # no rebuild along the way


def test_spatial_softmax_with_loss_is_refused_by_name():
    """spatial=1 is not implemented by the op at all: the compiled path says so, naming it."""
    workspace.FeedBlob("x", np.ones((2, 3), F32))
    workspace.FeedBlob("t", np.array([0, 1], np.int32))
    net = core.Net("spatial_swl")
    net.Proto().op.add().CopyFrom(core.CreateOperator("SoftmaxWithLoss", ["x", "t"],
                                                      ["p", "loss"], spatial=1))
    with pytest.raises(UnsupportedError) as err:
        with config.patch(backend="cpu"):
            workspace.CreateNet(net)
            workspace.RunNet(net.Name())
    assert "op #0 (SoftmaxWithLoss" in str(err.value)
