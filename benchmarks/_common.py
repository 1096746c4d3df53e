"""Shared parameters: the case table x dtypes, and input building."""

import os

from numba_deconv import bench

from . import THREADS

# The checkout's table (always here, whatever the installed package ships).
_TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "numba_deconv", "bench_cases.json")
CASES = {c.name: c for c in bench.load_cases(
    _TABLE if os.path.exists(_TABLE) else None)}
CASE_NAMES = list(CASES)
DTYPES = list(bench.DTYPES)


class CaseBenchmark:
    """Base: one (case, dtype) of the table; set ``lib`` in subclasses.

    Pairs that the table does not ask for (a case pinned to float64 run in
    float32) are skipped with ``NotImplementedError``, as are libraries that
    are not installed or cannot run the case.
    """

    params = [CASE_NAMES, DTYPES]
    param_names = ["case", "dtype"]
    timeout = 600          # the unoptimised kernels on dcgan_2d float64
    lib = bench.OURS

    def setup(self, case, dtype):
        c = CASES[case]
        if c.dtype != "float32" and dtype != c.dtype:
            raise NotImplementedError(f"{case} is pinned to {c.dtype}")
        try:
            bench.setup_library(self.lib, THREADS)
        except ImportError:
            raise NotImplementedError(f"{self.lib} is not installed") from None
        self.case = c
        self.x, self.w = bench.make_inputs(c, dtype)
        try:
            self.call, _ = bench.build_call(self.lib, c, self.x, self.w, THREADS)
        except bench.NotApplicable as e:
            raise NotImplementedError(str(e)) from None
        self.call()    # compile / warm caches outside the timed region
