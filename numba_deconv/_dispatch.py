"""Compiled-variant bookkeeping: what is compiled, compiling ahead of time.

A *variant* is what selects compiled code: (device, rank, dtype, layout,
strategy, kernel). The first call that needs a variant compiles its kernel
for exact signatures (or loads it from Numba's on-disk cache,
``cache=True``) and records how long that took; later calls find it in
``_COMPILED``. Only the kernels a call really launches are compiled.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .cpu.driver import KERNELS, STRATEGIES, kernel_signatures

DTYPES = ("float32", "float64", "complex64", "complex128")
LAYOUTS = ("channels_first", "channels_last")
CUDA_KERNEL = "gather"


@dataclass(frozen=True)
class Variant:
    """What selects one set of compiled kernels."""

    device: str
    rank: int
    dtype: str
    layout: str
    strategy: str
    kernel: str


# Variant fields (dtype as a numpy dtype) -> seconds spent compiling, or
# loading from disk, its kernels.
_COMPILED: dict = {}


def ensure_compiled(device: str, rank: int, dtype, layout: str, strategy: str,
                    kernel: str) -> None:
    """Compile the kernels of a variant unless this process already has.

    ``dtype`` is a numpy dtype (hashing it is cheaper than asking its name,
    and this runs on every call).
    """
    key = (device, rank, dtype, layout, strategy, kernel)
    if key in _COMPILED:
        return
    start = time.perf_counter()
    if device == "cpu":
        # Ranks 1-3 run on the rank-3 kernels, rank >= 4 by slices of them.
        for dispatcher, signature in kernel_signatures(kernel, dtype):
            dispatcher.compile(signature)
    else:
        from .cuda.backend import compile_variant

        compile_variant(rank, np.dtype(dtype), layout, strategy)
    _COMPILED[key] = time.perf_counter() - start


def cache_info() -> list:
    """What this process has compiled, one dict per variant.

    Returns
    -------
    list of dict
        Keys ``device``, ``rank``, ``dtype``, ``layout``, ``strategy``
        (``"direct"`` or ``"gemm"`` on the CPU), ``kernel`` (which of the
        strategy's kernels: ``"serial"``, ``"rows"``, ``"planes"``,
        ``"tiled"``, ``"columns"``, ``"col2im"``; ``"gather"`` on CUDA) and
        ``compile_seconds`` (the time to compile the kernel or to load it
        from Numba's on-disk cache), in the order compiled.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> _ = numba_deconv.conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    >>> info = numba_deconv.cache_info()
    >>> sorted(info[0])
    ['compile_seconds', 'device', 'dtype', 'kernel', 'layout', 'rank', 'strategy']
    >>> ("cpu", 2, "float64", "direct", "serial") in [
    ...     (v["device"], v["rank"], v["dtype"], v["strategy"], v["kernel"]) for v in info]
    True
    """
    return [dict(asdict(Variant(device, rank, np.dtype(dtype).name, layout, strategy, kernel)),
                 compile_seconds=seconds)
            for (device, rank, dtype, layout, strategy, kernel), seconds in _COMPILED.items()]


def clear_cache_info() -> None:
    """Forget the in-process record (compiled code itself stays loaded)."""
    _COMPILED.clear()


def precompile(ranks=(1, 2, 3), dtypes=DTYPES, strategies=None,
               layouts=LAYOUTS, device="cpu") -> list:
    """Compile variants ahead of time into Numba's on-disk cache.

    The next process that needs one of these variants loads it from disk
    instead of compiling it (a first call then takes milliseconds, not
    seconds).

    Parameters
    ----------
    ranks : iterable of int
        Spatial ranks (>= 1).
    dtypes : iterable of str or numpy dtype
        Any of float32, float64, complex64, complex128.
    strategies : iterable of str, optional
        CPU strategies, ``"direct"`` and/or ``"gemm"`` (default both); the
        CUDA backend has one, ``"direct"``.
    layouts : iterable of str
        ``"channels_first"`` and/or ``"channels_last"``.
    device : {"cpu", "cuda"}
        Which backend's kernels to compile.

    Returns
    -------
    list of dict
        :func:`cache_info` after compiling.

    Raises
    ------
    ValueError
        For an unknown rank, dtype, strategy, layout or device.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not a backend; use 'cpu' or 'cuda'")
    ranks = tuple(ranks)
    for rank in ranks:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"ranks={ranks!r}: {rank!r} is not a spatial rank (an int >= 1)")
    names = []
    for dtype in dtypes:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise ValueError(f"dtypes: {dtype!r} is not one of {', '.join(DTYPES)}")
        names.append(name)
    known = ("direct",) if device == "cuda" else STRATEGIES
    strategies = known if strategies is None else tuple(strategies)
    for strategy in strategies:
        if strategy not in known:
            raise ValueError(f"strategies: {strategy!r} is not one of {', '.join(known)}")
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ValueError(f"layouts: {layout!r} is not one of {', '.join(LAYOUTS)}")
    for rank in ranks:
        for name in names:
            for layout in layouts:
                for strategy in strategies:
                    kernels = KERNELS[strategy] if device == "cpu" else (CUDA_KERNEL,)
                    for kernel in kernels:
                        ensure_compiled(device, int(rank), np.dtype(name), layout,
                                        strategy, kernel)
    return cache_info()
