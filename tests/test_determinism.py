"""Bitwise identical results: call to call, process to process, and for any
``numba.set_num_threads`` value.

Each output of every CPU kernel is summed by one thread in an order fixed
by the call's arguments, and the kernel chosen never depends on the thread
count. The cases below reach every kernel (asserted through
``cache_info``), each at a size where the parallel kernels run; a child
process with ``NUMBA_NUM_THREADS=8`` computes them on 1, 2, 3 and 8
threads, and a second process with the default count must agree with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import hashlib, json, sys
import numba
import numpy as np
import numba_deconv as nd

rng = np.random.default_rng(7)

def data(shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)

f32, f64, c64, c128 = np.float32, np.float64, np.complex64, np.complex128
# name, function, arrays (shape, dtype), keyword arguments
CASES = [
    ("rows", nd.conv_transpose, [((1, 1, 8, 700), f32), ((1, 1, 3, 3), f32)], dict(stride=2)),
    ("planes-depthwise", nd.conv_transpose, [((4, 8, 40, 41), f32), ((8, 1, 3, 3), f32)],
     dict(stride=2, padding=1, groups=8)),
    ("phase-tiles", nd.conv_transpose, [((2, 32, 20, 21), f64), ((32, 16, 3, 3), f64)],
     dict(stride=2, padding=1)),
    ("column-tiles", nd.conv_transpose, [((1, 256, 4, 4), f32), ((256, 64, 4, 4), f32)],
     dict(stride=2, padding=1)),
    ("complex-twin", nd.conv_transpose, [((2, 8, 20, 21), c64), ((8, 4, 3, 3), c64)],
     dict(stride=2, groups=2)),
    ("complex-planes", nd.conv_transpose, [((4, 8, 40, 41), c128), ((8, 1, 3, 3), c128)],
     dict(stride=2, groups=8)),
    ("complex-blas", nd.conv_transpose, [((1, 64, 9, 9), c64), ((64, 64, 2, 2), c64)],
     dict(stride=2)),
    # Few output channels from many input channels take the tap rows; 20
    # on 1-D rows take BLAS on real data too.
    ("tap-rows", nd.conv_transpose, [((2, 96, 12, 13), f32), ((96, 2, 3, 3), f32)],
     dict(padding=1)),
    ("real-blas", nd.conv_transpose, [((1, 320, 600), f64), ((320, 20, 4), f64)],
     dict(stride=2, dilation=3)),
    # Narrow rows: the phase tiles run with the first spatial dim last.
    ("phase-tiles-moved", nd.conv_transpose, [((3, 6, 125, 6), f32), ((6, 29, 7, 7), f32)],
     dict(stride=2, padding=8, dilation=3)),
    ("channels-last-3d", nd.conv_transpose, [((2, 6, 7, 8, 16), f32), ((16, 8, 3, 3, 3), f32)],
     dict(stride=2, padding=1, data_format="channels_last")),
    ("conv-planes", nd.conv, [((4, 3, 60, 61), f32), ((2, 3, 3, 3), f32)], dict(stride=2)),
    ("conv-tiles", nd.conv, [((2, 32, 24, 25), f32), ((16, 32, 3, 3), f32)],
     dict(stride=2, padding=1)),
    ("weight-dots", nd.conv_weight_grad, [((4, 2, 40, 41), f64), ((4, 3, 19, 20), f64)],
     dict(kernel_size=3, stride=2)),
    ("weight-tiles", nd.conv_transpose_weight_grad,
     [((2, 32, 12, 13), f32), ((2, 16, 25, 27), f32)], dict(kernel_size=3, stride=2)),
]
arrays = {name: [data(shape, dtype) for shape, dtype in specs] for name, _, specs, _ in CASES}

def digests():
    out = {}
    for name, fn, _, kwargs in CASES:
        first = fn(*arrays[name], **kwargs)
        again = fn(*arrays[name], **kwargs)
        assert again.tobytes() == first.tobytes(), name  # call to call
        out[name] = hashlib.sha256(first.tobytes()).hexdigest()
    return out

result = {}
for threads in json.loads(sys.argv[1]):
    numba.set_num_threads(threads)
    result[str(threads)] = digests()
result["kernels"] = sorted({v["kernel"] for v in nd.cache_info()})
print(json.dumps(result))
"""


def _digests(thread_counts, numba_threads=None):
    env = dict(os.environ)
    if numba_threads is not None:
        env["NUMBA_NUM_THREADS"] = str(numba_threads)
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(thread_counts)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bitwise_identical_for_any_thread_count_and_across_processes():
    many = _digests([1, 2, 3, 8], numba_threads=8)
    default = _digests([int(os.environ.get("NUMBA_NUM_THREADS", 0)) or os.cpu_count() or 1])
    by_threads = {k: v for k, v in many.items() if k != "kernels"}
    baseline = by_threads["1"]
    for threads, digests in by_threads.items():
        differing = sorted(name for name in baseline if digests[name] != baseline[name])
        assert not differing, f"{threads} threads change the bits of {differing}"
    (digests,) = [v for k, v in default.items() if k != "kernels"]
    assert digests == baseline, "another process computes other bits"
    # The cases reach every parallel CPU kernel.
    assert {"rows", "planes", "phase_tiles", "column_tiles", "tap_rows", "blas", "conv_planes",
            "conv_tiles", "weight_dots", "weight_tiles"} <= set(many["kernels"])
