"""brew.lrn, softmax, spatial_bn, spatial_gn, instance_norm, layer_norm,
moments_with_running_stats."""
from __future__ import annotations

from c2compile import scope
from c2compile.helpers.params import cudnn_engine
from c2compile.modeling import initializers
from c2compile.modeling.parameter_info import ParameterTags
from c2compile.proto import caffe2_pb2


def lrn(model, blob_in, blob_out, order="NCHW", use_cudnn=False, **kwargs):
    """LRN; on the CPU (or without cuDNN) its scale goes to `_<out>_scale`."""
    dev = kwargs.get("device_option", scope.CurrentDeviceScope())
    is_cpu = dev is None or dev.device_type == caffe2_pb2.CPU
    if use_cudnn and not is_cpu:
        kwargs["engine"] = "CUDNN"
        return model.net.LRN(blob_in, blob_out, order=order, **kwargs)
    return model.net.LRN(blob_in, [blob_out, "_" + blob_out + "_scale"], order=order,
                         **kwargs)[0]


def softmax(model, blob_in, blob_out=None, use_cudnn=False, **kwargs):
    kwargs = cudnn_engine(kwargs, use_cudnn)
    if blob_out is not None:
        return model.net.Softmax(blob_in, blob_out, **kwargs)
    return model.net.Softmax(blob_in, **kwargs)


def _constant_inits(model, classes_and_values):
    """The initializer of each (class or None, ConstantFill value): the class (default
    Initializer) made with ("ConstantFill", {"value": value}); external ones when the model
    does not init its parameters."""
    if not model.init_params:
        return [initializers.ExternalInitializer() for _ in classes_and_values]
    return [initializers.update_initializer(cls, ("ConstantFill", {"value": value}), None)
            for cls, value in classes_and_values]


def _params(model, blob_out, dim_in, specs):
    """create_param of each (suffix, initializer, tag) in order."""
    return [model.create_param(param_name=blob_out + suffix, shape=[dim_in],
                               initializer=init, tags=tag) for suffix, init, tag in specs]


def spatial_bn(model, blob_in, blob_out, dim_in, init_scale=1., init_bias=0.,
               ScaleInitializer=None, BiasInitializer=None, RunningMeanInitializer=None,
               RunningVarianceInitializer=None, order="NCHW", **kwargs):
    """SpatialBN with scale `<out>_s` (init_scale), bias `<out>_b` (init_bias), running mean
    `<out>_rm` (0) and running variance `<out>_riv` (1), the last two computed parameters.
    Training (is_test absent or 0) also writes the saved mean/inverse std `<out>_sm`/`_siv`
    and updates the running statistics in place; is_test=1 writes only the output."""
    blob_out = blob_out or model.net.NextName()
    inits = _constant_inits(model, ((ScaleInitializer, init_scale), (BiasInitializer, init_bias),
                                    (RunningMeanInitializer, 0.0),
                                    (RunningVarianceInitializer, 1.0)))
    scale, bias, running_mean, running_inv_var = _params(model, blob_out, dim_in, zip(
        ("_s", "_b", "_rm", "_riv"), inits,
        (ParameterTags.WEIGHT, ParameterTags.BIAS, ParameterTags.COMPUTED_PARAM,
         ParameterTags.COMPUTED_PARAM)))
    inputs = [blob_in, scale, bias, running_mean, running_inv_var]
    if kwargs.get("is_test"):
        return model.net.SpatialBN(inputs, [blob_out], order=order, **kwargs)
    outputs = [blob_out, running_mean, running_inv_var, blob_out + "_sm", blob_out + "_siv"]
    return model.net.SpatialBN(inputs, outputs, order=order, **kwargs)[0]


def spatial_gn(model, blob_in, blob_out, dim_in, init_scale=1., init_bias=0.,
               ScaleInitializer=None, BiasInitializer=None, RunningMeanInitializer=None,
               RunningVarianceInitializer=None, order="NCHW", **kwargs):
    """GroupNorm with scale `<out>_s` and bias `<out>_b`; its mean and std go to
    `<out>_mean`/`<out>_std`. (order and the running-statistics initializers are accepted
    and unused, as in Caffe2.)"""
    blob_out = blob_out or model.net.NextName()
    inits = _constant_inits(model, ((ScaleInitializer, init_scale),
                                    (BiasInitializer, init_bias)))
    scale, bias = _params(model, blob_out, dim_in, zip(
        ("_s", "_b"), inits, (ParameterTags.WEIGHT, ParameterTags.BIAS)))
    return model.net.GroupNorm([blob_in, scale, bias],
                               [blob_out, blob_out + "_mean", blob_out + "_std"], **kwargs)[0]


def instance_norm(model, blob_in, blob_out, dim_in, order="NCHW", **kwargs):
    """InstanceNorm with scale `<out>_s` (1) and bias `<out>_b` (0), always filled (Caffe2
    ignores init_params here); training also writes `<out>_sm` and `<out>_siv`."""
    blob_out = blob_out or model.net.NextName()
    scale, bias = (model.param_init_net.ConstantFill([], blob_out + "_" + suffix,
                                                     shape=[dim_in], value=value)
                   for suffix, value in (("s", 1.0), ("b", 0.0)))
    model.AddParameter(scale, ParameterTags.WEIGHT)
    model.AddParameter(bias, ParameterTags.BIAS)
    if kwargs.get("is_test"):
        return model.net.InstanceNorm([blob_in, scale, bias], [blob_out], order=order,
                                      **kwargs)
    return model.net.InstanceNorm([blob_in, scale, bias],
                                  [blob_out, blob_out + "_sm", blob_out + "_siv"],
                                  order=order, **kwargs)[0]


def layer_norm(model, blob_in, blob_out, dim_in, axis=1, epsilon=1e-4, initial_scale=1.0,
               initial_bias=0.0):
    """LayerNorm with scale `<out>_scale` and bias `<out>_bias` of shape dim_in (an int or a
    shape); returns (normalized, mean, std)."""
    shape = [dim_in] if isinstance(dim_in, int) else dim_in
    scale, bias = (model.create_param(param_name=f"{blob_out}_{name}", shape=shape,
                                      initializer=initializers.Initializer("ConstantFill",
                                                                           value=value),
                                      tags=tag)
                   for name, value, tag in (("scale", initial_scale, ParameterTags.WEIGHT),
                                            ("bias", initial_bias, ParameterTags.BIAS)))
    return model.net.LayerNorm([blob_in, scale, bias],
                               [blob_out, blob_out + "_mean", blob_out + "_std"],
                               axis=axis, epsilon=epsilon, elementwise_affine=True)


def moments_with_running_stats(model, blob_in, blob_out, dim_in, RunningMeanInitializer=None,
                               RunningVarianceInitializer=None, order="NCHW", **kwargs):
    """Moments over all but the channel axis into `<out>_sm`/`<out>_sv`, with running-mean
    and running-variance parameters `<out>_rm`/`<out>_riv` (created, not updated)."""
    inits = _constant_inits(model, ((RunningMeanInitializer, 0.0),
                                    (RunningVarianceInitializer, 1.0)))
    _params(model, blob_out, dim_in, zip(("_rm", "_riv"), inits,
                                         (ParameterTags.COMPUTED_PARAM,) * 2))
    axes = {"NCHW": [0, 2, 3], "NHWC": [0, 1, 2]}.get(order)
    if axes is None:
        raise ValueError(f"moments_with_running_stats: order must be NCHW or NHWC, got {order!r}")
    return model.net.Moments([blob_in], [blob_out + "_sm", blob_out + "_sv"], axes=axes,
                             order=order, keepdims=False, **kwargs)

