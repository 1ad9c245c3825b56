"""brew.iter, brew.accuracy, brew.add_weight_decay: the bookkeeping ops of a training net."""
from __future__ import annotations

from c2compile import core, scope
from c2compile.proto import caffe2_pb2


def _get_weights(model, namescope=None):
    """The model's weights directly in `namescope` (default: the current name scope)."""
    if namescope is None:
        namescope = scope.CurrentNameScope()
    if namescope == "":
        return model.weights[:]
    return [w for w in model.weights if w.GetNameScope() == namescope]


def iter(model, blob_out, **kwargs):  # noqa: A001 (brew's name)
    """An int64 iteration counter: ConstantFill 0 on the CPU in param_init_net, Iter in net."""
    kwargs.pop("device_option", None)
    model.param_init_net.ConstantFill([], blob_out, shape=[1], value=0,
                                      dtype=core.DataType.INT64,
                                      device_option=core.DeviceOption(caffe2_pb2.CPU, 0),
                                      **kwargs)
    return model.net.Iter(blob_out, blob_out, **kwargs)


def accuracy(model, blob_in, blob_out, **kwargs):
    """Accuracy of [prediction, label]. Caffe2 passes no other argument to the op (top_k
    only matters off the CPU, where the inputs are first copied to the host)."""
    dev = kwargs.get("device_option", scope.CurrentDeviceScope())
    is_cpu = dev is None or dev.device_type == caffe2_pb2.CPU
    if not is_cpu and kwargs.get("top_k", 1) > 1:
        pred_host = model.net.CopyGPUToCPU(blob_in[0], blob_in[0] + "_host")
        label_host = model.net.CopyGPUToCPU(blob_in[1], blob_in[1] + "_host")
        kwargs["device_option"] = core.DeviceOption(caffe2_pb2.CPU, 0)
        model.net.Accuracy([pred_host, label_host], blob_out, **kwargs)
    else:
        model.net.Accuracy(blob_in, blob_out)


def add_weight_decay(model, weight_decay):
    """L2 regularisation: grad += weight_decay * w for each weight of the current name scope
    (WeightedSum in place on the gradient, with blobs `wd` and `ONE` in param_init_net).
    Call it after AddGradientOperators; nothing is added when weight_decay <= 0."""
    if weight_decay <= 0.0:
        return
    wd = model.param_init_net.ConstantFill([], "wd", shape=[1], value=weight_decay)
    one = model.param_init_net.ConstantFill([], "ONE", shape=[1], value=1.0)
    for param in _get_weights(model):
        grad = model.param_to_grad[param]
        model.net.WeightedSum([grad, one, param, wd], grad)
