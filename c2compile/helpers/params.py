"""How helpers make their parameters (shared by the helper families)."""
from __future__ import annotations

from c2compile import core
from c2compile.modeling import initializers


def weight_and_bias_initializers(model, weight_init, bias_init, WeightInitializer,
                                 BiasInitializer):
    """The (weight, bias) initializers of a layer: XavierFill and ConstantFill unless given
    as `(op, kwargs)` pairs or classes; external (no fill op) when the model does not init
    its parameters."""
    if not model.init_params:
        return initializers.ExternalInitializer(), initializers.ExternalInitializer()
    return (initializers.update_initializer(WeightInitializer, weight_init, ("XavierFill", {})),
            initializers.update_initializer(BiasInitializer, bias_init, ("ConstantFill", {})))


def direct_param(model, name, shape, init):
    """A parameter that some Caffe2 helpers fill without create_param (so no ParameterInfo
    and no parameter sharing): the `(op, kwargs)` fill in param_init_net, or only the scoped
    name when the model does not init its parameters. The caller registers it."""
    if model.init_params:
        return getattr(model.param_init_net, init[0])([], name, shape=shape, **init[1])
    return core.ScopedBlobReference(name, model.param_init_net)


def cudnn_engine(kwargs: dict, use_cudnn: bool) -> dict:
    """kwargs with engine="CUDNN" when use_cudnn (the model's arg_scope sets use_cudnn=True
    by default; c2compile runs a CUDNN engine request on its default engine)."""
    if use_cudnn:
        kwargs["engine"] = "CUDNN"
    return kwargs
