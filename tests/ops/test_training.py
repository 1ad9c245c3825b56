"""Training ops: Iter, LearningRate (closed-form schedules, plus values recorded from the
PyTorch 1.10.2 Caffe2 build), WeightedSum against torch, and Dropout's statistics and modes.

Semantics pinned from Caffe2 1.x (caffe2/sgd/iter_op.h, learning_rate_op.h,
learning_rate_functors.h, caffe2/operators/utility_ops.h, dropout_op.cc).
"""
import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from c2compile import core
from c2compile.errors import ArgumentError, OpError, ShapeError
from c2compile.ops.schema import TensorType, bind
from c2compile.ops.testing import infer, make_op, run
from c2compile.proto import caffe2_pb2
from c2compile.runtime import reference
from c2compile.runtime.workspace import Workspace

SOME = settings(max_examples=30, deadline=None)
FEW = settings(max_examples=12, deadline=None)


def shapes(min_dims=0, max_dims=4, max_side=5, min_side=1):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def floats(shape, lo=-5.0, hi=5.0):
    return hnp.arrays(np.float32, shape, elements=st.floats(lo, hi, width=32))


def names_op(err, op_type):
    assert f"op #0 ({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


def c32(v):
    return float(np.float32(v))


# ----------------------------------------------------------------------------- Iter

@SOME
@given(start=st.integers(0, 2 ** 62), shape=st.sampled_from([(1,), (), (1, 1)]))
def test_iter_increments_in_place(start, shape):
    it = np.full(shape, start, np.int64)
    (y,) = run("Iter", [it], outputs=["it"], input_names=["it"])
    assert y.dtype == np.int64 and y.shape == shape and int(y.reshape(-1)[0]) == start + 1
    assert int(it.reshape(-1)[0]) == start  # the input array is untouched


def test_iter_zero_input_form_counts_in_its_output_blob(tmp_path):
    (y,) = run("Iter", [], outputs=["it"])  # no workspace: starts at 0
    np.testing.assert_array_equal(y, np.array([1], np.int64))
    ws = Workspace("iter", str(tmp_path))
    net = caffe2_pb2.NetDef(name="n")
    net.op.extend([make_op("Iter", [], ["it"]), make_op("Iter", ["c"], ["c"])])
    ws.feed("c", np.array([10], np.int64))
    ws.create_net(net)
    for _ in range(3):
        ws.run_net("n")
    np.testing.assert_array_equal(ws.fetch("it"), [3])
    np.testing.assert_array_equal(ws.fetch("c"), [13])


@pytest.mark.parametrize("counter, names, err", [
    (np.array([1], np.int64), (["it"], ["other"]), ArgumentError),  # Iter is in place only
    (np.array([1], np.int32), (["it"], ["it"]), ShapeError),
    (np.array([1.0]), (["it"], ["it"]), ShapeError),
    (np.array([1, 2], np.int64), (["it"], ["it"]), ShapeError),
    (np.array([-1], np.int64), (["it"], ["it"]), OpError),
    (np.array([2 ** 63 - 1], np.int64), (["it"], ["it"]), OpError),  # would overflow
])
def test_iter_errors(counter, names, err):
    with pytest.raises(err) as e:
        run("Iter", [counter], input_names=names[0], outputs=names[1])
    names_op(e, "Iter")


def test_iter_shape_rule():
    assert infer("Iter", [TensorType((1,), np.int64)], outputs=["in0"]) == \
        [TensorType((1,), np.int64)]
    assert infer("Iter", []) == [TensorType((1,), np.int64)]


# ----------------------------------------------------------------------------- LearningRate

def lr(it, **args):
    (y,) = run("LearningRate", [np.array([it], np.int64)], **args)
    assert y.shape == () and y.dtype == np.float32  # Caffe2 writes a 0-d tensor
    return float(y)


def assert_lr(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-9)


ITERS = st.integers(0, 10 ** 6)
BASE_LR = st.floats(-1.0, 1.0).filter(lambda v: abs(v) > 1e-4)


@SOME
@given(it=ITERS, base_lr=BASE_LR)
def test_lr_fixed(it, base_lr):
    assert_lr(lr(it, base_lr=base_lr, policy="fixed"), c32(base_lr))


@SOME
@given(base_lr=BASE_LR, stepsize=st.integers(1, 1000), gamma=st.floats(0.05, 1.0),
       k=st.integers(0, 30), frac=st.floats(0, 1, exclude_max=True))
def test_lr_step(base_lr, stepsize, gamma, k, frac):
    # iteration k * stepsize + r (0 <= r < stepsize) is in step k: gamma ** k
    r = min(int(frac * stepsize), stepsize - 1)
    args = dict(base_lr=base_lr, policy="step", stepsize=stepsize, gamma=gamma)
    assert_lr(lr(k * stepsize + r, **args), c32(base_lr) * c32(gamma) ** k)
    assert_lr(lr(k * stepsize, **args), c32(base_lr) * c32(gamma) ** k)
    assert_lr(lr((k + 1) * stepsize - 1, **args), c32(base_lr) * c32(gamma) ** k)


@SOME
@given(it=st.integers(0, 500), base_lr=BASE_LR, gamma=st.floats(0.9, 1.0))
def test_lr_exp(it, base_lr, gamma):
    assert_lr(lr(it, base_lr=base_lr, policy="exp", gamma=gamma),
              c32(base_lr) * math.exp(it * math.log(c32(gamma))))


@SOME
@given(it=ITERS, base_lr=BASE_LR, gamma=st.floats(1e-4, 1.0), power=st.floats(0.1, 2.0))
def test_lr_inv(it, base_lr, gamma, power):
    assert_lr(lr(it, base_lr=base_lr, policy="inv", gamma=gamma, power=power),
              c32(base_lr) / (1 + c32(gamma) * it) ** c32(power))


@SOME
@given(base_lr=BASE_LR, max_iter=st.integers(1, 10 ** 5), power=st.floats(0.1, 3.0),
       frac=st.floats(0, 1))
def test_lr_poly(base_lr, max_iter, power, frac):
    it = int(frac * max_iter)
    assert_lr(lr(it, base_lr=base_lr, policy="poly", max_iter=max_iter, power=power),
              c32(base_lr) * (1 - it / max_iter) ** c32(power))
    assert_lr(lr(max_iter, base_lr=base_lr, policy="poly", max_iter=max_iter, power=power), 0)


def test_lr_poly_without_max_iter_is_base_lr():
    # Caffe2 keeps max_iter unsigned, so the default -1 is 2**64 - 1: multiplier ~ 1.
    assert_lr(lr(1000, base_lr=-0.1, policy="poly", power=2.0), c32(-0.1))


@SOME
@given(it=st.integers(0, 100), start=st.floats(0, 1), num_iter=st.integers(1, 50))
def test_lr_warmups(it, start, num_iter):
    s = c32(start)
    want = 1.0 if it >= num_iter else s + (1 - s) * it / num_iter
    assert_lr(lr(it, base_lr=1.0, policy="linearWarmup", start_multiplier=start,
                 num_iter=num_iter), want)
    assert_lr(lr(it, base_lr=1.0, policy="constantWarmup", multiplier=start,
                 num_iter=num_iter), 1.0 if it >= num_iter else s)
    assert_lr(lr(it, base_lr=1.0, policy="gate", multiplier_1=start, multiplier_2=2.0,
                 num_iter=num_iter), 2.0 if it >= num_iter else s)


@SOME
@given(it=st.integers(0, 60), n1=st.integers(0, 20), dn=st.integers(0, 20))
def test_lr_piece_warmup(it, n1, dn):
    want = 0.1 if it < n1 else 0.4 if it < n1 + dn else 0.9
    assert_lr(lr(it, base_lr=1.0, policy="pieceWarmup", m1=0.1, n1=n1, m2=0.4, n2=n1 + dn,
                 m3=0.9), c32(want))


@SOME
@given(it=st.integers(0, 60), active=st.integers(0, 5), inactive=st.integers(1, 5),
       first=st.booleans())
def test_lr_alter(it, active, inactive, first):
    in_active = (it % (active + inactive) < active) if first else \
        (it % (active + inactive) >= inactive)
    assert lr(it, base_lr=1.0, policy="alter", active_period=active, inactive_period=inactive,
              active_first=int(first)) == float(in_active)


@SOME
@given(it=st.integers(0, 200), stepsize=st.integers(1, 20), max_lr=st.floats(0.2, 2),
       decay=st.floats(0.5, 1))
def test_lr_cyclical_triangle(it, stepsize, max_lr, decay):
    base = 0.1
    k, pos = divmod(it, 2 * stepsize)  # cycle number, position in the cycle
    tri = 1 - abs(pos - stepsize) / stepsize  # 0 at cycle ends, 1 in the middle
    want = 1 + (c32(max_lr) / c32(base) - 1) * tri * c32(decay) ** k
    np.testing.assert_allclose(
        lr(it, base_lr=base, policy="cyclical", max_lr=max_lr, stepsize=stepsize,
           decay=decay), c32(base) * want, rtol=1e-5, atol=1e-6)


@SOME
@given(it=st.integers(0, 300), period=st.integers(1, 40))
def test_lr_cosine_restarts(it, period):
    lo, hi, shrink = 0.1, 0.9, 0.9
    k, t = divmod(it, period)
    want = (lo + (hi - lo) * (1 + math.cos(math.pi * t / period)) / 2) * shrink ** k
    np.testing.assert_allclose(
        lr(it, base_lr=1.0, policy="cosine", min_lr=lo, max_lr=hi, period=period,
           lr_shrink=shrink), want, rtol=1e-5)


def test_lr_hill_and_slope():
    hill = dict(policy="hill", num_iter=5, start_multiplier=0.1, gamma=0.2, power=0.5,
                end_multiplier=0.3)
    for it in range(12):
        want = 0.1 + 0.9 * it / 5 if it < 5 else max(0.3, (1 + 0.2 * (it - 5)) ** -0.5)
        np.testing.assert_allclose(lr(it, base_lr=2.0, **hill), 2 * want, rtol=1e-6)
    slope = dict(policy="slope", num_iter_1=3, multiplier_1=1.0, num_iter_2=9, multiplier_2=0.2)
    for it in range(15):
        want = 1.0 if it < 3 else max(0.2, 1.0 - 0.8 * (it - 3) / 6)
        np.testing.assert_allclose(lr(it, base_lr=1.0, **slope), want, rtol=1e-6)


# Values the PyTorch 1.10.2 Caffe2 build returned (base_lr=-0.1), iterations ITS.
ITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 20, 31, 100]
CAFFE2_VALUES = [
    (dict(policy="hill", num_iter=5, start_multiplier=0.1, gamma=0.2, power=0.5,
          end_multiplier=0.3),
     [-0.010000001, -0.028000001, -0.046, -0.064000003, -0.082000002, -0.1, -0.091287091,
      -0.08451543, -0.079056941, -0.074535601, -0.070710681, -0.06201737, -0.050000001,
      -0.040160965, -0.030000001]),
    (dict(policy="cyclical", max_lr=0.5, stepsize=4, decay=0.8),
     [-0.1, -0.2, -0.30000001, -0.40000001, -0.5, -0.40000001, -0.30000001, -0.2, -0.1,
      -0.17999999, -0.25999999, -0.34, -0.35600004, -0.1512, -0.12748779]),
    (dict(policy="cyclical", stepsize=3),  # default max_lr 0.005 < |base_lr|
     [-0.1, -0.068333328, -0.036666662, -0.0050000013, -0.036666673, -0.068333328, -0.1,
      -0.068333343, -0.036666662, -0.0050000013, -0.036666662, -0.06833332, -0.036666688,
      -0.068333365, -0.03666655]),
    (dict(policy="compositeCyclical", start_warmup_multiplier=0.2, constant_warmup_num_iter=3,
          linear_warmup_num_iter=4, cyclical_max_lr=0.7, cyclical_step_size=3,
          cyclical_decay=0.9),
     [-0.020000001, -0.020000001, -0.020000001, -0.020000001, -0.040000003, -0.060000002,
      -0.080000006, -0.1, -0.30000004, -0.50000006, -0.69999999, -0.1, -0.26200005, -0.1,
      -0.22353463]),
    (dict(policy="cosine", max_lr=0.9, min_lr=0.1, period=5, t_mult=2.0, lr_shrink=0.9),
     [-0.089999996, -0.082360677, -0.062360674, -0.03763932, -0.01763932, -0.080999993,
      -0.079238035, -0.074124612, -0.066160269, -0.056124609, -0.044999998, -0.015875388,
      -0.063410252, -0.014287849, -0.04738538]),
    (dict(policy="cosine"),  # all defaults
     [-0.050000001, -0.049960535, -0.049842294, -0.049645748, -0.049371663, -0.049021132,
      -0.048595529, -0.048096541, -0.047526132, -0.04688656, -0.046180341, -0.043690946,
      -0.036180343, -0.022637509, -0.049005002]),
    (dict(policy="compositeCosine", start_warmup_multiplier=0.2, constant_warmup_num_iter=3,
          linear_warmup_num_iter=4, cosine_max_lr=0.8, cosine_min_lr=0.2, cosine_period=6,
          cosine_t_mult=1.5, cosine_lr_shrink=0.95),
     [-0.020000001, -0.020000001, -0.020000001, -0.020000001, -0.040000003, -0.060000002,
      -0.080000006, -0.080000006, -0.075980768, -0.065000005, -0.050000001, -0.075999998,
      -0.025667733, -0.0315875, -0.052065104]),
]


@pytest.mark.parametrize("args, values", CAFFE2_VALUES,
                         ids=[f"{a['policy']}-{i}" for i, (a, _) in enumerate(CAFFE2_VALUES)])
def test_lr_matches_recorded_caffe2_values(args, values):
    got = [lr(it, base_lr=-0.1, **args) for it in ITS]
    np.testing.assert_allclose(got, values, rtol=1e-5, atol=1e-8)


def test_lr_reads_first_element_of_0d_counter_and_rule():
    (y,) = run("LearningRate", [np.array(3, np.int64)], base_lr=-0.1, policy="fixed")
    assert y.shape == () and y == np.float32(-0.1)
    assert infer("LearningRate", [TensorType((1,), np.int64)], base_lr=1.0, policy="fixed") == \
        [TensorType((), np.float32)]


@pytest.mark.parametrize("counter, args, err", [
    (np.array([1], np.int64), dict(base_lr=0.1, policy="multistep"), ArgumentError),  # unknown
    (np.array([1], np.int64), dict(base_lr=0.1, policy=""), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite",
                                   sub_policy_num_iters=[2]), ArgumentError),  # no policy
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite"), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[0],
                                   sub_policy_0_policy="fixed"), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
                                   sub_policy_0_policy="composite"), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
                                   sub_policy_0_policy="fixed", sub_policy_1_policy="fixed"),
     ArgumentError),                                               # only one sub-policy
    (np.array([1], np.int64), dict(base_lr=0.1, policy="composite", sub_policy_num_iters=[2],
                                   sub_policy_0_policy="step", sub_policy_0_gama=0.5),
     ArgumentError),                                               # typo in a sub-argument
    (np.array([1], np.int64), dict(base_lr=0.1, policy="fixed", sub_policy_0_policy="fixed"),
     ArgumentError),                                               # not a composite
    (np.array([1], np.int64), dict(policy="fixed"), ArgumentError),       # base_lr required
    (np.array([1], np.int64), dict(base_lr=0.1), ArgumentError),          # policy required
    (np.array([1], np.int32), dict(base_lr=0.1, policy="fixed"), ShapeError),
    (np.zeros(0, np.int64), dict(base_lr=0.1, policy="fixed"), ShapeError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="step", gamma=0.5), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="poly", power=1.0, max_iter=0),
     ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="alter"), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="cyclical"), ArgumentError),
    (np.array([1], np.int64), dict(base_lr=0.1, policy="fixed", gama=1.0), ArgumentError),
])
def test_lr_errors(counter, args, err):
    with pytest.raises(err) as e:
        run("LearningRate", [counter], **args)
    names_op(e, "LearningRate")
    if err is ArgumentError and args.get("policy") == "multistep":
        assert "fixed" in str(e.value) and "step" in str(e.value)  # lists the policies


def test_lr_composite_pinned():
    # Real Caffe2 1.10.2: sub-policy i covers iterations [1 + sum(n[:i]), ...) (the last one
    # forever), computed at the *global* iteration and multiplied by its lr_scale (default
    # 1). Caffe2's learning_rate_op_test.test_composite_learning_rate_op checks the same rule.
    args = dict(policy="composite", base_lr=-1.0, sub_policy_num_iters=[3, 2],
                sub_policy_0_policy="exp", sub_policy_0_lr_scale=2.0, sub_policy_0_gamma=0.5,
                sub_policy_1_policy="step", sub_policy_1_lr_scale=0.5, sub_policy_1_stepsize=2,
                sub_policy_1_gamma=0.1)
    want = {0: -2.0, 1: -1.0, 2: -0.5, 3: -0.25, 4: -0.005, 5: -0.005, 6: -0.0005,
            7: -0.0005, 10: -5e-06}
    got = {it: float(run("LearningRate", [np.array([it], np.int64)], **args)[0])
           for it in want}
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-6)
    (y,) = run("LearningRate", [np.array([1], np.int64)], policy="composite", base_lr=1.0,
               sub_policy_num_iters=[2], sub_policy_0_policy="fixed")
    assert y == 1.0
    # a sub-policy's own argument checks name the prefixed argument
    with pytest.raises(ArgumentError, match="sub_policy_0_stepsize"):
        run("LearningRate", [np.array([1], np.int64)], policy="composite", base_lr=1.0,
            sub_policy_num_iters=[2], sub_policy_0_policy="step")


def test_lr_not_in_place():
    with pytest.raises(ArgumentError) as e:
        run("LearningRate", [np.array([1], np.int64)], input_names=["it"], outputs=["it"],
            base_lr=0.1, policy="fixed")
    names_op(e, "LearningRate")


# ----------------------------------------------------------------------------- WeightedSum

@SOME
@given(shape=shapes(), n=st.integers(1, 4), data=st.data())
def test_weighted_sum_matches_torch(shape, n, data):
    xs = [data.draw(floats(shape)) for _ in range(n)]
    ws = [data.draw(floats(data.draw(st.sampled_from([(), (1,), (1, 1)])))) for _ in range(n)]
    inputs = [v for pair in zip(xs, ws) for v in pair]
    (y,) = run("WeightedSum", inputs)
    want = sum(torch.from_numpy(w.astype(np.float64)).reshape(()) *
               torch.from_numpy(x.astype(np.float64)) for x, w in zip(xs, ws))
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)


def test_weighted_sum_in_place_on_input_0():
    x0, x1 = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    w0, w1 = np.array([2.0], np.float32), np.array([3.0], np.float32)
    (y,) = run("WeightedSum", [x0, w0, x1, w1], input_names=["x", "w0", "x1", "w1"],
               outputs=["x"])
    np.testing.assert_array_equal(y, np.full((2, 3), 8.0, np.float32))
    assert (x0 == 1).all()
    with pytest.raises(ArgumentError) as e:  # Caffe2: in place only through input 0
        run("WeightedSum", [x0, w0, x1, w1], input_names=["x", "w0", "x1", "w1"],
            outputs=["x1"])
    names_op(e, "WeightedSum")


def test_weighted_sum_other_inputs_need_only_the_same_size():
    # Caffe2 checks element counts; the output takes X0's shape.
    x0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    x1 = np.arange(6, dtype=np.float32).reshape(3, 2)
    one = np.array([1.0], np.float32)
    (y,) = run("WeightedSum", [x0, one, x1, one])
    np.testing.assert_array_equal(y, 2 * x0)


@pytest.mark.parametrize("inputs, err", [
    ([np.ones(3, np.float32), np.ones(1, np.float32), np.ones(3, np.float32)], ArgumentError),
    ([np.ones(3, np.float32), np.ones(2, np.float32)], ShapeError),          # weight size 2
    ([np.ones(3, np.float32), np.ones(1, np.float32), np.ones(4, np.float32),
      np.ones(1, np.float32)], ShapeError),                                  # sizes differ
    ([np.ones(3), np.ones(1)], ShapeError),                                  # float64
    ([np.ones(3, np.float32), np.ones(1)], ShapeError),                      # float64 weight
    ([np.ones(3, np.int32), np.ones(1, np.float32)], ShapeError),
    ([np.ones(3, np.float32)], ArgumentError),                               # too few inputs
])
def test_weighted_sum_errors(inputs, err):
    with pytest.raises(err) as e:
        run("WeightedSum", inputs)
    names_op(e, "WeightedSum")


# ----------------------------------------------------------------------------- Dropout

@SOME
@given(shape=shapes(), ratio=st.floats(0, 0.95), data=st.data())
def test_dropout_train_mask_consistency(shape, ratio, data):
    x = data.draw(floats(shape))
    y, mask = run("Dropout", [x], outputs=2, ratio=ratio, is_test=0)
    assert y.dtype == np.float32 and mask.dtype == np.bool_ and mask.shape == x.shape
    want = torch.from_numpy(x.astype(np.float64)) * torch.from_numpy(mask) / (1 - c32(ratio))
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 0.9])
def test_dropout_keep_rate(ratio):
    x = np.ones((200, 100), np.float32)
    y, mask = run("Dropout", [x], outputs=2, ratio=ratio, is_test=0,
                  device_option=core.DeviceOption(0, random_seed=11))
    n, keep = x.size, 1 - ratio
    assert abs(mask.mean() - keep) <= 5 * math.sqrt(keep * (1 - keep) / n) + 1e-9
    assert abs(y.mean() - 1.0) < 0.1  # the 1 / (1 - ratio) scale keeps the expectation


@SOME
@given(shape=shapes(), ratio=st.floats(0, 0.95), data=st.data())
def test_dropout_test_mode_is_identity(shape, ratio, data):
    x = data.draw(floats(shape))
    (y,) = run("Dropout", [x], ratio=ratio, is_test=1)
    np.testing.assert_array_equal(y, torch.nn.functional.dropout(
        torch.from_numpy(x), p=ratio, training=False).numpy())
    y, mask = run("Dropout", [x], outputs=2, ratio=ratio, is_test=1)
    np.testing.assert_array_equal(y, x)
    assert mask.all()  # decision: Caffe2 leaves the mask unset in test mode; we keep all


def test_dropout_seeding_and_in_place():
    dev = core.DeviceOption(0, random_seed=4)
    x = np.arange(1, 101, dtype=np.float32)
    a = run("Dropout", [x], outputs=2, is_test=0, device_option=dev)
    b = run("Dropout", [x], outputs=["x", "m"], input_names=["x"], is_test=0,
            device_option=dev)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    op = bind(make_op("Dropout", 1, 2, device_option=dev, is_test=0), 0)
    m1 = reference.run_op(op, [x])[1]
    m2 = reference.run_op(op, [x])[1]
    assert not np.array_equal(m1, m2)  # each run draws a new mask
    with pytest.raises(ArgumentError) as e:  # the mask may not overwrite the input
        run("Dropout", [x], outputs=["y", "x"], input_names=["x"], is_test=0)
    names_op(e, "Dropout")


@pytest.mark.parametrize("x, args, err", [
    (np.ones(3, np.float32), dict(ratio=1.0, is_test=0), ArgumentError),
    (np.ones(3, np.float32), dict(ratio=-0.1, is_test=0), ArgumentError),
    (np.ones(3, np.float32), dict(ratio=0.5), ArgumentError),  # Caffe2 1.x requires is_test
    (np.ones(3), dict(is_test=0), ShapeError),
    (np.ones(3), dict(is_test=1), ShapeError),
    (np.ones(3, np.int32), dict(is_test=1), ShapeError),
])
def test_dropout_errors(x, args, err):
    with pytest.raises(err) as e:
        run("Dropout", [x], outputs=2, **args)
    names_op(e, "Dropout")
