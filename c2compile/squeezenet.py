"""SqueezeNet 1.1's parameters: their names and shapes, and deterministic stand-in weights.

Caffe2's model zoo ships SqueezeNet 1.1 as two files: predict_net.pb (the architecture; a
copy is in examples/data/squeezenet/) and init_net.pb (the trained weights, one
GivenTensorFill op per parameter). The trained weights are not shipped with c2compile, so
`init_net(seed)` makes an init net of the same form from weights drawn at random, for the
Loading Pre-Trained Models tutorial (examples/squeezenet.py), the tests and the benchmarks:

- conv weights N(0, 2 / fan_in) with fan_in = C_in * kH * kW (He et al.'s MSRA scaling for
  the forward pass): each Conv + ReLU keeps the scale of its input, so activations stay
  sane from conv1 to conv10 whatever the depth;
- the classifier conv10 is scaled down by CLASSIFIER_GAIN, so that on the tutorial's
  inputs (pixels in [-128, 127]) the logits spread over a few units as a trained net's do:
  the softmax is peaked, neither uniform nor one-hot;
- biases N(0, 0.05^2): nonzero, so a dropped bias shows in a test.

The numbers come from numpy's seeded generator, not from c2compile's fill ops, so they
do not change with how those ops draw.
"""
from __future__ import annotations

import numpy as np

# fire2..fire9: (squeeze 1x1 width, width of each of the expand 1x1 and 3x3 branches)
FIRES = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192),
         7: (48, 192), 8: (64, 256), 9: (64, 256)}
CLASSES = 1000
INPUT = "data"  # 1x3x227x227 in the tutorial, BGR, mean-subtracted
OUTPUT = "softmaxout"  # N x 1000 x 1 x 1
CLASSIFIER_GAIN = 0.05
BIAS_STD = 0.05


def weight_shapes() -> dict[str, list[int]]:
    """Every parameter the predict net reads, by name: conv1 64 3x3/2, the fires, conv10."""
    shapes = {"conv1_w": [64, 3, 3, 3], "conv1_b": [64]}
    cin = 64
    for i, (squeeze, expand) in FIRES.items():
        p = f"fire{i}/"
        shapes.update({p + "squeeze1x1_w": [squeeze, cin, 1, 1], p + "squeeze1x1_b": [squeeze],
                       p + "expand1x1_w": [expand, squeeze, 1, 1], p + "expand1x1_b": [expand],
                       p + "expand3x3_w": [expand, squeeze, 3, 3], p + "expand3x3_b": [expand]})
        cin = 2 * expand  # the two expand branches are concatenated
    shapes.update({"conv10_w": [CLASSES, cin, 1, 1], "conv10_b": [CLASSES]})
    return shapes


def check_predict_net(predict) -> None:
    """Raise ValueError unless `predict` (a NetDef) reads exactly these parameters."""
    params = set(predict.external_input) - {INPUT}
    expected = set(weight_shapes())
    if params != expected:
        raise ValueError(f"net '{predict.name}' is not SqueezeNet 1.1: it reads "
                         f"{sorted(params - expected)[:4]} and not "
                         f"{sorted(expected - params)[:4]}")


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    """The stand-in weights (see the module docstring), float32, drawn in name order."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in sorted(weight_shapes().items()):
        if name.endswith("_w"):
            fan_in = int(np.prod(shape[1:]))
            std = np.sqrt(2.0 / fan_in) * (CLASSIFIER_GAIN if name == "conv10_w" else 1.0)
        else:
            std = BIAS_STD
        out[name] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
    return out


def init_net(seed: int = 0):
    """An init net of GivenTensorFill ops making `weights(seed)`, as a model-zoo init_net.pb."""
    from c2compile.aot import given_fill_net
    return given_fill_net(weights(seed), "squeezenet_init")
