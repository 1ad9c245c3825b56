"""Every knob of c2compile in one place; tests change them with `config.patch(...)`.

Environment variables give the defaults:
  C2C_BACKEND      "cpu" (compile CreateNet'd CPU nets with Cython, the default) or
                   "reference" (run everything on the numpy reference executor)
  C2C_BLAS_THREADS threads of the BLAS that compiled kernels call (scipy's OpenBLAS);
                   default 1. OpenBLAS's own threads spin-wait: on this 2-core machine they
                   made SqueezeNet's median 30x slower as soon as another process wanted a
                   core (docs/benchmarks.md). 0 leaves OpenBLAS's default.
"""
from __future__ import annotations

import contextlib
import os

backend: str = os.environ.get("C2C_BACKEND", "cpu")
blas_threads: int = int(os.environ.get("C2C_BLAS_THREADS", "1"))

_KNOBS = ("backend", "blas_threads")
_CHOICES = {"backend": ("cpu", "reference")}


def _check(name: str, value) -> None:
    if name not in _KNOBS:
        raise AttributeError(f"c2compile.config has no knob {name!r}; knobs: {', '.join(_KNOBS)}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ValueError(f"config.{name}={value!r}: must be one of {_CHOICES[name]}")


_check("backend", backend)


@contextlib.contextmanager
def patch(**values):
    """Set knobs for the duration of a `with` block."""
    g = globals()
    for k, v in values.items():
        _check(k, v)
    old = {k: g[k] for k in values}
    g.update(values)
    try:
        yield
    finally:
        g.update(old)
