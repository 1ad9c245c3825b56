"""Smoke test of the benchmark harness (`python -m benchmarks.run`, docs/benchmarks.md).

It runs in --quick mode on the tiny tutorial net and a small-batch MLP: the harness runs,
c2compile, PyTorch eager and onnxruntime agree, and the table renders. No timing is asserted
(the numbers of a quick run mean nothing).
"""
import pathlib
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a folder of the repo, not installed
    sys.path.insert(0, str(REPO))

from benchmarks import run  # noqa: E402


@pytest.fixture(scope="module")
def report():
    args = run.parse_args(["--quick", "--only", "tiny,mlp", "--batch", "4"])
    return run.run_benchmarks(args, log=lambda *a: None)


def test_quick_run_agrees_and_times_every_contender(report):
    assert [r.key for r in report.rows] == ["tiny", "mlp"]
    for row in report.rows:
        assert row.problems == [], row.problems
        assert row.agree is True
        labels = [c.label for c in row.contenders]
        assert labels == ["c2compile", "c2compile other", "PyTorch eager", "onnxruntime"]
        for c in row.contenders:
            assert c.error is None, (row.key, c.label, c.error)
            assert c.timing.samples and all(s > 0 for s in c.timing.samples)
        assert row.flops > 0
    assert report.ok
    assert report.peak.gflops > 0


def test_table_renders(report):
    table = run.render_table(report)
    lines = table.splitlines()
    assert len(lines) == 2 + len(report.rows)
    assert all(line.count("|") == len(run.HEADER) + 1 for line in lines)
    assert "(a) tiny net" in table and "MLP 784-1568-1568-10, batch 4" in table
    assert "n/a (other batch)" in lines[3]  # the MLP target is for batch 64
    md = run.render_markdown(report)
    assert md.startswith(run.BEGIN) and md.endswith(run.END)
    assert "python -m benchmarks.run --quick --only tiny,mlp --batch 4" in md
    assert "GFLOP/s" in md and report.machine in md


def test_write_doc_replaces_only_the_generated_block(report, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# title\n\nprose before\n\n{run.BEGIN}\nold table\n{run.END}\n\nprose after\n")
    run.write_doc(report, doc)
    run.write_doc(report, doc)
    text = doc.read_text()
    assert text.startswith("# title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    assert "old table" not in text and text.count(run.BEGIN) == 1
    assert "(a) tiny net" in text


def test_disagreement_is_loud():
    ref = np.array([1.0, 2.0, 3.0], np.float32)
    assert run.check_close("ok", ref * (1 + 5e-4), ref) <= 1.0
    with pytest.raises(run.Disagreement, match="blob 'y'.*at \\(1,\\)"):
        run.check_close("blob 'y'", np.array([1.0, 2.1, 3.0], np.float32), ref)
    with pytest.raises(run.Disagreement, match="shape"):
        run.check_close("blob 'y'", ref[:2], ref)
