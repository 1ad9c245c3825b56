"""Concat inputs computed straight into the Concat's output (render.concat_placements):
the numbers are the reference's, every blob stays fetchable (the workspace gets views), and
only contiguous, once-used, segment-made inputs are placed."""
import numpy as np

from c2compile import core, workspace


def _run(net, feeds: dict) -> tuple[dict, str]:
    for blob, value in feeds.items():
        workspace.FeedBlob(blob, value)
    workspace.CreateNet(net)
    workspace.RunNet(net.Name())
    workspace.RunNet(net.Name())  # persistent buffers: a second run gives the same
    seg = workspace._ws().nets[net.Name()].compiled.segments[0]
    source = next(iter(seg.variants.values())).source
    return {b: workspace.FetchBlob(b) for b in workspace.Blobs()}, source


def _reference(net, feeds: dict) -> dict:
    previous = workspace.CurrentWorkspace()
    workspace.SwitchWorkspace("placement-reference", True)
    try:
        workspace.ResetWorkspace()
        for blob, value in feeds.items():
            workspace.FeedBlob(blob, value)
        workspace.RunNetOnce(net)
        return {b: workspace.FetchBlob(b) for b in workspace.Blobs()}
    finally:
        workspace.SwitchWorkspace(previous)


def _check(net, feeds):
    got, source = _run(net, feeds)
    want = _reference(net, feeds)
    assert got.keys() == want.keys()
    for blob in want:
        np.testing.assert_allclose(got[blob], want[blob], rtol=1e-6, err_msg=blob)
    return got, source


def test_batch_one_channel_concat_is_computed_in_place_and_all_blobs_fetchable():
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32)}
    net = core.Net("fire")
    net.Sigmoid("x", "a")
    net.Tanh("x", "b")
    net.Concat(["a", "b"], ["ab", "ab_info"])
    net.Concat(["ab", "x"], ["abx", "abx_info"])   # nested: ab itself sits inside abx
    net.Exp("a", "ea")                             # a placed value read again later
    got, source = _check(net, feeds)
    assert "a 1x3x5x5:float32 (in place in ab from element 0)" in source
    assert "b 1x3x5x5:float32 (in place in ab from element 75)" in source
    assert "ab 1x6x5x5:float32 (in place in abx from element 0)" in source
    assert got["ab_info"].tolist() == [3, 3] and got["abx_info"].tolist() == [6, 3]
    got["a"][...] = 7  # fetches are copies, views included
    assert (workspace.FetchBlob("abx")[0, :3] != 7).all()


def test_what_is_not_placed():
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 3, 4)).astype(np.float32),
             "y": rng.standard_normal((1, 3, 4)).astype(np.float32)}
    net = core.Net("kept")
    net.Sigmoid("x", "a")
    net.Concat(["a", "a"], ["aa", "aa_info"], axis=1)  # batch 2: rows interleave; a twice
    net.Sigmoid("y", "s")
    net.Concat(["s", "s"], ["ss", "ss_info"], axis=1)  # the same blob twice
    net.Concat(["y", "s"], ["ys", "ys_info"], axis=1)  # y comes from outside the segment
    _, source = _check(net, feeds)
    assert "in place in aa" not in source and "in place in ss" not in source
    assert "s 1x3x4:float32 (in place in ys from element 12)" in source
