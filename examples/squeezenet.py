"""Caffe2's "Loading Pre-Trained Models" tutorial (SqueezeNet 1.1), with only the imports changed.

    from caffe2.python import workspace   # Caffe2
    from c2compile import workspace       # c2compile

The model is the model zoo's pair of protobufs: predict_net.pb (the architecture; a copy is
in examples/data/squeezenet/) and init_net.pb (the weights). The trained weights are not
shipped here, so unless --init names the model zoo's init_net.pb, the script makes stand-in
weights (c2compile.squeezenet: random, He-scaled, the same for every run) and writes them to
OUT/init_net.pb in the model zoo's form (one GivenTensorFill op per parameter). With the real
weights the predictions are real ImageNet classes; --labels FILE names them.

The image is --image PATH (a .npy HxWx3 array, or any picture matplotlib reads) or, without
it, a synthetic landscape made with numpy. It is prepared exactly as the tutorial does:
rescale so the shorter side is 227 (aspect kept), crop the center 227x227, HWC -> CHW,
RGB -> BGR, scale to [0, 255] and subtract the mean (128, or --mean FILE.npy), add the batch
axis. `workspace.Predictor(init_net, predict_net)` runs the net: the predict net is compiled
to one native module for the CPU (the partition is printed) and the first run builds it.

    python examples/squeezenet.py [--image PATH] [--init init_net.pb] [--out DIR]
                                  [--mean FILE.npy] [--labels FILE]

writes OUT/init_net.pb (stand-in weights only), OUT/data.npy (the prepared input) and
OUT/softmaxout.npy (the result).
"""
import argparse
import pathlib
import tempfile
import time

import numpy as np
from scipy import ndimage

from c2compile import squeezenet, workspace
from c2compile.proto import caffe2_pb2
from c2compile.runtime.compiled import describe_partition

HERE = pathlib.Path(__file__).resolve().parent
PREDICT_NET = HERE / "data" / "squeezenet" / "predict_net.pb"
INPUT_IMAGE_SIZE = 227  # SqueezeNet's input: 227x227
TOP_N = 5


# ---------------------------------------------------------------- the image

def synthetic_image(height: int = 360, width: int = 480) -> np.ndarray:
    """A smooth made-up landscape, HxWx3 float32 RGB in [0, 1]: a sky fading towards the
    horizon, a green hill and a yellow sun (what skimage.io.imread + img_as_float give)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    sky = np.stack([0.35 + 0.5 * y, 0.55 + 0.35 * y, np.full_like(y, 0.95)], -1)
    hill = np.stack([0.2 + 0.2 * x, 0.55 - 0.25 * y, 0.15 + 0 * x], -1)
    ground = (y > 0.6 + 0.1 * np.sin(6 * x))[..., None]
    img = np.where(ground, hill, sky)
    sun = np.exp(-(((x - 0.75) * width / height) ** 2 + (y - 0.25) ** 2) / 0.005)[..., None]
    img = img * (1 - sun) + np.array([1.0, 0.85, 0.2], np.float32) * sun
    return np.clip(img, 0, 1).astype(np.float32)


def load_image(path: str) -> np.ndarray:
    """HxWx3 float32 RGB in [0, 1], as the tutorial's skimage.img_as_float(imread(...))."""
    if path.endswith(".npy"):
        img = np.load(path)
    else:
        import matplotlib.image
        img = matplotlib.image.imread(path)  # PNG: floats in [0, 1]; JPEG etc.: uint8
    if img.dtype == np.uint8:
        img = img / 255.0
    if img.ndim == 2:  # grayscale: the same value in R, G and B
        img = np.stack([img] * 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise SystemExit(f"{path}: expected an HxWx3 RGB image, got shape {img.shape}")
    return img[:, :, :3].astype(np.float32)  # RGBA: the alpha channel is dropped


# ---------------------------------------------------------------- the tutorial's preprocessing

def resize(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """skimage.transform.resize(img, (rows, cols)) with its defaults, done with scipy:
    bilinear (order=1) on a grid of pixel centres, edges mirrored ('reflect'), a Gaussian
    anti-aliasing blur of sigma (factor - 1) / 2 along each axis that shrinks, and the
    result clipped to the input's range. (The tutorial ran skimage < 0.15, whose defaults
    were zero-padded edges and no blur; these are today's.)"""
    factors = np.array([img.shape[0] / rows, img.shape[1] / cols, 1.0])
    if (factors > 1).any():
        img_blurred = ndimage.gaussian_filter(img, np.maximum(0, (factors - 1) / 2),
                                              mode="mirror")
    else:
        img_blurred = img
    out = ndimage.zoom(img_blurred, 1 / factors, order=1, mode="mirror", grid_mode=True)
    return np.clip(out, img.min(), img.max())


def rescale(img: np.ndarray, input_height: int, input_width: int) -> np.ndarray:
    """The tutorial's rescale: keep the aspect ratio and make the shorter side the input
    size, so that the center crop that follows is as large as it can be."""
    aspect = img.shape[1] / float(img.shape[0])
    if aspect > 1:  # landscape orientation: wide image
        return resize(img, input_width, int(aspect * input_height))
    if aspect < 1:  # portrait orientation: tall image
        return resize(img, int(input_width / aspect), input_height)
    return resize(img, input_width, input_height)


def crop_center(img: np.ndarray, cropx: int, cropy: int) -> np.ndarray:
    """The center cropx x cropy pixels."""
    y, x, _ = img.shape
    startx = x // 2 - cropx // 2
    starty = y // 2 - cropy // 2
    return img[starty:starty + cropy, startx:startx + cropx]


def preprocess(img: np.ndarray, mean) -> np.ndarray:
    """The tutorial's steps, printing the shapes it printed; returns 1x3x227x227 float32."""
    print("Original Image Shape: ", img.shape)
    # Rescale: the shorter side becomes 227 (not yet 227x227) ...
    img = rescale(img, INPUT_IMAGE_SIZE, INPUT_IMAGE_SIZE)
    print("Image Shape after rescaling: ", img.shape)
    # ... so that the center 227x227 pixels are the largest square the image holds.
    img = crop_center(img, INPUT_IMAGE_SIZE, INPUT_IMAGE_SIZE)
    print("Image Shape after cropping: ", img.shape)
    # switch to CHW (HWC --> CHW): Caffe2's convolutions take channels first
    img = img.swapaxes(1, 2).swapaxes(0, 1)
    print("CHW Image Shape: ", img.shape)
    # switch to BGR (RGB --> BGR): the model was trained on OpenCV's channel order
    img = img[(2, 1, 0), :, :]
    # back to [0, 255] and remove the mean, as in training
    img = img * 255 - mean
    # add the batch axis, which completes the NCHW input the net takes
    img = img[np.newaxis, :, :, :].astype(np.float32)
    print("NCHW image (ready to be used as input): ", img.shape)
    return img


def load_mean(path):
    """128 for every channel, or the per-channel mean of a CxHxW mean image (.npy)."""
    if path is None:
        mean = 128
    else:
        mean = np.load(path).mean(1).mean(1)[:, np.newaxis, np.newaxis]
    print("mean was set to: ", mean)
    return mean


# ---------------------------------------------------------------- the model

def model_files(init_path, out: pathlib.Path, predict_path: pathlib.Path):
    """The contents of init_net.pb and predict_net.pb. Without `init_path`, stand-in
    weights are made and written to OUT/init_net.pb first (see the module docstring)."""
    predict_net = predict_path.read_bytes()
    if init_path is None:
        net = caffe2_pb2.NetDef()
        net.ParseFromString(predict_net)
        squeezenet.check_predict_net(net)
        init_path = out / "init_net.pb"
        init_path.write_bytes(squeezenet.init_net(seed=0).SerializeToString())
        print(f"No trained weights given (--init): stand-in weights written to {init_path}")
    return pathlib.Path(init_path).read_bytes(), predict_net


def load_labels(path):
    """Class names by index from the tutorial's codes file (a dict literal, lines like
    `985: 'daisy',`: the first of the comma-separated names), or from a file with one name
    per line; None without a file."""
    if path is None:
        return None
    lines = pathlib.Path(path).read_text().splitlines()
    codes = {}
    for line in lines:
        code, _, name = line.partition(":")
        code = code.strip().lstrip("{")
        if code.isdigit():
            codes[int(code)] = name.replace("'", "").rstrip("}, ").split(",")[0].strip()
    return codes or dict(enumerate(line.strip() for line in lines))


def describe(results: np.ndarray, labels) -> None:
    """Print the top-1 and the top-5 classes with their probabilities, as the tutorial."""
    preds = np.squeeze(results)  # 1-D: the 1000 class probabilities
    curr_pred = int(np.argmax(preds))
    print("Prediction: ", curr_pred)
    print("Confidence: ", preds[curr_pred])
    # The tutorial's own top-N loop numbered the classes from 1 after np.delete(results, 1),
    # which reports class 0 as 1 and drops class 1; here classes are indexed from 0 plainly.
    top = np.argsort(-preds, kind="stable")[:TOP_N]
    print("Raw top {} results: {}".format(TOP_N, [(int(i), float(preds[i])) for i in top]))
    print("Top {} classes in order: {}".format(TOP_N, [int(i) for i in top]))
    for i in top:
        name = labels.get(int(i), f"class {i}") if labels else f"class {i}"
        print("Model predicts '{}' with {:.2f}% confidence".format(name, preds[i] * 100))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", help="a .npy HxWx3 array or a picture (default: synthetic)")
    ap.add_argument("--init", help="the model zoo's init_net.pb (default: stand-in weights)")
    ap.add_argument("--predict", default=str(PREDICT_NET), help="predict_net.pb")
    ap.add_argument("--out", help="folder for init_net.pb, data.npy and softmaxout.npy "
                                  "(default: a new temporary folder)")
    ap.add_argument("--mean", help="mean image .npy (CxHxW), e.g. ilsvrc_2012_mean.npy")
    ap.add_argument("--labels", help="class names: the tutorial's codes file, or one per line")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="c2c-squeezenet-"))
    out.mkdir(parents=True, exist_ok=True)

    # Image preprocessing
    mean = load_mean(args.mean)
    img = load_image(args.image) if args.image else synthetic_image()
    img = preprocess(img, mean)

    # Read the contents of the input protobufs, and initialize the predictor from them:
    # it runs the init net once and creates (partitions, compiles) the predict net.
    init_net, predict_net = model_files(args.init, out, pathlib.Path(args.predict))
    p = workspace.Predictor(init_net, predict_net)

    # Run the net and return the prediction. The first run builds the native module (or
    # loads it from the cache); the next is one prediction.
    t0 = time.perf_counter()
    results = p.run({"data": img})
    t1 = time.perf_counter()
    results = p.run({"data": img})
    t2 = time.perf_counter()
    if p.segments:
        print(describe_partition(p.segments, variants=False))
        first = "first run (builds the native module, or loads it from the cache)"
    else:
        print("the predict net runs on the reference executor (C2C_BACKEND=reference)")
        first = "first run"
    print(f"{first}: {t1 - t0:.3f} s; one prediction: {(t2 - t1) * 1e3:.2f} ms")

    # Turn it into something we can play with: one array, 1 output x (1 x 1000 x 1 x 1)
    results = np.asarray(results)
    print("results shape: ", results.shape)
    describe(results, load_labels(args.labels))
    np.save(out / "data.npy", img)
    np.save(out / "softmaxout.npy", results[0])
    print(f"input and result saved in {out}")


if __name__ == "__main__":
    main()
