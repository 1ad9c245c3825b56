"""brew.relu, brew.tanh, brew.prelu."""
from __future__ import annotations

from c2compile.helpers.params import cudnn_engine, direct_param


def prelu(model, blob_in, blob_out, num_channels=1, slope_init=None, **kwargs):
    """PRelu with a trained slope `<out>_slope` [num_channels] (ConstantFill 0.25).
    As in Caffe2, other keyword arguments are accepted and dropped."""
    slope_init = slope_init or ("ConstantFill", {"value": 0.25})
    slope = direct_param(model, blob_out + "_slope", [num_channels], slope_init)
    model.AddParameter(slope)
    return model.net.PRelu([blob_in, slope], [blob_out])


def relu(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    return model.net.Relu(blob_in, blob_out, order=order, **cudnn_engine(kwargs, use_cudnn))


def tanh(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    return model.net.Tanh(blob_in, blob_out, order=order, **cudnn_engine(kwargs, use_cudnn))
