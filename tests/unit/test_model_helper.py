"""c2compile.model_helper (+ modeling, optimizer_context): Caffe2 1.10's ModelHelper.

Expected values come from running the same code under real Caffe2 1.10.2; where
c2compile differs on purpose, the test says so.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from c2compile import brew, core, model_helper
from c2compile.modeling import initializers, parameter_info
from c2compile.modeling.initializers import ExternalInitializer, Initializer
from c2compile.modeling.parameter_info import ParameterInfo, ParameterTags
from c2compile.modeling.parameter_sharing import ParameterSharing
from c2compile.optimizer_context import UseOptimizer
from c2compile.proto import caffe2_pb2
from tests.unit.model_testkit import new_model, relu_model, summarize

# ----------------------------------------------------------------------------- construction

def test_defaults():
    model = new_model()
    assert model.arg_scope == {"order": "NCHW", "use_cudnn": True,
                               "cudnn_exhaustive_search": False}
    assert model.param_init_net.Name() == model.net.Name() + "_init"
    assert model.get_name() == model.net.Name()
    assert (model.params, model.weights, model.biases, model.param_to_grad) == ([], [], [], {})
    assert model.init_params and model.allow_not_known_ops and not model.skip_sparse_optim
    assert model.Proto() is model.net.Proto() and model.InitProto() is \
        model.param_init_net.Proto()
    assert new_model(arg_scope={"order": "NHWC"}).arg_scope["order"] == "NHWC"
    assert model_helper.ModelHelper().name == "model"  # Caffe2's default name


def test_create_param_names_tags_and_reuse():
    model = new_model()
    w = model.create_param("w", [2, 2], Initializer("ConstantFill", value=0.5),
                           tags=ParameterTags.WEIGHT)
    with core.NameScope("ns"):
        b = model.create_param("b", [2], Initializer("ConstantFill"),
                               tags=[ParameterTags.BIAS])
        exact = model.create_param(core.BlobReference("exact"), [1], Initializer("XavierFill"))
        stat = model.create_param("rm", [2], Initializer("ConstantFill"),
                                  tags=ParameterTags.COMPUTED_PARAM)
    again = model.create_param("w", [2, 2], Initializer("XavierFill"))
    assert again is w and str(b) == "ns/b" and str(exact) == "exact"
    assert summarize(model.param_init_net) == [
        ("ConstantFill", [], ["w"], [("shape", [2, 2]), ("value", 0.5)]),
        ("ConstantFill", [], ["ns/b"], [("shape", [2])]),
        ("XavierFill", [], ["exact"], [("shape", [1])]),
        ("ConstantFill", [], ["ns/rm"], [("shape", [2])]),
    ]
    assert [str(p) for p in model.params] == ["w", "ns/b", "exact"]
    assert model.weights == [w] and model.biases == [b]
    assert model.GetComputedParams() == [stat]
    info = model.get_param_info(w)
    assert isinstance(info, ParameterInfo) and info.shape == [2, 2] and info.grad is None
    assert info.size == 4 and info.parameter is w and str(info) == "w"
    with pytest.raises(AssertionError, match="shape"):
        model.create_param("w", [3], Initializer("XavierFill"))
    with pytest.raises(TypeError):
        model.create_param(3, [3], Initializer("XavierFill"))
    with pytest.raises(AssertionError):
        model.AddParameter("not_a_reference")
    with pytest.raises(AssertionError):
        model.get_param_info("w")


def test_parameter_sharing_resolves_scopes():
    model = new_model()
    init = Initializer("ConstantFill")
    with ParameterSharing({"scope_b": "scope_a", "scope_c/shared": ""}):
        with core.NameScope("scope_b"):
            assert str(model.create_param("w", [1], init)) == "scope_a/w"
            with core.NameScope("inner"):
                assert str(model.create_param("w", [1], init)) == "scope_a/inner/w"
        with core.NameScope("scope_c"), core.NameScope("shared"):
            assert str(model.create_param("w", [1], init)) == "w"
    with core.NameScope("scope_b"):
        assert str(model.create_param("w", [1], init)) == "scope_b/w"  # override gone
    with pytest.raises(AssertionError, match="prefix"):
        with ParameterSharing({"a": "ab"}):
            pass


def test_external_initializer_and_update_initializer():
    model = new_model(init_params=False)
    with core.NameScope("s"):
        p = model.create_param("p", [3], ExternalInitializer())
    assert str(p) == "s/p" and summarize(model.param_init_net) == []
    init = initializers.update_initializer(None, None, ("XavierFill", {}))
    assert (init.operator_name, init.operator_kwargs) == ("XavierFill", {})
    init = initializers.update_initializer(Initializer, ("GaussianFill", {"std": 2.0}), None)
    assert (init.operator_name, init.operator_kwargs) == ("GaussianFill", {"std": 2.0})
    with pytest.raises(Exception, match="overwrites"):
        init.update("XavierFill", {})


def test_params_by_namescope_and_validate():
    model = new_model()
    with core.NameScope("a"):
        brew.fc(model, "x", "f", 2, 2)
        brew.spatial_bn(model, "x", "bn", 2, is_test=True)
        assert [str(p) for p in model.GetParams()] == ["a/f_w", "a/f_b", "a/bn_s", "a/bn_b"]
    with core.NameScope("ab"):
        brew.fc(model, "x", "f", 2, 2)
    assert [str(p) for p in model.GetParams("a")] == ["a/f_w", "a/f_b", "a/bn_s", "a/bn_b"]
    assert [str(p) for p in model.GetComputedParams("a/")] == ["a/bn_rm", "a/bn_riv"]
    assert len(model.GetAllParams("a")) == 6 and len(model.GetAllParams()) == 8
    assert len(model.GetParams("")) == 6
    model.Validate()
    model.AddParameter(model.params[0])
    model.AddParameter(model.params[1])
    assert model._Validate() == ["a/f_b", "a/f_w"]
    with pytest.raises(AssertionError, match=r"Duplicate params: \['a/f_b', 'a/f_w'\]"):
        model.Validate()


# ----------------------------------------------------------------------------- op sugar

def test_op_sugar_warns_for_ops_outside_caffe2s_list(caplog):
    model = new_model()
    with caplog.at_level(logging.WARNING, logger="c2compile.model_helper"):
        model.Softmax("x", "y")
        assert not caplog.records
        model.Relu("y", "z")
    assert "does not recognize: Relu" in caplog.text
    assert [op[0] for op in summarize(model.net)] == ["Softmax", "Relu"]
    strict = new_model(allow_not_known_ops=False)
    with pytest.raises(AttributeError, match="Operator Relu is not known to be safe"):
        strict.Relu("x", "y")
    with pytest.raises(AttributeError, match="NotAnOp is not a registered operator"):
        model.NotAnOp
    with pytest.raises(AttributeError):
        model._private
    assert "Softmax" in dir(model) and "AddGradientOperators" in dir(model)


# ----------------------------------------------------------------------------- gradients

def test_add_gradient_operators_records_param_to_grad():
    model = relu_model()
    w, b = model.params
    with pytest.raises(RuntimeError, match="AddGradientOperators first"):
        model.GetOptimizationParamInfo()
    with pytest.raises(RuntimeError, match="AddGradientOperators first"):
        model.get_param_to_grad(model.params)
    grad_map = model.AddGradientOperators(["loss"])
    assert str(grad_map["w"]) == "w_grad" and str(grad_map["b"]) == "b_grad"
    assert model.param_to_grad == {w: "w_grad", b: "b_grad"}
    assert list(model.param_to_grad) == [w, b]
    assert model.get_param_info(w).grad == "w_grad"
    assert [str(i.blob) for i in model.GetOptimizationParamInfo()] == ["w", "b"]
    assert [str(i.blob) for i in model.GetOptimizationParamInfo([b])] == ["b"]
    assert summarize(model.net)[3:] == [
        ("ConstantFill", ["loss"], ["loss_autogen_grad"], [("value", 1.0)]),
        ("ReluGradient", ["rb", "loss_autogen_grad"], ["b_grad"], [], {"grad": True}),
        ("ReluGradient", ["rw", "loss_autogen_grad"], ["w_grad"], [], {"grad": True}),
    ]
    with pytest.raises(RuntimeError, match="cannot run AddGradientOperators twice"):
        model.AddGradientOperators(["loss"])


def test_add_gradient_operators_refuses_duplicate_params():
    model = relu_model()
    model.AddParameter(model.params[0])
    with pytest.raises(AssertionError, match="Duplicate params"):
        model.AddGradientOperators(["loss"])


def test_params_without_gradient_and_added_by_hand():
    model = relu_model()
    unused = model.param_init_net.ConstantFill([], "unused", shape=[1])
    model.AddParameter(unused)  # Caffe2 scripts register hand-made params this way
    by_hand = model.param_init_net.ConstantFill([], "by_hand", shape=[3])
    model.AddParameter(by_hand)
    model.net.Relu(by_hand, "rh")
    model.AddGradientOperators({"loss": None, "rh": None})
    assert [str(p) for p in model.param_to_grad] == ["w", "b", "by_hand"]
    info = model.get_param_info(by_hand)  # made for it by AddGradientOperators
    assert info.param_id is None and info.grad == "by_hand_grad" and info.shape is None


# ----------------------------------------------------------------------------- optimizer ctx

def test_use_optimizer_records_optimizers_by_tag():
    model = new_model()
    weight_optim, bias_optim, default_optim = object(), object(), object()
    with UseOptimizer({"WEIGHT": weight_optim, "BIAS": bias_optim}):
        brew.fc(model, "x", "a", 2, 2)
        with UseOptimizer(default_optim):
            brew.fc(model, "x", "b", 2, 2)
            brew.spatial_bn(model, "x", "bn", 2, is_test=True)
    brew.fc(model, "x", "c", 2, 2)
    got = {str(p): model.get_param_info(p).optimizer for p in model.params}
    assert got == {"a_w": weight_optim, "a_b": bias_optim, "b_w": weight_optim,
                   "b_b": bias_optim, "bn_s": weight_optim, "bn_b": bias_optim,
                   "c_w": None, "c_b": None}
    assert model.get_param_info(model.GetComputedParams()[0]).optimizer is default_optim
    info = model.get_param_info(model.params[0])
    with pytest.raises(AssertionError, match="already been set"):
        info.optimizer = default_optim


# ----------------------------------------------------------------------------- whole nets

def test_extract_predictor_net():
    model = new_model("ex")
    model.net.AddExternalInput("data")
    model.net.Copy("raw", "data2")
    fc = brew.fc(model, "data", "fc", 4, 3)
    relu = brew.relu(model, fc, "r")
    drop = brew.dropout(model, relu, "d", is_test=True)
    model.net.Print(drop, [])
    softmax = brew.softmax(model, drop, "sm")
    model.net.AddExternalOutput(softmax)
    model.LabelCrossEntropy([softmax, "label"], "xent")
    cpu = core.DeviceOption(caffe2_pb2.CPU, 0)
    predict, params = model_helper.ExtractPredictorNet(
        model.net.Proto(), ["data"], ["sm"], device=cpu,
        renames={"fc": "fc_renamed", "sm": "prob"})
    dev = {"device": (0, 0, [])}
    hints = [("order", "NCHW"), ("cudnn_exhaustive_search", 0)]
    assert predict.Name().startswith(model.net.Name() + "_predict")
    assert summarize(predict) == [
        ("FC", ["data", "fc_w", "fc_b"], ["fc_renamed"],
         [("order", "NCHW"), ("use_cudnn", 1), ("cudnn_exhaustive_search", 0)], dev),
        ("Relu", ["fc_renamed"], ["r"], hints, dict(dev, engine="CUDNN")),
        ("Dropout", ["r"], ["d", "_d_mask"], hints + [("is_test", 1)],
         dict(dev, engine="CUDNN")),
        ("Print", ["d"], [], [], dev),
        ("Softmax", ["d"], ["prob"], hints, dict(dev, engine="CUDNN")),
    ]
    # Caffe2 listed these from a set (any order); c2compile keeps first-use order
    assert list(predict.Proto().external_input) == ["data", "fc_w", "fc_b"]
    assert list(predict.Proto().external_output) == ["prob"]
    assert sorted(params) == ["fc_b", "fc_w"]
    # Caffe2 also moved the training net's own ops to `device`; c2compile copies them
    assert not model.net.Proto().op[1].HasField("device_option")

    train = new_model("ex_train")
    brew.dropout(train, "x", "y", is_test=False)
    with pytest.raises(Exception, match="is_test=0"):
        model_helper.ExtractPredictorNet(train.net.Proto(), ["x"], ["y"])
    with pytest.raises(Exception, match="No ops with input"):
        model_helper.ExtractPredictorNet(train.net.Proto(), ["zz"], ["y"])
    with pytest.raises(Exception, match="No ops with output"):
        model_helper.ExtractPredictorNet(train.net.Proto(), ["x"], ["zz"])


def test_complete_net_round_trip():
    model = new_model("cn")
    model.net.Copy("raw", "data2")
    brew.fc(model, "data", "fc", 4, 3)
    complete = model.GetCompleteNet()
    assert complete.Name().startswith(model.name + "_complete_net")
    assert [(op.type, op.debug_info) for op in complete.Proto().op] == [
        ("XavierFill", "/param_init_net"), ("ConstantFill", "/param_init_net"),
        ("Copy", ""), ("FC", "")]
    assert list(complete.Proto().external_input) == ["raw", "data"]
    model.ConstructInitTrainNetfromNet(complete)
    assert model.param_init_net.Name() == complete.Name() + "/generated_param_init_net"
    assert [op.type for op in model.param_init_net.Proto().op] == ["XavierFill",
                                                                    "ConstantFill"]
    assert list(model.param_init_net.Proto().external_output) == ["fc_w", "fc_b"]
    assert [op.type for op in model.net.Proto().op] == ["Copy", "FC"]
    assert list(model.net.Proto().external_input) == ["raw", "data", "fc_w", "fc_b"]


def test_parameter_info_checks_its_blob():
    with pytest.raises(TypeError):
        parameter_info.ParameterInfo(param_id=0, param="w")
    info = ParameterInfo(param_id=0, param=core.BlobReference("w"), shape=[2, 3], length=0)
    assert (info.size, info.length, info.name) == (6, 1, "w")


# ----------------------------------------------------------------------------- compat

def test_compat_serves_the_training_modules():
    code = textwrap.dedent("""
        import c2compile.compat
        from caffe2.python import brew, model_helper, optimizer, core
        from caffe2.python.optimizer_context import UseOptimizer
        from caffe2.python.modeling.initializers import Initializer
        from caffe2.python.modeling.parameter_info import ParameterTags
        from caffe2.python.helpers.fc import fc
        import caffe2.python.helpers.conv
        import c2compile.brew, c2compile.model_helper, c2compile.optimizer
        import c2compile.modeling.initializers, c2compile.helpers.fc
        assert brew is c2compile.brew and model_helper is c2compile.model_helper
        assert optimizer is c2compile.optimizer
        assert Initializer is c2compile.modeling.initializers.Initializer
        assert fc is c2compile.helpers.fc.fc
        assert caffe2.python.helpers.conv.conv is c2compile.helpers.conv.conv
        m = model_helper.ModelHelper(name="compat_model")
        brew.fc(m, "x", "y", 2, 3)
        assert [str(p) for p in m.params] == ["y_w", "y_b"]
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_import_c2compile_does_not_import_the_training_modules():
    code = ("import sys, c2compile, c2compile.core, c2compile.workspace\n"
            "print(sorted(m for m in sys.modules if m.startswith(('c2compile.brew', "
            "'c2compile.model_helper', 'c2compile.optimizer', 'c2compile.helpers', "
            "'c2compile.modeling'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
