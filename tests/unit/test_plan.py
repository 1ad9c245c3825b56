"""Plans: core.Plan / ExecutionStep / execution_step and workspace.RunPlan, as Caffe2 1.10.

Every expectation written as a literal (protos, iteration counts, which blobs survive) was
observed with real Caffe2 1.10.2 (the PyTorch 1.10.2 wheel) running the same Python calls.
"""
import os
import subprocess
import sys
import textwrap
import threading

import hypothesis.strategies as st
import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import given, settings

from c2compile import config, core, workspace
from c2compile import plan as plan_module
from c2compile.errors import BlobError, C2Error, NetError, OpError, PlanError, ProtoError
from c2compile.plan import ExecutionStep, Plan
from c2compile.proto import caffe2_pb2

INT64 = core.DataType.INT64
WAIT_S = 20  # how long a test op waits for another thread before giving up (never reached)


@pytest.fixture
def fresh_names(monkeypatch):
    """Net and step names as in a fresh process (both are unique per process)."""
    monkeypatch.setattr(core.Net, "_net_names_used", set())
    monkeypatch.setattr(ExecutionStep, "_step_names_used", set())


def _text(proto) -> str:
    return text_format.MessageToString(proto)


def _same(proto, text: str) -> None:
    want = type(proto)()
    text_format.Parse(textwrap.dedent(text), want)
    assert proto == want, f"got:\n{_text(proto)}\nwant:\n{_text(want)}"


def counter_init(*names, value=0):
    net = core.Net("counters")
    for name in names:
        net.ConstantFill([], name, shape=[1], value=value, dtype=INT64)
    return net


def iter_net(name, counter):
    net = core.Net(name)
    net.Iter(counter, counter)
    return net


def fetch1(name) -> int:
    return int(workspace.FetchBlob(name)[0])


def feed_counters(**values):
    for name, v in values.items():
        workspace.FeedBlob(name, np.array([v], dtype=np.int64))


def python_net(name, fn):
    net = core.Net(name)
    net.Python(fn)([], [])
    return net


# ----------------------------------------------------------------------------- the Python API

def test_execution_step_protos_and_names_match_caffe2(fresh_names):
    a = core.Net("na")
    a.ConstantFill([], "x", shape=[1], value=1.0)
    b, c = core.Net("nb"), core.Net("nc")
    b.Relu("x", "y")
    c.Relu("y", "z")
    s0 = core.execution_step(None, [a, core.execution_step("inner", [b, c], num_iter=2)])
    _same(s0.Proto(), """
        name: "step"
        substep { name: "step_1" network: "na" num_iter: 1 }
        substep { name: "inner" network: "nb" network: "nc" num_iter: 2 }
        num_iter: 1
    """)
    assert [s.Name() for s in s0.Substeps()] == ["step_1", "inner"]
    assert [n.Name() for n in s0.Nets()] == ["na", "nb", "nc"]
    assert s0.get_net("nb") is b
    names = [core.execution_step(None, [a]).Name(), ExecutionStep(None).Name(),
             ExecutionStep("").Name()]
    assert names == ["step_2", "step_3", "step_4"]
    # every option, as Caffe2's execution_step writes it
    full = core.execution_step(
        "full_opts", [core.execution_step("s_a", a), core.execution_step("s_b", b)],
        should_stop_blob=core.BlobReference("stopme"), only_once=True,
        concurrent_substeps=True, num_concurrent_instances=2, create_workspace=True,
        run_every_ms=7)
    _same(full.Proto(), """
        name: "full_opts"
        substep { name: "s_a" network: "na" num_iter: 1 }
        substep { name: "s_b" network: "nb" num_iter: 1 }
        concurrent_substeps: true should_stop_blob: "stopme" only_once: true
        run_every_ms: 7 create_workspace: true num_concurrent_instances: 2
    """)
    rep = core.execution_step("withrep", b, num_iter=3, report_net=c, report_interval=1)
    _same(rep.Proto(), """
        name: "withrep" network: "nb" num_iter: 3 report_net: "nc" report_interval: 1
    """)
    assert [n.Name() for n in rep.Nets()] == ["nc", "nb"]  # the report net is set first
    # nets given by name: only the names are known
    by_name = ExecutionStep("names", ["na", "nb"], num_iter=4)
    _same(by_name.Proto(), 'name: "names" network: "na" network: "nb" num_iter: 4')
    assert by_name.Nets() == [None, None]
    with core.NameScope("ns"):
        assert core.scoped_execution_step("sc", a).Name() == "ns/sc"
        assert core.scoped_execution_step(None, a).Name() == "step_5"
    _same(core.to_execution_step([a, b], "tname").Proto(),
          'name: "tname" network: "na" network: "nb" num_iter: 1')
    assert core.to_execution_step(full) is full
    # options a step carries only when asked for
    plain = core.execution_step("plain", a, only_once=False, create_workspace=False)
    _same(plain.Proto(), 'name: "plain" network: "na" num_iter: 1 only_once: false')


def test_plan_collects_nets_in_order_of_use_without_duplicates(fresh_names):
    a, b, c, r = core.Net("na"), core.Net("nb"), core.Net("nc"), core.Net("rep")
    a.ConstantFill([], "x", shape=[1], value=1.0)
    b.Relu("x", "y")
    c.Relu("y", "z")
    r.ConstantFill([], "rr", shape=[1], value=1.0)
    top = core.execution_step("top", [
        core.execution_step("first", [a, b]),
        core.execution_step("withrep", [b], report_net=r, report_interval=2),
        core.execution_step("again", [c, a])])
    names: list = []
    core.add_nets_in_order(top, names)
    assert names == ["na", "nb", "rep", "nc"]
    plan = core.Plan("pl")
    plan.AddStep(top)
    plan.AddStep(core.execution_step("second", [c, b]))
    assert [n.name for n in plan.Proto().network] == ["na", "nb", "rep", "nc"]
    assert plan.Proto().network[0] == a.Proto() and plan.Nets() == [a, b, r, c]
    assert [s.Name() for s in plan.Steps()] == ["top", "second"] and str(plan) == "pl"
    assert len(plan.Proto().execution_step) == 2
    _same(plan.Proto().execution_step[0], """
        name: "top"
        substep { name: "first" network: "na" network: "nb" num_iter: 1 }
        substep { name: "withrep" network: "nb" num_iter: 1 report_net: "rep"
                  report_interval: 2 }
        substep { name: "again" network: "nc" network: "na" num_iter: 1 }
        num_iter: 1
    """)
    _same(plan.Proto().execution_step[1],
          'name: "second" network: "nc" network: "nb" num_iter: 1')
    # Plan(step): named after the step
    one = core.Plan(core.execution_step("solo", [a]))
    assert one.Proto().name == "solo" and [n.name for n in one.Proto().network] == ["na"]
    # steps with nothing in them are dropped, by plans and by parent steps
    empty = core.execution_step("empty", [])
    parent = core.execution_step("par", [empty, core.execution_step("full", a)])
    _same(parent.Proto(), 'name: "par" substep { name: "full" network: "na" num_iter: 1 } '
                          'num_iter: 1')
    assert [s.Name() for s in parent.Substeps()] == ["full"]
    p2 = core.Plan("p2")
    p2.AddStep(core.execution_step("nothing", []))
    assert len(p2.Proto().execution_step) == 0 and p2.Steps() == []
    # attributes of the nets used
    a.add_attribute("tag", 1)
    b.add_attribute("tag", 2)
    assert plan.get_all_attributes("tag") == [1, 2] and top.get_all_attributes("tag") == [1, 2]


def test_create_from_proto(fresh_names):
    # Nets rebuilt from a PlanDef are new core.Nets, whose names are unique per process:
    # rebuilding a plan whose nets exist here renames them, and the steps follow (Caffe2 too).
    a, b = core.Net("na"), core.Net("nb")
    a.ConstantFill([], "x", shape=[1], value=1.0)
    b.Relu("x", "y")
    plan = core.Plan("pl")
    plan.AddStep(core.execution_step("top", [
        core.execution_step("first", [a, b], should_stop_blob=core.BlobReference("s")),
        core.execution_step("withrep", [b], report_net=a, report_interval=2)],
        concurrent_substeps=True))
    again = Plan.create_from_proto(plan.Proto())
    assert [n.name for n in again.Proto().network] == ["na_1", "nb_1"]
    _same(again.Proto().execution_step[0], """
        name: "top"
        substep { name: "first" network: "na_1" network: "nb_1" should_stop_blob: "s" }
        substep { name: "withrep" network: "nb_1" num_iter: 1 }
        num_iter: 1 concurrent_substeps: true
    """)  # the (deprecated) report net is dropped
    assert [s.Name() for s in again.Steps()] == ["top"]
    assert len(again.Nets()) == 2 and all(isinstance(n, core.Net) for n in again.Nets())
    # a PlanDef whose names are free here comes back as it was
    text = """
        name: "fresh_plan"
        network { name: "fresh_a" op { output: "x" type: "ConstantFill" } }
        network { name: "fresh_b" op { input: "x" output: "y" type: "Relu" } }
        execution_step { name: "fresh" substep { name: "s1" network: "fresh_a" num_iter: 3 }
                         substep { name: "s2" network: "fresh_b" should_stop_blob: "q"
                                   only_once: true }
                         num_iter: 1 create_workspace: true num_concurrent_instances: 2
                         run_every_ms: 5 }
    """
    proto = caffe2_pb2.PlanDef()
    text_format.Parse(textwrap.dedent(text), proto)
    assert Plan.create_from_proto(proto).Proto() == proto
    with pytest.raises(AssertionError):
        Plan.create_from_proto(caffe2_pb2.NetDef())


def test_api_errors_are_caffe2s(fresh_names):
    a, b = core.Net("na"), core.Net("nb")
    a.ConstantFill([], "x", shape=[1], value=1.0)
    b.Relu("x", "y")
    with pytest.raises(AssertionError, match="Cannot set both should_stop_blob and num_iter"):
        core.execution_step("x", a, num_iter=2, should_stop_blob=core.BlobReference("q"))
    with pytest.raises(AssertionError, match="expects BlobReference here, got <class 'str'>"):
        core.execution_step("s", a, should_stop_blob="stop")
    with pytest.raises(AssertionError, match="Cannot have both network and substeps"):
        core.execution_step("x", core.execution_step("y", a)).AddNet(b)
    with pytest.raises(AssertionError, match="Cannot have both network and substeps"):
        core.execution_step("x2", a).AddSubstep(core.execution_step("y2", b))
    with pytest.raises(AssertionError, match="Cannot have both network and substeps"):
        core.execution_step("x3", a).SetConcurrentSubsteps(True)
    with pytest.raises(AssertionError):
        ExecutionStep("x5").AddNet("na")
    with pytest.raises(ValueError, match="steps_or_nets must be a step, a net, or a list"):
        core.execution_step("x4", "na")
    with pytest.raises(ValueError, match="name_or_step must be a string or ExecutionStep"):
        core.Plan(3)
    assert str(core.Plan(b"bytesname")) == "bytesname"
    used = core.execution_step("used", a)
    core.Plan("p").AddStep(used)
    with pytest.raises(AssertionError, match="Cannot mutate a step that has already been added"):
        used.SetIter(3)
    used.RunEveryMillis(3)  # never checked in Caffe2
    assert used.Proto().run_every_ms == 3
    # two different Nets under one name
    clash = core.Net("clash_x")
    clash.Proto().name = "na"
    with pytest.raises(AssertionError, match="Different nets with same name: na"):
        core.execution_step("dd", [core.execution_step("q1", a), core.execution_step("q2", clash)])
    assert core.ExecutionStep("q", a).HasNets() and not core.ExecutionStep("q").HasSubsteps()


def test_core_serves_the_plan_api():
    for name in ("Plan", "ExecutionStep", "execution_step", "scoped_execution_step",
                 "to_execution_step", "add_nets_in_order", "get_net_name"):
        assert getattr(core, name) is getattr(plan_module, name)
        assert name in dir(core)
    with pytest.raises(AttributeError):
        core.NoSuchThing  # noqa: B018


# ----------------------------------------------------------------------------- iterations

@given(initial=st.integers(0, 100), num_iters=st.integers(0, 12))
@settings(max_examples=12, deadline=None)
def test_num_iter_runs_the_nets_that_many_times(initial, num_iters):
    workspace.ResetWorkspace()
    feed_counters(iter=initial)
    step = core.ExecutionStep("step", [iter_net("it_net", "iter")])
    step.SetIter(num_iters)
    plan = core.Plan("plan")
    plan.AddStep(step)
    assert workspace.RunPlan(plan) is True
    got = workspace.FetchBlob("iter")
    assert got.dtype == np.int64 and got[0] == initial + num_iters


def test_default_is_one_iteration_and_nested_steps_multiply():
    feed_counters(ca=0, cb=0)
    a, b = iter_net("na", "ca"), iter_net("nb", "cb")
    inner = core.execution_step("inner", [core.execution_step("ia", a, num_iter=2),
                                          core.execution_step("ib", b)], num_iter=3)
    workspace.RunPlan(core.execution_step("outer", inner, num_iter=2))
    assert (fetch1("ca"), fetch1("cb")) == (12, 6)
    workspace.RunPlan(core.execution_step("once", [a, b]))
    assert (fetch1("ca"), fetch1("cb")) == (13, 7)


def _stop_net(name, counter, limit):
    """Iter `counter`, then stop = counter >= limit (a one-element bool tensor)."""
    net = core.Net(name)
    net.Iter(counter, counter)
    net.GE([counter, limit], "stop")
    return net


@given(k=st.integers(1, 8), stop_in_first=st.booleans())
@settings(max_examples=12, deadline=None)
def test_should_stop_blob_is_read_after_each_net(k, stop_in_first):
    workspace.ResetWorkspace()
    feed_counters(ca=0, cb=0, K=k)
    workspace.FeedBlob("stop", np.array([False]))
    if stop_in_first:
        nets = [_stop_net("na", "ca", "K"), iter_net("nb", "cb")]
    else:
        nets = [iter_net("na", "ca"), _stop_net("nb", "cb", "K")]
    step = core.execution_step("loop", nets, should_stop_blob=core.BlobReference("stop"))
    _same(step.Proto(), f'name: "loop" network: "{nets[0].Name()}" network: "{nets[1].Name()}" '
                        'should_stop_blob: "stop"')  # and no num_iter
    workspace.RunPlan(step)
    # Caffe2 1.10.2, k=3: (3, 2) when the first net sets it, (3, 3) when the second does
    assert (fetch1("ca"), fetch1("cb")) == ((k, k - 1) if stop_in_first else (k, k))


def test_should_stop_is_not_read_before_the_first_net_and_only_once():
    feed_counters(cb=2)
    workspace.FeedBlob("stop", np.array(True))
    b = iter_net("nb", "cb")
    workspace.RunPlan(core.execution_step("pre", [b], should_stop_blob=core.BlobReference("stop")))
    assert fetch1("cb") == 3  # already true: the net still runs once
    workspace.FeedBlob("stop", np.array(False))
    workspace.RunPlan(core.execution_step("oo", [b], should_stop_blob=core.BlobReference("stop"),
                                          only_once=True))
    assert fetch1("cb") == 4


def test_should_stop_of_a_parent_is_read_after_each_substep():
    feed_counters(ca=0, cb=0, three=3)
    workspace.FeedBlob("stop", np.array([False]))
    a2, b2 = _stop_net("a2", "ca", "three"), iter_net("b2", "cb")
    workspace.RunPlan(core.execution_step(
        "parent", [core.execution_step("sa", a2), core.execution_step("sb", b2)],
        should_stop_blob=core.BlobReference("stop")))
    assert (fetch1("ca"), fetch1("cb")) == (3, 2)
    # a substep's own stop blob stops only that substep (its parent goes on)
    feed_counters(ca=0, cb=0)
    workspace.FeedBlob("stop", np.array([False]))
    workspace.RunPlan(core.execution_step(
        "parent2", [core.execution_step("sa2", a2, should_stop_blob=core.BlobReference("stop")),
                    core.execution_step("sb2", b2)], num_iter=2))
    assert (fetch1("ca"), fetch1("cb")) == (4, 2)


def test_should_stop_written_only_by_the_steps_own_net():
    # Caffe2 created every net output as an empty blob when it created the net: the stop
    # blob "exists" (and reads false) before the net first writes it.
    feed_counters(ca=0, three=3)
    c = _stop_net("c", "ca", "three")
    workspace.RunPlan(core.execution_step("loop", [c], should_stop_blob=core.BlobReference("stop")))
    assert fetch1("ca") == 3


def test_caffe2_criteria_net_and_disabled_steps():
    # Adapted from Caffe2's hypothesis_test.py (should_stop_as_criteria, disabled step).
    for initial, max_iters in ((0, 5), (7, 3), (4, 4)):
        workspace.ResetWorkspace()
        feed_counters(iter=initial, num_iters=max_iters)
        net = iter_net("net", "iter")
        criteria = core.Net("criteria")
        criteria.GE(["iter", "num_iters"], ["stop"])
        criteria.Proto().external_output.extend(["stop"])
        plan = core.Plan("plan")
        plan.AddStep(core.execution_step("step", [criteria, net],
                                         should_stop_blob=core.BlobReference("stop")))
        workspace.RunPlan(plan)
        assert fetch1("iter") == max(initial, max_iters)

    def nets(i, disabled):
        stop, out = f"should_stop_{i}", f"output_{i}"
        init = core.Net(f"init_{i}")
        init.ConstantFill([], [out], shape=[1], value=0.0)
        init.Cast([out], [stop], to="bool")
        criterion = core.Net(f"criterion_{i}")
        tmp = criterion.ConstantFill([], shape=[1], value=1.0 if disabled else 0.0)
        criterion.Cast([tmp], [stop], to="bool")
        body = core.Net(f"net_{i}")
        body.ConstantFill([], [out], shape=[1], value=1.0)
        ender = core.Net(f"ender_{i}")
        tmp = ender.ConstantFill([], shape=[1], value=1.0)
        ender.Cast([tmp], [stop], to="bool")
        return [init, criterion, body, ender]

    steps = [core.execution_step("step_1", nets(1, False),
                                 should_stop_blob=core.BlobReference("should_stop_1")),
             core.execution_step("step_2", nets(2, True),
                                 should_stop_blob=core.BlobReference("should_stop_2")),
             core.execution_step("step_3", nets(3, False))]
    plan = core.Plan("plan")
    plan.AddStep(core.execution_step("all_steps", steps, num_iter=3))
    workspace.RunPlan(plan)
    assert [workspace.FetchBlob(f"output_{i}")[0] for i in (1, 2, 3)] == [1.0, 0.0, 1.0]


# ----------------------------------------------------------------------------- nets in plans

def test_plan_nets_run_compiled_and_stay_created():
    if config.backend != "cpu":
        pytest.skip("compiled nets need the cpu backend")
    feed_counters(ca=0)
    x = iter_net("xnet", "ca")
    workspace.CreateNet(x)
    x.Iter("ca", "ca")  # the plan's xnet has two Iters: it replaces the created one
    workspace.RunPlan(core.execution_step("ov", x, num_iter=2))
    assert fetch1("ca") == 4
    workspace.RunNet("xnet")  # the plan's net stays created
    assert fetch1("ca") == 6
    created = workspace._ws().nets["xnet"]
    assert created.compiled is not None
    assert any(seg.compiled and seg.variants for seg in created.compiled.segments)


def test_nets_are_created_once_per_plan_run_before_the_step_runs():
    # Creating every net of a step before it runs is what lets a later net read a blob an
    # earlier net of the same step writes (Caffe2 created that blob empty at creation).
    init = core.Net("mk")
    init.ConstantFill([], "v", shape=[1], value=0, dtype=INT64)
    body = iter_net("body", "v")
    plan = core.Plan("p")
    plan.AddStep(core.execution_step("top", [core.execution_step("s", init),
                                             core.execution_step("b", body, num_iter=5)]))
    workspace.RunPlan(plan)
    assert fetch1("v") == 5
    created = workspace._ws().nets["body"]
    workspace.RunPlan(plan)  # a new run creates the nets again
    assert workspace._ws().nets["body"] is not created and fetch1("v") == 5


def test_op_failure_raises_what_runnet_raises_and_keeps_earlier_nets_blobs():
    ok = core.Net("ok")
    ok.ConstantFill([], "willstay", shape=[1], value=3.0)
    bad = core.Net("bad")
    bad.ConstantFill([], "made", shape=[1], value=4.0)
    bad.Reshape(["made"], ["r", "oldshape"], shape=[5, 7])
    with pytest.raises(OpError) as info:
        workspace.RunPlan(core.execution_step("failstep", [ok, bad], num_iter=3))
    plan_error = info.value
    assert plan_error.net == "bad" and plan_error.op_type == "Reshape"
    assert any("execution step 'failstep'" in n and "iteration 0" in n
               for n in plan_error.__notes__)
    assert workspace.FetchBlob("willstay")[0] == 3.0  # written by a net that completed
    after_plan = set(workspace.Blobs())
    # exactly what RunNet raises and leaves, in a workspace of its own
    workspace.SwitchWorkspace("runnet", True)
    workspace.RunNetOnce(ok)
    workspace.CreateNet(bad)
    with pytest.raises(OpError) as info:
        workspace.RunNet("bad")
    assert type(info.value) is type(plan_error) and str(info.value) == str(plan_error)
    assert set(workspace.Blobs()) == after_plan


def test_python_op_errors_keep_their_type():
    def boom(inputs, outputs):
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom") as info:
        workspace.RunPlan(core.execution_step("pystep", python_net("py", boom)))
    assert any("execution step 'pystep'" in n for n in info.value.__notes__)


def test_net_creation_checks_inputs():
    n = core.Net("reads_missing")
    n.Relu("zz", "yy")
    with pytest.raises(BlobError) as info:
        workspace.RunPlan(core.Plan(core.execution_step("s1", n)))
    assert info.value.blob == "zz" and info.value.op_type == "Relu"
    assert any("execution step 's1'" in note for note in info.value.__notes__)
    assert workspace.Blobs() == []


# ----------------------------------------------------------------------------- plan errors

def _plan(text: str):
    plan = caffe2_pb2.PlanDef()
    text_format.Parse(textwrap.dedent(text), plan)
    return plan


M_NET = ('network { name: "m" op { output: "c" type: "ConstantFill" '
         'arg { name: "shape" ints: 1 } } }')


def test_plan_errors_name_the_step_and_what_is_wrong():
    with pytest.raises(PlanError,
                       match="execution step 'stepX' of plan 'pp' uses net 'nonet'") as e:
        workspace.RunPlan(_plan('name: "pp" execution_step { name: "stepX" network: "nonet" }'))
    assert (e.value.step, e.value.net) == ("stepX", "nonet")
    with pytest.raises(PlanError, match="'both' .* has both nets") as e:
        workspace.RunPlan(_plan(f'name: "pp2" {M_NET} execution_step {{ name: "both" '
                                'network: "m" substep { name: "sub" network: "m" } }'))
    assert e.value.step == "both"
    with pytest.raises(PlanError, match="two nets named 'm'"):
        workspace.RunPlan(_plan(f'name: "dup" {M_NET} {M_NET} '
                                'execution_step { name: "d" network: "m" }'))
    with pytest.raises(PlanError, match="sets both num_iter and should_stop_blob 'st'"):
        workspace.FeedBlob("st", np.array(False))
        workspace.RunPlan(_plan(f'name: "pp3" {M_NET} execution_step {{ name: "itstop" '
                                'network: "m" num_iter: 3 should_stop_blob: "st" }'))
    m = core.Net("m2")
    m.ConstantFill([], "c", shape=[1], value=1.0)
    with pytest.raises(PlanError, match="'oo' .* only_once without a should_stop_blob"):
        workspace.RunPlan(core.execution_step("oo", m, only_once=True))
    with pytest.raises(PlanError, match="should_stop_blob 'nosuchblob' does not exist") as e:
        workspace.RunPlan(core.execution_step("stopmissing", m,
                                              should_stop_blob=core.BlobReference("nosuchblob")))
    assert (e.value.step, e.value.blob) == ("stopmissing", "nosuchblob")
    for value, what in ((np.array([1.0], np.float32), "float32 tensor of shape \\[1\\]"),
                        (np.array([False, False]), "bool tensor of shape \\[2\\]")):
        workspace.FeedBlob("badstop", value)
        with pytest.raises(PlanError, match=f"'badstop' holds a {what}; it must be a bool"):
            workspace.RunPlan(core.execution_step(
                "stopbad", m, should_stop_blob=core.BlobReference("badstop")))
    assert issubclass(PlanError, NetError) and issubclass(PlanError, C2Error)


def test_runplan_takes_plans_steps_protos_and_bytes():
    n = core.Net("filler")
    n.ConstantFill([], "testblob", shape=[1, 2], value=1.0)
    plan = core.Plan("test-plan")
    plan.AddStep(core.ExecutionStep("test-step", n))
    assert workspace.RunPlan(plan.Proto().SerializeToString()) is True
    assert workspace.HasBlob("testblob")
    workspace.ResetWorkspace()
    assert workspace.RunPlan(core.ExecutionStep("test-step-as-plan", n)) is True
    assert workspace.HasBlob("testblob")
    assert workspace.RunPlan(plan.Proto()) is True and workspace.RunPlan(plan) is True
    assert workspace.RunPlan(core.Plan("empty")) is True  # nothing to run is fine
    assert workspace.RunPlan(core.execution_step("emptystep", [])) is True
    with pytest.raises(TypeError, match="RunPlan takes"):
        workspace.RunPlan(n.Proto())
    with pytest.raises(ProtoError, match="PlanDef"):
        workspace.RunPlan(b"\xff\xff\xff")


# ----------------------------------------------------------------------------- create_workspace

def test_create_workspace_shares_parent_blobs_and_drops_its_own():
    feed_counters(ca=0)
    n = core.Net("cw")
    n.Iter("ca", "ca")
    n.ConstantFill([], "local", shape=[2], value=1.0)
    step = core.execution_step("cws", n, num_iter=2, create_workspace=True)
    _same(step.Proto(), 'name: "cws" network: "cw" num_iter: 2 create_workspace: true')
    workspace.RunPlan(core.Plan(step))
    assert fetch1("ca") == 2 and not workspace.HasBlob("local")
    assert "cw" not in workspace._ws().nets  # the child's nets went with it


def test_create_workspace_is_fresh_each_time_the_step_runs():
    feed_counters(ca=0)
    n2 = core.Net("cw2")
    n2.ConstantFill([], "loc2", shape=[1], value=0, dtype=INT64)
    n3 = core.Net("cw3")
    n3.Iter("loc2", "loc2")
    n3.Copy("loc2", "ca")
    inner = core.execution_step("inner", [core.execution_step("mk", n2),
                                          core.execution_step("sub_it", [n3], num_iter=2)],
                                create_workspace=True)
    workspace.RunPlan(core.execution_step("outer", [inner], num_iter=3))
    # each run of "inner" starts from a new child (loc2 from 0): Caffe2 1.10.2 gives 2
    assert fetch1("ca") == 2 and not workspace.HasBlob("loc2")
    assert sorted(workspace._ws().nets) == []


def test_child_workspaces_get_a_global_workspace_id_when_there_is_a_node_id():
    workspace.FeedBlob("NODE_ID", np.array([3], np.int32))
    seen = []
    n = core.Net("ids")
    n.Copy("GLOBAL_WORKSPACE_ID", "seen_id")
    n.Python(lambda inputs, outputs: seen.append(int(inputs[0].data)))(["seen_id"], [])
    workspace.RunPlan(core.execution_step(
        "outer", [core.execution_step("child", n, create_workspace=True)], num_iter=3))
    assert seen == [196608, 196609, 196610]  # Caffe2 1.10.2: int32 scalars (3 << 16) + n
    assert not workspace.HasBlob("GLOBAL_WORKSPACE_ID") and not workspace.HasBlob("seen_id")


# ----------------------------------------------------------------------------- threads

def test_concurrent_substeps_run_at_the_same_time():
    ev1, ev2, seen = threading.Event(), threading.Event(), {}

    def f1(inputs, outputs):
        ev1.set()
        seen["f1"] = ev2.wait(WAIT_S)

    def f2(inputs, outputs):
        ev2.set()
        seen["f2"] = ev1.wait(WAIT_S)

    step = core.execution_step("conc", [core.execution_step("c1", python_net("n1", f1)),
                                        core.execution_step("c2", python_net("n2", f2))],
                               concurrent_substeps=True)
    _same(step.Proto(), """
        name: "conc"
        substep { name: "c1" network: "n1" num_iter: 1 }
        substep { name: "c2" network: "n2" num_iter: 1 }
        num_iter: 1 concurrent_substeps: true
    """)
    workspace.RunPlan(step)
    assert seen == {"f1": True, "f2": True}  # each saw the other one running


@given(instances=st.integers(1, 3), substeps=st.integers(1, 3), iters=st.integers(1, 3))
@settings(max_examples=8, deadline=None)
def test_num_concurrent_instances_runs_each_substep_that_many_times(instances, substeps, iters):
    lock, calls = threading.Lock(), []

    def count(inputs, outputs):
        with lock:
            calls.append(threading.get_ident())

    net = python_net("counted", count)
    step = core.execution_step("inst", [core.execution_step(f"i{k}", net)
                                        for k in range(substeps)],
                               concurrent_substeps=True, num_concurrent_instances=instances,
                               num_iter=iters)
    workspace.RunPlan(step)
    # Caffe2 1.10.2: 2 substeps x 2 instances x 2 iterations ran 8 times
    assert len(calls) == substeps * instances * iters


def test_atomic_iter_with_concurrent_steps():
    """Compiled AtomicIters of concurrent substeps share one counter under one mutex: the
    segment holds it from reading the counter to committing it, so no increment is lost."""
    # Adapted from Caffe2's hypothesis_test.py.
    for initial, num_iters, num_nets in ((0, 0, 3), (5, 20, 4), (3, 7, 1)):
        workspace.ResetWorkspace()
        init = core.Net("init_net")
        mutex = init.CreateMutex([], ["iter_mutex"])
        feed_counters(iter=initial)
        steps = core.ExecutionStep("concurrent_steps", num_iter=num_iters)
        for i in range(num_nets):
            net = core.Net(f"net_{i}")
            net.AtomicIter([mutex, "iter"], ["iter"])
            steps.AddSubstep(core.ExecutionStep("step", [net]))
        steps.SetConcurrentSubsteps(True)
        plan = core.Plan("plan")
        plan.AddStep(steps)
        workspace.RunNetOnce(init)
        workspace.RunPlan(plan)
        assert fetch1("iter") == initial + num_iters * num_nets


def test_a_failing_concurrent_substep_stops_the_others_and_is_raised():
    started, ran = threading.Event(), []

    def bad(inputs, outputs):
        started.wait(WAIT_S)
        raise ValueError("boom")

    def slow(inputs, outputs):
        ran.append(1)
        started.set()

    step = core.execution_step("concfail", [
        core.execution_step("bad", python_net("nbad", bad)),
        core.execution_step("slow", python_net("nslow", slow), num_iter=100000)],
        concurrent_substeps=True)
    with pytest.raises(ValueError, match="boom") as info:
        workspace.RunPlan(step)
    assert any("execution step 'bad' (in 'concfail')" in n for n in info.value.__notes__)
    assert 1 <= len(ran) < 100000  # stopped at an iteration boundary, not run to the end


def test_report_net_runs_while_the_step_runs():
    reported, seen = threading.Event(), []

    def work(inputs, outputs):
        seen.append(reported.wait(WAIT_S))

    def report(inputs, outputs):
        reported.set()

    rep = python_net("rep", report)
    step = core.execution_step("withrep", python_net("work", work), report_net=rep,
                               report_interval=1)
    plan = core.Plan(step)
    assert [n.name for n in plan.Proto().network] == ["work", "rep"]
    workspace.RunPlan(plan)
    assert seen == [True]  # the work net waited for a report made while it ran


def test_report_net_runs_once_more_when_the_step_ends():
    feed_counters(wc=0)
    log = []

    def report(inputs, outputs):
        log.append(int(workspace.FetchBlob("wc")[0]))

    step = core.execution_step("withrep", iter_net("work", "wc"), num_iter=3,
                               report_net=python_net("rep", report), report_interval=1)
    workspace.RunPlan(step)
    assert len(log) >= 1 and log[-1] == 3  # Caffe2 1.10.2: ran once, after the 3 iterations


def test_a_failing_report_net_fails_the_step_when_it_ends():
    # Caffe2 aborted the process here (unless --caffe2_handle_executor_threads_exceptions);
    # c2compile raises the report net's error once the step has ended.
    feed_counters(wc=0)

    def report(inputs, outputs):
        raise ValueError("report failed")

    step = core.execution_step("withbadrep", iter_net("work", "wc"), num_iter=3,
                               report_net=python_net("badrep", report), report_interval=1)
    with pytest.raises(ValueError, match="report failed") as info:
        workspace.RunPlan(step)
    assert any("as its report net" in n for n in info.value.__notes__)
    assert fetch1("wc") == 3


def test_run_every_ms_substep_runs_beside_the_others():
    ticked, seen, ticks = threading.Event(), [], []

    def work(inputs, outputs):
        seen.append(ticked.wait(WAIT_S))

    def tick(inputs, outputs):
        ticks.append(1)
        ticked.set()

    step = core.execution_step("parent", [
        core.execution_step("work", python_net("work", work)),
        core.execution_step("tick", python_net("tick", tick), run_every_ms=5)])
    workspace.RunPlan(step)
    # the ticking step is not one of the substeps run in turn: the work waited for it
    assert seen == [True] and len(ticks) >= 1


def test_run_plan_in_background():
    go = threading.Event()

    def hold(inputs, outputs):
        go.wait(WAIT_S)

    net = python_net("held", hold)
    net.ConstantFill([], "testblob", shape=[1], value=1.0)
    plan = core.Plan("test-plan")
    plan.AddStep(core.ExecutionStep("test-step", net))
    background = workspace.RunPlanInBackground(plan)
    assert not background.is_done()
    with pytest.raises(PlanError, match="still running"):
        background.is_succeeded()
    go.set()
    assert background.wait(WAIT_S) and background.is_done()
    assert background.is_succeeded() is True and workspace.HasBlob("testblob")
    bad = core.Net("bgfail")
    bad.ConstantFill([], "f", shape=[3], value=1.0)
    bad.Reshape("f", ["o", "os"], shape=[7])
    background = workspace.RunPlanInBackground(core.execution_step("bgf", bad))
    assert background.wait(WAIT_S)
    with pytest.raises(OpError, match="Reshape"):
        background.is_succeeded()


# ----------------------------------------------------------------------------- through compat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Cases from Caffe2's workspace_test.py, operator_test/python_op_test.py and
# toy_regression_test.py, as written there (only the model's Print ops are left out).
CAFFE2_PLAN_TESTS = '''
import unittest

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

import caffe2.python.hypothesis_test_util as hu
from caffe2.python import core, test_util, workspace
from caffe2.python.core import CreatePythonOperator


class TestWorkspacePlans(test_util.TestCase):
    def setUp(self):
        super().setUp()
        self.net = core.Net("test-net")
        self.net.ConstantFill([], "testblob", shape=[1, 2, 3, 4], value=1.0)

    def testRunPlan(self):
        plan = core.Plan("test-plan")
        plan.AddStep(core.ExecutionStep("test-step", self.net))
        self.assertEqual(workspace.RunPlan(plan.Proto().SerializeToString()), True)
        self.assertEqual(workspace.HasBlob("testblob"), True)

    def testRunPlanInBackground(self):
        plan = core.Plan("test-plan")
        plan.AddStep(core.ExecutionStep("test-step", self.net))
        background_plan = workspace.RunPlanInBackground(plan)
        while not background_plan.is_done():
            pass
        self.assertEqual(background_plan.is_succeeded(), True)
        self.assertEqual(workspace.HasBlob("testblob"), True)

    def testConstructPlanFromSteps(self):
        step = core.ExecutionStep("test-step-as-plan", self.net)
        self.assertEqual(workspace.RunPlan(step), True)
        self.assertEqual(workspace.HasBlob("testblob"), True)


class PythonOpTest(hu.HypothesisTestCase):
    @given(x=hu.tensor(), n=st.integers(min_value=1, max_value=20),
           w=st.integers(min_value=1, max_value=20))
    @settings(deadline=10000, max_examples=5)
    def test_simple_python_op(self, x, n, w):
        def g(input_, output):
            output[...] = input_

        def f(inputs, outputs):
            outputs[0].reshape(inputs[0].shape)
            g(inputs[0].data, outputs[0].data)

        ops = [CreatePythonOperator(f, ["x"], [str(i)]) for i in range(n)]
        net = core.Net("net")
        net.Proto().op.extend(ops)
        net.Proto().type = "dag"
        net.Proto().num_workers = w
        iters = 100
        plan = core.Plan("plan")
        plan.AddStep(core.ExecutionStep("test-step", net, iters))
        workspace.FeedBlob("x", x)
        workspace.RunPlan(plan.Proto().SerializeToString())
        for i in range(n):
            y = workspace.FetchBlob(str(i))
            np.testing.assert_almost_equal(x, y)


class TestToyRegression(test_util.TestCase):
    def testToyRegression(self):
        workspace.ResetWorkspace()
        init_net = core.Net("init")
        W = init_net.UniformFill([], "W", shape=[1, 2], min=-1., max=1.)
        B = init_net.ConstantFill([], "B", shape=[1], value=0.0)
        W_gt = init_net.GivenTensorFill([], "W_gt", shape=[1, 2], values=[2.0, 1.5])
        B_gt = init_net.GivenTensorFill([], "B_gt", shape=[1], values=[0.5])
        LR = init_net.ConstantFill([], "LR", shape=[1], value=-0.1)
        ONE = init_net.ConstantFill([], "ONE", shape=[1], value=1.)
        ITER = init_net.ConstantFill([], "ITER", shape=[1], value=0,
                                     dtype=core.DataType.INT64)

        train_net = core.Net("train")
        X = train_net.GaussianFill([], "X", shape=[64, 2], mean=0.0, std=1.0)
        Y_gt = X.FC([W_gt, B_gt], "Y_gt")
        Y_pred = X.FC([W, B], "Y_pred")
        dist = train_net.SquaredL2Distance([Y_gt, Y_pred], "dist")
        loss = dist.AveragedLoss([], ["loss"])
        input_to_grad = train_net.AddGradientOperators([loss], skip=2)
        train_net.Iter(ITER, ITER)
        train_net.LearningRate(ITER, "LR", base_lr=-0.1,
                               policy="step", stepsize=20, gamma=0.9)
        train_net.WeightedSum([W, ONE, input_to_grad[str(W)], LR], W)
        train_net.WeightedSum([B, ONE, input_to_grad[str(B)], LR], B)

        plan = core.Plan("toy_regression")
        plan.AddStep(core.ExecutionStep("init", init_net))
        plan.AddStep(core.ExecutionStep("train", train_net, 200))

        workspace.RunPlan(plan)
        W_result = workspace.FetchBlob("W")
        B_result = workspace.FetchBlob("B")
        np.testing.assert_array_almost_equal(W_result, [[2.0, 1.5]], decimal=2)
        np.testing.assert_array_almost_equal(B_result, [0.5], decimal=2)
        workspace.ResetWorkspace()


if __name__ == "__main__":
    unittest.main()
'''


def test_caffe2_plan_tests_pass_through_compat(tmp_path):
    (tmp_path / "plan_test.py").write_text(CAFFE2_PLAN_TESTS)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["CAFFE2_HYPOTHESIS_PROFILE"] = "dev"
    env.pop("HYPOTHESIS_PROFILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", "import c2compile.compat, sys, pytest; "
         "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--rootdir', '.', "
         "'plan_test.py']))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "5 passed" in out, out


def test_a_standalone_workspace_runs_plans():
    """test_util's StandaloneWorkspace (Caffe2's `workspace.C.Workspace`, what
    hypothesis_test's `self.ws.run(plan)` uses) runs a core.Plan, a core.ExecutionStep and a
    PlanDef on its own blobs, leaving the current workspace alone."""
    from c2compile.test_util import StandaloneWorkspace
    ws = StandaloneWorkspace()
    net = core.Net("count")
    net.ConstantFill([], "one", shape=[1], value=1.0)
    net.Add(["acc", "one"], "acc")
    ws.create_blob("acc").feed(np.zeros(1, np.float32))
    step = core.ExecutionStep("step", [net], num_iter=3)
    plan = core.Plan("plan")
    plan.AddStep(step)
    for runnable in (plan, step, plan.Proto()):
        assert ws.run(runnable)
    assert ws.blobs["acc"].fetch()[0] == 9.0
    assert not workspace.HasBlob("acc")
