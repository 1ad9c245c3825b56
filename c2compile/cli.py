"""`c2compile` command line. Today: `show` (the IR of a NetDef with inferred shapes)."""
from __future__ import annotations

import argparse
import sys

from c2compile import dtypes
from c2compile.errors import C2Error


def _parse_input(spec: str) -> tuple[str, list[int]]:
    """`data=1x3x227x227` -> ("data", [1, 3, 227, 227])."""
    name, _, dims = spec.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: expected NAME=DxDx...")
    try:
        return name, [int(d) for d in dims.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: dims must be integers") from None


def cmd_show(args) -> int:
    from c2compile.ir import Graph
    from c2compile.ops.schema import TensorType
    from c2compile.passes.shape_inference import infer_graph
    from c2compile.runtime.workspace import parse_netdef
    with open(args.net, "rb") as f:
        net = parse_netdef(f.read(), args.net)
    known = {}
    if args.init:
        from c2compile.workspace import Predictor
        with open(args.init, "rb") as f:
            params = Predictor(f.read(), net)._ws.blobs
        known.update({k: TensorType(v.shape, v.dtype) for k, v in params.items()
                      if hasattr(v, "shape")})
    known.update({n: TensorType(d) for n, d in args.input})
    graph = infer_graph(Graph.from_netdef(net), known)
    print(f"net '{net.name}': {len(net.op)} ops")
    for key in graph.ops():
        op = graph.op_def(key)
        outs = []
        for v in graph.op_outputs(key):
            a = graph.value(v)
            shape = "?" if a["shape"] is None else "x".join(map(str, a["shape"])) or "scalar"
            dt = "" if a["dtype"] is None else f":{dtypes.name(dtypes.from_numpy(a['dtype']))}"
            outs.append(f"{a['name']}[{shape}{dt}]")
        name = f" '{op.name}'" if op.name else ""
        print(f"  #{key[1]:<3} {op.type}{name}({', '.join(op.input)}) -> {', '.join(outs)}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="c2compile", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="print a NetDef's ops with inferred shapes and dtypes")
    show.add_argument("net", help="a serialized NetDef (predict_net.pb)")
    show.add_argument("--init", help="init_net.pb: its outputs give the parameters' shapes")
    show.add_argument("--input", action="append", type=_parse_input, default=[],
                      metavar="NAME=DxD..", help="shape of an input blob (repeatable)")
    show.set_defaults(fn=cmd_show)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (C2Error, OSError) as e:
        print(f"c2compile {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
