"""Shape/type inference: annotate every value of a Graph with its shape and dtype.

Each op's own rule (`OpDef.infer`) does the work; this pass walks the ops in net order,
feeds each rule the types of its inputs, and records what comes out. An input whose type is
unknown (not given, not in the workspace) stays unknown downstream: a rule gets
`TensorType(None, None)` for it and returns unknown shapes where it must. A rule that finds
shapes it cannot take raises ShapeError naming the op (index, type, name) and the shapes.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from c2compile import dtypes
from c2compile.errors import OpError
from c2compile.ir import Graph
from c2compile.ops.schema import TensorType, bind

UNKNOWN = TensorType(None, None)


def infer_graph(graph: Graph, known: Mapping[str, TensorType]) -> Graph:
    """Annotate `graph`'s values in place from `known` types of the blobs it reads."""
    name = graph.net_proto.name or None
    for key in graph.graph_inputs():
        t = known.get(key[1], UNKNOWN)
        graph.value(key).update(shape=t.shape, dtype=t.dtype)
    for key in graph.ops():
        op = bind(graph.op_def(key), key[1], name)
        ins = [TensorType(graph.value(v)["shape"], graph.value(v)["dtype"])
               for v in graph.op_inputs(key)]
        try:
            outs = op.opdef.infer(op, *ins)
        except OpError:
            raise
        except (ValueError, TypeError, IndexError) as e:
            raise op.error(OpError, f"shape inference failed for inputs "
                           f"{dict(zip(op.inputs, ins))}: {e}") from e
        if len(outs) != op.num_outputs:
            raise op.error(OpError, f"shape rule gave {len(outs)} types for {op.num_outputs} "
                           "outputs (a bug in c2compile)")
        for v, t in zip(graph.op_outputs(key), outs):
            graph.value(v).update(shape=t.shape, dtype=t.dtype)
    return graph


def workspace_types() -> dict[str, TensorType]:
    """The types of the current workspace's tensor blobs."""
    from c2compile import workspace
    blobs = workspace._ws().blobs
    return {name: TensorType(blobs[name].shape, blobs[name].dtype) for name in workspace.Blobs()
            if isinstance(blobs[name], np.ndarray)}


def infer_shapes_and_types(netdefs, blob_dimensions=None, blob_types=None):
    """Caffe2's `workspace.InferShapesAndTypes`: ({blob: [dims]}, {blob: DataType}).

    With no `blob_dimensions` the current workspace's blobs give the starting shapes, as in
    Caffe2; otherwise `blob_dimensions` does, with `blob_types` (DataType numbers, FLOAT
    where not given).
    """
    if blob_dimensions is None:
        known = workspace_types()
    else:
        known = {}
        blob_types = blob_types or {}
        for name, dims in blob_dimensions.items():
            dtype = dtypes.to_numpy(blob_types.get(name, dtypes.FLOAT))
            known[name] = TensorType(tuple(dims), dtype)
    shapes: dict[str, list[int]] = {n: list(t.shape) for n, t in known.items()}
    types: dict[str, int] = {n: dtypes.from_numpy(t.dtype) for n, t in known.items()}
    for netdef in netdefs:
        graph = infer_graph(Graph.from_netdef(netdef), known)
        for key in graph.ops():
            for v in graph.op_outputs(key):
                attrs = graph.value(v)
                t = TensorType(attrs["shape"], attrs["dtype"])
                known[attrs["name"]] = t
                if t.shape is not None:
                    shapes[attrs["name"]] = list(t.shape)
                if t.dtype is not None:
                    types[attrs["name"]] = dtypes.from_numpy(t.dtype)
    return shapes, types
