"""
The benchmark on the machine that built these pages
===================================================

``python -m numba_deconv bench`` times ``conv_transpose`` on the standard
workloads (``numba_deconv/bench/cases.json``) against PyTorch, ONNX Runtime,
TensorFlow and JAX, each library in a fresh process of its own with the
same number of threads, and checks every peer's output against ours.

This page runs a tiny subset of it through its Python API,
:func:`numba_deconv.bench.run`, with short timings, so that it takes a
few seconds: a handful of small cases, PyTorch as the one peer when it is
installed. The numbers are this build machine's, measured while the pages
were built: read them as an illustration, not as the project's benchmark.
For that, run

.. code-block:: bash

    python -m numba_deconv bench                      # every case, every installed peer
    python -m numba_deconv bench --case unet_2d --peers torch --plot bench.png
"""

import importlib.util
import os

import matplotlib.pyplot as plt
import numpy as np

from numba_deconv import bench

peers = [p for p in ("torch",) if importlib.util.find_spec(p) is not None]
threads = min(2, os.cpu_count() or 1)
report = bench.run(cases=["tiny_seed", "single_2d", "vol_3d"], peers=peers,
                   min_time=0.05, threads=threads, gemm=False, memory=False,
                   progress=None)
print(bench.format_table(report))

# %%
# The plot
# --------
# Median time per call, log scale; lower is better. ``bench --plot`` draws
# the same chart (:func:`numba_deconv.bench.plot`).
libs = [lib for lib in report.libs
        if any(row.results.get(lib) and row.results[lib].seconds for row in report.rows)]
if not libs:
    raise RuntimeError("no library produced a time; see the table above")
width = 0.8 / len(libs)
fig, ax = plt.subplots(figsize=(7, 4))
for j, lib in enumerate(libs):
    xs, ts = [], []
    for i, row in enumerate(report.rows):
        result = row.results.get(lib)
        if result is not None and result.seconds:
            xs.append(i + (j - (len(libs) - 1) / 2) * width)
            ts.append(result.seconds * 1e3)
    label = "numba_deconv" if lib == bench.OURS else bench.PEER_LABELS[lib]
    bars = ax.bar(xs, ts, width, label=label)
    ax.bar_label(bars, labels=[bench.format_time(t / 1e3) for t in ts], fontsize=7)
ax.set_yscale("log")
ax.set_xticks(np.arange(len(report.rows)))
ax.set_xticklabels([row.label for row in report.rows])
ax.set_ylabel("median time per call (ms, log)")
ax.set_title(f"conv_transpose, {report.threads} threads each\n{report.machine}", fontsize=9)
ax.legend(fontsize="small")
ax.grid(axis="y", which="both", alpha=0.3)
fig.tight_layout()

plt.show()
