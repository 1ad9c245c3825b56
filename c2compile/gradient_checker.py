"""Caffe2's `gradient_checker`: an op's (or net's) analytic gradient vs finite differences.

The numeric side is reusable on its own:

* `numeric_gradient(loss, x, stepsize)`: central differences of any scalar function of an array;
* `GradientChecker.EstimateGradient(op, inputs, input_to_check, outputs_with_grads)`: the
  finite-difference gradient of Caffe2's check loss (half the sum of squares of the chosen
  outputs) with respect to one input of one op, using forward runs only;
* `NetGradientChecker.EstimateGradient(...)`: the same for a net.

The analytic side runs the gradient ops of each op's rule (`core.GradientRegistry`), or of
`Net.AddGradientOperators` for nets.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from c2compile import core, workspace
from c2compile.proto import caffe2_pb2


def getGradientForOp(op):
    """(gradient OperatorDefs, [gradient blob of each input]) of `op`, as Caffe2 returns
    them, with each output's gradient named `<output>_grad`."""
    return core.GradientRegistry.GetGradientForOp(op, [s + "_grad" for s in op.output])


# ----------------------------------------------------------------------------- finite differences

def numeric_gradient(loss: Callable[[np.ndarray], float], x: np.ndarray, stepsize: float,
                     indices=None) -> np.ndarray:
    """d loss / d x by central differences, (loss(x + h e_i) - loss(x - h e_i)) / 2h.

    `loss` takes an array shaped like `x` (a perturbed copy: `x` itself is never changed)
    and returns a scalar. `indices` (flat) limits which elements are estimated; the others
    are 0. The result has x's shape, in float64.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fc":
        raise TypeError(f"finite differences need a floating-point input, got {x.dtype}")
    grad = np.zeros(x.shape, dtype=np.float64)
    work = x.copy()
    for i in (range(x.size) if indices is None else indices):
        orig = work.flat[i]
        work.flat[i] = orig + stepsize
        pos = float(loss(work.copy()))
        work.flat[i] = orig - stepsize
        neg = float(loss(work.copy()))
        work.flat[i] = orig
        grad.flat[i] = (pos - neg) / (2 * stepsize)
    return grad


def half_sum_of_squares(arrays) -> float:
    """Caffe2's check loss: sum over the outputs with gradients of sum(y ** 2) / 2."""
    return 0.5 * sum(float(np.square(np.asarray(a), dtype=np.float64).sum()) for a in arrays)


def _assert_close(value1, value2, threshold, err_msg=""):
    np.testing.assert_allclose(value1, value2, atol=threshold, rtol=threshold, err_msg=err_msg)
    delta = np.abs(np.asarray(value1, np.float64) - np.asarray(value2, np.float64)).flatten()
    return (float(np.mean(delta)), float(np.max(delta))) if delta.size else (0.0, 0.0)


# ----------------------------------------------------------------------------- one op

class GradientChecker:
    """Caffe2's GradientChecker(stepsize, threshold, device_option, workspace_name, ...).

    It works in its own workspace (`workspace_name`), which it resets and leaves on exit.
    """

    def __init__(self, stepsize, threshold, device_option=None, workspace_name="gradient_check",
                 input_device_options=None):
        self._stepsize = stepsize
        self._threshold = threshold
        self._device_option = device_option or caffe2_pb2.DeviceOption()
        self._workspace_name = workspace_name
        self._input_device_options = input_device_options or {}

    # -- workspace handling
    def _enter(self):
        old = workspace.CurrentWorkspace()
        if self._workspace_name != old:
            workspace.SwitchWorkspace(self._workspace_name, True)
        return old

    def _leave(self, old):
        if self._workspace_name != old:
            # The checker's intermediate blobs go; an empty workspace costs nothing.
            workspace.ResetWorkspace()
            workspace.SwitchWorkspace(old)

    def _feed(self, op, inputs, input_device_options):
        if len(inputs) > len(op.input):
            raise ValueError(f"{op.type}: got {len(inputs)} inputs for the op's "
                             f"{len(op.input)} input blobs {list(op.input)}")
        for name, arr in zip(op.input, inputs):
            workspace.FeedBlob(name, arr, input_device_options.get(name, self._device_option))

    def _forward_loss(self, op, inputs, outputs_with_grads, input_device_options):
        self._feed(op, inputs, input_device_options)
        workspace.RunOperatorOnce(op)
        outs = [workspace.FetchBlob(op.output[i]) for i in outputs_with_grads]
        return half_sum_of_squares(outs), outs

    # -- Caffe2's API
    def GetLossAndGrad(self, op, grad_ops, inputs, input_names, input_to_check, grad_name,
                       outputs_with_grads):
        """Run op and its gradient ops; (check loss, gradient blob `grad_name`)."""
        for name, arr in zip(input_names, inputs):
            workspace.FeedBlob(name, arr,
                               self._input_device_options.get(name, self._device_option))
        workspace.RunOperatorOnce(op)
        loss = 0.0
        for idx in outputs_with_grads:
            name = op.output[idx]
            arr = workspace.FetchBlob(name)
            loss += float(np.square(arr, dtype=np.float64).sum())
            workspace.FeedBlob(name + "_grad", arr, self._device_option)
        workspace.RunOperatorsOnce(grad_ops)
        if hasattr(grad_name, "indices") and hasattr(grad_name, "values"):
            # A sparse (GradientSlice) gradient, made dense to compare with the estimate.
            x = np.asarray(inputs[input_to_check])
            grad = np.zeros_like(x)
            idx = np.asarray(workspace.FetchBlob(str(grad_name.indices)))
            vals = np.asarray(workspace.FetchBlob(str(grad_name.values)))
            np.add.at(grad, idx, vals)
        else:
            grad = workspace.FetchBlob(str(grad_name))
        return loss / 2.0, grad

    def EstimateGradient(self, op, inputs, input_to_check, outputs_with_grads,
                         input_device_options=None) -> np.ndarray:
        """Finite-difference gradient of the check loss w.r.t. input `input_to_check`.

        Uses forward runs of `op` only, so it works for every op with a reference. Returns an
        array shaped like that input, in the input's dtype.
        """
        op = copy.deepcopy(op)
        op.device_option.CopyFrom(self._device_option)
        input_device_options = input_device_options or self._input_device_options
        inputs = [np.array(a) for a in inputs]
        old = self._enter()
        try:
            def loss(value):
                args = list(inputs)
                args[input_to_check] = value
                return self._forward_loss(op, args, outputs_with_grads, input_device_options)[0]
            est = numeric_gradient(loss, inputs[input_to_check], self._stepsize)
        finally:
            self._leave(old)
        return est.astype(inputs[input_to_check].dtype)

    def CheckSimple(self, op, inputs, input_to_check, outputs_with_grads, grad_ops=None,
                    input_device_options=None, ensure_outputs_are_inferred=False):
        """Check op's gradient w.r.t. input `input_to_check` against finite differences of
        half the sum of squares of outputs `outputs_with_grads`.

        Returns (passed, analytic gradient, estimated gradient) as Caffe2 does. `grad_ops`
        defaults to the op's gradient rule; when given, the gradient of input X is read from
        blob "X_grad".
        """
        op = copy.deepcopy(op)
        op.device_option.CopyFrom(self._device_option)
        if grad_ops is None:
            grad_ops, g_input = getGradientForOp(op)
            grad_name = g_input[input_to_check]
        else:
            grad_name = op.input[input_to_check] + "_grad"
        input_device_options = input_device_options or self._input_device_options
        inputs = [np.array(a) for a in inputs]
        old = self._enter()
        try:
            self._feed(op, inputs, input_device_options)
            _, grad = self.GetLossAndGrad(op, grad_ops, inputs, op.input, input_to_check,
                                          grad_name, outputs_with_grads)
            if ensure_outputs_are_inferred:
                from c2compile.test_util import check_inferred
                for gop in grad_ops:
                    vals = [workspace.FetchBlob(n) for n in gop.input]
                    outs = [workspace.FetchBlob(n) for n in gop.output]
                    problems = check_inferred(gop, vals, outs, ensure=True)
                    if problems:
                        raise AssertionError("; ".join(problems))
        finally:
            self._leave(old)
        grad = np.asarray(grad)
        estimate = self.EstimateGradient(op, inputs, input_to_check, outputs_with_grads,
                                         input_device_options)
        if estimate.shape != grad.shape:
            raise AssertionError(f"gradient of {op.type} input '{op.input[input_to_check]}': "
                                 f"analytic shape {grad.shape}, estimated {estimate.shape}")
        fail = ~np.isclose(grad, estimate, atol=self._threshold, rtol=self._threshold)
        if np.any(fail):
            idx = np.flatnonzero(fail)
            print(f"Gradient check of {op.type} input '{op.input[input_to_check]}' failed. "
                  "[idx, grad, grad_estimate] are:")
            print(np.vstack([idx, grad.flat[idx], estimate.flat[idx]]).T)
        return not np.any(fail), grad, estimate


# ----------------------------------------------------------------------------- nets

def _net_name(net) -> str:
    return net.Name() if hasattr(net, "Name") else getattr(net, "name", "")


def _get_grad(net, outputs, outputs_with_grad, input_values, inputs_with_grads):
    grad_net = net.Clone(_net_name(net) + "_copy")
    # The gradient of sum(output) for outputs of any shape: ones, given explicitly (the
    # implicit form refuses non-scalar losses).
    ones = {}
    for o in outputs_with_grad:
        ones[o] = grad_net.ConstantFill([o], [str(o) + "_autogen_grad"], value=1.0)
    grad_map = grad_net.AddGradientOperators(ones)
    for name, value in (input_values or {}).items():
        workspace.FeedBlob(name, value)
    for name in inputs_with_grads:
        if name not in grad_map:
            raise AssertionError(f"{name} has no gradient, cannot check net gradient")
    workspace.RunNetOnce(grad_net)
    forward = [(o, workspace.FetchBlob(o)) for o in outputs]
    grads = {}
    for name in inputs_with_grads:
        g = grad_map[name]
        if hasattr(g, "indices") and hasattr(g, "values"):
            dense = np.zeros_like(np.asarray(input_values[name]))
            np.add.at(dense, np.asarray(workspace.FetchBlob(str(g.indices))),
                      np.asarray(workspace.FetchBlob(str(g.values))))
            grads[name] = dense
        else:
            grads[name] = workspace.FetchBlob(str(g))
    return forward, grads, grad_net


def _write_net_images(nets, prefix: str) -> None:
    """PREFIX<i><net name>.png in the current directory for each net, as Caffe2 wrote them
    (drawn with Graphviz when `dot` is on PATH, else with matplotlib)."""
    from c2compile import net_drawer
    for i, net in enumerate(nets):
        net_drawer.write_png(net, f"{prefix}{i}{_net_name(net)}.png")


class NetGradientChecker:
    @staticmethod
    def EstimateGradient(net, outputs_with_grad, input_values, input_to_check,
                         step_size=0.0001) -> np.ndarray:
        """Finite differences of sum(sum(output) for output in outputs_with_grad) w.r.t.
        `input_to_check`, running the forward net only (works today)."""
        def loss(value):
            for name, v in input_values.items():
                workspace.FeedBlob(name, value if name == input_to_check else v)
            workspace.RunNetOnce(net)
            return sum(float(np.asarray(workspace.FetchBlob(str(o)), np.float64).sum())
                       for o in outputs_with_grad)
        return numeric_gradient(loss, np.asarray(input_values[input_to_check]), step_size)

    @staticmethod
    def Check(net, outputs_with_grad, input_values, input_to_check, step_size=0.0001,
              threshold=0.05, print_net=True):
        _, grads, _ = _get_grad(net, [], outputs_with_grad, input_values, [input_to_check])
        estimate = NetGradientChecker.EstimateGradient(net, outputs_with_grad, input_values,
                                                       input_to_check, step_size)
        err_msg = f"Error in gradient check for net_copy {_net_name(net)}"
        if print_net and hasattr(net, "Proto"):
            err_msg += f": {net.Proto()}"
        return _assert_close(grads[input_to_check], estimate, threshold, err_msg)

    @staticmethod
    def CompareNets(nets, outputs, outputs_with_grad_ids, inputs_with_grads, input_values=None,
                    threshold=0.0000001, print_net_images=False):
        if print_net_images:
            _write_net_images(nets, "caffe2_net_forward_")
        results = [_get_grad(net, net_outputs, [net_outputs[i] for i in outputs_with_grad_ids],
                             input_values, inputs_with_grads)
                   for net, net_outputs in zip(nets, outputs)]
        if print_net_images:
            _write_net_images([grad_net for _, _, grad_net in results], "caffe2_net_")
        first_results, first_grads, _ = results[0]
        for net_results, net_grads, _ in results[1:]:
            assert len(net_results) == len(first_results)
            for idx, ((b1, v1), (b2, v2)) in enumerate(zip(first_results, net_results)):
                _assert_close(v1, v2, threshold,
                              err_msg=f"Different forward pass results for output id {idx}. "
                                      f"Corresponding output blobs: {b1} and {b2}")
            assert net_grads.keys() == first_grads.keys()
            for blob, value in net_grads.items():
                _assert_close(first_grads[blob], value, threshold,
                              err_msg=f"Different gradients for input {blob}")
