"""The kernels' layouts of weights that a call shape meets again.

A plan (:func:`numba_deconv.plan`) lays its weights out once for its
kernel. A script that calls :func:`numba_deconv.conv_transpose` or
:func:`numba_deconv.conv` in a loop with the same weights gets the same
here: each call shape (a :class:`numba_deconv._dispatch.Call`) remembers
the bytes of the weights it last met, and a call whose weights have those
bytes again takes the layouts kept with them, made on the first such
call. The weights are compared in full, byte by byte, on every call (equal
values are not enough: -0.0 and 0.0 differ in a product's sign), so
weights changed in place between calls are laid out anew.

Only weights of at most ``config.WEIGHT_MEMO_MAX_BYTES``, for
``config.WEIGHT_MEMO_ENTRIES`` call shapes at a time (the latest used):
comparing costs a copy of the weights and a ``memcmp``, which larger
weights' layouts (made on every thread) do not repay. Weights met once
keep only their bytes, no layout. The callers ask only where a kernel
lays the weights out on every call (``api._keeps_layouts``).
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from . import config

# id(call) -> (call, the weights' bytes, the layouts: a dict, empty until
# the bytes are met again). The entry holds its call, so no other call
# takes its id while it is here.
_entries: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()


def kept(call, w: np.ndarray) -> dict | None:
    """The layouts kept for ``call``'s weights ``w`` (kernel-ready): a dict
    that the kernels fill as they lay them out (``prepared`` of
    :func:`numba_deconv.cpu.driver.run`), where ``call`` met weights of
    these bytes last time; else None (the call lays them out for itself),
    and the bytes are remembered for the next call."""
    if w.nbytes > config.WEIGHT_MEMO_MAX_BYTES or config.WEIGHT_MEMO_ENTRIES <= 0:
        return None
    content = w.tobytes()
    key = id(call)
    with _lock:
        entry = _entries.get(key)
        if entry is not None and entry[1] == content:
            _entries.move_to_end(key)
            return entry[2]
        _entries[key] = (call, content, {})
        _entries.move_to_end(key)
        while len(_entries) > config.WEIGHT_MEMO_ENTRIES:
            _entries.popitem(last=False)
    return None


def forget() -> int:
    """Forget every kept weight and layout; the bytes they held."""
    with _lock:
        held = sum(len(content) + _nbytes(layouts) for _, content, layouts in _entries.values())
        _entries.clear()
    return held


def _nbytes(layouts) -> int:
    """The bytes of the arrays in ``layouts``, nested in dicts, lists and
    plain tuples (not in the launch tables kept beside them)."""
    if isinstance(layouts, np.ndarray):
        return layouts.nbytes
    if isinstance(layouts, dict):
        layouts = layouts.values()
    elif type(layouts) not in (tuple, list):
        return 0
    return sum(_nbytes(item) for item in layouts)
