"""This machine's peak fp32 FLOP/s, measured: the denominator of every "% of peak".

A Cython module, built with the project's own `c2compile.codegen.build.build_module` (so with
the same compiler and `-O3 -march=native` flags as generated kernels), runs CHAINS independent
AVX2 FMA chains on 8-wide float vectors (`_mm256_fmadd_ps`, from immintrin.h through
`cdef extern`), one copy per OpenMP thread. Each FMA is 2 FLOPs per lane, so one pass of the
inner loop is CHAINS * 8 * 2 FLOPs per thread. Eight chains cover the FMA latency (4 cycles)
times the two FMA pipes of a Zen or Skylake core; more chains would not go faster.

Each thread times itself with its own CPU-time clock (CLOCK_THREAD_CPUTIME_ID), and the
rate is the sum over threads of FLOPs / CPU seconds: what the cores do while they run the
loop, which stays put on a machine busy with other work (the wall-clock rate, also
reported, does not). The best of a few runs is taken (a peak is a best case). A number far
from what the design doc records for this machine (~204 GFLOP/s on 2 cores) comes with a
warning: then the loop is not what the compiler was meant to emit, or the clock differs.
(On the 2-core AMD EPYC dev VM this measures ~228 GFLOP/s: ~3.6 GHz rather than 3.2.)

    python -m benchmarks.peak [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import time

CHAINS = 8
LANES = 8  # floats in a __m256
DOCUMENTED_GFLOPS = 204.0  # DESIGN.md: 2 cores x 2 FMA pipes x 8 lanes x 2 FLOPs x ~3.2 GHz

SOURCE = f"""\
# cython: language_level=3
# Peak fp32 throughput: {CHAINS} independent AVX2 FMA chains per thread (benchmarks/peak.py).
from cython.parallel cimport parallel, threadid
from posix.time cimport clock_gettime, timespec, CLOCK_THREAD_CPUTIME_ID

cdef extern from "immintrin.h" nogil:
    ctypedef float m256 "__m256"   # opaque to Cython: only passed to the intrinsics below
    m256 _mm256_set1_ps(float)
    m256 _mm256_fmadd_ps(m256, m256, m256)
    m256 _mm256_add_ps(m256, m256)
    void _mm256_storeu_ps(float*, m256)


cdef void chains(long long n, float seed, float* out) noexcept nogil:
    # acc_i = acc_i * m + a: {CHAINS} chains, none waits on another; m < 1 keeps them finite.
    cdef m256 m = _mm256_set1_ps(0.999999)
    cdef m256 a = _mm256_set1_ps(1e-6)
{chr(10).join(f"    cdef m256 c{i} = _mm256_set1_ps(seed + {i}.0)" for i in range(CHAINS))}
    cdef long long it
    for it in range(n):
{chr(10).join(f"        c{i} = _mm256_fmadd_ps(c{i}, m, a)" for i in range(CHAINS))}
    # fold the chains into one vector so none of them is dead code
{chr(10).join(f"    c0 = _mm256_add_ps(c0, c{i})" for i in range(1, CHAINS))}
    _mm256_storeu_ps(out, c0)


cdef double cpu_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


def run(long long n, int threads, float[::1] out, double[::1] seconds):
    \"\"\"Each of `threads` OpenMP threads runs `n` iterations and writes {LANES} floats to
    `out` and the CPU seconds it ran for (its own CPU-time clock) to `seconds`.\"\"\"
    cdef int t
    cdef double t0
    cdef float* p = &out[0]
    cdef double* s = &seconds[0]
    with nogil, parallel(num_threads=threads):
        t = threadid()
        t0 = cpu_now()
        chains(n, 1.0 + t, p + {LANES} * t)
        s[t] = cpu_now() - t0
"""


@dataclasses.dataclass
class Peak:
    gflops: float  # best of the runs, all threads together, per thread CPU time
    threads: int
    wall_gflops: float  # best of the runs by the wall clock (lower on a busy machine)
    single_thread_gflops: float
    plausible: bool
    note: str

    def describe(self) -> str:
        return (f"{self.gflops:.1f} GFLOP/s fp32 on {self.threads} threads "
                f"({self.single_thread_gflops:.1f} on 1; {self.wall_gflops:.1f} by the wall "
                f"clock; {CHAINS} AVX2 FMA chains per thread)"
                + (f" - {self.note}" if self.note else ""))


_module = None


def module():
    """The built (or cached) peak module."""
    global _module
    if _module is None:
        from c2compile.codegen.build import build_module
        _module = build_module(SOURCE, name_hint="benchmarks.peak", progress=False)
    return _module


def _gflops(n: int, threads: int, repeats: int) -> tuple[float, float]:
    """(best GFLOP/s, best wall-clock GFLOP/s) over `repeats` runs of `n` iterations per thread.

    A run's rate is the sum over threads of each thread's FLOPs over the CPU time it ran
    for (CLOCK_THREAD_CPUTIME_ID): the rate of the cores while they run this loop, which
    other processes on a busy machine slow down much less than they slow the wall clock.
    The wall-clock rate is returned too."""
    import numpy as np
    mod = module()
    out = np.zeros(LANES * threads, np.float32)
    secs = np.zeros(threads, np.float64)
    best = best_wall = 0.0
    per_thread = n * CHAINS * LANES * 2
    for _ in range(repeats):
        t0 = time.perf_counter()
        mod.run(n, threads, out, secs)
        wall = time.perf_counter() - t0
        best = max(best, float(np.sum(per_thread / np.maximum(secs, 1e-12))) / 1e9)
        best_wall = max(best_wall, threads * per_thread / wall / 1e9)
    if not np.all(np.isfinite(out)):
        raise RuntimeError("peak: the FMA chains produced non-finite values")
    return best, best_wall


def measure(threads: int = 2, seconds: float = 0.2, repeats: int = 5) -> Peak:
    """Peak fp32 GFLOP/s of `threads` threads; each run lasts about `seconds`."""
    import numpy as np
    mod = module()
    out = np.zeros(LANES * threads, np.float32)
    secs = np.zeros(threads, np.float64)
    n = 1 << 14  # calibrate on one thread: grow n until a run takes a tenth of the target
    while True:
        t0 = time.perf_counter()
        mod.run(n, 1, out, secs)
        took = time.perf_counter() - t0
        if took > seconds / 10 or n > 1 << 40:
            break
        n *= 4
    n = max(1, int(n * seconds / max(took, 1e-9)))
    single, _ = _gflops(n, 1, repeats)
    multi, wall = _gflops(n, threads, repeats) if threads > 1 else (single, 0.0)
    expected = DOCUMENTED_GFLOPS * threads / 2
    ratio = multi / expected
    plausible = 0.6 <= ratio <= 1.5
    note = "" if plausible else (
        f"{ratio:.0%} of the ~{expected:.0f} GFLOP/s documented for this machine: a busy "
        f"machine, or not the loop intended")
    return Peak(multi, threads, wall, single, plausible, note)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=0.2)
    args = ap.parse_args(argv)
    print(measure(args.threads, args.seconds).describe())


if __name__ == "__main__":
    main()
