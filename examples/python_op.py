"""Caffe2's "Python Op" tutorial, with only the import line changed.

    from caffe2.python import core, workspace   # Caffe2
    from c2compile import core, workspace       # c2compile

A Python function becomes an operator with `net.Python(f)`; with `grad_f` it has a
gradient that AddGradientOperators uses. Python ops never compile: they run between the
compiled parts of a net (`c2compile show --partition` lists them).
"""
import numpy as np

from c2compile import core, workspace


def f(inputs, outputs):
    outputs[0].feed(2 * inputs[0].data)


workspace.ResetWorkspace()
net = core.Net("tutorial")
net.Python(f)(["x"], ["y"])
workspace.FeedBlob("x", np.array([3.]))
workspace.RunNetOnce(net)
print(workspace.FetchBlob("y"))


# Reshaping the output before filling it.
def f_reshape(inputs, outputs):
    outputs[0].reshape(inputs[0].shape)
    outputs[0].data[...] = 2 * inputs[0].data


workspace.ResetWorkspace()
net = core.Net("tutorial")
net.Python(f_reshape)(["x"], ["y"])
workspace.FeedBlob("x", np.array([3.]))
workspace.RunNetOnce(net)
print(workspace.FetchBlob("y"))


# Passing arguments to the function with a builder tuple (func, args, kwargs).
def f_builder(s):
    def f(inputs, outputs):
        outputs[0].feed(s * inputs[0].data)
    return f


workspace.ResetWorkspace()
net = core.Net("tutorial")
net.Python((f_builder, (3,), {}))(["x"], ["y"])
workspace.FeedBlob("x", np.array([3.]))
workspace.RunNetOnce(net)
print(workspace.FetchBlob("y"))


# The workspace itself as a third argument.
def f_workspace(inputs, outputs, workspace):
    outputs[0].feed(workspace.fetch_blob("x") + 1)


workspace.ResetWorkspace()
net = core.Net("tutorial")
net.Python(f_workspace, pass_workspace=True)([], ["y"])
workspace.FeedBlob("x", np.array([3.]))
workspace.RunNetOnce(net)
print(workspace.FetchBlob("y"))


# A gradient: grad_f gets the forward inputs, outputs and output gradients, and fills the
# input gradients.
def grad_f(inputs, outputs):
    # inputs = [x, y, dy], outputs = [dx]
    outputs[0].reshape(inputs[0].shape)
    outputs[0].data[...] = inputs[2].data * 2


workspace.ResetWorkspace()
net = core.Net("tutorial")
net.Python(f, grad_f)(["x"], ["y"])
workspace.FeedBlob("x", np.array([3.]))
net.AddGradientOperators(["y"])
workspace.RunNetOnce(net)
print(workspace.FetchBlob("x_grad"))
