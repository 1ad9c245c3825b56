#!/usr/bin/env python
"""Run Caffe2's own operator tests through `c2compile.compat` and tabulate the results.

    .venv/bin/python tools/run_caffe2_op_tests.py                    # the default files
    .venv/bin/python tools/run_caffe2_op_tests.py pooling_test conv_test --max-examples 5
    .venv/bin/python tools/run_caffe2_op_tests.py --caffe2-tests DIR --all --json out.json

One yardstick of the project is that Caffe2's operator tests (`caffe2/python/operator_test/`
of a Caffe2 install, e.g. the PyTorch 1.10.2 wheel for Python 3.6) pass unchanged through
`c2compile.compat` for every op c2compile defines. This tool measures that.

For each chosen test file it copies the file, alone, into a fresh temporary folder next to a
generated `conftest.py` (which does `import c2compile.compat` before pytest imports the test,
so every `caffe2.*` import resolves to c2compile) and runs pytest on it in a subprocess with a
wall-clock limit (`--timeout`, per file): a hanging file is killed and counted, and the
others still run. Caffe2's code is only ever copied to that temporary folder; nothing of it
enters this repository. Each test's outcome is streamed to a JSON-lines file as it happens,
so a file that times out still reports the tests it finished.

Failures (and errors) are classified:

  (a) grad     no gradient: the op has no gradient rule (c2compile's GradientError), the
               test ran an op `...Gradient` that c2compile does not define, or (with
               `--defer-gradients`) its deferred gradient checks were not run;
  (b) unk-op   unknown op type (expected): the test runs an op c2compile does not define;
      later    a c2compile module that lands with a later issue (compat's placeholders, e.g.
               `net_drawer`, raise "... lands with ...");
      env      the test's own Python 3.6-era code fails on Python 3.11 / numpy 2 (e.g.
               `int()` of a 1-element array, indexing with a list of slices), raised in the
               test file's code, not c2compile's;
  (c) other    everything else: a real discrepancy to look at (listed after the table).

A test whose failure mixes kinds (hypothesis can report several distinct errors) counts in the
first of other, env, later, unk-op, grad that occurs.

Unless `--no-shims`, the names such code uses that are gone but have an exact old meaning are
restored in the test process (`np.str`/`np.float`/... as the builtins, `inspect.getargspec`,
`np.sum` of a generator as the builtin `sum`), as numpy 1.x and Python 3.6 had them. Failures
no shim can cure stay "env"; `--python` can point at an interpreter with numpy 1.x instead.

Gradient checks run as in Caffe2. With `--defer-gradients`, `assertGradientChecks` (and the
gradient part of `assertReferenceChecks`) is only recorded and the test goes on, so its
forward checks run for every example; a test that otherwise passed then fails as class (a):
a way to see forward discrepancies that a failing gradient check would hide.

`--reference-only` unregisters every device-check backend but the numpy reference executor,
so that the run checks c2compile's op definitions alone (not the generated kernels).

Hypothesis: a profile with `--max-examples` examples (default 10, Caffe2's "dev"),
derandomized (`--seed N` draws from hypothesis seed N instead; `--random` draws freshly), no
deadline, no shrinking (`--shrink` turns it on: slower, minimal failing examples). A test's own
`@settings(max_examples=...)` still wins, as in Caffe2. `$CAFFE2_HYPOTHESIS_PROFILE` is removed
from the children's environment so that it cannot override this profile.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_TESTS_DIR = "/tmp/c2ref/lib/python3.6/site-packages/caffe2/python/operator_test"

# The operator-test files (names in Caffe2 1.10's operator_test/) whose ops c2compile defines,
# with the op types each one is there for. Files that test mainly ops c2compile does not
# define are left out even where they touch one of ours in passing (use --all to see them).
DEFAULT_FILES = {
    "activation_ops_test": "Relu Elu LeakyRelu",
    "arg_ops_test": "ArgMax ArgMin",
    "cast_op_test": "Cast",
    "ceil_op_test": "Ceil",
    "clip_op_test": "Clip",
    "concat_split_op_test": "Concat Split DepthConcat DepthSplit",
    "conv_test": "Conv Conv1D Conv2D Conv3D",
    "conv_transpose_test": "ConvTranspose",
    "cross_entropy_ops_test": "CrossEntropy LabelCrossEntropy",
    "depthwise_3x3_conv_test": "Conv (group = channels)",
    "distance_op_test": "SquaredL2Distance",
    "dropout_op_test": "Dropout",
    "elementwise_op_broadcast_test": "Add Sub Mul Div Pow (broadcast)",
    "elementwise_ops_test": "unary and binary elementwise ops",
    "fc_operator_test": "FC FCTransposed",
    "filler_ops_test": "ConstantFill UniformFill GaussianFill MSRAFill XavierFill ...",
    "flatten_op_test": "Flatten",
    "floor_op_test": "Floor",
    "given_tensor_fill_op_test": "GivenTensor*Fill",
    "group_conv_test": "Conv (group)",
    "hyperbolic_ops_test": "Sinh Cosh Tanh",
    "leaky_relu_test": "LeakyRelu",
    "learning_rate_op_test": "LearningRate",
    "loss_ops_test": "AveragedLoss",
    "math_ops_test": "Pow Sign",
    "matmul_op_test": "MatMul BatchMatMul",
    "pooling_test": "MaxPool AveragePool (1D/2D/3D)",
    "python_op_test": "Python",
    "reduce_ops_test": "ReduceSum ReduceMean ReduceMax ReduceMin ReduceL1 ReduceL2",
    "reduction_ops_test": "SumElements SumElementsInt SumSqrElements",
    "reshape_ops_test": "Reshape",
    "scale_op_test": "Scale",
    "softmax_ops_test": "Softmax SoftmaxWithLoss",
    "softplus_op_test": "Softplus",
    "spatial_bn_op_test": "SpatialBN",
    "transpose_op_test": "Transpose",
    "trigonometric_op_test": "Sin Cos Tan Asin Acos Atan",
    "utility_ops_test": "Sum Max Min Slice Transpose ...",
    "weighted_sum_test": "WeightedSum",
}

# ----------------------------------------------------------------------------- the conftest

CONFTEST = textwrap.dedent('''\
    """Generated by c2compile's tools/run_caffe2_op_tests.py: run Caffe2's tests on c2compile."""
    import json
    import os
    import re
    import time

    import c2compile.compat  # noqa: F401  (every caffe2.* import now resolves to c2compile)

    import hypothesis
    import pytest

    _phases = [hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate]
    if os.environ["C2OPT_SHRINK"] == "1":
        _phases.append(hypothesis.Phase.shrink)
    hypothesis.settings.register_profile(
        "c2compile_op_tests", max_examples=int(os.environ["C2OPT_MAX_EXAMPLES"]),
        deadline=None, database=None, phases=_phases,
        derandomize=os.environ["C2OPT_DERANDOMIZE"] == "1",
        suppress_health_check=list(hypothesis.HealthCheck))
    hypothesis.settings.load_profile("c2compile_op_tests")

    # Imported after the profile is loaded, so that it keeps this one (see register_profiles).
    from c2compile import hypothesis_test_util as hu
    from c2compile.errors import GradientError

    class DeferredGradientChecks(Exception):
        """--defer-gradients: the test's gradient checks were recorded, not run."""

    if os.environ["C2OPT_REFERENCE_ONLY"] == "1":
        from c2compile import device_checker
        for _backend in device_checker.backends():
            if _backend.name != "reference":
                device_checker.unregister_backend(_backend.name)

    _GRAD_CALLS = []
    _DEFER = os.environ["C2OPT_DEFER_GRADIENTS"] == "1"

    if _DEFER:
        def _deferred_gradient_checks(self, device_option, op, *args, **kwargs):
            _GRAD_CALLS.append(f"assertGradientChecks({op.type})")

        def _deferred_grad_reference(self, op, *args, **kwargs):
            _GRAD_CALLS.append(f"gradient reference check({op.type})")

        import inspect as _inspect
        for _name, _fn in (("assertGradientChecks", _deferred_gradient_checks),
                           ("_assertGradReferenceChecks", _deferred_grad_reference)):
            # the same signature: tests inspect it (matmul_op_test reads `threshold`'s default)
            _fn.__signature__ = _inspect.signature(getattr(hu.HypothesisTestCase, _name))
            setattr(hu.HypothesisTestCase, _name, _fn)

    _OUT = open(os.environ["C2OPT_RECORDS"], "a", buffering=1)
    _UNKNOWN = [re.compile(r"unknown op type '([^']+)'"),
                re.compile(r"Method (\\w+) is not a registered operator")]
    _LATER = re.compile(r"lands with (issue \\d+|a later issue)")
    # What Python 3.6-era test code hits on Python 3.11 / numpy 2 (raised in the test's code).
    _ENV = re.compile("|".join([
        r"module 'numpy' has no attribute", r"has no attribute 'getargspec'",
        r"Calling np\\.sum\\(generator\\)", r"only 0-dimensional arrays can be converted",
        r"only integers, slices \\(`:`\\), ellipsis", r"only length-1 arrays can be converted",
    ]))
    _OURS = tuple(os.path.join(os.environ["C2OPT_REPO"], d) + os.sep
                  for d in ("c2compile", "runtime", "passes", "codegen"))
    _TEST_FILE = [None]

    if os.environ["C2OPT_SHIMS"] == "1":
        # Names the tests' own code uses that Python 3.11 / numpy 2 removed: restored with
        # their old meaning, for the test code (c2compile never uses them).
        import builtins
        import collections
        import functools
        import inspect
        import types

        import numpy as np

        for _name, _value in (("str", str), ("int", int), ("float", float), ("object", object),
                              ("complex", complex), ("unicode", str), ("bool", bool)):
            if _name not in vars(np):
                try:
                    getattr(np, _name)
                except AttributeError:
                    setattr(np, _name, _value)
        if not hasattr(inspect, "getargspec"):
            _ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")

            def _getargspec(func):
                s = inspect.getfullargspec(func)
                return _ArgSpec(s.args, s.varargs, s.varkw, s.defaults)
            inspect.getargspec = _getargspec
        _np_sum = np.sum

        @functools.wraps(_np_sum)
        def _sum(a, *args, **kwargs):
            if isinstance(a, types.GeneratorType):  # numpy < 2: the builtin sum
                return builtins.sum(a)
            return _np_sum(a, *args, **kwargs)
        np.sum = _sum


    def _leaves(exc, seen=None):
        """The exceptions inside `exc` (exception groups and hypothesis' flaky reports)."""
        seen = set() if seen is None else seen
        if exc is None or id(exc) in seen:
            return []
        seen.add(id(exc))
        subs = getattr(exc, "exceptions", None)
        if subs:
            return [leaf for sub in subs for leaf in _leaves(sub, seen)]
        return [exc]


    def _raised_in_test_code(exc):
        """Whether the innermost frame of the test's or c2compile's code is the test's."""
        last = None
        tb = exc.__traceback__
        while tb is not None:
            f = tb.tb_frame.f_code.co_filename
            if f == _TEST_FILE[0] or f.startswith(_OURS):
                last = f
            tb = tb.tb_next
        return last is not None and last == _TEST_FILE[0]


    def _kind(exc):
        """The class of one exception; one the test raised while handling another (e.g.
        `except RuntimeError: self.assertTrue(...)` around an op c2compile lacks) is
        classified by the one it handled, when that one is a gradient or unknown op."""
        own = _own_kind(exc)
        context = exc.__context__
        while own[0] == "other" and context is not None:
            inner = _own_kind(context)
            if inner[0] in ("grad", "unk-op"):
                return inner
            context = context.__context__
        return own


    def _own_kind(exc):
        if isinstance(exc, (GradientError, DeferredGradientChecks)):
            return "grad", ""
        text = str(exc)
        for pattern in _UNKNOWN:
            m = pattern.search(text)
            if m:
                op = m.group(1)
                grad = op.endswith("Gradient") or op == "AddGradientOperators"
                return ("grad" if grad else "unk-op"), op
        if _LATER.search(text):
            return "later", ""
        if _ENV.search(text) and _raised_in_test_code(exc):
            return "env", ""
        return "other", ""


    def _classify(exc):
        kinds = [_kind(e) for e in _leaves(exc)] or [("other", "")]
        for cls in ("other", "env", "later", "unk-op", "grad"):
            for k, op in kinds:
                if k == cls:
                    return cls, op
        return "other", ""


    def _summary(exc):
        leaves = _leaves(exc) or [exc]
        parts = []
        for e in leaves:
            text = " ".join(str(e).split())
            parts.append(f"{type(e).__name__}: {text}")
        return " || ".join(parts)


    def _write(rec):
        _OUT.write(json.dumps(rec) + "\\n")


    def pytest_runtest_logstart(nodeid, location):
        _write({"event": "start", "nodeid": nodeid, "t": time.time()})


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(item):
        del _GRAD_CALLS[:]
        outcome = yield
        if _DEFER and _GRAD_CALLS and outcome.excinfo is None:
            calls = sorted(set(_GRAD_CALLS))
            outcome.force_exception(DeferredGradientChecks(
                f"deferred gradient checks ({len(_GRAD_CALLS)} calls: {', '.join(calls)}); "
                "the forward checks of every example passed"))


    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        report = outcome.get_result()
        _TEST_FILE[0] = str(item.fspath)
        rec = {"event": "report", "nodeid": item.nodeid, "when": call.when,
               "outcome": report.outcome, "duration": call.duration}
        if report.outcome == "failed" and call.excinfo is not None:
            rec["class"], rec["op"] = _classify(call.excinfo.value)
            rec["message"] = _summary(call.excinfo.value)[:2000]
        elif report.outcome == "skipped":
            rec["message"] = str(report.longrepr[-1] if isinstance(report.longrepr, tuple)
                                 else report.longrepr)[:500]
        _write(rec)


    def pytest_collectreport(report):
        if report.outcome == "failed":
            text = str(report.longrepr)
            exc = text.strip().splitlines()[-1] if text.strip() else "collection failed"
            _write({"event": "collect", "nodeid": report.nodeid, "outcome": "failed",
                    "class": "later" if _LATER.search(text) else "other", "op": "",
                    "message": exc[:2000]})
    ''')

PYTEST_INI = "[pytest]\naddopts = -p no:cacheprovider\n"


# ----------------------------------------------------------------------------- running

def _file_name(name: str) -> str:
    return name if name.endswith(".py") else name + ".py"


def files_using_our_ops(tests_dir: pathlib.Path) -> list[str]:
    """Every *_test.py file in `tests_dir` that names an op c2compile defines."""
    sys.path.insert(0, str(REPO))
    from c2compile.ops import all_ops
    ops = set(all_ops())
    out = []
    for path in sorted(tests_dir.glob("*_test.py")):
        quoted = set(re.findall(r"""['"](\w+)['"]""", path.read_text(errors="replace")))
        if quoted & ops:
            out.append(path.name)
    return out


class FileResult:
    def __init__(self, name):
        self.name = name
        self.counts = collections.Counter()
        self.problems: list[dict] = []  # failed or errored tests, with class and message
        self.skips: list[dict] = []
        self.seconds = 0.0
        self.timed_out = False
        self.returncode = None
        self.tail = ""

    def as_dict(self):
        return {"file": self.name, "counts": dict(self.counts), "problems": self.problems,
                "skips": self.skips, "seconds": round(self.seconds, 1),
                "timed_out": self.timed_out, "returncode": self.returncode}


def _read_records(path: pathlib.Path, result: FileResult) -> None:
    started, reports = [], collections.OrderedDict()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec["event"] == "start":
                started.append(rec["nodeid"])
            elif rec["event"] == "report":
                reports.setdefault(rec["nodeid"], []).append(rec)
            elif rec["event"] == "collect":
                result.counts["errors"] += 1
                result.counts[rec["class"]] += 1
                result.problems.append({"test": rec["nodeid"] or result.name, "kind": "error",
                                        "class": rec["class"], "op": rec.get("op", ""),
                                        "message": rec["message"]})
    for nodeid, recs in reports.items():
        by_when = {r["when"]: r for r in recs}
        call = by_when.get("call")
        setup = by_when.get("setup")
        failed_phase = next((r for r in recs if r["outcome"] == "failed"), None)
        short = nodeid.split("::", 1)[-1]
        if setup is not None and setup["outcome"] == "skipped":
            result.counts["skipped"] += 1
            result.skips.append({"test": short, "message": setup.get("message", "")})
        elif call is not None and call["outcome"] == "failed":
            result.counts["failed"] += 1
            cls = call.get("class", "other")
            result.counts[cls] += 1
            result.problems.append({"test": short, "kind": "failed", "class": cls,
                                    "op": call.get("op", ""),
                                    "message": call.get("message", "")})
        elif failed_phase is not None:  # setup or teardown error
            cls = failed_phase.get("class", "other")
            result.counts["errors"] += 1
            result.counts[cls] += 1
            result.problems.append({"test": short, "kind": "error", "class": cls,
                                    "op": failed_phase.get("op", ""),
                                    "message": failed_phase.get("message", "")})
        elif call is not None and call["outcome"] == "skipped":
            result.counts["skipped"] += 1
            result.skips.append({"test": short, "message": call.get("message", "")})
        elif call is not None:
            result.counts["passed"] += 1
    if result.timed_out:
        unfinished = [n for n in started if "call" not in {r["when"] for r in
                                                          reports.get(n, [])}]
        for nodeid in unfinished[-1:]:
            result.counts["errors"] += 1
            result.counts["other"] += 1
            result.problems.append({"test": nodeid.split("::", 1)[-1], "kind": "error",
                                    "class": "other", "op": "",
                                    "message": "timed out (the file's --timeout ran out "
                                               "during this test; later tests did not run)"})


def run_file(src: pathlib.Path, args) -> FileResult:
    result = FileResult(src.stem)
    with tempfile.TemporaryDirectory(prefix="c2optest_") as tmp:
        tmp = pathlib.Path(tmp)
        shutil.copy(src, tmp / src.name)
        (tmp / "conftest.py").write_text(CONFTEST)
        (tmp / "pytest.ini").write_text(PYTEST_INI)
        records = tmp / "records.jsonl"
        env = dict(os.environ)
        env.pop("CAFFE2_HYPOTHESIS_PROFILE", None)
        env.pop("HYPOTHESIS_PROFILE", None)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(C2OPT_RECORDS=str(records), C2OPT_MAX_EXAMPLES=str(args.max_examples),
                   C2OPT_SHRINK="1" if args.shrink else "0",
                   C2OPT_DERANDOMIZE="0" if (args.random or args.seed is not None) else "1",
                   C2OPT_DEFER_GRADIENTS="1" if args.defer_gradients else "0",
                   C2OPT_SHIMS="0" if args.no_shims else "1", C2OPT_REPO=str(REPO),
                   C2OPT_REFERENCE_ONLY="1" if args.reference_only else "0")
        cmd = [args.python, "-m", "pytest", "-q", "-rN", "--rootdir", str(tmp), "-c",
               str(tmp / "pytest.ini"), src.name]
        if args.seed is not None:
            cmd += [f"--hypothesis-seed={args.seed}"]
        if args.k:
            cmd += ["-k", args.k]
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the pytest process and anything it started
            out, _ = proc.communicate()
            result.timed_out = True
        finally:
            if proc.poll() is None:  # this tool was interrupted: take the child down too
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        result.seconds = time.time() - start
        result.returncode = proc.returncode
        result.tail = (out or "")[-3000:]
        _read_records(records, result)
    if not result.timed_out and result.returncode not in (0, 1, 5) and not result.problems:
        # pytest itself broke (internal error, crash): say so rather than report nothing
        result.counts["errors"] += 1
        result.counts["other"] += 1
        result.problems.append({"test": result.name, "kind": "error", "class": "other",
                                "op": "", "message": f"pytest exited {result.returncode}: "
                                                     f"{result.tail[-500:]}"})
    return result


# ----------------------------------------------------------------------------- reporting

COLUMNS = ("passed", "failed", "grad", "unk-op", "later", "env", "other", "skipped", "errors")


def table(results: list[FileResult]) -> str:
    width = max([len("file")] + [len(r.name) for r in results]) + 1
    head = f"{'file':<{width}}" + "".join(f"{c:>8}" for c in COLUMNS) + f"{'secs':>8}"
    lines = [head, "-" * len(head)]
    total = collections.Counter()
    for r in results:
        total.update({c: r.counts[c] for c in COLUMNS})
        note = "  TIMEOUT" if r.timed_out else ""
        lines.append(f"{r.name:<{width}}" + "".join(f"{r.counts[c]:>8}" for c in COLUMNS)
                     + f"{r.seconds:>8.0f}{note}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}" + "".join(f"{total[c]:>8}" for c in COLUMNS)
                 + f"{sum(r.seconds for r in results):>8.0f}")
    lines.append("grad / unk-op / later / env / other split failed + errors: (a) no gradient "
                 "rule, (b) op not defined, module landing later, test code needs "
                 "Python 3.6/numpy 1.x, (c) real discrepancy")
    return "\n".join(lines)


def details(results: list[FileResult], verbose: bool) -> str:
    lines = []
    unknown = collections.Counter()
    for r in results:
        for p in r.problems:
            if p["class"] == "unk-op":
                unknown[p["op"] or "?"] += 1
    if unknown:
        lines.append("\n(b) op types not defined by c2compile (tests): " +
                     ", ".join(f"{op} ({n})" for op, n in sorted(unknown.items())))
    limit = None if verbose else 300
    for cls, title in (("later", "later: c2compile modules that land with a later issue"),
                       ("env", "env: the test's own code needs Python 3.6 / numpy 1.x"),
                       ("other", "(c) other failures and errors")):
        chosen = [(r.name, p) for r in results for p in r.problems if p["class"] == cls]
        if not chosen:
            continue
        lines.append(f"\n{title}:")
        for name, p in chosen:
            msg = p["message"] if limit is None else p["message"][:limit]
            lines.append(f"  {name}::{p['test']} [{p['kind']}]\n      {msg}")
    if verbose:
        skips = [(r.name, s) for r in results for s in r.skips]
        if skips:
            lines.append("\nskipped:")
            for name, s in skips:
                lines.append(f"  {name}::{s['test']}: {s['message'][:200]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Run Caffe2's operator tests through c2compile.compat and tabulate them.",
        epilog="Class (c) failures are listed after the table; --json keeps everything.")
    parser.add_argument("files", nargs="*", help="test files (e.g. pooling_test or "
                        "pooling_test.py); default: the files for the ops c2compile defines")
    parser.add_argument("--caffe2-tests", default=DEFAULT_TESTS_DIR, metavar="DIR",
                        help="Caffe2's operator_test directory (default: %(default)s)")
    parser.add_argument("--all", action="store_true",
                        help="every *_test.py in DIR that names an op c2compile defines")
    parser.add_argument("--timeout", type=float, default=900,
                        help="wall-clock seconds per file (default %(default)s)")
    parser.add_argument("--max-examples", type=int, default=10,
                        help="hypothesis examples per test unless the test sets its own "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="draw examples from this seed")
    parser.add_argument("--random", action="store_true", help="fresh random examples each run")
    parser.add_argument("--shrink", action="store_true", help="let hypothesis shrink failures")
    parser.add_argument("--defer-gradients", action="store_true",
                        help="record gradient checks instead of running them, so that every "
                             "forward check runs (the test then fails as class grad)")
    parser.add_argument("--reference-only", action="store_true",
                        help="device checks run the numpy reference executor only (the other "
                             "backends are unregistered): checks the op definitions alone")
    parser.add_argument("--no-shims", action="store_true",
                        help="do not restore the numpy/inspect names the tests' Python 3.6-era "
                             "code uses (np.str, np.float, inspect.getargspec, np.sum of a "
                             "generator)")
    parser.add_argument("-k", default=None, help="pytest -k expression, for every file")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with c2compile and pytest (default: this one)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write all results here")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="full failure messages, skip reasons, pytest output of "
                             "files that broke")
    parser.add_argument("--list", action="store_true", help="print the chosen files and exit")
    args = parser.parse_args(argv)

    tests_dir = pathlib.Path(args.caffe2_tests)
    if not tests_dir.is_dir():
        parser.error(f"{tests_dir} is not a directory (point --caffe2-tests at Caffe2's "
                     "caffe2/python/operator_test)")
    if args.files:
        names = [_file_name(f) for f in args.files]
    elif args.all:
        names = files_using_our_ops(tests_dir)
    else:
        names = [_file_name(f) for f in DEFAULT_FILES]
    missing = [n for n in names if not (tests_dir / n).is_file()]
    if missing:
        print(f"not in {tests_dir}, skipped: {', '.join(missing)}", file=sys.stderr)
    names = [n for n in names if n not in missing]
    if args.list:
        print("\n".join(names))
        return 0

    # SIGTERM (timeout(1), a job control kill) unwinds like Ctrl-C, so the running file's
    # pytest process group is killed with this tool.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    results = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        r = run_file(tests_dir / name, args)
        results.append(r)
        c = r.counts
        print(f"    passed {c['passed']} failed {c['failed']} (grad {c['grad']}, unk-op "
              f"{c['unk-op']}, other {c['other']}) skipped {c['skipped']} errors "
              f"{c['errors']}  {r.seconds:.0f}s{' TIMEOUT' if r.timed_out else ''}",
              file=sys.stderr, flush=True)
        if args.verbose and r.returncode not in (0, 1):
            print(r.tail, file=sys.stderr)

    print(table(results))
    print(details(results, args.verbose))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"tests_dir": str(tests_dir), "max_examples": args.max_examples,
             "files": [r.as_dict() for r in results]}, indent=1))
    return 0 if all(r.counts["other"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
