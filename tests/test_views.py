"""views.flat against NumPy's reshape(-1)."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from numba_deconv.cpu import views


@njit
def _flat_and_write(a, value):
    """views.flat's view of ``a``, its last element set to ``value``."""
    f = views.flat(a)
    f[f.size - 1] = value
    return f


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (1, 1, 1, 2, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex64])
def test_flat_is_a_view_of_every_element_in_order(shape, dtype):
    a = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    expected = a.reshape(-1).copy()
    expected[-1] = -1
    f = _flat_and_write(a, -1)
    np.testing.assert_array_equal(f, expected)
    assert f.shape == (a.size,)
    assert a.reshape(-1)[-1] == -1  # the write went to a's own memory
    del a  # the view keeps the memory alive
    np.testing.assert_array_equal(f, expected)


def test_flat_refuses_arrays_that_are_not_c_contiguous():
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(TypingError, match="C-contiguous"):
        _flat_and_write(a[:, ::2], 1.0)
    with pytest.raises(TypingError, match="C-contiguous"):
        _flat_and_write(np.asfortranarray(a), 1.0)
