"""Gradients of the shape ops: the rules emit Caffe2 1.x's gradient ops (names, inputs,
arguments pinned from real Caffe2 1.10), the gradient ops (ResizeLike, SliceGradient, and
the forward types reused) match PyTorch autograd (float64) and finite differences on
hypothesis-drawn shapes and arguments, and KnownInts carries split_info / old_shape values
through shape inference."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from c2compile import core
from c2compile import hypothesis_test_util as hu
from c2compile.errors import ArgumentError, GradientError, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.shape import KnownInts
from c2compile.ops.testing import check_gradient, gradient_ops, infer, run, run_gradient
from tests.ops.test_normalization_grad import assert_names_op, op_io

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 4)


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- Caffe2's ops

# (forward type, inputs, outputs, args) -> the gradient ops Caffe2 1.10 emits for
# GetGradientForOp(op, [o + "_grad" for o in outputs]) and its input gradients.
CAFFE2_GRADIENTS = [
    (("Concat", ["a", "b"], ["y", "info"], dict(axis=2)),
     [("Split", ["y_grad", "info"], ["a_grad", "b_grad"], dict(axis=2))], ["a_grad", "b_grad"]),
    (("Concat", ["a", "b"], ["y", "info"], dict(axis=2, add_axis=1)),
     [("Split", ["y_grad", "info"], ["a_grad", "b_grad"], dict(axis=2, add_axis=1))],
     ["a_grad", "b_grad"]),
    (("DepthConcat", ["a", "b"], ["y", "info"], dict(order="NHWC")),
     [("Split", ["y_grad", "info"], ["a_grad", "b_grad"], dict(order="NHWC"))],
     ["a_grad", "b_grad"]),
    (("Split", ["x"], ["a", "b"], dict(axis=2, split=[1, 2])),
     [("Concat", ["a_grad", "b_grad"], ["x_grad", "_x_grad_dims"], dict(axis=2, split=[1, 2]))],
     ["x_grad"]),
    (("Split", ["x", "sp"], ["a", "b"], dict(axis=2)),
     [("Concat", ["a_grad", "b_grad"], ["x_grad", "_x_grad_dims"], dict(axis=2))],
     ["x_grad", None]),
    (("DepthSplit", ["x"], ["a", "b"], {}),
     [("Concat", ["a_grad", "b_grad"], ["x_grad", "_x_grad_dims"], {})], ["x_grad"]),
    (("Reshape", ["x"], ["y", "old"], dict(shape=[2, -1])),
     [("Reshape", ["y_grad", "old"], ["x_grad", "_x_grad_dims"], {})], ["x_grad"]),
    (("Reshape", ["x", "sh"], ["y", "old"], {}),
     [("Reshape", ["y_grad", "old"], ["x_grad", "_x_grad_dims"], {})], ["x_grad", None]),
    (("Flatten", ["x"], ["y"], dict(axis=2)),
     [("ResizeLike", ["y_grad", "x"], ["x_grad"], dict(axis=2))], ["x_grad"]),
    (("FlattenToVec", ["x"], ["y"], {}), [("ResizeLike", ["y_grad", "x"], ["x_grad"], {})],
     ["x_grad"]),
    (("Transpose", ["x"], ["y"], dict(axes=[1, 2, 0])),
     [("Transpose", ["y_grad"], ["x_grad"], dict(axes=[2, 0, 1]))], ["x_grad"]),
    (("Transpose", ["x"], ["y"], {}), [("Transpose", ["y_grad"], ["x_grad"], {})], ["x_grad"]),
    (("Squeeze", ["x"], ["y"], dict(dims=[0, 2])),
     [("ExpandDims", ["y_grad"], ["x_grad"], dict(dims=[0, 2]))], ["x_grad"]),
    (("ExpandDims", ["x"], ["y"], dict(dims=[0, 2])),
     [("Squeeze", ["y_grad"], ["x_grad"], dict(dims=[0, 2]))], ["x_grad"]),
    (("Slice", ["x"], ["y"], dict(starts=[0, 1], ends=[-1, 3])),
     [("SliceGradient", ["x", "y_grad"], ["x_grad"], dict(starts=[0, 1], ends=[-1, 3]))],
     ["x_grad"]),
    (("Slice", ["x", "s", "e"], ["y"], {}),
     [("SliceGradient", ["x", "s", "e", "y_grad"], ["x_grad"], {})], ["x_grad", None, None]),
]


@pytest.mark.parametrize("forward, grad_ops, g_input", CAFFE2_GRADIENTS,
                         ids=[f[0][0] + str(i) for i, f in enumerate(CAFFE2_GRADIENTS)])
def test_gradient_ops_are_caffe2s(forward, grad_ops, g_input):
    op_type, ins, outs, args = forward
    _, ops, g_in = gradient_ops(op_type, ins, outs, **args)
    assert [op_io(o) for o in ops] == grad_ops
    assert g_in == g_input
    assert all(o.is_gradient_op for o in ops)


def test_shape_has_no_gradient_as_in_caffe2():
    """Caffe2's SHOULD_NOT_DO_GRADIENT: asking for a gradient through Shape is an error
    naming the op; a Shape beside the gradient's path is simply skipped."""
    op = core.CreateOperator("Shape", ["x"], ["s"])
    with pytest.raises(GradientError) as e:
        core.GradientRegistry.GetGradientForOp(op, ["s_grad"])
    assert e.value.op_type == "Shape"
    net = core.Net("shape_aside")
    net.Shape(["x"], ["s"])
    net.Reshape(["x", "s"], ["y", "old"])
    grads = net.AddGradientOperators({"y": "y_grad"})
    assert str(grads["x"]) == "x_grad" and "s" not in map(str, grads)


def test_split_gradient_with_missing_output_gradients_is_caffe2s():
    """Caffe2 concatenates only the gradients that exist (x_grad then comes out short)."""
    op = core.CreateOperator("Split", ["x"], ["a", "b", "c"], axis=1)
    ops, g_in = core.GradientRegistry.GetGradientForOp(op, ["a_grad", None, "c_grad"])
    assert [op_io(o) for o in ops] == [("Concat", ["a_grad", "c_grad"],
                                      ["x_grad", "_x_grad_dims"], dict(axis=1))]


def test_concat_gradient_needs_the_data_gradient():
    """Only split_info "has a gradient": nothing to do (Caffe2 returns no ops)."""
    op = core.CreateOperator("Concat", ["a", "b"], ["y", "info"])
    ops, g_in = core.GradientRegistry.GetGradientForOp(op, [None, "info_grad"])
    assert ops == [] and g_in == [None, None]


# ----------------------------------------------------------------------------- values

def _dims(draw, lo=1, hi=4):
    return draw(st.lists(dim, min_size=lo, max_size=hi))


@SETTINGS
@given(seed=seeds, data=st.data())
def test_concat_gradient_vs_torch(seed, data):
    shape = _dims(data.draw)
    n = data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):  # add_axis: stack
        axis = data.draw(st.integers(0, len(shape)))
        xs = [_normal(seed + i, shape) for i in range(n)]
        check_gradient("Concat", xs, 2, torch_fn=lambda *t: torch.stack(t, axis),
                       axis=axis, add_axis=1)
        return
    axis = data.draw(st.integers(0, len(shape) - 1))
    xs = []
    for i in range(n):
        s = list(shape)
        s[axis] = data.draw(dim)
        xs.append(_normal(seed + i, s))
    check_gradient("Concat", xs, 2, torch_fn=lambda *t: torch.cat(t, axis),
                   axis=data.draw(st.sampled_from([axis, axis - len(shape)])))


@SETTINGS
@given(seed=seeds, data=st.data())
def test_split_gradient_vs_torch(seed, data):
    shape = _dims(data.draw)
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    sizes[0] += 1   # empty outputs, but not an empty input (finite differences need one)
    shape[axis] = sum(sizes)
    X = _normal(seed, shape)
    how = data.draw(st.sampled_from(["arg", "input", "equal"]))
    if how == "equal":
        sizes = [shape[axis]]
    inputs = [X] + ([np.asarray(sizes, np.int32)] if how == "input" else [])
    args = dict(axis=axis, **(dict(split=sizes) if how == "arg" else {}))
    check_gradient("Split", inputs, len(sizes),
                   torch_fn=lambda x, *_: torch.split(x, sizes, axis), **args)


def test_depth_split_and_depth_concat_gradients():
    x = _normal(0, (2, 4, 3, 3))
    check_gradient("DepthSplit", [x], 2, torch_fn=lambda t: torch.split(t, 2, 1))
    a, b = _normal(1, (2, 3, 3, 1)), _normal(2, (2, 3, 3, 2))
    check_gradient("DepthConcat", [a, b], 2, torch_fn=lambda *t: torch.cat(t, 3), order="NHWC")


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=4), data=st.data(),
       as_input=st.booleans())
def test_reshape_gradient_vs_torch(seed, shape, data, as_input):
    X = _normal(seed, shape)
    new = list(data.draw(st.permutations(shape)))
    new[data.draw(st.integers(0, len(new) - 1))] = -1
    if as_input:
        dtype = data.draw(st.sampled_from([np.int32, np.int64]))
        _, grads = run_gradient("Reshape", [X, np.asarray(new, dtype)], 2)
        assert grads[1] is None
        check_gradient("Reshape", [X, np.asarray(new, dtype)], 2,
                       torch_fn=lambda x, s: x.reshape(new))
    else:
        check_gradient("Reshape", [X], 2, torch_fn=lambda x: x.reshape(new), shape=new)


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=4), data=st.data())
def test_flatten_gradients_vs_torch(seed, shape, data):
    X = _normal(seed, shape)
    axis = data.draw(st.integers(0, len(shape)))
    check_gradient("Flatten", [X], torch_fn=lambda x: x.reshape(int(np.prod(shape[:axis])), -1),
                   axis=axis)
    check_gradient("FlattenToVec", [X], torch_fn=lambda x: x.reshape(-1))


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=5), data=st.data())
def test_transpose_gradient_vs_torch(seed, shape, data):
    X = _normal(seed, shape)
    if data.draw(st.booleans()):
        axes = data.draw(st.permutations(range(len(shape))))
        check_gradient("Transpose", [X], torch_fn=lambda x: x.permute(*axes), axes=axes)
    else:
        check_gradient("Transpose", [X], torch_fn=lambda x: x.permute(*reversed(range(x.ndim))))


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=3), data=st.data())
def test_squeeze_and_expand_dims_gradients_vs_torch(seed, shape, data):
    dims = sorted(set(data.draw(st.lists(st.integers(0, len(shape)), min_size=1, max_size=3))))
    out = list(shape)
    for d in dims:
        out.insert(d, 1)
    X = _normal(seed, shape)
    check_gradient("ExpandDims", [X], torch_fn=lambda x: x.reshape(out), dims=dims)
    check_gradient("Squeeze", [X.reshape(out)], torch_fn=lambda x: x.reshape(shape), dims=dims)


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=4), data=st.data(),
       as_input=st.booleans())
def test_slice_gradient_vs_torch(seed, shape, data, as_input):
    """One dim cut (Caffe2's rule), in either index spelling."""
    X = _normal(seed, shape)
    k = data.draw(st.integers(1, len(shape)))
    cut = data.draw(st.integers(0, k - 1))
    starts, ends = [0] * k, [-1] * k
    s = data.draw(st.integers(0, shape[cut] - 1))
    e = data.draw(st.integers(s, shape[cut]))
    starts[cut] = data.draw(st.sampled_from([s, s - shape[cut] - 1]))
    ends[cut] = data.draw(st.sampled_from([e, e - shape[cut] - 1]))
    index = tuple(slice(s, e) if i == cut else slice(None) for i in range(len(shape)))
    if as_input:
        dtype = data.draw(st.sampled_from([np.int32, np.int64]))
        check_gradient("Slice", [X, np.asarray(starts, dtype), np.asarray(ends, dtype)],
                       torch_fn=lambda x, *_: x[index])
    else:
        check_gradient("Slice", [X], torch_fn=lambda x: x[index], starts=starts, ends=ends)


# ----------------------------------------------------------------------------- gradient ops

def test_resize_like():
    x = np.arange(6, dtype=np.int32)
    (y,) = run("ResizeLike", [x, np.zeros((1, 2, 3), np.float32)], axis=3)  # axis ignored
    assert y.dtype == np.int32 and y.shape == (1, 2, 3)
    np.testing.assert_array_equal(y.ravel(), x)
    assert infer("ResizeLike", [TensorType(None), TensorType((2, 3))]) == [TensorType((2, 3))]
    with pytest.raises(ShapeError) as e:
        run("ResizeLike", [x, np.zeros((4,), np.float32)])
    assert_names_op(e, "ResizeLike")
    assert "same number of elements" in str(e.value)
    with pytest.raises(ArgumentError):  # Caffe2 does not allow it in place
        run("ResizeLike", [x, x], outputs=["in0"], input_names=["in0", "in1"])


def test_slice_gradient_op():
    x = np.zeros((2, 6, 4), np.int32)
    dy = np.ones((2, 3, 4), np.float32)
    (dx,) = run("SliceGradient", [x, dy], starts=[0, 2], ends=[-1, 5])
    assert dx.dtype == np.float32  # dY's type, as Caffe2 writes it
    want = np.zeros((2, 6, 4), np.float32)
    want[:, 2:5] = 1
    np.testing.assert_array_equal(dx, want)
    (dx2,) = run("SliceGradient", [x, np.array([0, 2]), np.array([-1, 5]), dy])
    np.testing.assert_array_equal(dx2, want)
    assert infer("SliceGradient", [TensorType((2, 6)), TensorType((1,), np.int64),
                                   TensorType((1,), np.int64), TensorType(None, np.float64)]) \
        == [TensorType((2, 6), np.float64)]


def test_slice_gradient_errors():
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ShapeError) as e:   # Caffe2 writes out of bounds; we refuse
        run("SliceGradient", [x, np.ones((2, 4), np.float32)], starts=[0, 2], ends=[-1, 5])
    assert_names_op(e, "SliceGradient")
    assert "has shape [2, 4]" in str(e.value) and "[2, 3]" in str(e.value)
    with pytest.raises(ShapeError):
        run("SliceGradient", [x, np.array([0, 2]), np.array([-1, 5]), np.ones((2, 4))])
    with pytest.raises(ArgumentError) as e:
        run("SliceGradient", [x, np.array([0]), x])
    assert "or 4" in str(e.value)
    with pytest.raises(ArgumentError):
        run("SliceGradient", [x, x], starts=[0])
    with pytest.raises(ShapeError):
        run("SliceGradient", [x, np.array([0.0]), np.array([1.0]), x[:1]])


# ----------------------------------------------------------------------------- KnownInts

def test_known_ints_carry_split_info_and_old_shape():
    y, info = infer("Concat", [TensorType((2, 3)), TensorType((2, 5))], outputs=2, axis=1)
    assert isinstance(info, KnownInts) and info.value == (3, 5)
    assert info == TensorType((2,), np.int32) and TensorType((2,), np.int32) == info
    outs = infer("Split", [TensorType((2, 8)), info], outputs=2, axis=1)
    assert [t.shape for t in outs] == [(2, 3), (2, 5)]
    # the same without known values: data-dependent
    outs = infer("Split", [TensorType((2, 8)), TensorType((2,), np.int32)], outputs=2, axis=1)
    assert [t.shape for t in outs] == [None, None]
    with pytest.raises(ShapeError):   # known values are checked like data
        infer("Split", [TensorType((2, 9)), info], outputs=2, axis=1)

    z, old = infer("Reshape", [TensorType((2, 3, 4))], outputs=2, shape=[6, -1])
    assert old.value == (2, 3, 4) and old.dtype == np.int64
    back, _ = infer("Reshape", [z, old], outputs=2)
    assert back.shape == (2, 3, 4)
    (s,) = infer("Shape", [TensorType((5, 7))], axes=[1, 0])
    assert s.value == (7, 5) and s.dtype == np.int64
    assert infer("Reshape", [TensorType((35,)), s], outputs=2)[0].shape == (7, 5)


# ----------------------------------------------------------------------------- Caffe2-style

class TestShapeGradients(hu.HypothesisTestCase):
    @given(X=hu.tensor(min_dim=2, max_dim=4), **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_concat_split_round_trip(self, X, gc, dc):
        op = core.CreateOperator("Concat", ["X", "X2"], ["Y", "info"], axis=1)
        self.assertGradientChecks(gc, op, [X, X * 2], 1, [0])

    @given(X=hu.tensor(min_dim=3, max_dim=3), **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_transpose(self, X, gc, dc):
        op = core.CreateOperator("Transpose", ["X"], ["Y"], axes=[2, 0, 1])
        self.assertGradientChecks(gc, op, [X], 0, [0])
