"""brew.max_pool, brew.average_pool, brew.max_pool_with_index."""
from __future__ import annotations

from c2compile.helpers.params import cudnn_engine


def max_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    return model.net.MaxPool(blob_in, blob_out, order=order, **cudnn_engine(kwargs, use_cudnn))


def average_pool(model, blob_in, blob_out, use_cudnn=False, order="NCHW", **kwargs):
    return model.net.AveragePool(blob_in, blob_out, order=order,
                                 **cudnn_engine(kwargs, use_cudnn))


def max_pool_with_index(model, blob_in, blob_out, order="NCHW", **kwargs):
    """MaxPoolWithIndex, the index going to `<out>_index`; returns the pooled blob."""
    return model.net.MaxPoolWithIndex(blob_in, [blob_out, blob_out + "_index"], order=order,
                                      **kwargs)[0]
