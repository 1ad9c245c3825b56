"""The "Python" and "PythonGradient" ops: call a user's Python function on blobs.

`core.Net.Python(f)` registers `f` (c2compile/python_op.py) and adds a "Python" op naming it
by its `token` argument, or carrying a pickled `(func, args, kwargs)` builder. When the op
runs, `f(inputs, outputs)` gets one `TensorCPU` per blob, with Caffe2's TensorCPU API:
`.data` (numpy view), `.shape`, `.reshape(dims)`, `.feed(array)`, `.init(dims, data_type)`,
`.fetch()`; with `pass_workspace` the workspace is the third argument. Whatever the function
left in the outputs becomes the output blobs. These ops never compile (host_only).
"""
from __future__ import annotations

import numpy as np

from c2compile import dtypes, python_op
from c2compile.errors import ArgumentError, UserFunctionError
from c2compile.ops.schema import INF, Arg, TensorType, op

_ARGS = [
    Arg("token", "str", None, "registry key of the function (core.Net.Python sets it)"),
    Arg("pickled_builder", "bytes", None, "pickled (func, args, kwargs) that builds f"),
    Arg("pickled_grad_builder", "bytes", None, "the same for the gradient function"),
    Arg("pass_workspace", "bool", False, "builder form: pass the workspace to f"),
    Arg("grad_output_indices", "ints", [], "outputs of f that have gradients (all if empty)"),
    Arg("grad_input_indices", "ints", [], "inputs of f that get gradients (all if empty)"),
]


class TensorCPU:
    """One blob as a Python op's function sees it (Caffe2's `TensorCPU`).

    A tensor nobody has written yet is a float32 tensor of shape (0,), as in Caffe2.
    Inputs are read-only views: c2compile's ops never modify their inputs in place.
    """

    def __init__(self, array: np.ndarray | None = None, readonly: bool = False):
        self._array = array
        self._readonly = readonly

    def _get(self) -> np.ndarray:
        if self._array is None:
            self._array = np.zeros((0,), np.float32)
        return self._array

    @property
    def data(self) -> np.ndarray:
        arr = self._get()
        if self._readonly and arr.flags.writeable:
            arr = arr.view()
            arr.flags.writeable = False
        return arr

    @property
    def shape(self) -> tuple:
        return tuple(self._get().shape)

    @property
    def _shape(self) -> list:
        return list(self._get().shape)

    def _check_writable(self) -> None:
        if self._readonly:
            raise RuntimeError("a Python op cannot modify its input tensors")

    def reshape(self, dims) -> None:
        """Resize to `dims`; the data is kept only when the element count is unchanged."""
        self._check_writable()
        dims = tuple(int(d) for d in dims)
        arr = self._get()
        if arr.size == int(np.prod(dims, dtype=np.int64)):
            self._array = arr.reshape(dims)
        else:
            self._array = np.zeros(dims, arr.dtype)

    _reshape = reshape

    def init(self, dims, caffe_type: int) -> None:
        """Make this a tensor of shape `dims` and Caffe2 DataType `caffe_type`."""
        self._check_writable()
        dtype = dtypes.to_numpy(caffe_type)
        if dtype == np.object_:
            raise RuntimeError("Cannot init tensor of this type. Use `feed` instead.")
        self._array = np.zeros(tuple(int(d) for d in dims), dtype)

    def feed(self, array) -> None:
        """Replace the tensor with a copy of the numpy array `array`."""
        self._check_writable()
        if not isinstance(array, np.ndarray):
            raise TypeError("TensorCPU.feed expects a numpy array, got "
                            f"{type(array).__name__}")
        self._array = dtypes.as_string_tensor(array.copy())

    def fetch(self) -> np.ndarray:
        return self._get().copy()


class _BlobView:
    def __init__(self, ws, name: str):
        self._ws, self._name = ws, name

    def fetch(self):
        return self._ws.fetch(self._name)

    def feed(self, value) -> bool:
        self._ws.feed(self._name, value)
        return True


class WorkspaceView:
    """The workspace handed to `f` with pass_workspace (Caffe2's `C.Workspace` subset)."""

    def __init__(self, ws):
        self._ws = ws

    @property
    def blobs(self) -> dict:
        return {name: _BlobView(self._ws, name) for name in self._ws.blobs}

    def has_blob(self, name: str) -> bool:
        return name in self._ws.blobs

    def fetch_blob(self, name: str):
        return self._ws.fetch(name)

    def feed_blob(self, name: str, value) -> bool:
        self._ws.feed(name, value)
        return True

    def create_blob(self, name: str) -> _BlobView:
        return _BlobView(self._ws, name)


def _function(ctx, gradient: bool):
    """(callable, pass_workspace) for this op; a builder is called once per bound op."""
    builder_arg = "pickled_grad_builder" if gradient else "pickled_builder"
    if ctx.has(builder_arg) and getattr(ctx.args, builder_arg):
        cache = "_python_grad_fn" if gradient else "_python_fn"
        if not hasattr(ctx, cache):
            setattr(ctx, cache, python_op.build_function(getattr(ctx.args, builder_arg)))
        return getattr(ctx, cache), bool(ctx.args.pass_workspace)
    if not ctx.has("token"):
        ctx.fail("a Python op needs a 'token' or a 'pickled_builder' argument",
                 cls=ArgumentError)
    try:
        entry = python_op.GetPythonOp(ctx.args.token)
    except KeyError as e:
        ctx.fail(e.args[0], cls=ArgumentError)
    fn = entry.grad_f if gradient else entry.f
    if fn is None:
        ctx.fail(f"no gradient function was registered for token '{ctx.args.token}'",
                 cls=ArgumentError)
    return fn, entry.pass_workspace


def _existing(ctx, name: str):
    """The output's current value (Caffe2 hands f the blob's existing tensor)."""
    ws = getattr(ctx, "workspace", None)
    value = getattr(ws, "blobs", {}).get(name) if ws is not None else None
    return value.copy() if isinstance(value, np.ndarray) else None


def _call(ctx, inputs, gradient: bool):
    fn, pass_workspace = _function(ctx, gradient)
    ins = []
    for name, value in zip(ctx.inputs, inputs):
        if not isinstance(value, np.ndarray):
            ctx.fail(f"input '{name}' is a {type(value).__name__}, not a tensor", blob=name)
        ins.append(TensorCPU(value, readonly=True))
    outs = [TensorCPU(_existing(ctx, name)) for name in ctx.outputs]
    try:
        if pass_workspace:
            fn(ins, outs, WorkspaceView(ctx.workspace))
        else:
            fn(ins, outs)
    except Exception as e:  # the user's own error: passed through unchanged, as in Caffe2
        raise UserFunctionError(e) from e
    return [o._get() for o in outs]


def _unknown(ctx, *ins):
    # What f writes is only known once it has run.
    return [TensorType(None, None)] * ctx.num_outputs


def _python_grad(g):
    """One PythonGradient op running the registered grad_f: it reads the forward inputs,
    outputs and the output gradients (those of `grad_output_indices`, default all) and
    writes the gradients of the inputs in `grad_input_indices` (default all), as Caffe2."""
    outs = g.args.grad_output_indices or range(g.num_outputs)
    ins = g.args.grad_input_indices or range(g.num_inputs)
    for arg, indices, n in (("grad_output_indices", outs, g.num_outputs),
                            ("grad_input_indices", ins, g.num_inputs)):
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            g.fail(f"{arg} {bad} out of range for {n} blobs")
    return [g.op("PythonGradient",
                 [g.I(i) for i in range(g.num_inputs)] + [g.O(i) for i in range(g.num_outputs)]
                 + [g.GO(i) for i in outs],
                 [g.GI(i) for i in ins])]


@op("Python", inputs=(0, INF), outputs=(0, INF), args=_ARGS, inplace="any",
    infer=_unknown, host_only=True, stateful=True, extra_args=True, grad=_python_grad)
def python(ctx, *inputs):
    """Run the registered Python function f(inputs, outputs[, workspace])."""
    return _call(ctx, inputs, gradient=False)


@op("PythonGradient", inputs=(0, INF), outputs=(0, INF), args=_ARGS, inplace="any",
    infer=_unknown, host_only=True, stateful=True, extra_args=True)
def python_gradient(ctx, *inputs):
    """Run the gradient function registered with the forward op's token."""
    return _call(ctx, inputs, gradient=True)
