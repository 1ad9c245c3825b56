"""Check Cython kernels against the reference executor, many cases per compiled module.

Building a module costs seconds, so a test draws a *list* of cases (op type, inputs, args)
and `check_cpu` compiles them all as one net: case i reads blobs `c<i>_x<j>` and writes
`c<i>_y<k>` (or, for in-place cases, its input's name). The net runs through
`workspace.CreateNet` + `RunNet` (the Cython backend), every case also runs alone on the
reference executor, and each output is compared. `check_cpu` also asserts that every op was
compiled, so a test can never pass by falling back to the reference.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from c2compile import config, core, workspace
from c2compile.codegen.cython.render import plan_segment, render_kernel
from c2compile.ops.schema import TensorType, bind
from c2compile.runtime import reference
from c2compile.runtime.compiled import CythonSegment, ReferenceSegment

_names = itertools.count()


@dataclasses.dataclass
class Case:
    op_type: str
    inputs: list
    args: dict = dataclasses.field(default_factory=dict)
    outputs: int = 1
    inplace: dict = dataclasses.field(default_factory=dict)  # output index -> input index
    rtol: float = 1e-5
    atol: float = 1e-6
    compare: bool = True   # False: random ops; check statistics on the returned values


def _op(case: Case, i: int):
    ins = [f"c{i}_x{j}" for j in range(len(case.inputs))]
    outs = [ins[case.inplace[k]] if k in case.inplace else f"c{i}_y{k}"
            for k in range(case.outputs)]
    return core.CreateOperator(case.op_type, ins, outs, **case.args)


def reference_outputs(case: Case, i: int) -> list:
    op = bind(_op(case, i), 0)
    return reference.run_op(op, [np.asarray(x) for x in case.inputs])


def create_net(cases: list[Case]) -> str:
    """Feed every case's inputs and create one compiled net of all cases; returns its name."""
    net = core.Net(f"cpu_check_{next(_names)}")
    for i, case in enumerate(cases):
        for j, x in enumerate(case.inputs):
            workspace.FeedBlob(f"c{i}_x{j}", x)
        net.Proto().op.add().CopyFrom(_op(case, i))
    with config.patch(backend="cpu"):
        workspace.CreateNet(net)
    return net.Name()


def compiled_outputs(cases: list[Case], expect_compiled: bool = True) -> list[list]:
    """Run all cases as one compiled net; returns each case's outputs."""
    name = create_net(cases)
    workspace.RunNet(name)
    if expect_compiled:
        assert_compiled(name)
    return [[workspace.FetchBlob(n) for n in _op(case, i).output] for i, case in enumerate(cases)]


def assert_compiled(net_name: str) -> None:
    """Every op of the created net ran in a compiled variant (no reference fallback)."""
    created = workspace._ws().nets[net_name]
    assert created.compiled is not None, f"net {net_name} was not compiled"
    for seg in created.compiled.segments:
        if isinstance(seg, ReferenceSegment):
            raise AssertionError(f"ops {[f'{o.type}#{o.index}' for o in seg.ops]} fell back to "
                                 f"the reference: {seg.why}")
        assert isinstance(seg, CythonSegment)
        for variant in seg.variants.values():
            if isinstance(variant, ReferenceSegment):
                raise AssertionError(f"a variant of {seg.name} fell back: {variant.why}")


def check_cpu(cases: list[Case], expect_compiled: bool = True) -> list[list]:
    """Compiled vs reference for every case; returns the compiled outputs."""
    got = compiled_outputs(cases, expect_compiled)
    for i, (case, outs) in enumerate(zip(cases, got)):
        if not case.compare:
            continue
        want = reference_outputs(case, i)
        for k, (g, w) in enumerate(zip(outs, want)):
            where = (f"case {i} {case.op_type} {case.args} output {k}, inputs "
                     f"{[(np.shape(x), np.asarray(x).dtype.name) for x in case.inputs]}")
            assert g.shape == w.shape, f"{where}: shape {g.shape} != reference {w.shape}"
            assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != reference {w.dtype}"
            if g.dtype.kind in "fc":
                np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol, err_msg=where)
            else:
                np.testing.assert_array_equal(g, w, err_msg=where)
    return got


def run_both(net, feeds, outs=None, rtol=0.0, atol=0.0):
    """Run `net` on the reference and the cpu backend, compare the blobs `outs` (default:
    all), and return (the cpu run's {blob: value}, the cpu net's segments)."""
    got, segs = {}, None
    for backend in ("reference", "cpu"):
        workspace.ResetWorkspace()
        for k, v in feeds.items():
            workspace.FeedBlob(k, v)
        with config.patch(backend=backend):
            workspace.CreateNet(net)
        workspace.RunNet(net.Name())
        if backend == "cpu":
            segs = workspace._ws().nets[net.Name()].compiled.segments
        got[backend] = {b: workspace.FetchBlob(b) for b in (outs or workspace.Blobs())}
    for b, want in got["reference"].items():
        np.testing.assert_allclose(got["cpu"][b], want, rtol=rtol, atol=atol, err_msg=b)
    return got["cpu"], segs


def reference_run(net, feeds: dict) -> dict:
    """Every blob after running `net` on the reference executor (RunNetOnce) from `feeds`,
    in a scratch workspace (the current one is left as it was)."""
    previous = workspace.CurrentWorkspace()
    workspace.SwitchWorkspace("cpu-harness-reference", True)
    try:
        workspace.ResetWorkspace()
        for blob, value in feeds.items():
            workspace.FeedBlob(blob, value)
        workspace.RunNetOnce(net)
        return {b: workspace.FetchBlob(b) for b in workspace.Blobs()}
    finally:
        workspace.SwitchWorkspace(previous)


def kernel_source(case: Case) -> str:
    """The Cython body the case's op gets."""
    names = [f"x{i}" for i in range(len(case.inputs))]
    op = bind(core.CreateOperator(case.op_type, names, [f"y{j}" for j in range(case.outputs)],
                                  **case.args), 0)
    plan = plan_segment("s", [op], {n: TensorType(x.shape, x.dtype)
                                    for n, x in zip(names, case.inputs)})
    return render_kernel(plan.steps[0])
