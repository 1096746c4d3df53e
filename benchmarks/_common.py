"""The case table x dtypes, inputs and memory, from this checkout alone.

Nothing here imports numba_deconv: the suite must run against older and
newer commits of the package, whose helpers may differ or not exist. The
case table is read with plain ``json`` from the checkout the suite lives in.
"""

import json
import os

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TABLES = ("numba_deconv/bench/cases.json", "numba_deconv/bench_cases.json")


def _load_table():
    for rel in _TABLES:
        path = os.path.join(_ROOT, rel)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return {d["name"]: d for d in json.load(f)["cases"]}
    raise FileNotFoundError(f"no case table in {_ROOT} (looked for {_TABLES})")


CASES = _load_table()
CASE_NAMES = list(CASES)
DTYPES = ["float32", "float64"]
KWARGS = ("stride", "padding", "output_padding", "dilation", "groups")


def conv_kwargs(case):
    """``conv_transpose`` keyword arguments of a table entry."""
    return {k: case[k] for k in KWARGS if k in case}


def make_inputs(case, dtype, seed=0):
    """``(x, weight)`` uniform in [-1, 1): channels first, weight
    ``(C_in, C_out/groups, *kernel)``, the same numbers as ``bench`` uses."""
    rank = len(case["spatial"])
    x_shape = (case["N"], case["C_in"], *case["spatial"])
    w_shape = (case["C_in"], case["C_out"] // case.get("groups", 1)) \
        + (case["kernel"],) * rank
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, x_shape).astype(dtype),
            rng.uniform(-1, 1, w_shape).astype(dtype))


def workspace_bytes(fn):
    """Peak resident memory one call of ``fn()`` adds beyond its result.

    Linux only (``None`` elsewhere): glibc hands large blocks straight back
    to the system, the peak-RSS mark is reset (``/proc/self/clear_refs``) and
    ``VmHWM`` read after the call.
    """
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 128 * 1024)   # M_MMAP_THRESHOLD: fixed, no adaptation
        libc.malloc_trim(0)
        before = _proc_status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError, KeyError):
        return None
    result = fn()
    return max(0, _proc_status("VmHWM") - before - getattr(result, "nbytes", 0))


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class CaseBenchmark:
    """Base: one (case, dtype) of the table; subclasses define ``make_call``.

    Pairs that the table does not ask for (a case pinned to float64 run in
    float32) are skipped with ``NotImplementedError``, and so is a call the
    library under test cannot make (not installed, or a feature this commit
    lacks): never a failure.
    """

    params = [CASE_NAMES, DTYPES]
    param_names = ["case", "dtype"]
    timeout = 600          # the unoptimised kernels on dcgan_2d float64

    def setup(self, case, dtype):
        c = CASES[case]
        if c.get("dtype", "float32") not in ("float32", dtype):
            raise NotImplementedError(f"{case} is pinned to {c['dtype']}")
        self.x, self.w = make_inputs(c, dtype)
        self.call = self.make_call(c, self.x, self.w)
        try:
            self.call()    # compile / warm caches outside the timed region
        except (TypeError, ValueError, NotImplementedError) as e:
            raise NotImplementedError(f"{type(e).__name__}: {e}") from None

    def make_call(self, case, x, w):
        raise NotImplementedError
