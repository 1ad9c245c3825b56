"""Compiled nets: a created net split into compiled segments and reference fallbacks.

`PartitionedNet` partitions a net's ops into maximal runs that have Cython kernels
(`CythonSegment`) and the ops between them (`ReferenceSegment`: Python, Print, ops without
a kernel). A compiled segment specialises itself on the first run for each signature of the
blobs it reads (shape and dtype of each), builds (or loads from the cache) one module per
signature, and runs it with one call per RunNet.

Semantics kept: blobs read and written by name exactly as the reference executor does; the
workspace sees the final version of every blob a segment writes. Buffers of a variant are
persistent, so a RunNet allocates nothing; fetches copy. Errors found before a segment runs
(missing blob, dtype or shape the ops cannot take) leave the workspace untouched. A kernel
that fails on data (e.g. a label out of range) names its op; blobs written earlier in that
segment keep their new values.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

import numpy as np

from c2compile.errors import BlobError, OpError
from c2compile.ops.schema import BoundOp, TensorType
from c2compile.runtime import reference
from c2compile.runtime.blobs import RunView


_blas_threads_set: int | None = None


def limit_blas_threads() -> None:
    """Apply `config.blas_threads` to the BLAS compiled kernels call (scipy's OpenBLAS).

    numpy's own BLAS (the reference executor's) is left alone.
    """
    global _blas_threads_set
    from c2compile import config
    if config.blas_threads <= 0 or _blas_threads_set == config.blas_threads:
        return
    from c2compile.codegen import blas
    blas.preload()  # loads the library to control (without scipy.linalg's package)
    if not blas.set_threads(config.blas_threads):
        from threadpoolctl import ThreadpoolController
        for lib in ThreadpoolController().lib_controllers:
            if lib.user_api == "blas" and "scipy.libs" in lib.filepath.replace("\\", "/"):
                lib.set_num_threads(config.blas_threads)
    _blas_threads_set = config.blas_threads


class ReferenceSegment:
    """Ops that run on the numpy reference executor."""
    compiled = False

    def __init__(self, ops: list[BoundOp], why: str):
        self.ops, self.why = ops, why

    def run(self, view) -> None:
        reference.run_ops(self.ops, view)


@dataclasses.dataclass
class Variant:
    """One specialisation of a segment: its plan, module, program and output buffers."""
    plan: Any
    module: Any
    program: Any
    outputs: dict[str, np.ndarray]
    _source: str | None = None

    @property
    def source(self) -> str:
        """The generated source (rendered on first use when the module came from a plan
        digest's cache hit)."""
        if self._source is None:
            from c2compile.codegen.cython.render import render
            self._source = render(self.plan)
        return self._source


class CythonSegment:
    """A run of ops with Cython kernels, one compiled variant per input signature.

    `private`: blobs the segment writes whose final values nobody outside it will read (see
    PartitionedNet): they are not written back to the workspace, and their buffers are the
    compiler's to fold away (passes/fusion.py)."""
    compiled = True

    def __init__(self, name: str, ops: list[BoundOp], private: frozenset[str] = frozenset()):
        from c2compile.codegen.cython.lowering import host_inputs
        self.name, self.ops, self.private = name, ops, frozenset(private)
        written: set[str] = set()
        self.inputs: list[str] = []          # tensors the program reads, in order
        self.host_reads: list[str] = []      # blobs only the runtime reads (mutexes)
        self.first_reader: dict[str, BoundOp] = {}
        for op in ops:
            host = host_inputs(op)
            for i, blob in enumerate(op.inputs):
                if blob in written or blob in self.first_reader:
                    continue
                (self.host_reads if i in host else self.inputs).append(blob)
                self.first_reader[blob] = op
            written.update(op.outputs)
        self.variants: dict[tuple, Variant | ReferenceSegment] = {}

    def _missing(self, name: str) -> BlobError:
        op = self.first_reader[name]
        return op.error(BlobError, f"input blob '{name}' does not exist in the workspace",
                        blob=name)

    def _locks(self, blobs: Mapping[str, Any]) -> list:
        """The mutexes among the host-read blobs (AtomicIter's): the whole segment runs under
        them."""
        locks = []
        for name in self.host_reads:
            try:
                v = blobs[name]
            except KeyError:
                raise self._missing(name) from None
            lock = getattr(v, "lock", None)
            if lock is None:
                op = self.first_reader[name]
                raise op.error(OpError, f"input blob '{name}' holds a {type(v).__name__}, "
                               f"not the mutex {op.type} takes", blob=name)
            locks.append(lock)
        return locks

    def _read(self, blobs: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        if not self.inputs:
            return ()
        values = []
        for name in self.inputs:
            try:
                v = blobs[name]
            except KeyError:
                raise self._missing(name) from None
            if not isinstance(v, np.ndarray):
                op = self.first_reader[name]
                raise op.error(OpError, f"input blob '{name}' holds a {type(v).__name__}, "
                               "not a tensor", blob=name)
            if not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            values.append(v)
        return tuple(values)

    @staticmethod
    def signature(types) -> tuple:
        """Variant key: (shape, dtype number) of every input, in order."""
        return tuple((tuple(t.shape), np.dtype(t.dtype).num) for t in types)

    def run(self, view) -> None:
        if not self.host_reads:
            return self._run(view)
        # The mutexes (AtomicIter's) are held from reading the inputs to committing the
        # outputs, so segments that share a counter under one mutex, run from concurrent
        # threads (a plan's concurrent substeps), never lose an increment.
        with contextlib.ExitStack() as held:
            for lock in self._locks(view.blobs):
                held.enter_context(lock)
            return self._run(view)

    def _run(self, view) -> None:
        blobs = view.blobs
        values = self._read(blobs)
        key = tuple((v.shape, v.dtype.num) for v in values)
        variant = self.variants.get(key)
        if variant is None:
            variant = self.specialise([TensorType(v.shape, v.dtype) for v in values])
        if isinstance(variant, ReferenceSegment):
            sub = RunView(view)  # commits only if every op succeeds, whatever `view` is
            variant.run(sub)
            blobs.update(sub.blobs.writes)
            return
        code = variant.program.run(values)
        if code:
            step = variant.program.failed_step
            raise variant.plan.steps[step].op.error(
                OpError, variant.plan.error_message(step, code))
        blobs.update(variant.outputs)

    def plan(self, types: list[TensorType]):
        """The plan for these input types (raises Unsupported when some op can't compile)."""
        from c2compile.codegen.cython.render import plan_segment
        return plan_segment(self.name, self.ops, dict(zip(self.inputs, types)), self.private)

    def specialise(self, types: list[TensorType], module=None) -> Variant | ReferenceSegment:
        """Build (or take `module`, loaded from a saved artifact) the variant for `types`."""
        from c2compile.codegen import build
        from c2compile.codegen.cython.lowering import Unsupported
        from c2compile.codegen.cython.render import plan_digest, render
        key = self.signature(types)
        try:
            plan = self.plan(types)
        except Unsupported as e:
            variant = self.variants[key] = ReferenceSegment(self.ops, f"no kernel for these types: {e}")
            return variant
        source = None
        if module is None:
            # A warm hit: the module this plan's source was built into, found by the plan's
            # digest without rendering the source (nor importing jinja2).
            digest = plan_digest(plan)
            module = build.module_for_plan(digest) if digest else None
            if module is None:
                source = render(plan)
                module = build.build_module(source, name_hint=self.name)
                if digest:
                    build.remember_plan(digest, source)
        limit_blas_threads()
        buffers = plan.buffers()
        fresh = np.random.default_rng()
        seeds = tuple(int(s) if s is not None else int(fresh.integers(0, 2**63))
                      for s in plan.seeds)
        program = module.Program(buffers, seeds)
        outputs = {blob: buffers[slot] for blob, slot in plan.outputs.items()}
        variant = self.variants[key] = Variant(plan, module, program, outputs, source)
        return variant


def partition(ops: list[BoundOp], net_name: str, observed: set[str] | None = None) -> list:
    """Maximal runs of ops with kernels become CythonSegments; the rest run on the reference.

    `observed`: the blobs anyone may read after a run (a Predictor's outputs); None means
    every blob the net writes (workspace.RunNet: Caffe2 lets a user fetch any of them).
    A compiled segment's other blobs are private to it unless another segment reads them
    or it reads them itself before writing them (state kept from one run to the next)."""
    from c2compile.codegen.cython.lowering import has_kernel
    segments: list = []
    run: list[BoundOp] = []
    for op in ops:
        if has_kernel(op):
            run.append(op)
            continue
        if run:
            segments.append(CythonSegment(f"{net_name}:{len(segments)}", run))
            run = []
        why = "host-only op" if op.opdef.host_only else "no Cython kernel"
        if segments and isinstance(segments[-1], ReferenceSegment):
            segments[-1].ops.append(op)
        else:
            segments.append(ReferenceSegment([op], why))
    if run:
        segments.append(CythonSegment(f"{net_name}:{len(segments)}", run))
    if observed is not None:
        for seg in segments:
            if isinstance(seg, CythonSegment):
                seg.private = _private_blobs(seg, [s for s in segments if s is not seg], observed)
    return segments


def _private_blobs(seg: CythonSegment, others: list, observed: set[str]) -> frozenset[str]:
    read_elsewhere = {b for other in others for op in other.ops for b in op.inputs}
    written = {b for op in seg.ops for b in op.outputs}
    return frozenset(written - set(observed) - read_elsewhere - set(seg.inputs)
                     - set(seg.host_reads))


def format_type(shape, dtype) -> str:
    """`1x3x227x227:FLOAT` (`?` for an unknown shape, `scalar` for a 0-d one)."""
    from c2compile import dtypes
    s = "?" if shape is None else "x".join(map(str, shape)) or "scalar"
    return s if dtype is None else f"{s}:{dtypes.name(dtypes.from_numpy(dtype))}"


def describe_partition(segments, variants: bool = True, source: bool = False) -> str:
    """The report of `c2compile show --partition`: each segment, compiled or on the
    reference (and why), with the ops it runs; with `variants`, each compiled variant's
    input types and module; with `source`, its generated source too."""
    lines = ["partition:"]
    for i, seg in enumerate(segments):
        ops = f"ops #{seg.ops[0].index}..#{seg.ops[-1].index}"
        if not isinstance(seg, CythonSegment):
            lines.append(f"  segment {i}: reference ({seg.why}), {ops}: "
                         f"{', '.join(op.type for op in seg.ops)}")
            continue
        lines.append(f"  segment {i}: compiled, {ops} ({len(seg.ops)} ops, "
                     f"{len(seg.variants)} variant(s))")
        for variant in seg.variants.values() if variants else ():
            if isinstance(variant, ReferenceSegment):
                lines.append(f"    variant falls back to the reference: {variant.why}")
                continue
            types = ", ".join(format_type(t.shape, t.dtype) for t in variant.plan.input_types)
            lines.append(f"    variant {types}\n"
                         f"      module {getattr(variant.module, '__file__', '?')}")
            lines += [f"      {line}" for line in describe_rewrites(variant.plan)]
            if source:
                lines.append(variant.source)
    return "\n".join(lines)


def describe_rewrites(plan) -> list[str]:
    """What the planner did beyond one kernel per op: folded Relus, Concat inputs placed,
    buffers sharing memory."""
    kept = ", which still writes its own output"
    lines = [f"op #{step.folded.index} ({step.folded.type}) folded into op #{step.op.index} "
             f"({step.op.type}){kept if step.spec.epilogue_out else ''}"
             for step in plan.steps if step.folded is not None]
    shared = []
    for slot in plan.slots:
        if slot.role != "view":
            continue
        base = plan.slots[slot.base]
        if base.role == "arena":
            shared.append(slot.nbytes)
        else:
            lines.append(f"'{slot.blob}' computed in place in '{base.blob}'")
    arena = [s for s in plan.slots if s.role == "arena"]
    if arena:
        lines.append(f"{len(shared)} buffers share {arena[0].nbytes / 1024:.0f} KiB "
                     f"(alone: {sum(shared) / 1024:.0f} KiB)")
    return lines


class PartitionedNet:
    """A created net whose CPU ops run through compiled segments and reference fallbacks."""

    def __init__(self, ops: list[BoundOp], name: str, observed: set[str] | None = None):
        self.name = name
        self.segments = partition(ops, name, observed)
        if len(self.segments) == 1 and self.segments[0].compiled:
            # One compiled segment checks its inputs before anything runs, so it can write
            # straight into the workspace: RunNet calls the segment with no layer between.
            self.run = self.segments[0].run

    def run(self, ws) -> None:
        view = RunView(ws)
        for seg in self.segments:
            seg.run(view)
        ws.blobs.update(view.blobs.writes)
