"""One definition per op: schema, shape/type rule and numpy reference, side by side.

An op family module (`c2compile/ops/elementwise.py`, ...) declares each Caffe2 op type once:

    @op("Relu", inputs=1, outputs=1, inplace=[(0, 0)], infer=same_as_input)
    def relu(ctx, X):
        "max(X, 0)"
        return np.maximum(X, 0)

* the decorated function is the numpy **reference**: it gets a `BoundOp` (`ctx`: parsed
  arguments in `ctx.args`, the op's names, its random generator, the workspace) and the input
  arrays, and returns the output array, or a tuple/list of them (one per output the op was
  given: `ctx.num_outputs`). It never mutates its inputs: the executor relies on that to
  leave the workspace untouched when a net fails half way.
* **infer** gets the `BoundOp` and one `TensorType` per input and returns one `TensorType`
  per output (shape None where it depends on data). It validates too: raise
  `ShapeError`/`ArgumentError` via `ctx.fail(...)` for shapes, dtypes or arguments the op
  cannot take.
* **args** lists every argument with Caffe2's name, kind and default. An argument the op does
  not declare is an error (Caffe2 silently ignored them; a typo then changed nothing).

Passes and runtimes are generic: they look the op up with `get_op(type)` and ask it.
"""
from __future__ import annotations

import dataclasses
import os
import difflib
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from c2compile.errors import ArgumentError, OpError, ShapeError, UnsupportedError

INF = 1 << 30  # "any number of" inputs/outputs


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


# A host-only reference returns it for an output it leaves as it was: the executor writes
# nothing, so a blob that did not exist stays absent (Load with allow_incomplete).
UNCHANGED: Any = _Unchanged()

# Argument kinds -> the Argument field Caffe2's ArgumentHelper reads them from.
ARG_KINDS = ("int", "float", "bool", "str", "bytes", "ints", "floats", "strs", "net", "nets",
             "int_or_str")  # int_or_str: a DataType given as a number or a name ("float")

# Arguments that only steer an engine choice or a memory hint in Caffe2 and never change a
# result: accepted on every op so that real nets load, and otherwise ignored.
ENGINE_HINT_ARGS = frozenset({
    "use_cudnn", "cudnn_exhaustive_search", "exhaustive_search", "ws_nbytes_limit",
    "shared_buffer", "float16_compute", "deterministic", "convolution_transform_strategy",
    # cuDNN's algorithm choice for Conv/ConvTranspose (Caffe2's conv_test passes them)
    "force_algo", "force_algo_fwd", "force_algo_dgrad", "force_algo_wgrad",
    # brew hands the model's arg_scope (order=...) to every helper, so Caffe2 nets carry
    # `order` on FC, Relu, Softmax, Iter ... and their gradient ops; ops with a layout declare
    # it themselves, and for the others it cannot change a result.
    "order",
})


@dataclasses.dataclass(frozen=True)
class Arg:
    """One argument of an op: Caffe2's name, its kind (one of ARG_KINDS) and default.

    `default=REQUIRED` makes it mandatory; `default=None` means "absent unless given"
    (the op reads `ctx.has(name)`).
    """
    name: str
    kind: str
    default: Any = None
    doc: str = ""

    def __post_init__(self):
        if self.kind not in ARG_KINDS:
            raise ValueError(f"Arg {self.name}: unknown kind {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class TensorType:
    """What shape inference knows of a blob: shape (None = unknown) and numpy dtype."""
    shape: tuple[int, ...] | None
    dtype: np.dtype | None = np.dtype(np.float32)

    def __post_init__(self):
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"{'?' if self.shape is None else list(self.shape)}:{self.dtype}"


@dataclasses.dataclass(frozen=True)
class OpDef:
    """Everything c2compile knows about one Caffe2 op type."""
    type: str
    inputs: tuple[int, int]
    outputs: tuple[int, int]
    args: tuple[Arg, ...]
    inplace: frozenset | str  # {(in, out), ...} or "any"
    infer: Callable
    reference: Callable
    doc: str = ""
    # Ops with side effects or host-only work (Print, Python, DB readers) never compile.
    host_only: bool = False
    # Random fills draw from the op's generator; Iter etc. keep state across runs.
    stateful: bool = False
    # Accept arguments the schema does not list (the Python op hands them to the user's
    # function); they stay raw in `ctx.extra_args`.
    extra_args: bool = False
    # The gradient rule (see ops/gradient.py): a function of a GradientContext returning the
    # gradient OperatorDefs, NO_GRADIENT for ops no gradient flows through (StopGradient,
    # fills, comparisons), or None when the op has no rule (asking for one is an error).
    grad: Any = None

    @property
    def arg_map(self) -> dict[str, Arg]:
        return {a.name: a for a in self.args}

    def allows_inplace(self, i: int, o: int) -> bool:
        return self.inplace == "any" or (i, o) in self.inplace


_REGISTRY: dict[str, OpDef] = {}


def _arity(n) -> tuple[int, int]:
    if isinstance(n, int):
        return (n, n)
    lo, hi = n
    return (lo, INF if hi is None else hi)


def op(type_: str, *, inputs=1, outputs=1, args: Sequence[Arg] = (), inplace: Iterable = (),
       infer: Callable, host_only: bool = False, stateful: bool = False,
       extra_args: bool = False, grad: Any = None):
    """Register the decorated numpy reference as op `type_` (see module docstring)."""
    def register(fn: Callable) -> Callable:
        if type_ in _REGISTRY:
            raise ValueError(f"op {type_} is defined twice")
        names = [a.name for a in args]
        if len(set(names)) != len(names):
            raise ValueError(f"op {type_}: duplicate argument names {names}")
        _REGISTRY[type_] = OpDef(
            type=type_, inputs=_arity(inputs), outputs=_arity(outputs), args=tuple(args),
            inplace=inplace if inplace == "any" else frozenset(tuple(p) for p in inplace),
            infer=infer, reference=fn, doc=(fn.__doc__ or "").strip(),
            host_only=host_only, stateful=stateful, extra_args=extra_args, grad=grad)
        return fn
    return register


def set_gradient(type_: str, grad: Any) -> None:
    """Give an op defined from a table (the unary ops, ...) its gradient rule."""
    if _REGISTRY[type_].grad is not None:
        raise ValueError(f"op {type_} already has a gradient rule")
    _REGISTRY[type_] = dataclasses.replace(_REGISTRY[type_], grad=grad)


def alias(new_type: str, existing: str) -> None:
    """Register `new_type` as another name of `existing` (e.g. FlattenToVec variants)."""
    _REGISTRY[new_type] = dataclasses.replace(_REGISTRY[existing], type=new_type)


def has_op(type_: str) -> bool:
    return type_ in _REGISTRY


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


def get_op(type_: str, *, index: int | None = None, name: str = "") -> OpDef:
    try:
        return _REGISTRY[type_]
    except KeyError:
        close = difflib.get_close_matches(type_, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnsupportedError(f"unknown op type '{type_}'{hint}", index=index,
                               op_type=type_, name=name) from None


# ----------------------------------------------------------------------------- arguments

def _read(arg, kind: str):
    """Read one Argument proto as `kind`, or raise ValueError saying what it holds."""
    if kind in ("int", "bool"):
        if not arg.HasField("i"):
            raise ValueError("expected an int (field i)")
        return bool(arg.i) if kind == "bool" else int(arg.i)
    if kind == "float":
        if arg.HasField("f"):
            return float(arg.f)
        if arg.HasField("i"):  # 1 for 1.0: lossless, and what users write
            return float(arg.i)
        raise ValueError("expected a float (field f)")
    if kind == "int_or_str":
        if arg.HasField("i"):
            return int(arg.i)
        if arg.HasField("s"):
            return arg.s.decode("utf-8")
        raise ValueError("expected an int (field i) or a string (field s)")
    if kind in ("str", "bytes"):
        if not arg.HasField("s"):
            raise ValueError("expected a string (field s)")
        return arg.s.decode("utf-8") if kind == "str" else bytes(arg.s)
    if kind == "ints":
        if arg.floats or arg.strings:
            raise ValueError("expected a list of ints (field ints)")
        return [int(v) for v in arg.ints]
    if kind == "floats":
        if arg.strings:
            raise ValueError("expected a list of floats (field floats)")
        return [float(v) for v in (arg.floats or arg.ints)]
    if kind == "strs":
        if arg.ints or arg.floats:
            raise ValueError("expected a list of strings (field strings)")
        return [s.decode("utf-8") for s in arg.strings]
    if kind == "net":
        if not arg.HasField("n"):
            raise ValueError("expected a NetDef (field n)")
        return arg.n
    if kind == "nets":
        return list(arg.nets)
    raise AssertionError(kind)


def parse_args(opdef: OpDef, proto_args, where: dict) -> tuple[SimpleNamespace, frozenset, dict]:
    """Arguments of one OperatorDef as a namespace with every default filled in.

    Returns (args, given, extra): `given` holds the names the NetDef actually set, `extra`
    the raw Argument protos an `extra_args` op did not declare.
    """
    known = opdef.arg_map
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for a in proto_args:
        if a.name in ENGINE_HINT_ARGS and a.name not in known:
            continue
        spec = known.get(a.name)
        if spec is None and opdef.extra_args:
            extra[a.name] = a
            continue
        if spec is None:
            close = difflib.get_close_matches(a.name, known, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            accepted = ", ".join(known) or "none"
            raise ArgumentError(f"unknown argument '{a.name}'{hint}; {opdef.type} accepts: "
                                f"{accepted}", **where)
        if a.name in values:
            raise ArgumentError(f"argument '{a.name}' is given twice", **where)
        try:
            values[a.name] = _read(a, spec.kind)
        except ValueError as e:
            raise ArgumentError(f"argument '{a.name}': {e}", **where) from None
    given = frozenset(values)
    for spec in opdef.args:
        if spec.name not in values:
            if spec.default is REQUIRED:
                raise ArgumentError(f"required argument '{spec.name}' is missing", **where)
            values[spec.name] = spec.default
    return SimpleNamespace(**values), given, extra


# ----------------------------------------------------------------------------- bound op

class BoundOp:
    """One OperatorDef bound to its OpDef: parsed arguments plus the names it reads/writes.

    This is the `ctx` passed to references and shape rules. It is built once per op when a
    net is created and reused on every run, so per-op state (the random generator of a fill)
    persists across RunNet calls as it does in Caffe2.
    """

    def __init__(self, proto, index: int | None = None, net_name: str | None = None):
        self.proto = proto
        self.index = index
        self.type = proto.type
        self.name = proto.name
        self.net_name = net_name
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.opdef = get_op(proto.type, index=index, name=proto.name)
        self.args, self.given, self.extra_args = parse_args(self.opdef, proto.arg, self._where())
        # The workspace as the current run sees it (blobs, root_folder, feed/fetch); set by
        # the executor before each reference call, None when run outside a workspace.
        self.workspace = None
        # Per-op state that lives as long as the bound op (Print's run counter, ...).
        self.state: dict[str, Any] = {}
        self._rng = None
        self._check_arity()
        self._check_inplace()

    # -- identity and errors
    def _where(self) -> dict:
        return dict(index=self.index, op_type=self.type, name=self.name, net=self.net_name)

    @property
    def where(self) -> str:
        """"op #3 (Conv 'conv1') in net 'n'", as error messages start."""
        return OpError("", **self._where()).where

    def fail(self, message: str, *, blob: str | None = None, cls=ShapeError):
        """Raise `cls` (ShapeError by default) naming this op; use in infer/reference."""
        raise cls(message, blob=blob, **self._where())

    def error(self, cls, message: str, *, blob: str | None = None) -> OpError:
        return cls(message, blob=blob, **self._where())

    def unsupported(self, message: str):
        raise UnsupportedError(message, **self._where())

    def __repr__(self) -> str:
        return f"<{self.type} #{self.index} {self.inputs} -> {self.outputs}>"

    # -- arguments
    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def has(self, name: str) -> bool:
        """Whether the NetDef set argument `name` (defaults do not count)."""
        return name in self.given

    def arg(self, name: str):
        return getattr(self.args, name)

    @property
    def root_folder(self) -> str:
        """The workspace's root folder (Caffe2's ws->RootFolder()), or the current directory:
        where Print/Summarize files and relative DB paths go."""
        return getattr(self.workspace, "root_folder", None) or os.getcwd()

    # -- randomness: one generator per op, seeded by DeviceOption.random_seed when set
    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            dev = self.proto.device_option
            seed = dev.random_seed if dev.HasField("random_seed") else None
            self._rng = np.random.default_rng(seed)
        return self._rng

    def reset_rng(self) -> None:
        self._rng = None

    # -- validation done once, when the op is bound
    def _check_arity(self) -> None:
        for what, n, (lo, hi) in (("inputs", self.num_inputs, self.opdef.inputs),
                                  ("outputs", self.num_outputs, self.opdef.outputs)):
            if not lo <= n <= hi:
                want = str(lo) if lo == hi else f"{lo}..{'any' if hi >= INF else hi}"
                raise ArgumentError(f"takes {want} {what}, got {n}: {getattr(self, what)}",
                                    **self._where())

    def _check_inplace(self) -> None:
        for o, out in enumerate(self.outputs):
            for i, inp in enumerate(self.inputs):
                if inp == out and not self.opdef.allows_inplace(i, o):
                    raise ArgumentError(
                        f"input {i} and output {o} are the same blob '{out}', but "
                        f"{self.type} cannot run in place on that pair", blob=out,
                        **self._where())


def bind(proto, index: int | None = None, net_name: str | None = None) -> BoundOp:
    return BoundOp(proto, index, net_name)


# ----------------------------------------------------------------------------- helpers for shape rules

def same_as_input(ctx: BoundOp, *ins: TensorType) -> list[TensorType]:
    """Every output has the first input's shape and dtype (Caffe2's IdenticalTypeAndShape)."""
    return [ins[0]] * ctx.num_outputs


def broadcast_shapes(ctx: BoundOp, *shapes) -> tuple[int, ...] | None:
    """numpy broadcasting of known shapes; a mismatch names the op and the shapes."""
    if any(s is None for s in shapes):
        return None
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        ctx.fail(f"shapes {' and '.join(str(list(s)) for s in shapes)} do not broadcast")


def canonical_axis(ctx: BoundOp, axis: int, ndim: int, name: str = "axis") -> int:
    """Caffe2's canonical_axis_index_: negative axes count from the end."""
    if not -ndim <= axis < ndim:
        ctx.fail(f"{name}={axis} is out of range for a {ndim}-d input", cls=ArgumentError)
    return axis + ndim if axis < 0 else axis


def require_dtype(ctx: BoundOp, t: TensorType, allowed: Iterable, what: str = "input") -> None:
    allowed = [np.dtype(d) for d in allowed]
    if t.dtype is not None and t.dtype not in allowed:
        ctx.fail(f"{what} has dtype {t.dtype}; {ctx.type} takes {', '.join(map(str, allowed))}")


FLOAT_TYPES = (np.float32, np.float64)
NUMERIC_TYPES = (np.float32, np.float64, np.int32, np.int64)
