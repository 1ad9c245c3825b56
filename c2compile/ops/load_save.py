"""Save, Load and Checkpoint (alias Snapshot): blobs to and from DBs, file-compatible with
Caffe2 1.x (caffe2/operators/load_save_op.{h,cc}, load_save_op_util.cc).

Blobs travel as Caffe2's serialized BlobProtos (runtime/serialization.py): tensors in
chunks under the keys `<name>#%<chunk id>`, strings and DB readers under `<name>`. DBs are
runtime/db.py's (minidb, lmdb).

* **Paths.** `db` (and each of `dbs`) is taken as is with `absolute_path`, else it is
  appended to the workspace's root folder as Caffe2 does (`root + "/" + db`).
* **Save** writes a NEW DB (a minidb file is truncated, an lmdb emptied). Every blob is
  serialized before the DB is opened, so a blob that cannot be saved leaves no file behind.
* **Load** reads the records whose blob name (the key up to "#%", `strip_prefix` removed up
  to its first occurrence, then `add_prefix` prepended) it was asked for, or every record
  with `load_all`. Errors name the DB file and key; a failed Load writes nothing, extra
  blobs of `load_all` included (they go through the run's overlay like outputs do).
* **Devices.** c2compile runs the host part on the CPU: `keep_device` is accepted and every
  blob loads to the CPU whatever device its TensorProto names.
* **Stricter than Caffe2** (each where Caffe2 wrote a file it could not read back, left
  blobs half-loaded, or trusted what it was told): a failed Load writes nothing (Caffe2 kept
  the blobs it had loaded before the error); Save refuses two inputs saved under one name
  also with blob_name_overrides; chunks of a tensor must not overlap (Caffe2 only added up
  their sizes); Load's `shape`/`dtype` (Caffe2: shape inference only) are checked against
  the loaded blob.

Caffe2's gradient marks: Load passes no gradient (NO_GRADIENT); Save and Checkpoint have no
rule (SHOULD_NOT_DO_GRADIENT). All three are host-only: they never compile.
"""
from __future__ import annotations

import re

import numpy as np
from google.protobuf.message import DecodeError

from c2compile import dtypes
from c2compile.errors import ArgumentError, C2Error, DBError, OpError, UnsupportedError
from c2compile.ops.db import full_db_name
from c2compile.ops.gradient import NO_GRADIENT
from c2compile.ops.schema import UNCHANGED, Arg, TensorType, alias, op
from c2compile.proto import caffe2_pb2
from c2compile.runtime import serialization
from c2compile.runtime.db import DBReader, open_db

_BSO = caffe2_pb2.BlobSerializationOptions


def _db_error(ctx, message: str, path: str | None, key: str | None = None,
              blob: str | None = None) -> DBError:
    """A DBError naming this op, carrying .path/.key as runtime.db's errors do."""
    err = ctx.error(DBError, message, blob=blob)
    err.path, err.key = path, key
    return err


def _reraise(ctx, e: C2Error, path: str | None = None, blob: str | None = None):
    """Re-raise an error of the DB or serialization layer naming this op (OpErrors keep
    their class, anything else becomes a DBError)."""
    cls = type(e) if isinstance(e, OpError) else DBError
    message = e.message if isinstance(e, OpError) else str(e)
    err = ctx.error(cls, message, blob=blob or getattr(e, "blob", None))
    err.path = getattr(e, "path", path)
    err.key = getattr(e, "key", None)
    raise err from None


def _db_path(ctx, db: str) -> str:
    return full_db_name(ctx, db, ctx.args.absolute_path)


# ----------------------------------------------------------------------------- Save

_SAVE_ARGS = [
    Arg("absolute_path", "int", 0, "nonzero: `db` is the path itself, not relative to the "
        "workspace's root folder"),
    Arg("strip_prefix", "str", "", "drop everything up to and including the first "
        "occurrence of this in each blob name (a device scope)"),
    Arg("blob_name_overrides", "strs", [], "names to store the blobs under, one per input"),
    Arg("db", "str", "", "the DB path (required)"),
    Arg("db_type", "str", "", "minidb or lmdb (required)"),
    Arg("chunk_size", "int", None, "elements per tensor chunk; -1: the default "
        "(1,000,000), 0: no chunking"),
    Arg("options", "bytes", None, "a serialized SerializationOptions: chunk_size (0: "
        "default, -1: none) per blob_name_regex"),
]


def _check_renames(ctx, arg: str, count: int, side: str) -> None:
    """Save's blob_name_overrides / Load's source_blob_names: one name per blob, and not
    together with strip_prefix."""
    names = getattr(ctx.args, arg)
    if names and len(names) != count:
        ctx.fail(f"{arg} has {len(names)} names for {count} {side} blobs", cls=ArgumentError)
    if names and ctx.args.strip_prefix:
        ctx.fail(f"strip_prefix and {arg} are mutually exclusive", cls=ArgumentError)


def _check_save_args(ctx, db_arg: str = "db") -> None:
    a = ctx.args
    if not a.db_type:
        ctx.fail("must specify a db type (argument db_type: minidb or lmdb)", cls=ArgumentError)
    if not a.db:
        ctx.fail(f"must specify a db name (argument {db_arg})", cls=ArgumentError)
    _check_renames(ctx, "blob_name_overrides", ctx.num_inputs, "input")
    _saved_names(ctx)
    _serialization_options(ctx)


def _saved_names(ctx) -> list[str]:
    """The name each input is stored under (Caffe2's SaveOpImpl constructor)."""
    a = ctx.args
    if a.blob_name_overrides:
        names = list(a.blob_name_overrides)
    else:
        names = [serialization.strip_prefix_of(n, a.strip_prefix) for n in ctx.inputs]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            ctx.fail(f"input {i} ('{ctx.inputs[i]}') would be saved under an empty name",
                     cls=ArgumentError, blob=ctx.inputs[i])
        if name in seen:
            # Caffe2 checks this for strip_prefix names only; duplicated overrides wrote two
            # records under one key that Load then refused ("Blob duplicated"). Refused here
            # before anything is written.
            ctx.fail(f"inputs {seen[name]} ('{ctx.inputs[seen[name]]}') and {i} "
                     f"('{ctx.inputs[i]}') would both be saved as '{name}'",
                     cls=ArgumentError, blob=ctx.inputs[i])
        seen[name] = i
    return names


def _serialization_options(ctx) -> list:
    """Caffe2's options list: the `options` argument's entries, then `chunk_size` (with its
    old meaning, -1 default and 0 none, turned into the options' 0 and -1) as a last
    catch-all."""
    a = ctx.args
    entries = []
    if a.options:
        try:
            entries = list(caffe2_pb2.SerializationOptions.FromString(a.options).options)
        except DecodeError:
            ctx.fail("argument 'options' is not a serialized caffe2.SerializationOptions",
                     cls=ArgumentError)
    if a.chunk_size is not None:
        size = {-1: serialization.DEFAULT_CHUNK_SIZE, 0: serialization.NO_CHUNKING}.get(
            a.chunk_size, a.chunk_size)
        entries.append(_BSO(chunk_size=size))
    for e in entries:
        if e.chunk_size < -1:
            ctx.fail(f"chunk size {e.chunk_size} is negative (chunk_size takes -1: the "
                     "default size, 0: no chunking, or a positive size)", cls=ArgumentError)
        try:
            if e.blob_name_regex:
                re.compile(e.blob_name_regex)
        except re.error as err:
            ctx.fail(f"options: blob_name_regex {e.blob_name_regex!r} is not a regular "
                     f"expression ({err})", cls=ArgumentError)
    return entries


def _blob_options(entries: list, name: str):
    """The first entry whose regex is empty or matches all of `name` (GetBlobOptions)."""
    for e in entries:
        if not e.blob_name_regex or re.fullmatch(e.blob_name_regex, name):
            return e
    return _BSO()


def _infer_save(ctx, *ins):
    _check_save_args(ctx)
    return []


def save_blobs(ctx, values, db_name: str) -> None:
    """Serialize `values` (one per input) and write them to a NEW DB at `db_name`."""
    names = _saved_names(ctx)
    entries = _serialization_options(ctx)
    path = _db_path(ctx, db_name)
    records = []
    for name, blob, value in zip(names, ctx.inputs, values):
        opts = _blob_options(entries, name)
        if opts.float_format == _BSO.FLOAT_BFLOAT16 and \
                getattr(value, "dtype", None) == np.float32:
            raise ctx.error(UnsupportedError, f"blob '{blob}': bfloat16 serialization "
                            "(options float_format FLOAT_BFLOAT16) is not implemented",
                            blob=blob)
        try:
            records += serialization.serialize_blob(value, name, opts.chunk_size)
        except C2Error as e:
            _reraise(ctx, e, path, blob)
    try:
        with open_db(ctx.args.db_type, path, "new") as db:
            # Caffe2 commits one transaction per record; one commit at the end writes the
            # same records in the same order.
            txn = db.transaction()
            for key, data in records:
                txn.put(key, data)
            txn.commit()
    except C2Error as e:
        _reraise(ctx, e, path)


@op("Save", inputs=(1, None), outputs=0, args=_SAVE_ARGS, infer=_infer_save,
    host_only=True, stateful=True)
def save(ctx, *blobs):
    """Write the input blobs to a new DB as serialized BlobProtos (tensors in chunks)."""
    _check_save_args(ctx)
    save_blobs(ctx, blobs, ctx.args.db)
    return ()


# ----------------------------------------------------------------------------- Checkpoint

_PRINTF = re.compile(r"%(?P<spec>[-+ #0]*\d*(?:\.\d+)?)(?:hh|h|ll|l|j|z|t|L|q)?"
                     r"(?P<conv>[a-zA-Z%])")


def format_checkpoint_name(pattern: str, iteration: int) -> str:
    """`pattern` with the iteration number, as Caffe2's snprintf(pattern, iter) gives it.

    At most one integer conversion (%d, %i, %u, %o, %x, %X with flags, width, precision
    and a length modifier) may appear, besides "%%"; a pattern without one names the same
    DB every time. ValueError otherwise (C would read arguments that are not there).
    """
    parts, ints, at = [], 0, 0
    for m in _PRINTF.finditer(pattern):
        parts.append(pattern[at:m.start()].replace("%", "%%"))
        conv = m.group("conv")
        if conv == "%":
            if m.group("spec"):
                raise ValueError(f"'{m.group(0)}' in {pattern!r} is not a conversion")
            parts.append("%%")
        elif conv in "diuoxX":
            ints += 1
            parts.append("%" + m.group("spec") + ("d" if conv in "iu" else conv))
        else:
            raise ValueError(f"'{m.group(0)}' in {pattern!r}: the pattern gets one integer "
                             "(the iteration); use %d")
        at = m.end()
    rest = pattern[at:]
    if "%" in rest:
        raise ValueError(f"{pattern!r} ends in an incomplete conversion")
    parts.append(rest)
    if ints > 1:
        raise ValueError(f"{pattern!r} has {ints} conversions; it gets one integer "
                         "(the iteration)")
    fmt = "".join(parts)
    return fmt % iteration if ints else fmt % ()


def _check_checkpoint_args(ctx) -> None:
    _check_save_args(ctx)
    if ctx.args.every <= 0:
        ctx.fail(f"every={ctx.args.every}: the checkpoint interval must be positive",
                 cls=ArgumentError)
    try:
        format_checkpoint_name(ctx.args.db, 0)
    except ValueError as e:
        ctx.fail(f"argument db: {e}", cls=ArgumentError)


def _check_iteration(ctx, t: TensorType) -> None:
    name = ctx.inputs[0]
    if t.dtype is not None and t.dtype != np.dtype(np.int64):
        ctx.fail(f"input 0 '{name}' is the iteration counter and must be an int64 tensor, "
                 f"got {t.dtype}", blob=name)
    if t.shape is not None and t.size < 1:
        ctx.fail(f"input 0 '{name}' (the iteration counter) is empty", blob=name)


def _infer_checkpoint(ctx, it, *rest):
    _check_checkpoint_args(ctx)
    _check_iteration(ctx, it)
    return []


@op("Checkpoint", inputs=(1, None), outputs=0,
    args=[a if a.name != "db" else Arg("db", "str", "", "the DB path pattern: printf-style "
                                       "with the iteration, e.g. 'ckpt_%08d.lmdb'")
          for a in _SAVE_ARGS] +
         [Arg("every", "int", 1, "save when iteration % every == 0")],
    infer=_infer_checkpoint, host_only=True, stateful=True)
def checkpoint(ctx, iteration, *rest):
    """Save every input blob, the iteration counter (input 0, int64) included, to the DB
    named by formatting `db` with the iteration, when the iteration is a multiple of
    `every`."""
    _check_checkpoint_args(ctx)
    if not isinstance(iteration, np.ndarray):
        raise ctx.error(OpError, f"input 0 '{ctx.inputs[0]}' holds a "
                        f"{type(iteration).__name__}, not the int64 iteration counter",
                        blob=ctx.inputs[0])
    _check_iteration(ctx, TensorType(iteration.shape, iteration.dtype))
    it = int(iteration.reshape(-1)[0])
    if abs(it) % ctx.args.every == 0:  # C's iter % every == 0 (also for negative iter)
        save_blobs(ctx, (iteration,) + rest, format_checkpoint_name(ctx.args.db, it))
    return ()


# Caffe2 registers the old name Snapshot for the same operator.
alias("Snapshot", "Checkpoint")


# ----------------------------------------------------------------------------- Load

_LOAD_ARGS = [
    Arg("absolute_path", "int", 0, "nonzero: `db`/`dbs` are paths themselves, not relative "
        "to the workspace's root folder"),
    Arg("add_prefix", "str", "", "prepended to the name of every blob read"),
    Arg("strip_prefix", "str", "", "drop everything up to and including its first "
        "occurrence in each stored name"),
    Arg("db", "str", "", "the DB path (unless `dbs` or DBReader inputs are given)"),
    Arg("dbs", "strs", [], "several DB paths to load from"),
    Arg("db_type", "str", "", "minidb or lmdb (required without DBReader inputs)"),
    Arg("db_options", "str", "", "backend options; minidb and lmdb take none (ignored, as "
        "in Caffe2)"),
    Arg("keep_device", "int", 0, "load to the device the proto names (everything is on "
        "the CPU in c2compile)"),
    Arg("load_all", "int", 0, "nonzero: load every blob of the DB(s)"),
    Arg("allow_incomplete", "bool", False, "do not fail when some outputs are not in the "
        "DB(s): those keep their value (or stay absent)"),
    Arg("source_blob_names", "strs", [], "the stored names to load, one per output"),
    Arg("shape", "ints", [], "with one output: its shape (for shape inference; checked "
        "when loaded)"),
    Arg("dtype", "int", dtypes.FLOAT, "with `shape`: the output's DataType"),
]


def _check_load_args(ctx) -> None:
    a = ctx.args
    if ctx.num_inputs == 0:
        if not a.db_type:
            ctx.fail("must specify a db type (argument db_type: minidb or lmdb)",
                     cls=ArgumentError)
        if not a.dbs and not a.db:
            ctx.fail("must specify a db name (argument db or dbs), or DBReader inputs",
                     cls=ArgumentError)
        if any(not d for d in a.dbs):
            ctx.fail("argument dbs holds an empty db name", cls=ArgumentError)
        if len(set(a.dbs)) != len(a.dbs):
            dup = next(d for d in a.dbs if a.dbs.count(d) > 1)
            ctx.fail(f"argument dbs names '{dup}' twice", cls=ArgumentError)
    _check_renames(ctx, "source_blob_names", ctx.num_outputs, "output")
    if a.source_blob_names and a.load_all:
        ctx.fail("load_all and source_blob_names are mutually exclusive", cls=ArgumentError)
    if not a.load_all:
        names = _source_names(ctx)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            ctx.fail(f"blob '{dup}' is asked for twice", cls=ArgumentError, blob=dup)
    if a.shape:
        try:
            dtypes.to_numpy(a.dtype)
        except ValueError as e:
            ctx.fail(f"argument dtype: {e}", cls=ArgumentError)


def _source_names(ctx) -> list[str]:
    """The blob name (after strip/add prefix) that each output is loaded from."""
    return list(ctx.args.source_blob_names or ctx.outputs)


def _declared_type(ctx) -> TensorType | None:
    """Caffe2's LoadTensorInference: `shape` (and `dtype`) describe a single output."""
    if ctx.num_outputs == 1 and ctx.args.shape:
        return TensorType(tuple(ctx.args.shape), dtypes.to_numpy(ctx.args.dtype))
    return None


def _infer_load(ctx, *ins):
    _check_load_args(ctx)
    declared = _declared_type(ctx)
    if declared is not None:
        return [declared]
    return [TensorType(None, None)] * ctx.num_outputs


def _sources(ctx, readers):
    """(label, path, cursor, db or None) for each DB to read, opened in order."""
    a = ctx.args
    if readers:
        for i, reader in enumerate(readers):
            if not isinstance(reader, DBReader):
                raise ctx.error(OpError, f"input {i} '{ctx.inputs[i]}' holds a "
                                f"{type(reader).__name__}; Load's inputs are the DB readers "
                                "CreateDB makes", blob=ctx.inputs[i])
            # As Caffe2, read on from where the reader's cursor is (a fresh reader: the
            # first record) and leave it where Load stopped.
            yield f"{reader.db_type} '{reader.source}'", reader.source, reader.cursor(), None
        return
    for name in (a.dbs or [a.db]):
        path = _db_path(ctx, name)
        try:
            db = open_db(a.db_type, path, "read")
            cursor = db.cursor()
        except C2Error as e:
            _reraise(ctx, e, path)
        yield f"{a.db_type} '{path}'", path, cursor, db


def _read_records(ctx, readers, assembler, wanted) -> dict[str, str]:
    """Feed the records Load wants to `assembler`; returns {blob name: DB label} of what it
    read. Stops reading a DB once every wanted blob is complete (as Caffe2)."""
    a = ctx.args
    from_db: dict[str, int] = {}
    labels: dict[str, str] = {}
    remaining = set(wanted)
    for index, (label, path, cursor, db) in enumerate(_sources(ctx, readers)):
        try:
            while cursor.valid():
                key = cursor.key()
                name = serialization.blob_name_from_key(key, a.strip_prefix, a.add_prefix)
                if a.load_all or name in wanted:
                    if from_db.setdefault(name, index) != index:
                        raise _db_error(ctx, f"{label}, key '{key}': blob '{name}' is also "
                                        f"in {labels[name]} (duplicate key)", path, key, name)
                    labels[name] = label
                    assembler.add(name, key, cursor.value(), where=f"{label}, key '{key}'")
                    if assembler.complete(name):
                        remaining.discard(name)
                        if not a.load_all and not remaining:
                            break
                cursor.next()
        except OpError as e:
            if e.op_type:
                raise
            _reraise(ctx, e, path)
        except C2Error as e:
            _reraise(ctx, e, path)
        finally:
            if db is not None:
                db.close()
    return labels


def _describe_sources(ctx, readers) -> str:
    if readers:
        return ", ".join(f"{r.db_type} '{r.source}'" for r in readers
                         if isinstance(r, DBReader))
    return ", ".join(f"{ctx.args.db_type} '{_db_path(ctx, d)}'"
                     for d in (ctx.args.dbs or [ctx.args.db]))


def _check_declared(ctx, value, name: str, label: str) -> None:
    declared = _declared_type(ctx)
    if declared is None:
        return
    got = TensorType(value.shape, value.dtype) if isinstance(value, np.ndarray) else None
    if got != declared:
        # Caffe2 only hands `shape`/`dtype` to shape inference; a blob that contradicts
        # them would make that inference wrong, so it is an error here.
        what = got if got is not None else type(value).__name__
        raise _db_error(ctx, f"{label}: blob '{name}' is {what}, but the op declares "
                        f"shape {declared!r} (arguments shape/dtype)", None, blob=name)


@op("Load", inputs=(0, None), outputs=(0, None), args=_LOAD_ARGS, infer=_infer_load,
    host_only=True, stateful=True, grad=NO_GRADIENT)
def load(ctx, *readers):
    """Read blobs from DB(s) (the `db`/`dbs` arguments, or DBReader inputs) into the
    outputs, or every blob with `load_all`; tensors are joined from their chunks."""
    _check_load_args(ctx)
    a = ctx.args
    if a.load_all and ctx.workspace is None:
        ctx.unsupported("load_all needs a workspace to load into")
    wanted = set() if a.load_all else set(_source_names(ctx))
    assembler = serialization.BlobAssembler()
    labels = _read_records(ctx, readers, assembler, wanted)
    incomplete = assembler.missing()
    if incomplete:
        name, why = next(iter(incomplete.items()))
        raise _db_error(ctx, f"{labels[name]}: {why}", None, blob=name)
    sources = _describe_sources(ctx, readers)
    names = _source_names(ctx)
    absent = [n for n in names if n not in assembler]
    if absent and (a.load_all or not a.allow_incomplete):
        shown = ", ".join(f"'{n}'" for n in absent)
        prefixes = " (names after strip_prefix/add_prefix)" if a.strip_prefix or \
            a.add_prefix else ""
        raise _db_error(ctx, f"blob(s) {shown} not found in {sources}{prefixes}: no key "
                        f"'{absent[0]}' or '{serialization.chunk_key(absent[0], 0)}'",
                        None, key=serialization.chunk_key(absent[0], 0), blob=absent[0])
    outputs = []
    for name in names:
        if name not in assembler:
            outputs.append(UNCHANGED)  # allow_incomplete: keep the blob as it was, or absent
            continue
        value = assembler.value(name)
        _check_declared(ctx, value, name, labels[name])
        outputs.append(value)
    if a.load_all:
        own = set(ctx.outputs)
        for name in assembler.names():
            if name not in own:
                ctx.workspace.blobs[name] = assembler.value(name)
    return outputs
