"""Per-parameter optimizers chosen while a model is built: Caffe2's `optimizer_context`.

    with UseOptimizer(SgdOptimizer(0.15)):
        brew.conv(model, ...)                     # conv_w, conv_b get this optimizer
    with UseOptimizer({"WEIGHT": sgd, "BIAS": adagrad}):
        brew.fc(model, ...)                       # by parameter tag

`ModelHelper.create_param` records the optimizer in the parameter's ParameterInfo (by tag,
else "DEFAULT"); `optimizer.build_*` then uses it instead of the one it was given. Contexts
nest (inner entries override outer ones) and are per thread.
"""
from __future__ import annotations

import threading

from c2compile.modeling.overrides import OverrideStack

DEFAULT_OPTIM = "DEFAULT"


class OptimizerContext:
    """The optimizers in force: {tag: optimizer}, inner contexts winning."""
    _local = threading.local()

    def __init__(self):
        self._modifiers = OverrideStack()

    @classmethod
    def current(cls) -> "OptimizerContext":
        ctx = getattr(cls._local, "ctx", None)
        if ctx is None:
            ctx = cls._local.ctx = cls()
        return ctx

    def has_optimizer(self, name) -> bool:
        return name in self._modifiers.merged

    def get_optimizer(self, name):
        if name not in self._modifiers.merged:
            raise AssertionError(f"{name} optimizer is not provided!")
        return self._modifiers.merged[name]

    def push_modifiers(self, modifiers: dict) -> None:
        self._modifiers.push(modifiers)

    def pop_modifiers(self) -> None:
        self._modifiers.pop()


class UseOptimizer:
    """Context manager: an optimizer (for every parameter) or {tag: optimizer}."""

    def __init__(self, optim_or_dict):
        self._modifiers = (optim_or_dict if isinstance(optim_or_dict, dict)
                           else {DEFAULT_OPTIM: optim_or_dict})

    def __enter__(self):
        OptimizerContext.current().push_modifiers(self._modifiers)
        return self

    def __exit__(self, *exc):
        OptimizerContext.current().pop_modifiers()
