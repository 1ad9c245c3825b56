"""Cython kernels of Conv, ConvTranspose, MaxPool, AveragePool, LRN and SpatialBN against the
reference executor, plus the real SqueezeNet 1.1 predict net end to end.

Each hypothesis example draws a list of cases (geometries, argument spellings, layouts) and
compiles them as one module (`check_cpu`). Geometries the op itself rejects are dropped
while drawing, by asking the op's own shape rule.
"""
import numpy as np
from hypothesis import assume, given, settings, strategies as st

from c2compile import config, core, workspace
from c2compile.errors import C2Error
from c2compile.ops.schema import TensorType, bind
from tests.backends.cpu_harness import Case, assert_compiled, check_cpu

SETTINGS = settings(max_examples=4, deadline=None)
TOL = dict(rtol=1e-4, atol=1e-5)
F32 = np.dtype(np.float32)


def _randn(draw, shape, scale=1.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _valid(op_type, inputs, args, outputs=1) -> bool:
    """Whether the op's own shape rule takes these inputs and arguments."""
    try:
        op = bind(core.CreateOperator(op_type, [f"x{i}" for i in range(len(inputs))],
                                      [f"y{j}" for j in range(outputs)], **args))
        op.opdef.infer(op, *(TensorType(np.shape(x), np.asarray(x).dtype) for x in inputs))
    except C2Error:
        return False
    return True


def _spatial_args(draw, nd, *, pool=False, dilation=True):
    """Kernel/stride/dilation/pads/legacy_pad in one of Caffe2's spellings."""
    kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
    stride = [draw(st.integers(1, 3)) for _ in range(nd)]
    dil = [draw(st.sampled_from([1, 1, 2])) for _ in range(nd)] if dilation else [1] * nd
    legacy = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
    if legacy == 2 or legacy == 3 or pool:
        dil = [1] * nd
    hi = [k - 1 for k in kernel] if pool else [4] * nd   # Conv: pads may exceed the kernel
    pads = [draw(st.integers(0, h)) for h in hi] + [draw(st.integers(0, h)) for h in hi]
    if legacy == 3:
        pads = pads[:nd] * 2
    args = dict(legacy_pad=legacy) if legacy else {}
    if nd == 2 and draw(st.booleans()):   # the 2-d only spellings
        if kernel[0] == kernel[1] and draw(st.booleans()):
            args["kernel"] = kernel[0]
        else:
            args.update(kernel_h=kernel[0], kernel_w=kernel[1])
        if stride != [1, 1] or draw(st.booleans()):
            args.update(stride_h=stride[0], stride_w=stride[1])
        if dil != [1, 1]:
            args.update(dilation_h=dil[0], dilation_w=dil[1])
        if legacy not in (1, 2) and any(pads):
            if len(set(pads)) == 1:
                args["pad"] = pads[0]
            else:
                args.update(pad_t=pads[0], pad_l=pads[1], pad_b=pads[2], pad_r=pads[3])
    else:
        args["kernels"] = kernel
        if stride != [1] * nd or draw(st.booleans()):
            args["strides"] = stride
        if dil != [1] * nd:
            args["dilations"] = dil
        if legacy not in (1, 2) and any(pads):
            args["pads"] = pads
    return kernel, args


@st.composite
def conv_case(draw, nd=None):
    """Conv: 1-3 spatial axes, NCHW/NHWC, groups, bias or not, every padding form."""
    nd = nd or draw(st.sampled_from([1, 2, 2, 2, 3]))
    kernel, args = _spatial_args(draw, nd)
    nhwc = draw(st.booleans())
    G = draw(st.sampled_from([1, 1, 2, 3]))
    Cg, Mg, N = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 8 if nd < 3 else 5)) for _ in range(nd)]
    if nhwc:
        args["order"] = "NHWC"
        x, w = [N, *sizes, G * Cg], [G * Mg, *kernel, Cg]
    else:
        x, w = [N, G * Cg, *sizes], [G * Mg, Cg, *kernel]
    if G > 1:
        args["group"] = G
    ins = [_randn(draw, x), _randn(draw, w)]
    if draw(st.booleans()):
        ins.append(_randn(draw, (G * Mg,)))
    if not _valid("Conv", ins, args):
        return None
    return Case(draw(st.sampled_from(["Conv", f"Conv{nd}D"])), ins, args, **TOL)


@st.composite
def pool_case(draw):
    """MaxPool/AveragePool: 1-3 axes, both layouts, legacy pads, global, count_include_pad."""
    nd = draw(st.sampled_from([1, 2, 2, 2, 3]))
    op_type = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 9 if nd < 3 else 5)) for _ in range(nd)]
    if draw(st.integers(0, 5)) == 0:
        args = dict(global_pooling=1)
        if draw(st.booleans()):
            args["kernel" if nd == 2 else "kernels"] = 0 if nd == 2 else [0] * nd
    else:
        _, args = _spatial_args(draw, nd, pool=True, dilation=False)
    if op_type == "AveragePool" and draw(st.booleans()):
        args["count_include_pad"] = 1
    nhwc = draw(st.booleans())
    if nhwc:
        args["order"] = "NHWC"
    x = [N, *sizes, C] if nhwc else [N, C, *sizes]
    ins = [_randn(draw, x)]
    if not _valid(op_type, ins, args):
        return None
    return Case(draw(st.sampled_from([op_type, f"{op_type}{nd}D"])), ins, args, **TOL)


@st.composite
def conv_transpose_case(draw):
    """ConvTranspose (2-d): stride, asymmetric pads, adj < stride, groups, both layouts."""
    kernel = [draw(st.integers(1, 4)) for _ in range(2)]
    stride = [draw(st.integers(1, 3)) for _ in range(2)]
    args = dict(kernels=kernel, strides=stride)
    legacy = draw(st.sampled_from([0, 0, 0, 1, 2]))
    if legacy:
        args["legacy_pad"] = legacy
    elif draw(st.booleans()):
        args["pads"] = [draw(st.integers(0, 3)) for _ in range(4)]
    if draw(st.booleans()):
        args["adjs"] = [draw(st.integers(0, s - 1)) for s in stride]
    G = draw(st.sampled_from([1, 1, 2]))
    Mg, Cg, N = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    H, W = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if G > 1:
        args["group"] = G
    if draw(st.booleans()):
        args["order"] = "NHWC"
        x, w = [N, H, W, G * Mg], [G * Mg, *kernel, Cg]
    else:
        x, w = [N, G * Mg, H, W], [G * Mg, Cg, *kernel]
    ins = [_randn(draw, x), _randn(draw, w)]
    if draw(st.booleans()):
        ins.append(_randn(draw, (G * Cg,)))
    if not _valid("ConvTranspose", ins, args):
        return None
    return Case("ConvTranspose", ins, args, **TOL)


def _cases(strategy, lo=6, hi=10):
    return st.lists(strategy, min_size=lo, max_size=hi).map(lambda cs: [c for c in cs if c])


@SETTINGS
@given(_cases(conv_case()))
def test_conv(cases):
    assume(len(cases) >= 3)
    check_cpu(cases)


@SETTINGS
@given(_cases(st.one_of(conv_transpose_case(), pool_case()), 8, 12))
def test_conv_transpose_and_pooling(cases):
    assume(len(cases) >= 4)
    check_cpu(cases)


def test_conv_edge_geometries():
    """Written out: pad >= kernel, stride > kernel, SAME crops, legacy pooling windows, an
    empty batch, 1x1 fast paths (per image and batched), the contiguous-rows im2col."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    cases = [
        Case("Conv", [r(2, 3, 4, 5), r(4, 3, 2, 2), r(4)], dict(kernel=2, pad=3), **TOL),
        Case("Conv", [r(1, 2, 9, 9), r(3, 2, 2, 2)], dict(kernel=2, stride=4), **TOL),
        Case("Conv", [r(1, 2, 7, 8), r(3, 2, 1, 1)], dict(kernel=1, stride=3, legacy_pad=2),
             **TOL),
        Case("Conv", [r(1, 2, 7), r(3, 2, 3)], dict(kernels=[3], strides=[4], legacy_pad=2),
             **TOL),
        Case("Conv", [r(0, 3, 5, 5), r(4, 3, 3, 3), r(4)], dict(kernel=3), **TOL),
        Case("Conv", [r(3, 4, 5, 5), r(6, 4, 1, 1), r(6)], dict(kernel=1), **TOL),
        Case("Conv", [r(1, 6, 6, 7), r(4, 3, 1, 1)], dict(kernel=1, group=2), **TOL),
        Case("Conv", [r(2, 5, 7, 6), r(8, 1, 1, 6), r(8)], dict(kernel=1, order="NHWC"), **TOL),
        Case("Conv", [r(1, 3, 12, 11), r(5, 3, 3, 5), r(5)],
             dict(kernel_h=3, kernel_w=5, pad_t=1, pad_b=1, pad_l=2, pad_r=2), **TOL),
        Case("Conv", [r(1, 2, 12, 11), r(5, 2, 3, 3)], dict(kernel=3, pad=2, dilation=2), **TOL),
        Case("MaxPool", [r(1, 3, 113, 113)], dict(kernel=3, stride=2, legacy_pad=3)),
        Case("AveragePool", [r(2, 3, 8, 8)], dict(kernel=3, stride=2, pad=1, legacy_pad=3)),
        Case("AveragePool", [r(1, 1000, 13, 13)], dict(global_pooling=1)),
        Case("MaxPool", [r(2, 9, 9, 3)], dict(kernel=4, stride=3, legacy_pad=2,
                                               order="NHWC")),
    ]
    check_cpu(cases)


def test_max_pool_propagates_nan():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    x[0, 0, 1, 1] = np.nan
    x[1, 0, 0, 0] = np.nan
    out = check_cpu([Case("MaxPool", [x], dict(kernel=2, stride=2)),
                     Case("MaxPool", [x], dict(global_pooling=1)),
                     Case("MaxPool", [np.ascontiguousarray(x.transpose(0, 2, 3, 1))],
                          dict(kernel=3, stride=1, pad=1, order="NHWC"))])
    assert np.isnan(out[0][0][0, 0, 0, 0]) and np.isnan(out[1][0]).all()


# ----------------------------------------------------------------------------- LRN / SpatialBN

@st.composite
def lrn_case(draw):
    order = draw(st.sampled_from(["NCHW", "NHWC"]))
    shape = [draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 5)),
             draw(st.integers(1, 5))]
    args = dict(size=draw(st.sampled_from([1, 3, 5, 7])),
                alpha=draw(st.sampled_from([1e-4, 1e-3, 0.5])),
                beta=draw(st.sampled_from([0.75, 0.5, 1.0])),
                bias=draw(st.sampled_from([1.0, 2.0])), order=order)
    return Case("LRN", [_randn(draw, shape)], args, outputs=draw(st.sampled_from([1, 2])))


@st.composite
def bn_case(draw):
    """SpatialBN: test mode (in place or not) and training mode with the running statistics
    updated in place, num_batches > 1 from the sums inputs, any rank >= 3."""
    order = draw(st.sampled_from(["NCHW", "NHWC"]))
    C = draw(st.integers(1, 5))
    rest = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 3)))]
    N = draw(st.integers(1, 3))
    shape = [N, C, *rest] if order == "NCHW" else [N, *rest, C]
    stats = [_randn(draw, (C,)), _randn(draw, (C,)), _randn(draw, (C,)),
             np.abs(_randn(draw, (C,))) + 0.1]
    args = dict(order=order, epsilon=draw(st.sampled_from([1e-5, 1e-3])))
    x = _randn(draw, shape, scale=draw(st.sampled_from([1.0, 10.0])))
    if draw(st.booleans()):
        args["is_test"] = 1
        inplace = {0: 0} if draw(st.booleans()) else {}
        return Case("SpatialBN", [x, *stats], args, inplace=inplace, **TOL)
    args["momentum"] = draw(st.sampled_from([0.9, 0.5, 0.0, 1.0]))
    ins = [x, *stats]
    inplace = {1: 3, 2: 4}
    k = draw(st.sampled_from([1, 1, 2, 3]))
    if k > 1:   # sums and sums of squares of k batches like X
        args["num_batches"] = k
        n = x.size // C
        mean = _randn(draw, (C,))
        ins += [(mean * n * k).astype(np.float32),
                ((mean ** 2 + np.abs(_randn(draw, (C,))) + 0.5) * n * k).astype(np.float32)]
        if draw(st.booleans()):
            inplace.update({3: 5, 4: 6})
    return Case("SpatialBN", ins, args, outputs=5, inplace=inplace, **TOL)


@SETTINGS
@given(_cases(st.one_of(lrn_case(), bn_case()), 6, 10))
def test_lrn_and_spatial_bn(cases):
    check_cpu(cases)


def test_spatial_bn_edges():
    """An empty batch (running stats pass through), one value per channel (the unbiased
    variance is NaN, as Caffe2), running stats of the wrong size (start from zeros)."""
    rng = np.random.default_rng(1)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    pos = lambda *s: np.abs(r(*s)) + 0.1  # noqa: E731
    cases = [
        Case("SpatialBN", [r(0, 3, 2), r(3), r(3), r(3), pos(3)], dict(), outputs=5,
             inplace={1: 3, 2: 4}),
        Case("SpatialBN", [r(1, 3, 1), r(3), r(3), r(3), pos(3)], dict(), outputs=5,
             inplace={1: 3, 2: 4}),
        Case("SpatialBN", [r(2, 4, 3, 3), r(3), r(3), r(2), pos(5)], dict(order="NHWC"),
             outputs=5, inplace={1: 3, 2: 4}, **TOL),
        Case("SpatialBN", [r(2, 3, 4, 4), r(3), r(3), r(3), pos(3)], dict(is_test=1),
             inplace={0: 0}, **TOL),
    ]
    check_cpu(cases)


def test_in_place_ops_run_twice():
    """In-place pairs across runs: the second RunNet reads the buffer the first one wrote."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    stats = [rng.standard_normal(3).astype(np.float32) for _ in range(3)]
    var = np.abs(rng.standard_normal(3)).astype(np.float32) + 0.1
    for name, v in zip(["x", "s", "b", "rm", "rv"], [x, *stats, var]):
        workspace.FeedBlob(name, v)
    net = core.Net("bn_twice")
    net.SpatialBN(["x", "s", "b", "rm", "rv"], ["y", "rm", "rv", "sm", "siv"], momentum=0.5)
    net.SpatialBN(["y", "s", "b", "rm", "rv"], ["y"], is_test=1)
    with config.patch(backend="cpu"):
        workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    workspace.RunNet(net.Name())
    assert_compiled(net.Name())
    got = {n: workspace.FetchBlob(n) for n in ("y", "rm", "rv")}

    with config.patch(backend="reference"):
        workspace.ResetWorkspace()
        for name, v in zip(["x", "s", "b", "rm", "rv"], [x, *stats, var]):
            workspace.FeedBlob(name, v)
        workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        workspace.RunNet(net.Name())
        for n, g in got.items():
            np.testing.assert_allclose(g, workspace.FetchBlob(n), rtol=1e-5, atol=1e-6,
                                       err_msg=n)


# ----------------------------------------------------------------------------- SqueezeNet

def test_squeezenet_predict_net():
    """The real SqueezeNet 1.1 predict net, every op compiled, against the reference."""
    from conftest import load_netdef, squeezenet_init_net
    predict = load_netdef("squeezenet_predict.pb")
    predict.name = "squeezenet"
    data = np.random.default_rng(3).standard_normal((1, 3, 227, 227)).astype(np.float32)
    results = {}
    for backend in ("cpu", "reference"):
        with config.patch(backend=backend):
            workspace.ResetWorkspace()
            workspace.RunNetOnce(squeezenet_init_net())
            workspace.FeedBlob("data", data)
            workspace.CreateNet(predict)
            workspace.RunNet(predict.name)
            if backend == "cpu":
                assert_compiled(predict.name)
                seg = workspace._ws().nets[predict.name].compiled.segments[0]
                (variant,) = seg.variants.values()
                # conv1 and the big expand convs take the two-thread (split pixels) path
                assert "for half in prange(2" in variant.source
            results[backend] = {b: workspace.FetchBlob(b) for b in ("pool10", "softmaxout")}
    assert results["cpu"]["softmaxout"].shape == (1, 1000, 1, 1)
    for blob in ("pool10", "softmaxout"):
        np.testing.assert_allclose(results["cpu"][blob], results["reference"][blob],
                                   rtol=1e-4, atol=1e-7, err_msg=blob)
