"""Kernel families: importing one registers its kernels (see ../lowering.py)."""
from c2compile.codegen.cython.families import (  # noqa: F401
    elementwise, fill, linear, normalization, reduction, shape, spatial, training)
