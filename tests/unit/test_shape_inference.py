"""The shape/type inference pass and workspace.InferShapesAndTypes."""
import pathlib

import numpy as np
import pytest

from c2compile import core, workspace
from c2compile.errors import ShapeError
from c2compile.proto import caffe2_pb2

MODELS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "models"

# SqueezeNet 1.1: conv1 64 3x3/2; fire2..fire9 squeeze/expand widths; conv10 1000 1x1.
FIRES = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192),
         8: (64, 256), 9: (64, 256)}


def squeezenet_weight_shapes():
    shapes = {"conv1_w": [64, 3, 3, 3], "conv1_b": [64]}
    cin = 64
    for i, (s, e) in FIRES.items():
        p = f"fire{i}/"
        shapes.update({p + "squeeze1x1_w": [s, cin, 1, 1], p + "squeeze1x1_b": [s],
                       p + "expand1x1_w": [e, s, 1, 1], p + "expand1x1_b": [e],
                       p + "expand3x3_w": [e, s, 3, 3], p + "expand3x3_b": [e]})
        cin = 2 * e
    shapes.update({"conv10_w": [1000, cin, 1, 1], "conv10_b": [1000]})
    return shapes


@pytest.mark.parametrize("name", ["squeezenet_predict.pb", "squeezenet_predict_dropout.pb"])
def test_squeezenet_shapes(name):
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    net = caffe2_pb2.NetDef()
    net.ParseFromString(path.read_bytes())
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
