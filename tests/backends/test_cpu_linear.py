"""Cython kernels of FC, FCTransposed, MatMul and BatchMatMul against the reference executor.

Each hypothesis example draws a list of cases and compiles them as one module (`check_cpu`).
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from tests.backends.cpu_harness import Case, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
dim = st.integers(1, 7)
TOL = dict(rtol=1e-4, atol=1e-5)


def _randn(draw, shape):
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def fc_case(draw):
    """FC or FCTransposed with X flattened at any axis (either sign), W split anywhere."""
    op_type = draw(st.sampled_from(["FC", "FCTransposed"]))
    x_shape = draw(st.lists(dim, min_size=1, max_size=4))
    axis = draw(st.integers(0, len(x_shape) - 1))
    k = int(np.prod(x_shape[axis:]))
    n = draw(dim)
    lead = draw(st.sampled_from([[n], [1, n], [n, 1]]))
    tail = draw(st.sampled_from([[k], list(x_shape[axis:])]))
    w_shape = tail + lead if op_type == "FCTransposed" else lead + tail
    split = len(tail) if op_type == "FCTransposed" else len(lead)
    args = dict(axis=draw(st.sampled_from([axis, axis - len(x_shape)])),
                axis_w=draw(st.sampled_from([split, split - len(w_shape)])))
    return Case(op_type, [_randn(draw, x_shape), _randn(draw, w_shape), _randn(draw, (n,))],
                args, **TOL)


@st.composite
def matmul_case(draw):
    """MatMul of A, B flattened at axis_a / axis_b, any trans flags, optional shape input."""
    ta, tb = draw(st.booleans()), draw(st.booleans())
    m, k, n = draw(dim), draw(dim), draw(dim)
    a2 = (k, m) if ta else (m, k)
    b2 = (n, k) if tb else (k, n)

    def shaped(rows, cols):
        """A shape flattening to rows x cols at some axis; returns (shape, axis)."""
        lead = draw(st.sampled_from([[rows], [1, rows]] + ([[rows, 1]] if rows > 1 else [])))
        tail = draw(st.sampled_from([[cols], [cols, 1], [1, cols]]))
        return lead + tail, len(lead)

    a_shape, ax_a = shaped(*a2)
    b_shape, ax_b = shaped(*b2)
    args = dict(trans_a=int(ta), trans_b=int(tb), axis_a=ax_a, axis_b=ax_b - len(b_shape))
    ins = [_randn(draw, a_shape), _randn(draw, b_shape)]
    if draw(st.booleans()):   # third input: gives Y its shape only
        ins.append(np.zeros(draw(st.sampled_from([(m * n,), (m, n, 1), (1, m * n)])), np.float32))
    return Case("MatMul", ins, args, **TOL)


@st.composite
def bmm_case(draw):
    """BatchMatMul: broadcast batch dims, 1-D operands, trans flags."""
    ta, tb = draw(st.booleans()), draw(st.booleans())
    m, k, n = draw(dim), draw(dim), draw(dim)
    kind = draw(st.sampled_from(["mat", "mat", "mat", "vec_a", "vec_b", "dot"]))
    batch = draw(st.lists(st.integers(1, 3), max_size=3))

    def operand_batch():
        b = [d if draw(st.booleans()) else 1 for d in batch]
        return b[draw(st.integers(0, len(b))):]

    a_shape = operand_batch() + ([k, m] if ta else [m, k])
    b_shape = operand_batch() + ([n, k] if tb else [k, n])
    if kind in ("vec_a", "dot"):
        a_shape = [k]
    if kind in ("vec_b", "dot"):
        b_shape = [k]
    nd = max(len(a_shape), len(b_shape)) - 2
    pad = lambda s: [1] * (nd - len(s[:-2])) + list(s[:-2])   # noqa: E731
    args = dict(trans_a=int(ta), trans_b=int(tb))
    if kind == "mat" and (pad(a_shape) != pad(b_shape) or draw(st.booleans())):
        args["broadcast"] = 1
    return Case("BatchMatMul", [_randn(draw, a_shape), _randn(draw, b_shape)], args, **TOL)


@SETTINGS
@given(cases=st.lists(st.one_of(fc_case(), matmul_case()), min_size=6, max_size=10))
def test_fc_and_matmul(cases):
    check_cpu(cases)


@SETTINGS
@given(cases=st.lists(bmm_case(), min_size=6, max_size=10))
def test_batch_matmul(cases):
    check_cpu(cases)


def test_linear_edge_cases():
    """Empty M/N/K, batch matrices sharing B that fold into one sgemm, big FC."""
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)   # noqa: E731
    check_cpu([
        Case("FC", [f(0, 4), f(3, 4), f(3)]),                        # M = 0
        Case("FC", [f(2, 0), f(3, 0), f(3)]),                        # K = 0: Y = b
        Case("FCTransposed", [f(2, 3, 0), f(0, 5), f(5)], dict(axis=1)),
        Case("MatMul", [f(3, 0), f(0, 4)]),                          # K = 0: zeros
        Case("MatMul", [f(0, 2), f(2, 4)]),
        Case("BatchMatMul", [f(0, 3, 4), f(0, 4, 5)]),
        Case("BatchMatMul", [f(2, 3, 0), f(2, 0, 5)]),
        Case("BatchMatMul", [f(0), f(0)]),                           # dot of empties: [0]
        Case("BatchMatMul", [f(4, 2, 3, 5), f(5, 6)], dict(broadcast=1)),      # folds into M
        Case("BatchMatMul", [f(4, 2, 3, 5), f(1, 1, 5, 6)], dict(broadcast=1)),
        Case("BatchMatMul", [f(2, 1, 3, 4), f(5, 4, 2)], dict(broadcast=1, trans_b=0)),
        # 800 products of N(0, 1) entries: |Y| ~ 28, so float32 sums in another order
        # than numpy's differ by ~sqrt(800) * 2^-24 * 28 (4e-5 measured)
        Case("FC", [f(64, 800), f(500, 800), f(500)], rtol=1e-4, atol=2e-4),
    ])


def test_big_fcs_split_between_two_threads():
    """Above SPLIT_MACS an FC (or MatMul) runs as two halves in a prange, halving its bigger
    operand: a wide output (batch 65 x 500) splits its columns (each thread half of W), a
    tall one (601 x 101) its rows; odd sizes give unequal halves."""
    from c2compile import workspace
    from c2compile.codegen.cython.families.linear import SPLIT_MACS
    rng = np.random.default_rng(5)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = []
    for M, K, N in ((65, 800, 500), (601, 300, 101)):
        assert M * N * K >= SPLIT_MACS
        x, w, b = f(M, K), f(N, K), f(N)
        cases += [Case("FC", [x, w, b], rtol=1e-4, atol=1e-3),
                  Case("FCTransposed", [x, w.T.copy(), b], rtol=1e-4, atol=1e-3)]
    # MatMul with every transpose flag: A stored K x M (trans_a), B stored N x K (trans_b)
    for M, K, N in ((65, 800, 501), (601, 300, 100)):
        for ta in (0, 1):
            for tb in (0, 1):
                a = f(K, M) if ta else f(M, K)
                b = f(N, K) if tb else f(K, N)
                cases.append(Case("MatMul", [a, b], dict(trans_a=ta, trans_b=tb), rtol=1e-4,
                                  atol=1e-3))
    check_cpu(cases)
    net = [n for n in workspace._ws().nets.values()][-1]
    (variant,) = net.compiled.segments[0].variants.values()
    assert variant.source.count("prange(2") == 12
    # FC's batch of 65 takes the small-batch form (C = X W^T), FCTransposed the general one
    assert variant.source.count("two threads take output columns [0, 250) and [250, 500)") == 1
    assert variant.source.count("two threads take cols [0, 250) and [250, 500)") == 1
    assert variant.source.count("two threads take rows [0, 300) and [300, 601)") == 6
    assert variant.source.count("two threads take cols [0, 250) and [250, 501)") == 4


def test_small_batch_fcs_compute_x_times_w_transposed(small_gemm):
    """FC of up to SWAP_MAX_ROWS rows, fewer than its columns: sgemm computes C = X W^T
    (column-major) and each column goes into Y with its bias. Batch 1, the boundary batches
    128 and 129, a square FC (no), one thread and two, K under 32. With OpenBLAS's small
    sgemm kernel, C comes in blocks of columns it takes (M x NC <= 1200, M x NC x K <= 10^6,
    K >= 32), ragged last blocks included."""
    from c2compile import workspace
    from c2compile.codegen.cython.families.linear import SPLIT_MACS, SWAP_MAX_ROWS
    rng = np.random.default_rng(6)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    shapes = [(1, 1568, 784), (SWAP_MAX_ROWS, 40, SWAP_MAX_ROWS + 3),
              (SWAP_MAX_ROWS + 1, 40, SWAP_MAX_ROWS + 3), (7, 9, 7), (100, 700, 401),
              (5, 20, 64)]
    assert 100 * 700 * 401 >= SPLIT_MACS
    check_cpu([Case("FC", [f(M, K), f(N, K), f(N)], rtol=1e-4, atol=1e-3)
               for M, K, N in shapes])
    net = [n for n in workspace._ws().nets.values()][-1]
    (variant,) = net.compiled.segments[0].variants.values()
    assert variant.source.count("sgemm(\"T\", \"N\") computes C = X W^T") == 4
    blocks = {632: 1, 8: 2} if small_gemm else {}
    assert variant.source.count("columns at a time") == sum(blocks.values())
    for columns, count in blocks.items():
        assert variant.source.count(f"# {columns} columns at a time") == count
    assert variant.source.count("two threads take output columns [0, 200) and [200, 401)") == 1
