"""What the brew / model_helper / optimizer tests share.

NetDefs as short Python literals, so tests can pin what Caffe2 1.10 emitted:

`summarize(net)` gives one tuple per op: (type, inputs, outputs, [(arg, value), ...]) plus a
dict of what else is set: "engine", "device" (() for an empty DeviceOption, else
(device_type, device_id, extra_info)) and "grad" (is_gradient_op). Floats are rounded to 7
significant digits (they are float32 in the proto). The expected values in the tests were
printed by this same function run on the same model under real Caffe2 1.10.2.
"""
from __future__ import annotations

import itertools

from c2compile import brew, model_helper
from c2compile.modeling.initializers import Initializer
from c2compile.modeling.parameter_info import ParameterTags

_model_ids = itertools.count()


def new_model(base="m", **kwargs) -> model_helper.ModelHelper:
    """A ModelHelper with a name no other test used (net names are unique per process)."""
    return model_helper.ModelHelper(name=f"{base}{next(_model_ids)}", **kwargs)


def relu_model(base="relu", **kwargs) -> model_helper.ModelHelper:
    """Parameters w [2, 3] (weight, XavierFill) and b [3] (bias, ConstantFill) feeding Relus
    summed into "loss": a model whose gradient ops (ReluGradient, Sum's pass-through) are
    c2compile's oldest. The same model was built under Caffe2 for the pinned values."""
    model = new_model(base, **kwargs)
    w = model.create_param("w", [2, 3], Initializer("XavierFill"), tags=ParameterTags.WEIGHT)
    b = model.create_param("b", [3], Initializer("ConstantFill"), tags=ParameterTags.BIAS)
    model.net.Sum([model.net.Relu(w, "rw"), model.net.Relu(b, "rb")], "loss")
    return model


LENET_PARAMS = ["conv1_w", "conv1_b", "conv2_w", "conv2_b", "fc3_w", "fc3_b", "pred_w",
                "pred_b"]


def lenet_deploy(model, data="data"):
    """Caffe2's MNIST tutorial AddLeNetModel (what its deploy model holds); returns softmax."""
    conv1 = brew.conv(model, data, "conv1", dim_in=1, dim_out=20, kernel=5)
    pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
    conv2 = brew.conv(model, pool1, "conv2", dim_in=20, dim_out=50, kernel=5)
    pool2 = brew.max_pool(model, conv2, "pool2", kernel=2, stride=2)
    fc3 = brew.fc(model, pool2, "fc3", dim_in=50 * 4 * 4, dim_out=500)
    relu = brew.relu(model, fc3, "relu3")
    pred = brew.fc(model, relu, "pred", 500, 10)
    return brew.softmax(model, pred, "softmax")


def lenet(model):
    """Caffe2's MNIST tutorial LeNet (+ LabelCrossEntropy, AveragedLoss, accuracy)."""
    softmax = lenet_deploy(model)
    xent = model.LabelCrossEntropy([softmax, "label"], "xent")
    loss = model.AveragedLoss(xent, "loss")
    brew.accuracy(model, [softmax, "label"], "accuracy")
    return loss


def _value(arg):
    if arg.HasField("f"):
        return float(f"{arg.f:.7g}")
    if arg.HasField("i"):
        return arg.i
    if arg.HasField("s"):
        return arg.s.decode()
    if arg.floats:
        return [float(f"{f:.7g}") for f in arg.floats]
    if arg.ints:
        return list(arg.ints)
    if arg.strings:
        return [s.decode() for s in arg.strings]
    return None


def _device(op):
    d = op.device_option
    if not (d.HasField("device_type") or d.extra_info):
        return ()
    return (d.device_type, d.device_id, list(d.extra_info))


def summarize_op(op) -> tuple:
    row = [op.type, list(op.input), list(op.output), [(a.name, _value(a)) for a in op.arg]]
    extra = {}
    if op.engine:
        extra["engine"] = op.engine
    if op.HasField("device_option"):
        extra["device"] = _device(op)
    if op.is_gradient_op:
        extra["grad"] = True
    if extra:
        row.append(extra)
    return tuple(row)


def summarize(net) -> list[tuple]:
    """One summary tuple per op of `net` (a core.Net, ModelHelper net or NetDef)."""
    proto = net.Proto() if hasattr(net, "Proto") else net
    return [summarize_op(op) for op in proto.op]
