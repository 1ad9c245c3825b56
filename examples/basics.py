"""Caffe2's "Basics: operators and nets" tutorial, with only the import line changed.

    from caffe2.python import core, workspace   # Caffe2
    from c2compile import core, workspace       # c2compile

Workspaces and blobs, operators run once, and a net created once and run many times
(RunNetOnce vs CreateNet + RunNet).
"""
import time

import numpy as np

from c2compile import core, workspace

# ---------------------------------------------------------------- workspaces and blobs
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
print("Workspace has blob 'X'? {}".format(workspace.HasBlob("X")))
X = np.random.randn(2, 3).astype(np.float32)
print("Generated X from numpy:\n{}".format(X))
workspace.FeedBlob("X", X)
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
print("Workspace has blob 'X'? {}".format(workspace.HasBlob("X")))
print("Fetched X:\n{}".format(workspace.FetchBlob("X")))
np.testing.assert_array_equal(X, workspace.FetchBlob("X"))

print("Current workspace: {}".format(workspace.CurrentWorkspace()))
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
# Switch the workspace. The second argument "True" means creating the workspace if it is
# missing.
workspace.SwitchWorkspace("gutentag", True)
print("Current workspace: {}".format(workspace.CurrentWorkspace()))
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
workspace.SwitchWorkspace("default")
print("Current workspace: {}".format(workspace.CurrentWorkspace()))
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
workspace.ResetWorkspace()
print("Current blobs in the workspace after reset: {}".format(workspace.Blobs()))

# ---------------------------------------------------------------- operators
op = core.CreateOperator(
    "Relu",  # The type of operator that we want to run
    ["X"],  # A list of input blobs by their names
    ["Y"],  # A list of output blobs by their names
)
print("Type of the created op is: {}".format(type(op)))
print("Content:\n")
print(str(op))
workspace.FeedBlob("X", np.random.randn(2, 3).astype(np.float32))
workspace.RunOperatorOnce(op)
print("Current blobs in the workspace: {}\n".format(workspace.Blobs()))
print("X:\n{}\n".format(workspace.FetchBlob("X")))
print("Y:\n{}\n".format(workspace.FetchBlob("Y")))
print("Expected:\n{}\n".format(np.maximum(workspace.FetchBlob("X"), 0)))
np.testing.assert_array_equal(workspace.FetchBlob("Y"), np.maximum(workspace.FetchBlob("X"), 0))

op = core.CreateOperator(
    "GaussianFill",
    [],  # GaussianFill does not need any parameters.
    ["Z"],
    shape=[100, 100],  # shape argument as a list of ints.
    mean=1.0,  # mean as a single float
    std=1.0,  # std as a single float
)
print("Content of op:\n")
print(str(op))
workspace.RunOperatorOnce(op)
temp = workspace.FetchBlob("Z")
hist, edges = np.histogram(temp.flatten(), bins=10)
print("Histogram of Z (mean {:.3f}, std {:.3f}):".format(temp.mean(), temp.std()))
for count, left in zip(hist, edges):
    print("  {:+.2f} {}".format(left, "#" * (int(count) // 40)))

# ---------------------------------------------------------------- nets
net = core.Net("my_first_net")
print("Current network proto:\n\n{}".format(net.Proto()))
X = net.GaussianFill([], ["X"], mean=0.0, std=1.0, shape=[2, 3], run_once=0)
print("New network proto:\n\n{}".format(net.Proto()))
print("Type of X is: {}".format(type(X)))
print("The blob name is: {}".format(str(X)))
W = net.GaussianFill([], ["W"], mean=0.0, std=1.0, shape=[5, 3], run_once=0)
b = net.ConstantFill([], ["b"], shape=[5, ], value=1.0, run_once=0)
Y = X.FC([W, b], ["Y"])
print("Current network proto:\n\n{}".format(net.Proto()))

workspace.ResetWorkspace()
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
workspace.RunNetOnce(net)
print("Blobs in the workspace after execution: {}".format(workspace.Blobs()))
for name in workspace.Blobs():
    print("{}:\n{}".format(name, workspace.FetchBlob(name)))
x, w, bias, y = (workspace.FetchBlob(n) for n in "XWbY")
np.testing.assert_allclose(y, x @ w.T + bias, rtol=1e-5)

workspace.ResetWorkspace()
print("Current blobs in the workspace: {}".format(workspace.Blobs()))
workspace.CreateNet(net)
workspace.RunNet(net.Proto().name)
print("Blobs in the workspace after execution: {}".format(workspace.Blobs()))
for name in workspace.Blobs():
    print("{}:\n{}".format(name, workspace.FetchBlob(name)))

# It is a lot faster to create a net once and run it many times than to run it once each time.
start = time.time()
for i in range(1000):
    workspace.RunNetOnce(net)
end = time.time()
print("Run time per RunNetOnce: {:.1f} us".format((end - start) * 1e3))

start = time.time()
for i in range(1000):
    workspace.RunNet(net.Proto().name)
end = time.time()
print("Run time per RunNet: {:.1f} us".format((end - start) * 1e3))
