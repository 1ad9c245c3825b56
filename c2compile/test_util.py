"""Caffe2's `test_util`: the unittest base class of Caffe2's Python tests, and small helpers.

`TestCase.setUp` gives every test an empty current workspace rooted in a temp folder of its
own (removed in tearDown), plus `self.ws`: a standalone workspace (Caffe2's
`workspace.C.Workspace()`) that tests may use instead of the module-level functions.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import unittest

import numpy as np

from c2compile import workspace
from c2compile.runtime.workspace import Workspace as _RuntimeWorkspace
from c2compile.runtime.workspace import _to_netdef, bind_net, bind_ops


def rand_array(*dims) -> np.ndarray:
    """float32 values uniform in [-0.5, 0.5); `rand_array()` is a 0-d array, not a float."""
    return np.array(np.random.rand(*dims) - 0.5).astype(np.float32)


def randBlob(name, type, *dims, **kwargs) -> None:
    offset = kwargs.get("offset", 0.0)
    workspace.FeedBlob(name, np.random.rand(*dims).astype(type) + offset)


def randBlobFloat32(name, *dims, **kwargs) -> None:
    randBlob(name, np.float32, *dims, **kwargs)


def randBlobsFloat32(names, *dims, **kwargs) -> None:
    for name in names:
        randBlobFloat32(name, *dims, **kwargs)


def numOps(net) -> int:
    return len(net.Proto().op)


def str_compare(a, b, encoding: str = "utf8") -> bool:
    """Compare str/bytes regardless of which of the two each is."""
    if isinstance(a, bytes):
        a = a.decode(encoding)
    if isinstance(b, bytes):
        b = b.decode(encoding)
    return a == b


def get_default_test_flags() -> list[str]:
    return ["caffe2", "--caffe2_log_level=0"]


def caffe2_flaky(test_method):
    """Mark a test flaky: it runs only when CAFFE2_RUN_FLAKY_TESTS=1 (and others then don't)."""
    test_method.__caffe2_flaky__ = True
    return test_method


def is_flaky_test_mode() -> bool:
    return os.getenv("CAFFE2_RUN_FLAKY_TESTS", "0") == "1"


# ----------------------------------------------------------------------------- shape rule check

def check_inferred(op, input_values, output_values, ensure: bool = False,
                   outputs=None) -> list[str]:
    """Where c2compile's shape/type rule for `op` disagrees with what it really produced.

    `input_values` are the arrays the op read (in order), `output_values` what it wrote for
    the outputs at indices `outputs` (all of them by default). Returns one message per
    disagreement: a known shape or dtype that differs, or, with `ensure`, an output whose
    shape the rule left unknown. A rule that raises on inputs the op accepted is reported too.
    """
    from c2compile.errors import C2Error
    from c2compile.ops.schema import bind
    from c2compile.runtime.reference import type_of

    outputs = list(range(len(op.output))) if outputs is None else list(outputs)
    where = f"shape inference of {op.type}"
    try:
        bound = bind(op, 0)
        inferred = bound.opdef.infer(bound, *[type_of(v) for v in input_values])
    except (C2Error, ValueError, TypeError, IndexError) as e:
        return [f"{where} raised {type(e).__name__} on inputs the op ran on: {e}"]
    problems = []
    for idx, value in zip(outputs, output_values):
        name = op.output[idx]
        t = inferred[idx] if idx < len(inferred) else None
        if t is None or t.shape is None:
            if ensure:
                problems.append(f"{where}: shape of output '{name}' was not inferred")
            continue
        if not isinstance(value, np.ndarray):
            continue
        if tuple(t.shape) != value.shape:
            problems.append(f"{where}: output '{name}' inferred shape {list(t.shape)}, "
                            f"real {list(value.shape)}")
        if t.dtype is not None and np.dtype(t.dtype) != value.dtype:
            problems.append(f"{where}: output '{name}' inferred dtype {t.dtype}, "
                            f"real {value.dtype}")
    return problems


# ----------------------------------------------------------------------------- standalone workspace

class _Blob:
    """A handle on one blob of a StandaloneWorkspace (Caffe2's C.Blob: feed/fetch)."""

    def __init__(self, ws: "StandaloneWorkspace", name: str):
        self._ws, self.name = ws, name

    def feed(self, arr, device_option=None) -> bool:
        self._ws.feed_blob(self.name, arr, device_option)
        return True

    def fetch(self):
        return self._ws.fetch_blob(self.name)

    def __repr__(self) -> str:
        return f"<Blob {self.name!r}>"


class _Blobs:
    def __init__(self, ws: "StandaloneWorkspace"):
        self._ws = ws

    def __getitem__(self, name) -> _Blob:
        if not self._ws.has_blob(name):
            raise KeyError(name)
        return _Blob(self._ws, str(name))

    def __contains__(self, name) -> bool:
        return self._ws.has_blob(name)

    def __iter__(self):
        return iter(sorted(self._ws._impl.blobs))

    def __len__(self) -> int:
        return len(self._ws._impl.blobs)

    def keys(self):
        return sorted(self._ws._impl.blobs)

    def items(self):
        return [(k, _Blob(self._ws, k)) for k in self.keys()]


class StandaloneWorkspace:
    """Caffe2's `workspace.C.Workspace()`: a workspace of its own, not the current one.

    run(op | net | core.Net | plan | step), create_net/run_net, create_blob(name).feed(arr),
    blobs[name].fetch(), feed_blob/fetch_blob/has_blob/remove_blob, as Caffe2's pybind object
    plus the methods its `workspace` module added to it.
    """

    def __init__(self, name: str = "standalone"):
        self._impl = _RuntimeWorkspace(name)

    # -- blobs
    @property
    def blobs(self) -> _Blobs:
        return _Blobs(self)

    def create_blob(self, name) -> _Blob:
        return _Blob(self, str(name))

    def feed_blob(self, name, arr, device_option=None) -> bool:
        name = str(name)
        if isinstance(arr, str):
            arr = arr.encode("utf-8")
        if isinstance(arr, bytes):
            self._impl.blobs[name] = arr
        else:
            self._impl.feed(name, arr)
        return True

    def fetch_blob(self, name):
        return self._impl.fetch(str(name))

    def has_blob(self, name) -> bool:
        return str(name) in self._impl.blobs

    def remove_blob(self, name) -> None:
        self._impl.blobs.pop(str(name), None)

    # -- running
    def run(self, obj) -> bool:
        from c2compile.plan import ExecutionStep, Plan, as_plandef
        if isinstance(obj, (Plan, ExecutionStep)) or hasattr(obj, "execution_step"):
            from c2compile.runtime.plan_executor import run_plan
            run_plan(self._impl, workspace._copy(as_plandef(obj)))  # as RunPlan runs it
            return True
        if hasattr(obj, "Proto"):
            obj = obj.Proto()
        if hasattr(obj, "external_input"):  # NetDef
            self._impl.run_ops(bind_net(obj))
        elif hasattr(obj, "type") and hasattr(obj, "input"):  # OperatorDef
            self._impl.run_ops(bind_ops([obj]))
        else:
            raise ValueError(f"Workspace.run takes an OperatorDef, NetDef, PlanDef, "
                             f"ExecutionStep, core.Net or core.Plan, got {type(obj).__name__}")
        return True

    def create_net(self, net, overwrite: bool = False):
        netdef = _to_netdef(net)
        copy = type(netdef)()
        copy.CopyFrom(netdef)
        self._impl.create_net(copy, overwrite)
        return True

    def run_net(self, name, num_iter: int = 1) -> bool:
        self._impl.run_net(workspace.GetNetName(name), num_iter)
        return True

    @property
    def nets(self) -> list[str]:
        return sorted(self._impl.nets)

    def __repr__(self) -> str:
        return f"<StandaloneWorkspace {len(self._impl.blobs)} blobs>"


# ----------------------------------------------------------------------------- TestCase

class TestCase(unittest.TestCase):
    """Every test starts in an empty current workspace rooted in its own temp folder."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        workspace.GlobalInit(get_default_test_flags())

    def setUp(self):
        super().setUp()
        method = getattr(self, self._testMethodName)
        flaky = getattr(method, "__caffe2_flaky__", False)
        if is_flaky_test_mode() and not flaky:
            raise unittest.SkipTest("Non-flaky tests are skipped in flaky test mode")
        if not is_flaky_test_mode() and flaky:
            raise unittest.SkipTest("Flaky tests are skipped in regular test mode")
        self.tempdir = tempfile.mkdtemp(prefix="c2compile_test_")
        self.addCleanup(shutil.rmtree, self.tempdir, True)
        self.ws = StandaloneWorkspace()
        self._old_root = workspace.RootFolder()
        workspace.ResetWorkspace(self.tempdir)

    def tearDown(self):
        # Back to the root folder the test found (the temp folder is about to go).
        old = self._old_root if os.path.isdir(self._old_root) else os.getcwd()
        workspace.ResetWorkspace(old)
        super().tearDown()

    def assertArrayEqual(self, a, b, msg: str = "") -> None:
        np.testing.assert_array_equal(a, b, err_msg=msg)

    def assertArrayAlmostEqual(self, a, b, rtol: float = 1e-5, atol: float = 1e-8,
                               msg: str = "") -> None:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=msg)
