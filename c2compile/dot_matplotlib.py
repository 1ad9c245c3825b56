"""Draw a `pydot.Dot` graph with matplotlib, for machines without Graphviz's `dot` program.

`render(graph, fmt)` returns the picture's bytes (png, pdf or svg). The layout follows what
`dot` does for the graphs net_drawer makes, well enough to read a net:

* ranks: a node sits one rank after its furthest predecessor (cycles, which net graphs do
  not have, are collapsed first), and a node with no predecessors sits just before its first
  consumer (so a weight blob is drawn beside the op that reads it, not at the far left);
* an edge that spans several ranks gets a waypoint in each rank between, so it bends
  around the nodes there instead of running through them;
* order within a rank: sweeps that move each node towards the mean position of its
  neighbours in the previous rank (the barycenter heuristic), which keeps edges short;
* `rankdir` LR (ranks left to right) or TB (top to bottom; BT and RL are drawn as TB and LR);
* node attributes: `label` (default: the node name), `shape` (box, octagon, ellipse; others
  as ellipses, like Graphviz's default), `style=filled`, `color`, `fillcolor`, `fontcolor`;
  edge attributes: `style=dashed`, `arrowhead=none` (other arrowheads draw as arrows).

Only the graph's own nodes and edges are drawn (no subgraphs: net_drawer makes none).
"""
from __future__ import annotations

import functools
import io

import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, FancyArrowPatch, Polygon, Rectangle
from matplotlib.path import Path
from matplotlib.textpath import TextPath

FONT_SIZE = 8                 # points
PAD = (0.12, 0.08)            # inches around a label inside its node (x, y)
GAP = {"rank": 0.45, "node": 0.18}  # inches between ranks, and between nodes of a rank
WAYPOINT = (0.05, 0.05)      # inches: the room a long edge takes in a rank it crosses
MARGIN = 0.2                  # inches around the drawing
MAX_PIXELS = 30000            # per side: the dpi drops for huge graphs (Agg's limit is 2**16)
DPI = 100


def _unquote(s: str) -> str:
    """The text of a DOT id or attribute value: a quoted string loses its quotes and
    escapes (\\" and Graphviz's line breaks \\n, \\l, \\r)."""
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].replace('\\"', '"')
        for brk in ("\\n", "\\l", "\\r"):
            s = s.replace(brk, "\n")
    return s


@functools.lru_cache(maxsize=4096)
def _text_width(line: str) -> float:
    """Width in points of one line of text (the outline's extent: the font's advance
    widths are what Text uses; the outline is within a fraction of a point of it)."""
    if not line.strip():  # TextPath fails on an empty string
        return 0.0
    vertices = TextPath((0, 0), line, size=FONT_SIZE).vertices
    return float(vertices[:, 0].max()) if len(vertices) else 0.0


def _label_size(label: str) -> tuple[float, float]:
    """(width, height) in inches of the node that holds `label`."""
    lines = label.split("\n")
    width = max(_text_width(line) for line in lines)
    return width / 72 + 2 * PAD[0], len(lines) * FONT_SIZE * 1.3 / 72 + 2 * PAD[1]


def _read(graph) -> nx.MultiDiGraph:
    """The pydot graph as a networkx graph: nodes carry `label` and their DOT attributes,
    edges their DOT attributes; nodes named only by an edge get default attributes."""
    g = nx.MultiDiGraph()
    for node in graph.get_nodes():
        if node.get_name() in ("node", "edge", "graph"):  # DOT default-attribute statements
            continue
        name = _unquote(node.get_name())
        attrs = {k: _unquote(str(v)) for k, v in node.get_attributes().items()}
        attrs.setdefault("label", name)
        g.add_node(name, **{**g.nodes.get(name, {}), **attrs})
    for edge in graph.get_edges():
        src, dst = _unquote(str(edge.get_source())), _unquote(str(edge.get_destination()))
        for n in (src, dst):
            if n not in g:
                g.add_node(n, label=n)
        g.add_edge(src, dst, **{k: _unquote(str(v)) for k, v in edge.get_attributes().items()})
    return g


def _ranks(g: nx.MultiDiGraph) -> list[list[str]]:
    """Nodes grouped by rank, each rank in the declaration order of its nodes."""
    simple = nx.DiGraph(g)
    simple.remove_edges_from(list(nx.selfloop_edges(simple)))
    dag = nx.condensation(simple)
    component = dag.graph["mapping"]
    rank = {}
    for r, generation in enumerate(nx.topological_generations(dag)):
        rank.update(dict.fromkeys(generation, r))
    for c in dag:  # sources move up to their first consumer (none of which is a source)
        if dag.in_degree(c) == 0 and dag.out_degree(c) > 0:
            rank[c] = min(rank[s] for s in dag.successors(c)) - 1
    used = sorted(set(rank.values()))
    ranks: list[list[str]] = [[] for _ in used]
    index = {r: i for i, r in enumerate(used)}
    for n in g:
        ranks[index[rank[component[n]]]].append(n)
    return ranks


def _route_long_edges(g: nx.MultiDiGraph, ranks: list[list]) -> tuple[nx.DiGraph, dict]:
    """Give each edge that spans several ranks a waypoint in every rank between (as `dot`
    does), so that it can bend around the nodes there. Returns the graph to order (nodes and
    waypoints, each edge cut into one-rank steps) and {edge: [its waypoints]}."""
    rank_of = {n: i for i, r in enumerate(ranks) for n in r}
    steps = nx.DiGraph()
    steps.add_nodes_from(g)
    waypoints = {}
    for a, b, k in g.edges(keys=True):
        span = rank_of[b] - rank_of[a]
        chain = [("waypoint", a, b, k, i) for i in range(1, span)]
        for i, w in enumerate(chain, start=rank_of[a] + 1):
            ranks[i].append(w)
        nx.add_path(steps, [a, *chain, b])
        waypoints[a, b, k] = chain
    return steps, waypoints


def _order(g: nx.DiGraph, ranks: list[list], sweeps: int = 4) -> None:
    """Reorder each rank in place by the barycenter of its neighbours in the rank before
    (sweeping forwards) or after (sweeping backwards)."""
    position = {n: i - (len(r) - 1) / 2 for r in ranks for i, n in enumerate(r)}
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        for r in (ranks[1:] if forward else ranks[-2::-1]):
            def key(n):
                near = list(g.predecessors(n) if forward else g.successors(n))
                return np.mean([position[m] for m in near]) if near else position[n]
            r.sort(key=key)
            position.update({n: i - (len(r) - 1) / 2 for i, n in enumerate(r)})


def _layout(ranks, sizes, rankdir):
    """Centres in inches of the nodes (and waypoints) of `ranks`, and the drawing's
    (width, height)."""
    across = 1 if rankdir in ("LR", "RL") else 0  # the axis nodes of one rank stack along
    along = 1 - across
    extents = [sum(sizes[n][across] for n in r) + GAP["node"] * (len(r) - 1) for r in ranks]
    breadth = max(extents)
    centres, cursor = {}, 0.0
    for r, extent in zip(ranks, extents):
        depth = max(sizes[n][along] for n in r)
        offset = (breadth - extent) / 2
        for n in r:
            point = [0.0, 0.0]
            point[along] = cursor + depth / 2
            point[across] = offset + sizes[n][across] / 2
            offset += sizes[n][across] + GAP["node"]
            centres[n] = point
        cursor += depth + GAP["rank"]
    length = cursor - GAP["rank"]
    width, height = (length, breadth) if along == 0 else (breadth, length)
    # matplotlib's y grows upwards; DOT's first rank (TB) and first node (LR) are on top
    return {n: (x, height - y) for n, (x, y) in centres.items()}, (width, height)


_BOXES = ("box", "rect", "rectangle", "square")


def _node_patch(attrs, centre, size):
    x, y = centre
    w, h = size
    shape = attrs.get("shape", "ellipse")
    filled = "filled" in attrs.get("style", "")
    color = attrs.get("color", "black")
    face = attrs.get("fillcolor", color if color != "black" else "lightgrey") if filled else "white"
    style = dict(facecolor=face, edgecolor=color, linewidth=1.0, zorder=2)
    if shape in _BOXES:
        return Rectangle((x - w / 2, y - h / 2), w, h, **style)
    if shape == "octagon":
        c = min(w, h) * 0.3
        return Polygon([(x - w / 2 + c, y + h / 2), (x + w / 2 - c, y + h / 2),
                        (x + w / 2, y + h / 2 - c), (x + w / 2, y - h / 2 + c),
                        (x + w / 2 - c, y - h / 2), (x - w / 2 + c, y - h / 2),
                        (x - w / 2, y - h / 2 + c), (x - w / 2, y + h / 2 - c)], **style)
    return Ellipse((x, y), w * 1.2, h * 1.3, **style)


def _boundary(centre, size, shape, towards):
    """Where the segment from a node's centre to `towards` leaves the node (the octagon
    is taken as its bounding box: arrows stop at most a corner's cut short)."""
    (x, y), (w, h) = centre, size
    dx, dy = towards[0] - x, towards[1] - y
    if dx == dy == 0:
        return centre
    if shape in _BOXES or shape == "octagon":
        t = min(w / 2 / abs(dx) if dx else np.inf, h / 2 / abs(dy) if dy else np.inf)
    else:
        t = 1 / np.hypot(dx / (w * 0.6), dy / (h * 0.65))
    return x + min(t, 1.0) * dx, y + min(t, 1.0) * dy


def _edge_patch(attrs, points, bend):
    """The arrow along `points` (the first and last on node boundaries), or a loop over
    `points[0]` when it is the only one."""
    style = dict(arrowstyle="-" if attrs.get("arrowhead") == "none" else "-|>",
                 mutation_scale=9, linewidth=0.8, color="#444444", zorder=1,
                 linestyle="--" if attrs.get("style") == "dashed" else "-")
    if len(points) == 1:
        (x, y), = points
        return FancyArrowPatch((x - 0.1, y), (x + 0.1, y), connectionstyle="arc3,rad=-2.5",
                               **style)
    if len(points) == 2:
        return FancyArrowPatch(*points, shrinkA=0, shrinkB=0,
                               connectionstyle=f"arc3,rad={bend}", **style)
    return FancyArrowPatch(path=Path(np.asarray(points, dtype=float)), **style)


def render(graph, fmt: str = "png") -> bytes:
    """The pydot graph drawn with matplotlib, as `fmt` (png, pdf, svg) bytes."""
    g = _read(graph)
    rankdir = _unquote(str(graph.get_attributes().get("rankdir", "TB"))).upper()
    fig = Figure()
    FigureCanvasAgg(fig)
    if len(g) == 0:
        fig.set_size_inches(1, 1)
    else:
        ranks = _ranks(g)
        steps, waypoints = _route_long_edges(g, ranks)
        _order(steps, ranks)
        sizes = {n: WAYPOINT if n not in g else _label_size(g.nodes[n]["label"])
                 for n in steps}
        centres, (width, height) = _layout(ranks, sizes, rankdir)
        fig.set_size_inches(width + 2 * MARGIN, height + 2 * MARGIN)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(-MARGIN, width + MARGIN)
        ax.set_ylim(-MARGIN, height + MARGIN)
        ax.set_axis_off()
        for n, attrs in g.nodes(data=True):
            ax.add_patch(_node_patch(attrs, centres[n], sizes[n]))
            ax.text(*centres[n], attrs["label"], ha="center", va="center", fontsize=FONT_SIZE,
                    color=attrs.get("fontcolor", "black"), zorder=3, parse_math=False)
        for a, b, k, attrs in g.edges(keys=True, data=True):
            if a == b:
                points = [(centres[a][0], centres[a][1] + sizes[a][1] / 2)]
            else:
                middle = [centres[w] for w in waypoints[a, b, k]]
                first, last = (middle or [centres[b]])[0], (middle or [centres[a]])[-1]
                points = [_boundary(centres[a], sizes[a], g.nodes[a].get("shape"), first),
                          *middle,
                          _boundary(centres[b], sizes[b], g.nodes[b].get("shape"), last)]
            # parallel edges bow out alternately to either side
            bend = 0.0 if k == 0 else 0.25 * ((k + 1) // 2) * (1 if k % 2 else -1)
            ax.add_patch(_edge_patch(attrs, points, bend))
    dpi = min(DPI, MAX_PIXELS / max(fig.get_size_inches()))
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=dpi, facecolor="white")
    return out.getvalue()
