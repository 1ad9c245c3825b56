"""caffe2.proto: wire compatibility with Caffe2 1.10, pinned number by number."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
from google.protobuf import descriptor, text_format

from c2compile.proto import caffe2_pb2

REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = REPO.parent / "shared" / "models"
PROTO_DIR = REPO / "c2compile" / "proto"

# ----------------------------------------------------------------------------- real models

MODEL_FILES = sorted(MODELS.glob("*.pb")) if MODELS.is_dir() else []


@pytest.mark.skipif(not MODEL_FILES, reason=f"no Caffe2 models in {MODELS} (the shared/ "
                    "checkout beside the repo holds them)")
@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_real_model_parses_and_reserializes_byte_for_byte(path):
    data = path.read_bytes()
    net = caffe2_pb2.NetDef.FromString(data)
    assert len(net.op) > 0
    assert net.op[0].type == "Conv"
    assert list(net.external_output) == ["softmaxout"]
    assert "data" in net.external_input
    # No field of the file is unknown to our schema, and we write it back identically.
    assert net.SerializeToString() == data
    assert caffe2_pb2.NetDef.FromString(net.SerializeToString()) == net


# ----------------------------------------------------------------------------- enums

# Caffe2 1.10's numbers (caffe2/proto/caffe2.proto in the PyTorch 1.10.2 wheel).
DATA_TYPES = {
    "UNDEFINED": 0, "FLOAT": 1, "INT32": 2, "BYTE": 3, "STRING": 4, "BOOL": 5, "UINT8": 6,
    "INT8": 7, "UINT16": 8, "INT16": 9, "INT64": 10, "FLOAT16": 12, "DOUBLE": 13,
    "ZERO_COLLISION_HASH": 14, "REBATCHING_BUFFER": 15,
}
DEVICE_TYPES = {
    "PROTO_CPU": 0, "PROTO_CUDA": 1, "PROTO_MKLDNN": 2, "PROTO_OPENGL": 3, "PROTO_OPENCL": 4,
    "PROTO_IDEEP": 5, "PROTO_HIP": 6, "PROTO_FPGA": 7, "PROTO_ORT": 8, "PROTO_XLA": 9,
    "PROTO_MLC": 10, "PROTO_COMPILE_TIME_MAX_DEVICE_TYPES": 11,
}
OTHER_ENUMS = {
    caffe2_pb2.TensorProto.SerializationFormat: {"FMT_PROTOBUF": 0, "FMT_BFLOAT16": 1},
    caffe2_pb2.TensorBoundShape.DimType: {
        "UNKNOWN": 0, "CONSTANT": 1, "BATCH": 2, "BATCH_OF_FEATURE_MAX": 3,
        "BATCH_OF_FEATURE_MAX_DEFAULT": 4, "FEATURE_MAX": 5, "FEATURE_MAX_DEFAULT": 6},
    caffe2_pb2.BlobSerializationOptions.FloatFormat: {
        "FLOAT_DEFAULT": 0, "FLOAT_PROTOBUF": 1, "FLOAT_BFLOAT16": 2},
}


def test_data_type_values_are_caffe2s():
    assert dict(caffe2_pb2.TensorProto.DataType.items()) == DATA_TYPES
    for name, value in DATA_TYPES.items():
        assert getattr(caffe2_pb2.TensorProto, name) == value


def test_device_type_values_are_caffe2s():
    assert dict(caffe2_pb2.DeviceTypeProto.items()) == DEVICE_TYPES
    for name, value in DEVICE_TYPES.items():
        assert getattr(caffe2_pb2, name) == value


@pytest.mark.parametrize("enum", list(OTHER_ENUMS), ids=lambda e: e.DESCRIPTOR.name)
def test_nested_enum_values(enum):
    assert dict(enum.items()) == OTHER_ENUMS[enum]


def test_caffe2_1x_device_aliases():
    # caffe2/python/__init__.py added these names; scripts use them everywhere.
    assert caffe2_pb2.CPU == 0
    assert caffe2_pb2.CUDA == 1
    assert caffe2_pb2.MKLDNN == 2
    assert caffe2_pb2.OPENGL == 3
    assert caffe2_pb2.OPENCL == 4
    assert caffe2_pb2.IDEEP == 5
    assert caffe2_pb2.HIP == 6
    assert caffe2_pb2.COMPILE_TIME_MAX_DEVICE_TYPES == 11


# ----------------------------------------------------------------------------- fields

# message -> "name=number..." in declaration order; `*` marks repeated, `!` required.
FIELDS = {
    "TensorProto": "*dims=1 data_type=2 data_format=15 *float_data=3 *int32_data=4 "
                   "byte_data=5 *string_data=6 *double_data=9 *int64_data=10 raw_data=13 "
                   "name=7 device_detail=8 segment=11",
    "TensorProto.Segment": "!begin=1 !end=2",
    "QTensorProto": "*dims=1 !precision=2 !scale=3 !bias=4 !is_signed=5 *data=6 name=7 "
                    "data_type=8 *scales=9 *biases=10 axis=11 is_multiparam=12",
    "TensorProtos": "*protos=1",
    "TensorShape": "*dims=1 data_type=2 *unknown_dims=3 unknown_shape=4 name=5",
    "TensorShapes": "*shapes=1",
    "TensorBoundShape": "shape=1 *dim_type=2 name=3 shape_is_final=4",
    "TensorBoundShapes": "*shapes=1 max_batch_size=2 max_feature_len=3",
    "AOTConfig": "!max_batch_size=1 !max_seq_size=2 !in_batch_broadcast=3 "
                 "onnxifi_blacklist_ops=4 onnxifi_min_ops=5",
    "Argument": "name=1 f=2 i=3 s=4 t=10 n=8 *floats=5 *ints=6 *strings=7 *tensors=11 "
                "*nets=9 *qtensors=12",
    "DeviceOption": "device_type=1 device_id=2 random_seed=3 node_name=4 numa_node_id=5 "
                    "*extra_info=6",
    "OperatorDef": "*input=1 *output=2 name=3 type=4 *arg=5 device_option=6 engine=7 "
                   "*control_input=8 is_gradient_op=9 debug_info=10 domain=11 op_version=12",
    "MapFieldEntry": "!key=1 !val=2",
    "BackendOptions": "!backend_name=1 *option=2",
    "PartitionInfo": "!name=1 *device_id=2 extra_info=3 *backend_options=4",
    "NetDef": "name=1 *op=2 type=3 num_workers=4 device_option=5 *arg=6 *external_input=7 "
              "*external_output=8 *partition_info=9",
    "ExecutionStep": "name=1 *substep=2 *network=3 num_iter=4 criteria_network=5 "
                     "report_net=7 report_interval=8 run_every_ms=11 concurrent_substeps=6 "
                     "should_stop_blob=9 only_once=10 create_workspace=12 "
                     "num_concurrent_instances=13",
    "PlanDef": "name=1 *network=2 *execution_step=3",
    "BlobProto": "name=1 type=2 tensor=3 content=4 qtensor=5 content_num_chunks=6 "
                 "content_chunk_id=7",
    "DBReaderProto": "name=1 source=2 db_type=3 key=4",
    "BlobSerializationOptions": "blob_name_regex=1 chunk_size=2 float_format=3",
    "SerializationOptions": "*options=1",
}


def _message(path: str):
    cls = caffe2_pb2
    for part in path.split("."):
        cls = getattr(cls, part)
    return cls


def _describe_fields(desc) -> str:
    out = []
    for f in desc.fields:
        mark = "*" if f.is_repeated else ("!" if f.is_required else "")
        out.append(f"{mark}{f.name}={f.number}")
    return " ".join(out)


@pytest.mark.parametrize("name", list(FIELDS))
def test_field_numbers_names_and_labels(name):
    assert _describe_fields(_message(name).DESCRIPTOR) == FIELDS[name]


def test_no_message_is_missing_from_the_pinned_table():
    top = set(caffe2_pb2.DESCRIPTOR.message_types_by_name)
    assert top == {n for n in FIELDS if "." not in n}


def test_proto2_defaults():
    assert caffe2_pb2.TensorProto().data_type == caffe2_pb2.TensorProto.FLOAT
    assert caffe2_pb2.TensorShape().data_type == caffe2_pb2.TensorProto.FLOAT
    assert caffe2_pb2.QTensorProto().data_type == caffe2_pb2.TensorProto.INT32
    assert caffe2_pb2.DeviceOption().device_type == 0
    assert caffe2_pb2.OperatorDef().is_gradient_op is False
    assert caffe2_pb2.TensorProto().data_format == 0
    assert not caffe2_pb2.NetDef().HasField("name")


def test_numeric_tensor_data_is_packed_on_the_wire():
    # float_data = 3, packed: tag 0x1a (3 << 3 | 2), 4 bytes of little-endian 1.0f.
    t = caffe2_pb2.TensorProto(float_data=[1.0])
    t.ClearField("data_type")
    assert t.SerializeToString() == b"\x1a\x04\x00\x00\x80\x3f"
    t = caffe2_pb2.TensorProto(int64_data=[1, 2])
    assert t.SerializeToString() == b"\x52\x02\x01\x02"
    # Argument.ints is not packed in proto2 (no option): one tag per element.
    a = caffe2_pb2.Argument(ints=[1, 2])
    assert a.SerializeToString() == b"\x30\x01\x30\x02"


def test_criteria_network_is_deprecated():
    field = caffe2_pb2.ExecutionStep.DESCRIPTOR.fields_by_name["criteria_network"]
    assert field.GetOptions().deprecated


# ----------------------------------------------------------------------------- round trips

def _fill(msg, depth: int = 0) -> None:
    """Set every field of `msg` (recursively, three levels deep) to a non-default value."""
    for i, f in enumerate(msg.DESCRIPTOR.fields):
        value = None
        if f.type == f.TYPE_MESSAGE:
            if depth >= 3:
                continue
            sub = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
            _fill(sub, depth + 1)
            continue
        if f.type == f.TYPE_ENUM:
            value = f.enum_type.values[-1].number
        elif f.type == f.TYPE_BOOL:
            value = True
        elif f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
            value = 1.5 + i
        elif f.type in (f.TYPE_STRING,):
            value = f"{f.name}-{depth}"
        elif f.type == f.TYPE_BYTES:
            value = f"{f.name}\x00\xff".encode("latin-1")
        else:
            value = 7 + i
        if f.is_repeated:
            getattr(msg, f.name).extend([value, value])
        else:
            setattr(msg, f.name, value)


@pytest.mark.parametrize("name", [n for n in FIELDS])
def test_every_field_set_round_trips(name):
    msg = _message(name)()
    _fill(msg)
    for f in msg.DESCRIPTOR.fields:
        if f.is_repeated:
            assert len(getattr(msg, f.name)) > 0, f.name
        else:
            assert msg.HasField(f.name), f.name
    data = msg.SerializeToString()
    back = type(msg).FromString(data)
    assert back == msg
    assert back.SerializeToString() == data
    assert text_format.Parse(text_format.MessageToString(msg), type(msg)()) == msg


def test_netdef_with_every_field_round_trips_through_text_and_binary():
    net = caffe2_pb2.NetDef()
    _fill(net)
    op = net.op[0]
    assert op.HasField("debug_info") and op.HasField("domain") and op.HasField("op_version")
    assert op.control_input and op.is_gradient_op
    assert net.partition_info[0].backend_options[0].option
    assert caffe2_pb2.NetDef.FromString(net.SerializeToString()) == net
    assert text_format.Parse(text_format.MessageToString(net), caffe2_pb2.NetDef()) == net


def test_unknown_fields_survive_a_round_trip():
    # A newer writer's field 100 must not be dropped when we rewrite a NetDef.
    extra = b"\xa2\x06\x03abc"  # field 100, length-delimited "abc"
    data = caffe2_pb2.NetDef(name="n").SerializeToString() + extra
    assert caffe2_pb2.NetDef.FromString(data).SerializeToString() == data


# ----------------------------------------------------------------------------- generated code

def _gencode_version() -> tuple[int, ...]:
    src = (PROTO_DIR / "caffe2_pb2.py").read_text()
    m = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
                  r"\s*(\d+),\s*(\d+),\s*(\d+),", src)
    assert m, "caffe2_pb2.py has no runtime version check (regenerate with tools/gen_proto.sh)"
    return tuple(int(x) for x in m.groups())


def test_pyproject_pins_the_protobuf_runtime_the_gencode_needs():
    pin = re.search(r'"protobuf>=([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert pin, "pyproject.toml must pin protobuf>=X.Y.Z"
    pinned = tuple(int(x) for x in pin.group(1).split("."))
    assert pinned == _gencode_version()


def test_generated_module_is_current(tmp_path):
    """caffe2_pb2.py is what tools/gen_proto.sh makes from caffe2.proto now."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a development tool) is not "
                        "installed; cannot regenerate caffe2_pb2.py")
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp_path}",
         str(PROTO_DIR / "caffe2.proto")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fresh = (tmp_path / "caffe2_pb2.py").read_bytes()
    assert fresh == (PROTO_DIR / "caffe2_pb2.py").read_bytes(), \
        "caffe2_pb2.py is stale: run tools/gen_proto.sh"


def test_descriptor_uses_the_caffe2_package():
    assert caffe2_pb2.DESCRIPTOR.package == "caffe2"
    assert caffe2_pb2.NetDef.DESCRIPTOR.full_name == "caffe2.NetDef"
    assert isinstance(caffe2_pb2.DESCRIPTOR, descriptor.FileDescriptor)
