"""The machine's floating-point peak, the yardstick of the bench.

NumPy's GEMM is no ceiling where the kernels outrun it (its BLAS may not
use the widest vectors); a tight loop of independent vector multiply-adds,
one per thread, is. It is compiled by Numba with the same SIMD vectors as
the register tiles (:mod:`numba_deconv.cpu.simd`).
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

# Absolute: the bench's worker loads this directory as a package of its own,
# with numba_deconv importable beside it (only our worker measures the peak).
from numba_deconv.cpu import simd

#: Independent accumulators per thread: enough to cover the latency of a
#: multiply-add on two units (4 cycles x 2), and some.
CHAINS = 12


@njit(parallel=True, cache=True)
def _fma_loop(seed, iterations, sink):
    """``CHAINS`` chains of ``iterations`` vector multiply-adds per task,
    one task per element of ``sink`` (whose sums keep the loop alive)."""
    lanes = simd.lanes(seed)
    for task in prange(sink.shape[0]):
        x = simd.load(seed, 0)
        s = seed[lanes]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = simd.zeros(seed)
        for _ in range(iterations):
            a0 = simd.fma(x, s, a0)
            a1 = simd.fma(x, s, a1)
            a2 = simd.fma(x, s, a2)
            a3 = simd.fma(x, s, a3)
            a4 = simd.fma(x, s, a4)
            a5 = simd.fma(x, s, a5)
            a6 = simd.fma(x, s, a6)
            a7 = simd.fma(x, s, a7)
            a8 = simd.fma(x, s, a8)
            a9 = simd.fma(x, s, a9)
            a10 = simd.fma(x, s, a10)
            a11 = simd.fma(x, s, a11)
        total = simd.add(simd.add(simd.add(a0, a1), simd.add(a2, a3)),
                         simd.add(simd.add(a4, a5), simd.add(a6, a7)))
        total = simd.add(total, simd.add(simd.add(a8, a9), simd.add(a10, a11)))
        sink[task] = simd.sum_lanes(total)


def fma_peak(dtype="float32", threads=None, seconds=0.2, repeat=5) -> float:
    """GFLOP/s of :data:`CHAINS` independent vector multiply-add chains per
    thread on ``threads`` threads (default: Numba's), the best of
    ``repeat`` runs of about ``seconds`` each (2 flops per lane)."""
    threads = numba.get_num_threads() if threads is None else threads
    dtype = np.dtype(dtype)
    lanes = simd.VECTOR_BYTES // dtype.itemsize
    seed = np.full(2 * lanes, 1.0 - 2.0 ** -20, dtype=dtype)
    sink = np.zeros(threads, dtype=dtype)
    iterations = 1000
    _fma_loop(seed, iterations, sink)
    while True:  # about `seconds` a run
        start = time.perf_counter()
        _fma_loop(seed, iterations, sink)
        took = time.perf_counter() - start
        if took >= seconds / 4:
            break
        iterations *= 4
    iterations = max(1, int(iterations * seconds / took))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        _fma_loop(seed, iterations, sink)
        best = min(best, time.perf_counter() - start)
    return threads * iterations * CHAINS * lanes * 2 / best / 1e9
