"""Export a model to one DB and load it back (`caffe2.python.predictor.predictor_exporter`).

The DB holds, as Caffe2 1.x writes it:

* key `!!META_NET_DEF`: a string blob, the serialized MetaNetDef, whose entries are
  - nets `PREDICT_INIT_NET_TYPE` (ConstantFill of every input and output, plus the meta's
    extra_init_net), `GLOBAL_INIT_NET_TYPE` (one Load from the blob `!!PREDICTOR_DBREADER`
    into every parameter, plus the meta's global_init_net) and `PREDICT_NET_TYPE` (the
    model's ops; external inputs = inputs + parameters, external outputs = outputs);
  - blob lists `PARAMETERS_BLOB_TYPE`, `INPUTS_BLOB_TYPE`, `OUTPUTS_BLOB_TYPE`
  (each key suffixed with "_" + name for a named model);
* one key per parameter (a tensor too large for one record is split into chunks by Save).

`prepare_prediction_net` opens the DB as the DBReader `!!PREDICTOR_DBREADER`, reads the
MetaNetDef, runs the two init nets and creates the predict net. Nothing here runs a plan.
"""
from __future__ import annotations

import collections

from google.protobuf.message import DecodeError

from c2compile import core, scope, workspace
from c2compile.errors import DBError
from c2compile.predictor import predictor_py_utils as utils
from c2compile.predictor import serde
from c2compile.predictor.predictor_constants import predictor_constants
from c2compile.proto import caffe2_pb2, metanet_pb2


def get_predictor_exporter_helper(submodelNetName: str):
    """A PredictorExportMeta with an empty net, for its *_name() methods only."""
    return PredictorExportMeta(predict_net=core.Net(submodelNetName), parameters=[],
                               inputs=[], outputs=[], shapes=None, name=submodelNetName,
                               extra_init_net=None)


_FIELDS = ("predict_net", "parameters", "inputs", "outputs", "shapes", "name",
           "extra_init_net", "global_init_net", "net_type", "num_workers", "trainer_prefix")


class PredictorExportMeta(collections.namedtuple("PredictorExportMeta", _FIELDS)):
    """What to export: the predict net and the names of its parameters, inputs and outputs.

    predict_net: core.Net, NetDef (or a PlanDef, stored but not exportable by save_to_db,
        as in Caffe2); parameters, inputs, outputs: blob names or BlobReferences;
    shapes: {blob: shape} for inputs/outputs not in the workspace at export time;
    name: tells several models in one MetaNetDef apart (suffix of every key);
    extra_init_net / global_init_net: core.Nets appended to the predict init net (run per
        predictor) / the global init net (run once, on the parameters' workspace);
    net_type, num_workers: set on the exported predict net when given;
    trainer_prefix: prefix of the train plan names.
    """

    def __new__(cls, predict_net, parameters, inputs, outputs, shapes=None, name="",
                extra_init_net=None, global_init_net=None, net_type=None, num_workers=None,
                trainer_prefix=None):
        # Caffe2 checked these with `assert` (AssertionError, and nothing under python -O).
        inputs = [str(i) for i in inputs]
        outputs = [str(o) for o in outputs]
        parameters = [str(p) for p in parameters]
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"PredictorExportMeta: the inputs must be unique, got {inputs}")
        for what, names in (("inputs", inputs), ("outputs", outputs)):
            both = sorted(set(parameters) & set(names))
            if both:
                raise ValueError(f"PredictorExportMeta: parameters and {what} must be "
                                 f"disjoint; both name {both}")
        if hasattr(predict_net, "Proto"):  # core.Net (or a plan object)
            predict_net = predict_net.Proto()
        if not isinstance(predict_net, (caffe2_pb2.NetDef, caffe2_pb2.PlanDef)):
            raise TypeError("PredictorExportMeta: predict_net must be a core.Net, NetDef or "
                            f"PlanDef, got {type(predict_net).__name__}")
        return super().__new__(cls, predict_net, parameters, inputs, outputs, shapes or {},
                               name, extra_init_net, global_init_net, net_type, num_workers,
                               trainer_prefix)

    def inputs_name(self) -> str:
        return utils.get_comp_name(predictor_constants.INPUTS_BLOB_TYPE, self.name)

    def outputs_name(self) -> str:
        return utils.get_comp_name(predictor_constants.OUTPUTS_BLOB_TYPE, self.name)

    def parameters_name(self) -> str:
        return utils.get_comp_name(predictor_constants.PARAMETERS_BLOB_TYPE, self.name)

    def global_init_name(self) -> str:
        return utils.get_comp_name(predictor_constants.GLOBAL_INIT_NET_TYPE, self.name)

    def predict_init_name(self) -> str:
        return utils.get_comp_name(predictor_constants.PREDICT_INIT_NET_TYPE, self.name)

    def predict_net_name(self) -> str:
        return utils.get_comp_name(predictor_constants.PREDICT_NET_TYPE, self.name)

    def train_init_plan_name(self) -> str:
        return self._trainer(utils.get_comp_name(predictor_constants.TRAIN_INIT_PLAN_TYPE,
                                                 self.name))

    def train_plan_name(self) -> str:
        return self._trainer(utils.get_comp_name(predictor_constants.TRAIN_PLAN_TYPE,
                                                 self.name))

    def _trainer(self, plan_name: str) -> str:
        return f"{self.trainer_prefix}_{plan_name}" if self.trainer_prefix else plan_name


# ----------------------------------------------------------------------------- export

def _global_init_net(predictor_export_meta, db_type):
    """Load every parameter from the DBReader, then the meta's own global init net."""
    meta = predictor_export_meta
    net = core.Net("global-init")
    # Caffe2's remote "manifold_db" supplied the parameters itself: no Load for it.
    if db_type != "manifold_db":
        net.Load([predictor_constants.PREDICTOR_DBREADER], meta.parameters)
        net.Proto().external_input.append(predictor_constants.PREDICTOR_DBREADER)
        net.Proto().external_output.extend(meta.parameters)
    if meta.global_init_net:
        net.AppendNet(meta.global_init_net)
    utils.AddModelIdArg(meta, net.Proto())
    return net.Proto()


def get_meta_net_def(predictor_export_meta, ws=None, db_type=None):
    """The MetaNetDef describing `predictor_export_meta`.

    Shapes of inputs/outputs missing from `meta.shapes` are read from `ws` (a
    `workspace.C.Workspace`; None: the current workspace).
    """
    meta = predictor_export_meta
    if not isinstance(meta.predict_net, caffe2_pb2.NetDef):
        # Caffe2 failed here with an AttributeError (a PlanDef has no ops to export).
        raise TypeError("get_meta_net_def: only a NetDef predict_net can be exported, got a "
                        f"{type(meta.predict_net).__name__}")
    meta_net_def = metanet_pb2.MetaNetDef()
    utils.AddNet(meta_net_def, meta.predict_init_name(),
                 utils.create_predict_init_net(ws, meta))
    utils.AddNet(meta_net_def, meta.global_init_name(), _global_init_net(meta, db_type))
    utils.AddNet(meta_net_def, meta.predict_net_name(), utils.create_predict_net(meta))
    utils.AddBlobs(meta_net_def, meta.parameters_name(), meta.parameters)
    utils.AddBlobs(meta_net_def, meta.inputs_name(), meta.inputs)
    utils.AddBlobs(meta_net_def, meta.outputs_name(), meta.outputs)
    return meta_net_def


def set_model_info(meta_net_def, project_str: str, model_class_str: str, version) -> None:
    """Fill meta_net_def.modelInfo's project, modelClass and version."""
    if not isinstance(meta_net_def, metanet_pb2.MetaNetDef):
        raise TypeError(f"set_model_info takes a MetaNetDef, got {type(meta_net_def).__name__}")
    info = meta_net_def.modelInfo
    info.project, info.modelClass, info.version = project_str, model_class_str, version


def save_to_db(db_type: str, db_destination: str, predictor_export_meta, use_ideep=False,
               *args, **kwargs) -> None:
    """Write the MetaNetDef and every parameter (from the current workspace) to the DB
    `db_destination` (a path, taken as is: absolute_path=1), with one Save op.

    `kwargs` go to the Save op (e.g. chunk_size). The MetaNetDef is written first, under
    `!!META_NET_DEF`, and left in the workspace as that string blob, as Caffe2 did.
    `use_ideep` only sets the Save op's device type to IDEEP, as in Caffe2; c2compile runs
    Save on the host either way.
    """
    meta_net_def = get_meta_net_def(predictor_export_meta, db_type=db_type)
    workspace.FeedBlob(predictor_constants.META_NET_DEF,
                       serde.serialize_protobuf_struct(meta_net_def))
    blobs_to_save = [predictor_constants.META_NET_DEF] + predictor_export_meta.parameters
    device_type = caffe2_pb2.IDEEP if use_ideep else caffe2_pb2.CPU
    op = core.CreateOperator("Save", blobs_to_save, [],
                             device_option=core.DeviceOption(device_type),
                             absolute_path=True, db=db_destination, db_type=db_type, **kwargs)
    workspace.RunOperatorOnce(op)


# ----------------------------------------------------------------------------- import

def load_from_db(filename: str, db_type: str, device_option=None, *args, **kwargs):
    """Open `filename` as the DBReader blob `!!PREDICTOR_DBREADER` and return its MetaNetDef.

    Every op of every net in it gets `device_option` (default: the current device scope,
    if any). Leaves the DBReader and the `!!META_NET_DEF` string blob in the workspace.
    """
    reader = predictor_constants.PREDICTOR_DBREADER
    key = predictor_constants.META_NET_DEF
    workspace.RunOperatorOnce(core.CreateOperator(
        "CreateDB", [], [core.BlobReference(reader)], db=filename, db_type=db_type))
    # The MetaNetDef is the DB's first record (see predictor_constants.META_NET_DEF).
    workspace.RunOperatorOnce(core.CreateOperator(
        "Load", [core.BlobReference(reader)], [core.BlobReference(key)]))
    blob = workspace.FetchBlob(key)
    if isinstance(blob, str):
        blob = blob.encode("utf-8")
    if not isinstance(blob, bytes):
        # Caffe2 parsed str(blob) and went on with whatever came out.
        kind = "tensor" if hasattr(blob, "dtype") else type(blob).__name__
        raise DBError(f"{db_type} DB '{filename}': key '{key}' holds a {kind}, not a "
                      "serialized MetaNetDef string")
    try:
        meta_net_def = serde.deserialize_protobuf_struct(blob, metanet_pb2.MetaNetDef)
    except DecodeError as e:
        raise DBError(f"{db_type} DB '{filename}': key '{key}' is not a MetaNetDef "
                      f"({e})") from e

    if device_option is None:
        device_option = scope.CurrentDeviceScope()
    if device_option is not None:
        for entry in meta_net_def.nets:
            for op in entry.value.op:
                op.device_option.CopyFrom(device_option)
    return meta_net_def


def _net(meta_net_def, key: str, filename: str):
    net = utils.GetNet(meta_net_def, key)
    if net is None:
        # Caffe2 went on with None and failed inside RunNetOnce.
        have = [entry.key for entry in meta_net_def.nets]
        raise DBError(f"DB '{filename}': the MetaNetDef under key "
                      f"'{predictor_constants.META_NET_DEF}' has no net '{key}' (it has "
                      f"{have})")
    return net


def prepare_prediction_net(filename: str, db_type: str, device_option=None):
    """Load an exported model into the current workspace; return its predict net (a
    core.Net, already created: `workspace.RunNet(net)` after feeding the inputs)."""
    meta_net_def = load_from_db(filename, db_type, device_option)
    workspace.RunNetOnce(_net(meta_net_def, predictor_constants.GLOBAL_INIT_NET_TYPE, filename))
    workspace.RunNetOnce(_net(meta_net_def, predictor_constants.PREDICT_INIT_NET_TYPE,
                              filename))
    predict_net = core.Net(_net(meta_net_def, predictor_constants.PREDICT_NET_TYPE, filename))
    workspace.CreateNet(predict_net)
    return predict_net
