"""The tap-rows kernel (few output channels): its row blocks, and every
tile size against the oracle."""

import numpy as np
import pytest

from numba_deconv import _dispatch, conv_transpose, plan
from numba_deconv.cpu import real_views
from numba_deconv.cpu.tap_rows import TAP_ROWS, _row_blocks

from helpers import assert_matches_reference, launches_of, random_array, returns_of

pytestmark = pytest.mark.usefixtures("fresh_routes")


def _blocks(m_g):
    """The ``(first row, rows)`` of each tile of ``m_g`` rows, as the kernel
    walks them."""
    blocks, most, longer = _row_blocks(m_g)
    return [(b * most + min(b, longer), most + (b < longer)) for b in range(blocks)]


@pytest.mark.parametrize("m_g", list(range(1, 30)) + [36, 64, 72, 81, 82, 343])
def test_row_blocks_cover_the_rows_in_tiles_as_even_as_can_be(m_g):
    blocks = _blocks(m_g)
    assert len(blocks) == -(-m_g // TAP_ROWS)
    sizes = [rows for _, rows in blocks]
    assert max(sizes) <= TAP_ROWS and max(sizes) - min(sizes) <= 1
    assert [first for first, _ in blocks] == list(np.cumsum([0] + sizes[:-1]))
    assert sum(sizes) == m_g


def _force(monkeypatch):
    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("columns", "tap_rows", "tap_rows"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c_out, kernel, x_shape, kwargs", [
    # Rows per group from 1 to 19: every tile size, 1 to 9 rows, and
    # blocks of two sizes; positions in part tiles and over several.
    (1, (1, 1), (2, 8, 7, 5), dict(stride=2)),
    (1, (2, 1), (1, 8, 20, 9), {}),
    (1, (3, 1), (2, 8, 6, 11), dict(padding=(1, 0))),
    (2, (2, 1), (1, 8, 13, 13), dict(stride=(2, 1))),
    (1, (5, 1), (2, 8, 9, 4), dict(dilation=2, padding=(3, 0))),
    (3, (2, 1), (1, 8, 25, 7), dict(stride=3, output_padding=1)),
    (1, (7, 1), (1, 8, 10, 6), {}),
    (2, (2, 2), (3, 8, 8, 8), dict(stride=2, padding=1)),
    (1, (3, 3), (2, 8, 17, 16), dict(padding=1)),
    (2, (5, 1), (1, 8, 12, 12), {}),
    (1, (11, 1), (1, 8, 30, 3), dict(padding=(5, 0))),
    (3, (2, 2), (2, 8, 6, 9), dict(stride=(1, 2))),
    (1, (13, 1), (1, 8, 20, 2), {}),
    (7, (2, 1), (1, 8, 9, 9), dict(stride=2, dilation=(3, 1))),
    (3, (5, 1), (1, 8, 9, 9), {}),
    (4, (2, 2), (1, 8, 9, 9), dict(padding=1)),
    (1, (17, 1), (1, 8, 24, 2), dict(padding=(8, 0))),
    (2, (3, 3), (2, 8, 5, 7), dict(stride=2, output_padding=1)),
    (1, (19, 1), (1, 8, 21, 2), {}),
])
def test_every_tile_size_against_the_oracle(c_out, kernel, x_shape, kwargs, dtype,
                                            monkeypatch, ran, rng):
    _force(monkeypatch)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, (x_shape[1], c_out) + kernel, dtype)
    b = random_array(rng, (c_out,), dtype)
    assert_matches_reference(conv_transpose(x, w, b, **kwargs), x, w, b, **kwargs)
    assert ran == [("tap_rows", True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 12, 5, 4, 7), (12, 2, 2, 3, 2), dict(stride=(1, 2, 1), groups=3)),  # groups, 3-D
    ((3, 16, 50), (16, 1, 4), dict(stride=2, padding=1, groups=2)),  # 1-D
    ((1, 9, 8, 6), (6, 2, 3, 3), dict(padding=1, data_format="channels_last")),
    # Images of 437 positions: stretches inside each (copied first) and
    # one across the two.
    ((2, 12, 23, 19), (12, 2, 3, 3), dict(padding=1, groups=3)),
])
def test_groups_ranks_and_layouts_against_the_oracle(x_shape, w_shape, kwargs, dtype,
                                                     monkeypatch, rng):
    _force(monkeypatch)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    assert_matches_reference(conv_transpose(x, w, b, **kwargs), x, w, b, **kwargs)


def test_weights_past_the_image_do_not_reach_the_output(monkeypatch, rng):
    """The window's zeros past an image's positions meet the weights only in
    columns no output reads: infinite weights land where the definition
    puts them (no NaN from 0 * inf)."""
    _force(monkeypatch)
    x = random_array(rng, (1, 8, 5, 3), np.float64)  # 15 positions of a 24-wide tile
    w = random_array(rng, (8, 1, 3, 3), np.float64)
    w[0, 0, 1, 1] = np.inf
    y = conv_transpose(x, w, padding=1)
    expected = np.where(x[0, 0] > 0, np.inf, -np.inf)
    np.testing.assert_array_equal(y[0, 0], expected)


def test_a_plan_gives_the_calls_bits(monkeypatch, rng):
    _force(monkeypatch)
    x = random_array(rng, (2, 16, 9, 10), np.float32)
    w = random_array(rng, (16, 2, 3, 3), np.float32)
    p = plan(w, x.shape, padding=1)
    for _ in range(2):
        np.testing.assert_array_equal(p(x), conv_transpose(x, w, padding=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 8, 7, 5), (8, 1, 1, 1), dict(stride=2)),       # tiles across images
    ((1, 40, 20, 9), (40, 3, 2, 2), dict(padding=1)),   # channels past whole squares
    ((3, 16, 50), (16, 1, 4), dict(stride=2, padding=1, groups=2)),  # 1-D, groups
    ((2, 12, 5, 4, 7), (12, 2, 2, 3, 2), dict(stride=(1, 2, 1), groups=3)),  # 3-D, groups
    ((1, 5, 70, 3), (5, 7, 3, 1), dict(dilation=2)),    # a channel of 5, rows of 9 x 7
])
def test_channels_last_in_place_gives_the_channels_first_bits(x_shape, w_shape, kwargs, dtype,
                                                              monkeypatch, ran, rng):
    """Channels-last data goes through the tap rows as it lies: each tile's
    positions transposed into its window, each output position's channels
    written by one fold task; the channels-first bits, and no transpose of
    the whole input or output."""
    from numba_deconv.cpu import transpose

    _force(monkeypatch)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    first = conv_transpose(x, w, b, **kwargs)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)  # records the kernel
    moved = []
    monkeypatch.setattr(transpose, "to_channels_first", lambda *a: moved.append(a))
    ran.clear()
    last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    assert last.tobytes() == np.ascontiguousarray(np.moveaxis(first, 1, -1)).tobytes()
    assert ran == [("tap_rows", True)] and not moved


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    # (Work enough for the twin: real_twin.)
    ((4, 16, 23, 25), (16, 1, 1, 1), dict(stride=2)),   # tiles across images
    ((6, 16, 200), (16, 1, 4), dict(stride=2, padding=1, groups=2)),  # 1-D, groups
    ((2, 5, 140, 9), (5, 3, 3, 1), dict(dilation=2)),   # runs past whole vectors
])
def test_complex_data_runs_where_it_lies(x_shape, w_shape, kwargs, dtype, monkeypatch, ran,
                                         rng):
    """Complex data goes through the tap rows where it lies: channels first
    on the real views of its arrays (``real_views.ran_on_real_views``, see
    ``test_real_views.py``), channels last as its real twin, the channels
    transposed into each tile's window and each fold task writing every
    channel of its positions, no whole transpose; the oracle's values
    both ways."""
    from numba_deconv.cpu import transpose

    _force(monkeypatch)
    views = returns_of(monkeypatch, real_views, "ran_on_real_views")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)  # records the kernel
    moved = []
    monkeypatch.setattr(transpose, "to_parts", lambda *a: moved.append(a))
    monkeypatch.setattr(transpose, "to_channels_first", lambda *a: moved.append(a))
    ran.clear()
    views.clear()
    first = conv_transpose(x, w, b, **kwargs)
    last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    assert views == [True, False] and ran == [("tap_rows", True)] and not moved
    assert_matches_reference(first, x, w, b, **kwargs)
    assert_matches_reference(np.moveaxis(last, -1, 1), x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_a_complex_call_whose_shape_takes_the_tap_rows_runs_its_twin_there(dtype, ran, rng):
    """57 -> 12 channels take the tap rows as real data; the complex call's
    twin (114 -> 24, more output channels than choose_kernel gives the tap
    rows) runs there too, and a real call of the twin's shape keeps its
    own kernel."""
    kwargs = dict(stride=2)
    x = random_array(rng, (5, 57, 11, 5), dtype)
    w = random_array(rng, (57, 12, 5, 5), dtype)
    b = random_array(rng, (12,), dtype)
    real = np.empty(0, dtype).real.dtype
    assert _dispatch.choose_kernel(plan(w.real, x.shape, **kwargs)._call.geometry, 5,
                                   real)[1] == "tap_rows"
    twin_kernel = plan(random_array(rng, (114, 24, 5, 5), real), (5, 114, 11, 5),
                       **kwargs)._call.route().kernel
    assert twin_kernel != "tap_rows"
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    assert _dispatch.real_twin(plan(w, x.shape, **kwargs)._call).route().kernel == "tap_rows"
    ran.clear()
    conv_transpose(random_array(rng, (5, 114, 11, 5), real),
                   random_array(rng, (114, 24, 5, 5), real), **kwargs)
    assert [kernel for kernel, _ in ran] == [twin_kernel]


@pytest.mark.parametrize("kernel, stride, dilation, twin_kernel, dtype, data_format", [
    # seed 0's r62: one tap per output phase
    (3, 3, 2, "phase_tiles", np.complex128, "channels_first"),
    (3, 3, 2, "phase_tiles", np.complex64, "channels_last"),
    (2, 4, 1, "phase_tiles", np.complex64, "channels_first"),
    (2, 4, 1, "phase_tiles", np.complex128, "channels_last"),
    # two taps in a phase: the twin's own choice
    (4, 3, 1, "column_tiles", np.complex64, "channels_first"),
    (4, 3, 1, "column_tiles", np.complex128, "channels_last"),
])
def test_a_complex_call_with_one_tap_a_phase_keeps_the_phase_tiles_for_its_twin(
        kernel, stride, dilation, twin_kernel, dtype, data_format, ran, rng):
    """38 -> 292 channels on 3 rows of 43 take the phase tiles as real
    data, and their twin's shape (76 -> 584) the columns kernel, which
    splits and merges the parts around its products: with one tap per
    output phase the complex call's twin runs on the phase tiles, with the
    oracle's values; with more it keeps its own shape's kernel, as a real
    call of that shape does."""
    kwargs = dict(stride=stride, dilation=dilation, padding=1)
    x = random_array(rng, (3, 38, 43), dtype)
    w = random_array(rng, (38, 292, kernel), dtype)
    b = random_array(rng, (292,), dtype)
    real = np.empty(0, dtype).real.dtype
    assert plan(w.real, x.shape, **kwargs)._call.route().kernel == "phase_tiles"
    assert plan(random_array(rng, (76, 584, kernel), real), (3, 76, 43),
                **kwargs)._call.route().kernel == "column_tiles"
    if data_format == "channels_last":
        y = conv_transpose(np.moveaxis(x, 1, -1), w, b, data_format=data_format, **kwargs)
        y = np.moveaxis(y, -1, 1)
    else:
        y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    assert _dispatch.real_twin(plan(w, x.shape, **kwargs)._call).route().kernel == twin_kernel
    # (Channels last, the tiles' route may hand a one-tap call to
    # one_tap_last, which runs outside driver.LAUNCHERS; a complex call
    # whose twin takes the columns kernel runs on its arrays' real views,
    # outside them too.)
    if data_format == "channels_first":
        assert [name for name, _ in ran] == ([twin_kernel] if twin_kernel == "phase_tiles"
                                             else [])


@pytest.mark.parametrize("data_format, tasks", [
    ("channels_first", 4 * 7),  # an image's outputs of one channel a task
    ("channels_last", 4),       # an image's positions, every channel, a task
])
def test_fold_tasks_of_small_images_take_whole_images(data_format, tasks, monkeypatch, rng):
    """An image with fewer outputs than a fold task's share is one task
    channels last, all its channels at every position: split by positions
    among its 7 channels, r46's tasks of 11 positions wrote each other's
    cache lines (the fold took 1.7 times its channels-first time). The
    count is read from the task counter of the fold run again on the
    call's own arguments."""
    from numba_deconv.cpu import tap_rows

    _force(monkeypatch)
    x = random_array(rng, (4, 12, 7, 6), np.float32)  # 9 x 8 outputs of 7 channels
    w = random_array(rng, (12, 7, 7, 7), np.float32)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    # Once compiled in this process, the kernel reads channels last in place
    # (a first call may take its channels-first twin between transposes).
    conv_transpose(x, w, padding=2, data_format=data_format)
    folds = launches_of(monkeypatch, tap_rows.tap_rows_fold)
    out = conv_transpose(x, w, padding=2, data_format=data_format)
    assert_matches_reference(out, x, w, padding=2, data_format=data_format)
    (cols, sources, counts, bias, fold_out, image_pitch, chunk, layout), = folds
    claimed, cancel = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.uint8)
    tap_rows.tap_rows_fold(cols, sources, counts, bias, fold_out.copy(), image_pitch, chunk,
                           layout, claimed, cancel)
    assert claimed[0] - 1 == tasks  # the last claim found none left
