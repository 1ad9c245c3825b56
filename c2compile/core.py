"""Building nets the Caffe2 way: `caffe2.python.core` semantics on c2compile's protos.

`Net` wraps a `caffe2_pb2.NetDef` and grows it one operator at a time (`net.Relu(X, "Y")`);
`BlobReference` names a blob and lets you chain ops off it (`X.FC([W, b], "Y")`);
`CreateOperator` builds a single `OperatorDef`. Names, name scopes, device scopes, argument
encoding and the auto-generated blob names follow Caffe2 1.10 exactly, so a script that
builds a net with Caffe2 builds the same NetDef here. `Net.AddGradientOperators` and
`GradientRegistry` front the gradient pass (passes/gradients.py); each op's gradient rule
lives with its definition (c2compile/ops/gradient.py).
"""
from __future__ import annotations

import difflib
import os
import traceback
from collections import defaultdict
from itertools import chain

import numpy as np

from c2compile import flags, python_op, scope, utils
from c2compile.net_remap import (  # noqa: F401  (Caffe2 kept these in core)
    DEFAULT_REMAP_FUNCS, control_op_remap, recurrent_network_op_remap, remap_names)
from c2compile.proto import caffe2_pb2

# Caffe2 re-exported these from core.
DeviceScope = scope.DeviceScope
NameScope = scope.NameScope

# TensorProto's DataType enum: DataType.FLOAT == 1, DataType.Name(1) == "FLOAT", ...
DataType = caffe2_pb2.TensorProto.DataType


# ----------------------------------------------------------------------------- registry

# The op registry imports every op family; import it when first asked, not with core.

def _registered_ops() -> set[str]:
    from c2compile.ops import all_ops
    return set(all_ops())


def IsOperator(op_type: str) -> bool:
    """Whether c2compile defines op type `op_type`."""
    from c2compile.ops import has_op
    return has_op(op_type)


# Engines answered by the default implementation: Caffe2 scripts ask for CUDNN freely, and
# an op run with an engine that is not there falls back to the default one.
_DEFAULT_ENGINES = frozenset({"DEFAULT", "", "CUDNN"})


def IsOperatorWithEngine(op_type: str, engine: str) -> bool:
    return engine in _DEFAULT_ENGINES and IsOperator(op_type)


def RefreshRegisteredOperators(trigger_lazy: bool = True) -> None:
    """Kept for Caffe2 scripts; c2compile's registry is always current."""


_GLOBAL_INIT_ARGS: list[str] = []


def GlobalInit(args) -> bool:
    """Take Caffe2 command-line flags: `GlobalInit(['caffe2', '--caffe2_log_level=0'])`.

    args[0] is the program name. An unknown flag or a bad value raises RuntimeError as in
    Caffe2; the values are kept (see `c2compile.flags.get`).
    """
    args = [str(a) for a in args]
    flags.set_flags(flags.parse(args))
    _GLOBAL_INIT_ARGS.extend(args[1:])
    return True


def GetGlobalInitArgs() -> list[str]:
    return list(_GLOBAL_INIT_ARGS)


# ----------------------------------------------------------------------------- devices

def IsGPUDeviceType(device_type: int) -> bool:
    return device_type in {caffe2_pb2.CUDA, caffe2_pb2.HIP}


def DeviceOption(device_type, device_id=0, random_seed=None, node_name=None,
                 numa_node_id=None, extra_info=None) -> caffe2_pb2.DeviceOption:
    """A DeviceOption proto; device_type and device_id are always set, the rest if given."""
    option = caffe2_pb2.DeviceOption()
    option.device_type = device_type
    option.device_id = device_id
    if node_name is not None:
        option.node_name = node_name
    if random_seed is not None:
        option.random_seed = random_seed
    if numa_node_id is not None:
        if device_type != caffe2_pb2.CPU:
            raise AssertionError("numa_node_id is only valid for CPU device options")
        option.numa_node_id = numa_node_id
    if extra_info is not None:
        option.extra_info.extend(extra_info)
    return option


def device_option_equal(opt1, opt2, ignore_node_name=True, ignore_random_seed=True) -> bool:
    """Same device (type and id; all CPU options are equal), as Caffe2 compares them."""
    if not opt1 or not opt2:
        return opt1 == opt2
    if not ignore_node_name and opt1.node_name != opt2.node_name:
        return False
    if not ignore_random_seed and opt1.random_seed != opt2.random_seed:
        return False
    if not opt1.device_type or not opt2.device_type:
        return not opt1.device_type and not opt2.device_type
    return opt1.device_id == opt2.device_id


# ----------------------------------------------------------------------------- blobs

def _no_such_op(op_type: str) -> AttributeError:
    close = difflib.get_close_matches(op_type, _registered_ops(), n=5)
    return AttributeError(f"Method {op_type} is not a registered operator. "
                          f"Did you mean: [{','.join(close)}]")


class BlobReference:
    """The name of a blob, plus the net that produced it (so ops can be chained off it).

    The name is taken as given: `ScopedBlobReference` is the one that adds the name scope.
    """

    def __init__(self, name, net=None):
        if isinstance(name, str):
            self._name = name
        elif isinstance(name, bytes):
            self._name = name.decode("utf-8")
        else:
            self._name = str(name)
        self._from_net = net
        self.meta = {}  # free-form annotations for model helpers

    def __hash__(self):
        return hash(self._name)

    def __eq__(self, other):
        if isinstance(other, str):
            return self._name == other
        if isinstance(other, bytes):
            return self._name == other.decode("utf-8")
        if isinstance(other, BlobReference):
            return self._name == other._name
        return False

    def __ne__(self, other):
        return not self == other

    def __str__(self):
        return self._name

    def __repr__(self):
        return f'BlobReference("{self._name}")'

    def __add__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add BlobReference to a non-string.")
        return BlobReference(self._name + other, self._from_net)

    def __radd__(self, other):
        if not isinstance(other, str):
            raise RuntimeError("Cannot add a non-string to BlobReference.")
        return BlobReference(other + self._name, self._from_net)

    def Net(self):
        return self._from_net

    def GetNameScope(self) -> str:
        return self._name[:self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1]

    def GetUnscopedName(self) -> str:
        return self._name[self._name.rfind(scope._NAMESCOPE_SEPARATOR) + 1:]

    def _CreateAndAddToNet(self, op_type, inputs=None, *args, **kwargs):
        if inputs is None:
            inputs = []
        elif isinstance(inputs, (BlobReference, str, bytes)):
            inputs = [inputs]
        # A new list: Caffe2 inserted into the caller's list in place.
        return getattr(self._from_net, op_type)([self] + list(inputs), *args, **kwargs)

    def __getattr__(self, op_type):
        """`b.Relu(...)` is `net.Relu([b], ...)` for the net `b` came from."""
        if op_type.startswith("_"):  # no op type starts with "_"; keeps copy/pickle sane
            raise AttributeError(f"Attribute {op_type} not found.")
        if self._from_net is None:
            raise AttributeError(
                f"Cannot create operator {op_type} from BlobReference '{self._name}': it has "
                "no source net. Create the operator from an explicit net object.")
        if not IsOperator(op_type):
            raise _no_such_op(op_type)
        return lambda *args, **kwargs: self._CreateAndAddToNet(op_type, *args, **kwargs)

    def __dir__(self):
        return sorted(set(chain(dir(type(self)), self.__dict__, _registered_ops())))


def ScopedName(name) -> str:
    """`name` with the current name scope in front."""
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return scope.CurrentNameScope() + name


def ScopedBlobReference(name, *args, **kwargs) -> BlobReference:
    """A BlobReference to `name` inside the current name scope."""
    return BlobReference(ScopedName(name), *args, **kwargs)


def _RectifyInputOutput(blobs, net=None) -> list[BlobReference]:
    """Inputs/outputs given as a name, a BlobReference or a list of those, as references.

    Plain strings get the current name scope; BlobReferences are kept as they are.
    """
    if isinstance(blobs, (bytes, str)):
        return [ScopedBlobReference(blobs, net=net)]
    if isinstance(blobs, BlobReference):
        return [blobs]
    if isinstance(blobs, (list, tuple)):
        rectified = []
        for blob in blobs:
            if isinstance(blob, (bytes, str)):
                rectified.append(ScopedBlobReference(blob, net=net))
            elif isinstance(blob, BlobReference):
                rectified.append(blob)
            else:
                raise TypeError(f"I/O blob #{len(rectified)} of unsupported type: {blob!r} "
                                f"of type {type(blob).__name__} (use a str or BlobReference)")
        return rectified
    raise TypeError(f"Unknown input/output type: {blobs!r} of type {type(blobs).__name__} "
                    "(use a str, a BlobReference or a list of them)")


# ----------------------------------------------------------------------------- gradients

class GradientSlice(tuple):
    """A sparse gradient (indices, values), Caffe2's core.GradientSlice."""
    __slots__ = ()

    def __new__(cls, indices, values):
        return super().__new__(cls, (indices, values))

    indices = property(lambda self: self[0])
    values = property(lambda self: self[1])

    def __repr__(self) -> str:
        return f"GradientSlice(indices={self[0]!r}, values={self[1]!r})"


class GradientRegistry:
    """Caffe2's GradientRegistry: gradient rules by op type.

    Rules live with the op definitions (ops/gradient.py); `RegisterGradient(op_type)`
    adds a Python rule `f(op, g_output) -> (gradient ops, g_input)` for an op type that has
    none (as in Caffe2, a built-in rule wins over a Python one).
    """
    gradient_registry_: dict = {}

    @classmethod
    def RegisterGradient(cls, op_type):
        def wrapper(func):
            cls.gradient_registry_[op_type] = func
            return func
        return wrapper

    @classmethod
    def GetGradientForOp(cls, op, g_output):
        """(gradient OperatorDefs, [gradient of each input or None]) of one op."""
        from c2compile.ops.gradient import gradient_for_op
        g_output = [None if g is None else
                    GradientSlice(str(g[0]), str(g[1])) if isinstance(g, tuple) else str(g)
                    for g in g_output]
        return gradient_for_op(op, g_output, python_rules=cls.gradient_registry_)

    @classmethod
    def GetBackwardPass(cls, operators, ys, ys_generate_gradient=False):
        """(gradient ops, {blob: gradient}) computing the derivatives of `ys` (a list: each
        gets a gradient of ones; or a dict {y: its gradient blob or None})."""
        from c2compile.passes.gradients import backward_pass
        grad_ops, input_to_grad = backward_pass(list(operators), ys, cls.gradient_registry_)
        return grad_ops, {BlobReference(k): GradientSlice(BlobReference(v[0]),
                                                          BlobReference(v[1]))
                          if isinstance(v, tuple) else BlobReference(v)
                          for k, v in input_to_grad.items()}


def _check_scalar_losses(net: "Net", ys) -> None:
    """A loss given without its gradient gets a gradient of ones; Caffe2 did that for any
    shape, which for a non-scalar "loss" silently differentiates its sum. Refuse it where the
    shape is known (from the blobs already in the workspace)."""
    from c2compile.errors import GradientError, OpError
    from c2compile.ir import Graph
    from c2compile.passes.shape_inference import infer_graph, workspace_types
    if isinstance(ys, dict):
        ys = [y for y, g in ys.items() if g is None]
    if not ys:
        return
    graph = Graph.from_netdef(net.Proto())
    try:
        infer_graph(graph, workspace_types())
    except OpError:
        return  # shapes the run will report; no verdict on the loss here
    for y in map(str, ys):
        key = graph.latest(y)
        if key is None:
            continue
        shape = graph.value(key)["shape"]
        if shape is not None and int(np.prod(shape)) != 1:
            producer = graph.producer(key)
            op = graph.op_def(producer) if producer is not None else None
            raise GradientError(
                f"the loss '{y}' has shape {list(shape)}, not one element: give its gradient "
                f"explicitly (AddGradientOperators({{'{y}': grad_blob}})) or reduce it to a "
                "scalar (AveragedLoss, SumElements)", blob=y,
                index=None if producer is None else producer[1],
                op_type=op.type if op is not None else "", name=op.name if op else "")


# ----------------------------------------------------------------------------- operators

def CreateOperator(operator_type, inputs, outputs, name="", control_input=None,
                   device_option=None, arg=None, engine=None, debug_info=None, **kwargs):
    """One OperatorDef of type `operator_type`.

    String blob names get the current name scope. The device option is `device_option`,
    else the current DeviceScope's, else unset. Keyword arguments become Arguments via
    `utils.MakeArgument`, in the order given; None values are skipped, and `random_seed`
    goes to the device option instead.
    """
    operator = caffe2_pb2.OperatorDef()
    if os.environ.get("CAFFE2_DEBUG"):
        operator.debug_info = "".join(traceback.format_stack()[:-1])
    operator.type = operator_type
    operator.name = name
    operator.input.extend(str(b) for b in _RectifyInputOutput(inputs))
    operator.output.extend(str(b) for b in _RectifyInputOutput(outputs))
    if control_input:
        operator.control_input.extend(str(b) for b in _RectifyInputOutput(control_input))
    if device_option is not None:
        operator.device_option.CopyFrom(device_option)
    elif scope.CurrentDeviceScope() is not None:
        operator.device_option.CopyFrom(scope.CurrentDeviceScope())
    if engine is not None:
        operator.engine = engine
    if debug_info is not None:
        operator.debug_info = debug_info
    if "random_seed" in kwargs:
        operator.device_option.random_seed = kwargs.pop("random_seed")
    if arg is not None:
        operator.arg.extend(arg)
    for key, value in kwargs.items():
        if value is not None:
            operator.arg.append(utils.MakeArgument(key, value))
    return operator


def CreatePythonOperator(f, inputs, outputs, grad_f=None, pass_workspace=False,
                         python_func_type=None, *args, **kwargs):
    """A "Python" operator running `f(inputs, outputs)` (plus the workspace if asked)."""
    kwargs["token"] = python_op.RegisterPythonImpl(f, grad_f, python_func_type,
                                                   pass_workspace=pass_workspace)
    return CreateOperator("Python", inputs, outputs, *args, **kwargs)


# ----------------------------------------------------------------------------- Net

class Net:
    """A NetDef being built. `net.OpType(inputs, outputs, **args)` appends an operator.

    outputs may be a name, a list of names/BlobReferences, an int n (n auto-named outputs)
    or omitted (one auto-named output); the call returns a BlobReference, a tuple of them,
    or None for an op without outputs.
    """
    # Net names are unique per process, as in Caffe2: a second Net("x") is named "x_1".
    _net_names_used: set[str] = set()

    @staticmethod
    def _get_next_net_name(basename: str) -> str:
        name = basename
        next_idx = 1
        while name in Net._net_names_used:
            name = f"{basename}_{next_idx}"
            next_idx += 1
        Net._net_names_used.add(name)
        return name

    def __init__(self, name_or_proto, inplace: bool = False):
        """A new empty net named `name_or_proto`, or one built on a NetDef (copied unless
        `inplace`). The name is made unique among this process's nets."""
        self._registered_blob_names: set[str] = set()  # handed out by NextBlob
        self._recreate_lookup_tables = False
        self._op_outputs: set[str] = set()
        self._external_input_map: set[str] = set()
        self._attr_dict = defaultdict(list)
        self._next_blob_name_ids: dict[str, int] = {}  # NextName's per-prefix counters
        if isinstance(name_or_proto, caffe2_pb2.NetDef):
            if inplace:
                self._net = name_or_proto
            else:
                self._net = caffe2_pb2.NetDef()
                self._net.CopyFrom(name_or_proto)
            self._external_input_map.update(self._net.external_input)
            for op in self._net.op:
                self._op_outputs.update(op.output)
            self._next_name_index = self._first_free_autogen_index()
            name = self._net.name
        elif isinstance(name_or_proto, str):
            self._net = caffe2_pb2.NetDef()
            self._next_name_index = 0
            name = name_or_proto
        else:
            raise TypeError(f"Net() takes a name or a caffe2_pb2.NetDef, got "
                            f"{type(name_or_proto).__name__}")
        self._net.name = Net._get_next_net_name(name)

    def _first_free_autogen_index(self) -> int:
        # Continue NextName()'s "<net>_blob_<n>" numbering after the names already used.
        # (Caffe2 read only the first digit of n here, and could then repeat a name.)
        prefix = self._net.name + "_blob_"
        used = [-1]
        for op in self._net.op:
            for blob in chain(op.input, op.output):
                if blob.startswith(prefix) and blob[len(prefix):].isdigit():
                    used.append(int(blob[len(prefix):]))
        return max(used) + 1

    # -- identity
    def Name(self) -> str:
        return self._net.name

    def __str__(self):
        return self.Name()

    def __repr__(self):
        return f"<Net '{self.Name()}': {len(self._net.op)} ops>"

    def Proto(self) -> caffe2_pb2.NetDef:
        """The NetDef itself (not a copy). The caller may edit it, so lookups are rebuilt."""
        self._InvalidateLookupTables()
        return self._net

    # -- blob lookups
    def _InvalidateLookupTables(self) -> None:
        self._recreate_lookup_tables = True

    def _CheckLookupTables(self) -> None:
        """Assert the lookup sets cover the proto (Caffe2's tests call this)."""
        assert {o for op in self._net.op for o in op.output} <= self._op_outputs
        assert set(self._net.external_input) <= self._external_input_map

    def _RecreateLookupTables(self) -> None:
        self._op_outputs = {o for op in self._net.op for o in op.output}
        self._external_input_map = set(self._net.external_input)
        self._recreate_lookup_tables = False

    def BlobIsDefined(self, blob) -> bool:
        """Whether an op of this net writes `blob`, or it is an external input."""
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        name = str(blob)
        return name in self._op_outputs or name in self._external_input_map

    def UsesBlob(self, blob) -> bool:
        """Whether an op reads `blob`, or it is an external input."""
        name = str(blob)
        if any(name in op.input for op in self._net.op):
            return True
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        return name in self._external_input_map

    def UsedBlobNames(self) -> set[str]:
        names = {b for op in self._net.op for b in chain(op.input, op.output)}
        return names | set(self._net.external_input) | set(self._net.external_output)

    def GetBlobRef(self, blob_name) -> BlobReference:
        """A reference to a blob this net defines; KeyError otherwise."""
        blob_name = str(blob_name)
        if not self.BlobIsDefined(blob_name):
            raise KeyError(f"Net does not define blob {blob_name}")
        return BlobReference(blob_name, self)

    def is_external_input(self, blob) -> bool:
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        return str(blob) in self._external_input_map

    # -- fresh names
    def NextScopedBlob(self, prefix="unnamed") -> BlobReference:
        """NextBlob of `prefix` inside the current name scope."""
        return self.NextBlob(ScopedName(prefix))

    def NextBlob(self, prefix="unnamed") -> BlobReference:
        """`prefix`, or `prefix_auto_<i>`, whichever is not defined nor handed out before."""
        base = BlobReference(prefix)
        blob = base
        index = 0
        while str(blob) in self._registered_blob_names or self.BlobIsDefined(blob):
            blob = base + f"_auto_{index}"
            index += 1
        self._registered_blob_names.add(str(blob))
        return blob

    def NextName(self, prefix=None, output_id=None) -> str:
        """An auto-generated blob name: "<net>_blob_<n>", or "<net>/<prefix>[:<id>]" made
        unique against defined blobs with "_2", "_3", ... before the ":<id>"."""
        if not prefix:
            name = f"{self._net.name}_blob_{self._next_name_index}"
            self._next_name_index += 1
            return name
        base = f"{self._net.name}/{prefix}"
        suffix = "" if output_id is None else f":{output_id}"
        name = base + suffix
        key = name
        index = self._next_blob_name_ids.get(key, 2)
        while self.BlobIsDefined(ScopedName(name)):
            name = f"{base}_{index}{suffix}"
            index += 1
            self._next_blob_name_ids[key] = index
        return name

    # -- external inputs / outputs
    def AddExternalInput(self, *inputs):
        """Declare external inputs; returns a BlobReference (one input) or a list."""
        # Caffe2 asserted these (and its tests expect AssertionError).
        if not inputs:
            raise AssertionError("AddExternalInput needs at least one blob")
        names = [str(i) for i in inputs]
        if self._recreate_lookup_tables:
            self._RecreateLookupTables()
        seen = set()
        for name in names:
            if name in self._external_input_map or name in seen:
                raise AssertionError(f"Net already contains an input named {name}")
            seen.add(name)
        self._net.external_input.extend(names)
        self._external_input_map.update(names)
        refs = [BlobReference(n) for n in names]
        return refs[0] if len(refs) == 1 else refs

    def AddExternalOutput(self, *outputs) -> None:
        """Declare external outputs; each must be defined by this net."""
        for output in outputs:
            if not isinstance(output, (BlobReference, str)):
                raise AssertionError(f"external output {output!r} is not a BlobReference")
            if not self.BlobIsDefined(output):
                raise AssertionError(f"{output} is not defined")
        self._net.external_output.extend(str(o) for o in outputs)

    def AddExternalInputs(self, *inputs):
        return self.AddExternalInput(*inputs)

    def AddExternalOutputs(self, *outputs) -> None:
        self.AddExternalOutput(*outputs)

    def AddScopedExternalInputs(self, *inputs) -> list[BlobReference]:
        res = self.AddExternalInput(*[ScopedBlobReference(b) for b in inputs])
        return res if isinstance(res, list) else [res]

    def AddScopedExternalOutputs(self, *outputs) -> None:
        return self.AddExternalOutput(*[ScopedBlobReference(b) for b in outputs])

    @property
    def external_inputs(self) -> list[BlobReference]:
        return [BlobReference(x) for x in self._net.external_input]

    @property
    def external_outputs(self) -> list[BlobReference]:
        return [BlobReference(x) for x in self._net.external_output]

    # -- whole-net edits
    def AddArgument(self, arg_name, arg_value) -> None:
        self._net.arg.append(utils.MakeArgument(arg_name, arg_value))

    def _ExtendOps(self, new_ops) -> None:
        self._net.op.extend(new_ops)
        for op in new_ops:
            self._op_outputs.update(op.output)

    def extend_ops(self, new_ops) -> None:
        self._ExtendOps(new_ops)

    def AppendNet(self, net, device_option=None):
        """Append `net`'s ops (optionally moved to `device_option`) and its externals."""
        if not isinstance(net, Net):
            raise TypeError("AppendNet takes a core.Net")
        for name in net.Proto().external_input:
            if name not in self.Proto().external_input and name not in self._op_outputs:
                self.Proto().external_input.append(name)
        self.Proto().external_output.extend(
            o for o in net.Proto().external_output if o not in self.Proto().external_output)
        ops = net.Proto().op
        if device_option is not None:
            ops = [caffe2_pb2.OperatorDef.FromString(op.SerializeToString()) for op in ops]
            for op in ops:
                op.device_option.CopyFrom(device_option)
                if op.type == "RecurrentNetwork":
                    for arg in op.arg:
                        if arg.name.endswith("step_net"):
                            for step_op in arg.n.op:
                                step_op.device_option.CopyFrom(device_option)
        self._ExtendOps(ops)
        return self

    def set_rand_seed(self, seed=100, sequence_seed=True, seed_on_op_def=False) -> None:
        """Seed every op: seed + i for op i, hash of the op, or `seed` for all."""
        if sequence_seed and seed_on_op_def:
            raise AssertionError("sequence_seed and seed_on_op_def cannot both be True")
        for i, op in enumerate(self.Proto().op):
            if sequence_seed:
                s = seed + i
            elif seed_on_op_def:
                s = hash(str(op) + str(seed)) % np.iinfo(np.uint32).max
            else:
                s = seed
            op.device_option.random_seed = s

    def add_attribute(self, name, obj) -> None:
        self._attr_dict[name].append(obj)

    def get_attributes(self, name) -> list:
        return self._attr_dict.get(name, [])

    @staticmethod
    def _RunAllOnGPU(net, gpu_id=0, use_cudnn=False) -> None:
        net.device_option.CopyFrom(DeviceOption(caffe2_pb2.CUDA, gpu_id))
        for op in net.op:
            if use_cudnn:
                op.engine = "CUDNN"
            if op.type == "RecurrentNetwork":
                for arg in op.arg:
                    if arg.name == "step_net":
                        Net._RunAllOnGPU(arg.n, gpu_id, use_cudnn)

    def RunAllOnGPU(self, gpu_id=0, use_cudnn=False) -> None:
        """Put the whole net on CUDA device `gpu_id` (the net's DeviceOption)."""
        self._RunAllOnGPU(self._net, gpu_id, use_cudnn)

    def RunAllOnMKL(self) -> None:
        """Put the whole net on MKLDNN (the net's DeviceOption)."""
        self._net.device_option.CopyFrom(caffe2_pb2.DeviceOption(device_type=caffe2_pb2.MKLDNN))

    def RunAllOnIDEEP(self) -> None:
        self._net.device_option.CopyFrom(caffe2_pb2.DeviceOption(device_type=caffe2_pb2.IDEEP))

    def Clone(self, name, blob_remap=None, op_id_mask=None, remap_funcs=None,
              keep_schema=True, update_external_list=False):
        """A copy of this net named `name` (made unique), blobs renamed by `blob_remap`.

        `op_id_mask` keeps only the ops at those indices. `remap_funcs` {op type:
        f(op, prefix, blob_remap)} rename blobs hidden in arguments (defaults cover
        RecurrentNetwork and If/While). `update_external_list` recomputes the external
        inputs/outputs from the kept ops. `keep_schema` is accepted for Caffe2 scripts
        (c2compile nets carry no schema records).
        """
        funcs = dict(DEFAULT_REMAP_FUNCS)
        funcs.update(remap_funcs or {})
        blob_remap = {} if blob_remap is None else blob_remap
        if op_id_mask is None:
            op_id_mask = range(len(self._net.op))
        new_proto = caffe2_pb2.NetDef()
        new_proto.CopyFrom(self._net)
        new_proto.name = name
        del new_proto.op[:]
        for op_id in op_id_mask:
            op = new_proto.op.add()
            op.CopyFrom(self._net.op[op_id])
            remap_names(op.input, blob_remap)
            remap_names(op.output, blob_remap)
            if op.type in funcs:
                funcs[op.type](op, (name + "/") if name else "", blob_remap)
        remap_names(new_proto.external_input, blob_remap)
        remap_names(new_proto.external_output, blob_remap)
        new_net = Net(new_proto)
        new_net._attr_dict.update(self._attr_dict)
        if update_external_list:
            new_net._recompute_external_lists()
        return new_net

    def _recompute_external_lists(self) -> None:
        # Inputs read before any op writes them are external inputs; outputs no op reads
        # are external outputs (in first-written order).
        proto = self.Proto()
        produced, used = {}, set()
        del proto.external_input[:]
        del proto.external_output[:]
        for op in proto.op:
            for b in op.input:
                if b not in produced:
                    proto.external_input.append(b)
                else:
                    used.add(b)
            for b in op.output:
                produced.setdefault(b, None)
        proto.external_output.extend(b for b in produced if b not in used)

    def Const(self, array, blob_out=None, dtype=None):
        """A fill op holding the constant `array` (GivenTensor*Fill by dtype)."""
        if isinstance(array, bool):
            return self.ConstantFill([], blob_out or 1, dtype=DataType.BOOL, value=array)
        array = np.array(array) if dtype is None else np.array(array, dtype=dtype)
        if array.dtype == np.int32:
            fill = "GivenTensorIntFill"
        elif array.dtype == np.int64:
            fill = "GivenTensorInt64Fill"
        elif array.dtype == np.bool_:
            fill = "GivenTensorBoolFill"
        elif array.dtype.kind in "USO":
            fill = "GivenTensorStringFill"
        else:  # every other dtype is written as float, as in Caffe2
            fill = "GivenTensorFill"
        return getattr(self, fill)([], blob_out or 1, shape=array.shape,
                                   values=array.flatten().tolist())

    # -- adding operators
    def _CreateAndAddToSelf(self, op_type, inputs, outputs=None, **kwargs):
        inputs = _RectifyInputOutput(inputs)
        for blob in inputs:
            if not self.BlobIsDefined(blob):
                self.AddExternalInput(blob)
        if outputs is None:
            outputs = self.NextName(prefix=op_type)
        elif type(outputs) is int:
            outputs = [self.NextName(prefix=op_type, output_id=i) for i in range(outputs)]
        outputs = _RectifyInputOutput(outputs, net=self)
        op = CreateOperator(op_type, inputs, outputs, **kwargs)
        self._ExtendOps([op])
        if len(op.output) == 0:
            return None
        if len(op.output) == 1:
            return BlobReference(op.output[0], self)
        return tuple(BlobReference(o, self) for o in op.output)

    def __getattr__(self, op_type):
        if op_type.startswith("_"):  # internals and dunders are never op types
            raise AttributeError(f"Attribute {op_type} not found.")
        if not IsOperator(op_type):
            raise _no_such_op(op_type)
        return lambda *args, **kwargs: self._CreateAndAddToSelf(op_type, *args, **kwargs)

    def __dir__(self):
        return sorted(set(chain(dir(type(self)), self.__dict__, _registered_ops())))

    def AddGradientOperators(self, ys, skip=0):
        """Append the gradient ops of `ys` (see GradientRegistry.GetBackwardPass) for the
        ops after the first `skip`; returns {blob: its gradient blob}."""
        _check_scalar_losses(self, ys)
        grad_ops, input_to_grad = GradientRegistry.GetBackwardPass(self._net.op[skip:], ys)
        self._ExtendOps(grad_ops)
        return input_to_grad

    def Python(self, f, grad_f=None, python_func_type=None, pass_workspace=False,
               grad_output_indices=None, grad_input_indices=None):
        """A builder `(inputs, outputs, **kwargs)` that adds a "Python" op running `f`.

        `f(inputs, outputs)` gets TensorCPU-like objects (`.data`, `.shape`, `.reshape`,
        `.feed`, `.init`); with `pass_workspace` also the workspace as a third argument.
        `f`/`grad_f` may be `(func, args, kwargs)` builder tuples, pickled onto the op and
        called when the net is created. `python_func_type(f)` supplies `.forward` and
        `.backward`. `grad_output_indices`/`grad_input_indices` pick which outputs/inputs
        of `f` have gradients.
        """
        f_builder = python_op.pickle_builder(f)
        grad_f_builder = python_op.pickle_builder(grad_f)
        if grad_f and bool(f_builder) != bool(grad_f_builder):
            raise AssertionError("A tuple has to be passed to both f and grad_f or neither.")
        core_kwargs = {}
        if f_builder:
            core_kwargs["pickled_builder"] = f_builder
            core_kwargs["pickled_grad_builder"] = grad_f_builder
            core_kwargs["pass_workspace"] = pass_workspace
        else:
            core_kwargs["token"] = python_op.RegisterPythonImpl(
                f, grad_f, python_func_type, pass_workspace=pass_workspace)
        grad_output_indices = grad_output_indices or []
        grad_input_indices = grad_input_indices or []
        return lambda *args, **kwargs: self._CreateAndAddToSelf(
            "Python", *args, grad_output_indices=grad_output_indices,
            grad_input_indices=grad_input_indices, **dict(kwargs, **core_kwargs))


# ----------------------------------------------------------------------------- plans

# Plans live in c2compile.plan, which builds on Net; served from here as Caffe2 had them.
_PLAN_NAMES = frozenset({"Plan", "ExecutionStep", "execution_step", "scoped_execution_step",
                         "to_execution_step", "add_nets_in_order", "get_net_name"})


def __getattr__(name):
    if name in _PLAN_NAMES:
        from c2compile import plan
        return getattr(plan, name)
    raise AttributeError(f"module 'c2compile.core' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | _PLAN_NAMES)
