"""c2compile.optimizer: the ops Caffe2 1.10's optimizers add, and what they compute.

Expected op lists were printed by `model_testkit.summarize` for the same models under real
Caffe2 1.10.2; the training numbers (losses, learning rates, parameters after 4 steps) are
real Caffe2's too, for a small fc -> relu -> fc -> SquaredL2Distance -> AveragedLoss model.
"""
from __future__ import annotations

import numpy as np
import pytest

from c2compile import brew, config, core, optimizer, workspace
from c2compile.modeling.initializers import Initializer
from c2compile.modeling.parameter_info import ParameterTags
from c2compile.optimizer_context import UseOptimizer
from tests.unit.model_testkit import LENET_PARAMS, lenet, new_model, relu_model, summarize


@pytest.fixture(autouse=True)
def _fresh_instance_count():
    """Blob names number optimizers per class and process: start each test at 0."""
    optimizer.reset_optimizer_instance_count()


# What every optimizer adds first: the shared counter, on the CPU (Caffe2 marks it with
# extra_info "device_type_override:cpu"), and the empty DeviceOption of the parameter's
# producing op on everything else.
ON_CPU = {"device": (0, 0, ["device_type_override:cpu"])}
DEV = {"device": ()}
ITER_INIT = [
    ("ConstantFill", [], ["optimizer_iteration"], [("shape", [1]), ("value", 0), ("dtype", 10)],
     ON_CPU),
    ("CreateMutex", [], ["iteration_mutex"], [], ON_CPU),
]
ATOMIC_ITER = ("AtomicIter", ["iteration_mutex", "optimizer_iteration"],
               ["optimizer_iteration"], [], ON_CPU)
ONE = ("ConstantFill", [], ["ONE_0_0"], [("shape", [1]), ("value", 1.0)], DEV)


def lr_op(name, base_lr, *policy_args, policy="fixed"):
    return ("LearningRate", ["optimizer_iteration"], [name],
            [("base_lr", base_lr), ("policy", policy), *policy_args], DEV)


def sgd_update(param, lr="SgdOptimizer_0_lr_cpu"):
    return ("WeightedSum", [param, "ONE_0_0", param + "_grad", lr], [param], [], DEV)


# ----------------------------------------------------------------------------- tiny model

RELU_INIT = [("XavierFill", [], ["w"], [("shape", [2, 3])]),
             ("ConstantFill", [], ["b"], [("shape", [3])])]
RELU_NET = [
    ("Relu", ["w"], ["rw"], []),
    ("Relu", ["b"], ["rb"], []),
    ("Sum", ["rw", "rb"], ["loss"], []),
    ("ConstantFill", ["loss"], ["loss_autogen_grad"], [("value", 1.0)]),
    ("ReluGradient", ["rb", "loss_autogen_grad"], ["b_grad"], [], {"grad": True}),
    ("ReluGradient", ["rw", "loss_autogen_grad"], ["w_grad"], [], {"grad": True}),
]


def relu_model_with_grads():
    model = relu_model()
    model.AddGradientOperators(["loss"])
    return model


def test_sgd_step_policy():
    model = relu_model_with_grads()
    sgd = optimizer.build_sgd(model, 0.1, policy="step", stepsize=10, gamma=0.5)
    assert isinstance(sgd, optimizer.SgdOptimizer)
    assert summarize(model.param_init_net) == RELU_INIT + ITER_INIT + [ONE, ONE]
    assert summarize(model.net) == RELU_NET + [
        ATOMIC_ITER,
        lr_op("SgdOptimizer_0_lr_cpu", -0.1, ("stepsize", 10), ("gamma", 0.5), policy="step"),
        sgd_update("w"), sgd_update("b")]
    assert list(model.net.Proto().external_input) == ["w", "b", "iteration_mutex",
                                                      "optimizer_iteration", "ONE_0_0"]
    aux = sgd.get_auxiliary_parameters()
    assert [str(b) for b in aux.shared] == ["ONE_0_0", "ONE_0_0"] and aux.local == []


def test_sgd_momentum():
    model = relu_model_with_grads()
    sgd = optimizer.build_sgd(model, 0.1, momentum=0.9, nesterov=False)
    momentum = [("ConstantFill", [p], [p + "_momentum"], [("value", 0.0)], DEV)
                for p in ("w", "b")]
    assert summarize(model.param_init_net) == \
        RELU_INIT + ITER_INIT + [ONE, momentum[0], ONE, momentum[1]]
    # MomentumSGDUpdate subtracts: base_lr stays positive
    assert summarize(model.net) == RELU_NET + [ATOMIC_ITER, lr_op("SgdOptimizer_0_lr_cpu", 0.1)] + [
        ("MomentumSGDUpdate", [p + "_grad", p + "_momentum", "SgdOptimizer_0_lr_cpu", p],
         [p + "_grad", p + "_momentum", p], [("momentum", 0.9), ("nesterov", 0)], DEV)
        for p in ("w", "b")]
    assert [str(b) for b in sgd.get_auxiliary_parameters().local] == ["w_momentum",
                                                                      "b_momentum"]


def test_add_weight_decay_then_sgd():
    model = relu_model_with_grads()
    optimizer.add_weight_decay(model, 0.01)
    optimizer.build_sgd(model, 0.1)
    assert summarize(model.param_init_net) == RELU_INIT + [
        ONE, ("ConstantFill", [], ["wd_0_0"], [("shape", [1]), ("value", 0.01)], DEV),
    ] + ITER_INIT + [ONE, ONE]
    assert summarize(model.net) == RELU_NET + [  # the weight only, not the bias
        ("WeightedSum", ["w_grad", "ONE_0_0", "w", "wd_0_0"], ["w_grad"], [], DEV),
        ATOMIC_ITER, lr_op("SgdOptimizer_0_lr_cpu", -0.1), sgd_update("w"), sgd_update("b")]


def test_adam():
    model = relu_model_with_grads()
    adam = optimizer.build_adam(model, 0.01, beta1=0.8, policy="exp", gamma=0.9)
    moments = [("ConstantFill", [p], [p + sfx], [("value", 0.0)], DEV)
               for p in ("w", "b") for sfx in ("_first_moment", "_second_moment")]
    assert summarize(model.param_init_net) == RELU_INIT + ITER_INIT + moments
    assert summarize(model.net) == RELU_NET + [
        ATOMIC_ITER, lr_op("AdamOptimizer_0_lr_cpu", -0.01, ("gamma", 0.9), policy="exp")] + [
        ("Adam", [p, p + "_first_moment", p + "_second_moment", p + "_grad",
                  "AdamOptimizer_0_lr_cpu", "optimizer_iteration"],
         [p, p + "_first_moment", p + "_second_moment"],
         [("beta1", 0.8), ("beta2", 0.999), ("epsilon", 1e-08)], DEV)
        for p in ("w", "b")]
    aux = adam.get_auxiliary_parameters()
    assert [str(b) for b in aux.shared] == ["optimizer_iteration"] * 2
    assert [str(b) for b in aux.local] == [m[2][0] for m in moments]


def test_adagrad_skips_weight_decay_for_1d_params():
    model = relu_model_with_grads()
    optimizer.build_adagrad(model, 0.05, epsilon=1e-6, decay=0.9, weight_decay=0.1)
    sums = [("ConstantFill", [p], [p + "_squared_sum"], [("value", 0.0)], DEV) for p in "wb"]
    assert summarize(model.param_init_net) == RELU_INIT + ITER_INIT + sums
    update = [("epsilon", 1e-06), ("decay", 0.9)]
    assert summarize(model.net) == RELU_NET + [
        ATOMIC_ITER, lr_op("AdagradOptimizer_0_lr_cpu", -0.05),
        ("Adagrad", ["w", "w_squared_sum", "w_grad", "AdagradOptimizer_0_lr_cpu"],
         ["w", "w_squared_sum"], update + [("weight_decay", 0.1)], DEV),
        ("Adagrad", ["b", "b_squared_sum", "b_grad", "AdagradOptimizer_0_lr_cpu"],
         ["b", "b_squared_sum"], update, DEV)]


def test_adagrad_effective_lr_outputs():
    model = relu_model_with_grads()
    optimizer.build_adagrad(model, 0.05, output_effective_lr=True)
    assert summarize(model.net)[-2:] == [
        ("Adagrad", [p, p + "_squared_sum", p + "_grad", "AdagradOptimizer_0_lr_cpu"],
         [p, p + "_squared_sum", p + "_effective_lr"], [("epsilon", 0.0001), ("decay", 1.0)],
         DEV) for p in "wb"]


def test_use_optimizer_context_wins_over_build():
    model = new_model("ctx")
    weight_optim = optimizer.AdagradOptimizer(0.3)
    default_optim = optimizer.SgdOptimizer(0.15)
    with UseOptimizer({"WEIGHT": weight_optim}):
        w = model.create_param("w", [2, 3], Initializer("XavierFill"), tags=ParameterTags.WEIGHT)
        b = model.create_param("b", [3], Initializer("ConstantFill"), tags=ParameterTags.BIAS)
    with UseOptimizer(default_optim):
        c = model.create_param("c", [3], Initializer("ConstantFill"))
    relus = [model.net.Relu(p, "r" + str(p)) for p in (w, b, c)]
    model.net.Sum(relus, "loss")
    model.AddGradientOperators(["loss"])
    optimizer.build_sgd(model, 0.11)  # SgdOptimizer_1: only b has no optimizer of its own
    assert summarize(model.param_init_net)[3:] == ITER_INIT + [
        ("ConstantFill", ["w"], ["w_squared_sum"], [("value", 0.0)], DEV), ONE, ONE]
    assert summarize(model.net)[-7:] == [
        ATOMIC_ITER, lr_op("AdagradOptimizer_0_lr_cpu", -0.3),
        ("Adagrad", ["w", "w_squared_sum", "w_grad", "AdagradOptimizer_0_lr_cpu"],
         ["w", "w_squared_sum"], [("epsilon", 0.0001), ("decay", 1.0)], DEV),
        lr_op("SgdOptimizer_1_lr_cpu", -0.11), sgd_update("b", "SgdOptimizer_1_lr_cpu"),
        lr_op("SgdOptimizer_0_lr_cpu", -0.15), sgd_update("c", "SgdOptimizer_0_lr_cpu")]


def test_build_in_a_name_scope_repeats_the_counter():
    """Caffe2 looked the counter up by its unscoped name, so inside a NameScope each
    parameter adds it again (and momentum blob names are scoped, the parameters not)."""
    model = relu_model_with_grads()
    with core.NameScope("scope"):
        optimizer.build_sgd(model, 0.1, momentum=0.5)
    scoped_iter = [("ConstantFill", [], ["scope/optimizer_iteration"],
                    [("shape", [1]), ("value", 0), ("dtype", 10)], ON_CPU),
                   ("CreateMutex", [], ["scope/iteration_mutex"], [], ON_CPU)]
    scoped_one = ("ConstantFill", [], ["scope/ONE_0_0"], [("shape", [1]), ("value", 1.0)], DEV)
    assert summarize(model.param_init_net) == RELU_INIT + [
        op for p in "wb" for op in scoped_iter + [
            scoped_one, ("ConstantFill", [p], [f"scope/{p}_momentum"], [("value", 0.0)], DEV)]]
    lr = "scope/SgdOptimizer_0_lr_cpu"
    assert summarize(model.net) == RELU_NET + [
        op for p in "wb" for op in [
            ("AtomicIter", ["scope/iteration_mutex", "scope/optimizer_iteration"],
             ["scope/optimizer_iteration"], [], ON_CPU),
            ("LearningRate", ["scope/optimizer_iteration"], [lr],
             [("base_lr", 0.1), ("policy", "fixed")], DEV),
            ("MomentumSGDUpdate", [p + "_grad", f"scope/{p}_momentum", lr, p],
             [p + "_grad", f"scope/{p}_momentum", p], [("momentum", 0.5), ("nesterov", 1)],
             DEV)]]


# ----------------------------------------------------------------------------- options

def test_instance_numbers_and_reset():
    first = relu_model_with_grads()
    optimizer.build_sgd(first, 0.1)
    second = relu_model_with_grads()
    optimizer.build_sgd(second, 0.2)
    assert summarize(second.net)[-3] == lr_op("SgdOptimizer_1_lr_cpu", -0.2)
    optimizer.reset_optimizer_instance_count()
    assert optimizer.SgdOptimizer()._instance_num == 0
    assert "_instance_num" not in optimizer.SgdOptimizer(0.5).attributes


def test_build_sgd_weight_decay_is_dropped_with_a_warning():
    """Caffe2's build_sgd passed weight_decay on to LearningRate, which ignored it; c2compile's
    LearningRate refuses unknown arguments, so the optimizer drops it (no decay, as in
    Caffe2) and warns."""
    model = relu_model_with_grads()
    with pytest.warns(UserWarning, match="weight_decay is ignored"):
        optimizer.build_sgd(model, 0.1, momentum=0.9, weight_decay=1e-4)
    assert summarize(model.net)[len(RELU_NET) + 1] == lr_op("SgdOptimizer_0_lr_cpu", 0.1)


def test_optimizer_called_on_one_param():
    model = relu_model_with_grads()
    sgd = optimizer.SgdOptimizer(0.5)
    sgd(model.net, model.param_init_net, "w", "w_grad")
    assert summarize(model.net)[-1] == sgd_update("w")[:4]  # no device scope here
    with pytest.raises(AssertionError, match="ParameterInfo"):
        sgd(model.net, model.param_init_net, "w")


def test_bad_settings():
    model = relu_model_with_grads()
    with pytest.raises(AssertionError, match="positive base learning rate"):
        optimizer.build_sgd(model, -0.1)
    optimizer.build_sgd(relu_model_with_grads(), 0.0)  # a zero rate adds nothing
    with pytest.raises(AssertionError, match="rowWise"):
        optimizer.build_adagrad(relu_model_with_grads(), 0.1, rowWise=True)
    with pytest.raises(NotImplementedError, match="swa_options"):
        optimizer.build_adagrad(model, 0.1, swa_options={"swa_avg_start_it": 1})
    with pytest.raises(NotImplementedError, match="use_smart_decay"):
        optimizer.build_adam(model, 0.1, use_smart_decay=True)
    with pytest.raises(RuntimeError, match="AddGradientOperators first"):
        optimizer.build_sgd(relu_model(), 0.1)


def test_builders_without_update_ops_import_and_raise():
    """Caffe2's optimizer_test imports all of these at the top."""
    for name in ("build_multi_precision_sgd", "build_fp16_sgd", "build_ftrl", "build_gftrl",
                 "build_wngrad", "build_storm", "build_adadelta", "build_decay_adagrad",
                 "build_yellowfin", "build_rms_prop"):
        build = getattr(optimizer, name)
        assert build.__name__ == name
        with pytest.raises(NotImplementedError, match=f"optimizer.{name}: c2compile does not"):
            build(relu_model_with_grads(), 0.1)


# ----------------------------------------------------------------------------- LeNet

def lenet_with_grads():
    model = new_model("lenet")
    model.AddGradientOperators([lenet(model)])
    return model, len(model.param_init_net.Proto().op), len(model.net.Proto().op)


def test_lenet_sgd_step_and_fixed():
    """Needs the LeNet gradient ops (see test_brew)."""
    model, n_init, n_net = lenet_with_grads()
    optimizer.build_sgd(model, 0.1, policy="step", stepsize=1, gamma=0.999)
    assert summarize(model.param_init_net)[n_init:] == ITER_INIT + [ONE] * 8
    assert summarize(model.net)[n_net:] == [
        ATOMIC_ITER,
        lr_op("SgdOptimizer_0_lr_cpu", -0.1, ("stepsize", 1), ("gamma", 0.999), policy="step"),
    ] + [sgd_update(p) for p in LENET_PARAMS]

    model, n_init, n_net = lenet_with_grads()
    optimizer.build_sgd(model, 0.1)
    assert summarize(model.net)[n_net:] == [ATOMIC_ITER, lr_op("SgdOptimizer_1_lr_cpu", -0.1)] \
        + [sgd_update(p, "SgdOptimizer_1_lr_cpu") for p in LENET_PARAMS]


def test_lenet_weight_decay_and_momentum():
    model, n_init, n_net = lenet_with_grads()
    optimizer.add_weight_decay(model, 1e-4)
    optimizer.build_sgd(model, 0.1, momentum=0.9)
    wd = ("ConstantFill", [], ["wd_0_0"], [("shape", [1]), ("value", 0.0001)], DEV)
    assert summarize(model.param_init_net)[n_init:] == [ONE, wd] * 4 + ITER_INIT + [
        op for p in LENET_PARAMS
        for op in (ONE, ("ConstantFill", [p], [p + "_momentum"], [("value", 0.0)], DEV))]
    assert summarize(model.net)[n_net:] == [
        ("WeightedSum", [p + "_grad", "ONE_0_0", p, "wd_0_0"], [p + "_grad"], [], DEV)
        for p in LENET_PARAMS[0::2]
    ] + [ATOMIC_ITER, lr_op("SgdOptimizer_0_lr_cpu", 0.1)] + [
        ("MomentumSGDUpdate", [p + "_grad", p + "_momentum", "SgdOptimizer_0_lr_cpu", p],
         [p + "_grad", p + "_momentum", p], [("momentum", 0.9), ("nesterov", 1)], DEV)
        for p in LENET_PARAMS]


def test_lenet_adam_and_adagrad():
    model, n_init, n_net = lenet_with_grads()
    optimizer.build_adam(model, 0.001)
    assert summarize(model.net)[n_net:n_net + 3] == [
        ATOMIC_ITER, lr_op("AdamOptimizer_0_lr_cpu", -0.001),
        ("Adam", ["conv1_w", "conv1_w_first_moment", "conv1_w_second_moment", "conv1_w_grad",
                  "AdamOptimizer_0_lr_cpu", "optimizer_iteration"],
         ["conv1_w", "conv1_w_first_moment", "conv1_w_second_moment"],
         [("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-08)], DEV)]
    assert len(summarize(model.param_init_net)) == n_init + 2 + 16

    model, n_init, n_net = lenet_with_grads()
    optimizer.build_adagrad(model, 0.01, weight_decay=1e-4)
    updates = summarize(model.net)[n_net + 2:]
    assert [op[3] for op in updates] == [
        [("epsilon", 0.0001), ("decay", 1.0)] + [("weight_decay", 0.0001)] * (i % 2 == 0)
        for i in range(8)]
    assert [op[1] for op in updates] == [
        [p, p + "_squared_sum", p + "_grad", "AdagradOptimizer_0_lr_cpu"] for p in LENET_PARAMS]


# ----------------------------------------------------------------------------- training

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-1.0, 1.0, 1.0], [0.0, 2.0, -1.5]],
             np.float32)
Y = np.array([[1.0], [0.5], [2.0], [-0.5]], np.float32)

# Real Caffe2 1.10.2, 4 runs of the training net: losses, the learning rate blob, and the
# parameters after the 4th update.
CAFFE2_TRAINING = {
    "sgd": {"losses": [0.585232, 0.4635814, 0.3777036, 0.3149149], "lrs": [-0.1] * 4, "params": {
        "h_w": [0.05206263, -0.07597314, 0.4214446, 0.3732832, 0.4996677, -0.5941848],
        "h_b": [0.2305046, 0.03424905], "out_w": [0.7555484, -0.2478628],
        "out_b": [0.2435918]}},
    "sgd_step": {"losses": [0.585232, 0.5216057, 0.4942172, 0.481452],
                 "lrs": [-0.05, -0.025, -0.0125, -0.00625], "params": {
        "h_w": [0.09050132, -0.1705659, 0.3357503, 0.3919226, 0.4980046, -0.5968207],
        "h_b": [0.09978964, 0.0442905], "out_w": [0.7111004, -0.278257],
        "out_b": [0.07189789]}},
    "momentum": {"losses": [0.585232, 0.3734526, 0.2244064, 0.154986], "lrs": [0.1] * 4,
                 "params": {
        "h_w": [-0.06236427, 0.1671771, 0.5624301, 0.3348409, 0.5145782, -0.5973588],
        "h_b": [0.491465, 0.01927962], "out_w": [0.8228608, -0.2458122],
        "out_b": [0.5560231]}},
    "momentum_plain": {"losses": [0.585232, 0.4635814, 0.3040618, 0.1941566], "lrs": [0.1] * 4,
                       "params": {
        "h_w": [-0.0103249, 0.07945882, 0.5668486, 0.3397509, 0.4986484, -0.5864344],
        "h_b": [0.4495383, 0.0141789], "out_w": [0.808484, -0.1887196], "out_b": [0.539776]}},
    "weight_decay": {"losses": [0.585232, 0.463982, 0.3798065, 0.3188208], "lrs": [-0.1] * 4,
                     "params": {
        "h_w": [0.04912432, -0.07288957, 0.4095035, 0.3585607, 0.4807178, -0.571323],
        "h_b": [0.2294993, 0.03492031], "out_w": [0.7292421, -0.2408479],
        "out_b": [0.2439542]}},
    "adam": {"losses": [0.585232, 0.4848909, 0.3876625, 0.3015827], "lrs": [-0.05] * 4,
             "params": {
        "h_w": [-0.06483264, -0.02784342, 0.4711832, 0.2347001, 0.4344658, -0.4755571],
        "h_b": [0.2170563, -0.1049856], "out_w": [0.8722547, -0.1594783],
        "out_b": [0.168073]}},
    "adagrad": {"losses": [0.585232, 0.3460386, 0.2271897, 0.1574503], "lrs": [-0.1] * 4,
                "params": {
        "h_w": [-0.2127047, 0.07236461, 0.5174291, 0.1901404, 0.5453035, -0.5391553],
        "h_b": [0.2582546, -0.09169573], "out_w": [0.9960997, -0.2391042],
        "out_b": [0.2018125]}},
}
BUILDERS = {
    "sgd": lambda m: optimizer.build_sgd(m, 0.1),
    "sgd_step": lambda m: optimizer.build_sgd(m, 0.1, policy="step", stepsize=1, gamma=0.5),
    "momentum": lambda m: optimizer.build_sgd(m, 0.1, momentum=0.9),
    "momentum_plain": lambda m: optimizer.build_sgd(m, 0.1, momentum=0.9, nesterov=False),
    "weight_decay": lambda m: (optimizer.add_weight_decay(m, 0.1),
                               optimizer.build_sgd(m, 0.1)),
    "adam": lambda m: optimizer.build_adam(m, 0.05),
    "adagrad": lambda m: optimizer.build_adagrad(m, 0.1, weight_decay=0.01),
}
LR_BLOBS = {"adam": "AdamOptimizer_0_lr_cpu", "adagrad": "AdagradOptimizer_0_lr_cpu"}


def regression_model(name):
    model = new_model(name)
    h = brew.fc(model, "data", "h", 3, 2, bias_init=("ConstantFill", {"value": 0.05}),
                weight_init=("GivenTensorFill", {"values": [0.1, -0.2, 0.3, 0.4, 0.5, -0.6]}))
    r = brew.relu(model, h, "r")
    out = brew.fc(model, r, "out", 2, 1, weight_init=("GivenTensorFill", {"values": [0.7, -0.3]}))
    model.AveragedLoss(model.SquaredL2Distance([out, "label"], "dist"), "loss")
    model.AddGradientOperators(["loss"])
    return model


def train(model, lr_blob, steps=4):
    workspace.FeedBlob("data", X)
    workspace.FeedBlob("label", Y)
    workspace.RunNetOnce(model.param_init_net)
    workspace.CreateNet(model.net)
    losses, lrs = [], []
    for _ in range(steps):
        workspace.RunNet(model.net.Proto().name)
        losses.append(float(workspace.FetchBlob("loss")))
        lrs.append(float(workspace.FetchBlob(lr_blob)))
    return losses, lrs


# The compiled backend on the cases that differ in update ops (a build costs seconds).
CASES = [(case, "reference") for case in sorted(CAFFE2_TRAINING)] + [
    (case, "cpu") for case in ("sgd_step", "momentum", "weight_decay", "adam", "adagrad")]


@pytest.mark.parametrize("case, backend", CASES)
def test_training_matches_caffe2(case, backend):
    """Needs the gradient ops of FC/Relu/SquaredL2Distance/AveragedLoss, CreateMutex and
    AtomicIter, the update ops, and schemas that take brew's `order` argument."""
    model = regression_model("train_" + case)
    BUILDERS[case](model)
    with config.patch(backend=backend):
        losses, lrs = train(model, LR_BLOBS.get(case, "SgdOptimizer_0_lr_cpu"))
    expected = CAFFE2_TRAINING[case]
    np.testing.assert_allclose(losses, expected["losses"], rtol=1e-4)
    np.testing.assert_allclose(lrs, expected["lrs"], rtol=1e-6)
    for name, values in expected["params"].items():
        np.testing.assert_allclose(workspace.FetchBlob(name).ravel(), values, rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    assert workspace.FetchBlob("optimizer_iteration").tolist() == [4]
    assert losses == sorted(losses, reverse=True)  # every case here descends
