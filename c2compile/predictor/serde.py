"""Protobuf messages to bytes and back, as `caffe2.python.predictor.serde` spells it."""
from __future__ import annotations


def serialize_protobuf_struct(protobuf_struct) -> bytes:
    """The wire-format bytes of a protobuf message."""
    return protobuf_struct.SerializeToString()


def deserialize_protobuf_struct(serialized_protobuf: bytes, struct_type):
    """A new `struct_type` message parsed from `serialized_protobuf`.

    Raises google.protobuf.message.DecodeError on bytes that are not such a message (callers
    that know where the bytes came from wrap it in an error naming the file and key).
    """
    message = struct_type()
    message.ParseFromString(serialized_protobuf)
    return message
