"""net_drawer: the graphs Caffe2's net_drawer made, and pictures of them with or without `dot`.

The literals below are what Caffe2 1.10.2's `caffe2.python.net_drawer` (with pydot 1.4.2)
produced for the same nets, read back as plain text: DOT quoting removed, so a node name is
the string Caffe2 built (blob nodes are json-quoted in the .dot file, op nodes quoted by pydot).
"""
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import textwrap
from collections import Counter

import hypothesis.strategies as st
import matplotlib.image
import networkx as nx
import numpy as np
import pydot
import pytest
from hypothesis import given, settings
from scipy import ndimage

from c2compile import cli, core, gradient_checker, net_drawer
from c2compile.dot_matplotlib import _unquote
from c2compile.errors import C2Error
from c2compile.proto import caffe2_pb2
from conftest import MODELS, load_netdef

OP = {"shape": "box", "color": "#0F9D58", "style": "filled", "fontcolor": "#FFFFFF"}
SUBSTEP = {"arrowhead": "dot", "style": "dashed"}


def _text(value) -> str:
    return _unquote(str(value))


def structure(graph):
    """({node name: {attribute: value}}, [(source, destination, {attribute: value})]), in
    the order they were added; a node name appears once."""
    names = [_text(n.get_name()) for n in graph.get_nodes()]
    assert len(names) == len(set(names)), "a node was added twice"
    nodes = {_text(n.get_name()): {k: _text(v) for k, v in n.get_attributes().items()}
             for n in graph.get_nodes()}
    edges = [(_text(e.get_source()), _text(e.get_destination()),
              {k: _text(v) for k, v in e.get_attributes().items()}) for e in graph.get_edges()]
    return nodes, edges


def digest(graph) -> str:
    nodes, edges = structure(graph)
    return hashlib.sha256(json.dumps([sorted(nodes.items()), edges], sort_keys=True)
                          .encode()).hexdigest()


def small_net():
    """In-place Relu, a blob read twice by one op, a blob overwritten by a later op, names."""
    net = core.Net("small")
    net.Proto().name = "small"  # core.Net makes names unique per process; keep this one
    net.Proto().op.extend([
        core.CreateOperator("Conv", ["data", "w", "b"], ["conv1"], name="conv1", kernel=3),
        core.CreateOperator("Relu", ["conv1"], ["conv1"]),
        core.CreateOperator("FC", ["conv1", "fc_w", "fc_b"], ["fc"]),
        core.CreateOperator("Add", ["fc", "fc"], ["fc2"]),
        core.CreateOperator("Copy", ["conv1"], ["fc"]),
        core.CreateOperator("Sum", ["fc", "fc2"], ["out"], name='say "hi"'),
    ])
    return net


# Caffe2's GetPydotGraph(small_net()).
SMALL_NODES = {
    "conv1/Conv (op#0)": OP,
    "data0": {"label": "data", "shape": "octagon"},
    "w0": {"label": "w", "shape": "octagon"},
    "b0": {"label": "b", "shape": "octagon"},
    "conv10": {"label": "conv1", "shape": "octagon"},
    "Relu (op#1)": OP,
    "conv11": {"label": "conv1", "shape": "octagon"},
    "FC (op#2)": OP,
    "fc_w0": {"label": "fc_w", "shape": "octagon"},
    "fc_b0": {"label": "fc_b", "shape": "octagon"},
    "fc0": {"label": "fc", "shape": "octagon"},
    "Add (op#3)": OP,
    "fc20": {"label": "fc2", "shape": "octagon"},
    "Copy (op#4)": OP,
    "fc1": {"label": "fc", "shape": "octagon"},
    'say "hi"/Sum (op#5)': OP,
    "out0": {"label": "out", "shape": "octagon"},
}
SMALL_EDGES = [
    ("data0", "conv1/Conv (op#0)"), ("w0", "conv1/Conv (op#0)"), ("b0", "conv1/Conv (op#0)"),
    ("conv1/Conv (op#0)", "conv10"), ("conv10", "Relu (op#1)"), ("Relu (op#1)", "conv11"),
    ("conv11", "FC (op#2)"), ("fc_w0", "FC (op#2)"), ("fc_b0", "FC (op#2)"),
    ("FC (op#2)", "fc0"), ("fc0", "Add (op#3)"), ("fc0", "Add (op#3)"), ("Add (op#3)", "fc20"),
    ("conv11", "Copy (op#4)"), ("Copy (op#4)", "fc1"), ("fc1", 'say "hi"/Sum (op#5)'),
    ("fc20", 'say "hi"/Sum (op#5)'), ('say "hi"/Sum (op#5)', "out0"),
]
# Caffe2's GetPydotGraphMinimal(small_net()), with or without minimal_dependency.
SMALL_MINIMAL_EDGES = [
    ("conv1/Conv (op#0)", "Relu (op#1)"), ("Relu (op#1)", "FC (op#2)"),
    ("FC (op#2)", "Add (op#3)"), ("FC (op#2)", "Add (op#3)"), ("Relu (op#1)", "Copy (op#4)"),
    ("Copy (op#4)", 'say "hi"/Sum (op#5)'), ("Add (op#3)", 'say "hi"/Sum (op#5)'),
]


# ----------------------------------------------------------------------------- graphs

def test_styles_are_caffe2s():
    assert net_drawer.OP_STYLE == OP
    assert net_drawer.BLOB_STYLE == {"shape": "octagon"}


def test_small_net_matches_caffe2():
    graph = net_drawer.GetPydotGraph(small_net())
    assert isinstance(graph, pydot.Dot)
    assert graph.get_name() == "small" and graph.get_attributes() == {"rankdir": "LR"}
    nodes, edges = structure(graph)
    assert nodes == SMALL_NODES and list(nodes) == list(SMALL_NODES)
    assert [(a, b) for a, b, attrs in edges] == SMALL_EDGES
    assert all(attrs == {} for _, _, attrs in edges)


def test_netdef_net_and_op_list_draw_the_same():
    net = small_net()
    expected = structure(net_drawer.GetPydotGraph(net))
    for source, name in ((net.Proto(), "small"), (list(net.Proto().op), "unnamed"),
                         (net.Proto().op, "unnamed")):
        graph = net_drawer.GetPydotGraph(source)
        assert graph.get_name() == name and structure(graph) == expected
    graph = net_drawer.GetPydotGraph(net, name="x", rankdir="TB")
    assert graph.get_name() == "x" and graph.get_attributes() == {"rankdir": "TB"}


def test_minimal_graph_matches_caffe2():
    for minimal_dependency in (False, True):
        graph = net_drawer.GetPydotGraphMinimal(small_net(), minimal_dependency=minimal_dependency)
        nodes, edges = structure(graph)
        assert nodes == {n: a for n, a in SMALL_NODES.items() if "(op#" in n}
        assert [(a, b) for a, b, _ in edges] == SMALL_MINIMAL_EDGES


def test_minimal_dependency_drops_implied_edges():
    # Caffe2: Add reads y (from op 0) and z (from op 1, which read y): 0 -> 2 is implied.
    ops = [core.CreateOperator("Relu", ["x"], ["y"]), core.CreateOperator("Relu", ["y"], ["z"]),
           core.CreateOperator("Add", ["y", "z"], ["w"])]
    full = structure(net_drawer.GetPydotGraphMinimal(ops))[1]
    assert [(a, b) for a, b, _ in full] == [("Relu (op#0)", "Relu (op#1)"),
                                            ("Relu (op#0)", "Add (op#2)"),
                                            ("Relu (op#1)", "Add (op#2)")]
    minimal = structure(net_drawer.GetPydotGraphMinimal(ops, minimal_dependency=True))[1]
    assert [(a, b) for a, b, _ in minimal] == [("Relu (op#0)", "Relu (op#1)"),
                                               ("Relu (op#1)", "Add (op#2)")]


def test_node_producers():
    producer = net_drawer.GetOpNodeProducer(True, **net_drawer.OP_STYLE)
    nodes, edges = structure(net_drawer.GetPydotGraph(small_net(), op_node_producer=producer))
    # Caffe2: the outputs follow the op's name, one a line
    assert "conv1/Conv (op#0)\nconv1" in nodes and 'say "hi"/Sum (op#5)\nout' in nodes
    assert edges[0][:2] == ("data0", "conv1/Conv (op#0)\nconv1")
    blobs = net_drawer.GetBlobNodeProducer(shape="ellipse", color="red")
    nodes, _ = structure(net_drawer.GetPydotGraph(small_net(), blob_node_producer=blobs))
    assert nodes["conv11"] == {"label": "conv1", "shape": "ellipse", "color": "red"}


def test_bad_input_is_named():
    plan = caffe2_pb2.PlanDef(name="p")
    with pytest.raises(C2Error, match="GetPlanGraph"):
        net_drawer.GetPydotGraph(plan)
    with pytest.raises(C2Error, match="holds a str"):
        net_drawer.GetPydotGraph(["Relu"])

    class NotANet:
        def Proto(self):
            return caffe2_pb2.OperatorDef()
    with pytest.raises(C2Error, match="Expecting NetDef"):
        net_drawer.GetPydotGraphMinimal(NotANet())


def test_versioned_names_never_merge_two_blobs():
    # Deviation: Caffe2 named "a1" at version 0 and "a" at version 10 both "a10" and drew
    # them as one node (so the Add seemed to read one blob twice). Here the later is "a#10".
    ops = ([core.CreateOperator("Copy", ["a1"], ["b"])]
           + [core.CreateOperator("Relu", ["a"], ["a"]) for _ in range(10)]
           + [core.CreateOperator("Add", ["a", "a1"], ["c"])])
    nodes, edges = structure(net_drawer.GetPydotGraph(ops))
    assert nodes["a10"]["label"] == "a1" and nodes["a#10"]["label"] == "a"
    assert [(a, b) for a, b, _ in edges[-3:]] == [("a#10", "Add (op#11)"),
                                                  ("a10", "Add (op#11)"), ("Add (op#11)", "c0")]


BLOB_NAMES = ["a", "b", "a1", "x/y", 'q"']


@st.composite
def op_lists(draw):
    n = draw(st.integers(0, 14))
    return [core.CreateOperator(draw(st.sampled_from(["Relu", "Sum", "Split"])),
                                draw(st.lists(st.sampled_from(BLOB_NAMES), max_size=3)),
                                draw(st.lists(st.sampled_from(BLOB_NAMES), max_size=3)),
                                name=draw(st.sampled_from(["", "n"])))
            for _ in range(n)]


@settings(max_examples=60, deadline=None)
@given(op_lists())
def test_graph_follows_blob_versions(ops):
    """Against a plain model of SSA versions: a blob starts at version 0 when first read or
    written, every write of a blob already seen makes the next version, and version v of
    blob b is the node "bv" ("b#v" when another blob version has that name already)."""
    version, node_of, expected = {}, {}, []

    def blob_node(b):
        key = (b, version[b])
        if key not in node_of:
            name = f"{b}{version[b]}"
            while name in node_of.values():
                name = f"{b}#{version[b]}" if name == f"{b}{version[b]}" else name + "#"
            node_of[key] = name
        return node_of[key]

    for i, op in enumerate(ops):
        op_node = f"{op.name}/{op.type} (op#{i})" if op.name else f"{op.type} (op#{i})"
        for b in op.input:
            version.setdefault(b, 0)
            expected.append((blob_node(b), op_node))
        for b in op.output:
            version[b] = version[b] + 1 if b in version else 0
            expected.append((op_node, blob_node(b)))
    nodes, edges = structure(net_drawer.GetPydotGraph(ops))
    # pydot lists the edges between one pair of nodes together, so compare as multisets
    assert Counter(e[:2] for e in edges) == Counter(expected)
    assert {n: a for n, a in nodes.items() if "(op#" not in n} == {
        name: {"label": b, "shape": "octagon"} for (b, _), name in node_of.items()}
    assert len(nodes) == len(ops) + len(node_of)
    assert nx.is_directed_acyclic_graph(nx.MultiDiGraph([e[:2] for e in edges]))
    # the minimal graph: last writer -> reader, one edge per input
    writer, minimal = {}, []
    for i, op in enumerate(ops):
        minimal += [(writer[b], i) for b in op.input if b in writer]
        writer.update(dict.fromkeys(op.output, i))
    _, min_edges = structure(net_drawer.GetPydotGraphMinimal(ops))
    index = {n: i for i, n in enumerate(n for n in nodes if "(op#" in n)}
    assert Counter((index[a], index[b]) for a, b, _ in min_edges) == Counter(minimal)


def test_json_matches_caffe2(tmp_path):
    path = tmp_path / "g.json"
    net_drawer.GetGraphInJson(small_net(), str(path))
    blob = lambda i, label: {"id": i, "label": label, "type": "blob"}  # noqa: E731
    op = lambda i, label, op_id: {"id": i, "label": label, "op_id": op_id, "type": "op"}  # noqa: E731
    assert json.loads(path.read_text()) == {
        "nodes": [op(0, "conv1/Conv", 0), blob(1, "data"), blob(2, "w"), blob(3, "b"),
                  blob(4, "conv1"), op(5, "Relu", 1), blob(6, "conv1"), op(7, "FC", 2),
                  blob(8, "fc_w"), blob(9, "fc_b"), blob(10, "fc"), op(11, "Add", 3),
                  blob(12, "fc2"), op(13, "Copy", 4), blob(14, "fc"),
                  op(15, 'say "hi"/Sum', 5), blob(16, "out")],
        "edges": [{"source": s, "target": t} for s, t in [
            (1, 0), (2, 0), (3, 0), (0, 4), (4, 5), (5, 6), (6, 7), (8, 7), (9, 7), (7, 10),
            (10, 11), (10, 11), (11, 12), (6, 13), (13, 14), (14, 15), (12, 15), (15, 16)]]}


# ----------------------------------------------------------------------------- plans

def small_plan():
    net = small_net().Proto()
    plan = caffe2_pb2.PlanDef(name="plan")
    plan.network.add().CopyFrom(net)
    plan.network.add().op.extend(net.op[:2])
    outer = plan.execution_step.add(name="outer", num_iter=2)
    outer.substep.add(name="train", network=["small", "init"], report_net="rep")
    parallel = outer.substep.add(name="par", concurrent_substeps=True)
    for i in range(5):
        parallel.substep.add(name=f"w{i}", network=["small"], only_once=True)
    plan.execution_step.add(name="last", network=["small"], should_stop_blob="stop")
    return plan


def test_plan_graph_matches_caffe2():
    assert {k: [o.type for o in ops]
            for k, ops in net_drawer.GetOperatorMapForPlan(small_plan()).items()} == {
        "plan_small": ["Conv", "Relu", "FC", "Add", "Copy", "Sum"],
        "plan_network_1": ["Conv", "Relu"]}
    graph = net_drawer.GetPlanGraph(small_plan())
    assert graph.get_attributes() == {"rankdir": "TB"}
    nodes, edges = structure(graph)
    train, par, last = "train\n\nReporter: rep", "par\n\nConcurrent", "last\n\nStopper: stop"
    once = [f"w{i}\n\nOnce" for i in range(3)]
    assert nodes == {"outer\n": OP, train: OP, "small": {}, "init": {}, par: OP,
                     **dict.fromkeys(once, OP), "2 more steps": OP, last: OP}
    assert edges == [("small", "init", {}), (train, "small", SUBSTEP), (train, par, {}),
                     *[(w, "small", SUBSTEP) for w in once], *[(par, w, SUBSTEP) for w in once],
                     (par, "2 more steps", SUBSTEP), ("outer\n", train, SUBSTEP),
                     ("outer\n", last, {}), (last, "small", SUBSTEP)]
    named = net_drawer.GetPlanGraph(small_plan(), name="p", rankdir="LR")
    assert named.get_name() == "p" and structure(named) == (nodes, edges)


def test_core_plan_draws_as_its_plandef():
    net = small_net()
    plan = core.Plan("p")
    plan.AddStep(core.execution_step("train", net, num_iter=3))
    assert structure(net_drawer.GetPlanGraph(plan)) == \
        structure(net_drawer.GetPlanGraph(plan.Proto()))
    assert list(net_drawer.GetOperatorMapForPlan(plan)) == ["p_small"]
    with pytest.raises(C2Error, match="plan 'p' holds several nets"):
        net_drawer.GetPydotGraph(plan)


def test_plan_step_without_work_is_named():
    plan = caffe2_pb2.PlanDef(name="p")
    plan.execution_step.add(name="empty")
    with pytest.raises(C2Error, match="'empty' has neither nets nor substeps"):
        net_drawer.GetPlanGraph(plan)


# ----------------------------------------------------------------------------- SqueezeNet

def test_squeezenet_matches_caffe2(tmp_path):
    net = load_netdef("squeezenet_predict.pb")
    graph = net_drawer.GetPydotGraph(net)
    nodes, edges = structure(graph)
    ops = [n for n in nodes if "(op#" in n]
    assert (len(nodes), len(ops), len(edges)) == (191, 65, 198)
    # the first fire module as Caffe2 drew it
    assert [e[:2] for e in edges[12:30]] == [
        ("fire2/squeeze1x10", "Relu (op#4)"), ("Relu (op#4)", "fire2/squeeze1x1_o0"),
        ("fire2/squeeze1x1_o0", "Conv (op#5)"), ("fire2/expand1x1_w0", "Conv (op#5)"),
        ("fire2/expand1x1_b0", "Conv (op#5)"), ("Conv (op#5)", "fire2/expand1x10"),
        ("fire2/expand1x10", "Relu (op#6)"), ("Relu (op#6)", "fire2/expand1x1_o0"),
        ("fire2/squeeze1x1_o0", "Conv (op#7)"), ("fire2/expand3x3_w0", "Conv (op#7)"),
        ("fire2/expand3x3_b0", "Conv (op#7)"), ("Conv (op#7)", "fire2/expand3x30"),
        ("fire2/expand3x30", "Relu (op#8)"), ("Relu (op#8)", "fire2/expand3x3_o0"),
        ("fire2/expand1x1_o0", "Concat (op#9)"), ("fire2/expand3x3_o0", "Concat (op#9)"),
        ("Concat (op#9)", "fire2/concat0"), ("Concat (op#9)", "_fire2/concat_dims0")]
    # the whole structure: nodes, attributes and edges, hashed
    assert digest(graph) == "2d53d071186d2791d2a08749514270139437246208f1e6c4589ba2aa69a05dfd"
    for minimal_dependency in (False, True):
        minimal = net_drawer.GetPydotGraphMinimal(net, minimal_dependency=minimal_dependency)
        assert len(minimal.get_edges()) == 72
        assert digest(minimal) == \
            "17e0f64765393868073c2275c3bf6dc90ccabd467018639de76bf97909446e7b"
    net_drawer.GetGraphInJson(net, str(tmp_path / "sq.json"))
    data = json.loads((tmp_path / "sq.json").read_text())
    assert hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest() == \
        "7e62b6ceef8f8b99550e30bb739279e1aa19f3b5993effcd4d96db4b1925c1a4"


# ----------------------------------------------------------------------------- pictures

def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, after checking the signature and the IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def green_boxes(path) -> int:
    """How many separate patches of the op color (#0F9D58) the picture has."""
    rgb = matplotlib.image.imread(str(path))[..., :3]
    mask = np.all(np.abs(rgb - np.array([0x0F, 0x9D, 0x58]) / 255) < 0.02, axis=-1)
    # the label's letters are holes in a box (and their own holes, like o's, green islands)
    return ndimage.label(ndimage.binary_fill_holes(mask))[1]


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr(net_drawer.shutil, "which", lambda name: None)


def test_matplotlib_picture_of_small_net(tmp_path, no_dot):
    path = tmp_path / "small.png"
    assert net_drawer.write_png(small_net(), str(path)) == "matplotlib"
    width, height = png_size(path.read_bytes())
    assert 600 < width < 3000 and 80 < height < width  # left to right: wider than tall
    assert green_boxes(path) == 6  # one green box per op
    graph = net_drawer.GetPydotGraph(small_net(), rankdir="TB")
    assert net_drawer.write_png(graph, str(path), renderer="matplotlib") == "matplotlib"
    width, height = png_size(path.read_bytes())
    assert height > width and green_boxes(path) == 6


def test_matplotlib_picture_of_squeezenet(tmp_path, no_dot):
    net = load_netdef("squeezenet_predict.pb")
    path = tmp_path / "sq.png"
    assert net_drawer.write_png(net, str(path)) == "matplotlib"
    data = path.read_bytes()
    width, height = png_size(data)
    assert width > 10 * height and len(data) > 100_000
    assert green_boxes(path) == 65
    assert net_drawer.write_png(net_drawer.GetPydotGraphMinimal(net), str(path)) == "matplotlib"
    assert green_boxes(path) == 65 and png_size(path.read_bytes())[0] < width


def test_matplotlib_draws_plans_and_other_formats(no_dot):
    data, used = net_drawer.render(small_plan(), "png")
    assert used == "matplotlib" and png_size(data)[1] > png_size(data)[0]  # TB
    svg, _ = net_drawer.render(small_net(), "svg", renderer="matplotlib")
    assert b"<svg" in svg[:1000]
    pdf, _ = net_drawer.render(small_net(), "pdf", renderer="matplotlib")
    assert pdf.startswith(b"%PDF")
    assert png_size(net_drawer.render(pydot.Dot("empty"))[0]) == (100, 100)


def test_graphviz_is_used_when_dot_is_on_path(monkeypatch):
    calls = []
    monkeypatch.setattr(net_drawer.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(pydot.Dot, "create",
                        lambda self, prog=None, format=None, **kw: calls.append((prog, format))
                        or b"picture")
    assert net_drawer.render(small_net()) == (b"picture", "graphviz")
    assert net_drawer.render(small_net(), renderer="matplotlib")[1] == "matplotlib"
    assert calls == [("dot", "png")]


def test_graphviz_without_dot_is_a_clear_error(no_dot, tmp_path):
    with pytest.raises(C2Error, match="needs Graphviz's `dot`"):
        net_drawer.write_png(small_net(), str(tmp_path / "x.png"), renderer="graphviz")
    with pytest.raises(C2Error, match="unknown renderer 'ascii'"):
        net_drawer.write_png(small_net(), str(tmp_path / "x.png"), renderer="ascii")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graphviz_picture(tmp_path):
    path = tmp_path / "g.png"
    assert net_drawer.write_png(small_net(), str(path), renderer="graphviz") == "graphviz"
    width, height = png_size(path.read_bytes())
    assert width > height > 50 and green_boxes(path) == 6


def test_png_safe(no_dot):
    data = net_drawer.GetGraphPngSafe(net_drawer.GetPydotGraph, small_net())
    assert png_size(data)[0] > 600  # drawn by matplotlib where Caffe2 gave up
    # anything failing: Caffe2's blank 1x1 PNG, byte for byte
    assert net_drawer.GetGraphPngSafe(lambda: 3).hex() == (
        "89504e470d0a1a0a0000000d4948445200000001000000010100000000376ef9240000000a494441"
        "54789c636000000002000148afa4710000000049454e44ae426082")
    assert net_drawer.GetGraphPngSafe(net_drawer.GetPydotGraph, ["x"]) == \
        net_drawer._blank_png()


def test_main_writes_dot_and_pdf(tmp_path, capsys, no_dot):
    path = tmp_path / "net.pbtxt"
    path.write_text(str(small_net().Proto()))
    net_drawer.main(["--input", str(path), "--output_prefix", str(tmp_path / "out_"),
                     "--minimal", "--append_output"])
    dot = (tmp_path / "out_small.dot").read_text()
    assert '"Relu (op#1)\\nconv1" -> "FC (op#2)\\nfc";' in dot
    assert (tmp_path / "out_small.pdf").read_bytes().startswith(b"%PDF")
    assert "drawn with matplotlib" in capsys.readouterr().out


# ----------------------------------------------------------------------------- users

def test_cli_show_png(tmp_path, capsys):
    load_netdef("squeezenet_predict.pb")  # skips when the model is absent
    full, minimal = tmp_path / "full.png", tmp_path / "minimal.png"
    assert cli.main(["show", str(MODELS / "squeezenet_predict.pb"), "--png", str(full)]) == 0
    out = capsys.readouterr().out
    assert "Softmax(pool10) -> softmaxout" in out
    assert f"picture: {full} (drawn with " in out
    assert cli.main(["show", str(MODELS / "squeezenet_predict.pb"), "--png", str(minimal),
                     "--minimal"]) == 0
    assert f"picture: {minimal}" in capsys.readouterr().out
    assert png_size(full.read_bytes())[0] > png_size(minimal.read_bytes())[0]
    assert green_boxes(full) == green_boxes(minimal) == 65


def test_compare_nets_writes_net_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = core.Net("one")
    one.Proto().name = "one"
    one.Relu(["X"], ["Y"])
    two = core.Net("two")
    two.Proto().name = "two"
    two.Copy(["X"], ["X2"])
    two.Relu(["X2"], ["Y"])
    x = np.array([[-1.0, 0.5], [2.0, -3.0]], dtype=np.float32)
    gradient_checker.NetGradientChecker.CompareNets(
        [one, two], [["Y"], ["Y"]], [0], ["X"], input_values={"X": x}, print_net_images=True)
    # Caffe2's file names: forward nets, then the gradient nets (clones named NAME_copy)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["caffe2_net_0one_copy.png", "caffe2_net_1two_copy.png",
                       "caffe2_net_forward_0one.png", "caffe2_net_forward_1two.png"]
    assert green_boxes(tmp_path / "caffe2_net_forward_1two.png") == 2
    assert green_boxes(tmp_path / "caffe2_net_1two_copy.png") > 2


def test_caffe2_import_through_compat(tmp_path):
    code = """
        import c2compile.compat
        from caffe2.python import core, net_drawer
        import c2compile.net_drawer
        assert net_drawer is c2compile.net_drawer
        net = core.Net("n")
        net.Relu(["X"], ["X"])
        graph = net_drawer.GetPydotGraph(net, rankdir="TB")
        print(sorted(n.get_name() for n in graph.get_nodes()))
        print(len(net_drawer.GetGraphPngSafe(net_drawer.GetPydotGraph, net)) > 1000)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["['\"X0\"', '\"X1\"', 'Relu (op#0)']", "True"]
