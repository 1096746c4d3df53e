"""What a front end works out from a call's shapes and arguments, kept per
call shape.

The front ends check TensorFlow's and ONNX's arguments and turn them into
:func:`numba_deconv.conv_transpose`'s with Python arithmetic that depends
only on the arrays' shapes and dtypes and on the other arguments: 23-33 us
a call, 7-10 times a tiny call's own time. Each front end keeps what it
worked out under a key of exactly those things (:func:`call_key`), and a
call with the same key skips straight to the computation; a call that
fails its checks is never kept, so the same bad call fails the same way
every time.
"""

from __future__ import annotations

import numpy as np

#: Call shapes kept per front end; past it, the oldest goes.
MAX_CALLS = 256

# Argument types that key as they are (with their type: 1, True and "1"
# are different arguments).
_PLAIN = frozenset({int, bool, str, bytes, type(None)})


class _Unkeyable(Exception):
    pass


def _key(value):
    kind = type(value)
    if kind in _PLAIN:
        return kind, value
    if kind is np.ndarray:  # the checks read only its shape and dtype
        return kind, value.shape, value.dtype.str
    if kind is list or kind is tuple:
        return kind, tuple(_key(item) for item in value)
    raise _Unkeyable


def call_key(*arguments) -> tuple | None:
    """A hashable key of ``arguments`` that two calls share exactly when
    their checks and arithmetic must agree: NumPy arrays (exactly
    ``numpy.ndarray``) by shape and dtype, ints, bools, strings, bytes and
    None by type and value, lists and tuples of those item by item. None
    where an argument is anything else (array-likes, NumPy scalars):
    such calls are checked every time."""
    try:
        return tuple(_key(argument) for argument in arguments)
    except _Unkeyable:
        return None


class CallMemo:
    """A bounded map from :func:`call_key` keys to what a front end worked
    out for them (the oldest entry goes first)."""

    def __init__(self, most: int = MAX_CALLS):
        self._entries = {}
        self._most = most

    def get(self, key):
        """The entry kept under ``key`` (None: none, or no key)."""
        return None if key is None else self._entries.get(key)

    def keep(self, key, entry) -> None:
        """Keep ``entry`` under ``key`` (nothing for a None key)."""
        if key is None:
            return
        if len(self._entries) >= self._most:
            # (pop, not del: another thread may have dropped it meanwhile)
            self._entries.pop(next(iter(self._entries), None), None)
        self._entries[key] = entry

    def __len__(self):
        return len(self._entries)
