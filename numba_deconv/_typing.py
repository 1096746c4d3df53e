"""Type aliases of the public signatures (annotations only: the checks
that name a bad argument and its value live in :mod:`numba_deconv._params`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Union

from numpy.typing import ArrayLike, DTypeLike

#: One value for every spatial dim, or one per dim.
Ints = Union[int, Sequence[int]]
#: An int or one per dim, ``(before, after)`` per dim, or "valid"/"same".
Padding = Union[int, str, Sequence[int], Sequence[Sequence[int]]]
PaddingMode = Literal["zeros", "circular", "reflect", "replicate"]
DataFormat = Literal["channels_first", "channels_last"]
Device = Literal["auto", "cpu", "cuda"]
Forward = Literal["conv_transpose", "conv"]

__all__ = ["ArrayLike", "DTypeLike", "Ints", "Padding", "PaddingMode", "DataFormat", "Device",
           "Forward"]
