"""scipy's `cython_blas` without `scipy.linalg`'s package import.

Generated modules `cimport` sgemm/dgemm from `scipy.linalg.cython_blas`: loading one imports
that extension module, and Python imports a module's parent packages first. The extension
itself loads in ~25 ms, but `scipy/linalg/__init__.py` pulls in most of scipy (~150-350 ms):
that was most of a warm cache hit in a fresh process (LeNet: ~200 ms of which ~175 ms was
this import). `preload()` loads the extension from its file under its own name and registers
it in `sys.modules`, where the generated modules' import finds it without running the
package. (`scipy/__init__.py` itself still runs, ~10-20 ms: the Cython utility module
that cython_blas imports, `scipy._cyutility`, imports its parent package when it loads.)

A later `import scipy.linalg` still runs the package as usual and gets this same module
object from `sys.modules`; a one-shot import hook then sets it as the package's attribute, as
the plain import would have.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import pathlib
import re
import sys
import threading

NAME = "scipy.linalg.cython_blas"
_lock = threading.Lock()


def _scipy_folders() -> list[str]:
    """Where the scipy package lives, found without importing it ([] if not installed)."""
    spec = importlib.util.find_spec("scipy")
    return list(spec.submodule_search_locations or []) if spec is not None else []


def _extension_file() -> pathlib.Path | None:
    for folder in _scipy_folders():
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = pathlib.Path(folder, "linalg", "cython_blas" + suffix)
            if path.is_file():
                return path
    return None


def preload() -> None:
    """Make `scipy.linalg.cython_blas` importable at the cost of the extension alone.

    Falls back to the plain import when the file is not where scipy keeps it (another
    layout): slower, never wrong."""
    if NAME in sys.modules:
        return
    with _lock:
        if NAME in sys.modules:
            return
        path = _extension_file()
        if path is None:
            importlib.import_module(NAME)
            return
        loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
        spec = importlib.util.spec_from_file_location(NAME, str(path), loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[NAME] = module
        package = sys.modules.get("scipy.linalg")
        if package is not None:
            package.cython_blas = module
        else:
            sys.meta_path.insert(0, _SetAttributeOnImport())


class _SetAttributeOnImport(importlib.abc.MetaPathFinder):
    """When `scipy.linalg` is imported later, give it its `cython_blas` attribute (the plain
    import of the submodule sets it; preload bypassed that). Removes itself once used."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "scipy.linalg":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        exec_module = spec.loader.exec_module

        def exec_and_attach(module):
            exec_module(module)
            module.cython_blas = sys.modules[NAME]
        spec.loader.exec_module = exec_and_attach
        return spec


def _scipy_openblas():
    """The OpenBLAS libraries scipy's wheel bundles (in `scipy.libs`), as ctypes handles."""
    import ctypes
    for folder in _scipy_folders():
        for path in sorted(pathlib.Path(folder).parent.joinpath("scipy.libs").glob("*openblas*.so*")):
            try:
                yield ctypes.CDLL(str(path))  # already loaded: dlopen hands back that copy
            except OSError:
                continue


def _openblas_function(name: str, argtypes: list, restype):
    """OpenBLAS's `name` (e.g. "set_num_threads") in scipy's wheel, under the names
    scipy-openblas (symbols prefixed, maybe 64-bit suffixed) and plain OpenBLAS builds
    export it; None without such a library."""
    for lib in _scipy_openblas():
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("", "64_"):
                fn = getattr(lib, prefix + name + suffix, None)
                if fn is not None:
                    fn.argtypes, fn.restype = argtypes, restype
                    return fn
    return None


def set_threads(n: int) -> bool:
    """Set the thread count of the OpenBLAS that scipy's wheel bundles (loaded by
    `preload`) straight through its C setter. False when there is no such library (scipy
    linked against another BLAS): the caller then asks threadpoolctl, which finds any BLAS
    but costs ~12 ms of a warm cache hit to scan the process's libraries."""
    import ctypes
    setter = _openblas_function("set_num_threads", [ctypes.c_int], None)
    if setter is None:
        return False
    setter(n)
    return True


# OpenBLAS cores whose sgemm has the unpacked small-matrix kernels (SMALL_MATRIX_OPT,
# OpenBLAS 0.3.17 on): kernel/x86_64/sgemm_small_kernel_*_skylakex.c, which Cooperlake and
# Sapphire Rapids use too, as do AMD Zen 4/5 under DYNAMIC_ARCH (reported as SkylakeX).
_SMALL_KERNEL_CORES = ("skylakex", "cooperlake", "sapphirerapids")
# Their permit function: an sgemm of up to this many multiply-adds (M * N * K) skips
# packing A and B; sgemm("T", "N") only with C at most SMALL_TN_MAX_MN elements and K at
# least SMALL_TN_MIN_K. Measured here (Zen 4, one thread, OpenBLAS 0.3.30): 100-111
# GFLOP/s for SqueezeNet's, LeNet's and the MLP's shapes at or under the bound, against
# 55-98 packed (M x N x K = 480 x 16 x 128: 109, and 489 x 16 x 128: 55).
SMALL_KERNEL_MACS = 100 * 100 * 100
SMALL_TN_MAX_MN, SMALL_TN_MIN_K = 1200, 32


def _openblas_string(function: str) -> str:
    """What OpenBLAS's `function` (get_config, get_corename) of scipy's wheel returns ("":
    no such library)."""
    import ctypes
    fn = _openblas_function(function, [], ctypes.c_char_p)
    return (fn() or b"").decode("ascii", "replace") if fn is not None else ""


@functools.cache
def small_gemm_macs() -> int:
    """Multiply-adds up to which scipy's OpenBLAS runs an sgemm through its small-matrix
    kernel, with no packing (0: it has none). Kernels size their GEMM blocks under it."""
    config = _openblas_string("get_config").split()
    version = re.match(r"(\d+)\.(\d+)\.(\d+)", config[1]) if len(config) > 1 else None
    if version is None or tuple(map(int, version.groups())) < (0, 3, 17):
        return 0
    core = _openblas_string("get_corename").lower()
    return SMALL_KERNEL_MACS if core in _SMALL_KERNEL_CORES else 0


def small_block(transa: str, transb: str, other: int, k: int, columns: bool = False) -> int:
    """The most rows M of a column-major sgemm(transa, transb) of N = `other` columns over
    K = `k` that stay within the small-matrix kernel (with `columns`, the most columns N
    given M = `other` rows: the permit is symmetric in M and N). Rows come in multiples of
    16 (the kernel's widest M step), columns in multiples of 8, and both in multiples of 8
    for ("T", "N"), whose C is at most SMALL_TN_MAX_MN elements; 0 when not even one such
    block fits (and for ("T", "T"), which has no small kernel)."""
    if (transa, transb) == ("T", "T") or other < 1 or k < 1:
        return 0
    fit = small_gemm_macs() // (other * k)
    step = 16 if (transa, transb) != ("T", "N") and not columns else 8
    if (transa, transb) == ("T", "N"):
        if k < SMALL_TN_MIN_K:
            return 0
        fit = min(fit, SMALL_TN_MAX_MN // other)
    fit = fit // step * step
    return fit if fit >= step else 0


def small_rows(transa: str, transb: str, m: int, n: int, k: int) -> int:
    """Rows per block in which an sgemm(transa, transb) of C[m, n] over K = `k` (column-major)
    should run so that every block stays within the small-matrix kernel: small_block's, or 0
    when the whole call already fits (or not even one block does)."""
    fit = small_block(transa, transb, n, k)
    return fit if fit < m else 0
