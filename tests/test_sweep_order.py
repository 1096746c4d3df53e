"""Phase-tiles calls run with a narrow spatial dim moved off the last place
(``_dispatch.swept_dim``): which dim moves, and the results against the
oracle in every layout, dtype and way of calling."""

import numba
import numpy as np
import pytest

from numba_deconv import _dispatch, config, conv_transpose, plan
from numba_deconv._plan import plan_call

from helpers import assert_matches_reference, assert_same_nonfinite, random_array
from reference import reference

pytestmark = pytest.mark.usefixtures("fresh_routes")


def _geometry(x_shape, w_shape, dtype=np.float32, **kwargs):
    kwargs = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1,
              **kwargs}
    return plan_call(x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None, None,
                     output_size=None, padding_mode="zeros", data_format="channels_first",
                     **kwargs).geometry


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    # 3-D outputs 17x25x17 (k5, dilation 3): rows of 17 take two vectors,
    # rows of 25 waste 7 positions of 32: H goes last.
    ((7, 11, 15, 23, 15), (11, 66, 5, 5, 5), dict(padding=5, dilation=3), 1),
    # 31x15x18: D, 31 outputs in 32 positions, goes last.
    ((1, 6, 26, 10, 13), (6, 409, 6, 6, 6), {}, 0),
    # 2-D 251x13 at stride 2: rows of 7 outputs per phase.
    ((7, 6, 125, 6), (6, 29, 7, 7), dict(stride=2, padding=8, dilation=3), 0),
    ((2, 64, 32, 32), (64, 64, 3, 3), dict(padding=1), None),  # square: as given
    ((1, 8, 10, 5), (8, 8, 3, 3), {}, None),  # too small to repay the copies
    ((2, 16, 4096), (16, 16, 8), dict(stride=4), None),  # 1-D
])
def test_the_narrow_last_dim_moves_where_it_repays_the_copies(x_shape, w_shape, kwargs,
                                                              expected):
    geometry = _geometry(x_shape, w_shape, **kwargs)
    assert _dispatch.swept_dim(geometry, x_shape[0], np.dtype(np.float32)) == expected


def test_a_moved_route_runs_the_phase_tiles_on_the_moved_geometry():
    x_shape, w_shape = (7, 11, 15, 23, 15), (11, 66, 5, 5, 5)
    call = _dispatch.cpu_call(x_shape, np.dtype(np.float32), w_shape, np.dtype(np.float32),
                              None, (1, 5, 0, 3, 1, None, "zeros", "channels_first"))
    route = call.route()
    assert (route.kernel, route.last_dim) == ("phase_tiles", 1)
    assert route.inner.launch.x_shape[2:] == (15, 15, 23)


@pytest.fixture
def every_call_moves(monkeypatch):
    """Move the narrow dim in calls of any size, so that small shapes take
    the moved route."""
    monkeypatch.setattr(config, "SWEEP_MIN_MULTIPLY_ADDS", 0)
    monkeypatch.setattr(config, "SWEEP_MIN_SAVED_PER_ELEMENT", 0)


CASES = [
    # (x shape, weight shape, kwargs, the dim moved last)
    ((2, 8, 21, 4), (8, 12, 3, 3), dict(padding=1), 0),
    ((3, 9, 17, 3), (9, 4, 4, 2), dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                       dilation=(1, 2), groups=3), 0),
    ((2, 6, 3, 19, 4), (6, 10, 3, 3, 3), dict(padding=1, dilation=(1, 2, 1)), 1),
    ((1, 4, 20, 3, 2), (4, 9, 2, 3, 3), dict(stride=(2, 1, 1), padding=(0, 1, 1)), 0),
]


@pytest.mark.usefixtures("every_call_moves")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, moved", CASES)
def test_moved_calls_against_the_oracle(x_shape, w_shape, kwargs, moved, dtype, rng):
    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    call = _dispatch.cpu_call(x.shape, x.dtype, w.shape, w.dtype, (bias.shape, bias.dtype), (
        kwargs.get("stride", 1), kwargs.get("padding", 0), kwargs.get("output_padding", 0),
        kwargs.get("dilation", 1), kwargs.get("groups", 1), None, "zeros", "channels_first"))
    assert call.route().last_dim == moved
    assert_matches_reference(conv_transpose(x, w, bias, **kwargs), x, w, bias, **kwargs)


@pytest.mark.usefixtures("every_call_moves")
@pytest.mark.parametrize("x_shape, w_shape, kwargs, moved", CASES[1:3])
def test_moved_calls_in_every_layout_and_way_of_calling(x_shape, w_shape, kwargs, moved, rng):
    x, w = random_array(rng, x_shape, np.float32), random_array(rng, w_shape, np.float32)
    y = conv_transpose(x, w, **kwargs)
    assert_matches_reference(y, x, w, **kwargs)
    # Channels last, the same sums.
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y_last = conv_transpose(x_last, w, data_format="channels_last", **kwargs)
    np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1), y)
    # Into out=, and through a plan.
    out = np.full_like(y, np.nan)
    conv_transpose(x, w, out=out, **kwargs)
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(plan(w, x.shape, **kwargs)(x), y)
    # Complex data: its real twin's route moves the same dim.
    xc = x + 1j * random_array(rng, x_shape, np.float32)
    wc = w - 2j * random_array(rng, w_shape, np.float32)
    assert_matches_reference(conv_transpose(xc, wc, **kwargs), xc, wc, **kwargs)


@pytest.mark.usefixtures("every_call_moves")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, moved", CASES)
def test_moved_calls_channels_last_move_positions_not_channels(x_shape, w_shape, kwargs, moved,
                                                              dtype, rng, monkeypatch):
    """Channels last, a moved call runs its phase tiles in place on copies
    with the dim moved before the channels: never a transpose of the
    channels, and the channels-first bits (and the oracle's values)."""
    from numba_deconv.cpu import transpose

    x, w = random_array(rng, x_shape, dtype), random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, bias, **kwargs)
    assert_matches_reference(y, x, w, bias, **kwargs)
    transposes = []
    for name in ("to_channels_first", "to_channels_last"):
        real = getattr(transpose, name)
        monkeypatch.setattr(transpose, name,
                            lambda *a, _real=real, _name=name: transposes.append(_name)
                            or _real(*a))
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for _ in range(2):  # the first call may go the transposed way, while the tiles compile
        transposes.clear()
        y_last = conv_transpose(x_last, w, bias, data_format="channels_last", **kwargs)
        assert np.moveaxis(y_last, -1, 1).tobytes() == np.ascontiguousarray(y).tobytes()
    assert transposes == []


@pytest.mark.usefixtures("every_call_moves")
def test_moved_calls_do_not_depend_on_the_thread_count(rng):
    x_shape, w_shape, kwargs, _ = CASES[2]
    x, w = random_array(rng, x_shape, np.float32), random_array(rng, w_shape, np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            assert _dispatch.cpu_call(x.shape, x.dtype, w.shape, w.dtype, None, (
                1, kwargs["padding"], 0, kwargs["dilation"], 1, None, "zeros",
                "channels_first")).route().last_dim == 1
            results.append(conv_transpose(x, w, **kwargs))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.usefixtures("every_call_moves")
def test_a_weight_that_is_not_finite_falls_back_on_the_moved_geometry(rng):
    """The phase tiles multiply zero padding, so an infinite weight sends
    the call to the rows kernel, which runs on the moved arrays too."""
    x_shape, w_shape, kwargs, _ = CASES[0]
    x, w = random_array(rng, x_shape, np.float64), random_array(rng, w_shape, np.float64)
    x[0, 0, 0, 0] = np.nan
    w[3, 5, 1, 2] = np.inf
    assert_same_nonfinite(conv_transpose(x, w, **kwargs), reference(x, w, **kwargs))
