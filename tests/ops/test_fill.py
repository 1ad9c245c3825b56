"""Fill ops: shapes/dtypes for every shape-argument form, values against torch, random fills
against their distributions (scipy KS tests), seeding, and Caffe2's argument errors.

Semantics pinned from Caffe2 1.x (caffe2/operators/filler_op.h, given_tensor_fill_op.h) and
checked against the PyTorch 1.10.2 Caffe2 build.
"""
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings

from c2compile import core, dtypes
from c2compile.errors import ArgumentError, ShapeError, UnsupportedError
from c2compile.ops.schema import TensorType, bind
from c2compile.ops.testing import infer, make_op, run
from c2compile.runtime import reference

SOME = settings(max_examples=30, deadline=None)
FEW = settings(max_examples=10, deadline=None)

RANDOM_FILLS = ["GaussianFill", "UniformFill", "UniformIntFill", "XavierFill", "MSRAFill"]


def shapes(min_dims=0, max_dims=4, max_side=5, min_side=1):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


def run_bound(op, inputs=()):
    return reference.run_op(op, list(inputs), check_infer=True)


# ----------------------------------------------------------------------------- ConstantFill

TORCH_DTYPE = {dtypes.FLOAT: torch.float32, dtypes.DOUBLE: torch.float64,
               dtypes.INT32: torch.int32, dtypes.INT64: torch.int64, dtypes.BOOL: torch.bool,
               dtypes.INT8: torch.int8, dtypes.INT16: torch.int16, dtypes.UINT8: torch.uint8}


@SOME
@given(shape=shapes(max_dims=4), dt=st.sampled_from(sorted(TORCH_DTYPE)), data=st.data())
def test_constant_fill_shape_arg_matches_torch_full(shape, dt, data):
    if dt in (dtypes.FLOAT, dtypes.DOUBLE):
        value = data.draw(st.floats(-1e3, 1e3, width=32))
    elif dt == dtypes.BOOL:
        value = data.draw(st.integers(0, 1))
    else:
        info = np.iinfo(dtypes.to_numpy(dt))
        value = data.draw(st.integers(max(info.min, -1000), min(info.max, 1000)))
    (y,) = run("ConstantFill", [], shape=list(shape), value=value, dtype=dt)
    want = torch.full(shape, value, dtype=TORCH_DTYPE[dt]).numpy()
    assert y.dtype == want.dtype and y.shape == tuple(shape)
    np.testing.assert_array_equal(y, want)


def test_constant_fill_dtype_follows_value_kind_when_unset():
    # Caffe2: no dtype -> a float value gives FLOAT, an int value gives INT64 (exactly).
    assert run("ConstantFill", [], shape=[2], value=3.5)[0].dtype == np.float32
    (y,) = run("ConstantFill", [], shape=[1], value=2 ** 60 + 1)
    assert y.dtype == np.int64 and int(y[0]) == 2 ** 60 + 1
    (y,) = run("ConstantFill", [], shape=[3])
    assert y.dtype == np.float32 and not y.any()


def test_constant_fill_float_dtype_takes_an_int_value():
    # Decision: Caffe2 rejects dtype=FLOAT with an int `value` (field i); we read it as the
    # float it is exactly, as every float argument here does. int dtypes still need field i.
    (y,) = run("ConstantFill", [], shape=[2], value=3, dtype=dtypes.FLOAT)
    assert y.dtype == np.float32 and (y == 3).all()


def test_constant_fill_no_shape_no_input_is_0d():
    (y,) = run("ConstantFill", [], value=2.0)
    assert y.shape == () and y == 2.0


def test_constant_fill_string_dtype_fills_empty_strings():
    (y,) = run("ConstantFill", [], shape=[2], dtype=dtypes.STRING)
    assert y.dtype == object and list(y) == [b"", b""]


@SOME
@given(xshape=shapes(max_dims=3), extra=shapes(min_dims=0, max_dims=2, min_side=0))
def test_constant_fill_from_input_shape_plus_extra_shape(xshape, extra):
    x = np.zeros(xshape, np.float64)
    (y,) = run("ConstantFill", [x], value=4.0, extra_shape=list(extra))
    np.testing.assert_array_equal(y, torch.full(tuple(xshape) + tuple(extra), 4.0).numpy())
    assert infer("ConstantFill", [TensorType(xshape, np.float64)], value=4.0,
                 extra_shape=list(extra))[0] == TensorType(tuple(xshape) + tuple(extra))


@SOME
@given(shape=shapes(min_dims=1, max_dims=4, min_side=0), extra=shapes(min_dims=0, max_dims=2))
def test_constant_fill_input_as_shape(shape, extra):
    s = np.array(shape, np.int64)
    (y,) = run("ConstantFill", [s], value=1, dtype=dtypes.INT32, input_as_shape=1,
               extra_shape=list(extra))
    assert y.shape == tuple(shape) + tuple(extra) and y.dtype == np.int32
    assert (y == 1).all()
    # the shape depends on data: the rule knows only the dtype
    assert infer("ConstantFill", [TensorType((len(shape),), np.int64)], input_as_shape=1,
                 dtype=dtypes.INT32)[0] == TensorType(None, np.int32)


def test_constant_fill_value_input():
    x = np.zeros((2, 3), np.float32)
    (y,) = run("ConstantFill", [x, np.array([9.0], np.float32)], value=2.0)
    np.testing.assert_array_equal(y, np.full((2, 3), 9.0, np.float32))
    (y,) = run("ConstantFill", [x, np.array(7, np.int32)], dtype=dtypes.INT32)
    assert y.dtype == np.int32 and (y == 7).all()
    with pytest.raises(ShapeError) as e:  # V must have the output's dtype
        run("ConstantFill", [x, np.array([9], np.int32)], value=2.0)
    names_op(e, "ConstantFill")
    with pytest.raises(ShapeError) as e:
        run("ConstantFill", [x, np.array([1.0, 2.0], np.float32)])
    names_op(e, "ConstantFill")


def test_constant_fill_in_place():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = run("ConstantFill", [x], outputs=["X"], input_names=["X"], value=1.0)
    np.testing.assert_array_equal(y, np.ones((2, 3), np.float32))
    assert x[0, 1] == 1  # the input array was not touched
    with pytest.raises(ArgumentError) as e:  # only (0, 0) may be in place
        run("ConstantFill", [x, np.array([1.0], np.float32)], outputs=["V"],
            input_names=["X", "V"])
    names_op(e, "ConstantFill")


@pytest.mark.parametrize("inputs, args, err", [
    ([np.zeros(2, np.float32)], dict(shape=[3]), ArgumentError),      # shape and an input
    ([], dict(extra_shape=[3]), ArgumentError),                       # extra_shape, no input
    ([], dict(input_as_shape=1), ArgumentError),                      # input_as_shape, no input
    ([], dict(shape=3), ArgumentError),                               # scalar shape
    ([], dict(shape=[2, -1]), ArgumentError),                         # negative dim
    ([np.zeros(2, np.float32)], dict(extra_shape=[-2]), ArgumentError),
    ([np.array([[2, 3]])], dict(input_as_shape=1), ShapeError),       # not 1-D
    ([np.array([2, 3], np.int32)], dict(input_as_shape=1), ShapeError),  # not int64
    ([np.array([2.0, 3.0])], dict(input_as_shape=1), ShapeError),     # not int
    ([np.zeros(0, np.int64)], dict(input_as_shape=1), ShapeError),    # empty
    ([np.array([2, -3])], dict(input_as_shape=1), ShapeError),        # negative dim
    ([], dict(shape=[1], dtype=dtypes.UNDEFINED), ArgumentError),
    ([], dict(shape=[1], dtype=dtypes.FLOAT16), ArgumentError),
    ([], dict(shape=[1], dtype=dtypes.BYTE), ArgumentError),
    ([], dict(shape=[1], dtype=dtypes.INT32, value=3.7), ArgumentError),  # int dtype, float value
    ([], dict(shape=[1], dtype=dtypes.INT32, value=2 ** 40), ArgumentError),  # out of range
    ([], dict(shape=[1], dtype=dtypes.UINT8, value=300), ArgumentError),
    ([], dict(shape=[1], dtype=dtypes.BOOL, value=0.5), ArgumentError),
    ([], dict(shape=[1], vlaue=1.0), ArgumentError),                  # unknown argument
])
def test_constant_fill_errors(inputs, args, err):
    with pytest.raises(err) as e:
        run("ConstantFill", inputs, **args)
    names_op(e, "ConstantFill")


def test_constant_fill_infer_rejects_bad_input_as_shape():
    with pytest.raises(ShapeError):
        infer("ConstantFill", [TensorType((2, 2), np.int64)], input_as_shape=1)
    with pytest.raises(ShapeError):
        infer("ConstantFill", [TensorType((2,), np.int32)], input_as_shape=1)


# ----------------------------------------------------------------------------- GivenTensor*Fill

GIVEN = [  # op, numpy dtype, element strategy
    ("GivenTensorFill", np.float32, st.floats(-1e3, 1e3, width=32)),
    ("GivenTensorDoubleFill", np.float64, st.floats(-1e3, 1e3, width=32)),
    ("GivenTensorIntFill", np.int32, st.integers(-2 ** 31, 2 ** 31 - 1)),
    ("GivenTensorInt16Fill", np.int16, st.integers(-2 ** 15, 2 ** 15 - 1)),
    ("GivenTensorInt64Fill", np.int64, st.integers(-2 ** 63, 2 ** 63 - 1)),
    ("GivenTensorBoolFill", np.bool_, st.integers(0, 1)),
]


@pytest.mark.parametrize("op_type, np_dtype, elems", GIVEN, ids=[g[0] for g in GIVEN])
@FEW
@given(data=st.data())
def test_given_tensor_fill_values_in_shape(op_type, np_dtype, elems, data):
    shape = data.draw(shapes(max_dims=3, min_side=0))
    n = int(np.prod(shape))
    values = data.draw(st.lists(elems, min_size=n, max_size=n))
    (y,) = run(op_type, [], shape=list(shape), values=values)
    want = torch.tensor(values, dtype=TORCH_DTYPE[dtypes.from_numpy(np_dtype)]).reshape(shape)
    assert y.dtype == np.dtype(np_dtype) and y.shape == tuple(shape)
    np.testing.assert_array_equal(y, want.numpy())


def test_typed_given_fills_ignore_dtype():
    # Caffe2's GivenTensorFillOp reads `dtype` only in the float op (GivenTensorFill); the
    # typed ones keep their own type. given_tensor_fill_op_test passes dtype=INT32 to
    # GivenTensorDoubleFill and expects doubles, and dtype=INT16 to GivenTensorInt16Fill.
    (y,) = run("GivenTensorDoubleFill", [], shape=[2], values=[1.0, 2.0], dtype=dtypes.INT32)
    assert y.dtype == np.float64 and y.tolist() == [1.0, 2.0]
    (y,) = run("GivenTensorInt16Fill", [], shape=[2], values=[1, -2], dtype=dtypes.INT16)
    assert y.dtype == np.int16 and y.tolist() == [1, -2]
    (y,) = run("GivenTensorBoolFill", [], shape=[2], values=[1, 0], dtype=dtypes.FLOAT)
    assert y.dtype == np.bool_ and y.tolist() == [True, False]


def test_given_tensor_fill_from_input_shape_and_in_place():
    x = np.zeros((2, 3), np.float32)
    (y,) = run("GivenTensorFill", [x], values=[float(v) for v in range(12)], extra_shape=[2])
    np.testing.assert_array_equal(y, np.arange(12, dtype=np.float32).reshape(2, 3, 2))
    (y,) = run("GivenTensorFill", [x], outputs=["X"], input_names=["X"],
               values=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(y, np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    (y,) = run("GivenTensorFill", [], values=[3.0])  # no shape: a 0-d tensor
    assert y.shape == () and y == 3.0


@pytest.mark.parametrize("dt, np_dtype", [(dtypes.DOUBLE, np.float64), (dtypes.INT64, np.int64),
                                          (dtypes.INT32, np.int32), (dtypes.BOOL, np.bool_),
                                          (dtypes.INT16, np.int16), (dtypes.FLOAT, np.float32)])
def test_given_tensor_fill_dtype_argument(dt, np_dtype):
    values = [1.5, 0.0] if np.dtype(np_dtype).kind == "f" else [1, 0]
    (y,) = run("GivenTensorFill", [], shape=[2], values=values, dtype=dt)
    assert y.dtype == np_dtype
    np.testing.assert_array_equal(y, np.array(values, np_dtype))
    assert infer("GivenTensorFill", [], shape=[2], values=values, dtype=dt)[0] == \
        TensorType((2,), np_dtype)


def test_given_tensor_string_fill():
    (y,) = run("GivenTensorStringFill", [], shape=[2], values=["a", "bc"])
    assert y.dtype == object and list(y) == [b"a", b"bc"]


@pytest.mark.parametrize("op_type, inputs, args, err", [
    ("GivenTensorFill", [], dict(shape=[2, 2], values=[1.0, 2.0, 3.0]), ArgumentError),
    ("GivenTensorFill", [np.zeros(3, np.float32)], dict(values=[1.0, 2.0]), ShapeError),
    ("GivenTensorFill", [], dict(shape=[2]), ArgumentError),          # values is required
    ("GivenTensorFill", [], dict(shape=[-2], values=[]), ArgumentError),
    ("GivenTensorFill", [], dict(shape=[2], values=[1.0, 2.0], dtype=dtypes.UINT8),
     ArgumentError),
    ("GivenTensorFill", [], dict(shape=[2], values=[1.0, 2.0], dtype=dtypes.INT64),
     ArgumentError),                                                  # int dtype, float values
    ("GivenTensorFill", [], dict(shape=[2], values=[1.0, 2.0], dtype=dtypes.STRING),
     UnsupportedError),
    ("GivenTensorIntFill", [], dict(shape=[1], values=[2 ** 40]), ArgumentError),
    ("GivenTensorInt64Fill", [np.array([[1, 2]])], dict(values=[1, 2], input_as_shape=1),
     ShapeError),
])
def test_given_tensor_fill_errors(op_type, inputs, args, err):
    with pytest.raises(err) as e:
        run(op_type, inputs, **args)
    names_op(e, op_type)


# ----------------------------------------------------------------------------- random fills

def seeded(seed):
    return core.DeviceOption(0, random_seed=seed)


@pytest.mark.parametrize("op_type", RANDOM_FILLS)
def test_random_fill_seeding(op_type):
    a = run(op_type, [], shape=[4, 5], device_option=seeded(7))[0]
    b = run(op_type, [], shape=[4, 5], device_option=seeded(7))[0]
    c = run(op_type, [], shape=[4, 5], device_option=seeded(8))[0]
    np.testing.assert_array_equal(a, b)        # same seed, same numbers
    assert not np.array_equal(a, c)
    op = bind(make_op(op_type, 0, 1, device_option=seeded(7), shape=[4, 5]), 0)
    (first,), (second,) = run_bound(op), run_bound(op)
    np.testing.assert_array_equal(first, a)    # the bound op's first run is the seeded draw
    assert not np.array_equal(first, second)   # and each run draws anew
    assert op.opdef.stateful


@pytest.mark.parametrize("op_type", RANDOM_FILLS)
@SOME
@given(shape=shapes(max_dims=4, min_dims=2))
def test_random_fill_shapes_and_dtypes(op_type, shape):
    (y,) = run(op_type, [], shape=list(shape))
    assert y.shape == tuple(shape)
    assert y.dtype == (np.int32 if op_type == "UniformIntFill" else np.float32)
    x = np.zeros(shape[:1], np.float64)
    (y,) = run(op_type, [x], extra_shape=list(shape[1:]))
    assert y.shape == tuple(shape)
    (y,) = run(op_type, [np.array(shape, np.int64)], input_as_shape=1)
    assert y.shape == tuple(shape)
    (y,) = run(op_type, [np.zeros(shape, np.float32)], outputs=["X"], input_names=["X"])
    assert y.shape == tuple(shape)


@FEW
@given(mean=st.floats(-10, 10), std=st.floats(0.1, 10))
def test_gaussian_fill_distribution(mean, std):
    (y,) = run("GaussianFill", [], shape=[40, 50], mean=mean, std=std,
               device_option=seeded(3))
    assert scipy.stats.kstest(y.ravel(), "norm", args=(mean, std)).pvalue > 1e-4
    assert abs(y.mean() - mean) < 5 * std / np.sqrt(y.size)


def test_gaussian_fill_std_zero_gives_mean_and_negative_is_rejected():
    (y,) = run("GaussianFill", [], shape=[3], mean=2.0, std=0.0)
    np.testing.assert_array_equal(y, np.full(3, 2.0, np.float32))
    with pytest.raises(ArgumentError) as e:
        run("GaussianFill", [], shape=[3], std=-1.0)
    names_op(e, "GaussianFill")


@FEW
@given(lo=st.floats(-10, 10), width=st.floats(0.01, 10))
def test_uniform_fill_distribution(lo, width):
    lo, hi = float(np.float32(lo)), float(np.float32(lo + width))
    (y,) = run("UniformFill", [], shape=[2000], min=lo, max=hi, device_option=seeded(5))
    assert y.min() >= np.float32(lo) and y.max() <= np.float32(hi)
    assert scipy.stats.kstest(y.astype(np.float64), "uniform", args=(lo, hi - lo)).pvalue > 1e-4


@FEW
@given(lo=st.integers(-1000, 1000), width=st.integers(1, 6))
def test_uniform_int_fill_inclusive_range(lo, width):
    (y,) = run("UniformIntFill", [], shape=[3000], min=lo, max=lo + width,
               device_option=seeded(9))
    assert y.dtype == np.int32
    # both ends are drawn, nothing outside; every value about equally often
    assert set(np.unique(y)) == set(range(lo, lo + width + 1))
    counts = np.bincount(y - lo)
    assert scipy.stats.chisquare(counts).pvalue > 1e-4


def test_uniform_fill_min_max_inputs():
    x = np.zeros((50, 3), np.float32)
    lo, hi = np.array([1.0], np.float32), np.array(2.0, np.float32)
    (y,) = run("UniformFill", [x, lo, hi])
    assert y.shape == (50, 3) and y.min() >= 1 and y.max() <= 2
    # max < min: the first dim becomes 0 (Caffe2's dynamic-size sampling)
    (y,) = run("UniformFill", [x, hi.reshape(1), lo])
    assert y.shape == (0, 3) and y.dtype == np.float32
    (y,) = run("UniformIntFill", [np.array([4, 2]), np.array([3], np.int32),
                                  np.array([5], np.int32)], input_as_shape=1)
    assert y.shape == (4, 2) and y.dtype == np.int32 and y.min() >= 3 and y.max() <= 5
    assert infer("UniformFill", [TensorType((5, 3)), TensorType((1,)), TensorType(())])[0] == \
        TensorType(None, np.float32)


@pytest.mark.parametrize("op_type, inputs, args, err", [
    ("UniformFill", [], dict(shape=[2], min=1.0, max=1.0), ArgumentError),   # needs min < max
    ("UniformFill", [], dict(shape=[2], min=2.0, max=1.0), ArgumentError),
    ("UniformIntFill", [], dict(shape=[2], min=3, max=3), ArgumentError),
    ("UniformIntFill", [], dict(shape=[2], min=1.5, max=3), ArgumentError),  # int args
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.float32)], {}, ArgumentError),
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1, np.float32), np.ones(1, np.float32)],
     dict(min=0.0), ArgumentError),                          # min both as argument and input
    ("UniformFill", [np.zeros(2, np.float32), np.ones(1), np.ones(1)], {}, ShapeError),  # f64
    ("UniformFill", [np.zeros(2, np.float32), np.ones(2, np.float32), np.ones(1, np.float32)],
     {}, ShapeError),                                        # min not a scalar
    ("UniformFill", [np.zeros((), np.float32), np.ones(1, np.float32), np.ones(1, np.float32)],
     {}, ShapeError),                                        # 0-d output has no dim 0
    ("XavierFill", [], dict(), ShapeError),                  # 0-d: no fan_in
    ("MSRAFill", [], dict(shape=[5]), ShapeError),           # 1-d: no fan_out
    ("GaussianFill", [], dict(shape=[2], extra_shape=[2]), ArgumentError),
    ("XavierFill", [], dict(shape=[2], mean=1.0), ArgumentError),  # Xavier takes no mean
])
def test_random_fill_errors(op_type, inputs, args, err):
    with pytest.raises(err) as e:
        run(op_type, inputs, **args)
    names_op(e, op_type)


def test_uniform_fill_in_place_only_on_input_0():
    x = np.zeros(3, np.float32)
    with pytest.raises(ArgumentError) as e:
        run("UniformFill", [x, np.zeros(1, np.float32), np.ones(1, np.float32)],
            outputs=["lo"], input_names=["x", "lo", "hi"])
    names_op(e, "UniformFill")


@FEW
@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)))
def test_xavier_fill_scale(shape):
    (y,) = run("XavierFill", [], shape=[*shape[:2], 40 * shape[2]], device_option=seeded(1))
    fan_in = y.size // y.shape[0]
    scale = np.sqrt(3.0 / fan_in)
    assert np.abs(y).max() <= np.float32(scale) * (1 + 1e-6)
    assert scipy.stats.kstest(y.ravel().astype(np.float64), "uniform",
                              args=(-scale, 2 * scale)).pvalue > 1e-4


@FEW
@given(shape=st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 5)))
def test_msra_fill_scale(shape):
    shape = (shape[0], shape[1], 40 * shape[2])
    (y,) = run("MSRAFill", [], shape=list(shape), device_option=seeded(2))
    std = np.sqrt(2.0 / (y.size // shape[1]))  # Caffe2's fan_out = size / shape[1]
    assert scipy.stats.kstest(y.ravel().astype(np.float64), "norm", args=(0, std)).pvalue > 1e-4


def test_fan_fills_with_empty_shapes_come_back_empty():
    # Caffe2 divided by zero here; an empty output has nothing to draw.
    assert run("XavierFill", [], shape=[3, 0])[0].shape == (3, 0)
    assert run("XavierFill", [], shape=[0, 3])[0].shape == (0, 3)
    assert run("MSRAFill", [], shape=[3, 0])[0].shape == (3, 0)
