"""Data sets as Caffe2's tutorials read them: MNIST from its IDX files (or scikit-learn's
bundled digits) written to DBs of TensorProtos, as Caffe2's `make_mnist_db` tool wrote them.

    c2compile data mnist --idx DIR --out DIR [--db-type lmdb|minidb] [--limit N]
    c2compile data mnist --digits --out DIR

writes OUT/mnist-train-nchw-<db_type> and OUT/mnist-test-nchw-<db_type>, the DBs the MNIST
tutorial reads with TensorProtosDBInput. Each record is keyed by its index ("%08d") and holds
a TensorProtos of two tensors: the image, BYTE (uint8 in byte_data) of dims [1, 28, 28]
(make_mnist_db's --channel_first layout), and the label, an INT32 scalar (no dims).
"""
from __future__ import annotations

import gzip
import os
import pathlib
import sys
import time
import zlib

import numpy as np

from c2compile.errors import C2Error

# make_mnist_db commits every 1000 records
COMMIT_EVERY = 1000
_IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one MNIST uses
# (file stem, IDX dims) of MNIST's four files, in load order
MNIST_FILES = (("train-images-idx3-ubyte", 3), ("train-labels-idx1-ubyte", 1),
               ("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 1))


class IDXError(C2Error, ValueError):
    """An IDX file that is missing, not IDX, or truncated (the message names the file)."""


# ----------------------------------------------------------------------------- IDX

def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format; gzipped or not) as a uint8 array.

    IDX: two zero bytes, the type code (0x08: unsigned byte), the number of dims, one
    big-endian uint32 per dim, then the data. `ndim` checks the number of dims.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise IDXError(f"cannot read IDX file {path}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip's magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise IDXError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'missing'}; IDX "
                       "starts 0000, then the type and the number of dims)")
    if raw[2] != _IDX_UBYTE:
        raise IDXError(f"{path}: IDX type 0x{raw[2]:02x}; MNIST's files hold unsigned bytes "
                       "(0x08)")
    n = raw[3]
    if ndim is not None and n != ndim:
        raise IDXError(f"{path}: an IDX file of {n} dims, expected {ndim}")
    if len(raw) < 4 + 4 * n:
        raise IDXError(f"{path}: truncated: the header needs {4 + 4 * n} bytes, the file "
                       f"has {len(raw)}")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", count=n, offset=4)]
    size = int(np.prod(dims, dtype=np.int64))
    have = len(raw) - 4 - 4 * n
    if have != size:
        what = "truncated" if have < size else "too long"
        raise IDXError(f"{path}: {what}: the header says {'x'.join(map(str, dims))} = {size} "
                       f"bytes of data, the file holds {have}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * n).reshape(dims)


def find_idx(folder, stem: str) -> pathlib.Path:
    """`folder/stem`, or `folder/stem.gz`."""
    folder = pathlib.Path(folder)
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise IDXError(f"{folder}: no {stem} (or {stem}.gz); MNIST's IDX files are "
                   f"{', '.join(s for s, _ in MNIST_FILES)}")


def load_mnist(folder):
    """(train images, train labels, test images, test labels) from MNIST's IDX files in
    `folder`: images uint8 of shape (N, 1, 28, 28), labels int32 of shape (N,)."""
    arrays = [read_idx(find_idx(folder, stem), ndim) for stem, ndim in MNIST_FILES]
    for (stem, _), images, labels in ((MNIST_FILES[0], arrays[0], arrays[1]),
                                      (MNIST_FILES[2], arrays[2], arrays[3])):
        if len(images) != len(labels):
            raise IDXError(f"{folder}: {stem} holds {len(images)} images but its labels "
                           f"file {len(labels)} labels")
    train_x, train_y, test_x, test_y = arrays
    return (train_x[:, None], train_y.astype(np.int32), test_x[:, None],
            test_y.astype(np.int32))


def load_digits():
    """scikit-learn's bundled 8x8 digits (1797) as MNIST-like data: upscaled to 20x20 and
    centred in 28x28 as MNIST's digits are, uint8 (N, 1, 28, 28) with int32 labels, shuffled
    (seed 0) and split 80/20 into (train images, train labels, test images, test labels)."""
    from scipy import ndimage
    from sklearn.datasets import load_digits as sk_digits
    digits = sk_digits()
    images = digits.images / 16.0                        # 0..1
    big = ndimage.zoom(images, (1, 20 / 8, 20 / 8), order=1)  # 20x20, like MNIST's digits
    padded = np.zeros((len(big), 1, 28, 28))
    padded[:, 0, 4:24, 4:24] = np.clip(big, 0, 1)
    data = np.round(padded * 255).astype(np.uint8)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(data))
    data, labels = data[order], labels[order]
    cut = int(0.8 * len(data))
    return data[:cut], labels[:cut], data[cut:], labels[cut:]


# ----------------------------------------------------------------------------- DB records

def mnist_record(image: np.ndarray, label: int) -> bytes:
    """One record as make_mnist_db wrote it: TensorProtos [image BYTE [1, 28, 28] in
    byte_data, label INT32 scalar]."""
    from c2compile.proto import caffe2_pb2
    protos = caffe2_pb2.TensorProtos()
    data, lab = protos.protos.add(), protos.protos.add()
    data.data_type = caffe2_pb2.TensorProto.BYTE
    data.dims.extend(image.shape)
    data.byte_data = np.ascontiguousarray(image, np.uint8).tobytes()
    lab.data_type = caffe2_pb2.TensorProto.INT32
    lab.int32_data.append(int(label))
    return protos.SerializeToString()


class Progress:
    """A count-of-total bar on stderr: redrawn in place on a terminal (at most 10 times a
    second), one line when done otherwise; silent when `show` is False."""

    def __init__(self, label: str, total: int, show: bool = True, stream=None):
        self.label, self.total, self.show = label, total, show
        self.stream = stream or sys.stderr
        self.done, self._last = 0, 0.0
        try:
            self._tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False

    def _line(self) -> str:
        width = 30
        filled = width * self.done // max(self.total, 1)
        return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total}")

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.show and self._tty and now - self._last >= 0.1:
            self._last = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self) -> None:
        if self.show:
            self.stream.write(("\r" if self._tty else "") + self._line() + "\n")
            self.stream.flush()


def write_records(db_type: str, path, images: np.ndarray, labels: np.ndarray,
                  progress: bool = True) -> int:
    """Write `images`/`labels` as MNIST records to a new DB at `path`; returns the count.

    Keys are the zero-padded indices ("%08d"), so lmdb's key order is the data's order.
    """
    from c2compile.runtime.db import open_db
    path = os.fspath(path)
    bar = Progress(f"writing {os.path.basename(path)}", len(images), progress)
    with open_db(db_type, path, "new") as db:
        txn = db.transaction()
        for i, (image, label) in enumerate(zip(images, labels)):
            txn.put(f"{i:08d}", mnist_record(image, label))
            if (i + 1) % COMMIT_EVERY == 0:
                txn.commit()
                bar.update(COMMIT_EVERY)
        txn.commit()
    bar.update(len(images) - bar.done)
    bar.close()
    return len(images)


def make_mnist_dbs(out, *, idx=None, digits: bool = False, db_type: str = "lmdb",
                   limit: int | None = None, progress: bool = True) -> dict[str, str]:
    """Write OUT/mnist-{train,test}-nchw-<db_type> from IDX files in `idx` or from the digits.

    `limit` keeps at most that many records of each split (make_mnist_db's --data_limit).
    Returns {"train": path, "test": path}.
    """
    from c2compile.runtime.db import canonical_db_type
    db_type = canonical_db_type(db_type)
    if (idx is None) == (not digits):
        raise C2Error("give either an IDX folder or digits=True")
    if limit is not None and limit < 1:
        raise C2Error(f"limit={limit} must be >= 1")
    train_x, train_y, test_x, test_y = load_mnist(idx) if idx is not None else load_digits()
    os.makedirs(out, exist_ok=True)
    paths = {}
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        path = os.path.join(out, f"mnist-{split}-nchw-{db_type}")
        write_records(db_type, path, x[:limit], y[:limit], progress)
        paths[split] = path
    return paths
