"""Model-building helpers by name: Caffe2 1.10's `caffe2.python.brew`.

    model = model_helper.ModelHelper(name="mnist")
    conv1 = brew.conv(model, "data", "conv1", dim_in=1, dim_out=20, kernel=5)
    pool1 = brew.max_pool(model, conv1, "pool1", kernel=2, stride=2)
    pred = brew.fc(model, pool1, "pred", dim_in=20 * 12 * 12, dim_out=10)

`brew.<name>(model, ...)` calls the helper registered under that name (the functions of
`c2compile.helpers`, plus any added with `brew.Register(fn)`) with, in increasing priority:
the model's `arg_scope` (only the arguments the helper declares, unless it takes
**kwargs), the current `brew.arg_scope(...)` entries for that helper name, and the call's
own keyword arguments. The model is the first positional argument or `model=`.

`brew.has_helper(fn_or_name)` and `brew.Helpers()` (the registered names; c2compile's
addition) tell what is registered.
"""
from __future__ import annotations

import copy as _copy
import inspect as _inspect

from c2compile.helpers import (algebra as _algebra, array_helpers as _array,
                               conv as _conv, db_input as _db_input, dropout as _dropout,
                               elementwise_linear as _elementwise_linear, fc as _fc,
                               nonlinearity as _nonlinearity, normalization as _norm,
                               pooling as _pooling, train as _train)
from c2compile.helpers.arg_scope import arg_scope, get_current_scope  # noqa: F401
from c2compile.model_helper import ModelHelper as _ModelHelper

# Module-level names here start with "_" (or are brew's own API), so that a helper of any
# name, registered later, is found through __getattr__ and never shadowed.
_registry = {
    "arg_scope": arg_scope,
    "fc": _fc.fc,
    "packed_fc": _fc.packed_fc,
    "dropout": _dropout.dropout,
    "max_pool": _pooling.max_pool,
    "average_pool": _pooling.average_pool,
    "max_pool_with_index": _pooling.max_pool_with_index,
    "lrn": _norm.lrn,
    "softmax": _norm.softmax,
    "instance_norm": _norm.instance_norm,
    "spatial_bn": _norm.spatial_bn,
    "spatial_gn": _norm.spatial_gn,
    "moments_with_running_stats": _norm.moments_with_running_stats,
    "layer_norm": _norm.layer_norm,
    "relu": _nonlinearity.relu,
    "prelu": _nonlinearity.prelu,
    "tanh": _nonlinearity.tanh,
    "concat": _array.concat,
    "depth_concat": _array.depth_concat,
    "sum": _algebra.sum,
    "reduce_sum": _algebra.reduce_sum,
    "sub": _algebra.sub,
    "arg_min": _algebra.arg_min,
    "transpose": _algebra.transpose,
    "mat_mul": _algebra.mat_mul,
    "batch_mat_mul": _algebra.batch_mat_mul,
    "iter": _train.iter,
    "accuracy": _train.accuracy,
    "add_weight_decay": _train.add_weight_decay,
    "conv": _conv.conv,
    "conv_nd": _conv.conv_nd,
    "conv_transpose": _conv.conv_transpose,
    "group_conv": _conv.group_conv,
    "elementwise_linear": _elementwise_linear.elementwise_linear,
    "db_input": _db_input.db_input,
}


def _declared_args(func) -> tuple[set[str], bool]:
    """(the argument names `func` declares, whether it takes **kwargs)."""
    spec = _inspect.getfullargspec(func)
    return set(spec.args) | set(spec.kwonlyargs), spec.varkw is not None


def _scoped(helper_name: str):
    """The helper, called with the model's and the current arg scopes' defaults."""
    def scope_wrapper(*args, **kwargs):
        func = _registry[helper_name]
        if args and isinstance(args[0], _ModelHelper):
            model = args[0]
        elif "model" in kwargs:
            model = kwargs["model"]
        else:
            raise RuntimeError("The first input of helper function should be model. Or you "
                               "can provide it in kwargs as model=<your_model>.")
        new_kwargs = _copy.deepcopy(model.arg_scope)
        names, takes_kwargs = _declared_args(func)
        if not takes_kwargs:
            new_kwargs = {k: v for k, v in new_kwargs.items() if k in names}
        new_kwargs.update(get_current_scope().get(helper_name, {}))
        new_kwargs.update(kwargs)
        return func(*args, **new_kwargs)
    scope_wrapper.__name__ = helper_name  # arg_scope keys helpers by this name
    scope_wrapper.__qualname__ = helper_name
    scope_wrapper.__doc__ = _registry[helper_name].__doc__
    return scope_wrapper


def __getattr__(name: str):
    if name in _registry:
        return _scoped(name)
    raise AttributeError(f"Helper function {name} not registered.")


def __dir__():
    return sorted(set(globals()) | set(_registry))


def Register(helper) -> None:
    """Make `helper(model, ...)` available as `brew.<helper.__name__>`."""
    name = helper.__name__
    if name in _registry:
        raise AttributeError(f"Helper {name} already exists. Please change your helper name.")
    _registry[name] = helper


def has_helper(helper_or_helper_name) -> bool:
    name = (helper_or_helper_name if isinstance(helper_or_helper_name, str)
            else helper_or_helper_name.__name__)
    return name in _registry


def Helpers() -> list[str]:
    """The names of the registered helpers (c2compile's addition to brew)."""
    return sorted(_registry)
