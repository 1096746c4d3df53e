"""The case table x dtypes, inputs and memory, from this directory alone.

Nothing here imports numba_deconv (only its public functions, looked up
when a benchmark's ``setup`` asks, see :func:`public_function`): asv runs
this suite against older and newer commits of the package, whose helpers
may differ or not exist. The case table is ``benchmarks/cases.json``, a
copy of the package's ``numba_deconv/bench/cases.json`` kept beside the
suite so that a commit that moves or edits the package's table does not
change what the tracked results measure.
"""

import json
import os

import numpy as np

from . import THREADS

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")
#: The fixed spread of shapes off the table (``bench --case-file``).
SPREAD_TABLE = os.path.join(os.path.dirname(TABLE), "spread_cases.json")


def _load_table(path=TABLE):
    with open(path, encoding="utf-8") as f:
        return {d["name"]: d for d in json.load(f)["cases"]}


CASES = _load_table()
SPREAD_CASES = _load_table(SPREAD_TABLE)
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
    ``NotImplementedError`` (asv: skipped) when this commit of the package
    lacks it. A package that does not import is an error (asv: failed): a
    broken commit must not pass for one without the feature."""
    import numba
    import numba_deconv
    try:
        f = getattr(numba_deconv, name)
    except AttributeError as e:
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


def first_call(call, skip_errors=(NotImplementedError,)):
    """Run ``call()`` once, outside the timed region (compile, warm caches).

    ``skip_errors``, and a ``TypeError`` for a keyword argument the function
    does not take (an older commit), become ``NotImplementedError``: asv
    skips the benchmark. Any other error fails it, so that a commit that
    breaks a call shows as failed in ``asv run`` / ``asv continuous``, not as
    n/a.
    """
    try:
        call()
    except skip_errors as e:
        raise NotImplementedError(f"{type(e).__name__}: {e}") from None
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise NotImplementedError(f"{type(e).__name__}: {e}") from None


class CaseBenchmark:
    """Base: one (case, dtype) of the table; subclasses define ``make_call``.

    Pairs that the table does not ask for (a case pinned to float64 run in
    float32) are skipped with ``NotImplementedError``, and so is a call the
    library under test cannot make (not installed, a function or an argument
    this commit lacks, see :func:`public_function` and :func:`first_call`).
    A call of numba_deconv that raises anything else fails the benchmark.
    """

    params = [CASE_NAMES, DTYPES]
    param_names = ["case", "dtype"]
    timeout = 600          # the unoptimised kernels on dcgan_2d float64
    skip_errors = (NotImplementedError,)   # what the first call may raise to skip

    def setup(self, case, dtype):
        c = CASES[case]
        if c.get("dtype", "float32") not in ("float32", dtype):
            raise NotImplementedError(f"{case} is pinned to {c['dtype']}")
        self.x, self.w = make_inputs(c, dtype)
        self.call = self.make_call(c, self.x, self.w)
        first_call(self.call, self.skip_errors)

    def make_call(self, case, x, w):
        raise NotImplementedError


class OpBenchmark(CaseBenchmark):
    """A case run as ``op`` (a key of :data:`OPS`): inputs shaped for it.

    Its own ``setup`` so that ``CaseBenchmark.setup``, whose source asv
    hashes into the versions of the conv_transpose benchmarks, need not
    change with it; a case ``op`` cannot run is skipped too.
    """

    op = None

    def setup(self, case, dtype):
        c = CASES[case]
        if c.get("dtype", "float32") not in ("float32", dtype):
            raise NotImplementedError(f"{case} is pinned to {c['dtype']}")
        self.x, self.w = make_inputs(c, dtype, op=self.op)
        self.call = self.make_call(c, self.x, self.w)
        first_call(self.call, self.skip_errors)
