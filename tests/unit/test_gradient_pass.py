"""The backward pass (passes/gradients.py) behind Net.AddGradientOperators.

Every expected op list here is what real Caffe2 1.10.2's AddGradientOperators emits for the
same net (recorded with the PyTorch 1.10.2 build of Caffe2), so nets, blob names and
checkpoints carry over. Where c2compile refuses what Caffe2 allowed, the test says why.
"""
import numpy as np
import pytest

from c2compile import core, workspace
from c2compile.errors import GradientError


def ops_of(net):
    return [(op.type, list(op.input), list(op.output)) for op in net.Proto().op]


def grad_map(m):
    return sorted((str(k), str(v)) for k, v in m.items())


def test_partial_gradients_of_a_blob_used_twice_are_summed():
    net = core.Net("a")
    net.Relu("x", "y")
    net.Relu("y", "z")
    net.Sum(["y", "z"], "w")
    m = net.AddGradientOperators(["w"])
    assert grad_map(m) == [("w", "w_autogen_grad"), ("x", "x_grad"), ("y", "y_grad"),
                           ("z", "w_autogen_grad")]
    assert ops_of(net)[3:] == [
        ("ConstantFill", ["w"], ["w_autogen_grad"]),
        ("ReluGradient", ["z", "w_autogen_grad"], ["y_grad"]),
        ("Sum", ["y_grad", "w_autogen_grad"], ["y_grad"]),
        ("ReluGradient", ["y", "y_grad"], ["x_grad"]),
    ]
    fill = net.Proto().op[3]
    assert [(a.name, a.f) for a in fill.arg] == [("value", 1.0)]
    assert all(op.is_gradient_op for op in net.Proto().op[4:5])
    x = np.array([-1.0, 2.0, 3.0], np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)
    np.testing.assert_array_equal(workspace.FetchBlob("x_grad"), [0, 2, 2])


def test_three_uses_rename_all_but_the_first_partial():
    net = core.Net("f")
    for b in "abc":
        net.Relu("x", b)
    net.Sum(["a", "b", "c"], "s")
    net.AddGradientOperators(["s"])
    assert ops_of(net)[5:] == [
        ("ReluGradient", ["c", "s_autogen_grad"], ["x_grad"]),
        ("ReluGradient", ["b", "s_autogen_grad"], ["_x_grad_autosplit_0"]),
        ("ReluGradient", ["a", "s_autogen_grad"], ["_x_grad_autosplit_1"]),
        ("Sum", ["x_grad", "_x_grad_autosplit_0", "_x_grad_autosplit_1"], ["x_grad"]),
    ]


def test_the_same_blob_twice_in_one_op():
    net = core.Net("g")
    net.Mul(["x", "x"], "y")
    m = net.AddGradientOperators(["y"])
    assert grad_map(m) == [("x", "x_grad"), ("y", "y_autogen_grad")]
    assert ops_of(net)[2:] == [
        ("MulGradient", ["y_autogen_grad", "x", "x"], ["x_grad", "_x_grad_autosplit_0"]),
        ("Sum", ["x_grad", "_x_grad_autosplit_0"], ["x_grad"]),
    ]
    x = np.array([1.5, -2.0], np.float32)
    workspace.FeedBlob("x", x)
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("x_grad"), 2 * x)


def test_in_place_forward_op():
    net = core.Net("b")
    net.Scale("x", "y", scale=3.0)
    net.Relu("y", "y")
    net.Scale("y", "z", scale=2.0)
    m = net.AddGradientOperators(["z"])
    assert grad_map(m) == [("x", "x_grad"), ("y", "y_grad"), ("z", "z_autogen_grad")]
    assert ops_of(net)[3:] == [
        ("ConstantFill", ["z"], ["z_autogen_grad"]),
        ("Scale", ["z_autogen_grad"], ["y_grad"]),
        ("ReluGradient", ["y", "y_grad"], ["y_grad"]),
        ("Scale", ["y_grad"], ["x_grad"]),
    ]
    workspace.FeedBlob("x", np.array([-1.0, 1.0], np.float32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("x_grad"), [0.0, 6.0])


def test_overwritten_blob_a_gradient_needs_is_an_error_naming_the_op():
    # Caffe2: "Gradient operator needs output "y" at version 0, but currently we have
    # version 1" -- the first Relu's gradient needs the y that the in-place Relu replaced.
    net = core.Net("b2")
    net.Relu("x", "y")
    net.Relu("y", "y")
    net.Scale("y", "z", scale=2.0)
    with pytest.raises(GradientError, match="needs output 'y'") as e:
        net.AddGradientOperators(["z"])
    assert e.value.op_type == "Relu" and e.value.index == 0 and e.value.blob == "y"


def test_stop_gradient_blocks_only_its_path():
    net = core.Net("c")
    net.StopGradient("x", "xs")
    net.Relu("xs", "y")
    net.Relu("x", "u")
    net.Sum(["y", "u"], "w")
    m = net.AddGradientOperators(["w"])
    assert grad_map(m) == [("u", "w_autogen_grad"), ("w", "w_autogen_grad"),
                           ("x", "x_grad"), ("xs", "xs_grad"), ("y", "w_autogen_grad")]
    assert ops_of(net)[5:] == [
        ("ReluGradient", ["u", "w_autogen_grad"], ["x_grad"]),
        ("ReluGradient", ["y", "w_autogen_grad"], ["xs_grad"]),
    ]


def test_ops_off_the_loss_path_get_no_gradient_ops():
    net = core.Net("d")
    net.Relu("x", "y")
    net.Relu("x", "y2")   # y2 does not reach the loss: its op is skipped
    net.Relu("y", "z")
    m = net.AddGradientOperators(["z"])
    assert "y2" not in {str(k) for k in m}
    assert ops_of(net)[3:] == [
        ("ConstantFill", ["z"], ["z_autogen_grad"]),
        ("ReluGradient", ["z", "z_autogen_grad"], ["y_grad"]),
        ("ReluGradient", ["y", "y_grad"], ["x_grad"]),
    ]


def test_explicit_gradient_blob():
    net = core.Net("e")
    net.Relu("x", "y")
    m = net.AddGradientOperators({"y": "my_grad"})
    assert grad_map(m) == [("x", "x_grad"), ("y", "my_grad")]
    assert ops_of(net)[1:] == [("ReluGradient", ["y", "my_grad"], ["x_grad"])]


def test_blob_rewritten_by_a_later_op():
    net = core.Net("j")
    net.Relu("x", "y")
    net.Relu("y", "x")
    net.Relu("x", "z")
    net.AddGradientOperators(["z"])
    assert ops_of(net)[4:] == [
        ("ReluGradient", ["z", "z_autogen_grad"], ["x_grad"]),
        ("ReluGradient", ["x", "x_grad"], ["y_grad"]),
        ("ReluGradient", ["y", "y_grad"], ["x_grad"]),
    ]


def test_python_op_gradient_gets_inputs_outputs_and_output_gradients():
    seen = {}

    def f(inputs, outputs):
        outputs[0].feed(inputs[0].data * 2)

    def grad_f(inputs, outputs):
        seen["n"] = len(inputs)
        outputs[0].feed(inputs[2].data * 2)

    net = core.Net("h")
    net.Python(f, grad_f)(["x"], ["y"])
    m = net.AddGradientOperators(["y"])
    assert grad_map(m) == [("x", "x_grad"), ("y", "y_autogen_grad")]
    assert ops_of(net)[2:] == [("PythonGradient", ["x", "y", "y_autogen_grad"], ["x_grad"])]
    workspace.FeedBlob("x", np.array([3.0], np.float32))
    workspace.RunNetOnce(net)
    assert seen["n"] == 3
    np.testing.assert_array_equal(workspace.FetchBlob("x_grad"), [2.0])


def test_python_op_gradient_indices():
    net = core.Net("h2")
    net.Python(lambda i, o: None, lambda i, o: None, grad_output_indices=[1],
               grad_input_indices=[0])(["a", "b"], ["y0", "y1"])
    net.AddGradientOperators({"y1": "g1"})
    assert ops_of(net)[1:] == [("PythonGradient", ["a", "b", "y0", "y1", "g1"], ["a_grad"])]


def test_gradient_ops_copy_arguments_device_and_engine():
    dev = core.DeviceOption(0, random_seed=7)
    with core.DeviceScope(dev):
        net = core.Net("cp")
        net.LeakyRelu("x", "y", alpha=0.3, engine="SOME")
    net.AddGradientOperators({"y": "gy"})
    g = net.Proto().op[1]
    assert g.type == "LeakyReluGradient"
    assert [(a.name, round(a.f, 6)) for a in g.arg] == [("alpha", 0.3)]
    assert g.engine == "SOME" and g.device_option.random_seed == 7 and g.is_gradient_op


# ----------------------------------------------------------------------------- bad input

def test_loss_no_op_produces_is_an_error():
    # Caffe2 silently returned {nope: nope_autogen_grad} and added a fill of a missing blob.
    net = core.Net("i")
    net.Relu("x", "y")
    with pytest.raises(GradientError, match="no op of the net produces it") as e:
        net.AddGradientOperators(["nope"])
    assert e.value.blob == "nope"
    assert len(net.Proto().op) == 1  # the net is left as it was


def test_non_scalar_loss_without_gradient_is_an_error_when_its_shape_is_known():
    workspace.FeedBlob("x", np.ones((2, 3), np.float32))
    net = core.Net("ns")
    net.Relu("x", "y")
    with pytest.raises(GradientError, match=r"loss 'y' has shape \[2, 3\]") as e:
        net.AddGradientOperators(["y"])
    assert e.value.op_type == "Relu" and e.value.index == 0
    assert len(net.Proto().op) == 1
    # an explicit gradient, or a scalar loss, is fine
    net.AveragedLoss("y", "loss")
    net.AddGradientOperators(["loss"])


def test_op_without_gradient_rule_is_an_error_naming_it():
    net = core.Net("k")
    net.ArgMax("x", "y")
    net.Cast("y", "yf", to=core.DataType.FLOAT)
    with pytest.raises(GradientError, match="from_type") as e:
        net.AddGradientOperators({"yf": "g"})
    assert e.value.op_type == "Cast"
    net = core.Net("k2")
    net.ArgMax("x", "y")
    with pytest.raises(GradientError, match="ArgMax") as e:
        net.AddGradientOperators({"y": "g"})
    assert e.value.op_type == "ArgMax"


def test_missing_output_gradient_is_an_error_naming_the_op():
    # Python's gradient reads every output's gradient unless grad_output_indices says which.
    net = core.Net("m")
    net.Python(lambda i, o: None, lambda i, o: None)(["a"], ["y0", "y1"])
    with pytest.raises(GradientError, match="output 1 'y1'") as e:
        net.AddGradientOperators({"y0": "g0"})
    assert e.value.op_type == "Python"


def test_bad_ys_type():
    net = core.Net("t")
    net.Relu("x", "y")
    with pytest.raises(TypeError):
        net.AddGradientOperators("y")


def test_get_backward_pass_on_ops():
    op = core.CreateOperator("Relu", ["x"], ["y"])
    ops, m = core.GradientRegistry.GetBackwardPass([op], {"y": "gy"})
    assert [(o.type, list(o.input), list(o.output)) for o in ops] == [
        ("ReluGradient", ["y", "gy"], ["x_grad"])]
    assert grad_map(m) == [("x", "x_grad"), ("y", "gy")]


def test_python_registered_gradient_rule():
    @core.GradientRegistry.RegisterGradient("Shape")
    def shape_grad(op, g_output):
        return [core.CreateOperator("ConstantFill", [op.input[0]], [op.input[0] + "_grad"],
                                    value=0.0)], [op.input[0] + "_grad"]
    try:
        net = core.Net("pr")
        net.Shape("x", "s")
        m = net.AddGradientOperators({"s": "gs"})
        assert str(m["x"]) == "x_grad"
        assert ops_of(net)[1:] == [("ConstantFill", ["x"], ["x_grad"])]
    finally:
        core.GradientRegistry.gradient_registry_.pop("Shape")


def test_rule_that_rewrites_its_gradient_blob_sums_correctly_with_other_uses():
    # Sqrt's rule is Scale(dY -> X_grad), Div(X_grad, Y -> X_grad). Caffe2 counted both
    # writes as partials, renamed only the Div's output, and so summed Relu's partial into
    # the chain; here the whole chain is renamed and the gradient is right.
    net = core.Net("sq")
    net.Sqrt("x", "s")
    net.Relu("x", "r")
    net.Sum(["s", "r"], "y")
    net.AddGradientOperators({"y": "gy"})
    assert ops_of(net)[3:] == [
        ("ReluGradient", ["r", "gy"], ["x_grad"]),
        ("Scale", ["gy"], ["_x_grad_autosplit_0"]),
        ("Div", ["_x_grad_autosplit_0", "s"], ["_x_grad_autosplit_0"]),
        ("Sum", ["x_grad", "_x_grad_autosplit_0"], ["x_grad"]),
    ]
    x = np.array([0.25, 4.0], np.float32)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("gy", np.ones(2, np.float32))
    workspace.RunNetOnce(net)
    np.testing.assert_allclose(workspace.FetchBlob("x_grad"), 0.5 / np.sqrt(x) + 1, rtol=1e-6)
