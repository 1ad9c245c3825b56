"""Host-side utility ops: Print and Summarize (they write to the console or to files).

Neither has a gradient rule: Caffe2 registers both SHOULD_NOT_DO_GRADIENT, so a backward
pass that reaches one with a gradient is an error (Print has no output, so none can).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from c2compile.errors import ArgumentError, OpError
from c2compile.ops.schema import Arg, TensorType, op

_PRINT_LIMIT_DEFAULT = 1000  # Caffe2's TensorPrinter default; limit=0 means this

# numpy dtype -> the C++ type name Caffe2's TensorPrinter writes. Print takes the first
# group; the rest can only be printed when empty (Caffe2 prints an empty tensor's header
# before it dispatches on the type).
_PRINTABLE = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int32): "int",
    np.dtype(np.int64): "long int", np.dtype(np.bool_): "bool",
    np.dtype(np.uint8): "unsigned char", np.dtype(object): "std::basic_string<char>",
}
_OTHER_NAMES = {
    np.dtype(np.int8): "signed char", np.dtype(np.int16): "short int",
    np.dtype(np.uint16): "unsigned short", np.dtype(np.float16): "c10::Half",
}


def _state(ctx) -> dict:
    """Per-op state kept on the bound op across runs (run counter, file opened yet)."""
    return ctx.state.setdefault("utility", {"runs": 0, "opened": False})


def _write_line(ctx, path: str, line: bytes) -> None:
    """Append `line` to `path`; the op's first write truncates it, as Caffe2 opened it with
    trunc when the op was created and kept the stream open."""
    st = _state(ctx)
    try:
        with open(path, "ab" if st["opened"] else "wb") as f:
            f.write(line)
    except OSError as e:
        raise ctx.error(OpError, f"cannot write {path}: {e.strerror}") from None
    st["opened"] = True


# ----------------------------------------------------------------------------- Print

def _check_print_args(ctx) -> None:
    if ctx.args.every_n < 1:
        ctx.fail(f"every_n={ctx.args.every_n} must be >= 1", cls=ArgumentError)
    if ctx.args.limit < 0:
        ctx.fail(f"limit={ctx.args.limit} must be >= 0 (0: the default of "
                 f"{_PRINT_LIMIT_DEFAULT})", cls=ArgumentError)


def _check_printable(ctx, t: TensorType) -> None:
    if t.dtype is None or t.dtype in _PRINTABLE:
        return
    if t.shape is not None and t.size == 0:
        return
    ctx.fail(f"cannot print '{ctx.inputs[0]}' of dtype {t.dtype}; Print takes "
             f"float32, float64, int32, int64, bool, uint8 and string tensors",
             blob=ctx.inputs[0])


def _infer_print(ctx, x):
    _check_print_args(ctx)
    _check_printable(ctx, x)
    return []


def _format_value(v, dtype: np.dtype) -> bytes:
    """One element as C++'s ostream << writes it (6 significant digits for floats)."""
    if dtype.kind == "f":
        return (b"%g" % float(v))
    if dtype == np.bool_:
        return b"1" if v else b"0"
    if dtype == np.uint8:  # printed as a char
        return bytes([int(v)])
    if dtype == object:
        return v if isinstance(v, bytes) else str(v).encode("utf-8")
    return str(int(v)).encode()


def print_line(name: str, x: np.ndarray, limit: int = 0) -> bytes:
    """The line Caffe2's Print writes for tensor `x` named `name` (newline included):

    ``Tensor NAME of type TYPE. Dims: (D0,D1,): v0,v1,...`` with at most `limit` values.
    """
    dtype = x.dtype
    type_name = _PRINTABLE.get(dtype) or _OTHER_NAMES.get(dtype) or str(dtype)
    dims = "".join(f"{d}," for d in x.shape)
    head = f"Tensor {name} of type {type_name}. Dims: ({dims}): ".encode()
    if x.size == 0:
        return head + b"\n"
    n = min(x.size, limit or _PRINT_LIMIT_DEFAULT)
    flat = x.reshape(-1)[:n]
    return head + b",".join(_format_value(v, dtype) for v in flat) + b"\n"


@op("Print", inputs=1, outputs=0,
    args=[Arg("to_file", "int", 0, "nonzero: append to <root folder>/<blob>.log"),
          Arg("limit", "int", 0, "print at most this many values (0: 1000)"),
          Arg("every_n", "int", 1, "print on the 1st, (1+n)th, (1+2n)th... run")],
    infer=_infer_print, host_only=True, stateful=True)
def print_(ctx, x):
    """Print the blob: its name, C++ type, dims and values, to stdout or to a file."""
    _check_print_args(ctx)
    st = _state(ctx)
    run = st["runs"]
    st["runs"] += 1
    if run % ctx.args.every_n:
        return ()
    name = ctx.inputs[0]
    if not isinstance(x, np.ndarray):  # a DB reader or other host object
        sys.stdout.write(f"Blob of type: {type(x).__name__}\n")
        return ()
    _check_printable(ctx, TensorType(x.shape, x.dtype))
    line = print_line(name, x, ctx.args.limit)
    if ctx.args.to_file:
        _write_line(ctx, os.path.join(ctx.root_folder, name + ".log"), line)
    else:
        sys.stdout.write(line.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    return ()


# ----------------------------------------------------------------------------- Summarize

def _infer_summarize(ctx, x):
    if x.dtype is not None and x.dtype != np.dtype(np.float32):
        ctx.fail(f"input '{ctx.inputs[0]}' has dtype {x.dtype}; Summarize takes float32",
                 blob=ctx.inputs[0])
    if x.shape is not None and x.size == 0:
        ctx.fail(f"input '{ctx.inputs[0]}' is empty (shape {list(x.shape)}); there is "
                 "nothing to summarize", blob=ctx.inputs[0])
    return [TensorType((4,), np.float32)] * ctx.num_outputs


def summary(x: np.ndarray) -> np.ndarray:
    """[min, max, mean, std] as float32; std is the sample one (divides by N - 1), 0 for N=1."""
    x64 = x.astype(np.float64).reshape(-1)
    n = x64.size
    mean = x64.sum() / n
    std = 0.0 if n == 1 else float(np.sqrt(((x64 - mean) ** 2).sum() / (n - 1)))
    return np.array([x64.min(), x64.max(), mean, std], dtype=np.float32)


@op("Summarize", inputs=1, outputs=(0, 1),
    args=[Arg("to_file", "int", 0, "nonzero: append to <root folder>/<blob>.summary "
              "('/' in the name becomes '#')")],
    infer=_infer_summarize, host_only=True, stateful=True)
def summarize(ctx, x):
    """min, max, mean and sample standard deviation of a float32 tensor, as a 1-D tensor of
    4 values and/or a line "min max mean std" in a file."""
    _infer_summarize(ctx, TensorType(np.shape(x), getattr(x, "dtype", None)))
    stats = summary(x)
    if ctx.args.to_file:
        name = ctx.inputs[0].replace("/", "#")
        line = b" ".join(b"%g" % float(v) for v in stats) + b"\n"
        _write_line(ctx, os.path.join(ctx.root_folder, name + ".summary"), line)
    return (stats,)[:ctx.num_outputs]
