"""scipy's `cython_blas` without `scipy.linalg`'s package import.

Generated modules `cimport` sgemm/dgemm from `scipy.linalg.cython_blas`: loading one imports
that extension module, and Python imports a module's parent packages first. The extension
itself loads in ~25 ms, but `scipy/linalg/__init__.py` pulls in most of scipy (~150-350 ms):
that was most of a warm cache hit in a fresh process (LeNet: ~200 ms of which ~175 ms was
this import). `preload()` loads the extension from its file under its own name and registers
it in `sys.modules`, where the generated modules' import finds it without running the
package. A later `import scipy.linalg` still runs the package as usual and gets this same
module object for `scipy.linalg.cython_blas`; a one-shot import hook then sets it as the
package's attribute, as the plain import would have.
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


def _extension_file() -> pathlib.Path | None:
    spec = importlib.util.find_spec("scipy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
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
