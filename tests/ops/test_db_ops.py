"""CreateDB, TensorProtosDBInput and DBExists through nets in a workspace.

Semantics pinned from Caffe2 1.x (caffe2/db/create_db_op.h, caffe2/operators/
tensor_protos_db_input.h, load_save_op.h DBExistsOp) and checked against the PyTorch 1.10.2
build of Caffe2: batches stack records on a new first axis and wrap around at the end of the
DB (5 records, batch 3: [0 1 2], [3 4 0], [1 2 3]); batch_size=0 outputs one record's
tensors as stored; a uint8 BYTE image stays uint8, an INT32 scalar label stays an int32
scalar; DBExists is relative to the workspace's root folder.
"""
import os

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from c2compile.errors import ArgumentError, BlobError, DBError, ShapeError, UnsupportedError
from c2compile.ops.schema import TensorType
from c2compile.ops.testing import infer, make_op
from c2compile.proto import caffe2_pb2
from c2compile.runtime.db import DB_TYPES, DBReader, open_db
from c2compile.runtime.workspace import Workspace
from c2compile.utils import NumpyArrayToCaffe2Tensor

SOME = settings(max_examples=20, deadline=None)


def record(*arrays) -> bytes:
    protos = caffe2_pb2.TensorProtos()
    protos.protos.extend(NumpyArrayToCaffe2Tensor(np.asarray(a)) for a in arrays)
    return protos.SerializeToString()


def write_db(db_type, path, values, keys=None):
    keys = keys or [f"{i:08d}" for i in range(len(values))]
    with open_db(db_type, path, "new") as db:
        txn = db.transaction()
        for k, v in zip(keys, values):
            txn.put(k, v)
    return path


def image_db(db_type, path, n=5):
    """n records: a uint8 image [1, 2, 2] filled with i, and an int32 scalar label i."""
    return write_db(db_type, path, [record(np.full((1, 2, 2), i, np.uint8), np.int32(i))
                                    for i in range(n)])


def run_once(ws, net):
    ws.create_net(net, overwrite=True)
    ws.run_net(net.name)


def workspace_with_reader(tmp_path, db_type, path, **args):
    ws = Workspace("db_ops", str(tmp_path))
    init = caffe2_pb2.NetDef(name="init")
    init.op.extend([make_op("CreateDB", [], ["reader"], db=path, db_type=db_type, **args)])
    run_once(ws, init)
    return ws


def input_net(ws, outputs=("data", "label"), name="input", **args):
    net = caffe2_pb2.NetDef(name=name)
    net.op.extend([make_op("TensorProtosDBInput", ["reader"], list(outputs), **args)])
    ws.create_net(net)
    return name


def names_op(err, op_type):
    assert f"({op_type}" in str(err.value), str(err.value)
    assert err.value.op_type == op_type


# ----------------------------------------------------------------------------- batches

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_batches_wrap_around(tmp_path, db_type):
    path = image_db(db_type, str(tmp_path / f"imgs.{db_type}"))
    ws = workspace_with_reader(tmp_path, db_type, path)
    assert isinstance(ws.fetch("reader"), DBReader)
    net = input_net(ws, batch_size=3)
    for want in ([0, 1, 2], [3, 4, 0], [1, 2, 3]):  # as Caffe2 1.10.2 read them
        ws.run_net(net)
        data, label = ws.fetch("data"), ws.fetch("label")
        assert data.dtype == np.uint8 and data.shape == (3, 1, 2, 2)
        assert label.dtype == np.int32 and label.shape == (3,)
        assert label.tolist() == want
        assert data[:, 0, 0, 0].tolist() == want and (data == want[0]).all(axis=(1, 2, 3))[0]


def test_batch_larger_than_the_db_repeats_records(tmp_path):
    path = image_db("minidb", str(tmp_path / "imgs.minidb"), n=3)
    ws = workspace_with_reader(tmp_path, "minidb", path)
    ws.run_net(input_net(ws, batch_size=7))
    assert ws.fetch("label").tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_batch_size_zero_outputs_one_record_as_stored(tmp_path):
    path = image_db("minidb", str(tmp_path / "imgs.minidb"), n=2)
    ws = workspace_with_reader(tmp_path, "minidb", path)
    net = input_net(ws)  # batch_size defaults to 0
    got = []
    for _ in range(3):
        ws.run_net(net)
        data, label = ws.fetch("data"), ws.fetch("label")
        assert data.shape == (1, 2, 2) and label.shape == () and label.dtype == np.int32
        got.append(int(label))
    assert got == [0, 1, 0]


def test_sharded_reader(tmp_path):
    path = image_db("minidb", str(tmp_path / "imgs.minidb"), n=6)
    ws = workspace_with_reader(tmp_path, "minidb", path, num_shards=2, shard_id=1)
    ws.run_net(input_net(ws, batch_size=7))
    assert ws.fetch("label").tolist() == [1, 3, 5, 1, 3, 5, 1]  # as Caffe2 1.10.2 read them


def test_two_readers_of_one_lmdb(tmp_path):
    path = image_db("lmdb", str(tmp_path / "imgs.lmdb"))
    ws = Workspace("two", str(tmp_path))
    init = caffe2_pb2.NetDef(name="init")
    init.op.extend([make_op("CreateDB", [], [r], db=path, db_type="lmdb") for r in "ab"])
    run_once(ws, init)
    net = caffe2_pb2.NetDef(name="n")
    net.op.extend([make_op("TensorProtosDBInput", [r], [r + "_x", r + "_y"], batch_size=2)
                   for r in "ab"])
    run_once(ws, net)
    assert ws.fetch("a_y").tolist() == ws.fetch("b_y").tolist() == [0, 1]


tensors = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8,
                                np.int8, np.int16, np.uint16, np.float16, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(object, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
               elements=st.binary(max_size=5)))


@SOME
@given(first=tensors, second=tensors, n=st.integers(1, 4), batch=st.integers(1, 6))
def test_any_tensors_stack(first, second, n, batch):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        # record i holds first + i and second: the same shapes/dtypes in every record
        recs = [(first if first.dtype in (object, np.bool_) else first + np.asarray(i).astype(
            first.dtype), second) for i in range(n)]
        path = write_db("minidb", os.path.join(tmp, "t.minidb"), [record(*r) for r in recs])
        ws = workspace_with_reader(tmp, "minidb", path)
        ws.run_net(input_net(ws, ("x", "y"), batch_size=batch))
        for k, out in enumerate((ws.fetch("x"), ws.fetch("y"))):
            want = np.stack([recs[j % n][k] for j in range(batch)])
            assert out.dtype == want.dtype and out.shape == want.shape
            np.testing.assert_array_equal(out, want)


# ----------------------------------------------------------------------------- bad records

def bad_db(tmp_path, values):
    return write_db("minidb", str(tmp_path / "bad.minidb"), values)


def run_bad(tmp_path, values, outputs=("data", "label"), **args):
    path = bad_db(tmp_path, values)
    ws = workspace_with_reader(tmp_path, "minidb", path)
    ws.feed("data", np.float32(7))  # must survive the failed run
    with pytest.raises(DBError) as e:
        run_once(ws, _net(outputs, **args))
    names_op(e, "TensorProtosDBInput")
    assert path in str(e.value) and e.value.path == path
    assert ws.fetch("data") == np.float32(7)
    return e.value


def _net(outputs, **args):
    net = caffe2_pb2.NetDef(name="n")
    net.op.extend([make_op("TensorProtosDBInput", ["reader"], list(outputs), **args)])
    return net


def test_record_that_is_not_tensor_protos(tmp_path):
    err = run_bad(tmp_path, [record(np.zeros(2, np.float32), np.int32(0)), b"\xff\xff\xff"],
                  batch_size=2)
    assert "record '00000001'" in str(err) and "not a serialized TensorProtos" in str(err)
    assert err.key == "00000001"


def test_record_with_wrong_tensor_count(tmp_path):
    err = run_bad(tmp_path, [record(np.zeros(2, np.float32))])
    assert "holds 1 tensors, but TensorProtosDBInput has 2 outputs (data, label)" in str(err)
    assert err.key == "00000000"


@pytest.mark.parametrize("second", [np.zeros(3, np.float32), np.zeros(2, np.float64)])
def test_records_that_do_not_stack(tmp_path, second):
    # Caffe2 resized its output per record (losing the batch so far); c2compile refuses.
    err = run_bad(tmp_path, [record(np.zeros(2, np.float32), np.int32(0)),
                             record(second, np.int32(1))], batch_size=2)
    assert "record '00000001'" in str(err) and "tensor 0 (data)" in str(err)
    assert "record '00000000' of the same batch had [2]:float32" in str(err)


def test_empty_db_has_nothing_to_read(tmp_path):
    err = run_bad(tmp_path, [], batch_size=1)
    assert "is empty" in str(err)


def test_input_must_be_a_reader(tmp_path):
    ws = Workspace("x", str(tmp_path))
    ws.feed("reader", np.zeros(3, np.float32))
    with pytest.raises(ShapeError, match="holds a tensor; TensorProtosDBInput reads the DB "
                                         "reader CreateDB makes"):
        run_once(ws, _net(["data"]))
    with pytest.raises(BlobError, match="'reader' does not exist"):
        run_once(Workspace("y", str(tmp_path)), _net(["data"]))


def test_negative_batch_size():
    with pytest.raises(ArgumentError, match="batch_size=-1"):
        infer("TensorProtosDBInput", [TensorType(None, None)], outputs=2, batch_size=-1)


def test_shape_rule_knows_only_what_records_hold():
    assert infer("TensorProtosDBInput", [TensorType(None, None)], outputs=2, batch_size=4) \
        == [TensorType(None, None)] * 2
    with pytest.raises(ShapeError, match="holds a tensor"):
        infer("TensorProtosDBInput", [TensorType((3,), np.float32)], outputs=1)


# ----------------------------------------------------------------------------- CreateDB

def test_create_db_missing_db(tmp_path):
    path = str(tmp_path / "nope.minidb")
    ws = Workspace("x", str(tmp_path))
    net = caffe2_pb2.NetDef(name="init")
    net.op.extend([make_op("CreateDB", [], ["reader"], db=path, db_type="minidb")])
    with pytest.raises(DBError) as e:
        run_once(ws, net)
    names_op(e, "CreateDB")
    assert f"minidb '{path}'" in str(e.value) and e.value.path == path
    assert "reader" not in ws.blobs


def test_create_db_arguments():
    with pytest.raises(ArgumentError, match="required argument 'db'"):
        infer("CreateDB", [], db_type="minidb")
    with pytest.raises(ArgumentError, match="'db' is empty"):
        infer("CreateDB", [], db="", db_type="minidb")
    with pytest.raises(ArgumentError, match=r"shard_id=2 must be in \[0, num_shards=2\)"):
        infer("CreateDB", [], db="x", db_type="minidb", num_shards=2, shard_id=2)
    # Caffe2's default db_type is leveldb, which c2compile does not have.
    with pytest.raises(UnsupportedError, match="'leveldb'.*c2compile has: minidb, lmdb") as e:
        infer("CreateDB", [], db="x")
    assert e.value.op_type == "CreateDB"
    with pytest.raises(DBError, match="unknown db_type 'nosuch'"):
        infer("CreateDB", [], db="x", db_type="nosuch")
    assert infer("CreateDB", [], db="x", db_type="lmdb") == [TensorType(None, None)]


def test_create_db_path_is_not_under_the_root_folder(tmp_path, monkeypatch):
    # CreateDB opens `db` as given (Caffe2 did not prepend the workspace's root folder).
    monkeypatch.chdir(tmp_path)
    image_db("minidb", "here.minidb", n=1)
    root = tmp_path / "root"
    root.mkdir()
    ws = workspace_with_reader(root, "minidb", "here.minidb")
    assert ws.fetch("reader").source == "here.minidb"


# ----------------------------------------------------------------------------- DBExists

def exists(ws, **args):
    net = caffe2_pb2.NetDef(name="e")
    net.op.extend([make_op("DBExists", [], ["exists"], **args)])
    run_once(ws, net)
    out = ws.fetch("exists")
    assert out.dtype == np.bool_ and out.shape == ()
    return bool(out)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_db_exists(tmp_path, db_type):
    root = tmp_path / "root"
    root.mkdir()
    ws = Workspace("x", str(root))
    image_db(db_type, str(root / "rel.db"), n=1)
    assert exists(ws, db_name="rel.db", db_type=db_type)  # under the root folder
    assert not exists(ws, db_name="missing.db", db_type=db_type)
    assert exists(ws, db_name=str(root / "rel.db"), db_type=db_type, absolute_path=1)
    assert not exists(ws, db_name="rel.db", db_type=db_type, absolute_path=1)
    # not absolute: Caffe2 joins "<root>/" + name, even for a name starting with '/'
    assert not exists(ws, db_name=str(root / "rel.db"), db_type=db_type)


def test_db_exists_wrong_type(tmp_path):
    ws = Workspace("x", str(tmp_path))
    image_db("minidb", str(tmp_path / "m.db"), n=1)
    assert not exists(ws, db_name="m.db", db_type="lmdb")  # a file, not an lmdb directory
    # Caffe2 answered true for an empty or unknown db_type (its factory returned null).
    with pytest.raises(DBError, match="unknown db_type ''") as e:
        exists(ws, db_name="m.db")
    names_op(e, "DBExists")
    assert infer("DBExists", [], db_name="m.db", db_type="minidb") == [
        TensorType((), np.bool_)]


# ----------------------------------------------------------------------------- model helpers

@pytest.mark.parametrize("how", ["model_helper", "brew"])
def test_tutorial_input_helpers(tmp_path, how):
    # The MNIST tutorial: model.TensorProtosDBInput([], [...], batch_size, db, db_type) opens
    # the reader "dbreader_<db>" in param_init_net (Caffe2's helpers/db_input.py).
    from c2compile import brew, model_helper, workspace
    path = image_db("minidb", str(tmp_path / "imgs.minidb"))
    model = model_helper.ModelHelper(name="m")
    if how == "brew":
        data, label = brew.db_input(model, ["data_uint8", "label"], batch_size=2, db=path,
                                    db_type="minidb")
    else:
        data, label = model.TensorProtosDBInput([], ["data_uint8", "label"], batch_size=2,
                                                db=path, db_type="minidb")
    assert [op.type for op in model.param_init_net.Proto().op] == ["CreateDB"]
    assert model.param_init_net.Proto().op[0].output == ["dbreader_" + path]
    workspace.ResetWorkspace(str(tmp_path))
    try:
        workspace.RunNetOnce(model.param_init_net)
        workspace.CreateNet(model.net)
        workspace.RunNet(model.net)
        workspace.RunNet(model.net)
        assert workspace.FetchBlob(str(label)).tolist() == [2, 3]
        assert workspace.FetchBlob(str(data)).shape == (2, 1, 2, 2)
    finally:
        workspace.ResetWorkspace()
    with pytest.raises(AssertionError, match="cannot pass a reader"):
        model.TensorProtosDBInput(["r"], ["x"], batch_size=1, db=path, db_type="minidb")
