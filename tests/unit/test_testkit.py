"""The Caffe2 test kit: hypothesis_test_util, device_checker, gradient_checker, test_util."""
import dataclasses
import os

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

import c2compile.hypothesis_test_util as hu
from c2compile import core, device_checker, gradient_checker, test_util, workspace
from c2compile.errors import C2Error
from c2compile.ops import schema
from c2compile.ops.schema import TensorType
from c2compile.proto import caffe2_pb2

SMALL = settings(max_examples=8, deadline=None)


def relu_ref(X):
    return [np.maximum(X, 0)]


def away_from_zero(X):
    X = X + 0.1 * np.sign(X)
    X[X == 0] = 0.1
    return X


# ----------------------------------------------------------------------------- reference checks

class TestReferenceChecks(hu.HypothesisTestCase):

    @given(X=hu.tensor(), in_place=st.booleans(), **hu.gcs)
    @SMALL
    def test_relu_passes(self, X, in_place, gc, dc):
        op = core.CreateOperator("Relu", ["X"], ["X" if in_place else "Y"])
        outs = self.assertReferenceChecks(gc, op, [X], relu_ref, ensure_outputs_are_inferred=True)
        np.testing.assert_array_equal(outs[0], np.maximum(X, 0))
        self.assertDeviceChecks(dc, op, [X], [0])

    def test_wrong_reference_fails_readably(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        X = np.array([[-1.0, 2.0, -3.0]], dtype=np.float32)
        with pytest.raises(AssertionError) as info:
            self.assertReferenceChecks(hu.cpu_do, op, [X], lambda X: [X])
        msg = str(info.value)
        assert "op Relu on CPU" in msg
        assert "output 0 'Y' is not matching the reference" in msg
        assert "(inputs: X: float32 [1, 3])" in msg  # the inputs it ran on
        assert "Mismatched elements: 2 / 3" in msg

    def test_threshold_and_atol(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        X = np.array([1.0, 2.0], dtype=np.float32)
        off = lambda X: [X + 1e-3]  # noqa: E731
        with pytest.raises(AssertionError):
            self.assertReferenceChecks(hu.cpu_do, op, [X], off)
        self.assertReferenceChecks(hu.cpu_do, op, [X], off, threshold=1e-2)
        self.assertReferenceChecks(hu.cpu_do, op, [X], off, atol=1e-2)

    def test_reference_must_return_a_sequence(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        with pytest.raises(RuntimeError, match="wrong reference implementation"):
            self.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)],
                                       lambda X: np.maximum(X, 0))

    def test_reference_output_count_must_match(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        with pytest.raises(AssertionError, match="returned 2 outputs for the op's 1"):
            self.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)],
                                       lambda X: [X, X])

    def test_outputs_to_check_selects(self):
        op = core.CreateOperator("Split", ["X"], ["A", "B"], axis=0)
        X = np.arange(4, dtype=np.float32).reshape(2, 2)
        self.assertReferenceChecks(hu.cpu_do, op, [X], lambda X: [X[1:]], outputs_to_check=[1])

    def test_missing_input_is_an_error(self):
        op = core.CreateOperator("Add", ["A", "B"], ["C"])
        with pytest.raises(ValueError, match="must supply an input for each input"):
            self.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)],
                                       lambda A: [A])

    def test_workspace_left_as_found(self):
        workspace.FeedBlob("keep", np.ones(3, np.float32))
        before = workspace.CurrentWorkspace()
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        self.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)], relu_ref)
        assert workspace.CurrentWorkspace() == before
        assert workspace.Blobs() == ["keep"]
        # and after a failing check too
        with pytest.raises(AssertionError):
            self.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)],
                                       lambda X: [X * 2])
        assert workspace.CurrentWorkspace() == before
        assert workspace.Blobs() == ["keep"]

    def test_reference_sees_the_original_inputs(self):
        seen = []
        X = np.array([-1.0, 1.0], dtype=np.float32)
        op = core.CreateOperator("Relu", ["X"], ["X"])  # in place: must not touch our X

        def ref(X):
            seen.append(X.copy())
            return [np.maximum(X, 0)]
        self.assertReferenceChecks(hu.cpu_do, op, [X], ref)
        np.testing.assert_array_equal(seen[0], [-1.0, 1.0])

    def test_string_outputs_compared_exactly(self):
        op = core.CreateOperator("Copy", ["X"], ["Y"])
        X = np.array([b"a", b"bc"], dtype=object)
        self.assertReferenceChecks(hu.cpu_do, op, [X], lambda X: [X])


def _patched_infer(monkeypatch, op_type, infer):
    opdef = schema._REGISTRY[op_type]
    monkeypatch.setitem(schema._REGISTRY, op_type, dataclasses.replace(opdef, infer=infer))


def test_shape_rule_disagreeing_with_the_output_fails(monkeypatch):
    _patched_infer(monkeypatch, "Relu", lambda ctx, x: [TensorType((7,), np.float32)])
    tc = hu.HypothesisTestCase()
    op = core.CreateOperator("Relu", ["X"], ["Y"])
    with pytest.raises(AssertionError, match=r"output 'Y' inferred shape \[7\], real \[2\]"):
        tc.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)], relu_ref)


def test_dtype_rule_disagreeing_with_the_output_fails(monkeypatch):
    _patched_infer(monkeypatch, "Relu", lambda ctx, x: [TensorType(x.shape, np.float64)])
    tc = hu.HypothesisTestCase()
    op = core.CreateOperator("Relu", ["X"], ["Y"])
    with pytest.raises(AssertionError, match="inferred dtype float64, real float32"):
        tc.assertReferenceChecks(hu.cpu_do, op, [np.ones(2, np.float32)], relu_ref)


def test_ensure_outputs_are_inferred(monkeypatch):
    _patched_infer(monkeypatch, "Relu", lambda ctx, x: [TensorType(None, np.float32)])
    tc = hu.HypothesisTestCase()
    op = core.CreateOperator("Relu", ["X"], ["Y"])
    X = np.ones(2, np.float32)
    tc.assertReferenceChecks(hu.cpu_do, op, [X], relu_ref)  # unknown shape: fine by default
    with pytest.raises(AssertionError, match="shape of output 'Y' was not inferred"):
        tc.assertReferenceChecks(hu.cpu_do, op, [X], relu_ref, ensure_outputs_are_inferred=True)


class TestOtherChecks(hu.HypothesisTestCase):

    def test_run_op_raises(self):
        op = core.CreateOperator("Add", ["A", "B"], ["C"])
        A, B = np.ones((2, 3), np.float32), np.ones((4,), np.float32)
        self.assertRunOpRaises(hu.cpu_do, op, [A, B], exception=C2Error, regexp="Add")
        with pytest.raises(AssertionError):  # it does not raise on good inputs
            self.assertRunOpRaises(hu.cpu_do, op, [A, A])

    def test_validation_checks(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        X = np.array([-1.0, 3.0], np.float32)
        got = {}

        def validator(X, Y):
            got.update(X=X, Y=Y)
            np.testing.assert_array_equal(Y, [0.0, 3.0])
        self.assertValidationChecks(hu.cpu_do, op, [X], validator)
        assert set(got) == {"X", "Y"}

        def by_lists(inputs, outputs):
            assert len(inputs) == 1 and len(outputs) == 1
        self.assertValidationChecks(hu.cpu_do, op, [X], by_lists, as_kwargs=False)

    def test_run_op_on_input(self):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        (Y,) = hu.runOpOnInput(hu.cpu_do, op, [np.array([-2.0, 2.0], np.float32)])
        np.testing.assert_array_equal(Y, [0.0, 2.0])
        assert workspace.Blobs() == []

    def test_setup_gives_a_temp_root_and_a_standalone_workspace(self):
        assert workspace.RootFolder() == self.tempdir
        assert os.path.isdir(self.tempdir)
        self.ws.create_blob("X").feed(np.array([-1.0, 1.0], np.float32))
        self.ws.run(core.CreateOperator("Relu", ["X"], ["Y"]))
        np.testing.assert_array_equal(self.ws.blobs["Y"].fetch(), [0.0, 1.0])
        assert "Y" in self.ws.blobs and not workspace.HasBlob("Y")  # not the current one


def test_temp_workspace_switches_back_on_error():
    workspace.FeedBlob("a", np.ones(1, np.float32))
    with pytest.raises(ZeroDivisionError):
        with hu.temp_workspace(b"scratch"):
            assert workspace.CurrentWorkspace() == "scratch"
            workspace.FeedBlob("tmp", np.ones(1, np.float32))
            1 / 0
    assert workspace.CurrentWorkspace() == "default"
    assert workspace.Blobs() == ["a"]
    workspace.SwitchWorkspace("scratch")
    assert workspace.Blobs() == []  # reset on the way out
    workspace.SwitchWorkspace("default")


def test_rand_array():
    a = test_util.rand_array(2, 3)
    assert a.shape == (2, 3) and a.dtype == np.float32
    assert np.all(a >= -0.5) and np.all(a < 0.5)
    assert test_util.rand_array().shape == ()


# ----------------------------------------------------------------------------- strategies

@given(X=hu.tensor(min_dim=2, max_dim=3, min_value=2, max_value=4))
@SMALL
def test_tensor_shape_bounds(X):
    assert isinstance(X, np.ndarray) and X.dtype == np.float32
    assert 2 <= X.ndim <= 3 and all(2 <= d <= 4 for d in X.shape)
    assert np.all(np.abs(X) <= 1.0)


@given(X=hu.tensor(dtype=np.int32), B=hu.tensor(dtype=np.bool_), D=hu.tensor(dtype=np.float64))
@SMALL
def test_tensor_dtypes(X, B, D):
    assert X.dtype == np.int32 and np.all(X >= 0)
    assert B.dtype == np.bool_
    assert D.dtype == np.float64 and np.all(np.abs(D) <= 1.0)


@given(Xs=hu.tensors(n=3, max_dim=2), V=hu.tensor1d(min_len=3, max_len=5))
@SMALL
def test_tensors_share_a_shape(Xs, V):
    assert len(Xs) == 3 and Xs[0].shape == Xs[1].shape == Xs[2].shape
    assert V.ndim == 1 and 3 <= V.shape[0] <= 5


@given(Vs=hu.tensors1d(n=2, min_len=1, max_len=3), Ns=hu.ntensors(1, 3, max_dim=2))
@SMALL
def test_tensors1d_and_ntensors(Vs, Ns):
    assert len(Vs) == 2 and Vs[0].ndim == 1 and Vs[0].shape == Vs[1].shape
    assert 1 <= len(Ns) <= 3 and len({n.shape for n in Ns}) == 1


@given(data=st.data(), size=st.integers(0, 8))
@SMALL
def test_lengths_and_segment_ids(data, size):
    lengths = data.draw(hu.lengths(size))
    assert lengths.dtype == np.int32 and lengths.sum() == size and np.all(lengths >= 0)
    ids = data.draw(hu.segment_ids(size, is_sorted=True))
    assert ids.shape == (size,)
    if size:
        assert ids[0] == 0 and np.all(np.diff(ids) >= 0) and np.all(np.diff(ids) <= 1)
    ids = data.draw(hu.segment_ids(size, is_sorted=False))
    assert np.all((0 <= ids) & (ids <= 2 * size))


@given(pair=hu.lengths_tensor(min_dim=1, max_dim=2))
@SMALL
def test_lengths_tensor(pair):
    data, lengths = pair
    assert lengths.sum() == data.shape[0]


@given(a=hu.arrays([6], dtype=np.int32, elements=st.integers(0, 100), unique=True))
@SMALL
def test_arrays_unique(a):
    assert a.shape == (6,) and len(set(a.tolist())) == 6


def test_elements_of_type_rejects_unknown_dtypes():
    with pytest.raises(ValueError, match="Unexpected dtype"):
        hu.elements_of_type(np.complex64)


def test_device_options_follow_present_backends():
    assert hu.device_options == device_checker.present_device_options() == [hu.cpu_do]
    assert hu.expanded_device_options == [hu.cpu_do]
    assert set(hu.gcs) == set(hu.gcs_cpu_only) == set(hu.gcs_gpu_only) == {"gc", "dc"}
    assert hu._gpu_do_list == [] and hu._cuda_do_list == []  # no GPU backend here


@given(**hu.gcs)
@SMALL
def test_gcs_draw_present_devices(gc, dc):
    assert gc == hu.cpu_do and dc == [hu.cpu_do]


def test_profiles_registered_without_overriding_the_suites_choice(monkeypatch):
    monkeypatch.delenv("CAFFE2_HYPOTHESIS_PROFILE", raising=False)
    monkeypatch.delenv("SANDCASTLE", raising=False)
    monkeypatch.delenv("TW_JOB_USER", raising=False)
    current = hypothesis.settings.get_current_profile_name()
    assert hu.register_profiles() is None  # this suite's conftest chose a profile
    for name in ("sandcastle", "dev", "debug"):
        hypothesis.settings.get_profile(name)
    assert hypothesis.settings.get_current_profile_name() == current
    assert hypothesis.settings.get_profile("debug").max_examples == 1000


def test_settings_wrapper_accepts_old_arguments():
    s = hu.settings(max_examples=3, timeout=2, min_satisfying_examples=1)
    assert s.max_examples == 3 and s.deadline.total_seconds() == 2


# ----------------------------------------------------------------------------- device checks

def _broken_backend(name="broken"):
    def run_op(op):
        workspace.RunOperatorOnce(op)
        for out in op.output:
            workspace.FeedBlob(out, workspace.FetchBlob(out) + 1)
    return device_checker.Backend(name, (caffe2_pb2.CPU,), run_op, workspace.RunNetOnce)


def test_device_check_compares_every_backend_with_the_reference():
    op = core.CreateOperator("Relu", ["X"], ["Y"])
    X = np.array([-1.0, 2.0], np.float32)
    dc = device_checker.DeviceChecker(0.01, [hu.cpu_do])
    assert dc.CheckSimple(op, [X], [0])
    device_checker.register_backend(_broken_backend())
    try:
        assert not dc.CheckSimple(op, [X], [0])
        assert "output 'Y': CPU (broken) differs from CPU (reference)" in dc.failure_message
        tc = hu.HypothesisTestCase()
        with pytest.raises(AssertionError, match=r"CPU \(broken\) differs"):
            tc.assertDeviceChecks([hu.cpu_do], op, [X], [0])
    finally:
        device_checker.unregister_backend("broken")
    assert [b.name for b in device_checker.backends()] == ["reference", "cython"]


def test_device_check_of_a_net():
    net = core.Net("dc_net")
    net.Relu(["X"], ["Y"])
    net.Sigmoid(["Y"], ["Z"])
    dc = device_checker.DeviceChecker(0.01, hu.device_options)
    assert dc.CheckNet(net, {"X": np.array([-1.0, 1.0], np.float32)})


def test_device_without_backend_is_a_clear_error():
    with pytest.raises(C2Error, match="no backend present for device CUDA"):
        device_checker.backends_for(hu.cuda_do)
    assert not device_checker.has_gpu_support()
    with pytest.raises(ValueError):
        device_checker.unregister_backend("reference")


# ----------------------------------------------------------------------------- gradients

def test_gradient_checks_use_the_ops_gradient_rule():
    tc = hu.HypothesisTestCase()
    op = core.CreateOperator("Relu", ["X"], ["Y"])
    X = np.array([[-1.0, 2.0, 0.5]], np.float32)
    tc.assertGradientChecks(hu.cpu_do, op, [X], 0, [0])
    tc.assertReferenceChecks(hu.cpu_do, op, [X], relu_ref, output_to_grad="Y",
                             grad_reference=lambda g, outs, ins: [g * (ins[0] > 0)])
    with pytest.raises(AssertionError, match="gradient reference"):
        tc.assertReferenceChecks(hu.cpu_do, op, [X], relu_ref, output_to_grad="Y",
                                 grad_reference=lambda g, outs, ins: [g + 1])
    net = core.Net("g")
    net.Relu("X", "Y")
    gradient_checker.NetGradientChecker.Check(net, ["Y"], {"X": X}, "X")
    assert workspace.CurrentWorkspace() == "default"


def test_check_simple_with_given_gradient_ops():
    # Y = 2X; with loss sum(Y^2)/2 the gradient fed back is dY = Y and dX = 2 dY.
    op = core.CreateOperator("Scale", ["X"], ["Y"], scale=2.0)
    X = np.array([[0.3, -0.7, 1.1]], np.float32)
    checker = gradient_checker.GradientChecker(stepsize=0.01, threshold=0.01)
    good = [core.CreateOperator("Scale", ["Y_grad"], ["X_grad"], scale=2.0)]
    ok, grad, estimate = checker.CheckSimple(op, [X], 0, [0], grad_ops=good,
                                             ensure_outputs_are_inferred=True)
    assert ok and grad.shape == estimate.shape == X.shape
    np.testing.assert_allclose(estimate, 4 * X, rtol=1e-3)
    bad = [core.CreateOperator("Scale", ["Y_grad"], ["X_grad"], scale=3.0)]
    ok, _, _ = checker.CheckSimple(op, [X], 0, [0], grad_ops=bad)
    assert not ok
    assert workspace.CurrentWorkspace() == "default" and workspace.Blobs() == []


def test_numeric_gradient_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    grad = gradient_checker.numeric_gradient(lambda v: float((v ** 3).sum()), x, 1e-4)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-6)
    np.testing.assert_array_equal(x, [[0.5, -1.0], [2.0, 0.25]])  # untouched
    only = gradient_checker.numeric_gradient(lambda v: float((v ** 3).sum()), x, 1e-4,
                                             indices=[0])
    assert only.flat[0] == pytest.approx(0.75) and not only.flat[1:].any()
    with pytest.raises(TypeError):
        gradient_checker.numeric_gradient(lambda v: 0.0, np.arange(3), 0.1)


@given(X=hu.tensor(max_dim=2))
@SMALL
def test_estimated_gradient_of_ops(X):
    X = away_from_zero(X)
    checker = gradient_checker.GradientChecker(stepsize=0.01, threshold=0.005)
    # loss = sum(relu(x)^2)/2  ->  d/dx = relu(x)
    relu = core.CreateOperator("Relu", ["X"], ["Y"])
    est = checker.EstimateGradient(relu, [X], 0, [0])
    assert est.shape == X.shape and est.dtype == X.dtype
    np.testing.assert_allclose(est, np.maximum(X, 0), atol=1e-2)
    # loss = sum((a*b)^2)/2  ->  d/da = a*b^2
    mul = core.CreateOperator("Mul", ["A", "B"], ["C"])
    B = np.full_like(X, 0.5)
    np.testing.assert_allclose(checker.EstimateGradient(mul, [X, B], 0, [0]), X * B * B,
                               atol=1e-2)
    assert workspace.CurrentWorkspace() == "default" and workspace.Blobs() == []


def test_net_estimated_gradient():
    net = core.Net("fd_net")
    net.Relu(["X"], ["Y"])
    X = np.array([-1.0, 0.5, 2.0], np.float32)
    est = gradient_checker.NetGradientChecker.EstimateGradient(net, ["Y"], {"X": X}, "X",
                                                               step_size=1e-2)
    np.testing.assert_allclose(est, [0.0, 1.0, 1.0], atol=1e-3)


@given(x=hu.floats(0.1, 2.0), y=hu.floats(min_value=-0.3, max_value=0.3))
@SMALL
def test_floats_are_float32_within_rounded_bounds(x, y):
    assert np.float32(x) == x and np.float32(y) == y
    assert hu.to_float32(0.1) <= x <= 2.0 and abs(y) <= hu.to_float32(0.3)
