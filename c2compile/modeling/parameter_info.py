"""What a model knows of one parameter: Caffe2's `modeling.parameter_info`."""
from __future__ import annotations

import numpy as np

from c2compile import core


class ParameterTags:
    """Tags `ModelHelper.create_param`/`AddParameter` take: weights, biases, and parameters
    that are computed from data rather than trained (batch-norm running statistics)."""
    BIAS = "BIAS"
    WEIGHT = "WEIGHT"
    COMPUTED_PARAM = "COMPUTED_PARAM"


class ParameterInfo:
    """A parameter blob with its shape, its gradient once known, and its own optimizer."""

    def __init__(self, param_id, param, key=None, shape=None, length=None, grad=None,
                 blob_copy=None):
        if not isinstance(param, core.BlobReference):
            raise TypeError(f"ParameterInfo takes a BlobReference, got {param!r}")
        self.param_id = param_id
        self.name = str(param)
        self.blob = param
        self.key = key
        self.shape = shape
        self.size = None if shape is None else np.prod(shape)
        self.length = max(1, length if length is not None else 1)
        self.grad = grad
        self._cloned_init_net = None
        # the same parameter kept in other precisions: {TensorProto.DataType: BlobReference}
        self.blob_copy = blob_copy
        self._optimizer = None  # set once, from an optimizer context (see optimizer.py)

    @property
    def parameter(self):
        return self.blob

    @property
    def optimizer(self):
        return self._optimizer

    @optimizer.setter
    def optimizer(self, value):
        if self._optimizer is not None:
            raise AssertionError(f"parameter {self.name}: optimizer has already been set")
        self._optimizer = value

    def __str__(self):
        return self.name
