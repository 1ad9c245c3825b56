"""Caffe2's protobuf messages (`caffe2_pb2`), generated from caffe2.proto.

Caffe2 1.x code spells device types `caffe2_pb2.CPU`, `caffe2_pb2.CUDA`, ... although the
proto enum names them `PROTO_CPU`, ...; Caffe2 added those short names as module attributes
at import time, so we do the same here (before anything else can import caffe2_pb2).
"""
from c2compile.proto import caffe2_pb2

caffe2_pb2.CPU = caffe2_pb2.PROTO_CPU
caffe2_pb2.CUDA = caffe2_pb2.PROTO_CUDA
caffe2_pb2.MKLDNN = caffe2_pb2.PROTO_MKLDNN
caffe2_pb2.OPENGL = caffe2_pb2.PROTO_OPENGL
caffe2_pb2.OPENCL = caffe2_pb2.PROTO_OPENCL
caffe2_pb2.IDEEP = caffe2_pb2.PROTO_IDEEP
caffe2_pb2.HIP = caffe2_pb2.PROTO_HIP
caffe2_pb2.COMPILE_TIME_MAX_DEVICE_TYPES = caffe2_pb2.PROTO_COMPILE_TIME_MAX_DEVICE_TYPES

__all__ = ["caffe2_pb2"]
