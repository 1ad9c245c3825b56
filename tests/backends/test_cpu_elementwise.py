"""Cython kernels of the elementwise ops against the reference executor.

Unary ops (every entry of the reference's `_UNARY` table, every dtype it takes), binary ops
with numpy and legacy (broadcast=1, axis/axis_str) broadcasting, Pow, Sum/Max/Min,
WeightedSum and Cast. Each hypothesis example draws a list of cases and compiles them as
one module (`check_cpu`).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import dtypes, workspace
from c2compile.errors import OpError
from c2compile.ops.elementwise import _BINARY, _CAST_FROM, _UNARY
from c2compile.ops.schema import get_op
from c2compile.runtime.compiled import ReferenceSegment
from tests.backends.cpu_harness import (
    Case, _op, assert_compiled, check_cpu, compiled_outputs, create_net, reference_outputs)

SETTINGS = settings(max_examples=4, deadline=None)
ANY_DTYPES = (np.float32, np.float64, np.int32, np.int64, np.bool_, np.int8, np.uint8,
              np.int16, np.uint16)
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0])


# ----------------------------------------------------------------------------- data

def shapes(max_dims=4, dims=(1, 2, 3, 5, 7)):
    return st.lists(st.sampled_from(dims), min_size=0, max_size=max_dims).map(tuple)


def _data(draw, shape, dtype, *, small_ints=False, specials=True, scale=None):
    """Random data of `dtype`: floats with some NaN/inf/0 mixed in, ints over their whole
    range (or a small one, so that comparisons see equal values), bools."""
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        scale = scale or draw(st.sampled_from([0.5, 3.0, 30.0]))
        x = np.array(r.standard_normal(shape) * scale)
        if draw(st.booleans()):
            np.round(x, out=x)  # repeated values: ties in comparisons, Max/Min
        if specials and x.size and draw(st.booleans()):
            mask = np.array(r.random(shape) < 0.2)
            x[mask] = r.choice(SPECIALS, size=int(mask.sum()))
        return x.astype(dtype)
    if dtype.kind == "b":
        return np.array(r.random(shape) < 0.5)
    info = np.iinfo(dtype)
    lo, hi = (-3, 4) if small_ints else (int(info.min), int(info.max) + 1)
    return np.array(r.integers(max(lo, info.min), min(hi, info.max + 1), size=shape, dtype=dtype))


# ----------------------------------------------------------------------------- unary

UNARY = {t: (allowed or ANY_DTYPES, inplace) for t, allowed, inplace, _, _ in _UNARY}


def _unary_args(draw, op_type):
    f = st.sampled_from([0.01, 0.1, 0.2, -1.5, 2.0, 0.0])
    if op_type in ("LeakyRelu", "Elu"):
        return {} if draw(st.booleans()) else dict(alpha=draw(f))
    if op_type == "Clip":
        args = {}
        for name in ("min", "max"):
            if draw(st.booleans()):
                args[name] = draw(st.sampled_from([-1.0, -0.1, 0.0, 0.5, 2.0, 1e30]))
        return args  # min > max included: the result is max
    if op_type == "Scale":
        return {} if draw(st.booleans()) else dict(scale=draw(f))
    return {}


@st.composite
def unary_case(draw, op_types=tuple(UNARY)):
    op_type = draw(st.sampled_from(op_types))
    allowed, inplace = UNARY[op_type]
    dtype = draw(st.sampled_from(allowed))
    x = _data(draw, draw(shapes(dims=(0, 1, 2, 3, 5, 7, 16))), dtype)
    place = {0: 0} if inplace and draw(st.booleans()) else {}
    return Case(op_type, [x], _unary_args(draw, op_type), inplace=place)


@SETTINGS
@given(cases=st.lists(unary_case(), min_size=8, max_size=12))
def test_unary(cases):
    check_cpu(cases)


def test_every_unary_op():
    """All unary ops and dtypes at once, on data that reaches their edges."""
    r = np.random.default_rng(1)
    x = np.concatenate([SPECIALS, r.standard_normal(40) * 3, [88.5, 89.0, -90.0, 1e-30, 0.99]])
    cases = []
    for op_type, (allowed, _) in UNARY.items():
        for dtype in allowed:
            if np.dtype(dtype).kind == "f":
                data = x.astype(dtype)
            elif np.dtype(dtype).kind == "b":
                data = r.random(17) < 0.5
            else:
                info = np.iinfo(dtype)
                data = np.concatenate([[info.min, info.max, 0, -1 if info.min else 1],
                                       r.integers(info.min, info.max, 20)]).astype(dtype)
            cases.append(Case(op_type, [data]))
    cases.append(Case("Clip", [x.astype(np.float32)], dict(min=2.0, max=-1.0)))
    cases.append(Case("Scale", [x], dict(scale=0.1)))   # 0.1 rounded to float32 first
    check_cpu(cases)


# ----------------------------------------------------------------------------- binary

BINARY = {t: (allowed, inplace) for t, allowed, inplace, *_ in _BINARY}
BINARY["Pow"] = ((np.float32,), get_op("Pow").inplace)


@st.composite
def numpy_shapes(draw):
    """A and B that broadcast numpy-style: each dim kept or 1, leading dims maybe dropped."""
    out = draw(shapes(dims=(1, 2, 3, 4, 5)))

    def operand():
        s = [d if draw(st.integers(0, 3)) else 1 for d in out]
        return tuple(s[draw(st.integers(0, len(s))):])
    return operand(), operand()


@st.composite
def legacy_shapes(draw):
    """broadcast=1: B a run of A's dims from `axis` (outer 1s allowed), or one element.
    Returns (A shape, B shape, args)."""
    a = draw(st.lists(st.sampled_from([1, 2, 3, 4, 5]), min_size=1, max_size=4).map(tuple))
    if draw(st.integers(0, 4)) == 0:
        return a, draw(st.sampled_from([(), (1,), (1, 1)])), dict(broadcast=1)
    n = draw(st.integers(1, len(a)))
    axis = draw(st.integers(0, len(a) - n))
    b = list(a[axis:axis + n])
    lo, hi = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
    b[:lo] = [1] * lo                        # leading / trailing size-1 dims broadcast
    if hi:
        b[-hi:] = [1] * hi
    args = dict(broadcast=1)
    if axis == len(a) - n and draw(st.booleans()):
        pass                                 # default axis: aligned to the end
    elif len(a) == 4 and draw(st.booleans()):
        order = draw(st.sampled_from(["NCHW", "NHWC"]))
        args.update(axis_str=order[axis], order=order)
    else:
        args["axis"] = axis
    return a, tuple(b), args


@st.composite
def binary_case(draw):
    op_type = draw(st.sampled_from(sorted(BINARY)))
    allowed, inplace = BINARY[op_type]
    dtype = np.dtype(draw(st.sampled_from(allowed)))
    if op_type == "Pow":
        form = draw(st.sampled_from(["same", "legacy", "arg"]))
        a_shape = draw(shapes())
        if form == "arg":
            x = _data(draw, a_shape, dtype)
            return Case(op_type, [x], dict(exponent=draw(st.sampled_from([2.0, 0.5, -1.3, 3.0]))))
        a_shape, b_shape, args = (a_shape, a_shape, {}) if form == "same" else draw(legacy_shapes())
    elif draw(st.integers(0, 2)):
        (a_shape, b_shape), args = draw(numpy_shapes()), {}
    else:
        a_shape, b_shape, args = draw(legacy_shapes())
    small = op_type in ("EQ", "NE", "LT", "LE", "GT", "GE")
    a = _data(draw, a_shape, dtype, small_ints=small)
    b = _data(draw, b_shape, dtype, small_ints=small)
    if op_type == "Div" and dtype.kind == "i":
        b[b == 0] = -1                       # zero divisors: see test_integer_div_by_zero
    out_shape = np.broadcast_shapes(a.shape, np.reshape(b, b_shape).shape) \
        if not args.get("broadcast") else a.shape
    place = {}
    if (0, 0) in inplace and a.shape == out_shape and draw(st.booleans()):
        place = {0: 0}
    elif (1, 0) in inplace and not args.get("broadcast") and b.shape == out_shape \
            and draw(st.booleans()):
        place = {0: 1}
    return Case(op_type, [a, b], args, inplace=place)


@SETTINGS
@given(cases=st.lists(binary_case(), min_size=8, max_size=12))
def test_binary(cases):
    check_cpu(cases)


def test_binary_edges():
    """Integer wrap-around and truncation, MIN / -1, empty and 0-d operands, big loops."""
    r = np.random.default_rng(2)
    i32 = np.iinfo(np.int32)
    ints = np.array([i32.min, i32.max, -7, 7, -1, 0, 5], np.int32)
    divs = np.array([-1, -1, 2, -2, 3, -3, 2], np.int32)
    big = r.standard_normal((64, 3, 17, 19)).astype(np.float32)
    cases = [
        Case("Div", [ints, divs]),
        Case("Div", [ints.astype(np.int64) * 3, divs.astype(np.int64)]),
        Case("Add", [ints, ints]), Case("Mul", [ints, ints]), Case("Sub", [ints, -ints]),
        Case("Mul", [ints.astype(np.int64) << 40, ints.astype(np.int64)]),
        Case("Add", [np.zeros((0, 3), np.float32), np.ones(3, np.float32)]),
        Case("Add", [np.zeros((2, 0), np.float32), np.ones((2, 1), np.float32)]),
        Case("Div", [np.zeros((0, 3), np.int32), np.ones(3, np.int32)]),
        Case("Mul", [np.float32(3.0) * np.ones((), np.float32), np.ones((), np.float32)]),
        Case("Sub", [np.ones((), np.float32), big[:2]]),                   # A broadcasts
        Case("Add", [big, r.standard_normal((3, 1, 1)).astype(np.float32)],
             dict(broadcast=1, axis=1)),                                   # NCHW bias
        Case("Mul", [big, r.standard_normal((19,)).astype(np.float32)], dict(broadcast=1)),
        Case("GE", [big, r.standard_normal((3, 17, 1)).astype(np.float32)],
             dict(broadcast=1, axis_str="C", order="NCHW")),
        Case("Add", [big, big], inplace={0: 1}),
        Case("Mul", [big, big], inplace={0: 0}),
    ]
    check_cpu(cases)


def test_integer_div_by_zero():
    """A zero divisor fails the run and names the op, as on the reference."""
    a, b = np.arange(6, dtype=np.int32).reshape(2, 3), np.array([1, 0, 2], np.int32)
    with pytest.raises(OpError, match="division by zero"):
        reference_outputs(Case("Div", [a, b]), 0)
    with pytest.raises(OpError, match=r"Div.*division by zero"):
        compiled_outputs([Case("Div", [a, b])])
    # also when the output is empty: the reference checks every element of B
    with pytest.raises(OpError, match="division by zero"):
        compiled_outputs([Case("Div", [np.zeros((0, 3), np.int64), b.astype(np.int64)])])


# ----------------------------------------------------------------------------- variadic

@st.composite
def variadic_case(draw):
    op_type = draw(st.sampled_from(["Sum", "Max", "Min"]))
    dtypes_ = (np.float32, np.float64, np.int32, np.int64) if op_type == "Sum" else (np.float32,)
    dtype = draw(st.sampled_from(dtypes_))
    shape = draw(shapes(dims=(0, 1, 2, 3, 5, 7)))
    xs = [_data(draw, shape, dtype, small_ints=True) for _ in range(draw(st.integers(1, 4)))]
    return Case(op_type, xs, inplace={0: 0} if draw(st.booleans()) else {})


@st.composite
def weighted_sum_case(draw):
    shape = draw(shapes(dims=(1, 2, 3, 5)))
    size = int(np.prod(shape))
    ins = []
    for i in range(draw(st.integers(1, 3))):
        x_shape = shape if i == 0 or draw(st.booleans()) else (size,)   # same size suffices
        w_shape = draw(st.sampled_from([(1,), (), (1, 1)]))
        ins += [_data(draw, x_shape, np.float32, specials=False),
                _data(draw, w_shape, np.float32, specials=False)]
    return Case("WeightedSum", ins, inplace={0: 0} if draw(st.booleans()) else {})


@SETTINGS
@given(cases=st.lists(st.one_of(variadic_case(), weighted_sum_case()), min_size=6, max_size=10))
def test_variadic_and_weighted_sum(cases):
    check_cpu(cases)


def test_max_min_nan_order():
    """A NaN already in the running max/min wins; a NaN in a later input does not."""
    a = np.array([np.nan, 1.0, 2.0, np.nan], np.float32)
    b = np.array([1.0, np.nan, 3.0, np.nan], np.float32)
    c = np.array([5.0, 0.0, -1.0, 0.0], np.float32)
    check_cpu([Case(t, ins) for t in ("Max", "Min") for ins in ([a, b], [b, a], [a, b, c])])


# ----------------------------------------------------------------------------- Cast

CAST_TO = (dtypes.FLOAT, dtypes.DOUBLE, dtypes.INT32, dtypes.INT64, dtypes.BOOL, dtypes.UINT8,
           dtypes.INT8, dtypes.UINT16, dtypes.INT16)


@st.composite
def cast_case(draw):
    src = np.dtype(draw(st.sampled_from(_CAST_FROM)))
    to = draw(st.sampled_from(CAST_TO))
    shape = draw(shapes(dims=(0, 1, 2, 3, 7)))
    if src.kind == "f":
        # in int32 range: beyond it C and numpy agree only by the CPU's convention
        x = _data(draw, shape, src, scale=draw(st.sampled_from([3.0, 300.0, 1e6])),
                  specials=False)
        if draw(st.booleans()):
            x = x.astype(np.float64).clip(-2**31 + 256, 2**31 - 256).astype(src)
    else:
        x = _data(draw, shape, src)
    spelling = draw(st.sampled_from(["int", "name", "lower"]))
    to_arg = to if spelling == "int" else (dtypes.name(to) if spelling == "name"
                                           else dtypes.name(to).lower())
    args = dict(to=to_arg)
    if draw(st.booleans()):
        args["from_type"] = dtypes.from_numpy(src)
    return Case("Cast", [x], args)


@SETTINGS
@given(cases=st.lists(cast_case(), min_size=8, max_size=12))
def test_cast(cases):
    check_cpu(cases)


def test_cast_to_string_falls_back():
    """Cast to STRING has no kernel: it runs on the reference, visibly, and right."""
    x = np.array([1.5, -2.0], np.float32)
    case = Case("Cast", [x], dict(to=dtypes.STRING))
    got = compiled_outputs([case, Case("Relu", [x])], expect_compiled=False)
    np.testing.assert_array_equal(got[0][0], reference_outputs(case, 0)[0])
    created = next(iter(workspace._ws().nets.values()))
    segs = created.compiled.segments
    assert any(isinstance(s, ReferenceSegment) and s.ops[0].type == "Cast" for s in segs)


# ----------------------------------------------------------------------------- in place

def test_in_place_across_runs():
    """From the second run on, a blob the net wrote in place is its own input buffer
    (o0 == i0 inside the kernel): three runs must compound exactly as on the reference."""
    r = np.random.default_rng(5)
    f = lambda *s: r.standard_normal(s).astype(np.float32)   # noqa: E731
    cases = [
        Case("Scale", [f(3, 4)], dict(scale=0.5), inplace={0: 0}),
        Case("Clip", [f(7) * 3], dict(min=-2.0, max=1.0), inplace={0: 0}),
        Case("Add", [f(2, 3, 4), f(3, 1)], dict(broadcast=1, axis=1), inplace={0: 0}),
        Case("Mul", [f(4, 1), f(4, 5)], inplace={0: 1}),
        Case("Sub", [f(5), f(5)], inplace={0: 1}),
        Case("Div", [np.arange(1, 9, dtype=np.int64) * 1000, np.array(3, np.int64)],
             inplace={0: 0}),
        Case("Sum", [f(6), f(6), f(6)], inplace={0: 0}),
        Case("Max", [f(6), f(6)], inplace={0: 0}),
        Case("WeightedSum", [f(2, 3), np.array([0.9], np.float32), f(6), f(1)],
             inplace={0: 0}),
        Case("StopGradient", [f(3)], inplace={0: 0}),
        Case("Negative", [np.arange(5, dtype=np.int32)], inplace={0: 0}),
        Case("Pow", [np.abs(f(4)) + 0.5], dict(exponent=1.5), inplace={0: 0}),
    ]
    name = create_net(cases)
    for _ in range(3):
        workspace.RunNet(name)
        for i, case in enumerate(cases):
            (want,) = reference_outputs(case, i)
            case.inputs[case.inplace[0]] = want      # what the next run reads
            got = workspace.FetchBlob(_op(case, i).output[0])
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=case.op_type)
    assert_compiled(name)


def test_big_elementwise_ops_split_between_two_threads():
    """From lowering.SPLIT_ELEMS elements on, unary ops, their gradients and WeightedSum run
    as two-thread loops; the numbers stay the reference's (and in place works)."""
    rng = np.random.default_rng(5)
    n = (1 << 16) + 3  # odd: the halves differ
    x = rng.standard_normal(n).astype(np.float32)
    y = np.maximum(x, 0)
    dy = rng.standard_normal(n).astype(np.float32)
    w = np.array([0.5], np.float32)
    cases = [Case("Relu", [x]), Case("Sigmoid", [x]), Case("Exp", [x], rtol=1e-5),
             Case("Relu", [x], inplace={0: 0}), Case("ReluGradient", [y, dy]),
             Case("WeightedSum", [x, w, dy, w])]
    check_cpu(cases)
    name = create_net(cases)
    workspace.RunNet(name)
    (variant,) = workspace._ws().nets[name].compiled.segments[0].variants.values()
    assert variant.source.count("two threads take half each") == len(cases)
