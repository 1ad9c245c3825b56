"""`import c2compile.compat` makes Caffe2 programs and Caffe2-style op tests run on c2compile.

Every test runs in a subprocess, so this process's sys.modules never sees `caffe2`.
"""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["CAFFE2_HYPOTHESIS_PROFILE"] = "dev"  # Caffe2's: 10 examples per test
    env.pop("HYPOTHESIS_PROFILE", None)
    return env


def _run(args, cwd):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _run_script(code, cwd):
    rc, out = _run(["-c", textwrap.dedent(code)], cwd)
    assert rc == 0, out
    return out


def test_caffe2_program_runs_unchanged(tmp_path):
    out = _run_script("""
        import sys
        import numpy as np
        import c2compile.compat
        from caffe2.python import core, workspace
        from caffe2.proto import caffe2_pb2
        import caffe2.python.hypothesis_test_util as hu
        import c2compile.core, c2compile.workspace

        # the modules are c2compile's own objects (state is shared), specs untouched
        assert core is c2compile.core and core.__spec__.name == "c2compile.core"
        assert hu.HypothesisTestCase.__module__ == "c2compile.hypothesis_test_util"
        assert caffe2_pb2.CPU == 0 and caffe2_pb2.DeviceOption is \\
            c2compile.proto.caffe2_pb2.DeviceOption

        net = core.Net("compat_net")
        net.Relu(["X"], ["Y"])
        net.Scale(["Y"], ["Z"], scale=2.0)
        workspace.FeedBlob("X", np.array([-1.0, 0.5, 3.0], dtype=np.float32))
        workspace.CreateNet(net)
        workspace.RunNet(net.Proto().name)
        np.testing.assert_allclose(workspace.FetchBlob("Z"), [0.0, 1.0, 6.0])
        assert c2compile.workspace.FetchBlob("Z").tolist() == [0.0, 1.0, 6.0]

        # what Caffe2's C extension offered
        C = workspace.C
        assert C is sys.modules["caffe2.python._import_c_extension"]
        assert not (C.has_mkldnn or C.use_mkldnn or C.has_cuda_support or C.has_gpu_support)
        assert not workspace.has_gpu_support and not workspace.has_hip_support
        assert workspace.NumGpuDevices() == 0 and workspace.GpuDeviceType == caffe2_pb2.CUDA
        schema = C.OpSchema.get("Relu")
        assert (schema.min_input, schema.max_input, schema.min_output) == (1, 1, 1)
        assert C.OpSchema.get("NoSuchOp") is None
        assert "Relu" in workspace.RegisteredOperators()
        ws = workspace.C.Workspace()
        ws.create_blob("A").feed(np.ones(2, np.float32))
        ws.run(core.CreateOperator("Relu", ["A"], ["B"]))
        assert ws.blobs["B"].fetch().tolist() == [1.0, 1.0] and not workspace.HasBlob("B")

        from caffe2.python import net_drawer, test_util, gradient_checker, device_checker
        from caffe2.python import utils, scope, build, net_builder
        assert net_drawer is sys.modules["c2compile.net_drawer"]
        assert len(net_drawer.GetPydotGraph(net).get_edges()) > 0
        # what Caffe2's operator tests import at the top besides the test kit
        import caffe2.python.hip_test_util as hiputl
        import caffe2.python.serialized_test.serialized_test_util as serial
        from caffe2.python import brew, model_helper
        from caffe2.python.model_helper import ModelHelper
        assert not hiputl.run_in_hip(caffe2_pb2.DeviceOption(), [caffe2_pb2.DeviceOption()])
        assert hiputl.run_in_hip(caffe2_pb2.DeviceOption(), [hu.hip_do])
        assert workspace.GetCuDNNVersion() == 0 and workspace.GetCUDAVersion() == 0
        case = serial.SerializedTestCase()
        with case.set_disable_serialized_check(True):
            assert serial._output_context.disable_serialized_check
        assert not serial._output_context.disable_serialized_check
        assert ModelHelper(name="m").net.Name().startswith("m")
        try:
            brew.conv(None, "x", "y", 1, 1, 3)
        except RuntimeError as e:
            assert "first input of helper function should be model" in str(e), e
        else:
            raise AssertionError("brew helpers need a model")
        try:
            import caffe2.python.no_such_module
        except ModuleNotFoundError as e:
            assert "c2compile.compat provides" in str(e)
        else:
            raise AssertionError("unknown caffe2 modules must not import")

        c2compile.compat.uninstall()
        assert not [m for m in sys.modules if m.split(".")[0] == "caffe2"]
        try:
            import caffe2
        except ModuleNotFoundError:
            print("UNINSTALLED")
    """, tmp_path)
    assert "UNINSTALLED" in out


def test_real_caffe2_imported_first_is_left_alone(tmp_path):
    fake = tmp_path / "site" / "caffe2"
    (fake / "python").mkdir(parents=True)
    (fake / "__init__.py").write_text("REAL = True\n")
    (fake / "python" / "__init__.py").write_text("")
    _run_script(f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path / "site")!r})
        import caffe2
        assert caffe2.REAL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import c2compile.compat
        assert any(w.category is RuntimeWarning and "real caffe2" in str(w.message)
                   for w in caught), caught
        assert sys.modules["caffe2"] is caffe2 and not c2compile.compat.installed()

        assert c2compile.compat.install(force=True)
        import caffe2 as ours
        assert ours is not caffe2 and ours.__c2compile_compat__
        from caffe2.python import core
        assert core.__name__ == "c2compile.core"
    """, tmp_path)
    # a real caffe2 that is on the path but not imported yet is shadowed
    _run_script(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / "site")!r})
        import c2compile.compat
        import caffe2
        assert caffe2.__c2compile_compat__ and not hasattr(caffe2, "REAL")
    """, tmp_path)


CONFTEST = """
import c2compile.compat  # noqa: F401  (the one line a Caffe2 test suite needs)
"""

# Written as Caffe2's own operator tests are (caffe2/python/operator_test/*.py).
RELU_TEST = '''
import unittest

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

import caffe2.python.hypothesis_test_util as hu
import caffe2.python.mkl_test_util as mu
import caffe2.python.serialized_test.serialized_test_util as serial
from caffe2.python import core, workspace


class TestRelu(serial.SerializedTestCase):
    @given(X=hu.tensor(), in_place=st.booleans(),
           engine=st.sampled_from(["", "CUDNN"]), **mu.gcs)
    @settings(deadline=10000)
    def test_relu(self, X, in_place, engine, gc, dc):
        op = core.CreateOperator("Relu", ["X"], ["X"] if in_place else ["Y"], engine=engine)

        def relu_ref(X):
            return [np.maximum(X, 0.0)]

        X += 0.02 * np.sign(X)
        X[X == 0.0] += 0.02
        self.assertReferenceChecks(gc, op, [X], relu_ref, ensure_outputs_are_inferred=True)
        self.assertDeviceChecks(dc, op, [X], [0])

    @serial.given(X=hu.tensor(elements=hu.floats(-3.0, 3.0)),
                  alpha=hu.floats(min_value=0.1, max_value=2.0),
                  inplace=st.booleans(), **hu.gcs)
    def test_leaky_relu(self, X, alpha, inplace, gc, dc):
        def leaky_relu_ref(X):
            Y = X.copy()
            neg = X <= 0
            Y[neg] = Y[neg] * alpha
            return (Y,)

        op = core.CreateOperator("LeakyRelu", ["X"], ["Y" if not inplace else "X"],
                                 alpha=alpha)
        self.assertReferenceChecks(gc, op, [X], leaky_relu_ref, threshold=1e-3)
        self.assertDeviceChecks(dc, op, [X], [0])

    @given(X=hu.tensor(), **hu.gcs_cpu_only)
    def test_relu_gradient(self, X, gc, dc):
        X = np.where(X >= 0, X + 0.1, X - 0.1).astype(np.float32)  # no kink within a step
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        self.assertGradientChecks(gc, op, [X], 0, [0])

    @unittest.skipIf(not workspace.has_gpu_support, "Relu for float16 needs a GPU.")
    @given(X=hu.tensor(dtype=np.float16), **hu.gcs_gpu_only)
    def test_relu_fp16(self, X, gc, dc):
        raise AssertionError("must be skipped without a GPU backend")


class TestBadReference(hu.HypothesisTestCase):
    @given(X=hu.tensor(), **hu.gcs)
    def test_wrong_reference(self, X, gc, dc):
        op = core.CreateOperator("Relu", ["X"], ["Y"])
        self.assertReferenceChecks(gc, op, [X - 2.0], lambda X: [X])


if __name__ == "__main__":
    serial.testWithArgs()
'''


def test_caffe2_style_operator_tests_run_under_pytest(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "relu_op_test.py").write_text(RELU_TEST)
    rc, out = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    "relu_op_test.py"], tmp_path)
    assert rc == 1, out
    assert "1 failed, 3 passed, 1 skipped" in out, out
    assert "FAILED relu_op_test.py::TestBadReference::test_wrong_reference" in out, out
    assert "op Relu on CPU: output 0 'Y' is not matching the reference" in out, out
