"""Dense optimizer updates (MomentumSGD, MomentumSGDUpdate, Adam, Adagrad) and the
iteration counter their nets use (CreateMutex + AtomicIter).

Checked three ways: step by step against torch.optim (SGD with momentum/Nesterov, Adam,
Adagrad) over several steps, against the closed forms of caffe2/sgd/*_op.h on hypothesis-drawn
shapes and values, and against literal outputs recorded from Caffe2 1.10.2 (the PyTorch
1.10.2 build). Caffe2's conventions kept: lr is negative for descent in Adam/Adagrad (param +
lr * step) and positive in MomentumSGD (param - adjusted); Adam's bias correction uses
t = iter + 1; the effective-gradient output of Adam leaves out lr.
"""
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from c2compile import core, workspace
from c2compile.errors import ArgumentError, GradientError, OpError, ShapeError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, run
from c2compile.ops.training import Mutex

SOME = settings(max_examples=25, deadline=None)
F32 = np.float32


def f32(*values):
    return np.array(values, F32)


def shapes(min_dims=0, max_dims=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=6)


def floats(shape, lo=-4.0, hi=4.0):
    return hnp.arrays(F32, shape, elements=st.floats(lo, hi, width=32))


def names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)


# ----------------------------------------------------------------------------- MomentumSGD(Update)

def momentum_sgd_update(grad, moment, lr, param, **args):
    """One in-place MomentumSGDUpdate, as Caffe2's optimizer writes it."""
    return run("MomentumSGDUpdate", [grad, moment, lr, param], outputs=["g", "m", "p"],
               input_names=["g", "m", "lr", "p"], **args)


@SOME
@given(shape=shapes(1), momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
       nesterov=st.booleans(), lr=st.sampled_from([0.1, 0.01, 1.0]), seed=st.integers(0, 99))
def test_momentum_sgd_update_matches_torch_sgd(shape, momentum, nesterov, lr, seed):
    """Caffe2's moment is lr * torch's momentum buffer (constant lr): the same steps."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(F32)
    w = torch.tensor(param.astype(np.float64), requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    moment = np.zeros(shape, F32)
    for _ in range(4):
        grad = rng.standard_normal(shape).astype(F32)
        w.grad = torch.tensor(grad.astype(np.float64))
        opt.step()
        _, moment, param = momentum_sgd_update(grad, moment, f32(lr), param,
                                               momentum=momentum, nesterov=int(nesterov))
        assert param.dtype == F32 and param.shape == tuple(shape)
        np.testing.assert_allclose(param, w.detach().numpy(), rtol=1e-5, atol=1e-5)


@SOME
@given(shape=shapes(), momentum=st.floats(0, 1, width=32), nesterov=st.booleans(),
       data=st.data())
def test_momentum_sgd_closed_form(shape, momentum, nesterov, data):
    g, m, p = (data.draw(floats(shape)) for _ in range(3))
    lr = data.draw(floats((1,), -1, 1))
    adjusted, m_new, p_new = momentum_sgd_update(g, m, lr, p, momentum=momentum,
                                                 nesterov=int(nesterov))
    g64, m64, lr64, mu = g.astype(float), m.astype(float), float(lr[0]), float(F32(momentum))
    want_m = mu * m64 + lr64 * g64
    want_adj = (1 + mu) * want_m - mu * m64 if nesterov else want_m
    for got, want in ((adjusted, want_adj), (m_new, want_m), (p_new, p - want_adj)):
        assert got.dtype == F32 and got.shape == g.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # MomentumSGD is the same step without the param update
    adj2, m2 = run("MomentumSGD", [g, m, lr], outputs=2, momentum=momentum,
                   nesterov=int(nesterov))
    np.testing.assert_array_equal(adj2, adjusted)
    np.testing.assert_array_equal(m2, m_new)


def test_momentum_sgd_matches_caffe2():
    g, m, p = f32(1.0, -2.0, 0.25), f32(0.5, 0.0, -1.0), f32(1.0, 1.0, 2.0)
    got = momentum_sgd_update(g, m, f32(0.1), p, momentum=0.9)
    want = [[0.550000011920929, -0.20000000298023224, -0.875]] * 2 + \
        [[0.44999998807907104, 1.2000000476837158, 2.875]]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, f32(*b))
    got = momentum_sgd_update(g, m, f32(0.1), p, momentum=0.9, nesterov=1)
    want = [[0.5949999690055847, -0.3799999952316284, -0.7625000476837158],
            [0.550000011920929, -0.20000000298023224, -0.875],
            [0.4050000309944153, 1.3799999952316284, 2.762500047683716]]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, f32(*b))
    # default momentum is 0: adjusted = lr * grad
    adj, _ = run("MomentumSGD", [g, m, f32(0.1)], outputs=2)
    np.testing.assert_array_equal(adj, F32(0.1) * g)


def test_momentum_sgd_update_out_of_place_grad_and_moment():
    # grad and moment may go to other blobs; the inputs are untouched
    g, m, p = f32(1, 2), f32(3, 4), f32(5, 6)
    adj, m_new, p_new = run("MomentumSGDUpdate", [g, m, f32(1), p], outputs=["a", "b", "p"],
                            input_names=["g", "m", "lr", "p"], momentum=0.5)
    np.testing.assert_array_equal(adj, f32(2.5, 4))
    np.testing.assert_array_equal(p_new, f32(2.5, 2))
    assert (g == f32(1, 2)).all() and (p == f32(5, 6)).all()


def test_momentum_sgd_update_needs_param_in_place():
    """Caffe2 never resizes an out-of-place param output (it writes out of bounds)."""
    with pytest.raises(ArgumentError) as e:
        run("MomentumSGDUpdate", [f32(1), f32(1), f32(1), f32(1)], outputs=["g", "m", "q"],
            input_names=["g", "m", "lr", "p"])
    names_op(e, "MomentumSGDUpdate")
    assert "'q'" in str(e.value) and "in place" in str(e.value)


@pytest.mark.parametrize("op_type, inputs, err", [
    ("MomentumSGD", [f32(1, 2), f32(1, 2), f32(1, 2)], ShapeError),         # lr of 2
    ("MomentumSGD", [f32(1, 2), f32(1, 2, 3), f32(1)], ShapeError),         # sizes differ
    ("MomentumSGD", [np.ones(2), np.ones(2, F32), f32(1)], ShapeError),     # float64 grad
    ("MomentumSGDUpdate", [f32(1, 2), f32(1, 2), f32(1), f32(1)], ShapeError),  # param size
])
def test_momentum_sgd_errors(op_type, inputs, err):
    names = ["g", "m", "lr", "p"][:len(inputs)]
    outs = ["g", "m", "p"][:len(inputs) - 1]
    with pytest.raises(err) as e:
        run(op_type, inputs, outputs=outs, input_names=names)
    names_op(e, op_type)


def test_momentum_sgd_shape_rule():
    t = TensorType((2, 3))
    assert infer("MomentumSGD", [t, TensorType((6,)), TensorType((1,))], outputs=2) == \
        [TensorType((2, 3)), TensorType((6,))]


# ----------------------------------------------------------------------------- Adam

def adam(param, m1, m2, grad, lr, it, outputs=3, **args):
    names = ["p", "m1", "m2", "g", "lr", "it"]
    return run("Adam", [param, m1, m2, grad, lr, np.array([it], np.int64)],
               outputs=["p", "m1", "m2", "eg"][:outputs], input_names=names, **args)


@SOME
@given(shape=shapes(1), beta1=st.sampled_from([0.9, 0.5, 0.0]),
       beta2=st.sampled_from([0.999, 0.9]), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       lr=st.sampled_from([0.1, 0.001]), seed=st.integers(0, 99))
def test_adam_matches_torch_adam(shape, beta1, beta2, eps, lr, seed):
    """torch adds eps to sqrt(v / (1 - beta2^t)), Caffe2 to sqrt(v): the same step when
    torch's eps is Caffe2's divided by sqrt(1 - beta2^t). Caffe2's iter is torch's step - 1."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(F32)
    w = torch.tensor(param.astype(np.float64), requires_grad=True)
    b1, b2 = float(F32(beta1)), float(F32(beta2))
    opt = torch.optim.Adam([w], lr=lr, betas=(b1, b2))
    m1, m2 = np.zeros(shape, F32), np.zeros(shape, F32)
    for step in range(1, 5):
        grad = rng.standard_normal(shape).astype(F32)
        w.grad = torch.tensor(grad.astype(np.float64))
        opt.param_groups[0]["eps"] = float(F32(eps)) / np.sqrt(1 - b2 ** step)
        opt.step()
        param, m1, m2 = adam(param, m1, m2, grad, f32(-lr), step - 1, beta1=beta1,
                             beta2=beta2, epsilon=eps)
        np.testing.assert_allclose(param, w.detach().numpy(), rtol=1e-5, atol=1e-6)
    state = opt.state[w]
    np.testing.assert_allclose(m1, state["exp_avg"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m2, state["exp_avg_sq"].numpy(), rtol=1e-5, atol=1e-6)


@SOME
@given(shape=shapes(), it=st.sampled_from([0, 1, 7, 1000, 2**40]), data=st.data())
def test_adam_closed_form(shape, it, data):
    p, m1, g = (data.draw(floats(shape)) for _ in range(3))
    m2 = data.draw(floats(shape, 0, 4))
    lr = data.draw(floats((1,), -1, 1))
    b1, b2, eps = (float(F32(v)) for v in (data.draw(st.floats(0, 0.99)),
                                            data.draw(st.floats(0, 0.999)), 1e-3))
    p2, m1n, m2n, eg = adam(p, m1, m2, g, lr, it, outputs=4, beta1=b1, beta2=b2, epsilon=eps)
    t = it + 1
    corr = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    g64 = g.astype(float)
    want_m1 = b1 * m1 + (1 - b1) * g64
    want_m2 = b2 * m2 + (1 - b2) * g64 ** 2
    want_eg = corr * want_m1 / (np.sqrt(want_m2) + eps)
    for got, want in ((m1n, want_m1), (m2n, want_m2), (eg, want_eg),
                      (p2, p + float(lr[0]) * want_eg)):
        assert got.dtype == F32 and got.shape == p.shape
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    # without the 4th output: the same param and moments (to rounding: another order)
    p3, m1b, m2b = adam(p, m1, m2, g, lr, it, beta1=b1, beta2=b2, epsilon=eps)
    np.testing.assert_allclose(p3, p2, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(m1b, m1n)
    np.testing.assert_array_equal(m2b, m2n)


def test_adam_matches_caffe2():
    p, m1, m2, g = f32(1, 1, 2), f32(0.5, 0, -1), f32(0.5, 0.25, 1), f32(1, -2, 0.25)
    got = adam(p, m1, m2, g, f32(-0.01), 0)   # defaults: beta1 .9, beta2 .999, epsilon 1e-5
    want = [[0.997541606426239, 1.0012555122375488, 2.0027682781219482],
            [0.550000011920929, -0.20000004768371582, -0.875],
            [0.500499963760376, 0.2537499666213989, 0.9990625381469727]]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, f32(*b))
    got = adam(p, m1, m2, g, f32(-0.01), 9, outputs=4, beta1=0.5, beta2=0.75, epsilon=0.01)
    want = [[0.990890383720398, 1.00884211063385, 2.004120349884033], [0.75, -1.0, -0.375],
            [0.625, 1.1875, 0.765625],
            [0.9109624028205872, -0.8842074871063232, -0.4120274782180786]]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, f32(*b))


def test_adam_shapes_follow_each_input():
    # Caffe2 compares sizes only; each output is resized like its own input
    p2, m1, m2, eg = adam(np.ones((2, 3), F32), np.zeros(6, F32), np.zeros((3, 2), F32),
                          np.ones((6, 1), F32), f32(-1), 0, outputs=4)
    assert (p2.shape, m1.shape, m2.shape, eg.shape) == ((2, 3), (6,), (3, 2), (6, 1))


@pytest.mark.parametrize("change, err", [
    ({5: np.array([1], np.int32)}, ShapeError),       # iter must be int64
    ({5: np.zeros(0, np.int64)}, ShapeError),          # empty iter
    ({4: f32(1, 2)}, ShapeError),                      # lr of 2 elements
    ({1: f32(1, 2)}, ShapeError),                      # moment_1 size
    ({3: np.ones(3)}, ShapeError),                     # float64 grad
])
def test_adam_errors(change, err):
    inputs = [f32(1, 2, 3), f32(0, 0, 0), f32(0, 0, 0), f32(1, 1, 1), f32(-1),
              np.array([0], np.int64)]
    for i, v in change.items():
        inputs[i] = v
    with pytest.raises(err) as e:
        run("Adam", inputs, outputs=3)
    names_op(e, "Adam")


# ----------------------------------------------------------------------------- Adagrad

def adagrad(param, moment, grad, lr, outputs=2, **args):
    return run("Adagrad", [param, moment, grad, lr], outputs=["p", "h", "elr", "u"][:outputs],
               input_names=["p", "h", "g", "lr"], **args)


@SOME
@given(shape=shapes(1), eps=st.sampled_from([1e-5, 1e-2]), lr=st.sampled_from([0.1, 0.01]),
       weight_decay=st.sampled_from([0.0, 0.1]), init=st.sampled_from([0.0, 0.5]),
       seed=st.integers(0, 99))
def test_adagrad_matches_torch_adagrad(shape, eps, lr, weight_decay, init, seed):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(F32)
    w = torch.tensor(param.astype(np.float64), requires_grad=True)
    opt = torch.optim.Adagrad([w], lr=lr, eps=float(F32(eps)), weight_decay=weight_decay,
                              initial_accumulator_value=init)
    moment = np.full(shape, init, F32)
    for _ in range(4):
        grad = rng.standard_normal(shape).astype(F32)
        w.grad = torch.tensor(grad.astype(np.float64))
        opt.step()
        param, moment = adagrad(param, moment, grad, f32(-lr), epsilon=eps,
                                weight_decay=weight_decay)
        np.testing.assert_allclose(param, w.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moment, opt.state[w]["sum"].numpy(), rtol=1e-5, atol=1e-6)


@SOME
@given(shape=shapes(), decay=st.sampled_from([1.0, 0.9, 0.5]),
       weight_decay=st.sampled_from([0.0, 0.01, 0.5]), data=st.data())
def test_adagrad_closed_form(shape, decay, weight_decay, data):
    p, g = data.draw(floats(shape)), data.draw(floats(shape))
    h = data.draw(floats(shape, 0, 4))
    lr = data.draw(floats((1,), -1, 1))
    eps = 1e-2
    p2, h2, elr, upd = adagrad(p, h, g, lr, outputs=4, epsilon=eps, decay=decay,
                               weight_decay=weight_decay)
    g64 = g + float(F32(weight_decay)) * p.astype(float)
    want_h = float(F32(decay)) * h + g64 ** 2
    want_elr = float(lr[0]) / (np.sqrt(want_h) + float(F32(eps)))
    for got, want in ((h2, want_h), (elr, want_elr), (upd, want_elr * g64),
                      (p2, p + want_elr * g64)):
        assert got.dtype == F32 and got.shape == p.shape
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    # two and three outputs: the same param and moment (to rounding: another order)
    for n in (2, 3):
        outs = adagrad(p, h, g, lr, outputs=n, epsilon=eps, decay=decay,
                       weight_decay=weight_decay)
        np.testing.assert_allclose(outs[0], p2, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(outs[1], h2)


def test_adagrad_matches_caffe2():
    p, h, g = f32(1, 1, 2), f32(0.5, 0.25, 1), f32(1, -2, 0.25)
    got = adagrad(p, h, g, f32(-0.1))   # defaults: epsilon 1e-5, decay 1
    want = [[0.9183509945869446, 1.0970138311386108, 1.9757466316223145], [1.5, 4.25, 1.0625]]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, f32(*b))
    got = adagrad(p, h, g, f32(-0.1), outputs=4, epsilon=0.01, decay=0.5, weight_decay=0.1)
    want = [[0.9097105860710144, 1.0978063344955444, 1.9469435214996338],
            [1.4600000381469727, 3.734999895095825, 0.7024999856948853],
            [-0.08208128064870834, -0.051477011293172836, -0.11790329962968826],
            [-0.0902894139289856, 0.09780631959438324, -0.05305648222565651]]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, f32(*b), rtol=1e-6)


@pytest.mark.parametrize("change, err", [
    ({1: f32(1, 2)}, ShapeError),                      # moment size
    ({0: f32(1, 2)}, ShapeError),                      # param size
    ({3: np.zeros(0, F32)}, ShapeError),               # empty lr
    ({2: np.ones(3)}, ShapeError),                     # float64 grad
])
def test_adagrad_errors(change, err):
    inputs = [f32(1, 2, 3), f32(0, 0, 0), f32(1, 1, 1), f32(-1)]
    for i, v in change.items():
        inputs[i] = v
    with pytest.raises(err) as e:
        run("Adagrad", inputs, outputs=2)
    names_op(e, "Adagrad")


def test_adagrad_reads_the_first_lr_element():
    # Caffe2 reads lr[0] and does not check lr's size
    p, _ = adagrad(f32(0), f32(0), f32(1), f32(-1, 5), epsilon=0)
    np.testing.assert_array_equal(p, f32(-1))


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("op_type, inputs, outputs", [
    ("MomentumSGD", ["g", "m", "lr"], ["g", "m"]),
    ("MomentumSGDUpdate", ["g", "m", "lr", "p"], ["g", "m", "p"]),
    ("Adam", ["p", "m1", "m2", "g", "lr", "it"], ["p", "m1", "m2"]),
    ("Adagrad", ["p", "h", "g", "lr"], ["p", "h"]),
])
def test_optimizers_have_no_gradient(op_type, inputs, outputs):
    """Caffe2: SHOULD_NOT_DO_GRADIENT, so asking for one is an error."""
    op = core.CreateOperator(op_type, inputs, outputs)
    with pytest.raises(GradientError) as e:
        core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in outputs])
    assert op_type in str(e.value)


# ----------------------------------------------------------------------------- AtomicIter

def test_atomic_iter_counts_in_place_under_a_mutex():
    """The iteration counter brew's optimizers build (utils.BuildUniqueMutexIter)."""
    workspace.RunOperatorOnce(core.CreateOperator("CreateMutex", [], ["mutex"]))
    assert isinstance(workspace._ws().blobs["mutex"], Mutex)
    workspace.FeedBlob("it", np.zeros(1, np.int64))
    for want in (1, 2, 3):
        workspace.RunOperatorOnce(core.CreateOperator("AtomicIter", ["mutex", "it"], ["it"]))
        np.testing.assert_array_equal(workspace.FetchBlob("it"), np.array([want], np.int64))


@pytest.mark.parametrize("inputs, outputs, err", [
    ([Mutex(), np.zeros(1, np.int64)], ["it2"], ArgumentError),    # must run in place
    ([Mutex(), np.zeros(1, np.int32)], ["it"], ShapeError),        # int64 counter
    ([Mutex(), np.zeros(2, np.int64)], ["it"], ShapeError),        # one element
    ([np.zeros(1, F32), np.zeros(1, np.int64)], ["it"], ShapeError),  # no mutex
    ([Mutex(), np.array([-1], np.int64)], ["it"], OpError),        # negative
])
def test_atomic_iter_errors(inputs, outputs, err):
    with pytest.raises(err) as e:
        run("AtomicIter", inputs, outputs=outputs, input_names=["m", "it"])
    names_op(e, "AtomicIter")


def test_counter_gradient_marks():
    """Caffe2: AtomicIter is NO_GRADIENT, CreateMutex SHOULD_NOT_DO_GRADIENT."""
    op = core.CreateOperator("AtomicIter", ["m", "it"], ["it"])
    assert core.GradientRegistry.GetGradientForOp(op, ["it_grad"]) == ([], [None, None])
    with pytest.raises(GradientError):
        core.GradientRegistry.GetGradientForOp(
            core.CreateOperator("CreateMutex", [], ["m"]), ["m_grad"])
