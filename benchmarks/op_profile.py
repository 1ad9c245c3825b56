"""Where a net's time goes: each op of a benchmark net compiled alone.

    python -m benchmarks.op_profile [--model lenet_train|lenet|mlp|squeezenet]
                                    [--batch N] [--runs 20] [--top 15] [--onnxruntime]

Runs the whole compiled net once (so every blob exists), then makes each op its own
one-op net (compiled like any net: one Cython module per op) and times it over `--runs`
RunNets. Prints the best time of the whole net, then the ops by their best time. The
per-op times sum to more than the net (each one-op net pays RunNet's own overhead, and its
inputs are cold in cache), so read them as shares, not as a decomposition. Best times, not
medians: on a shared machine the best run is the one least disturbed by neighbours.

With --onnxruntime (inference models), onnxruntime's own profiler runs the same net (the
benchmark's ONNX export, same weights and threads) and its nodes are listed the same way,
by their best kernel time. Its optimized graph names nodes after their outputs (a Conv
with its Relu fused is named after the Relu, numbered in net order), not after Caffe2's ops.
"""
from __future__ import annotations

import argparse
import collections
import json
import time

from c2compile import workspace
from c2compile.proto import caffe2_pb2


def best_time(fn, runs: int) -> float:
    fn()  # first run: builds (or loads) the module
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _setup(name: str, batch: int | None):
    """(the model, the net to profile, its feeds) with the model's parameters in the
    workspace."""
    from benchmarks import models
    if name == "lenet_train":
        model = models.lenet_train(batch or 64)
        workspace.RunNetOnce(model.init)
        return model, model.train, {"data": model.data, "label": model.label}
    build = {"lenet": models.lenet, "mlp": models.mlp, "squeezenet": models.squeezenet}[name]
    model = build(**({"batch": batch} if batch else {}))
    for blob, value in models.run_init(model.init).items():
        workspace.FeedBlob(blob, value)
    return model, model.predict, model.inputs


def onnxruntime_nodes(model, runs: int) -> list[tuple[float, str]]:
    """[(best kernel seconds, "OpType node"), ...] from onnxruntime's profiler on an
    inference model of benchmarks/models.py."""
    import tempfile

    import onnxruntime as ort
    import torch

    from benchmarks import models
    from benchmarks.run import THREADS
    x = model.inputs["data"]
    tnet = models.TorchNet(model.predict, model.params()).eval()
    onnx_bytes = models.export_onnx(tnet, [torch.from_numpy(x)], ["data"], model.outputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = THREADS, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = f"{tmp}/ort"
        session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, {"data": x})
        with open(session.end_profiling()) as f:
            events = json.load(f)
    times = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[f"{e['args'].get('op_name')} {e['name'][:-len('_kernel_time')]}"].append(
                e["dur"] * 1e-6)
    return sorted(((min(v), node) for node, v in times.items()), reverse=True)


def _print_rows(rows: list[tuple[float, str]], top: int, what: str) -> None:
    for t, label in rows[:top]:
        print(f"{t * 1e3:8.3f} ms  {label}")
    rest = rows[top:]
    print(f"{sum(r[0] for r in rest) * 1e3:8.3f} ms  the other {len(rest)} {what}")
    print(f"{sum(r[0] for r in rows) * 1e3:8.3f} ms  sum of all {len(rows)} {what}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet_train",
                    choices=["lenet_train", "lenet", "mlp", "squeezenet"])
    ap.add_argument("--batch", type=int, default=None, help="default: the benchmark's")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--onnxruntime", action="store_true",
                    help="also list onnxruntime's nodes by best kernel time (not lenet_train)")
    args = ap.parse_args(argv)
    if args.onnxruntime and args.model == "lenet_train":
        ap.error("--onnxruntime: onnxruntime runs the inference models only")

    workspace.SwitchWorkspace("op-profile", True)
    workspace.ResetWorkspace()
    model, net, feeds = _setup(args.model, args.batch)
    for blob, value in feeds.items():
        workspace.FeedBlob(blob, value)
    workspace.CreateNet(net)
    whole = best_time(lambda: workspace.RunNet(net.name), args.runs)
    print(f"whole net: {whole * 1e3:.2f} ms (best of {args.runs})")

    rows = []
    for i, op in enumerate(net.op):
        one = caffe2_pb2.NetDef(name=f"op_profile_{i}")
        one.op.add().CopyFrom(op)
        workspace.CreateNet(one, overwrite=True)
        t = best_time(lambda: workspace.RunNet(one.name), args.runs)
        rows.append((t, f"op #{i} {op.type} -> {', '.join(op.output)}"))
    _print_rows(sorted(rows, reverse=True), args.top, "ops")
    if args.onnxruntime:
        print(f"\nonnxruntime, best kernel time per node over {args.runs} runs:")
        _print_rows(onnxruntime_nodes(model, args.runs), args.top, "nodes")


if __name__ == "__main__":
    main()
