"""c2compile.core / scope / utils / python_op: Caffe2 1.10's net-building semantics.

Expected values marked "Caffe2:" were produced by running the same code under Caffe2 1.10.2
(the PyTorch 1.10.2 wheel), so they pin its exact behaviour, quirks included.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
from google.protobuf import text_format

from c2compile import core, flags, python_op, scope, utils
from c2compile.proto import caffe2_pb2

_TP = caffe2_pb2.TensorProto


def one_line(msg) -> str:
    return text_format.MessageToString(msg, as_one_line=True)


_net_counter = [0]


def fresh_net(base: str = "t") -> core.Net:
    """A Net whose requested name was never used (Net names are unique per process)."""
    _net_counter[0] += 1
    return core.Net(f"{base}{_net_counter[0]}")


# ----------------------------------------------------------------------------- MakeArgument

@pytest.mark.parametrize("value, expected", [
    (1, 'i: 1'),
    (-2 ** 40, 'i: -1099511627776'),
    (True, 'i: 1'),
    (1.5, 'f: 1.5'),
    ("abc", 's: "abc"'),
    ("é", r's: "\303\251"'),
    (b"xy", 's: "xy"'),
    (np.int32(3), 'i: 3'),
    (np.int64(-3), 'i: -3'),
    (np.uint8(200), 'i: 200'),
    (np.bool_(True), 'i: 1'),
    (np.float32(2.5), 'f: 2.5'),
    (np.float64(2.5), 'f: 2.5'),
    (np.str_("s"), 's: "s"'),
    ([1, 2], 'ints: 1 ints: 2'),
    ((1, 2), 'ints: 1 ints: 2'),
    ([True, False], 'ints: 1 ints: 0'),
    ([1.0, 2.0], 'floats: 1.0 floats: 2.0'),
    (["a", b"b"], 'strings: "a" strings: "b"'),
    ([np.int64(1), 2], 'ints: 1 ints: 2'),
    ([np.float64(1.0), 2.0], 'floats: 1.0 floats: 2.0'),
    ([np.float32(1.0)], 'floats: 1.0'),  # Caffe2 raised here; see utils._is_float
    (np.array([1, 2], dtype=np.int64), 'ints: 1 ints: 2'),
    (np.array([[1, 2]], dtype=np.int32), 'ints: 1 ints: 2'),
    (np.array([1.5], dtype=np.float32), 'floats: 1.5'),
    (np.array([[1.0, 2.0]]), 'floats: 1.0 floats: 2.0'),
    (np.array(3), 'ints: 3'),  # Caffe2: a 0-d array is a one-element list
    (np.array([True]), 'ints: 1'),
    (np.array(["a", "b"]), 'strings: "a" strings: "b"'),
    ({"k": 1}, 'strings: "k"'),  # iterating a dict gives its keys, as in Caffe2
    (caffe2_pb2.NetDef(name="sub"), 'n { name: "sub" }'),
    ([caffe2_pb2.NetDef(name="a")], 'nets { name: "a" }'),
    (caffe2_pb2.DeviceOption(device_type=1), r's: "\010\001"'),
    ([caffe2_pb2.DeviceOption(device_type=1)], r'strings: "\010\001"'),
    ((x for x in [1, 2]), 'ints: 1 ints: 2'),
])
def test_make_argument_picks_caffe2s_field(value, expected):
    arg = utils.MakeArgument("k", value)
    assert one_line(arg) == f'name: "k" {expected}'


@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=np.float64), set()])
def test_make_argument_empty_list_sets_no_value(empty):
    arg = utils.MakeArgument("k", empty)
    assert one_line(arg) == 'name: "k"'
    assert utils.ArgumentValue(arg) is None


@pytest.mark.parametrize("value", [None, object(), [1, 2.5], [None], [1, "a"], 1 + 2j])
def test_make_argument_rejects_other_values_naming_the_key(value):
    with pytest.raises(ValueError, match="key=my_arg"):
        utils.MakeArgument("my_arg", value)


def test_args_to_dict_reads_back_each_kind():
    op = core.CreateOperator("X", [], [], a=1, b=2.5, c="s", d=[1, 2], e=[], f=[0.5],
                             g=["x"], h=caffe2_pb2.NetDef(name="q"))
    d = utils.ArgsToDict(op.arg)
    assert d == {"a": 1, "b": 2.5, "c": b"s", "d": [1, 2], "e": None, "f": [0.5],
                 "g": [b"x"], "h": caffe2_pb2.NetDef(name="q")}
    unnamed = caffe2_pb2.Argument(i=3)
    assert utils.ArgsToDict([unnamed]) == {}


# ----------------------------------------------------------------------------- tensors

ARRAYS = [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([1.25, -1e300], dtype=np.float64),
    np.array([-3, 2 ** 31 - 1], dtype=np.int32),
    np.array([2 ** 40, -1], dtype=np.int64),
    np.array([-5, 7], dtype=np.int16),
    np.array([65535, 0], dtype=np.uint16),
    np.array([-128, 127], dtype=np.int8),
    np.array([[255], [0]], dtype=np.uint8),
    np.array([True, False]),
    np.array([1.5, -0.25, np.inf], dtype=np.float16),
    np.array([b"ab", b""], dtype=object),
    np.zeros((0, 3), dtype=np.float32),
    np.float32(4.0).reshape(()),
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_tensor_proto_round_trip(arr):
    t = utils.NumpyArrayToCaffe2Tensor(arr, "blob")
    assert t.name == "blob"
    assert list(t.dims) == list(arr.shape)
    back = utils.Caffe2TensorToNumpyArray(caffe2_pb2.TensorProto.FromString(t.SerializeToString()))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tolist() == arr.tolist()


def test_tensor_proto_fields_match_caffe2s_serializer():
    assert _TP.DataType.Name(utils.NumpyArrayToCaffe2Tensor(np.zeros(1, np.int16)).data_type) == "INT16"
    t = utils.NumpyArrayToCaffe2Tensor(np.array([1.5], np.float16))
    assert list(t.int32_data) == [0x3E00]  # float16 travels as its bit pattern
    t = utils.NumpyArrayToCaffe2Tensor(np.array(["é"]))
    assert t.data_type == _TP.STRING and list(t.string_data) == ["é".encode()]
    with pytest.raises(ValueError, match="complex128"):
        utils.NumpyArrayToCaffe2Tensor(np.zeros(2, np.complex128))


# TensorProtos written by Caffe2 1.10.2's C++ serializer (workspace.SerializeBlob), the
# second group with --caffe2_serialize_using_bytes_as_holder and _fp16_as_bytes.
CAFFE2_SERIALIZED = {
    "f32": (b'\x08\x01\x08\x02\x10\x01\x1a\x08\x00\x00\xc0?\x00\x00\x00\xc0:\x03f32B\x02\x08'
            b'\x00Z\x04\x08\x00\x10\x02x\x00', np.array([[1.5, -2.0]], np.float32)),
    "f64": (b'\x08\x01\x10\r:\x03f64B\x02\x08\x00J\x08\x00\x00\x00\x00\x00\x00\xf4?Z\x04\x08'
            b'\x00\x10\x01', np.array([1.25])),
    "i32": (b'\x08\x02\x10\x02"\x0b\xfd\xff\xff\xff\xff\xff\xff\xff\xff\x01\x04:\x03i32B\x02'
            b'\x08\x00Z\x04\x08\x00\x10\x02', np.array([-3, 4], np.int32)),
    "i64": (b'\x08\x01\x10\n:\x03i64B\x02\x08\x00R\x06\x80\x80\x80\x80\x80 Z\x04\x08\x00\x10'
            b'\x01', np.array([2 ** 40], np.int64)),
    "u16": (b'\x08\x01\x10\x08"\x03\xff\xff\x03:\x03u16B\x02\x08\x00Z\x04\x08\x00\x10\x01',
            np.array([65535], np.uint16)),
    "i8": (b'\x08\x02\x10\x07"\x0b\x80\xff\xff\xff\xff\xff\xff\xff\xff\x01\x7f:\x02i8B\x02'
           b'\x08\x00Z\x04\x08\x00\x10\x02', np.array([-128, 127], np.int8)),
    "b": (b'\x08\x02\x10\x05"\x02\x01\x00:\x01bB\x02\x08\x00Z\x04\x08\x00\x10\x02',
          np.array([True, False])),
    "f16": (b'\x08\x02\x10\x0c"\x05\x80|\x80\xe8\x02:\x03f16B\x02\x08\x00Z\x04\x08\x00\x10\x02',
            np.array([1.5, -0.25], np.float16)),
    "s": (b'\x08\x02\x10\x042\x02ab2\x00:\x01sB\x02\x08\x00Z\x04\x08\x00\x10\x02',
          np.array([b"ab", b""], dtype=object)),
    "i16_bytes": (b'\x08\x02\x10\t*\x04\xfb\xff\x07\x00:\x03i16B\x02\x08\x00Z\x04\x08\x00\x10'
                  b'\x02', np.array([-5, 7], np.int16)),
    "u8_bytes": (b'\x08\x02\x10\x06*\x02\xff\x00:\x02u8B\x02\x08\x00Z\x04\x08\x00\x10\x02',
                 np.array([255, 0], np.uint8)),
    "b_bytes": (b'\x08\x02\x10\x05*\x02\x01\x00:\x01bB\x02\x08\x00Z\x04\x08\x00\x10\x02',
                np.array([True, False])),
    "f16_bytes": (b'\x08\x02\x10\x0c*\x04\x00>\x00\xb4:\x03f16B\x02\x08\x00Z\x04\x08\x00\x10'
                  b'\x02', np.array([1.5, -0.25], np.float16)),
}


@pytest.mark.parametrize("key", list(CAFFE2_SERIALIZED))
def test_reads_tensors_serialized_by_caffe2(key):
    data, expected = CAFFE2_SERIALIZED[key]
    arr = utils.Caffe2TensorToNumpyArray(caffe2_pb2.TensorProto.FromString(data))
    assert arr.dtype == expected.dtype
    assert arr.tolist() == expected.tolist()


def test_reads_bfloat16_raw_data_and_byte_tensors():
    t = caffe2_pb2.TensorProto(dims=[2], data_type=_TP.FLOAT, data_format=_TP.FMT_BFLOAT16,
                               raw_data=np.array([0x3FC0, 0xC000], "<u2").tobytes())
    assert utils.Caffe2TensorToNumpyArray(t).tolist() == [1.5, -2.0]
    t = caffe2_pb2.TensorProto(dims=[3], data_type=_TP.BYTE, byte_data=b"\x01\x02\xff")
    arr = utils.Caffe2TensorToNumpyArray(t)
    assert arr.dtype == np.uint8 and arr.tolist() == [1, 2, 255]


@pytest.mark.parametrize("dt", [_TP.UNDEFINED, _TP.ZERO_COLLISION_HASH, _TP.REBATCHING_BUFFER])
def test_non_tensor_data_types_are_refused(dt):
    with pytest.raises(ValueError, match=_TP.DataType.Name(dt)):
        utils.Caffe2TensorToNumpyArray(caffe2_pb2.TensorProto(name="q", data_type=dt))


def test_chunked_tensor_is_refused_with_a_clear_message():
    t = caffe2_pb2.TensorProto(name="w", dims=[4], float_data=[1, 2])
    t.segment.begin, t.segment.end = 0, 2
    with pytest.raises(ValueError, match="chunk"):
        utils.Caffe2TensorToNumpyArray(t)


def test_try_read_proto_with_class_reads_text_and_binary():
    net = caffe2_pb2.NetDef(name="n", external_input=["x"])
    assert utils.TryReadProtoWithClass(caffe2_pb2.NetDef, text_format.MessageToString(net)) == net
    assert utils.TryReadProtoWithClass(caffe2_pb2.NetDef, net.SerializeToString()) == net


# ----------------------------------------------------------------------------- scopes

def test_name_scope_nests_resets_and_ignores_empty():
    assert scope.CurrentNameScope() == ""
    with scope.NameScope("a"):
        with scope.NameScope("b"):
            assert scope.CurrentNameScope() == "a/b/"
            assert core.ScopedName("x") == "a/b/x"
        with scope.NameScope("c", reset=True):
            assert scope.CurrentNameScope() == "c/"
        with scope.NameScope(None), scope.NameScope(""):
            assert scope.CurrentNameScope() == "a/"
        with scope.EmptyNameScope():
            assert scope.CurrentNameScope() == ""
        assert scope.CurrentNameScope() == "a/"
    assert scope.CurrentNameScope() == ""


def test_name_scope_takes_strings_only():
    with pytest.raises(TypeError, match="NameScope takes a string"):
        with scope.NameScope(3):
            pass


def test_device_scope_nesting_inherits_node_name_and_merges_extra_info():
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 1, extra_info=["z"])
    with core.DeviceScope(gpu):
        assert scope.CurrentDeviceScope() == gpu
        with core.DeviceScope(core.DeviceOption(caffe2_pb2.CPU, node_name="nn",
                                                extra_info=["a"])):
            with core.DeviceScope(None, node_name="n2"):
                # Caffe2: node_name overridden, extra_info merged and sorted.
                assert one_line(scope.CurrentDeviceScope()) == \
                    'node_name: "n2" extra_info: "a" extra_info: "z"'
            inner = scope.CurrentDeviceScope()
            assert inner.node_name == "nn" and list(inner.extra_info) == ["a", "z"]
        with scope.EmptyDeviceScope():
            assert scope.CurrentDeviceScope() is None
    assert scope.CurrentDeviceScope() is None


def test_device_scope_errors():
    with pytest.raises(ValueError, match="node_name"):
        with core.DeviceScope(None):
            pass
    with pytest.raises(TypeError, match="DeviceOption"):
        with core.DeviceScope("cuda"):
            pass


def test_scopes_are_per_thread():
    seen = {}

    def other():
        seen["name"] = scope.CurrentNameScope()
        seen["device"] = scope.CurrentDeviceScope()

    with core.NameScope("main"), core.DeviceScope(core.DeviceOption(caffe2_pb2.CUDA)):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == {"name": "", "device": None}


# ----------------------------------------------------------------------------- CreateOperator

def test_create_operator_basic_fields():
    op = core.CreateOperator("Relu", "x", "y")
    assert one_line(op) == 'input: "x" output: "y" name: "" type: "Relu"'
    assert op.HasField("name")  # Caffe2 always sets it, even to ""


def test_create_operator_every_option():
    op = core.CreateOperator("Relu", ["x"], ["y"], name="r", engine="CUDNN",
                             control_input=["c"], debug_info="d", random_seed=3, axis=1,
                             foo=None, order="NCHW")
    # Caffe2: kwargs in the order given, None skipped, random_seed on the device option.
    assert one_line(op) == (
        'input: "x" output: "y" name: "r" type: "Relu" arg { name: "axis" i: 1 } '
        'arg { name: "order" s: "NCHW" } device_option { random_seed: 3 } engine: "CUDNN" '
        'control_input: "c" debug_info: "d"')


def test_create_operator_takes_prebuilt_arguments_first():
    op = core.CreateOperator("X", [], [], arg=[utils.MakeArgument("a", 1)], b=2)
    assert [a.name for a in op.arg] == ["a", "b"]


def test_create_operator_prefixes_string_names_with_the_name_scope():
    with core.NameScope("a"):
        with core.NameScope("b"):
            op = core.CreateOperator("Relu", core.BlobReference("x"), "y")
        assert list(op.input) == ["x"]  # a BlobReference is taken as is
        assert list(op.output) == ["a/b/y"]
        op = core.CreateOperator("Sum", ["p", b"q"], "s", control_input="c")
        assert list(op.input) == ["a/p", "a/q"] and list(op.control_input) == ["a/c"]


def test_create_operator_device_option_from_scope_unless_given():
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 1)
    with core.DeviceScope(gpu):
        assert core.CreateOperator("Relu", "x", "y").device_option == gpu
        cpu = core.DeviceOption(caffe2_pb2.CPU)
        op = core.CreateOperator("Relu", "x", "y", device_option=cpu)
        assert one_line(op.device_option) == "device_type: 0 device_id: 0"
    assert not core.CreateOperator("Relu", "x", "y").HasField("device_option")


@pytest.mark.parametrize("bad, match", [
    (3, "Unknown input/output type: 3 of type int"),
    (["x", 3], "I/O blob #1 of unsupported type: 3 of type int"),
    ({"x"}, "Unknown input/output type"),
])
def test_create_operator_rejects_bad_blob_lists(bad, match):
    with pytest.raises(TypeError, match=match):
        core.CreateOperator("Relu", bad, "y")


def test_device_option_helper():
    assert one_line(core.DeviceOption(caffe2_pb2.CPU)) == "device_type: 0 device_id: 0"
    assert one_line(core.DeviceOption(1, 2, random_seed=5, node_name="q", extra_info=["e"])) == \
        'device_type: 1 device_id: 2 random_seed: 5 node_name: "q" extra_info: "e"'
    assert core.DeviceOption(0, numa_node_id=1).numa_node_id == 1
    with pytest.raises(AssertionError, match="numa_node_id"):
        core.DeviceOption(caffe2_pb2.CUDA, numa_node_id=1)
    assert core.IsGPUDeviceType(caffe2_pb2.CUDA) and core.IsGPUDeviceType(caffe2_pb2.HIP)
    assert not core.IsGPUDeviceType(caffe2_pb2.CPU)
    assert core.device_option_equal(core.DeviceOption(0, 3), core.DeviceOption(0, 0))
    assert not core.device_option_equal(core.DeviceOption(1, 0), core.DeviceOption(1, 1))


def test_data_type_is_the_tensor_proto_enum():
    assert core.DataType.FLOAT == 1 and core.DataType.INT64 == 10
    assert core.DataType.ZERO_COLLISION_HASH == 14
    assert core.DataType.Name(13) == "DOUBLE"


# ----------------------------------------------------------------------------- Net

def test_net_builds_the_netdef_caffe2_builds():
    net = core.Net("net_building_example")
    x = net.GetBlobRef(net.AddExternalInput("x"))
    w, b = net.AddExternalInputs("w", "b")
    y = x.FC([w, b], "y")
    assert y == "y" and y.Net() is net
    z = net.Relu(y)
    assert repr(z) == 'BlobReference("net_building_example/Relu")'
    assert net.Relu([z], 2) == ("net_building_example/Relu:0", "net_building_example/Relu:1")
    assert net.Sum([z, "k"], ["s1"]) == "s1"
    with core.NameScope("ns"):
        assert net.Relu("q") == "ns/net_building_example/Relu"
    assert net.StopGradient(z, []) is None
    net.AddExternalOutput(z)
    # Caffe2: unknown inputs become external inputs (once), in order of first use.
    assert [str(b) for b in net.external_inputs] == ["x", "w", "b", "k", "ns/q"]
    assert net.external_outputs == ["net_building_example/Relu"]
    assert [op.type for op in net.Proto().op] == ["FC", "Relu", "Relu", "Sum", "Relu",
                                                  "StopGradient"]
    assert list(net.Proto().op[0].input) == ["x", "w", "b"]


def test_blob_reference_chaining_does_not_mutate_the_callers_list():
    net = fresh_net()
    x = net.GetBlobRef(net.AddExternalInput("X"))
    params = ["W", "b"]
    out = x.FC(params, ["Y"])
    assert params == ["W", "b"]
    assert list(net.Proto().op[0].input) == ["X", "W", "b"] and out == "Y"


def test_blob_reference_basics():
    br = core.BlobReference("a/b/c")
    assert br.GetNameScope() == "a/b/" and br.GetUnscopedName() == "c"
    assert str(br + "_x") == "a/b/c_x" and str("p_" + br) == "p_a/b/c"
    assert br == "a/b/c" and br == b"a/b/c" and br == core.BlobReference("a/b/c")
    assert br != "c" and br != 3
    assert hash(br) == hash("a/b/c")
    assert {br: 1}["a/b/c"] == 1
    assert str(core.BlobReference(b"bytes")) == "bytes"
    with pytest.raises(RuntimeError, match="non-string"):
        br + 3
    with pytest.raises(AttributeError, match="no source net"):
        br.Relu
    with core.NameScope("s"):
        assert core.ScopedBlobReference("q") == "s/q"


def test_unknown_op_type_suggests_close_names():
    net = fresh_net()
    with pytest.raises(AttributeError, match=r"Rleu is not a registered operator.*Relu"):
        net.Rleu("x", "y")
    x = net.GetBlobRef(net.AddExternalInput("x"))
    with pytest.raises(AttributeError, match="Sigmiod is not a registered"):
        x.Sigmiod()
    with pytest.raises(AttributeError):
        net._private_thing
    assert "Relu" in dir(net)


def test_net_names_are_unique_per_process():
    a = core.Net("dup_name_example")
    b = core.Net("dup_name_example")
    c = core.Net(caffe2_pb2.NetDef(name="dup_name_example"))
    assert (a.Name(), b.Name(), c.Name()) == \
        ("dup_name_example", "dup_name_example_1", "dup_name_example_2")
    assert str(a) == "dup_name_example"
    assert "dup_name_example" in repr(a)


def test_next_name_and_next_blob_follow_caffe2():
    net = core.Net("nn_example")
    assert net.NextName() == "nn_example_blob_0"
    assert net.NextName() == "nn_example_blob_1"
    net.Relu("a", "nn_example/Relu")
    # Caffe2: NextName(prefix) skips defined names with _2, _3, ... before ":id".
    assert net.Relu("a") == "nn_example/Relu_2"
    assert net.Relu("a") == "nn_example/Relu_3"
    assert net.NextName("Relu") == "nn_example/Relu_4"
    assert net.NextName("Relu", 0) == "nn_example/Relu:0"
    net.Relu("a", "nn_example/Relu_3")
    assert net.Relu("a") == "nn_example/Relu_5"
    assert net.NextBlob("a") == "a_auto_0"  # "a" is an external input already
    assert net.NextBlob("fresh") == "fresh"
    assert net.NextBlob("fresh") == "fresh_auto_0"
    with core.NameScope("s"):
        assert net.NextScopedBlob("fresh") == "s/fresh"


def test_auto_named_outputs_stay_unique():
    net = core.Net("unique_outputs_example")
    names = [str(net.Relu("x")) for _ in range(5)]
    names += [str(b) for _ in range(3) for b in net.Split("x", 2)]
    names += [net.NextName() for _ in range(3)]
    assert len(set(names)) == len(names)
    # Caffe2's quirk: the ":id" names are counted per output index.
    net2 = core.Net("quirk_example")
    assert net2.Split("x", 2) == ("quirk_example/Split:0", "quirk_example/Split:1")
    assert net2.Split("x", 2) == ("quirk_example/Split_2:0", "quirk_example/Split_2:1")


def test_net_from_netdef_continues_blob_numbering():
    nd = caffe2_pb2.NetDef(name="fromdef_example", external_input=["fromdef_example_blob_3"])
    nd.op.add(type="Relu", input=["fromdef_example_blob_3"], output=["fromdef_example_blob_12"])
    net = core.Net(nd)
    # Caffe2 read only the first digit ("1") and would answer blob_2; we take the number.
    assert net.NextName() == "fromdef_example_blob_13"
    assert net.BlobIsDefined("fromdef_example_blob_12")
    assert net.is_external_input("fromdef_example_blob_3")
    assert net.Proto() is not nd  # copied
    assert core.Net(nd, inplace=True).Proto() is nd
    with pytest.raises(TypeError, match="takes a name or a caffe2_pb2.NetDef"):
        core.Net(3)


def test_blob_lookups():
    net = fresh_net()
    net.AddExternalInput("w")
    net.Relu("w", "y")
    assert net.BlobIsDefined("y") and net.BlobIsDefined("w") and not net.BlobIsDefined("q")
    assert net.UsesBlob("w") and not net.UsesBlob("y")
    assert net.GetBlobRef("y").Net() is net
    with pytest.raises(KeyError, match="does not define blob nope"):
        net.GetBlobRef("nope")
    assert net.UsedBlobNames() == {"w", "y"}
    # Edits through Proto() are seen by the lookups.
    net.Proto().op.add(type="Relu", input=["y"], output=["z"])
    assert net.BlobIsDefined("z")


def test_external_inputs_and_outputs():
    net = fresh_net()
    x = net.AddExternalInput("x")
    assert x == "x" and x.Net() is None
    assert net.AddExternalInput("p", "q") == ["p", "q"]
    with pytest.raises(AssertionError, match="already contains an input named x"):
        net.AddExternalInput("x")
    with pytest.raises(AssertionError, match="named u"):
        net.AddExternalInput("u", "u")
    assert list(net.Proto().external_input) == ["x", "p", "q"]  # nothing added on failure
    y = net.Relu(x, "y")
    net.AddExternalOutput(y)
    with pytest.raises(AssertionError, match="nope is not defined"):
        net.AddExternalOutput(core.BlobReference("nope"))
    assert list(net.Proto().external_output) == ["y"]
    with core.NameScope("s"):
        assert net.AddScopedExternalInputs("a") == ["s/a"]


def test_clone_with_blob_remap_and_mask():
    net = core.Net("clone_src_example")
    net.AddExternalInput("x")
    net.FC(["x", "w", "b"], "y")
    net.Relu("y", "z")
    net.Sum(["z", "k"], "s")
    net.AddExternalOutput(net.GetBlobRef("s"))
    c = net.Clone("clone_dst_example", blob_remap={"x": "x2", "y": "yy"})
    assert c.Name() == "clone_dst_example"
    assert [list(op.input) for op in c.Proto().op] == [["x2", "w", "b"], ["yy"], ["z", "k"]]
    assert list(c.Proto().op[0].output) == ["yy"]
    assert list(c.Proto().external_input) == ["x2", "w", "b", "k"]
    assert [op.type for op in net.Proto().op] == ["FC", "Relu", "Sum"]  # source untouched
    masked = net.Clone("clone_mask_example", op_id_mask=[1, 2], update_external_list=True)
    assert [op.type for op in masked.Proto().op] == ["Relu", "Sum"]
    assert list(masked.Proto().external_input) == ["y", "k"]
    assert list(masked.Proto().external_output) == ["s"]
    assert net.Clone("clone_dst_example").Name() == "clone_dst_example_1"


def test_clone_remaps_blobs_inside_control_op_subnets():
    then_net = core.Net("ctl_then_example")
    then_net.Relu(["inputA"], "fc_a")
    else_net = core.Net("ctl_else_example")
    else_net.Relu(["inputB"], "fc_b")
    net = core.Net("ctl_example")
    net.extend_ops([core.CreateOperator("If", ["cond"], [], then_net=then_net.Proto(),
                                        else_net=else_net.Proto())])
    copied = net.Clone("ctl_copy_example", blob_remap={"inputA": "inputX"})
    if_op = copied.Proto().op[0]
    assert list(if_op.arg[0].n.op[0].input) == ["inputX"]
    assert list(if_op.arg[1].n.op[0].input) == ["inputB"]


def test_run_all_on_gpu_and_mkl():
    net = fresh_net()
    net.Relu("x", "y")
    net.RunAllOnGPU(gpu_id=1, use_cudnn=True)
    assert one_line(net.Proto().device_option) == "device_type: 1 device_id: 1"
    assert net.Proto().op[0].engine == "CUDNN"
    net.RunAllOnMKL()
    assert one_line(net.Proto().device_option) == "device_type: 2"


def test_net_scopes_apply_to_created_ops():
    net = fresh_net("scoped")
    gpu = core.DeviceOption(caffe2_pb2.CUDA, 0)
    with core.NameScope("block"), core.DeviceScope(gpu):
        y = net.Relu("x", "y")
        auto = net.Relu(y)
    assert y == "block/y"
    assert auto == f"block/{net.Name()}/Relu"
    assert all(op.device_option == gpu for op in net.Proto().op)
    assert list(net.Proto().external_input) == ["block/x"]


def test_const_add_argument_append_net_and_seeds():
    net = core.Net("const_example")
    assert net.Const(np.array([1, 2], dtype=np.int32)) == "const_example/GivenTensorIntFill:0"
    assert net.Const([1.5]) == "const_example/GivenTensorFill:0"
    assert net.Const(np.array([1, 2])) == "const_example/GivenTensorInt64Fill:0"
    assert net.Const(True) == "const_example/ConstantFill:0"
    assert utils.ArgsToDict(net.Proto().op[0].arg) == {"shape": [2], "values": [1, 2]}
    net.AddArgument("num", 3)
    assert one_line(net.Proto().arg[0]) == 'name: "num" i: 3'
    other = fresh_net()
    other.AddExternalInput("y")
    other.Relu("y", "z")
    other.AddExternalOutput(other.GetBlobRef("z"))
    net.Relu("x", "y")
    net.AppendNet(other, device_option=core.DeviceOption(caffe2_pb2.CUDA))
    assert list(net.Proto().external_output) == ["z"]
    assert "y" not in net.Proto().external_input  # produced by an op of net already
    assert net.Proto().op[-1].device_option.device_type == caffe2_pb2.CUDA
    assert not other.Proto().op[0].HasField("device_option")
    net.set_rand_seed(7)
    assert [op.device_option.random_seed for op in net.Proto().op] == list(range(7, 13))


# ----------------------------------------------------------------------------- Python ops

def test_python_op_tokens_and_arguments_follow_caffe2():
    net = core.Net("py_example")

    def my_func(inputs, outputs):
        pass

    net.Python(my_func)(["x"], ["y"])
    net.Python(my_func)(["x"], 1)
    net.Python(lambda i, o: None, grad_f=lambda i, o: None)("x", 2, foo=3)
    ops = net.Proto().op
    # Caffe2: the token is f.__name__, then "name:1", ...; argument order as below.
    assert [a.name for a in ops[2].arg] == ["grad_output_indices", "grad_input_indices",
                                            "foo", "token"]
    tokens = [utils.ArgsToDict(op.arg)["token"].decode() for op in ops]
    assert tokens[0].partition(":")[0] == tokens[1].partition(":")[0] == "my_func"
    assert tokens[0] != tokens[1]
    assert list(ops[1].output) == ["py_example/Python:0"]
    assert list(ops[2].output) == ["py_example/Python_2:0", "py_example/Python:1"]
    entry = python_op.GetPythonOp(tokens[2])
    assert entry.grad_f is not None and entry.pass_workspace is False


def test_python_op_registry():
    def same(i, o):
        pass
    base = f"registry_test_{id(same)}"
    tokens = [python_op.RegisterPythonOp(same, name=base) for _ in range(3)]
    assert tokens == [base, f"{base}:1", f"{base}:2"]  # Caffe2's naming
    t = python_op.RegisterPythonOp(same, pass_workspace=True)
    assert t.partition(":")[0] == "same"
    assert python_op.GetPythonOp(t).pass_workspace and python_op.GetPythonOp(t).f is same
    with pytest.raises(KeyError, match="no Python function is registered"):
        python_op.GetPythonOp("never-registered")
    with pytest.raises(TypeError):
        python_op.RegisterPythonOp(3)


def test_python_op_builder_tuple_is_pickled_onto_the_op():
    net = fresh_net()
    net.Python((_make_counter, ["name"], {"start": 2}))(["x"], ["y"])
    args = utils.ArgsToDict(net.Proto().op[0].arg)
    assert set(args) == {"grad_output_indices", "grad_input_indices", "pickled_builder",
                         "pickled_grad_builder", "pass_workspace"}
    fn = python_op.build_function(args["pickled_builder"])
    assert callable(fn)
    with pytest.raises(AssertionError, match="both f and grad_f"):
        net.Python((_make_counter, [], {}), grad_f=lambda i, o: None)


def _make_counter(name="", start=0):
    state = [start]

    def count(inputs, outputs):
        state[0] += 1
        outputs[0].feed(np.array([state[0]], dtype=np.int64))
    return count


def test_python_op_runs_with_caffe2s_tensor_api():
    from c2compile import workspace
    seen = {}

    def f(inputs, outputs):
        x = inputs[0]
        seen["shape"] = x.shape
        seen["type"] = type(x.shape)
        seen["fresh"] = outputs[1].shape
        with pytest.raises(ValueError):
            x.data[0, 0] = 5  # inputs are read-only views
        outputs[0].feed(x.data * 2)
        outputs[1].reshape([2, 3])
        outputs[1].data[...] = 7
        outputs[2].init([4], core.DataType.INT32)

    workspace.FeedBlob("py_x", np.arange(6, dtype=np.float32).reshape(2, 3))
    op = core.CreatePythonOperator(f, ["py_x"], ["py_y", "py_z", "py_w"])
    workspace.RunOperatorOnce(op)
    assert seen == {"shape": (2, 3), "type": tuple, "fresh": (0,)}
    np.testing.assert_array_equal(workspace.FetchBlob("py_y"),
                                  np.arange(6, dtype=np.float32).reshape(2, 3) * 2)
    np.testing.assert_array_equal(workspace.FetchBlob("py_z"), np.full((2, 3), 7, np.float32))
    assert workspace.FetchBlob("py_w").dtype == np.int32
    np.testing.assert_array_equal(workspace.FetchBlob("py_x"),
                                  np.arange(6, dtype=np.float32).reshape(2, 3))


def test_python_op_pass_workspace_and_builder_run():
    from c2compile import workspace

    def g(inputs, outputs, ws):
        outputs[0].feed(ws.blobs["py_ws_in"].fetch() + 1)

    workspace.FeedBlob("py_ws_in", np.ones(2, np.float32))
    net = fresh_net()
    net.Python(g, pass_workspace=True)([], ["py_ws_out"])
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("py_ws_out"), [2, 2])

    counted = fresh_net()
    counted.Python((_make_counter, ["c"], {}))([], ["py_count"])
    workspace.CreateNet(counted)
    for _ in range(3):
        workspace.RunNet(counted.Name())
    # Caffe2: the builder runs once when the net is created; its state persists.
    assert workspace.FetchBlob("py_count").tolist() == [3]


def test_python_op_exception_propagates():
    from c2compile import workspace

    class CustomError(Exception):
        pass

    def boom(inputs, outputs):
        raise CustomError("This is an intentional exception.")

    with pytest.raises(CustomError, match="intentional"):
        workspace.RunOperatorOnce(core.CreatePythonOperator(boom, [], []))


# ----------------------------------------------------------------------------- GlobalInit

def test_global_init_takes_caffe2_flags():
    before = core.GetGlobalInitArgs()
    assert core.GlobalInit(["caffe2", "--caffe2_log_level=0", "-caffe2_omp_num_threads", "2",
                            "positional", "--caffe2_print_stacktraces=TRUE"])
    assert flags.get("caffe2_log_level") == 0
    assert flags.get("caffe2_omp_num_threads") == 2
    assert flags.get("caffe2_print_stacktraces") is True
    assert core.GetGlobalInitArgs()[len(before):] == [
        "--caffe2_log_level=0", "-caffe2_omp_num_threads", "2", "positional",
        "--caffe2_print_stacktraces=TRUE"]
    assert flags.get("caffe2_tensor_chunk_size") == 1000000  # defaults for unset flags
    core.GlobalInit(["caffe2", "--caffe2_log_level=1"])


@pytest.mark.parametrize("args, match", [
    (["--foo_bar=1"], "unrecognized commandline argument: --foo_bar=1"),
    (["--caffe2_print_stacktraces"], "needs a value"),
    (["--caffe2_print_stacktraces=maybe"], "cannot convert 'maybe' to bool"),
    (["--caffe2_log_level=abc"], "not a valid int"),
])
def test_global_init_rejects_bad_flags(args, match):
    before = core.GetGlobalInitArgs()
    with pytest.raises(RuntimeError, match=match):
        core.GlobalInit(["caffe2"] + args)
    assert core.GetGlobalInitArgs() == before
    assert flags.get("caffe2_log_level") == 1
