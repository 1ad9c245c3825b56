"""Blob storage with Caffe2's semantics, and the transactional view one run writes through.

`BlobStore` gives feed/fetch with Caffe2's copy semantics over a `blobs` mapping. A run never
writes a workspace directly: it writes a `RunView`, whose `Overlay` keeps the run's writes
over the committed blobs until the caller commits them (when every op succeeded).
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Mapping

import numpy as np

from c2compile import dtypes
from c2compile.errors import BlobError


class Overlay(MutableMapping):
    """The blobs as one run sees them: its own `writes` over the committed `base`.

    Nothing reaches `base` until the caller commits `writes` (after the run succeeded).
    """

    def __init__(self, base: Mapping[str, Any]):
        self.base = base
        self.writes: dict[str, Any] = {}

    def __getitem__(self, name: str):
        try:
            return self.writes[name]
        except KeyError:
            return self.base[name]

    def __setitem__(self, name: str, value) -> None:
        self.writes[name] = value

    def __delitem__(self, name: str) -> None:
        raise TypeError("a run cannot delete blobs")

    def __contains__(self, name) -> bool:
        return name in self.writes or name in self.base

    def __iter__(self):
        yield from self.writes
        yield from (k for k in self.base if k not in self.writes)

    def __len__(self) -> int:
        return len(self.writes) + sum(1 for k in self.base if k not in self.writes)



class BlobStore:
    """Feed/fetch with Caffe2's copy semantics over a `blobs` mapping."""
    name: str
    root_folder: str
    blobs: MutableMapping[str, Any]

    def feed(self, name: str, value) -> None:
        if not isinstance(name, str) or not name:
            raise BlobError(f"blob name must be a non-empty string, got {name!r}")
        if isinstance(value, np.ndarray) or np.isscalar(value) or isinstance(value, (list, tuple)):
            value = np.array(value, copy=True)  # the caller may keep mutating its array
            value = dtypes.as_string_tensor(value)  # strings are stored as bytes, as Caffe2
        self.blobs[name] = value

    def fetch(self, name: str):
        try:
            value = self.blobs[name]
        except KeyError:
            raise BlobError(f"blob '{name}' does not exist in workspace '{self.name}'") from None
        return value.copy() if isinstance(value, np.ndarray) else value


class RunView(BlobStore):
    """A workspace (or another view) as one run sees it: reads fall through, writes stay in
    `blobs.writes` until the caller commits them."""

    def __init__(self, ws: BlobStore):
        self.name, self.root_folder = ws.name, ws.root_folder
        self.blobs = Overlay(ws.blobs)
