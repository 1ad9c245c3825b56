"""The process-wide registry of Python functions behind "Python" operators.

A "Python" op in a NetDef refers to its function by a string `token` argument (a function
cannot live in a protobuf). `core.Net.Python` / `core.CreatePythonOperator` register the
function here and put the token on the op; the op's reference (`c2compile/ops/python.py`)
looks it up when the op runs. Tokens follow Caffe2: the function's `__name__`, then
"name:1", "name:2", ... when that name is taken.

The other way to give the function is a pickled builder `(func, args, kwargs)` stored on the
op itself (`pickled_builder`), which survives serializing the NetDef; see `build_function`.
"""
from __future__ import annotations

import dataclasses
import pickle
import threading
from typing import Any, Callable


@dataclasses.dataclass
class PythonOpEntry:
    """What one token stands for."""
    f: Callable
    grad_f: Callable | None = None
    pass_workspace: bool = False


_registry: dict[str, PythonOpEntry] = {}
_name_counts: dict[str, int] = {}
_lock = threading.Lock()


def RegisterPythonOp(f: Callable, pass_workspace: bool = False, name: str = "") -> str:
    """Register `f(inputs, outputs[, workspace])`; returns its token."""
    if not callable(f):
        raise TypeError(f"a Python op needs a callable, got {type(f).__name__}")
    base = name or getattr(f, "__name__", None) or type(f).__name__
    with _lock:
        token = base
        while token in _registry:
            _name_counts[base] = _name_counts.get(base, 0) + 1
            token = f"{base}:{_name_counts[base]}"
        _registry[token] = PythonOpEntry(f, None, bool(pass_workspace))
    return token


def RegisterPythonGradientOp(token: str, grad_f: Callable) -> None:
    """Attach the gradient function `grad_f` to an already registered token."""
    if not callable(grad_f):
        raise TypeError(f"a Python gradient op needs a callable, got {type(grad_f).__name__}")
    GetPythonOp(token).grad_f = grad_f


def GetPythonOp(token: str) -> PythonOpEntry:
    try:
        return _registry[token]
    except KeyError:
        raise KeyError(f"no Python function is registered under token '{token}' (Python ops "
                       "only run in the process that created them, unless they use a "
                       "pickled builder)") from None


def HasPythonOp(token: str) -> bool:
    return token in _registry


def RegisterPythonImpl(f, grad_f=None, python_func_type=None, pass_workspace=False) -> str:
    """Register a forward function (and gradient) the ways Caffe2's core accepts them.

    `python_func_type(f)` builds an object whose `.forward`/`.backward` are used; a
    `(func, args, kwargs)` tuple for `f` or `grad_f` is called once, here, to build it.
    """
    if python_func_type:
        obj = python_func_type(f)
        f, grad_f = obj.forward, obj.backward
    else:
        if isinstance(f, tuple):
            f = f[0](*f[1], **f[2])
        if isinstance(grad_f, tuple):
            grad_f = grad_f[0](*grad_f[1], **grad_f[2])
    token = RegisterPythonOp(f, pass_workspace)
    if grad_f:
        RegisterPythonGradientOp(token, grad_f)
    return token


def pickle_builder(t: Any) -> bytes:
    """Caffe2's `pickled_builder` argument for a `(func, args, kwargs)` tuple, else b""."""
    if not isinstance(t, tuple):
        return b""
    if len(t) != 3:
        raise ValueError("a Python op builder is a tuple (func, args, kwargs)")
    func, args, kwargs = t
    return pickle.dumps((func, tuple(args), dict(kwargs)))


def build_function(pickled: bytes) -> Callable:
    """Call the pickled `(func, args, kwargs)` builder; returns the function it makes."""
    func, args, kwargs = pickle.loads(pickled)
    return func(*args, **kwargs)
