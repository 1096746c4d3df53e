"""A seeded random spread of shapes, for checking that no shape falls off a cliff.

The standard table is nine shapes; users meet others. :func:`random_spread`
draws shapes over the whole space the kernels must cover (ranks 1-3,
kernels 1-7, strides 1-4 with kernels shorter than the stride, dilations
1-3, padding up to the kernel's span, output padding, dense, grouped and
depthwise channels, batches 1-32, 1-1024 channels, odd and non-square
sizes, float32 and float64), each sized to between about 10 µs and 100 ms
of work at 100 GFLOP/s. The same seed gives the same shapes; ``bench
--spread N --seed S`` runs them and ``--save-cases FILE`` writes them in
the case-file format.
"""

from __future__ import annotations

import math
import random

from .cases import Case, flop_count

#: Flops of the smallest and the largest shape (10 µs and 100 ms at 100 GFLOP/s).
MIN_FLOPS, MAX_FLOPS = 1e6, 1e10
#: The most elements of an input or a result: the bench keeps every
#: library's result of every shape on disk until it has compared them.
MAX_ELEMENTS = 1 << 23
_SIZES = {1: (16, 65536), 2: (4, 256), 3: (4, 48)}  # input size per dim, by rank


def _log_uniform(rng, low, high) -> int:
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def _draw(rng, index) -> dict | None:
    """One shape, or None when it misses the work range, has no output or
    an array of more than ``MAX_ELEMENTS``."""
    rank = rng.choices((1, 2, 3), weights=(1, 2, 1))[0]
    kind = rng.choices(("dense", "grouped", "depthwise"), weights=(3, 1, 1))[0]
    if kind == "dense":
        groups, c_in, c_out = 1, _log_uniform(rng, 1, 1024), _log_uniform(rng, 1, 1024)
    elif kind == "grouped":
        groups = rng.randint(2, 8)
        c_in, c_out = groups * rng.randint(1, 16), groups * rng.randint(1, 16)
    else:
        groups = c_in = _log_uniform(rng, 2, 512)
        c_out = c_in * rng.randint(1, 2)
    kernel, stride = rng.randint(1, 7), rng.randint(1, 4)
    dilation = 1 if kernel == 1 else rng.choices((1, 2, 3), weights=(4, 1, 1))[0]
    span = dilation * (kernel - 1)
    low, high = _SIZES[rank]
    d = dict(name="", N=_log_uniform(rng, 1, 32), C_in=c_in, C_out=c_out,
             spatial=[_log_uniform(rng, low, high) for _ in range(rank)], kernel=kernel,
             stride=stride, padding=rng.randint(0, span // 2) if span else 0,
             output_padding=rng.randint(0, max(stride, dilation) - 1), dilation=dilation,
             groups=groups, dtype=rng.choices(("float32", "float64"), weights=(3, 1))[0])
    d["name"] = (f"r{index:02d}_{rank}d_{kind}_k{kernel}s{stride}"
                 + (f"d{dilation}" if dilation > 1 else ""))
    out = [(i - 1) * stride - 2 * d["padding"] + span + 1 + d["output_padding"]
           for i in d["spatial"]]
    flops = flop_count(d["N"], c_in, c_out, groups, (kernel,) * rank, tuple(d["spatial"]))
    elements = max(c_in * math.prod(d["spatial"]), c_out * math.prod(max(o, 1) for o in out))
    if (min(out) < 1 or not MIN_FLOPS <= flops <= MAX_FLOPS
            or d["N"] * elements > MAX_ELEMENTS):
        return None
    return d


def random_spread(count: int = 64, seed: int = 0) -> list:
    """``count`` shapes as case-file dicts (``{"name", "N", "C_in", ...}``),
    the same for the same ``seed``."""
    if count < 1:
        raise ValueError(f"count={count}: a spread needs at least one shape")
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        d = _draw(rng, len(cases))
        if d is not None:
            Case.from_dict(d)  # every drawn shape is a valid case
            cases.append(d)
    return cases
