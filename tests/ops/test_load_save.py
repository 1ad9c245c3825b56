"""Save, Load and Checkpoint through workspaces and nets, on both DB backends.

Semantics pinned from Caffe2 1.x (caffe2/operators/load_save_op.{h,cc},
load_save_op_util.cc) and checked against the PyTorch 1.10.2 build of Caffe2: Save writes
tensors in chunks under `<name>#%<id>` (chunk_size -1: the default 1,000,000, 0: none),
strings under `<name>`; Load matches the key up to "#%" after strip_prefix/add_prefix;
allow_incomplete leaves an output that is not in the DB as it was (absent stays absent);
Checkpoint saves all its inputs, the int64 iteration (input 0) included, to
`db % iteration` when iteration % every == 0 ("ckpt_%05d" -> ckpt_00004, -4 with every=2
saves). Unlike Caffe2, a failed Load writes nothing (Caffe2 had overwritten the blobs it
loaded before the error).
"""
import os
import tempfile

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from c2compile import brew, config, core, optimizer, workspace
from c2compile.errors import ArgumentError, DBError, OpError, ShapeError, UnsupportedError
from c2compile.ops.load_save import format_checkpoint_name
from c2compile.ops.testing import infer
from c2compile.proto import caffe2_pb2
from c2compile.runtime.db import DB_TYPES, open_db
from c2compile.utils import NumpyArrayToCaffe2Tensor
from tests.unit.model_testkit import new_model
from tests.unit.test_serialization import arrays, same_blob

SOME = settings(max_examples=15, deadline=None)
NAMES = st.text("abcxyz_/", min_size=1, max_size=6).filter(lambda n: "#%" not in n)
BLOBS = st.dictionaries(NAMES, arrays(), min_size=1, max_size=4)


def run(op_type, inputs, outputs, **args):
    workspace.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **args))


def feed(blobs: dict) -> None:
    for name, value in blobs.items():
        workspace.FeedBlob(name, value)


def records(db_type, path) -> dict:
    with open_db(db_type, str(path)) as db:
        return dict(db.cursor())


def snapshot() -> dict:
    """Every blob of the current workspace, copied."""
    return {n: workspace.FetchBlob(n) for n in workspace.Blobs()}


def assert_unchanged(before: dict) -> None:
    assert workspace.Blobs() == sorted(before)
    for name, value in before.items():
        got = workspace.FetchBlob(name)
        assert same_blob(got, value) if isinstance(value, np.ndarray) else got == value, name


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("db_type", DB_TYPES)
@SOME
@given(blobs=BLOBS, chunk_size=st.sampled_from([1, 2, 3, 7, 0, -1]))
def test_every_datatype_round_trips(db_type, blobs, chunk_size):
    """float/int/uint/bool/float16/double tensors and strings, any shape (empty, 0-d,
    size-1 dims), chunked at small sizes, unchunked (0) and at the default size (-1)."""
    with tempfile.TemporaryDirectory() as root:
        workspace.ResetWorkspace(root)
        feed(blobs)
        run("Save", list(blobs), [], db="m", db_type=db_type, chunk_size=chunk_size)
        step = {0: None, -1: 1_000_000}.get(chunk_size, chunk_size)
        assert len(records(db_type, os.path.join(root, "m"))) == sum(
            1 if step is None else max(1, -(-v.size // step)) for v in blobs.values())
        workspace.ResetWorkspace(root)
        run("Load", [], list(blobs), db="m", db_type=db_type)
        for name, value in blobs.items():
            assert same_blob(workspace.FetchBlob(name), value), name


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_large_tensor_crosses_many_chunks(tmp_path, db_type):
    big = np.random.default_rng(0).standard_normal((37, 29)).astype(np.float32)
    workspace.FeedBlob("big", big)
    run("Save", ["big"], [], db="big.db", db_type=db_type, chunk_size=100)
    keys = list(records(db_type, tmp_path / "big.db"))
    assert sorted(keys) == sorted(f"big#%{i}" for i in range(11))  # 1073 elements
    workspace.ResetWorkspace()
    run("Load", [], ["big"], db="big.db", db_type=db_type)
    assert same_blob(workspace.FetchBlob("big"), big)


@SOME
@given(blobs=BLOBS)
def test_minidb_to_lmdb_and_back_is_identical(blobs):
    """Saved to a minidb, loaded, saved to an lmdb, loaded: the same blobs, and the two DBs
    hold the same records (an lmdb orders them by key, a minidb as written)."""
    with tempfile.TemporaryDirectory() as root:
        workspace.ResetWorkspace(root)
        feed(blobs)
        names = list(blobs)
        run("Save", names, [], db="a.minidb", db_type="minidb", chunk_size=2)
        workspace.ResetWorkspace(root)
        run("Load", [], names, db="a.minidb", db_type="minidb")
        run("Save", names, [], db="b.lmdb", db_type="lmdb", chunk_size=2)
        workspace.ResetWorkspace(root)
        run("Load", [], names, db="b.lmdb", db_type="lmdb")
        for name, value in blobs.items():
            assert same_blob(workspace.FetchBlob(name), value), name
        assert records("minidb", os.path.join(root, "a.minidb")) == \
            records("lmdb", os.path.join(root, "b.lmdb"))


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_string_blobs_and_db_readers_round_trip(tmp_path, db_type):
    workspace.FeedBlob("meta", "a serialized MetaNetDef")
    path = str(tmp_path / "data.lmdb")
    with open_db("lmdb", path, "new") as db:
        txn = db.transaction()
        txn.put("k1", b"v1")
        txn.put("k2", b"v2")
        txn.commit()
    run("CreateDB", [], ["reader"], db=path, db_type="lmdb")
    workspace.FetchBlob("reader").read()
    run("Save", ["meta", "reader"], [], db="s", db_type=db_type)
    assert sorted(records(db_type, tmp_path / "s")) == ["meta", "reader"]
    workspace.ResetWorkspace()
    run("Load", [], ["meta", "reader"], db="s", db_type=db_type)
    assert workspace.FetchBlob("meta") == b"a serialized MetaNetDef"
    assert workspace.FetchBlob("reader").read() == ("k2", b"v2")  # where it was saved


def test_save_writes_a_new_db(tmp_path):
    workspace.FeedBlob("a", np.ones(2))
    workspace.FeedBlob("b", np.zeros(2))
    run("Save", ["a"], [], db="m", db_type="minidb")
    run("Save", ["b"], [], db="m", db_type="minidb")
    assert list(records("minidb", tmp_path / "m")) == ["b#%0"]


def test_relative_paths_are_under_the_root_folder(tmp_path):
    workspace.FeedBlob("a", np.arange(3))
    os.makedirs(tmp_path / "sub")
    run("Save", ["a"], [], db="sub/m", db_type="minidb")
    assert (tmp_path / "sub" / "m").is_file()
    run("Save", ["a"], [], db=str(tmp_path / "abs.minidb"), db_type="minidb", absolute_path=1)
    run("Load", [], ["a"], db=str(tmp_path / "abs.minidb"), db_type="minidb",
        absolute_path=1)
    with pytest.raises(DBError, match=f"'{tmp_path}/{tmp_path}/abs.minidb'"):
        # Caffe2 joins root + "/" + db even for an absolute db: the root folder comes first.
        run("Load", [], ["a"], db=str(tmp_path / "abs.minidb"), db_type="minidb")


# ----------------------------------------------------------------------------- names

def test_blob_name_overrides_and_strip_prefix_on_save(tmp_path):
    feed({"gpu_0/w": np.ones(2, np.float32), "gpu_0/b": np.zeros(1, np.int32)})
    run("Save", ["gpu_0/w", "gpu_0/b"], [], db="s", db_type="minidb", strip_prefix="gpu_0/")
    assert list(records("minidb", tmp_path / "s")) == ["w#%0", "b#%0"]
    run("Save", ["gpu_0/w", "gpu_0/b"], [], db="o", db_type="minidb",
        blob_name_overrides=["W", "B"])
    assert list(records("minidb", tmp_path / "o")) == ["W#%0", "B#%0"]
    workspace.ResetWorkspace()
    run("Load", [], ["w", "b"], db="s", db_type="minidb")
    assert workspace.FetchBlob("w").tolist() == [1, 1]


def test_add_prefix_strip_prefix_and_source_blob_names_on_load(tmp_path):
    feed({"gpu_0/w": np.arange(3, dtype=np.float32), "gpu_0/b": np.arange(2)})
    run("Save", ["gpu_0/w", "gpu_0/b"], [], db="s", db_type="lmdb")
    workspace.ResetWorkspace()
    run("Load", [], ["gpu_1/w"], db="s", db_type="lmdb", strip_prefix="gpu_0/",
        add_prefix="gpu_1/")
    run("Load", [], ["renamed"], db="s", db_type="lmdb", source_blob_names=["gpu_0/b"])
    assert workspace.Blobs() == ["gpu_1/w", "renamed"]
    assert workspace.FetchBlob("renamed").tolist() == [0, 1]


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_load_all_loads_every_blob(tmp_path, db_type):
    blobs = {"w": np.arange(5, dtype=np.float32), "s": np.array([b"x"], dtype=object),
             "e": np.zeros((0, 2), np.int8)}
    feed(blobs)
    run("Save", list(blobs), [], db="all", db_type=db_type, chunk_size=2)
    workspace.ResetWorkspace()
    workspace.FeedBlob("untouched", np.ones(1))
    run("Load", [], [], db="all", db_type=db_type, load_all=1, add_prefix="p/")
    assert workspace.Blobs() == ["p/e", "p/s", "p/w", "untouched"]
    run("Load", [], ["w"], db="all", db_type=db_type, load_all=1)  # outputs must be there
    for name, value in blobs.items():
        assert same_blob(workspace.FetchBlob(name), value)
    with pytest.raises(DBError, match=rf"'nope' not found in {db_type} '.*/all'"):
        run("Load", [], ["nope"], db="all", db_type=db_type, load_all=1)


def test_several_dbs(tmp_path):
    feed({"a": np.ones(1), "b": np.zeros(1)})
    run("Save", ["a"], [], db="one", db_type="minidb")
    run("Save", ["b"], [], db="two", db_type="minidb")
    run("Save", ["a"], [], db="three", db_type="minidb")
    workspace.ResetWorkspace()
    run("Load", [], ["a", "b"], dbs=["one", "two"], db_type="minidb")
    assert workspace.Blobs() == ["a", "b"]
    with pytest.raises(DBError, match=r"minidb '.*/three', key 'a#%0': blob 'a' is also in "
                                      r"minidb '.*/one' \(duplicate key\)"):
        run("Load", [], [], dbs=["one", "three"], db_type="minidb", load_all=1)
    with pytest.raises(ArgumentError, match="names 'one' twice"):
        run("Load", [], ["a"], dbs=["one", "one"], db_type="minidb")


def test_load_from_a_db_reader(tmp_path):
    """The predictor exporter's form: CreateDB makes a reader, Load reads the params from it
    (from where its cursor is)."""
    feed({"w": np.arange(4, dtype=np.float32), "b": np.ones(2, np.float32)})
    run("Save", ["w", "b"], [], db=str(tmp_path / "p.minidb"), db_type="minidb",
        absolute_path=1, chunk_size=3)
    workspace.ResetWorkspace()
    run("CreateDB", [], ["reader"], db=str(tmp_path / "p.minidb"), db_type="minidb")
    run("Load", ["reader"], ["b", "w"])
    assert workspace.FetchBlob("w").tolist() == [0, 1, 2, 3]
    run("CreateDB", [], ["reader2"], db=str(tmp_path / "p.minidb"), db_type="minidb")
    run("Load", ["reader2"], [], load_all=1, add_prefix="x_")
    assert set(workspace.Blobs()) == {"b", "w", "reader", "reader2", "x_b", "x_w"}
    workspace.FeedBlob("t", np.ones(1))
    with pytest.raises(OpError, match="input 0 't' holds a ndarray"):
        run("Load", ["t"], ["w"])


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def saved(tmp_path):
    """A minidb and an lmdb holding w (4 chunks of int64) and s (a string tensor); the
    workspace then holds other values under those names."""
    feed({"w": np.arange(7, dtype=np.int64), "s": np.array([b"a", b"b"], dtype=object)})
    for db_type in DB_TYPES:
        run("Save", ["w", "s"], [], db=f"good.{db_type}", db_type=db_type, chunk_size=2)
    workspace.ResetWorkspace()
    feed({"w": np.float32(-1).reshape(1), "other": np.ones(3)})
    return tmp_path


def _failed_load_keeps_workspace(match, **args):
    before = snapshot()
    with pytest.raises(DBError, match=match) as err:
        run("Load", [], args.pop("outputs", ["w", "s"]), **args)
    assert "op #0 (Load)" in str(err.value)
    assert_unchanged(before)
    return err.value


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_missing_db_names_the_file(saved, db_type):
    err = _failed_load_keeps_workspace(f"cannot open {db_type} '{saved}/nope.db' for read",
                                       db="nope.db", db_type=db_type)
    assert err.path == f"{saved}/nope.db"
    _failed_load_keeps_workspace("nope.db", db="nope.db", db_type=db_type, load_all=1,
                                 outputs=[])


@pytest.mark.parametrize("db_type", DB_TYPES)
@pytest.mark.parametrize("load_all", [0, 1])
def test_blob_not_in_the_db_names_file_and_key(saved, db_type, load_all):
    err = _failed_load_keeps_workspace(
        rf"blob\(s\) 'x' not found in {db_type} '{saved}/good.{db_type}': no key 'x' or "
        r"'x#%0'", db=f"good.{db_type}", db_type=db_type, outputs=["w", "x"],
        load_all=load_all)
    assert err.key == "x#%0" and err.blob == "x"


def test_truncated_minidb_names_file_and_key(saved):
    data = (saved / "good.minidb").read_bytes()
    (saved / "cut.minidb").write_bytes(data[:-3])
    for load_all in (0, 1):
        _failed_load_keeps_workspace(rf"minidb '{saved}/cut.minidb' is truncated: the record "
                                     r"at offset \d+ \(key 's#%0'\)", db="cut.minidb",
                                     db_type="minidb", load_all=load_all)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_missing_chunk_names_file_blob_and_keys(saved, db_type):
    good = records(db_type, saved / f"good.{db_type}")
    with open_db(db_type, str(saved / f"holey.{db_type}"), "new") as db:
        txn = db.transaction()
        for key, value in good.items():
            if key != "w#%2":
                txn.put(key, value)
        txn.commit()
    for load_all in (0, 1):
        _failed_load_keeps_workspace(
            rf"{db_type} '{saved}/holey.{db_type}': tensor 'w' \[7\] is incomplete: its "
            r"chunk\(s\) under key\(s\) 'w#%0', 'w#%1', 'w#%3' hold 5 of its 7 values; "
            r"elements \[4, 6\) are in no chunk", db=f"holey.{db_type}", db_type=db_type,
            load_all=load_all)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_record_that_is_not_a_blob_proto_names_file_and_key(saved, db_type):
    """The MNIST tutorial's LMDB holds TensorProtos records: Load refuses them by key."""
    protos = caffe2_pb2.TensorProtos(protos=[NumpyArrayToCaffe2Tensor(np.ones(2))])
    with open_db(db_type, str(saved / f"bad.{db_type}"), "new") as db:
        txn = db.transaction()
        txn.put("a", records(db_type, saved / f"good.{db_type}")["w#%0"])
        txn.put("s", protos.SerializeToString())
        txn.put("w", b"\x08\xff")
        txn.commit()
    _failed_load_keeps_workspace(rf"{db_type} '{saved}/bad.{db_type}', key 's': the record is "
                                 r"not a serialized caffe2.BlobProto \(it has no blob type",
                                 db=f"bad.{db_type}", db_type=db_type, outputs=["s"])
    _failed_load_keeps_workspace(rf"{db_type} '{saved}/bad.{db_type}', key 'w': the record is "
                                 r"not a serialized caffe2.BlobProto", db=f"bad.{db_type}",
                                 db_type=db_type, outputs=["w"])
    # load_all reads "a" (a good chunk) first, then fails: "a" is not written either
    _failed_load_keeps_workspace("not a serialized caffe2.BlobProto", db=f"bad.{db_type}",
                                 db_type=db_type, outputs=[], load_all=1)


def test_failed_load_in_a_net_writes_nothing(saved):
    """A net whose Load fails after earlier ops ran (and after load_all read good blobs)
    leaves the workspace as it was."""
    (saved / "cut.minidb").write_bytes((saved / "good.minidb").read_bytes()[:-3])
    net = core.Net("loader")
    net.ConstantFill([], ["filled"], shape=[2], value=3.0)
    net.Load([], [], db="good.minidb", db_type="minidb", load_all=1, add_prefix="first_")
    net.Load([], [], db="cut.minidb", db_type="minidb", load_all=1)
    before = snapshot()
    with pytest.raises(DBError, match="op #2 .*truncated"):
        workspace.RunNetOnce(net)
    assert_unchanged(before)


def test_allow_incomplete_keeps_or_leaves_absent(saved):
    """As Caffe2: an output not in the DB keeps its value, or stays absent."""
    run("Load", [], ["w", "other", "absent"], db="good.minidb", db_type="minidb",
        allow_incomplete=True)
    assert workspace.Blobs() == ["other", "w"]
    assert workspace.FetchBlob("w").tolist() == list(range(7))
    assert workspace.FetchBlob("other").tolist() == [1, 1, 1]


def test_keep_device_loads_to_the_cpu(saved):
    """c2compile keeps blobs on the CPU: a tensor saved from a CUDA device loads there too,
    with or without keep_device."""
    cuda = caffe2_pb2.BlobProto.FromString(records("minidb", saved / "good.minidb")["s#%0"])
    cuda.tensor.device_detail.device_type = caffe2_pb2.CUDA
    with open_db("minidb", str(saved / "cuda.minidb"), "new") as db:
        db.transaction().put("s#%0", cuda.SerializeToString())
    for keep in (0, 1):
        run("Load", [], ["s"], db="cuda.minidb", db_type="minidb", keep_device=keep)
        assert workspace.FetchBlob("s").tolist() == [b"a", b"b"]


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("args, match", [
    (dict(db="m"), "must specify a db type"),
    (dict(db_type="minidb"), "must specify a db name"),
    (dict(db="m", db_type="minidb", blob_name_overrides=["x"]),
     "blob_name_overrides has 1 names for 2 input blobs"),
    (dict(db="m", db_type="minidb", blob_name_overrides=["x", "y"], strip_prefix="a"),
     "mutually exclusive"),
    (dict(db="m", db_type="minidb", blob_name_overrides=["x", "x"]),
     r"inputs 0 \('a/w'\) and 1 \('b/w'\) would both be saved as 'x'"),
    (dict(db="m", db_type="minidb", strip_prefix="/"), "would both be saved as 'w'"),
    (dict(db="m", db_type="minidb", chunk_size=-3), "chunk size -3 is negative"),
    (dict(db="m", db_type="minidb", options=b"\xff"), "not a serialized"),
])
def test_save_argument_errors(tmp_path, args, match):
    feed({"a/w": np.ones(1), "b/w": np.ones(1)})
    with pytest.raises(ArgumentError, match=match):
        run("Save", ["a/w", "b/w"], [], **args)
    assert not (tmp_path / "m").exists()


def test_save_of_a_blob_without_serializer_writes_no_file(tmp_path):
    run("CreateMutex", [], ["mu"])
    workspace.FeedBlob("w", np.ones(2))
    with pytest.raises(UnsupportedError, match=r"op #0 \(Save\): blob 'mu' holds a Mutex"):
        run("Save", ["w", "mu"], [], db="m", db_type="minidb")
    assert not (tmp_path / "m").exists()
    with pytest.raises(UnsupportedError, match="leveldb"):
        run("Save", ["w"], [], db="m", db_type="leveldb")


def test_serialization_options_pick_chunk_sizes_by_blob_name(tmp_path):
    """Save's `options` (a SerializationOptions) come first; chunk_size is the catch-all."""
    feed({"w1": np.arange(5), "w2": np.arange(5), "b": np.arange(5)})
    options = caffe2_pb2.SerializationOptions(options=[
        caffe2_pb2.BlobSerializationOptions(blob_name_regex="w.", chunk_size=2)])
    run("Save", ["w1", "w2", "b"], [], db="m", db_type="minidb",
        options=options.SerializeToString(), chunk_size=0)
    assert list(records("minidb", tmp_path / "m")) == [
        "w1#%0", "w1#%1", "w1#%2", "w2#%0", "w2#%1", "w2#%2", "b#%0"]


@pytest.mark.parametrize("args, match", [
    (dict(), "must specify a db type"),
    (dict(db_type="minidb"), "must specify a db name"),
    (dict(db="m", db_type="minidb", source_blob_names=["a"]), "has 1 names for 2 output"),
    (dict(db="m", db_type="minidb", source_blob_names=["a", "b"], strip_prefix="x"),
     "mutually exclusive"),
    (dict(db="m", db_type="minidb", source_blob_names=["a", "b"], load_all=1),
     "mutually exclusive"),
    (dict(db="m", db_type="minidb", source_blob_names=["a", "a"]), "'a' is asked for twice"),
])
def test_load_argument_errors(args, match):
    with pytest.raises(ArgumentError, match=match):
        run("Load", [], ["x", "y"], **args)


def test_load_shape_and_dtype_declare_the_single_output(saved):
    """Caffe2 hands `shape`/`dtype` to shape inference only; c2compile also checks the
    loaded blob against them (a wrong declaration would mislead inference)."""
    from c2compile.ops.schema import TensorType
    assert infer("Load", [], outputs=1, db="m", db_type="minidb", shape=[7],
                 dtype=core.DataType.INT64) == [TensorType((7,), np.int64)]
    assert infer("Load", [], outputs=2, db="m", db_type="minidb", shape=[7]) == \
        [TensorType(None, None)] * 2
    run("Load", [], ["w"], db="good.minidb", db_type="minidb", shape=[7],
        dtype=core.DataType.INT64)
    with pytest.raises(DBError, match=r"blob 'w' is \[7\]:int64, but the op declares shape "
                                      r"\[7\]:float32"):
        run("Load", [], ["w"], db="good.minidb", db_type="minidb", shape=[7])


# ----------------------------------------------------------------------------- Checkpoint

def test_checkpoint_saves_every_n_iterations_with_the_iteration(tmp_path):
    workspace.FeedBlob("w", np.ones(2, np.float32))
    workspace.FeedBlob("it", np.zeros(1, np.int64))
    net = core.Net("ckpt")
    net.Iter("it", "it")
    net.Checkpoint(["it", "w"], [], db="ckpt_%05d.minidb", db_type="minidb", every=2)
    workspace.CreateNet(net)
    workspace.RunNet("ckpt", 5)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_00002.minidb", "ckpt_00004.minidb"]
    assert list(records("minidb", tmp_path / "ckpt_00004.minidb")) == ["it#%0", "w#%0"]
    workspace.ResetWorkspace()
    run("Load", [], ["it"], db="ckpt_00004.minidb", db_type="minidb")
    assert workspace.FetchBlob("it").tolist() == [4]


def test_checkpoint_iteration_rules(tmp_path):
    workspace.FeedBlob("w", np.ones(1))
    for it in (-4, 3, 6):
        workspace.FeedBlob("it", np.array([it], np.int64))
        run("Snapshot", ["it", "w"], [], db="s_%d", db_type="minidb", every=2)
    assert sorted(os.listdir(tmp_path)) == ["s_-4", "s_6"]  # C's -4 % 2 == 0
    workspace.FeedBlob("it", np.array([6], np.int32))
    with pytest.raises(ShapeError, match="'it' is the iteration counter and must be an "
                                         "int64 tensor, got int32"):
        run("Checkpoint", ["it", "w"], [], db="c_%d", db_type="minidb")
    workspace.FeedBlob("it", np.array([6], np.int64))
    with pytest.raises(ArgumentError, match="every=0"):
        run("Checkpoint", ["it"], [], db="c_%d", db_type="minidb", every=0)
    with pytest.raises(ArgumentError, match="must specify a db name"):
        run("Checkpoint", ["it"], [], db_type="minidb")


def test_checkpoint_name_formatting():
    assert format_checkpoint_name("/x/ckpt_%08d.lmdb", 42) == "/x/ckpt_00000042.lmdb"
    assert format_checkpoint_name("c_%lld_%%", 7) == "c_7_%"
    assert format_checkpoint_name("c_%x", 255) == "c_ff"
    assert format_checkpoint_name("fixed.minidb", 3) == "fixed.minidb"  # printf ignores it
    for bad in ("c_%s", "c_%d_%d", "c_%"):
        with pytest.raises(ValueError):
            format_checkpoint_name(bad, 1)


def _regression_model(name):
    model = new_model(name)
    h = brew.fc(model, "data", "h", 3, 4)
    r = brew.relu(model, h, "r")
    out = brew.fc(model, r, "out", 4, 1)
    model.AveragedLoss(model.SquaredL2Distance([out, "label"], "dist"), "loss")
    model.AddGradientOperators(["loss"])
    optimizer.build_sgd(model, 0.1, momentum=0.9, policy="step", stepsize=3, gamma=0.5)
    state = list(dict.fromkeys(o for op in model.param_init_net.Proto().op for o in op.output
                               if o not in ("optimizer_iteration", "iteration_mutex")))
    model.net.Checkpoint(["optimizer_iteration"] + state, [], db="ckpt_%d.minidb",
                         db_type="minidb", every=2)
    return model


def _train(model, root, steps, restore=None):
    workspace.ResetWorkspace(root)
    rng = np.random.default_rng(7)
    workspace.FeedBlob("data", rng.standard_normal((8, 3)).astype(np.float32))
    workspace.FeedBlob("label", rng.standard_normal((8, 1)).astype(np.float32))
    workspace.RunNetOnce(model.param_init_net)
    if restore:
        run("Load", [], [], db=restore, db_type="minidb", absolute_path=1, load_all=1)
    workspace.CreateNet(model.net)
    for _ in range(steps):
        workspace.RunNet(model.net.Proto().name)
    return {n: workspace.FetchBlob(n) for n in workspace.Blobs()
            if isinstance(workspace.FetchBlob(n), np.ndarray)}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_training_restored_from_a_checkpoint_continues_bit_for_bit(tmp_path, backend):
    """Train 8 iterations checkpointing every 2; a fresh workspace restored from the
    iteration-4 checkpoint (params, momentum, the iteration) and trained 4 more ends with
    the same bits, and writes the same checkpoints 6 and 8."""
    model = _regression_model(f"ckpt_{backend}_")
    first, second = tmp_path / "first", tmp_path / "second"
    os.makedirs(first)
    os.makedirs(second)
    with config.patch(backend=backend):
        straight = _train(model, str(first), 8)
        restored = _train(model, str(second), 4, restore=str(first / "ckpt_4.minidb"))
    assert sorted(os.listdir(first)) == [f"ckpt_{i}.minidb" for i in (2, 4, 6, 8)]
    assert sorted(os.listdir(second)) == ["ckpt_6.minidb", "ckpt_8.minidb"]
    assert straight["optimizer_iteration"].tolist() == [8]
    for name in ("h_w", "h_b", "out_w", "out_b", "h_w_momentum", "optimizer_iteration"):
        assert same_blob(restored[name], straight[name]), name
    for ckpt in ("ckpt_6.minidb", "ckpt_8.minidb"):
        assert (first / ckpt).read_bytes() == (second / ckpt).read_bytes()
