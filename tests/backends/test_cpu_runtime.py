"""The Cython backend behind CreateNet/RunNet: partitioning, variants, errors, AOT, names."""
import numpy as np
import pytest

import c2compile
from c2compile import config, core, workspace
from c2compile.errors import BlobError, ShapeError
from c2compile.runtime.compiled import CythonSegment, ReferenceSegment
from cpu_harness import assert_compiled


def _feed_fc(n=4, k=3, m=5, dtype=np.float32, prefix=""):
    rng = np.random.default_rng(0)
    vals = {prefix + "X": rng.standard_normal((n, k)).astype(dtype),
            prefix + "W": rng.standard_normal((m, k)).astype(dtype),
            prefix + "b": rng.standard_normal(m).astype(dtype)}
    for name, v in vals.items():
        workspace.FeedBlob(name, v)
    return vals


def _fc_relu(v, p=""):
    return np.maximum(v[p + "X"] @ v[p + "W"].T + v[p + "b"], 0)


def test_created_net_runs_compiled_and_matches():
    v = _feed_fc()
    net = core.Net("fc_relu")
    net.FC(["X", "W", "b"], "Y")
    net.Relu("Y", "Y")
    workspace.CreateNet(net)
    assert_compiled(net.Name())
    for _ in range(3):  # persistent buffers: the in-place Relu reads last run's Y
        workspace.RunNet(net.Name())
        np.testing.assert_allclose(workspace.FetchBlob("Y"), _fc_relu(v), rtol=1e-5)
    got = workspace.FetchBlob("Y")
    got[...] = -1  # a fetched copy: the workspace's blob is not touched
    assert (workspace.FetchBlob("Y") >= 0).all()


def test_new_shapes_get_their_own_variant():
    net = core.Net("variants")
    net.FC(["X", "W", "b"], "Y")
    _feed_fc(n=4)
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    v = _feed_fc(n=7)
    workspace.RunNet(net.Name())
    np.testing.assert_allclose(workspace.FetchBlob("Y"), v["X"] @ v["W"].T + v["b"], rtol=1e-5)
    seg = workspace._ws().nets[net.Name()].compiled.segments[0]
    assert isinstance(seg, CythonSegment) and len(seg.variants) == 2


def test_bad_dtype_and_missing_input_leave_workspace_unchanged():
    net = core.Net("checked")
    net.FC(["X", "W", "b"], "Y", name="fc")
    _feed_fc()
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    before = workspace.FetchBlob("Y")
    _feed_fc(dtype=np.float64)
    with pytest.raises(ShapeError) as e:
        workspace.RunNet(net.Name())
    assert "op #0 (FC 'fc')" in str(e.value)
    np.testing.assert_array_equal(workspace.FetchBlob("Y"), before)
    other = core.Net("needs_z")
    other.Relu("Z", "out")
    workspace.FeedBlob("Z", np.ones(2, np.float32))
    workspace.CreateNet(other)
    workspace.ResetWorkspace()  # drops Z (and the nets); recreate with Z missing at run time
    workspace.FeedBlob("Z", np.ones(2, np.float32))
    workspace.CreateNet(other)
    del workspace._ws().blobs["Z"]
    with pytest.raises(BlobError, match="'Z'"):
        workspace.RunNet(other.Name())
    assert not workspace.HasBlob("out")


def test_python_op_splits_the_net_and_the_fallback_is_visible():
    v = _feed_fc()
    net = core.Net("split")
    net.FC(["X", "W", "b"], "Y")

    def negate(inputs, outputs):
        outputs[0].feed(-inputs[0].data)

    net.Python(negate)(["Y"], ["Z"])
    net.Relu("Z", "R")
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    segs = workspace._ws().nets[net.Name()].compiled.segments
    assert [type(s) for s in segs] == [CythonSegment, ReferenceSegment, CythonSegment]
    assert segs[1].why == "host-only op"
    np.testing.assert_allclose(workspace.FetchBlob("R"),
                               np.maximum(-(v["X"] @ v["W"].T + v["b"]), 0), rtol=1e-5)


def test_reference_backend_and_run_net_once_do_not_compile():
    _feed_fc()
    net = core.Net("ref")
    net.FC(["X", "W", "b"], "Y")
    with config.patch(backend="reference"):
        workspace.CreateNet(net)
    assert workspace._ws().nets[net.Name()].compiled is None
    workspace.RunNet(net.Name())
    workspace.RunNetOnce(net)


@pytest.mark.parametrize("weird", ['a"b', "new\nline", "back\\slash", "ünï/../cøde", "x'); import os #"])
def test_untrusted_names_never_reach_the_source(weird):
    v = _feed_fc(prefix=weird)
    net = core.Net(weird)
    net.FC([weird + "X", weird + "W", weird + "b"], weird + "Y", name=weird)
    net.Relu(weird + "Y", weird + "Y")
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    np.testing.assert_allclose(workspace.FetchBlob(weird + "Y"), _fc_relu(v, weird), rtol=1e-5)
    seg = workspace._ws().nets[net.Name()].compiled.segments[0]
    (variant,) = seg.variants.values()
    for line in variant.source.splitlines():
        if weird in line:
            assert line.lstrip().startswith("#"), line


def test_aot_compile_save_load_run(tmp_path):
    init = core.Net("init")
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    init.GivenTensorFill([], "W", shape=[5, 3], values=w.ravel().tolist())
    init.GivenTensorFill([], "b", shape=[5], values=b.tolist())
    pred = core.Net("pred")
    pred.AddExternalInput("data", "W", "b")
    pred.FC(["data", "W", "b"], "fc")
    pred.Relu("fc", "out")
    pred.AddExternalOutput("out")
    net = c2compile.compile(pred.Proto(), init.Proto(), inputs={"data": (2, 3)})
    seg = net.segments[0]
    assert len(seg.variants) == 1  # specialised before the first run
    x = rng.standard_normal((2, 3)).astype(np.float32)
    (y,) = net.run([x])
    np.testing.assert_allclose(y, np.maximum(x @ w.T + b, 0), rtol=1e-5)
    net.save(tmp_path / "art")
    loaded = c2compile.load(tmp_path / "art")
    (y2,) = loaded.run({"data": x})
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(BlobError, match="not inputs"):
        c2compile.compile(pred.Proto(), init.Proto(), inputs={"nope": (2, 3)})


def test_cli_compile_run_bench_show(tmp_path, capsys):
    from c2compile import cli
    init = core.Net("init")
    init.GivenTensorFill([], "W", shape=[4, 3], values=[0.5] * 12)
    init.ConstantFill([], "b", shape=[4], value=1.0)
    pred = core.Net("pred")
    pred.AddExternalInput("data", "W", "b")
    pred.FC(["data", "W", "b"], "out")
    pred.AddExternalOutput("out")
    (tmp_path / "init.pb").write_bytes(init.Proto().SerializeToString())
    (tmp_path / "pred.pb").write_bytes(pred.Proto().SerializeToString())
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    art = tmp_path / "art"
    assert cli.main(["compile", str(tmp_path / "pred.pb"), "--init", str(tmp_path / "init.pb"),
                     "--input", "data=2x3", "-o", str(art)]) == 0
    assert cli.main(["run", str(art), "--input", f"data={tmp_path / 'x.npy'}",
                     "--save-dir", str(tmp_path / "outs")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "outs" / "output0.npy"), np.full((2, 4), 2.5))
    assert cli.main(["bench", str(art), "--iters", "5", "--warmup", "1"]) == 0
    assert cli.main(["show", str(tmp_path / "pred.pb"), "--init", str(tmp_path / "init.pb"),
                     "--input", "data=2x3", "--partition", "--source"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "segment 0: compiled" in out and "cdef class Program" in out
    assert cli.main(["run", str(tmp_path / "nowhere")]) == 1
