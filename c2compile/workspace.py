"""Caffe2's `workspace` module API, backed by c2compile's runtime.

Module-level functions with Caffe2's names and behaviour act on the current workspace
(`SwitchWorkspace` changes it). Inside, everything is `runtime.workspace.Workspace`.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from c2compile.errors import BlobError, NetError
from c2compile.runtime import serialization
from c2compile.runtime.workspace import Workspace, _to_netdef, bind_net, bind_ops, parse_netdef

_workspaces: dict[str, Workspace] = {"default": Workspace("default")}
_current = "default"


def _ws() -> Workspace:
    return _workspaces[_current]


def _name(x) -> str:
    """Blob or net names may be given as str, BlobReference, core.Net or NetDef."""
    if isinstance(x, str):
        return x
    if hasattr(x, "Proto"):
        return x.Proto().name
    if hasattr(x, "op") and hasattr(x, "external_input"):  # NetDef
        return x.name
    return str(x)


# ----------------------------------------------------------------------------- workspaces

def CurrentWorkspace() -> str:
    return _current


def Workspaces() -> list[str]:
    return sorted(_workspaces)


def SwitchWorkspace(name: str, create_if_missing: bool = False) -> bool:
    global _current
    if name not in _workspaces:
        if not create_if_missing:
            raise NetError(f"workspace '{name}' does not exist (pass create_if_missing=True "
                           "to create it)")
        _workspaces[name] = Workspace(name)
    _current = name
    return True


def ResetWorkspace(root_folder: str | None = None) -> bool:
    """Drop every blob and net of the current workspace; optionally set its root folder."""
    if root_folder is not None:
        os.makedirs(root_folder, exist_ok=True)
    root = root_folder or _ws().root_folder
    _workspaces[_current] = Workspace(_current, root)
    return True


def RootFolder() -> str:
    return _ws().root_folder


# ----------------------------------------------------------------------------- blobs

def FeedBlob(name, arr, device_option=None) -> bool:
    """Copy `arr` into blob `name` (device_option only says where Caffe2 would keep it)."""
    if isinstance(arr, str):
        arr = arr.encode("utf-8")
    if isinstance(arr, bytes):  # Caffe2 stores a str/bytes feed as a string blob
        _ws().blobs[_name(name)] = arr
        return True
    _ws().feed(_name(name), arr)
    return True


def FetchBlob(name):
    return _ws().fetch(_name(name))


def FetchBlobs(names: Iterable) -> list:
    return [FetchBlob(n) for n in names]


def Blobs() -> list[str]:
    return sorted(_ws().blobs)


def HasBlob(name) -> bool:
    return _name(name) in _ws().blobs


def SerializeBlob(name) -> bytes:
    """Blob `name` as one serialized caffe2.BlobProto, unchunked, as Caffe2's C++ serializer
    writes it (tensors, strings and DB readers; runtime/serialization.py)."""
    name = _name(name)
    if name not in _ws().blobs:
        raise BlobError(f"blob '{name}' does not exist in workspace '{_ws().name}'")
    return serialization.serialize_one(_ws().blobs[name], name)


def DeserializeBlob(name, serialized_blob: bytes) -> None:
    """Set blob `name` from one serialized BlobProto (what SerializeBlob returns)."""
    _ws().blobs[_name(name)] = serialization.deserialize_blob(serialized_blob, _name(name))


class _BlobDict:
    """`workspace.blobs`: the current workspace's blobs as a mapping (fetch/feed)."""

    def __getitem__(self, name):
        return FetchBlob(name)

    def __setitem__(self, name, value):
        FeedBlob(name, value)

    def __contains__(self, name) -> bool:
        return HasBlob(name)

    def __len__(self) -> int:
        return len(_ws().blobs)

    def __iter__(self):
        return iter(Blobs())

    def keys(self):
        return Blobs()


blobs = _BlobDict()


# ----------------------------------------------------------------------------- running

def RunOperatorOnce(operator) -> bool:
    _ws().run_ops(bind_ops([_as_opdef(operator)]))
    return True


def RunOperatorsOnce(operators) -> bool:
    for op in operators:
        RunOperatorOnce(op)
    return True


def _as_opdef(operator):
    if isinstance(operator, (bytes, bytearray)):
        from c2compile.proto import caffe2_pb2
        op = caffe2_pb2.OperatorDef()
        op.ParseFromString(bytes(operator))
        return op
    return operator


def RunNetOnce(net) -> bool:
    """Run a net without keeping it in the workspace."""
    netdef = _to_netdef(net)
    _ws().run_ops(bind_net(netdef))
    return True


def CreateNet(net, overwrite: bool = False, input_blobs=None) -> bool:
    """Create (validate and bind) a net once; RunNet then runs it by name.

    As in Caffe2, every input an op reads must exist by now: in the workspace, among
    `input_blobs`, or as the output of an earlier op of the net.
    """
    netdef = _to_netdef(net)
    ws = _ws()
    ws.create_net(_copy(netdef), overwrite, check_inputs=set(input_blobs or ()))
    return True


def _copy(netdef):
    copy = type(netdef)()
    copy.CopyFrom(netdef)  # later edits of the user's Net must not change the created one
    return copy


def RunNet(name, num_iter: int = 1, allow_fail: bool = False, check_finite: bool = False) -> bool:
    """Run a created net `num_iter` times. With `check_finite` a run whose float outputs go
    NaN/inf raises NonFiniteError naming the first op that produced one (and leaves the
    workspace as it was before that run)."""
    try:
        _ws().run_net(_name(name), num_iter, check_finite)
    except Exception:
        if allow_fail:
            return False
        raise
    return True


def GetNetName(net) -> str:
    return _name(net)


def RunPlan(plan_or_step) -> bool:
    """Run a plan (core.Plan, core.ExecutionStep, PlanDef or its bytes) on the current
    workspace, as Caffe2's plan executor did (runtime/plan_executor.py); returns True.

    The plan's nets are created in the workspace once per run (replacing nets of the same
    names) and run exactly as RunNet runs them; they stay created afterwards. A failing op
    raises what RunNet raises, with a note naming the step. A plan that fails leaves the
    blobs written by the nets that completed (Caffe2 had no rollback either); the failing
    net leaves what a failing RunNet leaves.
    """
    from c2compile.plan import as_plandef
    from c2compile.runtime.plan_executor import run_plan
    return run_plan(_ws(), _copy(as_plandef(plan_or_step)))


def RunPlanInBackground(plan_or_step):
    """RunPlan in a background thread, on the current workspace; returns a handle with
    `is_done()` and `is_succeeded()` (True, or raises what failed; asked before the plan
    is done it raises), plus `wait(timeout)`."""
    from c2compile.plan import as_plandef
    from c2compile.runtime.plan_executor import run_plan_in_background
    return run_plan_in_background(_ws(), _copy(as_plandef(plan_or_step)))


def StringifyProto(obj) -> bytes:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if hasattr(obj, "Proto"):
        obj = obj.Proto()
    return obj.SerializeToString()


def InferShapesAndTypes(nets, blob_dimensions=None, nets_proto=False, blob_types=None):
    """Caffe2's shape inference entry: returns ({blob: dims list}, {blob: DataType})."""
    from c2compile.passes.shape_inference import infer_shapes_and_types
    return infer_shapes_and_types([_to_netdef(n) for n in nets], blob_dimensions, blob_types)


# ----------------------------------------------------------------------------- predictor

class Predictor:
    """Caffe2's Predictor: an init net run once, then a predict net run per call.

    It keeps its own workspace; inputs are the predict net's external inputs that the init
    net did not produce (in order), outputs its external outputs.
    """

    def __init__(self, init_net, predict_net):
        self._ws = Workspace("predictor")
        init = _bytes_to_net(init_net, "init_net")
        predict = _bytes_to_net(predict_net, "predict_net")
        # the init net's own device option (e.g. a random_seed) applies, as in CreateNet
        dev = init.device_option if init.HasField("device_option") else None
        self._ws.run_ops(bind_ops(init.op, init.name or "init_net", dev))
        self._params = set(self._ws.blobs)
        self.input_names = [b for b in predict.external_input if b not in self._params]
        self.output_names = list(predict.external_output)
        predict = _copy(predict)
        if not predict.name:
            predict.name = "predict_net"
        # only the outputs leave a Predictor: its other blobs are the compiler's to fold away
        self._net = self._ws.create_net(predict, check_inputs=set(self.input_names),
                                        observed=set(self.output_names))

    @property
    def segments(self) -> list:
        """The predict net's compiled segments and reference fallbacks, in order
        (runtime.compiled); empty when it runs on the reference executor."""
        return self._net.compiled.segments if self._net.compiled is not None else []

    def run(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
            unknown = sorted(set(feeds) - set(self.input_names))
            if unknown:
                raise BlobError(f"Predictor.run: {unknown} are not inputs of the predict net; "
                                f"its inputs are {self.input_names}")
        else:
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise BlobError(f"Predictor.run: got {len(inputs)} inputs, the predict net takes "
                                f"{len(self.input_names)}: {self.input_names}")
            feeds = dict(zip(self.input_names, inputs))
        for name, value in feeds.items():
            self._ws.feed(name, value)
        self._net.run(self._ws)
        return [self._ws.fetch(n) for n in self.output_names]


def _bytes_to_net(net, what: str):
    if isinstance(net, (bytes, bytearray)):
        return parse_netdef(bytes(net), what)
    return _to_netdef(net)


def GlobalInit(args) -> bool:
    from c2compile import core
    return core.GlobalInit(args)

