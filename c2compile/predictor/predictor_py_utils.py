"""Building and reading a MetaNetDef (`caffe2.python.predictor.predictor_py_utils`).

A MetaNetDef keeps its nets, blob lists and plans in repeated (key, value) entries, protobuf
2 having no maps; `GetNet(meta, key)` and friends look an entry up (the first with the key
wins, None when there is none) and `AddNet(meta, key, net)` appends one. The two
`create_*` functions build the nets of an exported predictor from a PredictorExportMeta.
"""
from __future__ import annotations

from c2compile import core, scope
from c2compile.errors import BlobError

MODEL_ID_ARG = "model_id"


# ----------------------------------------------------------------------------- the nets

def create_predict_net(predictor_export_meta):
    """The predict net to export: the model's ops, with the meta's inputs + parameters as
    external inputs and its outputs as external outputs (whatever the net said before)."""
    meta = predictor_export_meta
    source = meta.predict_net
    # A fresh net, so nothing of the source's externals, type or device option carries over.
    net = core.Net(source.name or "predict")
    proto = net.Proto()
    proto.op.extend(source.op)
    proto.partition_info.extend(source.partition_info)
    proto.external_input.extend(meta.inputs + meta.parameters)
    proto.external_output.extend(meta.outputs)
    proto.arg.extend(source.arg)
    if meta.net_type is not None:
        proto.type = meta.net_type
    if meta.num_workers is not None:
        proto.num_workers = meta.num_workers
    return proto


def create_predict_init_net(ws, predictor_export_meta):
    """A net that creates every input and output blob, zero-filled, so that the predict net
    can be created before the first real input arrives.

    Each blob's shape is `predictor_export_meta.shapes[blob]`, or else the shape the blob
    has in `ws` (a `workspace.C.Workspace`; None: the current workspace). Then the meta's
    extra_init_net is appended.
    """
    meta = predictor_export_meta
    net = core.Net("predict-init")
    external = meta.inputs + meta.outputs
    for blob in external:
        shape = meta.shapes.get(blob)
        if shape is None:
            shape = _shape_in_workspace(ws, blob)
        # No device scope: whoever runs the init net sets the device of these fills.
        with scope.EmptyDeviceScope():
            net.ConstantFill([], blob, shape=list(shape), value=0.0)
    net.Proto().external_input.extend(external)
    if meta.extra_init_net:
        net.AppendNet(meta.extra_init_net)
    AddModelIdArg(meta, net.Proto())
    return net.Proto()


def _shape_in_workspace(ws, blob: str) -> tuple:
    if ws is None:
        from c2compile import workspace
        present, fetch = workspace.HasBlob(blob), lambda: workspace.FetchBlob(blob)
    else:
        present, fetch = blob in ws.blobs, lambda: ws.blobs[blob].fetch()
    if not present:
        raise BlobError(f"predictor export: blob '{blob}' (an input or output of the model) "
                        "is not in the workspace and has no entry in "
                        "PredictorExportMeta.shapes, so its shape is unknown: run the net "
                        "once before exporting, or pass shapes={...}", blob=blob)
    return fetch().shape


def get_comp_name(string: str, name: str) -> str:
    """The key of a model component: `string`, or `string_name` for a named model."""
    return f"{string}_{name}" if name else string


# ----------------------------------------------------------------------------- map look-ups

def _ProtoMapGet(field, key):
    """The value of the first (key, value) entry of `field` with `key`, or None."""
    for entry in field:
        if entry.key == key:
            return entry.value
    return None


def to_first_match_dict(kv_list) -> dict:
    """{key: value} of (key, value) entries; the first entry of a repeated key wins."""
    d = {}
    for entry in kv_list:
        d.setdefault(entry.key, entry.value)
    return d


def GetNet(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.nets, key)


def GetNetOriginal(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.nets, key)


def GetPlan(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.plans, key)


def GetPlanOriginal(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.plans, key)


def GetBlobs(meta_net_def, key):
    """The blob list stored under `key` ([] when there is none)."""
    blobs = _ProtoMapGet(meta_net_def.blobs, key)
    return [] if blobs is None else blobs


def GetBlobsByTypePrefix(meta_net_def, blob_type_prefix: str) -> list[str]:
    """Every blob of the lists whose key starts with `blob_type_prefix`, once each, in the
    order first met."""
    seen: dict[str, None] = {}
    for entry in meta_net_def.blobs:
        if entry.key.startswith(blob_type_prefix):
            seen.update(dict.fromkeys(entry.value))
    return list(seen)


def GetApplicationSpecificInfo(meta_net_def, key):
    return _ProtoMapGet(meta_net_def.applicationSpecificInfo, key)


def GetApplicationSpecificInfoDict(meta_net_def) -> dict:
    return to_first_match_dict(meta_net_def.applicationSpecificInfo)


def GetBlobsOrder(meta_net_def):
    return meta_net_def.blobsOrder


def GetArgumentByName(net_def, arg_name: str):
    """The Argument of `net_def` named `arg_name`, or None."""
    for arg in net_def.arg:
        if arg.name == arg_name:
            return arg
    return None


# ----------------------------------------------------------------------------- edits

def AddNet(meta_net_def, net_name: str, net_def) -> None:
    meta_net_def.nets.add(key=net_name, value=net_def)


def AddPlan(meta_net_def, plan_name: str, plan_def) -> None:
    """Store a PlanDef (as data: c2compile does not run plans)."""
    meta_net_def.plans.add(key=plan_name, value=plan_def)


def AddBlobs(meta_net_def, blob_name: str, blob_def) -> None:
    """Append the names `blob_def` to the list under `blob_name` (created if missing)."""
    blobs = _ProtoMapGet(meta_net_def.blobs, blob_name)
    if blobs is None:
        blobs = meta_net_def.blobs.add(key=blob_name).value
    blobs.extend(str(b) for b in blob_def)


def ReplaceBlobs(meta_net_def, blob_name: str, blob_def) -> None:
    """Make the existing list under `blob_name` exactly `blob_def`."""
    blobs = _ProtoMapGet(meta_net_def.blobs, blob_name)
    if blobs is None:
        raise KeyError(f"MetaNetDef has no blob list '{blob_name}' to replace")
    del blobs[:]
    blobs.extend(str(b) for b in blob_def)


def SetBlobsOrder(meta_net_def, blobs_order) -> None:
    meta_net_def.blobsOrder.extend(blobs_order)


def SetPreLoadBlobs(meta_net_def, pre_load_blobs) -> None:
    meta_net_def.preLoadBlobs.extend(pre_load_blobs)


def SetRequestOnlyEmbeddings(meta_net_def, request_only_embeddings) -> None:
    meta_net_def.requestOnlyEmbeddings.extend(request_only_embeddings)


def SetTensorBoundShapes(meta_net_def, tensor_bound_shapes) -> None:
    meta_net_def.tensorBoundShapes.CopyFrom(tensor_bound_shapes)


def SetAOTConfig(meta_net_def, aot_config) -> None:
    meta_net_def.aotConfig.CopyFrom(aot_config)


def AddModelIdArg(meta_net_def, net_def) -> None:
    """Give `net_def` the integer `model_id` argument of `meta_net_def.predict_net`.

    `meta_net_def` is anything with a `predict_net` NetDef (a PredictorExportMeta, in the
    exporter). Init nets get the predict net's id this way; without one, nothing changes.
    """
    source = getattr(meta_net_def, "predict_net", None)
    model_id = GetArgumentByName(source, MODEL_ID_ARG) if hasattr(source, "arg") else None
    if model_id is None:
        return
    existing = GetArgumentByName(net_def, MODEL_ID_ARG)
    if existing is not None:
        existing.i = model_id.i
    else:
        net_def.arg.add(name=MODEL_ID_ARG, i=model_id.i)
