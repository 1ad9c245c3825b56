"""Running a PlanDef on a workspace, with the semantics of Caffe2 1.10's plan executor.

`run_plan(ws, plan)` runs the plan's top-level steps in order. Before a step runs it is
*compiled*: the nets it (and every substep below it, down to any step that makes its own
workspace) uses are created in the workspace, once per plan run. A plan net whose name the
workspace already has replaces that net once; the nets stay in the workspace afterwards, as
after CreateNet. Nets run exactly as RunNet runs them (`CreatedNet.run`: compiled segments on
CPU), so an op that fails raises the same error RunNet raises, with a note naming the step.

A step runs its nets, or its substeps, never both:

* iterations: `num_iter` (default 1); with a `should_stop_blob`, until that blob is true
  (`only_once`: one iteration at most). Setting both, or `only_once` without a stop blob,
  is an error. The stop blob must exist when the step is compiled (in the workspace, or as
  an output of a net created there: Caffe2 created net outputs as empty blobs) and is read
  after each net, or after each substep, or after each iteration of concurrent substeps:
  unset counts as false, anything but a one-element bool tensor is an error. It is not read
  before the first net: a stop blob that is already true still lets one net run.
* `concurrent_substeps` (with more than one substep) or `num_concurrent_instances` > 1: each
  iteration runs every substep in threads (num_concurrent_instances threads per substep) and
  waits for all of them. The first exception stops the others at their next iteration
  boundary (a net that is running is not interrupted) and is raised once they have ended, or
  after `--caffe2_plan_executor_exception_timeout` seconds (60) if some have not (they are
  then left running). Caffe2 aborted the process here unless
  `--caffe2_handle_executor_threads_exceptions` was set; c2compile always raises.
* `report_net` runs in a background thread every `report_interval` seconds while the step
  runs, and once more as it ends; a substep with `run_every_ms` is run the same way (every
  so many ms) instead of as one of the substeps. An exception there ends the step at its
  next iteration and is raised when it ends (Caffe2 aborted the process).
* `create_workspace`: each time the step runs it gets a child workspace. The child reads and
  writes the blobs its parent has; blobs it creates, and its nets, vanish with it. If the
  workspace has a NODE_ID blob, each child gets a GLOBAL_WORKSPACE_ID blob (as in Caffe2).

A plan that fails leaves the workspace as Caffe2 did: blobs written by the nets that
completed stay, the net that failed leaves what a failing RunNet leaves, and nets created so
far stay created.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import MutableMapping
from typing import Any, Callable

import numpy as np

from c2compile.errors import PlanError
from c2compile.runtime.workspace import CreatedNet, Workspace


# ----------------------------------------------------------------------------- child workspaces

class ChildBlobs(MutableMapping):
    """A child workspace's blobs: its own, over its parent's (Caffe2's shared workspace).

    Reads fall through to the parent; writing a blob the parent has writes the parent's;
    a new blob stays in the child and vanishes with it.
    """

    def __init__(self, parent: MutableMapping):
        self.parent = parent
        self.local: dict[str, Any] = {}

    def __getitem__(self, name: str):
        try:
            return self.local[name]
        except KeyError:
            return self.parent[name]

    def __setitem__(self, name: str, value) -> None:
        if name not in self.local and name in self.parent:
            self.parent[name] = value
        else:
            self.local[name] = value

    def __delitem__(self, name: str) -> None:
        del self.local[name]  # a child removes only its own blobs

    def __contains__(self, name) -> bool:
        return name in self.local or name in self.parent

    def __iter__(self):
        local = list(self.local)
        yield from local
        yield from (k for k in list(self.parent) if k not in self.local)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ChildWorkspace(Workspace):
    """The workspace of a step with create_workspace: see ChildBlobs. Nets are its own."""

    def __init__(self, parent: Workspace, step_name: str):
        super().__init__(f"{parent.name}/{step_name}", parent.root_folder)
        self.parent = parent
        self.blobs = ChildBlobs(parent.blobs)


def _declared_blobs(ws: Workspace) -> set[str]:
    """Blobs Caffe2 would have: the outputs of every net created in `ws` or its parents."""
    names: set[str] = set()
    while ws is not None:
        for net in list(ws.nets.values()):
            for op in net.ops:
                names.update(op.outputs)
        ws = getattr(ws, "parent", None)
    return names


# ----------------------------------------------------------------------------- compiling steps

ShouldContinue = Callable[[int], bool]


class _PlanRun:
    """What one run of a plan shares: its nets by name and which still replace a net of
    the same name that the workspace had before the plan."""

    def __init__(self, plan, ws: Workspace):
        self.name = plan.name
        self.netdefs: dict[str, Any] = {}
        for netdef in plan.network:
            if netdef.name in self.netdefs:
                raise PlanError(f"plan '{plan.name}' has two nets named '{netdef.name}'; a "
                                "plan's nets need distinct names", net=netdef.name)
            self.netdefs[netdef.name] = netdef
        self.needs_override = {name: name in ws.nets for name in self.netdefs}
        self.lock = threading.Lock()
        self._workspace_ids = itertools.count()

    def inject_workspace_id(self, child: ChildWorkspace) -> None:
        """Caffe2's distributed-run helper: when the workspace has a NODE_ID blob, each
        child workspace gets its own int32 GLOBAL_WORKSPACE_ID = (NODE_ID << 16) + n, n
        counting the child workspaces of this plan run."""
        node_id = child.blobs.get("NODE_ID")
        if node_id is None:
            return
        seq = next(self._workspace_ids)
        if seq >= 1 << 16:
            raise PlanError("too many child workspaces in one plan run to number them "
                            "(GLOBAL_WORKSPACE_ID overflows)")
        node = int(np.asarray(node_id).reshape(-1)[0])
        child.blobs.local["GLOBAL_WORKSPACE_ID"] = np.array(seq + (node << 16), np.int32)

    def net(self, ws: Workspace, name: str, step: "_Step") -> CreatedNet:
        """The created net `name` in `ws`, creating it if the workspace does not have it yet
        (or has one from before this plan run)."""
        with self.lock:
            netdef = self.netdefs.get(name)
            if netdef is None:
                known = ", ".join(f"'{n}'" for n in self.netdefs) or "none"
                raise PlanError(f"{step.where} uses net '{name}', which the plan does not "
                                f"have (its nets: {known})", step=step.name, net=name)
            if self.needs_override.get(name) or name not in ws.nets:
                copy = type(netdef)()
                copy.CopyFrom(netdef)
                try:
                    ws.create_net(copy, overwrite=True, check_inputs=_declared_blobs(ws))
                except Exception as e:
                    e.add_note(f"while creating net '{name}' for {step.where}")
                    raise
                self.needs_override[name] = False
            return ws.nets[name]


class _Step:
    """One ExecutionStep of a plan (Caffe2's ExecutionStepWrapper): compiled once when it is
    made, or, with create_workspace, afresh (with a new child workspace) each time it runs."""

    def __init__(self, proto, ws: Workspace, external_continue: ShouldContinue,
                 run: _PlanRun, path: tuple[str, ...]):
        self.proto, self.ws, self.run = proto, ws, run
        self.external_continue = external_continue
        self.path = path
        self.name = proto.name
        self._compiled = None if proto.create_workspace else _CompiledStep(self)

    @property
    def where(self) -> str:
        outer = ""
        if len(self.path) > 1:
            outer = f" (in {' > '.join(repr(p) for p in self.path[:-1])})"
        return f"execution step '{self.name}'{outer} of plan '{self.run.name}'"

    def compiled(self) -> "_CompiledStep":
        return self._compiled if self._compiled is not None else _CompiledStep(self)


class _CompiledStep:
    """A step ready to run: its workspace, its created nets or compiled substeps, its stop
    blob and report net, and the failure state its threads share."""

    def __init__(self, step: _Step):
        proto = self.proto = step.proto
        self.step = step
        if proto.create_workspace:
            self.ws = ChildWorkspace(step.ws, proto.name)
            step.run.inject_workspace_id(self.ws)
        else:
            self.ws = step.ws
        if proto.substep and proto.network:
            raise PlanError(f"{step.where} has both nets {list(proto.network)} and "
                            f"{len(proto.substep)} substeps; a step runs either nets or "
                            "substeps", step=step.name)
        self.failed = threading.Event()
        self._lock = threading.Lock()
        self.first_error: BaseException | None = None

        self.recurring: list[_Step] = []
        self.reporting: list[_Step] = []
        self.nets: list[CreatedNet] = []
        if proto.substep:
            if proto.concurrent_substeps and len(proto.substep) > 1:
                outer = step.external_continue

                def sub_continue(i: int) -> bool:
                    return not self.failed.is_set() and outer(i)
            else:
                sub_continue = step.external_continue
            for sub in proto.substep:
                wrapped = _Step(sub, self.ws, sub_continue, step.run, step.path + (sub.name,))
                (self.reporting if sub.HasField("run_every_ms") else self.recurring).append(wrapped)
        else:
            self.nets = [step.run.net(self.ws, name, step) for name in proto.network]

        self.stop_blob: str | None = None
        if proto.HasField("should_stop_blob"):
            name = proto.should_stop_blob
            if name not in self.ws.blobs and name not in _declared_blobs(self.ws):
                raise PlanError(f"{step.where}: its should_stop_blob '{name}' does not exist "
                                "(feed it first, or write it with one of the plan's nets: a "
                                "blob exists once a net that writes it has been created)",
                                step=step.name, blob=name)
            self.stop_blob = name

        self.report_net: CreatedNet | None = None
        if proto.HasField("report_net"):
            if not proto.HasField("report_interval"):
                raise PlanError(f"{step.where} has report_net '{proto.report_net}' but no "
                                "report_interval", step=step.name, net=proto.report_net)
            self.report_net = step.run.net(self.ws, proto.report_net, step)

        self.own_continue = self._continuation()

    def _continuation(self) -> ShouldContinue:
        proto, where = self.proto, self.step.where
        if proto.HasField("should_stop_blob"):
            if proto.HasField("num_iter"):
                raise PlanError(f"{where} sets both num_iter and should_stop_blob "
                                f"'{proto.should_stop_blob}'; set one of them",
                                step=self.step.name, blob=proto.should_stop_blob)
            if proto.HasField("only_once") and proto.only_once:
                return lambda i: i == 0
            return lambda i: True
        if proto.HasField("only_once"):
            raise PlanError(f"{where} sets only_once without a should_stop_blob (only_once "
                            "is for steps stopped by a blob)", step=self.step.name)
        iterations = proto.num_iter if proto.HasField("num_iter") else 1
        return lambda i: i < iterations

    def should_continue(self, i: int) -> bool:
        return (self.step.external_continue(i) and self.own_continue(i)
                and not self.failed.is_set())

    def should_stop(self) -> bool:
        if self.stop_blob is None:
            return False
        value = self.ws.blobs.get(self.stop_blob)
        if value is None:
            return False  # created by a net but not written yet: Caffe2's empty blob
        if not (isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.size == 1):
            what = (f"a {value.dtype} tensor of shape {list(value.shape)}"
                    if isinstance(value, np.ndarray) else f"a {type(value).__name__}")
            raise PlanError(f"{self.step.where}: its should_stop_blob '{self.stop_blob}' "
                            f"holds {what}; it must be a bool tensor of one element",
                            step=self.step.name, blob=self.stop_blob)
        return bool(value.reshape(-1)[0])

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.first_error is None:
                self.first_error = error
            self.failed.set()

    def run_net(self, net: CreatedNet, iteration: int | None = None) -> None:
        """Run `net` as RunNet does; a failure gets a note naming this step."""
        try:
            net.run(self.ws)
        except Exception as e:
            when = "as its report net" if iteration is None else f"iteration {iteration}"
            e.add_note(f"while running net '{net.name}' in {self.step.where}, {when}")
            raise


class _Reporter:
    """Background threads, each running a function every so many seconds until stopped,
    and once more after (Caffe2's Reporter)."""

    def __init__(self, compiled: _CompiledStep):
        self.compiled = compiled
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, interval_s: float, fn: Callable[[], None], what: str) -> None:
        def loop():
            while True:
                self.done.wait(interval_s)
                try:
                    fn()
                except BaseException as e:  # noqa: BLE001 (handed to the step, raised there)
                    self.compiled.fail(e)
                    self.done.set()
                if self.done.is_set():
                    return
        thread = threading.Thread(target=loop, name=f"c2compile plan reporter: {what}",
                                  daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


# ----------------------------------------------------------------------------- running steps

def _execute(step: _Step) -> None:
    """Run one step (Caffe2's ExecuteStepRecursive); raises what failed."""
    compiled = step.compiled()
    proto = compiled.proto
    reporter = None
    if compiled.report_net is not None or compiled.reporting:
        reporter = _Reporter(compiled)
        if compiled.report_net is not None:
            net = compiled.report_net
            reporter.start(proto.report_interval, lambda: compiled.run_net(net),
                           f"report net '{net.name}'")
        for sub in compiled.reporting:
            reporter.start(sub.proto.run_every_ms / 1000.0, lambda sub=sub: _execute(sub),
                           f"step '{sub.name}'")
    try:
        _run_iterations(compiled)
    finally:
        if reporter is not None:
            reporter.stop()
    if compiled.first_error is not None:
        raise compiled.first_error


def _run_iterations(compiled: _CompiledStep) -> None:
    proto = compiled.proto
    if not compiled.nets and not compiled.recurring:
        return  # nothing runs per iteration (Caffe2 spun through its iterations, forever
        # under a stop blob, which it only reads after a net or substep)
    if not proto.substep:
        for i in itertools.count():
            if not compiled.should_continue(i):
                return
            for net in compiled.nets:
                compiled.run_net(net, i)
                if compiled.should_stop():
                    return
    sequential = ((not proto.concurrent_substeps or len(proto.substep) <= 1)
                  and (not proto.HasField("num_concurrent_instances")
                       or proto.num_concurrent_instances <= 1))
    for i in itertools.count():
        if not compiled.should_continue(i):
            return
        if sequential:
            for sub in compiled.recurring:
                _execute(sub)
                if compiled.should_stop():
                    return
        else:
            _run_concurrently(compiled)
            if compiled.should_stop():
                return


def _run_concurrently(compiled: _CompiledStep) -> None:
    """One iteration of a step with concurrent substeps: every substep in its own threads."""
    from c2compile import flags
    proto, subs = compiled.proto, compiled.recurring
    if not subs:
        return
    count = len(subs) * (proto.num_concurrent_instances
                         if proto.HasField("num_concurrent_instances") else 1)
    next_index = itertools.count()
    finished = threading.Condition()
    done = [0]

    def worker():
        try:
            sub = subs[next(next_index) % len(subs)]
            if compiled.failed.is_set():
                return
            try:
                _execute(sub)
            except BaseException as e:  # noqa: BLE001 (raised by the step below)
                compiled.fail(e)
        finally:
            with finished:
                done[0] += 1
                finished.notify_all()

    threads = [threading.Thread(target=worker, daemon=True,
                                name=f"c2compile plan step '{compiled.step.name}' #{k}")
               for k in range(count)]
    for thread in threads:
        thread.start()
    with finished:
        finished.wait_for(lambda: done[0] == count or compiled.failed.is_set())
        if done[0] != count:  # one failed: give the others time to stop
            finished.wait_for(lambda: done[0] == count,
                              timeout=flags.get("caffe2_plan_executor_exception_timeout"))
        all_done = done[0] == count
    if all_done:
        for thread in threads:
            thread.join()
    if compiled.first_error is not None:
        raise compiled.first_error


# ----------------------------------------------------------------------------- entry points

def run_plan(ws: Workspace, plan, should_continue: ShouldContinue | None = None) -> bool:
    """Run PlanDef `plan` on `ws` (see the module docstring); True, or raises.

    `plan` is used as given: copy it first if the caller may change it meanwhile.
    """
    if not plan.execution_step:
        return True  # Caffe2: nothing to run is a legal plan
    run = _PlanRun(plan, ws)
    keep_going = should_continue or (lambda i: True)
    for proto in plan.execution_step:
        _execute(_Step(proto, ws, keep_going, run, (proto.name,)))
    return True


class BackgroundPlan:
    """A plan running in a background thread (workspace.RunPlanInBackground)."""

    def __init__(self, ws: Workspace, plan):
        self._plan_name = plan.name
        self._result: bool | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

        def target():
            try:
                self._result = run_plan(ws, plan)
            except BaseException as e:  # noqa: BLE001 (raised by is_succeeded)
                self._error = e
            finally:
                self._done.set()

        self._thread = threading.Thread(target=target, daemon=True,
                                        name=f"c2compile plan '{plan.name}'")
        self._thread.start()

    def is_done(self) -> bool:
        return self._done.is_set()

    def is_succeeded(self) -> bool:
        """True once the plan ran; raises what made it fail. Asking before it is done is
        an error (poll is_done() first), as in Caffe2."""
        if not self._done.is_set():
            raise PlanError(f"plan '{self._plan_name}' is still running: is_succeeded() can "
                            "only be asked once is_done() is true")
        if self._error is not None:
            raise self._error
        return bool(self._result)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the plan ends (at most `timeout` seconds); returns is_done().
        (A c2compile addition: Caffe2 scripts poll is_done().)"""
        return self._done.wait(timeout)

    def __repr__(self) -> str:
        state = "done" if self.is_done() else "running"
        return f"<BackgroundPlan '{self._plan_name}': {state}>"


def run_plan_in_background(ws: Workspace, plan) -> BackgroundPlan:
    return BackgroundPlan(ws, plan)
