"""passes/fusion.py: a Relu folded into the Conv or FC that produces its input.

Which Relus fold (the pass alone, no compiler), then the folded kernels against the numpy
reference on every path of their templates (NCHW one image per sgemm, split or not, small
images batched, split or not, NHWC; FC split by rows, by columns or not), through a Predictor
(whose intermediate blobs are private) and through RunNet (where only in-place Relus fold).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c2compile import core, workspace
from c2compile.aot import given_fill_net
from c2compile.ops.schema import BoundOp
from c2compile.passes.fusion import fold_activations
from c2compile.workspace import Predictor
from cpu_harness import reference_run

FOLDABLE = {"Conv", "FC"}


def _fold(net, private=()):
    ops = [BoundOp(op, i, "f") for i, op in enumerate(net.Proto().op)]
    return fold_activations(ops, private, lambda op, act: op.type in FOLDABLE)


def test_which_relus_fold():
    """{producer: (activation, keep)}: keep writes the pre-activation value too."""
    net = core.Net("public")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    assert _fold(net) == {0: (1, True)}       # y stays fetchable after RunNet
    assert _fold(net, private={"y"}) == {0: (1, False)}

    net = core.Net("in_place")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "y")
    assert _fold(net) == {0: (1, False)}      # the pre-activation version is overwritten

    net = core.Net("second_reader")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    net.Sigmoid("y", "s")
    assert _fold(net, private={"y"}) == {0: (1, True)}  # Sigmoid needs y itself

    net = core.Net("read_before_relu")
    net.FC(["x", "w", "b"], "y")
    net.Copy("y", "c")
    net.Relu("y", "y")
    assert _fold(net) == {}                   # Copy must see y before the Relu

    net = core.Net("output_used_between")     # z's old value is read before the Relu
    net.FC(["x", "w", "b"], "y")
    net.Copy("z", "c")
    net.Relu("y", "z")
    assert _fold(net, private={"y"}) == {}

    net = core.Net("not_foldable")
    net.Sigmoid("x", "y")
    net.Relu("y", "y")
    net.Relu("x", "x")                        # its input comes from outside the ops
    assert _fold(net, private={"y"}) == {}

    net = core.Net("later_version")           # the Relu reads the second FC's y
    net.FC(["x", "w", "b"], "y")
    net.Sigmoid("y", "s")
    net.FC(["s", "w2", "b"], "y")
    net.Relu("y", "y")
    assert _fold(net) == {2: (3, False)}


def _conv_relu_net(order="NCHW", **conv):
    net = core.Net("conv_relu_" + order)
    net.Conv(["x", "w", "b"], "y", order=order, **conv)
    net.Relu("y", "z")
    net.AddExternalOutput("z")
    return net


def _fc_relu_net():
    net = core.Net("fc_relu")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    net.AddExternalOutput("z")
    return net


def _reference(net, feeds: dict) -> np.ndarray:
    return reference_run(net, feeds)["z"]


def _predict(net, params: dict, x: np.ndarray) -> tuple[np.ndarray, str]:
    p = Predictor(given_fill_net(params), net.Proto())
    (z,) = p.run([x])
    source = "".join(v.source for seg in p.segments if seg.compiled for v in seg.variants.values())
    return z, source


def _conv_case(n, c, h, w, m, k, order="NCHW", seed=0, **conv):
    rng = np.random.default_rng(seed)
    shape = (n, c, h, w) if order == "NCHW" else (n, h, w, c)
    x = rng.standard_normal(shape).astype(np.float32)
    wshape = (m, c, k, k) if order == "NCHW" else (m, k, k, c)
    params = {"w": (rng.standard_normal(wshape) / np.sqrt(c * k * k)).astype(np.float32),
              "b": rng.standard_normal(m).astype(np.float32)}
    return _conv_relu_net(order, kernel=k, **conv), params, x


# each reaches one path of the conv template (families/spatial.py picks it from the sizes)
CONV_PATHS = {
    "one image, one thread": (1, 3, 9, 9, 4, 3, "NCHW", {}),
    "one image, one thread, pixel chunks": (1, 2, 40, 40, 3, 3, "NCHW", {}),
    "1x1 direct, channels split, pixel chunks": (1, 8, 24, 24, 600, 1, "NCHW", {}),
    "one image, pixels split": (1, 16, 56, 56, 64, 3, "NCHW", {"pad": 1}),
    "1x1 direct, pixels split": (1, 128, 55, 55, 64, 1, "NCHW", {}),
    "one image, channels split": (1, 64, 13, 13, 256, 3, "NCHW", {"pad": 1}),
    "1x1 direct, channels split": (1, 512, 13, 13, 1000, 1, "NCHW", {}),
    "small images batched": (5, 3, 7, 7, 6, 3, "NCHW", {}),
    "small images batched, split": (64, 20, 12, 12, 50, 5, "NCHW", {}),
    "big images one per sgemm, split": (64, 1, 28, 28, 20, 5, "NCHW", {}),
    "NHWC": (3, 4, 8, 8, 5, 3, "NHWC", {"pad": 1}),
    "NHWC 1x1 direct": (2, 4, 6, 6, 5, 1, "NHWC", {}),
}


@pytest.mark.parametrize("path", CONV_PATHS)
def test_folded_conv_relu_matches_the_reference(path, small_gemm):
    n, c, h, w, m, k, order, conv = CONV_PATHS[path]
    net, params, x = _conv_case(n, c, h, w, m, k, order, **conv)
    z, source = _predict(net, params, x)
    assert "(Relu, folded in)" in source and "_relu_f32(" in source
    for axis in ("pixels", "channels"):
        assert (f"two threads take output {axis}" in source) == (f"{axis} split" in path)
    want = _reference(net, {"x": x, **params})
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5)
    assert (z >= 0).all() and (z == 0).any()


def _run_net(net, feeds: dict) -> tuple[dict, str]:
    """RunNet (every blob fetchable): the fetched y and z, and the generated source."""
    for blob, value in feeds.items():
        workspace.FeedBlob(blob, value)
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    seg = workspace._ws().nets[net.Name()].compiled.segments[0]
    source = next(iter(seg.variants.values())).source
    return {b: workspace.FetchBlob(b) for b in ("y", "z")}, source


@pytest.mark.parametrize("path", CONV_PATHS)
def test_kept_fold_writes_both_conv_and_relu(path, small_gemm):
    """Under RunNet y stays fetchable: each conv path writes y and, from the same chunk,
    z = max(y, 0) into its second output."""
    n, c, h, w, m, k, order, conv = CONV_PATHS[path]
    net, params, x = _conv_case(n, c, h, w, m, k, order, **conv)
    got, source = _run_net(net, {"x": x, **params})
    assert "(Relu, folded in; its input kept)" in source and "_relu_into_f32(" in source
    want = reference_run(net, {"x": x, **params})
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["z"], want["z"], rtol=1e-4, atol=1e-5)
    assert (got["y"] < 0).any() and (got["z"] == np.maximum(got["y"], 0)).all()


@pytest.mark.parametrize("m,k,n", [(4, 3, 5), (64, 784, 1568), (2048, 256, 64)],
                         ids=["one thread", "columns split", "rows split"])
def test_folded_fc_relu_matches_the_reference(m, k, n):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, k)).astype(np.float32)
    params = {"w": (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32),
              "b": rng.standard_normal(n).astype(np.float32)}
    net = _fc_relu_net()
    z, source = _predict(net, params, x)
    assert "(Relu, folded in)" in source
    np.testing.assert_allclose(z, _reference(net, {"x": x, **params}), rtol=1e-4, atol=1e-5)
    got, source = _run_net(net, {"x": x, **params})  # kept fold: y and z both written
    assert "(Relu, folded in; its input kept)" in source
    np.testing.assert_allclose(got["y"], x @ params["w"].T + params["b"], rtol=1e-4, atol=1e-4)
    assert (got["z"] == np.maximum(got["y"], 0)).all()


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), hw=st.integers(1, 9), m=st.integers(1, 5),
       k=st.sampled_from([1, 3]), pad=st.integers(0, 2), stride=st.integers(1, 2),
       order=st.sampled_from(["NCHW", "NHWC"]))
def test_folded_conv_relu_on_drawn_shapes(n, c, hw, m, k, pad, stride, order):
    if hw + 2 * pad < k:
        return  # no output position: the op itself rejects it (tested in the op tests)
    net, params, x = _conv_case(n, c, hw, hw, m, k, order, seed=n * 100 + c, pad=pad,
                                stride=stride)
    z, _ = _predict(net, params, x)
    np.testing.assert_allclose(z, _reference(net, {"x": x, **params}), rtol=1e-4, atol=1e-5)


def test_a_pre_activation_another_op_reads_is_kept():
    """Predictor, y private but read by a Sigmoid too: the FC writes y and z together."""
    net = _fc_relu_net()
    net.Sigmoid("y", "s")
    net.AddExternalOutput("s")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    params = {"w": rng.standard_normal((4, 3)).astype(np.float32),
              "b": rng.standard_normal(4).astype(np.float32)}
    p = Predictor(given_fill_net(params), net.Proto())
    z, s = p.run([x])
    source = "".join(v.source for seg in p.segments if seg.compiled
                     for v in seg.variants.values())
    assert "(Relu, folded in; its input kept)" in source
    y = x @ params["w"].T + params["b"]
    np.testing.assert_allclose(z, np.maximum(y, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-y)), rtol=1e-5, atol=1e-6)


def test_nan_stays_nan_as_in_the_relu_op():
    x = np.array([[np.nan, 1.0], [-1.0, 2.0]], np.float32)
    params = {"w": np.eye(2, dtype=np.float32), "b": np.zeros(2, np.float32)}
    z, _ = _predict(_fc_relu_net(), params, x)
    assert np.isnan(z[0, 0]) and z[1, 0] == 0 and z[1, 1] == 2


def test_runnet_keeps_every_blob_and_folds_relus_keeping_their_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    for blob, value in {"x": x, "w": w, "b": b}.items():
        workspace.FeedBlob(blob, value)
    net = _fc_relu_net()
    net.FC(["z", "w2", "b2"], "u")
    net.Relu("u", "u")
    workspace.FeedBlob("w2", rng.standard_normal((2, 5)).astype(np.float32))
    workspace.FeedBlob("b2", np.zeros(2, np.float32))
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    y = x @ w.T + b
    np.testing.assert_allclose(workspace.FetchBlob("y"), y, rtol=1e-5)  # not folded away
    np.testing.assert_allclose(workspace.FetchBlob("z"), np.maximum(y, 0), rtol=1e-5)
    seg = workspace._ws().nets[net.Name()].compiled.segments[0]
    source = next(iter(seg.variants.values())).source
    assert source.count("(Relu, folded in)") == 2  # the in-place one (two comment lines)
    assert source.count("(Relu, folded in; its input kept)") == 2  # y -> z: y stays
    u = np.maximum(np.maximum(y, 0) @ workspace.FetchBlob("w2").T, 0)
    np.testing.assert_allclose(workspace.FetchBlob("u"), u, rtol=1e-5, atol=1e-6)


def test_show_partition_names_the_folded_relus_and_placed_inputs(tmp_path, capsys):
    from c2compile import cli
    net = core.Net("fire")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "r")
    net.Sigmoid("x", "s")
    net.Concat(["r", "s"], ["out", "info"], axis=1)
    net.AddExternalOutput("out")
    params = {"w": np.ones((3, 2), np.float32), "b": np.zeros(3, np.float32)}
    (tmp_path / "pred.pb").write_bytes(net.Proto().SerializeToString())
    (tmp_path / "init.pb").write_bytes(given_fill_net(params).SerializeToString())
    assert cli.main(["show", str(tmp_path / "pred.pb"), "--init", str(tmp_path / "init.pb"),
                     "--input", "x=1x2", "--partition"]) == 0
    out = capsys.readouterr().out
    assert "op #1 (Relu) folded into op #0 (FC)" in out
    assert "'r' computed in place in 'out'" in out and "'s' computed in place in 'out'" in out
