"""Renaming blobs inside a NetDef, for `core.Net.Clone`.

Most ops name their blobs only in `input`/`output`; control-flow and recurrent ops also
carry whole step nets, or blob names in string arguments, that a clone must rename too.
`DEFAULT_REMAP_FUNCS` maps such op types to a function `f(op, prefix, blob_remap)` that
edits the (already copied) op in place, as in Caffe2.
"""
from __future__ import annotations


def remap_names(container, blob_remap) -> None:
    """Replace each name in a repeated string field by blob_remap's entry, if any."""
    new = [str(blob_remap.get(str(b), str(b))) for b in container]
    del container[:]
    container.extend(new)


def remap_netdef(netdef, blob_remap, name: str) -> None:
    """Rename the blobs of a nested net in place, nested control ops included.

    Caffe2 did this by cloning the nested net as a `core.Net` (which also registered its
    name process-wide); only the resulting NetDef matters, so we edit it directly.
    """
    netdef.name = name
    for op in netdef.op:
        remap_names(op.input, blob_remap)
        remap_names(op.output, blob_remap)
        if op.type in DEFAULT_REMAP_FUNCS:
            DEFAULT_REMAP_FUNCS[op.type](op, "", blob_remap)
    remap_names(netdef.external_input, blob_remap)
    remap_names(netdef.external_output, blob_remap)


def recurrent_network_op_remap(op, prefix, blob_remap) -> None:
    """RecurrentNetwork ops name blobs in string arguments and in their step net."""
    def remap(s: bytes) -> bytes:
        s = s.decode("utf-8")
        return str(blob_remap.get(s, s)).encode("utf-8")
    for argument in op.arg:
        if len(argument.strings) > 0:
            for i in range(len(argument.strings)):
                argument.strings[i] = remap(argument.strings[i])
        elif argument.name == "timestep":
            argument.s = remap(argument.s)
        elif argument.name.endswith("step_net"):
            remap_netdef(argument.n, blob_remap, "cloned_sub_net")


def control_op_remap(op, prefix, blob_remap) -> None:
    """If/While ops carry their branches and bodies as nets: rename the blobs there too."""
    names = ("then_net", "else_net") if op.type in ("If", "AsyncIf") else ("loop_net", "cond_net")
    for argument in op.arg:
        if argument.name in names:
            remap_netdef(argument.n, blob_remap, (argument.n.name or "") + "_remapped")


DEFAULT_REMAP_FUNCS = {
    "RecurrentNetwork": recurrent_network_op_remap,
    "RecurrentNetworkGradient": recurrent_network_op_remap,
    "If": control_op_remap,
    "While": control_op_remap,
    "AsyncIf": control_op_remap,
}
