"""The numpy reference executor: runs bound ops one by one with their numpy references.

It is the oracle every generated kernel is checked against, and it backs RunNet for nets (or
segments) that no backend compiles. Runs are transactional: every output goes into an
overlay over the workspace's blobs, and the overlay is committed only when the whole op list
succeeded, so a failing RunNet leaves the workspace as it was.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from c2compile.errors import BlobError, C2Error, OpError, UserFunctionError
from c2compile.ops.schema import UNCHANGED, BoundOp, TensorType


def _as_output(value):
    """numpy scalars and lists become arrays; other objects (DB cursors, ...) stay as they are."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (np.generic, int, float, bool, list, tuple)):
        return np.asarray(value)
    return value


def run_op(op: BoundOp, arrays: list, *, check_infer: bool = False) -> list:
    """Run one op's reference on its input values; returns one value per output.

    Any failure comes out as an OpError naming the op. With `check_infer` the op's shape
    rule is checked against what the reference produced (used by the op tests).
    """
    try:
        result = op.opdef.reference(op, *arrays)
    except OpError:
        raise
    except UserFunctionError as e:  # user code: its own exception, with a note naming the op
        e.original.add_note(f"raised in the Python function of {op.where}")
        raise e.original.with_traceback(e.original.__traceback__) from None
    except C2Error as e:
        raise op.error(OpError, str(e)) from e
    except (ValueError, TypeError, IndexError, ZeroDivisionError, FloatingPointError,
            np.linalg.LinAlgError) as e:
        raise op.error(OpError, f"{type(e).__name__}: {e} (inputs: "
                       f"{_describe(op.inputs, arrays)})") from e
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(outs) != op.num_outputs:
        raise op.error(OpError, f"reference returned {len(outs)} outputs for "
                       f"{op.num_outputs} output blobs (a bug in c2compile's {op.type})")
    outs = [_as_output(v) for v in outs]
    if check_infer:
        check_inferred(op, arrays, outs)
    return outs


def _describe(names: Iterable[str], values: Iterable) -> str:
    parts = []
    for n, v in zip(names, values):
        if isinstance(v, np.ndarray):
            parts.append(f"{n}{list(v.shape)}:{v.dtype}")
        else:
            parts.append(f"{n}:{type(v).__name__}")
    return ", ".join(parts)


def type_of(value) -> TensorType:
    if isinstance(value, np.ndarray):
        return TensorType(value.shape, value.dtype)
    return TensorType(None, None)


def check_inferred(op: BoundOp, arrays: list, outs: list) -> None:
    """The op's shape rule must predict exactly what its reference returned."""
    inferred = op.opdef.infer(op, *[type_of(a) for a in arrays])
    if len(inferred) != len(outs):
        raise AssertionError(f"{op}: infer gave {len(inferred)} types for {len(outs)} outputs")
    for name, t, v in zip(op.outputs, inferred, outs):
        if not isinstance(v, np.ndarray):
            continue
        if t.shape is not None and tuple(t.shape) != v.shape:
            raise AssertionError(f"{op}: infer says {name} has shape {t.shape}, "
                                 f"reference gave {v.shape}")
        if t.dtype is not None and np.dtype(t.dtype) != v.dtype:
            raise AssertionError(f"{op}: infer says {name} is {t.dtype}, reference gave {v.dtype}")


def fetch_inputs(op: BoundOp, blobs: Mapping[str, Any]) -> list:
    arrays = []
    for name in op.inputs:
        try:
            arrays.append(blobs[name])
        except KeyError:
            raise op.error(BlobError, f"input blob '{name}' does not exist in the workspace "
                           "(feed it, or run the net that produces it first)", blob=name) from None
    return arrays


def run_ops(ops: list[BoundOp], view) -> None:
    """Run `ops` in order; `view` (a runtime.blobs.RunView) collects their writes."""
    for op in ops:
        op.workspace = view
        outs = run_op(op, fetch_inputs(op, view.blobs))
        for name, value in zip(op.outputs, outs):
            if value is not UNCHANGED:
                view.blobs[name] = value
