"""Caffe2's "MNIST - Create a CNN from Scratch" tutorial (LeNet), with only the imports changed.

    from caffe2.python import brew, core, model_helper, optimizer, workspace   # Caffe2
    import caffe2.python.predictor.predictor_exporter as pe
    from c2compile import brew, core, model_helper, optimizer, workspace       # c2compile
    import c2compile.predictor.predictor_exporter as pe

The whole tutorial flow: the data comes from LMDBs of TensorProtos (`mnist-train-nchw-lmdb`,
`mnist-test-nchw-lmdb`, as Caffe2's make_mnist_db writes them) through TensorProtosDBInput,
then Cast/Scale/StopGradient; the tutorial's model and training operators
(LabelCrossEntropy, AveragedLoss, gradients, `optimizer.build_sgd(base_learning_rate=0.1,
policy="step", stepsize=1, gamma=0.999)`), bookkeeping (Print/Summarize to files, a
Checkpoint to LMDB every 20 iterations) and its 200 iterations at batch 64; the test model
on the held-out DB; the deploy model exported to a minidb with predictor_exporter, the
workspace reset, the model loaded back with prepare_prediction_net and run.

The training net is compiled: native modules run the forward pass, the gradients and the SGD
update; the DB reader, Print/Summarize and Checkpoint run on the host between them
(`c2compile show` lists the partition).

Data: real MNIST from IDX files with `--idx DIR` (train-images-idx3-ubyte[.gz] ...);
otherwise scikit-learn's bundled handwritten digits (1797 8x8 images), upscaled to 20x20 and
centred in 28x28 as MNIST's digits are, split 80/20. Either way the script first writes the
two DBs (what `c2compile data mnist --idx DIR|--digits --out DIR` does).

    python examples/mnist.py [--idx DIR] [--out DIR] [--iters 200]

writes the DBs, the Print/Summarize files, the checkpoints, `mnist_model.minidb` and the
loss/accuracy curves (`mnist_training.png`) under OUT.
"""
import argparse
import os
import shutil

import numpy as np

import c2compile.predictor.predictor_exporter as pe
from c2compile import brew, core, model_helper, optimizer, workspace
from c2compile.data import make_mnist_dbs

TRAIN_BATCH = 64
CHECKPOINT_EVERY = 20


# ---------------------------------------------------------------- the tutorial's model

def AddInput(model, batch_size, db, db_type):
    # load the data from the DB: one uint8 image (1x28x28) and one int32 label per record
    data_uint8, label = model.TensorProtosDBInput(
        [], ["data_uint8", "label"], batch_size=batch_size, db=db, db_type=db_type)
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


def AddCheckpoints(model, every, db_type):
    # the iteration count and every parameter, saved every `every` iterations to a DB
    # named with the iteration (relative paths land in the workspace's root folder)
    ITER = brew.iter(model, "iter")
    model.Checkpoint([ITER] + model.params, [], db="mnist_lenet_checkpoint_%05d." + db_type,
                     db_type=db_type, every=every)


# ---------------------------------------------------------------- main

def test_batch_size(n: int) -> int:
    """The largest batch of at most 100 (the tutorial's) that divides the test set, so the
    test net sees every test image exactly once (its reader wraps around at the end)."""
    return max(b for b in range(1, min(n, 100) + 1) if n % b == 0)


def count_records(path: str, db_type: str) -> int:
    from c2compile.runtime.db import open_db
    with open_db(db_type, path, "read") as db:
        return sum(1 for _ in db.cursor())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idx", help="folder with MNIST's IDX files (default: sklearn digits)")
    ap.add_argument("--out", default=os.path.join("tutorial_files", "tutorial_mnist"),
                    help="root folder for the DBs, Print/Summarize files, checkpoints, model")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--db-type", default="lmdb", choices=["lmdb", "minidb"])
    args = ap.parse_args(argv)

    root_folder = os.path.abspath(args.out)
    if os.path.exists(root_folder):
        print("Looks like you ran this before, so we need to cleanup those old files...")
        shutil.rmtree(root_folder)
    os.makedirs(root_folder)
    dbs = make_mnist_dbs(root_folder, idx=args.idx, digits=args.idx is None,
                         db_type=args.db_type)
    workspace.ResetWorkspace(root_folder)
    print(f"training data in {dbs['train']}, test data in {dbs['test']}")

    arg_scope = {"order": "NCHW"}
    train_model = model_helper.ModelHelper(name="mnist_train", arg_scope=arg_scope)
    data, label = AddInput(train_model, TRAIN_BATCH, dbs["train"], args.db_type)
    softmax = AddLeNetModel(train_model, data)
    AddTrainingOperators(train_model, softmax, label)
    AddBookkeepingOperators(train_model)
    AddCheckpoints(train_model, CHECKPOINT_EVERY, args.db_type)

    n_test = count_records(dbs["test"], args.db_type)
    test_batch = test_batch_size(n_test)
    test_model = model_helper.ModelHelper(name="mnist_test", arg_scope=arg_scope,
                                          init_params=False)
    data, label = AddInput(test_model, test_batch, dbs["test"], args.db_type)
    softmax = AddLeNetModel(test_model, data)
    AddAccuracy(test_model, softmax, label)

    deploy_model = model_helper.ModelHelper(name="mnist_deploy", arg_scope=arg_scope,
                                            init_params=False)
    AddLeNetModel(deploy_model, "data")

    # ---- training
    workspace.RunNetOnce(train_model.param_init_net)
    workspace.CreateNet(train_model.net, overwrite=True)
    loss = np.zeros(args.iters)
    accuracy = np.zeros(args.iters)
    for i in range(args.iters):
        workspace.RunNet(train_model.net)
        accuracy[i] = workspace.blobs['accuracy']
        loss[i] = workspace.blobs['loss']
        if i % 25 == 0:
            print(f"Iter: {i}, Loss: {loss[i]:.4f}, Accuracy: {accuracy[i]:.4f}")
    print(f"last loss {loss[-1]:.4f}, last training accuracy {accuracy[-1]:.4f}")
    checkpoints = sorted(f for f in os.listdir(root_folder) if f.startswith("mnist_lenet_"))
    print(f"checkpoints: {', '.join(checkpoints)}")

    # ---- testing: the test model reads the trained parameters from the workspace
    workspace.RunNetOnce(test_model.param_init_net)
    workspace.CreateNet(test_model.net, overwrite=True)
    test_accuracy = np.zeros(n_test // test_batch)
    for i in range(len(test_accuracy)):
        workspace.RunNet(test_model.net.Proto().name)
        test_accuracy[i] = workspace.FetchBlob('accuracy')
    print(f"test accuracy: {test_accuracy.mean():.4f} ({n_test} images, "
          f"{len(test_accuracy)} batches of {test_batch})")

    # ---- deployment: export the deploy model, reset, load it back and predict
    pe_meta = pe.PredictorExportMeta(
        predict_net=deploy_model.net.Proto(),
        parameters=[str(b) for b in deploy_model.params],
        inputs=["data"],
        outputs=["softmax"],
    )
    model_path = os.path.join(root_folder, "mnist_model.minidb")
    pe.save_to_db("minidb", model_path, pe_meta)
    print("Deploy model saved to: " + model_path)
    # the last data batch the test net saw, and what the trained model predicted for it
    blob = workspace.FetchBlob("data")
    expected = workspace.FetchBlob("softmax")

    workspace.ResetWorkspace(root_folder)
    print(f"The blobs in the workspace after reset: {workspace.Blobs()}")
    predict_net = pe.prepare_prediction_net(model_path, "minidb")
    print(f"The blobs in the workspace after loading the model: {workspace.Blobs()}")
    workspace.FeedBlob("data", blob)
    # prepare_prediction_net created (compiled) the predict net in the workspace, so RunNet
    # runs it with the kernels the test net used (the tutorial's RunNetOnce would run it
    # once on the numpy reference executor, equal to float rounding)
    workspace.RunNet(predict_net)
    softmax = workspace.FetchBlob("softmax")
    print(f"Predicted digits of the last test batch: {softmax.argmax(axis=1)[:16]} ...")
    print(f"The loaded model predicts what the trained one did: "
          f"{bool(np.array_equal(softmax, expected))}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(loss, "b", label="loss")
    ax.plot(accuracy, "r", label="accuracy")
    ax.set_xlabel("iteration")
    ax.legend(loc="upper right")
    ax.set_title(f"LeNet training (test accuracy {test_accuracy.mean():.3f})")
    png = os.path.join(root_folder, "mnist_training.png")
    fig.savefig(png, dpi=80)
    print(f"wrote {png}")
    return test_accuracy.mean()


if __name__ == "__main__":
    main()
