"""Concat inputs computed straight into the Concat's output (render.concat_placements):
the numbers are the reference's, every blob stays fetchable (the workspace gets views), and
only contiguous, once-used, segment-made inputs are placed."""
import numpy as np

from c2compile import core, workspace
from cpu_harness import run_both


def _check(net, feeds):
    """The cpu run's blobs (all equal to the reference's) and its generated source."""
    got, segments = run_both(net, feeds, rtol=1e-6)
    (variant,) = segments[0].variants.values()
    return got, variant.source


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
