"""Caffe2's "MNIST - Create a CNN from Scratch" tutorial (LeNet), with only the imports changed.

    from caffe2.python import brew, core, model_helper, optimizer, workspace   # Caffe2
    from c2compile import brew, core, model_helper, optimizer, workspace       # c2compile

The tutorial's model, training operators (LabelCrossEntropy, AveragedLoss, gradients,
`optimizer.build_sgd(base_learning_rate=0.1, policy="step", stepsize=1, gamma=0.999)`),
bookkeeping (Print/Summarize to files) and its 200 iterations at batch 64, then the test
model on held-out images. The training net is compiled: one native module runs the forward
pass, the gradients and the SGD update; Print/Summarize run after it on the host.

Data: real MNIST from IDX files with `--idx DIR` (train-images-idx3-ubyte[.gz] ...);
otherwise scikit-learn's bundled handwritten digits (1797 8x8 images), upscaled to 20x20 and
centred in 28x28 as MNIST's digits are, split 80/20. The images are fed as uint8 tensors and
the net casts and scales them, as the tutorial's input pipeline does (its LMDB reader comes
with c2compile's DB support).

    python examples/mnist.py [--idx DIR] [--out DIR] [--iters 200]

writes the loss/accuracy curves to OUT/mnist_training.png.
"""
import argparse
import gzip
import os
import pathlib
import time

import numpy as np

from c2compile import brew, core, model_helper, optimizer, workspace

BATCH = 64


# ---------------------------------------------------------------- data

def read_idx(path: pathlib.Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x0000 08 <ndim>, big-endian dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {list(dims)}, file holds {data.size} values")
    return data.reshape(dims)


def _idx_file(folder: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def load_mnist(folder):
    folder = pathlib.Path(folder)
    parts = [read_idx(_idx_file(folder, f"{s}-idx{d}-ubyte"))
             for s, d in (("train-images", 3), ("train-labels", 1),
                          ("t10k-images", 3), ("t10k-labels", 1))]
    return parts[0][:, None], parts[1].astype(np.int32), parts[2][:, None], \
        parts[3].astype(np.int32)


def load_digits():
    """scikit-learn's 8x8 digits as 28x28 uint8 images, shuffled and split 80/20."""
    from scipy import ndimage
    from sklearn.datasets import load_digits as sk_digits
    digits = sk_digits()
    images = digits.images / 16.0                        # 0..1
    big = ndimage.zoom(images, (1, 20 / 8, 20 / 8), order=1)  # 20x20, like MNIST's digits
    padded = np.zeros((len(big), 1, 28, 28))
    padded[:, 0, 4:24, 4:24] = np.clip(big, 0, 1)
    data = np.round(padded * 255).astype(np.uint8)
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(data))
    data, labels = data[order], labels[order]
    cut = int(0.8 * len(data))
    return data[:cut], labels[:cut], data[cut:], labels[cut:]


# ---------------------------------------------------------------- the tutorial's model

def AddInput(model, data_uint8, label):
    # cast the data to float and scale it to [0, 1); no gradient flows back into the data
    data = model.Cast(data_uint8, "data", to=core.DataType.FLOAT)
    data = model.Scale(data, data, scale=float(1. / 256))
    data = model.StopGradient(data, data)
    return data, label


def AddLeNetModel(model, data):
    conv1 = brew.conv(model, data, 'conv1', dim_in=1, dim_out=20, kernel=5)
    pool1 = brew.max_pool(model, conv1, 'pool1', kernel=2, stride=2)
    conv2 = brew.conv(model, pool1, 'conv2', dim_in=20, dim_out=50, kernel=5)
    pool2 = brew.max_pool(model, conv2, 'pool2', kernel=2, stride=2)
    fc3 = brew.fc(model, pool2, 'fc3', dim_in=50 * 4 * 4, dim_out=500)
    relu = brew.relu(model, fc3, fc3)
    pred = brew.fc(model, relu, 'pred', 500, 10)
    softmax = brew.softmax(model, pred, 'softmax')
    return softmax


def AddAccuracy(model, softmax, label):
    return brew.accuracy(model, [softmax, label], "accuracy")


def AddTrainingOperators(model, softmax, label):
    xent = model.LabelCrossEntropy([softmax, label], 'xent')
    loss = model.AveragedLoss(xent, "loss")
    AddAccuracy(model, softmax, label)
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=1,
                        gamma=0.999)


def AddBookkeepingOperators(model):
    model.Print('accuracy', [], to_file=1)
    model.Print('loss', [], to_file=1)
    for param in model.params:
        model.Summarize(param, [], to_file=1)
        model.Summarize(model.param_to_grad[param], [], to_file=1)


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idx", help="folder with MNIST's IDX files (default: sklearn digits)")
    ap.add_argument("--out", default=os.path.join("tutorial_files", "tutorial_mnist"),
                    help="root folder for the Print/Summarize files and the plot")
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args(argv)

    train_x, train_y, test_x, test_y = (load_mnist(args.idx) if args.idx else load_digits())
    print(f"training images {train_x.shape}, test images {test_x.shape}")
    os.makedirs(args.out, exist_ok=True)
    workspace.ResetWorkspace(args.out)

    arg_scope = {"order": "NCHW"}
    train_model = model_helper.ModelHelper(name="mnist_train", arg_scope=arg_scope)
    data, label = AddInput(train_model, "data_uint8", "label")
    softmax = AddLeNetModel(train_model, data)
    AddTrainingOperators(train_model, softmax, label)
    AddBookkeepingOperators(train_model)

    test_model = model_helper.ModelHelper(name="mnist_test", arg_scope=arg_scope,
                                          init_params=False)
    data, label = AddInput(test_model, "data_uint8", "label")
    softmax = AddLeNetModel(test_model, data)
    AddAccuracy(test_model, softmax, label)

    # The batches of one epoch, reshuffled every epoch, wrapping around like a DB reader.
    rng = np.random.default_rng(1)

    def batches():
        while True:
            order = rng.permutation(len(train_x))
            for i in range(0, len(order) - BATCH + 1, BATCH):
                yield train_x[order[i:i + BATCH]], train_y[order[i:i + BATCH]]

    feed = batches()
    workspace.RunNetOnce(train_model.param_init_net)
    x, y = next(feed)
    workspace.FeedBlob("data_uint8", x)
    workspace.FeedBlob("label", y)
    workspace.CreateNet(train_model.net, overwrite=True)

    loss = np.zeros(args.iters)
    accuracy = np.zeros(args.iters)
    for i in range(args.iters):
        if i == 1:  # the first run built (or loaded from the cache) the compiled module
            start = time.perf_counter()
        workspace.RunNet(train_model.net)
        accuracy[i] = workspace.blobs['accuracy']
        loss[i] = workspace.blobs['loss']
        x, y = next(feed)
        workspace.FeedBlob("data_uint8", x)
        workspace.FeedBlob("label", y)
    if args.iters > 1:
        per = (time.perf_counter() - start) / (args.iters - 1)
        print(f"{1e3 * per:.2f} ms per training iteration (after the first), with feeding "
              "and fetching")
    print(f"last loss {loss[-1]:.4f}, last training accuracy {accuracy[-1]:.4f}")

    # The test model reads the trained parameters from the workspace.
    workspace.FeedBlob("data_uint8", test_x[:BATCH])
    workspace.FeedBlob("label", test_y[:BATCH])
    workspace.RunNetOnce(test_model.param_init_net)
    workspace.CreateNet(test_model.net, overwrite=True)
    correct = 0
    for i in range(0, len(test_x), BATCH):
        xb, yb = test_x[i:i + BATCH], test_y[i:i + BATCH]
        workspace.FeedBlob("data_uint8", xb)
        workspace.FeedBlob("label", yb)
        workspace.RunNet(test_model.net)
        correct += round(float(workspace.FetchBlob("accuracy")) * len(xb))
    test_accuracy = correct / len(test_x)
    print(f"test accuracy: {test_accuracy:.4f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(loss, "b", label="loss")
    ax.plot(accuracy, "r", label="accuracy")
    ax.set_xlabel("iteration")
    ax.legend(loc="upper right")
    ax.set_title(f"LeNet training (test accuracy {test_accuracy:.3f})")
    png = os.path.join(args.out, "mnist_training.png")
    fig.savefig(png, dpi=80)
    print(f"wrote {png}")
    return test_accuracy


if __name__ == "__main__":
    main()
