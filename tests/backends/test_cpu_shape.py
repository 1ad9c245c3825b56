"""Cython kernels of the shape ops (Concat, Split, Reshape, Flatten, FlattenToVec, Transpose,
Squeeze, ExpandDims, Slice, Shape) against the reference executor.

Each hypothesis example draws a list of cases over shapes (size-1 and empty dims included),
axes in both signs, argument spellings and dtypes, and compiles them as one module.
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from c2compile import config, core, workspace
from c2compile.runtime.compiled import CythonSegment, ReferenceSegment
from tests.backends.cpu_harness import Case, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
DTYPES = [np.float32, np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8]
NUMERIC = [np.float32, np.float64, np.int32, np.int64]   # Transpose's dtypes
dim = st.integers(1, 5)


def _data(draw, shape, dtype):
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * 10
    return (x > 0) if dtype == np.bool_ else x.astype(dtype)


def _shape(draw, lo=1, hi=4, empty=False):
    dims = st.integers(0 if empty else 1, 5)
    return draw(st.lists(dims, min_size=lo, max_size=hi))


def _axis_args(draw, ndim):
    """An axis (either sign), or the order spelling of axis 1 / 3 for 4-d inputs."""
    axis = draw(st.integers(0, ndim - 1))
    if ndim == 4 and axis in (1, 3) and draw(st.booleans()):
        return axis, dict(order="NCHW" if axis == 1 else "NHWC")
    if axis == 1 and draw(st.booleans()):
        return axis, {}   # the default: NCHW's C
    return axis, dict(axis=draw(st.sampled_from([axis, axis - ndim])))


@st.composite
def concat_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = _shape(draw, empty=draw(st.integers(0, 5)) == 0)
    n = draw(st.integers(1, 4))
    if draw(st.integers(0, 3)) == 0:   # add_axis: stack along a new axis
        axis = draw(st.integers(0, len(shape)))
        ins = [_data(draw, shape, dtype) for _ in range(n)]
        return Case("Concat", ins, dict(axis=axis, add_axis=1), outputs=2)
    axis, args = _axis_args(draw, len(shape))
    ins = []
    for _ in range(n):
        s = list(shape)
        s[axis] = draw(st.integers(0, 4))
        ins.append(_data(draw, s, dtype))
    return Case(draw(st.sampled_from(["Concat", "DepthConcat"])), ins, args, outputs=2)


@st.composite
def split_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = _shape(draw)
    axis, args = _axis_args(draw, len(shape))
    n = draw(st.integers(1, 4))
    form = draw(st.sampled_from(["equal", "split", "add_axis"]))
    if form == "equal":
        shape[axis] = n * draw(st.integers(1, 3))
    elif form == "split":
        sizes = [draw(st.integers(0, 3)) for _ in range(n)]
        shape[axis] = sum(sizes)
        args["split"] = sizes
    else:
        args = dict(axis=axis, add_axis=1)
        shape[axis] = n
    return Case(draw(st.sampled_from(["Split", "DepthSplit"])), [_data(draw, shape, dtype)],
                args, outputs=n)


@st.composite
def reshape_like_case(draw):
    """Reshape (0 and -1 entries, in place or not), Flatten, FlattenToVec, Squeeze,
    ExpandDims (in place or not)."""
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["Reshape", "Flatten", "FlattenToVec", "Squeeze",
                                 "ExpandDims"]))
    shape = _shape(draw, empty=draw(st.integers(0, 5)) == 0)
    inplace = {0: 0} if draw(st.booleans()) else {}
    if kind == "Reshape":
        total = int(np.prod(shape))
        new = [total] if total else [0]
        if total and draw(st.booleans()):   # split off a factor, keep a dim with 0, infer one
            f = draw(st.sampled_from([d for d in range(1, total + 1) if total % d == 0]))
            new = [f, total // f]
            if draw(st.booleans()):
                new[draw(st.integers(0, 1))] = -1
        if draw(st.booleans()) and len(shape) == 2 and total:
            new = [0, -1]
        return Case(kind, [_data(draw, shape, dtype)], dict(shape=new), outputs=2,
                    inplace=inplace)
    if kind == "Flatten":
        return Case(kind, [_data(draw, shape, dtype)],
                    dict(axis=draw(st.integers(0, len(shape)))))
    if kind == "FlattenToVec":
        return Case(kind, [_data(draw, shape, dtype)])
    if kind == "Squeeze":
        ones = draw(st.lists(st.integers(0, len(shape)), min_size=1, max_size=3))
        for i in sorted(set(ones)):
            shape.insert(i, 1)
        dims = [i for i, d in enumerate(shape) if d == 1]
        dims = draw(st.lists(st.sampled_from(dims), min_size=1, max_size=3))
        return Case(kind, [_data(draw, shape, dtype)], dict(dims=dims), inplace=inplace)
    dims = draw(st.lists(st.integers(0, len(shape) + 1), min_size=1, max_size=2, unique=True))
    if max(dims) >= len(shape) + len(dims):
        dims = [0]
    return Case(kind, [_data(draw, shape, dtype)], dict(dims=dims), inplace=inplace)


@st.composite
def transpose_case(draw):
    dtype = draw(st.sampled_from(NUMERIC))
    shape = _shape(draw, 1, 5, empty=draw(st.integers(0, 5)) == 0)
    args = {}
    if draw(st.integers(0, 3)):
        args["axes"] = draw(st.permutations(range(len(shape))))
    return Case("Transpose", [_data(draw, shape, dtype)], args)


@st.composite
def slice_case(draw):
    """Slice (argument form): one dim cut, negative indices counting from dim + 1."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = _shape(draw, 1, 4)
    n = draw(st.integers(1, len(shape)))
    cut = draw(st.integers(0, n - 1))
    starts, ends = [0] * n, [-1] * n
    d = shape[cut]
    s = draw(st.integers(0, d))
    e = draw(st.integers(s, d))
    starts[cut] = draw(st.sampled_from([s, s - d - 1])) if s < d else s
    ends[cut] = draw(st.sampled_from([e, e - d - 1]))
    return Case("Slice", [_data(draw, shape, dtype)], dict(starts=starts, ends=ends))


@st.composite
def shape_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = _shape(draw, 0, 4, empty=True)
    args = {}
    if shape and draw(st.booleans()):
        args["axes"] = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=3))
    return Case("Shape", [_data(draw, shape, dtype)], args)


def _cases(strategy, lo=6, hi=12):
    return st.lists(strategy, min_size=lo, max_size=hi)


@SETTINGS
@given(_cases(st.one_of(concat_case(), split_case())))
def test_concat_split(cases):
    check_cpu(cases)


@SETTINGS
@given(_cases(st.one_of(reshape_like_case(), transpose_case(), slice_case(), shape_case())))
def test_reshape_transpose_slice_shape(cases):
    check_cpu(cases)


def test_big_transposes_and_concat():
    """Written out: NCHW <-> NHWC of a real-sized tensor, merged dims, a 5-d permutation,
    Concat of SqueezeNet's fire outputs."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    check_cpu([
        Case("Transpose", [r(2, 64, 28, 28)], dict(axes=[0, 2, 3, 1])),
        Case("Transpose", [r(2, 28, 28, 64)], dict(axes=[0, 3, 1, 2])),
        Case("Transpose", [r(3, 1, 4, 5, 2)], dict(axes=[4, 0, 2, 3, 1])),
        Case("Transpose", [r(33, 65)]),
        Case("Concat", [r(1, 64, 56, 56), r(1, 64, 56, 56)], dict(order="NCHW"), outputs=2),
        Case("Split", [r(2, 6, 5)], dict(axis=-1, split=[1, 0, 4]), outputs=3),
        Case("Slice", [r(4, 6, 5)], dict(starts=[1, 0, 0], ends=[3, -1, -1])),
    ])


def test_data_dependent_forms_fall_back_visibly():
    """Split sizes, Reshape's shape and Slice's indices given as inputs decide the output
    shape from data: those ops run on the reference (a ReferenceSegment says why) while the
    ops around them stay compiled, and the results match the reference."""
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    feeds = dict(x=x, sizes=np.array([1, 3], np.int32), shape=np.array([3, 6], np.int64),
                 starts=np.array([0, 1], np.int32), ends=np.array([-1, 3], np.int32))
    net = core.Net("fallback")
    net.Relu(["x"], ["r"])
    net.Split(["r", "sizes"], ["a", "b"], axis=2)
    net.Reshape(["b", "shape"], ["c", "old"])
    net.Slice(["r", "starts", "ends"], ["d"])
    net.FlattenToVec(["d"], ["e"])
    outs = ["a", "b", "c", "old", "d", "e"]
    got = {}
    for backend in ("cpu", "reference"):
        with config.patch(backend=backend):
            workspace.ResetWorkspace()
            for k, v in feeds.items():
                workspace.FeedBlob(k, v)
            workspace.CreateNet(net)
            workspace.RunNet(net.Name())
            got[backend] = {b: workspace.FetchBlob(b) for b in outs}
            if backend == "cpu":
                segs = workspace._ws().nets[net.Name()].compiled.segments
                kinds = [(type(s).__name__, [o.type for o in s.ops]) for s in segs]
                assert kinds == [("CythonSegment", ["Relu"]),
                                 ("ReferenceSegment", ["Split", "Reshape", "Slice"]),
                                 ("CythonSegment", ["FlattenToVec"])], kinds
                assert all(isinstance(s, CythonSegment) or "no Cython kernel" in s.why
                           for s in segs if isinstance(s, (CythonSegment, ReferenceSegment)))
    for b in outs:
        np.testing.assert_array_equal(got["cpu"][b], got["reference"][b], err_msg=b)
