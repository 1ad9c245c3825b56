"""Gradients of FC, FCTransposed, MatMul and BatchMatMul: the ops Caffe2 emits (pinned) and
their values against PyTorch autograd and finite differences.

The pinned structures and values were read from Caffe2 1.x (the Caffe2 bundled with PyTorch
1.10.2): `core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in op.output])`.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from c2compile import core
from c2compile import hypothesis_test_util as hu
from c2compile.errors import C2Error, GradientError, ShapeError
from c2compile.ops.testing import check_gradient, gradient_ops, run, run_gradient

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**32 - 1)
dim = st.integers(1, 5)


def _randn(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _prod(dims):
    return int(np.prod(dims, dtype=np.int64))


def _arg_value(a):
    return list(a.ints) if a.ints else a.i


def _structure(op_type, inputs, outputs=1, **args):
    """[(type, inputs, outputs, [(arg, value)])] of the gradient ops, and the input gradients."""
    _, ops, g_input = gradient_ops(op_type, inputs, outputs, **args)
    assert all(o.is_gradient_op and o.name == "" for o in ops)
    return ([(o.type, list(o.input), list(o.output), [(a.name, _arg_value(a)) for a in o.arg])
             for o in ops], g_input)


# ----------------------------------------------------------------------------- what Caffe2 emits

def test_fc_gradient_ops_as_caffe2():
    ops, g_input = _structure("FC", ["X", "W", "b"], ["Y"], axis=2, axis_w=1)
    assert ops == [("FCGradient", ["X", "W", "Y_grad"], ["W_grad", "b_grad", "X_grad"],
                    [("axis", 2), ("axis_w", 1)])]
    assert g_input == ["X_grad", "W_grad", "b_grad"]
    ops, _ = _structure("FCTransposed", ["X", "W", "b"], ["Y"])
    assert ops == [("FCTransposedGradient", ["X", "W", "Y_grad"], ["W_grad", "b_grad", "X_grad"],
                    [])]


# Caffe2 1.10.2, forward MatMul(A, B) with axis_a=3, axis_b=5: its gradient maker keeps the axes
# in bools, so both become 1, and it copies none of the forward's arguments.
MATMUL_GRADS = {
    (0, 0): [("MatMul", ["Y_grad", "B", "A"], ["A_grad"], [("trans_b", 1), ("axis_b", 1)]),
             ("MatMul", ["A", "Y_grad", "B"], ["B_grad"], [("trans_a", 1), ("axis_a", 1)])],
    (0, 1): [("MatMul", ["Y_grad", "B", "A"], ["A_grad"], [("axis_b", 1)]),
             ("MatMul", ["Y_grad", "A", "B"], ["B_grad"], [("trans_a", 1), ("axis_b", 1)])],
    (1, 0): [("MatMul", ["B", "Y_grad", "A"], ["A_grad"], [("trans_b", 1), ("axis_a", 1)]),
             ("MatMul", ["A", "Y_grad", "B"], ["B_grad"], [("axis_a", 1)])],
    (1, 1): [("MatMul", ["B", "Y_grad", "A"], ["A_grad"],
              [("trans_a", 1), ("trans_b", 1), ("axis_a", 1)]),
             ("MatMul", ["Y_grad", "A", "B"], ["B_grad"],
              [("trans_a", 1), ("trans_b", 1), ("axis_b", 1)])],
}


@pytest.mark.parametrize("ta,tb", sorted(MATMUL_GRADS))
def test_matmul_gradient_ops_as_caffe2(ta, tb):
    ops, g_input = _structure("MatMul", ["A", "B"], ["Y"], trans_a=ta, trans_b=tb, axis_a=3,
                              axis_b=5)
    assert ops == MATMUL_GRADS[ta, tb]
    assert g_input == ["A_grad", "B_grad"]


def test_matmul_gradient_axes_are_bools_and_the_shape_input_gets_none():
    # Caffe2 1.10.2: axis_a=-1 -> 1, axis_b=0 -> 0
    ops, _ = _structure("MatMul", ["A", "B"], ["Y"], axis_a=-1, axis_b=0)
    assert [o[3] for o in ops] == [[("trans_b", 1), ("axis_b", 0)],
                                   [("trans_a", 1), ("axis_a", 1)]]
    ops, g_input = _structure("MatMul", ["A", "B", "S"], ["Y"])
    assert g_input == ["A_grad", "B_grad", None]
    assert [o[1] for o in ops] == [["Y_grad", "B", "A"], ["A", "Y_grad", "B"]]


BATCH_MATMUL_GRADS = {
    (0, 0): [("BatchMatMul", ["Y_grad", "B"], ["A_grad"], [("trans_b", 1)]),
             ("BatchMatMul", ["A", "Y_grad"], ["B_grad"], [("trans_a", 1)])],
    (0, 1): [("BatchMatMul", ["Y_grad", "B"], ["A_grad"], []),
             ("BatchMatMul", ["Y_grad", "A"], ["B_grad"], [("trans_a", 1)])],
    (1, 0): [("BatchMatMul", ["B", "Y_grad"], ["A_grad"], [("trans_b", 1)]),
             ("BatchMatMul", ["A", "Y_grad"], ["B_grad"], [])],
    (1, 1): [("BatchMatMul", ["B", "Y_grad"], ["A_grad"], [("trans_a", 1), ("trans_b", 1)]),
             ("BatchMatMul", ["Y_grad", "A"], ["B_grad"], [("trans_a", 1), ("trans_b", 1)])],
}


@pytest.mark.parametrize("ta,tb", sorted(BATCH_MATMUL_GRADS))
def test_batch_matmul_gradient_ops_as_caffe2(ta, tb):
    ops, g_input = _structure("BatchMatMul", ["A", "B"], ["Y"], trans_a=ta, trans_b=tb)
    assert ops == BATCH_MATMUL_GRADS[ta, tb]
    assert g_input == ["A_grad", "B_grad"]


def test_batch_matmul_with_broadcast_has_no_gradient():
    with pytest.raises(GradientError, match="broadcast=1") as e:
        gradient_ops("BatchMatMul", ["A", "B"], ["Y"], broadcast=1)
    assert e.value.op_type == "BatchMatMul"


# ----------------------------------------------------------------------------- FC values

@st.composite
def fc_inputs(draw, transposed):
    """X flattened at any axis (either sign), W split anywhere, as FC/FCTransposed take them."""
    x_shape = draw(st.lists(dim, min_size=1, max_size=4))
    axis = draw(st.integers(0, len(x_shape) - 1))
    k, n = _prod(x_shape[axis:]), draw(dim)
    lead = draw(st.sampled_from([[n], [1, n], [n, 1]]))
    tail = draw(st.sampled_from([[k], list(x_shape[axis:])]))
    w_shape = tail + lead if transposed else lead + tail
    split = len(tail) if transposed else len(lead)
    args = dict(axis=draw(st.sampled_from([axis, axis - len(x_shape)])),
                axis_w=draw(st.sampled_from([split, split - len(w_shape)])))
    seed = draw(seeds)
    ins = [_randn(seed, x_shape), _randn(seed + 1, w_shape), _randn(seed + 2, (n,))]
    return ins, args, (_prod(x_shape[:axis]), k, n)


def _fc_torch(transposed, mkn, y_shape):
    m, k, n = mkn

    def f(x, w, b):
        w2 = w.reshape(k, n) if transposed else w.reshape(n, k).T
        return (x.reshape(m, k) @ w2 + b).reshape(y_shape)
    return f


@pytest.mark.parametrize("op_type", ["FC", "FCTransposed"])
@SETTINGS
@given(data=st.data())
def test_fc_gradient_matches_torch_and_finite_differences(op_type, data):
    transposed = op_type == "FCTransposed"
    ins, args, mkn = data.draw(fc_inputs(transposed))
    y_shape = run(op_type, ins, **args)[0].shape
    check_gradient(op_type, ins, torch_fn=_fc_torch(transposed, mkn, y_shape), **args)


@pytest.mark.parametrize("op_type", ["FCGradient", "FCTransposedGradient"])
@SETTINGS
@given(data=st.data())
def test_fc_gradient_without_dx(op_type, data):
    """Caffe2's FCGradient takes 2 or 3 outputs: [dW, db] are the same without dX."""
    (x, w, _), args, (m, _, n) = data.draw(fc_inputs(op_type == "FCTransposedGradient"))
    dy = _randn(data.draw(seeds), (m, n))
    full = run(op_type, [x, w, dy], 3, **args)
    short = run(op_type, [x, w, dy], 2, **args)
    assert len(short) == 2
    for a, b in zip(short, full):
        np.testing.assert_array_equal(a, b)


def test_fc_gradient_of_an_empty_x_is_zero_as_caffe2():
    """Caffe2 zeroes dW and db when X is empty, even when only K is 0 and dY is not empty
    (Caffe2 1.10.2's FCGradient on X[2, 0], dY = ones[2, 3] gives db = [0, 0, 0])."""
    w = np.ones((3, 0), np.float32)
    dW, db, dX = run("FCGradient", [np.zeros((2, 0), np.float32), w, np.ones((2, 3),
                                                                            np.float32)], 3)
    assert dW.shape == (3, 0) and dX.shape == (2, 0)
    np.testing.assert_array_equal(db, np.zeros(3, np.float32))
    dW, db, dX = run("FCGradient", [np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32),
                                    np.zeros((0, 3), np.float32)], 3)
    np.testing.assert_array_equal(dW, np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(db, np.zeros(3, np.float32))
    assert dX.shape == (0, 4)
    # N = 0: no outputs, so dX = dY W = 0
    dW, db, dX = run("FCGradient", [np.ones((2, 4), np.float32), np.ones((0, 4), np.float32),
                                    np.ones((2, 0), np.float32)], 3)
    assert dW.shape == (0, 4) and db.shape == (0,)
    np.testing.assert_array_equal(dX, np.zeros((2, 4), np.float32))


def test_fc_gradient_bad_shapes_name_the_op_and_blob():
    x, w = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)
    with pytest.raises(ShapeError, match=r"dY\[2, 5\] has 10 elements.*2 x 4") as e:
        run("FCGradient", [x, w, np.ones((2, 5), np.float32)], 3, input_names=["X", "W", "dY"])
    assert e.value.op_type == "FCGradient" and e.value.blob == "dY"
    with pytest.raises(ShapeError, match="K differs"):
        run("FCGradient", [x, np.ones((4, 2), np.float32), np.ones((2, 4), np.float32)], 3)
    with pytest.raises(ShapeError, match="dtype float64"):
        run("FCGradient", [x.astype(np.float64), w, np.ones((2, 4), np.float32)], 3)


# ----------------------------------------------------------------------------- MatMul values

@st.composite
def matmul_inputs(draw):
    """A, B flattened at axis 1 (or 0, or an axis flattening the same) with any trans flags."""
    ta, tb = draw(st.booleans()), draw(st.booleans())
    m, k, n = draw(dim), draw(dim), draw(dim)
    a2, b2 = ((k, m) if ta else (m, k)), ((n, k) if tb else (k, n))

    def shaped(rows, cols, name):
        """(shape, axis arg): rows x cols as [rows, cols], [rows, c1, c2], [1, rows*cols] at
        axis 0 (when rows is 1), or [rows, 1, cols] at axis 2, or at axis -1 when 2-D."""
        forms = [([rows, cols], 1), ([rows, cols], -1), ([rows, 1, cols], 2)]
        if cols % 2 == 0:
            forms.append(([rows, 2, cols // 2], 1))
        if rows == 1:
            forms.append(([rows * cols], 0))
        shape, axis = draw(st.sampled_from(forms))
        return shape, {name: axis}

    (a_shape, ax_a), (b_shape, ax_b) = shaped(*a2, "axis_a"), shaped(*b2, "axis_b")
    seed = draw(seeds)
    args = dict(trans_a=int(ta), trans_b=int(tb), **ax_a, **ax_b)
    return [_randn(seed, a_shape), _randn(seed + 1, b_shape)], args, (a2, b2)


@SETTINGS
@given(case=matmul_inputs())
def test_matmul_gradient_matches_torch_and_finite_differences(case):
    (a, b), args, (a2, b2) = case

    def torch_fn(x, y):
        x2, y2 = x.reshape(a2), y.reshape(b2)
        return (x2.T if args["trans_a"] else x2) @ (y2.T if args["trans_b"] else y2)

    check_gradient("MatMul", [a, b], torch_fn=torch_fn, **args)


def test_matmul_flattened_elsewhere_has_no_gradient_as_in_caffe2():
    """Caffe2 1.10.2: MatMul(A[2, 3, 4], B[4, 5], axis_a=2) gives A_grad, then fails on B's
    gradient ("Dimension mismatch: trans(A): 12 2, B: 6 5"): its axes are bools."""
    a, b = np.ones((2, 3, 4), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(ShapeError, match="gradient op.*axis 0 or 1") as e:
        run_gradient("MatMul", [a, b], axis_a=2)
    assert e.value.op_type == "MatMul" and e.value.index == 2   # the second gradient op
    # The forward alone is fine, and a plain shape error says nothing of gradients.
    assert run("MatMul", [a, b], axis_a=2)[0].shape == (6, 5)
    with pytest.raises(ShapeError) as e:
        run("MatMul", [a, b])
    assert "gradient" not in str(e.value)


def test_matmul_third_input_gives_shape_only_and_no_gradient():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2)).astype(np.float32)
    dy = rng.standard_normal((3, 2, 1)).astype(np.float32)
    outs, grads = run_gradient("MatMul", [a, b, np.zeros((3, 2, 1), np.float32)],
                               output_grads=[dy])
    assert outs[0].shape == (3, 2, 1) and grads[2] is None
    np.testing.assert_allclose(grads[0], dy.reshape(3, 2) @ b.T, rtol=1e-5)
    np.testing.assert_allclose(grads[1], a.T @ dy.reshape(3, 2), rtol=1e-5)
    # Caffe2 flattens Y_grad at axis 1, so a Y that does not flatten there to the product's
    # M x N has no gradient: an error naming the op
    with pytest.raises(ShapeError, match="gradient op"):
        run_gradient("MatMul", [a, b, np.zeros((2, 3), np.float32)])
    with pytest.raises(C2Error, match="axis") as e:
        run_gradient("MatMul", [a, b, np.zeros(6, np.float32)])
    assert e.value.op_type == "MatMul"


# ----------------------------------------------------------------------------- BatchMatMul values

@st.composite
def batch_matmul_inputs(draw):
    ta, tb = draw(st.booleans()), draw(st.booleans())
    m, k, n = draw(dim), draw(dim), draw(dim)
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    a_shape = batch + ([k, m] if ta else [m, k])
    b_shape = batch + ([n, k] if tb else [k, n])
    seed = draw(seeds)
    return [_randn(seed, a_shape), _randn(seed + 1, b_shape)], dict(trans_a=int(ta),
                                                                    trans_b=int(tb))


@SETTINGS
@given(case=batch_matmul_inputs())
def test_batch_matmul_gradient_matches_torch_and_finite_differences(case):
    (a, b), args = case

    def torch_fn(x, y):
        return ((x.transpose(-1, -2) if args["trans_a"] else x)
                @ (y.transpose(-1, -2) if args["trans_b"] else y))

    check_gradient("BatchMatMul", [a, b], torch_fn=torch_fn, **args)


def test_batch_matmul_rank_mismatch_gradient_keeps_the_longer_rank_as_caffe2():
    """Caffe2 1.10.2: BatchMatMul(A[1, 2, 3], B[3, 4]) gives B_grad of shape [1, 3, 4]."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1, 2, 3)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    dy = rng.standard_normal((1, 2, 4)).astype(np.float32)
    _, (da, db) = run_gradient("BatchMatMul", [a, b], output_grads=[dy])
    assert da.shape == (1, 2, 3) and db.shape == (1, 3, 4)
    np.testing.assert_allclose(db[0], a[0].T @ dy[0], rtol=1e-5)
    np.testing.assert_allclose(da[0], dy[0] @ b.T, rtol=1e-5)


@pytest.mark.parametrize("a_shape,b_shape,args", [
    ((3,), (3, 4), {}),            # Caffe2: A_grad [3], then B_grad fails (3 vs 4 elements)
    ((3, 4), (4,), {}),
    ((3,), (4, 3), dict(trans_b=1)),
    ((3,), (3, 3), {}),            # Caffe2: B_grad of shape [1] for B[3, 3]
    ((3,), (3,), {}),
])
def test_batch_matmul_1d_operand_has_no_gradient(a_shape, b_shape, args):
    ins = [np.ones(a_shape, np.float32), np.ones(b_shape, np.float32)]
    run("BatchMatMul", ins, **args)   # the forward is fine
    with pytest.raises(ShapeError, match="cannot differentiate a 1-D operand") as e:
        run_gradient("BatchMatMul", ins, **args)
    assert e.value.op_type == "BatchMatMul"


def test_batch_matmul_of_two_one_element_vectors_differentiates():
    """Caffe2 1.10.2 handles BatchMatMul(A[1], B[1]): A_grad [1], B_grad [1]."""
    a, b = np.array([2.0], np.float32), np.array([3.0], np.float32)
    _, (da, db) = run_gradient("BatchMatMul", [a, b], output_grads=[np.array([5.0], np.float32)])
    np.testing.assert_array_equal(da, [15.0])
    np.testing.assert_array_equal(db, [10.0])


# ----------------------------------------------------------------------------- Caffe2-style test

class TestFCGradientChecks(hu.HypothesisTestCase):
    @settings(max_examples=10, deadline=None)
    @given(n=dim, k=dim, m=dim, seed=seeds, **hu.gcs_cpu_only)
    def test_fc(self, n, k, m, seed, gc, dc):
        X, W, b = _randn(seed, (n, k)), _randn(seed + 1, (m, k)), _randn(seed + 2, (m,))
        op = core.CreateOperator("FC", ["X", "W", "b"], ["Y"])
        for i in range(3):
            self.assertGradientChecks(gc, op, [X, W, b], i, [0])

    @settings(max_examples=10, deadline=None)
    @given(case=batch_matmul_inputs(), **hu.gcs_cpu_only)
    def test_batch_matmul(self, case, gc, dc):
        ins, args = case
        op = core.CreateOperator("BatchMatMul", ["A", "B"], ["Y"], **args)
        for i in range(2):
            self.assertGradientChecks(gc, op, ins, i, [0])
