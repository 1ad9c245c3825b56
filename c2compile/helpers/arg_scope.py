"""`brew.arg_scope`: default keyword arguments for some helpers within a block.

    with brew.arg_scope([brew.conv, brew.fc], order="NHWC"):
        brew.conv(model, ...)            # order="NHWC" unless the call passes order=

Helpers are keyed by name (`helper.__name__`), scopes nest (inner values win) and are per
thread. Explicit keyword arguments of a call win over the scope.
"""
from __future__ import annotations

import contextlib
import copy
import threading

_threadlocal_scope = threading.local()


def get_current_scope() -> dict:
    """{helper name: {argument: value}} in force in this thread."""
    if not hasattr(_threadlocal_scope, "current_scope"):
        _threadlocal_scope.current_scope = {}
    return _threadlocal_scope.current_scope


@contextlib.contextmanager
def arg_scope(single_helper_or_list, **kwargs):
    if not isinstance(single_helper_or_list, list):
        if not callable(single_helper_or_list):
            raise AssertionError("arg_scope is only supporting single or a list of helper "
                                 "functions.")
        single_helper_or_list = [single_helper_or_list]
    if not all(callable(helper) for helper in single_helper_or_list):
        # checked before the scope changes: a rejected list must leave no entries behind
        raise AssertionError("arg_scope is only supporting a list of callable helper "
                             "functions.")
    old_scope = copy.deepcopy(get_current_scope())
    for helper in single_helper_or_list:
        _threadlocal_scope.current_scope.setdefault(helper.__name__, {}).update(kwargs)
    try:
        yield
    finally:  # Caffe2 left the scope in place when the block raised
        _threadlocal_scope.current_scope = old_scope
