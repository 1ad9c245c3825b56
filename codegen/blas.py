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

import importlib.abc
import importlib.machinery
import importlib.util
import pathlib
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


# OpenBLAS's thread-count setter under the names scipy's wheels (scipy-openblas, symbols
# prefixed, maybe 64-bit suffixed) and plain OpenBLAS builds export it.
_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads", "openblas_set_num_threads64_")


def set_threads(n: int) -> bool:
    """Set the thread count of the OpenBLAS that scipy's wheel bundles (in `scipy.libs`,
    loaded by `preload`) straight through its C setter. False when there is no such library
    (scipy linked against another BLAS): the caller then asks threadpoolctl, which finds any
    BLAS but costs ~12 ms of a warm cache hit to scan the process's libraries."""
    import ctypes
    for folder in _scipy_folders():
        for path in sorted(pathlib.Path(folder).parent.joinpath("scipy.libs").glob("*openblas*.so*")):
            try:
                lib = ctypes.CDLL(str(path))  # already loaded: dlopen hands back that copy
            except OSError:
                continue
            for symbol in _SETTERS:
                setter = getattr(lib, symbol, None)
                if setter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    setter(n)
                    return True
    return False
