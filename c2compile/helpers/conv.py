"""brew.conv and friends: convolutions with weight `<out>_w` (XavierFill) and bias `<out>_b`
(ConstantFill 0). The weight is [dim_out, dim_in/group, kh, kw] in NCHW and
[dim_out, kh, kw, dim_in/group] in NHWC."""
from __future__ import annotations

from c2compile.helpers.params import direct_param, weight_and_bias_initializers
from c2compile.modeling.parameter_info import ParameterTags


def _cudnn_kwargs(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit):
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
        kwargs["exhaustive_search"] = cudnn_exhaustive_search
        if ws_nbytes_limit:
            kwargs["ws_nbytes_limit"] = ws_nbytes_limit


def _ConvBase(model, is_nd, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
              bias_init=None, WeightInitializer=None, BiasInitializer=None, group=1,
              transform_inputs=None, use_cudnn=False, order="NCHW",
              cudnn_exhaustive_search=False, ws_nbytes_limit=None, float16_compute=False,
              **kwargs):
    if is_nd:
        kernels = kernel if isinstance(kernel, list) else [kernel]
    elif isinstance(kernel, list):
        if len(kernel) != 2:
            raise AssertionError("Conv support only a 2D kernel.")
        kernels = kernel
    else:
        kernels = [kernel] * 2

    requested_engine = kwargs.get("engine")
    if requested_engine is not None:
        if use_cudnn and requested_engine != "CUDNN":
            raise ValueError('When use_cudnn=True, the only engine you can specify is "CUDNN"')
        if not use_cudnn and requested_engine == "CUDNN":
            raise ValueError('When use_cudnn=False, the only engine you can specify is ""')
    _cudnn_kwargs(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit)

    use_bias = not kwargs.get("no_bias")
    blob_out = blob_out or model.net.NextName()
    channels = int(dim_in / group)  # Caffe2 divides as floats and truncates
    weight_shape = ([dim_out, channels] + kernels if order == "NCHW"
                    else [dim_out] + kernels + [channels])
    weight_initializer, bias_initializer = weight_and_bias_initializers(
        model, weight_init, bias_init, WeightInitializer, BiasInitializer)
    weight = model.create_param(param_name=blob_out + "_w", shape=weight_shape,
                                initializer=weight_initializer, tags=ParameterTags.WEIGHT)
    inputs = [blob_in, weight]
    if use_bias:
        inputs.append(model.create_param(param_name=blob_out + "_b", shape=[dim_out, ],
                                         initializer=bias_initializer,
                                         tags=ParameterTags.BIAS))
    if transform_inputs is not None:
        transform_inputs(model, blob_out, inputs)
    if float16_compute:
        kwargs["float16_compute"] = True
    kwargs.pop("no_bias", None)  # the op tells from its number of inputs
    if group != 1:
        kwargs["group"] = group
    if is_nd:
        return model.net.Conv(inputs, blob_out, kernels=kernels, order=order, **kwargs)
    if isinstance(kernel, list):
        return model.net.Conv(inputs, blob_out, kernel_h=kernel[0], kernel_w=kernel[1],
                              order=order, **kwargs)
    return model.net.Conv(inputs, blob_out, kernel=kernel, order=order, **kwargs)


def conv_nd(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
            bias_init=None, WeightInitializer=None, BiasInitializer=None, group=1,
            transform_inputs=None, order="NCHW", **kwargs):
    """N-dimensional convolution (NCHW only): `kernel` an int or one size per dimension."""
    if order != "NCHW":
        raise AssertionError("ConvNd only supported for NCHW storage.")
    return _ConvBase(model, True, blob_in, blob_out, dim_in, dim_out, kernel, weight_init,
                     bias_init, WeightInitializer, BiasInitializer, group, transform_inputs,
                     order=order, **kwargs)


def conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None, bias_init=None,
         WeightInitializer=None, BiasInitializer=None, group=1, transform_inputs=None,
         **kwargs):
    """2-D convolution: `kernel` an int or [kernel_h, kernel_w]; no_bias=True drops the bias."""
    return _ConvBase(model, False, blob_in, blob_out, dim_in, dim_out, kernel, weight_init,
                     bias_init, WeightInitializer, BiasInitializer, group, transform_inputs,
                     **kwargs)


def group_conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
               bias_init=None, group=1, **kwargs):
    """conv with `group` (kept for Caffe2's older interface)."""
    return conv(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=weight_init,
                bias_init=bias_init, group=group, **kwargs)


def conv_transpose(model, blob_in, blob_out, dim_in, dim_out, kernel, weight_init=None,
                   bias_init=None, use_cudnn=False, order="NCHW",
                   cudnn_exhaustive_search=False, ws_nbytes_limit=None, **kwargs):
    """ConvTranspose with weight [dim_in, dim_out, k, k] (NCHW) or [dim_in, k, k, dim_out].

    As in Caffe2, the fills are added directly (no ParameterInfo, no parameter sharing).
    """
    weight_init = weight_init or ("XavierFill", {})
    bias_init = bias_init or ("ConstantFill", {})
    blob_out = blob_out or model.net.NextName()
    weight_shape = ([dim_in, dim_out, kernel, kernel] if order == "NCHW"
                    else [dim_in, kernel, kernel, dim_out])
    weight = direct_param(model, blob_out + "_w", weight_shape, weight_init)
    bias = direct_param(model, blob_out + "_b", [dim_out, ], bias_init)
    model.AddParameter(weight, ParameterTags.WEIGHT)
    model.AddParameter(bias, ParameterTags.BIAS)
    _cudnn_kwargs(kwargs, use_cudnn, cudnn_exhaustive_search, ws_nbytes_limit)
    return model.net.ConvTranspose([blob_in, weight, bias], blob_out, kernel=kernel,
                                   order=order, **kwargs)

