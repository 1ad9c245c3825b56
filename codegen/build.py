"""Generated Cython source -> C -> shared library -> loaded module, cached on disk.

Phases of `build_module`, cheapest first:

1. key: sha256 over the source and everything that changes the built code (`_key_inputs`).
   Costs one `cc --version` per process and a source hash per call.
2. memo: this process already has the module (`cache.counters["memory_hit"]`).
3. disk: a trusted entry in `cache.cache_dir()` (`"hit"`); no compiler runs, no lock taken.
4. build (`"miss"`): under the per-key flock, re-check (a peer may have just built it), then
   Cython in-process -> the C compiler, called directly (no setuptools: it costs seconds) ->
   manifest -> atomic rename into the cache.
5. load: importlib's ExtensionFileLoader, under the name `c2c_<key[:16]>`. Names come from the
   key only, never from net or blob names (untrusted input); the .pyx is named after the module
   because Cython derives the `PyInit_` symbol from the file name.

Fallbacks, each giving a correct module: an unwritable or full cache -> build in a private temp
folder with a warning; no C compiler -> load what this machine built for the same inputs with
any compiler (the `.alias` file), else CompilerMissingError saying how to get one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import types
import warnings

from c2compile.errors import C2Error

from . import blas, cache

EXT_SUFFIX: str = sysconfig.get_config_var("EXT_SUFFIX") or ".so"

# Generated kernels index raw pointers and memoryviews whose bounds the compiler proved.
CYTHON_DIRECTIVES = {"boundscheck": False, "wraparound": False, "cdivision": True,
                     "initializedcheck": False}
MAX_ERRORS_SHOWN = 5


class BuildError(C2Error):
    """Generated source did not compile, or a built module could not be loaded.

    `pyx` is the generated source the message points at, when there is one."""

    def __init__(self, message: str, *, pyx: pathlib.Path | None = None):
        super().__init__(message)
        self.pyx = pyx


class CompilerMissingError(BuildError):
    """No working C compiler, and nothing already built for this source."""


# ----------------------------------------------------------------------------- toolchain

@dataclasses.dataclass(frozen=True)
class _Compiler:
    argv: tuple[str, ...]  # resolved executable + the extra words of $CC / sysconfig CC
    identity: str  # first line of `--version`, without the program's own name
    origin: str  # "$CC" or "Python's sysconfig CC"


_compilers: dict[str, _Compiler] = {}
_compilers_guard = threading.Lock()


def _compiler() -> _Compiler:
    """The C compiler to use ($CC, else sysconfig CC), probed once per process per $CC."""
    env = os.environ.get("CC")
    spec, origin = (env, "$CC") if env else (sysconfig.get_config_var("CC") or "cc",
                                             "Python's sysconfig CC")
    with _compilers_guard:
        found = _compilers.get(spec)
        if found is None:
            found = _compilers[spec] = _probe_compiler(spec, origin)
        return found


def _probe_compiler(spec: str, origin: str) -> _Compiler:
    words = shlex.split(spec) or ["cc"]
    exe = shutil.which(words[0])
    if exe is None:
        raise CompilerMissingError(_missing_compiler_message(words[0], origin, "not found"))
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True,
                             errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CompilerMissingError(_missing_compiler_message(words[0], origin, str(err))) from err
    first = (out.stdout or out.stderr).strip().splitlines()[:1]
    if out.returncode != 0 or not first:
        raise CompilerMissingError(_missing_compiler_message(
            words[0], origin, f"`{exe} --version` failed (exit {out.returncode})"))
    identity = first[0].strip()
    name = os.path.basename(words[0])
    if identity.startswith(name + " "):  # "cc (Debian 12.2.0-14) 12.2.0" == "gcc (Debian ...)"
        identity = identity[len(name) + 1:]
    return _Compiler((exe, *words[1:]), identity, origin)


def _missing_compiler_message(name: str, origin: str, why: str) -> str:
    return (f"no usable C compiler: looked for '{name}' (from {origin}): {why}. c2compile "
            f"turns generated Cython into native code with the machine's C compiler. Install "
            f"one (Debian/Ubuntu: apt-get install gcc; Fedora/RHEL: dnf install gcc; Alpine: "
            f"apk add build-base) or set CC to the path of a C compiler.")


def _is_clang() -> bool:
    """Whether the C compiler is clang. Without one, GCC's flags are assumed: they then only
    name a cache entry built earlier (a disk hit needs no compiler)."""
    try:
        return "clang" in _compiler().identity.lower()
    except CompilerMissingError:
        return False


def _cflags(source: str, portable: bool) -> list[str]:
    """Code-generation flags (part of the key); include folders are added by `_compile`."""
    if portable:
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        arch = ["-march=x86-64-v3", "-mtune=generic"] if x86 else ["-mtune=generic"]
    else:
        arch = ["-march=native"]
    # -fno-math-errno: generated code never reads errno, and it lets gcc inline sqrt & co.
    flags = ["-O3", *arch, "-fPIC", "-shared", "-fno-strict-aliasing", "-fwrapv", "-DNDEBUG",
             "-pthread", "-fno-math-errno"]
    if not _is_clang():
        # GCC 12.2 at -O3 with AVX2 vectorises `dx[c] += x[c] == y[c] ? dy[c] : 0` in short
        # nested loops (a max-pool gradient) into code that reads another row's dy; value
        # range propagation is part of the fault, and turning it off cures it at no
        # measurable cost. tests/backends/test_build_cache.py keeps the C reproducer.
        flags.append("-fno-tree-vrp")
    if platform.machine().lower() in ("x86_64", "amd64") and platform.libc_ver()[0] == "glibc":
        # glibc's math-vector.h declares SIMD variants of expf/tanhf/... (libmvec, within
        # 4 ulp) only under __FAST_MATH__; this enables them without -ffast-math's other
        # changes (NaN/inf semantics stay IEEE). Exp/Tanh/Sigmoid loops then vectorise.
        flags += ["-D__FAST_MATH__", "-Wl,--no-as-needed", "-lmvec"]
    if _uses_openmp(source):
        flags.append("-fopenmp")  # one gcc call compiles and links, so this links libgomp too
    if _cimports_numpy(source):
        flags.append("-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION")
    return flags


def _uses_openmp(source: str) -> bool:
    return "prange" in source or "cython.parallel" in source


_NUMPY_CIMPORT = re.compile(r"^\s*(cimport\s+numpy\b|from\s+numpy\b[\w.]*\s+cimport\b)", re.M)


def _cimports_numpy(source: str) -> bool:
    return _NUMPY_CIMPORT.search(source) is not None


# ----------------------------------------------------------------------------- key

_static: dict[bool, dict] = {}


def _static_inputs(portable: bool) -> dict:
    """The key inputs that do not depend on the source or the compiler (once per process)."""
    found = _static.get(portable)
    if found is None:
        found = _static[portable] = {
            "cache_version": cache.CACHE_VERSION,
            "cython": _version("cython", "Cython"),
            "cython_directives": CYTHON_DIRECTIVES,
            "ext_suffix": EXT_SUFFIX,
            "numpy": _version("numpy", "numpy"),
            "scipy": _version("scipy", "scipy"),
            "machine": platform.machine(),
            "cpu": "generic" if portable else _cpu_identity(),
        }
    return found


def _version(dist: str, package: str) -> str:
    """The installed version of `dist` without importing it (importing Cython and scipy
    would cost a warm cache hit ~100 ms in a fresh process): from the name of the wheel's
    `<dist>-<version>.dist-info` folder beside the package, else from importlib.metadata
    (whose import and METADATA parsing cost ~6 ms more)."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        site = pathlib.Path(folder).parent
        found = sorted(site.glob(f"{dist}-*.dist-info")) or sorted(
            p for p in site.glob("*.dist-info") if p.name.lower().startswith(f"{dist}-"))
        if len(found) == 1:
            return found[0].name[len(dist) + 1:-len(".dist-info")]
    from importlib.metadata import version
    return version(dist)


def _cpu_identity() -> str:
    """-march=native code is only valid on this CPU model (a shared or copied cache is not)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f.read().splitlines()
                     if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        text = "\n".join(dict.fromkeys(lines))  # every core repeats them
    except OSError:
        text = platform.processor()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _key_inputs(source: str, portable: bool, compiler: _Compiler | None) -> dict:
    inputs = {**_static_inputs(portable),
              "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
              "cflags": _cflags(source, portable)}
    if compiler is not None:
        inputs["cc"] = compiler.identity
        inputs["cc_args"] = list(compiler.argv[1:])
    return inputs


def _digest(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _alias_key(source: str, portable: bool) -> str:
    """The key of the same build with any compiler: what a machine without one can look up."""
    return _digest(_key_inputs(source, portable, None))


_keys: dict[tuple[str, bool, str | None], str] = {}  # the compiler is probed once per $CC too


def cache_key(source: str, portable: bool) -> str:
    """sha256 hex of the source, flags, toolchain and library versions.

    Without a C compiler: the key this machine last built the source under, else
    CompilerMissingError."""
    memo = (source, portable, os.environ.get("CC"))
    key = _keys.get(memo)
    if key is not None:
        return key
    try:
        key = _keys[memo] = _digest(_key_inputs(source, portable, _compiler()))
        return key
    except CompilerMissingError:
        key = cache.read_alias(_alias_key(source, portable)) if cache.enabled() else None
        if key is None:
            raise
        _keys[memo] = key
        return key


def module_name(key: str) -> str:
    return f"c2c_{key[:16]}"


# ----------------------------------------------------------------------------- public API

def build_module(source: str, *, name_hint: str = "net", portable: bool = False,
                 progress: bool | None = None) -> types.ModuleType:
    """Cython `source` -> a loaded native module, from the cache when possible.

    progress: None shows one line on stderr if a cold build takes over 1 s; True shows it
    at once; False never. BuildError (compile failure, with the .pyx and the op at fault)
    or CompilerMissingError."""
    key = cache_key(source, portable)
    if cache.enabled():
        module = cache.memory_get(key)
        if module is not None:
            cache.counters["memory_hit"] += 1
            return module
    with cache.key_lock(key):
        if cache.enabled() and (module := cache.memory_get(key)) is not None:
            cache.counters["memory_hit"] += 1
            return module
        with _built(source, key, portable, name_hint, progress) as so:
            module = load_so(so, module_name(key))
        if cache.enabled():
            cache.memory_put(key, module)
    return module


def _plan_alias(plan_digest: str) -> str:
    """The cache alias under which a plan digest (render.plan_digest) records the module key
    its source was built under: the digest plus what the key holds besides the source,
    except the probed compiler version (probing costs a subprocess; a module built by the
    same $CC before an upgrade is still a correct build of this source)."""
    return _digest({**_static_inputs(False), "plan": plan_digest, "CC": os.environ.get("CC")})


def module_for_plan(plan_digest: str) -> types.ModuleType | None:
    """The module built on this machine for the plan with this digest, loaded from the memory
    or disk cache without its source (a warm hit renders nothing); None if there is no such
    trustworthy entry (the caller then renders and builds as usual)."""
    if not cache.enabled():
        return None
    key = cache.read_alias(_plan_alias(plan_digest))
    if key is None:
        return None
    with cache.key_lock(key):
        module = cache.memory_get(key)
        if module is not None:
            cache.counters["memory_hit"] += 1
            return module
        so = cache.entry_dir(key) / (module_name(key) + EXT_SUFFIX)
        if cache.check_entry(so.parent, key, so.name) is not None:
            return None
        module = load_so(so, module_name(key))
        cache.memory_put(key, module)
        cache.counters["hit"] += 1
    return module


def remember_plan(plan_digest: str, source: str) -> None:
    """Record that the plan with this digest renders to `source` (built with build_module)."""
    if cache.enabled():
        with contextlib.suppress(OSError):
            cache.write_alias(_plan_alias(plan_digest), cache_key(source, False))


def build_to(source: str, out_dir, *, portable: bool) -> pathlib.Path:
    """Build (or take from the cache) the .so for `source` and copy it, with its .pyx, into
    `out_dir`, for exported artifacts. Returns the .so path (its name is the module name plus
    EXT_SUFFIX; load it with `load_so`)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(source, portable)
    with cache.key_lock(key), _built(source, key, portable, "export", None) as so:
        for src in (so, so.with_name(module_name(key) + ".pyx")):
            tmp = out_dir / f".{src.name}.{os.getpid()}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, out_dir / src.name)  # a new inode: a mapped copy is never rewritten
    return out_dir / so.name


_loaded: dict[str, types.ModuleType] = {}
_load_guard = threading.Lock()


def _cimports_blas(path: pathlib.Path) -> bool:
    """Whether a built module imports scipy's cython_blas when it loads (its name is in the
    module's string table)."""
    return blas.NAME.encode() in path.read_bytes()


def load_so(path, module_name: str, *, sha256: str | None = None) -> types.ModuleType:
    """Load a built .so as module `module_name` (its PyInit_ name). BuildError if it is not a
    loadable module (truncated, not ELF, other platform, not matching `sha256` when given)
    or fails while initialising.

    A truncated ELF file would crash the process inside dlopen (SIGBUS), so the headers are
    checked against the file size first; pass `sha256` to rule out any other damage (cache
    entries are hash-checked before they get here).

    A process can load an extension module only once: a second load of the same name returns
    the module already loaded (a name is a key prefix, so it is the same code)."""
    path = pathlib.Path(path)
    if not module_name.isidentifier():
        raise BuildError(f"'{module_name}' is not a valid module name (loading {path})")
    with _load_guard:
        module = _loaded.get(module_name)
        if module is not None:
            return module
        try:
            if sha256 is not None and cache.sha256_file(path) != sha256:
                raise BuildError(f"cannot load native module {path}: its sha256 does not "
                                 f"match the expected {sha256}")
            problem = _elf_problem(path)
        except OSError as err:
            raise BuildError(f"cannot load native module {path}: {err}") from err
        if problem:
            raise BuildError(f"cannot load native module {path}: {problem} (a corrupt or "
                             f"truncated file)")
        if _cimports_blas(path):
            blas.preload()  # the module's own import of it then skips scipy.linalg's package
        loader = importlib.machinery.ExtensionFileLoader(module_name, str(path))
        spec = importlib.util.spec_from_file_location(module_name, str(path), loader=loader)
        try:
            module = importlib.util.module_from_spec(spec)
        except ImportError as err:
            raise BuildError(f"cannot load native module {path}: {err} (a corrupt or "
                             f"truncated file, or one built for another Python or "
                             f"platform)") from err
        try:
            loader.exec_module(module)
        except Exception as err:  # re-raised with the file named, not swallowed
            raise BuildError(f"native module {path} failed while initialising: "
                             f"{type(err).__name__}: {err}") from err
        sys.modules[module_name] = module  # lets pickle find its cdef classes
        _loaded[module_name] = module
    return module


def _elf_problem(path: pathlib.Path) -> str | None:
    """Why `path` is not a whole ELF shared object, or None (also for non-ELF platforms).

    Checks what dlopen trusts without checking: that the program and section header tables
    and every segment's file bytes lie inside the file."""
    if sys.platform in ("darwin", "win32"):
        return None
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) \
                or head[5] not in (1, 2):
            return "not an ELF file"
        wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
        if wide and len(head) < 64:
            return "ELF header cut short"
        fmt = order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH")
        (e_type, _, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum,
         _) = struct.unpack_from(fmt, head, 16)
        if e_type != 3:  # ET_DYN
            return "not a shared object"
        if phoff + phnum * phentsize > size or (shoff and shoff + shnum * shentsize > size):
            return "header tables lie past the end of the file"
        f.seek(phoff)
        table = f.read(phnum * phentsize)
    ph = order + ("IIQQQQ" if wide else "IIIIII")
    for i in range(phnum):
        fields = struct.unpack_from(ph, table, i * phentsize)
        offset, filesz = (fields[2], fields[5]) if wide else (fields[1], fields[4])
        if offset + filesz > size:
            return f"segment {i} lies past the end of the file ({offset + filesz} > {size} bytes)"
    return None


# ----------------------------------------------------------------------------- cache walk

@contextlib.contextmanager
def _built(source: str, key: str, portable: bool, name_hint: str, progress: bool | None):
    """Yield the path of a trustworthy .so for `key` (cache entry or private temp build).
    Call holding `cache.key_lock(key)`."""
    if not cache.enabled():
        with _private_build(source, key, portable, name_hint, progress) as so:
            yield so
        return
    root = cache.cache_dir()
    name = module_name(key)
    so_name = name + EXT_SUFFIX
    entry = cache.entry_dir(key, root)
    if cache.check_entry(entry, key, so_name) is None:
        cache.counters["hit"] += 1
        yield entry / so_name
        return
    try:
        compiler = _compiler()
    except CompilerMissingError as missing:
        why = cache.check_entry(entry, key, so_name)
        if why != "absent":
            raise CompilerMissingError(f"{missing} (the cached build {entry} is unusable: "
                                       f"{why})") from None
        raise
    try:
        with _Progress(name, name_hint, progress) as prog:
            prog.phase = "waiting for another process building it"
            with cache.locked(key, root=root):
                why = cache.check_entry(entry, key, so_name)
                if why is None:  # a peer built it while we waited
                    prog.cancel()
                    cache.counters["hit"] += 1
                else:
                    if why != "absent":
                        cache.counters["rebuilt_corrupt"] += 1
                    _build_into_cache(source, key, portable, compiler, root, prog)
                    cache.counters["miss"] += 1
    except cache.LockTimeout as err:
        raise BuildError(str(err)) from None
    except OSError as err:
        warnings.warn(f"c2compile: cache dir {root} is not usable ({err}); building in a "
                      f"private temp dir instead (not cached)", RuntimeWarning, stacklevel=4)
        with _private_build(source, key, portable, name_hint, progress, compiler) as so:
            yield so
        return
    yield entry / so_name


def _build_into_cache(source, key, portable, compiler, root, prog) -> None:
    build = cache.new_build_dir(key, root)
    try:
        timings = _compile(source, build, module_name(key), portable, compiler, prog)
    except _Failure as failure:
        where = cache.keep_failed(build, key, root)
        raise BuildError(failure.render(where), pyx=where / f"{failure.name}.pyx") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    try:
        cache.write_manifest(build, key, module_name(key) + EXT_SUFFIX,
                             module=module_name(key), built_at=time.time(), **timings,
                             inputs=_key_inputs(source, portable, compiler))
        cache.publish(build, key, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        cache.write_alias(_alias_key(source, portable), key, root)


@contextlib.contextmanager
def _private_build(source, key, portable, name_hint, progress, compiler=None):
    """Build into a fresh temp folder, removed once the module is loaded (the mapping stays
    valid); a failed build is kept there for its .pyx."""
    compiler = compiler or _compiler()
    name = module_name(key)
    build = pathlib.Path(tempfile.mkdtemp(prefix=f"c2compile-{name}-"))
    try:
        with _Progress(name, name_hint, progress) as prog:
            _compile(source, build, name, portable, compiler, prog)
    except _Failure as failure:
        raise BuildError(failure.render(build), pyx=build / f"{failure.name}.pyx") from None
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    cache.counters["miss"] += 1
    try:
        yield build / (name + EXT_SUFFIX)
    finally:
        shutil.rmtree(build, ignore_errors=True)


# ----------------------------------------------------------------------------- compiling

_cython_guard = threading.Lock()  # the Cython compiler keeps global state


def _compile(source: str, build: pathlib.Path, name: str, portable: bool, compiler: _Compiler,
             prog: _Progress) -> dict:
    """Write `name`.pyx in `build` and compile it to `name`EXT_SUFFIX there.

    Raises _Failure for errors in the source, OSError for a full or unwritable disk."""
    pyx = build / f"{name}.pyx"
    pyx.write_text(source)
    prog.phase = "Cython"
    t0 = time.perf_counter()
    c_file = _cythonize(pyx, name, source)
    t1 = time.perf_counter()
    prog.phase = "C compiler"
    so = build / (name + EXT_SUFFIX)
    includes = ["-I", sysconfig.get_paths()["include"]]
    if _cimports_numpy(source):
        import numpy
        includes += ["-I", numpy.get_include()]
    # Relative paths, run in `build`: error messages then name files, not a temp folder.
    cmd = [*compiler.argv, *_cflags(source, portable), *includes, c_file.name, "-o", so.name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              cwd=build)
    except FileNotFoundError as err:  # the compiler vanished since it was probed
        raise CompilerMissingError(_missing_compiler_message(
            compiler.argv[0], compiler.origin, str(err))) from err
    t2 = time.perf_counter()
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if "No space left on device" in output:
            raise OSError(errno.ENOSPC, f"the C compiler ran out of disk space in {build}")
        (build / "cc.log").write_text(shlex.join(cmd) + "\n\n" + output)
        raise _Failure.from_cc(name, source, c_file, output)
    c_file.unlink()  # ~0.4 MB of boilerplate; the .pyx regenerates it identically
    pyx.with_suffix(".lis").unlink(missing_ok=True)  # Cython's (empty) error listing
    return {"cython_s": round(t1 - t0, 3), "cc_s": round(t2 - t1, 3)}


def _cythonize(pyx: pathlib.Path, name: str, source: str) -> pathlib.Path:
    from Cython.Compiler import Errors
    from Cython.Compiler.Main import CompilationOptions, compile as cython_compile, \
        default_options
    options = CompilationOptions(
        default_options, language_level=3, compiler_directives=CYTHON_DIRECTIVES,
        include_path=_cython_include_path(), use_listing_file=True, errors_to_stderr=False)
    with _cython_guard:
        try:
            result = cython_compile(str(pyx), options, full_module_name=name)
            failed = result.num_errors > 0 or not result.c_file
        except Errors.PyrexError as err:  # an error Cython raises instead of listing
            failed, result = True, None
            extra = f"{type(err).__name__}: {err}"
        else:
            extra = ""
    if failed:
        listing = pyx.with_suffix(".lis")
        text = listing.read_text(errors="replace") if listing.exists() else ""
        raise _Failure.from_cython(name, source, text + extra)
    return pathlib.Path(result.c_file)


def _cython_include_path() -> list[str]:
    """Where `cimport scipy.linalg.cython_blas` (and numpy's .pxd) resolve."""
    paths = []
    for package in ("scipy", "numpy"):
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            parent = str(pathlib.Path(list(spec.submodule_search_locations)[0]).parent)
            if parent not in paths:
                paths.append(parent)
    return paths


# ----------------------------------------------------------------------------- error messages

_CYTHON_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*\.pyx):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$")
_CC_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
                       r"(?:fatal )?error: (?P<msg>.*)$")
_OP_COMMENT = re.compile(r"^\s*#\s*(op\s+#.*?)\s*$")


class _Failure(Exception):
    """Errors in generated code, rendered once the folder holding the .pyx is final."""

    def __init__(self, name: str, tool: str, errors: list[tuple[int | None, int, str]],
                 source: str, raw: str, hint: str = ""):
        self.name, self.tool, self.errors, self.source = name, tool, errors, source
        self.raw, self.hint = raw, hint

    @classmethod
    def from_cython(cls, name: str, source: str, listing: str) -> _Failure:
        errors = []
        for line in listing.splitlines():
            m = _CYTHON_ERROR.match(line)
            if m and os.path.basename(m["file"]) == f"{name}.pyx":  # Cython's col is 0-based
                errors.append((int(m["line"]), int(m["col"]), m["msg"]))
            elif m:
                errors.append((None, 0, line))
        return cls(name, "Cython", errors, source, listing)

    @classmethod
    def from_cc(cls, name: str, source: str, c_file: pathlib.Path, output: str) -> _Failure:
        c_lines = c_file.read_text(errors="replace").splitlines() if c_file.exists() else []
        marker = re.compile(r'^\s*/\* "' + re.escape(f"{name}.pyx") + r'":(\d+)\s*$')
        errors = []
        out_lines = output.splitlines()
        for n, line in enumerate(out_lines):
            m = _CC_ERROR.match(line)
            if not m:
                continue
            pyx_line = None
            if os.path.basename(m["file"]) == c_file.name:
                for i in range(min(int(m["line"]), len(c_lines)) - 1, -1, -1):
                    if mk := marker.match(c_lines[i]):
                        pyx_line = int(mk[1])
                        break
            if pyx_line is None:  # no .pyx line to show: keep the compiler's own quote
                quoted = [q for q in out_lines[n + 1:n + 3] if re.match(r"^\s*\d*\s*\|", q)]
                line = "\n    ".join([line.strip(), *quoted])
            errors.append((pyx_line, -1, line.strip()))
        hint = ""
        if "Python.h" in output:
            hint = ("the Python development headers are missing (Debian/Ubuntu: apt-get "
                    "install python3-dev)")
        return cls(name, "the C compiler", errors, source, output, hint)

    def render(self, where: pathlib.Path) -> str:
        pyx = where / f"{self.name}.pyx"
        n = len(self.errors)
        head = (f"could not build native module {self.name}: {self.tool} reported "
                f"{n or 'an'} error{'s' if n != 1 else ''}\n  generated source: {pyx}")
        if self.hint:
            head += f"\n  hint: {self.hint}"
        if not self.errors:  # nothing we could parse: show the start of the raw output
            raw = "\n".join("    " + ln for ln in self.raw.strip().splitlines()[:30])
            log = where / "cc.log" if self.tool != "Cython" else pyx.with_suffix(".lis")
            return f"{head}\n  output ({log}):\n{raw}"
        lines = self.source.splitlines()
        parts = [head]
        for pyx_line, col, msg in self.errors[:MAX_ERRORS_SHOWN]:
            if pyx_line is None:
                parts.append(f"  {msg}")
                continue
            if self.tool == "Cython":
                text = f"{pyx.name}:{pyx_line}:{col}: {msg}"
            else:
                text = f"{msg}\n    generated from {pyx.name} line {pyx_line}:"
            parts.append(f"  {text}\n" + _quote(lines, pyx_line, col, pyx.name))
        if n > MAX_ERRORS_SHOWN:
            parts.append(f"  ... {n - MAX_ERRORS_SHOWN} more")
        if self.tool != "Cython":
            parts.append(f"  C source and full compiler output: {where / (self.name + '.c')}, "
                         f"{where / 'cc.log'}")
        return "\n".join(parts)


def _quote(lines: list[str], line: int, col: int, pyx_name: str) -> str:
    """The op comment above `line` and the source lines around it, the line itself marked."""
    out = []
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if m := _OP_COMMENT.match(lines[i]):
            out.append(f"    in {m[1]}  ({pyx_name} line {i + 1})")
            break
    for i in range(max(1, line - 3), min(len(lines), line + 1) + 1):
        mark = ">" if i == line else " "
        out.append(f"    {mark}{i:5d} | {lines[i - 1]}")
        if i == line and col >= 0:
            out.append(f"     {'':5} | {' ' * col}^")
    return "\n".join(out)


# ----------------------------------------------------------------------------- progress

class _Progress:
    """One stderr line while a cold build runs past DELAY s: '\\r'-updated with the phase
    and elapsed time on a terminal, written once (and finished with the time) otherwise."""

    DELAY = 1.0

    def __init__(self, module: str, name_hint: str, show: bool | None):
        hint = "".join(c for c in str(name_hint) if c.isprintable())[:60]
        self.label = f"'{hint}' ({module})"
        self.show, self.phase = show is not False, "starting"
        self.delay = 0.0 if show is True else self.DELAY
        self._done = threading.Event()
        self._shown = self._tty = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Progress:
        self._t0 = time.monotonic()
        if self.show:
            self._stream = sys.stderr
            self._thread = threading.Thread(target=self._run, name="c2compile-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        """Nothing was built after all (a peer process did it): say nothing more."""
        self._done.set()

    def _run(self) -> None:
        if self._done.wait(self.delay):
            return
        try:
            self._tty = self._stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._shown = True
        if not self._tty:
            self._write(f"c2compile: building {self.label}... ")
            return
        while not self._done.is_set():
            self._write(f"\rc2compile: building {self.label}: {self.phase}, "
                        f"{time.monotonic() - self._t0:.1f} s\x1b[K")
            self._done.wait(0.2)

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(text)
            self._stream.flush()

    def __exit__(self, exc_type, *_) -> None:
        cancelled = self._done.is_set()
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if not self._shown:
            return
        took = time.monotonic() - self._t0
        outcome = ("failed" if exc_type else "built by another process" if cancelled
                   else "done")
        if self._tty:
            self._write(f"\rc2compile: building {self.label}: {outcome}, {took:.1f} s\x1b[K\n")
        else:
            self._write(f"{outcome}, {took:.1f} s\n")
