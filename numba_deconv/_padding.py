"""Padding modes and their adjoints, on channels-first NumPy arrays.

``conv`` pads its input the way ``torch.nn.functional.pad(x, pads, mode)``
does and then correlates; ``conv_transpose`` with a mode is the exact
adjoint of that, so it scatters over the whole padded extent and then
:func:`fold` sends what landed in the border back to the interior elements
it was copied from: circular wraps around, reflect mirrors without the
edge, replicate adds onto the edge. Sums run in a fixed order.
"""

from __future__ import annotations

import numpy as np

_NUMPY_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect",
                "replicate": "edge"}


def pad(x: np.ndarray, pairs, mode: str) -> np.ndarray:
    """``x`` (N, C, *spatial) padded by ``(before, after)`` per spatial dim."""
    if not any(before or after for before, after in pairs):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pairs), mode=_NUMPY_MODES[mode])


def fold_sources(size: int, before: int, after: int, mode: str):
    """Which positions of one padded dim :func:`fold` adds into each element.

    Returns ``(starts, sources)``, int64: the positions ``p`` of a dim of
    ``size`` elements padded by ``before`` and ``after`` in ``mode`` (not
    "zeros", whose border holds no element) that
    hold a copy of element ``i`` (itself included) are
    ``sources[starts[i]:starts[i + 1]]``, ascending. Read off :func:`pad`'s
    own rule (NumPy's pad of the indices), so the two cannot disagree.
    """
    held = np.pad(np.arange(size), (before, after), mode=_NUMPY_MODES[mode])
    sources = np.argsort(held, kind="stable")
    starts = np.searchsorted(held[sources], np.arange(size + 1))
    return starts.astype(np.int64), sources.astype(np.int64)


def fold(z: np.ndarray, pairs, mode: str) -> np.ndarray:
    """The adjoint of :func:`pad`: ``z`` (N, C, *padded) back to the interior.

    ``z`` is used as scratch.
    """
    interior = z
    for axis, (before, after) in enumerate(pairs, start=2):
        size = interior.shape[axis] - before - after

        def part(start, stop, step=1, array=interior, axis=axis):
            return array[(slice(None),) * axis + (slice(start, stop, step),)]
        inner = part(before, before + size)
        if mode == "circular":
            part(size - before, size, array=inner)[...] += part(0, before)
            part(0, after, array=inner)[...] += part(before + size, before + size + after)
        elif mode == "reflect":  # border element t away from the edge -> element t
            if before:
                part(1, before + 1, array=inner)[...] += part(before - 1, None, -1)
            if after:
                part(size - 1 - after, size - 1, array=inner)[...] += part(
                    before + size + after - 1, before + size - 1, -1)
        elif mode == "replicate":
            part(0, 1, array=inner)[...] += part(0, before).sum(axis=axis, keepdims=True)
            part(size - 1, size, array=inner)[...] += part(
                before + size, before + size + after).sum(axis=axis, keepdims=True)
        interior = inner
    return np.ascontiguousarray(interior)
