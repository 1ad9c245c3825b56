#!/usr/bin/env bash
# Regenerate c2compile/proto/caffe2_pb2.py and metanet_pb2.py from their .proto files.
#
# The generated modules are committed, so installing c2compile never needs protoc. Run this
# after editing a .proto, then check the "Protobuf Python Version" line of the output
# against the protobuf>= pin in pyproject.toml (the runtime must be at least that version).
#
# protoc turns `import "caffe2.proto"` into a top-level `import caffe2_pb2`; the sed below
# makes it the package's module (the same edit tests/unit/test_predictor_exporter.py makes
# when it checks that metanet_pb2.py is current).
#
# Uses grpcio-tools' bundled protoc; PYTHON defaults to the repo's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" -m grpc_tools.protoc -Ic2compile/proto --python_out=c2compile/proto \
    c2compile/proto/caffe2.proto c2compile/proto/metanet.proto
sed -i 's/^import caffe2_pb2 as caffe2__pb2$/from c2compile.proto import caffe2_pb2 as caffe2__pb2/' \
    c2compile/proto/metanet_pb2.py
grep -m1 "Protobuf Python Version" c2compile/proto/caffe2_pb2.py
