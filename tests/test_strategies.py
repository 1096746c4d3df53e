"""Every CPU strategy and work split against the oracle.

The heuristic picks one strategy per shape, and the small shapes of the
other tests fit one task's workspace, so here each strategy is forced and
the GEMM workspace shrunk until the driver splits output channels and cuts
slabs with halos (the code paths big workloads take).
"""

import math

import numpy as np
import pytest

import numba

from numba_deconv import _dispatch, config, conv_transpose, plan
from numba_deconv.cpu import _blas, driver, simd, tile_products, tiled, work_split

from helpers import assert_matches_reference, assert_same_nonfinite, random_array, returns_of
from reference import reference

CASES = [
    # x shape, weight shape, keyword arguments
    ((2, 6, 9), (6, 4, 5), dict(stride=3, padding=2, output_padding=1)),
    ((2, 8, 7, 6), (8, 3, 4, 3), dict(stride=2, padding=1)),
    ((1, 8, 9, 8), (8, 5, 3, 3), dict(stride=1, padding=2, dilation=2)),
    ((2, 8, 5, 6), (8, 2, 2, 5), dict(stride=(2, 3), padding=((0, 1), (3, 1)))),
    ((1, 6, 5, 4, 6), (6, 2, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((2, 6, 4, 3, 5), (6, 4, 2, 1, 3), dict(stride=(1, 2, 3), dilation=(2, 1, 2), groups=2)),
    ((1, 4, 6, 6), (4, 2, 1, 1), dict(stride=3, padding=0, output_padding=2)),
    ((2, 4, 3, 4, 5, 3), (4, 2, 2, 3, 2, 2), dict(stride=2, padding=1)),
    # Padding past the kernel (every tap reads ahead: inputs 0..1 reach no
    # output) and a kernel narrower than the stride (phases with no tap).
    ((1, 4, 3, 9), (4, 3, 2, 2), dict(stride=2, padding=(1, 3))),
    ((2, 4, 5, 5), (4, 4, 1, 2), dict(stride=3, output_padding=(0, 2))),
]


# (strategy, kernel): the gather strategy has a serial row kernel for tiny
# calls, a parallel row kernel, a plane kernel for short rows and register
# tiles for more channels; the columns strategy runs register tiles on real
# data (along the weights, or along the positions for few output channels)
# and BLAS tasks on complex data.
PATHS = [("gather", "rows_serial"), ("gather", "rows"), ("gather", "planes"),
         ("gather", "phase_tiles"), ("columns", "column_tiles"), ("columns", "tap_rows"),
         ("columns", "blas")]


# Routes made under each test's settings (conftest's fixture), none left behind.
pytestmark = pytest.mark.usefixtures("fresh_routes")


def force(monkeypatch, strategy, kernel):
    """Route every call to ``kernel``; kernels that multiply zero padding
    fall back to the parallel row kernel."""
    fallback = "rows" if kernel in ("planes", "phase_tiles") else kernel
    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: (strategy, kernel, fallback))


@pytest.fixture(params=PATHS, ids=["-".join(p) for p in PATHS])
def path(request, monkeypatch):
    force(monkeypatch, *request.param)
    return request.param


@pytest.mark.parametrize("workspace", [1 << 20, 64, 512])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_strategy_and_split(path, ran, workspace, x_shape, w_shape, kwargs, monkeypatch, rng):
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    monkeypatch.setattr(config, "GEMM_MIN_ROWS", 2)
    # The tiled kernel's split, from whole images in one sweep down to many
    # small tasks (window halos, tasks ending mid-row) and short sweeps.
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", workspace // 64 or 1)
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 1 << 10 if workspace < 1024 else 1)
    monkeypatch.setattr(config, "TILED_ACC_BYTES", workspace)
    # The columns kernel: from one task per group down to one output
    # channel per task, summing one input channel per packed block; in
    # place (the small workspace) one input channel per pass.
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", 1 << 10 if workspace < 1024 else 1)
    monkeypatch.setattr(config, "COLUMNS_PACK_BYTES", workspace)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_MAX_POSITIONS", 1 << 20 if workspace < 1024 else 0)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_TASKS_PER_THREAD", 1 << 10)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_K_BLOCK", workspace // 256 or 1)
    # The tap rows: one tile of positions per task and a fold task per few
    # outputs, or long stretches and whole images.
    monkeypatch.setattr(config, "TAP_ROWS_FOLD_MIN_CHUNK", 3 if workspace < 1024 else 512)
    dtype = np.complex128 if path[1] == "blas" else np.float64
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    assert ran and set(ran) == {(path[1], True)}  # rank 4: once per slice


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES[:4])
def test_nonfinite_values_on_every_path(path, ran, x_shape, w_shape, kwargs, rng):
    """NaN and Inf land where the definition puts them on every path; the
    plane kernel (whose zero padding would turn an infinite weight into NaN
    in the wrong places) must hand infinite weights to the row kernel."""
    dtype = np.complex128 if path[1] == "blas" else np.float64
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    x[(0,) * x.ndim] = np.nan
    if path[1] != "blas":
        # Complex infinities are left out: BLAS and NumPy multiply complex
        # numbers by different formulas, which disagree on 0 * inf parts.
        x[(-1,) * x.ndim] = np.inf
        w[(0,) * w.ndim] = -np.inf
    assert_same_nonfinite(conv_transpose(x, w, **kwargs), reference(x, w, **kwargs))
    if path[1] in ("planes", "phase_tiles"):
        assert ran == [(path[1], False), ("rows", True)]
    else:
        assert ran == [(path[1], True)]


def _blas_layout(workspace, monkeypatch):
    """The BLAS tasks of 4 output channels, 3x3 taps at stride 2 on an 8x8
    image (float64, 2 threads) with a workspace of ``workspace`` bytes."""
    monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
    return _blas.blas_layout((1, 2, 1, 8, 8), (2, 4, 1, 3, 3), (1, 4, 1, 15, 15),
                               (1, 2, 2), (1, 1, 1), (0, 1, 1), 1, 8, 2)


def test_blas_tasks_never_depend_on_the_thread_count():
    """A product's shape can change BLAS's last bits: the tasks are the same
    for any thread count, and a big call of one image and one output channel
    is cut into slabs for many threads, each several halos long."""
    shapes = ((1, 256, 1, 96, 64), (256, 1, 1, 4, 4), (1, 1, 1, 194, 130),
              (1, 2, 2), (1, 1, 1), (0, 1, 1), 1, 8)
    layouts = [_blas.blas_layout(*shapes, threads) for threads in (1, 2, 3, 64)]
    assert all(layout == layouts[0] for layout in layouts)
    tasks, dim, _ = layouts[0]
    multiply_adds = 256 * 16 * 96 * 64
    assert dim == 1 and len(tasks) == multiply_adds // config.BLAS_TASK_MULTIPLY_ADDS
    halo = 2  # (4 - 1) taps at stride 2, rounded up
    assert all(i1 - i0 >= config.SLAB_MIN_HALOS * halo for _, _, _, _, (i0, i1, _, _) in tasks)
    # A 7-tap kernel on 10 planes: slabs would recompute most products.
    tasks, dim, _ = _blas.blas_layout((27, 178, 10, 19, 9), (178, 1, 7, 7, 7),
                                        (27, 1, 10, 19, 9), (1, 1, 1), (1, 1, 1), (3, 3, 3),
                                        1, 8, 2)
    assert dim is None and len(tasks) == 27


def test_small_workspace_cuts_slabs_with_halos(monkeypatch):
    """The split really happens: channel blocks, then slabs of the outer dim."""
    tasks, dim, block = _blas_layout(8 << 20, monkeypatch)
    assert dim is None and len(tasks) >= 1  # fits the default workspace
    # Three input rows of all channels.
    tasks, dim, block = _blas_layout(8 * 9 * 4 * 8 * 3, monkeypatch)
    slabs = sorted({t.slab for t in tasks})
    assert dim == 1 and len(slabs) > 1
    # Output slabs tile the output exactly; input slabs overlap (halos).
    assert slabs[0][2] == 0 and slabs[-1][3] == 15
    assert all(a[3] == b[2] for a, b in zip(slabs, slabs[1:]))
    assert any(a[1] > b[0] for a, b in zip(slabs, slabs[1:]))


# Output channels per group around the register tile's 8 rows (a 4-row
# tile for the rest, zero-padded rows), rows shorter and longer than a
# vector (tiles straight through the positions or row by row), and both
# real dtypes (16 and 8 lanes).
TILE_CASES = [
    ((2, 5, 7, 6), (5, 12, 3, 3), dict(stride=2, padding=1)),
    ((1, 3, 40), (3, 17, 4), dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 3, 21), (4, 14, 2, 3), dict(stride=(1, 3), dilation=(2, 1))),
    ((1, 6, 3, 5, 4), (6, 8, 3, 2, 3), dict(stride=2, padding=(1, 0, 1))),
    ((2, 16, 4, 4), (16, 20, 4, 4), dict(stride=2, padding=1, groups=2)),
    # Rows long enough for the vector interleave at stride 4, and stride 5
    # (rows short or of another stride go by the scatter's table).
    ((1, 3, 2, 36), (3, 10, 2, 5), dict(stride=(1, 4), padding=(0, 1))),
    ((2, 2, 30), (2, 9, 7), dict(stride=5, padding=2, output_padding=3)),
    # One tap per phase: whole input rows are one run of the window, whole
    # output rows one stretch of the scatter (a 1x1 kernel, kernel = stride
    # along W, a 1x1x1 kernel across depth), and with cropping only some.
    ((2, 5, 7, 9), (5, 11, 1, 1), {}),
    ((1, 4, 5, 6), (4, 9, 1, 2), dict(stride=(1, 2))),
    ((1, 4, 5, 6), (4, 9, 1, 3), dict(stride=(1, 3))),
    ((1, 3, 3, 4, 5), (3, 10, 1, 1, 1), {}),
    ((2, 4, 6, 7), (4, 9, 1, 1), dict(padding=(1, 0))),
    # Last blocks of 2, 3, 5 (4 + 1), 6 (4 + 2) and 7 (4 + 3) output
    # channels on images long enough for their widest tiles (2 x 8 and 4 x 6
    # vectors).
    ((1, 5, 20, 24), (5, 2, 3, 3), dict(padding=1)),
    ((1, 5, 20, 24), (5, 11, 3, 3), dict(padding=1)),
    ((1, 5, 20, 24), (5, 13, 3, 3), dict(padding=1)),
    ((1, 5, 20, 24), (5, 6, 3, 3), dict(padding=1)),
    ((1, 5, 20, 24), (5, 7, 3, 3), dict(padding=1)),
    # Kernel < stride: phases without taps are the bias alone.
    ((2, 3, 4, 6), (3, 10, 1, 2), dict(stride=3, output_padding=(2, 1))),
    # Stride 3 on rows long enough for its vector interleave (in the
    # scatter's table path; 50 outputs, a ragged end in both dtypes), with
    # kernel < stride.
    ((1, 3, 3, 17), (3, 9, 2, 2), dict(stride=3)),
    # Short images under large kernels: the top and bottom rows' tiles sum
    # only the taps that reach the image (tile_products.tap_spans), in 2-D and 3-D,
    # with dilation, and rows past the last tap (output padding) that sum
    # none; full blocks and a ragged one.
    ((2, 9, 5, 21), (9, 10, 5, 5), dict(padding=1)),
    ((1, 4, 3, 4, 9), (4, 16, 3, 3, 3), dict(stride=(2, 1, 1), padding=1, dilation=(1, 2, 1))),
    ((2, 6, 4, 30), (6, 8, 7, 3), dict(stride=(2, 1), padding=(2, 1), dilation=(2, 1),
                                       output_padding=(1, 0))),
    ((1, 5, 3, 20), (5, 8, 3, 3), dict(stride=(3, 1), output_padding=(2, 0))),
    # ... and 48 input channels x 25 taps: the spans' chunks of whole
    # channels (20 of them a chunk in float32, 10 in float64), each summed
    # by a full block and a ragged one before the next.
    ((1, 48, 5, 21), (48, 12, 5, 5), dict(padding=1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tasks_per_thread", [1, 1 << 10])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", TILE_CASES)
def test_tiled_tiles_and_splits(x_shape, w_shape, kwargs, tasks_per_thread, dtype,
                                monkeypatch, rng):
    """The tiled kernel against the oracle with whole images per task, and
    with images cut into stretches of positions and ranges of tile blocks."""
    force(monkeypatch, "gather", "phase_tiles")
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 8)
    monkeypatch.setattr(config, "TILED_MIN_TASK_MULTIPLY_ADDS", 1)  # tiny tasks too
    layouts = returns_of(monkeypatch, work_split, "_tiled_layout")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    layout, = layouts
    if tasks_per_thread > 1:
        assert layout.chunks * layout.block_parts > 1


def _spy_layouts(monkeypatch, kernel):
    """The list of the layouts (:data:`.tiled.CHANNELS_FIRST`, ...) that
    ``kernel``'s launcher is given, one per run."""
    layouts = []
    real_run = driver.LAUNCHERS[kernel]

    def spy(*args, layout=tiled.CHANNELS_FIRST):
        layouts.append(layout)
        return real_run(*args, layout=layout)
    monkeypatch.setitem(driver.LAUNCHERS, kernel, spy)
    return layouts


@pytest.mark.usefixtures("tiles_last")
# Whole images per task in one dtype, cut into many tasks in the other.
@pytest.mark.parametrize("dtype, tasks_per_thread", [(np.complex64, 1),
                                                     (np.complex128, 1 << 10)])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", TILE_CASES)
def test_tiled_tiles_read_and_write_complex_parts_in_place(x_shape, w_shape, kwargs,
                                                            tasks_per_thread, dtype,
                                                            monkeypatch, fresh_routes, rng):
    """Complex data runs as its real twin on the tiled kernel, which splits
    each complex channel's parts into its window and merges them into the
    output where they lie, channels first and channels last: the oracle's
    values, and the bits of the twin computed on its channels split out
    (``to_parts``) and merged back (``from_parts``)."""
    from numba_deconv import api
    from numba_deconv.cpu import transpose

    force(monkeypatch, "gather", "phase_tiles")
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 8)
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 1)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    layouts = _spy_layouts(monkeypatch, "phase_tiles")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    twin = conv_transpose(transpose.to_parts(x), api._twin_weight(w, transposed=True),
                          b.view(x.real.dtype), **kwargs)
    expected = np.empty((x_shape[0], twin.shape[1] // 2) + twin.shape[2:], dtype)
    transpose.from_parts(twin, expected)
    assert layouts == [tiled.CHANNELS_FIRST]

    y = conv_transpose(x, w, b, **kwargs)
    assert layouts[1:] == [tiled.COMPLEX_PARTS]
    np.testing.assert_array_equal(y, expected)
    assert_matches_reference(y, x, w, b, **kwargs)
    y_last = conv_transpose(np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, b,
                            data_format="channels_last", **kwargs)
    assert layouts[2:] == [tiled.CHANNELS_LAST]
    np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1), expected)


def _unet_like_tiled_layout(monkeypatch, window_bytes):
    """The tiled layout of 128 -> 64 channels, 2x2 taps at stride 2, on 64
    images of 32x32 in float32 on 2 threads."""
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 4)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 256)
    monkeypatch.setattr(config, "TILED_ACC_BYTES", 512 << 10)
    monkeypatch.setattr(config, "TILED_WINDOW_BYTES", window_bytes)
    return work_split._tiled_layout((64, 128, 1, 32, 32), (128, 64, 1, 2, 2), (64, 64, 1, 64, 64),
                                (1, 2, 2), (1, 1, 1), (0, 0, 0), 1, 4, 2)


def test_tiled_layout_splits_channels_of_small_calls_only_where_tasks_stay_large(
        monkeypatch):
    """11 -> 17 channels, 5x5 taps at stride 3 and dilation 2 (padding 2)
    on one 19x7 image: the tiles compute 748,000 products (every output
    position's taps, the zero padding's included) and write 24,480 outputs
    (32 products each): work for 5 tasks of ``TILED_MIN_TASK_MULTIPLY_ADDS``
    (2**18), so its 3 stretches of positions on 2 threads keep their 3
    blocks of channels whole (not in 3 ranges); 8 threads get all 9 tasks
    the call has (one a thread at least). Without the floor, 9 tasks on
    2 threads."""
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 4)
    monkeypatch.setattr(config, "TILED_MIN_TASK_MULTIPLY_ADDS", 1 << 18)
    monkeypatch.setattr(config, "TILED_OUTPUT_MULTIPLY_ADDS", 32)

    def layout(threads):
        return work_split._tiled_layout((1, 11, 1, 19, 7), (11, 17, 1, 5, 5),
                                        (1, 17, 1, 60, 24), (1, 3, 3), (1, 2, 2),
                                        (0, 2, 2), 1, 4, threads)

    def taps(size):  # per output position o of a dim: taps t on the stride's grid
        return sum((o + 2 - 2 * t) % 3 == 0 for o in range(size) for t in range(5))

    two = layout(2)
    assert 11 * 17 * taps(60) * taps(24) == 748_000 == 11 * 17 * int(
        np.dot(two.tap_counts, np.prod(two.phases[:, 3:6], axis=1)))
    assert (748_000 + 32 * 17 * 60 * 24) // (1 << 18) == 5
    assert (two.chunks, two.block_parts) == (3, 1)
    assert (layout(8).chunks, layout(8).block_parts) == (3, 3)
    monkeypatch.setattr(config, "TILED_MIN_TASK_MULTIPLY_ADDS", 1)
    assert (layout(2).chunks, layout(2).block_parts) == (3, 3)


@pytest.mark.parametrize("products, outputs, threads, parts", [
    (1 << 30, 0, 2, 3),          # work enough: the 3 ranges wanted (8 tasks / 3)
    (3 << 18, 0, 2, 1),          # 3 tasks' work for 3 stretches: blocks whole
    (6 << 18, 0, 2, 2),          # 6 tasks' work: 2 ranges a stretch
    (3 << 18, 3 << 18 >> 5, 2, 2),  # as many outputs again (32 products each)
    (0, 0, 8, 3),                # no work, 8 threads: one task a thread at least
])
def test_block_parts_keep_tasks_of_work(products, outputs, threads, parts, monkeypatch):
    """An image's 3 stretches of 7 blocks of output channels, 4 tasks
    wanted an image: ranges of channels as far as each task keeps
    ``TILED_MIN_TASK_MULTIPLY_ADDS`` (2**18) of work, an output counting
    as ``TILED_OUTPUT_MULTIPLY_ADDS`` (32), and a task a thread."""
    monkeypatch.setattr(config, "TILED_MIN_TASK_MULTIPLY_ADDS", 1 << 18)
    monkeypatch.setattr(config, "TILED_OUTPUT_MULTIPLY_ADDS", 32)
    assert work_split._block_parts(7, 8, 3, 1, threads, products, outputs) == parts


def test_tiled_layout_cuts_images_whose_window_would_not_fit(monkeypatch):
    """Plenty of images for the threads, but an input window of 128 channels
    x 1024 positions x 4 bytes: cut in two at 256 KiB, left whole at 1 MiB."""
    assert _unet_like_tiled_layout(monkeypatch, 256 << 10).chunks == 2
    assert _unet_like_tiled_layout(monkeypatch, 1 << 20).chunks == 1


@pytest.mark.parametrize("out_shape, stride, threads, parts", [
    ((2, 226, 1, 1, 4000), (1, 1, 4), 2, 4),     # two 1-D rows: 4 tasks a thread
    ((2, 226, 1, 1, 4000), (1, 1, 4), 64, 15),   # ... at most 1000 // 64 stretches
    ((1, 5, 1, 1, 100), (1, 1, 1), 2, 1),        # too short to cut
    ((8, 64, 1, 64, 64), (1, 2, 2), 64, 1),      # rows enough for the threads
])
def test_depthwise_last_rows_are_cut_for_want_of_tasks(out_shape, stride, threads, parts,
                                                       monkeypatch):
    """depthwise_last cuts its output rows into stretches where there are
    fewer than TILED_TASKS_PER_THREAD rows a thread, none of fewer than
    TILED_MIN_POSITIONS_CROWDED outputs a phase."""
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 4)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS_CROWDED", 64)
    assert work_split._last_row_parts(out_shape, stride, threads) == parts


@pytest.mark.parametrize("out_shape, threads, block", [
    ((4, 90, 1, 54, 116), 2, 8),    # 216 rows: 8 a task, 27 tasks
    ((4, 90, 1, 54, 116), 64, 1),   # 216 rows for 256 tasks: one a task
    ((1, 6, 1, 20, 30), 2, 2),      # 20 rows: 2 a task leave 4 tasks a thread
    ((2, 226, 1, 1, 4000), 2, 1),   # 1-D: a row a task (cut into stretches)
])
def test_depthwise_last_takes_blocks_of_rows(out_shape, threads, block, monkeypatch):
    """depthwise_last's tasks take up to DEPTHWISE_LAST_ROW_BLOCK output
    rows (whose shared input rows it copies once), as many as leave
    TILED_TASKS_PER_THREAD tasks a thread."""
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", 4)
    monkeypatch.setattr(config, "DEPTHWISE_LAST_ROW_BLOCK", 8)
    assert work_split._last_row_block(out_shape, threads) == block


def test_tiled_kernel_falls_back_on_nonfinite_weights(monkeypatch, ran, rng):
    """The weight table counts non-finite weights as it is built; then the
    tiled kernel computes nothing (its zero padding would make 0 * inf =
    NaN) and the row kernel runs instead."""
    x = random_array(rng, (1, 4, 5, 5), np.float32)
    w = random_array(rng, (4, 4, 3, 3), np.float32)
    w[1, 2, 0, 1] = np.inf
    layout = work_split._tiled_layout((1, 4, 1, 5, 5), (4, 4, 1, 3, 3), (1, 4, 1, 11, 11),
                                  (1, 2, 2), (1, 1, 1), (0, 0, 0), 1, 4, 2)
    _, non_finite = driver.weight_table(w.reshape(4, 4, 1, 3, 3), 1, layout.tap_index,
                                        layout.tap_counts)
    assert non_finite == 1
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    assert_same_nonfinite(conv_transpose(x, w, stride=2), reference(x, w, stride=2))
    rows = "rows" if numba.get_num_threads() > 1 else "rows_serial"
    assert ran == [("phase_tiles", False), (rows, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [16, 2], ids=["channels-whole", "channels-in-2s"])
@pytest.mark.parametrize("parallel_min", [0, 1 << 40], ids=["every-thread", "one-thread"])
def test_weight_table_is_the_weights_in_tile_order(parallel_min, chunk, dtype, monkeypatch, rng):
    """Group g's row of the table holds the phases in turn, each (blocks,
    C_in/g * T * 8) for its T taps, no room past them; [b, (ci * T + t) * 8
    + m] of phase ph's is w[g*C_in/g + ci, b*8 + m, tap t of phase ph]
    (zero past C_out/groups), and the count of weights
    that are not finite is exact, whether one thread or every thread fills
    it, in tasks of a block and all 5 input channels of a group or 2 at a
    time; a full block (turned in vector transposes: 12 taps, whole vectors
    and some left) and a block of 3 channels (weight by weight)."""
    monkeypatch.setattr(config, "WEIGHT_TABLE_PARALLEL_MIN", parallel_min)
    monkeypatch.setattr(config, "WEIGHT_TABLE_CHUNK", chunk)
    groups, c_in_g, c_out_g, kernel = 3, 5, 11, (1, 3, 4)
    w = random_array(rng, (groups * c_in_g, c_out_g) + kernel, dtype)
    w[0, 0, 0, 0, 0], w[7, 10, 0, 2, 3], w[14, 3, 0, 1, 1] = np.inf, np.nan, -np.inf
    layout = work_split._tiled_layout((1, groups * c_in_g, 1, 6, 7), w.shape,
                                  (1, groups * c_out_g, 1, 13, 16), (1, 2, 2), (1, 1, 1),
                                  (0, 0, 0), groups, 4, 2)
    table, non_finite = driver.weight_table(w, groups, layout.tap_index, layout.tap_counts)
    assert non_finite == 3
    blocks = -(-c_out_g // tiled.TILE_ROWS)
    assert table.shape == (groups, blocks * 8 * c_in_g * np.prod(kernel))
    padded = np.zeros((groups * c_in_g, blocks * tiled.TILE_ROWS) + kernel, dtype)
    padded[:, :c_out_g] = w
    first = np.concatenate([[0], np.cumsum(c_in_g * layout.tap_counts)]) * blocks * 8
    for g in range(groups):
        for ph, n_taps in enumerate(layout.tap_counts):
            taps = [tuple(layout.tap_index[ph, t]) for t in range(n_taps)]
            stretch = table[g, first[ph]:first[ph + 1]].reshape(blocks, -1)
            for b in range(blocks):
                expected = np.array([
                    padded[g * c_in_g + ci, b * 8 + m][tap]
                    for ci in range(c_in_g) for tap in taps for m in range(8)])
                np.testing.assert_array_equal(stretch[b], expected)


# The columns kernel: weights per group (output channels x taps) under,
# at and past a tile's 48 (float32) or 24 (float64), positions of the
# whole batch not a multiple of 8 (images straddle position tiles), groups,
# 1-D and 3-D.
COLUMN_CASES = [
    ((3, 7, 3, 3), (7, 5, 3, 3), dict(stride=2, padding=1)),
    ((2, 9, 5), (9, 12, 4), dict(stride=2, padding=1, output_padding=1)),
    ((1, 6, 2, 3, 2), (6, 4, 2, 3, 2), dict(stride=(2, 1, 3), dilation=(1, 2, 1))),
    ((2, 6, 3, 2, 3), (6, 4, 3, 2, 3), dict(stride=2, padding=1)),
    ((2, 8, 4, 5), (8, 6, 4, 4), dict(stride=2, padding=(2, 1), groups=2)),
    ((1, 5, 2, 2), (5, 3, 1, 1), dict(stride=3, output_padding=2)),
    # 189 positions: 24 tiles, more than one gather task, 8 across images
    ((3, 6, 9, 7), (6, 5, 3, 3), dict(stride=2, padding=1)),
]


def _force_columns(monkeypatch, split, in_place):
    """Route real data to the columns kernel, packed or ``in_place``, with
    one task per thread and all input channels in one block, or (``split``)
    one output channel and (packed) one image per task and one input
    channel per block; returns the list that collects each call's layout."""
    force(monkeypatch, "columns", "column_tiles")
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", 1 << 10 if split else 1)
    monkeypatch.setattr(config, "COLUMNS_IMAGE_TASKS_PER_THREAD", 1 << 10 if split else 1)
    if split:  # one channel and one image a task, whatever lanes that wastes
        monkeypatch.setattr(work_split, "_few_channel_split", lambda batch, *_: (1, batch))
    monkeypatch.setattr(config, "COLUMNS_PACK_BYTES", 1 if split else 1 << 20)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_MAX_POSITIONS", 1 << 20 if in_place else 0)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_TASKS_PER_THREAD", 1 << 10 if split else 1)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_K_BLOCK", 1 if split else 1 << 20)
    return returns_of(monkeypatch, work_split, "_columns_layout")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", COLUMN_CASES)
def test_columns_kernel_tiles_and_splits(x_shape, w_shape, kwargs, split, in_place, dtype,
                                         monkeypatch, rng):
    """The columns kernel against the oracle, packed and in place, with one
    task per thread and all input channels in one block, and with one
    output channel per task and one input channel per block (partial sums
    added up) and, packed, one image per task (each folding its own images
    from the position tiles they touch); through a plan, from weights
    packed once, the same bits."""
    layouts = _force_columns(monkeypatch, split, in_place)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    packed = []
    pack = driver.PREPARERS["column_tiles"]
    monkeypatch.setitem(driver.PREPARERS, "column_tiles",
                        lambda w3, launch: packed.append(pack(w3, launch)) or packed[-1])
    np.testing.assert_array_equal(plan(w, x.shape, bias=b, **kwargs)(x), y)
    (weights,) = packed
    assert weights.shape[2:] == (x_shape[1] // kwargs.get("groups", 1),
                                 simd.tile_width(np.dtype(dtype).itemsize))
    layout = layouts[0]
    assert layout.in_place == in_place
    if split:
        assert layout.channel_block == 1 and layout.k_block == 1
        assert layout.image_parts == (1 if in_place else x_shape[0])
    else:
        assert layout.k_block == x_shape[1] // kwargs.get("groups", 1)
        assert layout.image_parts == 1


@pytest.mark.parametrize("fold_last_bytes", [1 << 40, 0], ids=["fold-together", "fold-apart"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", COLUMN_CASES)
def test_columns_kernel_reads_and_writes_channels_last(x_shape, w_shape, kwargs, split, dtype,
                                                       fold_last_bytes, monkeypatch,
                                                       fresh_routes, rng):
    """Channels last, the columns kernel gathers each position's channels
    and folds into each output position's channels where they lie (no
    transposed copies, once compiled), a task's channels together or a
    channel at a time: the bits of the channels-first call."""
    _force_columns(monkeypatch, split, False)
    monkeypatch.setattr(config, "COLUMNS_FOLD_LAST_BYTES", fold_last_bytes)
    layouts = _spy_layouts(monkeypatch, "column_tiles")
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    # The first call of a layout compiles it; from then on it runs in place.
    for _ in range(2):
        y_last = conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
        np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1), y)
    assert layouts[0] == tiled.CHANNELS_FIRST and layouts[-1] == tiled.CHANNELS_LAST


@pytest.mark.parametrize("dtype, offset", [(np.float32, 0), (np.float32, 1), (np.float32, 4),
                                           (np.float32, 15), (np.float64, 3), (np.float64, 7)])
@pytest.mark.parametrize("split", [False, True])
def test_columns_in_place_tiles_start_on_a_vector_boundary(dtype, offset, split, monkeypatch,
                                                           rng):
    """Rows of 16 weights (4 output channels x 2x2 taps per group) start
    ``offset`` elements past a vector boundary, so the in-place tiles of
    each task start that far, or further, before its weights (never before
    the array): the columns they add must be set aside, in every task of
    both groups."""
    layouts = _force_columns(monkeypatch, split, True)
    room = np.empty(6 * 4 * 2 * 2 + 32, dtype=dtype)
    lead = (room.ctypes.data // room.itemsize) % (64 // room.itemsize)
    w = room[offset - lead + 16:][:6 * 4 * 2 * 2].reshape(6, 4, 2, 2)
    w[...] = random_array(rng, w.shape, dtype)
    assert (w.ctypes.data // w.itemsize) % (64 // w.itemsize) == offset
    x = random_array(rng, (3, 6, 2, 3), dtype)
    b = random_array(rng, (8,), dtype)
    kwargs = dict(stride=2, padding=(1, 0), groups=2)
    assert_matches_reference(conv_transpose(x, w, b, **kwargs), x, w, b, **kwargs)
    assert layouts[0].in_place


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_batch, c_in, groups, spatial, channels_last, parts", [
    (3, 5, 1, (1, 7, 3), False, 1),     # tiles across images, a ragged last tile
    (2, 70, 2, (1, 4, 8), False, 1),    # whole tiles; two groups of 35 channels
    (1, 1, 1, (2, 3, 8), False, 1),     # one channel: no row after it to spill into
    (2, 40, 1, (1, 16, 16), False, 1),  # more tiles and channels than one block
    (2, 6, 3, (1, 5, 5), True, 1),
    (2, 6, 3, (1, 5, 5), True, 2),      # complex: each position's parts in turn
    (3, 5, 1, (1, 7, 3), True, 2),
])
def test_columns_inputs_are_laid_out_per_tile_of_positions(n_batch, c_in, groups, spatial,
                                                           channels_last, parts, dtype, rng):
    """The columns tiles' broadcasts, ``xs[g, tile, ci, j]``: input channel
    ``g*C_in/groups + ci`` at position ``tile*8 + j`` of the batch, zero
    past the last (the copy moves whole vectors, whose excess lands in the
    next channel's row: it must be overwritten, never left). Complex data
    channels last (``parts`` 2), the real view of channels first's: its
    positions the parts of each complex one in turn."""
    from numba_deconv.cpu.columns import TILE_POSITIONS, gather_positions
    from numba_deconv.cpu.launch import parallel

    if parts == 2:
        wide = random_array(rng, (n_batch, c_in) + spatial, np.result_type(dtype, np.complex64))
        given = np.ascontiguousarray(np.moveaxis(wide, 1, -1)).view(dtype)
        x = wide.view(dtype)  # (n_batch, c_in, *spatial[:-1], 2 * spatial[-1])
        spatial = x.shape[2:]
    else:
        x = random_array(rng, (n_batch, c_in) + spatial, dtype)
        given = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    positions = n_batch * math.prod(spatial)
    p_tiles = -(-positions // TILE_POSITIONS)
    xs = np.full((groups, p_tiles, c_in // groups, TILE_POSITIONS), np.nan, dtype)
    parallel(gather_positions, given, xs, channels_last, parts, multiply_adds=xs.size)
    by_position = np.zeros((p_tiles * TILE_POSITIONS, c_in), dtype)
    by_position[:positions] = np.moveaxis(x, 1, -1).reshape(positions, c_in)
    expected = by_position.reshape(p_tiles, TILE_POSITIONS, groups, c_in // groups)
    assert np.array_equal(xs, expected.transpose(2, 0, 3, 1))


def test_columns_layout_bounds_the_workspace(monkeypatch):
    """512 -> 512 channels on 4 images of 8x8, 4x4 taps, float32, 2
    threads: 8 tasks per thread make blocks of 32 channels (their columns:
    256 positions x 512 weights x 4 bytes = 512 KiB); a 128 KiB workspace
    cuts them to 8 channels, and whole tiles to 6 (96 weights: 2 tiles of
    48, where 8 channels' 128 take 3 with 2.67 tiles' work); the packed
    weights of 256 KiB hold 11 tiles of 48 weights x 128 input channels.
    On one 4x4 image (16 positions) the tiles read in place: 2 tasks per
    thread, 32 input channels a block. 256 -> 256 channels on three 4x4
    images: 8 tasks per thread would be blocks of 16, and whole tiles
    make them 12 (4 tiles of 48, where 16 take 6 with 5.33 tiles' work)."""
    for name, value in (("COLUMNS_TASKS_PER_THREAD", 8), ("COLUMNS_PACK_BYTES", 256 << 10),
                        ("COLUMNS_IN_PLACE_MAX_POSITIONS", 32),
                        ("COLUMNS_IN_PLACE_TASKS_PER_THREAD", 2),
                        ("COLUMNS_IN_PLACE_K_BLOCK", 32)):
        monkeypatch.setattr(config, name, value)

    def layout(workspace, batch=4, side=8):
        monkeypatch.setattr(config, "WORKSPACE_BYTES", workspace)
        return work_split._columns_layout((batch, 512, 1, side, side), (512, 512, 1, 4, 4),
                                      (batch, 512, 1, 2 * side, 2 * side), (1, 2, 2),
                                      (1, 1, 1), (0, 1, 1), 1, 4, 2)
    def split(layout):
        return layout.channel_block, layout.image_parts, layout.k_block, layout.in_place
    assert split(layout(8 << 20)) == (32, 1, (256 << 10) // (11 * 48 * 4), False)
    assert layout(128 << 10).channel_block == 6
    deep_256 = work_split._columns_layout((3, 256, 1, 4, 4), (256, 256, 1, 4, 4),
                                          (3, 256, 1, 8, 8), (1, 2, 2), (1, 1, 1), (0, 1, 1),
                                          1, 4, 2)
    assert (deep_256.channel_block, deep_256.in_place) == (12, False)
    assert split(layout(8 << 20, batch=1, side=4)) == (128, 1, 32, True)
    assert split(layout(8 << 10, batch=1, side=4)) == (8, 1, 32, True)
    # A task's columns per position: its weights in whole tiles, and in
    # place room for the tiles to start up to a vector earlier.
    width, lanes = simd.tile_width(4), simd.VECTOR_BYTES // 4
    assert layout(8 << 20).pitch == -(-32 * 16 // width) * width
    assert layout(8 << 20, batch=1, side=4).pitch == -(-(128 * 16 + lanes - 1) // width) * width


def test_columns_in_place_rule(monkeypatch):
    """The tiles read the weights in place on up to 16 positions; on 17-32
    only when the weights reach 16 MiB (they come from memory each call),
    else the packed copy (each weight serves 3-4 tiles from it)."""
    for name, value in (("COLUMNS_IN_PLACE_MAX_POSITIONS", 16),
                        ("COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS", 32),
                        ("COLUMNS_IN_PLACE_LARGE_WEIGHT_BYTES", 16 << 20)):
        monkeypatch.setattr(config, name, value)

    def in_place(batch, c_in, c_out):
        return work_split._columns_layout((batch, c_in, 1, 4, 4), (c_in, c_out, 1, 4, 4),
                                      (batch, c_out, 1, 8, 8), (1, 2, 2), (1, 1, 1),
                                      (0, 1, 1), 1, 4, 2).in_place
    assert in_place(1, 256, 256)        # 16 positions
    assert not in_place(2, 256, 256)    # 32 positions, 4 MiB of weights
    assert not in_place(2, 512, 384)    # 12 MiB
    assert in_place(2, 512, 512)        # 16 MiB
    assert not in_place(3, 1024, 512)   # 48 positions


def test_columns_layout_splits_images_for_few_output_channels(monkeypatch):
    """7 output channels cannot make 8 tasks per thread of 2: the images
    are split into 2 tasks per thread instead, each with all 7 channels
    (343 of a block's 384 columns used, against 49 of 96 for one channel),
    never more parts than images. With 3 images, two blocks of 4 and 3
    channels (196 of 240 columns) on the whole batch are as few tiles
    per thread as any split; 5 channels of 9 taps make one block (45 of
    48 columns, not 3 and 2: 27 and 18). Many channels keep whole
    batches."""
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", 8)
    monkeypatch.setattr(config, "COLUMNS_IMAGE_TASKS_PER_THREAD", 2)
    # A 2 MiB L2's share, whatever this machine's (a 1.25 MiB L2 makes
    # a task's columns smaller and moves the blocks).
    monkeypatch.setattr(config, "COLUMNS_TASK_COLUMN_BYTES", 1536 << 10)

    def layout(batch, c_out):
        return work_split._columns_layout((batch, 50, 1, 7, 6), (50, c_out, 1, 7, 7),
                                      (batch, c_out, 1, 9, 8), (1, 1, 1), (1, 1, 1),
                                      (0, 2, 2), 1, 4, 2)
    assert (layout(24, 7).channel_block, layout(24, 7).image_parts) == (7, 4)
    assert (layout(3, 7).channel_block, layout(3, 7).image_parts) == (4, 1)
    assert (layout(24, 64).channel_block, layout(24, 64).image_parts) == (4, 1)
    nine_taps = work_split._columns_layout((3, 120, 1, 18, 18), (120, 5, 1, 3, 3),
                                           (3, 5, 1, 22, 22), (1, 1, 1), (1, 2, 2),
                                           (0, 0, 0), 1, 4, 2)
    assert (nine_taps.channel_block, nine_taps.image_parts) == (5, 3)


@pytest.mark.parametrize("strategy, kernel, dtype", [
    (strategy, kernel, dtype) for strategy, kernel in PATHS
    for dtype in (np.float32, np.complex128) if driver.kernel_signatures(kernel, dtype)])
def test_declared_signatures_are_the_ones_launched(strategy, kernel, dtype, monkeypatch):
    """``kernel_signatures`` (what precompile compiles) are exactly the types
    the launchers pass: after real calls of every rank 1-3, plain and
    through a plan, batched and not, no dispatcher holds another signature
    for that dtype (a mismatch would compile twice), nor, for helpers that
    take no array of it, any other at all."""
    declared = driver.kernel_signatures(kernel, dtype)
    force(monkeypatch, strategy, kernel)
    for x_shape, w_shape in (((2, 4, 6), (4, 3, 3)), ((1, 4, 5, 6), (4, 3, 2, 3)),
                             ((1, 4, 3, 4, 5), (4, 2, 2, 2, 2))):
        x, w = np.ones(x_shape, dtype), np.ones(w_shape, dtype)
        for _ in range(2):  # the second call of a tiny shape runs its kernel directly
            conv_transpose(x, w, stride=2)
            conv_transpose(x[0], w, stride=2)
            plan(w, x_shape, stride=2)(x)
    scalar = numba.from_dtype(np.dtype(dtype))
    for dispatcher in {d for d, _ in declared}:
        mine = {sig for sig in declared if sig[0] is dispatcher}
        mine = {signature for _, signature in mine}
        if any(getattr(arg, "dtype", None) == scalar for sig in mine for arg in sig):
            launched = {sig for sig in dispatcher.signatures
                        if any(getattr(arg, "dtype", None) == scalar for arg in sig)}
        else:
            launched = set(dispatcher.signatures)
        assert launched == mine, dispatcher


def _task_sizes(route, geometry, batch):
    """The work of each task of a route's launch, in output positions x
    output channels (rows x channels for the row kernels)."""
    launch, layout, kernel = route.launch, route.launch.layout, route.kernel
    if kernel == "phase_tiles":
        span = tiled.phase_span(layout.phases, np.array(layout.pitch))
        lanes = simd.VECTOR_BYTES // 4
        chunk = -(-span // (layout.chunks * lanes)) * lanes
        positions = [min(chunk, span - c * chunk) for c in range(layout.chunks)]
        assert min(positions) > 0, "an empty stretch"
        blocks = -(-geometry.out_channels // geometry.groups // tiled.TILE_ROWS)
        parts = [blocks * (p + 1) // layout.block_parts - blocks * p // layout.block_parts
                 for p in range(layout.block_parts)]
        return [p * b for p in positions for b in parts] * batch * geometry.groups
    if kernel in ("rows", "planes"):
        chunks = launch.row_chunks if kernel == "rows" else layout.chunks
        rows = math.prod(launch.out_shape[:4]) if kernel == "rows" else (
            batch * geometry.out_channels * launch.out_shape[2] * launch.stride[1]
            * layout.blocks)
        return [rows * (c + 1) // chunks - rows * c // chunks for c in range(chunks)]
    raise AssertionError(f"no task count for {kernel}")


@pytest.mark.parametrize("threads", [2, 4, 8, 16, 32, 64])
def test_standard_cases_keep_many_threads_busy(threads):
    """Every standard case (but the tiny one, which runs on the calling
    thread) splits into at least 4 tasks per thread, none more than twice
    the mean: a 64-core machine is kept busy too."""
    from numba_deconv.bench import load_cases

    for case in load_cases():
        call = _dispatch.cpu_call(case.x_shape, np.dtype(case.dtype), case.weight_shape,
                                  np.dtype(case.dtype), None,
                                  (case.stride, case.padding, case.output_padding,
                                   case.dilation, case.groups, None, "zeros",
                                   "channels_first"))
        route = _dispatch._route(call.plan, call.geometry, threads)
        if route.kernel == "rows_serial":
            assert case.name == "tiny_seed"
            continue
        sizes = _task_sizes(route, call.geometry, case.N)
        assert len(sizes) >= 4 * threads, (case.name, route.kernel, len(sizes))
        assert max(sizes) <= 2 * sum(sizes) / len(sizes), (case.name, route.kernel)


def test_a_layout_for_64_threads_computes_the_same_bits(rng):
    """The work split of a 64-thread machine (stretches cut down to the
    crowded minimum), run here: bitwise the result of this machine's."""
    x = random_array(rng, (2, 32, 8, 9, 10), np.float32)
    w = random_array(rng, (32, 16, 3, 3, 3), np.float32)
    kwargs = dict(stride=2, padding=1, output_padding=1)
    here = conv_transpose(x, w, **kwargs)
    call = _dispatch.cpu_call(x.shape, x.dtype, w.shape, w.dtype, None,
                              (2, 1, 1, 1, 1, None, "zeros", "channels_first"))
    launch = work_split.plan_launch(call.geometry, 2, 4, "phase_tiles", 64)
    assert launch.layout.chunks > call.route().launch.layout.chunks  # cut finer
    out = np.empty(launch.out_shape, np.float32)
    assert driver.LAUNCHERS["phase_tiles"](x.reshape(launch.x_shape), w.reshape(launch.w_shape),
                                           call.no_bias, out, launch)
    np.testing.assert_array_equal(out.reshape(here.shape), here)


@pytest.mark.parametrize("in_spatial, kernel, stride, dilation, pad, output_pad", [
    ((1, 5, 21), (1, 5, 5), (1, 1, 1), (1, 1, 1), (0, 1, 1), (0, 0, 0)),
    ((3, 4, 9), (3, 3, 3), (2, 1, 1), (1, 2, 1), (1, 1, 1), (1, 0, 0)),
    ((1, 3, 20), (1, 3, 3), (1, 3, 1), (1, 1, 1), (0, 0, 0), (0, 2, 0)),
    ((1, 6, 48), (1, 3, 3), (1, 2, 2), (1, 3, 3), (0, 0, 0), (0, 0, 0)),
    ((2, 2, 5), (2, 7, 2), (1, 2, 1), (2, 1, 1), (1, 4, 0), (0, 1, 0)),
])
def test_tap_spans_leave_out_only_taps_that_read_padding(in_spatial, kernel, stride, dilation,
                                                         pad, output_pad):
    """For every vector of every sweep of every phase, the taps that
    tile_products.tap_spans leaves out read zero padding for all the vector's
    outputs (from the definition: output ``o`` takes tap ``k`` from input
    ``(o + p - k*d) / s``), and its first and last tap read the image for
    one of the vector's rows; where it finds no such vector, every tap
    reaches every output row of the sweep."""
    out_spatial = tuple((i - 1) * s + d * (k - 1) + 1 - 2 * p + op for i, k, s, d, p, op
                        in zip(in_spatial, kernel, stride, dilation, pad, output_pad))
    pitch, shift_max, phases, taps, _ = tiled.phase_tables(kernel, stride, dilation, pad,
                                                           out_spatial)
    most = max(len(t) for t in taps)
    offsets = np.zeros((len(taps), most), np.int64)
    for ph, phase_taps in enumerate(taps):
        offsets[ph, :len(phase_taps)] = [t[3] for t in phase_taps]
    tap_counts = np.array([len(t) for t in taps], np.int64)
    u_d, u_h, u_w = pitch
    reach = tile_products.tap_reach(offsets, tap_counts, np.array(pitch), np.array(shift_max),
                            in_spatial[0], in_spatial[1])
    lanes, length = 16, 40  # sweeps of 40 positions: vectors past a sweep's end too
    span = tiled.phase_span(phases, np.array(pitch))
    segments = np.empty(length // lanes + length // u_w + 2, np.int64)
    first, end = np.empty_like(segments), np.empty_like(segments)

    def reads_image(ph, t, j_d, j_h):
        """Whether tap ``t`` of phase ``ph`` reads an input for the outputs
        of accumulator row ``(j_d, j_h)`` (along D and H)."""
        k_d, k_h = taps[ph][t][:2]
        for j, r, k, s, d, p, n in ((j_d, phases[ph, 0], k_d, stride[0], dilation[0], pad[0],
                                     in_spatial[0]),
                                    (j_h, phases[ph, 1], k_h, stride[1], dilation[1], pad[1],
                                     in_spatial[1])):
            source, rest = divmod(j * s + r + p - k * d, s)
            assert rest == 0  # the tap is the phase's
            if not 0 <= source < n:
                return False
        return True

    partial_seen = False
    for ph in np.flatnonzero(tap_counts):
        q_d, q_h, q_w = phases[ph, 3:6]
        for s0 in range(0, span, length):
            n_segments = tile_products.sweep_segments(segments, s0, min(length, span - s0), lanes, phases,
                                              np.array(pitch))
            rows = {divmod(row, u_h) for q in segments[:n_segments]
                    for row in range((s0 + q) // u_w, (s0 + q + lanes - 1) // u_w + 1)}
            rows = [(j_d, j_h) for j_d, j_h in rows if j_d < q_d and j_h < q_h]
            spans = tile_products.tap_spans(first, end, segments, n_segments, s0, lanes, reach[ph],
                                    tap_counts[ph], q_d, q_h, u_h, u_w)
            if not spans:
                assert all(reads_image(ph, t, *row) for row in rows
                           for t in range(tap_counts[ph]))
                continue
            partial_seen = True
            for p in range(n_segments):
                start = s0 + segments[p]
                seg_rows = {divmod(q // u_w, u_h) for q in range(start, start + lanes)}
                seg_rows = [(j_d, j_h) for j_d, j_h in seg_rows if j_d < q_d and j_h < q_h]
                stored = {divmod(q // u_w, u_h) for q in range(start, start + lanes)
                          if q % u_w < q_w}
                needed = [t for t in range(tap_counts[ph])
                          if any(reads_image(ph, t, j_d, j_h) for j_d, j_h in stored
                                 if j_d < q_d and j_h < q_h)]
                assert all(first[p] <= t < end[p] for t in needed)
                if end[p] > first[p]:
                    assert any(reads_image(ph, first[p], *row) for row in seg_rows)
                    assert any(reads_image(ph, end[p] - 1, *row) for row in seg_rows)
    assert partial_seen


@pytest.mark.parametrize("c_out", [10, 21])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_rows_no_tap_reaches_are_the_bias_as_a_sum_gives_it(dtype, c_out, ran,
                                                                   monkeypatch, rng):
    """Rows that no tap reaches (kernel < stride along H) are written as the
    bias alone, and with the bits of the sum of no products and the bias:
    +0.0 for a bias of -0.0, as the row kernel gives; channels last too,
    each position's channels in whole vectors and a masked last one (21
    channels: one or two whole vectors, and a part)."""
    x = random_array(rng, (2, 6, 5, 7), dtype)
    w = random_array(rng, (6, c_out, 1, 3), dtype)
    bias = np.full(c_out, -0.0, dtype)
    bias[::3] = random_array(rng, (len(bias[::3]),), dtype)
    kwargs = dict(stride=(3, 2), padding=(0, 1), output_padding=(2, 1))
    force(monkeypatch, "gather", "phase_tiles")
    y = conv_transpose(x, w, bias, **kwargs)
    force(monkeypatch, "gather", "rows")
    monkeypatch.setattr(_dispatch, "_CALLS", {})  # (the call's route is memoised)
    expected = conv_transpose(x, w, bias, **kwargs)
    assert ran == [("phase_tiles", True), ("rows", True)]
    assert not np.signbit(y[:, 1, 1::3]).any()
    np.testing.assert_array_equal(y.view(f"u{y.itemsize}"),
                                  expected.view(f"u{y.itemsize}"))
    assert_matches_reference(y, x, w, bias, **kwargs)

    force(monkeypatch, "gather", "phase_tiles")
    monkeypatch.setattr(driver, "takes_one_tap_last", lambda *call: False)
    layouts = _spy_layouts(monkeypatch, "phase_tiles")
    for _ in range(2):  # (the first call may run channels first, recording the route)
        y_last = conv_transpose(np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, bias,
                                data_format="channels_last", **kwargs)
    assert layouts[-1] == tiled.CHANNELS_LAST
    np.testing.assert_array_equal(np.moveaxis(y_last, -1, 1).view(f"u{y.itemsize}"),
                                  expected.view(f"u{y.itemsize}"))


@pytest.mark.parametrize("c_out", [1, 2, 3, 4, 9, 10, 11, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_kernel_last_blocks_of_few_channels(c_out, dtype, ran, monkeypatch, rng):
    """A last block of 1-2 output channels takes one-row tiles, of 3 the
    3-row tiles and of 4 the 4-row tiles: all exact, also after full blocks
    of 8; and with 72 input
    channels x 8 or 4 taps per phase, every block runs its weights in
    chunks (tile_products.K_CHUNK_BYTES: 512 pairs in float32, 256 in float64)
    whose sums add to the last chunk's."""
    force(monkeypatch, "gather", "phase_tiles")  # (BLAS would take 1 channel from 72)
    x = random_array(rng, (2, 72, 11, 13), dtype)
    w = random_array(rng, (72, c_out, 3, 4), dtype)
    bias = random_array(rng, (c_out,), dtype)
    kwargs = dict(stride=(2, 1), padding=1, dilation=(1, 2))
    y = conv_transpose(x, w, bias, **kwargs)
    assert ran == [("phase_tiles", True)]
    assert_matches_reference(y, x, w, bias, **kwargs)


@pytest.mark.parametrize("batch, c_in, c_out, in_place", [
    (1, 128, 128, True),    # 16 positions: in place whatever the weights
    (2, 128, 128, False),   # 32 positions, 1 MiB of weights: packed
    (2, 256, 256, True),    # 32 positions, 4 MiB: in place
    (3, 256, 256, False),   # 48 positions: packed
])
def test_columns_read_weights_in_place_on_few_positions(batch, c_in, c_out, in_place):
    """With the default config, float32 4x4 images under 4x4 taps: the
    column tiles read the weights where they lie on at most 16 positions
    in the batch, or at most 32 with 4 MiB of weights or more (copying
    those costs a pass over weights that the caches do not keep)."""
    layout = work_split._columns_layout((batch, c_in, 1, 4, 4), (c_in, c_out, 1, 4, 4),
                                        (batch, c_out, 1, 8, 8), (1, 2, 2), (1, 1, 1),
                                        (0, 1, 1), 1, 4, 2)
    assert layout.in_place is in_place


def test_sweeps_keep_their_sums_within_the_budget_but_leave_no_last_tile(monkeypatch):
    """A sweep of the phase tiles takes as many whole tiles of positions as
    keep its rows of sums within ``TILED_ACC_BYTES``, and the whole stretch
    where that is only one tile more: a last sweep streams every weight
    again, for one tile (dcgan_2d's complex twin in float64: 256 rows of
    sums, 256 positions, tiles of 24; the budget holds 10 tiles)."""
    monkeypatch.setattr(config, "TILED_ACC_BYTES", 512 << 10)
    assert work_split._sweep(256, 256, 8, 24) == 264  # 11 tiles: all in one sweep
    assert work_split._sweep(256, 300, 8, 24) == 240  # 13 tiles: sweeps of 10
    assert work_split._sweep(256, 100, 8, 24) == 120  # the stretch, whole tiles
    assert work_split._sweep(1 << 20, 100, 8, 24) == 24  # one tile at least
    assert work_split._sweep(1 << 20, 48, 8, 24) == 48  # ... or one more: the whole
