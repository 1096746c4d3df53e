"""Recycled output memory: reused only once nothing can see it."""

import weakref
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import numba_deconv
from numba_deconv import _dispatch, _outputs, config, conv_transpose

from helpers import assert_matches_reference, random_array

X_SHAPE, W_SHAPE, KWARGS = (2, 3, 5, 6), (3, 4, 3, 3), dict(stride=2, padding=1)


@pytest.fixture
def cache(monkeypatch):
    """Recycle every output (however small), from an empty cache."""
    monkeypatch.setattr(config, "OUTPUT_CACHE_MIN_BYTES", 1)
    numba_deconv.release_memory()
    yield
    numba_deconv.release_memory()


def address(array):
    return array.__array_interface__["data"][0]


def test_dropped_output_memory_is_reused(cache, rng):
    x = random_array(rng, X_SHAPE, np.float32)
    w = random_array(rng, W_SHAPE, np.float32)
    first = conv_transpose(x, w, **KWARGS)
    where = address(first)
    assert where % 64 == 0
    del first
    again = conv_transpose(x, w, **KWARGS)
    assert address(again) == where
    assert again.flags.c_contiguous and again.flags.writeable
    assert_matches_reference(again, x, w, **KWARGS)


def test_the_most_recently_lent_free_memory_is_reused(cache, rng):
    """Of several free slots the next output takes the last one lent (the
    likeliest in cache), so a loop keeps to one, not every slot in turn."""
    x = random_array(rng, X_SHAPE, np.float32)
    w = random_array(rng, W_SHAPE, np.float32)
    outputs = [conv_transpose(x, w, **KWARGS) for _ in range(3)]
    last = address(outputs[-1])
    del outputs
    for _ in range(3):
        assert address(conv_transpose(x, w, **KWARGS)) == last


def test_a_parallel_call_keeps_none_of_its_arrays(cache, monkeypatch, rng):
    """The threads that stay awake between calls (``launch._Team``) let go
    of a call's arrays when it returns: a dropped input is freed at once,
    and a dropped output's memory goes to the next call (kept by the team
    until the next call, a loop of calls alternated between two slots)."""
    if numba.get_num_threads() < 2:
        pytest.skip("one thread: no helpers")
    monkeypatch.setattr(config, "PARALLEL_MIN_MULTIPLY_ADDS", 0)  # every call on the team
    x_shape, w_shape, kwargs = (2, 8, 16, 16), (8, 8, 3, 3), dict(stride=2, padding=1)
    w = random_array(rng, w_shape, np.float32)
    x = random_array(rng, x_shape, np.float32)
    call = _dispatch.cpu_call(x.shape, x.dtype, w.shape, w.dtype, None,
                              (2, 1, 0, 1, 1, None, "zeros", "channels_first"))
    assert call.route().kernel in ("phase_tiles", "planes", "rows")  # a task kernel
    first = conv_transpose(x, w, **kwargs)
    assert_matches_reference(first, x, w, **kwargs)
    where, dropped_input, dropped_output = address(first), weakref.ref(x), weakref.ref(first)
    del x, first
    assert dropped_input() is None and dropped_output() is None
    for _ in range(3):
        x = random_array(rng, x_shape, np.float32)
        again = conv_transpose(x, w, **kwargs)
        assert address(again) == where
        assert_matches_reference(again, x, w, **kwargs)
        del again


@pytest.mark.parametrize("keep", ["output", "view", "memoryview"])
def test_memory_in_use_is_never_handed_out(keep, cache, rng):
    x = random_array(rng, X_SHAPE, np.float32)
    w = random_array(rng, W_SHAPE, np.float32)
    first = conv_transpose(x, w, **KWARGS)
    expected = first.copy()
    kept = {"output": first, "view": first[1, ::2], "memoryview": memoryview(first)}[keep]
    del first
    other = conv_transpose(2 * x, w, **KWARGS)
    assert not np.shares_memory(np.asarray(kept), other)
    np.testing.assert_array_equal(np.asarray(kept), expected[1, ::2] if keep == "view"
                                  else expected)
    del kept, other
    # Both slots are free now: the next output takes one of them.
    third = conv_transpose(x, w, **KWARGS)
    np.testing.assert_array_equal(third, expected)
    assert numba_deconv.release_memory() == 2 * expected.nbytes


def test_budget_bounds_what_is_kept(cache, monkeypatch, rng):
    x = random_array(rng, X_SHAPE, np.float32)
    w = random_array(rng, W_SHAPE, np.float32)
    size = conv_transpose(x, w, **KWARGS).nbytes
    numba_deconv.release_memory()
    monkeypatch.setattr(config, "OUTPUT_CACHE_BYTES", size)
    held = [conv_transpose(x, w, **KWARGS) for _ in range(3)]
    # Only the latest is remembered; the others are plain arrays now owned
    # by their outputs alone.
    assert numba_deconv.release_memory() == size
    del held
    monkeypatch.setattr(config, "OUTPUT_CACHE_BYTES", size - 1)
    fresh = conv_transpose(x, w, **KWARGS)
    assert fresh.flags.owndata  # larger than the budget: np.empty
    assert numba_deconv.release_memory() == 0


def test_slot_count_bounds_what_is_kept(cache, monkeypatch, rng):
    monkeypatch.setattr(config, "OUTPUT_CACHE_SLOTS", 2)
    w = random_array(rng, W_SHAPE, np.float32)
    sizes = []
    for batch in (1, 2, 3):  # three output sizes
        y = conv_transpose(random_array(rng, (batch,) + X_SHAPE[1:], np.float32), w, **KWARGS)
        sizes.append(y.nbytes)
    assert numba_deconv.release_memory() == sizes[1] + sizes[2]


def test_other_shape_and_dtype_of_the_same_size(cache, rng):
    x = random_array(rng, X_SHAPE, np.float64)
    w = random_array(rng, W_SHAPE, np.float64)
    wide = conv_transpose(x, w, **KWARGS)
    where, nbytes = address(wide), wide.nbytes
    del wide
    # float32 with twice the channels: the same bytes.
    x32 = random_array(rng, X_SHAPE, np.float32)
    w32 = random_array(rng, W_SHAPE[:1] + (8,) + W_SHAPE[2:], np.float32)
    narrow = conv_transpose(x32, w32, **KWARGS)
    assert narrow.nbytes == nbytes and address(narrow) == where
    assert_matches_reference(narrow, x32, w32, **KWARGS)


def test_concurrent_calls_get_their_own_memory(cache, rng):
    w = random_array(rng, W_SHAPE, np.float32)
    xs = [random_array(rng, X_SHAPE, np.float32) for _ in range(16)]
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda x: conv_transpose(x, w, **KWARGS), xs))
    for x, y in zip(xs, outputs):
        assert_matches_reference(y, x, w, **KWARGS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.uint8])
def test_empty_aligned_arrays_start_on_a_cache_line(dtype):
    """Whatever the allocator hands out (many sizes, so many placements):
    the data start on a 64-byte line, C-contiguous, of the shape and dtype
    asked for, and writable to the last element."""
    for size in range(1, 200, 7):
        for shape in ((size,), (size, 3), (2, size, 1)):
            a = _outputs.empty_aligned(shape, dtype)
            assert a.ctypes.data % 64 == 0
            assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            a[...] = 1
            assert a.sum() == a.size
