"""Recycled memory for large outputs (see ``config.OUTPUT_CACHE_BYTES``).

A fresh output costs the kernel a page fault on every page it first writes,
and allocators hand memory this large back to the system when it is freed,
so a loop of calls would pay for the faults every time. Here the memory of
an output is kept after the caller drops it and given to the next output of
the same size.

Memory is handed out only when nothing can still see it. Each output is
made through a :class:`_Lease`, an object that NumPy keeps as the output's
base; every view, slice or memoryview of the output keeps the output, and
so the lease, alive. A slot whose lease is gone (its weak reference is
dead) is free; one whose lease lives is never reused.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from . import _weight_memo, config

#: Outputs start on a cache line, so vector stores of whole lines stay
#: whole.
_ALIGNMENT = 64


def empty_aligned(shape: tuple, dtype) -> np.ndarray:
    """NumPy's ``empty(shape, dtype)``, its data starting on a cache line
    (NumPy's arrays start 16 bytes past one as often as not): for outputs
    of whole-line stores, and for arrays the kernels read in vectors, which
    then load from one line each (weights whose vectors crossed two made a
    channels-last call of few taps 1.1-1.3x slower,
    ``benchmarks/TUNING.md``)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    room = np.empty(nbytes + _ALIGNMENT, dtype=np.uint8)
    lead = -room.ctypes.data % _ALIGNMENT
    return room[lead:lead + nbytes].view(dtype).reshape(shape)


class _Lease:
    """The base of an output made from a slot's memory (via NumPy's array
    interface); it keeps the memory alive, whatever becomes of the slot."""

    __slots__ = ("__array_interface__", "memory", "__weakref__")

    def __init__(self, memory: np.ndarray, shape: tuple, dtype: np.dtype):
        self.memory = memory
        self.__array_interface__ = {"data": (memory.ctypes.data, False), "shape": shape,
                                    "typestr": dtype.str, "version": 3}


class _Slot:
    """``nbytes`` of aligned memory and the lease it is out on, if any."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.memory = empty_aligned((nbytes,), np.uint8)
        self._lease = None

    def free(self) -> bool:
        return self._lease is None or self._lease() is None

    def lend(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        lease = _Lease(self.memory, shape, dtype)
        self._lease = weakref.ref(lease)
        return np.asarray(lease)


_lock = threading.Lock()
_slots: list[_Slot] = []  # least recently lent first


def new_output(shape: tuple, dtype: np.dtype, nbytes: int) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``
    (``nbytes`` in all): from recycled memory when it is large enough to be
    worth it and fits the cache, from ``np.empty`` otherwise."""
    if not config.OUTPUT_CACHE_MIN_BYTES <= nbytes <= config.OUTPUT_CACHE_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        # The most recently lent free slot: its memory is the likeliest to
        # be in cache (the oldest would cycle a loop through every slot).
        for i in range(len(_slots) - 1, -1, -1):
            slot = _slots[i]
            if slot.nbytes == nbytes and slot.free():
                del _slots[i]
                break
        else:
            slot = _Slot(nbytes)
        _slots.append(slot)
        # Forget the least recently lent slots beyond the budget; a lent
        # one lives on with its output and is freed with it.
        while (len(_slots) > config.OUTPUT_CACHE_SLOTS
               or sum(s.nbytes for s in _slots) > config.OUTPUT_CACHE_BYTES):
            del _slots[0]
        return slot.lend(shape, dtype)


def release_memory() -> int:
    """Let go of the memory kept for reuse: outputs' and weights'.

    Outputs of at least ``config.OUTPUT_CACHE_MIN_BYTES`` come from memory
    that the library keeps after the caller drops them (up to
    ``config.OUTPUT_CACHE_SLOTS`` outputs, ``config.OUTPUT_CACHE_BYTES`` in
    all), to spare the next call of that size the page faults of fresh
    memory. Weights of at most ``config.WEIGHT_MEMO_MAX_BYTES`` are kept
    with their kernels' layouts for the next call of the same shape
    (``config.WEIGHT_MEMO_ENTRIES`` shapes), which then lays them out only
    if its weights' bytes differ. This forgets all of it: memory no output
    uses is freed now, memory an output still uses when that output goes.

    Returns
    -------
    int
        The bytes kept, in use or not.

    Examples
    --------
    >>> import numpy as np, numba_deconv
    >>> _ = numba_deconv.release_memory()  # start with nothing kept
    >>> y = numba_deconv.conv_transpose(np.ones((8, 64, 32, 32), np.float32),
    ...                                 np.ones((64, 32, 2, 2), np.float32), stride=2)
    >>> y.nbytes
    4194304
    >>> numba_deconv.release_memory() >= y.nbytes  # y keeps its memory until it goes
    True
    >>> numba_deconv.release_memory()
    0
    """
    with _lock:
        held = sum(slot.nbytes for slot in _slots)
        _slots.clear()
    return held + _weight_memo.forget()
