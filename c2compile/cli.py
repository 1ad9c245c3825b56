"""`c2compile` command line: compile, run, bench and show Caffe2 nets; write data sets.

    c2compile compile predict_net.pb --init init_net.pb --input data=1x3x227x227 -o out/
    c2compile run out/ --input data=x.npy [--save-dir DIR]
    c2compile bench out/ [--iters N] [--warmup N]
    c2compile show predict_net.pb [--init init_net.pb] [--input data=1x3x227x227]
                   [--after shape_inference] [--source] [--png net.png [--minimal]]
    c2compile data mnist (--idx DIR | --digits) --out DIR [--db-type lmdb|minidb]
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

from c2compile.errors import C2Error


def _parse_shape(spec: str) -> tuple[str, list[int]]:
    """`data=1x3x227x227` -> ("data", [1, 3, 227, 227])."""
    name, _, dims = spec.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: expected NAME=DxDx...")
    try:
        return name, [int(d) for d in dims.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: dims must be integers") from None


def _parse_file(spec: str) -> tuple[str, str]:
    """`data=x.npy` -> ("data", "x.npy")."""
    name, _, path = spec.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: expected NAME=FILE.npy")
    return name, path


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _fmt_type(shape, dtype) -> str:
    from c2compile.runtime.compiled import format_type
    return format_type(shape, dtype)


# ----------------------------------------------------------------------------- commands

def cmd_compile(args) -> int:
    import c2compile
    net = c2compile.compile(_read(args.net), _read(args.init) if args.init else None,
                            inputs={n: (d, np.dtype(args.dtype)) for n, d in args.input},
                            backend=args.backend)
    out = net.save(args.output)
    n_var = sum(len(getattr(s, "variants", {})) for s in net.segments)
    print(f"compiled {len(net.segments)} segment(s), {n_var} variant(s) -> {out}")
    return 0


def cmd_run(args) -> int:
    import c2compile
    net = c2compile.load(args.artifact)
    feeds = {n: np.load(p) for n, p in args.input}
    outs = net.run(feeds)
    for i, (name, value) in enumerate(zip(net.output_names, outs)):
        print(f"{name}: {_fmt_type(value.shape, value.dtype)} min {value.min():.6g} "
              f"max {value.max():.6g} mean {value.mean():.6g}")
        if args.save_dir:
            out = pathlib.Path(args.save_dir)
            out.mkdir(parents=True, exist_ok=True)
            # Blob names are untrusted: files are numbered in output order.
            np.save(out / f"output{i}.npy", value)
    return 0


def cmd_bench(args) -> int:
    import c2compile
    net = c2compile.load(args.artifact)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(t.shape).astype(t.dtype) for n, t in net.input_types.items()}
    for _ in range(args.warmup):
        net.run(feeds)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        net.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    print(f"{args.iters} runs: median {statistics.median(times):.4f} ms, min {times[0]:.4f} ms, "
          f"p10 {q[0]:.4f} ms, p90 {q[-1]:.4f} ms, mean {statistics.fmean(times):.4f} ms")
    return 0


def cmd_show(args) -> int:
    from c2compile.ir import Graph
    from c2compile.ops.schema import TensorType
    from c2compile.runtime.workspace import parse_netdef
    net = parse_netdef(_read(args.net), args.net)
    known: dict[str, TensorType] = {}
    params: dict = {}
    if args.init:
        from c2compile.workspace import Predictor
        params = Predictor(_read(args.init), net)._ws.blobs
        known.update({k: TensorType(v.shape, v.dtype) for k, v in params.items()
                      if isinstance(v, np.ndarray)})
    known.update({n: TensorType(d) for n, d in args.input})
    graph = Graph.from_netdef(net)
    if args.after in PASSES:
        graph = PASSES[args.after](graph, known)
    print(f"net {net.name!r}: {len(net.op)} ops")
    for key in graph.ops():
        op = graph.op_def(key)
        outs = [f"{graph.value(v)['name']}[{_fmt_type(graph.value(v)['shape'], graph.value(v)['dtype'])}]"
                for v in graph.op_outputs(key)]
        name = f" '{op.name}'" if op.name else ""
        print(f"  #{key[1]:<3} {op.type}{name}({', '.join(op.input)}) -> {', '.join(outs)}")
    if args.source or args.partition:
        # the compiled net's inputs: the given shapes of external inputs that are not parameters
        inputs = {n: d for n, d in args.input if n in net.external_input and n not in params}
        _show_partition(net, args, inputs)
    if args.png:
        from c2compile import net_drawer
        draw = net_drawer.GetPydotGraphMinimal if args.minimal else net_drawer.GetPydotGraph
        renderer = net_drawer.write_png(draw(net), args.png)
        print(f"picture: {args.png} (drawn with {renderer})")
    return 0


def _show_partition(net, args, inputs) -> None:
    """Partition into compiled segments / reference fallbacks, and the generated sources."""
    import c2compile
    from c2compile.runtime.compiled import describe_partition
    compiled = c2compile.compile(net, _read(args.init) if args.init else None, inputs=inputs)
    print(describe_partition(compiled.segments, source=args.source))


def _after_shape_inference(graph, known):
    from c2compile.passes.shape_inference import infer_graph
    return infer_graph(graph, known)


def cmd_data(args) -> int:
    from c2compile.data import make_mnist_dbs
    paths = make_mnist_dbs(args.out, idx=args.idx, digits=args.digits, db_type=args.db_type,
                           limit=args.limit, progress=not args.quiet)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


# The passes `show --after` can stop after, in pipeline order.
PASSES = {"frontend": lambda graph, known: graph, "shape_inference": _after_shape_inference}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="c2compile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile a predict net ahead of time into a directory")
    c.add_argument("net", help="predict_net.pb (a serialized caffe2 NetDef)")
    c.add_argument("--init", help="init_net.pb: produces the parameters")
    c.add_argument("--input", action="append", type=_parse_shape, default=[], metavar="NAME=DxD..",
                   help="shape of an input blob (repeatable)")
    c.add_argument("--dtype", default="float32", help="dtype of the inputs (default float32)")
    c.add_argument("--backend", default="cpu", choices=["cpu", "reference"])
    c.add_argument("-o", "--output", required=True, help="directory to write the artifact to")
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", help="run a compiled artifact on .npy inputs")
    r.add_argument("artifact", help="directory written by `c2compile compile`")
    r.add_argument("--input", action="append", type=_parse_file, default=[], metavar="NAME=FILE.npy")
    r.add_argument("--save-dir", help="write the outputs as .npy files here")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("bench", help="latency statistics of a compiled artifact (random inputs)")
    b.add_argument("artifact")
    b.add_argument("--iters", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.set_defaults(fn=cmd_bench)

    s = sub.add_parser("show", help="a net's ops with inferred shapes, its partition and source")
    s.add_argument("net", help="a serialized NetDef (predict_net.pb)")
    s.add_argument("--init", help="init_net.pb: its outputs give the parameters' shapes")
    s.add_argument("--input", action="append", type=_parse_shape, default=[], metavar="NAME=DxD..",
                   help="shape of an input blob (repeatable)")
    s.add_argument("--after", choices=list(PASSES), default="shape_inference",
                   help="show the IR after this pass (default: shape_inference)")
    s.add_argument("--partition", action="store_true",
                   help="compile, then list compiled segments and reference fallbacks")
    s.add_argument("--source", action="store_true", help="also print the generated source")
    s.add_argument("--png", metavar="FILE", help="also draw the net (net_drawer.GetPydotGraph) "
                   "into this PNG: with Graphviz's dot when installed, else with matplotlib")
    s.add_argument("--minimal", action="store_true",
                   help="with --png: ops only (net_drawer.GetPydotGraphMinimal)")
    s.set_defaults(fn=cmd_show)

    d = sub.add_parser("data", help="write a data set as Caffe2's tutorials read it (DBs)")
    d.add_argument("dataset", choices=["mnist"])
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--idx", help="folder with MNIST's IDX files (train-images-idx3-ubyte"
                     "[.gz], train-labels-idx1-ubyte, t10k-...)")
    src.add_argument("--digits", action="store_true",
                     help="scikit-learn's bundled 8x8 digits, upscaled to 28x28, split 80/20")
    d.add_argument("--out", required=True, help="folder for mnist-{train,test}-nchw-<db-type>")
    d.add_argument("--db-type", default="lmdb", choices=["lmdb", "minidb"])
    d.add_argument("--limit", type=int, help="at most this many records per split")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(fn=cmd_data)

    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (C2Error, OSError) as e:
        print(f"c2compile {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
