"""Gradients of the training ops (Dropout -> DropoutGrad, WeightedSum -> WeightedSumGradient)
and the gradient marks of fills, Iter, LearningRate and the utility ops, as Caffe2 1.x
registers them.

Names, inputs, outputs and copied arguments of the gradient ops are pinned from Caffe2
1.10.2's GradientRegistry (the PyTorch 1.10.2 build). Dropout's gradient is checked with a
seeded DeviceOption: every forward run of the op then draws the same mask, so finite
differences and a torch function of that mask see the same function.
"""
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from c2compile import core
from c2compile import hypothesis_test_util as hu
from c2compile.errors import ArgumentError, GradientError, ShapeError
from c2compile.ops import all_ops
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.testing import check_gradient, gradient_ops, run, run_gradient

SOME = settings(max_examples=20, deadline=None)
F32 = np.float32


def shapes(min_dims=0, max_dims=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=5)


def floats(shape, lo=-3.0, hi=3.0):
    return hnp.arrays(F32, shape, elements=st.floats(lo, hi, width=32))


def structure(ops):
    return [(o.type, list(o.input), list(o.output)) for o in ops]


def seeded(seed):
    return core.DeviceOption(0, random_seed=seed)


# ----------------------------------------------------------------------------- Dropout

def test_dropout_gradient_ops_are_caffe2s():
    fwd, ops, g_input = gradient_ops("Dropout", ["x"], ["y", "mask"], ratio=0.3, is_test=0)
    assert structure(ops) == [("DropoutGrad", ["y_grad", "mask"], ["x_grad"])]
    assert g_input == ["x_grad"]
    assert ops[0].is_gradient_op
    assert {a.name for a in ops[0].arg} == {"ratio", "is_test"}  # copied from the forward
    # test mode: no mask is read, even when the forward op wrote one
    for outputs in (["y"], ["y", "mask"]):
        _, ops, g_input = gradient_ops("Dropout", ["x"], outputs, ratio=0.3, is_test=1)
        assert structure(ops) == [("DropoutGrad", ["y_grad"], ["x_grad"])]


def test_training_dropout_without_mask_has_no_gradient():
    with pytest.raises(GradientError) as e:
        gradient_ops("Dropout", ["x"], ["y"], ratio=0.3, is_test=0)
    assert "Dropout" in str(e.value) and "mask" in str(e.value)


def test_in_place_dropout_backward_pass_is_caffe2s():
    """Caffe2 1.10.2: [ConstantFill, ReluGradient, DropoutGrad(x_grad, mask) -> x_grad]."""
    ops = [core.CreateOperator("Dropout", ["x"], ["x", "mask"], ratio=0.2, is_test=0),
           core.CreateOperator("Relu", ["x"], ["y"])]
    grad_ops, grads = core.GradientRegistry.GetBackwardPass(ops, ["y"])
    assert structure(grad_ops) == [("ConstantFill", ["y"], ["y_autogen_grad"]),
                                   ("ReluGradient", ["y", "y_autogen_grad"], ["x_grad"]),
                                   ("DropoutGrad", ["x_grad", "mask"], ["x_grad"])]
    assert {str(k): str(v) for k, v in grads.items()} == {"y": "y_autogen_grad",
                                                          "x": "x_grad"}


@SOME
@given(shape=shapes(), ratio=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
       seed=st.integers(0, 2**31), data=st.data())
def test_dropout_gradient_training(shape, ratio, seed, data):
    x = data.draw(floats(shape))
    dev = seeded(seed)
    _, mask = run("Dropout", [x], outputs=2, ratio=ratio, is_test=0, device_option=dev)
    scale = float(F32(1 / (1 - F32(ratio))))
    (dx,) = check_gradient("Dropout", [x], outputs=2, ratio=ratio, is_test=0,
                           device_option=dev,
                           torch_fn=lambda t: t * torch.from_numpy(mask) * scale)
    assert dx.dtype == F32 and dx.shape == x.shape
    assert (dx[~mask] == 0).all()


@SOME
@given(shape=shapes(), ratio=st.floats(0, 0.95), data=st.data())
def test_dropout_gradient_test_mode_is_identity(shape, ratio, data):
    x = data.draw(floats(shape))
    check_gradient("Dropout", [x], ratio=ratio, is_test=1,
                   torch_fn=lambda t: torch.nn.functional.dropout(t, p=ratio, training=False))


@SOME
@given(shape=shapes(), ratio=st.floats(0, 0.9375, width=32), is_test=st.booleans(),
       data=st.data())
def test_dropout_grad_op(shape, ratio, is_test, data):
    dy = data.draw(floats(shape))
    mask = data.draw(hnp.arrays(np.bool_, shape))
    inputs = [dy] if is_test and data.draw(st.booleans()) else [dy, mask]
    (dx,) = run("DropoutGrad", inputs, ratio=ratio, is_test=int(is_test))
    assert dx.dtype == F32 and dx.shape == dy.shape
    want = dy if is_test else dy * mask * np.float32(1.0 / (1.0 - ratio))
    np.testing.assert_array_equal(dx, want)


def test_dropout_grad_matches_caffe2():
    dy = np.arange(6, dtype=F32).reshape(2, 3) + F32(0.5)
    mask = np.array([[1, 0, 1], [0, 1, 1]], bool)
    (dx,) = run("DropoutGrad", [dy, mask], ratio=0.3, is_test=0)
    np.testing.assert_array_equal(dx, np.array([[0.71428573, 0.0, 3.5714288],
                                                [0.0, 6.4285717, 7.857143]], F32))
    (dx,) = run("DropoutGrad", [dy, mask], ratio=0.3, is_test=1)   # mask ignored
    np.testing.assert_array_equal(dx, dy)
    (dx,) = run("DropoutGrad", [dy, mask.reshape(6)], ratio=0.5, is_test=0)  # size only
    assert dx.shape == (2, 3)
    (dx,) = run("DropoutGrad", [dy, mask], outputs=["dy"], input_names=["dy", "m"],
                ratio=0.5, is_test=0)
    np.testing.assert_array_equal(dx, np.array([[1, 0, 5], [0, 9, 11]], F32))


def test_dropout_grad_keeps_nan_where_dropped():
    # Caffe2 multiplies dY * mask * scale, so NaN * 0 stays NaN
    (dx,) = run("DropoutGrad", [np.array([np.nan, 1], F32), np.array([False, False])],
                ratio=0.5, is_test=0)
    assert np.isnan(dx[0]) and dx[1] == 0


@pytest.mark.parametrize("inputs, args, err", [
    ([np.ones(3, F32)], dict(is_test=0), ArgumentError),                        # no mask
    ([np.ones(3, F32), np.ones(3, F32)], dict(is_test=0), ShapeError),           # float mask
    ([np.ones(3, F32), np.ones(4, bool)], dict(is_test=0), ShapeError),          # size
    ([np.ones(3), np.ones(3, bool)], dict(is_test=0), ShapeError),               # float64 dY
    ([np.ones(3, F32), np.ones(3, bool)], dict(is_test=0, ratio=1.0), ArgumentError),
])
def test_dropout_grad_errors(inputs, args, err):
    with pytest.raises(err) as e:
        run("DropoutGrad", inputs, **args)
    assert "op #0 (DropoutGrad" in str(e.value)


# ----------------------------------------------------------------------------- WeightedSum

def test_weighted_sum_gradient_ops_are_caffe2s():
    _, ops, g_input = gradient_ops("WeightedSum", ["a", "w", "b", "v"], ["y"])
    assert structure(ops) == [("WeightedSumGradient", ["y_grad", "a", "w", "b", "v"],
                               ["a_grad", "b_grad"])]
    assert g_input == ["a_grad", None, "b_grad", None]
    _, ops, g_input = gradient_ops("WeightedSum", ["a", "w", "b", "v"], ["y"], grad_on_w=1)
    assert structure(ops) == [("WeightedSumGradient", ["y_grad", "a", "w", "b", "v"],
                               ["a_grad", "b_grad", "w_grad", "v_grad"])]
    assert g_input == ["a_grad", "w_grad", "b_grad", "v_grad"]
    assert [a.name for a in ops[0].arg] == ["grad_on_w"]
    # in place (the SGD update): the gradient reads the blob as the op wrote it, as Caffe2
    _, ops, _ = gradient_ops("WeightedSum", ["a", "w", "b", "v"], ["a"])
    assert structure(ops) == [("WeightedSumGradient", ["a_grad", "a", "w", "b", "v"],
                               ["a_grad", "b_grad"])]


@SOME
@given(shape=shapes(), n=st.integers(1, 3), grad_on_w=st.booleans(), data=st.data())
def test_weighted_sum_gradient(shape, n, grad_on_w, data):
    xs = [data.draw(floats(shape)) for _ in range(n)]
    # a weight's gradient is always of shape (1,) (Caffe2's Resize(1)), so with grad_on_w
    # the weights are drawn of that shape; without, any 1-element shape
    w_shapes = [(1,)] if grad_on_w else [(1,), (), (1, 1)]
    ws = [data.draw(floats(data.draw(st.sampled_from(w_shapes)))) for _ in range(n)]
    inputs = [v for pair in zip(xs, ws) for v in pair]

    def torch_fn(*ts):
        return sum(w.reshape(()) * x for x, w in zip(ts[0::2], ts[1::2]))
    grads = check_gradient("WeightedSum", inputs, grad_on_w=int(grad_on_w), torch_fn=torch_fn)
    for i, g in enumerate(grads):
        assert (g is not None) == (i % 2 == 0 or grad_on_w)


def test_weighted_sum_gradient_matches_caffe2():
    A = lambda *v: np.array(v, F32)  # noqa: E731
    outs = run("WeightedSumGradient", [A(1, -2, 0.25), A(0.5, 0, -1), A(2), A(1, 1, 2), A(-0.5)],
               outputs=4, grad_on_w=1)
    for got, want in zip(outs, [A(2, -4, 0.5), A(-0.5, 1, -0.125), A(0.25), A(-0.5)]):
        np.testing.assert_array_equal(got, want)


def test_weighted_sum_gradient_shapes_are_caffe2s():
    # Caffe2 resizes every dX_i like dY, even where X_i had another shape of that size,
    # and every dw_i to (1,), whatever the weight's shape
    x0, x1 = np.ones((2, 3), F32), np.ones((3, 2), F32)
    _, (dx0, dw0, dx1, dw1) = run_gradient("WeightedSum", [x0, np.ones((), F32), x1,
                                                            np.ones((1, 1), F32)], grad_on_w=1)
    assert dx0.shape == dx1.shape == (2, 3)
    assert dw0.shape == dw1.shape == (1,)
    np.testing.assert_array_equal(dw1, [6.0])


@pytest.mark.parametrize("inputs, outputs, args, err", [
    ([np.ones(3, F32), np.ones(3, F32)], 1, {}, ArgumentError),                 # even count
    ([np.ones(3, F32), np.ones(3, F32), np.ones(1, F32)], 2, {}, ArgumentError),  # outputs
    ([np.ones(3, F32), np.ones(3, F32), np.ones(2, F32)], 1, {}, ShapeError),   # weight size
    ([np.ones(3, F32), np.ones(4, F32), np.ones(1, F32)], 2, dict(grad_on_w=1), ShapeError),
    ([np.ones(3), np.ones(3, F32), np.ones(1, F32)], 1, {}, ShapeError),        # float64
])
def test_weighted_sum_gradient_errors(inputs, outputs, args, err):
    with pytest.raises(err) as e:
        run("WeightedSumGradient", inputs, outputs=outputs, **args)
    assert "op #0 (WeightedSumGradient" in str(e.value)


# ----------------------------------------------------------------------------- gradient marks

FILLS = ["ConstantFill", "GaussianFill", "UniformFill", "UniformIntFill", "XavierFill",
         "MSRAFill", "GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill",
         "GivenTensorInt16Fill", "GivenTensorInt64Fill", "GivenTensorBoolFill",
         "GivenTensorStringFill"]


def _fill_args(op_type):
    if op_type == "GivenTensorStringFill":
        return dict(values=["a"])
    if op_type.startswith("GivenTensor"):
        return dict(values=[1.0] if op_type in ("GivenTensorFill", "GivenTensorDoubleFill")
                    else [1])
    return {}


@pytest.mark.parametrize("op_type, inputs, outputs, args", [
    *[(t, ["x"], ["y"], _fill_args(t)) for t in FILLS],
    ("Iter", ["it"], ["it"], {}),
    ("LearningRate", ["it"], ["lr"], dict(base_lr=0.1, policy="fixed")),
])
def test_no_gradient_flows_through(op_type, inputs, outputs, args):
    """Caffe2 registers NO_GRADIENT: no gradient ops, no input gradient, no error."""
    assert all_ops()[op_type].grad is NO_GRADIENT
    op = core.CreateOperator(op_type, inputs, outputs, **args)
    ops, g_input = core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in outputs])
    assert ops == [] and g_input == [None] * len(inputs)


def test_every_fill_is_marked():
    fills = {t for t in all_ops() if t.endswith("Fill")}
    assert fills <= set(FILLS), f"fills without a pinned gradient mark: {fills - set(FILLS)}"
    assert all(all_ops()[t].grad is NO_GRADIENT for t in fills)


@pytest.mark.parametrize("first", [
    core.CreateOperator("ConstantFill", ["x"], ["c"], value=2.0),
    core.CreateOperator("LearningRate", ["x"], ["c"], base_lr=0.1, policy="fixed"),
])
def test_backward_pass_stops_silently_at_a_fill(first):
    """Caffe2 1.10.2: x's gradient is Sum's pass-through only; nothing from the fill."""
    ops = [first, core.CreateOperator("Sum", ["c", "x"], ["y"])]
    grad_ops, grads = core.GradientRegistry.GetBackwardPass(ops, ["y"])
    assert structure(grad_ops) == [("ConstantFill", ["y"], ["y_autogen_grad"])]
    assert {str(k): str(v) for k, v in grads.items()} == {
        "y": "y_autogen_grad", "c": "y_autogen_grad", "x": "y_autogen_grad"}


@pytest.mark.parametrize("op_type, inputs, outputs", [
    ("Print", ["x"], []),
    ("Summarize", ["x"], ["s"]),
    ("Accuracy", ["p", "label"], ["acc"]),
])
def test_should_not_do_gradient_ops_have_no_rule(op_type, inputs, outputs):
    """Caffe2 registers SHOULD_NOT_DO_GRADIENT: asking for a gradient is an error."""
    assert all_ops()[op_type].grad is None
    op = core.CreateOperator(op_type, inputs, outputs)
    with pytest.raises(GradientError) as e:
        core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in outputs])
    assert op_type in str(e.value)


# ----------------------------------------------------------------------------- Caffe2-style

class TestTrainingGradients(hu.HypothesisTestCase):
    @given(X=hu.tensor(), ratio=st.sampled_from([0.0, 0.5]), in_place=st.booleans(),
           **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_dropout_gradient(self, X, ratio, in_place, gc, dc):
        # test mode for any ratio; training mode only at ratio 0, where the mask is fixed
        is_test = int(ratio > 0)
        op = core.CreateOperator("Dropout", ["X"], ["X" if in_place else "Y", "mask"],
                                 ratio=ratio, is_test=is_test)
        self.assertGradientChecks(gc, op, [X], 0, [0])

    @given(n=st.integers(1, 3), grad_on_w=st.booleans(), data=st.data(), **hu.gcs_cpu_only)
    @settings(max_examples=10, deadline=None)
    def test_weighted_sum_gradient(self, n, grad_on_w, data, gc, dc):
        X = data.draw(hu.tensor(min_dim=1, max_dim=3))
        inputs = []
        for _ in range(n):
            inputs += [data.draw(hu.arrays(X.shape)), np.array([data.draw(
                hu.floats(-2.0, 2.0))], F32)]
        names = [f"in{i}" for i in range(len(inputs))]
        op = core.CreateOperator("WeightedSum", names, ["Y"], grad_on_w=int(grad_on_w))
        for i in range(0, len(inputs), 1 + (not grad_on_w)):
            self.assertGradientChecks(gc, op, inputs, i, [0])
