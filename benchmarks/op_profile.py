"""Where a net's time goes: each op of a benchmark net compiled alone.

    python -m benchmarks.op_profile [--model lenet_train|lenet|mlp|squeezenet]
                                    [--batch N] [--runs 20] [--top 15]

Runs the whole compiled net once (so every blob exists), then makes each op its own
one-op net (compiled like any net: one Cython module per op) and times it over `--runs`
RunNets. Prints the best time of the whole net, then the ops by their best time. The
per-op times sum to more than the net (each one-op net pays RunNet's own overhead, and its
inputs are cold in cache), so read them as shares, not as a decomposition. Best times, not
medians: on a shared machine the best run is the one least disturbed by neighbours.
"""
from __future__ import annotations

import argparse
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
    """(the net to profile, its feeds) with the model's parameters in the workspace."""
    from benchmarks import models
    if name == "lenet_train":
        model = models.lenet_train(batch or 64)
        workspace.RunNetOnce(model.init)
        return model.train, {"data": model.data, "label": model.label}
    build = {"lenet": models.lenet, "mlp": models.mlp, "squeezenet": models.squeezenet}[name]
    model = build(**({"batch": batch} if batch else {}))
    for blob, value in models.run_init(model.init).items():
        workspace.FeedBlob(blob, value)
    return model.predict, model.inputs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lenet_train",
                    choices=["lenet_train", "lenet", "mlp", "squeezenet"])
    ap.add_argument("--batch", type=int, default=None, help="default: the benchmark's")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)

    workspace.SwitchWorkspace("op-profile", True)
    workspace.ResetWorkspace()
    net, feeds = _setup(args.model, args.batch)
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
        rows.append((best_time(lambda: workspace.RunNet(one.name), args.runs), i, op))
    rows.sort(key=lambda r: -r[0])
    for t, i, op in rows[:args.top]:
        print(f"{t * 1e3:8.3f} ms  op #{i} {op.type} -> {', '.join(op.output)}")
    rest = rows[args.top:]
    print(f"{sum(r[0] for r in rest) * 1e3:8.3f} ms  the other {len(rest)} ops")
    print(f"{sum(r[0] for r in rows) * 1e3:8.3f} ms  sum of all {len(rows)} ops")


if __name__ == "__main__":
    main()
