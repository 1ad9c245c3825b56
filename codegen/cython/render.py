"""Plan and render one compiled segment: a run of ops -> one deterministic .pyx module.

Planning specialises the segment to the types of the blobs it reads (shapes are then static
everywhere inside), folds Relus into their producers where nobody sees the pre-activation
value (passes/fusion.py), lowers every op to its kernel, and gives every SSA value the
segment writes a persistent buffer: the final version of each blob name is what the
workspace sees after a run (unless the blob is private to the segment). Inputs of a
contiguous Concat are computed in place in its output; earlier versions, private values
and kernel scratch share one arena by their lifetimes (passes/memory.py). Buffers live as
long as the compiled variant, so a RunNet allocates nothing.

Rendering fills `net.pyx.j2` with one `cdef int k<i>(...) noexcept nogil` per op (each
commented with the op it came from) and a `Program` class whose `run(inputs)` calls them in
order without the GIL. Blob and net names never reach the source except inside comments,
escaped with ascii(); buffers are numbered.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
from types import SimpleNamespace

import numpy as np

from c2compile.codegen.cython.lowering import (
    Buf, Kernel, KernelSpec, Unsupported, epilogues, host_inputs, lower)
from c2compile.ops.schema import BoundOp, TensorType

TEMPLATES = pathlib.Path(__file__).parent / "templates"


@dataclasses.dataclass(frozen=True)
class Slot:
    """One persistent buffer of a compiled variant."""
    shape: tuple[int, ...]
    dtype: np.dtype
    role: str  # "value" (an SSA value of a blob), "scratch", "arena" (bytes that planned
    #            buffers share: passes/memory.py), or "view": a value or scratch that lives
    #            inside slot `base` from byte `offset` on (a Concat input written in place,
    #            or a buffer given a place in the arena)
    blob: str | None = None
    base: int | None = None
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def view_of(self, base: np.ndarray) -> np.ndarray:
        """This view slot's array inside `base` (its base slot's array)."""
        flat = base.reshape(-1).view(np.uint8)
        return flat[self.offset:self.offset + self.nbytes].view(self.dtype).reshape(self.shape)


@dataclasses.dataclass
class Step:
    op: BoundOp
    kernel: Kernel
    spec: KernelSpec
    args: list[str]      # C expressions passed to k<i>: inputs, outputs, scratch, [rng]
    rng_index: int | None
    folded: BoundOp | None = None  # the activation op applied as this kernel's epilogue
    out_slots: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SegmentPlan:
    """A segment specialised to its input types: what to render and how to bind it."""
    name: str
    inputs: list[str]                 # blob names read from outside, in `run(inputs)` order
    input_types: list[TensorType]
    slots: list[Slot]
    outputs: dict[str, int]           # blob name -> slot of its final version
    steps: list[Step]
    seeds: list[int | None]           # per random stream: DeviceOption.random_seed or None

    def buffers(self) -> tuple[np.ndarray, ...]:
        """New arrays for the slots (a view's base made first, wherever it is listed)."""
        made: dict[int, np.ndarray] = {}

        def get(i: int) -> np.ndarray:
            if i not in made:
                slot = self.slots[i]
                made[i] = (slot.view_of(get(slot.base)) if slot.role == "view"
                           else np.empty(slot.shape, slot.dtype))
            return made[i]
        return tuple(get(i) for i in range(len(self.slots)))

    def error_message(self, step: int, code: int) -> str:
        s = self.steps[step]
        return s.spec.errors.get(code, f"kernel failed with code {code}")


def plan_segment(name: str, ops: list[BoundOp], input_types: dict[str, TensorType],
                 private: frozenset[str] = frozenset()) -> SegmentPlan:
    """Specialise `ops` to `input_types` (every blob the segment reads from outside).

    `private`: blobs the segment writes that nobody outside it may see (see
    CythonSegment); they are not published, and activations that consume them are folded
    into their producers (passes/fusion.py). Concat inputs that the segment computes are
    written straight into the Concat's output where they are contiguous runs of it
    (`concat_placements`), whoever reads them.

    Raises ShapeError (from the ops' own rules) for inputs they cannot take, and Unsupported
    when some op instance has no kernel for these types.
    """
    from c2compile.passes.fusion import fold_activations
    folded = fold_activations(ops, private, lambda op, act: act in epilogues(op))
    absorbed = {f.activation for f in folded.values()}
    run = [pos for pos in range(len(ops)) if pos not in absorbed]  # the ops that get a kernel
    # what each kernel writes: a folding producer writes the activation's output instead
    # of its own, or (keep) both
    written = {pos: ops[pos].outputs for pos in run}
    for pos, f in folded.items():
        act_out = ops[f.activation].outputs
        written[pos] = ops[pos].outputs + act_out if f.keep else act_out
    op_types = _infer_types(ops, run, written, input_types)
    placed = concat_placements(ops, run, written, op_types)

    inputs: dict[str, int] = {}         # blob read from outside -> its index in x
    slots: list[Slot] = []
    steps: list[Step] = []
    seeds: list[int | None] = []
    outputs: dict[str, int] = {}
    made: dict[tuple[int, int], int] = {}  # (position, output index) -> slot
    current: dict[str, int] = {}        # blob -> slot of its current version
    steps_of: dict[int, list[int]] = {}  # slot -> the steps that write or read it

    def new_slot(shape, dtype, role, blob=None, base=None, offset=0) -> int:
        slots.append(Slot(tuple(shape), np.dtype(dtype), role, blob, base, offset))
        return len(slots) - 1

    def value_slot(pos: int, j: int) -> int:
        """The slot of output j of the op at `pos` (a Concat's is made when the first of its
        placed inputs needs it)."""
        if (pos, j) not in made:
            t, blob = op_types[pos][1][j], written[pos][j]
            if (pos, j) in placed:
                cpos, offset = placed[(pos, j)]
                made[(pos, j)] = new_slot(t.shape, t.dtype, "view", blob,
                                          value_slot(cpos, 0), offset)
            else:
                made[(pos, j)] = new_slot(t.shape, t.dtype, "value", blob)
        return made[(pos, j)]

    for pos in run:
        op = ops[pos]
        in_types, out_types = op_types[pos]
        in_exprs = []
        host = host_inputs(op)
        for i, blob in enumerate(op.inputs):
            if i in host:
                continue
            if blob in current:
                in_exprs.append(f"self.b[{current[blob]}]")
                steps_of[current[blob]].append(len(steps))
            else:
                in_exprs.append(f"x[{inputs.setdefault(blob, len(inputs))}]")
        fold = folded.get(pos)
        act = ops[fold.activation] if fold else None
        kern, spec = lower(op, in_types, out_types[:len(op.outputs)],
                           act.type if act is not None else None, keep=bool(fold and fold.keep))
        args = [f"<const {b.ctype}*>{e}" for b, e in zip(spec.ins, in_exprs)]
        if fold and not fold.keep:
            # the output buffer holds the activation's output; the value the activation read
            # is never materialised (fold_activations: nobody else reads or sees it)
            outputs.pop(op.outputs[0], None)
        out_slots = []
        for j, (blob, b) in enumerate(zip(written[pos], spec.outs)):
            slot = value_slot(pos, j)
            out_slots.append(slot)
            current[blob] = slot
            steps_of.setdefault(slot, []).append(len(steps))
            outputs[blob] = slot
            args.append(f"<{b.ctype}*>self.b[{slot}]")
        for b in spec.scratch:
            slot = new_slot(b.shape, b.dtype, "scratch")
            steps_of[slot] = [len(steps)]
            args.append(f"<{b.ctype}*>self.b[{slot}]")
        rng_index = None
        if spec.rng:
            rng_index = len(seeds)
            dev = op.proto.device_option
            seeds.append(dev.random_seed if dev.HasField("random_seed") else None)
            args.append(f"self.r[{rng_index}]")
        steps.append(Step(op, kern, spec, args, rng_index, act, out_slots))
    outputs = {blob: slot for blob, slot in outputs.items() if blob not in private}
    _share_memory(slots, steps_of, set(outputs.values()))
    return SegmentPlan(name, list(inputs), [input_types[b] for b in inputs], slots, outputs,
                       steps, seeds)


def _share_memory(slots: list[Slot], steps_of: dict[int, list[int]], published: set[int]):
    """Give the buffers nobody outside the segment sees (scratch, private values, earlier
    versions of a blob) places in one arena by their lifetimes (passes/memory.py); a
    Concat's placed inputs count as uses of the Concat's buffer. In place in `slots`."""
    from c2compile.passes.memory import Lifetime, layout

    def root(i: int) -> int:
        return root(slots[i].base) if slots[i].role == "view" else i

    span: dict[int, list[int]] = {}
    for i, used in steps_of.items():
        span.setdefault(root(i), []).extend(used)
    kept = {root(i) for i in published}
    lives = [Lifetime(i, slots[i].nbytes, min(used), max(used)) for i, used in span.items()
             if i not in kept and used]
    if not lives:
        return
    offsets, total = layout(lives)
    slots.append(Slot((total,), np.dtype(np.uint8), "arena"))
    for i, offset in offsets.items():
        slots[i] = dataclasses.replace(slots[i], role="view", base=len(slots) - 1,
                                       offset=offset)


def _infer_types(ops, run, written, input_types) -> dict[int, tuple[list, list]]:
    """{position: (input types, output types)} of the ops that get a kernel, all static (a
    host-read input, which has no buffer, has an unknown type)."""
    known = dict(input_types)
    found = {}
    for pos in run:
        op = ops[pos]
        host = host_inputs(op)
        in_types = [TensorType(None, None) if i in host else known[blob]
                    for i, blob in enumerate(op.inputs)]
        out_types = op.opdef.infer(op, *in_types)
        # a kept fold's second output, the activation's, has the producer's output type
        out_types += out_types[:1] * (len(written[pos]) - len(out_types))
        for t in out_types:
            if t.shape is None or t.dtype is None:
                raise Unsupported(f"{op.where}: output shape depends on data")
        known.update(zip(written[pos], out_types))
        found[pos] = (in_types, out_types)
    return found


CONCATS = ("Concat", "DepthConcat")


def concat_placements(ops, run, written, op_types) -> dict[tuple[int, int], tuple[int, int]]:
    """{(producer position, output index): (Concat position, byte offset)}: values that are
    computed straight into a later Concat's output, whose copy then finds them in place.

    Only where each input is one contiguous run of the output (nothing before the axis but
    dims of size 1: batch-1 NCHW channel concats, SqueezeNet's fire modules), the value is
    made in this segment, and it feeds no other placement (a blob twice in one Concat stays
    where it is). Values are never written twice (each version of a blob has its own
    buffer), so other readers of a placed value read the same numbers from the Concat's
    buffer; the workspace gets a view of it."""
    import math
    from c2compile.ops.shape import _concat_plan
    maker: dict[str, tuple[int, int]] = {}   # blob -> (position, output index) of its current version
    placed: dict[tuple[int, int], tuple[int, int]] = {}
    for pos in run:
        op = ops[pos]
        if op.type in CONCATS:
            in_types, out_types = op_types[pos]
            ax, out_shape, _ = _concat_plan(op, in_types)
            if math.prod(out_shape[:ax]) == 1:
                offset = 0
                for blob, t in zip(op.inputs, in_types):
                    src = maker.get(blob)
                    if src is not None and src not in placed and op.inputs.count(blob) == 1:
                        placed[src] = (pos, offset)
                    offset += int(np.prod(t.shape, dtype=np.int64)) * t.dtype.itemsize
        for j, blob in enumerate(written[pos]):
            maker[blob] = (pos, j)
    return placed


@functools.lru_cache(maxsize=None)
def _renderer_digest() -> str:
    """sha256 of everything besides the plan that `render` reads: this file (filters,
    `render` itself) and the templates."""
    h = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    for path in sorted(TEMPLATES.glob("*.j2")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _canon(value):
    """`value` as JSON that pins it down exactly, tuples told from lists (a template may
    print either). TypeError for anything whose text would not (an object's repr, an
    abbreviated array): that plan then has no digest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return {"np": type(value).__name__, "v": value.item()}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_canon(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_canon(k), _canon(v)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"set": sorted(map(repr, value))}
    if isinstance(value, np.dtype):
        return {"dtype": value.str}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, SimpleNamespace):
        return {"ns": _canon(vars(value))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: _canon(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})}
    raise TypeError(f"{type(value).__name__} in a plan")


def plan_digest(plan: SegmentPlan) -> str | None:
    """A key for the source `render(plan)` gives, computed without rendering (so without
    importing jinja2: a warm cache hit's biggest cost in a fresh process). It covers the
    renderer and templates (`_renderer_digest`), this c2compile's version and everything of
    the plan the templates can read: each step's op (NetDef proto, index, parsed arguments),
    kernel and spec. None if some value has no exact text form (that plan is always
    rendered)."""
    from c2compile import __version__
    steps = [(s.op.index, s.op.proto.SerializeToString(deterministic=True), s.op.args,
              s.kernel.types, s.kernel.template, s.kernel.macro, s.spec.ins, s.spec.outs,
              s.spec.scratch, s.spec.vars, s.spec.errors, s.spec.rng, s.spec.epilogue,
              s.spec.epilogue_out, s.args,
              s.rng_index, s.folded and (s.folded.index, s.folded.type, s.folded.outputs),
              s.out_slots)
             for s in plan.steps]
    body = (__version__, _renderer_digest(), plan.inputs, plan.input_types, plan.slots,
            plan.outputs, len(plan.seeds), steps)
    try:
        text = json.dumps(_canon(body))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def comment(text) -> str:
    """Untrusted text (blob, op, net names) made safe for one `#` comment line."""
    return ascii(str(text))[1:-1]


def shape_str(buf: Buf | TensorType) -> str:
    return "x".join(map(str, buf.shape)) or "scalar"


def _bytecode_cache():
    """Compiled templates kept beside the module cache: compiling them costs a fresh
    process ~0.3 s, which a warm cache hit should not pay. None when the dir is unusable."""
    import jinja2
    from c2compile.codegen import cache
    try:
        d = cache.cache_dir() / "jinja"
        d.mkdir(parents=True, exist_ok=True)
        return jinja2.FileSystemBytecodeCache(str(d))
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def environment() -> "jinja2.Environment":  # noqa: F821 - imported here, not at module level
    import jinja2  # ~40 ms: only when something is rendered (see plan_digest)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False,
                             bytecode_cache=_bytecode_cache())
    env.filters["comment"] = comment
    env.filters["shape"] = shape_str
    env.globals["ctype"] = lambda dtype: Buf("", (), np.dtype(dtype)).ctype
    return env


def _signature(step: Step) -> str:
    spec = step.spec
    params = [f"const {b.ctype}* {b.name}" for b in spec.ins]
    params += [f"{b.ctype}* {b.name}" for b in spec.outs + spec.scratch]
    if spec.rng:
        params.append("unsigned long long* rng")
    return ", ".join(params)


def render_kernel(step: Step) -> str:
    """The body of one kernel, from its family template's macro."""
    env = environment()
    module = env.get_template(step.kernel.template).module
    macro = getattr(module, step.kernel.macro or step.op.type)
    return str(macro(step.spec)).strip("\n")


def render(plan: SegmentPlan) -> str:
    """The whole module's source: deterministic for the same plan."""
    from c2compile import __version__
    env = environment()
    kernels = []
    for step in plan.steps:
        op = step.op
        outs = []
        for b, i in zip(step.spec.outs, step.out_slots):
            slot, placed = plan.slots[i], ""
            base = plan.slots[slot.base] if slot.role == "view" else None
            if base is not None and base.role != "arena":  # a Concat input, computed in place
                placed = (f" (in place in {comment(base.blob)} from element "
                          f"{slot.offset // base.dtype.itemsize})")
            outs.append(f"{comment(slot.blob)} {shape_str(b)}:{b.dtype}{placed}")
        outs = ", ".join(outs)
        header = f"op #{op.index} ({op.type}{' ' + repr(op.name) if op.name else ''})"
        if step.folded is not None:
            kept = "; its input kept" if step.spec.epilogue_out else ""
            header += f" + op #{step.folded.index} ({step.folded.type}, folded in{kept})"
        kernels.append(dict(
            index=op.index, header=comment(header),
            outs=outs, signature=_signature(step), body=render_kernel(step), args=step.args))
    return env.get_template("net.pyx.j2").render(
        version=__version__, plan=plan, kernels=kernels,
        inputs=[(comment(n), shape_str(t), t.dtype) for n, t in zip(plan.inputs, plan.input_types)],
        uses_blas=any("gemm" in k["body"] for k in kernels),
        uses_prange=any("prange(" in k["body"] for k in kernels),
        uses_sum=any("_sum_f32(" in k["body"] for k in kernels),
        uses_relu=any("_relu_f32(" in k["body"] or "_relu_into_f32(" in k["body"]
                      for k in kernels),
        uses_add=any("_add_f32(" in k["body"] for k in kernels),
        uses_rng=bool(plan.seeds))
