"""The record of compiled variants: what this process has compiled, and how long it took.

A *variant* is what selects compiled code: (device, rank, dtype, layout,
strategy, kernel). The first call that runs a variant's kernel compiles it
for exact signatures (or loads it from Numba's on-disk cache) through
:func:`ensure`, which records how long that took; later calls find it here.
The backends decide what compiling means; this module only keeps the book.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Variant:
    """What selects one set of compiled kernels."""

    device: str
    rank: int
    dtype: str
    layout: str
    strategy: str
    kernel: str


# (device, rank, dtype as a numpy dtype, layout, strategy, kernel) ->
# seconds spent compiling, or loading from disk, its kernels.
_COMPILED: dict = {}


def ensure(key: tuple, compile_kernel, *args) -> None:
    """Run ``compile_kernel(*args)`` unless the variant ``key`` is recorded.

    ``key`` is ``(device, rank, dtype, layout, strategy, kernel)`` with
    ``dtype`` a numpy dtype (hashing it is cheaper than asking its name,
    and this runs on every call).
    """
    if key in _COMPILED:
        return
    start = time.perf_counter()
    compile_kernel(*args)
    _COMPILED[key] = time.perf_counter() - start


def recorded():
    """The keys of the variants recorded so far (a live view)."""
    return _COMPILED.keys()


def cache_info() -> list:
    """What this process has compiled, one dict per variant.

    Returns
    -------
    list of dict
        Keys ``device``, ``rank``, ``dtype``, ``layout``, ``strategy``
        (``"gather"`` or ``"columns"`` on the CPU, ``"gather"`` on CUDA),
        ``kernel`` (which kernel of the strategy ran: ``"rows_serial"``,
        ``"rows"``, ``"planes"``, ``"phase_tiles"``, ``"column_tiles"``,
        ``"tap_rows"``, ``"blas"``; channels last, for depthwise calls of the
        gather kernels ``"depthwise_last"`` and ``"depthwise_last_staged"``, for
        calls of the phase tiles with one or a few taps per output phase
        ``"one_tap_last"``, for tiny calls of ``"rows_serial"``
        ``"rows_tiny_last"``; for ``conv`` ``"conv_tiles"``, ``"conv_planes"``,
        ``"conv_planes_serial"``; for the weight gradients ``"weight_tiles"``,
        ``"weight_dots"``; ``"baseline"`` (``"baseline_tiles"`` for the phase
        tiles, ``"baseline_tiles_registers"`` for their big calls,
        ``"baseline_columns"`` for the columns and tap rows,
        ``"baseline_views"`` for them on complex data's real views,
        ``"baseline_conv"`` for ``conv``'s kernels,
        ``"baseline_weight_grad"`` for the weight gradients') where the
        baseline kernel stood in while a tuned one compiled; on CUDA
        ``"gather"`` and, for one output channel a group,
        ``"gather_single"``; for ``conv`` ``"conv_gather"`` and
        ``"conv_single"``; for the padding modes
        ``"fold"``) and ``compile_seconds`` (the time to compile the kernel
        or to load it from Numba's on-disk cache), in the order compiled.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> _ = numba_deconv.conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    >>> info = numba_deconv.cache_info()
    >>> sorted(info[0])
    ['compile_seconds', 'device', 'dtype', 'kernel', 'layout', 'rank', 'strategy']
    >>> ("cpu", 2, "float64", "gather", "rows_serial") in [
    ...     (v["device"], v["rank"], v["dtype"], v["strategy"], v["kernel"]) for v in info]
    True
    """
    return [dict(asdict(Variant(device, rank, np.dtype(dtype).name, layout, strategy, kernel)),
                 compile_seconds=seconds)
            for (device, rank, dtype, layout, strategy, kernel), seconds in _COMPILED.items()]


def forget() -> None:
    """Forget the in-process record (compiled code itself stays loaded)."""
    _COMPILED.clear()
