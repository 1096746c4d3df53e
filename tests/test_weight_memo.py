"""Weights that a call shape meets again keep their kernels' layouts
(``numba_deconv._weight_memo``): laid out once, never stale."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import numba_deconv as nd
from helpers import assert_matches_reference, random_array
from numba_deconv import _dispatch, _weight_memo, api, config
from numba_deconv.cpu import driver
from reference import conv_reference

# id, layout kernel, input shape, weight shape, kwargs, dtype
CASES = [
    ("phase-tiles", "phase_tiles", (2, 16, 9, 8), (16, 8, 3, 3),
     dict(stride=2, padding=1, output_padding=1), np.float32),
    ("phase-tiles-1d", "phase_tiles", (6, 21, 300), (21, 2, 4), dict(padding=1), np.float64),
    ("phase-tiles-last", "phase_tiles", (2, 6, 5, 24), (24, 16, 3, 3),
     dict(stride=2, data_format="channels_last"), np.float64),
]


@pytest.fixture(autouse=True)
def empty_memo():
    nd.release_memory()
    yield
    nd.release_memory()


def _layouts_made(monkeypatch, kernel):
    """The number of times ``kernel``'s weights are laid out for a caller
    that keeps them, as a one-element list."""
    made = [0]
    real = driver.PREPARERS[kernel]

    def counted(w, launch):
        made[0] += 1
        return real(w, launch)
    monkeypatch.setitem(driver.PREPARERS, kernel, counted)
    return made


def _arrays(case, rng):
    _, kernel, x_shape, w_shape, kwargs, dtype = case
    return kernel, random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype), kwargs


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_repeated_weights_are_laid_out_once_with_the_same_bits(case, rng, monkeypatch):
    kernel, x, w, kwargs = _arrays(case, rng)
    first = nd.conv_transpose(x, w, **kwargs)  # compiles; lays out for itself
    made = _layouts_made(monkeypatch, kernel)
    for _ in range(4):
        np.testing.assert_array_equal(nd.conv_transpose(x, w, **kwargs), first)
    assert made[0] == 1
    assert_matches_reference(first, x, w, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_weights_changed_in_place_are_laid_out_anew(case, rng, monkeypatch):
    kernel, x, w, kwargs = _arrays(case, rng)
    made = _layouts_made(monkeypatch, kernel)
    for _ in range(3):
        nd.conv_transpose(x, w, **kwargs)
    w[0, 0] *= -2  # one input channel's taps, in place
    for _ in range(3):
        assert_matches_reference(nd.conv_transpose(x, w, **kwargs), x, w, **kwargs)
    assert made[0] == 2


def test_a_copy_with_the_same_bytes_shares_the_layout_but_not_the_first_array(rng,
                                                                              monkeypatch):
    kernel, x, w, kwargs = _arrays(CASES[0], rng)
    made = _layouts_made(monkeypatch, kernel)
    twin = w.copy()
    expected = nd.conv_transpose(x, w, **kwargs)
    np.testing.assert_array_equal(nd.conv_transpose(x, twin, **kwargs), expected)
    w[...] = 7  # the array first met changes; its copy, now called, did not
    np.testing.assert_array_equal(nd.conv_transpose(x, twin, **kwargs), expected)
    assert made[0] == 1
    assert_matches_reference(nd.conv_transpose(x, w, **kwargs), x, w, **kwargs)


def test_the_columns_kernel_reads_the_weights_as_they_lie(rng, monkeypatch):
    """Its packed weights did not repay comparing them: never kept."""
    x = random_array(rng, (2, 64, 4, 4), np.float32)
    w = random_array(rng, (64, 64, 2, 2), np.float32)
    made = _layouts_made(monkeypatch, "column_tiles")
    for _ in range(3):
        assert_matches_reference(nd.conv_transpose(x, w, stride=2), x, w, stride=2)
    assert made[0] == 0 and nd.release_memory() < w.nbytes


def test_bytes_not_values_decide():
    """-0.0 equals 0.0 but is other bytes (and another sign of a product);
    NaN differs from itself but has the same bytes."""
    call = object()
    zeros = np.zeros(4)
    assert _weight_memo.kept(call, zeros) is None
    kept = _weight_memo.kept(call, zeros.copy())
    assert kept == {}
    assert _weight_memo.kept(call, -zeros) is None
    nans = np.full(4, np.nan)
    assert _weight_memo.kept(call, nans) is None
    assert _weight_memo.kept(call, nans.copy()) == {}


def test_complex_data_keeps_its_twin_weights(rng, monkeypatch, fresh_routes):
    x = random_array(rng, (2, 16, 9, 8), np.complex64)
    w = random_array(rng, (16, 8, 3, 3), np.complex64)
    kwargs = dict(stride=2, padding=1)
    first = nd.conv_transpose(x, w, **kwargs)
    call, = [c for c in _dispatch._CALLS.values()
             if isinstance(c, _dispatch.Call) and c.plan.dtype == np.complex64]
    assert _dispatch.real_twin(call) is not None
    made = []
    real = api._twin_weight
    monkeypatch.setattr(api, "_twin_weight",
                        lambda *args, **kw: made.append(1) or real(*args, **kw))
    for _ in range(3):
        np.testing.assert_array_equal(nd.conv_transpose(x, w, **kwargs), first)
    assert len(made) == 1
    assert_matches_reference(first, x, w, **kwargs)
    w[1] += 1j
    for _ in range(3):
        assert_matches_reference(nd.conv_transpose(x, w, **kwargs), x, w, **kwargs)


def test_conv_keeps_its_tiles_weight_table(rng, monkeypatch, fresh_routes):
    x = random_array(rng, (2, 8, 17, 15), np.float32)
    w = random_array(rng, (16, 8, 3, 3), np.float32)
    kwargs = dict(stride=2, padding=1)
    nd.conv(x, w, **kwargs)
    call = [c for c in _dispatch._CALLS.values() if isinstance(c, _dispatch.ConvCall)][-1]
    assert call.route().kernel == "conv_tiles"
    nd.release_memory()
    made = []
    real = driver.conv_weights
    monkeypatch.setattr(driver, "conv_weights",
                        lambda *args: made.append(1) or real(*args))
    for weights in (w, -w):
        for _ in range(3):
            np.testing.assert_allclose(nd.conv(x, weights, **kwargs),
                                       conv_reference(x, weights, **kwargs),
                                       rtol=1e-4, atol=1e-4)
    assert len(made) == 4  # each set once for itself, once kept


def test_release_memory_and_reset_forget_the_layouts(rng, monkeypatch):
    kernel, x, w, kwargs = _arrays(CASES[0], rng)
    made = _layouts_made(monkeypatch, kernel)
    for _ in range(2):
        nd.conv_transpose(x, w, **kwargs)
    held = nd.release_memory()
    assert held >= 2 * w.nbytes  # the weights' bytes and their table
    for forget in (lambda: None, _dispatch.reset):
        forget()
        for _ in range(2):
            nd.conv_transpose(x, w, **kwargs)
    assert made[0] == 3


def test_the_bounds_hold(rng, monkeypatch):
    kernel, x, w, kwargs = _arrays(CASES[0], rng)
    made = _layouts_made(monkeypatch, kernel)
    monkeypatch.setattr(config, "WEIGHT_MEMO_MAX_BYTES", w.nbytes - 1)
    for _ in range(3):
        nd.conv_transpose(x, w, **kwargs)
    assert made[0] == 0 and nd.release_memory() == 0
    monkeypatch.setattr(config, "WEIGHT_MEMO_MAX_BYTES", w.nbytes)
    monkeypatch.setattr(config, "WEIGHT_MEMO_ENTRIES", 1)
    other = x[:1]  # another call shape, the same weights
    for _ in range(3):
        nd.conv_transpose(x, w, **kwargs)
        nd.conv_transpose(other, w, **kwargs)
    assert made[0] == 0
    monkeypatch.setattr(config, "WEIGHT_MEMO_ENTRIES", 2)
    for _ in range(3):
        nd.conv_transpose(x, w, **kwargs)
        nd.conv_transpose(other, w, **kwargs)
    assert made[0] == 2


def test_threads_with_their_own_weights_of_one_shape(rng):
    _, x, w, kwargs = _arrays(CASES[0], rng)
    weights = [w, -w, 2 * w, w.copy()]
    expected = [nd.conv_transpose(x, each, **kwargs) for each in weights]

    def calls(i):
        return [nd.conv_transpose(x, weights[i % 4], **kwargs) for _ in range(5)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(calls, range(16)))
    for i, outputs in enumerate(results):
        for output in outputs:
            np.testing.assert_array_equal(output, expected[i % 4])
