"""The shape/type inference pass and workspace.InferShapesAndTypes."""
import numpy as np
import pytest

from c2compile import core, workspace
from c2compile.errors import ShapeError
from c2compile.proto import caffe2_pb2

from conftest import load_netdef, squeezenet_weight_shapes


@pytest.mark.parametrize("name", ["squeezenet_predict.pb", "squeezenet_predict_dropout.pb"])
def test_squeezenet_shapes(name):
    net = load_netdef(name)
    dims = dict(squeezenet_weight_shapes(), data=[1, 3, 227, 227])
    shapes, types = workspace.InferShapesAndTypes([net], dims)
    assert shapes["softmaxout"] == [1, 1000, 1, 1]
    assert types["softmaxout"] == caffe2_pb2.TensorProto.FLOAT
    assert shapes["pool1"] == [1, 64, 56, 56]
    assert shapes["fire2/concat"] == [1, 128, 56, 56]


def test_uses_workspace_blobs_when_no_dimensions_given():
    workspace.FeedBlob("X", np.zeros((4, 3), np.float32))
    workspace.FeedBlob("W", np.zeros((5, 3), np.float32))
    workspace.FeedBlob("b", np.zeros(5, np.float32))
    net = core.Net("n")
    net.FC(["X", "W", "b"], "Y")
    shapes, types = workspace.InferShapesAndTypes([net])
    assert shapes["Y"] == [4, 5] and types["Y"] == caffe2_pb2.TensorProto.FLOAT


def test_mismatch_names_op_and_shapes():
    net = core.Net("bad")
    net.FC(["X", "W", "b"], "Y", name="fc1")
    with pytest.raises(ShapeError) as e:
        workspace.InferShapesAndTypes([net], {"X": [4, 3], "W": [5, 7], "b": [5]})
    msg = str(e.value)
    assert "op #0 (FC 'fc1')" in msg and "[5, 7]" in msg.replace("(", "[").replace(")", "]")
