"""Cython kernels of the elementwise gradient ops against the reference executor.

Every unary gradient op (on data with NaN/inf/0 mixed in, in place where Caffe2 allows it),
Add/Sub/Mul/DivGradient with numpy and legacy (broadcast=1, axis/axis_str) broadcasting,
in place over dC, every dtype they take, SumReduceLike, Max/MinGradient and CopyOnDeviceLike.
Each hypothesis example compiles a list of cases as one module (`check_cpu`), and one whole
backward net is compiled and compared with the reference run.
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from c2compile import core, workspace
from c2compile.ops.elementwise import _UNARY_GRADIENTS
from c2compile.runtime.compiled import ReferenceSegment
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu, compiled_outputs
from tests.backends.cpu_harness import reference_outputs, run_both
from tests.backends.test_cpu_elementwise import (
    SPECIALS, _data, _unary_args, legacy_shapes, numpy_shapes, shapes)
from tests.ops.test_elementwise_grad import legacy_view

SETTINGS = settings(max_examples=4, deadline=None)
GRADIENTS = {t: (fwd, operands.split(), allowed, inplace)
             for t, fwd, operands, allowed, inplace, _ in _UNARY_GRADIENTS}


def _atol(*arrays) -> float:
    """Absolute tolerance for results built from products of these arrays: gcc may fuse
    a * b + c (FMA), which rounds once where numpy rounds twice, so `1 - y * y` near y = 1
    or a sum of products differs by about one float32 ulp of the terms."""
    scale = 1.0
    for a in arrays:
        finite = np.abs(a[np.isfinite(a)]) if a.size else np.zeros(0)
        scale *= max(1.0, float(finite.max()) if finite.size else 1.0)
    return 1e-6 * scale


# ----------------------------------------------------------------------------- unary

@st.composite
def unary_gradient_case(draw):
    op_type = draw(st.sampled_from(sorted(GRADIENTS)))
    fwd, operands, allowed, inplace = GRADIENTS[op_type]
    dtype = draw(st.sampled_from(allowed))
    shape = draw(shapes(dims=(0, 1, 2, 3, 5, 7, 16)))
    ins = [_data(draw, shape, dtype) for _ in operands]
    place = {0: inplace[0][0]} if inplace and draw(st.booleans()) else {}
    dy = ins[operands.index("dY")]
    return Case(op_type, ins, _unary_args(draw, fwd), inplace=place, rtol=1e-4,
                atol=_atol(dy) if dy.dtype.kind == "f" else 0)


@SETTINGS
@given(cases=st.lists(unary_gradient_case(), min_size=8, max_size=12))
def test_unary_gradients(cases):
    check_cpu(cases)


def test_every_unary_gradient_op():
    """Each gradient op on every pair of special and ordinary values, with its arguments."""
    r = np.random.default_rng(3)
    v = np.concatenate([SPECIALS, r.standard_normal(12) * 3, [0.5, -0.5, 0.99, 1e-30]])
    x = np.repeat(v, v.size).astype(np.float32)  # every (x or y, dy) pair
    dy = np.tile(v, v.size).astype(np.float32)
    args = {"LeakyRelu": [{}, dict(alpha=-0.5)], "Elu": [dict(alpha=0.5)],
            "Clip": [{}, dict(min=-0.5, max=0.5), dict(min=2.0, max=-1.0)]}
    cases = []
    for op_type, (fwd, operands, allowed, _) in GRADIENTS.items():
        for a in args.get(fwd, [{}]):
            ins = [dy if o == "dY" else x for o in operands]
            cases.append(Case(op_type, ins, a, rtol=1e-4, atol=_atol(dy)))
        if np.int32 in allowed:
            i32 = np.iinfo(np.int32)
            big = np.int32([i32.min, i32.max, -7, 7, 0, 3])
            cases.append(Case(op_type, [big, big[::-1].copy()]))
    check_cpu(cases)


# ----------------------------------------------------------------------------- binary

@st.composite
def binary_gradient_case(draw):
    """dC, A, B (and Div's C) with A and B drawn as for the forward ops."""
    op_type = draw(st.sampled_from(["AddGradient", "SubGradient", "MulGradient",
                                    "DivGradient"]))
    dtypes = [np.float32, np.float64] + ([np.int32, np.int64] if op_type != "DivGradient"
                                         else [])
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if draw(st.integers(0, 2)):
        (a_shape, b_shape), args = draw(numpy_shapes()), {}
        c_shape = np.broadcast_shapes(a_shape, b_shape)
    else:
        a_shape, b_shape, args = draw(legacy_shapes())
        c_shape = a_shape
    specials = draw(st.integers(0, 3)) == 0
    a = _data(draw, a_shape, dtype, small_ints=True, specials=specials)
    b = _data(draw, b_shape, dtype, small_ints=True, specials=specials)
    dc = _data(draw, c_shape, dtype, small_ints=True, specials=specials)
    ins = [dc, a, b]
    if op_type == "DivGradient":
        b[np.abs(b) < 0.5] = 0.5   # keeps -dC * C / B in range of the tolerance
        with np.errstate(all="ignore"):
            ins.append((a / np.reshape(b, legacy_view(a_shape, b_shape, args))).astype(dtype))
        if tuple(a_shape) == tuple(c_shape) and draw(st.booleans()):
            ins = [b, ins[3], dc]  # Caffe2's older (B, C, dC) form
    place = {}                                           # an output over input 0 (dC or B)
    older_div = op_type == "DivGradient" and len(ins) == 3
    da_shape = c_shape if older_div else a_shape
    if tuple(da_shape) == ins[0].shape and draw(st.booleans()):
        place = {0: 0}
    elif op_type != "DivGradient" and tuple(b_shape) == ins[0].shape and draw(st.booleans()):
        place = {1: 0}                                   # (Div's schema has no dB pair)
    terms = dc.size // max(1, min(a.size, b.size))      # most terms summed into one element
    return Case(op_type, ins, args, outputs=2, inplace=place, rtol=1e-4,
                atol=0 if dtype.kind == "i" else _atol(*ins) * max(1, terms))


@SETTINGS
@given(cases=st.lists(binary_gradient_case(), min_size=8, max_size=12))
def test_binary_gradients(cases):
    check_cpu(cases)


def test_binary_gradient_edges():
    """Empty and 0-d operands, a scalar B, integer wrap-around, a big bias-like reduction."""
    r = np.random.default_rng(4)
    f = np.float32
    big = r.standard_normal((8, 16, 9, 11)).astype(f)
    bias = r.standard_normal(16).astype(f)
    i32 = np.iinfo(np.int32)
    wrap = np.int32([i32.min, i32.max, -1, 3])
    cases = [
        Case("AddGradient", [big, big, bias], dict(broadcast=1, axis=1), outputs=2,
             rtol=1e-4, atol=1e-3),
        Case("MulGradient", [big, big, bias.reshape(1, 16, 1, 1)], outputs=2, rtol=1e-4,
             atol=1e-3),
        Case("SubGradient", [np.zeros((0, 3), f), np.zeros((0, 3), f), np.ones(3, f)],
             outputs=2),
        Case("MulGradient", [np.zeros((0, 3), f), np.ones((1, 3), f), np.zeros((0, 1), f)],
             outputs=2),
        Case("DivGradient", [f(2.0).reshape(()), f(3.0).reshape(()), f(4.0).reshape(()),
                             f(0.75).reshape(())], outputs=2),
        Case("DivGradient", [big, big, np.full((1, 1), 2.5, f), big / 2.5],
             dict(broadcast=1), outputs=2, rtol=1e-4, atol=1e-2),
        Case("DivGradient", [bias[:11] + 3, big[0], big[1]], outputs=2, rtol=1e-4,
             atol=1e-4),                                 # the older (B, C, dC) form
        Case("DivGradient", [np.float32([[2], [4]]), big[0, :2, 0], big[1, :2, 0]],
             dict(broadcast=1, axis=0), outputs=2, rtol=1e-4, atol=1e-5),
        Case("MulGradient", [wrap, wrap, wrap[::-1].copy()], outputs=2),
        Case("SubGradient", [wrap, wrap, np.int32([5])], outputs=2),
        Case("AddGradient", [wrap.astype(np.int64) * 2**40, wrap.astype(np.int64),
                             np.int64([1]).reshape(1, 1)], dict(broadcast=1), outputs=2),
    ]
    check_cpu(cases)


def test_integer_div_gradient_runs_on_the_reference():
    """C++ integer division has no kernel here: the op falls back and says so."""
    x = np.arange(1, 7, dtype=np.int32).reshape(2, 3)
    case = Case("DivGradient", [x, x, np.int32([2, -3, 4]), x], outputs=2)
    (got,) = compiled_outputs([case], expect_compiled=False)
    for g, w in zip(got, reference_outputs(case, 0)):
        np.testing.assert_array_equal(g, w)
    (net,) = workspace._ws().nets.values()
    segments = [v for s in net.compiled.segments for v in [s, *getattr(s, "variants", {}).values()]]
    fallbacks = [s for s in segments if isinstance(s, ReferenceSegment)]
    assert fallbacks and "C++ integer division" in str(fallbacks[0].why)


# ----------------------------------------------------------------------------- the others

@st.composite
def reduction_case(draw):
    """SumReduceLike (B placed as broadcast=1 places it), Max/MinGradient (ties included:
    rounded data) and CopyOnDeviceLike."""
    op_type = draw(st.sampled_from(["SumReduceLike", "MaxGradient", "MinGradient",
                                    "CopyOnDeviceLike"]))
    if op_type == "SumReduceLike":
        a_shape, b_shape, args = draw(legacy_shapes())
        args.pop("broadcast")
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        a = _data(draw, a_shape, dtype)
        like = np.zeros(b_shape, draw(st.sampled_from([np.float32, np.int64])))
        return Case(op_type, [a, like], args, rtol=1e-4, atol=_atol(a) * max(1, a.size))
    shape = draw(shapes())
    if op_type == "CopyOnDeviceLike":
        dtype = draw(st.sampled_from([np.float32, np.int64, np.bool_, np.uint8]))
        return Case(op_type, [_data(draw, shape, dtype), np.zeros(2, np.float32)])
    xs = [_data(draw, shape, np.float32) for _ in range(draw(st.integers(1, 4)))]
    pick = np.maximum if op_type == "MaxGradient" else np.minimum
    y = xs[0]
    for x in xs[1:]:
        y = pick(y, x)
    return Case(op_type, [y, _data(draw, shape, np.float32), *xs],
                outputs=draw(st.integers(1, len(xs))))


@SETTINGS
@given(cases=st.lists(reduction_case(), min_size=8, max_size=12))
def test_sum_reduce_like_select_gradients_and_copy(cases):
    check_cpu(cases)


# ----------------------------------------------------------------------------- a whole net

def test_backward_net_of_elementwise_ops_compiles_and_matches_the_reference():
    """Forward ops with broadcasting and in-place steps, their gradient ops from
    AddGradientOperators, one compiled module, compared blob by blob with the reference."""
    r = np.random.default_rng(5)
    feeds = {"x": r.uniform(0.5, 2, (4, 3, 5)).astype(np.float32),
             "w": r.uniform(0.5, 2, (3,)).astype(np.float32),
             "b": r.standard_normal((3, 1)).astype(np.float32),
             "e": r.uniform(-1, 1, (5,)).astype(np.float32),
             "gz": r.standard_normal((4, 3, 5)).astype(np.float32)}
    net = core.Net("elementwise_backward")
    net.Mul(["x", "w"], "xw", broadcast=1, axis=1)
    net.Add(["xw", "b"], "h")                      # numpy broadcasting over dims 0 and 2
    net.Sigmoid("h", "s")
    net.Pow(["s", "e"], "p", broadcast=1)
    net.Div(["p", "x"], "q")
    net.Scale("q", "u", scale=0.5)
    net.LeakyRelu("u", "u", alpha=0.2)              # in place: Scale's gradient needs no u
    net.Tanh("u", "t")
    net.Sqrt("x", "r")
    net.Max(["t", "r"], "m")
    net.Sub(["m", "s"], "z")
    net.AddGradientOperators({"z": "gz"})
    grads = ["x_grad", "w_grad", "b_grad", "e_grad"]

    got, segs = run_both(net, feeds, grads, rtol=1e-4, atol=1e-5)
    assert len(segs) == 1 and segs[0].compiled
    assert_compiled(net.Name())
    for name in grads:
        assert got[name].shape == feeds[name[:-5]].shape, name
