"""FC, FCTransposed, MatMul and BatchMatMul against PyTorch CPU (float64) and pinned Caffe2 facts.

The pinned facts were checked against Caffe2 1.x (the Caffe2 bundled with PyTorch 1.10.2).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from c2compile.errors import ArgumentError, C2Error, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run

SETTINGS = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)


def _randn(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _close(ours, ref, rtol=1e-5, atol=1e-5):
    assert ours.dtype == np.float32
    ref = np.asarray(ref)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)


def _names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


@st.composite
def _split(draw, total):
    """A shape whose product is `total`: [total], [1, total] or [total, 1]."""
    return draw(st.sampled_from([[total], [1, total], [total, 1]]))


# ----------------------------------------------------------------------------- FC

@st.composite
def _fc_case(draw, transposed):
    x_shape = draw(st.lists(dim, min_size=1, max_size=4))
    ndim = len(x_shape)
    axis = draw(st.integers(0, ndim - 1))
    k = int(np.prod(x_shape[axis:]))
    n = draw(st.integers(1, 6))
    lead_n = draw(_split(n))
    tail = draw(st.sampled_from([[k], list(x_shape[axis:])]))
    w_shape = (tail + lead_n) if transposed else (lead_n + tail)
    split = len(tail) if transposed else len(lead_n)
    axis_w = draw(st.sampled_from([split, split - len(w_shape)]))
    axis_arg = draw(st.sampled_from([axis, axis - ndim]))
    return x_shape, axis, axis_arg, w_shape, axis_w, n, k


@SETTINGS
@given(case=_fc_case(False), seed=seeds)
def test_fc_matches_torch(case, seed):
    x_shape, axis, axis_arg, w_shape, axis_w, n, k = case
    x, w, b = _randn(seed, x_shape), _randn(seed + 1, w_shape), _randn(seed + 2, (n,))
    (y,) = run("FC", [x, w, b], axis=axis_arg, axis_w=axis_w)
    m = int(np.prod(x_shape[:axis]))
    ref = F.linear(_t(x).reshape(m, k), _t(w).reshape(n, k), _t(b))
    _close(y, ref.reshape(tuple(x_shape[:axis]) + (n,)))


@SETTINGS
@given(case=_fc_case(True), seed=seeds)
def test_fc_transposed_matches_torch(case, seed):
    x_shape, axis, axis_arg, w_shape, axis_w, n, k = case
    x, w, b = _randn(seed, x_shape), _randn(seed + 1, w_shape), _randn(seed + 2, (n,))
    (y,) = run("FCTransposed", [x, w, b], axis=axis_arg, axis_w=axis_w)
    m = int(np.prod(x_shape[:axis]))
    ref = torch.addmm(_t(b), _t(x).reshape(m, k), _t(w).reshape(k, n))
    _close(y, ref.reshape(tuple(x_shape[:axis]) + (n,)))


def test_fc_pinned_shapes():
    # Y keeps X's dims before `axis`; axis=0 on a 1-D X gives shape [N] (Caffe2 1.x).
    x = np.ones((3,), np.float32)
    (y,) = run("FC", [x, np.ones((5, 3), np.float32), np.arange(5, dtype=np.float32)], axis=0)
    np.testing.assert_array_equal(y, 3 + np.arange(5, dtype=np.float32))
    # An empty batch gives an empty output of the right shape.
    (y,) = run("FC", [np.ones((0, 3), np.float32), np.ones((4, 3), np.float32),
                      np.ones(4, np.float32)])
    assert y.shape == (0, 4) and y.dtype == np.float32
    # float16_compute is an engine hint: accepted, and the result is the float32 one.
    (y16,) = run("FC", [np.ones((2, 3), np.float32), np.ones((4, 3), np.float32),
                        np.zeros(4, np.float32)], float16_compute=1)
    np.testing.assert_array_equal(y16, np.full((2, 4), 3, np.float32))


@pytest.mark.parametrize("op_type", ["FC", "FCTransposed"])
@pytest.mark.parametrize("shapes,args", [
    (((2, 3), (4, 3), (1, 4)), {}),        # bias must be 1-D (Caffe2: b.dim() == 1)
    (((2, 3), (4, 3), (5,)), {}),          # bias length != N
    (((2, 3), (4, 2), (4,)), {}),          # K mismatch
    (((2, 3, 4), (5, 2, 6), (10,)), dict(axis_w=2)),  # K mismatch after flattening
])
def test_fc_bad_shapes(op_type, shapes, args):
    if op_type == "FCTransposed":
        shapes = (shapes[0], shapes[1][::-1], shapes[2])
    ins = [np.ones(s, np.float32) for s in shapes]
    with pytest.raises(ShapeError) as err:
        run(op_type, ins, **args)
    _names_op(err, op_type)


@pytest.mark.parametrize("args", [dict(axis=2), dict(axis=-3), dict(axis_w=2), dict(axis_w=-3)])
def test_fc_axis_out_of_range(args):
    # Caffe2's canonical_axis_index: -ndim <= axis < ndim (axis == ndim is an error).
    with pytest.raises(ArgumentError) as err:
        run("FC", [np.ones((2, 3), np.float32), np.ones((4, 3), np.float32),
                   np.ones(4, np.float32)], **args)
    _names_op(err, "FC")


def test_fc_rejects_float64_and_in_place_and_bad_args():
    x, w, b = np.ones((2, 3)), np.ones((4, 3), np.float32), np.ones(4, np.float32)
    with pytest.raises(ShapeError) as err:       # Caffe2's FC kernel is float-only
        run("FC", [x, w, b])
    _names_op(err, "FC")
    with pytest.raises(ArgumentError) as err:    # FC allows no in-place pair
        run("FC", [x.astype(np.float32), w, b], outputs=["in0"], input_names=["in0", "w", "b"])
    _names_op(err, "FC")
    with pytest.raises(ArgumentError) as err:    # FC takes exactly 3 inputs
        run("FC", [x.astype(np.float32), w])
    _names_op(err, "FC")
    with pytest.raises(ArgumentError) as err:    # unknown argument
        run("FC", [x.astype(np.float32), w, b], axes=1)
    _names_op(err, "FC")


def test_fc_infer_unknown_shapes():
    f32 = np.float32
    (t,) = infer("FC", [TensorType(None, f32), TensorType((4, 3), f32), TensorType((4,), f32)])
    assert t.shape is None and t.dtype == np.float32
    (t,) = infer("FC", [TensorType((7, 2, 3), f32), TensorType((4, 6), f32),
                        TensorType((4,), f32)])
    assert t.shape == (7, 4)


# ----------------------------------------------------------------------------- MatMul

@st.composite
def _matmul_case(draw):
    m, k, n = draw(dim), draw(dim), draw(dim)
    ta, tb = draw(st.booleans()), draw(st.booleans())
    a2 = (k, m) if ta else (m, k)
    b2 = (n, k) if tb else (k, n)
    a_lead, a_tail = draw(_split(a2[0])), draw(_split(a2[1]))
    b_lead, b_tail = draw(_split(b2[0])), draw(_split(b2[1]))
    a_shape, b_shape = a_lead + a_tail, b_lead + b_tail
    axis_a = draw(st.sampled_from([len(a_lead), len(a_lead) - len(a_shape)]))
    axis_b = draw(st.sampled_from([len(b_lead), len(b_lead) - len(b_shape)]))
    return a_shape, b_shape, a2, b2, axis_a, axis_b, ta, tb


@SETTINGS
@given(case=_matmul_case(), seed=seeds)
def test_matmul_matches_torch(case, seed):
    a_shape, b_shape, a2, b2, axis_a, axis_b, ta, tb = case
    a, b = _randn(seed, a_shape), _randn(seed + 1, b_shape)
    (y,) = run("MatMul", [a, b], axis_a=axis_a, axis_b=axis_b, trans_a=int(ta), trans_b=int(tb))
    ta_, tb_ = _t(a).reshape(a2), _t(b).reshape(b2)
    ref = torch.mm(ta_.T if ta else ta_, tb_.T if tb else tb_)
    _close(y, ref)


def test_matmul_third_input_gives_shape():
    a, b = _randn(0, (2, 3)), _randn(1, (3, 4))
    (y,) = run("MatMul", [a, b, np.zeros((2, 2, 2), np.float32)])
    _close(y, (_t(a) @ _t(b)).reshape(2, 2, 2))
    with pytest.raises(ShapeError) as err:   # 9 elements cannot hold the 8 of the product
        run("MatMul", [a, b, np.zeros((3, 3), np.float32)])
    _names_op(err, "MatMul")


@pytest.mark.parametrize("shapes,args,cls", [
    (((2, 3), (4, 5)), {}, ShapeError),
    (((2, 3), (2, 4)), dict(trans_b=1), ShapeError),
    (((3,), (3, 4)), {}, ArgumentError),        # axis_a=1 is out of range for a 1-D A
    (((2, 3), (3, 4)), dict(axis_b=-3), ArgumentError),
    (((2, 3), (3, 4)), dict(trans=1), ArgumentError),
])
def test_matmul_bad_inputs(shapes, args, cls):
    with pytest.raises(cls) as err:
        run("MatMul", [np.ones(s, np.float32) for s in shapes], **args)
    _names_op(err, "MatMul")


def test_matmul_no_in_place():
    with pytest.raises(ArgumentError) as err:
        run("MatMul", [np.ones((2, 2), np.float32)] * 2, outputs=["in1"],
            input_names=["in0", "in1"])
    _names_op(err, "MatMul")


# ----------------------------------------------------------------------------- BatchMatMul

@st.composite
def _bmm_case(draw):
    batch = draw(st.lists(st.integers(1, 3), max_size=3))
    m, k, n = draw(dim), draw(dim), draw(dim)
    ta, tb = draw(st.booleans()), draw(st.booleans())

    def operand_batch():
        b = [d if draw(st.booleans()) else 1 for d in batch]
        return b[draw(st.integers(0, len(b))):]    # drop some leading dims

    ba, bb = operand_batch(), operand_batch()
    a_shape = ba + ([k, m] if ta else [m, k])
    b_shape = bb + ([n, k] if tb else [k, n])
    return a_shape, b_shape, ta, tb


def _padded(b, nd):
    return [1] * (nd - len(b)) + list(b)


@SETTINGS
@given(case=_bmm_case(), seed=seeds)
def test_batch_matmul_matches_torch(case, seed):
    a_shape, b_shape, ta, tb = case
    a, b = _randn(seed, a_shape), _randn(seed + 1, b_shape)
    ta_, tb_ = _t(a), _t(b)
    ref = torch.matmul(ta_.transpose(-1, -2) if ta else ta_, tb_.transpose(-1, -2) if tb else tb_)
    nd = max(len(a_shape), len(b_shape)) - 2
    same_batch = _padded(a_shape[:-2], nd) == _padded(b_shape[:-2], nd)
    args = dict(trans_a=int(ta), trans_b=int(tb))
    if same_batch:   # equal batch dims (after left-padding with 1s) need no broadcast flag
        (y,) = run("BatchMatMul", [a, b], **args)
        _close(y, ref)
    else:
        with pytest.raises(ShapeError) as err:
            run("BatchMatMul", [a, b], **args)
        _names_op(err, "BatchMatMul")
    (y,) = run("BatchMatMul", [a, b], broadcast=1, **args)
    _close(y, ref)


@SETTINGS
@given(batch=st.lists(st.integers(1, 3), max_size=2), k=dim, other=dim,
       which=st.sampled_from(["a", "b", "both"]), ta=st.booleans(), tb=st.booleans(),
       seed=seeds)
def test_batch_matmul_vector_operands(batch, k, other, which, ta, tb, seed):
    """1-D operands act as in numpy.matmul (no broadcast flag needed); both 1-D give shape [1]."""
    args = dict(trans_a=int(ta), trans_b=int(tb))
    if which == "both":
        a, b = _randn(seed, (k,)), _randn(seed + 1, (k,))
        (y,) = run("BatchMatMul", [a, b], **args)      # trans flags play no part
        _close(y, torch.dot(_t(a), _t(b)).reshape(1))
        return
    if which == "a":                                   # trans_a is ignored for a vector A
        a, b = _randn(seed, (k,)), _randn(seed + 1, batch + ([other, k] if tb else [k, other]))
        tb_ = _t(b)
        ref = torch.matmul(_t(a), tb_.transpose(-1, -2) if tb else tb_)
    else:
        # Decision: with trans_a=1 Y is A.shape[:-2] + [M], the product's true shape (Caffe2
        # sizes it A.shape[:-1], which is wrong unless A's last two dims are equal).
        a, b = _randn(seed, batch + ([k, other] if ta else [other, k])), _randn(seed + 1, (k,))
        ta_ = _t(a)
        ref = torch.matmul(ta_.transpose(-1, -2) if ta else ta_, _t(b))
    (y,) = run("BatchMatMul", [a, b], **args)
    _close(y, ref)


def test_batch_matmul_pinned_shapes():
    f = np.ones
    # [1, M, K] x [K, N]: batch dims padded with 1s are equal, so no broadcast flag needed.
    (y,) = run("BatchMatMul", [f((1, 3, 4), np.float32), f((4, 5), np.float32)])
    assert y.shape == (1, 3, 5)
    (y,) = run("BatchMatMul", [f((2, 1, 3, 4), np.float32), f((5, 4, 2), np.float32)],
               broadcast=1)
    assert y.shape == (2, 5, 3, 2)
    # zero-sized batch / M / K
    (y,) = run("BatchMatMul", [f((0, 3, 4), np.float32), f((0, 4, 5), np.float32)])
    assert y.shape == (0, 3, 5)
    (y,) = run("BatchMatMul", [f((2, 3, 0), np.float32), f((2, 0, 5), np.float32)])
    np.testing.assert_array_equal(y, np.zeros((2, 3, 5), np.float32))
    (y,) = run("BatchMatMul", [f((0,), np.float32), f((0,), np.float32)])
    np.testing.assert_array_equal(y, np.zeros((1,), np.float32))


@pytest.mark.parametrize("shapes,args", [
    (((2, 3, 4), (2, 5, 6)), {}),                       # K mismatch
    (((3, 4), (4, 5)), dict(trans_a=1)),                # K mismatch after trans_a
    (((3,), (2, 4)), {}),                               # vector A vs B's K
    (((2, 4), (3,)), dict(trans_a=1)),                  # vector B vs trans(A)'s K
    (((2, 3, 4), (4, 5)), {}),                          # batch dims differ: needs broadcast=1
    (((2, 3, 4), (3, 4, 5)), dict(broadcast=1)),        # batch dims do not broadcast
    (((), (3,)), {}),                                   # 0-d operand
])
def test_batch_matmul_bad_shapes(shapes, args):
    with pytest.raises(ShapeError) as err:
        run("BatchMatMul", [np.ones(s, np.float32) for s in shapes], **args)
    _names_op(err, "BatchMatMul")


def test_batch_matmul_bad_dtype_arity_in_place():
    with pytest.raises(ShapeError) as err:   # float-only in Caffe2
        run("BatchMatMul", [np.ones((2, 2)), np.ones((2, 2))])
    _names_op(err, "BatchMatMul")
    with pytest.raises(ArgumentError) as err:
        run("BatchMatMul", [np.ones((2, 2), np.float32)] * 3)
    _names_op(err, "BatchMatMul")
    with pytest.raises(ArgumentError) as err:
        run("BatchMatMul", [np.ones((2, 2), np.float32)] * 2, outputs=["in0"])
    _names_op(err, "BatchMatMul")


def test_batch_matmul_infer():
    f32 = np.float32
    (t,) = infer("BatchMatMul", [TensorType((4, 1, 3, 2), f32), TensorType((5, 2, 6), f32)],
                 broadcast=1)
    assert t == TensorType((4, 5, 3, 6), f32)
    (t,) = infer("BatchMatMul", [TensorType(None, f32), TensorType((5, 2, 6), f32)])
    assert t.shape is None


def test_errors_are_c2errors():
    with pytest.raises(C2Error):
        run("BatchMatMul", [np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)])
