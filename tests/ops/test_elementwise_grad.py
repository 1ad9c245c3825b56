"""Gradient rules and gradient ops of the elementwise family.

* which gradient ops each rule emits (names, inputs, outputs, arguments) and what the gradient
  ops compute at chosen points, NaN/inf included: literal expectations recorded with real
  Caffe2 1.10.2 (the PyTorch 1.10.2 build), so nets and checkpoints carry over;
* every rule + gradient op against PyTorch autograd (float64) and finite differences, on
  hypothesis-drawn shapes and values (size-1 dims, numpy and legacy broadcast=1 forms), the
  values kept away from kinks (Relu at 0, Clip's bounds, ties of Max/Min);
* errors that name the op: bad gradient-op inputs, gradients Caffe2 refuses or gets wrong.
"""
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

import c2compile.hypothesis_test_util as hu
from c2compile import config, core, workspace
from c2compile.errors import ArgumentError, GradientError, OpError, ShapeError
from c2compile.ops.testing import check_gradient, gradient_ops, run, run_gradient
from tests.backends.test_cpu_elementwise import legacy_shapes, numpy_shapes

F = torch.nn.functional
FEW = settings(max_examples=15, deadline=None)
SOME = settings(max_examples=25, deadline=None)
nan, inf = np.nan, np.inf


def c32(v):
    return float(np.float32(v))


# ----------------------------------------------------------------------------- Caffe2's ops

def _val(a):
    if a.HasField("f"):
        return round(a.f, 6)
    if a.HasField("i"):
        return a.i
    return a.s.decode()


def _emitted(op_type, ins, outs, **args):
    op = core.CreateOperator(op_type, ins, outs, **args)
    ops, g_input = core.GradientRegistry.GetGradientForOp(op, [o + "_grad" for o in outs])
    return ([(g.type, list(g.input), list(g.output), [(a.name, _val(a)) for a in g.arg])
             for g in ops], [None if g is None else str(g) for g in g_input])


# (forward op, inputs, outputs, args), then the gradient ops and input gradients that Caffe2
# 1.10.2's GradientRegistry.GetGradientForOp returned for it.
CAFFE2_GRADIENT_OPS = [
    (("Relu", ["X"], ["Y"], {}), [("ReluGradient", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Sigmoid", ["X"], ["Y"], {}),
     [("SigmoidGradient", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Tanh", ["X"], ["Y"], {}), [("TanhGradient", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Softplus", ["X"], ["Y"], {}),
     [("SoftplusGradient", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Reciprocal", ["X"], ["Y"], {}),
     [("ReciprocalGradient", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Abs", ["X"], ["Y"], {}), [("AbsGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Softsign", ["X"], ["Y"], {}),
     [("SoftsignGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Cube", ["X"], ["Y"], {}), [("CubeGradient", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    (("Rsqrt", ["X"], ["Y"], {}),
     [("RsqrtGradient", ["Y_grad", "Y"], ["X_grad"], [])], ["X_grad"]),
    (("Cbrt", ["X"], ["Y"], {}), [("CbrtGradient", ["Y_grad", "Y"], ["X_grad"], [])], ["X_grad"]),
    (("Log1p", ["X"], ["Y"], {}),
     [("Log1pGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Sin", ["X"], ["Y"], {}), [("SinGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Acos", ["X"], ["Y"], {}), [("AcosGradient", ["X", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Cosh", ["X"], ["Y"], {}), [("CoshGradient", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    (("Exp", ["X"], ["Y"], {}), [("Mul", ["Y", "Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Log", ["X"], ["Y"], {}), [("Div", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    (("Sqrt", ["X"], ["Y"], {}),
     [("Scale", ["Y_grad"], ["X_grad"], [("scale", 0.5)]),
      ("Div", ["X_grad", "Y"], ["X_grad"], [])],
     ["X_grad"]),
    (("Sqr", ["X"], ["Y"], {}),
     [("Scale", ["Y_grad"], ["Y_grad"], [("scale", 2.0)]),
      ("Mul", ["Y_grad", "X"], ["X_grad"], [])],
     ["X_grad"]),
    (("Negative", ["X"], ["Y"], {}), [("Negative", ["Y_grad"], ["X_grad"], [])], ["X_grad"]),
    (("Scale", ["X"], ["Y"], {"scale": 2.0}),
     [("Scale", ["Y_grad"], ["X_grad"], [("scale", 2.0)])], ["X_grad"]),
    (("Copy", ["X"], ["Y"], {}),
     [("CopyOnDeviceLike", ["Y_grad", "X"], ["X_grad"], [])], ["X_grad"]),
    (("LeakyRelu", ["X"], ["Y"], {"alpha": 0.25}),
     [("LeakyReluGradient", ["Y", "Y_grad"], ["X_grad"], [("alpha", 0.25)])], ["X_grad"]),
    (("Elu", ["X"], ["Y"], {"alpha": 0.5}),
     [("EluGradient", ["Y", "Y_grad"], ["X_grad"], [("alpha", 0.5)])], ["X_grad"]),
    (("Clip", ["X"], ["Y"], {"min": 0.0, "max": 1.0}),
     [("ClipGradient", ["Y", "Y_grad"], ["X_grad"], [("min", 0.0), ("max", 1.0)])], ["X_grad"]),
    (("Cast", ["X"], ["Y"], {"to": 2, "from_type": 1}),
     [("Cast", ["Y_grad"], ["X_grad"], [("to", 1), ("from_type", 2)])], ["X_grad"]),
    (("Cast", ["X"], ["Y"], {"to": "INT32", "from_type": "FLOAT"}),
     [("Cast", ["Y_grad"], ["X_grad"], [("to", 1), ("from_type", 2)])], ["X_grad"]),
    (("Pow", ["X"], ["Y"], {"exponent": 2.5}),
     [("Pow", ["X"], ["X_grad"], [("exponent", 1.5)]),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Scale", ["X_grad"], ["X_grad"], [("scale", 2.5)])], ["X_grad"]),
    (("Pow", ["X", "E"], ["Y"], {}),
     [("ConstantFill", ["E"], ["E_grad"], [("value", 1.0)]),
      ("Sub", ["E", "E_grad"], ["E_grad"], []),
      ("Pow", ["X", "E_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "E"], ["X_grad"], []),
      ("Log", ["X"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y_grad"], ["E_grad"], [])], ["X_grad", "E_grad"]),
    (("Pow", ["X", "E"], ["Y"], {"broadcast": 1, "axis": 1}),
     [("ConstantFill", ["E"], ["E_grad"], [("value", 1.0)]),
      ("Sub", ["E", "E_grad"], ["E_grad"], []),
      ("Pow", ["X", "E_grad"], ["X_grad"],
       [("broadcast", 1), ("axis", 1), ("axis_str", ""), ("order", "NCHW")]),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "E"], ["X_grad"],
       [("broadcast", 1), ("axis", 1), ("axis_str", ""), ("order", "NCHW")]),
      ("Log", ["X"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y_grad"], ["E_grad_autogen_pre_red"], []),
      ("SumReduceLike", ["E_grad_autogen_pre_red", "E"], ["E_grad"],
       [("axis", 1), ("axis_str", ""), ("order", "NCHW")])], ["X_grad", "E_grad"]),
    # `broadcast` set at all (even to 0) switches Caffe2 to the broadcast form of the ops
    (("Pow", ["X", "E"], ["Y"], {"broadcast": 0}),
     [("ConstantFill", ["E"], ["E_grad"], [("value", 1.0)]),
      ("Sub", ["E", "E_grad"], ["E_grad"], []),
      ("Pow", ["X", "E_grad"], ["X_grad"],
       [("broadcast", 0), ("axis", -1), ("axis_str", ""), ("order", "NCHW")]),
      ("Mul", ["X_grad", "Y_grad"], ["X_grad"], []),
      ("Mul", ["X_grad", "E"], ["X_grad"],
       [("broadcast", 0), ("axis", -1), ("axis_str", ""), ("order", "NCHW")]),
      ("Log", ["X"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y"], ["E_grad_autogen_pre_red"], []),
      ("Mul", ["E_grad_autogen_pre_red", "Y_grad"], ["E_grad_autogen_pre_red"], []),
      ("SumReduceLike", ["E_grad_autogen_pre_red", "E"], ["E_grad"],
       [("axis", -1), ("axis_str", ""), ("order", "NCHW")])], ["X_grad", "E_grad"]),
    (("Add", ["A", "B"], ["C"], {}),
     [("AddGradient", ["C_grad", "A", "B"], ["A_grad", "B_grad"], [])], ["A_grad", "B_grad"]),
    (("Sub", ["A", "B"], ["C"], {"broadcast": 1, "axis": 1}),
     [("SubGradient", ["C_grad", "A", "B"], ["A_grad", "B_grad"],
       [("broadcast", 1), ("axis", 1)])], ["A_grad", "B_grad"]),
    (("Mul", ["A", "B"], ["A"], {}),
     [("MulGradient", ["A_grad", "A", "B"], ["A_grad", "B_grad"], [])], ["A_grad", "B_grad"]),
    (("Div", ["A", "B"], ["C"], {"broadcast": 1, "axis_str": "C", "order": "NHWC"}),
     [("DivGradient", ["C_grad", "A", "B", "C"], ["A_grad", "B_grad"],
       [("broadcast", 1), ("axis_str", "C"), ("order", "NHWC")])], ["A_grad", "B_grad"]),
    (("Div", ["A", "B"], ["A"], {}),
     [("DivGradient", ["A_grad", "A", "B", "A"], ["A_grad", "B_grad"], [])],
     ["A_grad", "B_grad"]),
    (("Sum", ["A", "B", "C"], ["Y"], {}), [], ["Y_grad", "Y_grad", "Y_grad"]),
    (("Max", ["A", "B", "C"], ["Y"], {}),
     [("MaxGradient", ["Y", "Y_grad", "A", "B", "C"], ["A_grad", "B_grad", "C_grad"], [])],
     ["A_grad", "B_grad", "C_grad"]),
    (("Min", ["A", "B"], ["Y"], {}),
     [("MinGradient", ["Y", "Y_grad", "A", "B"], ["A_grad", "B_grad"], [])],
     ["A_grad", "B_grad"]),
    (("StopGradient", ["X"], ["Y"], {}), [], [None]),
]


@pytest.mark.parametrize("forward, ops, g_input", CAFFE2_GRADIENT_OPS,
                         ids=[f[0] for f, _, _ in CAFFE2_GRADIENT_OPS])
def test_gradient_ops_are_caffe2s(forward, ops, g_input):
    op_type, ins, outs, args = forward
    assert _emitted(op_type, ins, outs, **args) == (ops, g_input)


def test_gradient_ops_are_marked_and_keep_device_and_engine():
    dev = core.DeviceOption(0, random_seed=3)
    op = core.CreateOperator("Pow", ["X", "E"], ["Y"], device_option=dev, engine="E1")
    ops, _ = core.GradientRegistry.GetGradientForOp(op, ["gY"])
    assert all(g.is_gradient_op and g.engine == "E1" and g.device_option == dev for g in ops)


# ----------------------------------------------------------------------------- Caffe2's values

V = np.array([-2, -1, -0.5, 0, 0.5, 1, 2], np.float32)
D = np.arange(1, 8).astype(np.float32)

# gradient op, its inputs (V or D above, in Caffe2's order), arguments, and the output that
# Caffe2 1.10.2 computed
CAFFE2_VALUES = [
    ("ReluGradient", "V D", {}, [0, 0, 0, 0, 5, 6, 7]),
    ("SigmoidGradient", "V D", {}, [-6, -4, -2.25, 0, 1.25, 0, -14]),
    ("TanhGradient", "V D", {}, [-3, 0, 2.25, 4, 3.75, 0, -21]),
    ("SoftplusGradient", "V D", {},
     [-6.3890562, -3.4365635, -1.9461637, 0, 1.9673467, 3.7927232, 6.0526533]),
    ("ReciprocalGradient", "V D", {}, [-4, -2, -0.75, -0.0, -1.25, -6, -28]),
    ("LeakyReluGradient", "V D", {}, [0.01, 0.02, 0.03, 4, 5, 6, 7]),
    # Y >= 0 decides, so with alpha < 0 the (positive) outputs of negative inputs get dY * 1
    ("LeakyReluGradient", "V D", {"alpha": -0.5}, [-0.5, -1, -1.5, 4, 5, 6, 7]),
    ("EluGradient", "V D", {"alpha": 0.5}, [-1.5, -1, 0, 4, 5, 6, 7]),
    ("ClipGradient", "V D", {"min": -1.0, "max": 1.0}, [0, 0, 3, 4, 5, 0, 0]),
    ("ClipGradient", "V D", {"min": -1.0}, [0, 0, 3, 4, 5, 6, 7]),
    ("SoftsignGradient", "V D", {},
     [0.11111111, 0.5, 1.3333334, 4, 2.2222223, 1.5, 0.77777779]),
    ("AbsGradient", "V D", {}, [-1, -2, -3, 0, 5, 6, 7]),
    ("Log1pGradient", "V D", {}, [-1, inf, 6, 4, 3.3333333, 3, 2.3333333]),
    ("SinGradient", "V D", {},
     [-0.41614681, 1.0806046, 2.6327477, 4, 4.3879128, 3.2418137, -2.913028]),
    ("CosGradient", "V D", {},
     [0.9092974, 1.6829419, 1.4382766, -0.0, -2.3971276, -5.0488257, -6.3650818]),
    ("TanGradient", "V D", {}, [5.7744, 6.851038, 3.8953393, 4, 6.4922323, 20.553114, 40.420792]),
    ("AsinGradient", "V D", {}, [nan, inf, 3.4641016, 4, 5.7735023, inf, nan]),
    ("AcosGradient", "V D", {}, [nan, -inf, -3.4641016, -4, -5.7735023, -inf, nan]),
    ("AtanGradient", "V D", {}, [0.2, 1, 2.4, 4, 4, 3, 1.4]),
    ("CubeGradient", "D V", {}, [12, 6, 2.25, 0, 3.75, 18, 84]),
    ("SinhGradient", "D V", {},
     [3.7621958, 3.0861611, 3.3828778, 4, 5.6381297, 9.2584839, 26.335371]),
    ("CoshGradient", "D V", {},
     [-3.6268604, -2.3504024, -1.5632858, 0, 2.6054764, 7.0512071, 25.388023]),
    ("RsqrtGradient", "D V", {}, [4, 1, 0.1875, -0.0, -0.3125, -3, -28]),
    ("CbrtGradient", "D V", {}, [0.083333336, 0.66666669, 4, inf, 6.6666665, 2, 0.58333331]),
]


@pytest.mark.parametrize("op_type, order, args, expected", CAFFE2_VALUES,
                         ids=[f"{t}{a}" for t, _, a, _ in CAFFE2_VALUES])
def test_gradient_op_values_are_caffe2s(op_type, order, args, expected):
    ins = [V if o == "V" else D for o in order.split()]
    (dx,) = run(op_type, ins, **args)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, np.float32(expected), rtol=1e-6, atol=1e-7)
    number = ~np.isnan(dx)
    np.testing.assert_array_equal(np.signbit(dx[number]), np.signbit(np.float32(expected))[number])


# Y (or X), dY with NaN and inf, and what Caffe2 1.10.2 gave: a select (Relu, Elu, Abs)
# drops a NaN/inf dY where it picks 0; a product with a 0/1 mask (Clip, LeakyRelu, Max)
# turns inf * 0 into NaN.
Y_SPECIAL = np.array([-1, -1, 0, 0, 1, 1, nan, nan, inf, -inf], np.float32)
DY_SPECIAL = np.array([nan, inf, nan, inf, nan, inf, 1, 0, 1, 1], np.float32)
CAFFE2_SPECIALS = [
    ("ReluGradient", {}, [0, 0, 0, 0, nan, inf, 0, 0, 1, 0]),
    ("LeakyReluGradient", {}, [nan, nan, nan, nan, nan, nan, 0.01, 0, 1, 0.01]),
    ("EluGradient", {}, [nan, nan, nan, inf, nan, inf, 1, 0, 1, -inf]),
    ("ClipGradient", {"min": -0.5, "max": 0.5}, [nan, nan, nan, inf, nan, nan, 0, 0, 0, 0]),
    ("ClipGradient", {}, [nan, inf, nan, inf, nan, inf, 0, 0, 0, 0]),
    ("AbsGradient", {}, [nan, -inf, 0, 0, nan, inf, -1, -0.0, 1, -1]),
    ("SigmoidGradient", {}, [nan, -inf, nan, nan, nan, nan, nan, nan, -inf, -inf]),
    ("TanhGradient", {}, [nan, nan, nan, inf, nan, nan, nan, nan, -inf, -inf]),
    ("SoftsignGradient", {}, [nan, inf, nan, inf, nan, inf, nan, nan, 0, 0]),
]


@pytest.mark.parametrize("op_type, args, expected", CAFFE2_SPECIALS,
                         ids=[f"{t}{a}" for t, a, _ in CAFFE2_SPECIALS])
def test_nan_and_inf_propagate_as_in_caffe2(op_type, args, expected):
    (dx,) = run(op_type, [Y_SPECIAL, DY_SPECIAL], **args)
    np.testing.assert_array_equal(dx, np.float32(expected))


def test_max_gradient_of_nan_and_inf_as_in_caffe2():
    (dx,) = run("MaxGradient", [np.zeros(10, np.float32), DY_SPECIAL, Y_SPECIAL])
    np.testing.assert_array_equal(dx, np.float32([nan, nan, nan, inf, nan, nan, 0, 0, 0, 0]))


def test_max_min_gradient_ties_give_every_winner_the_whole_gradient():
    a, b = np.float32([1, 3, 2, 3]), np.float32([3, 1, 2, 3])
    g = np.float32([1, 2, 3, 4])
    da, db = run("MaxGradient", [np.maximum(a, b), g, a, b], outputs=2)
    np.testing.assert_array_equal(da, [0, 2, 3, 4])  # Caffe2 1.10.2's values
    np.testing.assert_array_equal(db, [1, 0, 3, 4])
    da, db = run("MinGradient", [np.minimum(a, b), g, a, b], outputs=2)
    np.testing.assert_array_equal(da, [1, 0, 3, 4])
    np.testing.assert_array_equal(db, [0, 2, 3, 4])
    # fewer outputs than inputs: the first ones only, as Caffe2's OutputSize() loop
    (da,) = run("MaxGradient", [np.maximum(a, b), g, a, b], outputs=1)
    np.testing.assert_array_equal(da, [0, 2, 3, 4])


def test_integer_binary_gradients_as_in_caffe2():
    """AddGradient..DivGradient take int32/int64 too; dC = A = B = C = [[1, 2, 3], [4, 5, 6]]
    gave these dB in Caffe2 1.10.2 (Div's -dC * C / B truncates toward zero)."""
    x = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    expected = {"AddGradient": x, "SubGradient": -x, "MulGradient": x * x, "DivGradient": -x}
    for op_type, db in expected.items():
        ins = [x] * (4 if op_type == "DivGradient" else 3)
        da, got = run(op_type, ins, outputs=2)
        assert da.dtype == got.dtype == np.int32
        np.testing.assert_array_equal(got, db)
    # each -dC * C / B truncates before the sum: column 1 is (-2 / -3) + (-5 / -3) = 0 + 1
    da, db = run("DivGradient", [np.ones((2, 3), np.int32), x, np.int32([2, -3, 4]), x],
                 outputs=2)
    np.testing.assert_array_equal(da, np.zeros((2, 3)))
    np.testing.assert_array_equal(db, [-2, 1, -1])
    (dx,) = run("CubeGradient", [np.int32([1, 2, -3]), np.int32([2, -2, 5])])
    np.testing.assert_array_equal(dx, [12, 24, -225])


def test_sum_reduce_like_is_caffe2s():
    a = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    (c,) = run("SumReduceLike", [a, np.zeros((1, 3, 4, 1), np.float32)], axis=0)
    np.testing.assert_allclose(c, a.sum(axis=(0, 3)).reshape(1, 3, 4, 1))
    (c,) = run("SumReduceLike", [a, np.zeros((1, 1), np.float32)])  # one element: sum all
    assert c.shape == (1, 1) and c[0, 0] == a.sum()
    (c,) = run("SumReduceLike", [a, np.zeros((4, 5), np.int64)])    # suffix by default
    assert c.dtype == np.float32
    np.testing.assert_allclose(c, a.sum(axis=(0, 1)))
    (c,) = run("SumReduceLike", [a, a], axis_str="N", order="NCHW")
    np.testing.assert_array_equal(c, a)
    with pytest.raises(ShapeError, match="does not match"):  # Caffe2: dimension mismatch
        run("SumReduceLike", [a, np.zeros((3, 1), np.float32)])


def test_copy_on_device_like_copies_its_first_input():
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    (y,) = run("CopyOnDeviceLike", [x, np.zeros(1, np.float32)])
    np.testing.assert_array_equal(y, x)
    assert y.dtype == np.int64


# ----------------------------------------------------------------------------- against torch

def _away(x, points, gap=0.05):
    """x with values within `gap` of any of `points` (kinks) moved `2 * gap` away."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, 2 * gap, -2 * gap)
    return x


# forward op: (torch function of (x, args), input domain (lo, hi), kinks, argument strategy)
# Domains keep float32 rounding and finite-difference curvature small. LeakyRelu and Elu take
# alpha > 0 only here: Caffe2 decides on Y's sign, which is X's only then.
UNARY = {
    "Relu": (lambda x, a: torch.relu(x), (-2, 2), [0], None),
    "Sigmoid": (lambda x, a: torch.sigmoid(x), (-3, 3), [], None),
    "Tanh": (lambda x, a: torch.tanh(x), (-2, 2), [], None),
    "Exp": (lambda x, a: torch.exp(x), (-2, 2), [], None),
    "Log": (lambda x, a: torch.log(x), (0.3, 3), [], None),
    "Sqrt": (lambda x, a: torch.sqrt(x), (0.3, 3), [], None),
    "Abs": (lambda x, a: torch.abs(x), (-2, 2), [0], None),
    "Negative": (lambda x, a: -x, (-2, 2), [], None),
    "Sqr": (lambda x, a: x * x, (-2, 2), [], None),
    "Reciprocal": (lambda x, a: 1 / x, (0.4, 2), [], None),
    "Softsign": (lambda x, a: F.softsign(x), (-2, 2), [0], None),
    "Softplus": (lambda x, a: F.softplus(x), (-3, 3), [], None),
    "Cube": (lambda x, a: x ** 3, (-2, 2), [], None),
    "Rsqrt": (lambda x, a: torch.rsqrt(x), (0.4, 3), [], None),
    "Cbrt": (lambda x, a: torch.sign(x) * torch.abs(x) ** (1 / 3), (0.3, 3), [], None),
    "Log1p": (lambda x, a: torch.log1p(x), (-0.6, 2), [], None),
    "Sin": (lambda x, a: torch.sin(x), (-3, 3), [], None),
    "Cos": (lambda x, a: torch.cos(x), (-3, 3), [], None),
    "Tan": (lambda x, a: torch.tan(x), (-1.1, 1.1), [], None),
    "Asin": (lambda x, a: torch.asin(x), (-0.8, 0.8), [], None),
    "Acos": (lambda x, a: torch.acos(x), (-0.8, 0.8), [], None),
    "Atan": (lambda x, a: torch.atan(x), (-3, 3), [], None),
    "Sinh": (lambda x, a: torch.sinh(x), (-2, 2), [], None),
    "Cosh": (lambda x, a: torch.cosh(x), (-2, 2), [], None),
    "LeakyRelu": (lambda x, a: F.leaky_relu(x, c32(a.get("alpha", 0.01))), (-2, 2), [0],
                  st.fixed_dictionaries({"alpha": st.sampled_from([0.01, 0.2, 1.5])})),
    "Elu": (lambda x, a: F.elu(x, c32(a.get("alpha", 1.0))), (-3, 2), [0],
            st.fixed_dictionaries({"alpha": st.sampled_from([0.3, 1.0, 2.0])})),
    "Clip": (lambda x, a: torch.clamp(x, c32(a["min"]), c32(a["max"])), (-2, 2), None,
             st.fixed_dictionaries({"min": st.sampled_from([-1.5, -0.5, 0.0]),
                                    "max": st.sampled_from([0.3, 1.0, 5.0])})),
    "Scale": (lambda x, a: x * c32(a["scale"]), (-2, 2), [],
              st.fixed_dictionaries({"scale": st.sampled_from([-0.7, 0.1, 3.0])})),
    "Pow": (lambda x, a: x ** c32(a["exponent"]), (0.4, 2), [],
            st.fixed_dictionaries({"exponent": st.sampled_from([-1.3, 0.5, 2.0, 3.0])})),
    "Copy": (lambda x, a: x * 1, (-2, 2), [], None),
    "StopGradient": (lambda x, a: x.detach(), (-2, 2), [], None),
}


def small_shapes(min_dims=1, max_dims=3):
    return st.lists(st.sampled_from([1, 2, 3, 5]), min_size=min_dims, max_size=max_dims).map(tuple)


def uniform(draw, shape, lo, hi, dtype=np.float32):
    r = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return r.uniform(lo, hi, size=shape).astype(dtype)


@SOME
@given(data=st.data(), op_type=st.sampled_from(sorted(UNARY)), shape=small_shapes())
def test_unary_gradient_matches_torch_and_finite_differences(data, op_type, shape):
    fn, (lo, hi), kinks, arg_strategy = UNARY[op_type]
    args = data.draw(arg_strategy) if arg_strategy is not None else {}
    x = uniform(data.draw, shape, lo, hi)
    if op_type == "Clip":
        kinks = [c32(args["min"]), c32(args["max"])]
    x = _away(x, kinks)
    if op_type == "StopGradient":
        assert run_gradient(op_type, [x])[1] == [None]
        return
    check_gradient(op_type, [x], torch_fn=lambda t: fn(t, args), **args)


def test_sqrt_and_negative_take_float64_and_cast_goes_back_to_the_input_type():
    x = np.float64([0.5, 2.0, 3.0])
    (g,) = check_gradient("Sqrt", [x], torch_fn=torch.sqrt)
    assert g.dtype == np.float64
    check_gradient("Negative", [x], torch_fn=torch.neg)
    x32 = np.float32([[0.5, -2.0], [3.0, 1.25]])
    (g,) = check_gradient("Cast", [x32], torch_fn=lambda t: t * 1, to=core.DataType.DOUBLE,
                          from_type="FLOAT")
    assert g.dtype == np.float32


# ----------------------------------------------------------------------------- binary ops

def legacy_view(a_shape, b_shape, args):
    """B's shape as numpy broadcasting against A sees it (the legacy form with broadcast=1)."""
    if not args.get("broadcast"):
        return tuple(b_shape)
    if int(np.prod(b_shape)) == 1:
        return ()
    axis = args.get("axis", args["order"].find(args["axis_str"]) if "axis_str" in args
                    else len(a_shape) - len(b_shape))
    return (1,) * axis + tuple(b_shape) + (1,) * (len(a_shape) - axis - len(b_shape))


BINARY_TORCH = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}


@SOME
@given(data=st.data(), op_type=st.sampled_from(sorted(BINARY_TORCH)), legacy=st.booleans())
def test_binary_gradient_reduces_over_broadcast_dims(data, op_type, legacy):
    if legacy:
        a_shape, b_shape, args = data.draw(legacy_shapes())
    else:
        (a_shape, b_shape), args = data.draw(numpy_shapes()), {}
    a = uniform(data.draw, a_shape, -2, 2)
    sign = np.where(uniform(data.draw, b_shape, 0, 1) < 0.5, -1, 1)
    b = (uniform(data.draw, b_shape, 0.5, 2) * sign).astype(np.float32)  # |b| >= 0.5 for Div
    view = legacy_view(a_shape, b_shape, args)
    fn = BINARY_TORCH[op_type]
    da, db = check_gradient(op_type, [a, b], torch_fn=lambda p, q: fn(p, q.reshape(view)),
                            **args)
    assert da.shape == a_shape and db.shape == b_shape


def test_binary_gradient_of_a_scalar_b_sums_everything():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for b_shape in [(), (1,), (1, 1)]:
        b = np.full(b_shape, 2.0, np.float32)
        _, (da, db) = run_gradient("Mul", [a, b], broadcast=1)
        assert db.shape == b_shape and float(db.sum()) == a.sum()
        np.testing.assert_array_equal(da, np.full((2, 3), 2.0))
        _, (_, db) = run_gradient("Div", [a, b])  # numpy form: B broadcasts the same way
        np.testing.assert_allclose(db.sum(), -(a / 4).sum())


def test_div_gradient_takes_caffe2s_older_three_inputs():
    """DivGradient(B, C, dC), as Caffe2 1.10.2 still runs it (its test_div_legacy_grad):
    A has C's shape. Values from Caffe2."""
    b, c = np.float32([2, 4, -1]), np.float32([[1, 2, 3], [4, 5, 6]])
    dc = np.float32([[1, 1, 2], [0.5, -1, 1]])
    da, db = run("DivGradient", [b, c, dc], outputs=2)
    np.testing.assert_array_equal(da, [[0.5, 0.25, -2], [0.25, -0.25, -1]])
    np.testing.assert_array_equal(db, [-1.5, 0.75, 12])
    da, db = run("DivGradient", [np.float32([[2], [4]]), c, dc], outputs=2, broadcast=1, axis=0)
    np.testing.assert_array_equal(da, [[0.5, 0.5, 1], [0.125, -0.25, 0.25]])
    np.testing.assert_array_equal(db, [[-4.5], [-0.75]])


def test_mul_gradient_in_place_over_dc_as_caffe2s_own_test():
    # caffe2/python/operator_test/elementwise_ops_test.py::test_mul_gradient_inplace_or_broadcast
    r = np.random.default_rng(0)
    dc, a, b = (r.random((3, 4)).astype(np.float32) for _ in range(3))
    da, db = run("MulGradient", [dc, a, b], ["dC", "dB"], input_names=["dC", "A", "B"])
    np.testing.assert_allclose(da, b * dc)
    np.testing.assert_allclose(db, a * dc)
    # Caffe2 1.10.2 returned zeros for dA (= dC) and dB here: it zeroes dA before it reads
    # dC once B broadcasts. c2compile computes the gradient.
    b1 = r.random(4).astype(np.float32)
    da, db = run("MulGradient", [dc, a, b1], ["dC", "dB"], input_names=["dC", "A", "B"])
    np.testing.assert_allclose(da, b1 * dc)
    np.testing.assert_allclose(db, (a * dc).sum(axis=0), rtol=1e-6)


@FEW
@given(data=st.data(), form=st.sampled_from(["same", "legacy", "arg"]))
def test_pow_gradient(data, form):
    if form == "arg":
        check_gradient("Pow", [uniform(data.draw, data.draw(small_shapes()), 0.4, 2)],
                       torch_fn=lambda t: t ** c32(-1.3), exponent=-1.3)
        return
    if form == "same":
        shape = data.draw(small_shapes())
        a_shape, b_shape, args = shape, shape, {}
    else:
        a_shape, b_shape, args = data.draw(legacy_shapes())
    x = uniform(data.draw, a_shape, 0.4, 2)
    e = uniform(data.draw, b_shape, -2, 2)
    view = legacy_view(a_shape, b_shape, args)
    check_gradient("Pow", [x, e], torch_fn=lambda p, q: p ** q.reshape(view), **args)


def test_pow_in_place_uses_caffe2s_output_power():
    # Y = X ** e overwrote X: Caffe2 raises Y to (e - 1) / e to get X ** (e - 1) back
    x = np.float32([0.5, 1.5, 2.0])
    op = core.CreateOperator("Pow", ["X"], ["X"], exponent=3.0)
    ops, g_input = core.GradientRegistry.GetGradientForOp(op, ["gY"])
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("Pow", ["X"], ["X_grad"]), ("Mul", ["X_grad", "gY"], ["X_grad"]),
        ("Scale", ["X_grad"], ["X_grad"])]
    assert ops[0].arg[0].f == np.float32(2 / 3)
    net = core.Net("pow_in_place")
    net.Pow("X", "X", exponent=3.0)
    net.AddGradientOperators({"X": "gY"})
    workspace.FeedBlob("X", x)
    workspace.FeedBlob("gY", np.float32([1, 2, -1]))
    with config.patch(backend="reference"):
        workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("X_grad"), 3 * x ** 2 * [1, 2, -1], rtol=1e-5)


def test_pow_gradients_caffe2_gets_wrong_are_errors():
    # in place, the output gradient X_grad is also the input gradient: Caffe2's first op
    # overwrote it before reading it (a wrong gradient, silently)
    with pytest.raises(GradientError, match="overwrite") as e:
        gradient_ops("Pow", ["X"], ["X"], exponent=2.0)
    assert e.value.op_type == "Pow" and e.value.blob == "X_grad"
    with pytest.raises(GradientError, match="exponent 0"):
        core.GradientRegistry.GetGradientForOp(
            core.CreateOperator("Pow", ["X"], ["X"], exponent=0.0), ["g"])
    for outs in (["X"], ["E"]):  # Caffe2: "cannot be carried out if Pow uses in-place"
        with pytest.raises(GradientError, match="in place"):
            gradient_ops("Pow", ["X", "E"], outs)


@FEW
@given(data=st.data(), n=st.integers(1, 4), shape=small_shapes(), op_type=st.sampled_from(
    ["Max", "Min"]))
def test_max_min_gradient(data, n, shape, op_type):
    """Inputs at least 0.3 apart everywhere: no tie within a finite-difference step."""
    r = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ranks = np.argsort(r.random((n,) + shape), axis=0)
    xs = list((ranks * 0.3 + r.uniform(-1, 1, shape)).astype(np.float32))
    reduce = torch.amax if op_type == "Max" else torch.amin
    check_gradient(op_type, xs, torch_fn=lambda *t: reduce(torch.stack(t), dim=0))


def test_sum_hands_its_output_gradient_to_every_input():
    xs = [np.float32([1, 2]), np.float32([3, 4])]
    g = np.float32([0.5, -1])
    _, grads = run_gradient("Sum", xs, output_grads=[g])
    for d in grads:
        np.testing.assert_array_equal(d, g)


# ----------------------------------------------------------------------------- errors

def test_ops_without_gradient_are_errors_naming_them():
    # Caffe2: SHOULD_NOT_DO_GRADIENT (Sign, Not, comparisons, logic ops) and
    # GRADIENT_NOT_IMPLEMENTED_YET (Floor, Ceil) both raise when a gradient reaches them
    for op_type, n in [("Sign", 1), ("Floor", 1), ("Ceil", 1), ("Not", 1), ("EQ", 2),
                       ("LT", 2), ("And", 2)]:
        op = core.CreateOperator(op_type, [f"x{i}" for i in range(n)], ["y"])
        with pytest.raises(GradientError, match=op_type) as e:
            core.GradientRegistry.GetGradientForOp(op, ["g"])
        assert e.value.op_type == op_type


def test_cast_gradient_needs_from_type():
    with pytest.raises(GradientError, match="from_type") as e:
        gradient_ops("Cast", 1, to=core.DataType.FLOAT)
    assert e.value.op_type == "Cast"
    with pytest.raises(GradientError, match="unknown data type 'FLOT'"):
        gradient_ops("Cast", 1, to=core.DataType.FLOAT, from_type="FLOT")


@pytest.mark.parametrize("op_type", ["Log", "Sqr", "Softsign"])
def test_in_place_ops_whose_gradient_needs_x_are_errors(op_type):
    # Caffe2 read the overwritten X (that is Y) and silently gave a wrong gradient (its own
    # softsign test skips the gradient check in place)
    with pytest.raises(GradientError, match="overwrote") as e:
        gradient_ops(op_type, ["X"], ["X"])
    assert e.value.op_type == op_type and e.value.blob == "X"


def test_in_place_max_min_gradient_is_an_error():
    # Caffe2 emitted MaxGradient writing dX over dY, which its schema then refused
    for op_type in ("Max", "Min"):
        with pytest.raises(GradientError, match="ran in place on 'a'") as e:
            gradient_ops(op_type, ["a", "b"], ["a"])
        assert e.value.op_type == op_type


def test_in_place_ops_whose_gradient_needs_only_y_are_fine():
    x = np.float32([0.25, 1.0, 4.0])
    for op_type, fn in [("Sqrt", np.sqrt), ("Exp", np.exp)]:
        _, (dx,) = run_gradient(op_type, [x], ["X"], input_names=["X"],
                                output_grads=[np.ones(3, np.float32)])
        expect = 0.5 / np.sqrt(x) if op_type == "Sqrt" else np.exp(x)
        np.testing.assert_allclose(dx, expect, rtol=1e-6)


def test_bad_gradient_op_inputs_name_the_op_and_blob():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeError, match="'in0' has shape \\[2, 3\\] but the gradient 'in1'") as e:
        run("SigmoidGradient", [x, np.ones(3, np.float32)])
    assert e.value.op_type == "SigmoidGradient"
    with pytest.raises(ShapeError, match="float64"):
        run("ReluGradient", [x.astype(np.float64), x.astype(np.float64)])
    with pytest.raises(ShapeError, match="give C \\[2, 3\\]") as e:
        run("AddGradient", [np.ones((3, 2), np.float32), x, x[0]], outputs=2)
    assert e.value.blob == "in0"
    with pytest.raises(ShapeError, match="in-place output 'in0' would change shape"):
        run("MulGradient", [x, x[0], x], ["in0", "db"], input_names=["in0", "a", "b"])
    with pytest.raises(ArgumentError, match="3 gradients asked for 2 inputs"):
        run("MaxGradient", [x, x, x, x], outputs=3)
    with pytest.raises(OpError, match="cannot run in place"):  # Caffe2's schema: no pair
        run("AbsGradient", [x, x], ["a"], input_names=["a", "b"])
    with pytest.raises(ShapeError, match="takes float32, float64"):
        run("SumReduceLike", [x.astype(np.int32), x])


# ----------------------------------------------------------------------------- Caffe2 style

class TestElementwiseGradientChecks(hu.HypothesisTestCase):
    """Gradient checks as Caffe2's own operator tests write them (GradientChecker)."""

    @settings(max_examples=8, deadline=None)
    @given(X=hu.tensor(min_dim=1, max_dim=3, elements=hu.floats(0.5, 2.0)),
           op_type=st.sampled_from(["Sigmoid", "Tanh", "Log", "Sqrt", "Softsign", "Elu"]),
           **hu.gcs_cpu_only)
    def test_unary(self, X, op_type, gc, dc):
        op = core.CreateOperator(op_type, ["X"], ["Y"])
        self.assertGradientChecks(gc, op, [X], 0, [0], stepsize=0.01)

    @settings(max_examples=8, deadline=None)
    @given(X=hu.tensor(min_dim=2, max_dim=2, elements=hu.floats(0.5, 2.0)),
           op_type=st.sampled_from(["Add", "Sub", "Mul", "Div", "Pow"]), **hu.gcs_cpu_only)
    def test_legacy_broadcast(self, X, op_type, gc, dc):
        B = (X[0] * 0.5 + 0.5).astype(np.float32)
        op = core.CreateOperator(op_type, ["A", "B"], ["C"], broadcast=1)
        for i in (0, 1):  # dB sums over A's rows: a smaller step keeps the estimate close
            self.assertGradientChecks(gc, op, [X, B], i, [0], stepsize=0.01, threshold=0.01)
