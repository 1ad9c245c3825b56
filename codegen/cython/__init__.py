"""The Cython CPU backend: a net segment -> one generated .pyx module (see lowering.py)."""
