"""Run or shape-infer one op by type, for op tests: `run("Relu", [x])`.

Both go through the same binding (argument parsing, arity and in-place checks) and the
same executor entry as a real net. `run` also checks that the op's shape rule predicts
exactly the shapes and dtypes its reference returned.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from c2compile.ops.schema import TensorType, bind
from c2compile.runtime import reference


def make_op(op_type: str, inputs, outputs, device_option=None, **args):
    """An OperatorDef; `inputs`/`outputs` are a count (auto-named) or a list of names."""
    from c2compile import core
    in_names = [f"in{i}" for i in range(inputs)] if isinstance(inputs, int) else list(inputs)
    out_names = [f"out{i}" for i in range(outputs)] if isinstance(outputs, int) else list(outputs)
    return core.CreateOperator(op_type, in_names, out_names, device_option=device_option, **args)


def run(op_type: str, inputs: Sequence, outputs=1, device_option=None, check_infer=True,
        input_names=None, **args) -> list:
    """Outputs of op `op_type` on `inputs` (arrays, in order) with keyword `args`.

    `input_names`/`outputs` as lists of names make in-place forms (same name in and out).
    """
    proto = make_op(op_type, input_names or len(inputs), outputs, device_option, **args)
    op = bind(proto, 0)
    return reference.run_op(op, [np.asarray(x) if isinstance(x, (list, float, int)) else x
                                 for x in inputs], check_infer=check_infer)


def infer(op_type: str, types: Sequence[TensorType], outputs=1, **args) -> list[TensorType]:
    """The shape rule's answer for inputs of the given TensorTypes."""
    op = bind(make_op(op_type, len(types), outputs, **args), 0)
    return op.opdef.infer(op, *types)


def gradient_ops(op_type: str, inputs: int | Sequence[str], outputs=1, **args):
    """(forward OperatorDef, its gradient ops, input gradient names) as the pass builds them,
    with each output's gradient named `<output>_grad`."""
    from c2compile import core
    proto = make_op(op_type, inputs, outputs, **args)
    grad_ops, g_input = core.GradientRegistry.GetGradientForOp(
        proto, [o + "_grad" for o in proto.output])
    return proto, grad_ops, g_input


def run_gradient(op_type: str, inputs: Sequence, outputs=1, output_grads=None,
                 input_names=None, **args) -> tuple[list, list]:
    """(forward outputs, input gradients) of one op on the reference executor.

    The gradient of output k is `output_grads[k]` (default: a gradient of ones for every
    float output); an input that gets no gradient has None. Each gradient op's shape rule is
    checked against what its reference returned, as `run` does.
    """
    from types import SimpleNamespace
    names = input_names or [f"in{i}" for i in range(len(inputs))]
    proto, grad_ops, g_input = gradient_ops(op_type, names, outputs, **args)
    ws = SimpleNamespace(blobs={n: np.asarray(x) for n, x in zip(names, inputs)})
    reference.run_ops([bind(proto, 0)], ws)
    outs = [ws.blobs[o] for o in proto.output]
    if output_grads is None:
        output_grads = [np.ones_like(y) if np.issubdtype(y.dtype, np.floating) else None
                        for y in outs]
    for o, dy in zip(proto.output, output_grads):
        if dy is not None:
            ws.blobs[o + "_grad"] = np.asarray(dy)
    reference.run_ops([bind(g, i + 1) for i, g in enumerate(grad_ops)], ws)
    return outs, [None if g is None else ws.blobs[str(g)] for g in g_input]


def check_gradient(op_type: str, inputs: Sequence, outputs=1, *, torch_fn=None,
                   wrt=None, output_grads=None, stepsize=1e-2, fd_tol=2e-2, rtol=1e-4,
                   atol=1e-5, input_names=None, rng=None, **args) -> list:
    """Check op `op_type`'s analytic input gradients two ways, on the reference executor.

    * against PyTorch autograd, when `torch_fn(*tensors) -> output or tuple of outputs` is
      given: float64 tensors of the inputs, backward with the same output gradients, compared
      to `rtol`/`atol`;
    * against central finite differences of sum_k <output_k, output_grad_k> (float64 sums of
      the float32 forward) with step `stepsize`, to `fd_tol` relative to the largest gradient.

    `wrt` lists the input indices to check (default: every float input that gets a
    gradient). Output gradients default to random normals (seeded). Returns the gradients.
    """
    from c2compile.gradient_checker import numeric_gradient
    rng = rng if rng is not None else np.random.default_rng(0)
    inputs = [np.asarray(x) for x in inputs]
    outs = run(op_type, inputs, outputs, input_names=input_names, **args)
    if output_grads is None:
        output_grads = [rng.standard_normal(y.shape).astype(y.dtype)
                        if np.issubdtype(y.dtype, np.floating) else None for y in outs]
    _, grads = run_gradient(op_type, inputs, outputs, output_grads, input_names, **args)
    if wrt is None:
        wrt = [i for i, (x, g) in enumerate(zip(inputs, grads))
               if g is not None and np.issubdtype(x.dtype, np.floating)]
    for i in wrt:
        assert grads[i] is not None, f"{op_type}: input {i} got no gradient"
        assert grads[i].shape == inputs[i].shape, \
            f"{op_type}: gradient of input {i} has shape {grads[i].shape}, input {inputs[i].shape}"
        assert grads[i].dtype == inputs[i].dtype, \
            f"{op_type}: gradient of input {i} is {grads[i].dtype}, input {inputs[i].dtype}"
    if torch_fn is not None:
        import torch
        ts = [torch.tensor(x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x,
                           requires_grad=(i in wrt)) for i, x in enumerate(inputs)]
        t_outs = torch_fn(*ts)
        t_outs = list(t_outs) if isinstance(t_outs, (tuple, list)) else [t_outs]
        pairs = [(t, torch.tensor(dy.astype(np.float64))) for t, dy in zip(t_outs, output_grads)
                 if dy is not None and t.requires_grad]
        expect = torch.autograd.grad([t for t, _ in pairs], [ts[i] for i in wrt],
                                     [d for _, d in pairs], allow_unused=True)
        for i, e in zip(wrt, expect):
            e = np.zeros(inputs[i].shape) if e is None else e.detach().numpy()
            np.testing.assert_allclose(grads[i], e, rtol=rtol, atol=atol,
                                       err_msg=f"{op_type}: gradient of input {i} vs torch")

    def loss(i):
        def f(value):
            xs = list(inputs)
            xs[i] = value.astype(inputs[i].dtype)
            ys = run(op_type, xs, outputs, input_names=input_names, check_infer=False, **args)
            return sum(float(np.sum(np.asarray(y, np.float64) * dy))
                       for y, dy in zip(ys, output_grads) if dy is not None)
        return f
    for i in wrt:
        est = numeric_gradient(loss(i), inputs[i].astype(np.float64), stepsize)
        scale = max(1.0, float(np.abs(est).max()))
        np.testing.assert_allclose(grads[i], est, rtol=0, atol=fd_tol * scale,
                                   err_msg=f"{op_type}: gradient of input {i} vs finite "
                                           "differences")
    return grads
