"""Caffe2's blob serialization (runtime/serialization.py): BlobProto bytes pinned against
Caffe2 1.10.2, chunking and joining, and the errors for records that do not fit.

The byte strings below were printed by `workspace.SerializeBlob` of real Caffe2 1.10.2
(PyTorch 1.10.2 wheel, Python 3.6) for the blob shown with each; the minidb fixture is
tests/fixtures/caffe2_saved.minidb (see make_caffe2_saved_minidb.py beside it).
"""
import importlib.util
import pathlib

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from c2compile import core, workspace
from c2compile.errors import BlobError, DBError, ProtoError, UnsupportedError
from c2compile.proto import caffe2_pb2
from c2compile.runtime import serialization as ser
from c2compile.runtime.db import DBReader, open_db

SOME = settings(max_examples=40, deadline=None)
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"

# workspace.SerializeBlob("x") in Caffe2 1.10.2 after FeedBlob("x", np.array([1, 0, 3], dt)).
CAFFE2_X = {
    "float32": b'\n\x01x\x12\x06Tensor\x1a!\x08\x03\x10\x01\x1a\x0c\x00\x00\x80?\x00\x00\x00'
               b'\x00\x00\x00@@:\x01xB\x02\x08\x00Z\x04\x08\x00\x10\x03x\x00',
    "int32": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\x02"\x03\x01\x00\x03:\x01xB\x02\x08'
             b'\x00Z\x04\x08\x00\x10\x03',
    "uint8": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\x06"\x03\x01\x00\x03:\x01xB\x02\x08'
             b'\x00Z\x04\x08\x00\x10\x03',
    "int8": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\x07"\x03\x01\x00\x03:\x01xB\x02\x08'
            b'\x00Z\x04\x08\x00\x10\x03',
    "bool": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\x05"\x03\x01\x00\x01:\x01xB\x02\x08'
            b'\x00Z\x04\x08\x00\x10\x03',
    "uint16": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\x08"\x03\x01\x00\x03:\x01xB\x02\x08'
              b'\x00Z\x04\x08\x00\x10\x03',
    "int16": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\t"\x03\x01\x00\x03:\x01xB\x02\x08'
             b'\x00Z\x04\x08\x00\x10\x03',
    "int64": b'\n\x01x\x12\x06Tensor\x1a\x16\x08\x03\x10\n:\x01xB\x02\x08\x00R\x03\x01\x00'
             b'\x03Z\x04\x08\x00\x10\x03',
    "float16": b'\n\x01x\x12\x06Tensor\x1a\x19\x08\x03\x10\x0c"\x06\x80x\x00\x80\x84\x01:\x01'
               b'xB\x02\x08\x00Z\x04\x08\x00\x10\x03',
    "float64": b'\n\x01x\x12\x06Tensor\x1a+\x08\x03\x10\r:\x01xB\x02\x08\x00J\x18\x00\x00\x00'
               b'\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
               b'\x08@Z\x04\x08\x00\x10\x03',
}
# (blob name, value fed, Caffe2 1.10.2's SerializeBlob) for the other blob kinds.
CAFFE2_OTHER = [
    ("s", np.array([b"ab", b""], dtype=object),
     b'\n\x01s\x12\x06Tensor\x1a\x17\x08\x02\x10\x042\x02ab2\x00:\x01sB\x02\x08\x00Z\x04\x08'
     b'\x00\x10\x02'),
    ("e", np.zeros((0, 3), np.float32),  # an empty tensor: one chunk, segment [0, 0)
     b'\n\x01e\x12\x06Tensor\x1a\x15\x08\x00\x08\x03\x10\x01:\x01eB\x02\x08\x00Z\x04\x08\x00'
     b'\x10\x00x\x00'),
    ("str", "hello", b'\n\x03str\x12\x0bstd::string"\x05hello'),  # a string blob
]
# A minidb DBReader ('r' from CreateDB of /tmp/sl/t1.minidb): no key, minidb cannot seek.
CAFFE2_DBREADER = (b'\n\x01r\x12\x08DBReader"\x1e\n\x01r\x12\x11/tmp/sl/t1.minidb\x1a\x06'
                   b'minidb')

DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.int16, np.int8,
          np.uint16, np.uint8, np.bool_]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)


def arrays(dtype=None):
    """Arrays of every DataType numpy holds (strings as object arrays of bytes), any shape
    including empty and 0-d; floats include NaN, infinities and -0.0."""
    if dtype is None:
        return st.one_of([arrays(d) for d in DTYPES + [object]])
    if dtype is object:
        return SHAPES.flatmap(lambda shape: st.lists(
            st.binary(max_size=5), min_size=int(np.prod(shape)),
            max_size=int(np.prod(shape))).map(lambda xs: _object_array(xs, shape)))
    return hnp.arrays(dtype, SHAPES)


def _object_array(values, shape):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


def same_blob(a, b) -> bool:
    """Same dtype, shape and bits (NaN payloads and -0.0 included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def join(records, order=None):
    """Feed (key, data) records to a BlobAssembler the way Load does; the joined blobs."""
    asm = ser.BlobAssembler()
    for key, data in (records if order is None else [records[i] for i in order]):
        asm.add(ser.blob_name_from_key(key), key, data)
    assert asm.missing() == {}
    return {n: asm.value(n) for n in asm.names()}


# ----------------------------------------------------------------------------- bytes pinned

@pytest.mark.parametrize("dtype", list(CAFFE2_X))
def test_serialize_blob_matches_caffe2_bytes(dtype):
    workspace.FeedBlob("x", np.array([1, 0, 3], dtype))
    assert workspace.SerializeBlob("x") == CAFFE2_X[dtype]
    workspace.DeserializeBlob("y", CAFFE2_X[dtype])
    y = workspace.FetchBlob("y")
    assert y.dtype == np.dtype(dtype) and y.tolist() == np.array([1, 0, 3], dtype).tolist()


@pytest.mark.parametrize("name, value, data", CAFFE2_OTHER, ids=[c[0] for c in CAFFE2_OTHER])
def test_strings_empty_tensors_and_string_blobs_match_caffe2(name, value, data):
    workspace.FeedBlob(name, value)
    assert workspace.SerializeBlob(name) == data
    workspace.DeserializeBlob("back", data)
    back = workspace.FetchBlob("back")
    if isinstance(value, str):
        assert back == value.encode()
    else:
        assert same_blob(back, value)


def test_only_float_tensors_carry_data_format():
    """Caffe2 1.10 sets data_format (FMT_PROTOBUF) on FLOAT tensors only: the one type with
    a format choice (bfloat16)."""
    for dtype in DTYPES:
        [(_, data)] = ser.serialize_blob(np.zeros(2, dtype), "x")
        proto = caffe2_pb2.BlobProto.FromString(data)
        assert proto.tensor.HasField("data_format") == (dtype == np.float32), dtype
        assert proto.tensor.HasField("device_detail") and proto.tensor.HasField("segment")


def test_dbreader_serializes_like_caffe2(tmp_path):
    path = str(tmp_path / "r.minidb")
    with open_db("minidb", path, "new") as db:
        db.transaction().put("k", b"v")
    workspace.FeedBlob("r", DBReader("minidb", path))
    ours = caffe2_pb2.BlobProto.FromString(workspace.SerializeBlob("r"))
    theirs = caffe2_pb2.BlobProto.FromString(CAFFE2_DBREADER)
    assert (ours.name, ours.type) == (theirs.name, theirs.type) == ("r", "DBReader")
    content = caffe2_pb2.DBReaderProto.FromString(ours.content)
    expected = caffe2_pb2.DBReaderProto.FromString(theirs.content)
    expected.source = path
    assert content == expected and not content.HasField("key")


def test_lmdb_reader_saves_its_position_and_comes_back_there(tmp_path):
    path = str(tmp_path / "r.lmdb")
    with open_db("lmdb", path, "new") as db:
        txn = db.transaction()
        for k in "abc":
            txn.put(k, k.encode() * 2)
        txn.commit()
    reader = DBReader("lmdb", path)
    reader.read()  # now at "b"
    data = ser.serialize_one(reader, "r")
    assert caffe2_pb2.DBReaderProto.FromString(
        caffe2_pb2.BlobProto.FromString(data).content).key == "b"
    back = ser.deserialize_blob(data, "r")
    assert isinstance(back, DBReader) and back.read() == ("b", b"bb")
    assert back.read() == ("c", b"cc") and back.read() == ("a", b"aa")


# ----------------------------------------------------------------------------- chunks

def test_chunk_keys_and_segments_as_caffe2_writes_them():
    records = ser.serialize_blob(np.arange(10, dtype=np.float32), "w", chunk_size=4)
    assert [k for k, _ in records] == ["w#%0", "w#%1", "w#%2"]
    segs = [(p.tensor.segment.begin, p.tensor.segment.end, list(p.tensor.dims))
            for p in (caffe2_pb2.BlobProto.FromString(d) for _, d in records)]
    assert segs == [(0, 4, [10]), (4, 8, [10]), (8, 10, [10])]
    # one chunk still has its "#%0"; no chunking gives one record whatever the size
    assert [k for k, _ in ser.serialize_blob(np.zeros(3), "w", 4)] == ["w#%0"]
    assert [k for k, _ in ser.serialize_blob(np.zeros(0), "w", 4)] == ["w#%0"]
    assert len(ser.serialize_blob(np.zeros(9), "w", ser.NO_CHUNKING)) == 1
    with pytest.raises(ValueError, match="chunk size -2"):
        ser.serialize_blob(np.zeros(3), "w", -2)


def test_default_chunk_size_is_a_million_elements():
    records = ser.serialize_blob(np.zeros(1_000_001, np.bool_), "big", ser.DEFAULT_CHUNK_SIZE)
    assert [k for k, _ in records] == ["big#%0", "big#%1"]
    assert caffe2_pb2.BlobProto.FromString(records[1][1]).tensor.segment.end == 1_000_001
    assert join(records)["big"].shape == (1_000_001,)


@SOME
@given(arrays(), st.integers(1, 7), st.randoms(use_true_random=False))
def test_chunks_join_back_in_any_order(arr, chunk_size, rnd):
    records = ser.serialize_blob(arr, "t", chunk_size)
    assert len(records) == max(1, -(-arr.size // chunk_size))
    order = list(range(len(records)))
    rnd.shuffle(order)
    assert same_blob(join(records, order)["t"], arr)


@SOME
@given(arrays())
def test_workspace_serialize_deserialize_round_trip(arr):
    workspace.FeedBlob("a", arr)
    workspace.DeserializeBlob("b", workspace.SerializeBlob("a"))
    assert same_blob(workspace.FetchBlob("b"), workspace.FetchBlob("a"))


def test_non_native_byte_order_is_saved_as_its_values():
    arr = np.array([1.5, -2], dtype=">f4")
    assert join(ser.serialize_blob(arr, "x"))["x"].tolist() == [1.5, -2]


# ----------------------------------------------------------------------------- bad records

def _records(n=10, chunk=4):
    return ser.serialize_blob(np.arange(n, dtype=np.int64), "w", chunk)


def _tamper(data, fn):
    proto = caffe2_pb2.BlobProto.FromString(data)
    fn(proto)
    return proto.SerializeToString()


def test_missing_chunk_names_the_blob_and_the_keys_read():
    asm = ser.BlobAssembler()
    for key, data in _records():
        if key != "w#%1":
            asm.add("w", key, data)
    assert not asm.complete("w")
    why = asm.missing()["w"]
    assert "'w'" in why and "'w#%0', 'w#%2'" in why and "[4, 8)" in why


@pytest.mark.parametrize("tamper, match", [
    (lambda p: setattr(p.tensor.segment, "end", 11), r"\[8, 11\) of tensor 'w' is outside"),
    (lambda p: setattr(p.tensor.segment, "begin", 6), r"\[6, 10\) .* overlaps chunk \[4, 8\) "
                                                      r"under key 'w#%1'"),
    (lambda p: p.tensor.dims.append(1), r"says it is INT64 \[10, 1\], its earlier chunk\(s\) "
                                        r"said INT64 \[10\]"),
    (lambda p: setattr(p.tensor, "data_type", caffe2_pb2.TensorProto.INT32),
     "says it is INT32"),
    (lambda p: p.tensor.int64_data.append(5), "holds 3 INT64 values where 2 are expected"),
    (lambda p: p.tensor.ClearField("data_type"), "has no data_type"),
])
def test_a_chunk_that_does_not_fit_names_blob_and_key(tamper, match):
    (k0, d0), (k1, d1), (k2, d2) = _records()
    asm = ser.BlobAssembler()
    asm.add("w", k0, d0)
    asm.add("w", k1, d1)
    with pytest.raises(DBError, match=match) as err:
        asm.add("w", k2, _tamper(d2, tamper), where="minidb 'f.minidb', key 'w#%2'")
    assert "minidb 'f.minidb', key 'w#%2'" in str(err.value) and err.value.blob == "w"


def test_extra_chunk_and_duplicate_blobs_are_refused():
    records = _records()
    asm = ser.BlobAssembler()
    for key, data in records:
        asm.add("w", key, data)
    with pytest.raises(DBError, match="already complete"):
        asm.add("w", "w#%0", records[0][1])
    [(key, data)] = ser.serialize_blob(b"text", "s")
    asm.add("s", key, data)
    with pytest.raises(DBError, match="'s' appears twice"):
        asm.add("s", key, data)
    with pytest.raises(DBError, match="'w' appears twice"):
        asm.add("w", "w", data)


def test_records_that_are_not_blob_protos():
    asm = ser.BlobAssembler()
    with pytest.raises(ProtoError, match="key 'k': the record is not a serialized "
                                         "caffe2.BlobProto"):
        asm.add("k", "k", b"\xff\xff\xff not a proto")
    # A TensorProtos record (what TensorProtosDBInput reads) parses but has no blob type.
    protos = caffe2_pb2.TensorProtos(protos=[caffe2_pb2.TensorProto(dims=[1], float_data=[1])])
    with pytest.raises(ProtoError, match="no blob type"):
        asm.add("k", "k", protos.SerializeToString())
    other = caffe2_pb2.BlobProto(name="q", type="QTensor").SerializeToString()
    with pytest.raises(UnsupportedError, match="type 'QTensor'"):
        asm.add("q", "q", other)


def test_absurd_dims_are_a_db_error_not_a_memory_error():
    proto = caffe2_pb2.BlobProto(name="w", type="Tensor")
    proto.tensor.data_type = caffe2_pb2.TensorProto.FLOAT
    proto.tensor.dims.extend([10 ** 9, 10 ** 9])
    with pytest.raises(DBError, match=r"claims dims \[1000000000, 1000000000\]"):
        ser.deserialize_blob(proto.SerializeToString(), "w")


def test_untyped_empty_tensor_reads_as_float_as_in_caffe2():
    proto = caffe2_pb2.BlobProto(name="e", type="Tensor")
    proto.tensor.data_type = caffe2_pb2.TensorProto.UNDEFINED
    proto.tensor.dims.extend([0, 2])
    value = ser.deserialize_blob(proto.SerializeToString(), "e")
    assert value.dtype == np.float32 and value.shape == (0,)


def test_deserialize_blob_refuses_a_chunk_of_a_larger_tensor():
    with pytest.raises(DBError, match=r"tensor 'w' \[10\] is incomplete.*whole blob"):
        workspace.DeserializeBlob("w", _records()[0][1])
    assert not workspace.HasBlob("w")


@pytest.mark.parametrize("value, match", [
    (np.zeros(2, np.complex64), "complex64 tensor, which has no Caffe2 DataType"),
    (np.array([1, None], dtype=object), "holds bytes or str, got int"),
    (object(), "holds a object, which has no serializer"),
])
def test_blobs_without_a_serializer_name_the_blob(value, match):
    with pytest.raises(UnsupportedError, match=match) as err:
        ser.serialize_blob(value, "m")
    assert err.value.blob == "m" and "'m'" in str(err.value)


def test_a_mutex_cannot_be_serialized():
    workspace.RunOperatorOnce(core.CreateOperator("CreateMutex", [], ["mu"]))
    with pytest.raises(UnsupportedError, match="blob 'mu' holds a Mutex"):
        workspace.SerializeBlob("mu")
    with pytest.raises(BlobError, match="'nope'"):
        workspace.SerializeBlob("nope")
    with pytest.raises(ProtoError):
        workspace.DeserializeBlob("x", b"\x07garbage")


def test_blob_name_from_key():
    assert ser.blob_name_from_key("gpu_0/w#%3", "gpu_0/", "x/") == "x/w"
    assert ser.blob_name_from_key("a/gpu_0/w", "gpu_0/") == "w"  # up to the first match
    assert ser.blob_name_from_key("w", "zz") == "w"


# ----------------------------------------------------------------------------- Caffe2 file

def _fixture_blobs():
    spec = importlib.util.spec_from_file_location(
        "make_caffe2_saved_minidb", FIXTURES / "make_caffe2_saved_minidb.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.blobs()


def test_reads_the_minidb_caffe2_wrote():
    """Every DataType, strings, an empty and a 0-d tensor, chunked tensors and a string
    blob, as real Caffe2 saved them (chunk_size 10)."""
    expected = _fixture_blobs()
    names = list(expected) + ["meta"]
    workspace.RunOperatorOnce(core.CreateOperator(
        "Load", [], names, db=str(FIXTURES / "caffe2_saved.minidb"), db_type="minidb",
        absolute_path=1))
    for name, value in expected.items():
        assert same_blob(workspace.FetchBlob(name), value), name
    assert workspace.FetchBlob("meta") == b"a string blob"


def test_saves_the_same_records_as_caffe2(tmp_path):
    """Saving the fixture's blobs with chunk_size 10 writes Caffe2's records byte for byte
    (compared as a set: Caffe2's serializer threads may write chunks in any order)."""
    names = []
    for name, value in _fixture_blobs().items():
        workspace.FeedBlob(name, value)
        names.append(name)
    workspace.FeedBlob("meta", "a string blob")
    workspace.RunOperatorOnce(core.CreateOperator(
        "Save", names + ["meta"], [], db="ours.minidb", db_type="minidb", chunk_size=10))
    with open_db("minidb", str(tmp_path / "ours.minidb")) as ours, \
            open_db("minidb", str(FIXTURES / "caffe2_saved.minidb")) as theirs:
        assert dict(ours.cursor()) == dict(theirs.cursor())
