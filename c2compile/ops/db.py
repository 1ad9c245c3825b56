"""DB input ops: CreateDB (opens a DB reader), TensorProtosDBInput (reads batches of tensors
from it) and DBExists.

All are host-only (they never compile): CreateDB's output is a `runtime.db.DBReader`, a
Python object rather than a tensor, and TensorProtosDBInput advances that reader's cursor,
so it is stateful: a net that fails after it has read leaves the reader moved on, as in
Caffe2. None has a gradient rule (Caffe2 registers them NO_GRADIENT/SHOULD_NOT_DO_GRADIENT
and they take no float input).

Semantics are Caffe2 1.x's (caffe2/db/create_db_op.h, caffe2/operators/
tensor_protos_db_input.h + prefetch_op.h, caffe2/operators/load_save_op.h DBExistsOp):

* CreateDB opens `db` as given (relative to the process's directory, not the workspace's
  root folder); `db_type` defaults to "leveldb" as in Caffe2, which c2compile lacks.
* TensorProtosDBInput reads, per run, `batch_size` records of serialized TensorProtos; output
  i stacks the i-th tensor of each record along a new first axis. `batch_size=0` (the
  default) reads one record and outputs its tensors unstacked. The reader wraps to the first
  record at the end of the DB, so a batch larger than the DB repeats records. Caffe2
  prefetched the next batch on a thread after each run; c2compile reads when the op runs
  (Caffe2's `no_prefetch=1`): the same batches, but a reader shared with other ops is not a
  batch ahead.
* DBExists looks for `db_name` under the workspace's root folder unless `absolute_path`.
"""
from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from c2compile.errors import ArgumentError, DBError, OpError
from c2compile.ops.schema import INF, REQUIRED, Arg, TensorType, op
from c2compile.proto import caffe2_pb2
from c2compile.runtime.db import DBReader, canonical_db_type, db_exists


def _in_op(ctx, e: OpError) -> OpError:
    """`e` (a DBError/UnsupportedError from runtime.db) re-raised naming this op too."""
    err = ctx.error(type(e), e.message)
    err.path, err.key = getattr(e, "path", None), getattr(e, "key", None)
    return err


def _check_db_type(ctx, db_type: str) -> None:
    try:
        canonical_db_type(db_type)
    except OpError as e:
        raise _in_op(ctx, e) from None


def full_db_name(ctx, name: str, absolute_path: bool) -> str:
    """A DB op's path: `name` itself, or under the workspace's root folder (Caffe2 joins the
    two with "/", so an absolute name lands below the root folder too)."""
    if absolute_path:
        return name
    return ctx.root_folder + "/" + name


# ----------------------------------------------------------------------------- CreateDB

def _infer_create_db(ctx):
    a = ctx.args
    if not a.db:
        ctx.fail("argument 'db' is empty: name the DB to open", cls=ArgumentError)
    if a.num_shards < 1 or not 0 <= a.shard_id < a.num_shards:
        ctx.fail(f"shard_id={a.shard_id} must be in [0, num_shards={a.num_shards})",
                 cls=ArgumentError)
    _check_db_type(ctx, a.db_type)
    return [TensorType(None, None)]


@op("CreateDB", inputs=0, outputs=1,
    args=[Arg("db", "str", REQUIRED, "the DB's path (a minidb file or an lmdb directory)"),
          Arg("db_type", "str", "leveldb", "minidb or lmdb (Caffe2's default, leveldb, is "
              "not in c2compile)"),
          Arg("num_shards", "int", 1, "read every num_shards-th record ..."),
          Arg("shard_id", "int", 0, "... starting with this one")],
    infer=_infer_create_db, host_only=True, stateful=True)
def create_db(ctx):
    """A reader of the DB `db` (the blob TensorProtosDBInput and Load read from)."""
    _infer_create_db(ctx)
    a = ctx.args
    try:
        return DBReader(a.db_type, a.db, a.num_shards, a.shard_id)
    except OpError as e:
        raise _in_op(ctx, e) from None


# ----------------------------------------------------------------------------- TensorProtosDBInput

def _infer_db_input(ctx, reader):
    if ctx.args.batch_size < 0:
        ctx.fail(f"batch_size={ctx.args.batch_size} must be >= 0", cls=ArgumentError)
    if reader.dtype is not None:
        ctx.fail(f"input '{ctx.inputs[0]}' holds a tensor; {ctx.type} reads the DB reader "
                 "CreateDB makes", blob=ctx.inputs[0])
    # The shapes and dtypes are the records': unknown until one is read.
    return [TensorType(None, None)] * ctx.num_outputs


def _parse_record(ctx, reader: DBReader, key: str, value: bytes) -> list[np.ndarray]:
    """The tensors of one record, or a DBError naming the DB and the key."""
    from c2compile.utils import Caffe2TensorToNumpyArray
    where = f"record '{key}' of {reader.db_type} '{reader.source}'"
    protos = caffe2_pb2.TensorProtos()
    try:
        protos.ParseFromString(value)
    except DecodeError:
        raise _record_error(ctx, reader, key, f"{where} is not a serialized TensorProtos "
                            f"({len(value)} bytes)") from None
    if len(protos.protos) != ctx.num_outputs:
        raise _record_error(ctx, reader, key, f"{where} holds {len(protos.protos)} tensors, "
                            f"but {ctx.type} has {ctx.num_outputs} outputs "
                            f"({', '.join(ctx.outputs)})")
    tensors = []
    for i, proto in enumerate(protos.protos):
        try:
            tensors.append(Caffe2TensorToNumpyArray(proto))
        except ValueError as e:
            raise _record_error(ctx, reader, key, f"{where}, tensor {i}: {e}") from None
    return tensors


def _record_error(ctx, reader: DBReader, key: str, message: str) -> DBError:
    err = ctx.error(DBError, message)
    err.path, err.key = reader.source, key
    return err


def _read(ctx, reader: DBReader) -> tuple[str, bytes]:
    try:
        return reader.read()
    except OpError as e:
        raise _in_op(ctx, e) from None


@op("TensorProtosDBInput", inputs=1, outputs=(1, INF),
    args=[Arg("batch_size", "int", 0, "records per run, stacked on a new first axis (0: one "
              "record, tensors as stored)"),
          Arg("no_prefetch", "bool", False, "accepted; c2compile never reads ahead")],
    infer=_infer_db_input, host_only=True, stateful=True)
def tensor_protos_db_input(ctx, reader):
    """The next batch of records of a DB of serialized TensorProtos, one output per tensor in
    a record; wraps around at the end of the DB."""
    _infer_db_input(ctx, TensorType(None, None) if isinstance(reader, DBReader)
                    else TensorType(np.shape(reader), getattr(reader, "dtype", None)))
    if not isinstance(reader, DBReader):
        ctx.fail(f"input '{ctx.inputs[0]}' is a {type(reader).__name__}; {ctx.type} reads "
                 "the DB reader CreateDB makes", blob=ctx.inputs[0])
    batch = ctx.args.batch_size
    first_key, value = _read(ctx, reader)
    first = _parse_record(ctx, reader, first_key, value)
    if batch == 0:
        return [t.copy() for t in first]  # copies: Caffe2TensorToNumpyArray may alias the proto
    outs = [np.empty((batch,) + t.shape, dtype=t.dtype) for t in first]
    # `out[k, ...] = t`, not `out[k] = t`: a 0-d string tensor would land in an object
    # slot as the array itself.
    for out, t in zip(outs, first):
        out[0, ...] = t
    for item in range(1, batch):
        key, value = _read(ctx, reader)
        for i, (out, t) in enumerate(zip(outs, _parse_record(ctx, reader, key, value))):
            # Caffe2 resized the output to each record's dims, silently dropping the items
            # already copied; c2compile refuses records that do not stack.
            if t.shape != out.shape[1:] or t.dtype != out.dtype:
                raise _record_error(
                    ctx, reader, key,
                    f"record '{key}' of {reader.db_type} '{reader.source}': tensor {i} "
                    f"({ctx.outputs[i]}) is {list(t.shape)}:{t.dtype}, but record "
                    f"'{first_key}' of the same batch had {list(out.shape[1:])}:{out.dtype}")
            out[item, ...] = t
    return outs


# ----------------------------------------------------------------------------- DBExists

def _infer_db_exists(ctx):
    _check_db_type(ctx, ctx.args.db_type)
    return [TensorType((), np.bool_)]


@op("DBExists", inputs=0, outputs=1,
    args=[Arg("absolute_path", "bool", False, "db_name is a full path (else it is relative "
              "to the workspace's root folder)"),
          Arg("db_name", "str", "", "the DB's path"),
          Arg("db_type", "str", "", "minidb or lmdb")],
    infer=_infer_db_exists, host_only=True)
def db_exists_(ctx):
    """Whether the DB opens for reading, as a bool scalar.

    An unknown db_type is an error; Caffe2 answered true (its DB factory returned null
    without throwing, which DBExists took for success).
    """
    _infer_db_exists(ctx)
    name = full_db_name(ctx, ctx.args.db_name, ctx.args.absolute_path)
    return np.array(db_exists(ctx.args.db_type, name))
