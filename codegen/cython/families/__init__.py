"""Kernel families: importing one registers its kernels (see ../lowering.py)."""
from c2compile.codegen.cython.families import elementwise, linear  # noqa: F401
from c2compile.codegen.cython.families import fill  # noqa: F401
from c2compile.codegen.cython.families import training  # noqa: F401
from c2compile.codegen.cython.families import spatial, shape, normalization  # noqa: F401
from c2compile.codegen.cython.families import reduction  # noqa: F401
