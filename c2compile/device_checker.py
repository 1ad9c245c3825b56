"""Caffe2's `device_checker`: run an op (or net) on several devices and compare the outputs.

In c2compile a `DeviceOption` is served by a *backend*: today only the numpy reference
executor (CPU) exists; the Cython backend (CPU) and the Triton backend (CUDA) plug in later
through `register_backend`. A device check runs the op once per (device option, backend
serving it) and compares every result with the first one, so once a compiled backend is
registered for CPU the reference (registered first) is the baseline it is checked against.

    register_backend(Backend("cython", device_types=(caffe2_pb2.CPU,), run_op=..., run_net=...))

`present_device_options()` is what `hypothesis_test_util.device_options` (and so `hu.gcs`) draws
from: one DeviceOption per device type with at least one backend present.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Callable, Sequence

import numpy as np

from c2compile import workspace
from c2compile.errors import C2Error
from c2compile.proto import caffe2_pb2

GPU_DEVICE_TYPES = (caffe2_pb2.CUDA, caffe2_pb2.HIP)

_DEVICE_NAMES = {caffe2_pb2.CPU: "CPU", caffe2_pb2.CUDA: "CUDA", caffe2_pb2.MKLDNN: "MKLDNN",
                 caffe2_pb2.OPENGL: "OPENGL", caffe2_pb2.OPENCL: "OPENCL",
                 caffe2_pb2.IDEEP: "IDEEP", caffe2_pb2.HIP: "HIP"}


def device_name(device_option) -> str:
    """"CPU", "CUDA:1", ... for error messages."""
    if device_option is None:
        return "CPU"
    t = int(device_option.device_type)
    name = _DEVICE_NAMES.get(t, f"device_type {t}")
    return f"{name}:{device_option.device_id}" if device_option.device_id else name


# ----------------------------------------------------------------------------- backends

def _reference_run_op(op) -> None:
    workspace.RunOperatorOnce(op)


def _reference_run_net(net) -> None:
    workspace.RunNetOnce(net)


@dataclasses.dataclass(frozen=True)
class Backend:
    """One way of executing ops for some device types.

    `run_op(op)` runs one OperatorDef (its device_option already set) in the *current*
    c2compile workspace, whose input blobs are fed; it leaves the outputs there. `run_net(net)`
    does the same for a NetDef. `available()` says whether it can run here (a GPU backend
    without a GPU and without Triton's interpreter answers False); `num_devices()` how many
    devices of its types it can address (device_id 0..n-1).
    """
    name: str
    device_types: tuple[int, ...]
    run_op: Callable
    run_net: Callable
    available: Callable[[], bool] = lambda: True
    num_devices: Callable[[], int] = lambda: 1

    def serves(self, device_option) -> bool:
        t = caffe2_pb2.CPU if device_option is None else int(device_option.device_type)
        return t in self.device_types


# RunOperatorOnce/RunNetOnce always run on the reference executor (the oracle every backend
# is compared with); CreateNet + RunNet compile CPU nets with the Cython backend.
REFERENCE = Backend("reference", (caffe2_pb2.CPU,), _reference_run_op, _reference_run_net)



def _cython_run_net(net) -> None:
    """Create `net` (compiled with the Cython backend) and run it once."""
    from c2compile import config
    netdef = net.Proto() if hasattr(net, "Proto") else net
    copy = caffe2_pb2.NetDef()
    copy.CopyFrom(netdef)
    copy.name = f"device_check_{next(_check_ids)}"
    with config.patch(backend="cpu"):
        workspace.CreateNet(copy)
    try:
        workspace.RunNet(copy.name)
    finally:
        workspace._ws().nets.pop(copy.name, None)


def _cython_run_op(op) -> None:
    net = caffe2_pb2.NetDef()
    net.op.add().CopyFrom(op)
    _cython_run_net(net)


def _cython_available() -> bool:
    """Cython and a C compiler are both here."""
    import importlib.util
    import os
    import shutil
    import sysconfig
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]
    return importlib.util.find_spec("Cython") is not None and shutil.which(cc) is not None


_check_ids = itertools.count()
CYTHON = Backend("cython", (caffe2_pb2.CPU,), _cython_run_op, _cython_run_net,
                 available=_cython_available)
_BACKENDS: list[Backend] = [REFERENCE, CYTHON]


def register_backend(backend: Backend) -> None:
    """Add (or replace, by name) a backend; it is checked after those registered before it."""
    for i, b in enumerate(_BACKENDS):
        if b.name == backend.name:
            _BACKENDS[i] = backend
            return
    _BACKENDS.append(backend)


def unregister_backend(name: str) -> None:
    if name == REFERENCE.name:
        raise ValueError("the reference backend cannot be unregistered")
    _BACKENDS[:] = [b for b in _BACKENDS if b.name != name]


def backends() -> list[Backend]:
    """Every registered backend that can run here, in registration order."""
    return [b for b in _BACKENDS if b.available()]


def backends_for(device_option) -> list[Backend]:
    """The present backends serving `device_option`; a C2Error when there is none."""
    found = [b for b in backends() if b.serves(device_option)]
    if not found:
        present = sorted({device_name(d) for d in present_device_options()})
        raise C2Error(f"no backend present for device {device_name(device_option)}; "
                      f"devices with a backend here: {', '.join(present)}")
    return found


def present_device_options() -> list:
    """One DeviceOption per device type that some present backend serves, CPU first."""
    types = []
    for b in backends():
        for t in b.device_types:
            if t not in types:
                types.append(t)
    types.sort(key=lambda t: (t != caffe2_pb2.CPU, t))
    # CPU as Caffe2's `cpu_do`: a DeviceOption with no field set.
    return [caffe2_pb2.DeviceOption() if t == caffe2_pb2.CPU else
            caffe2_pb2.DeviceOption(device_type=t) for t in types]


def num_devices(device_type: int) -> int:
    """How many devices of `device_type` the present backends can address (0: none)."""
    dev = caffe2_pb2.DeviceOption(device_type=device_type)
    return max((b.num_devices() for b in backends() if b.serves(dev)), default=0)


def has_device_type(*device_types: int) -> bool:
    return any(b.serves(caffe2_pb2.DeviceOption(device_type=t))
               for b in backends() for t in device_types)


def has_gpu_support() -> bool:
    return has_device_type(*GPU_DEVICE_TYPES)


def has_cuda_support() -> bool:
    return has_device_type(caffe2_pb2.CUDA)


def has_hip_support() -> bool:
    return has_device_type(caffe2_pb2.HIP)


# ----------------------------------------------------------------------------- the checker

class _SwitchedWorkspace:
    """Run in workspace `name` (created if missing), reset it and switch back on exit."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.old = workspace.CurrentWorkspace()
        workspace.SwitchWorkspace(self.name, True)
        workspace.ResetWorkspace()
        return self

    def __exit__(self, *exc):
        workspace.ResetWorkspace()
        workspace.SwitchWorkspace(self.old)
        return False


def compare_outputs(results: Sequence[tuple[str, list]], names: Sequence[str],
                    threshold: float) -> list[str]:
    """Compare every run's outputs with the first run's; one message per mismatch.

    `results` is [(label, [array per name]), ...].
    """
    failures = []
    if not results:
        return failures
    base_label, base = results[0]
    for label, outs in results[1:]:
        for name, x, y in zip(names, outs, base):
            msg = _mismatch(x, y, threshold)
            if msg:
                failures.append(f"output '{name}': {label} differs from {base_label}: {msg}")
    return failures


def _mismatch(x, y, threshold: float) -> str | None:
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        return f"shape {list(x.shape)} vs {list(y.shape)}"
    if x.dtype.kind in "OSU" or y.dtype.kind in "OSU":
        return None if np.array_equal(x, y) else "values differ"
    if x.dtype != y.dtype:
        return f"dtype {x.dtype} vs {y.dtype}"
    close = np.isclose(x, y, atol=threshold, rtol=threshold, equal_nan=True)
    if close.all():
        return None
    bad = np.flatnonzero(~close)
    diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
    first = bad[:5]
    return (f"{bad.size} of {x.size} elements differ beyond threshold {threshold} (max abs "
            f"diff {np.nanmax(diff):g}); first at flat index {first.tolist()}: "
            f"{x.flat[first].tolist()} vs {y.flat[first].tolist()}")


class DeviceChecker:
    """Caffe2's DeviceChecker(threshold, device_options).

    `CheckSimple`/`CheckNet` return True or False as in Caffe2; after a failure
    `failure_message` says which output differed on which device/backend, and by how much.
    """

    def __init__(self, threshold: float, device_options: Sequence):
        self._threshold = threshold
        self._device_options = list(device_options)
        self.failure_message = ""

    def _runs(self):
        for device_option in self._device_options:
            for backend in backends_for(device_option):
                yield device_option, backend

    def CheckSimple(self, op, inputs, outputs_to_check, input_device_options=None) -> bool:
        """Run `op` on `inputs` on every device option; compare `outputs_to_check` (indices)."""
        op = copy.deepcopy(op)
        if len(inputs) > len(op.input):
            raise ValueError(f"{op.type}: got {len(inputs)} inputs for the op's "
                             f"{len(op.input)} input blobs {list(op.input)}")
        input_device_options = input_device_options or {}
        names = [op.output[i] for i in outputs_to_check]
        results = []
        for device_option, backend in self._runs():
            op.device_option.CopyFrom(device_option)
            with _SwitchedWorkspace("_device_check_"):
                for name, arr in zip(op.input, inputs):
                    workspace.FeedBlob(name, np.array(arr),
                                       input_device_options.get(name, device_option))
                backend.run_op(op)
                outs = [workspace.FetchBlob(n) for n in names]
            results.append((f"{device_name(device_option)} ({backend.name})", outs))
        return self._verdict(f"op {op.type}", results, names)

    def CheckNet(self, net, inputs=None, blobs_to_check=None, ignore=None) -> bool:
        """Run `net` (a NetDef or core.Net) on every device option and compare its blobs
        (every op output unless `blobs_to_check` names them)."""
        netdef = copy.deepcopy(net.Proto() if hasattr(net, "Proto") else net)
        inputs = inputs or {}
        ignore = set(ignore or ())
        if blobs_to_check is None:
            blobs_to_check = [o for op in netdef.op for o in op.output]
        names = [str(b) for b in blobs_to_check if b not in ignore]
        results = []
        for device_option, backend in self._runs():
            for op in netdef.op:
                op.device_option.CopyFrom(device_option)
            with _SwitchedWorkspace("_device_check_"):
                for name, arr in inputs.items():
                    workspace.FeedBlob(name, arr, device_option)
                backend.run_net(netdef)
                outs = [workspace.FetchBlob(n) for n in names]
            results.append((f"{device_name(device_option)} ({backend.name})", outs))
        return self._verdict(f"net {netdef.name or '<unnamed>'}", results, names)

    def _verdict(self, what: str, results, names) -> bool:
        failures = compare_outputs(results, names, self._threshold)
        ran = ", ".join(label for label, _ in results)
        self.failure_message = (f"device check of {what} failed (ran on {ran}):\n  "
                                + "\n  ".join(failures)) if failures else ""
        if failures:
            print(self.failure_message)
        return not failures
