"""Blobs <-> serialized `BlobProto`s, byte for byte as Caffe2 1.x writes them.

This is what Save/Load store in a DB and what `workspace.SerializeBlob` returns
(Caffe2's caffe2/core/blob_serialization.cc and load_save_op_util.cc):

* a **tensor** (numpy array) becomes one BlobProto per chunk of at most `chunk_size`
  elements of its flattened data: name, type "Tensor" and a TensorProto with the whole
  tensor's dims and data_type, the chunk's values (the fields
  `utils.set_tensor_proto_values` picks), the blob name, device_detail {device_type: 0},
  segment {begin end} (the chunk's element range) and, for FLOAT only, data_format 0.
  An empty tensor still gets one chunk (segment [0, 0)) to carry its shape. Chunk `i` is
  stored under the DB key `<name>#%<i>` (kChunkIdSeparator "#%"), even when there is only
  one chunk.
* a **string** blob (what FeedBlob makes of a str/bytes) becomes type "std::string" with the
  bytes in `content`, under the key `<name>`.
* a **DBReader** (CreateDB's blob) becomes type "DBReader" with a DBReaderProto (name,
  source, db_type, and the key its cursor is at when the DB can seek) in `content`.
* anything else (a Mutex, a Python object) has no serializer, in Caffe2 either: an error
  naming the blob.

Reading back, `BlobAssembler` joins a tensor's chunks, in any order, into the whole tensor
and refuses records that do not fit (a chunk out of range, overlapping another, with other
dims or type, a second copy of a blob); `missing()` names what is left incomplete. Its
errors name the blob and the DB key.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from c2compile import dtypes
from c2compile.errors import DBError, ProtoError, UnsupportedError
from c2compile.proto import caffe2_pb2
from c2compile.utils import set_tensor_proto_values, tensor_proto_values

_TP = caffe2_pb2.TensorProto

CHUNK_ID_SEPARATOR = "#%"  # kChunkIdSeparator
TENSOR_TYPE = "Tensor"  # kTensorBlobType
STRING_TYPE = "std::string"
DBREADER_TYPE = "DBReader"

# BlobSerializationOptions.chunk_size: 0 means FLAGS_caffe2_tensor_chunk_size, -1 no chunking.
DEFAULT_CHUNK_SIZE = 0
NO_CHUNKING = -1
CAFFE2_TENSOR_CHUNK_SIZE = 1_000_000  # the flag's default


def chunk_key(name: str, chunk_id: int) -> str:
    """The DB key of chunk `chunk_id` of tensor blob `name`: `name#%id`."""
    return f"{name}{CHUNK_ID_SEPARATOR}{chunk_id}"


def blob_name_from_key(key: str, strip_prefix: str = "", add_prefix: str = "") -> str:
    """The blob a DB key loads into (Caffe2's buildBlobNameFromDbKey): the key up to its
    chunk id separator, with everything up to and including the first `strip_prefix`
    removed, then `add_prefix` prepended."""
    return add_prefix + strip_prefix_of(key.split(CHUNK_ID_SEPARATOR, 1)[0], strip_prefix)


def strip_prefix_of(name: str, prefix: str) -> str:
    """`name` without everything up to and including the first `prefix` in it (Caffe2's
    strip_prefix, for Save and Load alike)."""
    at = name.find(prefix) if prefix else -1
    return name if at < 0 else name[at + len(prefix):]


# ----------------------------------------------------------------------------- serialize

def serialize_blob(value: Any, name: str, chunk_size: int = NO_CHUNKING
                   ) -> list[tuple[str, bytes]]:
    """The (DB key, serialized BlobProto) records of blob `name` holding `value`.

    `chunk_size` is BlobSerializationOptions': elements per chunk, DEFAULT_CHUNK_SIZE (0)
    for Caffe2's 1,000,000, NO_CHUNKING (-1) for one record.
    """
    if isinstance(value, np.ndarray):
        return _tensor_records(value, name, chunk_size)
    if isinstance(value, (bytes, str)):
        proto = caffe2_pb2.BlobProto(name=name, type=STRING_TYPE)
        proto.content = value.encode("utf-8") if isinstance(value, str) else value
        return [(name, proto.SerializeToString())]
    from c2compile.runtime.db import DBReader
    if isinstance(value, DBReader):
        return [(name, _dbreader_proto(value, name).SerializeToString())]
    raise UnsupportedError(f"blob '{name}' holds a {type(value).__name__}, which has no "
                           "serializer (in Caffe2 either): only tensors, strings and DB "
                           "readers can be saved", blob=name)


def serialize_one(value: Any, name: str) -> bytes:
    """Blob `name` as one serialized BlobProto, unchunked (workspace.SerializeBlob)."""
    [(_, data)] = serialize_blob(value, name, NO_CHUNKING)
    return data


def _chunk_length(chunk_size: int, numel: int) -> int:
    if chunk_size == NO_CHUNKING:
        return numel + 1  # Caffe2's "+ 1": an empty tensor still makes one chunk
    if chunk_size == DEFAULT_CHUNK_SIZE:
        return CAFFE2_TENSOR_CHUNK_SIZE
    if chunk_size < 0:
        # Caffe2 steps its chunk loop by a negative size and never ends.
        raise ValueError(f"chunk size {chunk_size} must be > 0, or 0 (the default size) or "
                         "-1 (no chunking)")
    return chunk_size


def _tensor_records(arr: np.ndarray, name: str, chunk_size: int) -> list[tuple[str, bytes]]:
    if arr.dtype.kind not in "OUS" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind not in "OUS":
        try:
            dtypes.from_numpy(arr.dtype)
        except ValueError:
            raise UnsupportedError(f"blob '{name}' is a {arr.dtype} tensor, which has no "
                                   "Caffe2 DataType (float32/64, float16, int8/16/32/64, "
                                   "uint8/16, bool and strings do)", blob=name) from None
    flat = arr.reshape(-1)
    numel = flat.size
    step = _chunk_length(chunk_size, numel)
    records = []
    for begin in range(0, max(numel, 1), step):
        end = min(begin + step, numel)
        proto = caffe2_pb2.BlobProto(name=name, type=TENSOR_TYPE)
        t = proto.tensor
        t.dims.extend(arr.shape)
        try:
            set_tensor_proto_values(t, flat[begin:end])
        except ValueError as e:
            raise UnsupportedError(f"blob '{name}': {e}", blob=name) from None
        t.name = name
        t.device_detail.device_type = caffe2_pb2.CPU
        t.segment.begin, t.segment.end = begin, end
        if t.data_type == _TP.FLOAT:  # only FLOAT has a format choice, so only it says so
            t.data_format = _TP.FMT_PROTOBUF
        records.append((chunk_key(name, begin // step), proto.SerializeToString()))
    return records


def _dbreader_proto(reader, name: str) -> caffe2_pb2.BlobProto:
    content = caffe2_pb2.DBReaderProto(name=name, source=reader.source,
                                       db_type=reader.db_type)
    cursor = reader.cursor()
    # Caffe2 records the cursor's key when the DB can seek back to it (lmdb), not minidb.
    if cursor.supports_seek() and cursor.valid():
        content.key = cursor.key()
    return caffe2_pb2.BlobProto(name=name, type=DBREADER_TYPE,
                                content=content.SerializeToString())


# ----------------------------------------------------------------------------- deserialize

def parse_blob_proto(data: bytes, where: str) -> caffe2_pb2.BlobProto:
    """`data` as a BlobProto; ProtoError naming `where` if it is not one."""
    try:
        proto = caffe2_pb2.BlobProto.FromString(bytes(data))
    except DecodeError as e:
        raise ProtoError(f"{where}: the record is not a serialized caffe2.BlobProto "
                         f"({len(data)} bytes: {e})") from None
    if not proto.type:
        raise ProtoError(f"{where}: the record is not a serialized caffe2.BlobProto (it has "
                         f"no blob type; {len(data)} bytes)")
    return proto


def deserialize_blob(data: bytes, name: str) -> Any:
    """The blob one serialized BlobProto holds (workspace.DeserializeBlob); a chunk of a
    larger tensor is refused (Caffe2 would leave the rest of the tensor uninitialised)."""
    assembler = BlobAssembler()
    assembler.add(name, name, data, where=f"blob '{name}'")
    missing = assembler.missing()
    if missing:
        raise DBError(f"blob '{name}': {missing[name]}; DeserializeBlob takes a whole blob "
                      "(Save the blob with chunk_size=0, or Load it from its DB)", blob=name)
    return assembler.value(name)


class _TensorParts:
    """The chunks of one tensor read so far."""

    def __init__(self, name: str, t: caffe2_pb2.TensorProto, where: str):
        self.shape = tuple(int(d) for d in t.dims)
        if any(d < 0 for d in self.shape):
            raise DBError(f"{where}: tensor '{name}' has negative dims "
                          f"{list(self.shape)}", blob=name)
        self.data_type = t.data_type
        self.numel = int(np.prod(self.shape, dtype=np.int64))
        self.dtype = dtypes.to_numpy(t.data_type)
        try:
            self.flat = np.empty(self.numel, dtype=self.dtype)
        except (MemoryError, ValueError):
            raise DBError(f"{where}: tensor '{name}' claims dims {list(self.shape)}, too "
                          "large to allocate (a corrupt record?)", blob=name) from None
        self.chunks: list[tuple[int, int, str]] = []  # (begin, end, key)
        self.filled = 0

    @property
    def complete(self) -> bool:
        return bool(self.chunks) and self.filled == self.numel

    def missing(self, name: str) -> str:
        have = sorted(self.chunks)
        gaps, at = [], 0
        for begin, end, _ in have + [(self.numel, self.numel, "")]:
            if begin > at:
                gaps.append(f"[{at}, {begin})")
            at = max(at, end)
        keys = ", ".join(f"'{k}'" for _, _, k in have)
        return (f"tensor '{name}' {list(self.shape)} is incomplete: its chunk(s) under "
                f"key(s) {keys} hold {self.filled} of its {self.numel} values; elements "
                f"{', '.join(gaps)} are in no chunk")


class BlobAssembler:
    """Collects the records Load reads and joins each blob's chunks (see module docstring).

    `add(name, key, data, where)` takes one record for blob `name`, read under DB key `key`;
    `where` says where that record is, for error messages ("minidb 'f', key 'w#%1'").
    """

    def __init__(self):
        self._parts: dict[str, Any] = {}  # name -> _TensorParts, or ("value", v, key)

    def __contains__(self, name: str) -> bool:
        return name in self._parts

    def names(self) -> list[str]:
        return list(self._parts)

    def complete(self, name: str) -> bool:
        part = self._parts.get(name)
        if part is None:
            return False
        return part.complete if isinstance(part, _TensorParts) else True

    def value(self, name: str):
        part = self._parts[name]
        if isinstance(part, _TensorParts):
            assert part.complete, name
            return part.flat.reshape(part.shape)
        return part[1]

    def missing(self) -> dict[str, str]:
        """{name: what is missing} of every blob whose chunks are not all there."""
        return {n: p.missing(n) for n, p in self._parts.items()
                if isinstance(p, _TensorParts) and not p.complete}

    def add(self, name: str, key: str, data: bytes, where: str | None = None) -> None:
        where = where or f"key '{key}'"
        proto = parse_blob_proto(data, where)
        if proto.HasField("content_num_chunks"):
            raise UnsupportedError(f"{where}: blob '{name}' of type '{proto.type}' is split "
                                   "into content chunks, which no blob type c2compile "
                                   "knows uses", blob=name)
        earlier = self._parts.get(name)
        if proto.type != TENSOR_TYPE:
            if earlier is not None:
                first = earlier[2] if isinstance(earlier, tuple) else earlier.chunks[0][2]
                raise DBError(f"{where}: blob '{name}' appears twice (also under key "
                              f"'{first}')", blob=name)
            self._parts[name] = ("value", self._other_value(proto, name, where), key)
            return
        if not proto.HasField("tensor"):
            raise DBError(f"{where}: blob '{name}' has type Tensor but no tensor", blob=name)
        self._add_chunk(name, key, proto.tensor, earlier, where)

    def _add_chunk(self, name, key, t, parts, where) -> None:
        if not t.HasField("data_type"):
            raise DBError(f"{where}: tensor '{name}' has no data_type (Caffe2: 'unrecognized "
                          "data type')", blob=name)
        if t.data_type == _TP.UNDEFINED and not t.string_data and \
                int(np.prod(t.dims, dtype=np.int64)) == 0:
            t.data_type = _TP.FLOAT  # Caffe2 reads an untyped empty tensor as float (0,)
            del t.dims[:]
            t.dims.append(0)
        try:
            dtypes.to_numpy(t.data_type)
        except ValueError:
            raise UnsupportedError(f"{where}: tensor '{name}' has data_type "
                                   f"{dtypes.name(t.data_type)}, which c2compile cannot "
                                   "load", blob=name) from None
        if isinstance(parts, tuple):
            raise DBError(f"{where}: blob '{name}' appears twice (also under key "
                          f"'{parts[2]}', as a {parts[1].__class__.__name__})", blob=name)
        if parts is None:
            parts = self._parts[name] = _TensorParts(name, t, where)
        elif tuple(t.dims) != parts.shape or t.data_type != parts.data_type:
            raise DBError(f"{where}: chunk of tensor '{name}' says it is "
                          f"{dtypes.name(t.data_type)} {list(t.dims)}, its earlier chunk(s) "
                          f"said {dtypes.name(parts.data_type)} {list(parts.shape)}",
                          blob=name)
        elif parts.complete:
            raise DBError(f"{where}: tensor '{name}' is already complete (an extra chunk, "
                          "or the blob twice in the DB)", blob=name)
        begin, end = ((t.segment.begin, t.segment.end) if t.HasField("segment")
                      else (0, parts.numel))
        if not 0 <= begin <= end <= parts.numel:
            raise DBError(f"{where}: chunk [{begin}, {end}) of tensor '{name}' is outside "
                          f"its {parts.numel} elements", blob=name)
        for b, e, other in parts.chunks:
            if begin < e and b < end:
                raise DBError(f"{where}: chunk [{begin}, {end}) of tensor '{name}' overlaps "
                              f"chunk [{b}, {e}) under key '{other}'", blob=name)
        try:
            values = tensor_proto_values(t, count=end - begin)
        except ValueError as e:
            raise DBError(f"{where}: tensor '{name}': {e}", blob=name) from None
        parts.flat[begin:end] = values
        parts.chunks.append((begin, end, key))
        parts.filled += end - begin

    @staticmethod
    def _other_value(proto, name: str, where: str):
        if proto.type == STRING_TYPE:
            return bytes(proto.content)
        if proto.type == DBREADER_TYPE:
            return _open_dbreader(proto, name, where)
        raise UnsupportedError(f"{where}: blob '{name}' has type '{proto.type}', which "
                               "c2compile cannot deserialize (it reads Tensor, std::string "
                               "and DBReader blobs)", blob=name)


def _open_dbreader(proto, name: str, where: str):
    from c2compile.runtime.db import DBReader
    try:
        content = caffe2_pb2.DBReaderProto.FromString(proto.content)
    except DecodeError:
        raise ProtoError(f"{where}: blob '{name}': cannot parse its content as a "
                         "DBReaderProto") from None
    reader = DBReader(content.db_type, content.source)
    if content.HasField("key"):
        cursor = reader.cursor()
        if not cursor.supports_seek():
            reader.close()
            raise DBError(f"{where}: DB reader '{name}' was saved at key '{content.key}' "
                          f"but a {content.db_type} cannot seek", blob=name)
        cursor.seek(content.key)
    return reader
