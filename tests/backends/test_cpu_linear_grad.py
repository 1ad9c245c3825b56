"""Cython kernels of the linear gradients against the reference executor: FCGradient and
FCTransposedGradient, and the MatMul / BatchMatMul ops that MatMul's and BatchMatMul's
gradient rules build. A training step of an FC net runs compiled end to end.

Each hypothesis example draws a list of cases and compiles them as one module (`check_cpu`).
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from c2compile import config, core, workspace
from c2compile.ops.testing import gradient_ops, run
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu
from tests.ops.test_linear_grad import batch_matmul_inputs, fc_inputs, matmul_inputs, seeds

SETTINGS = settings(max_examples=4, deadline=None)
TOL = dict(rtol=1e-4, atol=1e-5)


def _randn(draw, shape):
    seed = draw(seeds)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def fc_grad_case(draw):
    """FCGradient / FCTransposedGradient on the forward shapes of tests/ops, dY as Y or M x N,
    with or without dX."""
    transposed = draw(st.booleans())
    (x, w, _), args, (m, _, n) = draw(fc_inputs(transposed))
    forward = "FCTransposed" if transposed else "FC"
    y_shape = run(forward, [x, w, np.zeros(n, np.float32)], **args)[0].shape
    dy = _randn(draw, draw(st.sampled_from([y_shape, (m, n)])))
    return Case(forward + "Gradient", [x, w, dy], args, outputs=draw(st.sampled_from([2, 3])),
                **TOL)


@st.composite
def product_grad_cases(draw, op_type, inputs):
    """Cases of the gradient ops that op_type's rule builds, on a random output gradient."""
    ins, args = draw(inputs)[:2]
    names = [f"in{i}" for i in range(len(ins))]
    (y,) = run(op_type, ins, **args)
    _, grad_ops, _ = gradient_ops(op_type, names, ["Y"], **args)
    blobs = dict(zip(names, ins), Y_grad=_randn(draw, y.shape))
    return [Case(g.type, [blobs[i] for i in g.input], {a.name: a.i for a in g.arg}, **TOL)
            for g in grad_ops]


@SETTINGS
@given(cases=st.lists(fc_grad_case(), min_size=4, max_size=8))
def test_fc_gradients(cases):
    check_cpu(cases)


@SETTINGS
@given(mm=st.lists(product_grad_cases("MatMul", matmul_inputs()), min_size=2, max_size=4),
       bmm=st.lists(product_grad_cases("BatchMatMul", batch_matmul_inputs()), min_size=2,
                    max_size=4))
def test_matmul_and_batch_matmul_gradient_ops(mm, bmm):
    check_cpu([c for group in mm + bmm for c in group])


def test_fc_gradient_edge_cases():
    """Empty M, K or N (Caffe2 zeroes dW and db for an empty X), 1 x 1, and a large FC."""
    r = np.random.default_rng(0)
    f = lambda *s: r.standard_normal(s).astype(np.float32)   # noqa: E731
    check_cpu([
        Case("FCGradient", [f(0, 4), f(3, 4), f(0, 3)], outputs=3),           # M = 0
        Case("FCGradient", [f(2, 0), f(3, 0), f(2, 3)], outputs=3),           # K = 0: db = 0
        Case("FCGradient", [f(2, 4), f(0, 4), f(2, 0)], outputs=3),           # N = 0: dX = 0
        Case("FCTransposedGradient", [f(2, 3, 0), f(0, 5), f(2, 5)], dict(axis=1), outputs=3),
        Case("FCTransposedGradient", [f(1, 1), f(1, 1), f(1, 1)], outputs=2),
        Case("FCGradient", [f(64, 800), f(500, 800), f(64, 500)], outputs=3, rtol=1e-4,
             atol=1e-4),
    ])


def test_big_fc_gradients_split_both_products_between_two_threads():
    """Above SPLIT_MACS dW and dX each run as two halves in a prange (odd sizes: unequal
    halves), halving the bigger operand: square products split rows (dW's rows are W's, dX's
    are X's); a batch-64 FC's dW [500, 800] and dX [64, 800] split their columns."""
    from c2compile.codegen.cython.families.linear import SPLIT_MACS
    rng = np.random.default_rng(5)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = []
    for M, K, N in ((257, 255, 257), (64, 800, 500)):
        assert M * N * K >= SPLIT_MACS
        x, w, dy = f(M, K), f(N, K), f(M, N)
        cases += [Case("FCGradient", [x, w, dy], outputs=3, rtol=1e-4, atol=1e-3),
                  Case("FCTransposedGradient", [x, w.T.copy(), dy], outputs=3, rtol=1e-4,
                       atol=1e-3)]
    check_cpu(cases)
    net = list(workspace._ws().nets.values())[-1]
    (variant,) = net.compiled.segments[0].variants.values()
    assert variant.source.count("prange(2") == 8
    # batch 64: FC's dW [500, 800] and both dX [64, 800] split columns, FCTransposed's dW
    # [800, 500] rows; 257 x 255: FCTransposed's dW [255, 257] splits columns, the rest rows
    assert variant.source.count("two threads take cols [0, 400) and [400, 800)") == 3
    assert variant.source.count("two threads take rows [0, 400) and [400, 800)") == 1
    assert variant.source.count("two threads take cols [0, 128) and [128, 257)") == 1
    assert variant.source.count("two threads take rows") == 4


def _training_step(backend: str, feeds: dict):
    """Run FC -> SoftmaxWithLoss and its gradient ops once; returns every gradient."""
    workspace.ResetWorkspace()
    for name, value in feeds.items():
        workspace.FeedBlob(name, value)
    net = core.Net(f"train_{backend}")
    net.FC(["X", "W", "b"], "Y")
    net.MatMul(["Y", "V"], "Z", trans_b=1)
    net.SoftmaxWithLoss(["Z", "label"], ["P", "loss"], scale=2.0)
    grads = net.AddGradientOperators(["loss"])
    with config.patch(backend=backend):
        workspace.CreateNet(net)
        workspace.RunNet(net.Name())
    if backend == "cpu":
        assert_compiled(net.Name())
    types = [op.type for op in net.Proto().op]
    return types, {k: workspace.FetchBlob(str(grads[k])) for k in ("X", "W", "b", "V")}


def test_fc_training_step_runs_compiled():
    rng = np.random.default_rng(3)
    feeds = dict(X=rng.standard_normal((6, 5)).astype(np.float32),
                 W=rng.standard_normal((4, 5)).astype(np.float32),
                 b=rng.standard_normal(4).astype(np.float32),
                 V=rng.standard_normal((3, 4)).astype(np.float32),
                 label=rng.integers(0, 3, 6).astype(np.int32))
    types, compiled = _training_step("cpu", feeds)
    assert types == ["FC", "MatMul", "SoftmaxWithLoss", "ConstantFill",
                     "SoftmaxWithLossGradient", "MatMul", "MatMul", "FCGradient"]
    _, reference = _training_step("reference", feeds)
    for name, value in reference.items():
        np.testing.assert_allclose(compiled[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
