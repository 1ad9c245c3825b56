"""brew.dropout."""
from __future__ import annotations


def dropout(model, blob_in, blob_out, use_cudnn=False, **kwargs):
    """Dropout writing its mask to `_<out>_mask`; is_test is required (as in Caffe2)."""
    kwargs["engine"] = "CUDNN" if use_cudnn else "DEFAULT"
    if "is_test" not in kwargs:
        raise AssertionError("Argument 'is_test' is required")
    return model.net.Dropout(blob_in, [blob_out, "_" + blob_out + "_mask"], **kwargs)[0]
