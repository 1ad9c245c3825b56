"""c2compile.brew and c2compile.helpers: the NetDefs Caffe2 1.10's brew built.

Every expected op list here was printed by `netdef_summary.summarize` for the same model
built with real Caffe2 1.10.2 (`from caffe2.python import brew, model_helper`), so these
pin its parameter names, fill ops, argument order (the model's arg_scope first, then the
helper's own), engines and parameter registration, quirks included.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from c2compile import brew, core, workspace
from c2compile.modeling.initializers import Initializer
from c2compile.modeling.parameter_info import ParameterTags
from c2compile.modeling.parameter_sharing import ParameterSharing
from tests.unit.model_testkit import LENET_PARAMS, lenet, new_model, summarize

NCHW_HINTS = [("order", "NCHW"), ("cudnn_exhaustive_search", 0)]
FC_ARGS = [("order", "NCHW"), ("use_cudnn", 1), ("cudnn_exhaustive_search", 0)]
CUDNN = {"engine": "CUDNN"}

LENET_INIT = [
    ("XavierFill", [], ["conv1_w"], [("shape", [20, 1, 5, 5])]),
    ("ConstantFill", [], ["conv1_b"], [("shape", [20])]),
    ("XavierFill", [], ["conv2_w"], [("shape", [50, 20, 5, 5])]),
    ("ConstantFill", [], ["conv2_b"], [("shape", [50])]),
    ("XavierFill", [], ["fc3_w"], [("shape", [500, 800])]),
    ("ConstantFill", [], ["fc3_b"], [("shape", [500])]),
    ("XavierFill", [], ["pred_w"], [("shape", [10, 500])]),
    ("ConstantFill", [], ["pred_b"], [("shape", [10])]),
]
CONV_ARGS = [("kernel", 5), ("order", "NCHW"), ("exhaustive_search", 0)]
POOL_ARGS = NCHW_HINTS + [("kernel", 2), ("stride", 2)]
LENET_NET = [
    ("Conv", ["data", "conv1_w", "conv1_b"], ["conv1"], CONV_ARGS, CUDNN),
    ("MaxPool", ["conv1"], ["pool1"], POOL_ARGS, CUDNN),
    ("Conv", ["pool1", "conv2_w", "conv2_b"], ["conv2"], CONV_ARGS, CUDNN),
    ("MaxPool", ["conv2"], ["pool2"], POOL_ARGS, CUDNN),
    ("FC", ["pool2", "fc3_w", "fc3_b"], ["fc3"], FC_ARGS),
    ("Relu", ["fc3"], ["relu3"], NCHW_HINTS, CUDNN),
    ("FC", ["relu3", "pred_w", "pred_b"], ["pred"], FC_ARGS),
    ("Softmax", ["pred"], ["softmax"], NCHW_HINTS, CUDNN),
    ("LabelCrossEntropy", ["softmax", "label"], ["xent"], []),
    ("AveragedLoss", ["xent"], ["loss"], []),
    ("Accuracy", ["softmax", "label"], ["accuracy"], []),
]
GRAD = {"grad": True}
CUDNN_GRAD = {"engine": "CUDNN", "grad": True}
LENET_BACKWARD = [
    ("ConstantFill", ["loss"], ["loss_autogen_grad"], [("value", 1.0)]),
    ("AveragedLossGradient", ["xent", "loss_autogen_grad"], ["xent_grad"], [], GRAD),
    ("LabelCrossEntropyGradient", ["softmax", "label", "xent_grad"], ["softmax_grad"], [],
     GRAD),
    ("SoftmaxGradient", ["softmax", "softmax_grad"], ["pred_grad"], NCHW_HINTS, CUDNN_GRAD),
    ("FCGradient", ["relu3", "pred_w", "pred_grad"], ["pred_w_grad", "pred_b_grad",
                                                       "relu3_grad"], FC_ARGS, GRAD),
    ("ReluGradient", ["relu3", "relu3_grad"], ["fc3_grad"], NCHW_HINTS, CUDNN_GRAD),
    ("FCGradient", ["pool2", "fc3_w", "fc3_grad"], ["fc3_w_grad", "fc3_b_grad", "pool2_grad"],
     FC_ARGS, GRAD),
    ("MaxPoolGradient", ["conv2", "pool2", "pool2_grad"], ["conv2_grad"], POOL_ARGS,
     CUDNN_GRAD),
    ("ConvGradient", ["pool1", "conv2_w", "conv2_grad"], ["conv2_w_grad", "conv2_b_grad",
                                                          "pool1_grad"], CONV_ARGS, CUDNN_GRAD),
    ("MaxPoolGradient", ["conv1", "pool1", "pool1_grad"], ["conv1_grad"], POOL_ARGS,
     CUDNN_GRAD),
    ("ConvGradient", ["data", "conv1_w", "conv1_grad"], ["conv1_w_grad", "conv1_b_grad",
                                                         "data_grad"], CONV_ARGS, CUDNN_GRAD),
]


# ----------------------------------------------------------------------------- LeNet

def test_lenet_netdefs_are_caffe2s():
    model = new_model("lenet")
    assert str(lenet(model)) == "loss"
    assert summarize(model.param_init_net) == LENET_INIT
    assert summarize(model.net) == LENET_NET
    assert list(model.net.Proto().external_input) == ["data"] + LENET_PARAMS + ["label"]
    assert [str(p) for p in model.params] == LENET_PARAMS
    assert [str(p) for p in model.weights] == LENET_PARAMS[0::2]
    assert [str(p) for p in model.biases] == LENET_PARAMS[1::2]
    assert model.GetComputedParams() == []
    assert all(isinstance(p, core.BlobReference) for p in model.params)


def test_lenet_gradient_ops_are_caffe2s():
    """Needs the gradient rules of Conv/MaxPool/FC/Softmax/LabelCrossEntropy/AveragedLoss and
    schemas that take brew's `order` argument on every op."""
    model = new_model("lenet")
    grad_map = model.AddGradientOperators([lenet(model)])
    assert summarize(model.net) == LENET_NET + LENET_BACKWARD
    assert {str(k): str(v) for k, v in model.param_to_grad.items()} == \
        {p: p + "_grad" for p in LENET_PARAMS}
    assert [str(p) for p in model.param_to_grad] == LENET_PARAMS  # params order
    assert str(grad_map["data"]) == "data_grad"


def test_lenet_forward_runs():
    """A brew-built net runs: loss and accuracy agree with numpy on the fetched softmax.
    Needs schemas that take brew's `order` argument on every op (Caffe2 ignored it)."""
    model = new_model("lenet")
    lenet(model)
    rng = np.random.default_rng(0)
    workspace.FeedBlob("data", rng.random((3, 1, 28, 28), dtype=np.float32))
    workspace.FeedBlob("label", np.array([1, 7, 3], np.int32))
    workspace.RunNetOnce(model.param_init_net)
    assert workspace.FetchBlob("conv2_w").shape == (50, 20, 5, 5)
    assert not workspace.FetchBlob("fc3_b").any()
    workspace.RunNetOnce(model.net)
    softmax = workspace.FetchBlob("softmax")
    assert softmax.shape == (3, 10)
    np.testing.assert_allclose(softmax.sum(axis=1), 1, rtol=1e-5)
    picked = softmax[np.arange(3), [1, 7, 3]]
    np.testing.assert_allclose(workspace.FetchBlob("loss"), -np.log(picked).mean(), rtol=1e-5)
    expected_accuracy = np.mean(softmax.argmax(axis=1) == [1, 7, 3])
    np.testing.assert_allclose(workspace.FetchBlob("accuracy"), expected_accuracy)


# ----------------------------------------------------------------------------- helpers

def test_spatial_bn_train_and_test():
    model = new_model("bn")
    out = brew.spatial_bn(model, "x", "bn", 3, epsilon=1e-3, momentum=0.9, is_test=False)
    assert str(out) == "bn"
    test_out = brew.spatial_bn(model, "x", "bnt", 3, is_test=True, order="NHWC")
    assert [str(b) for b in (test_out,)] == ["bnt"]
    brew.spatial_bn(model, "x", "bns", 4, init_scale=0.5, init_bias=0.1)

    def fills(name, dim, scale=1.0, bias=0.0):
        return [("ConstantFill", [], [name + sfx], [("shape", [dim]), ("value", v)])
                for sfx, v in (("_s", scale), ("_b", bias), ("_rm", 0.0), ("_riv", 1.0))]

    assert summarize(model.param_init_net) == \
        fills("bn", 3) + fills("bnt", 3) + fills("bns", 4, 0.5, 0.1)
    assert summarize(model.net) == [
        ("SpatialBN", ["x", "bn_s", "bn_b", "bn_rm", "bn_riv"],
         ["bn", "bn_rm", "bn_riv", "bn_sm", "bn_siv"],
         FC_ARGS + [("epsilon", 0.001), ("momentum", 0.9), ("is_test", 0)]),
        ("SpatialBN", ["x", "bnt_s", "bnt_b", "bnt_rm", "bnt_riv"], ["bnt"],
         [("order", "NHWC"), ("use_cudnn", 1), ("cudnn_exhaustive_search", 0),
          ("is_test", 1)]),
        ("SpatialBN", ["x", "bns_s", "bns_b", "bns_rm", "bns_riv"],
         ["bns", "bns_rm", "bns_riv", "bns_sm", "bns_siv"], FC_ARGS),
    ]
    assert [str(p) for p in model.params] == ["bn_s", "bn_b", "bnt_s", "bnt_b", "bns_s",
                                              "bns_b"]
    assert [str(p) for p in model.weights] == ["bn_s", "bnt_s", "bns_s"]
    assert [str(p) for p in model.GetComputedParams()] == \
        ["bn_rm", "bn_riv", "bnt_rm", "bnt_riv", "bns_rm", "bns_riv"]
    assert len(model.GetAllParams()) == 12


NHWC_NO_CUDNN = [("order", "NHWC"), ("use_cudnn", 0), ("cudnn_exhaustive_search", 0)]
NHWC_HINTS = [("order", "NHWC"), ("cudnn_exhaustive_search", 0)]


def test_many_helpers_with_model_arg_scope():
    model = new_model("misc", arg_scope={"order": "NHWC", "use_cudnn": False})
    brew.conv(model, "x", "c", 3, 8, [3, 5], pad=1, stride=2, no_bias=True)
    brew.conv(model, "x", "g", 4, 8, 3, group=2, weight_init=("MSRAFill", {}),
              bias_init=("ConstantFill", {"value": 0.1}))
    assert str(brew.dropout(model, "c", "d", ratio=0.3, is_test=False)) == "d"
    brew.dropout(model, "c", "dt", is_test=True)
    assert str(brew.concat(model, ["c", "g"], "cat")) == "cat"
    brew.concat(model, ["c", "g"], "cat2", axis=1, order="NCHW")
    assert str(brew.lrn(model, "cat", "lrn", size=5, alpha=1e-4, beta=0.75)) == "lrn"
    brew.average_pool(model, "lrn", "ap", kernel=2, stride=2)
    brew.max_pool(model, "lrn", "mp", global_pooling=True)
    brew.sum(model, ["ap", "mp"], "s")
    brew.relu(model, "s", "s")
    brew.tanh(model, "s", "t")
    brew.softmax(model, "t", "sm", axis=1)
    unnamed = brew.softmax(model, "t")
    brew.fc(model, "t", "f", 10, 4, weight_init=("GaussianFill", {"std": 0.01}), axis=2)
    brew.fc(model, "t", "f2", 10, 4, WeightInitializer=Initializer,
            BiasInitializer=Initializer, weight_init=("ConstantFill", {"value": 1.0}),
            freeze_bias=True)
    brew.iter(model, "it")
    brew.accuracy(model, ["f", "label"], "acc", top_k=3)
    brew.transpose(model, "f", "ft", axes=[1, 0])
    brew.conv_nd(model, "x", "c3", 2, 4, [1, 2, 3], order="NCHW")
    brew.conv_transpose(model, "x", "ct", 2, 4, 3, stride=2)
    brew.conv(model, "x", "cudnnconv", 2, 4, 3, use_cudnn=True, ws_nbytes_limit=1024)

    assert str(unnamed) == f"{model.net.Name()}/Softmax"
    assert summarize(model.param_init_net) == [
        ("XavierFill", [], ["c_w"], [("shape", [8, 3, 5, 3])]),
        ("MSRAFill", [], ["g_w"], [("shape", [8, 3, 3, 2])]),
        ("ConstantFill", [], ["g_b"], [("shape", [8]), ("value", 0.1)]),
        ("GaussianFill", [], ["f_w"], [("shape", [4, 10]), ("std", 0.01)]),
        ("ConstantFill", [], ["f_b"], [("shape", [4])]),
        ("ConstantFill", [], ["f2_w"], [("shape", [4, 10]), ("value", 1.0)]),
        ("ConstantFill", [], ["f2_b"], [("shape", [4])]),
        # brew.iter hands the model's arg_scope to ConstantFill and Iter too (Caffe2's)
        ("ConstantFill", [], ["it"], [("shape", [1]), ("value", 0), ("dtype", 10)]
         + NHWC_NO_CUDNN, {"device": (0, 0, [])}),
        ("XavierFill", [], ["c3_w"], [("shape", [4, 2, 1, 2, 3])]),
        ("ConstantFill", [], ["c3_b"], [("shape", [4])]),
        ("XavierFill", [], ["ct_w"], [("shape", [2, 3, 3, 4])]),
        ("ConstantFill", [], ["ct_b"], [("shape", [4])]),
        ("XavierFill", [], ["cudnnconv_w"], [("shape", [4, 3, 3, 2])]),
        ("ConstantFill", [], ["cudnnconv_b"], [("shape", [4])]),
    ]
    assert summarize(model.net) == [
        ("Conv", ["x", "c_w"], ["c"],
         [("kernel_h", 3), ("kernel_w", 5), ("order", "NHWC"), ("pad", 1), ("stride", 2)]),
        ("Conv", ["x", "g_w", "g_b"], ["g"], [("kernel", 3), ("order", "NHWC"), ("group", 2)]),
        ("Dropout", ["c"], ["d", "_d_mask"], NHWC_HINTS + [("ratio", 0.3), ("is_test", 0)],
         {"engine": "DEFAULT"}),
        ("Dropout", ["c"], ["dt", "_dt_mask"], NHWC_HINTS + [("is_test", 1)],
         {"engine": "DEFAULT"}),
        ("Concat", ["c", "g"], ["cat", "_cat_concat_dims"], NHWC_NO_CUDNN),
        ("Concat", ["c", "g"], ["cat2", "_cat2_concat_dims"],
         [("use_cudnn", 0), ("cudnn_exhaustive_search", 0), ("axis", 1)]),
        ("LRN", ["cat"], ["lrn", "_lrn_scale"],
         NHWC_HINTS + [("size", 5), ("alpha", 0.0001), ("beta", 0.75)]),
        ("AveragePool", ["lrn"], ["ap"], NHWC_HINTS + [("kernel", 2), ("stride", 2)]),
        ("MaxPool", ["lrn"], ["mp"], NHWC_HINTS + [("global_pooling", 1)]),
        ("Sum", ["ap", "mp"], ["s"], NHWC_NO_CUDNN),
        ("Relu", ["s"], ["s"], NHWC_HINTS),
        ("Tanh", ["s"], ["t"], NHWC_HINTS),
        ("Softmax", ["t"], ["sm"], NHWC_HINTS + [("axis", 1)]),
        ("Softmax", ["t"], [str(unnamed)], NHWC_HINTS),
        ("FC", ["t", "f_w", "f_b"], ["f"], NHWC_NO_CUDNN + [("axis", 2)]),
        ("FC", ["t", "f2_w", "f2_b"], ["f2"], NHWC_NO_CUDNN + [("freeze_bias", 1)]),
        ("Iter", ["it"], ["it"], NHWC_NO_CUDNN),
        ("Accuracy", ["f", "label"], ["acc"], []),  # Caffe2 drops top_k on the CPU
        ("Transpose", ["f"], ["ft"], NHWC_HINTS + [("axes", [1, 0])]),
        ("Conv", ["x", "c3_w", "c3_b"], ["c3"], [("kernels", [1, 2, 3]), ("order", "NCHW")]),
        ("ConvTranspose", ["x", "ct_w", "ct_b"], ["ct"],
         [("kernel", 3), ("order", "NHWC"), ("stride", 2)]),
        ("Conv", ["x", "cudnnconv_w", "cudnnconv_b"], ["cudnnconv"],
         [("kernel", 3), ("order", "NHWC"), ("exhaustive_search", 0),
          ("ws_nbytes_limit", 1024)], CUDNN),
    ]
    assert [str(p) for p in model.params] == [
        "c_w", "g_w", "g_b", "f_w", "f_b", "f2_w", "c3_w", "c3_b", "ct_w", "ct_b",
        "cudnnconv_w", "cudnnconv_b"]
    assert [str(p) for p in model.weights] == ["c_w", "g_w", "f_w", "f2_w", "c3_w", "ct_w",
                                               "cudnnconv_w"]
    assert [str(p) for p in model.biases] == ["g_b", "f_b", "f2_b", "c3_b", "ct_b",
                                              "cudnnconv_b"]
    # freeze_bias (any value) makes the bias a computed parameter: never optimized
    assert [str(p) for p in model.GetComputedParams()] == ["f2_b"]


def test_conv_engine_conflicts_and_kernel_checks():
    model = new_model()
    with pytest.raises(ValueError, match='only engine you can specify is "CUDNN"'):
        brew.conv(model, "x", "a", 1, 1, 3, engine="NNPACK")  # model: use_cudnn=True
    with pytest.raises(ValueError, match='only engine you can specify is ""'):
        brew.conv(model, "x", "b", 1, 1, 3, use_cudnn=False, engine="CUDNN")
    with pytest.raises(AssertionError, match="2D kernel"):
        brew.conv(model, "x", "c", 1, 1, [3, 3, 3])
    with pytest.raises(AssertionError, match="is_test"):
        brew.dropout(model, "x", "y")


def test_conv_nd_takes_the_model_order():
    # conv_nd declares order; the model's arg_scope supplies it
    model = new_model(arg_scope={"order": "NHWC"})
    with pytest.raises(AssertionError, match="NCHW"):
        brew.conv_nd(model, "x", "d", 1, 1, 3)
    model = new_model()
    brew.conv_nd(model, "x", "d", 2, 4, 3)
    assert summarize(model.param_init_net)[0] == ("XavierFill", [], ["d_w"],
                                                  [("shape", [4, 2, 3])])


def test_init_params_false_adds_no_fills_and_param_model_shares():
    model = new_model("noinit", init_params=False)
    brew.fc(model, "x", "f", 2, 3)
    brew.conv(model, "x", "c", 2, 3, 1)
    brew.spatial_bn(model, "c", "bn", 3, is_test=True)
    assert summarize(model.param_init_net) == []
    assert [op[0] for op in summarize(model.net)] == ["FC", "Conv", "SpatialBN"]
    assert [str(p) for p in model.params] == ["f_w", "f_b", "c_w", "c_b", "bn_s", "bn_b"]
    assert [str(p) for p in model.GetComputedParams()] == ["bn_rm", "bn_riv"]

    shared = new_model("shared", param_model=model)
    brew.fc(shared, "x", "f", 2, 3)  # the same parameters: nothing new
    assert shared.params is model.params and len(model.params) == 6
    assert shared.param_init_net is model.param_init_net
    shared.Validate()
    with pytest.raises(AssertionError, match="shape"):
        brew.fc(shared, "x", "f", 2, 4)


def test_helpers_with_ops_c2compile_lacks_name_them():
    model = new_model()
    with pytest.raises(AttributeError, match="PRelu is not a registered operator"):
        brew.prelu(model, "x", "y")
    with pytest.raises(AttributeError, match="InstanceNorm is not a registered operator"):
        brew.instance_norm(model, "x", "y", 3)


def test_add_weight_decay_helper():
    model = new_model("wd")
    w = model.create_param("w", [2], Initializer("ConstantFill"), tags=ParameterTags.WEIGHT)
    b = model.create_param("b", [2], Initializer("ConstantFill"), tags=ParameterTags.BIAS)
    model.net.Sum([model.net.Relu(w, "rw"), model.net.Relu(b, "rb")], "loss")
    model.AddGradientOperators(["loss"])
    brew.add_weight_decay(model, 0.0)  # nothing for weight_decay <= 0
    assert len(model.param_init_net.Proto().op) == 2
    brew.add_weight_decay(model, 0.5)  # the weights only
    assert summarize(model.param_init_net)[2:] == [
        ("ConstantFill", [], ["wd"], [("shape", [1]), ("value", 0.5)]),
        ("ConstantFill", [], ["ONE"], [("shape", [1]), ("value", 1.0)])]
    assert summarize(model.net)[-1] == ("WeightedSum", ["w_grad", "ONE", "w", "wd"], ["w_grad"],
                                        [])
    assert [op[0] for op in summarize(model.net)].count("WeightedSum") == 1


# ----------------------------------------------------------------------------- arg_scope

def test_arg_scope_nests_and_explicit_kwargs_win():
    model = new_model("scope")
    with brew.arg_scope([brew.conv, brew.fc], order="NHWC", weight_init=("MSRAFill", {})):
        brew.conv(model, "x", "c1", 3, 4, 3)
        with brew.arg_scope(brew.conv, pad=1):
            brew.conv(model, "x", "c2", 3, 4, 3, order="NCHW")
        brew.conv(model, "x", "c3", 3, 4, 3)
        brew.fc(model, "x", "f1", 3, 4)
    brew.conv(model, "x", "c4", 3, 4, 3)
    init = summarize(model.param_init_net)
    assert [op[0] for op in init[0:8:2]] == ["MSRAFill"] * 4
    assert init[8] == ("XavierFill", [], ["c4_w"], [("shape", [4, 3, 3, 3])])
    assert summarize(model.net) == [
        ("Conv", ["x", "c1_w", "c1_b"], ["c1"],
         [("kernel", 3), ("order", "NHWC"), ("exhaustive_search", 0)], CUDNN),
        ("Conv", ["x", "c2_w", "c2_b"], ["c2"],
         [("kernel", 3), ("order", "NCHW"), ("pad", 1), ("exhaustive_search", 0)], CUDNN),
        ("Conv", ["x", "c3_w", "c3_b"], ["c3"],
         [("kernel", 3), ("order", "NHWC"), ("exhaustive_search", 0)], CUDNN),
        ("FC", ["x", "f1_w", "f1_b"], ["f1"],
         [("order", "NHWC"), ("use_cudnn", 1), ("cudnn_exhaustive_search", 0)]),
        ("Conv", ["x", "c4_w", "c4_b"], ["c4"],
         [("kernel", 3), ("order", "NCHW"), ("exhaustive_search", 0)], CUDNN),
    ]


def test_arg_scope_is_restored_after_an_error():
    model = new_model()
    with pytest.raises(RuntimeError):
        with brew.arg_scope(brew.relu, order="NHWC"):
            raise RuntimeError("boom")
    brew.relu(model, "x", "y")
    assert summarize(model.net)[0][3][0] == ("order", "NCHW")


def test_arg_scope_is_per_thread():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def other():
        with brew.arg_scope(brew.relu, order="NHWC"):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(10)
    model = new_model()
    brew.relu(model, "x", "y")
    seen["order"] = summarize(model.net)[0][3][0]
    release.set()
    thread.join()
    assert seen["order"] == ("order", "NCHW")


def test_arg_scope_rejects_non_callables():
    with pytest.raises(AssertionError):
        with brew.arg_scope("conv", order="NHWC"):
            pass
    with pytest.raises(AssertionError):
        with brew.arg_scope([brew.conv, 3], order="NHWC"):
            pass
    assert brew.get_current_scope() == {}  # a rejected list leaves no scope behind


# ----------------------------------------------------------------------------- Register

def test_register_user_helpers():
    model = new_model("reg")

    def c2c_test_scale(model, blob_in, blob_out, scale=1.0):
        return model.net.Scale(blob_in, blob_out, scale=scale)

    def c2c_test_print(model, blob_in, blob_out, **kwargs):
        return model.net.Print(blob_in, [], **kwargs)

    brew.Register(c2c_test_scale)
    brew.Register(c2c_test_print)
    try:
        with brew.arg_scope(brew.c2c_test_scale, scale=2.0):
            brew.c2c_test_scale(model, "x", "sc1")
        brew.c2c_test_scale(model, "x", "sc2")
        brew.c2c_test_scale(model=model, blob_in="x", blob_out="sc3", scale=3.0)
        brew.c2c_test_print(model, "x", None)
        assert summarize(model.net) == [
            ("Scale", ["x"], ["sc1"], [("scale", 2.0)]),
            ("Scale", ["x"], ["sc2"], [("scale", 1.0)]),  # no **kwargs: model scope filtered
            ("Scale", ["x"], ["sc3"], [("scale", 3.0)]),
            ("Print", ["x"], [], FC_ARGS),  # **kwargs: the whole model arg_scope
        ]
        assert brew.has_helper("c2c_test_scale") and brew.has_helper(c2c_test_print)
        assert brew.has_helper(brew.conv) and not brew.has_helper("nope")
        assert "c2c_test_scale" in brew.Helpers() and "fc" in brew.Helpers()
        with pytest.raises(AttributeError, match="Helper c2c_test_scale already exists"):
            brew.Register(c2c_test_scale)
    finally:
        for name in ("c2c_test_scale", "c2c_test_print"):
            brew._registry.pop(name, None)
    with pytest.raises(AttributeError, match="Helper function nope not registered"):
        brew.nope
    with pytest.raises(RuntimeError, match="first input of helper function should be model"):
        brew.fc("notamodel", "x", "y", 1, 1)


def test_brew_helpers_list():
    expected = {"arg_scope", "fc", "conv", "conv_nd", "conv_transpose", "group_conv", "relu",
                "tanh", "prelu", "max_pool", "average_pool", "softmax", "spatial_bn", "lrn",
                "dropout", "concat", "depth_concat", "sum", "iter", "accuracy",
                "add_weight_decay", "transpose", "elementwise_linear", "layer_norm"}
    assert expected <= set(brew.Helpers())
    assert brew.conv.__name__ == "conv"


# ----------------------------------------------------------------------------- scopes

def test_name_scope_and_parameter_sharing():
    model = new_model("share")
    with core.NameScope("ns"):
        brew.fc(model, "x", "nf", 2, 2)
        assert [str(p) for p in model.GetParams()] == ["ns/nf_w", "ns/nf_b"]
    with ParameterSharing({"shared": "ns"}):
        with core.NameScope("shared"):
            brew.fc(model, "x", "nf", 2, 2)
    assert [str(p) for p in model.GetParams("ns")] == ["ns/nf_w", "ns/nf_b"]
    assert [str(p) for p in model.GetParams("ns/")] == ["ns/nf_w", "ns/nf_b"]
    assert summarize(model.param_init_net) == [
        ("XavierFill", [], ["ns/nf_w"], [("shape", [2, 2])]),
        ("ConstantFill", [], ["ns/nf_b"], [("shape", [2])])]
    assert summarize(model.net) == [
        ("FC", ["ns/x", "ns/nf_w", "ns/nf_b"], ["ns/nf"], FC_ARGS),
        ("FC", ["shared/x", "ns/nf_w", "ns/nf_b"], ["shared/nf"], FC_ARGS)]
