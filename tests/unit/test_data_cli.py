"""`c2compile data mnist`: IDX parsing and the MNIST DBs in make_mnist_db's layout.

Pinned from Caffe2's caffe2/binaries/make_mnist_db.cc (--channel_first): keys "%08d", each
record a TensorProtos of the image (BYTE, dims [1, rows, cols], pixels in byte_data) and the
label (INT32, no dims, int32_data); the record bytes equal what Caffe2 1.10.2's protobuf
serializes for the same TensorProtos, and Caffe2 1.10.2 read a minidb written by this tool
to the same batches as c2compile.
"""
import gzip
import struct

import numpy as np
import pytest

from c2compile.cli import main
from c2compile.data import IDXError, load_digits, mnist_record, read_idx
from c2compile.proto import caffe2_pb2
from c2compile.runtime.db import DB_TYPES, open_db

# Caffe2 1.10.2: TensorProtos(protos=[BYTE dims [1,2,2] byte_data 01020304, INT32 [7]])
CAFFE2_RECORD = (b'\n\x0e\x08\x01\x08\x02\x08\x02\x10\x03*\x04\x01\x02\x03\x04'
                 b'\n\x05\x10\x02"\x01\x07')


def idx_bytes(array: np.ndarray) -> bytes:
    return (bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(np.uint8).tobytes())


def write_mnist(folder, n_train=3, n_test=2, gz=False):
    rng = np.random.default_rng(0)
    parts = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    folder.mkdir(exist_ok=True)
    for name, arr in parts.items():
        data = idx_bytes(arr)
        if gz and "images" in name:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return parts


def read_records(db_type, path):
    out = []
    with open_db(db_type, path) as db:
        for key, value in db.cursor():
            protos = caffe2_pb2.TensorProtos()
            protos.ParseFromString(value)
            image, label = protos.protos
            assert image.data_type == caffe2_pb2.TensorProto.BYTE
            assert label.data_type == caffe2_pb2.TensorProto.INT32 and list(label.dims) == []
            out.append((key, np.frombuffer(image.byte_data, np.uint8).reshape(image.dims),
                        label.int32_data[0]))
    return out


def test_record_bytes_are_caffe2s():
    assert mnist_record(np.array([[[1, 2], [3, 4]]], np.uint8), 7) == CAFFE2_RECORD


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_mnist_from_idx(tmp_path, db_type, capsys):
    parts = write_mnist(tmp_path / "idx", gz=True)
    out = tmp_path / "out"
    assert main(["data", "mnist", "--idx", str(tmp_path / "idx"), "--out", str(out),
                 "--db-type", db_type]) == 0
    printed = capsys.readouterr()
    assert f"mnist-train-nchw-{db_type}" in printed.out
    assert "writing mnist-train-nchw" in printed.err and "3/3" in printed.err  # progress
    for split, n in (("train", 3), ("t10k", 2)):
        name = "train" if split == "train" else "test"
        recs = read_records(db_type, str(out / f"mnist-{name}-nchw-{db_type}"))
        assert [k for k, _, _ in recs] == [f"{i:08d}" for i in range(n)]
        for i, (_, image, label) in enumerate(recs):
            assert image.shape == (1, 28, 28)
            np.testing.assert_array_equal(image[0], parts[f"{split}-images-idx3-ubyte"][i])
            assert label == parts[f"{split}-labels-idx1-ubyte"][i]


def test_mnist_from_digits_reads_through_the_net(tmp_path):
    out = tmp_path / "out"
    assert main(["data", "mnist", "--digits", "--out", str(out), "--limit", "10",
                 "--quiet"]) == 0
    _, _, test_x, test_y = load_digits()
    from c2compile import core, workspace
    workspace.ResetWorkspace(str(tmp_path))
    init, net = core.Net("init"), core.Net("read")
    reader = init.CreateDB([], "reader", db=str(out / "mnist-test-nchw-lmdb"), db_type="lmdb")
    net.TensorProtosDBInput([reader], ["data_uint8", "label"], batch_size=4)
    workspace.RunNetOnce(init)
    workspace.CreateNet(net)
    for start in (0, 4, 8):
        workspace.RunNet(net.Proto().name)
        idx = [(start + j) % 10 for j in range(4)]  # 10 records: the third batch wraps
        np.testing.assert_array_equal(workspace.FetchBlob("data_uint8"), test_x[idx])
        np.testing.assert_array_equal(workspace.FetchBlob("label"), test_y[idx])
    assert workspace.FetchBlob("label").dtype == np.int32
    assert len(read_records("lmdb", str(out / "mnist-train-nchw-lmdb"))) == 10
    workspace.ResetWorkspace()


def test_digits_split():
    train_x, train_y, test_x, test_y = load_digits()
    assert train_x.shape == (1437, 1, 28, 28) and test_x.shape == (360, 1, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int32
    assert train_x[:, :, :4].max() == 0  # centred in 28x28 as MNIST's digits


# ----------------------------------------------------------------------------- bad IDX

def test_read_idx(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a", 3), arr)
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), arr)


@pytest.mark.parametrize("content,message", [
    (b"", "not an IDX file"),
    (b"\x12\x34\x08\x03", "not an IDX file"),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"abcd", "IDX type 0x0d"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated: the header needs 16 bytes"),
    (idx_bytes(np.zeros((2, 3, 4)))[:-5], r"truncated: the header says 2x3x4 = 24 bytes of "
                                          r"data, the file holds 19"),
    (idx_bytes(np.zeros((2, 3, 4))) + b"x", "too long"),
    (idx_bytes(np.zeros(5)), "an IDX file of 1 dims, expected 3"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt gzip data"),
])
def test_bad_idx(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(IDXError, match=message) as e:
        read_idx(path, 3)
    assert str(path) in str(e.value)


def test_cli_reports_bad_idx(tmp_path, capsys):
    write_mnist(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x05ab")
    assert main(["data", "mnist", "--idx", str(tmp_path / "idx"), "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "c2compile data: error:" in err and "t10k-labels-idx1-ubyte: truncated" in err


def test_cli_reports_missing_and_mismatched_files(tmp_path, capsys):
    write_mnist(tmp_path / "idx")
    (tmp_path / "idx" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4)))
    assert main(["data", "mnist", "--idx", str(tmp_path / "idx"), "--out",
                 str(tmp_path / "out")]) == 1
    assert "holds 3 images but its labels file 4 labels" in capsys.readouterr().err
    (tmp_path / "idx" / "train-labels-idx1-ubyte").unlink()
    assert main(["data", "mnist", "--idx", str(tmp_path / "idx"), "--out",
                 str(tmp_path / "out")]) == 1
    assert "no train-labels-idx1-ubyte (or train-labels-idx1-ubyte.gz)" in \
        capsys.readouterr().err


def test_cli_needs_a_source(tmp_path):
    with pytest.raises(SystemExit):
        main(["data", "mnist", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["data", "mnist", "--digits", "--idx", str(tmp_path), "--out", str(tmp_path)])
