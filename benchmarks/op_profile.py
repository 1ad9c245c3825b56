"""Where a LeNet training step's time goes: each op of the train net compiled alone.

    python -m benchmarks.op_profile [--batch 64] [--runs 20] [--top 15]

Runs the whole compiled step once (so every blob exists), then makes each op its own
one-op net (compiled like any net: one Cython module per op) and times it over `--runs`
RunNets. Prints the best time of the whole step, then the ops by their best time. The
per-op times sum to more than the step (each one-op net pays RunNet's own overhead, and its
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


def main(argv=None) -> None:
    from benchmarks import models
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)

    model = models.lenet_train(args.batch)
    workspace.SwitchWorkspace("op-profile", True)
    workspace.ResetWorkspace()
    workspace.RunNetOnce(model.init)
    workspace.FeedBlob("data", model.data)
    workspace.FeedBlob("label", model.label)
    workspace.CreateNet(model.train)
    step = best_time(lambda: workspace.RunNet(model.train.name), args.runs)
    print(f"whole step: {step * 1e3:.2f} ms (best of {args.runs})")

    rows = []
    for i, op in enumerate(model.train.op):
        net = caffe2_pb2.NetDef(name=f"op_profile_{i}")
        net.op.add().CopyFrom(op)
        workspace.CreateNet(net, overwrite=True)
        rows.append((best_time(lambda: workspace.RunNet(net.name), args.runs), i, op))
    rows.sort(key=lambda r: -r[0])
    for t, i, op in rows[:args.top]:
        print(f"{t * 1e3:8.3f} ms  op #{i} {op.type} -> {', '.join(op.output)}")
    rest = rows[args.top:]
    print(f"{sum(r[0] for r in rest) * 1e3:8.3f} ms  the other {len(rest)} ops")
    print(f"{sum(r[0] for r in rows) * 1e3:8.3f} ms  sum of all {len(rows)} ops")


if __name__ == "__main__":
    main()
