"""Make `from caffe2.python import core, workspace` import c2compile.

One line, before anything imports caffe2:

    import c2compile.compat  # noqa: F401  (importing it calls install())

after which Caffe2 programs and Caffe2's own operator tests run unchanged:

    from caffe2.python import core, workspace
    from caffe2.proto import caffe2_pb2
    import caffe2.python.hypothesis_test_util as hu
    import caffe2.python.serialized_test.serialized_test_util as serial

How: `install()` puts a finder first on `sys.meta_path` that answers every `caffe2` and
`caffe2.*` import, lazily (nothing is imported before it is asked for):

* `caffe2.python.X` is c2compile's module `c2compile.X` itself (the same object, so state is
  shared) for core, utils, scope, hypothesis_test_util, gradient_checker, device_checker,
  test_util, brew, model_helper, optimizer, optimizer_context, visualize and
  net_drawer; so are the packages `caffe2.python.helpers`,
  `caffe2.python.modeling` and `caffe2.python.predictor` and every module under them
  (`modeling.initializers`, `predictor.predictor_exporter`, ...);
  `caffe2.python.predictor_constants` is `c2compile.predictor.predictor_constants`;
  `caffe2.proto.caffe2_pb2` and `metanet_pb2` are `c2compile.proto.caffe2_pb2` and
  `metanet_pb2`.
* `caffe2.python.workspace` is a thin view of `c2compile.workspace` that adds what Caffe2's
  workspace module had from its C extension: `C`, `Workspace` (a standalone workspace),
  `has_gpu_support`, `has_cuda_support`, `has_hip_support`, `GpuDeviceType`, `NumGpuDevices`,
  `RegisteredOperators`, `GetCuDNNVersion` (0: no cuDNN), ... (the device flags say which
  backends `c2compile.device_checker` has). Attributes set on it are set on
  `c2compile.workspace`.
* small stand-ins: `_import_c_extension` (= `workspace.C`), `serialized_test.serialized_test_util`
  (`SerializedTestCase`, `given` = hypothesis.given: no serialized data is compared),
  `mkl_test_util` (no MKL-DNN device), `hip_test_util` (`run_in_hip`), `build` and
  `net_builder`.
* any other `caffe2.*` name raises ModuleNotFoundError saying what compat provides.

A real Caffe2 install is shadowed only if it was not imported yet: when `caffe2` is already
in `sys.modules` (the program imported the real one first), `install()` warns and leaves it
alone, so one process never mixes the two; `install(force=True)` drops the real modules and
installs anyway. `uninstall()` removes the finder and every `caffe2*` module it made.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
import unittest
import warnings

from c2compile.errors import C2Error

# caffe2 module -> the c2compile module it is.
_ALIASES = {
    "caffe2.python.core": "c2compile.core",
    "caffe2.python.utils": "c2compile.utils",
    "caffe2.python.scope": "c2compile.scope",
    "caffe2.python.hypothesis_test_util": "c2compile.hypothesis_test_util",
    "caffe2.python.gradient_checker": "c2compile.gradient_checker",
    "caffe2.python.device_checker": "c2compile.device_checker",
    "caffe2.python.test_util": "c2compile.test_util",
    "caffe2.python.brew": "c2compile.brew",
    "caffe2.python.model_helper": "c2compile.model_helper",
    "caffe2.python.optimizer": "c2compile.optimizer",
    "caffe2.python.optimizer_context": "c2compile.optimizer_context",
    "caffe2.python.net_drawer": "c2compile.net_drawer",
    "caffe2.python.visualize": "c2compile.visualize",
    "caffe2.proto.caffe2_pb2": "c2compile.proto.caffe2_pb2",
    "caffe2.proto.metanet_pb2": "c2compile.proto.metanet_pb2",
    # Caffe2 kept the predictor's constants beside the package, not in it.
    "caffe2.python.predictor_constants": "c2compile.predictor.predictor_constants",
}
# Packages served with every module under them: caffe2.python.helpers.fc is
# c2compile.helpers.fc, and so on.
_PACKAGE_ALIASES = {
    "caffe2.python.helpers": "c2compile.helpers",
    "caffe2.python.modeling": "c2compile.modeling",
    "caffe2.python.predictor": "c2compile.predictor",
}
_PACKAGES = ("caffe2", "caffe2.python", "caffe2.proto", "caffe2.python.serialized_test")


def _module(name: str, doc: str, package: bool = False) -> types.ModuleType:
    mod = types.ModuleType(name, doc)
    mod.__c2compile_compat__ = True
    if package:
        mod.__path__ = []  # a package, but nothing on disk: only this finder serves it
    return mod


# ----------------------------------------------------------------------------- C extension

class _OpSchemaArg:
    def __init__(self, arg):
        self.name = arg.name
        self.description = arg.doc
        self.required = repr(arg.default) == "REQUIRED"
        self.default = None if self.required else arg.default

    def __repr__(self) -> str:
        return f"<OpSchema.Argument {self.name}>"


class _OpSchemaView:
    """What Caffe2's `C.OpSchema.get(type)` answered, read from c2compile's OpDef."""
    _INT_MAX = 2 ** 31 - 1

    def __init__(self, opdef):
        from c2compile.ops.schema import INF
        self._opdef = opdef
        self.name = opdef.type
        self.min_input, self.max_input = (min(v, self._INT_MAX) if v < INF else self._INT_MAX
                                          for v in opdef.inputs)
        self.min_output, self.max_output = (min(v, self._INT_MAX) if v < INF else self._INT_MAX
                                            for v in opdef.outputs)
        self.doc = opdef.doc
        self.args = [_OpSchemaArg(a) for a in opdef.args]
        self.input_desc: list = []
        self.output_desc: list = []
        self.private = False
        self.inf = self._INT_MAX

    def num_inputs_allowed(self, n: int) -> bool:
        return self.min_input <= n <= self.max_input

    def num_outputs_allowed(self, n: int) -> bool:
        return self.min_output <= n <= self.max_output

    def num_inputs_outputs_allowed(self, n_in: int, n_out: int) -> bool:
        return self.num_inputs_allowed(n_in) and self.num_outputs_allowed(n_out)

    def inplace_allowed(self, i: int, o: int) -> bool:
        return self._opdef.allows_inplace(i, o)

    def __repr__(self) -> str:
        return f"<OpSchema {self.name}>"


class OpSchema:
    @staticmethod
    def get(name: str):
        """The schema of op type `name`, or None when c2compile does not define it."""
        from c2compile.ops import all_ops
        opdef = all_ops().get(name)
        return None if opdef is None else _OpSchemaView(opdef)


def _registered_operators() -> list[str]:
    from c2compile.ops import all_ops
    return sorted(all_ops())


def _build_c_extension(name: str) -> types.ModuleType:
    from c2compile import device_checker, test_util
    mod = _module(name, "Stand-in for Caffe2's C extension (workspace.C).")
    mod.Workspace = test_util.StandaloneWorkspace
    mod.OpSchema = OpSchema
    mod.registered_operators = _registered_operators
    from c2compile.runtime import db  # Caffe2's Python DB API: create_db(type, path, Mode.x)
    mod.create_db, mod.Mode, mod.registered_dbs, mod.DB = (
        db.create_db, db.Mode, db.registered_dbs, db.PyDB)
    mod.has_mkldnn = False
    mod.use_mkldnn = False
    mod.use_ideep = False
    mod.is_asan = False
    mod.has_cuda_support = device_checker.has_cuda_support()
    mod.has_hip_support = device_checker.has_hip_support()
    mod.has_gpu_support = device_checker.has_gpu_support()
    mod.global_init = lambda args: importlib.import_module("c2compile.core").GlobalInit(args)
    return mod


# ----------------------------------------------------------------------------- workspace view

def _workspace_extras() -> dict:
    import numpy as np

    from c2compile import device_checker
    from c2compile.proto import caffe2_pb2
    gpu = caffe2_pb2.CUDA
    return {
        # values computed on each access: backends may register after import
        "has_gpu_support": device_checker.has_gpu_support,
        "has_cuda_support": device_checker.has_cuda_support,
        "has_hip_support": device_checker.has_hip_support,
        "GpuDeviceType": lambda: gpu,
        "NumGpuDevices": lambda: (lambda: device_checker.num_devices(gpu)),
        "NumCudaDevices": lambda: (lambda: device_checker.num_devices(caffe2_pb2.CUDA)),
        "NumHipDevices": lambda: (lambda: device_checker.num_devices(caffe2_pb2.HIP)),
        "RegisteredOperators": lambda: _registered_operators,
        "is_asan": lambda: False,
        "has_fbgemm": lambda: False,
        # What Caffe2 built without CUDA answered: no CUDA/cuDNN library (a "CUDNN" engine
        # runs the default engine here), no device properties.
        "GetCUDAVersion": lambda: (lambda: 0),
        "GetCuDNNVersion": lambda: (lambda: 0),
        "GetDeviceProperties": lambda: (lambda device_id: None),
        "GetGpuPeerAccessPattern": lambda: (lambda: np.array([])),
        "GetGPUMemoryInfo": lambda: (lambda: None),
    }


class _WorkspaceView(types.ModuleType):
    """`caffe2.python.workspace`: c2compile.workspace plus Caffe2's C-extension attributes."""

    # Names that must be Caffe2-shaped even where c2compile.workspace has its own meaning.
    _OVERRIDES = ("C", "Workspace")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "C":
            return importlib.import_module("caffe2.python._import_c_extension")
        if name == "Workspace":
            return importlib.import_module("c2compile.test_util").StandaloneWorkspace
        real = importlib.import_module("c2compile.workspace")
        try:
            return getattr(real, name)
        except AttributeError:
            pass
        extras = _workspace_extras()
        if name in extras:
            return extras[name]()
        raise AttributeError(f"caffe2.python.workspace (c2compile.compat) has no attribute "
                             f"{name!r}: c2compile.workspace does not provide it")

    def __setattr__(self, name, value):
        if name.startswith("__") or name == "__c2compile_compat__":
            super().__setattr__(name, value)
        else:
            setattr(importlib.import_module("c2compile.workspace"), name, value)

    def __dir__(self):
        real = importlib.import_module("c2compile.workspace")
        return sorted(set(dir(real)) | set(_workspace_extras()) | set(self._OVERRIDES))


def _build_workspace(name: str) -> types.ModuleType:
    mod = _WorkspaceView(name, "Caffe2's workspace module: c2compile.workspace plus workspace.C.")
    mod.__c2compile_compat__ = True
    return mod


# ----------------------------------------------------------------------------- test support

def _build_serialized_test_util(name: str) -> types.ModuleType:
    import hypothesis

    from c2compile import hypothesis_test_util as hu

    mod = _module(name, "Stand-in for Caffe2's serialized_test_util: serialized outputs are "
                        "neither written nor compared; the hypothesis checks run as usual.")

    output_context = threading.local()

    class SerializedTestCase(hu.HypothesisTestCase):
        should_serialize = False

        def assertSerializedOperatorChecks(self, inputs, outputs, gradient_operator, op,
                                           device_option, atol=1e-7, rtol=1e-7):
            """Caffe2 compared with outputs stored in its source tree; nothing to compare."""

        @contextlib.contextmanager
        def set_disable_serialized_check(self, val: bool):
            """Caffe2's switch for the stored-output comparison (which never runs here)."""
            orig = getattr(output_context, "disable_serialized_check", False)
            output_context.disable_serialized_check = val
            try:
                yield
            finally:
                output_context.disable_serialized_check = orig

    SerializedTestCase.__module__ = name

    def testWithArgs():
        parser = argparse.ArgumentParser()
        parser.add_argument("-G", "--generate-serialized", action="store_true")
        parser.add_argument("-O", "--output", default=None)
        parser.add_argument("-D", "--disable-serialized_check", action="store_true")
        parser.add_argument("-C", "--disable-gen-coverage", action="store_true")
        parser.add_argument("unittest_args", nargs="*")
        args = parser.parse_args()
        sys.argv[1:] = args.unittest_args
        unittest.main()

    mod.given = hypothesis.given
    mod.SerializedTestCase = SerializedTestCase
    mod.testWithArgs = testWithArgs
    mod.operator_test_type = "operator_test"
    mod._output_context = output_context
    # Where Caffe2 kept the stored outputs; nothing is read from or written to it here.
    mod.DATA_SUFFIX = "data"
    mod.TOP_DIR = ""
    mod.DATA_DIR = mod.DATA_SUFFIX
    return mod


def _build_mkl_test_util(name: str) -> types.ModuleType:
    import hypothesis.strategies as st

    from c2compile import hypothesis_test_util as hu
    from c2compile.proto import caffe2_pb2

    mod = _module(name, "Caffe2's mkl_test_util without an MKL-DNN device: gcs are hu's.")
    mod.cpu_do, mod.gpu_do = hu.cpu_do, hu.gpu_do
    mod.mkl_do = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.MKLDNN)
    mod.device_options = list(hu.device_options)
    mod.device_checker_device_options = lambda: st.just(mod.device_options)
    mod.gradient_checker_device_option = lambda: st.sampled_from(mod.device_options)
    mod.gcs = dict(gc=st.sampled_from(mod.device_options), dc=st.just(mod.device_options))
    mod.gcs_cpu_only = dict(hu.gcs_cpu_only)
    mod.gcs_gpu_only = dict(hu.gcs_gpu_only)
    mod.gcs_mkl_only = dict(gc=st.sampled_from([]), dc=st.just([]))
    mod.mkl_cpu_gpu_do = []
    return mod


def _build_hip_test_util(name: str) -> types.ModuleType:
    from c2compile.proto import caffe2_pb2

    mod = _module(name, "Caffe2's hip_test_util: whether a test's devices include HIP (ROCm).")

    def run_in_hip(gc, dc):
        return gc.device_type == caffe2_pb2.HIP or \
            caffe2_pb2.HIP in {d.device_type for d in dc}

    mod.run_in_hip = run_in_hip
    return mod


def _build_build(name: str) -> types.ModuleType:
    mod = _module(name, "Caffe2's build module: how this 'Caffe2' was built.")
    mod.build_options = {"BUILD_SHARED_LIBS": "ON", "USE_CUDA": "OFF", "USE_MKLDNN": "OFF",
                         "USE_ROCM": "OFF", "BACKEND": "c2compile"}
    mod.CAFFE2_NO_OPERATOR_SCHEMA = False
    return mod


class _NetBuilderUnavailable:
    def __init__(self, *args, **kwargs):
        raise C2Error("caffe2.python.net_builder (NetBuilder, ops.*) is not supported by "
                      "c2compile; build nets with core.Net")


def _build_net_builder(name: str) -> types.ModuleType:
    mod = _module(name, "Placeholder for Caffe2's net_builder: NetBuilder raises C2Error.")
    mod.NetBuilder = _NetBuilderUnavailable
    mod.Operations = _NetBuilderUnavailable
    return mod


_BUILDERS = {
    "caffe2.python.workspace": _build_workspace,
    "caffe2.python._import_c_extension": _build_c_extension,
    "caffe2.python.serialized_test.serialized_test_util": _build_serialized_test_util,
    "caffe2.python.mkl_test_util": _build_mkl_test_util,
    "caffe2.python.build": _build_build,
    "caffe2.python.net_builder": _build_net_builder,
    "caffe2.python.hip_test_util": _build_hip_test_util,
}


# ----------------------------------------------------------------------------- the finder

def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _target(fullname: str) -> str | None:
    """The c2compile module `fullname` aliases, if any."""
    if fullname in _ALIASES:
        return _ALIASES[fullname]
    for package, real in _PACKAGE_ALIASES.items():
        if fullname == package or fullname.startswith(package + "."):
            real = real + fullname[len(package):]
            return real if _has_module(real) else None
    return None


def provided() -> list[str]:
    """Every `caffe2*` module name compat can serve now."""
    names = set(_PACKAGES) | set(_ALIASES) | set(_BUILDERS) | set(_PACKAGE_ALIASES)
    return sorted(names)


class _Caffe2Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `caffe2` and `caffe2.*` imports with c2compile modules (see module doc)."""

    def __init__(self):
        self._saved_specs: dict[str, object] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "caffe2" and not fullname.startswith("caffe2."):
            return None
        if fullname in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if _target(fullname) is not None or fullname in _BUILDERS:
            return importlib.machinery.ModuleSpec(fullname, self)
        served = (n for n in provided() if n.startswith(("caffe2.python.", "caffe2.proto.")))
        raise ModuleNotFoundError(
            f"No module named {fullname!r}: c2compile.compat provides {', '.join(served)}",
            name=fullname)

    def create_module(self, spec):
        name = spec.name
        if name in _PACKAGES:
            return _module(name, f"{name} (c2compile.compat)", package=True)
        real = _target(name)
        if real is not None:
            mod = importlib.import_module(real)
            # The import system is about to set __spec__ to ours; exec_module puts it back.
            self._saved_specs[name] = mod.__spec__
            return mod
        return _BUILDERS[name](name)

    def exec_module(self, module):
        name = module.__spec__.name
        if name in self._saved_specs:
            module.__spec__ = self._saved_specs.pop(name)


_finder: _Caffe2Finder | None = None


def installed() -> bool:
    return _finder is not None and _finder in sys.meta_path


def _caffe2_modules() -> list[str]:
    return [n for n in sys.modules if n == "caffe2" or n.startswith("caffe2.")]


def install(force: bool = False) -> bool:
    """Route `caffe2` imports to c2compile; returns whether compat is active.

    Idempotent. If a real `caffe2` was imported already, warns and changes nothing unless
    `force`, which first drops every `caffe2*` entry of `sys.modules`.
    """
    global _finder
    if installed():
        return True
    existing = sys.modules.get("caffe2")
    if existing is not None and not getattr(existing, "__c2compile_compat__", False):
        if not force:
            warnings.warn(
                "c2compile.compat: a real caffe2 was imported before c2compile.compat, so "
                "'caffe2' keeps meaning Caffe2 in this process. Import c2compile.compat before "
                "anything imports caffe2, or call c2compile.compat.install(force=True).",
                RuntimeWarning, stacklevel=2)
            return False
    for name in _caffe2_modules():
        del sys.modules[name]
    _finder = _Caffe2Finder()
    sys.meta_path.insert(0, _finder)
    importlib.invalidate_caches()
    return True


def uninstall() -> None:
    """Remove the finder and every `caffe2*` module it served from `sys.modules`."""
    global _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    for name in _caffe2_modules():
        if getattr(sys.modules[name], "__c2compile_compat__", False) or \
                not sys.modules[name].__name__.startswith("caffe2"):
            del sys.modules[name]


install()
