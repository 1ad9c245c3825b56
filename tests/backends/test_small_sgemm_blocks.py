"""GEMMs run as blocks of rows that OpenBLAS's small-matrix sgemm kernel takes
(codegen/blas.small_block): FC, FCTransposed, their gradients, MatMul, BatchMatMul and the
conv gradients' sgemms, against the reference executor.

Where the machine's OpenBLAS has the kernel, a GEMM over its bound (M x N x K multiply-adds,
and for sgemm("T", "N") M x N) is cut into blocks of rows of column-major C. The blocks are
only a schedule: the result must not depend on them. The fixed cases use the real bound on
the benchmark nets' shapes (and, through `small_gemm`, none); the drawn cases shrink the
bound to a few thousand multiply-adds so that small GEMMs get ragged blocks of every kind.
"""
from unittest import mock

import numpy as np
from hypothesis import given, settings, strategies as st

from c2compile.codegen import blas
from tests.backends.cpu_harness import Case, check_cpu, kernel_source
from tests.backends.test_cpu_spatial import _cases, conv_case, conv_transpose_case
from tests.backends.test_cpu_spatial_grad import gradient_of

BLOCKS = "blocks of rows within OpenBLAS's small-matrix kernel"
TOL = dict(rtol=1e-4, atol=1e-4)
# A bound small enough that the drawn GEMMs (dims up to ~70) get blocks of 16 or 8 rows.
TINY_BOUND = 4096


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _block_loops(case: Case) -> list[str]:
    """The `for` lines of the case's kernel that walk blocks of rows."""
    return [line.strip() for line in kernel_source(case).splitlines() if BLOCKS in line]


def test_benchmark_gemms_run_in_blocks_the_small_kernel_takes(small_gemm):
    """The MLP's last FC (sgemm("T", "N") 10 x 64 over 1568: two blocks, 8 and 2 rows),
    LeNet's fc3 gradients (each thread's half in blocks of 16; FCTransposed's dW split by
    rows, in blocks of 32), a MatMul and a BatchMatMul with ragged last blocks (80 + 10,
    272 + 28 rows); without the kernel, each is one sgemm per thread."""
    rng = np.random.default_rng(7)
    r = lambda *s: _rand(rng, *s)  # noqa: E731
    cases = {
        "range(0, m, 8)": Case("FC", [r(64, 1568), r(10, 1568), r(10)], **TOL),
        "range(0, part_w[t_w], 16)|range(0, part_x[t_x], 16)":
            Case("FCGradient", [r(64, 800), r(500, 800), r(64, 500)], outputs=3, **TOL),
        "range(0, m_w, 32)|range(0, part_x[t_x], 16)":
            Case("FCTransposedGradient", [r(64, 800), r(800, 500), r(64, 500)], outputs=3,
                 **TOL),
        "range(0, m, 80)": Case("MatMul", [r(300, 40), r(40, 90)], **TOL),
        "range(0, m, 272)": Case("BatchMatMul", [r(3, 70, 50), r(3, 50, 300)], **TOL),
    }
    for loops, case in cases.items():
        found = _block_loops(case)
        expected = loops.split("|") if small_gemm else []
        assert len(found) == len(expected), (case.op_type, found)
        for line, want in zip(found, expected):
            assert line.startswith("for rb") and want in line, (case.op_type, line)
    check_cpu(list(cases.values()))


def test_lenet_conv2_gradient_runs_in_blocks_the_small_kernel_takes(small_gemm):
    """LeNet's conv2 gradient (50 channels over 20x5x5, 8x8 outputs), NCHW: dW in blocks of
    24 rows (sgemm("T", "N"): 24 x 50 within 1200), dcols in blocks of 32 pixels; NHWC's dW
    (sgemm("N", "T"), 6 images of 64 pixels over 50 channels) in blocks of 48 rows; as a
    ConvTranspose, its dX in blocks of 32 pixels too. An odd batch splits the images 5 / 6
    between two threads."""
    rng = np.random.default_rng(8)
    r = lambda *s: _rand(rng, *s)  # noqa: E731
    cases = [
        (("range(0, ck, 24)", "range(0, kk, 32)"), Case(
            "ConvGradient", [r(11, 20, 12, 12), r(50, 20, 5, 5), r(11, 50, 8, 8)],
            dict(kernel=5), outputs=3, **TOL)),
        (("range(0, ck, 48)",), Case(
            "ConvGradient", [r(11, 12, 12, 20), r(50, 5, 5, 20), r(11, 8, 8, 50)],
            dict(kernel=5, order="NHWC"), outputs=3, **TOL)),
        (("range(0, ck, 24)", "range(0, kk, 32)"), Case(
            "ConvTransposeGradient", [r(11, 50, 8, 8), r(50, 20, 5, 5), r(11, 20, 12, 12)],
            dict(kernel=5), outputs=3, **TOL)),
    ]
    for loops, case in cases:
        found = _block_loops(case)
        expected = list(loops) if small_gemm else []
        assert len(found) == len(expected), (case.op_type, case.args, found)
        for line, want in zip(found, expected):
            assert want in line, (case.op_type, case.args, line)
    check_cpu([case for _, case in cases])


@st.composite
def gemm_case(draw):
    """MatMul, BatchMatMul, FC or an FC gradient, any transposes, dims up to 70."""
    op_type = draw(st.sampled_from(["MatMul", "BatchMatMul", "FC", "FCTransposed",
                                    "FCGradient", "FCTransposedGradient"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # narrow sides (up to 16) and K from 32 give sgemm("T", "N") blocks under TINY_BOUND too
    side = st.one_of(st.integers(1, 16), st.integers(1, 70))
    m, k, n = draw(side), draw(st.one_of(st.integers(1, 31), st.integers(32, 60))), draw(side)
    if op_type in ("MatMul", "BatchMatMul"):
        ta, tb = draw(st.booleans()), draw(st.booleans())
        batch = (draw(st.integers(1, 3)),) if op_type == "BatchMatMul" else ()
        a = _rand(rng, *batch, *((k, m) if ta else (m, k)))
        b = _rand(rng, *batch, *((n, k) if tb else (k, n)))
        return Case(op_type, [a, b], dict(trans_a=int(ta), trans_b=int(tb)), **TOL)
    w = _rand(rng, *((k, n) if "Transposed" in op_type else (n, k)))
    if op_type.endswith("Gradient"):
        return Case(op_type, [_rand(rng, m, k), w, _rand(rng, m, n)],
                    outputs=draw(st.sampled_from([2, 3])), **TOL)
    return Case(op_type, [_rand(rng, m, k), w, _rand(rng, n)], **TOL)


@settings(max_examples=6, deadline=None)
@given(cases=st.lists(gemm_case(), min_size=4, max_size=8))
def test_gemms_in_ragged_blocks_match_the_reference(cases):
    with mock.patch.object(blas, "small_gemm_macs", lambda: TINY_BOUND):
        check_cpu(cases)


@settings(max_examples=4, deadline=None)
@given(cases=_cases(st.one_of(gradient_of(conv_case()), gradient_of(conv_transpose_case())),
                    6, 10))
def test_conv_gradients_in_ragged_blocks_match_the_reference(cases):
    with mock.patch.object(blas, "small_gemm_macs", lambda: TINY_BOUND):
        check_cpu(cases)
