"""Name and device scopes, as in `caffe2.python.scope`.

`NameScope("a")` makes blob names created by `core` start with "a/"; `DeviceScope(opt)`
gives new operators `opt` as their DeviceOption. Both nest, and both are per thread (model
builders running in several threads must not see each other's scopes).
"""
from __future__ import annotations

import contextlib
import threading

from c2compile.proto import caffe2_pb2

_NAMESCOPE_SEPARATOR = "/"

_state = threading.local()


def CurrentNameScope() -> str:
    """The current prefix, "" or ending with the separator (e.g. "a/b/")."""
    return getattr(_state, "namescope", "")


def CurrentDeviceScope():
    """The DeviceOption new operators get, or None outside any DeviceScope."""
    return getattr(_state, "devicescope", None)


@contextlib.contextmanager
def NameScope(prefix, reset: bool = False):
    """Append `prefix` + "/" to the name scope (or replace it with `reset=True`).

    An empty or None prefix adds nothing (with reset, it clears the scope).
    """
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"NameScope takes a string, got {type(prefix).__name__}: {prefix!r}")
    old = CurrentNameScope()
    added = prefix + _NAMESCOPE_SEPARATOR if prefix else ""
    _state.namescope = added if reset else old + added
    try:
        yield
    finally:
        if not _state.namescope.endswith(added):
            raise RuntimeError("the name scope was changed outside of a NameScope() block")
        _state.namescope = old


@contextlib.contextmanager
def DeviceScope(scope, node_name: str | None = None):
    """Run the block with `scope` (a DeviceOption) as the current device scope.

    A nested scope keeps the outer node_name unless it sets its own, and its extra_info is
    the union of both (sorted), as Caffe2 does.
    """
    new = caffe2_pb2.DeviceOption()
    if scope:
        if not isinstance(scope, caffe2_pb2.DeviceOption):
            raise TypeError("DeviceScope takes a caffe2_pb2.DeviceOption, got "
                            f"{type(scope).__name__}")
        new.CopyFrom(scope)
    elif not node_name:
        raise ValueError("DeviceScope needs a DeviceOption or a node_name")
    if node_name:
        new.node_name = node_name
    old = CurrentDeviceScope()
    if old is not None:
        if old.HasField("node_name") and not new.HasField("node_name"):
            new.node_name = old.node_name
        new.extra_info.extend(old.extra_info)
    new.extra_info.sort()
    _state.devicescope = new
    try:
        yield
    finally:
        if _state.devicescope != new:
            raise RuntimeError("the device scope was changed outside of a DeviceScope() block")
        _state.devicescope = old


@contextlib.contextmanager
def EmptyNameScope():
    """Run the block with no name scope at all."""
    old = CurrentNameScope()
    _state.namescope = ""
    try:
        yield
    finally:
        _state.namescope = old


@contextlib.contextmanager
def EmptyDeviceScope():
    """Run the block with no device scope, so ops keep the net's DeviceOption."""
    old = CurrentDeviceScope()
    _state.devicescope = None
    try:
        yield
    finally:
        _state.devicescope = old
