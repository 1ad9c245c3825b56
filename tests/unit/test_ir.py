"""NetDef <-> IR: SSA versions, edges and the round trip."""
import pathlib

import pytest

from c2compile import core
from c2compile.ir import Graph, value_key
from c2compile.proto import caffe2_pb2

MODELS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "models"


def _net():
    net = core.Net("ssa")
    net.AddExternalInput("X", "W", "b")
    net.FC(["X", "W", "b"], ["Y"])
    net.Relu(["Y"], ["Y"])            # in place: a new version of Y
    net.Add(["Y", "Y"], ["Z"])        # one version feeding two slots
    net.AddExternalOutput("Z")
    return net.Proto()


def test_ssa_versions_and_slots():
    g = Graph.from_netdef(_net())
    g.verify()
    relu, add = ("op", 1), ("op", 2)
    assert g.op_inputs(relu) == [value_key("Y", 1)]
    assert g.op_outputs(relu) == [value_key("Y", 2)]
    assert g.op_inputs(add) == [value_key("Y", 2), value_key("Y", 2)]
    assert [k[1] for k in g.graph_inputs()] == ["W", "X", "b"]
    assert g.value(value_key("X", 0))["external_input"]
    assert g.value(value_key("Z", 1))["external_output"]
    assert g.latest("Y") == value_key("Y", 2)
    assert g.consumers(value_key("Y", 1)) == [relu]


def test_round_trip_is_identical():
    net = _net()
    net.op[0].device_option.random_seed = 3
    net.op[1].name = "relu"
    net.op[1].control_input.append("X")
    assert Graph.from_netdef(net).to_netdef().SerializeToString() == net.SerializeToString()


@pytest.mark.parametrize("name", ["squeezenet_predict.pb", "squeezenet_predict_dropout.pb"])
def test_real_nets_round_trip(name):
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = path.read_bytes()
    net = caffe2_pb2.NetDef()
    net.ParseFromString(data)
    g = Graph.from_netdef(net)
    g.verify()
    assert g.to_netdef().SerializeToString() == data
