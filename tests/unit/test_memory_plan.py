"""passes/memory.py: buffers whose lifetimes overlap never overlap in memory; the others
share it. Then a compiled net's planned arena against the same net's numbers."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from c2compile.passes.memory import ALIGN, Lifetime, layout


def _check(buffers, offsets, total):
    assert total % ALIGN == 0
    for b in buffers:
        assert offsets[b.key] % ALIGN == 0 and offsets[b.key] + b.size <= total
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.start <= b.end and b.start <= a.end and a.size and b.size:
                lo_a, lo_b = offsets[a.key], offsets[b.key]
                assert lo_a + a.size <= lo_b or lo_b + b.size <= lo_a, (a, b)


def test_disjoint_lifetimes_share_and_touching_ones_do_not():
    bufs = [Lifetime("a", 1000, 0, 1), Lifetime("b", 1000, 2, 3),   # a dies before b is made
            Lifetime("c", 100, 3, 4)]                               # b's last step makes c
    offsets, total = layout(bufs)
    _check(bufs, offsets, total)
    assert offsets["a"] == offsets["b"] == 0 and offsets["c"] >= 1000
    assert total == 1152  # 1000 rounded up to 1024, + 100 rounded up to 128


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 20), st.integers(0, 5)),
                min_size=1, max_size=30))
def test_layout_never_overlaps_live_buffers(specs):
    bufs = [Lifetime(i, size, start, start + length)
            for i, (size, start, length) in enumerate(specs)]
    offsets, total = layout(bufs)
    _check(bufs, offsets, total)
    # never worse than giving every buffer its own aligned space
    assert total <= sum(-(-b.size // ALIGN) * ALIGN for b in bufs)


def test_a_predictor_shares_its_private_buffers_and_computes_the_same():
    from c2compile import core, workspace
    from c2compile.aot import given_fill_net
    from c2compile.runtime.compiled import describe_rewrites
    from c2compile.workspace import Predictor
    rng = np.random.default_rng(0)
    net = core.Net("chain")
    blob = "x"
    for i in range(4):   # each value dies two steps after it is made
        net.Sigmoid(blob, f"s{i}")
        net.Add([f"s{i}", blob], f"a{i}")
        blob = f"a{i}"
    net.AddExternalOutput(blob)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    predictor = Predictor(given_fill_net({}), net.Proto())
    (got,) = predictor.run([x])
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)   # the reference
    np.testing.assert_allclose(got, workspace.FetchBlob(blob), rtol=1e-5, atol=1e-6)
    workspace.CreateNet(net)    # compiled, every blob kept: the same kernels, bit for bit
    workspace.RunNet(net)
    np.testing.assert_array_equal(got, workspace.FetchBlob(blob))
    (variant,) = predictor.segments[0].variants.values()
    assert describe_rewrites(variant.plan)[-1] == "7 buffers share 48 KiB (alone: 112 KiB)"
