"""Ours in the other data format and on complex data, beside the plain call.

The same case and weights, three ways, timed in one process per case:
channels-first real data (the table's call), the same data channels last
(``data_format="channels_last"``), and complex data of the same width
(``complex64`` beside ``float32``: four real products per complex one). The
ratios are what a user pays for the layout and for complex numbers; the
goals are at most 1.1x for channels last and 4.5x for complex.

Each case runs in its own process with ``--threads`` threads, the tuned
kernels compiled in place (as :mod:`.harness`'s workers do), and checks
that the channels-last result is the channels-first one transposed, bit
for bit, before it is timed. The three calls are timed in turn, a batch of
each per round (:func:`.harness.measure_together`, ``repeat`` rounds,
15 by default): timed one after the other, a slow spell of the machine fell
on one of them, and the same case's complex ratio read 1.9x and 3.2x in
two runs a minute apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing

from .cases import Case

# Run in the child: a case and dtype as JSON; one JSON line of seconds back.
_CHILD = """
import json, sys
import numpy as np
import numba, numba_deconv
from numba_deconv.bench.cases import Case, make_inputs
from numba_deconv.bench.harness import measure_together
spec = json.loads(sys.argv[1])
numba.set_num_threads(min(spec["threads"], numba.config.NUMBA_NUM_THREADS))
case = Case.from_dict(spec["case"])
kwargs = case.kwargs()
x, w = make_inputs(case, spec["dtype"], seed=spec["seed"])
x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
wide = np.result_type(x.dtype, np.complex64)
x_c = (x + 1j * np.roll(x, 1)).astype(wide)
w_c = (w - 1j * np.roll(w, 1)).astype(wide)
first = numba_deconv.conv_transpose(x, w, **kwargs)
last = numba_deconv.conv_transpose(x_last, w, data_format="channels_last", **kwargs)
if not np.array_equal(np.moveaxis(first, 1, -1), last, equal_nan=True):
    sys.exit(f"{case.name}: channels_last differs from channels_first")
calls = {
    "channels_first": lambda: numba_deconv.conv_transpose(x, w, **kwargs),
    "channels_last": lambda: numba_deconv.conv_transpose(
        x_last, w, data_format="channels_last", **kwargs),
    "complex": lambda: numba_deconv.conv_transpose(x_c, w_c, **kwargs),
}
timings = measure_together(calls, min_time=spec["min_time"], rounds=spec["repeat"] or 15)
print(json.dumps({k: t.median for k, t in timings.items()}))
"""


class VariantRow(typing.NamedTuple):
    case: str
    dtype: str
    channels_first: float  # seconds, medians
    channels_last: float
    complex: float


def time_variants(pairs, threads=2, min_time=1.0, repeat=None, progress=None) -> list:
    """A :class:`VariantRow` per ``(case, dtype)`` of ``pairs`` (from
    :func:`.cases.select_cases`)."""
    from .harness import _thread_env

    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = _thread_env(threads)
    env["PYTHONPATH"] = os.pathsep.join([package] + [p for p in [env.get("PYTHONPATH")] if p])
    rows = []
    for i, (case, dtype) in enumerate(pairs):
        spec = dict(case=case.to_dict(), dtype=dtype, seed=i, threads=threads,
                    min_time=min_time, repeat=repeat)
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{case.name} {dtype}: the child failed:\n{done.stderr}")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(VariantRow(case.name, dtype, **seconds))
        if progress is not None:
            print(f"  [{i + 1}/{len(pairs)}] {_describe(rows[-1])}", file=progress, flush=True)
    return rows


def _describe(row: VariantRow) -> str:
    return (f"{row.case} {row.dtype}: channels_last {row.channels_last / row.channels_first:.2f}x, "
            f"complex {row.complex / row.channels_first:.2f}x")


def format_variants_table(rows) -> str:
    """A Markdown table of :func:`time_variants`'s rows."""
    from .report import format_time

    lines = ["conv_transpose on channels-last and on complex data, against the same call on "
             "channels-first real data (medians, one process per case; complex of the same "
             "width, four real products per complex one; goals: channels_last <= 1.1x, "
             "complex <= 4.5x).", "",
             "| case | dtype | channels_first | channels_last | ratio | complex | ratio |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r.case} | {r.dtype} | {format_time(r.channels_first)} | "
                     f"{format_time(r.channels_last)} | {r.channels_last / r.channels_first:.2f}× | "
                     f"{format_time(r.complex)} | {r.complex / r.channels_first:.2f}× |")
    return "\n".join(lines)
