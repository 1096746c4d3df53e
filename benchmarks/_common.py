"""The case table x dtypes, inputs and memory, from this checkout alone.

Nothing here imports numba_deconv's helpers (only its public functions,
when a benchmark asks): the suite must run against older and newer commits
of the package, whose helpers may differ or not exist. The
case table is read with plain ``json`` from the checkout the suite lives in.
"""

import json
import os

import numpy as np

from . import THREADS

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
_CONV = ("stride", "padding", "dilation", "groups")
# op -> (its two inputs, its keyword arguments), as numba_deconv.bench.cases.OPS:
# "x" (N, C_in, *spatial), "w" (C_in, C_out/groups, *kernel), "y" the
# transposed convolution's output (N, C_out, *out_spatial).
OPS = {"conv_transpose": (("x", "w"), KWARGS),
       "conv": (("y", "w"), _CONV),
       "conv_weight_grad": (("y", "x"), ("kernel_size",) + _CONV),
       "conv_transpose_weight_grad": (("x", "y"), ("kernel_size",) + KWARGS)}


def conv_kwargs(case, op="conv_transpose"):
    """Keyword arguments of ``numba_deconv.<op>`` for a table entry."""
    kw = {k: case[k] for k in OPS[op][1] if k in case}
    if "kernel_size" in OPS[op][1]:
        kw["kernel_size"] = (case["kernel"],) * len(case["spatial"])
    return kw


def make_inputs(case, dtype, seed=0, op="conv_transpose"):
    """The inputs of ``op`` (``(x, weight)`` for ``conv_transpose``) uniform
    in [-1, 1), channels first, the same numbers as ``bench`` uses.
    ``NotImplementedError`` for a conv whose output size is not the case's
    input size (output_padding >= stride)."""
    k, s, p, opad, d = (case.get(key, dflt) for key, dflt in (
        ("kernel", 1), ("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1)))
    spatial = tuple(case["spatial"])
    out = tuple((i - 1) * s - 2 * p + d * (k - 1) + 1 + opad for i in spatial)
    if OPS[op][0][0] == "y" and any((o + 2 * p - d * (k - 1) - 1) // s + 1 != i
                                    for o, i in zip(out, spatial)):
        raise NotImplementedError(f"{op}: conv does not map {out} back to {spatial}")
    shapes = {"x": (case["N"], case["C_in"], *spatial),
              "w": (case["C_in"], case["C_out"] // case.get("groups", 1)) + (k,) * len(spatial),
              "y": (case["N"], case["C_out"], *out)}
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, shapes[key]).astype(dtype) for key in OPS[op][0])


def public_function(name):
    """``numba_deconv.<name>`` with Numba held to ``THREADS`` threads;
    ``NotImplementedError`` when this commit of the package lacks it."""
    try:
        import numba
        import numba_deconv
        f = getattr(numba_deconv, name)
    except (ImportError, AttributeError) as e:
        raise NotImplementedError(f"numba_deconv.{name}: {e}") from None
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    return f


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


class OpBenchmark(CaseBenchmark):
    """A case run as ``op`` (a key of :data:`OPS`): inputs shaped for it.

    Its own ``setup`` so that ``CaseBenchmark.setup``, whose source asv
    hashes into the versions of the conv_transpose benchmarks, stays as it
    was; a case ``op`` cannot run is skipped too.
    """

    op = None

    def setup(self, case, dtype):
        c = CASES[case]
        if c.get("dtype", "float32") not in ("float32", dtype):
            raise NotImplementedError(f"{case} is pinned to {c['dtype']}")
        self.x, self.w = make_inputs(c, dtype, op=self.op)
        self.call = self.make_call(c, self.x, self.w)
        try:
            self.call()
        except (TypeError, ValueError, NotImplementedError) as e:
            raise NotImplementedError(f"{type(e).__name__}: {e}") from None
