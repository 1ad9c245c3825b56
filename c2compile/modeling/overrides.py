"""A stack of {key: value} dicts read as one, inner entries winning: how nested contexts
(ParameterSharing, UseOptimizer) combine."""
from __future__ import annotations


class OverrideStack:
    def __init__(self):
        self._layers: list[dict] = []
        self.merged: dict = {}

    def push(self, layer: dict) -> None:
        self._layers.append(layer)
        self.merged.update(layer)

    def pop(self) -> None:
        if not self._layers:
            raise AssertionError("no context to leave")
        self._layers.pop()
        self.merged = {}
        for layer in self._layers:
            self.merged.update(layer)
