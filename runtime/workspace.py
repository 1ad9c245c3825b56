"""Workspaces: named blobs plus the nets created in them, as in Caffe2.

A `Workspace` owns its blobs (numpy arrays, or host objects such as DB readers) and its
created nets. Every run goes through `run_ops`, which commits the run's writes only when it
succeeded: a failing RunNet/RunOperatorOnce leaves the blobs as they were.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np

from c2compile.errors import BlobError, NetError, NonFiniteError, ProtoError
from c2compile.ops.schema import BoundOp, bind
from c2compile.runtime import reference
from c2compile.runtime.blobs import BlobStore, RunView


def _to_netdef(net):
    """Accept a NetDef, a core.Net (anything with .Proto()) or serialized bytes."""
    from c2compile.proto import caffe2_pb2
    if hasattr(net, "Proto"):
        return net.Proto()
    if isinstance(net, caffe2_pb2.NetDef):
        return net
    if isinstance(net, (bytes, bytearray)):
        return parse_netdef(bytes(net))
    raise TypeError(f"expected a NetDef, core.Net or serialized NetDef bytes, got {type(net).__name__}")


def parse_netdef(data: bytes, what: str = "NetDef"):
    """Parse serialized NetDef bytes, turning protobuf's DecodeError into a ProtoError."""
    from google.protobuf.message import DecodeError
    from c2compile.proto import caffe2_pb2
    net = caffe2_pb2.NetDef()
    try:
        net.ParseFromString(data)
    except DecodeError as e:
        raise ProtoError(f"cannot parse {what} ({len(data)} bytes): {e}; the file is "
                         "truncated or not a serialized caffe2.NetDef") from None
    return net


def bind_ops(ops: Iterable, net_name: str | None = None, device_option=None) -> list[BoundOp]:
    """Bind every OperatorDef; a net-level device option applies to ops that have none."""
    bound = []
    for i, proto in enumerate(ops):
        if device_option is not None and not proto.HasField("device_option"):
            p = type(proto)()
            p.CopyFrom(proto)
            p.device_option.CopyFrom(device_option)
            proto = p
        bound.append(bind(proto, i, net_name))
    return bound


def _count_non_finite(value) -> int:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fc":
        return 0
    return int(value.size - np.count_nonzero(np.isfinite(value)))


def bind_net(netdef) -> list[BoundOp]:
    """Bind a NetDef's ops, its device option applying to ops that set none (as Caffe2)."""
    dev = netdef.device_option if netdef.HasField("device_option") else None
    return bind_ops(netdef.op, netdef.name, dev)


class CreatedNet:
    """A net created in a workspace: its NetDef and bound ops, ready to run many times.

    CPU nets run compiled (runtime.compiled) unless `config.backend` is "reference"; nets
    for other devices run on the reference executor until their backend lands.
    """

    def __init__(self, netdef, observed: set[str] | None = None):
        from c2compile import config
        from c2compile.runtime.compiled import PartitionedNet
        self.netdef = netdef
        self.name = netdef.name
        self.ops = bind_net(netdef)
        on_cpu = all(op.proto.device_option.device_type == 0 for op in self.ops)
        self.compiled = (PartitionedNet(self.ops, self.name, observed)
                         if config.backend == "cpu" and on_cpu and self.ops else None)
        if self.compiled is not None:
            self.run = self.compiled.run  # RunNet's hot path: no dispatch layer per run

    def run(self, ws: "Workspace") -> None:
        ws.run_ops(self.ops)


class Workspace(BlobStore):
    def __init__(self, name: str, root_folder: str | None = None):
        self.name = name
        self.root_folder = root_folder or os.getcwd()
        self.blobs: dict[str, Any] = {}
        self.nets: dict[str, CreatedNet] = {}

    def run_ops(self, ops: list[BoundOp]) -> None:
        """Run `ops`; their writes are committed only if every op succeeded."""
        view = RunView(self)
        reference.run_ops(ops, view)
        self.blobs.update(view.blobs.writes)

    def create_net(self, netdef, overwrite: bool = False,
                   check_inputs: set[str] | None = None,
                   observed: set[str] | None = None) -> CreatedNet:
        """Bind `netdef` and keep it under its name.

        With `check_inputs` (a set of names that will be fed later), every blob an op reads
        must exist now, be in that set, or be written by an earlier op, as Caffe2 enforced.
        `observed`: the only blobs anyone reads after a run (a Predictor's outputs); the
        others need not reach the workspace (None: all of them do, as in Caffe2).
        """
        name = netdef.name
        if not name:
            raise NetError("cannot create a net without a name (set NetDef.name)")
        if name in self.nets and not overwrite:
            raise NetError(f"net '{name}' already exists in workspace '{self.name}'; "
                           "pass overwrite=True to replace it")
        net = CreatedNet(netdef, observed)
        if check_inputs is not None:
            self._check_inputs_exist(net.ops, check_inputs)
        self.nets[name] = net
        return net

    def _check_inputs_exist(self, ops: list[BoundOp], later: set[str]) -> None:
        available = set(self.blobs) | later
        for op in ops:
            for blob in op.inputs:
                if blob not in available:
                    raise op.error(BlobError, f"input blob '{blob}' does not exist: it is not "
                                   "in the workspace and no earlier op of the net writes it",
                                   blob=blob)
            available.update(op.outputs)

    def run_net(self, name: str, num_iter: int = 1, check_finite: bool = False) -> None:
        try:
            net = self.nets[name]
        except KeyError:
            raise NetError(f"net '{name}' does not exist in workspace '{self.name}' "
                           "(call CreateNet first)") from None
        for _ in range(num_iter):
            if check_finite:
                self._run_checked(net)
            else:
                net.run(self)

    def _run_checked(self, net: CreatedNet) -> None:
        """Run `net` once; if a float blob it writes went NaN/inf, put the blobs back as they
        were and replay the run op by op on the reference executor to name the first op
        whose output went non-finite (NonFiniteError). Costs a copy of every written blob,
        so it is a debugging mode, off by default."""
        written = list(dict.fromkeys(o for op in net.ops for o in op.outputs))
        before = {n: np.array(self.blobs[n], copy=True) for n in written
                  if isinstance(self.blobs.get(n), np.ndarray)}
        was_bad = {n for n, v in self.blobs.items() if _count_non_finite(v)}
        net.run(self)
        bad = [n for n in written if _count_non_finite(self.blobs.get(n))]
        if not bad:
            return
        for n in written:
            if n in before:
                self.blobs[n] = before[n]
            else:
                self.blobs.pop(n, None)
        view = RunView(self)
        for op in net.ops:
            reference.run_ops([op], view)
            for o in op.outputs:  # .get: Load(allow_incomplete) may leave an output absent
                count = _count_non_finite(view.blobs.get(o))
                if count:
                    stale = [i for i in op.inputs if i in was_bad]
                    why = (f"; input(s) {stale} already held NaN/inf before the run" if stale
                           else "; all its inputs were finite")
                    raise op.error(NonFiniteError, f"output '{o}' went non-finite ({count} of "
                                   f"{np.size(view.blobs[o])} values are NaN/inf){why}. The "
                                   "workspace is left as it was before this run", blob=o)
        raise NonFiniteError(f"blob(s) {bad} of net '{net.name}' went non-finite, but a replay "
                             "on the reference executor stayed finite (a difference between "
                             "the compiled kernels and the reference, or random draws); the "
                             "workspace is left as it was before this run")
