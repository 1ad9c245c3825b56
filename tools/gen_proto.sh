#!/usr/bin/env bash
# Regenerate c2compile/proto/caffe2_pb2.py from caffe2.proto.
#
# The generated module is committed, so installing c2compile never needs protoc. Run this
# after editing caffe2.proto, then check the "Protobuf Python Version" line of the output
# against the protobuf>= pin in pyproject.toml (the runtime must be at least that version).
#
# Uses grpcio-tools' bundled protoc; PYTHON defaults to the repo's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc -Ic2compile/proto --python_out=c2compile/proto \
    c2compile/proto/caffe2.proto
grep -m1 "Protobuf Python Version" c2compile/proto/caffe2_pb2.py
