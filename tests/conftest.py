"""Test-wide settings: hypothesis profiles and a fresh workspace per test."""
import os
import pathlib

import pytest
from hypothesis import settings

# "ci" is derandomized so a CI failure reproduces; "dev" explores new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _fresh_workspace(tmp_path):
    """Each test starts in an empty default workspace rooted in its own temp folder."""
    from c2compile import workspace
    workspace.SwitchWorkspace("default")
    workspace.ResetWorkspace(str(tmp_path))
    yield
    workspace.SwitchWorkspace("default")


# ----------------------------------------------------------------------------- real models

MODELS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "models"

# SqueezeNet 1.1: conv1 64 3x3/2; fire2..fire9 squeeze/expand widths; conv10 1000 1x1.
SQUEEZENET_FIRES = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192),
                    7: (48, 192), 8: (64, 256), 9: (64, 256)}


def squeezenet_weight_shapes() -> dict[str, list[int]]:
    shapes = {"conv1_w": [64, 3, 3, 3], "conv1_b": [64]}
    cin = 64
    for i, (s, e) in SQUEEZENET_FIRES.items():
        p = f"fire{i}/"
        shapes.update({p + "squeeze1x1_w": [s, cin, 1, 1], p + "squeeze1x1_b": [s],
                       p + "expand1x1_w": [e, s, 1, 1], p + "expand1x1_b": [e],
                       p + "expand3x3_w": [e, s, 3, 3], p + "expand3x3_b": [e]})
        cin = 2 * e
    shapes.update({"conv10_w": [1000, cin, 1, 1], "conv10_b": [1000]})
    return shapes


def squeezenet_init_net(seed: int = 0):
    """An init net for the real SqueezeNet predict nets: MSRA weights, small random biases,
    each op seeded so the weights are the same on every run."""
    from c2compile import core
    net = core.Net("squeezenet_init")
    for i, (name, shape) in enumerate(sorted(squeezenet_weight_shapes().items())):
        dev = core.DeviceOption(0, random_seed=seed * 1000 + i)
        with core.DeviceScope(dev):
            if name.endswith("_w"):
                net.MSRAFill([], name, shape=shape)
            else:
                net.GaussianFill([], name, shape=shape, std=0.05)
    return net.Proto()


def load_netdef(name: str):
    from c2compile.proto import caffe2_pb2
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    net = caffe2_pb2.NetDef()
    net.ParseFromString(path.read_bytes())
    return net
