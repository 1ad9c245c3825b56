"""The real SqueezeNet 1.1 predict nets through the reference executor, against PyTorch.

The torch side is written from the architecture, not from the NetDef, so it checks the whole
path: protobuf parsing, argument handling (legacy_pad=3 pooling is torch's ceil_mode),
in-place Relu/Dropout, Concat, and the reference kernels.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c2compile import workspace
from conftest import SQUEEZENET_FIRES, load_netdef, squeezenet_init_net


def torch_squeezenet(x, w):
    t = {k: torch.from_numpy(v).double() for k, v in w.items()}

    def conv(h, name, stride=1, pad=0):
        return F.relu(F.conv2d(h, t[name + "_w"], t[name + "_b"], stride=stride, padding=pad))

    h = conv(torch.from_numpy(x).double(), "conv1", stride=2)
    h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    for i in SQUEEZENET_FIRES:
        s = conv(h, f"fire{i}/squeeze1x1")
        h = torch.cat([conv(s, f"fire{i}/expand1x1"), conv(s, f"fire{i}/expand3x3", pad=1)], 1)
        if i in (3, 5):
            h = F.max_pool2d(h, 3, 2, ceil_mode=True)
    logits = F.adaptive_avg_pool2d(conv(h, "conv10"), 1)
    return logits.numpy(), F.softmax(logits, 1).numpy()


@pytest.mark.parametrize("name", ["squeezenet_predict.pb", "squeezenet_predict_dropout.pb"])
def test_squeezenet_matches_torch(name):
    predict = load_netdef(name)
    workspace.RunNetOnce(squeezenet_init_net(seed=1))
    weights = {b: workspace.FetchBlob(b) for b in workspace.Blobs()}
    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    workspace.FeedBlob("data", x)
    predict.name = "squeezenet"
    workspace.CreateNet(predict)
    workspace.RunNet("squeezenet")
    logits, probs = torch_squeezenet(x, weights)
    out = workspace.FetchBlob("softmaxout")
    assert out.shape == (1, 1000, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(workspace.FetchBlob("pool10"), logits, rtol=1e-4,
                               atol=1e-4 * np.abs(logits).max())
    np.testing.assert_allclose(out, probs, rtol=1e-4, atol=1e-7)


def test_squeezenet_predictor():
    predict = load_netdef("squeezenet_predict.pb")
    init = squeezenet_init_net(seed=2)
    p = workspace.Predictor(init.SerializeToString(), predict.SerializeToString())
    assert p.input_names == ["data"]
    x = np.zeros((1, 3, 227, 227), np.float32)
    (out,) = p.run([x])
    (again,) = p.run({"data": x})
    assert out.shape == (1, 1000, 1, 1)
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out, again)
