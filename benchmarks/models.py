"""The benchmark nets, their weights, and their PyTorch and onnxruntime twins.

Every net is a Caffe2 NetDef built here with `c2compile.core` (or, for SqueezeNet, read
from ../shared/models/). Its weights come from a seeded init net run once on the reference
executor; PyTorch and onnxruntime get exactly those arrays:

- PyTorch eager: `TorchNet` interprets the predict net's ops with `torch.nn.functional`
  (Conv, FC, Relu, MaxPool, AveragePool, Concat, Softmax, Dropout), reading the Caffe2
  arguments straight from the OperatorDef, independently of c2compile's own op
  definitions, so a c2compile bug does not hide in both.
- onnxruntime: `TorchNet` exported with `torch.onnx.export(..., dynamo=False)`.
- The tutorial's tiny net draws fresh random numbers every run, so its twins are written
  out by hand (`tiny_torch`, `tiny_onnx`).

FLOPs are counted analytically by `TorchNet.flops`: 2 * MACs of every Conv and FC, from the
shapes of an actual run; elementwise ops, pooling and softmax are ignored.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F

# SqueezeNet 1.1's seeded stand-in weights, as an init net of GivenTensorFill ops
from c2compile.squeezenet import init_net as squeezenet_init_net

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
SQUEEZENET_PB = MODELS / "squeezenet_predict.pb"


@dataclasses.dataclass
class NetModel:
    """A predict net, the init net that makes its weights, and one batch of inputs."""
    key: str
    title: str
    predict: object  # caffe2_pb2.NetDef
    init: object  # caffe2_pb2.NetDef
    inputs: dict  # name -> np.ndarray (float32)

    @property
    def outputs(self) -> list[str]:
        return list(self.predict.external_output)

    def params(self) -> dict[str, np.ndarray]:
        return run_init(self.init)


# ----------------------------------------------------------------------------- nets

def _seeded(net, i: int, seed: int):
    """A device scope that seeds the fill op created inside it (deterministic weights)."""
    from c2compile import core
    return core.DeviceScope(core.DeviceOption(0, random_seed=seed * 1000 + i))


def _init_net(name: str, shapes: dict[str, list[int]], seed: int):
    """Xavier weights and small Gaussian biases (nonzero, so a dropped bias shows)."""
    from c2compile import core
    net = core.Net(name)
    for i, (blob, shape) in enumerate(sorted(shapes.items())):
        with _seeded(net, i, seed):
            if blob.endswith("_w"):
                net.XavierFill([], blob, shape=shape)
            else:
                net.GaussianFill([], blob, shape=shape, std=0.05)
    return _named(net, name)


def tiny_net():
    """The basics tutorial's net: four ops, all run on every RunNet (run_once=0)."""
    from c2compile import core
    net = core.Net("my_first_net")
    X = net.GaussianFill([], ["X"], mean=0.0, std=1.0, shape=[2, 3], run_once=0)
    W = net.GaussianFill([], ["W"], mean=0.0, std=1.0, shape=[5, 3], run_once=0)
    b = net.ConstantFill([], ["b"], shape=[5], value=1.0, run_once=0)
    X.FC([W, b], ["Y"])
    return net


TINY_OUTPUTS = ["X", "W", "b", "Y"]
TINY_FLOPS = 2 * 2 * 5 * 3


def lenet(batch: int = 64, seed: int = 1) -> NetModel:
    """LeNet from the MNIST tutorial (AddLeNetModel), with its blob names."""
    from c2compile import core
    net = core.Net("lenet")
    net.Conv(["data", "conv1_w", "conv1_b"], "conv1", kernel=5)  # 28 -> 24
    net.MaxPool("conv1", "pool1", kernel=2, stride=2)  # 24 -> 12
    net.Conv(["pool1", "conv2_w", "conv2_b"], "conv2", kernel=5)  # 12 -> 8
    net.MaxPool("conv2", "pool2", kernel=2, stride=2)  # 8 -> 4
    net.FC(["pool2", "fc3_w", "fc3_b"], "fc3")  # 50*4*4 -> 500
    net.Relu("fc3", "relu3")
    net.FC(["relu3", "pred_w", "pred_b"], "pred")  # 500 -> 10
    net.Softmax("pred", "softmax")
    shapes = {"conv1_w": [20, 1, 5, 5], "conv1_b": [20], "conv2_w": [50, 20, 5, 5],
              "conv2_b": [50], "fc3_w": [500, 800], "fc3_b": [500], "pred_w": [10, 500],
              "pred_b": [10]}
    predict = _finish(net, "lenet", ["data", *shapes], ["softmax"])
    data = np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)
    return NetModel("lenet", f"LeNet, batch {batch}", predict,
                    _init_net("lenet_init", shapes, seed), {"data": data})


def mlp(batch: int = 64, seed: int = 2) -> NetModel:
    """The MNIST tutorial's MLP 784-1568-1568-10: FC, Relu, FC, Relu, FC, Softmax."""
    from c2compile import core
    net = core.Net("mlp")
    sizes = [784, 1568, 1568, 10]
    shapes, layer = {}, "data"
    for i in range(3):
        net.FC([layer, f"dense_{i}_w", f"dense_{i}_b"], f"dense_{i}")
        shapes[f"dense_{i}_w"], shapes[f"dense_{i}_b"] = [sizes[i + 1], sizes[i]], [sizes[i + 1]]
        layer = f"dense_{i}"
        if i < 2:
            net.Relu(layer, f"relu_{i}")
            layer = f"relu_{i}"
    net.Softmax(layer, "softmax")
    predict = _finish(net, "mlp", ["data", *shapes], ["softmax"])
    data = np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)
    return NetModel("mlp", f"MLP 784-1568-1568-10, batch {batch}", predict,
                    _init_net("mlp_init", shapes, seed), {"data": data})


def squeezenet(batch: int = 1, size: int = 224, seed: int = 3) -> NetModel:
    """The real SqueezeNet 1.1 predict net from ../shared/models/."""
    from c2compile.proto import caffe2_pb2
    if not SQUEEZENET_PB.exists():
        raise FileNotFoundError(f"{SQUEEZENET_PB} is not present")
    predict = caffe2_pb2.NetDef()
    predict.ParseFromString(SQUEEZENET_PB.read_bytes())
    if not predict.name:
        predict.name = "squeezenet"
    data = np.random.default_rng(seed).standard_normal((batch, 3, size, size), np.float32)
    return NetModel("squeezenet", f"SqueezeNet 1.1, batch {batch}, 3x{size}x{size}", predict,
                    squeezenet_init_net(), {"data": data})


def _finish(net, name, external_inputs, external_outputs):
    have = set(net.Proto().external_input)  # core.Net records the inputs ops read
    missing = [b for b in external_inputs if b not in have]
    if missing:
        net.AddExternalInput(*missing)
    net.AddExternalOutput(*external_outputs)
    return _named(net, name)


def _named(net, name: str):
    """A copy of the net's proto named `name`: core.Net makes a second "lenet" "lenet_1"
    in the same process, and the name is part of the generated source (so of its cache key)."""
    from c2compile.proto import caffe2_pb2
    proto = caffe2_pb2.NetDef()
    proto.CopyFrom(net.Proto())
    proto.name = name
    return proto


def run_init(init) -> dict[str, np.ndarray]:
    """The blobs an init net makes, run in a scratch workspace (the current one is kept)."""
    from c2compile import workspace
    previous = workspace.CurrentWorkspace()
    workspace.SwitchWorkspace("benchmarks-init", True)
    try:
        workspace.ResetWorkspace()
        workspace.RunNetOnce(init)
        return {name: np.array(workspace.FetchBlob(name)) for name in workspace.Blobs()}
    finally:
        workspace.ResetWorkspace()
        workspace.SwitchWorkspace(previous)


# ----------------------------------------------------------------------------- PyTorch twin

def _args(op) -> dict:
    out = {}
    for a in op.arg:
        if a.ints:
            out[a.name] = list(a.ints)
        elif a.floats:
            out[a.name] = list(a.floats)
        elif a.HasField("i"):
            out[a.name] = a.i
        elif a.HasField("f"):
            out[a.name] = a.f
        elif a.HasField("s"):
            out[a.name] = a.s.decode()
    return out


def _pair(args: dict, name: str, default: int) -> tuple[int, int]:
    """Caffe2's kernel/stride/dilation spellings: `x`, `xs`, `x_h` + `x_w`."""
    if name + "s" in args:
        return tuple(args[name + "s"])
    if name + "_h" in args:
        return args[name + "_h"], args[name + "_w"]
    v = args.get(name, default)
    return v, v


def _pads(args: dict) -> tuple[int, int]:
    if "pads" in args:
        t, l, b, r = args["pads"]
    elif "pad_t" in args:
        t, l, b, r = (args.get("pad_" + s, 0) for s in "tlbr")
    else:
        t = l = b = r = args.get("pad", 0)
    if (t, l) != (b, r):
        raise NotImplementedError(f"asymmetric pads {t, l, b, r}")
    return t, l


def _torch_op(op):
    """A function env -> None that runs one Caffe2 op with torch.nn.functional, and its
    MAC count from the shapes it saw (None for ops whose FLOPs are ignored)."""
    args, ins, outs = _args(op), list(op.input), list(op.output)
    if args.get("order", "NCHW") != "NCHW":
        raise NotImplementedError(f"{op.type} with order {args['order']}")
    t = op.type

    if t == "Conv":
        stride, dil, pad = _pair(args, "stride", 1), _pair(args, "dilation", 1), _pads(args)
        group = args.get("group", 1)

        def run(env):
            b = env[ins[2]] if len(ins) > 2 else None
            env[outs[0]] = F.conv2d(env[ins[0]], env[ins[1]], b, stride, pad, dil, group)

        def macs(env):
            return env[outs[0]].numel() * env[ins[1]][0].numel()
    elif t == "FC":
        axis, axis_w = args.get("axis", 1), args.get("axis_w", 1)

        def run(env):
            x, w = env[ins[0]], env[ins[1]]
            w = w.flatten(0, axis_w - 1).flatten(1) if w.dim() > 2 else w
            env[outs[0]] = F.linear(x.flatten(0, axis - 1).flatten(1), w, env[ins[2]])

        def macs(env):
            return env[outs[0]].numel() * env[ins[1]].numel() // env[ins[1]].shape[0]
    elif t in ("MaxPool", "AveragePool"):
        kernel, stride, pad = _pair(args, "kernel", 0), _pair(args, "stride", 1), _pads(args)
        ceil = args.get("legacy_pad", 0) == 3  # CAFFE_LEGACY_POOLING rounds the size up
        if args.get("global_pooling", 0):
            fn = ((lambda x: x.amax((2, 3), keepdim=True)) if t == "MaxPool"
                  else (lambda x: x.mean((2, 3), keepdim=True)))
        elif t == "MaxPool":
            def fn(x):
                return F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
        else:  # Caffe2 divides by the window clipped to the image: padding not counted
            def fn(x):
                return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil,
                                    count_include_pad=False)

        def run(env):
            env[outs[0]] = fn(env[ins[0]])
        macs = None
    elif t == "Relu":
        def run(env):
            env[outs[0]] = F.relu(env[ins[0]])
        macs = None
    elif t in ("Concat", "DepthConcat"):
        axis = args.get("axis", 1)

        def run(env):
            env[outs[0]] = torch.cat([env[i] for i in ins], axis)
        macs = None
    elif t == "Softmax":
        axis = args.get("axis", 1)

        def run(env):
            x = env[ins[0]]
            env[outs[0]] = F.softmax(x.flatten(axis).flatten(0, axis - 1), 1).reshape(x.shape)
        macs = None
    elif t == "Dropout":
        if not args.get("is_test", 0):
            raise NotImplementedError("Dropout in training mode")

        def run(env):
            env[outs[0]] = env[ins[0]]
        macs = None
    else:
        raise NotImplementedError(f"no PyTorch twin for op type {t}")
    return run, macs


class TorchNet(torch.nn.Module):
    """A Caffe2 predict net run op by op with torch.nn.functional (PyTorch eager)."""

    def __init__(self, predict, params: dict[str, np.ndarray]):
        super().__init__()
        self.ops = [_torch_op(op) for op in predict.op]
        self.input_names = [b for b in predict.external_input if b not in params]
        self.output_names = list(predict.external_output)
        self._param_attr = {}
        for i, (name, value) in enumerate(sorted(params.items())):
            attr = f"p{i}_" + "".join(c if c.isalnum() else "_" for c in name)
            self.register_buffer(attr, torch.from_numpy(np.ascontiguousarray(value)))
            self._param_attr[name] = attr

    def env(self, *inputs) -> dict:
        """Every blob the net computes, by name (the last version of each)."""
        env = {name: getattr(self, attr) for name, attr in self._param_attr.items()}
        env.update(zip(self.input_names, inputs))
        for run, _ in self.ops:
            run(env)
        return env

    def forward(self, *inputs):
        env = self.env(*inputs)
        out = tuple(env[n] for n in self.output_names)
        return out[0] if len(out) == 1 else out

    def flops(self, *inputs) -> int:
        """2 * MACs of every Conv and FC, on these inputs."""
        env = {name: getattr(self, attr) for name, attr in self._param_attr.items()}
        env.update(zip(self.input_names, inputs))
        total = 0
        with torch.inference_mode():
            for run, macs in self.ops:
                run(env)
                if macs is not None:
                    total += 2 * macs(env)
        return total


def export_onnx(module, inputs: list, input_names: list[str], output_names: list[str]) -> bytes:
    """The ONNX model of `module` traced on `inputs` (TorchScript exporter, dynamo=False)."""
    fd, path = tempfile.mkstemp(suffix=".onnx", prefix="c2c-bench-")
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, on purpose
            torch.onnx.export(module, tuple(inputs), path, input_names=input_names,
                              output_names=output_names, opset_version=17, dynamo=False,
                              do_constant_folding=True)
        return pathlib.Path(path).read_bytes()
    finally:
        os.unlink(path)


# ----------------------------------------------------------------------------- tiny twins

def tiny_torch():
    """One run of the tiny net in PyTorch: randn, randn, full, linear."""
    X = torch.randn(2, 3)
    W = torch.randn(5, 3)
    b = torch.full((5,), 1.0)
    return X, W, b, F.linear(X, W, b)


def tiny_onnx() -> bytes:
    """The tiny net as an ONNX graph: RandomNormal x2, ConstantOfShape, Gemm (transB)."""
    import onnx
    from onnx import TensorProto, helper
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("RandomNormal", [], ["X"], shape=[2, 3], mean=0.0, scale=1.0, dtype=f),
        helper.make_node("RandomNormal", [], ["W"], shape=[5, 3], mean=0.0, scale=1.0, dtype=f),
        helper.make_node("ConstantOfShape", ["b_shape"], ["b"],
                         value=helper.make_tensor("value", f, [1], [1.0])),
        helper.make_node("Gemm", ["X", "W", "b"], ["Y"], transB=1),
    ]
    shape = helper.make_tensor("b_shape", TensorProto.INT64, [1], [5])
    outs = [helper.make_tensor_value_info(n, f, s)
            for n, s in zip(TINY_OUTPUTS, ([2, 3], [5, 3], [5], [2, 5]))]
    graph = helper.make_graph(nodes, "my_first_net", [], outs, initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


BUILDERS = {"lenet": lenet, "squeezenet": squeezenet, "mlp": mlp}


# ----------------------------------------------------------------------------- training

LENET_PARAMS = ["conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc3_w", "fc3_b", "pred_w",
                "pred_b"]


@dataclasses.dataclass
class TrainModel:
    """The MNIST tutorial's training model: init net, train net, one batch."""
    init: object  # caffe2_pb2.NetDef (param_init_net)
    train: object  # caffe2_pb2.NetDef (forward + gradients + SGD update)
    data: np.ndarray  # float32 N x 1 x 28 x 28
    label: np.ndarray  # int32 N
    base_lr: float = 0.1
    gamma: float = 0.999  # step policy, stepsize 1

    def lr(self, step: int) -> float:
        """The learning rate of the `step`-th run (1-based: Iter runs before LearningRate)."""
        return self.base_lr * self.gamma ** step


def lenet_train(batch: int = 64, seed: int = 1) -> TrainModel:
    """LeNet with the tutorial's training operators, built with brew/model_helper/optimizer:
    StopGradient on the data, LabelCrossEntropy + AveragedLoss, Accuracy, gradients,
    build_sgd(base_learning_rate=0.1, policy="step", stepsize=1, gamma=0.999)."""
    from c2compile import brew, model_helper, optimizer
    model = model_helper.ModelHelper(name="lenet_train", arg_scope={"order": "NCHW"})
    data = model.StopGradient("data", "data")
    conv1 = brew.conv(model, data, "conv1", dim_in=1, dim_out=20, kernel=5)
    pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
    conv2 = brew.conv(model, pool1, "conv2", dim_in=20, dim_out=50, kernel=5)
    pool2 = brew.max_pool(model, conv2, "pool2", kernel=2, stride=2)
    fc3 = brew.fc(model, pool2, "fc3", dim_in=50 * 4 * 4, dim_out=500)
    relu = brew.relu(model, fc3, fc3)
    pred = brew.fc(model, relu, "pred", 500, 10)
    softmax = brew.softmax(model, pred, "softmax")
    xent = model.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    brew.accuracy(model, [softmax, "label"], "accuracy")
    model.AddGradientOperators([loss])
    optimizer.build_sgd(model, base_learning_rate=0.1, policy="step", stepsize=1, gamma=0.999)
    init = _named(model.param_init_net, "lenet_train_init")
    init.device_option.random_seed = seed  # every fill of the init net is seeded
    rng = np.random.default_rng(seed)
    return TrainModel(init, _named(model.net, "lenet_train"),
                      rng.random((batch, 1, 28, 28), dtype=np.float32),
                      rng.integers(0, 10, batch).astype(np.int32))


class TorchLeNetStep:
    """One SGD step of the same LeNet in PyTorch eager, on copies of the given params."""

    def __init__(self, params: dict[str, np.ndarray], model: TrainModel):
        self.p = {n: torch.tensor(params[n], requires_grad=True) for n in LENET_PARAMS}
        self.model = model
        self.step_count = 0

    def loss(self, x, label):
        p = self.p
        y = F.max_pool2d(F.conv2d(x, p["conv1_w"], p["conv1_b"]), 2, 2)
        y = F.max_pool2d(F.conv2d(y, p["conv2_w"], p["conv2_b"]), 2, 2)
        y = F.relu(F.linear(y.flatten(1), p["fc3_w"], p["fc3_b"]))
        softmax = F.softmax(F.linear(y, p["pred_w"], p["pred_b"]), dim=1)
        # LabelCrossEntropy: -log(max(p, 1e-20)) of the label's probability, averaged
        picked = softmax.gather(1, label.long()[:, None])[:, 0]
        return -torch.log(picked.clamp_min(1e-20)).mean()

    def __call__(self, x, label):
        self.step_count += 1
        loss = self.loss(x, label)
        loss.backward()
        lr = self.model.lr(self.step_count)
        with torch.no_grad():
            for t in self.p.values():
                t -= lr * t.grad
                t.grad = None
        return loss
