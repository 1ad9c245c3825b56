"""Key/value DBs that hold models and data, file-compatible with Caffe2's `caffe2::db`.

    db = open_db("minidb", "/tmp/model.minidb", "new")
    with db:
        txn = db.transaction(); txn.put("w", b"..."); txn.commit()
    with open_db("minidb", "/tmp/model.minidb", "read") as db:
        for key, value in db.cursor(): ...

Two backends, as Caffe2 registered them (each also under its capitalised name):

* **minidb** (`MiniDB`): one plain file of records, each a native (little-endian) int32 key
  length, int32 value length, the key bytes, then the value bytes; records stay in the order
  they were written. `new` truncates the file, `write` appends, `read` reads.
* **lmdb** (`LMDB`): an LMDB environment directory (the `lmdb` package), map size 1 TiB as
  Caffe2 sets it; records are ordered by key as LMDB keeps them.

Modes are Caffe2's `db::Mode`: "read" (READ), "write" (WRITE), "new" (NEW). Keys are `str`
(utf-8 on disk; bytes that are not utf-8 survive the round trip as surrogate escapes),
values are `bytes`. Every problem with a DB is a `DBError` naming the file (and the key or
offset where one is known); the other types Caffe2 knows (leveldb, rocksdb, ...) are an
`UnsupportedError` that lists the types c2compile has.

`DBReader` is the blob CreateDB makes: one open DB read record by record, thread-safe,
wrapping to the first record at the end (Caffe2's `db::DBReader`). `create_db`, `Mode` and
`registered_dbs` are the DB API Caffe2's Python binding had (`workspace.C.create_db`).
"""
from __future__ import annotations

import enum
import os
import shutil
import struct
import threading
import weakref
from typing import Iterator

from c2compile.errors import DBError, UnsupportedError

DB_TYPES = ("minidb", "lmdb")
# Caffe2 registers every DB under two names (REGISTER_CAFFE2_DB(MiniDB, ...) and (minidb, ...)).
_ALIASES = {"minidb": "minidb", "MiniDB": "minidb", "lmdb": "lmdb", "LMDB": "lmdb"}
# DB types Caffe2 builds could have (caffe2/db/, contrib): valid names that c2compile lacks.
_CAFFE2_ONLY = {"leveldb", "LevelDB", "rocksdb", "RocksDB", "protodb", "ProtoDB", "zmqdb",
                "ZmqDB"}
MODES = ("read", "write", "new")

# caffe2/db/lmdb.cc: LMDB_MAP_SIZE, 1 TiB of address space (the file grows as it is filled).
LMDB_MAP_SIZE = 1 << 40

_HEADER = struct.Struct("<ii")  # minidb: int32 key length, int32 value length (x86 native)
_INT32_MAX = (1 << 31) - 1


def _error(message: str, path: str, key: str | None = None) -> DBError:
    """A DBError whose message names the file (and key); `path`/`key` kept as attributes."""
    err = DBError(message)
    err.path, err.key = path, key
    return err


def _encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _decode(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def canonical_db_type(db_type: str) -> str:
    """"minidb" or "lmdb" for any name Caffe2 registered them under; an error otherwise."""
    try:
        return _ALIASES[db_type]
    except (KeyError, TypeError):
        pass
    have = ", ".join(DB_TYPES)
    if db_type in _CAFFE2_ONLY:
        raise UnsupportedError(f"db_type '{db_type}' is a Caffe2 DB that c2compile does not "
                               f"implement; c2compile has: {have}")
    raise DBError(f"unknown db_type {db_type!r}; c2compile has: {have}")


# ----------------------------------------------------------------------------- interface

class Cursor:
    """Walks a DB's records from the first; `key()`/`value()` are the current record's.

    Iterating yields (key, value) from the current record to the last.
    """

    def valid(self) -> bool:
        raise NotImplementedError

    def key(self) -> str:
        raise NotImplementedError

    def value(self) -> bytes:
        raise NotImplementedError

    def next(self) -> None:
        raise NotImplementedError

    def seek_to_first(self) -> None:
        raise NotImplementedError

    def supports_seek(self) -> bool:
        return False

    def seek(self, key: str) -> None:
        """Move to the first record whose key is >= `key` (only DBs ordered by key)."""
        raise DBError(f"{type(self).__name__} cannot seek to a key")

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while self.valid():
            yield self.key(), self.value()
            self.next()


class Transaction:
    """Writes records; `commit()` makes them durable (and starts the next batch).

    As a context manager it commits on a clean exit and aborts on an exception.
    """

    def put(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Drop what was put since the last commit."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class DB:
    """One open DB: `cursor()` to read, `transaction()` to write, `close()` when done.

    Closing commits transactions still open (Caffe2's Transaction destructor commits).
    """

    db_type: str

    def __init__(self, path: str, mode: str):
        self.path, self.mode = path, mode
        self.closed = True  # until the backend has opened it
        self._transactions: list[Transaction] = []

    def cursor(self) -> Cursor:
        raise NotImplementedError

    def transaction(self) -> Transaction:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.closed:
            return
        try:
            for txn in self._transactions:
                txn.commit()
        finally:
            self.closed = True
            self._close()
            self._transactions.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __del__(self):
        # A DB dropped unclosed (a DBReader blob a workspace reset let go) closes here, so
        # its lmdb environment does not stay held for the rest of the process.
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<{self.db_type} {self.path!r} {self.mode}{' closed' if self.closed else ''}>"

    def _check_open(self) -> None:
        if self.closed:
            raise _error(f"{self.db_type} '{self.path}' is closed", self.path)

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode == "read":
            raise _error(f"{self.db_type} '{self.path}' was opened for reading; open it with "
                         "mode 'write' or 'new' to write", self.path)


# ----------------------------------------------------------------------------- minidb

class _MiniDBCursor(Cursor):
    """Reads records at its own file offset (pread), so cursors never disturb each other."""

    def __init__(self, db: "MiniDB"):
        self._db = db
        self.seek_to_first()

    def seek_to_first(self) -> None:
        self._next_offset = 0
        self.next()

    def _read(self, n: int, offset: int) -> bytes:
        self._db._check_open()
        return os.pread(self._db._fd, n, offset)

    def next(self) -> None:
        path, at = self._db.path, self._next_offset
        head = self._read(_HEADER.size, at)
        if not head:  # end of file, between records
            self._valid, self._key, self._value = False, None, None
            return
        if len(head) < _HEADER.size:
            raise _error(f"minidb '{path}' is truncated: the record at offset {at} has "
                         f"{len(head)} of the 8 bytes of its key and value lengths", path)
        key_len, value_len = _HEADER.unpack(head)
        if key_len < 0 or value_len < 0:
            raise _error(f"minidb '{path}' is corrupt: the record at offset {at} has key "
                         f"length {key_len} and value length {value_len}", path)
        # A wrong length must not make us allocate what the file does not hold: read at most
        # what is there, and say what was missing.
        left = max(os.fstat(self._db._fd).st_size - at - _HEADER.size, 0)
        if left < key_len:
            raise _error(f"minidb '{path}' is truncated: the record at offset {at} needs "
                         f"{key_len} key and {value_len} value bytes, the file has "
                         f"{left}", path)
        if left < key_len + value_len:
            key = _decode(self._read(key_len, at + _HEADER.size))
            raise _error(f"minidb '{path}' is truncated: the record at offset {at} (key "
                         f"'{key}') needs {value_len} value bytes, the file has "
                         f"{left - key_len}", path, key)
        body = self._read(key_len + value_len, at + _HEADER.size)
        key = _decode(body[:key_len])
        self._valid, self._key, self._value = True, key, body[key_len:]
        self._next_offset = at + _HEADER.size + key_len + value_len

    def valid(self) -> bool:
        return self._valid

    def _current(self):
        if not self._valid:
            raise _error(f"minidb '{self._db.path}': the cursor is past the last record",
                         self._db.path)

    def key(self) -> str:
        self._current()
        return self._key

    def value(self) -> bytes:
        self._current()
        return self._value


class _MiniDBTransaction(Transaction):
    """Appends records to the file; commit flushes, abort cuts the file back."""

    def __init__(self, db: "MiniDB"):
        self._db = db
        self._start = db._file.tell()

    def put(self, key: str, value: bytes) -> None:
        db = self._db
        db._check_writable()
        k, v = _encode(key), bytes(value)
        # Caffe2's MiniDBCursor rejects zero lengths (CAFFE_ENFORCE_GT(key_len_, 0), same for
        # the value): refuse to write a record Caffe2 could not read back.
        if not k or not v:
            raise _error(f"minidb '{db.path}': cannot store key {key!r} with "
                         f"{'an empty key' if not k else 'an empty value'} (Caffe2's minidb "
                         "reader rejects zero-length keys and values)", db.path, key)
        if len(k) > _INT32_MAX or len(v) > _INT32_MAX:
            raise _error(f"minidb '{db.path}': key '{key}' has a value of {len(v)} bytes, "
                         "more than a minidb record can hold (2^31-1)", db.path, key)
        try:
            db._file.write(_HEADER.pack(len(k), len(v)) + k)
            db._file.write(v)
        except OSError as e:
            raise _error(f"minidb '{db.path}': cannot write key '{key}': {e.strerror}",
                         db.path, key) from None

    def commit(self) -> None:
        db = self._db
        if db.closed:
            return
        try:
            db._file.flush()
        except OSError as e:
            raise _error(f"minidb '{db.path}': cannot write: {e.strerror}", db.path) from None
        self._start = db._file.tell()

    def abort(self) -> None:
        db = self._db
        if not db.closed:
            db._file.flush()
            db._file.truncate(self._start)
            db._file.seek(self._start)


class MiniDB(DB):
    """Caffe2's minidb: one file of length-prefixed records (see the module docstring)."""

    db_type = "minidb"

    def __init__(self, path: str, mode: str):
        super().__init__(path, mode)
        self._file = None
        try:
            if mode == "read":
                self._fd = os.open(path, os.O_RDONLY)
            else:  # NEW truncates, WRITE appends (creating the file if need be), as Caffe2
                self._file = open(path, "wb" if mode == "new" else "ab")
                self._fd = self._file.fileno()
        except OSError as e:
            raise _error(f"cannot open minidb '{path}' for {mode}: {e.strerror}", path) from None
        if os.path.isdir(path):
            self._close()
            raise _error(f"cannot open minidb '{path}': it is a directory (an lmdb?)", path)
        self.closed = False

    def cursor(self) -> Cursor:
        self._check_open()
        # Caffe2: NewCursor enforces mode == READ.
        if self.mode != "read":
            raise _error(f"minidb '{self.path}' was opened for {self.mode}; open it with "
                         "mode 'read' to read it", self.path)
        return _MiniDBCursor(self)

    def transaction(self) -> Transaction:
        self._check_writable()
        txn = _MiniDBTransaction(self)
        self._transactions.append(txn)
        return txn

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        else:
            os.close(self._fd)


# ----------------------------------------------------------------------------- lmdb

def _lmdb():
    import lmdb  # imported on first use: only lmdb DBs need it
    return lmdb


class _LMDBCursor(Cursor):
    """A cursor in its own read transaction: it sees the DB as it was when it was made."""

    def __init__(self, db: "LMDB"):
        self._db = db
        self._txn = db._env.begin(buffers=False)
        self._cur = self._txn.cursor()
        self.seek_to_first()

    def _call(self, fn, *args):
        self._db._check_open()
        try:
            return fn(*args)
        except _lmdb().Error as e:
            raise _error(f"lmdb '{self._db.path}': {e}", self._db.path) from None

    def seek_to_first(self) -> None:
        self._valid = self._call(self._cur.first)

    def next(self) -> None:
        if self._valid:
            self._valid = self._call(self._cur.next)

    def supports_seek(self) -> bool:
        return True

    def seek(self, key: str) -> None:
        if not key:  # caffe2/db/lmdb.cc: an empty key seeks to the first record
            self.seek_to_first()
        else:
            self._valid = self._call(self._cur.set_range, _encode(key))

    def valid(self) -> bool:
        return self._valid

    def _current(self):
        if not self._valid:
            raise _error(f"lmdb '{self._db.path}': the cursor is past the last record",
                         self._db.path)

    def key(self) -> str:
        self._current()
        return _decode(self._cur.key())

    def value(self) -> bytes:
        self._current()
        return self._cur.value()

    def close(self) -> None:
        if not self._db.closed:
            self._txn.abort()


class _LMDBTransaction(Transaction):
    """One LMDB write transaction at a time; commit commits and begins the next."""

    def __init__(self, db: "LMDB"):
        self._db = db
        self._txn = db._env.begin(write=True)

    def put(self, key: str, value: bytes) -> None:
        db = self._db
        db._check_writable()
        try:
            self._txn.put(_encode(key), bytes(value))
        except _lmdb().Error as e:
            raise _error(f"lmdb '{db.path}': cannot store key {key!r}: {e}", db.path,
                         key) from None

    def commit(self) -> None:
        db = self._db
        db._check_open()
        try:
            self._txn.commit()
        except _lmdb().Error as e:
            raise _error(f"lmdb '{db.path}': commit failed: {e}", db.path) from None
        self._txn = db._env.begin(write=True)

    def abort(self) -> None:
        if not self._db.closed:
            self._txn.abort()
            self._txn = self._db._env.begin(write=True)

    def close(self) -> None:
        """Drop the transaction begun by the last commit (the DB is closing)."""
        self._txn.abort()


class _Env:
    """One open LMDB environment and who uses it."""

    def __init__(self, env, writable: bool):
        self.env, self.writable = env, writable
        self.users = 1
        self.writing = False  # a write transaction is open (LMDB allows one at a time)


class _Environments:
    """The process's open LMDB environments, shared by path and counted.

    LMDB forbids opening one environment twice in a process (py-lmdb refuses), while Caffe2
    lets any number of readers (two CreateDB ops, a DBExists) open the same DB: every LMDB
    opened on a path shares one environment, closed when its last user closes.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[str, _Env] = {}  # realpath -> environment

    def acquire(self, path: str, key: str, mode: str) -> _Env:
        lmdb = _lmdb()
        with self._lock:
            entry = self._open.get(key)
            if entry is not None:
                if mode == "new" or (mode == "write" and not entry.writable):
                    raise _error(f"cannot open lmdb '{path}' for {mode}: it is open in this "
                                 "process (close its readers first)", path)
                entry.users += 1
                return entry
            if mode == "new":
                LMDB._make_new(path)
            elif not os.path.isdir(path):
                what = "is not a directory" if os.path.exists(path) else "does not exist"
                raise _error(f"cannot open lmdb '{path}' for {mode}: {what}", path)
            try:
                if mode == "read":
                    # caffe2/db/lmdb.cc reads with MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK
                    # (py-lmdb always sets MDB_NOTLS).
                    env = lmdb.open(path, map_size=LMDB_MAP_SIZE, readonly=True, lock=False,
                                    create=False)
                else:
                    env = lmdb.open(path, map_size=LMDB_MAP_SIZE, create=False)
            except lmdb.Error as e:
                raise _error(f"cannot open lmdb '{path}' for {mode}: {e}", path) from None
            self._open[key] = entry = _Env(env, mode != "read")
            return entry

    def release(self, key: str) -> None:
        with self._lock:
            entry = self._open[key]
            entry.users -= 1
            if entry.users == 0:
                del self._open[key]
                entry.env.close()


_ENVIRONMENTS = _Environments()


class LMDB(DB):
    """Caffe2's lmdb: an LMDB environment directory (see the module docstring)."""

    db_type = "lmdb"

    def __init__(self, path: str, mode: str):
        super().__init__(path, mode)
        self._key = os.path.realpath(path)
        self._shared = _ENVIRONMENTS.acquire(path, self._key, mode)
        self._env = self._shared.env
        # Weak: a cursor keeps its DB alive, not the other way round, so a DBReader dropped
        # unclosed frees its environment without waiting for the cycle collector.
        self._cursors: weakref.WeakSet[_LMDBCursor] = weakref.WeakSet()
        self.closed = False

    @staticmethod
    def _make_new(path: str) -> None:
        # Caffe2 mkdir()s the directory and fails when it exists. c2compile makes NEW mean the
        # same for both backends, a fresh empty DB: an existing lmdb directory (one holding
        # only LMDB's data.mdb/lock.mdb) is emptied, anything else is refused.
        if os.path.isdir(path):
            extra = set(os.listdir(path)) - {"data.mdb", "lock.mdb"}
            if extra:
                raise _error(f"cannot create lmdb '{path}': the directory exists and holds "
                             f"files that are not LMDB's ({', '.join(sorted(extra)[:3])})",
                             path)
            for name in ("data.mdb", "lock.mdb"):
                if os.path.exists(os.path.join(path, name)):
                    os.remove(os.path.join(path, name))
            return
        try:
            os.mkdir(path, 0o744)
        except OSError as e:
            raise _error(f"cannot create lmdb '{path}': {e.strerror}", path) from None

    def cursor(self) -> Cursor:
        self._check_open()
        cur = _LMDBCursor(self)
        self._cursors.add(cur)
        return cur

    def transaction(self) -> Transaction:
        self._check_writable()
        if self._shared.writing:
            # LMDB allows one write transaction per environment; a second would deadlock.
            raise _error(f"lmdb '{self.path}' already has an open transaction (commit "
                         "happens on close: close the other writer first)", self.path)
        try:
            txn = _LMDBTransaction(self)
        except _lmdb().Error as e:
            raise _error(f"lmdb '{self.path}': cannot begin a transaction: {e}",
                         self.path) from None
        self._shared.writing = True
        self._transactions.append(txn)
        return txn

    def _close(self) -> None:
        for cur in list(self._cursors):
            cur.close()
        self._cursors.clear()
        for txn in self._transactions:
            txn.close()
        if self._transactions:
            self._shared.writing = False
        _ENVIRONMENTS.release(self._key)


# ----------------------------------------------------------------------------- entry points

_BACKENDS = {"minidb": MiniDB, "lmdb": LMDB}


def open_db(db_type: str, path: str, mode: str = "read") -> DB:
    """Open the DB at `path` (Caffe2's db::CreateDB(db_type, source, mode))."""
    backend = _BACKENDS[canonical_db_type(db_type)]
    if mode not in MODES:
        raise DBError(f"cannot open {db_type} '{path}': mode {mode!r} is not one of "
                      f"{', '.join(MODES)}")
    path = os.fspath(path)
    return backend(path, mode)


def db_exists(db_type: str, path: str) -> bool:
    """Whether `path` opens as a `db_type` DB for reading (Caffe2's db::DBExists).

    An unknown db_type is an error here; Caffe2 answered true for it (its CreateDB returned
    null without throwing, which DBExists took for success).
    """
    canonical_db_type(db_type)
    try:
        open_db(db_type, path, "read").close()
    except DBError:
        return False
    return True


def remove_db(db_type: str, path: str) -> None:
    """Delete the DB at `path` (a minidb file or an lmdb directory) if there is one."""
    if canonical_db_type(db_type) == "lmdb" and os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.isfile(path):
        os.remove(path)


class DBReader:
    """An open DB read one record at a time from any thread (Caffe2's db::DBReader).

    `read()` returns the current (key, value) and moves on, back to the first record after
    the last. With `num_shards` > 1 the reader sees records shard_id, shard_id + num_shards,
    ... as Caffe2's sharded readers do.
    """

    def __init__(self, db_type: str, source: str, num_shards: int = 1, shard_id: int = 0):
        if num_shards < 1 or not 0 <= shard_id < num_shards:
            raise DBError(f"DB '{source}': shard_id {shard_id} must be in [0, num_shards) "
                          f"and num_shards {num_shards} >= 1")
        self.db_type, self.source = db_type, os.fspath(source)
        self.num_shards, self.shard_id = int(num_shards), int(shard_id)
        self._lock = threading.Lock()
        self.db = open_db(db_type, self.source, "read")
        self._cursor = self.db.cursor()
        try:
            self._to_beginning()
        except DBError:
            self.db.close()
            raise

    def _to_beginning(self) -> None:
        self._cursor.seek_to_first()
        for _ in range(self.shard_id):
            self._cursor.next()
            if not self._cursor.valid():
                raise _error(f"{self.db_type} '{self.source}' has fewer records than shard_id "
                             f"{self.shard_id}", self.source)

    def read(self) -> tuple[str, bytes]:
        """The next (key, value), wrapping to the first record at the end of the DB."""
        with self._lock:
            cur = self._cursor
            if not cur.valid():  # only an empty DB (a full pass wraps below)
                raise _error(f"{self.db_type} '{self.source}' is empty: there is no record "
                             "to read", self.source)
            record = cur.key(), cur.value()
            for _ in range(self.num_shards):
                cur.next()
                if not cur.valid():
                    self._to_beginning()
                    break
            return record

    def seek_to_first(self) -> None:
        with self._lock:
            self._to_beginning()

    def cursor(self) -> Cursor:
        """The reader's own cursor (not thread-safe: prefer `read()`)."""
        return self._cursor

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"<DBReader {self.db_type} {self.source!r}>"


# ----------------------------------------------------------------------------- Python DB API

class Mode(enum.Enum):
    """`workspace.C.Mode`: Caffe2's db::Mode as its Python binding named it."""
    read = "read"
    write = "write"
    new = "new"


class _PyCursor:
    """A cursor as Caffe2's binding showed it: key() and value() are bytes."""

    def __init__(self, cursor: Cursor):
        self._cursor = cursor

    def supports_seek(self) -> bool:
        return self._cursor.supports_seek()

    def seek_to_first(self) -> None:
        self._cursor.seek_to_first()

    def next(self) -> None:
        self._cursor.next()

    def key(self) -> bytes:
        return _encode(self._cursor.key())

    def value(self) -> bytes:
        return self._cursor.value()

    def valid(self) -> bool:
        return self._cursor.valid()


class _PyTransaction:
    def __init__(self, txn: Transaction):
        self._txn = txn

    def put(self, key, value) -> None:
        """`key`/`value` as str or bytes (Caffe2's binding took either as a std::string)."""
        key = _decode(key) if isinstance(key, bytes) else key
        self._txn.put(key, value.encode("utf-8") if isinstance(value, str) else value)

    def commit(self) -> None:
        self._txn.commit()


class PyDB:
    """`workspace.C.create_db(...)`'s DB: new_cursor(), new_transaction(), close()."""

    def __init__(self, db: DB):
        self.db = db

    def new_cursor(self) -> _PyCursor:
        return _PyCursor(self.db.cursor())

    def new_transaction(self) -> _PyTransaction:
        return _PyTransaction(self.db.transaction())

    def close(self) -> None:
        self.db.close()


def create_db(db_type: str, source: str, mode) -> PyDB:
    """`workspace.C.create_db(db_type, source, workspace.C.Mode.new)` as in Caffe2."""
    return PyDB(open_db(db_type, source, Mode(mode).value if isinstance(mode, str)
                        else mode.value))


def registered_dbs() -> list[str]:
    """`workspace.C.registered_dbs()`: every name the DB types go by."""
    return sorted(_ALIASES)
