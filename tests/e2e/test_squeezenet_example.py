"""examples/squeezenet.py, the Loading Pre-Trained Models tutorial, run as a user runs it.

The script's printed results are checked against the files it writes (its input and
output), and its compiled run against the same nets run on the reference executor here.
Its preprocessing is checked step by step: the shapes the tutorial printed, the channel
order and mean, and skimage.transform.resize where scikit-image is installed.
"""
import ast
import importlib.util
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c2compile import squeezenet, workspace
from c2compile.proto import caffe2_pb2
from test_examples import ROOT, run_example_args

SCRIPT = ROOT / "examples" / "squeezenet.py"
# a Python whose `caffe2` imports (e.g. the PyTorch 1.10.2 wheel for Python 3.6): optional
CAFFE2_PYTHON = pathlib.Path(os.environ.get("C2COMPILE_CAFFE2_PYTHON", "/tmp/c2ref/bin/python"))


def _example_module():
    spec = importlib.util.spec_from_file_location("squeezenet_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = _example_module()


def _printed(out: str, label: str):
    """The Python value printed after `label` (e.g. "Top 5 classes in order:")."""
    line = next(ln for ln in out.splitlines() if ln.startswith(label))
    return ast.literal_eval(line[len(label):].strip())


def _reference_softmax(init_pb: bytes, data: np.ndarray) -> np.ndarray:
    """The predict net on the reference executor (RunNetOnce), with these weights."""
    init, predict = caffe2_pb2.NetDef(), caffe2_pb2.NetDef()
    init.ParseFromString(init_pb)
    predict.ParseFromString(ex.PREDICT_NET.read_bytes())
    workspace.RunNetOnce(init)
    workspace.FeedBlob("data", data)
    workspace.RunNetOnce(predict)
    return workspace.FetchBlob("softmaxout")


def _check_run(out: str, folder) -> tuple[list[int], np.ndarray]:
    """What every run prints and writes agrees: shapes, top-1, top-5, probabilities."""
    assert "results shape:  (1, 1, 1000, 1, 1)" in out
    assert "NCHW image (ready to be used as input):  (1, 3, 227, 227)" in out
    probs = np.load(folder / "softmaxout.npy")
    assert probs.shape == (1, 1000, 1, 1) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    p = probs.ravel()
    top5 = _printed(out, "Top 5 classes in order:")
    assert top5 == list(np.argsort(-p, kind="stable")[:5])
    raw = _printed(out, "Raw top 5 results:")
    assert [i for i, _ in raw] == top5
    np.testing.assert_allclose([q for _, q in raw], p[top5], rtol=1e-6)
    assert _printed(out, "Prediction:") == top5[0]
    assert 10 / p.size < p[top5[0]] < 0.999  # peaked, neither uniform nor one-hot
    for i in top5:
        assert f"Model predicts 'class {i}' with {p[i] * 100:.2f}% confidence" in out
    # the whole predict net is one compiled segment, and a prediction was timed
    assert re.search(r"segment 0: compiled, ops #0\.\.#64 \(65 ops, 1 variant\(s\)\)", out), out
    assert "reference" not in out.split("partition:")[1].split("first run")[0]
    assert re.search(r"one prediction: \d+\.\d+ ms", out)
    return top5, probs


def test_stand_in_weights_compiled_match_the_reference(tmp_path):
    out = run_example_args("squeezenet.py", "--out", str(tmp_path))
    top5, probs = _check_run(out, tmp_path)
    init_pb = (tmp_path / "init_net.pb").read_bytes()
    data = np.load(tmp_path / "data.npy")
    assert data.shape == (1, 3, 227, 227) and data.dtype == np.float32
    # the init net is the model zoo's form: one GivenTensorFill per parameter
    init = caffe2_pb2.NetDef()
    init.ParseFromString(init_pb)
    assert {op.type for op in init.op} == {"GivenTensorFill"}
    assert sorted(op.output[0] for op in init.op) == sorted(squeezenet.weight_shapes())
    # its input is the tutorial's preprocessing of the synthetic picture
    np.testing.assert_array_equal(data, ex.preprocess(ex.synthetic_image(), 128))
    # the compiled run agrees with the reference executor
    np.testing.assert_allclose(probs, _reference_softmax(init_pb, data), rtol=1e-4, atol=1e-8)

    # --init with the written init_net.pb: no new weights, the same prediction
    again = tmp_path / "again"
    out2 = run_example_args("squeezenet.py", "--init", str(tmp_path / "init_net.pb"),
                            "--out", str(again))
    assert "No trained weights given" not in out2 and not (again / "init_net.pb").exists()
    top5_again, probs_again = _check_run(out2, again)
    assert top5_again == top5
    np.testing.assert_array_equal(probs_again, probs)


@pytest.mark.skipif(not CAFFE2_PYTHON.exists(), reason="no Python with real Caffe2 "
                    "(set C2COMPILE_CAFFE2_PYTHON)")
def test_real_caffe2_predictor_reads_the_written_init_net(tmp_path):
    """Caffe2's own workspace.Predictor takes the init_net.pb the script wrote, and predicts
    what c2compile predicted from the same input."""
    run_example_args("squeezenet.py", "--out", str(tmp_path))
    script = (
        "import sys, numpy as np\n"
        "from caffe2.python import workspace\n"
        "d = sys.argv[1]\n"
        "p = workspace.Predictor(open(d + '/init_net.pb', 'rb').read(),\n"
        "                        open(sys.argv[2], 'rb').read())\n"
        "np.save(d + '/caffe2.npy', np.asarray(p.run({'data': np.load(d + '/data.npy')})))\n")
    proc = subprocess.run([str(CAFFE2_PYTHON), "-c", script, str(tmp_path), str(ex.PREDICT_NET)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    caffe2 = np.load(tmp_path / "caffe2.npy")
    assert caffe2.shape == (1, 1, 1000, 1, 1)  # what the tutorial printed
    np.testing.assert_allclose(caffe2[0], np.load(tmp_path / "softmaxout.npy"), rtol=1e-4,
                               atol=1e-8)


def test_image_file_mean_and_labels(tmp_path):
    import matplotlib.image
    img = ex.synthetic_image(300, 200)[::-1]  # a tall picture, upside down
    matplotlib.image.imsave(tmp_path / "tall.png", img)
    mean = np.stack([np.full((8, 8), v) for v in (100.0, 110.0, 120.0)])  # C x H x W
    np.save(tmp_path / "mean.npy", mean)
    # the tutorial's codes file: a dict literal, one class a line, several names each
    (tmp_path / "codes.txt").write_text(
        "{" + ",\n ".join(f"{i}: 'thing {i}, other'" for i in range(1000)) + "}\n")
    out = run_example_args("squeezenet.py", "--image", str(tmp_path / "tall.png"),
                           "--mean", str(tmp_path / "mean.npy"),
                           "--labels", str(tmp_path / "codes.txt"), "--out", str(tmp_path))
    assert "Original Image Shape:  (300, 200, 3)" in out
    assert "Image Shape after rescaling:  (340, 227, 3)" in out  # int(227 / (200 / 300))
    assert "Image Shape after cropping:  (227, 227, 3)" in out
    probs = np.load(tmp_path / "softmaxout.npy").ravel()
    top5 = _printed(out, "Top 5 classes in order:")
    for i in top5:
        assert f"Model predicts 'thing {i}' with {probs[i] * 100:.2f}% confidence" in out
    png = matplotlib.image.imread(tmp_path / "tall.png")[:, :, :3]
    expected = ex.preprocess(png, mean.mean(1).mean(1)[:, None, None])
    np.testing.assert_array_equal(np.load(tmp_path / "data.npy"), expected)


def test_npy_image(tmp_path):
    img = (ex.synthetic_image(227, 227) * 255).astype(np.uint8)  # uint8: scaled by 1/255
    np.save(tmp_path / "square.npy", img)
    out = run_example_args("squeezenet.py", "--image", str(tmp_path / "square.npy"),
                           "--out", str(tmp_path))
    assert "Image Shape after rescaling:  (227, 227, 3)" in out
    data = np.load(tmp_path / "data.npy")
    np.testing.assert_allclose(data, ex.preprocess(img / 255.0, 128), atol=1e-4)


# ---------------------------------------------------------------- the preprocessing, in-process

def test_the_tutorials_shapes():
    """The tutorial's flower.jpg was 751x1280: rescaled to 227x386, cropped to 227x227."""
    img = np.random.default_rng(0).random((751, 1280, 3), dtype=np.float32)
    assert ex.rescale(img, 227, 227).shape == (227, 386, 3)
    x = ex.preprocess(img, 128)
    assert x.shape == (1, 3, 227, 227) and x.dtype == np.float32


def test_channels_become_bgr_minus_the_mean():
    img = np.empty((240, 320, 3), np.float32)
    img[:] = [1.0, 0.5, 0.0]  # R, G, B
    x = ex.preprocess(img, 128)
    np.testing.assert_allclose(x[0, :, 0, 0], [-128.0, -0.5, 127.0], rtol=1e-6)  # B, G, R
    np.testing.assert_allclose(x, x[:, :, :1, :1] + np.zeros_like(x))


def test_crop_takes_the_center():
    img = np.arange(5 * 7, dtype=np.float32).reshape(5, 7, 1)
    np.testing.assert_array_equal(ex.crop_center(img, 3, 3)[..., 0], img[1:4, 2:5, 0])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 600), st.floats(0.25, 4.0))
def test_any_picture_becomes_one_227_square(height, aspect):
    width = max(1, round(height * aspect))
    img = np.random.default_rng(height).random((height, width, 3), dtype=np.float32)
    scaled = ex.rescale(img, 227, 227)
    assert min(scaled.shape[:2]) == 227 and scaled.shape[2] == 3
    assert img.min() <= scaled.min() and scaled.max() <= img.max()  # clipped to the range
    assert ex.preprocess(img, 128).shape == (1, 3, 227, 227)


@pytest.mark.parametrize("shape", [(360, 480), (751, 1280), (480, 300), (100, 150), (50, 40)])
def test_resize_is_skimages(shape):
    transform = pytest.importorskip("skimage.transform")
    img = np.random.default_rng(1).random((*shape, 3), dtype=np.float32)
    rows, cols = ex.rescale(img, 227, 227).shape[:2]
    np.testing.assert_allclose(ex.resize(img, rows, cols),
                               transform.resize(img, (rows, cols)), rtol=1e-6, atol=1e-7)


def test_stand_in_weights():
    w = squeezenet.weights(seed=0)
    assert {k: list(v.shape) for k, v in w.items()} == squeezenet.weight_shapes()
    assert all(v.dtype == np.float32 for v in w.values())
    again = squeezenet.weights(seed=0)
    assert all(np.array_equal(w[k], again[k]) for k in w)  # deterministic
    assert not np.array_equal(w["conv1_w"], squeezenet.weights(seed=1)["conv1_w"])
    predict = caffe2_pb2.NetDef()
    predict.ParseFromString(ex.PREDICT_NET.read_bytes())
    squeezenet.check_predict_net(predict)
    del predict.external_input[-1]
    with pytest.raises(ValueError, match="not SqueezeNet 1.1"):
        squeezenet.check_predict_net(predict)
