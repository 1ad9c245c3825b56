"""Gradients of Softmax, LRN and SpatialBN: the rules emit Caffe2 1.x's gradient ops (names,
inputs, arguments pinned from real Caffe2 1.10), and the gradient ops' references match
PyTorch autograd (float64) and finite differences on hypothesis-drawn shapes and arguments.
Where Caffe2 computes something other than the true gradient (SpatialBN in test mode), its
values are pinned from Caffe2 itself."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from c2compile import core, workspace
from c2compile import hypothesis_test_util as hu
from c2compile.errors import ArgumentError, GradientError, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import check_gradient, gradient_ops, infer, run, run_gradient

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 4)


def _rng(seed):
    return np.random.default_rng(seed)


def _normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def op_io(op):
    """(type, inputs, outputs, {arg: value}) of an OperatorDef, to compare with Caffe2's."""
    args = {}
    for a in op.arg:
        args[a.name] = (a.i if a.HasField("i") else a.f if a.HasField("f")
                        else a.s.decode() if a.HasField("s") else list(a.ints))
    return op.type, list(op.input), list(op.output), args


def assert_names_op(err, op_type):
    assert f"({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


# ----------------------------------------------------------------------------- Softmax

def test_softmax_gradient_op_is_caffe2s():
    _, ops, g_in = gradient_ops("Softmax", ["X"], ["Y"], axis=2)
    assert [op_io(o) for o in ops] == [("SoftmaxGradient", ["Y", "Y_grad"], ["X_grad"],
                                      {"axis": 2})]
    assert g_in == ["X_grad"] and ops[0].is_gradient_op


@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=4), data=st.data())
def test_softmax_gradient_vs_torch(seed, shape, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    spelled = data.draw(st.sampled_from([axis, axis - len(shape)]))
    X = _normal(_rng(seed), shape)
    n = int(np.prod(shape[:axis]))

    def torch_fn(x):
        return torch.softmax(x.reshape(n, -1), dim=1).reshape(x.shape)
    check_gradient("Softmax", [X], torch_fn=torch_fn, axis=spelled)


def test_softmax_gradient_pinned_caffe2_values():
    P = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], np.float32)
    dP = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -0.5]], np.float32)
    (dX,) = run("SoftmaxGradient", [P, dP])
    np.testing.assert_allclose(dX.ravel(), [-0.03, -0.46, 0.49, 0.1875, -0.03125, -0.15625],
                               rtol=1e-5, atol=1e-7)


def test_softmax_gradient_errors_and_infer():
    assert infer("SoftmaxGradient", [TensorType((2, 3)), TensorType((2, 3))]) == \
        [TensorType((2, 3), np.float32)]
    assert infer("SoftmaxGradient", [TensorType(None), TensorType(None)]) == \
        [TensorType(None, np.float32)]
    y = np.full((2, 3), 1 / 3, np.float32)
    with pytest.raises(ShapeError) as e:
        run("SoftmaxGradient", [y, np.ones((3, 2), np.float32)])
    assert_names_op(e, "SoftmaxGradient")
    assert "'in1' has shape [3, 2]" in str(e.value)
    with pytest.raises(ArgumentError) as e:
        run("SoftmaxGradient", [y, y], axis=2)
    assert_names_op(e, "SoftmaxGradient")
    with pytest.raises(ShapeError):
        run("SoftmaxGradient", [y.astype(np.float64), y])
    # Caffe2 allows no in-place SoftmaxGradient
    with pytest.raises(ArgumentError):
        run("SoftmaxGradient", [y, y], outputs=["in1"], input_names=["in0", "in1"])


def test_softmax_gradient_of_an_empty_batch():
    (dX,) = run("SoftmaxGradient", [np.zeros((0, 4), np.float32)] * 2)
    assert dX.shape == (0, 4) and dX.dtype == np.float32


# ----------------------------------------------------------------------------- LRN

def test_lrn_gradient_op_is_caffe2s():
    """Caffe2 1.x's LRNGradient reads [X, Y, dY] and recomputes the scale: the optional
    scale output is neither read nor given a gradient."""
    args = dict(size=5, alpha=0.25, beta=0.75, bias=1.0)
    for outputs in (["Y"], ["Y", "scale"]):
        _, ops, g_in = gradient_ops("LRN", ["X"], outputs, **args)
        assert [op_io(o) for o in ops] == [("LRNGradient", ["X", "Y", "Y_grad"], ["X_grad"],
                                          args)]
        assert g_in == ["X_grad"]


def _lrn_torch(nhwc, size, alpha, beta, bias):
    def fn(x):
        x = x.permute(0, 3, 1, 2) if nhwc else x
        y = F.local_response_norm(x, size, alpha=alpha, beta=beta, k=bias)
        return y.permute(0, 2, 3, 1) if nhwc else y
    return fn


@SETTINGS
@given(seed=seeds, n=dim, c=st.integers(1, 8), h=dim, w=dim,
       size=st.sampled_from([1, 3, 5, 7]), alpha=st.floats(0.05, 2.0),
       beta=st.floats(0.1, 1.5), bias=st.floats(0.5, 3.0), nhwc=st.booleans(),
       with_scale=st.booleans())
def test_lrn_gradient_vs_torch(seed, n, c, h, w, size, alpha, beta, bias, nhwc, with_scale):
    rng = _rng(seed)
    X = _normal(rng, (n, h, w, c) if nhwc else (n, c, h, w))
    args = dict(size=size, alpha=alpha, beta=beta, bias=bias, order="NHWC" if nhwc else "NCHW")
    # a gradient given to the scale output changes nothing (Caffe2 never reads it)
    grads = [_normal(rng, X.shape)] + [_normal(rng, X.shape)] * with_scale
    _, (dX,) = run_gradient("LRN", [X], 1 + with_scale, grads, **args)
    (ours,) = check_gradient("LRN", [X], torch_fn=_lrn_torch(nhwc, size, alpha, beta, bias),
                             output_grads=grads[:1], **args)
    np.testing.assert_array_equal(dX, ours)


def test_lrn_gradient_pinned_caffe2_values():
    """LRNGradient reads Y as given (here not X's LRN at all), as Caffe2 does."""
    X = (np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2) - 5) / 4
    dY = np.cos(np.arange(12, dtype=np.float32)).reshape(1, 3, 2, 2)
    (dX,) = run("LRNGradient", [X, X * 0.5, dY], size=3, alpha=0.5, beta=0.75, bias=2.0)
    want = [0.4653702, 0.2713756, -0.2147741, -0.5464702, -0.3594504, 0.1502515, 0.5101639,
            0.3593978, -0.0848992, -0.45763, -0.3972804, -0.0269822]
    np.testing.assert_allclose(dX.ravel(), want, rtol=1e-5, atol=1e-6)


def test_lrn_gradient_errors():
    x = np.ones((1, 2, 2, 2), np.float32)
    args = dict(size=3, alpha=0.1, beta=0.75)
    with pytest.raises(ShapeError) as e:
        run("LRNGradient", [x, x, np.ones((1, 2, 2, 3), np.float32)], **args)
    assert_names_op(e, "LRNGradient")
    assert "'in2'" in str(e.value)
    with pytest.raises(ArgumentError):
        run("LRNGradient", [x, x, x], size=2, alpha=0.1, beta=0.75)
    with pytest.raises(ShapeError) as e:
        run("LRNGradient", [x[0], x[0], x[0]], **args)
    assert "4-d" in str(e.value)
    with pytest.raises(ArgumentError):   # [X, Y, scale, dY] is not Caffe2 1.x's form
        run("LRNGradient", [x, x, x, x], **args)


# ----------------------------------------------------------------------------- SpatialBN

BN_IN = ["X", "scale", "bias", "rm", "rv"]
BN_OUT = ["Y", "rm", "rv", "saved_mean", "saved_inv_std"]


def test_spatial_bn_gradient_ops_are_caffe2s():
    _, ops, g_in = gradient_ops("SpatialBN", BN_IN, BN_OUT, epsilon=1e-3, order="NHWC")
    assert [op_io(o) for o in ops] == [(
        "SpatialBNGradient", ["X", "scale", "Y_grad", "saved_mean", "saved_inv_std"],
        ["X_grad", "scale_grad", "bias_grad"], {"epsilon": pytest.approx(1e-3),
                                                "order": "NHWC"})]
    assert g_in == ["X_grad", "scale_grad", "bias_grad", None, None]
    # test mode: the running statistics go where the saved ones go in training
    _, ops, g_in = gradient_ops("SpatialBN", BN_IN, ["Y"], is_test=1)
    assert [op_io(o) for o in ops] == [(
        "SpatialBNGradient", ["X", "scale", "Y_grad", "rm", "rv"],
        ["X_grad", "scale_grad", "bias_grad"], {"is_test": 1})]
    assert g_in == ["X_grad", "scale_grad", "bias_grad", None, None]
    # several batches: the sums of dscale / dbias are read from the blobs then written
    _, ops, g_in = gradient_ops("SpatialBN", BN_IN + ["sums", "sumsq"], BN_OUT, num_batches=2)
    assert [op_io(o) for o in ops] == [(
        "SpatialBNGradient",
        ["X", "scale", "Y_grad", "saved_mean", "saved_inv_std", "scale_grad", "bias_grad"],
        ["X_grad", "scale_grad", "bias_grad"], {"num_batches": 2})]
    assert g_in == ["X_grad", "scale_grad", "bias_grad", None, None, None, None]


def test_spatial_bn_gradient_rule_errors():
    op = core.CreateOperator("SpatialBN", BN_IN + ["a", "b"], ["Y"], is_test=1)
    with pytest.raises(GradientError) as e:
        core.GradientRegistry.GetGradientForOp(op, ["Y_grad"])
    assert "exactly 5" in str(e.value) and e.value.op_type == "SpatialBN"
    # only a running statistic "has a gradient": Y's is needed
    op = core.CreateOperator("SpatialBN", BN_IN, BN_OUT)
    with pytest.raises(GradientError) as e:
        core.GradientRegistry.GetGradientForOp(op, [None, "rm_grad", None, None, None])
    assert "'Y'" in str(e.value)


def _bn_shape(rng_draw, nhwc):
    """(shape, C) of a rank-3..5 input with at least 3 values per channel. Torch needs 2, but
    with 2 the normalized pair is +-d / sqrt(d^2 / 4 + eps): flat except where d is near
    sqrt(eps), where its curvature makes finite differences of it wrong (seen: 0.74 for an
    exact 0.67 that torch agreed with)."""
    n, c = rng_draw(st.integers(1, 3)), rng_draw(st.integers(1, 4))
    spatial = rng_draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    if n * int(np.prod(spatial)) < 3:
        spatial[0] += 3 - n * int(np.prod(spatial))
    return ((n, *spatial, c) if nhwc else (n, c, *spatial)), c


@SETTINGS
@given(seed=seeds, nhwc=st.booleans(), eps=st.sampled_from([1e-5, 1e-3, 0.1]), data=st.data())
def test_spatial_bn_training_gradient_vs_torch(seed, nhwc, eps, data):
    shape, C = _bn_shape(data.draw, nhwc)
    rng = _rng(seed)
    X = _normal(rng, shape) * 2 + 0.5
    scale, bias = _normal(rng, C), _normal(rng, C)
    rm, rv = _normal(rng, C), np.abs(_normal(rng, C))
    dY = _normal(rng, shape)

    def torch_fn(x, s, b, *_):
        xc = x.movedim(-1, 1) if nhwc else x
        y = F.batch_norm(xc, None, None, s, b, training=True, eps=np.float32(eps).item())
        return y.movedim(1, -1) if nhwc else y
    check_gradient("SpatialBN", [X, scale, bias, rm, rv], BN_OUT, input_names=BN_IN,
                   output_grads=[dY, None, None, None, None], torch_fn=torch_fn,
                   epsilon=eps, order="NHWC" if nhwc else "NCHW")


def _bn_pinned_inputs():
    X = (np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2) - 5) / 4
    dY = np.cos(np.arange(12, dtype=np.float32)).reshape(1, 3, 2, 2)
    scale = np.array([0.5, 1.0, 1.5], np.float32)
    bias = np.array([0.1, -0.2, 0.3], np.float32)
    mean = np.array([0.2, -0.1, 0.4], np.float32)
    var = np.array([0.5, 2.0, 1.25], np.float32)
    return X, dY, scale, bias, mean, var


def test_spatial_bn_test_mode_gradient_is_caffe2s_not_the_derivative():
    """Caffe2 1.10 runs its training formula on the running mean and *variance* (read as an
    inverse std); values pinned from it. The true derivative would be dY * scale /
    sqrt(var + eps)."""
    X, dY, scale, bias, mean, var = _bn_pinned_inputs()
    _, (dX, dscale, dbias, *rest) = run_gradient("SpatialBN", [X, scale, bias, mean, var], 1,
                                                 [dY], is_test=1, epsilon=1e-3)
    assert rest == [None, None]
    np.testing.assert_allclose(dX.ravel(), [
        0.2187313, 0.1077523, -0.1274145, -0.2669305, -1.7048886, -0.287684, 0.6079254,
        -0.2620175, 0.9484992, -0.2479317, 0.1263043, 1.9469874], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dscale, [-0.5050143, 1.8296275, -1.6324322], rtol=1e-5)
    np.testing.assert_allclose(dbias, [0.134163, 1.344091, -1.8912761], rtol=1e-5)
    true = dY * (scale / np.sqrt(var + np.float32(1e-3))).reshape(1, 3, 1, 1)
    assert not np.allclose(dX, true, atol=1e-2)


def test_spatial_bn_gradient_num_batches_pinned():
    """With num_batches = 3, dscale / dbias are inputs 5, 6 (sums over the batches) / 3 and
    may be written in place; n in dX stays this batch's N * HxW."""
    X, dY, scale, _, mean, rstd = _bn_pinned_inputs()
    ds = np.array([0.3, -0.6, 0.9], np.float32)
    db = np.array([1.2, 0.0, -2.4], np.float32)
    names = ["X", "scale", "dY", "mean", "rstd", "ds", "db"]
    dX, ds2, db2 = run("SpatialBNGradient", [X, scale, dY, mean, rstd, ds, db],
                       ["dX", "ds", "db"], input_names=names, num_batches=3)
    np.testing.assert_allclose(dX.ravel(), [
        0.2295312, 0.1138256, -0.126068, -0.2703106, -1.3372872, 0.5873243, 1.9903405,
        1.6278045, 0.040664, -1.438838, -1.3476732, 0.1899388], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds2, ds / 3, rtol=1e-6)
    np.testing.assert_allclose(db2, db / 3, rtol=1e-6)


def test_spatial_bn_gradient_shapes_and_empty_batch():
    # dscale and dbias take scale's shape (Caffe2 sizes both like scale)
    outs = infer("SpatialBNGradient", [TensorType((2, 3, 4)), TensorType((3, 1)),
                                       TensorType((2, 3, 4)), TensorType((3,)),
                                       TensorType((3,))], outputs=3)
    assert [t.shape for t in outs] == [(2, 3, 4), (3, 1), (3, 1)]
    C = np.ones(3, np.float32)
    x = np.zeros((0, 3, 2), np.float32)
    dX, ds, db = run("SpatialBNGradient", [x, C, x, C, C], outputs=3)
    assert dX.shape == (0, 3, 2)
    np.testing.assert_array_equal(ds, 0)
    np.testing.assert_array_equal(db, 0)


def test_spatial_bn_gradient_errors():
    C = np.ones(3, np.float32)
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ShapeError) as e:
        run("SpatialBNGradient", [x, C, np.ones((2, 3, 5), np.float32), C, C], outputs=3)
    assert_names_op(e, "SpatialBNGradient")
    assert "'in2'" in str(e.value)
    with pytest.raises(ShapeError) as e:
        run("SpatialBNGradient", [x, C, x, np.ones(4, np.float32), C], outputs=3)
    assert "'in3'" in str(e.value) and "expected 3 elements" in str(e.value)
    with pytest.raises(ShapeError) as e:
        run("SpatialBNGradient", [x[0], C, x[0], C, C], outputs=3)
    assert "rank >= 3" in str(e.value)
    with pytest.raises(ArgumentError) as e:
        run("SpatialBNGradient", [x, C, x, C, C], outputs=3, num_batches=2)
    assert "inputs 5 and 6" in str(e.value)
    with pytest.raises(ArgumentError):
        run("SpatialBNGradient", [x, C, x, C, C], outputs=3, order="NCWH")


# ----------------------------------------------------------------------------- Caffe2-style

class TestNormalizationGradients(hu.HypothesisTestCase):
    @given(X=hu.tensor(min_dim=2, max_dim=4, elements=hu.floats(-2.0, 2.0)),
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_softmax(self, X, gc, dc):
        op = core.CreateOperator("Softmax", ["X"], ["Y"])
        self.assertGradientChecks(gc, op, [X], 0, [0])

    @given(X=hu.tensor(min_dim=4, max_dim=4, elements=hu.floats(-2.0, 2.0)),
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_lrn(self, X, gc, dc):
        op = core.CreateOperator("LRN", ["X"], ["Y", "scale"], size=3, alpha=0.5, beta=0.75)
        self.assertGradientChecks(gc, op, [X], 0, [0])

    @given(N=st.integers(2, 3), C=st.integers(1, 3), H=st.integers(1, 3), seed=seeds,
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_spatial_bn(self, N, C, H, seed, gc, dc):
        rng = _rng(seed)
        X = _normal(rng, (N, C, H, 2))
        scale, bias = _normal(rng, C), _normal(rng, C)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        op = core.CreateOperator("SpatialBN", BN_IN, BN_OUT, epsilon=1e-3)
        for i in (0, 1, 2):
            workspace.ResetWorkspace()
            # A small step: with as few as 4 values per channel, X's own spread can be ~0.1,
            # and the default 0.05 step's truncation error then reaches ~7% of dX (drawn:
            # N=2, C=2, H=1). At 0.005 it is 100x smaller, float32 rounding still ~1e-4.
            self.assertGradientChecks(gc, op, [X, scale, bias, rm, rv], i, [0], stepsize=0.005)
