"""Which threading story for GEMMs? One MLP-sized FC (64x1568 -> 1568), three ways:
scipy's OpenBLAS on 1 thread, on 2 threads, or our own 2-way OpenMP split of the rows with
OpenBLAS on 1 thread inside. Run it quiet, then beside a busy process:

    python -m benchmarks.gemm_threads
    (python3 -c "while True: pass" &) ; python -m benchmarks.gemm_threads ; pkill -f "while True"
"""
import time

import numpy as np
from threadpoolctl import ThreadpoolController

from c2compile.codegen.build import build_module

M, K, N = 64, 1568, 1568
src = f'''
# cython: language_level=3, boundscheck=False, wraparound=False
from scipy.linalg.cython_blas cimport sgemm
from cython.parallel cimport prange
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS
cdef void* _ptr(object a):
    cdef Py_buffer v
    PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS)
    p = v.buf
    PyBuffer_Release(&v)
    return p
cdef void half(const float* X, const float* W, float* Y, int r0, int rows) noexcept nogil:
    cdef int m = {N}, n = rows, k = {K}, lda = {K}, ldb = {K}, ldc = {N}
    cdef float one = 1.0, zero = 0.0
    sgemm("T", "N", &m, &n, &k, &one, <float*>W, &lda, <float*>(X + r0 * {K}), &ldb, &zero, Y + r0 * {N}, &ldc)
def plain(x, w, y):
    cdef float* X = <float*>_ptr(x)
    cdef float* W = <float*>_ptr(w)
    cdef float* Y = <float*>_ptr(y)
    with nogil:
        half(X, W, Y, 0, {M})
def split(x, w, y):
    cdef float* X = <float*>_ptr(x)
    cdef float* W = <float*>_ptr(w)
    cdef float* Y = <float*>_ptr(y)
    cdef int t
    for t in prange(2, nogil=True, num_threads=2, schedule="static"):
        half(X, W, Y, t * {M // 2}, {M // 2})
'''


def bench(f, x, w, y):
    ts = []
    for _ in range(300):
        t = time.perf_counter()
        f(x, w, y)
        ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3, np.percentile(ts, 90) * 1e3


def main():
    mod = build_module(src, progress=False)
    libs = [lib for lib in ThreadpoolController().lib_controllers if "scipy.libs" in lib.filepath]
    rng = np.random.default_rng(0)
    x = rng.random((M, K), np.float32)
    w = rng.random((N, K), np.float32)
    y = np.empty((M, N), np.float32)
    for name, f, threads in [("OpenBLAS, 1 thread", mod.plain, 1),
                             ("OpenBLAS, 2 threads", mod.plain, 2),
                             ("2 OpenMP threads x OpenBLAS 1", mod.split, 1)]:
        for lib in libs:
            lib.set_num_threads(threads)
        f(x, w, y)
        np.testing.assert_allclose(y, x @ w.T, rtol=1e-3)
        print(f"{name:32s} median %.3f ms  p90 %.3f ms" % bench(f, x, w, y))


if __name__ == "__main__":
    main()
