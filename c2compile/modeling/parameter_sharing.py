"""Name scopes that share parameters: Caffe2's `modeling.parameter_sharing`.

    with ParameterSharing({"scope_b": "scope_a"}):
        with NameScope("scope_b"):
            brew.fc(model, ...)      # creates/uses scope_a/fc_w, not scope_b/fc_w

Overrides nest and chain: each step replaces the longest overridden prefix of the current
name scope, until no override applies.
"""
from __future__ import annotations

import contextlib
import logging

from c2compile import scope
from c2compile.modeling.overrides import OverrideStack

logger = logging.getLogger(__name__)

_SEP = scope._NAMESCOPE_SEPARATOR


class ParameterSharingContext:
    def __init__(self):
        self._overrides = OverrideStack()  # {scope: the scope it shares parameters with}

    def _resolve_scope_overrides(self, candidate_scope: str) -> str:
        overrides = self._overrides.merged
        best_scope, best_idx = candidate_scope, 0
        sub_scopes = candidate_scope.split(_SEP)
        prefix = ""
        for idx, sub in enumerate(sub_scopes):
            prefix += sub + _SEP
            if prefix in overrides:
                best_scope, best_idx = overrides[prefix], idx
        if best_scope == candidate_scope:
            return candidate_scope
        return (self._resolve_scope_overrides(best_scope)
                + _SEP.join(sub_scopes[best_idx + 1:]))

    def get_parameter_name(self, name: str) -> str:
        """`name` in the current name scope, after the sharing overrides."""
        candidate = scope.CurrentNameScope()
        best = self._resolve_scope_overrides(candidate)
        if best != candidate:
            logger.info("Overwriting scope %s with scope %s", candidate, best)
        return best + name

    def add_scope_overrides(self, shared_scopes: dict) -> None:
        self._overrides.push(shared_scopes)

    def pop(self) -> None:
        self._overrides.pop()


parameter_sharing_context = ParameterSharingContext()


def _normalize_namescope(namescope: str) -> str:
    return namescope + _SEP if namescope and not namescope.endswith(_SEP) else namescope


@contextlib.contextmanager
def ParameterSharing(shared_scopes: dict):
    """Within the block, parameters created under `current/k` are those of `current/v`
    for each `k: v` of `shared_scopes`."""
    if not isinstance(shared_scopes, dict):
        raise TypeError("ParameterSharing takes a dict {scope: scope it shares with}")
    current = scope.CurrentNameScope()
    overrides = {}
    for k, v in shared_scopes.items():
        if v.startswith(k):
            raise AssertionError(f"Illegal override for parameter sharing. {k} is prefix of {v}")
        overrides[_normalize_namescope(current + k)] = _normalize_namescope(current + v)
    parameter_sharing_context.add_scope_overrides(overrides)
    try:
        yield
    finally:
        parameter_sharing_context.pop()
