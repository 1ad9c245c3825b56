"""From a bound op with known shapes to the pieces of one generated kernel.

Each Cython kernel is registered once per op type (or family of types):

    @kernel("Relu", "Sigmoid", template="elementwise.pyx.j2", macro="unary")
    def unary(k: KernelSpec) -> None:
        k.vars["expr"] = UNARY_EXPR[k.op.type]       # anything the macro needs

`prepare` functions run in Python at compile time: they read `k.op` (the BoundOp: parsed
arguments in `k.op.args`), `k.ins`/`k.outs` (`Buf`s with static shapes and dtypes), may ask
for scratch buffers (`k.scratch_buf(n, dtype)`), for a random stream (`k.use_rng()`), declare
error codes (`k.error(code, message)`), and put anything else into `k.vars`. They raise
`Unsupported` (or return False from `supports`) for cases the kernel does not cover; the op
then runs on the reference executor and the fallback shows in `c2compile show`.

The template macro (same name as `macro`, default the op type) renders the *body* of

    cdef int k<index>(<ins as const T*>, <outs as T*>, <scratch>, [rng]) noexcept nogil

using the parameter names `k.ins[i].name` ("i0", ...), `k.outs[j].name` ("o0", ...),
`k.scratch[s].name` ("s0", ...) and `rng` (an `unsigned long long[4]` xoshiro256** state).
It returns 0, or a code declared with `k.error`. Shapes are compile-time constants: write
them into the body as literals (`{{ k.outs[0].size }}`) so the C compiler can unroll and
vectorise. Kernels never allocate, never touch Python objects and never call numpy.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from c2compile.ops.schema import BoundOp, TensorType

CTYPES = {
    np.dtype(np.float32): "float", np.dtype(np.float64): "double",
    np.dtype(np.int32): "int", np.dtype(np.int64): "long long",
    np.dtype(np.uint8): "unsigned char", np.dtype(np.int8): "signed char",
    np.dtype(np.int16): "short", np.dtype(np.uint16): "unsigned short",
    np.dtype(np.bool_): "unsigned char",
}


# Independent items (elements, planes) split between two OpenMP threads from this many on:
# waking the second thread costs a few microseconds, 64 Ki floats take tens on one.
SPLIT_ELEMS = 1 << 16


def split_threads(elems: int, items: int | None = None) -> int:
    """2 when `elems` elements of work over `items` independent items (default: the
    elements themselves) are worth the two cores, else 1. Only while OpenBLAS is single-
    threaded (config.blas_threads == 1): the two cores have one owner."""
    from c2compile import config
    items = elems if items is None else items
    return 2 if config.blas_threads == 1 and items >= 2 and elems >= SPLIT_ELEMS else 1


class Unsupported(Exception):
    """Raised by a prepare function: this op instance has no native kernel (use the reference)."""


@dataclasses.dataclass
class Buf:
    """One buffer a kernel reads or writes: C parameter name, static shape, dtype."""
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ctype(self) -> str:
        try:
            return CTYPES[np.dtype(self.dtype)]
        except KeyError:
            raise Unsupported(f"dtype {self.dtype} has no C type in the Cython backend") from None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def strides(self) -> tuple[int, ...]:
        """Element strides of a C-contiguous array of this shape."""
        out, acc = [], 1
        for d in reversed(self.shape):
            out.append(acc)
            acc *= d
        return tuple(reversed(out))


@dataclasses.dataclass
class KernelSpec:
    """Everything one kernel's prepare function and template macro see."""
    op: BoundOp
    ins: list[Buf]
    outs: list[Buf]
    scratch: list[Buf] = dataclasses.field(default_factory=list)
    vars: dict[str, Any] = dataclasses.field(default_factory=dict)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    rng: bool = False
    # An activation folded into this kernel ("Relu": every output value becomes max(y, 0)),
    # set by the fusion pass for kernels registered with `epilogues`; the body applies it,
    # in place, or (a kept fold) into `epilogue_out`, an extra output of the same shape
    # that the body addresses at the same offsets as o0.
    epilogue: str | None = None
    epilogue_out: str | None = None

    @property
    def relu_to(self) -> str | None:
        """Where a folded Relu writes: "o0" (in place), the kept fold's output, or None."""
        if self.epilogue != "Relu":
            return None
        return self.epilogue_out or "o0"

    @property
    def index(self) -> int:
        return self.op.index

    @property
    def args(self):
        return self.op.args

    def scratch_buf(self, size: int, dtype=np.float32) -> Buf:
        """A scratch buffer of `size` elements, private to this kernel, persistent across runs."""
        buf = Buf(f"s{len(self.scratch)}", (int(size),), np.dtype(dtype))
        self.scratch.append(buf)
        return buf

    def use_rng(self) -> None:
        """This kernel draws random numbers from its own stream (the `rng` parameter)."""
        self.rng = True

    def error(self, code: int, message: str) -> int:
        """Declare a data-dependent failure the body may return (code >= 1)."""
        assert code >= 1
        self.errors[code] = message
        return code


@dataclasses.dataclass(frozen=True)
class Kernel:
    types: tuple[str, ...]
    template: str
    macro: str | None
    prepare: Callable[[KernelSpec], None]
    supports: Callable[[BoundOp], bool] | None
    # Inputs the kernel never reads, only the runtime does (AtomicIter's mutex): they get no
    # buffer and no `k.ins` entry; the segment checks they exist and locks a mutex among
    # them for its run.
    host_inputs: tuple[int, ...] = ()
    # Activations the body can apply to its (single) output (KernelSpec.epilogue).
    epilogues: tuple[str, ...] = ()


_KERNELS: dict[str, Kernel] = {}


def kernel(*types: str, template: str, macro: str | None = None,
           supports: Callable[[BoundOp], bool] | None = None, host_inputs: tuple = (),
           epilogues: tuple = ()):
    """Register `prepare` as the Cython kernel of op `types` (see the module docstring)."""
    def register(prepare):
        k = Kernel(types, template, macro, prepare, supports, tuple(host_inputs),
                   tuple(epilogues))
        for t in types:
            if t in _KERNELS:
                raise ValueError(f"two Cython kernels for op {t}")
            _KERNELS[t] = k
        return prepare
    return register


def kernels() -> dict[str, Kernel]:
    _load_families()
    return dict(_KERNELS)


def has_kernel(op: BoundOp) -> bool:
    """Whether `op` can be compiled at all (its shapes are checked later, per variant)."""
    _load_families()
    k = _KERNELS.get(op.type)
    if k is None or op.opdef.host_only:
        return False
    return k.supports is None or k.supports(op)


def host_inputs(op: BoundOp) -> tuple[int, ...]:
    """Input indices of `op` that its kernel does not read (see Kernel.host_inputs)."""
    _load_families()
    k = _KERNELS.get(op.type)
    return k.host_inputs if k is not None else ()


def epilogues(op: BoundOp) -> tuple[str, ...]:
    """The activations `op`'s kernel can fold in (see Kernel.epilogues)."""
    _load_families()
    k = _KERNELS.get(op.type)
    return k.epilogues if k is not None else ()


def lower(op: BoundOp, in_types: list[TensorType], out_types: list[TensorType],
          epilogue: str | None = None, keep: bool = False) -> tuple[Kernel, KernelSpec]:
    """The kernel and its prepared spec for `op` with these (fully known) types, with
    `epilogue` (one of its kernel's `epilogues`) folded in: in place, or with `keep` into
    an extra output after the op's own (o0 keeps the value the activation read).

    Raises Unsupported where the kernel does not cover this instance.
    """
    _load_families()
    kern = _KERNELS[op.type]
    ins = [Buf(f"i{i}", t.shape, t.dtype) for i, t in enumerate(in_types)
           if i not in kern.host_inputs]
    outs = [Buf(f"o{j}", t.shape, t.dtype) for j, t in enumerate(out_types)]
    for b in ins + outs:
        b.ctype  # noqa: B018 - raises Unsupported for dtypes without a C type
    assert epilogue is None or epilogue in kern.epilogues, (op.type, epilogue)
    spec = KernelSpec(op, ins, outs, epilogue=epilogue)
    if epilogue is not None and keep:
        assert len(outs) == 1, op.type
        outs.append(Buf("o1", outs[0].shape, outs[0].dtype))
        spec.epilogue_out = "o1"
    kern.prepare(spec)
    return kern, spec


_loaded = False


def _load_families() -> None:
    """Import the kernel families (each registers its kernels)."""
    global _loaded
    if not _loaded:
        _loaded = True
        from c2compile.codegen.cython import families  # noqa: F401
