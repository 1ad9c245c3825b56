"""brew.concat, brew.depth_concat."""
from __future__ import annotations

import warnings


def concat(model, blobs_in, blob_out, **kwargs):
    """Concat writing its split_info to `_<out>_concat_dims`; returns the concatenation.
    With both order and axis given, axis wins (the op refuses both)."""
    if kwargs.get("order") and kwargs.get("axis"):
        kwargs.pop("order")
    return model.net.Concat(blobs_in, [blob_out, "_" + blob_out + "_concat_dims"],
                            **kwargs)[0]


def depth_concat(model, blobs_in, blob_out, **kwargs):
    """Deprecated name of concat. (Caffe2's version forgot to pass the model on and always
    failed; this one works.)"""
    warnings.warn("DepthConcat is deprecated. use Concat instead.", DeprecationWarning,
                  stacklevel=2)
    return concat(model, blobs_in, blob_out, **kwargs)
