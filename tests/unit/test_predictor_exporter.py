"""Predictor export (`caffe2.python.predictor.predictor_exporter`), file-compatible with
Caffe2 1.10.

Pinned from real Caffe2 1.10.2 (the PyTorch 1.10.2 wheel, Python 3.6):
* `caffe2_mlp_predictor.minidb` (tests/fixtures, 1.2 KB) was written by Caffe2's own
  save_to_db; how: tests/fixtures/make_caffe2_predictor_fixture.py, whose printed keys and
  outputs are the literals below. c2compile must load it, and must build the very same
  MetaNetDef for the same model.
* the keys Caffe2 writes for the MNIST tutorial's deploy model (LeNet), printed by the same
  kind of script (Caffe2's wheel has no lmdb backend, so the keys of an lmdb export are
  pinned as LMDB's byte order of the same keys).
An optional test has real Caffe2 read a DB that c2compile exported (skipped without it).
"""
from __future__ import annotations

import itertools
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c2compile import brew, core, model_helper, optimizer, scope, workspace
from c2compile.errors import BlobError, C2Error, DBError
from c2compile.predictor import predictor_exporter as pe
from c2compile.predictor import predictor_py_utils as utils
from c2compile.predictor import serde
from c2compile.predictor.predictor_constants import predictor_constants as pc
from c2compile.proto import caffe2_pb2, metanet_pb2
from c2compile.runtime.db import open_db
from tests.unit.model_testkit import lenet_deploy

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "caffe2_mlp_predictor.minidb"
PROTO_DIR = REPO / "c2compile" / "proto"
CAFFE2_PYTHON = pathlib.Path("/tmp/c2ref/bin/python")

# The fixture model's weights and input (make_caffe2_predictor_fixture.py has the same).
WEIGHTS = {
    "fc1_w": (np.arange(12, dtype=np.float32).reshape(3, 4) - 6) / 8,
    "fc1_b": np.array([0.5, -0.25, 0.125], np.float32),
    "fc2_w": np.array([[1, -1, 0.5], [-0.5, 0.25, 1]], np.float32),
    "fc2_b": np.array([0.125, -0.125], np.float32),
}
DATA = np.array([[1, 2, 3, 4], [-1, 0.5, 0, 2]], np.float32)
# What Caffe2 computed for DATA, and the keys of the DB it wrote.
CAFFE2_SOFTMAX = [[0.09009299427270889, 0.9099069833755493],
                  [0.41111084818840027, 0.5888891220092773]]
CAFFE2_MLP_KEYS = ["!!META_NET_DEF", "fc1_w#%0", "fc1_b#%0", "fc2_w#%0", "fc2_b#%0"]
CAFFE2_LENET_KEYS = ["!!META_NET_DEF", "conv1_w#%0", "conv1_b#%0", "conv2_w#%0", "conv2_b#%0",
                     "fc3_w#%0", "fc3_b#%0", "pred_w#%0", "pred_b#%0"]

DB_TYPES = ["minidb", "lmdb"]


def db_keys(db_type: str, path) -> list[str]:
    with open_db(db_type, str(path), "read") as db:
        return [key for key, _ in db.cursor()]


def expected_keys(db_type: str, caffe2_minidb_keys: list[str]) -> list[str]:
    """minidb keeps Save's order; LMDB orders keys bytewise."""
    if db_type == "minidb":
        return caffe2_minidb_keys
    return sorted(caffe2_minidb_keys, key=lambda k: k.encode())


_ids = itertools.count()


def _unique(base: str) -> str:
    """A net name no other test used (core.Net makes reused names unique per process)."""
    return f"{base}{next(_ids)}"


# ----------------------------------------------------------------------------- models

def mlp(model, data="data"):
    """fc1 4->3, Relu, fc2 3->2, Softmax: the fixture's model."""
    hidden = brew.fc(model, data, "fc1", dim_in=4, dim_out=3)
    hidden = brew.relu(model, hidden, "relu1")
    pred = brew.fc(model, hidden, "fc2", dim_in=3, dim_out=2)
    return brew.softmax(model, pred, "softmax")


def train_mlp(steps: int = 5):
    """An MLP trained with SGD for a few steps in the current workspace; returns its deploy
    model (same parameter names, no loss), already run once on DATA."""
    rng = np.random.default_rng(0)
    train = model_helper.ModelHelper(name=_unique("mlp_train"))
    softmax = mlp(train)
    xent = train.LabelCrossEntropy([softmax, "label"], "xent")
    loss = train.AveragedLoss(xent, "loss")
    train.AddGradientOperators([loss])
    optimizer.build_sgd(train, base_learning_rate=0.5)
    workspace.RunNetOnce(train.param_init_net)
    workspace.FeedBlob("data", rng.standard_normal((8, 4)).astype(np.float32))
    workspace.FeedBlob("label", rng.integers(0, 2, 8).astype(np.int32))
    workspace.CreateNet(train.net)
    workspace.RunNet(train.net, steps)

    deploy = model_helper.ModelHelper(name=_unique("mlp_deploy"), init_params=False)
    mlp(deploy)
    workspace.FeedBlob("data", DATA)
    workspace.CreateNet(deploy.net)
    workspace.RunNet(deploy.net)
    return deploy


def meta_of(model, **kwargs):
    return pe.PredictorExportMeta(predict_net=model.net.Proto(),
                                  parameters=[str(p) for p in model.params],
                                  inputs=["data"], outputs=["softmax"], **kwargs)


def predict(net, data):
    workspace.FeedBlob("data", data)
    workspace.RunNet(net)
    return workspace.FetchBlob("softmax")


def normalized(meta_net_def):
    """The MetaNetDef with its net names blanked: core.Net makes names unique per process
    ("predict-init_1", ...), so they depend on what ran before."""
    copy = metanet_pb2.MetaNetDef()
    copy.CopyFrom(meta_net_def)
    for entry in copy.nets:
        entry.value.ClearField("name")
    return copy


# ----------------------------------------------------------------------------- constants, proto

CAFFE2_CONSTANTS = {
    "META_NET_DEF": "!!META_NET_DEF", "PREDICTOR_DBREADER": "!!PREDICTOR_DBREADER",
    "PARAMETERS_BLOB_TYPE": "PARAMETERS_BLOB_TYPE", "INPUTS_BLOB_TYPE": "INPUTS_BLOB_TYPE",
    "OUTPUTS_BLOB_TYPE": "OUTPUTS_BLOB_TYPE", "GLOBAL_INIT_NET_TYPE": "GLOBAL_INIT_NET_TYPE",
    "PREDICT_INIT_NET_TYPE": "PREDICT_INIT_NET_TYPE", "PREDICT_NET_TYPE": "PREDICT_NET_TYPE",
    "SINGLE_PREDICTOR": "SINGLE_PREDICTOR", "MULTI_PREDICTOR": "MULTI_PREDICTOR",
    "TRAIN_INIT_PLAN_TYPE": "TRAIN_INIT_PLAN_TYPE", "TRAIN_PLAN_TYPE": "TRAIN_PLAN_TYPE",
    "SHAPE_INFO_BLOB": "SHAPE_INFO_BLOB", "DEFERRED_BLOB_READER": "__DEFERRED_BLOB_READER__",
}


def test_predictor_constants_are_caffe2s():
    have = {k: getattr(pc, k) for k in dir(pc) if k.isupper()}
    assert have == CAFFE2_CONSTANTS
    with pytest.raises(AttributeError, match="file format"):
        pc.META_NET_DEF = "x"


# (field, number, label, type) of every MetaNetDef-related message, as Caffe2 1.10 has them.
_O, _R, _REQ = "optional", "repeated", "required"
CAFFE2_METANET = {
    "ModelInfo": [("project", 1, _O, "string"), ("modelClass", 2, _O, "string"),
                  ("version", 3, _O, "string"), ("predictorType", 4, _O, "string"),
                  ("modelId", 5, _O, "string")],
    "BlobsMap": [("key", 1, _REQ, "string"), ("value", 2, _R, "string")],
    "NetsMap": [("key", 1, _REQ, "string"), ("value", 2, _REQ, "caffe2.NetDef")],
    "PlansMap": [("key", 1, _REQ, "string"), ("value", 2, _REQ, "caffe2.PlanDef")],
    "StringMap": [("key", 1, _REQ, "string"), ("value", 2, _REQ, "string")],
    "MetaNetDef": [
        ("blobs", 1, _R, "caffe2.BlobsMap"), ("nets", 2, _R, "caffe2.NetsMap"),
        ("modelInfo", 3, _O, "caffe2.ModelInfo"), ("plans", 4, _R, "caffe2.PlansMap"),
        ("applicationSpecificInfo", 5, _R, "caffe2.StringMap"),
        ("blobsOrder", 6, _R, "string"), ("preLoadBlobs", 7, _R, "string"),
        ("tensorBoundShapes", 8, _O, "caffe2.TensorBoundShapes"),
        ("requestOnlyEmbeddings", 9, _R, "string"), ("aotConfig", 10, _O, "caffe2.AOTConfig")],
}


def _field_row(field):
    label = _R if field.is_repeated else _REQ if field.is_required else _O
    kind = field.message_type.full_name if field.message_type else "string"
    return field.name, field.number, label, kind


def test_metanet_proto_fields_are_caffe2s():
    assert sorted(metanet_pb2.DESCRIPTOR.message_types_by_name) == sorted(CAFFE2_METANET)
    for name, rows in CAFFE2_METANET.items():
        desc = metanet_pb2.DESCRIPTOR.message_types_by_name[name]
        assert [_field_row(f) for f in desc.fields] == rows, name
    assert metanet_pb2.DESCRIPTOR.package == "caffe2"
    assert metanet_pb2.ModelInfo().predictorType == "SINGLE_PREDICTOR"
    # The NetDef inside is caffe2_pb2's own class, not a second copy of it.
    assert metanet_pb2.NetsMap().value.__class__ is caffe2_pb2.NetDef


def test_metanet_pb2_is_what_gen_proto_makes(tmp_path):
    """metanet_pb2.py is protoc's output for metanet.proto plus tools/gen_proto.sh's import
    fix (protoc writes `import caffe2_pb2`, which only the package can resolve)."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a development tool) is not "
                        "installed; cannot regenerate metanet_pb2.py")
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp_path}",
         str(PROTO_DIR / "metanet.proto")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fresh = (tmp_path / "metanet_pb2.py").read_text()
    fresh = re.sub(r"(?m)^import caffe2_pb2 as caffe2__pb2$",
                   "from c2compile.proto import caffe2_pb2 as caffe2__pb2", fresh)
    assert fresh == (PROTO_DIR / "metanet_pb2.py").read_text(), \
        "metanet_pb2.py is stale: run tools/gen_proto.sh"


def test_compat_serves_the_predictor_modules():
    import c2compile.compat  # noqa: F401
    import caffe2.python.predictor.predictor_exporter as c2pe
    import caffe2.python.predictor.predictor_py_utils as c2utils
    import caffe2.python.predictor.serde as c2serde
    from caffe2.proto import metanet_pb2 as c2metanet
    from caffe2.python.predictor_constants import predictor_constants as c2pc
    assert (c2pe, c2utils, c2serde, c2metanet, c2pc) == (pe, utils, serde, metanet_pb2, pc)


# ----------------------------------------------------------------------------- export meta

def test_export_meta_fields_and_defaults_are_caffe2s():
    assert pe.PredictorExportMeta._fields == (
        "predict_net", "parameters", "inputs", "outputs", "shapes", "name", "extra_init_net",
        "global_init_net", "net_type", "num_workers", "trainer_prefix")
    net = core.Net(_unique("n"))
    meta = pe.PredictorExportMeta(net, [core.BlobReference("w")], ["x"], ["y"])
    assert meta.predict_net is not net and meta.predict_net == net.Proto()
    assert (meta.parameters, meta.inputs, meta.outputs, meta.shapes, meta.name) == \
        (["w"], ["x"], ["y"], {}, "")
    assert meta[6:] == (None,) * 5
    assert (meta.parameters_name(), meta.inputs_name(), meta.outputs_name(),
            meta.predict_init_name(), meta.global_init_name(), meta.predict_net_name(),
            meta.train_init_plan_name(), meta.train_plan_name()) == (
        "PARAMETERS_BLOB_TYPE", "INPUTS_BLOB_TYPE", "OUTPUTS_BLOB_TYPE",
        "PREDICT_INIT_NET_TYPE", "GLOBAL_INIT_NET_TYPE", "PREDICT_NET_TYPE",
        "TRAIN_INIT_PLAN_TYPE", "TRAIN_PLAN_TYPE")
    named = meta._replace(name="m", trainer_prefix="dper")
    assert named.predict_net_name() == "PREDICT_NET_TYPE_m"
    assert named.train_plan_name() == "dper_TRAIN_PLAN_TYPE_m"
    helper = pe.get_predictor_exporter_helper("sub")
    assert helper.name == "sub" and helper.parameters_name() == "PARAMETERS_BLOB_TYPE_sub"


@pytest.mark.parametrize("kwargs, match", [
    (dict(parameters=[], inputs=["x", "x"], outputs=["y"]), "unique"),
    (dict(parameters=["x"], inputs=["x"], outputs=["y"]), r"inputs.*\['x'\]"),
    (dict(parameters=["y"], inputs=["x"], outputs=["y"]), r"outputs.*\['y'\]"),
])
def test_export_meta_rejects_what_caffe2_asserted(kwargs, match):
    # Caffe2 asserted these (AssertionError, or nothing under python -O): a ValueError here.
    with pytest.raises(ValueError, match=match):
        pe.PredictorExportMeta(core.Net(_unique("n")), **kwargs)


def test_export_meta_rejects_a_non_net():
    with pytest.raises(TypeError, match="predict_net"):
        pe.PredictorExportMeta("not a net", [], ["x"], ["y"])


def test_a_plan_is_kept_as_data_but_not_exported():
    plan = caffe2_pb2.PlanDef(name="train")
    plan.execution_step.add(name="step", network=["n"], num_iter=3)
    meta = pe.PredictorExportMeta(plan, [], ["x"], ["y"])
    assert meta.predict_net is plan
    # Caffe2 failed with an AttributeError here (a plan has no ops to copy).
    with pytest.raises(TypeError, match="only a NetDef"):
        pe.get_meta_net_def(meta)
    # Plans ride in a MetaNetDef as data (nothing here runs one).
    meta_net_def = metanet_pb2.MetaNetDef()
    utils.AddPlan(meta_net_def, meta.train_plan_name(), plan)
    back = serde.deserialize_protobuf_struct(serde.serialize_protobuf_struct(meta_net_def),
                                             metanet_pb2.MetaNetDef)
    assert utils.GetPlan(back, "TRAIN_PLAN_TYPE") == plan
    assert utils.GetPlan(back, "nope") is None


# ----------------------------------------------------------------------------- the MetaNetDef

def _fixture_model():
    model = model_helper.ModelHelper(name=_unique("mlp"), init_params=False)
    mlp(model)
    for name, value in WEIGHTS.items():
        workspace.FeedBlob(name, value)
    workspace.FeedBlob("data", DATA)
    workspace.RunNetOnce(model.net)
    return model


def _fixture_meta_net_def():
    with open_db("minidb", str(FIXTURE), "read") as db:
        records = dict(db.cursor())
    blob = caffe2_pb2.BlobProto.FromString(records[pc.META_NET_DEF])
    assert (blob.name, blob.type) == (pc.META_NET_DEF, "std::string")
    return metanet_pb2.MetaNetDef.FromString(blob.content)


def test_meta_net_def_is_the_one_caffe2_writes():
    """Same model, same MetaNetDef as Caffe2 1.10's (net names aside): the predict init net
    zero-fills data [2, 4] and softmax [2, 2], the global init net is one Load from
    !!PREDICTOR_DBREADER (listed twice among its external inputs, as Caffe2 had it), the
    predict net's externals are inputs + parameters -> outputs, and the blob lists."""
    model = _fixture_model()
    ours = pe.get_meta_net_def(meta_of(model))
    caffe2s = _fixture_meta_net_def()
    assert normalized(ours) == normalized(caffe2s)
    # and so, byte for byte, once the names agree
    for entry, theirs in zip(ours.nets, caffe2s.nets):
        entry.value.name = theirs.value.name
    assert ours.SerializeToString() == caffe2s.SerializeToString()


def test_model_id_of_the_predict_net_goes_to_both_init_nets():
    model = _fixture_model()
    model.net.Proto().arg.add(name="model_id", i=42)
    extra = core.Net(_unique("extra"))
    extra.Proto().arg.add(name="model_id", i=7)  # replaced by the predict net's
    meta_net_def = pe.get_meta_net_def(meta_of(model, extra_init_net=extra))
    for key in (pc.PREDICT_INIT_NET_TYPE, pc.GLOBAL_INIT_NET_TYPE, pc.PREDICT_NET_TYPE):
        arg = utils.GetArgumentByName(utils.GetNet(meta_net_def, key), "model_id")
        assert arg is not None and arg.i == 42, key


def test_meta_options_reach_the_nets():
    model = _fixture_model()
    extra = core.Net(_unique("extra"))
    extra.ConstantFill([], "thread_local", shape=[1], value=3.0)
    glob = core.Net(_unique("glob"))
    glob.ConstantFill([], "shared", shape=[2], value=1.0)
    meta = meta_of(model, shapes={"data": [5, 4]}, name="m1", extra_init_net=extra,
                   global_init_net=glob, net_type="dag", num_workers=4)
    meta_net_def = pe.get_meta_net_def(meta)
    assert [e.key for e in meta_net_def.nets] == [
        "PREDICT_INIT_NET_TYPE_m1", "GLOBAL_INIT_NET_TYPE_m1", "PREDICT_NET_TYPE_m1"]
    assert [e.key for e in meta_net_def.blobs] == [
        "PARAMETERS_BLOB_TYPE_m1", "INPUTS_BLOB_TYPE_m1", "OUTPUTS_BLOB_TYPE_m1"]
    init = utils.GetNet(meta_net_def, "PREDICT_INIT_NET_TYPE_m1")
    assert [(op.type, list(op.output)) for op in init.op] == [
        ("ConstantFill", ["data"]), ("ConstantFill", ["softmax"]),
        ("ConstantFill", ["thread_local"])]
    assert list(init.op[0].arg[0].ints) == [5, 4]  # shapes win over the workspace
    glob_net = utils.GetNet(meta_net_def, "GLOBAL_INIT_NET_TYPE_m1")
    assert [op.type for op in glob_net.op] == ["Load", "ConstantFill"]
    predict = utils.GetNet(meta_net_def, "PREDICT_NET_TYPE_m1")
    assert (predict.type, predict.num_workers) == ("dag", 4)
    assert utils.GetBlobsByTypePrefix(meta_net_def, pc.PARAMETERS_BLOB_TYPE) == list(WEIGHTS)


def test_manifold_db_export_has_no_load():
    model = _fixture_model()
    meta_net_def = pe.get_meta_net_def(meta_of(model), db_type="manifold_db")
    glob = utils.GetNet(meta_net_def, pc.GLOBAL_INIT_NET_TYPE)
    assert list(glob.op) == [] and list(glob.external_input) == []


def test_an_input_without_a_shape_names_the_blob():
    model = _fixture_model()
    workspace.ResetWorkspace()
    with pytest.raises(BlobError, match="'data'.*shape"):
        pe.get_meta_net_def(meta_of(model))


def test_shapes_come_from_the_given_workspace():
    from c2compile.test_util import StandaloneWorkspace  # Caffe2's workspace.C.Workspace
    model = _fixture_model()
    ws = StandaloneWorkspace()
    ws.create_blob("data").feed(np.zeros((7, 4), np.float32))
    ws.create_blob("softmax").feed(np.zeros((7, 2), np.float32))
    meta_net_def = pe.get_meta_net_def(meta_of(model), ws=ws)
    init = utils.GetNet(meta_net_def, pc.PREDICT_INIT_NET_TYPE)
    assert [list(op.arg[0].ints) for op in init.op] == [[7, 4], [7, 2]]


def test_set_model_info():
    meta_net_def = metanet_pb2.MetaNetDef()
    pe.set_model_info(meta_net_def, "proj", "Cls", "v3")
    info = meta_net_def.modelInfo
    assert (info.project, info.modelClass, info.version, info.predictorType) == (
        "proj", "Cls", "v3", "SINGLE_PREDICTOR")
    with pytest.raises(TypeError, match="MetaNetDef"):
        pe.set_model_info(caffe2_pb2.NetDef(), "p", "c", "v")


_names = st.text("abcXY_", min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(st.tuples(st.sampled_from(["P", "P_a", "Q"]),
                                  st.lists(_names, max_size=4)), max_size=5))
def test_map_helpers_first_match_and_prefix_order(entries):
    meta_net_def = metanet_pb2.MetaNetDef()
    for key, blobs in entries:
        utils.AddBlobs(meta_net_def, key, blobs)  # a repeated key extends the first entry
    merged: dict[str, list[str]] = {}
    for key, blobs in entries:
        merged.setdefault(key, []).extend(blobs)
    assert [e.key for e in meta_net_def.blobs] == list(merged)
    for key, blobs in merged.items():
        assert list(utils.GetBlobs(meta_net_def, key)) == blobs
    assert utils.GetBlobs(meta_net_def, "none") == []
    order = list(dict.fromkeys(b for k, bs in merged.items() if k.startswith("P") for b in bs))
    assert utils.GetBlobsByTypePrefix(meta_net_def, "P") == order
    # StringMap keeps duplicates; the first one wins, as in Caffe2.
    for key, blobs in entries:
        meta_net_def.applicationSpecificInfo.add(key=key, value=",".join(blobs))
    first = {}
    for key, blobs in entries:
        first.setdefault(key, ",".join(blobs))
    assert utils.GetApplicationSpecificInfoDict(meta_net_def) == first
    back = serde.deserialize_protobuf_struct(serde.serialize_protobuf_struct(meta_net_def),
                                             metanet_pb2.MetaNetDef)
    assert back == meta_net_def


def test_replace_blobs():
    meta_net_def = metanet_pb2.MetaNetDef()
    utils.AddBlobs(meta_net_def, "K", ["a", "b"])
    utils.ReplaceBlobs(meta_net_def, "K", ["c"])
    assert list(utils.GetBlobs(meta_net_def, "K")) == ["c"]
    with pytest.raises(KeyError, match="'L'"):
        utils.ReplaceBlobs(meta_net_def, "L", ["c"])


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_trained_mlp_round_trip_is_bit_identical(tmp_path, db_type):
    deploy = train_mlp()
    params = {str(p): workspace.FetchBlob(p) for p in deploy.params}
    assert not np.array_equal(params["fc1_b"], np.zeros(3, np.float32))  # it did train
    before = workspace.FetchBlob("softmax")
    path = str(tmp_path / f"mlp.{db_type}")
    pe.save_to_db(db_type, path, meta_of(deploy))
    assert db_keys(db_type, path) == expected_keys(db_type, CAFFE2_MLP_KEYS)

    workspace.ResetWorkspace()
    net = pe.prepare_prediction_net(path, db_type)
    assert isinstance(net, core.Net)
    for name, value in params.items():
        loaded = workspace.FetchBlob(name)
        assert loaded.dtype == value.dtype and loaded.tobytes() == value.tobytes(), name
    after = predict(net, DATA)
    assert after.dtype == before.dtype and after.tobytes() == before.tobytes()
    assert workspace.HasBlob(pc.PREDICTOR_DBREADER) and workspace.HasBlob(pc.META_NET_DEF)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_mnist_tutorial_deploy_model_round_trip(tmp_path, db_type):
    """The tutorial's steps: export the LeNet deploy model, reset, load, predict."""
    deploy = model_helper.ModelHelper(name=_unique("mnist_deploy"),
                                      arg_scope={"order": "NCHW"}, init_params=True)
    lenet_deploy(deploy)
    workspace.RunNetOnce(deploy.param_init_net)
    data = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    workspace.FeedBlob("data", data)
    workspace.CreateNet(deploy.net)
    workspace.RunNet(deploy.net)
    before = workspace.FetchBlob("softmax")
    path = os.path.join(workspace.RootFolder(), f"mnist_model.{db_type}")
    pe.save_to_db(db_type, path, meta_of(deploy))
    assert db_keys(db_type, path) == expected_keys(db_type, CAFFE2_LENET_KEYS)

    workspace.ResetWorkspace(workspace.RootFolder())
    net = pe.prepare_prediction_net(path, db_type)
    assert predict(net, data).tobytes() == before.tobytes()


_DTYPES = [np.float32, np.float64, np.int32, np.int64, np.int8, np.uint8, np.int16,
           np.uint16, np.bool_, np.float16]


@st.composite
def _parameter(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    raw = draw(st.binary(min_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
                         max_size=int(np.prod(shape)) * np.dtype(dtype).itemsize))
    value = np.frombuffer(raw, dtype=np.uint8).copy()
    if dtype is np.bool_:
        value = value & 1
    return value.view(dtype).reshape(shape)


@settings(max_examples=15, deadline=None)
@given(params=st.lists(_parameter(), min_size=1, max_size=4), db_type=st.sampled_from(DB_TYPES),
       name=st.sampled_from(["", "sub"]))
def test_any_parameters_come_back_bit_identical(tmp_path_factory, params, db_type, name):
    """Parameters of any dtype and shape (empty, size-1, NaN payloads in the float bits)."""
    workspace.ResetWorkspace()
    names = [f"p{i}" for i in range(len(params))]
    for n, value in zip(names, params):
        workspace.FeedBlob(n, value)
    net = core.Net(_unique("copy"))
    net.Copy("x", "y")
    workspace.FeedBlob("x", np.ones(2, np.float32))
    workspace.FeedBlob("y", np.ones(2, np.float32))
    meta = pe.PredictorExportMeta(net, names, ["x"], ["y"], name=name)
    path = str(tmp_path_factory.mktemp("db") / f"model.{db_type}")
    pe.save_to_db(db_type, path, meta)

    workspace.ResetWorkspace()
    meta_net_def = pe.load_from_db(path, db_type)
    assert list(utils.GetBlobs(meta_net_def, meta.parameters_name())) == names
    workspace.RunNetOnce(utils.GetNet(meta_net_def, meta.global_init_name()))
    for n, value in zip(names, params):
        loaded = workspace.FetchBlob(n)
        assert loaded.dtype == value.dtype and loaded.shape == value.shape, n
        assert loaded.tobytes() == value.tobytes(), n


def test_load_from_db_puts_nets_on_the_device_option(tmp_path):
    model = _fixture_model()
    path = str(tmp_path / "m.minidb")
    pe.save_to_db("minidb", path, meta_of(model))
    workspace.ResetWorkspace()
    plain = pe.load_from_db(path, "minidb")
    assert all(not op.HasField("device_option") for e in plain.nets for op in e.value.op)
    option = core.DeviceOption(caffe2_pb2.CPU, 0)
    option.node_name = "here"
    for meta_net_def in (pe.load_from_db(path, "minidb", device_option=option),
                         _in_scope(option, lambda: pe.load_from_db(path, "minidb"))):
        ops = [op for e in meta_net_def.nets for op in e.value.op]
        assert ops and all(op.device_option == option for op in ops)


def _in_scope(option, fn):
    with scope.DeviceScope(option):
        return fn()


# ----------------------------------------------------------------------------- Caffe2's files

def test_a_db_written_by_caffe2_loads_and_predicts():
    net = pe.prepare_prediction_net(str(FIXTURE), "minidb")
    for name, value in WEIGHTS.items():
        assert workspace.FetchBlob(name).tobytes() == value.tobytes(), name
    np.testing.assert_allclose(predict(net, DATA), CAFFE2_SOFTMAX, rtol=1e-6)
    assert db_keys("minidb", FIXTURE) == CAFFE2_MLP_KEYS


def test_our_minidb_matches_caffe2s_byte_for_byte_but_for_net_names(tmp_path):
    """The same model exported by c2compile gives Caffe2's file, once the process-dependent
    net names are made the same."""
    model = _fixture_model()
    meta_net_def = pe.get_meta_net_def(meta_of(model))
    for entry, theirs in zip(meta_net_def.nets, _fixture_meta_net_def().nets):
        entry.value.name = theirs.value.name
    workspace.FeedBlob(pc.META_NET_DEF, meta_net_def.SerializeToString())
    path = str(tmp_path / "ours.minidb")
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", [pc.META_NET_DEF] + list(WEIGHTS), [], absolute_path=True, db=path,
        db_type="minidb"))
    assert pathlib.Path(path).read_bytes() == FIXTURE.read_bytes()


@pytest.mark.skipif(not CAFFE2_PYTHON.exists(), reason=f"real Caffe2 ({CAFFE2_PYTHON}) is "
                    "not installed on this machine")
def test_real_caffe2_loads_a_db_we_exported(tmp_path):
    deploy = train_mlp()
    ours = workspace.FetchBlob("softmax")
    path = str(tmp_path / "ours.minidb")
    pe.save_to_db("minidb", path, meta_of(deploy))
    script = (
        "import json, sys, numpy as np\n"
        "from caffe2.python import workspace\n"
        "from caffe2.python.predictor import predictor_exporter as pe\n"
        "net = pe.prepare_prediction_net(sys.argv[1], 'minidb')\n"
        "workspace.FeedBlob('data', np.array(json.loads(sys.argv[2]), np.float32))\n"
        "workspace.RunNet(net)\n"
        "print(json.dumps(workspace.FetchBlob('softmax').tolist()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([str(CAFFE2_PYTHON), "-c", script, path, json.dumps(DATA.tolist())],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(theirs, ours, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_a_missing_file_is_named(tmp_path, db_type):
    path = str(tmp_path / f"absent.{db_type}")
    with pytest.raises(DBError, match=re.escape(path)):
        pe.prepare_prediction_net(path, db_type)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_a_db_without_a_meta_net_def_names_the_file_and_key(tmp_path, db_type):
    path = str(tmp_path / f"params.{db_type}")
    workspace.FeedBlob("w", np.ones(3, np.float32))
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", ["w"], [], absolute_path=True, db=path, db_type=db_type))
    workspace.ResetWorkspace()
    with pytest.raises(DBError) as info:
        pe.prepare_prediction_net(path, db_type)
    assert path in str(info.value) and pc.META_NET_DEF in str(info.value)


def test_a_meta_net_def_key_that_holds_something_else_is_named(tmp_path):
    path = str(tmp_path / "bad.minidb")
    workspace.FeedBlob(pc.META_NET_DEF, b"\xff\xff not a protobuf")
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", [pc.META_NET_DEF], [], absolute_path=True, db=path, db_type="minidb"))
    workspace.ResetWorkspace()
    with pytest.raises(DBError) as info:
        pe.prepare_prediction_net(path, "minidb")
    assert path in str(info.value) and pc.META_NET_DEF in str(info.value)

    workspace.ResetWorkspace()
    workspace.FeedBlob(pc.META_NET_DEF, np.zeros(2, np.float32))
    path = str(tmp_path / "tensor.minidb")
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", [pc.META_NET_DEF], [], absolute_path=True, db=path, db_type="minidb"))
    workspace.ResetWorkspace()
    with pytest.raises(DBError, match=f"{re.escape(path)}.*{pc.META_NET_DEF}"):
        pe.prepare_prediction_net(path, "minidb")


def test_a_named_model_is_not_what_prepare_prediction_net_reads(tmp_path):
    # prepare_prediction_net looks up the unnamed keys, as in Caffe2 (which then crashed on
    # None): the error names the file, the key and the nets that are there.
    model = _fixture_model()
    path = str(tmp_path / "named.minidb")
    pe.save_to_db("minidb", path, meta_of(model, name="m1"))
    workspace.ResetWorkspace()
    with pytest.raises(DBError) as info:
        pe.prepare_prediction_net(path, "minidb")
    message = str(info.value)
    assert path in message and pc.META_NET_DEF in message
    assert "GLOBAL_INIT_NET_TYPE" in message and "GLOBAL_INIT_NET_TYPE_m1" in message


def test_an_unknown_db_type_is_an_error(tmp_path):
    with pytest.raises(C2Error, match="nosuchdb"):
        pe.prepare_prediction_net(str(FIXTURE), "nosuchdb")
