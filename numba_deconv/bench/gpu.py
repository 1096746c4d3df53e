"""``bench --device cuda``: the CUDA kernels beside PyTorch's (cuDNN) on one GPU.

Each case runs three ways on the same device data:

- ours through the public function with Numba device arrays in and
  ``out=`` (what a Numba or CuPy user calls);
- ours with PyTorch CUDA tensors in and out (the CUDA Array Interface:
  what a PyTorch user calls; Numba synchronises on the tensors' stream
  when it imports them, and that shows here);
- PyTorch's ``conv_transpose{1,2,3}d`` (``conv{1,2,3}d`` for ``--op conv``)
  with ``cudnn.benchmark`` on, once in exact float32 arithmetic (TF32 off,
  the comparison that counts: ours is exact) and once as PyTorch ships,
  with TF32 tensor cores allowed for float32 convolutions.

Times are CUDA-event medians over samples of back-to-back calls, so they
are the throughput of a loop of calls: the larger of the host's cost per
call and the kernel's time. The yardsticks are the GPU's GEMM rates
(PyTorch's matrix product, TF32 off) and its device-to-device copy rate,
measured in the same run.
"""

from __future__ import annotations

import statistics
import time
import typing

import numpy as np

from .cases import make_inputs

#: Seconds of calls per timed sample (many calls for the small cases).
SAMPLE_SECONDS = 0.02
#: At most this many calls per sample, and samples per timing.
MAX_CALLS = 2000
MAX_SAMPLES = 50


class GpuRow(typing.NamedTuple):
    case: str
    dtype: str
    flops: int
    ours: float                 # seconds per call, Numba device arrays
    ours_torch: float | None    # seconds per call, PyTorch tensors in and out
    cudnn: float | None         # PyTorch, exact float32 (TF32 off)
    cudnn_tf32: float | None    # PyTorch as shipped (TF32 allowed); float32 only
    error: float | None         # max |ours - PyTorch exact| / max(1, max |PyTorch|)


class _WallEvent:
    """A stand-in for a CUDA event under Numba's CUDA simulator, whose
    events do not time: the host's clock after a synchronisation."""

    def __init__(self, cuda):
        self._cuda, self._at = cuda, None

    def record(self):
        self._cuda.synchronize()
        self._at = time.perf_counter()

    synchronize = record

    def elapsed_time(self, end):   # milliseconds, as CUDA events give it
        return (end._at - self._at) * 1e3


def torch_with_cuda():
    """PyTorch if it is installed and sees a GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _seconds_per_call(call, sync, event, min_time):
    """Median seconds per call over samples of back-to-back calls, timed by
    CUDA events (``event()`` makes one with timing on)."""
    for _ in range(3):
        call()
    sync()
    t0 = time.perf_counter()
    call()
    sync()
    one = max(time.perf_counter() - t0, 1e-6)
    calls = int(min(MAX_CALLS, max(1, SAMPLE_SECONDS // one)))
    samples = int(min(MAX_SAMPLES, max(5, min_time // (calls * one))))
    per_call = []
    for _ in range(samples):
        start, end = event(), event()
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(per_call)


def gpu_yardsticks(torch) -> dict:
    """The GPU's float32 and float64 GEMM rates (GFLOP/s, TF32 off) and its
    device-to-device copy rate (GB/s, bytes read plus written)."""
    def event():
        return torch.cuda.Event(enable_timing=True)

    rates = {}
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for dtype, n in (("float32", 8192), ("float64", 4096)):
            a = torch.rand(n, n, device="cuda", dtype=getattr(torch, dtype))
            seconds = _seconds_per_call(lambda a=a: a @ a, torch.cuda.synchronize, event, 0.5)
            rates[f"gemm_{dtype}_gflops"] = 2 * n**3 / seconds / 1e9
            del a
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    block = torch.empty(2**28, device="cuda", dtype=torch.float32)   # 1 GiB
    seconds = _seconds_per_call(block.clone, torch.cuda.synchronize, event, 0.5)
    rates["copy_gbps"] = 2 * block.nbytes / seconds / 1e9
    rates["device"] = torch.cuda.get_device_name()
    return rates


def time_on_gpu(pairs, op="conv_transpose", min_time=1.0, progress=None) -> list:
    """A :class:`GpuRow` per ``(case, dtype)`` of ``pairs``.

    Raises ``RuntimeError`` when no CUDA GPU is usable (before any case).
    """
    import numba_deconv
    from numba_deconv.cuda.backend import _require_cuda, _simulating

    cuda = _require_cuda()
    numba_event = ((lambda: _WallEvent(cuda)) if _simulating()
                   else (lambda: cuda.event(timing=True)))
    torch = torch_with_cuda()
    ours = getattr(numba_deconv, op)
    rows = []
    for i, (case, dtype) in enumerate(pairs):
        if progress is not None:
            print(f"[{i + 1}/{len(pairs)}] {case.name} {dtype}", file=progress, flush=True)
        a, b = make_inputs(case, dtype, seed=i, op=op)
        kwargs = case.kwargs(op)
        out_shape = case.shapes(op)[2]
        a_d, b_d = cuda.to_device(a), cuda.to_device(b)
        out_d = cuda.device_array(out_shape, dtype=dtype)

        def call_ours():
            ours(a_d, b_d, out=out_d, device="cuda", **kwargs)

        if torch is None:
            seconds = _seconds_per_call(call_ours, cuda.synchronize, numba_event, min_time)
            rows.append(GpuRow(case.name, dtype, case.flops, seconds, None, None, None, None))
            continue

        def event():
            return torch.cuda.Event(enable_timing=True)

        sync = torch.cuda.synchronize
        a_t, b_t = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        out_t = torch.empty(out_shape, dtype=a_t.dtype, device="cuda")
        peer = getattr(torch.nn.functional, f"{op}{case.rank}d")

        def call_ours_torch():
            ours(a_t, b_t, out=out_t, device="cuda", **kwargs)

        def call_peer():
            with torch.no_grad():
                return peer(a_t, b_t, None, **kwargs)

        # PyTorch's settings as it ships, restored after: a caller of this
        # function keeps its own.
        old_benchmark = torch.backends.cudnn.benchmark
        old_tf32 = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            exact = call_peer().double().cpu().numpy()
            cudnn = _seconds_per_call(call_peer, sync, event, min_time)
            tf32 = None
            if dtype == "float32":
                torch.backends.cudnn.allow_tf32 = True
                tf32 = _seconds_per_call(call_peer, sync, event, min_time)
        finally:
            torch.backends.cudnn.benchmark = old_benchmark
            torch.backends.cudnn.allow_tf32 = old_tf32
        mine = _seconds_per_call(call_ours, sync, event, min_time)
        got = out_d.copy_to_host().astype(np.float64)
        error = float(np.abs(got - exact).max(initial=0.0)
                      / max(1.0, np.abs(exact).max(initial=0.0)))
        mine_torch = _seconds_per_call(call_ours_torch, sync, event, min_time)
        rows.append(GpuRow(case.name, dtype, case.flops, mine, mine_torch, cudnn, tf32, error))
    return rows


def format_gpu_table(rows, yardsticks=None) -> str:
    """The rows as a Markdown table, the yardsticks underneath."""
    yardsticks = yardsticks or {}

    def us(seconds):
        return "–" if seconds is None else f"{seconds * 1e6:.1f}" if seconds < 1e-3 \
            else f"{seconds * 1e6:.0f}"

    header = ["case", "dtype", "ours µs", "GFLOP/s", "% GEMM", "ours, torch tensors µs",
              "cuDNN µs", "cuDNN TF32 µs", "cuDNN ÷ ours", "max rel. error"]
    body = []
    for r in rows:
        gflops = r.flops / r.ours / 1e9
        gemm = yardsticks.get(f"gemm_{r.dtype}_gflops")
        body.append([r.case, r.dtype, us(r.ours), f"{gflops:.0f}",
                     f"{100 * gflops / gemm:.0f} %" if gemm else "–",
                     us(r.ours_torch), us(r.cudnn), us(r.cudnn_tf32),
                     "–" if r.cudnn is None else f"{r.cudnn / r.ours:.2f}×",
                     "–" if r.error is None else f"{r.error:.1e}"])
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    lines = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [line(b) for b in body]
    if yardsticks:
        lines.append("")
        lines.append(
            f"{yardsticks['device']}: GEMM {yardsticks['gemm_float32_gflops']:.0f} GFLOP/s "
            f"float32 (TF32 off), {yardsticks['gemm_float64_gflops']:.0f} float64; "
            f"device copy {yardsticks['copy_gbps']:.0f} GB/s (read + write).")
    if rows and rows[0].cudnn is None:
        lines.append("PyTorch with CUDA is not installed here: ours alone.")
    return "\n".join(lines)
