"""Benchmark ``conv_transpose`` against PyTorch, ONNX Runtime, TensorFlow and JAX.

``python -m numba_deconv bench`` runs the standard workloads of
``bench_cases.json`` (a copy of the project's case table shipped inside the
package) and prints, per case, our median time, GFLOP/s, the percentage of
the float32 GEMM rate measured in the same run, each peer's median time,
the best peer and our speedup over it.

How it measures, so that the comparison is fair:

* Every library (ours included) runs in its own fresh Python process, one
  after the other, with ``--threads`` threads (default 2) set through the
  environment before anything is imported (``NUMBA_NUM_THREADS``,
  ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ...), through each
  library's own knob (``torch.set_num_threads``, ONNX Runtime session
  options, ``tf.config.threading``) and, where the machine has more CPUs than
  that, a CPU affinity mask. No two thread pools fight over the cores.
* All processes read the same inputs (saved as ``.npy`` by the parent);
  each writes its output back and the parent checks every peer's output
  against ours with ``allclose``, so a mis-specified peer call shows up as
  ``mismatch`` instead of a flattering number.
* A time is the median of many calls after warm-up (the first call, which
  compiles, is never timed). The number of samples adapts to the call's
  length; calls shorter than ~50 µs are batched so the timer's resolution
  does not matter.
* Useful flops only: ``2*N*C_in*(C_out/groups)*prod(kernel)*prod(in_spatial)``
  (no multiplications by inserted zeros).

This module imports only the standard library and NumPy at the top level;
the worker processes run this very file (not the package), so a peer's
process never loads Numba and ours never loads a peer.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

PEERS = ("torch", "onnxruntime", "tensorflow", "jax")
OURS = "numba_deconv"
DTYPES = ("float32", "float64")
PEER_LABELS = {
    OURS: "ours",
    "torch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "tensorflow": "TensorFlow",
    "jax": "JAX",
}
# Relative tolerance (of the largest |output|) for "the peer agrees with us".
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


# ---------------------------------------------------------------------------
# The case table
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One workload of the case table: channels first, PyTorch weight layout.

    ``kernel``, ``stride``, ``padding``, ``output_padding`` and ``dilation``
    are the same in every spatial dim (ints); ``dtype`` is the case's own
    dtype (``float32`` unless the table names one).
    """

    name: str
    N: int
    C_in: int
    C_out: int
    spatial: tuple
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        """A case from one entry of a case file; ``ValueError`` naming the
        case and the key for anything missing, unknown or out of range."""
        if not isinstance(d, dict):
            raise ValueError(f"a bench case must be a JSON object, got {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        name = d.get("name")
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(
                f"bench case {name!r} has unknown keys {sorted(unknown)}; "
                f"valid keys are {sorted(fields)}")
        missing = [f.name for f in fields.values()
                   if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"bench case {name!r} lacks the keys {missing}")
        d = dict(d)
        try:
            d["spatial"] = tuple(int(v) for v in d["spatial"])
        except (TypeError, ValueError):
            raise ValueError(f"bench case {name!r}: spatial must be a list of "
                             f"ints, got {d['spatial']!r}") from None
        if d.get("dtype", "float32") not in DTYPES:
            raise ValueError(f"bench case {name!r}: dtype must be one of "
                             f"{DTYPES}, got {d['dtype']!r}")
        case = cls(**d)
        minimum = {"N": 1, "C_in": 1, "C_out": 1, "kernel": 1, "stride": 1,
                   "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1}
        for key, low in minimum.items():
            value = getattr(case, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"bench case {name!r}: {key} must be an int "
                                 f">= {low}, got {value!r}")
        if not case.spatial or min(case.out_spatial) < 1 or min(case.spatial) < 1:
            raise ValueError(f"bench case {name!r}: spatial {list(case.spatial)} "
                             "must be non-empty with every input and output "
                             "size >= 1")
        if case.C_in % case.groups or case.C_out % case.groups:
            raise ValueError(f"bench case {name!r}: groups={case.groups} must "
                             f"divide C_in={case.C_in} and C_out={case.C_out}")
        return case

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["spatial"] = list(self.spatial)
        return d

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C_in) + self.spatial

    @property
    def weight_shape(self) -> tuple:
        return (self.C_in, self.C_out // self.groups) + (self.kernel,) * self.rank

    @property
    def out_spatial(self) -> tuple:
        k, s, p, op, d = (self.kernel, self.stride, self.padding,
                          self.output_padding, self.dilation)
        return tuple((i - 1) * s - 2 * p + d * (k - 1) + 1 + op
                     for i in self.spatial)

    @property
    def out_shape(self) -> tuple:
        return (self.N, self.C_out) + self.out_spatial

    @property
    def flops(self) -> int:
        """Useful flops of one call: 2 per real multiply-add."""
        return flop_count(self.N, self.C_in, self.C_out, self.groups,
                          (self.kernel,) * self.rank, self.spatial)

    def kwargs(self) -> dict:
        """Keyword arguments of ``conv_transpose`` for this case."""
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding,
                    dilation=self.dilation, groups=self.groups)


def flop_count(N, C_in, C_out, groups, kernel, in_spatial) -> int:
    """``2*N*C_in*(C_out/groups)*prod(kernel)*prod(in_spatial)``.

    The multiply-adds a transposed convolution really needs: each input
    sample meets each of its group's ``C_out/groups`` output channels through
    every kernel tap once. Multiplications by the zeros that the "insert
    zeros then convolve" formulation adds are not counted.
    """
    if C_out % groups or C_in % groups:
        raise ValueError(
            f"C_in={C_in} and C_out={C_out} must both be divisible by "
            f"groups={groups}")
    return (2 * N * C_in * (C_out // groups)
            * math.prod(kernel) * math.prod(in_spatial))


def load_cases(path=None) -> list:
    """The case table as a list of :class:`Case`.

    ``path`` defaults to the copy shipped in the package
    (``numba_deconv/bench_cases.json``).
    """
    if path is None:
        text = _package_file("bench_cases.json")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    where = path or "bench_cases.json"
    try:
        table = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"case file {where} is not valid JSON: {e}") from None
    if not isinstance(table, dict) or not isinstance(table.get("cases"), list):
        raise ValueError(f'case file {where} must hold an object with a "cases" '
                         "list, as numba_deconv/bench_cases.json does")
    cases = [Case.from_dict(d) for d in table["cases"]]
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case file {where} repeats case names: "
                         f"{sorted({n for n in names if names.count(n) > 1})}")
    return cases


def _package_file(name: str) -> str:
    try:
        from importlib.resources import files
        return files("numba_deconv").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{name} is missing from the installed numba_deconv package; it "
            "must be listed in [tool.setuptools.package-data]") from None
    except (ImportError, ModuleNotFoundError, TypeError):
        # Run as a plain script (the worker processes): read beside this file.
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, name), encoding="utf-8") as f:
            return f.read()


def select_cases(cases, names=None, dtypes=None) -> list:
    """``(case, dtype)`` pairs to run.

    ``names`` (default: all) picks cases by name, in the table's order, and
    raises ``ValueError`` naming the known cases for an unknown one.
    ``dtypes`` (default: each case's own dtype) runs every picked case in
    each listed dtype; a case whose table entry names a dtype (such as
    ``unet_2d_f64``) only runs in that dtype.
    """
    if names:
        known = {c.name for c in cases}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"unknown bench case(s) {unknown}; the table has "
                f"{sorted(known)}")
        cases = [c for c in cases if c.name in set(names)]
    pairs = []
    for c in cases:
        if not dtypes:
            pairs.append((c, c.dtype))
            continue
        for dt in dtypes:
            if dt not in DTYPES:
                raise ValueError(f"dtype must be one of {DTYPES}, got {dt!r}")
            if c.dtype != "float32" and dt != c.dtype:
                continue  # the table pins this case's dtype
            if (c, dt) not in pairs:
                pairs.append((c, dt))
    return pairs


def make_inputs(case: Case, dtype="float32", seed=0):
    """Deterministic ``(x, weight)`` for ``case``, uniform in [-1, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, case.x_shape).astype(dtype)
    w = rng.uniform(-1, 1, case.weight_shape).astype(dtype)
    return x, w


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Timing:
    median: float          # seconds per call
    best: float            # fastest sample, seconds per call
    samples: int           # number of samples taken
    inner: int             # calls per sample (batched when calls are tiny)

    def to_dict(self):
        return dataclasses.asdict(self)


def measure(fn, *, min_time=1.0, repeat=None, warmup=2, min_samples=7,
            max_samples=2000, batch_below=50e-6) -> Timing:
    """Median seconds per call of ``fn()`` after warm-up.

    The first call (compilation, caches) is never timed. Then ``warmup``
    more calls give an estimate ``t``; the sample count is
    ``min_time / t`` clamped to ``[min_samples, max_samples]`` (3 for calls
    over a second), or exactly ``repeat``. Calls shorter than
    ``batch_below`` seconds are timed in batches of ``inner`` calls.
    """
    fn()
    est = math.inf
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        fn()
        est = min(est, time.perf_counter() - t0)
    est = max(est, 1e-9)
    inner = 1 if est >= batch_below else int(math.ceil(batch_below / est))
    if repeat:
        n = int(repeat)
    else:
        lo = 3 if est > 1.0 else min_samples
        n = max(lo, min(max_samples, int(min_time / (est * inner))))
    perf = time.perf_counter
    samples = []
    for _ in range(n):
        t0 = perf()
        for _ in range(inner):
            fn()
        samples.append((perf() - t0) / inner)
    return Timing(statistics.median(samples), min(samples), n, inner)


def gemm_rate(n=2048, repeat=5, dtype="float32") -> float:
    """GFLOP/s of NumPy's ``a @ b`` on ``n x n`` matrices (median of ``repeat``)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def workspace_bytes(fn):
    """Peak resident memory a call of ``fn()`` adds, minus its result's size.

    Linux only (``None`` elsewhere): makes glibc hand large blocks straight
    back to the system, resets the peak-RSS mark (``/proc/self/clear_refs``)
    and reads ``VmHWM`` after one call. An estimate: threads' stacks and
    allocator slack count, memory a library keeps cached does not. Our
    recycled outputs are let go first: an output made in memory kept from
    earlier calls would hide the workspace behind the output's size.
    """
    import numba_deconv
    numba_deconv.release_memory()
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
    peak = _proc_status("VmHWM")
    size = getattr(result, "nbytes", 0)
    return max(0, peak - before - size)


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


# ---------------------------------------------------------------------------
# The libraries: each builds a zero-argument callable for one case
# ---------------------------------------------------------------------------

class NotApplicable(Exception):
    """The library cannot run this case (reason in the message)."""


def setup_library(lib, threads=2):
    """Import ``lib`` and limit it to ``threads`` threads; returns its version.

    Raises ``ImportError`` when it is not installed.
    """
    if lib == OURS:
        import numba
        import numba_deconv
        with contextlib.suppress(Exception):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return f"{getattr(numba_deconv, '__version__', '?')} (numba {numba.__version__})"
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        return torch.__version__
    if lib == "onnxruntime":
        import onnx  # noqa: F401  (the model is built with onnx.helper)
        import onnxruntime
        return f"{onnxruntime.__version__} (onnx {onnx.__version__})"
    if lib == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        return tf.__version__
    if lib == "jax":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        import jaxlib
        jax.config.update("jax_enable_x64", True)   # for the float64 case
        return f"{jax.__version__} (jaxlib {jaxlib.__version__})"
    raise ValueError(f"unknown library {lib!r}; choose from {(OURS,) + PEERS}")


def build_call(lib, case: Case, x, w, threads=2):
    """``(call, to_numpy)``: ``call()`` runs ``lib`` on the case's inputs in
    the library's native tensors; ``to_numpy(call())`` is the channels-first
    NumPy output. Raises :class:`NotApplicable` when ``lib`` cannot do it."""
    return _BUILDERS[lib](case, x, w, threads)


def _build_ours(case, x, w, threads):
    import numba_deconv
    f = getattr(numba_deconv, "conv_transpose", None)
    if f is None:
        raise NotApplicable("numba_deconv.conv_transpose does not exist yet")
    kw = case.kwargs()
    return (lambda: f(x, w, **kw)), np.asarray


def _build_torch(case, x, w, threads):
    import torch
    import torch.nn.functional as F
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d,
            3: F.conv_transpose3d}[case.rank]
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    kw = case.kwargs()

    def call():
        with torch.no_grad():
            return conv(xt, wt, None, **kw)

    return call, lambda y: y.numpy()


def _build_onnxruntime(case, x, w, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[str(x.dtype)]
    r = case.rank
    node = helper.make_node(
        "ConvTranspose", ["X", "W"], ["Y"],
        kernel_shape=[case.kernel] * r, strides=[case.stride] * r,
        pads=[case.padding] * (2 * r), output_padding=[case.output_padding] * r,
        dilations=[case.dilation] * r, group=case.groups)
    graph = helper.make_graph(
        [node], "conv_transpose",
        [helper.make_tensor_value_info("X", elem, list(x.shape))],
        [helper.make_tensor_value_info("Y", elem, list(case.out_shape))],
        initializer=[onnx.numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # opset 17's IR version; newer onnx writes one ORT may reject
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. no float64 ConvTranspose kernel
        raise NotApplicable(_first_line(e)) from None
    feed = {"X": x}
    return (lambda: sess.run(["Y"], feed)[0]), np.asarray


def _build_tensorflow(case, x, w, threads):
    import tensorflow as tf
    if case.dilation > 1 and x.dtype != np.float32:
        raise NotApplicable("TF CPU conv transpose takes dilation > 1 in float32 only (oneDNN)")
    if case.groups > 1:
        raise NotApplicable("TF conv transpose has no groups")
    r = case.rank
    # Channels last; filter [*k, out, in] is our [in, out, *k] transposed.
    xl = tf.constant(np.moveaxis(x, 1, -1))
    wl = tf.constant(np.transpose(w, tuple(range(2, 2 + r)) + (1, 0)))
    k, s, p, op, d = case.kernel, case.stride, case.padding, case.output_padding, case.dilation
    full = [(i - 1) * s + d * (k - 1) + 1 for i in case.spatial]
    out_shape = [case.N] + full + [case.C_out]
    conv = {1: tf.nn.conv1d_transpose, 2: tf.nn.conv2d_transpose,
            3: tf.nn.conv3d_transpose}[r]
    extra = max(0, op - p)          # output_padding beyond the cropped pad
    stop = [f - p + op for f in full]
    sl = (slice(None),) + tuple(slice(p, e) for e in stop) + (slice(None),)

    @tf.function
    def call_tf(xx, ww):
        y = conv(xx, ww, out_shape, strides=s, padding="VALID", dilations=d)
        if extra:
            y = tf.pad(y, [[0, 0]] + [[0, extra]] * r + [[0, 0]])
        return y[sl]

    def to_numpy(y):
        return np.ascontiguousarray(np.moveaxis(y.numpy(), -1, 1))

    return (lambda: call_tf(xl, wl)), to_numpy


def _build_jax(case, x, w, threads):
    import jax
    import jax.numpy as jnp
    from jax import lax
    r, g = case.rank, case.groups
    k, s, p, op, d = (case.kernel, case.stride, case.padding,
                      case.output_padding, case.dilation)
    # Direct form: (C_in, C_out/g, *k) -> (C_out, C_in/g, *k), flipped.
    cin_g, cout_g = case.C_in // g, case.C_out // g
    rhs = w.reshape((g, cin_g, cout_g) + w.shape[2:])
    rhs = np.swapaxes(rhs, 1, 2).reshape((case.C_out, cin_g) + w.shape[2:])
    rhs = np.ascontiguousarray(rhs[(slice(None), slice(None))
                                   + (slice(None, None, -1),) * r])
    lo = d * (k - 1) - p
    pads = [(lo, lo + op)] * r
    sp = "DHW"[-r:] if r <= 3 else None
    dn = ("NC" + sp, "OI" + sp, "NC" + sp)

    @jax.jit
    def call_jax(xx, ww):
        return lax.conv_general_dilated(
            xx, ww, window_strides=(1,) * r, padding=pads,
            lhs_dilation=(s,) * r, rhs_dilation=(d,) * r,
            dimension_numbers=dn, feature_group_count=g)

    xj, wj = jnp.asarray(x), jnp.asarray(rhs)
    return (lambda: call_jax(xj, wj).block_until_ready()), np.asarray


_BUILDERS = {OURS: _build_ours, "torch": _build_torch,
             "onnxruntime": _build_onnxruntime, "tensorflow": _build_tensorflow,
             "jax": _build_jax}


def _first_line(e, limit=200):
    """A one-line reason: the first line, keeping its end when it is long
    (ONNX Runtime puts the cause after a long source location)."""
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0] if text else ''}"
    return msg if len(msg) <= limit else msg[:60] + " … " + msg[-(limit - 63):]


# ---------------------------------------------------------------------------
# Worker process: one library, every case, JSON lines on stdout
# ---------------------------------------------------------------------------

def _thread_env(threads):
    env = dict(os.environ)
    t = str(threads)
    env.update({
        "NUMBA_NUM_THREADS": t, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
        "OPENBLAS_NUM_THREADS": t, "BLIS_NUM_THREADS": t,
        "VECLIB_MAXIMUM_THREADS": t, "NUMEXPR_NUM_THREADS": t,
        "TF_NUM_INTRAOP_THREADS": t, "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def _pin_cpus(threads):
    """Restrict this process to ``threads`` CPUs when the machine has more."""
    with contextlib.suppress(AttributeError, OSError):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > threads:
            os.sched_setaffinity(0, cpus[:threads])


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_main(lib, spec_path):
    """Time ``lib`` on every item of the spec, reporting JSON lines."""
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    threads = spec["threads"]
    _pin_cpus(threads)
    try:
        version = setup_library(lib, threads)
    except ImportError as e:
        _emit({"event": "missing", "reason": _first_line(e)})
        return 0
    _emit({"event": "version", "version": version})
    if spec.get("gemm"):
        _emit({"event": "gemm", "gflops": gemm_rate(spec.get("gemm_size", 2048))})
    for item in spec["items"]:
        case = Case.from_dict(item["case"])
        x = np.load(item["x"])
        w = np.load(item["w"])
        res = {"event": "result", "id": item["id"]}
        try:
            call, to_numpy = build_call(lib, case, x, w, threads)
            out = to_numpy(call())
            np.save(item["out"] + f".{lib}.npy", out)
            res["timing"] = measure(call, min_time=spec["min_time"],
                                    repeat=spec.get("repeat")).to_dict()
            res["status"] = "ok"
        except NotApplicable as e:
            res.update(status="n/a", reason=str(e))
        except Exception as e:  # report, keep going with the next case
            res.update(status="error", reason=_first_line(e))
        _emit(res)
    if spec.get("gemm"):   # again: the best of both is the machine's ceiling
        _emit({"event": "gemm", "gflops": gemm_rate(spec.get("gemm_size", 2048))})
    if lib == OURS and spec.get("memory"):
        # After every timing: measuring memory fixes glibc's mmap threshold,
        # after which each large allocation is mapped and faulted in afresh
        # (it made signal_1d's calls 60 % slower when it ran in between).
        for item in spec["items"]:
            with contextlib.suppress(Exception):
                call, _ = build_call(lib, Case.from_dict(item["case"]),
                                     np.load(item["x"]), np.load(item["w"]), threads)
                _emit({"event": "workspace", "id": item["id"],
                       "bytes": workspace_bytes(call)})
    return 0


# ---------------------------------------------------------------------------
# The parent: run the workers, check the outputs, make the table
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    """One library on one (case, dtype)."""

    status: str                     # ok, n/a, error, mismatch, not installed
    timing: Timing | None = None
    reason: str = ""
    workspace: int | None = None    # bytes (ours only)
    max_err: float | None = None    # max |peer - ours| / max |ours|

    @property
    def seconds(self):
        return self.timing.median if (self.timing and self.status == "ok") else None


@dataclasses.dataclass
class Row:
    case: Case
    dtype: str
    results: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self):
        return self.case.name if self.dtype == self.case.dtype else \
            f"{self.case.name}[{self.dtype}]"

    @property
    def ours(self):
        return self.results.get(OURS, Result("not run")).seconds

    def best_peer(self):
        """``(name, seconds)`` of the fastest peer that ran and agreed."""
        times = [(r.seconds, lib) for lib, r in self.results.items()
                 if lib != OURS and r.seconds is not None]
        if not times:
            return None, None
        t, lib = min(times)
        return lib, t

    def speedup(self):
        _, t = self.best_peer()
        if t is None or self.ours is None:
            return None
        return t / self.ours

    def gflops(self):
        return None if self.ours is None else self.case.flops / self.ours / 1e9


@dataclasses.dataclass
class Report:
    rows: list
    libs: list                      # [OURS, *peers] in column order
    versions: dict                  # lib -> version string or None if missing
    gemm_gflops: float | None
    threads: int
    machine: str

    def to_dict(self):
        rows = []
        for row in self.rows:
            rows.append({
                "case": row.case.name, "dtype": row.dtype,
                "flops": row.case.flops,
                "results": {lib: {"status": r.status, "reason": r.reason,
                                  "timing": r.timing.to_dict() if r.timing else None,
                                  "workspace": r.workspace, "max_err": r.max_err}
                            for lib, r in row.results.items()},
                "best_peer": row.best_peer()[0], "speedup": row.speedup()})
        return {"machine": self.machine, "threads": self.threads,
                "gemm_gflops": self.gemm_gflops, "versions": self.versions,
                "rows": rows}


def machine_description():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count()
    return f"{cpu}, {n} CPUs available, Python {platform.python_version()}"


def _progress(msg, stream):
    if stream is not None:
        stream.write(msg + "\n")
        stream.flush()


def run(cases=None, dtypes=None, peers=PEERS, *, min_time=1.0, repeat=None,
        threads=2, gemm=True, gemm_size=2048, memory=True, rounds=1,
        progress=sys.stderr, case_file=None, timeout=1800) -> Report:
    """Run the benchmark and return a :class:`Report`.

    ``cases`` are case names (default all), ``dtypes`` as in
    :func:`select_cases`, ``peers`` a subset of :data:`PEERS`. With
    ``rounds > 1`` every library is run that many times, the libraries
    interleaved, and each keeps its fastest median: on a shared machine a
    burst of load then hurts no library alone.
    """
    peers = list(peers)
    for p in peers:
        if p not in PEERS:
            raise ValueError(f"unknown peer {p!r}; choose from {', '.join(PEERS)}")
    pairs = select_cases(load_cases(case_file), cases, dtypes)
    rows = [Row(c, dt) for c, dt in pairs]
    libs = [OURS] + peers
    versions = {}
    gemm_gflops = None
    tmp = tempfile.mkdtemp(prefix="numba_deconv_bench_")
    try:
        items = []
        for i, (c, dt) in enumerate(pairs):
            x, w = make_inputs(c, dt, seed=i)
            xp, wp = os.path.join(tmp, f"x{i}.npy"), os.path.join(tmp, f"w{i}.npy")
            np.save(xp, x)
            np.save(wp, w)
            items.append({"id": i, "case": c.to_dict(), "x": xp, "w": wp,
                          "out": os.path.join(tmp, f"y{i}")})
        for rnd, lib in ((r, lib) for r in range(max(1, rounds)) for lib in libs):
            if rnd and versions.get(lib, "") is None:
                continue   # not installed: no point asking again
            if rounds > 1:
                _progress(f"round {rnd + 1}/{rounds}", progress)
            spec = {"items": items, "threads": threads, "min_time": min_time,
                    "repeat": repeat, "gemm": gemm and lib == OURS,
                    "gemm_size": gemm_size, "memory": memory}
            spec_path = os.path.join(tmp, f"spec_{lib}.json")
            with open(spec_path, "w", encoding="utf-8") as f:
                json.dump(spec, f)
            for ev in _run_worker(lib, spec_path, threads, timeout, progress):
                kind = ev["event"]
                if kind == "missing":
                    versions[lib] = None
                    for row in rows:
                        row.results[lib] = Result("not installed", reason=ev["reason"])
                    _progress(f"  {lib}: not installed ({ev['reason']})", progress)
                elif kind == "version":
                    versions[lib] = ev["version"]
                    _progress(f"{PEER_LABELS[lib]} {ev['version']}", progress)
                elif kind == "gemm":
                    gemm_gflops = max(gemm_gflops or 0.0, ev["gflops"])
                    _progress(f"  float32 GEMM {gemm_size}^3: "
                              f"{ev['gflops']:.0f} GFLOP/s", progress)
                elif kind == "result":
                    row = rows[ev["id"]]
                    t = Timing(**ev["timing"]) if ev.get("timing") else None
                    new = Result(ev["status"], t, ev.get("reason", ""),
                                 ev.get("workspace"))
                    old = row.results.get(lib)
                    if old is None or old.seconds is None or (
                            new.seconds is not None and new.seconds < old.seconds):
                        if old is not None and new.workspace is None:
                            new.workspace = old.workspace
                        row.results[lib] = new
                    _progress(f"  [{ev['id'] + 1}/{len(rows)}] {row.label} "
                              f"{row.dtype}: " + _cell(new), progress)
                elif kind == "workspace":
                    result = rows[ev["id"]].results.get(lib)
                    if result is not None and result.workspace is None:
                        result.workspace = ev["bytes"]
                elif kind == "crash":
                    for row in rows:
                        row.results.setdefault(lib, Result("error", reason=ev["reason"]))
                    versions.setdefault(lib, "?")
                    _progress(f"  {lib} failed: {ev['reason']}", progress)
        for i, row in enumerate(rows):
            _verify(row, items[i]["out"], libs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Report(rows, libs, versions, gemm_gflops, threads, machine_description())


_BOOT = ("import runpy, sys; sys.argv = [sys.argv[1]] + sys.argv[2:]; "
         "runpy.run_path(sys.argv[0], run_name='__main__')")


def _run_worker(lib, spec_path, threads, timeout, progress):
    """Yield the worker's events; a crash or timeout becomes a 'crash' event."""
    _progress(f"{PEER_LABELS[lib]}: starting its own process", progress)
    here = os.path.abspath(__file__)
    env = _thread_env(threads)
    if lib == OURS:
        # The worker runs this file as a script: make sure the package that
        # this file belongs to is the one it imports.
        root = os.path.dirname(os.path.dirname(here))
        env["PYTHONPATH"] = os.pathsep.join(
            [root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT, here, "--worker", lib, spec_path],
        stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    deadline = time.monotonic() + timeout
    got_any = False
    try:
        for line in proc.stdout:
            if time.monotonic() > deadline:
                proc.kill()
                yield {"event": "crash", "reason": f"timed out after {timeout} s"}
                return
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a library printing on stdout
            got_any = True
            yield ev
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            tail = [ln for ln in err.read().strip().splitlines() if ln.strip()]
            reason = f"exit status {rc}" + (f": {tail[-1][:200]}" if tail else "")
            yield {"event": "crash", "reason": reason}
        elif not got_any:
            yield {"event": "crash", "reason": "worker reported nothing"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


def _verify(row, out_base, libs):
    """Compare each peer's saved output with ours (or, without ours, with the
    first peer that ran); a disagreement turns the peer's status to mismatch."""
    ref_lib = next((lib for lib in libs if row.results.get(lib)
                    and row.results[lib].status == "ok"), None)
    if ref_lib is None:
        return
    ref = np.load(f"{out_base}.{ref_lib}.npy")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = TOLERANCE.get(row.dtype, 1e-4)
    for lib in libs:
        r = row.results.get(lib)
        if lib == ref_lib or r is None or r.status != "ok":
            continue
        y = np.load(f"{out_base}.{lib}.npy")
        if y.shape != ref.shape:
            r.status, r.reason = "mismatch", \
                f"shape {y.shape} but {ref_lib} gives {ref.shape}"
            continue
        err = float(np.max(np.abs(y.astype(np.float64) - ref))) if y.size else 0.0
        r.max_err = err / scale if scale else err
        if not r.max_err <= tol:
            r.status = "mismatch"
            r.reason = (f"max |{lib} - {ref_lib}| = {r.max_err:.2e} of the "
                        f"largest output (tolerance {tol:g})")


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------

def format_time(seconds) -> str:
    """``7.20 µs``, ``6.27 ms``, ``131.8 ms``, ``1.23 s`` (3-4 significant digits)."""
    if seconds is None:
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            digits = 1 if v >= 100 else 2 if v >= 10 else 3
            return f"{v:.{digits}f} {unit}"


def _cell(r: Result) -> str:
    if r.status == "ok":
        return format_time(r.seconds)
    if r.status == "mismatch":
        return f"mismatch ({format_time(r.timing.median)})" if r.timing else "mismatch"
    return r.status


def format_table(report: Report) -> str:
    """The report as an aligned Markdown table, with notes underneath."""
    peers = [lib for lib in report.libs if lib != OURS]
    header = ["case", "dtype", "ours", "GFLOP/s", "% GEMM", "extra MB"] + \
        [PEER_LABELS[p] for p in peers] + ["best peer", "speedup"]
    body = []
    notes = []
    for row in report.rows:
        ours = row.results.get(OURS, Result("not run"))
        gf = row.gflops()
        gemm = report.gemm_gflops
        pct = f"{100 * gf / gemm:.0f} %" if (gf is not None and gemm) else "–"
        ws = ours.workspace
        cells = [row.label, row.dtype, _cell(ours),
                 "–" if gf is None else f"{gf:.1f}" if gf < 10 else f"{gf:.0f}",
                 pct, "–" if ws is None else f"{ws / 2**20:.1f}"]
        for p in peers:
            r = row.results.get(p, Result("not run"))
            cells.append(_cell(r))
        best, _ = row.best_peer()
        sp = row.speedup()
        cells += [PEER_LABELS[best] if best else "–",
                  "–" if sp is None else f"{sp:.2f}×"]
        body.append(cells)
        for lib, r in row.results.items():
            if r.status in ("n/a", "error", "mismatch") and r.reason:
                notes.append(f"{row.label} {PEER_LABELS[lib]}: {r.status}: {r.reason}")
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    right = set(range(2, len(header)))

    def line(cells):
        return "| " + " | ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    out = [line(header), sep] + [line(b) for b in body]
    gemm = f"{report.gemm_gflops:.0f} GFLOP/s" if report.gemm_gflops else "not measured"
    head = [f"Machine: {report.machine}; {report.threads} threads per library, "
            "each library in its own process; medians after warm-up.",
            f"float32 GEMM (NumPy matmul, best of before and after ours) in "
            f"this run: {gemm}.",
            "Versions: " + "; ".join(
                f"{PEER_LABELS[lib]} {v if v else 'not installed'}"
                for lib, v in report.versions.items()),
            ""]
    missing = [PEER_LABELS[lib] for lib, v in report.versions.items()
               if v is None and lib != OURS]
    tail = []
    if missing:
        tail.append("Not installed: " + ", ".join(missing) +
                    " (pip install numba_deconv[bench]).")
    notes = sorted(set(notes), key=notes.index)
    if notes:
        tail += ["Notes:"] + [f"- {n}" for n in notes]
    tail.append("speedup = best peer's median / ours (> 1 means we are faster); "
                "extra MB = our peak memory beyond the output (estimate).")
    return "\n".join(head + out + [""] + tail)


def plot(report: Report, path):
    """Grouped bar chart of the medians (log scale), one group per case."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "--plot needs matplotlib: pip install matplotlib "
            "(or pip install numba_deconv[bench])") from None
    libs = [lib for lib in report.libs
            if any(r.results.get(lib) and r.results[lib].seconds for r in report.rows)]
    if not libs:
        raise SystemExit("--plot: no library produced a time to plot")
    n = len(report.rows)
    width = 0.8 / len(libs)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * n + 3), 4.5))
    for j, lib in enumerate(libs):
        xs, ys = [], []
        for i, row in enumerate(report.rows):
            r = row.results.get(lib)
            if r and r.seconds:
                xs.append(i + (j - (len(libs) - 1) / 2) * width)
                ys.append(r.seconds * 1e3)
        ax.bar(xs, ys, width,
               label="numba_deconv" if lib == OURS else PEER_LABELS[lib])
    ax.set_yscale("log")
    ax.set_xticks(range(n))
    ax.set_xticklabels([r.label for r in report.rows], rotation=30, ha="right")
    ax.set_ylabel("median time per call (ms, log scale; lower is better)")
    ax.set_title(f"conv_transpose, {report.threads} threads each")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _peer_list(text):
    if text.strip().lower() in ("", "none"):
        return []
    peers = [p.strip() for p in text.split(",") if p.strip()]
    aliases = {"pytorch": "torch", "ort": "onnxruntime", "onnx": "onnxruntime",
               "tf": "tensorflow"}
    peers = [aliases.get(p.lower(), p.lower()) for p in peers]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {bad}; choose from {','.join(PEERS)} or 'none'")
    return list(dict.fromkeys(peers))


def configure_parser(p):
    """Add the bench options to an ``argparse`` parser."""
    p.add_argument("--case", nargs="+", action="extend", metavar="NAME",
                   help="cases of the table to run (default: all); repeatable")
    p.add_argument("--case-file", metavar="FILE.json",
                   help="run your own shapes: a JSON file in the format of "
                        "bench_cases.json (default: the standard table); "
                        "benchmarks/spread_cases.json is a wider spread")
    p.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES,
                   help="run the cases in these dtypes (default: each case's own)")
    p.add_argument("--peers", type=_peer_list, default=list(PEERS),
                   metavar="LIST",
                   help="comma-separated peers to time, or 'none' "
                        f"(default: {','.join(PEERS)})")
    p.add_argument("--min-time", type=float, default=1.0, metavar="SECONDS",
                   help="time to spend sampling each case per library (default 1)")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="exactly N samples per case instead of --min-time")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="run every library N times, interleaved, keeping each "
                        "one's fastest median (steadier on a busy machine)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads per library (default 2)")
    p.add_argument("--no-gemm", dest="gemm", action="store_false",
                   help="skip measuring the float32 GEMM rate")
    p.add_argument("--gemm-size", type=int, default=2048, metavar="N",
                   help="size of the reference GEMM (default 2048)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip estimating our extra peak memory")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw a grouped bar chart (needs matplotlib)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the full results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run_from_args)
    return p


def add_parser(subparsers):
    """Register the ``bench`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "bench", help="time conv_transpose against PyTorch, ONNX Runtime, "
                      "TensorFlow and JAX on the standard workloads",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return configure_parser(p)


def run_from_args(args) -> int:
    """Run ``bench`` for parsed arguments; returns the exit status."""
    if args.plot:   # fail before the long run, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install matplotlib",
                  file=sys.stderr)
            return 2
    if args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    try:
        report = run(args.case, args.dtype, args.peers, min_time=args.min_time,
                     repeat=args.repeat, threads=args.threads, gemm=args.gemm,
                     gemm_size=args.gemm_size, memory=args.memory,
                     rounds=args.rounds, case_file=args.case_file,
                     progress=None if args.quiet else sys.stderr)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=1)
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def main(argv=None) -> int:
    """``python -m numba_deconv.bench`` without the package's CLI."""
    p = argparse.ArgumentParser(prog="numba_deconv bench",
                                description=__doc__.split("\n\n")[0])
    configure_parser(p)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
