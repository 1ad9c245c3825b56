"""The examples run end to end as a user would run them."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_example_args(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_example(name: str) -> str:
    return run_example_args(name)


def test_basics_tutorial():
    out = run_example("basics.py")
    assert "Workspace has blob 'X'? True" in out
    assert "Current workspace: gutentag" in out
    assert "Blobs in the workspace after execution: ['W', 'X', 'Y', 'b']" in out
    assert "Run time per RunNet:" in out


def test_python_op_tutorial():
    out = run_example("python_op.py").split("\n")
    assert out[:5] == ["[6.]", "[6.]", "[9.]", "[4.]", "[2.]"]


def _vector(line: str):
    import numpy as np
    return np.array(line.split(":", 1)[1].replace("[", " ").replace("]", " ").split(), float)


def test_toy_regression_tutorial_fits_the_ground_truth():
    out = run_example("toy_regression.py")
    lines = {ln.split(" is:")[0]: ln for ln in out.splitlines() if " is:" in ln}
    W = _vector(lines["After training, W"])
    B = _vector(lines["After training, B"])
    assert abs(W[0] - 2.0) < 0.15 and abs(W[1] - 1.5) < 0.15, out
    assert abs(B[0] - 0.5) < 0.15, out


def test_mnist_tutorial_runs_its_whole_flow_on_the_digits(tmp_path):
    """DBs written, trained from LMDB through TensorProtosDBInput to >= 97% test accuracy,
    Print/Summarize files, checkpoints every 20 iterations, the deploy model exported to a
    minidb, the workspace reset, the model loaded back with prepare_prediction_net and its
    predictions identical to the trained model's."""
    out = run_example_args("mnist.py", "--out", str(tmp_path))
    acc = float(out.split("test accuracy: ")[1].split()[0])
    assert acc >= 0.97, out
    assert "(360 images, 4 batches of 90)" in out
    assert (tmp_path / "mnist_training.png").stat().st_size > 1000
    assert (tmp_path / "mnist-train-nchw-lmdb").is_dir()
    # Print/Summarize wrote their files into the workspace's root folder
    assert (tmp_path / "loss.log").exists() and (tmp_path / "conv1_w.summary").exists()
    assert sorted(p.name for p in tmp_path.glob("mnist_lenet_checkpoint_*")) == [
        f"mnist_lenet_checkpoint_{i:05d}.lmdb" for i in range(20, 201, 20)]
    assert "The blobs in the workspace after reset: []" in out
    loaded = out.split("after loading the model: ")[1].splitlines()[0]
    for blob in ("!!META_NET_DEF", "conv1_w", "pred_b"):
        assert f"'{blob}'" in loaded
    assert "The loaded model predicts what the trained one did: True" in out
