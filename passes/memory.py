"""Memory planning: buffers that are never live at the same time share memory.

A compiled segment keeps one persistent buffer per value it computes and per kernel's
scratch. Most of them are dead most of the time: a kernel's scratch (im2col columns, partial
sums) lives only while that kernel runs, and a value nobody outside the segment sees lives
from the step that writes it to the last step that reads it. Those buffers are laid out in
one arena, each at an offset where no buffer live at an overlapping time lies, so the
segment's working set shrinks to what is live at once (SqueezeNet at batch 1 through a
Predictor: 39 such buffers, 19 MB, in a 4.4 MB arena; all its buffers were 25 MB, close to
this machine's whole 32 MB L3).

This is Caffe2 memonger's idea (share the blobs of values whose lifetimes do not overlap)
done on offsets inside one allocation, as TFLite's and Glow's static memory planners do.
"""
from __future__ import annotations

import dataclasses

ALIGN = 64  # a cache line: every buffer starts on one (and AVX loads never straddle two)


@dataclasses.dataclass(frozen=True)
class Lifetime:
    """A buffer of `size` bytes, written first at step `start`, last used at step `end`
    (inclusive: a step's inputs and outputs never share memory)."""
    key: object
    size: int
    start: int
    end: int


def layout(buffers: list[Lifetime]) -> tuple[dict[object, int], int]:
    """({key: byte offset}, arena size): greedy by size, biggest first, each buffer at the
    lowest aligned offset that no buffer live at an overlapping time covers."""
    offsets: dict[object, int] = {}
    placed: list[tuple[int, int, Lifetime]] = []   # (offset, end offset, buffer)
    total = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.start, str(b.key))):
        clashes = sorted((lo, hi) for lo, hi, other in placed
                         if other.start <= buf.end and buf.start <= other.end)
        offset = 0
        for lo, hi in clashes:
            if offset + buf.size <= lo:
                break
            offset = max(offset, _aligned(hi))
        offsets[buf.key] = offset
        placed.append((offset, offset + buf.size, buf))
        total = max(total, offset + buf.size)
    return offsets, _aligned(total)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN
