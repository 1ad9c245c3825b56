"""Elementwise ops against PyTorch CPU (or closed forms), plus Caffe2's dtype, broadcasting
and in-place rules, pinned from the Caffe2 1.x sources and the PyTorch 1.10.2 Caffe2 build."""
import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings

from c2compile import core
from c2compile.errors import ArgumentError, OpError, ShapeError
from c2compile.ops.schema import TensorType, bind
from c2compile.ops.testing import infer, run

F = torch.nn.functional
f32 = np.float32
FEW = settings(max_examples=12, deadline=None)
SOME = settings(max_examples=30, deadline=None)


def shapes(min_dims=0, max_dims=4, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def floats(shape, lo=-5.0, hi=5.0, dtype=f32):
    lo, hi = float(np.float32(lo)), float(np.float32(hi))  # bounds hypothesis can represent
    return hnp.arrays(dtype, shape, elements=st.floats(lo, hi, width=32))


def ints(shape, lo=-50, hi=50, dtype=np.int32):
    return hnp.arrays(dtype, shape, elements=st.integers(lo, hi))


def t64(x):
    """A float64 torch tensor of x (exact for float32/int data)."""
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def close(actual, expected, rtol=1e-5, atol=1e-6):
    if isinstance(expected, torch.Tensor):
        expected = expected.numpy()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


def c32(v):
    """A float argument as Caffe2 reads it: rounded to C++ float."""
    return float(np.float32(v))


# ----------------------------------------------------------------------------- unary

# type: (expected from a float64 torch tensor and the float32-rounded args, input domain,
#        argument strategy)
NOARGS = st.just({})
UNARY = {
    "Relu": (lambda t, a: torch.relu(t), (-5, 5), NOARGS),
    "Sigmoid": (lambda t, a: torch.sigmoid(t), (-20, 20), NOARGS),
    "Tanh": (lambda t, a: torch.tanh(t), (-5, 5), NOARGS),
    "Exp": (lambda t, a: torch.exp(t), (-10, 10), NOARGS),
    "Log": (lambda t, a: torch.log(t), (0.01, 100), NOARGS),
    "Sqrt": (lambda t, a: torch.sqrt(t), (0, 100), NOARGS),
    "Abs": (lambda t, a: torch.abs(t), (-5, 5), NOARGS),
    "Negative": (lambda t, a: torch.neg(t), (-5, 5), NOARGS),
    "Sign": (lambda t, a: torch.sign(t), (-3, 3), NOARGS),
    "Sqr": (lambda t, a: torch.square(t), (-5, 5), NOARGS),
    "Cube": (lambda t, a: torch.pow(t, 3), (-5, 5), NOARGS),
    "Reciprocal": (lambda t, a: torch.reciprocal(t), (0.05, 20), NOARGS),
    "Rsqrt": (lambda t, a: torch.rsqrt(t), (0.01, 100), NOARGS),
    "Cbrt": (lambda t, a: torch.sign(t) * torch.abs(t) ** (1 / 3), (-8, 8), NOARGS),
    "Log1p": (lambda t, a: torch.log1p(t), (-0.9, 10), NOARGS),
    "Sin": (lambda t, a: torch.sin(t), (-6, 6), NOARGS),
    "Cos": (lambda t, a: torch.cos(t), (-6, 6), NOARGS),
    "Tan": (lambda t, a: torch.tan(t), (-1.4, 1.4), NOARGS),
    "Asin": (lambda t, a: torch.asin(t), (-1, 1), NOARGS),
    "Acos": (lambda t, a: torch.acos(t), (-1, 1), NOARGS),
    "Atan": (lambda t, a: torch.atan(t), (-10, 10), NOARGS),
    "Sinh": (lambda t, a: torch.sinh(t), (-5, 5), NOARGS),
    "Cosh": (lambda t, a: torch.cosh(t), (-5, 5), NOARGS),
    "Floor": (lambda t, a: torch.floor(t), (-5, 5), NOARGS),
    "Ceil": (lambda t, a: torch.ceil(t), (-5, 5), NOARGS),
    "Softsign": (lambda t, a: F.softsign(t), (-5, 5), NOARGS),
    "Softplus": (lambda t, a: F.softplus(t), (-15, 30), NOARGS),
    "LeakyRelu": (lambda t, a: F.leaky_relu(t, c32(a.get("alpha", 0.01))), (-5, 5),
                  st.one_of(NOARGS, st.fixed_dictionaries({"alpha": st.floats(-2, 2)}))),
    "Elu": (lambda t, a: F.elu(t, c32(a.get("alpha", 1.0))), (-5, 5),
            st.one_of(NOARGS, st.fixed_dictionaries({"alpha": st.floats(-2, 3)}))),
    "Clip": (lambda t, a: torch.clamp(t, c32(a.get("min", -1e30)), c32(a.get("max", 1e30))),
             (-5, 5),
             st.fixed_dictionaries({}, optional={"min": st.floats(-4, 4),
                                                 "max": st.floats(-4, 4)})),
    "Scale": (lambda t, a: t * c32(a.get("scale", 1.0)), (-5, 5),
              st.one_of(NOARGS, st.fixed_dictionaries({"scale": st.floats(-4, 4)}))),
    "Copy": (lambda t, a: t.clone(), (-5, 5), NOARGS),
    "StopGradient": (lambda t, a: t.clone(), (-5, 5), NOARGS),
}

# From Caffe2's schemas (checked by running each op in place in Caffe2 1.10.2).
INPLACE_OK = set("""Relu Sigmoid Tanh Exp Log Sqrt Negative Sqr Reciprocal Rsqrt Cbrt Floor Ceil
Softsign Softplus LeakyRelu Elu Clip Scale StopGradient""".split())
INPLACE_NO = set("Abs Sign Cube Log1p Sin Cos Tan Asin Acos Atan Sinh Cosh Copy Not Cast".split())
# Input dtypes besides float32 that Caffe2 registers each op for.
EXTRA_DTYPES = {"Sqrt": [np.float64], "Scale": [np.float64],
                "Negative": [np.float64, np.int32, np.int64],
                "Sign": [np.float64, np.int32, np.int64], "Cube": [np.float64, np.int32, np.int64]}


@pytest.mark.parametrize("op_type", sorted(UNARY))
@FEW
@given(data=st.data())
def test_unary_against_torch(op_type, data):
    expected_fn, (lo, hi), arg_strategy = UNARY[op_type]
    x = data.draw(floats(shapes(), lo, hi))
    args = data.draw(arg_strategy)
    (y,) = run(op_type, [x], **args)
    assert y.dtype == np.float32 and y.shape == x.shape
    close(y, expected_fn(t64(x), args))


@pytest.mark.parametrize("op_type", sorted(EXTRA_DTYPES))
@FEW
@given(data=st.data())
def test_unary_other_dtypes_keep_their_type(op_type, data):
    dtype = data.draw(st.sampled_from(EXTRA_DTYPES[op_type]))
    shape = data.draw(shapes())
    if np.dtype(dtype).kind == "i":
        x = data.draw(ints(shape, -20, 20, dtype))
    else:
        x = data.draw(floats(shape, 0, 9, dtype))
    (y,) = run(op_type, [x])
    assert y.dtype == dtype and y.shape == x.shape
    expected = UNARY[op_type][0](torch.from_numpy(x), {})
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-12 if dtype == np.float64 else 0)


@pytest.mark.parametrize("op_type", sorted(set(UNARY) - {"Copy", "StopGradient"}))
def test_unary_rejects_dtypes_caffe2_does_not_register(op_type):
    allowed = {np.dtype(np.float32)} | {np.dtype(d) for d in EXTRA_DTYPES.get(op_type, [])}
    for dtype in (np.float64, np.int32, np.int64, np.bool_, np.float16, np.uint8):
        if np.dtype(dtype) in allowed:
            continue
        with pytest.raises(ShapeError) as err:
            run(op_type, [np.ones((2, 3), dtype)])
        names_op(err, op_type)


@pytest.mark.parametrize("op_type", ["Copy", "StopGradient"])
def test_copy_takes_any_dtype(op_type):
    for x in (np.arange(6, dtype=np.int64).reshape(2, 3), np.array([True, False]),
              np.ones(3, np.float16), np.array([b"a", b"bc"], dtype=object), np.array(2.5)):
        (y,) = run(op_type, [x])
        assert y.dtype == x.dtype and y.shape == x.shape and y is not x
        assert (y == x).all()


@pytest.mark.parametrize("op_type", sorted(INPLACE_OK | INPLACE_NO))
def test_unary_inplace_rules(op_type):
    x = np.linspace(0.1, 0.9, 6, dtype=f32).reshape(2, 3)
    args = {"to": core.DataType.INT32} if op_type == "Cast" else {}
    if op_type == "Not":
        x = x > 0.5
    if op_type in INPLACE_OK:
        (y,) = run(op_type, [x], input_names=["x"], outputs=["x"], **args)
        np.testing.assert_array_equal(y, run(op_type, [x], **args)[0])
    else:
        with pytest.raises(ArgumentError) as err:
            run(op_type, [x], input_names=["x"], outputs=["x"], **args)
        names_op(err, op_type)


def test_unary_keeps_empty_and_0d_shapes():
    for op_type in ("Relu", "Sigmoid", "Clip", "Negative", "Copy"):
        for x in (np.zeros((0, 3), f32), np.array(-1.5, f32)):
            (y,) = run(op_type, [x])
            assert y.shape == x.shape and y.dtype == f32


def test_unary_infer_passes_unknown_shapes_through():
    assert infer("Relu", [TensorType(None)]) == [TensorType(None)]
    assert infer("Scale", [TensorType((3, 1), np.float64)]) == [TensorType((3, 1), np.float64)]


def test_float_arguments_are_rounded_to_float32_even_on_float64_data():
    """Caffe2 reads scale as a C++ float: 2.1 becomes 2.0999999046325684 (seen in 1.10.2)."""
    (y,) = run("Scale", [np.array([1.0])], scale=2.1)
    assert y[0] == float(np.float32(2.1)) != 2.1


def test_clip_default_bounds_are_the_float_range_not_infinity():
    """Unset min/max are numeric_limits<float>::lowest()/max(): +-inf is clipped to them."""
    (y,) = run("Clip", [np.array([-np.inf, np.inf, 1.0], f32)])
    assert y.tolist() == [np.finfo(f32).min, np.finfo(f32).max, 1.0]
    (y,) = run("Clip", [np.array([-np.inf, np.inf, np.nan], f32)], min=-1.0)
    assert y[0] == -1 and y[1] == np.finfo(f32).max and np.isnan(y[2])


def test_clip_min_above_max_gives_max():
    (y,) = run("Clip", [np.array([-2, 0, 2], f32)], min=1.0, max=-1.0)
    assert y.tolist() == [-1, -1, -1]


def test_softplus_is_the_naive_formula_as_in_caffe2():
    """Caffe2 computes log(exp(x) + 1) in float32: inf past ~88.7 and 0 below ~-17."""
    (y,) = run("Softplus", [np.array([-20.0, 0.0, 88.0, 89.0], f32)])
    assert y[0] == 0 and math.isclose(y[1], math.log(2), rel_tol=1e-6)
    assert y[2] == 88 and y[3] == np.inf


def test_not():
    (y,) = run("Not", [np.array([[True, False, True]])])
    assert y.dtype == np.bool_ and y.tolist() == [[False, True, False]]
    with pytest.raises(ShapeError) as err:
        run("Not", [np.array([1.0, 0.0], f32)])
    names_op(err, "Not")


@pytest.mark.parametrize("op_type,args", [("LeakyRelu", {"alpha": "x"}), ("Clip", {"lo": 1.0}),
                                          ("Relu", {"alpha": 0.1})])
def test_unary_bad_arguments(op_type, args):
    with pytest.raises(ArgumentError) as err:
        run(op_type, [np.ones(3, f32)], **args)
    names_op(err, op_type)


def test_unary_wrong_arity():
    with pytest.raises(ArgumentError) as err:
        run("Relu", [np.ones(3, f32), np.ones(3, f32)])
    names_op(err, "Relu")


# ----------------------------------------------------------------------------- binary, numpy mode

ARITH = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul,
         "Div": lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point()
         else a / b}
COMPARE = {"EQ": torch.eq, "NE": torch.ne, "LT": torch.lt, "LE": torch.le, "GT": torch.gt,
           "GE": torch.ge}
LOGIC = {"And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}


@st.composite
def broadcastable_shapes(draw):
    """Two shapes that broadcast numpy-style: each keeps a suffix of `out` with some dims 1."""
    out = draw(shapes(max_dims=4))
    result = []
    for _ in range(2):
        keep = draw(st.integers(0, len(out)))
        dims = [1 if draw(st.booleans()) and draw(st.booleans()) else d
                for d in out[len(out) - keep:]]
        result.append(tuple(dims))
    return result


def _operands(data, dtype, a_shape, b_shape, nonzero_b=False):
    if dtype == np.bool_:
        return (data.draw(hnp.arrays(np.bool_, a_shape)), data.draw(hnp.arrays(np.bool_, b_shape)))
    if np.dtype(dtype).kind == "i":
        a = data.draw(ints(a_shape, -40, 40, dtype))
        b = data.draw(ints(b_shape, 1 if nonzero_b else -40, 40, dtype))
        if nonzero_b:
            b = np.asarray(b * np.where(data.draw(hnp.arrays(np.bool_, b_shape)), -1, 1), dtype)
        return a, b
    a = data.draw(floats(a_shape, dtype=dtype))
    b = data.draw(floats(b_shape, 0.5, 5, dtype) if nonzero_b else floats(b_shape, dtype=dtype))
    if nonzero_b:
        b = np.asarray(b * np.where(data.draw(hnp.arrays(np.bool_, b_shape)), -1, 1), dtype)
    return a, b


@pytest.mark.parametrize("op_type", sorted(ARITH))
@SOME
@given(data=st.data(), ab=broadcastable_shapes(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
def test_arithmetic_numpy_broadcast_against_torch(op_type, data, ab, dtype):
    a, b = _operands(data, dtype, *ab, nonzero_b=op_type == "Div")
    (c,) = run(op_type, [a, b])
    expected = ARITH[op_type](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert c.dtype == dtype and c.shape == expected.shape
    if np.dtype(dtype).kind == "i":
        np.testing.assert_array_equal(c, expected)
    else:
        close(c, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("op_type", sorted(COMPARE))
@FEW
@given(data=st.data(), ab=broadcastable_shapes(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_]))
def test_comparisons_against_torch(op_type, data, ab, dtype):
    a, b = _operands(data, dtype, *ab)
    if dtype != np.bool_:  # make ties likely
        a, b = (np.asarray(np.round(v / 2), dtype) for v in (a, b))
    (c,) = run(op_type, [a, b])
    expected = COMPARE[op_type](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert c.dtype == np.bool_
    np.testing.assert_array_equal(c, expected)


@pytest.mark.parametrize("op_type", sorted(LOGIC))
@FEW
@given(data=st.data(), ab=broadcastable_shapes())
def test_logic_against_torch(op_type, data, ab):
    a, b = _operands(data, np.bool_, *ab)
    (c,) = run(op_type, [a, b])
    assert c.dtype == np.bool_
    np.testing.assert_array_equal(
        c, LOGIC[op_type](torch.from_numpy(a), torch.from_numpy(b)).numpy())


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0, 5], np.int32)
    b = np.array([2, 2, -2, -2, 3, 7], np.int32)
    (c,) = run("Div", [a, b])
    assert c.dtype == np.int32 and c.tolist() == [3, -3, -3, 3, 0, 0]


def test_integer_div_by_zero_is_an_error():
    with pytest.raises(OpError) as err:
        run("Div", [np.array([1, 2], np.int64), np.array([1, 0], np.int64)])
    names_op(err, "Div")


def test_float_div_by_zero_gives_inf_and_nan():
    (c,) = run("Div", [np.array([1, -1, 0], f32), np.zeros(3, f32)])
    assert c[0] == np.inf and c[1] == -np.inf and np.isnan(c[2])


def test_numpy_mode_zero_sized_and_0d():
    (c,) = run("Add", [np.ones((0, 3), f32), np.ones((1, 3), f32)])
    assert c.shape == (0, 3)
    (c,) = run("Mul", [np.array(2, f32), np.array(3, f32)])
    assert c.shape == () and c == 6
    with pytest.raises(ShapeError):
        run("Add", [np.ones((0, 3), f32), np.ones((2, 3), f32)])


def test_axis_without_broadcast_is_ignored_as_in_caffe2_1x():
    """Caffe2 1.x only reads axis/axis_str when broadcast=1; otherwise numpy broadcasting."""
    a, b = np.ones((2, 3, 4), f32), np.arange(4, dtype=f32)
    (c,) = run("Add", [a, b], axis=0)
    np.testing.assert_array_equal(c, a + b)


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "EQ", "And"])
def test_binary_errors_name_the_op(op_type):
    x = (lambda s: np.ones(s, np.bool_)) if op_type == "And" else (lambda s: np.ones(s, f32))
    with pytest.raises(ShapeError) as err:  # numpy-mode mismatch
        run(op_type, [x((2, 3)), x((2, 4))])
    names_op(err, op_type)
    with pytest.raises(ShapeError) as err:  # dtypes must agree
        run(op_type, [x((2, 3)), x((2, 3)).astype(np.float64)])
    names_op(err, op_type)
    with pytest.raises(ArgumentError):  # arguments with a wrong type
        run(op_type, [x(3), x(3)], broadcast="yes")


@pytest.mark.parametrize("op_type,dtype", [("Add", np.uint8), ("Mul", np.bool_),
                                           ("Div", np.float16), ("LT", np.uint8),
                                           ("And", np.float32), ("Or", np.int32)])
def test_binary_unregistered_dtypes(op_type, dtype):
    with pytest.raises(ShapeError) as err:
        run(op_type, [np.ones(3, dtype), np.ones(3, dtype)])
    names_op(err, op_type)


@pytest.mark.parametrize("op_type,ok", [("Add", [0, 1]), ("Sub", [0, 1]), ("Mul", [0, 1]),
                                        ("Div", [0]), ("EQ", []), ("GE", []), ("And", [0]),
                                        ("Xor", [0])])
def test_binary_inplace_pairs(op_type, ok):
    dtype = np.bool_ if op_type in LOGIC else f32
    a, b = np.ones((2, 3), dtype), np.ones((2, 3), dtype)
    for i in (0, 1):
        names = ["x", "y"]
        names[i] = "z"
        if i in ok:
            (c,) = run(op_type, [a, b], input_names=names, outputs=["z"])
            np.testing.assert_array_equal(c, run(op_type, [a, b])[0])
        else:
            with pytest.raises(ArgumentError) as err:
                run(op_type, [a, b], input_names=names, outputs=["z"])
            names_op(err, op_type)


def test_numpy_mode_inplace_must_keep_the_shape():
    """Caffe2: an in-place output must have the shape of the input it overwrites."""
    a, b = np.ones((2, 3), f32), np.ones((3,), f32)
    (c,) = run("Add", [a, b], input_names=["x", "y"], outputs=["x"])
    assert c.shape == (2, 3)
    with pytest.raises(ShapeError) as err:
        run("Add", [a, b], input_names=["x", "y"], outputs=["y"])
    names_op(err, "Add")


def test_binary_infer_unknown_shapes():
    assert infer("Add", [TensorType((2, 3)), TensorType(None)]) == [TensorType(None)]
    assert infer("Add", [TensorType((2, 3)), TensorType(None)], broadcast=1) == \
        [TensorType((2, 3))]
    assert infer("LT", [TensorType((2, 1), np.int64), TensorType((3,), np.int64)]) == \
        [TensorType((2, 3), np.bool_)]


# ----------------------------------------------------------------------------- legacy broadcast

@st.composite
def legacy_case(draw, max_dims=4):
    """A shape, an axis and a B shape matching A[axis:axis+k], its outer dims maybe 1."""
    a_shape = draw(shapes(min_dims=1, max_dims=max_dims))
    k = draw(st.integers(1, len(a_shape)))
    axis = draw(st.integers(0, len(a_shape) - k))
    b_shape = list(a_shape[axis:axis + k])
    lead = draw(st.integers(0, k))
    trail = draw(st.integers(0, k - lead))
    for i in list(range(lead)) + list(range(k - trail, k)):
        b_shape[i] = 1
    return tuple(a_shape), axis, tuple(b_shape)


def _legacy_expected(fn, a, b, axis):
    """Independent construction: index B with None to line it up with A, then broadcast."""
    tb = torch.from_numpy(b)
    tb = tb[(None,) * axis + (...,) + (None,) * (a.ndim - axis - b.ndim)]
    return fn(torch.from_numpy(a), tb).numpy()


@pytest.mark.parametrize("op_type", sorted(ARITH) + ["GT", "EQ"])
@SOME
@given(data=st.data(), case=legacy_case(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
       how=st.sampled_from(["axis", "default", "axis_str"]))
def test_legacy_broadcast_against_torch(op_type, data, case, dtype, how):
    a_shape, axis, b_shape = case
    a, b = _operands(data, dtype, a_shape, b_shape, nonzero_b=op_type == "Div")
    args = {"broadcast": 1}
    if how == "axis":
        args["axis"] = axis
    elif how == "default":
        assume(axis == len(a_shape) - len(b_shape))
    else:  # name the axis by a letter of an order string made up for the test
        order = "".join(data.draw(st.permutations("NCHWXY")))[:len(a_shape)]
        args.update(axis_str=order[axis], order=order)
    (c,) = run(op_type, [a, b], **args)
    fn = {**ARITH, **COMPARE}[op_type]
    expected = _legacy_expected(fn, a, b, axis)
    assert c.shape == a.shape
    if expected.dtype == np.bool_ or np.dtype(dtype).kind == "i":
        np.testing.assert_array_equal(c, expected)
    else:
        close(c, expected, rtol=1e-6)


@SOME
@given(data=st.data(), a_shape=shapes(), b_ndim=st.integers(0, 6), axis=st.integers(-1, 8))
def test_legacy_broadcast_single_element_b_is_a_scalar_whatever_its_shape(
        data, a_shape, b_ndim, axis):
    """Caffe2 takes a one-element B as a scalar before looking at its rank or axis."""
    a = data.draw(floats(a_shape))
    b = np.full((1,) * b_ndim, 2.5, f32)
    (c,) = run("Mul", [a, b], broadcast=1, axis=axis)
    assert c.shape == a.shape
    close(c, torch.from_numpy(a) * 2.5)


def test_legacy_broadcast_caffe2_doc_examples():
    a = np.arange(120, dtype=f32).reshape(2, 3, 4, 5)
    for b_shape, kw, index in [((5,), {}, (None, None, None)),
                               ((4, 5), {}, (None, None)),
                               ((3, 4), {"axis": 1}, (None, ..., None)),
                               ((2,), {"axis": 0}, (..., None, None, None)),
                               ((3,), {"axis_str": "C"}, (None, ..., None, None)),
                               ((5,), {"axis_str": "C", "order": "NHWC"}, (None, None, None))]:
        b = np.arange(np.prod(b_shape), dtype=f32).reshape(b_shape) + 1
        (c,) = run("Sub", [a, b], broadcast=1, **kw)
        np.testing.assert_array_equal(c, a - b[index])


def test_legacy_broadcast_empty_a():
    (c,) = run("Add", [np.ones((0, 3), f32), np.ones(3, f32)], broadcast=1)
    assert c.shape == (0, 3)


@pytest.mark.parametrize("a_shape,b_shape,args,cls", [
    ((2, 3, 4, 5), (3, 1, 5), {"axis": 1}, ShapeError),  # inner 1 must match
    ((2, 3, 4, 5), (4,), {"axis": 1}, ShapeError),
    ((2, 3), (4,), {}, ShapeError),
    ((3,), (2, 3), {}, ShapeError),  # B has more dims
    ((2, 3), (0,), {}, ShapeError),
    ((2, 3, 4), (3,), {"axis": -2}, ArgumentError),  # only -1 means "aligned to the end"
    ((2, 3, 4), (3,), {"axis": 3}, ArgumentError),
    ((2, 3, 4), (3,), {"axis": 1, "axis_str": "C"}, ArgumentError),
    ((2, 3, 4), (3,), {"axis_str": "CH"}, ArgumentError),
    ((2, 3, 4), (3,), {"axis_str": "X"}, ArgumentError),
    ((2, 3, 4, 5), (4,), {"axis_str": "C", "order": "NHWC"}, ShapeError),
    ((2, 3, 4), (4,), {"axis_str": "C", "order": "NHWC"}, ArgumentError),  # axis 3 > 3 - 1
])
def test_legacy_broadcast_errors(a_shape, b_shape, args, cls):
    with pytest.raises(cls) as err:
        run("Add", [np.ones(a_shape, f32), np.ones(b_shape, f32)], broadcast=1, **args)
    names_op(err, "Add")
    with pytest.raises(cls):
        infer("Add", [TensorType(a_shape), TensorType(b_shape)], broadcast=1, **args)


def test_legacy_broadcast_inplace_only_on_input_0():
    a, b = np.ones((2, 3), f32), np.arange(3, dtype=f32)
    (c,) = run("Add", [a, b], broadcast=1, input_names=["x", "y"], outputs=["x"])
    np.testing.assert_array_equal(c, a + b)
    for names in (["x", "y"], ["y", "y"]):
        with pytest.raises(ArgumentError) as err:
            run("Add", [a, a], broadcast=1, input_names=names, outputs=["y"])
        names_op(err, "Add")


def test_broadcast_fastpath_hint_is_accepted():
    (c,) = run("Mul", [np.ones((2, 3), f32), np.full(3, 2, f32)], allow_broadcast_fastpath=1)
    assert (c == 2).all()


# ----------------------------------------------------------------------------- Pow

@FEW
@given(data=st.data(), shape=shapes(), exponent=st.floats(-3, 3))
def test_pow_exponent_argument_against_torch(data, shape, exponent):
    x = data.draw(floats(shape, 0.1, 4))
    (y,) = run("Pow", [x], exponent=exponent)
    assert y.dtype == f32
    close(y, torch.pow(t64(x), c32(exponent)), rtol=2e-5)


@FEW
@given(data=st.data(), shape=shapes(), exponent=st.integers(-3, 4))
def test_pow_integer_exponent_of_negative_base(data, shape, exponent):
    x = data.draw(floats(shape, -3, 3).filter(lambda v: (v != 0).all() or exponent >= 0))
    (y,) = run("Pow", [x], exponent=float(exponent))
    # rounded to float32 as the op's result is: a tiny x**-2 overflows to inf there
    close(y, torch.pow(t64(x), exponent).float(), rtol=2e-5)


@FEW
@given(data=st.data(), shape=shapes())
def test_pow_tensor_exponent_against_torch(data, shape):
    x, e = data.draw(floats(shape, 0.1, 4)), data.draw(floats(shape, -2, 2))
    (y,) = run("Pow", [x, e])
    close(y, torch.pow(t64(x), t64(e)), rtol=2e-5)


@FEW
@given(data=st.data(), case=legacy_case(), use_axis=st.booleans())
def test_pow_legacy_broadcast_against_torch(data, case, use_axis):
    a_shape, axis, b_shape = case
    x, e = data.draw(floats(a_shape, 0.1, 4)), data.draw(floats(b_shape, -2, 2))
    if not use_axis:
        assume(axis == len(a_shape) - len(b_shape))
    (y,) = run("Pow", [x, e], broadcast=1, **({"axis": axis} if use_axis else {}))
    close(y, _legacy_expected(torch.pow, x.astype(np.float64), e.astype(np.float64), axis),
          rtol=2e-5)


def test_pow_scalar_exponent_tensor_needs_broadcast():
    x = np.full((2, 3), 2, f32)
    (y,) = run("Pow", [x, np.array([3], f32)], broadcast=1)
    assert (y == 8).all()
    with pytest.raises(ShapeError) as err:  # Pow (unlike Add) never broadcasts numpy-style
        run("Pow", [x, np.array([3], f32)])
    names_op(err, "Pow")


def test_pow_inplace():
    x, e = np.full(3, 2, f32), np.full(3, 3, f32)
    assert (run("Pow", [x], input_names=["x"], outputs=["x"], exponent=2.0)[0] == 4).all()
    assert (run("Pow", [x, e], input_names=["x", "e"], outputs=["e"])[0] == 8).all()
    with pytest.raises(ArgumentError) as err:
        run("Pow", [x, e[:1]], input_names=["x", "e"], outputs=["e"], broadcast=1)
    names_op(err, "Pow")


@pytest.mark.parametrize("inputs,args,cls", [
    ([np.ones(3, f32)], {}, ArgumentError),  # no exponent at all
    ([np.ones(3, f32), np.ones(3, f32)], {"exponent": 2.0}, ArgumentError),  # two exponents
    ([np.ones(3, f32), np.ones(3, f32)], {"axis": 0}, ArgumentError),  # axis needs broadcast
    ([np.ones(3, np.float64)], {"exponent": 2.0}, ShapeError),  # float only
    ([np.ones(3, f32), np.ones(3, np.float64)], {}, ShapeError),
    ([np.ones((2, 3), f32), np.ones((2,), f32)], {"broadcast": 1}, ShapeError),
    ([np.ones(3, f32)] * 3, {}, ArgumentError),
])
def test_pow_errors(inputs, args, cls):
    with pytest.raises(cls) as err:
        run("Pow", inputs, **args)
    names_op(err, "Pow")


# ----------------------------------------------------------------------------- Cast

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64, np.int32: torch.int32,
               np.int64: torch.int64, np.int16: torch.int16, np.int8: torch.int8,
               np.uint8: torch.uint8, np.bool_: torch.bool}
DATA_TYPE = {np.float32: core.DataType.FLOAT, np.float64: core.DataType.DOUBLE,
             np.int32: core.DataType.INT32, np.int64: core.DataType.INT64,
             np.int16: core.DataType.INT16, np.int8: core.DataType.INT8,
             np.uint8: core.DataType.UINT8, np.uint16: core.DataType.UINT16,
             np.bool_: core.DataType.BOOL}


@SOME
@given(data=st.data(), shape=shapes(),
       src=st.sampled_from(sorted(TORCH_DTYPE, key=str)),
       dst=st.sampled_from(sorted(TORCH_DTYPE, key=str)))
def test_cast_against_torch(data, shape, src, dst):
    # values both types hold, so that C++ and torch agree
    lo = 0 if np.uint8 in (src, dst) else -100
    if src == np.bool_:
        x = data.draw(hnp.arrays(np.bool_, shape))
    elif np.dtype(src).kind == "f":
        x = data.draw(floats(shape, lo, 100, src))
    else:
        x = data.draw(ints(shape, lo, 100, src))
    (y,) = run("Cast", [x], to=DATA_TYPE[dst])
    assert y.dtype == dst and y.shape == x.shape
    expected = torch.from_numpy(x).to(TORCH_DTYPE[dst]).numpy()  # floats truncate toward 0
    np.testing.assert_array_equal(y, expected)


def test_cast_defaults_to_float_and_ignores_from_type():
    x = np.array([1, -2], np.int32)
    for args in ({}, {"from_type": core.DataType.INT32}, {"from_type": core.DataType.DOUBLE}):
        (y,) = run("Cast", [x], **args)
        assert y.dtype == f32 and y.tolist() == [1.0, -2.0]


def test_cast_to_uint16_wraps():
    (y,) = run("Cast", [np.array([1, 70000, -1], np.int32)], to=core.DataType.UINT16)
    assert y.dtype == np.uint16 and y.tolist() == [1, 70000 - 65536, 65535]


def test_cast_out_of_range_float_to_small_ints_follows_caffe2_on_x86():
    """static_cast of out-of-range floats is UB; Caffe2 1.10.2 on x86 gave these."""
    (y,) = run("Cast", [np.array([1.7, 255, 300, -1], f32)], to=core.DataType.UINT8)
    assert y.tolist() == [1, 255, 44, 255]
    (y,) = run("Cast", [np.array([1.7, -1.7, 300], f32)], to=core.DataType.INT8)
    assert y.tolist() == [1, -1, 44]


def test_cast_nan_to_bool_is_true():
    (y,) = run("Cast", [np.array([np.nan, 0.0, -0.0, 2.0], f32)], to=core.DataType.BOOL)
    assert y.tolist() == [True, False, False, True]


def test_cast_to_string_formats_like_std_to_string():
    (y,) = run("Cast", [np.array([1.5, -2.0, 1e-7], f32)], to=core.DataType.STRING)
    assert y.dtype == object and list(y) == [b"1.500000", b"-2.000000", b"0.000000"]
    (y,) = run("Cast", [np.array([[7, -12]], np.int64)], to=core.DataType.STRING)
    assert y.shape == (1, 2) and list(y.ravel()) == [b"7", b"-12"]
    (y,) = run("Cast", [np.array([True, False])], to=core.DataType.STRING)
    assert list(y) == [b"1", b"0"]


@pytest.mark.parametrize("to", [core.DataType.UNDEFINED, core.DataType.BYTE,
                                core.DataType.FLOAT16, 99])
def test_cast_bad_targets(to):
    with pytest.raises(ArgumentError) as err:
        run("Cast", [np.ones(2, f32)], to=to)
    names_op(err, "Cast")


@pytest.mark.parametrize("x", [np.ones(2, np.float16), np.array([b"1"], dtype=object)])
def test_cast_unsupported_sources(x):
    with pytest.raises(ShapeError) as err:
        run("Cast", [x], to=core.DataType.FLOAT)
    names_op(err, "Cast")


@pytest.mark.parametrize("name,dtype", [("float", f32), ("INT32", np.int32), ("bool", np.bool_),
                                        ("Double", np.float64)])
def test_cast_to_by_name(name, dtype):
    (y,) = run("Cast", [np.array([1.5, 0], f32)], to=name)
    assert y.dtype == dtype
    with pytest.raises(ArgumentError):
        run("Cast", [np.ones(2, f32)], to="blah")


# ----------------------------------------------------------------------------- Sum, Max, Min

@SOME
@given(data=st.data(), shape=shapes(), n=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
def test_sum_against_torch(data, shape, n, dtype):
    xs = [data.draw(floats(shape, dtype=dtype) if np.dtype(dtype).kind == "f"
                    else ints(shape, dtype=dtype)) for _ in range(n)]
    (y,) = run("Sum", xs)
    assert y.dtype == dtype and y.shape == shape
    expected = torch.stack([torch.from_numpy(x) for x in xs]).sum(0).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("op_type,fn", [("Max", torch.maximum), ("Min", torch.minimum)])
@FEW
@given(data=st.data(), shape=shapes(), n=st.integers(1, 4))
def test_max_min_against_torch(op_type, fn, data, shape, n):
    xs = [data.draw(floats(shape)) for _ in range(n)]
    (y,) = run(op_type, xs)
    expected = torch.from_numpy(xs[0])
    for x in xs[1:]:
        expected = fn(expected, torch.from_numpy(x))
    assert y.dtype == f32
    np.testing.assert_array_equal(y, expected.numpy())


def test_max_min_nan_follows_caffe2():
    """Caffe2 keeps the running value unless the new one compares greater (Max) or smaller
    (Min), so a NaN so far stays and a later NaN is skipped (seen in Caffe2 1.10.2)."""
    a, b = np.array([np.nan, 1, 2], f32), np.array([0, np.nan, 1], f32)
    (y,) = run("Max", [a, b])
    assert np.isnan(y[0]) and y[1:].tolist() == [1, 2]
    (y,) = run("Min", [a, b])
    assert np.isnan(y[0]) and y[1:].tolist() == [1, 1]


@pytest.mark.parametrize("op_type", ["Sum", "Max", "Min"])
def test_variadic_shape_and_dtype_errors(op_type):
    a = np.ones((2, 3), f32)
    # Caffe2 checks input 1 only by accident (Max/Min read past its end); all must match
    for bad in (np.ones(3, f32), np.ones((3, 2), f32), np.ones((2, 1), f32)):
        with pytest.raises(ShapeError) as err:
            run(op_type, [a, bad])
        names_op(err, op_type)
        with pytest.raises(ShapeError):
            run(op_type, [a, a, bad])
    with pytest.raises(ShapeError) as err:
        run(op_type, [a, a.astype(np.float64)])
    names_op(err, op_type)
    with pytest.raises(ShapeError) as err:
        run(op_type, [a.astype(np.float16), a.astype(np.float16)])
    names_op(err, op_type)


def test_max_min_are_float_only_sum_is_numeric():
    x = np.ones((2, 2), np.int32)
    assert run("Sum", [x, x, x])[0].tolist() == [[3, 3], [3, 3]]
    for op_type in ("Max", "Min"):
        with pytest.raises(ShapeError):
            run(op_type, [x, x])
    with pytest.raises(ShapeError):
        run("Sum", [x > 0, x > 0])


@pytest.mark.parametrize("op_type", ["Sum", "Max", "Min"])
def test_variadic_inplace_only_on_input_0(op_type):
    a, b, c = (np.full((2, 2), v, f32) for v in (1, 2, 3))
    (y,) = run(op_type, [a, b, c], input_names=["x", "y", "z"], outputs=["x"])
    np.testing.assert_array_equal(y, run(op_type, [a, b, c])[0])
    for i in (1, 2):
        names = ["x", "y", "z"]
        with pytest.raises(ArgumentError) as err:
            run(op_type, [a, b, c], input_names=names, outputs=[names[i]])
        names_op(err, op_type)


def test_variadic_single_input_is_a_copy():
    x = np.arange(6, dtype=f32).reshape(2, 3)
    for op_type in ("Sum", "Max", "Min"):
        (y,) = run(op_type, [x])
        assert y is not x and (y == x).all()


# ----------------------------------------------------------------------------- references

def test_references_do_not_mutate_inputs():
    a, b = np.arange(6, dtype=f32).reshape(2, 3), np.ones(3, f32)
    a0, b0 = a.copy(), b.copy()
    for op_type, inputs, args in [("Sum", [a, a], {}), ("Max", [a, a], {}),
                                  ("Add", [a, b], {"broadcast": 1}), ("Relu", [a], {}),
                                  ("Pow", [a, b], {"broadcast": 1}), ("Copy", [a], {})]:
        run(op_type, inputs, **args)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_reference_rejects_non_tensor_blobs():
    op = bind(core.CreateOperator("Relu", ["x"], ["y"]), 0)
    with pytest.raises(ShapeError) as err:
        op.opdef.reference(op, object())
    names_op(err, "Relu")
