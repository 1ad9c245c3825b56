"""codegen.build + codegen.cache: Cython source -> loaded module, cached on disk.

Builds are the slow part (~2 s each on 2 cores), so there are four: one warm cache shared by
the module (copied per test), a corrupt-entry rebuild, a two-process race and the unwritable-
cache fallback. Everything else reuses the warm cache or fails before the C compiler runs.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from c2compile.codegen import build, cache

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc").split()[0]) is None,
                                reason="needs a C compiler")

ADD = textwrap.dedent('''\
    # op #0 (Add 'add') -> c
    cdef double _add(double a, double b) noexcept nogil:
        return a + b

    def add(double a, double b):
        cdef double r
        with nogil:
            r = _add(a, b)
        return r
    ''')


def variant(tag: str) -> str:
    """A source with a different key (and module name) than ADD, same cost to build."""
    return ADD.replace("# op #0", f"# {tag}\n# op #0")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache dir holding ADD's entry, built once (this process has the module loaded)."""
    root = tmp_path_factory.mktemp("warm") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("C2COMPILE_CACHE_DIR", str(root))
        cache.clear_memory()
        module = build.build_module(ADD, progress=False)
        assert module.add(1.5, 2.25) == 3.75
        key = build.cache_key(ADD, False)
    return root, key


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    """Each test: its own empty cache dir, an empty memo, zeroed counters."""
    monkeypatch.setenv("C2COMPILE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("C2C_CACHE", raising=False)
    cache.clear_memory()
    cache.reset_counters()
    yield
    cache.clear_memory()


def copy_warm(warm, tmp_path) -> tuple[pathlib.Path, str]:
    root, key = warm
    dest = tmp_path / "cache"
    shutil.copytree(root, dest)
    return dest, key


def entry_files(root: pathlib.Path, key: str):
    entry = cache.entry_dir(key, root)
    return entry, entry / (build.module_name(key) + build.EXT_SUFFIX), entry / cache.MANIFEST


def run_child(code: str, **env) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON line, returned here."""
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CHILD = '''
    import json, sys
    from c2compile.codegen import build, cache
    m = build.build_module(sys.argv[1] if len(sys.argv) > 1 else {src!r}, progress=False)
    print(json.dumps({{"sum": m.add(2.0, 3.0), "file": m.__file__, **cache.counters}}))
'''


# ----------------------------------------------------------------------------- hits

def test_build_then_memory_hit(warm, tmp_path):
    root, key = copy_warm(warm, tmp_path)
    first = build.build_module(ADD)
    assert first.add(1.0, 2.0) == 3.0
    assert cache.counters["hit"] == 1 and cache.counters["miss"] == 0
    assert build.build_module(ADD) is first
    assert cache.counters["memory_hit"] == 1
    assert first.__name__ == build.module_name(key) == "c2c_" + key[:16]
    entry, so, manifest = entry_files(root, key)
    assert (entry / f"{first.__name__}.pyx").read_text() == ADD
    assert json.loads(manifest.read_text())["so_sha256"] == cache.sha256_file(so)
    assert not list(entry.glob("*.c"))  # the generated C is not kept


def test_warm_cache_was_built_once_under_env_dir(warm):
    root, key = warm
    entry, so, manifest = entry_files(root, key)
    assert so.is_file() and manifest.is_file()
    assert entry.parent.name == key[:2] and entry.parent.parent == root


def test_fresh_process_disk_hit_needs_no_compiler(warm, tmp_path):
    root, _ = copy_warm(warm, tmp_path)
    out = run_child(CHILD.format(src=ADD), C2COMPILE_CACHE_DIR=str(root), CC="/nonexistent/cc")
    assert out["sum"] == 5.0
    assert (out["hit"], out["miss"], out["rebuilt_corrupt"]) == (1, 0, 0)
    assert out["file"].startswith(str(root))


def test_missing_compiler_with_a_new_source(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(build.CompilerMissingError) as info:
        build.build_module(variant("never built"))
    message = str(info.value)
    assert "/nonexistent/cc" in message and "$CC" in message
    assert "apt-get install gcc" in message and "set CC" in message
    assert cache.counters["miss"] == 0


def test_build_to_exports_from_the_cache(warm, tmp_path):
    copy_warm(warm, tmp_path)
    so = build.build_to(ADD, tmp_path / "export", portable=False)
    assert so.is_file() and so.with_name(so.name.split(".")[0] + ".pyx").is_file()
    assert cache.counters["miss"] == 0
    assert build.load_so(so, so.name.split(".")[0]).add(1.0, 1.0) == 2.0


# ----------------------------------------------------------------------------- corrupt entries

@pytest.mark.parametrize("damage", ["truncate so", "garbage manifest", "no manifest",
                                    "manifest of another key"])
def test_damaged_entry_is_not_trusted(warm, tmp_path, damage):
    root, key = copy_warm(warm, tmp_path)
    entry, so, manifest = entry_files(root, key)
    assert cache.check_entry(entry, key, so.name) is None
    if damage == "truncate so":
        so.write_bytes(so.read_bytes()[:4096])  # a copy: not the file this process mapped
    elif damage == "garbage manifest":
        manifest.write_bytes(b"\x00{not json")
    elif damage == "no manifest":
        manifest.unlink()
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "key": "0" * 64}))
    assert cache.check_entry(entry, key, so.name) is not None


def test_corrupt_entry_is_rebuilt(warm, tmp_path):
    root, key = copy_warm(warm, tmp_path)
    _, so, _ = entry_files(root, key)
    so.write_bytes(so.read_bytes()[: so.stat().st_size // 2])
    out = run_child(CHILD.format(src=ADD), C2COMPILE_CACHE_DIR=str(root))
    assert out["sum"] == 5.0
    assert (out["rebuilt_corrupt"], out["miss"], out["hit"]) == (1, 1, 0)
    entry, so, _ = entry_files(root, key)
    assert cache.check_entry(entry, key, so.name) is None
    assert not [p for p in so.parent.parent.iterdir() if ".old-" in p.name]


def test_load_so_of_a_bad_file_is_a_build_error(warm, tmp_path):
    _, so, _ = entry_files(*warm)
    bad = tmp_path / "c2c_badbadbadbadbad1.so"
    bad.write_bytes(so.read_bytes()[:3000])
    with pytest.raises(build.BuildError, match="cannot load native module"):
        build.load_so(bad, "c2c_badbadbadbadbad1")
    bad.write_bytes(b"not an ELF file at all")
    with pytest.raises(build.BuildError, match="cannot load native module"):
        build.load_so(bad, "c2c_badbadbadbadbad2")
    with pytest.raises(build.BuildError, match="not a valid module name"):
        build.load_so(bad, "conv1/../x")


# ----------------------------------------------------------------------------- concurrency

def test_two_processes_race_one_build(tmp_path):
    root = tmp_path / "race"
    src = variant("race")
    code = textwrap.dedent(CHILD.format(src=src))
    env = {**os.environ, "C2COMPILE_CACHE_DIR": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert [o["sum"] for o in outs] == [5.0, 5.0]
    assert sorted(o["miss"] for o in outs) == [0, 1]
    assert sorted(o["hit"] for o in outs) == [0, 1]
    assert outs[0]["file"] == outs[1]["file"]
    assert list((root / ".tmp").iterdir()) == []


def test_lock_wait_times_out_with_a_clear_error(monkeypatch):
    src = variant("locked")
    key = build.cache_key(src, False)
    monkeypatch.setattr(cache, "LOCK_TIMEOUT_S", 0.2)
    with cache.locked(key):  # another open file description: flock excludes it, as a peer
        with pytest.raises(build.BuildError, match="another process building the same module"):
            build.build_module(src, progress=False)
    assert cache.counters["miss"] == 0


# ----------------------------------------------------------------------------- errors

BROKEN = textwrap.dedent('''\
    # op #0 (Relu 'relu0') -> a
    cdef void _relu0(float* x, Py_ssize_t n) noexcept nogil:
        pass

    # op #3 (Conv 'conv1') -> conv1
    cdef void _conv1(float* x, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i
        for i in range(n):
            x[i] = x[i] +* 2
    ''')


def test_compile_error_names_the_op_and_the_pyx():
    with pytest.raises(build.BuildError) as info:
        build.build_module(BROKEN, progress=False)
    err = info.value
    message = str(err)
    assert "Cython reported 1 error" in message
    assert "op #3 (Conv 'conv1') -> conv1" in message
    assert "x[i] = x[i] +* 2" in message and ":9:" in message
    assert str(err.pyx) in message and err.pyx.read_text() == BROKEN
    assert err.pyx.parent.name.endswith(".failed")  # kept in the cache for reading
    assert cache.counters["miss"] == 0


def test_compile_error_with_cache_disabled_keeps_pyx_in_a_temp_dir(tmp_path):
    with cache.disabled(), pytest.raises(build.BuildError) as info:
        build.build_module(BROKEN, progress=False)
    assert info.value.pyx.read_text() == BROKEN
    assert not (tmp_path / "cache").exists()
    shutil.rmtree(info.value.pyx.parent)


# ----------------------------------------------------------------------------- fallback

def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("mkdir under me fails, even as root")
    monkeypatch.setenv("C2COMPILE_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="a-file/cache is not usable") as caught:
        module = build.build_module(variant("fallback"), progress=True)
    assert "Not a directory" in str(caught[0].message)
    assert module.add(4.0, 0.5) == 4.5
    assert cache.counters["miss"] == 1
    assert "c2compile: building" in capsys.readouterr().err


# ----------------------------------------------------------------------------- key and dir

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("C2COMPILE_CACHE_DIR", str(tmp_path / "x"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("C2COMPILE_CACHE_DIR")
    assert cache.cache_dir() == tmp_path / "xdg" / "c2compile"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "c2compile"


def test_key_covers_source_and_flags():
    keys = {build.cache_key(ADD, False), build.cache_key(ADD, True),
            build.cache_key(variant("other"), False)}
    assert len(keys) == 3
    assert build.cache_key(ADD, False) == build.cache_key(ADD, False)
    assert "-fopenmp" in build._cflags("from cython.parallel cimport prange", False)
    assert "-fopenmp" not in build._cflags(ADD, False)
    assert "-march=native" in build._cflags(ADD, False)


def test_cache_switches(monkeypatch):
    assert cache.enabled()
    with cache.disabled():
        assert not cache.enabled()
    assert cache.enabled()
    monkeypatch.setenv("C2C_CACHE", "0")
    assert not cache.enabled()


# GCC 12.2 -O3 -march=x86-64-v3 turned this max-pool-gradient loop into code that reads
# another row's dy (the second line printed "5 0 0 9 0 0 13"); build.py's flags must not.
GCC_MISCOMPILE = r"""
#include <stdio.h>
#include <string.h>
__attribute__((noinline)) void k(const float* i0, const float* i1, const float* i2, float* o0) {
    long q, ow, c, w0, w1, xw;
    const float *x, *y, *dy; float *dx;
    memset(o0, 0, 56 * sizeof(float));
    for (q = 0; q < 2; q++)
        for (ow = 0; ow < 3; ow++) {
            w0 = ow * 3;
            w1 = (7 < w0 + 1) ? 7 : w0 + 1;
            y = i1 + (q * 3 + ow) * 4;
            dy = i2 + (q * 3 + ow) * 4;
            for (xw = w0; xw < w1; xw++) {
                x = i0 + q * 28 + xw * 4;
                dx = o0 + q * 28 + xw * 4;
                for (c = 0; c < 4; c++) {
                    float t; if (x[c] == y[c]) t = dy[c]; else t = 0;
                    dx[c] = dx[c] + t;
                }
            }
        }
}
int main(void) {
    float x[56] = {0}, y[24] = {0}, dy[24], o[56];
    for (int i = 0; i < 24; i++) dy[i] = i + 1;
    k(x, y, dy, o);
    for (int n = 0; n < 2; n++) {
        for (int w = 0; w < 7; w++) printf("%g ", o[(n * 7 + w) * 4]);
        printf("\n");
    }
    return 0;
}
"""


@pytest.mark.parametrize("portable", [False, True])
def test_codegen_flags_do_not_hit_the_known_gcc_miscompile(tmp_path, portable):
    src = tmp_path / "repro.c"
    src.write_text(GCC_MISCOMPILE)
    flags = [f for f in build._cflags("", portable) if f not in ("-shared", "-fPIC")
             and not f.startswith("-Wl,") and f != "-lmvec"]
    exe = tmp_path / "repro"
    subprocess.run([*build._compiler().argv, *flags, str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["1 0 0 5 0 0 9 ", "13 0 0 17 0 0 21 "], out


def test_versions_in_the_key_are_the_installed_ones():
    from importlib.metadata import version
    for dist, package in (("cython", "Cython"), ("numpy", "numpy"), ("scipy", "scipy"),
                          ("c2compile", "c2compile")):  # the last: no dist-info beside it
        assert build._version(dist, package) == version(dist)
