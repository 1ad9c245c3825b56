"""brew.fc: a fully connected layer (FC) with weight `<out>_w` [dim_out, dim_in] (XavierFill)
and bias `<out>_b` [dim_out] (ConstantFill 0)."""
from __future__ import annotations

from c2compile.helpers.params import weight_and_bias_initializers
from c2compile.modeling.parameter_info import ParameterTags


def _FC_or_packed_FC(model, op_call, blob_in, blob_out, dim_in, dim_out, weight_init=None,
                     bias_init=None, WeightInitializer=None, BiasInitializer=None,
                     enable_tensor_core=False, float16_compute=False, **kwargs):
    weight_initializer, bias_initializer = weight_and_bias_initializers(
        model, weight_init, bias_init, WeightInitializer, BiasInitializer)
    blob_out = blob_out or model.net.NextName()
    bias_tags = [ParameterTags.BIAS]
    if "freeze_bias" in kwargs:  # Caffe2 tests the key, not its value
        bias_tags.append(ParameterTags.COMPUTED_PARAM)
    weight = model.create_param(param_name=blob_out + "_w", shape=[dim_out, dim_in],
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    bias = model.create_param(param_name=blob_out + "_b", shape=[dim_out, ],
                              initializer=bias_initializer, tags=bias_tags)
    if enable_tensor_core:
        kwargs["engine"] = "TENSORCORE"
    if float16_compute:
        kwargs["float16_compute"] = True
    return op_call([blob_in, weight, bias], blob_out, **kwargs)


def fc(model, *args, **kwargs):
    """fc(model, blob_in, blob_out, dim_in, dim_out, weight_init=None, bias_init=None,
    WeightInitializer=None, BiasInitializer=None, **FC args)"""
    return _FC_or_packed_FC(model, model.net.FC, *args, **kwargs)


def packed_fc(model, *args, **kwargs):
    """fc with Caffe2's PackedFC op (same parameters)."""
    return _FC_or_packed_FC(model, model.net.PackedFC, *args, **kwargs)
