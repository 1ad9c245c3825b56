"""brew.sum, sub, transpose, mat_mul, batch_mat_mul, reduce_sum, arg_min: one op each."""
from __future__ import annotations

from c2compile.helpers.params import cudnn_engine


def transpose(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    return model.net.Transpose(blob_in, blob_out, **cudnn_engine(kwargs, use_cudnn))


def sum(model, blob_in, blob_out, **kwargs):  # noqa: A001 (brew's name)
    return model.net.Sum(blob_in, blob_out, **kwargs)


def reduce_sum(model, blob_in, blob_out, **kwargs):
    return model.net.ReduceSum(blob_in, blob_out, **kwargs)


def sub(model, blob_in, blob_out, **kwargs):
    return model.net.Sub(blob_in, blob_out, **kwargs)


def mat_mul(model, blob_in, blob_out, **kwargs):
    return model.net.MatMul(blob_in, blob_out, **kwargs)


def arg_min(model, blob_in, blob_out, **kwargs):
    return model.net.ArgMin(blob_in, blob_out, **kwargs)


def batch_mat_mul(model, blob_in, blob_out, enable_tensor_core=False, **kwargs):
    if enable_tensor_core:
        kwargs["engine"] = "TENSORCORE"
    return model.net.BatchMatMul(blob_in, blob_out, **kwargs)
