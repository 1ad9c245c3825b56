"""LRN, SpatialBN and Softmax against PyTorch CPU (float64) and pinned Caffe2 facts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from c2compile.errors import ArgumentError, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)


def _rng(seed):
    return np.random.default_rng(seed)


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _close(ours, ref, rtol=1e-5, atol=1e-6):
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=rtol, atol=atol)


def _names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


# ----------------------------------------------------------------------------- LRN

@SETTINGS
@given(seed=seeds, n=dim, c=st.integers(1, 9), h=dim, w=dim,
       size=st.sampled_from([1, 3, 5, 7]), alpha=st.floats(1e-4, 2.0),
       beta=st.floats(0.1, 1.5), bias=st.floats(0.5, 3.0), nhwc=st.booleans())
def test_lrn_matches_torch(seed, n, c, h, w, size, alpha, beta, bias, nhwc):
    x = _rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    ref = F.local_response_norm(_t(x), size, alpha=alpha, beta=beta, k=bias)
    # scale = bias + alpha * (mean of x^2 over `size` zero-padded channels): torch's own
    # formulation through an average pool that counts the padding.
    sq = F.pad(_t(x).square().unsqueeze(1), (0, 0, 0, 0, size // 2, size // 2))
    avg = F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1)
    ref_scale = bias + alpha * avg
    if nhwc:
        xin = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        y, scale = run("LRN", [xin], 2, size=size, alpha=alpha, beta=beta, bias=bias,
                       order="NHWC")
        y, scale = y.transpose(0, 3, 1, 2), scale.transpose(0, 3, 1, 2)
    else:
        y, scale = run("LRN", [x], 2, size=size, alpha=alpha, beta=beta, bias=bias)
    _close(y, ref)
    _close(scale, ref_scale)


def test_lrn_one_output_and_default_bias():
    x = _rng(0).standard_normal((2, 6, 3, 3)).astype(np.float32)
    (y,) = run("LRN", [x], size=5, alpha=1e-3, beta=0.75)
    _close(y, F.local_response_norm(_t(x), 5, alpha=1e-3, beta=0.75, k=1.0))


def test_lrn_alpha_is_divided_by_size():
    """One channel, x = 2, size 3, alpha 3: scale = 1 + (3 / 3) * 2^2 = 5, y = 2 / 5."""
    x = np.full((1, 1, 1, 1), 2.0, np.float32)
    y, scale = run("LRN", [x], 2, size=3, alpha=3.0, beta=1.0)
    np.testing.assert_allclose(scale.ravel(), [5.0], rtol=1e-6)
    np.testing.assert_allclose(y.ravel(), [0.4], rtol=1e-6)


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("order", ["NCHW", "NHWC"])
def test_lrn_and_its_gradient_of_no_channels(size, order):
    """Empty tensors, no channels included (with size 1 the window sum once indexed an
    entry that does not exist): empty outputs of the same shape."""
    for shape in ((1, 0, 0, 0), (2, 0, 3, 3), (0, 4, 2, 2)):
        x = np.zeros(shape if order == "NCHW" else (shape[0], *shape[2:], shape[1]), np.float32)
        y, scale = run("LRN", [x], 2, size=size, alpha=1.0, beta=0.5, order=order)
        (dx,) = run("LRNGradient", [x, y, x], size=size, alpha=1.0, beta=0.5, order=order)
        assert y.shape == scale.shape == dx.shape == x.shape


@pytest.mark.parametrize("args", [dict(size=4, alpha=1.0, beta=0.5),   # even window
                                  dict(size=0, alpha=1.0, beta=0.5),   # Caffe2's default
                                  dict(size=3, beta=0.5),              # alpha default 0
                                  dict(size=3, alpha=1.0),             # beta default 0
                                  dict(size=3, alpha=1.0, beta=0.5, order="CHWN")])
def test_lrn_bad_arguments(args):
    x = np.ones((1, 3, 2, 2), np.float32)
    with pytest.raises(ArgumentError) as err:
        run("LRN", [x], **args)
    _names_op(err, "LRN")


def test_lrn_bad_inputs():
    with pytest.raises(ShapeError) as err:
        run("LRN", [np.ones((3, 2, 2), np.float32)], size=3, alpha=1.0, beta=0.5)
    _names_op(err, "LRN")
    assert "[3, 2, 2]" in str(err.value)
    with pytest.raises(ShapeError) as err:
        run("LRN", [np.ones((1, 3, 2, 2))], size=3, alpha=1.0, beta=0.5)  # float64
    _names_op(err, "LRN")


def test_lrn_not_in_place():
    with pytest.raises(ArgumentError) as err:
        run("LRN", [np.ones((1, 3, 2, 2), np.float32)], ["x"], input_names=["x"],
            size=3, alpha=1.0, beta=0.5)
    _names_op(err, "LRN")


# ----------------------------------------------------------------------------- SpatialBN

def _bn_data(seed, shape, c):
    r = _rng(seed)
    x = (r.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    scale, bias, mean = (r.standard_normal(c).astype(np.float32) for _ in range(3))
    var = r.uniform(0.1, 2.0, c).astype(np.float32)
    return x, scale, bias, mean, var


def _to_nhwc(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


@SETTINGS
@given(seed=seeds, n=dim, c=dim, spatial=st.lists(dim, min_size=1, max_size=3),
       eps=st.sampled_from([1e-5, 1e-3, 0.1]), nhwc=st.booleans())
def test_spatial_bn_test_mode_matches_torch(seed, n, c, spatial, eps, nhwc):
    x, scale, bias, mean, var = _bn_data(seed, (n, c, *spatial), c)
    ref = F.batch_norm(_t(x), _t(mean), _t(var), _t(scale), _t(bias), training=False, eps=eps)
    order = "NHWC" if nhwc else "NCHW"
    xin = _to_nhwc(x) if nhwc else x
    (y,) = run("SpatialBN", [xin, scale, bias, mean, var], is_test=1, epsilon=eps, order=order)
    _close(np.moveaxis(y, -1, 1) if nhwc else y, ref, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(seed=seeds, n=dim, c=dim, spatial=st.lists(dim, min_size=1, max_size=3),
       momentum=st.sampled_from([0.0, 0.1, 0.9, 1.0]), nhwc=st.booleans())
def test_spatial_bn_training_matches_torch(seed, n, c, spatial, momentum, nhwc):
    x, scale, bias, rm, rv = _bn_data(seed, (n, c, *spatial), c)
    eps = 1e-5
    xt = _t(x)
    red = [0] + list(range(2, x.ndim))
    bmean = xt.mean(red)
    bvar = xt.var(red, unbiased=False)
    trm, trv = _t(rm).clone(), _t(rv).clone()
    if x.size // c > 1:
        # torch's momentum weighs the new batch; Caffe2's weighs the old running value.
        ref = F.batch_norm(xt, trm, trv, _t(scale), _t(bias), training=True,
                           momentum=1 - momentum, eps=eps)
    else:  # torch refuses one value per channel; Caffe2 normalizes it to bias
        ref = F.batch_norm(xt, bmean, bvar, _t(scale), _t(bias), training=False, eps=eps)
        trm = momentum * trm + (1 - momentum) * bmean
    order = "NHWC" if nhwc else "NCHW"
    xin = _to_nhwc(x) if nhwc else x
    y, run_mean, run_var, saved_mean, saved_inv = run(
        "SpatialBN", [xin, scale, bias, rm, rv], ["Y", "rm", "rv", "sm", "siv"],
        input_names=["X", "scale", "bias", "rm", "rv"], momentum=momentum, order=order)
    _close(np.moveaxis(y, -1, 1) if nhwc else y, ref, rtol=1e-4, atol=1e-4)
    _close(run_mean, trm, atol=1e-5)
    _close(saved_mean, bmean, atol=1e-5)
    _close(saved_inv, 1 / torch.sqrt(bvar + eps), rtol=1e-4)
    # Caffe2 1.10 folds the *unbiased* batch variance into running_var, as torch does; with
    # one value per channel that is 0 * inf = NaN (real Caffe2 1.10.2 writes NaN there too).
    n = x.size // c
    if n > 1:
        _close(run_var, trv, rtol=1e-4, atol=1e-5)
    elif momentum < 1:
        assert np.isnan(run_var).all()


def test_spatial_bn_running_stats_pinned():
    """C=1, X = {1, 3}: mean 2, biased var 1 normalizes, unbiased var 2 is folded into
    running_var (what real Caffe2 1.10.2 gives: rm 0.2, rv 0.2, sm 2, siv 0.999995)."""
    x = np.array([1, 3], np.float32).reshape(2, 1, 1)
    ones, zeros = np.ones(1, np.float32), np.zeros(1, np.float32)
    y, rm, rv, sm, siv = run("SpatialBN", [x, ones, zeros, zeros, zeros],
                             ["Y", "m", "v", "sm", "siv"],
                             input_names=["X", "s", "b", "m", "v"], epsilon=1e-5)
    np.testing.assert_allclose(rm, [0.2], rtol=1e-6)          # 0.9 * 0 + 0.1 * 2
    np.testing.assert_allclose(rv, [0.2], rtol=1e-6)          # 0.9 * 0 + 0.1 * 2
    np.testing.assert_allclose(sm, [2.0])
    np.testing.assert_allclose(siv, [1 / np.sqrt(1 + 1e-5)], rtol=1e-6)  # inverse *std*
    np.testing.assert_allclose(y.ravel(), [-1, 1], rtol=1e-5)


def test_spatial_bn_uninitialized_running_stats_start_at_zero():
    x = np.array([1, 3], np.float32).reshape(2, 1, 1)
    ones, zeros, empty = np.ones(1, np.float32), np.zeros(1, np.float32), np.zeros(0, np.float32)
    _, rm, rv, _, _ = run("SpatialBN", [x, ones, zeros, empty, empty],
                          ["Y", "m", "v", "sm", "siv"], input_names=["X", "s", "b", "m", "v"])
    np.testing.assert_allclose(rm, [0.2], rtol=1e-6)
    np.testing.assert_allclose(rv, [0.2], rtol=1e-6)


def test_spatial_bn_empty_batch():
    x = np.zeros((0, 3, 2, 2), np.float32)
    r = _rng(1)
    scale, bias = r.standard_normal(3).astype(np.float32), r.standard_normal(3).astype(np.float32)
    rm, rv = np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32)
    y, m, v, sm, siv = run("SpatialBN", [x, scale, bias, rm, rv], ["Y", "m", "v", "sm", "siv"],
                           input_names=["X", "s", "b", "m", "v"])
    assert y.shape == (0, 3, 2, 2)
    np.testing.assert_array_equal(m, rm)        # untouched
    np.testing.assert_array_equal(v, rv)
    np.testing.assert_array_equal(sm, np.zeros(3))
    np.testing.assert_array_equal(siv, np.zeros(3))


def test_spatial_bn_in_place_x():
    x, scale, bias, mean, var = _bn_data(3, (2, 3, 4), 3)
    (y,) = run("SpatialBN", [x, scale, bias, mean, var], ["X"],
               input_names=["X", "s", "b", "m", "v"], is_test=1)
    ref = F.batch_norm(_t(x), _t(mean), _t(var), _t(scale), _t(bias), training=False)
    _close(y, ref, atol=1e-5)


def test_spatial_bn_training_requires_running_stats_in_place():
    x, scale, bias, mean, var = _bn_data(4, (2, 3, 4), 3)
    with pytest.raises(ArgumentError) as err:
        run("SpatialBN", [x, scale, bias, mean, var], ["Y", "rm2", "rv", "sm", "siv"],
            input_names=["X", "s", "b", "rm", "rv"])
    _names_op(err, "SpatialBN")
    assert "rm2" in str(err.value)


def test_spatial_bn_disallowed_in_place_pair():
    x, scale, bias, mean, var = _bn_data(5, (2, 3, 4), 3)
    with pytest.raises(ArgumentError) as err:   # scale -> Y is not an allowed pair
        run("SpatialBN", [x, scale, bias, mean, var], ["s"],
            input_names=["X", "s", "b", "m", "v"], is_test=1)
    _names_op(err, "SpatialBN")


@pytest.mark.parametrize("outputs,args", [
    (1, {}),                                   # training needs 5 outputs
    (5, {"is_test": 1}),                       # test mode has 1
    (1, {"is_test": 1, "epsilon": 0.0}),
    (1, {"is_test": 1, "momentum": 1.5}),
    (1, {"is_test": 1, "order": "NCWH"}),
])
def test_spatial_bn_bad_arguments(outputs, args):
    x, scale, bias, mean, var = _bn_data(6, (2, 3, 4), 3)
    names = ["X", "s", "b", "m", "v"]
    outs = ["Y", "m", "v", "sm", "siv"][:outputs]
    with pytest.raises(ArgumentError) as err:
        run("SpatialBN", [x, scale, bias, mean, var], outs, input_names=names, **args)
    _names_op(err, "SpatialBN")


def test_spatial_bn_multi_batch_pinned():
    """num_batches=2: the statistics come from inputs 5/6, sums and sums of squares of two
    batches like X (so 4 values per channel here). Real Caffe2 1.10.2 gives these numbers;
    Caffe2's spatial_bn_op_test.test_spatial_bn_multi_batch checks the same rule."""
    x = np.array([1, 3], np.float32).reshape(1, 1, 2)
    ones, zeros = np.ones(1, np.float32), np.zeros(1, np.float32)
    sums, sumsq = np.array([10], np.float32), np.array([40], np.float32)
    y, rm, rv, sm, siv = run("SpatialBN", [x, ones, zeros, zeros, zeros, sums, sumsq],
                             ["Y", "m", "v", "sm", "siv"],
                             input_names=["X", "s", "b", "m", "v", "bm", "bv"],
                             num_batches=2, epsilon=1e-5)
    # mean 10/4 = 2.5, var 40/4 - 2.5^2 = 3.75, unbiased 3.75 * 4/3 = 5
    np.testing.assert_allclose(sm, [2.5])
    np.testing.assert_allclose(siv, [1 / np.sqrt(3.75 + 1e-5)], rtol=1e-6)
    np.testing.assert_allclose(rm, [0.25], rtol=1e-6)
    np.testing.assert_allclose(rv, [0.5], rtol=1e-6)
    np.testing.assert_allclose(y.ravel(), [-0.7745956, 0.25819862], rtol=1e-5)
    # test mode ignores num_batches
    (y,) = run("SpatialBN", [x, ones, zeros, zeros, ones], is_test=1, num_batches=2)
    np.testing.assert_allclose(y.ravel(), [0.999995, 2.999985], rtol=1e-6)


def test_spatial_bn_num_batches_needs_the_sums():
    x, scale, bias, mean, var = _bn_data(7, (2, 3, 4), 3)
    with pytest.raises(ArgumentError, match="inputs 5 and 6") as err:  # Caffe2 reads past
        run("SpatialBN", [x, scale, bias, mean, var], ["Y", "m", "v", "sm", "siv"],
            input_names=["X", "s", "b", "m", "v"], num_batches=2)
    _names_op(err, "SpatialBN")
    with pytest.raises(ShapeError, match="expected 3") as err:
        run("SpatialBN", [x, scale, bias, mean, var, scale[:2], var],
            ["Y", "m", "v", "sm", "siv"], input_names=["X", "s", "b", "m", "v", "bm", "bv"],
            num_batches=2)
    with pytest.raises(ArgumentError, match="num_batches=0"):
        run("SpatialBN", [x, scale, bias, mean, var], is_test=1, num_batches=0)


def test_spatial_bn_bad_shapes():
    x, scale, bias, mean, var = _bn_data(8, (2, 3, 4), 3)
    with pytest.raises(ShapeError) as err:
        run("SpatialBN", [x, scale[:2], bias, mean, var], is_test=1)
    _names_op(err, "SpatialBN")
    assert "[2]" in str(err.value) and "[2, 3, 4]" in str(err.value)
    with pytest.raises(ShapeError) as err:
        run("SpatialBN", [x, scale, bias, mean, var[:1]], is_test=1)
    _names_op(err, "SpatialBN")
    with pytest.raises(ShapeError) as err:   # rank 2
        run("SpatialBN", [x[:, :, 0], scale, bias, mean, var], is_test=1)
    _names_op(err, "SpatialBN")
    with pytest.raises(ShapeError) as err:   # float64
        run("SpatialBN", [x.astype(np.float64), scale, bias, mean, var], is_test=1)
    _names_op(err, "SpatialBN")


def test_spatial_bn_infer_unknown_shape():
    f = TensorType((3,))
    outs = infer("SpatialBN", [TensorType(None), f, f, f, f], is_test=1)
    assert outs[0].shape is None


# ----------------------------------------------------------------------------- Softmax

@SETTINGS
@given(seed=seeds, shape=st.lists(dim, min_size=1, max_size=4), data=st.data(),
       scale=st.sampled_from([1.0, 30.0]))
def test_softmax_matches_torch(seed, shape, data, scale):
    x = (_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    a = axis % nd
    ref = torch.softmax(_t(x).reshape(int(np.prod(shape[:a])), -1), dim=1).reshape(shape)
    (y,) = run("Softmax", [x], axis=axis)
    _close(y, ref, atol=1e-6)


def test_softmax_default_axis_coerces_to_2d():
    x = _rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    (y,) = run("Softmax", [x])
    np.testing.assert_allclose(y.reshape(2, -1).sum(axis=1), [1, 1], rtol=1e-5)
    _close(y, torch.softmax(_t(x).reshape(2, 12), 1).reshape(2, 3, 4))


def test_softmax_is_numerically_stable():
    x = np.array([[1000.0, 1001.0, -1000.0], [-5e4, -5e4, -5e4]], np.float32)
    (y,) = run("Softmax", [x])
    assert np.isfinite(y).all()
    _close(y, torch.softmax(_t(x), 1))


def test_softmax_errors():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ArgumentError) as err:
        run("Softmax", [x], axis=2)
    _names_op(err, "Softmax")
    with pytest.raises(ShapeError) as err:
        run("Softmax", [x.astype(np.float64)])
    _names_op(err, "Softmax")
    with pytest.raises(ArgumentError) as err:   # Caffe2's schema allows no in-place
        run("Softmax", [x], ["x"], input_names=["x"])
    _names_op(err, "Softmax")


def test_softmax_infer_unknown():
    (t,) = infer("Softmax", [TensorType(None)])
    assert t.shape is None and t.dtype == np.float32


def test_lrn_infer_unknown():
    y, scale = infer("LRN", [TensorType(None)], outputs=2, size=3, alpha=1.0, beta=0.5)
    assert y.shape is None and scale.shape is None and scale.dtype == np.float32


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (2, 0, 3)])
def test_softmax_empty(shape):
    (y,) = run("Softmax", [np.zeros(shape, np.float32)])
    assert y.shape == shape and y.dtype == np.float32
