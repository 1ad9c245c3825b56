"""Backends: Cython (CPU) and Triton (GPU) code generation (issue 3 onwards)."""
