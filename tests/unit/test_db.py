"""runtime/db.py: the minidb and lmdb backends, DBReader, and Caffe2's Python DB API.

Pinned from Caffe2 1.x (caffe2/core/db.{h,cc}, caffe2/db/lmdb.cc) and from files written by
the PyTorch 1.10.2 build of Caffe2 (`workspace.C.create_db`): a minidb record is int32 key
length, int32 value length (little-endian), key, value; NEW truncates, WRITE appends;
DBReader wraps to the first record and reads every num_shards-th record from shard_id.
"""
import gc
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from c2compile.errors import DBError, UnsupportedError
from c2compile.runtime.db import (
    DB_TYPES, LMDB_MAP_SIZE, DBReader, Mode, create_db, db_exists, open_db, registered_dbs,
    remove_db)

SOME = settings(max_examples=25, deadline=None)

# Written by Caffe2 1.10.2: create_db("minidb", path, Mode.new), then put("key1",
# b"\x00\x01value") and put("k\xe9", b"v2") (the key str goes to utf-8).
CAFFE2_MINIDB = (b"\x04\x00\x00\x00\x07\x00\x00\x00key1\x00\x01value"
                 b"\x03\x00\x00\x00\x02\x00\x00\x00k\xc3\xa9v2")


def write(db_type, path, records, mode="new"):
    with open_db(db_type, path, mode) as db:
        txn = db.transaction()
        for k, v in records:
            txn.put(k, v)
        txn.commit()


def read_all(db_type, path):
    with open_db(db_type, path, "read") as db:
        return list(db.cursor())


def path_for(tmp, db_type, name="db"):
    return os.path.join(tmp, f"{name}.{db_type}")


def expected_order(db_type, records):
    """minidb keeps every record in write order; lmdb keeps the last value of each key, in
    key (byte) order."""
    if db_type == "minidb":
        return list(records)
    last = dict(records)
    return sorted(last.items(), key=lambda kv: kv[0].encode("utf-8", "surrogateescape"))


# ----------------------------------------------------------------------------- round trips

keys = st.text(min_size=1, max_size=40).filter(
    lambda k: 0 < len(k.encode("utf-8", "surrogateescape")) <= 511)  # LMDB's key limit
values = st.binary(min_size=1, max_size=3000)


@pytest.mark.parametrize("db_type", DB_TYPES)
@SOME
@given(records=st.lists(st.tuples(keys, values), max_size=20))
def test_round_trip(db_type, records):
    with tempfile.TemporaryDirectory() as tmp:
        path = path_for(tmp, db_type)
        write(db_type, path, records)
        assert read_all(db_type, path) == expected_order(db_type, records)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_non_utf8_keys_survive(tmp_path, db_type):
    key = b"\xff\xfe-raw".decode("utf-8", "surrogateescape")
    path = path_for(tmp_path, db_type)
    write(db_type, path, [(key, b"v")])
    assert read_all(db_type, path) == [(key, b"v")]


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_large_value(tmp_path, db_type):
    big = os.urandom(5 << 20)
    path = path_for(tmp_path, db_type)
    write(db_type, path, [("big", big), ("small", b"s")])
    assert dict(read_all(db_type, path)) == {"big": big, "small": b"s"}


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_empty_db(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    open_db(db_type, path, "new").close()
    assert db_exists(db_type, path)
    with open_db(db_type, path, "read") as db:
        cur = db.cursor()
        assert not cur.valid()
        assert list(cur) == []
        with pytest.raises(DBError, match="past the last record"):
            cur.key()
    reader = DBReader(db_type, path)
    with pytest.raises(DBError, match=f"'{path}' is empty"):
        reader.read()
    reader.close()


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_write_appends_and_new_truncates(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    write(db_type, path, [("b", b"1"), ("a", b"2")])
    write(db_type, path, [("c", b"3")], mode="write")
    assert read_all(db_type, path) == expected_order(
        db_type, [("b", b"1"), ("a", b"2"), ("c", b"3")])
    # NEW: a fresh empty DB. (Caffe2's lmdb refused an existing directory: mkdir failed.)
    write(db_type, path, [("z", b"9")], mode="new")
    assert read_all(db_type, path) == [("z", b"9")]


def test_minidb_write_creates_missing_file(tmp_path):
    path = path_for(tmp_path, "minidb")  # Caffe2 fopen(.., "ab") creates it
    write("minidb", path, [("k", b"v")], mode="write")
    assert read_all("minidb", path) == [("k", b"v")]


def test_lmdb_write_needs_existing_db(tmp_path):
    path = path_for(tmp_path, "lmdb")  # Caffe2 mkdir()s only for NEW
    with pytest.raises(DBError, match=f"lmdb '{path}' for write: does not exist"):
        open_db("lmdb", path, "write")


def test_lmdb_new_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DBError, match="not LMDB's"):
        open_db("lmdb", str(tmp_path), "new")
    assert (tmp_path / "mine.txt").exists()


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_close_commits_open_transaction(tmp_path, db_type):
    # Caffe2's Transaction destructor commits what was put.
    path = path_for(tmp_path, db_type)
    db = open_db(db_type, path, "new")
    db.transaction().put("k", b"v")
    db.close()
    assert read_all(db_type, path) == [("k", b"v")]


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_transaction_context_aborts_on_error(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    with open_db(db_type, path, "new") as db:
        with db.transaction() as txn:
            txn.put("kept", b"1")
        with pytest.raises(RuntimeError):
            with db.transaction() as txn:
                txn.put("dropped", b"2")
                raise RuntimeError("boom")
    assert read_all(db_type, path) == [("kept", b"1")]


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_cursor_seek_to_first_and_iteration(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    recs = [(f"{i:03d}", bytes([i + 1])) for i in range(4)]
    write(db_type, path, recs)
    with open_db(db_type, path) as db:
        cur = db.cursor()
        assert list(cur) == recs and not cur.valid()
        cur.seek_to_first()
        assert cur.valid() and cur.key() == "000" and cur.value() == b"\x01"
        cur.next()
        assert cur.key() == "001"
        if cur.supports_seek():  # lmdb: the first key >= the one given
            cur.seek("0015")
            assert cur.key() == "002"
        else:
            with pytest.raises(DBError, match="cannot seek"):
                cur.seek("002")


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_closed_db(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    write(db_type, path, [("k", b"v")])
    db = open_db(db_type, path)
    cur = db.cursor()
    db.close()
    db.close()  # twice is fine
    with pytest.raises(DBError, match="closed"):
        cur.next()
    with pytest.raises(DBError, match="closed"):
        db.cursor()


# ----------------------------------------------------------------------------- minidb bytes

def test_minidb_bytes_by_hand(tmp_path):
    path = path_for(tmp_path, "minidb")
    write("minidb", path, [("ab", b"xyz"), ("\u00e9", b"\x00")])
    want = (struct.pack("<ii", 2, 3) + b"ab" + b"xyz"
            + struct.pack("<ii", 2, 1) + "\u00e9".encode() + b"\x00")
    assert open(path, "rb").read() == want


def test_minidb_matches_file_written_by_caffe2(tmp_path):
    path = path_for(tmp_path, "minidb")
    write("minidb", path, [("key1", b"\x00\x01value"), ("k\u00e9", b"v2")])
    assert open(path, "rb").read() == CAFFE2_MINIDB
    theirs = tmp_path / "caffe2.minidb"
    theirs.write_bytes(CAFFE2_MINIDB)
    assert read_all("minidb", str(theirs)) == [("key1", b"\x00\x01value"), ("k\u00e9", b"v2")]


def test_minidb_truncated_at_every_byte(tmp_path):
    path = str(tmp_path / "cut.minidb")
    boundaries = {0, 19}  # record starts: a cut there is a shorter, valid DB
    for cut in range(len(CAFFE2_MINIDB)):
        with open(path, "wb") as f:
            f.write(CAFFE2_MINIDB[:cut])
        if cut in boundaries:
            assert len(read_all("minidb", path)) == (0 if cut == 0 else 1)
            continue
        with pytest.raises(DBError) as e:
            read_all("minidb", path)
        msg = str(e.value)
        assert f"minidb '{path}' is truncated" in msg
        assert f"offset {0 if cut < 19 else 19}" in msg
        if cut >= 19 + 8 + 3:  # the second record's key is whole: it is named
            assert "key 'k\u00e9'" in msg and e.value.key == "k\u00e9"
        assert e.value.path == path


def test_minidb_negative_length_is_corrupt(tmp_path):
    path = tmp_path / "bad.minidb"
    path.write_bytes(struct.pack("<ii", 1, -5) + b"k")
    with pytest.raises(DBError, match="corrupt.*offset 0.*value length -5"):
        read_all("minidb", str(path))


def test_minidb_wrong_length_reads_no_more_than_the_file(tmp_path):
    # A length far beyond the file is reported, never allocated.
    path = tmp_path / "long.minidb"
    path.write_bytes(struct.pack("<ii", 3, 2_000_000_000) + b"key" + b"short")
    with pytest.raises(DBError, match="offset 0 \\(key 'key'\\) needs 2000000000 value bytes, "
                                      "the file has 5"):
        read_all("minidb", str(path))


def test_minidb_refuses_empty_key_or_value(tmp_path):
    # Caffe2's minidb reader enforces lengths > 0: such a record could not be read back.
    with open_db("minidb", str(tmp_path / "e.minidb"), "new") as db:
        txn = db.transaction()
        with pytest.raises(DBError, match="empty value"):
            txn.put("k", b"")
        with pytest.raises(DBError, match="empty key"):
            txn.put("", b"v")


def test_lmdb_keeps_empty_values(tmp_path):
    path = path_for(tmp_path, "lmdb")
    write("lmdb", path, [("k", b"")])
    assert read_all("lmdb", path) == [("k", b"")]


def test_minidb_cursor_and_transaction_need_the_right_mode(tmp_path):
    path = path_for(tmp_path, "minidb")
    with open_db("minidb", path, "new") as db:
        with pytest.raises(DBError, match="open it with mode 'read'"):
            db.cursor()
    with open_db("minidb", path, "read") as db:
        with pytest.raises(DBError, match="opened for reading"):
            db.transaction()


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_missing_db(tmp_path, db_type):
    path = str(tmp_path / "nope")
    with pytest.raises(DBError, match=f"{db_type} '{path}'") as e:
        open_db(db_type, path, "read")
    assert e.value.path == path
    assert not db_exists(db_type, path)
    with pytest.raises(DBError, match="nope"):
        DBReader(db_type, path)


def test_wrong_kind_of_path(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(DBError, match="is a directory"):
        open_db("minidb", str(d))
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(DBError, match="not a directory"):
        open_db("lmdb", str(f))
    with pytest.raises(DBError, match=str(d)):  # a directory that holds no LMDB
        open_db("lmdb", str(d))


def test_unknown_and_unsupported_types(tmp_path):
    for name in ("leveldb", "rocksdb", "LevelDB"):
        with pytest.raises(UnsupportedError, match=f"'{name}'.*c2compile has: minidb, lmdb"):
            open_db(name, str(tmp_path / "x"))
    with pytest.raises(DBError, match="unknown db_type 'foo'; c2compile has: minidb, lmdb"):
        open_db("foo", str(tmp_path / "x"))
    # Caffe2's DBExists answered true for a type it did not know; c2compile says so.
    with pytest.raises(DBError, match="unknown db_type ''"):
        db_exists("", str(tmp_path / "x"))
    with pytest.raises(DBError, match="mode 'append'"):
        open_db("minidb", str(tmp_path / "x"), "append")


def test_capitalised_names_are_aliases(tmp_path):
    path = path_for(tmp_path, "minidb")
    write("MiniDB", path, [("k", b"v")])
    assert read_all("minidb", path) == [("k", b"v")]
    path = path_for(tmp_path, "lmdb")
    write("LMDB", path, [("k", b"v")])
    assert db_exists("lmdb", path)


# ----------------------------------------------------------------------------- DBReader

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_reader_wraps_around(tmp_path, db_type):
    path = path_for(tmp_path, db_type)
    write(db_type, path, [(f"{i}", bytes([i])) for i in range(3)])
    reader = DBReader(db_type, path)
    assert (reader.db_type, reader.source) == (db_type, path)
    assert [reader.read() for _ in range(7)] == [(f"{i % 3}", bytes([i % 3])) for i in range(7)]
    reader.seek_to_first()
    assert reader.read()[0] == "0"
    reader.close()


@pytest.mark.parametrize("shards,shard_id,want", [
    (2, 0, "0240240"), (2, 1, "1351351"), (3, 2, "2525252"), (5, 4, "4444444")])
def test_reader_shards(tmp_path, shards, shard_id, want):
    # db::DBReader::Read skips num_shards records, starting over at shard_id at the end
    # (the sequences Caffe2 1.10.2 read through TensorProtosDBInput, batch_size=7).
    path = path_for(tmp_path, "minidb")
    write("minidb", path, [(f"{i}", b"v") for i in range(6)])
    reader = DBReader("minidb", path, shards, shard_id)
    assert "".join(reader.read()[0] for _ in range(7)) == want


def test_reader_shard_beyond_the_db(tmp_path):
    path = path_for(tmp_path, "minidb")
    write("minidb", path, [("0", b"v")])
    with pytest.raises(DBError, match="fewer records than shard_id 3"):
        DBReader("minidb", path, 4, 3)
    with pytest.raises(DBError, match="shard_id 2 must be in"):
        DBReader("minidb", path, 2, 2)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_reader_is_thread_safe(tmp_path, db_type):
    n_records, n_threads, per_thread = 7, 8, 70
    path = path_for(tmp_path, db_type)
    write(db_type, path, [(f"{i:02d}", f"value-{i:02d}".encode() * 50)
                          for i in range(n_records)])
    reader = DBReader(db_type, path)
    got, errors = [], []

    def work():
        try:
            mine = [reader.read() for _ in range(per_thread)]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            return
        got.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # No record torn (key and value from one record), every record handed out equally often.
    assert all(v == f"value-{k}".encode() * 50 for k, v in got)
    counts = Counter(k for k, _ in got)
    assert set(counts.values()) == {n_threads * per_thread // n_records}


def test_readers_share_one_lmdb(tmp_path):
    path = path_for(tmp_path, "lmdb")
    write("lmdb", path, [("a", b"1"), ("b", b"2")])
    r1, r2 = DBReader("lmdb", path), DBReader("lmdb", path)
    assert db_exists("lmdb", path)
    assert [r1.read()[0], r1.read()[0], r2.read()[0]] == ["a", "b", "a"]
    with pytest.raises(DBError, match="open in this process"):
        open_db("lmdb", path, "new")
    r1.close()
    del r2  # an unclosed reader let go frees the environment
    gc.collect()
    write("lmdb", path, [("c", b"3")])
    assert read_all("lmdb", path) == [("c", b"3")]


def test_lmdb_map_size_is_caffe2s():
    assert LMDB_MAP_SIZE == 1099511627776  # caffe2/db/lmdb.cc: 1 TB


def test_remove_db(tmp_path):
    for db_type in DB_TYPES:
        path = path_for(tmp_path, db_type)
        write(db_type, path, [("k", b"v")])
        remove_db(db_type, path)
        assert not os.path.exists(path)
        remove_db(db_type, path)  # nothing there: fine


# ----------------------------------------------------------------------------- workspace.C

def test_caffe2_python_db_api(tmp_path):
    path = str(tmp_path / "py.minidb")
    db = create_db("minidb", path, Mode.new)
    txn = db.new_transaction()
    txn.put("key1", b"\x00\x01value")
    txn.put(b"k\xc3\xa9", b"v2")
    txn.commit()
    db.close()
    assert open(path, "rb").read() == CAFFE2_MINIDB
    cur = create_db("minidb", path, Mode.read).new_cursor()
    seen = []
    while cur.valid():
        seen.append((cur.key(), cur.value()))
        cur.next()
    assert seen == [(b"key1", b"\x00\x01value"), (b"k\xc3\xa9", b"v2")]  # bytes, as Caffe2
    assert not cur.supports_seek()
    assert {"minidb", "MiniDB", "lmdb", "LMDB"} <= set(registered_dbs())


def test_workspace_C_has_the_db_api(tmp_path):
    # In a subprocess, as tests/unit/test_compat.py does: this process never sees `caffe2`.
    code = textwrap.dedent(f"""
        import c2compile.compat
        from caffe2.python import workspace
        C = workspace.C
        db = C.create_db("lmdb", {str(tmp_path / "x.lmdb")!r}, C.Mode.new)
        txn = db.new_transaction()
        txn.put("k", b"v")
        txn.commit()
        db.close()
        assert "lmdb" in C.registered_dbs()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_all("lmdb", str(tmp_path / "x.lmdb")) == [("k", b"v")]

