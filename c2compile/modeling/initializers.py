"""How a parameter is created in the init net: Caffe2's `modeling.initializers`.

Helpers take either an `(op type, {args})` pair (`weight_init=("XavierFill", {})`) or an
initializer class (`WeightInitializer=Initializer`); `update_initializer` turns those into one
object whose `create_param(param_name, init_net, shape)` adds the fill op.
"""
from __future__ import annotations

from c2compile.core import BlobReference, DataType, ScopedBlobReference
from c2compile.modeling.parameter_info import ParameterInfo


class Initializer:
    """Fill the parameter with one op: `operator_name(shape=shape, **operator_kwargs)`."""

    def __init__(self, operator_name=None, **kwargs):
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def update(self, operator_name, kwargs):
        if self.operator_name is not None:
            raise Exception("Operator name overwrites are not allowed")
        self.operator_name = operator_name
        self.operator_kwargs = kwargs

    def create_param(self, param_name, init_net, shape):
        param = getattr(init_net, self.operator_name)(
            [], param_name, shape=shape, **self.operator_kwargs)
        return ParameterInfo(param_id=None, param=param, shape=shape)


class ExternalInitializer:
    """The parameter is put in the workspace by the user: no op is added to the init net."""

    def create_param(self, param_name, init_net, shape):
        if isinstance(param_name, BlobReference):
            param = BlobReference(str(param_name), init_net)
        elif isinstance(param_name, str):
            param = ScopedBlobReference(param_name, init_net)
        else:
            raise TypeError("Unsupported type for param_name")
        return ParameterInfo(param_id=None, param=param, shape=shape)


class PseudoFP16Initializer(Initializer):
    """A float32 master copy `<name>_fp32` filled by the op, and the float16 parameter
    cast from it (FloatToHalf) for compute; the optimizer updates the master copy."""

    def create_param(self, param_name, init_net, shape):
        master = getattr(init_net, self.operator_name)(
            [], param_name + "_fp32", shape=shape, **self.operator_kwargs)
        param = init_net.FloatToHalf(master, param_name)
        return ParameterInfo(param_id=None, param=param, shape=shape,
                             blob_copy={DataType.FLOAT: master})


class ReversePseudoFP16Initializer(Initializer):
    """Like PseudoFP16Initializer, but the float32 blob is the parameter and the float16
    copy `<name>_fp16` the extra."""

    def create_param(self, param_name, init_net, shape):
        param = getattr(init_net, self.operator_name)(
            [], param_name, shape=shape, **self.operator_kwargs)
        half = init_net.FloatToHalf(param, param_name + "_fp16")
        return ParameterInfo(param_id=None, param=param, shape=shape,
                             blob_copy={DataType.FLOAT16: half})


def update_initializer(initializer_class, operator_name_and_kwargs,
                       default_operator_name_and_kwargs):
    """An initializer of `initializer_class` (default `Initializer`) made from the
    `(op type, kwargs)` pair given, else from the default pair."""
    name, kwargs = operator_name_and_kwargs or default_operator_name_and_kwargs
    return (initializer_class or Initializer)(name, **kwargs)
