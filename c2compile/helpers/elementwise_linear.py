"""brew.elementwise_linear: Y = X * w + b per feature, w `<out>_w` (1.0) and b `<out>_b` (0.0)."""
from __future__ import annotations

from c2compile.helpers.params import direct_param
from c2compile.modeling.parameter_info import ParameterTags


def elementwise_linear(model, blob_in, blob_out, dim, weight_init=None, bias_init=None,
                       **kwargs):
    blob_out = blob_out or model.net.NextName()
    weight = direct_param(model, blob_out + "_w", [dim],
                          weight_init or ("ConstantFill", {"value": 1.0}))
    bias = direct_param(model, blob_out + "_b", [dim],
                        bias_init or ("ConstantFill", {"value": 0.0}))
    model.AddParameter(weight, ParameterTags.WEIGHT)
    model.AddParameter(bias, ParameterTags.BIAS)
    return model.net.ElementwiseLinear([blob_in, weight, bias], blob_out, **kwargs)
