"""Caffe2's `net_drawer`: a net (or plan) as a `pydot.Dot` graph, and that graph as a picture.

The graph builders are Caffe2's, with Caffe2's node names, labels and styles, so a .dot file
written here and one written by Caffe2 for the same net are the same graph:

* `GetPydotGraph(net)`: ops are green boxes named "TYPE (op#I)" ("NAME/TYPE (op#I)" when the
  op has a name); blobs are octagons labelled with the blob name. Every write of a blob that
  was already drawn makes a new node (an in-place Relu reads "conv10" and writes "conv11": the
  node name is the blob name followed by its version), so the graph is acyclic.
* `GetPydotGraphMinimal(net)`: the ops only, an edge from the op that last wrote a blob to each
  op that reads it; `minimal_dependency=True` drops edges implied by others.
* `GetPlanGraph(plan)`: a plan's execution steps and the nets they run.
  `GetOperatorMapForPlan(plan)`: {"PLAN_NET": its ops}. Both take a PlanDef or a core.Plan
  (Caffe2's took a PlanDef only).
* `GetGraphInJson(net, path)`: the same graph as GetPydotGraph as {"nodes", "edges"} JSON.

`net` is a NetDef, a `core.Net` (anything with a `Proto()` returning a NetDef) or a list of
OperatorDefs (named "unnamed").

Pictures: Caffe2 rendered with Graphviz's `dot` program (`graph.create_png()`), which is often
not installed. `write_png(graph_or_net, path)` uses `dot` when it is on PATH and otherwise
draws the same graph with matplotlib (layered left to right like `dot`: ops as green boxes,
blobs as white octagons, edges as arrows), and returns which renderer it used.
`GetGraphPngSafe` draws the same way (Caffe2's returned a blank 1x1 image without `dot`).

Deviations from Caffe2, each because Caffe2 drew a wrong or broken picture:
* a node is added to the graph once; Caffe2 added a blob node again for every reader and
  a plan's net node for every step that runs the net (Graphviz merges the repeats, so the
  picture is the same, but `get_nodes()` had duplicates);
* two blobs whose versioned names coincide ("a1" at version 0 and "a" at version 10 are both
  "a10" in Caffe2, which merged them into one node) get distinct nodes: the later one is
  named "NAME#VERSION" instead;
* `main()` passes its op node producer under the right keyword (Caffe2's raised TypeError)
  and reads binary NetDefs as well as text ones.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import struct
import zlib
from collections import defaultdict

import pydot

from c2compile import utils
from c2compile.errors import C2Error
from c2compile.proto import caffe2_pb2

logger = logging.getLogger(__name__)

OP_STYLE = {"shape": "box", "color": "#0F9D58", "style": "filled", "fontcolor": "#FFFFFF"}
BLOB_STYLE = {"shape": "octagon"}

# The renderers `write_png` can use ("auto": graphviz when `dot` is on PATH, else matplotlib).
RENDERERS = ("auto", "graphviz", "matplotlib")


# ----------------------------------------------------------------------------- nets as graphs

def _rectify_operator_and_name(operators_or_net, name):
    """(operators, graph name) of a NetDef, a core.Net or a list of OperatorDefs."""
    proto = operators_or_net.Proto() if hasattr(operators_or_net, "Proto") else operators_or_net
    if isinstance(proto, caffe2_pb2.PlanDef):
        # Caffe2 iterated a PlanDef as if it were a list of ops and crashed.
        raise C2Error(f"plan {proto.name!r} holds several nets: draw it with GetPlanGraph, "
                      "or one of its nets from GetOperatorMapForPlan")
    if isinstance(proto, caffe2_pb2.NetDef):
        return proto.op, proto.name if name is None else name
    if proto is not operators_or_net:
        raise C2Error(f"Expecting NetDef, but got {type(proto)}")
    operators = list(operators_or_net)
    for op in operators:
        if not isinstance(op, caffe2_pb2.OperatorDef):
            raise C2Error(f"expected a NetDef, a core.Net or a list of OperatorDefs; the list "
                          f"holds a {type(op).__name__}")
    return operators, "unnamed" if name is None else name


def _plan_def(plan):
    """The PlanDef of a PlanDef or a core.Plan."""
    return plan.Proto() if hasattr(plan, "Proto") else plan


def _escape_label(name: str) -> str:
    """A DOT string for `name`: JSON's double-quoted escaping, as Caffe2 used."""
    return json.dumps(name)


def _blob_versions(operators):
    """For each op: (op_id, op, [input blob node ids], [output blob node ids]).

    A blob node id is the blob name followed by its version: version 0 is the blob as first
    seen (read or written), and each write of a blob already seen is a new version. Ids are
    unique, unlike Caffe2's plain concatenation (see the module doc).
    """
    version: dict[str, int] = {}
    current: dict[str, str] = {}   # blob -> id of its current version
    owner: dict[str, tuple] = {}   # id -> (blob, version)

    def node_id(blob: str) -> str:
        key = (blob, version[blob])
        nid = f"{blob}{version[blob]}"
        while owner.setdefault(nid, key) != key:
            nid = f"{blob}#{version[blob]}" if nid == f"{blob}{version[blob]}" else nid + "#"
        current[blob] = nid
        return nid

    for op_id, op in enumerate(operators):
        inputs = []
        for blob in op.input:
            if blob not in current:
                version[blob] = 0
                node_id(blob)
            inputs.append(current[blob])
        outputs = []
        for blob in op.output:
            version[blob] = version[blob] + 1 if blob in current else 0
            outputs.append(node_id(blob))
        yield op_id, op, inputs, outputs


def GetOpNodeProducer(append_output, **kwargs):
    """A function (op, op_id) -> pydot.Node named "[NAME/]TYPE (op#I)", with `kwargs` as its
    attributes; `append_output` adds the op's output names, one a line."""
    def op_node(op, op_id):
        node_name = f"{op.name}/{op.type} (op#{op_id})" if op.name else f"{op.type} (op#{op_id})"
        if append_output:
            node_name += "".join("\n" + o for o in op.output)
        return pydot.Node(node_name, **kwargs)
    return op_node


def GetBlobNodeProducer(**kwargs):
    """A function (node_name, label) -> pydot.Node, with `kwargs` as its attributes."""
    def blob_node(node_name, label):
        return pydot.Node(node_name, label=label, **kwargs)
    return blob_node


def GetPydotGraph(operators_or_net, name=None, rankdir="LR", op_node_producer=None,
                  blob_node_producer=None):
    """The net as ops and blob versions: op -> output blob, input blob -> op."""
    if op_node_producer is None:
        op_node_producer = GetOpNodeProducer(False, **OP_STYLE)
    if blob_node_producer is None:
        blob_node_producer = GetBlobNodeProducer(**BLOB_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = pydot.Dot(name, rankdir=rankdir)
    blob_nodes: dict[str, pydot.Node] = {}

    def blob_node(nid, blob):
        if nid not in blob_nodes:
            blob_nodes[nid] = blob_node_producer(_escape_label(nid), label=_escape_label(blob))
            graph.add_node(blob_nodes[nid])
        return blob_nodes[nid]

    for op_id, op, inputs, outputs in _blob_versions(operators):
        op_node = op_node_producer(op, op_id)
        graph.add_node(op_node)
        for blob, nid in zip(op.input, inputs):
            graph.add_edge(pydot.Edge(blob_node(nid, blob), op_node))
        for blob, nid in zip(op.output, outputs):
            graph.add_edge(pydot.Edge(op_node, blob_node(nid, blob)))
    return graph


def GetPydotGraphMinimal(operators_or_net, name=None, rankdir="LR", minimal_dependency=False,
                         op_node_producer=None):
    """The ops only: an edge from the last writer of each input blob to its reader (one per
    input, so an op reading a blob twice gets two). With `minimal_dependency`, a parent that
    is an ancestor of another parent gets no edge (c -> a is implied by c -> b -> a)."""
    if op_node_producer is None:
        op_node_producer = GetOpNodeProducer(False, **OP_STYLE)
    operators, name = _rectify_operator_and_name(operators_or_net, name)
    graph = pydot.Dot(name, rankdir=rankdir)
    writer: dict[str, int] = {}            # blob -> index of the op that last wrote it
    ancestors: dict[int, set[int]] = defaultdict(set)
    nodes = []
    for op_id, op in enumerate(operators):
        nodes.append(op_node_producer(op, op_id))
        graph.add_node(nodes[-1])
        parents = [writer[b] for b in op.input if b in writer]
        for p in parents:
            ancestors[op_id] |= {p} | ancestors[p]
        for p in parents:
            if not minimal_dependency or all(p not in ancestors[q] for q in parents):
                graph.add_edge(pydot.Edge(nodes[p], nodes[-1]))
        for b in op.output:
            writer[b] = op_id
    return graph


# ----------------------------------------------------------------------------- plans

def GetOperatorMapForPlan(plan_def):
    """{"PLAN_NET" (or "PLAN_network_I" for an unnamed net): the net's ops} of a PlanDef."""
    plan_def = _plan_def(plan_def)
    return {f"{plan_def.name}_{net.name}" if net.HasField("name")
            else f"{plan_def.name}_network_{i}": net.op
            for i, net in enumerate(plan_def.network)}


# A concurrent step draws this many of its substeps, then one "N more steps" node.
_MAX_PARALLEL_STEPS = 3


def _substep_edge(start, end):
    return pydot.Edge(start, end, arrowhead="dot", style="dashed")


def _add_once(graph, node):
    """Add `node` unless the graph has a node of that name (which then is one node: Caffe2
    added it again, see the module doc)."""
    if not graph.get_node(node.get_name()):
        graph.add_node(node)
    return node


def _draw_nets(nets, graph):
    """A chain of nodes, one per net name (a net run by several steps is one node)."""
    nodes = []
    for net in nets:
        nodes.append(_add_once(graph, pydot.Node(_escape_label(net))))
        if len(nodes) > 1:
            graph.add_edge(pydot.Edge(nodes[-2], nodes[-1]))
    return nodes


def _step_label(step) -> str:
    lines = [step.name + "\n"]
    if step.report_net:
        lines.append(f"Reporter: {step.report_net}")
    if step.should_stop_blob:
        lines.append(f"Stopper: {step.should_stop_blob}")
    if step.concurrent_substeps:
        lines.append("Concurrent")
    if step.only_once:
        lines.append("Once")
    return "\n".join(lines)


def _draw_steps(steps, graph, chain=True):
    """Step nodes (chained in order unless `chain` is off: concurrent siblings), each with a
    dashed edge to its first net or substep, or to all of them when it is concurrent."""
    nodes = []
    for step in steps:
        nodes.append(_add_once(graph, pydot.Node(_escape_label(_step_label(step)), **OP_STYLE)))
        if chain and len(nodes) > 1:
            graph.add_edge(pydot.Edge(nodes[-2], nodes[-1]))
        if step.network:
            children = _draw_nets(step.network, graph)
        elif step.substep:
            shown = step.substep[:_MAX_PARALLEL_STEPS] if step.concurrent_substeps else step.substep
            children = _draw_steps(shown, graph, chain=not step.concurrent_substeps)
        else:
            raise C2Error(f"execution step {step.name!r} has neither nets nor substeps")
        if step.concurrent_substeps:
            for child in children:
                graph.add_edge(_substep_edge(nodes[-1], child))
            hidden = len(step.substep) - _MAX_PARALLEL_STEPS
            if hidden > 0:
                more = _add_once(graph, pydot.Node(f"{hidden} more steps", **OP_STYLE))
                graph.add_edge(_substep_edge(nodes[-1], more))
        else:
            graph.add_edge(_substep_edge(nodes[-1], children[0]))
    return nodes


def GetPlanGraph(plan_def, name=None, rankdir="TB"):
    """A PlanDef's execution steps (green boxes) and the nets each runs."""
    graph = pydot.Dot(name, rankdir=rankdir)
    _draw_steps(_plan_def(plan_def).execution_step, graph)
    return graph


# ----------------------------------------------------------------------------- JSON

def GetGraphInJson(operators_or_net, output_filepath):
    """Write GetPydotGraph's graph as JSON: {"nodes": [{"id", "label", "type": "op"|"blob",
    "op_id" (ops)}], "edges": [{"source", "target"}]}, ids numbered in order of appearance."""
    operators, _ = _rectify_operator_and_name(operators_or_net, None)
    nodes, edges = [], []
    blob_ids: dict[str, int] = {}

    def blob_id(nid, blob):
        if nid not in blob_ids:
            blob_ids[nid] = len(nodes)
            nodes.append({"id": len(nodes), "label": blob, "type": "blob"})
        return blob_ids[nid]

    for op_id, op, inputs, outputs in _blob_versions(operators):
        op_node = len(nodes)
        nodes.append({"id": op_node, "label": f"{op.name}/{op.type}" if op.name else op.type,
                      "op_id": op_id, "type": "op"})
        edges += [{"source": blob_id(n, b), "target": op_node} for b, n in zip(op.input, inputs)]
        edges += [{"source": op_node, "target": blob_id(n, b)} for b, n in zip(op.output, outputs)]
    with open(output_filepath, "w") as f:
        json.dump({"nodes": nodes, "edges": edges}, f)


# ----------------------------------------------------------------------------- pictures

def _blank_png() -> bytes:
    """A 1x1 black grayscale PNG: GetGraphPngSafe's answer when drawing fails."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", 1, 1, 1, 0, 0, 0, 0)  # 1x1, 1 bit, grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _as_graph(graph_or_net):
    if isinstance(graph_or_net, pydot.Dot):
        return graph_or_net
    if isinstance(_plan_def(graph_or_net), caffe2_pb2.PlanDef):
        return GetPlanGraph(graph_or_net)
    return GetPydotGraph(graph_or_net)


def render(graph_or_net, fmt: str = "png", renderer: str = "auto") -> tuple[bytes, str]:
    """(the picture's bytes, the renderer used) of a pydot graph, or of a net (or plan)
    drawn with GetPydotGraph (GetPlanGraph). `fmt`: png, pdf or svg."""
    if renderer not in RENDERERS:
        raise C2Error(f"unknown renderer {renderer!r}: expected one of {', '.join(RENDERERS)}")
    graph = _as_graph(graph_or_net)
    has_dot = shutil.which("dot") is not None
    if renderer == "graphviz" and not has_dot:
        raise C2Error("renderer 'graphviz' needs Graphviz's `dot` program on PATH "
                      "(e.g. apt-get install graphviz); renderer 'matplotlib' needs nothing")
    if renderer == "graphviz" or (renderer == "auto" and has_dot):
        return graph.create(prog="dot", format=fmt), "graphviz"
    from c2compile import dot_matplotlib
    return dot_matplotlib.render(graph, fmt), "matplotlib"


def write_png(graph_or_net, path, renderer: str = "auto") -> str:
    """Write `graph_or_net` (see `render`) as a PNG file; returns the renderer used:
    "graphviz" when `dot` is on PATH (or asked for), else "matplotlib"."""
    data, used = render(graph_or_net, "png", renderer)
    with open(path, "wb") as f:
        f.write(data)
    return used


def GetGraphPngSafe(func, *args, **kwargs):
    """PNG bytes of the pydot graph `func(*args, **kwargs)` returns; a blank 1x1 PNG (and a
    logged error) if anything fails. Without `dot`, matplotlib draws it (Caffe2 gave up)."""
    try:
        graph = func(*args, **kwargs)
        if not isinstance(graph, pydot.Dot):
            raise ValueError("func is expected to return pydot.Dot")
        return render(graph, "png")[0]
    except Exception as e:  # noqa: BLE001 - "safe" is this function's contract
        logger.error("Failed to draw graph: %s", e)
        return _blank_png()


def main(argv=None):
    """`python -m c2compile.net_drawer --input net.pbtxt`: write NAME.dot and NAME.pdf for
    the net (or for each net of a plan)."""
    parser = argparse.ArgumentParser(description="Caffe2 net drawer.")
    parser.add_argument("--input", required=True, help="The input protobuf file.")
    parser.add_argument("--output_prefix", default="",
                        help="The prefix to be added to the output filename.")
    parser.add_argument("--minimal", action="store_true",
                        help="If set, produce a minimal visualization.")
    parser.add_argument("--minimal_dependency", action="store_true",
                        help="If set, only draw minimal dependency.")
    parser.add_argument("--append_output", action="store_true",
                        help="If set, append the output blobs to the operator names.")
    parser.add_argument("--rankdir", default="LR", help="The rank direction of the pydot graph.")
    args = parser.parse_args(argv)
    with open(args.input, "rb") as f:
        graphs = utils.GetContentFromProtoString(f.read(), {
            caffe2_pb2.PlanDef: GetOperatorMapForPlan,
            caffe2_pb2.NetDef: lambda net: {net.name: net.op},
        })
    producer = GetOpNodeProducer(args.append_output, **OP_STYLE)
    for key, operators in graphs.items():
        if args.minimal:
            graph = GetPydotGraphMinimal(operators, name=key, rankdir=args.rankdir,
                                         minimal_dependency=args.minimal_dependency,
                                         op_node_producer=producer)
        else:
            graph = GetPydotGraph(operators, name=key, rankdir=args.rankdir,
                                  op_node_producer=producer)
        filename = args.output_prefix + graph.get_name() + ".dot"
        graph.write(filename, format="raw")
        data, used = render(graph, "pdf")
        with open(filename[:-3] + "pdf", "wb") as f:
            f.write(data)
        print(f"wrote {filename} and {filename[:-3]}pdf (drawn with {used})")


if __name__ == "__main__":
    main()
