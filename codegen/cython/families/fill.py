"""Fill kernels (template: fill.pyx.j2): constants, given values and random draws.

The output shape comes from the op's own shape rule (arguments, or the shape of input 0);
fills whose shape depends on data (`input_as_shape=1`, UniformFill's min/max inputs) have no
static shape and stay on the reference. Argument values are parsed by the reference's own
helpers (c2compile/ops/fill.py) and baked into the source.

Given values: up to `INLINE_VALUES` elements are written one assignment each (readable);
larger ones are one bytes literal (the values' native bytes, 64 a line) copied with memcpy,
which costs the C compiler ~0.3 s per 100k float32 values.

Random fills draw from the kernel's own xoshiro stream (`_uniform`/`_gaussian` of
net.pyx.j2): same DeviceOption.random_seed, same numbers; every run, new numbers. They
cannot match the reference's numpy generator bit for bit, only in distribution.
"""
from __future__ import annotations

import numpy as np

from c2compile import dtypes
from c2compile.codegen.cython.families.elementwise import as_float32, literal
from c2compile.codegen.cython.lowering import KernelSpec, Unsupported, kernel
from c2compile.errors import C2Error
from c2compile.ops import fill as ref

INLINE_VALUES = 64


def static_shape(op) -> bool:
    """Whether the fill's output shape is known before it runs (not read from data)."""
    return not op.args.input_as_shape


def _checked(fn, *args):
    """Call a reference helper; an argument it rejects is left to the reference to report."""
    try:
        return fn(*args)
    except C2Error as e:
        raise Unsupported(f"invalid arguments, the reference reports them: {e.message}") from None


def _constant_supported(op) -> bool:
    try:
        return static_shape(op) and ref._constant_data_type(op) != dtypes.STRING
    except C2Error:
        return True  # the shape rule reports it


@kernel("ConstantFill", template="fill.pyx.j2", macro="constant", supports=_constant_supported)
def constant_fill(k: KernelSpec) -> None:
    """Every element is `value` (or the one element of input 1)."""
    out = k.outs[0]
    if len(k.ins) == 2:
        k.vars["value"] = "i1[0]"
    else:
        dt = _checked(ref._constant_data_type, k.op)
        k.vars["value"] = literal(_checked(ref._constant_value, k.op, dt), out.dtype)


_GIVEN = ("GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill",
          "GivenTensorInt16Fill", "GivenTensorInt64Fill", "GivenTensorBoolFill")


@kernel(*_GIVEN, template="fill.pyx.j2", macro="given", supports=static_shape)
def given_fill(k: KernelSpec) -> None:
    """The output holds the `values` argument."""
    out = k.outs[0]
    values = _checked(ref._given_values, k.op, out.dtype, out.shape).reshape(-1)
    k.vars["T"] = out.ctype
    if values.size <= INLINE_VALUES:
        k.vars["inline"] = [literal(v, out.dtype) for v in values]
        return
    data = np.ascontiguousarray(values).tobytes()
    k.vars["inline"] = None
    k.vars["nbytes"] = len(data)
    k.vars["chunks"] = ["".join(f"\\x{c:02x}" for c in data[i:i + 64])
                        for i in range(0, len(data), 64)]


def _out_size(k: KernelSpec) -> tuple[tuple[int, ...], int]:
    return k.outs[0].shape, k.outs[0].size


@kernel("GaussianFill", "MSRAFill", template="fill.pyx.j2", macro="gaussian",
        supports=static_shape)
def gaussian_fill(k: KernelSpec) -> None:
    """float32 mean + std * N(0, 1); MSRAFill: std = sqrt(2 / fan_out), mean 0."""
    shape, size = _out_size(k)
    if k.op.type == "GaussianFill":
        _checked(ref._std_check, k.op)
        mean, std = as_float32(k.args.mean), as_float32(k.args.std)
    else:
        mean = 0.0
        std = 0.0 if size == 0 else float(
            np.sqrt(np.float32(2) / np.float32(size // shape[1]), dtype=np.float32))
    k.vars.update(mean=literal(mean, np.float32), std=literal(std, np.float32))
    k.use_rng()


def _uniform_supported(op) -> bool:
    return static_shape(op) and op.num_inputs != 3  # min/max inputs: the shape is data


@kernel("UniformFill", "XavierFill", template="fill.pyx.j2", macro="uniform",
        supports=_uniform_supported)
def uniform_fill(k: KernelSpec) -> None:
    """float32 uniform in [min, max]; XavierFill: [-s, s], s = sqrt(3 / fan_in)."""
    shape, size = _out_size(k)
    if k.op.type == "UniformFill":
        lo, hi = as_float32(k.args.min), as_float32(k.args.max)
    else:
        s = 0.0 if size == 0 else float(
            np.sqrt(np.float32(3) / np.float32(size // shape[0]), dtype=np.float32))
        lo, hi = -s, s
    # lo + (hi - lo) * u in double, rounded to float32 and clipped (rounding may reach hi)
    k.vars.update(lo=repr(lo), hi=repr(hi))
    k.use_rng()


@kernel("UniformIntFill", template="fill.pyx.j2", macro="uniform_int",
        supports=_uniform_supported)
def uniform_int_fill(k: KernelSpec) -> None:
    """int32 uniform in [min, max], both ends included."""
    lo, hi = int(k.args.min), int(k.args.max)
    info = np.iinfo(np.int32)
    if not info.min <= lo < hi <= info.max:
        raise Unsupported(f"UniformIntFill min={lo}, max={hi}: the reference reports them")
    k.vars.update(lo=lo, span=hi - lo + 1)
    k.use_rng()
