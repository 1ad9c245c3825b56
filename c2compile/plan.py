"""Plans and execution steps: `caffe2.python.core`'s Plan API on c2compile's protos.

A `PlanDef` is a list of nets plus a tree of `ExecutionStep`s saying how to run them: a step
runs either its nets in order or its substeps (in order, or concurrently in threads), for
`num_iter` iterations or until its `should_stop_blob` turns true. `execution_step(...)`
builds a step, `Plan.AddStep` collects the nets a step uses (in order of first use, each
once), and `workspace.RunPlan(plan_or_step)` runs it (runtime/plan_executor.py).

What this module writes into the protos follows Caffe2 1.10 exactly (field by field), so a
script building a plan with Caffe2 builds the same PlanDef here; `core` re-exports every
public name. Two Caffe2 habits kept on purpose: step names given as None are made unique
per process ("step", "step_1", ...), and `Plan.create_from_proto` rebuilds `core.Net`s,
whose names are unique per process too (a net named "n" when "n" was already used comes
back as "n_1", and the rebuilt steps refer to it by that name).
"""
from __future__ import annotations

from c2compile.core import BlobReference, Net, ScopedName
from c2compile.proto import caffe2_pb2

_MIXED = "Cannot have both network and substeps."


def get_net_name(netlike) -> str:
    """The name of a core.Net or NetDef; anything else (a name) as it is."""
    if isinstance(netlike, Net):
        return netlike.Proto().name
    if isinstance(netlike, caffe2_pb2.NetDef):
        return netlike.name
    return netlike


def _add_net_to_dict(net_dict: dict, net) -> bool:
    """Remember `net` under its name; False if that name was there already (the same Net, or
    a bare name). Two different Net objects of one name are an AssertionError, as in Caffe2."""
    name = get_net_name(net)
    if name in net_dict:
        known = net_dict[name]
        if known is not None and net is not known and net != known:
            raise AssertionError(f"Different nets with same name: {name}")
        return False
    net_dict[name] = net if isinstance(net, Net) else None
    return True


class ExecutionStep:
    """An `ExecutionStep` proto being built, plus the core.Net objects it uses.

    A step holds nets or substeps, never both. Once it has been added to a plan or another
    step it is frozen: the setters raise AssertionError (except `RunEveryMillis`, which
    Caffe2 never checked).
    """
    # Names handed out to steps created without one; unique per process, as in Caffe2.
    _step_names_used: set[str] = set()

    @staticmethod
    def _get_next_step_name(basename: str) -> str:
        name, index = basename, 1
        while name in ExecutionStep._step_names_used:
            name = f"{basename}_{index}"
            index += 1
        ExecutionStep._step_names_used.add(name)
        return name

    def __init__(self, name=None, nets=None, num_iter=None):
        """A step named `name` (a fresh "step_<n>" if empty) running `nets` (a core.Net, or
        a list of Nets or net names) `num_iter` times."""
        self._step = caffe2_pb2.ExecutionStep()
        self._step.name = name or ExecutionStep._get_next_step_name("step")
        self._net_dict: dict = {}  # net name -> core.Net (None when only the name is known)
        self._is_used = False
        self._substeps: list[ExecutionStep] = []
        if nets is not None:
            if isinstance(nets, Net):
                nets = [nets]
            for net in nets:
                if _add_net_to_dict(self._net_dict, net):
                    self._step.network.append(get_net_name(net))
        if num_iter is not None:
            self._step.num_iter = num_iter

    # -- identity
    def Name(self) -> str:
        return self._step.name

    def __str__(self) -> str:
        return self._step.name

    def __repr__(self) -> str:
        what = (f"{len(self._step.substep)} substeps" if self._step.substep
                else f"nets {list(self._step.network)}")
        return f"<ExecutionStep '{self._step.name}': {what}>"

    def Proto(self) -> caffe2_pb2.ExecutionStep:
        """The proto itself (not a copy)."""
        return self._step

    # -- contents
    def get_net(self, name):
        """The core.Net this step (or a substep) uses under `name` (None if only its name is
        known); KeyError for a name it does not use."""
        return self._net_dict[name]

    def Nets(self) -> list:
        """Every net of this step and its substeps, in order of first use."""
        return list(self._net_dict.values())

    def Substeps(self) -> list["ExecutionStep"]:
        """The ExecutionStep objects added as substeps (not those added as bare protos)."""
        return self._substeps

    def HasNets(self) -> bool:
        return len(self._step.network) > 0

    def HasSubsteps(self) -> bool:
        return len(self._step.substep) > 0

    def get_all_attributes(self, name) -> list:
        """Every attribute `name` (Net.add_attribute) of the nets this step uses."""
        return [attr for net in self._net_dict.values() for attr in net.get_attributes(name)]

    # -- setters
    def _assert_can_mutate(self) -> None:
        if self._is_used:
            raise AssertionError("Cannot mutate a step that has already been added to a "
                                 "plan/step.")

    def _notify_is_used(self) -> None:
        self._is_used = True

    def SetIter(self, num_iter) -> None:
        self._assert_can_mutate()
        self._step.num_iter = num_iter

    def SetCreateWorkspace(self, create_workspace) -> None:
        """Run the step in a child workspace: it sees (and writes) its parent's blobs, and
        the blobs and nets it creates vanish when the step ends."""
        self._assert_can_mutate()
        self._step.create_workspace = create_workspace

    def SetNumConcurrentInstances(self, num_concurrent_instances) -> None:
        """Run each substep in that many threads at once (a step with substeps only)."""
        self._assert_can_mutate()
        self._step.num_concurrent_instances = num_concurrent_instances

    def SetOnlyOnce(self, only_once) -> None:
        """With a should_stop_blob: run one iteration at most (it is an error without one)."""
        self._assert_can_mutate()
        self._step.only_once = only_once

    def SetShouldStopBlob(self, should_stop_blob) -> None:
        """Stop the step once this scalar bool blob is true (checked after each net or
        substep). `should_stop_blob` must be a BlobReference, as in Caffe2."""
        if not isinstance(should_stop_blob, BlobReference):
            raise AssertionError(f"expects BlobReference here, got {type(should_stop_blob)}")
        self._assert_can_mutate()
        self._step.should_stop_blob = str(should_stop_blob)

    def RunEveryMillis(self, interval) -> None:
        """As a substep: run every `interval` ms in a background thread while the parent
        step runs, and once more when it ends (instead of as one of its substeps). Ignored
        on a top-level step."""
        self._step.run_every_ms = interval

    def SetReportNet(self, report_net, report_interval) -> None:
        """Run `report_net` every `report_interval` seconds in a background thread while
        the step runs, and once more when it ends (Caffe2 deprecated it for
        RunEveryMillis)."""
        self._assert_can_mutate()
        _add_net_to_dict(self._net_dict, report_net)
        self._step.report_net = get_net_name(report_net)
        self._step.report_interval = report_interval

    def SetConcurrentSubsteps(self, concurrent_substeps) -> None:
        """Run the substeps in threads, one per substep (times num_concurrent_instances),
        each iteration."""
        self._assert_can_mutate()
        if self.HasNets():
            raise AssertionError(_MIXED)
        self._step.concurrent_substeps = concurrent_substeps

    def AddSubstep(self, substep) -> "ExecutionStep":
        """Append a substep (an ExecutionStep, which is then frozen, or an ExecutionStep
        proto). An ExecutionStep with neither nets nor substeps is dropped."""
        self._assert_can_mutate()
        if self.HasNets():
            raise AssertionError(_MIXED)
        if isinstance(substep, ExecutionStep):
            substep._notify_is_used()
            if not substep.HasNets() and not substep.HasSubsteps():
                return self
            for net in substep.Nets():
                _add_net_to_dict(self._net_dict, net)
            self._substeps.append(substep)
            proto = substep.Proto()
        else:
            proto = substep
        self._step.substep.add().CopyFrom(proto)
        return self

    def AddNet(self, net) -> "ExecutionStep":
        self._assert_can_mutate()
        if self.HasSubsteps():
            raise AssertionError(_MIXED)
        if not isinstance(net, Net):
            raise AssertionError(f"AddNet takes a core.Net, got {type(net).__name__}")
        _add_net_to_dict(self._net_dict, net)
        self._step.network.append(get_net_name(net))
        return self

    @classmethod
    def create_from_proto(cls, step_proto, net_obj_dict: dict, net_proto_dict: dict):
        """An ExecutionStep built from `step_proto` (recursively). Nets come from
        `net_obj_dict` {name: core.Net}, else are built from `net_proto_dict`
        {name: NetDef} and added to `net_obj_dict`. The deprecated report net is dropped."""
        if not isinstance(step_proto, caffe2_pb2.ExecutionStep):
            raise AssertionError(f"expects a caffe2_pb2.ExecutionStep, got "
                                 f"{type(step_proto).__name__}")
        if bool(step_proto.network) == bool(step_proto.substep):
            raise AssertionError(f"execution step '{step_proto.name}' must have either nets "
                                 "or substeps (exactly one of the two)")
        steps_or_nets: list = []
        if step_proto.substep:
            for sub in step_proto.substep:
                steps_or_nets.append(cls.create_from_proto(sub, net_obj_dict, net_proto_dict))
        else:
            for net_name in step_proto.network:
                if net_name not in net_obj_dict:
                    if net_name not in net_proto_dict:
                        raise AssertionError(f"execution step '{step_proto.name}' uses net "
                                             f"'{net_name}', which is not among the nets")
                    net_obj_dict[net_name] = Net(net_proto_dict[net_name])
                net = net_obj_dict[net_name]
                if not isinstance(net, Net):
                    raise AssertionError(f"net '{net_name}' is a {type(net).__name__}, "
                                         "not a core.Net")
                steps_or_nets.append(net)

        def field(name):
            return getattr(step_proto, name) if step_proto.HasField(name) else None

        stop = field("should_stop_blob")
        return execution_step(
            step_proto.name, steps_or_nets,
            num_iter=field("num_iter"),
            concurrent_substeps=field("concurrent_substeps"),
            should_stop_blob=None if stop is None else BlobReference(stop),
            only_once=field("only_once"),
            num_concurrent_instances=field("num_concurrent_instances"),
            create_workspace=field("create_workspace"),
            run_every_ms=field("run_every_ms"))


def add_nets_in_order(step: ExecutionStep, net_list: list) -> None:
    """Append to `net_list` the names of the nets `step` uses that are not there yet:
    substeps' nets first (depth first), then its own nets, then its report net."""
    proto = step.Proto()
    for substep in step.Substeps():
        add_nets_in_order(substep, net_list)
    for net in proto.network:
        if net not in net_list:
            net_list.append(net)
    # Caffe2 adds the report net last, though it may run before any substep; kept as is.
    if proto.report_net and proto.report_net not in net_list:
        net_list.append(proto.report_net)


class Plan:
    """A `PlanDef` being built: its execution steps and every net they use (each once)."""

    def __init__(self, name_or_step):
        """An empty plan named `name_or_step`, or a plan with that one step (named after
        it)."""
        self._plan = caffe2_pb2.PlanDef()
        self._net_dict: dict = {}
        self._steps: list[ExecutionStep] = []
        if isinstance(name_or_step, ExecutionStep):
            self._plan.name = name_or_step.Name()
            self.AddStep(name_or_step)
        elif isinstance(name_or_step, (str, bytes)):
            self._plan.name = (name_or_step.decode("utf-8") if isinstance(name_or_step, bytes)
                               else name_or_step)
        else:
            raise ValueError("name_or_step must be a string or ExecutionStep")

    def __str__(self) -> str:
        return self._plan.name

    def __repr__(self) -> str:
        return (f"<Plan '{self._plan.name}': {len(self._plan.execution_step)} steps, "
                f"{len(self._plan.network)} nets>")

    def Proto(self) -> caffe2_pb2.PlanDef:
        """The proto itself (not a copy)."""
        return self._plan

    def AddNets(self, nets) -> None:
        """Copy into the plan each net (a core.Net) whose name it does not have yet."""
        for net in nets:
            if _add_net_to_dict(self._net_dict, net):
                if not isinstance(net, Net):
                    raise AssertionError(f"Plan.AddNets takes core.Net objects, got "
                                         f"{type(net).__name__} for net '{net}'")
                self._plan.network.add().CopyFrom(net.Proto())

    def Nets(self) -> list:
        return list(self._net_dict.values())

    def AddStep(self, step: ExecutionStep) -> None:
        """Append `step` (frozen from now on) and the nets it uses, in order of first use.
        A step with neither nets nor substeps is dropped."""
        if not isinstance(step, ExecutionStep):
            raise AssertionError(f"Plan.AddStep takes an ExecutionStep, got "
                                 f"{type(step).__name__}")
        step._notify_is_used()
        if not step.HasNets() and not step.HasSubsteps():
            return
        self._plan.execution_step.add().CopyFrom(step.Proto())
        self._steps.append(step)
        net_list: list = []
        add_nets_in_order(step, net_list)
        self.AddNets([step.get_net(n) for n in net_list])

    def Steps(self) -> list[ExecutionStep]:
        return self._steps

    def get_all_attributes(self, name) -> list:
        return [attr for net in self._net_dict.values() for attr in net.get_attributes(name)]

    @classmethod
    def create_from_proto(cls, plan_proto) -> "Plan":
        """A Plan rebuilt from a PlanDef: its other fields copied, each step rebuilt with
        `ExecutionStep.create_from_proto` and added again (nets become new core.Nets)."""
        if not isinstance(plan_proto, caffe2_pb2.PlanDef):
            raise AssertionError(f"expects a caffe2_pb2.PlanDef, got "
                                 f"{type(plan_proto).__name__}")
        plan = cls(plan_proto.name)
        plan._plan.CopyFrom(plan_proto)
        del plan._plan.network[:]
        del plan._plan.execution_step[:]
        net_obj_dict: dict = {}
        net_proto_dict: dict = {}
        for net_proto in plan_proto.network:
            if net_proto.name in net_proto_dict:
                raise AssertionError(f"the plan has two nets named '{net_proto.name}'")
            net_proto_dict[net_proto.name] = net_proto
        for step_proto in plan_proto.execution_step:
            plan.AddStep(ExecutionStep.create_from_proto(step_proto, net_obj_dict,
                                                         net_proto_dict))
        return plan


def to_execution_step(step_or_nets, default_name=None) -> ExecutionStep:
    """`step_or_nets` itself if it is an ExecutionStep, else `execution_step(default_name,
    step_or_nets)` (Caffe2's NetBuilder is not supported)."""
    if isinstance(step_or_nets, ExecutionStep):
        return step_or_nets
    if not default_name and hasattr(step_or_nets, "name"):
        default_name = step_or_nets.name
    return execution_step(default_name, step_or_nets)


def execution_step(default_name, steps_or_nets, num_iter=None, report_net=None,
                   report_interval=None, concurrent_substeps=None, should_stop_blob=None,
                   only_once=None, num_concurrent_instances=None, create_workspace=False,
                   run_every_ms=None) -> ExecutionStep:
    """An ExecutionStep named `default_name` (a fresh "step_<n>" if empty).

    `steps_or_nets`: None, a core.Net, an ExecutionStep, a list of Nets (the step runs
    them), or a list of steps and nets (each becomes a substep; a net gets a step of its
    own). `num_iter` and `should_stop_blob` (a BlobReference to a scalar bool, checked
    after each net or substep) exclude each other; with neither, num_iter is 1.
    """
    if should_stop_blob is not None and num_iter is not None:
        raise AssertionError("Cannot set both should_stop_blob and num_iter.")
    if should_stop_blob is None and num_iter is None:
        num_iter = 1
    step = ExecutionStep(default_name)
    if should_stop_blob is not None:
        step.SetShouldStopBlob(should_stop_blob)
    if num_iter is not None:
        step.SetIter(num_iter)
    if only_once is not None:
        step.SetOnlyOnce(only_once)
    if concurrent_substeps is not None:
        step.SetConcurrentSubsteps(concurrent_substeps)
    if report_net is not None:
        if report_interval is None:
            raise AssertionError("report_net needs a report_interval (seconds)")
        step.SetReportNet(report_net, report_interval)
    if num_concurrent_instances is not None:
        step.SetNumConcurrentInstances(num_concurrent_instances)
    if create_workspace:
        step.SetCreateWorkspace(True)
    if run_every_ms:
        step.RunEveryMillis(run_every_ms)

    if isinstance(steps_or_nets, ExecutionStep):
        step.AddSubstep(steps_or_nets)
    elif isinstance(steps_or_nets, Net):
        step.AddNet(steps_or_nets)
    elif isinstance(steps_or_nets, list):
        if all(isinstance(x, Net) for x in steps_or_nets):
            for net in steps_or_nets:
                step.AddNet(net)
        else:
            for x in steps_or_nets:
                step.AddSubstep(to_execution_step(x))
    elif steps_or_nets:
        raise ValueError("steps_or_nets must be a step, a net, or a list of nets or steps.")
    return step


def scoped_execution_step(name, *args, **kwargs) -> ExecutionStep:
    """execution_step() with the current name scope in front of `name`."""
    return execution_step(ScopedName(name) if name else name, *args, **kwargs)


def as_plandef(plan_or_step) -> caffe2_pb2.PlanDef:
    """What RunPlan takes, as a PlanDef: a Plan, an ExecutionStep (a plan of that one step),
    a PlanDef or its serialized bytes. The result is the caller's own proto (not copied)."""
    from c2compile.errors import ProtoError
    if isinstance(plan_or_step, ExecutionStep):
        plan_or_step = Plan(plan_or_step)
    if isinstance(plan_or_step, Plan):
        return plan_or_step.Proto()
    if isinstance(plan_or_step, caffe2_pb2.PlanDef):
        return plan_or_step
    if isinstance(plan_or_step, (bytes, bytearray)):
        from google.protobuf.message import DecodeError
        plan = caffe2_pb2.PlanDef()
        try:
            plan.ParseFromString(bytes(plan_or_step))
        except DecodeError as e:
            raise ProtoError(f"cannot parse PlanDef ({len(plan_or_step)} bytes): {e}; the "
                             "data is truncated or not a serialized caffe2.PlanDef") from None
        return plan
    raise TypeError(f"RunPlan takes a core.Plan, a core.ExecutionStep, a PlanDef or its "
                    f"serialized bytes, got {type(plan_or_step).__name__}")
