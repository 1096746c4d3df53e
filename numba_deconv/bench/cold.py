"""Cold start: ``import`` plus the first call, in fresh processes.

What a new user, a CI job or a cluster worker waits for before the first
result. Each measurement is its own Python process, timed from just before
the library's import to the end of its first call (the interpreter's own
start and NumPy's import, the same for every library, are left out). Ours
runs with an empty Numba cache (cold), then again in a new process on the
cache the first one filled (warm); PyTorch's first call, for comparison,
has no on-disk state to warm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import typing

from .cases import Case

# Run in the child: the arguments arrive as JSON, nothing of ours is
# imported before the clock starts.
_CHILD = """
import json, sys, time
spec = json.loads(sys.argv[1])
import numpy as np
rng = np.random.default_rng(0)
a, b = (rng.standard_normal(spec[k]) + 1j * rng.standard_normal(spec[k])
        if np.dtype(spec["dtype"]).kind == "c" else rng.standard_normal(spec[k])
        for k in "ab")
a, b = a.astype(spec["dtype"]), b.astype(spec["dtype"])
if spec["channels_last"]:
    a = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    spec["kwargs"]["data_format"] = "channels_last"
start = time.perf_counter()
if spec["lib"] == "ours":
    import numba_deconv
    getattr(numba_deconv, spec["op"])(a, b, **spec["kwargs"])
    seconds = time.perf_counter() - start
    # Tuned kernels still compiling in a helper process finish first, so
    # that they neither slow the next measurement nor miss its cache.
    from numba_deconv.cpu import tiering
    tiering.wait()
else:
    import torch
    torch.set_num_threads(spec["threads"])
    with torch.no_grad():
        getattr(torch.nn.functional, spec["op"] + str(spec["rank"]) + "d")(
            torch.from_numpy(a), torch.from_numpy(b), None, **spec["kwargs"])
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds}))
"""


class ColdRow(typing.NamedTuple):
    case: str
    dtype: str
    ours_cold: float
    ours_warm: float
    torch: float | None  # None: PyTorch not installed


def first_call_seconds(lib: str, case: Case, dtype: str, op: str = "conv_transpose",
                       threads: int = 2, cache_dir: str | None = None,
                       channels_last: bool = False) -> float:
    """Seconds from ``import`` to the end of the first ``op`` call of
    ``lib`` ("ours" or "torch") in a new process; ours uses Numba's cache
    in ``cache_dir`` (empty: cold), and takes its input channels last where
    ``channels_last``. A complex ``dtype`` has random imaginary parts."""
    a, b, _ = case.shapes(op)
    spec = dict(lib=lib, op=op, rank=case.rank, dtype=dtype, a=list(a), b=list(b),
                kwargs=case.kwargs(op), threads=threads, channels_last=channels_last)
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{lib} {case.name} {dtype}: the child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def cold_start(pairs, op="conv_transpose", threads=2, torch=True, progress=None) -> list:
    """A :class:`ColdRow` per ``(case, dtype)`` of ``pairs`` (from
    :func:`.cases.select_cases`)."""
    rows = []
    for i, (case, dtype) in enumerate(pairs, 1):
        with tempfile.TemporaryDirectory(prefix="numba_deconv_cold_") as cache:
            cold = first_call_seconds("ours", case, dtype, op, threads, cache)
            warm = first_call_seconds("ours", case, dtype, op, threads, cache)
        peer = first_call_seconds("torch", case, dtype, op, threads) if torch else None
        rows.append(ColdRow(case.name, dtype, cold, warm, peer))
        if progress is not None:
            print(f"  [{i}/{len(pairs)}] {case.name} {dtype}: cold {cold:.2f} s, warm "
                  f"{warm:.2f} s" + ("" if peer is None else f", PyTorch {peer:.2f} s"),
                  file=progress, flush=True)
    return rows


class ColdVariantRow(typing.NamedTuple):
    case: str
    dtype: str
    first: tuple  # (cold, warm) seconds, channels first
    last: tuple  # channels last
    complex: tuple  # the complex dtype of the same width, channels first


#: The complex dtype of each real one's width.
COMPLEX_OF = {"float32": "complex64", "float64": "complex128"}


def cold_variants(pairs, op="conv_transpose", threads=2, progress=None) -> list:
    """A :class:`ColdVariantRow` per ``(case, dtype)`` of ``pairs``: ours
    cold and warm channels first, channels last and on complex data (no
    peers)."""
    rows = []
    for i, (case, dtype) in enumerate(pairs, 1):
        times = []
        for variant_dtype, channels_last in ((dtype, False), (dtype, True),
                                             (COMPLEX_OF[dtype], False)):
            with tempfile.TemporaryDirectory(prefix="numba_deconv_cold_") as cache:
                times.append(tuple(first_call_seconds("ours", case, variant_dtype, op, threads,
                                                      cache, channels_last)
                                   for _ in ("cold", "warm")))
        rows.append(ColdVariantRow(case.name, dtype, *times))
        if progress is not None:
            print(f"  [{i}/{len(pairs)}] {case.name} {dtype}: cold {times[0][0]:.2f} s, "
                  f"channels last {times[1][0]:.2f} s, complex {times[2][0]:.2f} s",
                  file=progress, flush=True)
    return rows


def format_cold_variants_table(rows, op="conv_transpose") -> str:
    """A Markdown table of :func:`cold_variants`' rows."""
    lines = [f"Cold start of {op} by layout and dtype: import plus the first call, each in a "
             "new process (cold: empty Numba cache; warm: the cache the cold run filled).", "",
             "| case | dtype | cold | warm | channels last cold | warm | complex cold | warm |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        cells = " | ".join(f"{seconds:.2f} s" for pair in (r.first, r.last, r.complex)
                           for seconds in pair)
        lines.append(f"| {r.case} | {r.dtype} | {cells} |")
    return "\n".join(lines)


def format_cold_table(rows, op="conv_transpose") -> str:
    """A Markdown table of :func:`cold_start`'s rows."""
    lines = [f"Cold start of {op}: import plus the first call, each in a new process "
             "(ours cold: empty Numba cache; warm: the cache the cold run filled).", "",
             "| case | dtype | ours cold | ours warm | PyTorch | PyTorch / ours cold |",
             "|---|---|--:|--:|--:|--:|"]
    for r in rows:
        peer = "–" if r.torch is None else f"{r.torch:.2f} s"
        ratio = "–" if r.torch is None else f"{r.torch / r.ours_cold:.2f}×"
        lines.append(f"| {r.case} | {r.dtype} | {r.ours_cold:.2f} s | {r.ours_warm:.2f} s | "
                     f"{peer} | {ratio} |")
    return "\n".join(lines)
