"""Cython kernels of the fill ops and the training ops (Iter, Dropout, LearningRate).

Deterministic fills are compared with the reference element by element. Random fills and
training-mode Dropout draw from the kernel's own generator, so they are checked on
statistics, bounds and seeding: the same DeviceOption.random_seed gives the same values in
two created nets, and every run of one net gives new values, as on the reference.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import config, core, dtypes, workspace
from c2compile.errors import OpError
from c2compile.runtime.compiled import ReferenceSegment
from tests.backends.cpu_harness import (
    Case, _op, assert_compiled, check_cpu, compiled_outputs, reference_outputs)

SETTINGS = settings(max_examples=4, deadline=None)
shapes = st.lists(st.sampled_from([0, 1, 2, 3, 5, 7]), max_size=4)
F32 = np.float32


def _runs(cases, runs=2, name="fills"):
    """Create one compiled net of `cases` and run it `runs` times; outputs of every run."""
    net = core.Net(name)
    for i, case in enumerate(cases):
        for j, x in enumerate(case.inputs):
            workspace.FeedBlob(f"c{i}_x{j}", x)
        net.Proto().op.add().CopyFrom(_op(case, i))
    with config.patch(backend="cpu"):
        workspace.CreateNet(net, overwrite=True)
    got = []
    for _ in range(runs):
        workspace.RunNet(net.Name())
        got.append([[workspace.FetchBlob(n) for n in _op(c, i).output]
                    for i, c in enumerate(cases)])
    assert_compiled(net.Name())
    return got


# ----------------------------------------------------------------------------- ConstantFill

CONSTANT_DTYPES = {dtypes.FLOAT: [0.0, 2.5, -1e-3, 1e30], dtypes.DOUBLE: [0.1, -7.0],
                   dtypes.BOOL: [0, 1], dtypes.INT8: [-128, 5], dtypes.INT16: [-300, 7],
                   dtypes.INT32: [2**31 - 1, -5], dtypes.INT64: [-2**63, 2**40],
                   dtypes.UINT8: [255, 3], dtypes.UINT16: [65535, 9]}


@st.composite
def constant_case(draw):
    args = {}
    dt = draw(st.sampled_from([None, *CONSTANT_DTYPES]))
    if dt is None:   # no dtype: float value -> FLOAT, int value -> INT64
        value = draw(st.sampled_from([1.5, 3, -2, 0.0]))
    else:
        args["dtype"] = dt
        value = draw(st.sampled_from(CONSTANT_DTYPES[dt]))
    if draw(st.integers(0, 3)):
        args["value"] = value
    shape = draw(shapes)
    src = draw(st.sampled_from(["shape", "input", "none"]))
    ins, place = [], {}
    if src == "shape":
        args["shape"] = shape
    elif src == "input":
        ins = [np.zeros(shape, draw(st.sampled_from([F32, np.int64, np.bool_])))]
        if draw(st.booleans()):
            args["extra_shape"] = draw(st.lists(st.integers(1, 3), max_size=2))
        elif draw(st.booleans()):
            place = {0: 0}
    return Case("ConstantFill", ins, args, inplace=place)


@st.composite
def given_case(draw):
    """GivenTensor*Fill: small values (inlined) and big ones (a bytes literal)."""
    op_type, dtype = draw(st.sampled_from([
        ("GivenTensorFill", F32), ("GivenTensorDoubleFill", np.float64),
        ("GivenTensorIntFill", np.int32), ("GivenTensorInt16Fill", np.int16),
        ("GivenTensorInt64Fill", np.int64), ("GivenTensorBoolFill", np.bool_),
        ("GivenTensorFill", dtypes.DOUBLE), ("GivenTensorFill", dtypes.INT32),
        ("GivenTensorFill", dtypes.BOOL), ("GivenTensorFill", dtypes.INT64)]))
    args = {}
    if isinstance(dtype, int):
        args["dtype"] = dtype
        dtype = dtypes.to_numpy(dtype)
    shape = draw(st.sampled_from([[], [0], [3], [2, 3], [7, 11], [5, 40], [1000]]))
    n = int(np.prod(shape))
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if np.dtype(dtype).kind == "f":
        values = [float(v) for v in r.standard_normal(n).astype(F32)]
        if n > 2:
            values[:3] = [float("nan"), float("-inf"), -0.0]
    elif np.dtype(dtype) == np.bool_:
        values = [int(v) for v in r.integers(0, 3, n)]
    else:
        info = np.iinfo(dtype)
        values = [int(v) for v in r.integers(info.min, info.max, n, dtype=np.int64,
                                             endpoint=True)]
    args["values"] = values
    if draw(st.booleans()):
        return Case(op_type, [], dict(args, shape=shape))
    return Case(op_type, [np.zeros(shape, F32)], args)


@SETTINGS
@given(cases=st.lists(st.one_of(constant_case(), given_case()), min_size=8, max_size=12))
def test_deterministic_fills(cases):
    check_cpu(cases)


def test_constant_fill_value_input():
    """ConstantFill with a value tensor (input 1): every element is its one element."""
    check_cpu([
        Case("ConstantFill", [np.zeros((2, 3), F32), np.array([4.5], F32)]),
        Case("ConstantFill", [np.zeros((4,), F32), np.array(7, np.int64)],
             dict(dtype=dtypes.INT64)),
        Case("ConstantFill", [np.zeros((0, 2), F32), np.array([1.0], np.float64)],
             dict(dtype=dtypes.DOUBLE, extra_shape=[3])),
    ])


def test_big_given_fill():
    """100k values compile as one bytes literal and come back bit for bit."""
    values = np.random.default_rng(3).standard_normal(100_000).astype(F32)
    got = check_cpu([Case("GivenTensorFill", [], dict(shape=[100, 1000], values=list(values)))])
    assert got[0][0].tobytes() == values.tobytes()


def test_data_dependent_shape_falls_back():
    """input_as_shape=1 reads the shape from data: the op runs on the reference, visibly."""
    shape = np.array([2, 3], np.int64)
    case = Case("ConstantFill", [shape], dict(input_as_shape=1, value=2.0))
    got = compiled_outputs([case, Case("Relu", [np.ones(3, F32)])], expect_compiled=False)
    np.testing.assert_array_equal(got[0][0], np.full((2, 3), 2.0, F32))
    segs = next(iter(workspace._ws().nets.values())).compiled.segments
    assert isinstance(segs[0], ReferenceSegment) and segs[0].ops[0].type == "ConstantFill"
    assert not isinstance(segs[1], ReferenceSegment)


# ----------------------------------------------------------------------------- random fills

@st.composite
def random_case(draw):
    """A random fill of some shape (argument or input + extra_shape) and arguments."""
    op_type = draw(st.sampled_from(["GaussianFill", "UniformFill", "UniformIntFill",
                                    "XavierFill", "MSRAFill"]))
    rank = {"XavierFill": 1, "MSRAFill": 2}.get(op_type, 0)
    shape = draw(st.lists(st.sampled_from([1, 2, 3, 7, 40]), min_size=rank, max_size=4))
    args = {}
    if op_type == "GaussianFill":
        args = dict(mean=draw(st.sampled_from([0.0, 1.5, -3.0])),
                    std=draw(st.sampled_from([1.0, 0.1, 0.0, 4.0])))
    elif op_type == "UniformFill":
        lo = draw(st.sampled_from([-2.0, 0.0, 0.1]))
        args = dict(min=lo, max=lo + draw(st.sampled_from([1e-3, 1.0, 5.0])))
    elif op_type == "UniformIntFill":
        lo = draw(st.sampled_from([-5, 0, 2**31 - 10, -2**31]))
        args = dict(min=lo, max=lo + draw(st.sampled_from([1, 3, 9])))
    if draw(st.booleans()):
        return Case(op_type, [], dict(args, shape=shape), compare=False)
    return Case(op_type, [np.zeros(shape[:1], F32)], dict(args, extra_shape=shape[1:]),
                compare=False)


def _bounds(case):
    """The closed interval every value of a random fill must lie in."""
    a, shape = case.args, reference_outputs(case, 0)[0].shape
    if case.op_type == "UniformFill":
        return np.float32(a["min"]), np.float32(a["max"])
    if case.op_type == "UniformIntFill":
        return a["min"], a["max"]
    if case.op_type == "XavierFill" and np.prod(shape):
        s = np.sqrt(np.float32(3) / np.float32(np.prod(shape) // shape[0]), dtype=F32)
        return -s, s
    if case.op_type == "GaussianFill" and a["std"] == 0:
        return np.float32(a["mean"]), np.float32(a["mean"])
    return -np.inf, np.inf


@SETTINGS
@given(cases=st.lists(random_case(), min_size=6, max_size=10))
def test_random_fills(cases):
    """Shapes and dtypes as the reference; values within the fill's bounds; new each run."""
    first, second = _runs(cases)
    for i, case in enumerate(cases):
        want = reference_outputs(case, i)[0]
        y1, y2 = first[i][0], second[i][0]
        assert y1.shape == want.shape and y1.dtype == want.dtype, case
        lo, hi = _bounds(case)
        assert np.all((y1 >= lo) & (y1 <= hi)), (case, y1.min(), y1.max())
        if y1.size >= 64 and lo < hi:
            assert not np.array_equal(y1, y2), f"{case}: two runs drew the same values"


def _stats_cases():
    x = np.zeros((4, 2), F32)
    return [
        Case("GaussianFill", [], dict(shape=[200, 150], mean=1.5, std=2.0), compare=False),
        Case("UniformFill", [], dict(shape=[30000], min=-2.0, max=3.0), compare=False),
        Case("UniformIntFill", [], dict(shape=[30000], min=-3, max=4), compare=False),
        Case("XavierFill", [], dict(shape=[50, 40, 3]), compare=False),
        Case("MSRAFill", [], dict(shape=[64, 32, 3, 3]), compare=False),
        Case("GaussianFill", [x], dict(extra_shape=[1000], std=0.5), compare=False),
    ]


def test_random_fill_statistics():
    """Mean, spread and range of large samples match the distributions the reference draws."""
    g, u, ui, xa, ms, gi = [outs[0] for outs in _runs(_stats_cases(), runs=1)[0]]
    assert abs(g.mean() - 1.5) < 0.03 and abs(g.std() - 2.0) < 0.03
    assert u.min() >= -2 and u.max() <= 3 and abs(u.mean() - 0.5) < 0.05
    assert abs(u.std() - 5 / np.sqrt(12)) < 0.03
    assert ui.dtype == np.int32 and set(np.unique(ui)) == set(range(-3, 5))
    assert abs(ui.mean() - 0.5) < 0.05
    s = np.sqrt(3 / 120)
    assert np.abs(xa).max() <= np.float32(s) and abs(xa.std() - s / np.sqrt(3)) < 0.01 * s * 3
    assert abs(ms.mean()) < 0.01 and abs(ms.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.03
    assert gi.shape == (4, 2, 1000) and abs(gi.std() - 0.5) < 0.02


def test_random_fill_seeds():
    """Same random_seed: same values in two nets; no seed: different values."""
    def cases(**seed):
        return [Case("GaussianFill", [], dict(shape=[64], **seed), compare=False),
                Case("UniformFill", [], dict(shape=[3, 5], **seed), compare=False),
                Case("MSRAFill", [], dict(shape=[4, 4], **seed), compare=False)]
    a = _runs(cases(random_seed=7), runs=1, name="a")[0]
    b = _runs(cases(random_seed=7), runs=1, name="b")[0]
    c = _runs(cases(random_seed=8), runs=1, name="c")[0]
    d = _runs(cases(), runs=1, name="d")[0]
    e = _runs(cases(), runs=1, name="e")[0]
    for i in range(3):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert not np.array_equal(a[i][0], c[i][0])
        assert not np.array_equal(d[i][0], e[i][0])


# ----------------------------------------------------------------------------- Iter

def test_iter():
    """The counter goes up by one per run, in place, whatever its 1-element shape."""
    cases = [Case("Iter", [np.array([c], np.int64).reshape(s)], inplace={0: 0})
             for c, s in ((0, (1,)), (41, ()), (2**62, (1, 1)))]
    check_cpu(cases)
    runs = _runs(cases, runs=3, name="iter")
    assert [[int(outs[0].item()) for outs in r] for r in runs] == \
        [[n, 41 + n, 2**62 + n] for n in (1, 2, 3)]


@pytest.mark.parametrize("value, message", [(-1, "negative"), (2**63 - 1, "overflow")])
def test_iter_errors(value, message):
    case = Case("Iter", [np.array([value], np.int64)], inplace={0: 0})
    with pytest.raises(OpError, match=message):
        reference_outputs(case, 0)
    with pytest.raises(OpError, match=rf"Iter.*{message}"):
        compiled_outputs([case])


# ----------------------------------------------------------------------------- Dropout

@st.composite
def dropout_test_case(draw):
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(
        draw(shapes)).astype(F32)
    outputs = draw(st.sampled_from([1, 2]))
    place = {0: 0} if draw(st.booleans()) else {}
    return Case("Dropout", [x], dict(is_test=1, ratio=draw(st.sampled_from([0.0, 0.5, 0.9]))),
                outputs=outputs, inplace=place)


@SETTINGS
@given(cases=st.lists(dropout_test_case(), min_size=4, max_size=8))
def test_dropout_is_test(cases):
    check_cpu(cases)


def test_dropout_training():
    """Keeps a 1 - ratio share of the elements, scaled by 1 / (1 - ratio); new mask each run."""
    x = np.random.default_rng(4).standard_normal((100, 300)).astype(F32)
    x[0, :3] = [np.nan, np.inf, 0.0]
    cases = [Case("Dropout", [x], dict(is_test=0, ratio=r), outputs=2, compare=False)
             for r in (0.0, 0.25, 0.75)]
    cases.append(Case("Dropout", [x.copy()], dict(is_test=0, ratio=0.5), compare=False,
                      inplace={0: 0}))
    first, second = _runs(cases)
    for (y, mask), (_, mask2), ratio in zip(first, second, (0.0, 0.25, 0.75)):
        assert mask.dtype == np.bool_ and y.dtype == F32
        assert abs(mask.mean() - (1 - ratio)) < 0.01
        want = x * np.float32(1 / (1 - ratio)) * mask
        np.testing.assert_array_equal(y, want)
        if ratio:
            assert not np.array_equal(mask, mask2)
    y = first[3][0]
    assert abs((y == 0).mean() - 0.5) < 0.01


# ----------------------------------------------------------------------------- LearningRate

@st.composite
def lr_case(draw):
    policy = draw(st.sampled_from(["fixed", "step", "exp", "inv", "poly"]))
    args = dict(base_lr=draw(st.sampled_from([0.1, -0.01, 1.0])), policy=policy)
    g = st.sampled_from([0.999, 0.5, 0.1, 1.0001])
    if policy == "step":
        args.update(stepsize=draw(st.sampled_from([1, 7, 1000])), gamma=draw(g))
    elif policy == "exp":
        args.update(gamma=draw(g))
    elif policy == "inv":
        args.update(gamma=draw(g), power=draw(st.sampled_from([0.5, 0.75, 2.0])))
    elif policy == "poly":
        args.update(power=draw(st.sampled_from([0.5, 1.0, 2.0])))
        if draw(st.booleans()):
            args["max_iter"] = draw(st.sampled_from([100, 10000]))
    it = draw(st.sampled_from([0, 1, 5, 99, 1234, 10**6]))
    shape = draw(st.sampled_from([(1,), (), (2,)]))
    return Case("LearningRate", [np.full(shape, it, np.int64)], args)


@SETTINGS
@given(cases=st.lists(lr_case(), min_size=6, max_size=10))
def test_learning_rate(cases):
    check_cpu(cases)


def test_learning_rate_other_policy_falls_back():
    """Policies without a closed form here run on the reference, visibly."""
    case = Case("LearningRate", [np.array([5], np.int64)],
                dict(base_lr=0.1, policy="linearWarmup", num_iter=10))
    got = compiled_outputs([case], expect_compiled=False)
    np.testing.assert_array_equal(got[0][0], reference_outputs(case, 0)[0])
    segs = next(iter(workspace._ws().nets.values())).compiled.segments
    assert isinstance(segs[0], ReferenceSegment)
