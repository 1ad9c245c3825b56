"""The examples run end to end as a user would run them."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_example(name: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_basics_tutorial():
    out = run_example("basics.py")
    assert "Workspace has blob 'X'? True" in out
    assert "Current workspace: gutentag" in out
    assert "Blobs in the workspace after execution: ['W', 'X', 'Y', 'b']" in out
    assert "Run time per RunNet:" in out
