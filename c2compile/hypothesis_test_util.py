"""Caffe2's `hypothesis_test_util` (`hu`): property-based op tests against c2compile.

Write an op test as in Caffe2:

    class TestRelu(hu.HypothesisTestCase):
        @given(X=hu.tensor(), **hu.gcs)
        def test_relu(self, X, gc, dc):
            op = core.CreateOperator("Relu", ["X"], ["Y"])
            self.assertReferenceChecks(gc, op, [X], lambda X: [np.maximum(X, 0)])
            self.assertDeviceChecks(dc, op, [X], [0])

* `assertReferenceChecks(gc, op, inputs, reference)` runs the op in a scratch workspace and
  compares each output with what `reference(*inputs)` returns; it also checks c2compile's shape
  rule for the op against the real outputs (a known shape or dtype that differs fails; with
  `ensure_outputs_are_inferred` an output whose shape the rule leaves unknown fails too).
* `assertDeviceChecks(dc, op, inputs, outputs_to_check)` runs the op on every device option
  and every backend present for it (`c2compile.device_checker`) and compares the outputs.
* `assertGradientChecks(gc, op, inputs, i, [outputs])` compares the op's gradient ops
  (its rule in c2compile/ops) with finite differences for input i.

Strategies (`tensor`, `tensors`, `lengths`, ...) and device options (`gcs`, `gcs_cpu_only`, ...)
are Caffe2's; `device_options` holds one DeviceOption per device type that has a backend here.

Hypothesis profiles "sandcastle", "dev" and "debug" are registered by `register_profiles()`,
called once on import; see its docstring for when it also loads one.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import os
import struct
import time

import hypothesis
import hypothesis.extra.numpy
import hypothesis.strategies as st
import numpy as np

from c2compile import core, device_checker, gradient_checker, test_util, workspace
from c2compile.proto import caffe2_pb2


def is_sandcastle() -> bool:
    return os.getenv("SANDCASTLE") == "1" or os.getenv("TW_JOB_USER") == "sandcastle"


def is_travis() -> bool:
    return "TRAVIS" in os.environ


def to_float32(x) -> float:
    """The float32 value nearest to `x`, as a Python float."""
    return struct.unpack("f", struct.pack("f", float(x)))[0]


# ----------------------------------------------------------------------------- hypothesis settings

def settings(*args, **kwargs) -> hypothesis.settings:
    """`hypothesis.settings` that accepts the arguments Caffe2's tests pass to older versions.

    `min_satisfying_examples` (gone from hypothesis) is dropped; `timeout=s` (gone too)
    becomes `deadline=s*1000` ms unless a deadline is given.
    """
    kwargs.pop("min_satisfying_examples", None)
    if "timeout" in kwargs:
        timeout = kwargs.pop("timeout")
        kwargs.setdefault("deadline", None if timeout is None else timeout * 1e3)
    return hypothesis.settings(*args, **kwargs)


def floats(*args, **kwargs):
    """`st.floats` drawing float32 values (width=32) unless a width is given, as Caffe2's.

    Bounds are rounded to float32 (hypothesis rejects bounds a width-32 float cannot hold).
    """
    for bound, value in zip(("min_value", "max_value"), args[:2]):
        kwargs[bound] = value
    args = args[2:]
    if "width" not in kwargs:
        kwargs["width"] = 32
        for bound in ("min_value", "max_value"):
            if kwargs.get(bound) is not None:
                kwargs[bound] = to_float32(kwargs[bound])
    return st.floats(*args, **kwargs)


# Caffe2's profiles, with `deadline=None` where Caffe2 had 10 s: the first run of an op may
# build a compiled module, which takes seconds on a loaded machine.
PROFILES = {
    "sandcastle": dict(derandomize=True, suppress_health_check=[hypothesis.HealthCheck.too_slow],
                       database=None, max_examples=50, verbosity=hypothesis.Verbosity.verbose,
                       deadline=None),
    "dev": dict(suppress_health_check=[hypothesis.HealthCheck.too_slow], database=None,
                max_examples=10, verbosity=hypothesis.Verbosity.verbose, deadline=None),
    "debug": dict(suppress_health_check=[hypothesis.HealthCheck.too_slow], database=None,
                  max_examples=1000, verbosity=hypothesis.Verbosity.verbose, deadline=None),
}


def _profile_registered(name: str) -> bool:
    try:
        hypothesis.settings.get_profile(name)
        return True
    except hypothesis.errors.InvalidArgument:
        return False


def register_profiles(load: bool | None = None) -> str | None:
    """Register Caffe2's hypothesis profiles and maybe load one; returns the one loaded.

    A profile name some test suite registered already (a conftest's "dev", say) is kept, not
    overwritten. The profile to load is "sandcastle" on Sandcastle, else
    `$CAFFE2_HYPOTHESIS_PROFILE` (default "dev"). Caffe2 loaded it on import, unconditionally;
    here `load=None` (the import-time call) loads it only when `$CAFFE2_HYPOTHESIS_PROFILE` is
    set, on Sandcastle, or when the process is still on hypothesis's "default" profile, so that
    importing this module does not override a profile a test suite chose. `load=True` always
    loads, `load=False` never does.
    """
    for name, values in PROFILES.items():
        if not _profile_registered(name):
            hypothesis.settings.register_profile(name, hypothesis.settings(**values))
    chosen = "sandcastle" if is_sandcastle() else os.getenv("CAFFE2_HYPOTHESIS_PROFILE", "dev")
    if load is None:
        load = (is_sandcastle() or "CAFFE2_HYPOTHESIS_PROFILE" in os.environ
                or hypothesis.settings.get_current_profile_name() == "default")
    if not load:
        return None
    hypothesis.settings.load_profile(chosen)
    return chosen


_LOADED_PROFILE = register_profiles()


# ----------------------------------------------------------------------------- strategies

def dims(min_value=1, max_value=5):
    return st.integers(min_value=min_value, max_value=max_value)


def elements_of_type(dtype=np.float32, filter_=None):
    """Caffe2's element strategies: floats in [-1, 1] of the dtype's width, non-negative ints
    up to the dtype's maximum, booleans."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        elems = floats(min_value=-1.0, max_value=1.0, width=8 * dt.itemsize)
    elif dt.kind in "iu":
        elems = st.integers(min_value=0, max_value=int(np.iinfo(dt).max))
    elif dt.kind == "b":
        elems = st.booleans()
    else:
        raise ValueError(f"Unexpected dtype {dt} without elements provided")
    return elems if filter_ is None else elems.filter(filter_)


def arrays(dims, dtype=np.float32, elements=None, unique=False):
    """Arrays of shape `dims` (an int, a sequence, or a strategy of them)."""
    if elements is None:
        elements = elements_of_type(dtype)
    if isinstance(dims, (list, tuple)):
        dims = tuple(int(d) for d in dims)
    return hypothesis.extra.numpy.arrays(dtype, dims, elements=elements, unique=unique)


def tensor(min_dim=1, max_dim=4, dtype=np.float32, elements=None, **kwargs):
    """An array with min_dim..max_dim dimensions, each of size `dims(**kwargs)`."""
    dims_ = st.lists(dims(**kwargs), min_size=min_dim, max_size=max_dim)
    return dims_.flatmap(lambda d: arrays(d, dtype, elements))


def tensor1d(min_len=1, max_len=64, dtype=np.float32, elements=None):
    return tensor(1, 1, dtype, elements, min_value=min_len, max_value=max_len)


def segment_ids(size, is_sorted):
    """int32 segment ids for `size` rows: sorted from 0 without gaps, or any in [0, 2*size]."""
    if size == 0:
        return st.just(np.empty(shape=[0], dtype=np.int32))
    if is_sorted:
        return arrays([size], dtype=np.int32, elements=st.booleans()).map(
            lambda x: np.cumsum(x, dtype=np.int32) - x[0])
    return arrays([size], dtype=np.int32, elements=st.integers(min_value=0, max_value=2 * size))


def lengths(size, min_segments=None, max_segments=None, **kwargs):
    """int32 segment lengths (zeros allowed) that sum to `size`."""
    min_segments = 0 if min_segments is None else min_segments
    max_segments = size if max_segments is None else max_segments
    if not 0 <= min_segments <= max_segments:
        raise ValueError(f"lengths: need 0 <= min_segments ({min_segments}) <= max_segments "
                         f"({max_segments})")
    if size == 0 and max_segments == 0:
        return st.just(np.empty(shape=[0], dtype=np.int32))
    if max_segments <= 0:
        raise ValueError("lengths: size is not 0, need at least one segment")
    # Draw the inner borders between segments, add 0 and size, sort: the gaps are the lengths.
    borders = st.integers(min_value=max(min_segments - 1, 0), max_value=max_segments - 1).flatmap(
        lambda n: hypothesis.extra.numpy.arrays(
            np.int32, n, elements=st.integers(min_value=0, max_value=size)))
    return borders.map(
        lambda x: np.diff(np.sort(np.append(x, np.array([0, size], dtype=np.int32)))))


def segmented_tensor(min_dim=1, max_dim=4, dtype=np.float32, is_sorted=True, elements=None,
                     segment_generator=segment_ids, allow_empty=False, **kwargs):
    """(data, segments) where `segments` describes data's first dimension."""
    gen_empty = st.booleans() if allow_empty else st.just(False)
    data_dims_ = st.tuples(gen_empty, st.lists(dims(**kwargs), min_size=min_dim,
                                                max_size=max_dim)).map(
        lambda pair: ([0] if pair[0] else []) + pair[1])
    return data_dims_.flatmap(lambda data_dims: st.tuples(
        arrays(data_dims, dtype, elements),
        segment_generator(data_dims[0], is_sorted=is_sorted)))


def lengths_tensor(min_segments=None, max_segments=None, *args, **kwargs):
    gen = functools.partial(lengths, min_segments=min_segments, max_segments=max_segments)
    return segmented_tensor(*args, segment_generator=gen, **kwargs)


def sparse_segmented_tensor(min_dim=1, max_dim=4, dtype=np.float32, is_sorted=True,
                            elements=None, allow_empty=False, segment_generator=segment_ids,
                            itype=np.int64, **kwargs):
    """(data, indices into data's rows, segments over the indices)."""
    gen_empty = st.booleans() if allow_empty else st.just(False)
    data_dims_ = st.lists(dims(**kwargs), min_size=min_dim, max_size=max_dim)
    all_dims_ = st.tuples(gen_empty, data_dims_).flatmap(lambda pair: st.tuples(
        st.just(pair[1]),
        st.integers(min_value=1, max_value=pair[1][0]) if not pair[0] else st.just(0)))
    return all_dims_.flatmap(lambda d: st.tuples(
        arrays(d[0], dtype, elements),
        arrays(d[1], dtype=itype, elements=st.integers(min_value=0, max_value=d[0][0] - 1)),
        segment_generator(d[1], is_sorted=is_sorted)))


def sparse_lengths_tensor(**kwargs):
    return sparse_segmented_tensor(segment_generator=lengths, **kwargs)


def tensors(n, min_dim=1, max_dim=4, dtype=np.float32, elements=None, **kwargs):
    """A list of `n` arrays of one shared shape."""
    dims_ = st.lists(dims(**kwargs), min_size=min_dim, max_size=max_dim)
    return dims_.flatmap(lambda d: st.lists(arrays(d, dtype, elements), min_size=n, max_size=n))


def ntensors(min_n, max_n, min_dim=1, max_dim=4, dtype=np.float32, elements=None, **kwargs):
    """min_n..max_n arrays of one shared shape."""
    dims_ = st.lists(dims(**kwargs), min_size=min_dim, max_size=max_dim)
    return dims_.flatmap(lambda d: st.lists(arrays(d, dtype, elements),
                                            min_size=min_n, max_size=max_n))


def tensors1d(n, min_len=1, max_len=64, dtype=np.float32, elements=None):
    return tensors(n, 1, 1, dtype, elements, min_value=min_len, max_value=max_len)


# ----------------------------------------------------------------------------- device options

GpuDeviceType = caffe2_pb2.CUDA

cpu_do = caffe2_pb2.DeviceOption()
cuda_do = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.CUDA)
hip_do = caffe2_pb2.DeviceOption(device_type=caffe2_pb2.HIP)
gpu_do = caffe2_pb2.DeviceOption(device_type=GpuDeviceType)  # CUDA (or ROCm in Caffe2)

# Fixed on import, as in Caffe2: a backend registered later is not drawn by `gcs`.
_cuda_do_list = [cuda_do] if device_checker.has_cuda_support() else []
_hip_do_list = [hip_do] if device_checker.has_hip_support() else []
_gpu_do_list = [gpu_do] if device_checker.has_device_type(GpuDeviceType) else []
_device_options_no_hip = [cpu_do] + _cuda_do_list
device_options = _device_options_no_hip + _hip_do_list

# One entry per GPU.
expanded_device_options = [cpu_do] + [
    caffe2_pb2.DeviceOption(device_type=GpuDeviceType, device_id=i)
    for i in range(device_checker.num_devices(GpuDeviceType))]


def device_checker_device_options():
    return st.just(device_options)


def gradient_checker_device_option():
    return st.sampled_from(device_options)


gcs = dict(gc=gradient_checker_device_option(), dc=device_checker_device_options())
gcs_cpu_only = dict(gc=st.sampled_from([cpu_do]), dc=st.just([cpu_do]))
# Empty (no example can be drawn) without a GPU backend: guard such tests with
# `@unittest.skipIf(not workspace.has_gpu_support, ...)` as Caffe2's tests do.
gcs_cuda_only = dict(gc=st.sampled_from(_cuda_do_list), dc=st.just(_cuda_do_list))
gcs_gpu_only = dict(gc=st.sampled_from(_gpu_do_list), dc=st.just(_gpu_do_list))
gcs_no_hip = dict(gc=st.sampled_from(_device_options_no_hip), dc=st.just(_device_options_no_hip))


# ----------------------------------------------------------------------------- running one op

@contextlib.contextmanager
def temp_workspace(name="temp_ws"):
    """Switch to workspace `name` (created if missing); on exit reset it and switch back."""
    if isinstance(name, bytes):
        name = name.decode("utf-8")
    old = workspace.CurrentWorkspace()
    workspace.SwitchWorkspace(name, True)
    try:
        yield
    finally:
        workspace.ResetWorkspace()
        workspace.SwitchWorkspace(old)


def _with_device(op, device_option):
    op = copy.deepcopy(op)
    op.device_option.CopyFrom(device_option)
    return op


def _feed_inputs(op, inputs, device_option, input_device_options=None) -> None:
    if len(op.input) > len(inputs):
        raise ValueError(f"must supply an input for each input on the op: {list(op.input)} "
                         f"vs {len(inputs)} inputs")
    input_device_options = input_device_options or {}
    for name, value in zip(op.input, inputs):
        workspace.FeedBlob(name, value, device_option=input_device_options.get(name, device_option))


def runOpOnInput(device_option, op, inputs, input_device_options=None) -> list:
    """Run `op` on `inputs` in a scratch workspace; its outputs, in order."""
    op = _with_device(op, device_option)
    with temp_workspace():
        _feed_inputs(op, inputs, device_option, input_device_options)
        workspace.RunOperatorOnce(op)
        return [workspace.FetchBlob(name) for name in op.output]


def runOpBenchmark(device_option, op, inputs, input_device_options=None, iterations=10) -> list:
    """Milliseconds per run of `op` on `inputs` (after one warm-up run), as [total]."""
    op = _with_device(op, device_option)
    net = caffe2_pb2.NetDef(name=op.name or "test")
    net.op.extend([op])
    with temp_workspace():
        _feed_inputs(op, inputs, device_option, input_device_options)
        workspace.CreateNet(net)
        if hasattr(workspace, "BenchmarkNet"):
            return workspace.BenchmarkNet(net.name, 1, iterations, True)
        workspace.RunNet(net.name)
        start = time.perf_counter()
        workspace.RunNet(net.name, iterations)
        return [(time.perf_counter() - start) * 1e3 / max(iterations, 1)]


def _describe_inputs(op, inputs) -> str:
    parts = []
    for name, value in zip(op.input, inputs):
        if isinstance(value, np.ndarray):
            parts.append(f"{name}: {value.dtype} {list(value.shape)}")
        else:
            parts.append(f"{name}:{type(value).__name__}")
    return ", ".join(parts)


class HypothesisTestCase(test_util.TestCase):
    """unittest.TestCase with Caffe2's op checks (see the module docstring)."""

    def assertDeviceChecks(self, device_options, op, inputs, outputs_to_check,
                           input_device_options=None, threshold=0.01):
        """The op computes the same outputs (indices `outputs_to_check`) on every device
        option and every backend present for it."""
        dc = device_checker.DeviceChecker(threshold, device_options=device_options)
        ok = dc.CheckSimple(op, inputs, outputs_to_check, input_device_options)
        self.assertTrue(ok, dc.failure_message)

    def assertGradientChecks(self, device_option, op, inputs, outputs_to_check,
                             outputs_with_grads, grad_ops=None, threshold=0.005, stepsize=0.05,
                             input_device_options=None, ensure_outputs_are_inferred=False):
        """The op's gradient w.r.t. input `outputs_to_check` (an input index, as Caffe2 names
        it) matches finite differences."""
        gc = gradient_checker.GradientChecker(
            stepsize=stepsize, threshold=threshold, device_option=device_option,
            workspace_name=str(device_option), input_device_options=input_device_options)
        res, grad, grad_estimated = gc.CheckSimple(
            op, inputs, outputs_to_check, outputs_with_grads, grad_ops=grad_ops,
            input_device_options=input_device_options,
            ensure_outputs_are_inferred=ensure_outputs_are_inferred)
        self.assertEqual(grad.shape, grad_estimated.shape)
        self.assertTrue(res, f"Gradient check failed for input {op.input[outputs_to_check]}")

    def _assertGradReferenceChecks(self, op, inputs, ref_outputs, output_to_grad,
                                   grad_reference, threshold=1e-4):
        """Run op's gradient ops with output `output_to_grad`'s gradient set to its value and
        compare each input gradient with `grad_reference(output_grad, ref_outputs, inputs)`
        (None where an input has no gradient). Runs in the caller's workspace, after op."""
        grad_blob = output_to_grad + "_grad"
        grad_ops, grad_map = core.GradientRegistry.GetBackwardPass([op], {output_to_grad:
                                                                          grad_blob})
        output_grad = workspace.FetchBlob(output_to_grad)
        grad_ref_outputs = grad_reference(output_grad, ref_outputs, inputs)
        workspace.FeedBlob(grad_blob, output_grad)
        workspace.RunOperatorsOnce(grad_ops)
        self.assertEqual(len(grad_ref_outputs), len(inputs))
        for name, ref in zip(op.input, grad_ref_outputs):
            grad = grad_map.get(name)
            if not grad:
                self.assertIsNone(ref, f"input '{name}' gets no gradient from {op.type}, but "
                                       "the gradient reference gives one")
                continue
            if isinstance(grad, core.GradientSlice):
                raise self.failureException(f"input '{name}': sparse gradients are not "
                                            "supported by c2compile")
            np.testing.assert_allclose(
                workspace.FetchBlob(str(grad)), ref, atol=threshold, rtol=threshold,
                err_msg=f"gradient of {op.type} input '{name}' does not match the gradient "
                        "reference")

    def assertReferenceChecks(self, device_option, op, inputs, reference,
                              input_device_options=None, threshold=1e-4, output_to_grad=None,
                              grad_reference=None, atol=None, outputs_to_check=None,
                              ensure_outputs_are_inferred=False):
        """Outputs of `op` on `inputs` equal `reference(*inputs)` (a tuple/list of arrays) to
        within `threshold` (relative) and `atol` (absolute, default `threshold`).

        `outputs_to_check` picks output indices (default: all; then the reference must
        return one array per output). Also checks the op's shape rule against the real
        outputs (see the module docstring). Returns the op's outputs.
        """
        op = _with_device(op, device_option)
        where = f"op {op.type}{' ' + repr(op.name) if op.name else ''} on " \
                f"{device_checker.device_name(device_option)}"
        with temp_workspace():
            _feed_inputs(op, inputs, device_option, input_device_options)
            fed = [workspace.FetchBlob(n) for n in op.input]
            net = caffe2_pb2.NetDef(name="opnet")
            net.op.extend([op])
            workspace.RunNetOnce(net)
            reference_outputs = reference(*inputs)
            if not isinstance(reference_outputs, (tuple, list)):
                raise RuntimeError(
                    "You are providing a wrong reference implementation. A proper one should "
                    "return a tuple/list of numpy arrays.")
            if not outputs_to_check:
                self.assertEqual(len(reference_outputs), len(op.output),
                                 f"{where}: the reference returned {len(reference_outputs)} "
                                 f"outputs for the op's {len(op.output)} {list(op.output)}")
                outputs_to_check = list(range(len(op.output)))
            outs = []
            for index, ref in zip(outputs_to_check, reference_outputs):
                name = op.output[index]
                output = workspace.FetchBlob(name)
                self._assertOutputMatches(where, index, name, output, ref, threshold,
                                          threshold if atol is None else atol,
                                          _describe_inputs(op, fed))
                outs.append(output)
            checked = list(outputs_to_check)[:len(outs)]
            problems = test_util.check_inferred(op, fed, outs, ensure=ensure_outputs_are_inferred,
                                                outputs=checked)
            if problems:
                raise self.failureException(f"{where}:\n  " + "\n  ".join(problems))
            if grad_reference is not None:
                if output_to_grad is None:
                    raise ValueError("If grad_reference is set, output_to_grad has to be set "
                                     "as well")
                self._assertGradReferenceChecks(op, inputs, reference_outputs, output_to_grad,
                                                grad_reference, threshold=threshold)
            return outs

    def _assertOutputMatches(self, where, index, name, output, ref, rtol, atol, inputs_desc):
        header = (f"{where}: output {index} '{name}' is not matching the reference "
                  f"(inputs: {inputs_desc})")
        try:
            if not isinstance(output, np.ndarray) or output.dtype.kind in "SOU":
                np.testing.assert_array_equal(output, ref, err_msg=header)
            else:
                np.testing.assert_allclose(output, ref, atol=atol, rtol=rtol, err_msg=header)
        except AssertionError as e:
            raise self.failureException(str(e)) from None

    def assertValidationChecks(self, device_option, op, inputs, validator,
                               input_device_options=None, as_kwargs=True, init_net=None):
        """Run the op and call `validator` with inputs and outputs: by blob name
        (`as_kwargs`) or as `validator(inputs=..., outputs=...)`."""
        if as_kwargs and len(set(op.input) | set(op.output)) != len(op.input) + len(op.output):
            raise ValueError("in-place ops are not supported in as_kwargs mode")
        op = _with_device(op, device_option)
        with temp_workspace():
            _feed_inputs(op, inputs, device_option, input_device_options)
            if init_net:
                workspace.RunNetOnce(init_net)
            workspace.RunOperatorOnce(op)
            outputs = [workspace.FetchBlob(n) for n in op.output]
            if as_kwargs:
                validator(**dict(zip(list(op.input) + list(op.output),
                                     list(inputs) + outputs)))
            else:
                validator(inputs=inputs, outputs=outputs)

    def assertRunOpRaises(self, device_option, op, inputs, input_device_options=None,
                          exception=(Exception,), regexp=None):
        """Running the op on `inputs` raises `exception` (matching `regexp` if given)."""
        op = _with_device(op, device_option)
        with temp_workspace():
            _feed_inputs(op, inputs, device_option, input_device_options)
            if regexp is None:
                self.assertRaises(exception, workspace.RunOperatorOnce, op)
            else:
                self.assertRaisesRegex(exception, regexp, workspace.RunOperatorOnce, op)
