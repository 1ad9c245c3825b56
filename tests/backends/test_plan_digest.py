"""A warm cache hit finds its module by the plan's digest (render.plan_digest), without
rendering the source or importing jinja2; the digest changes with anything the source
depends on, and a digest that points at a damaged entry falls back to render + build."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from c2compile import core, workspace
from c2compile.codegen import build, cache
from c2compile.codegen.cython import render
from c2compile.ops.schema import BoundOp, TensorType
from c2compile.runtime.compiled import CythonSegment

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc").split()[0]) is None,
                                reason="needs a C compiler")

CHILD = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np
    from c2compile import core, workspace
    from c2compile.codegen import cache
    net = core.Net("digest_fc")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    workspace.FeedBlob("x", np.arange(6, dtype=np.float32).reshape(2, 3) - 2)
    workspace.FeedBlob("w", np.ones((4, 3), np.float32))
    workspace.FeedBlob("b", np.zeros(4, np.float32))
    workspace.CreateNet(net)
    workspace.RunNet(net)
    rendered = "jinja2" in sys.modules
    seg = workspace._ws().nets[net.Proto().name].compiled.segments[0]
    variant = next(iter(seg.variants.values()))
    print(json.dumps({"z": workspace.FetchBlob("z").tolist(), "jinja2": rendered,
                      "source": hashlib.sha256(variant.source.encode()).hexdigest(),
                      **cache.counters}))
''')


def run_child(cache_dir) -> dict:
    env = {**os.environ, "C2COMPILE_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_warm_hit_renders_nothing_and_keeps_the_source(tmp_path):
    cold = run_child(tmp_path)
    assert cold["miss"] == 1 and cold["jinja2"]
    warm = run_child(tmp_path)
    assert warm["z"] == cold["z"] == [[0.0] * 4, [6.0] * 4]
    assert (warm["hit"], warm["miss"]) == (1, 0)
    assert not warm["jinja2"]                   # found by the plan's digest
    assert warm["source"] == cold["source"]     # rendered on demand, the same text


def test_a_damaged_entry_behind_a_digest_is_rebuilt(tmp_path):
    cold = run_child(tmp_path)
    for so in tmp_path.glob("??/*/*.so"):
        so.write_bytes(b"not an ELF file")
    again = run_child(tmp_path)
    assert again["z"] == cold["z"]
    assert again["jinja2"] and again["rebuilt_corrupt"] == 1


def _plan(op_args=None, shape=(2, 3)):
    net = core.Net("digest")
    net.FC(["x", "w", "b"], "y", **(op_args or {}))
    ops = [BoundOp(op, i, "digest") for i, op in enumerate(net.Proto().op)]
    seg = CythonSegment("digest:0", ops)
    types = {"x": TensorType(shape), "w": TensorType((4, shape[1])), "b": TensorType((4,))}
    return seg.plan([types[n] for n in seg.inputs])


def test_digest_follows_what_the_source_depends_on(tmp_path, monkeypatch):
    base = render.plan_digest(_plan())
    assert base is not None and base == render.plan_digest(_plan())
    assert render.plan_digest(_plan(shape=(3, 3))) != base           # shapes
    assert render.plan_digest(_plan({"axis": 1, "axis_w": 1})) != base  # arguments, even defaults
    plan = _plan()
    plan.steps[0].spec.vars["extra"] = (1, 2)
    tupled = render.plan_digest(plan)
    plan.steps[0].spec.vars["extra"] = [1, 2]   # a template may print either form
    assert len({base, tupled, render.plan_digest(plan)}) == 3
    # the templates: one edited file changes every digest
    templates = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, templates)
    (templates / "linear.pyx.j2").write_text((templates / "linear.pyx.j2").read_text() + "\n")
    monkeypatch.setattr(render, "TEMPLATES", templates)
    render._renderer_digest.cache_clear()
    try:
        assert render.plan_digest(_plan()) != base
    finally:
        monkeypatch.undo()
        render._renderer_digest.cache_clear()


def test_a_value_without_an_exact_text_has_no_digest_and_still_runs():
    plan = _plan()
    plan.steps[0].spec.vars["opaque"] = object()
    assert render.plan_digest(plan) is None
    plan.steps[0].spec.vars["array"] = np.arange(3)  # its repr may be abbreviated
    assert render.plan_digest(plan) is None
    assert render._canon(np.float32(0.5)) != render._canon(0.5)
