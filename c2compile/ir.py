"""The IR: a NetDef as a networkx graph of op nodes and SSA blob-version nodes.

Nodes
  * op node      `("op", i)`: attrs `kind="op"`, `index`, `type`, `proto` (the OperatorDef
    with its input/output lists cleared; they live on the edges).
  * value node   `("blob", name, version)`: one SSA version of a blob. Version 0 is what the
    net finds in the workspace (present only if read); every write, in-place ones included,
    makes version+1.
    Attrs `kind="value"`, `name`, `version`, `shape`, `dtype` (None until inferred),
    `external_input`, `external_output`.
Edges
  * value -> op  attr `slot=i`: the op's i-th input.
  * op -> value  attr `slot=j`: the op's j-th output.
  A MultiDiGraph, because one blob version may feed several slots of one op (Add(X, X)).

Invariant: op indices are the NetDef order, which is a topological order; every value has
at most one producer; reading a name always reads its latest version at that point.
"""
from __future__ import annotations

from typing import Iterator

import networkx as nx


def op_key(index: int) -> tuple:
    return ("op", index)


def value_key(name: str, version: int) -> tuple:
    return ("blob", name, version)


class Graph:
    """A wrapper over one `nx.MultiDiGraph` with the queries passes need."""

    def __init__(self, nx_graph: nx.MultiDiGraph, net_proto):
        self.g = nx_graph
        self.net_proto = net_proto  # NetDef with ops and external lists cleared

    # -- construction
    @classmethod
    def from_netdef(cls, netdef) -> "Graph":
        g = nx.MultiDiGraph()
        latest: dict[str, int] = {}

        def read(name: str) -> tuple:
            if name not in latest:
                latest[name] = 0
                g.add_node(value_key(name, 0), kind="value", name=name, version=0,
                           shape=None, dtype=None, external_input=False, external_output=False)
            return value_key(name, latest[name])

        for name in netdef.external_input:
            read(name)
            g.nodes[value_key(name, 0)]["external_input"] = True
        for i, op in enumerate(netdef.op):
            proto = type(op)()
            proto.CopyFrom(op)
            del proto.input[:]
            del proto.output[:]
            g.add_node(op_key(i), kind="op", index=i, type=op.type, proto=proto)
            for slot, name in enumerate(op.input):
                g.add_edge(read(name), op_key(i), slot=slot)
            for slot, name in enumerate(op.output):
                version = latest.get(name, 0) + 1
                latest[name] = version
                key = value_key(name, version)
                if key not in g:
                    g.add_node(key, kind="value", name=name, version=version, shape=None,
                               dtype=None, external_input=False, external_output=False)
                g.add_edge(op_key(i), key, slot=slot)
        for name in netdef.external_output:
            g.nodes[read(name)]["external_output"] = True
        net = type(netdef)()
        net.CopyFrom(netdef)
        del net.op[:]
        net.external_input[:] = []
        net.external_output[:] = []
        graph = cls(g, net)
        graph.external_inputs = list(netdef.external_input)
        graph.external_outputs = list(netdef.external_output)
        return graph

    def to_netdef(self):
        net = type(self.net_proto)()
        net.CopyFrom(self.net_proto)
        for key in self.ops():
            net.op.add().CopyFrom(self.op_def(key))
        net.external_input.extend(self.external_inputs)
        net.external_output.extend(self.external_outputs)
        return net

    def op_def(self, key):
        """The full OperatorDef of op node `key` (inputs/outputs filled back in)."""
        op = type(self.g.nodes[key]["proto"])()
        op.CopyFrom(self.g.nodes[key]["proto"])
        op.input.extend(self.value(v)["name"] for v in self.op_inputs(key))
        op.output.extend(self.value(v)["name"] for v in self.op_outputs(key))
        return op

    # -- queries
    def ops(self) -> list[tuple]:
        """Op node keys in net order."""
        return sorted((n for n, d in self.g.nodes(data=True) if d["kind"] == "op"),
                      key=lambda k: k[1])

    def values(self) -> Iterator[tuple]:
        return (n for n, d in self.g.nodes(data=True) if d["kind"] == "value")

    def op(self, key) -> dict:
        return self.g.nodes[key]

    def value(self, key) -> dict:
        return self.g.nodes[key]

    def _slots(self, edges) -> list[tuple]:
        return [n for _, n in sorted(edges, key=lambda e: e[0])]

    def op_inputs(self, key) -> list[tuple]:
        return self._slots((d["slot"], u) for u, _, d in self.g.in_edges(key, data=True))

    def op_outputs(self, key) -> list[tuple]:
        return self._slots((d["slot"], v) for _, v, d in self.g.out_edges(key, data=True))

    def producer(self, value) -> tuple | None:
        preds = list(self.g.predecessors(value))
        return preds[0] if preds else None

    def consumers(self, value) -> list[tuple]:
        return sorted(set(self.g.successors(value)), key=lambda k: k[1])

    def latest(self, name: str) -> tuple | None:
        versions = [k for k in self.values() if k[1] == name]
        return max(versions, key=lambda k: k[2]) if versions else None

    def graph_inputs(self) -> list[tuple]:
        """Version-0 values that some op reads: what the net needs from the workspace."""
        return sorted(k for k in self.values() if k[2] == 0)

    def verify(self) -> None:
        """Check the invariants of the module docstring; raises AssertionError."""
        for key in self.values():
            producers = list(self.g.predecessors(key))
            assert len(producers) <= 1, f"{key} has two producers"
            assert (key[2] == 0) == (not producers), f"{key}: only version 0 lacks a producer"
        order = {k: k[1] for k in self.ops()}
        for key in self.ops():
            for v in self.op_inputs(key):
                p = self.producer(v)
                assert p is None or order[p] < order[key], f"{key} reads {v} before it is written"

    def __repr__(self) -> str:
        n_ops = sum(1 for _ in self.ops())
        return f"<Graph '{self.net_proto.name}': {n_ops} ops, {self.g.number_of_nodes() - n_ops} values>"
