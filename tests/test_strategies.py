"""Every CPU strategy and work split against the oracle.

The heuristic picks one strategy per shape, and the small shapes of the
other tests fit one task's workspace, so here each strategy is forced and
the GEMM workspace shrunk until the driver splits output channels and cuts
slabs with halos (the code paths big workloads take).
"""

import numpy as np
import pytest

from numba_deconv import config, conv_transpose
from numba_deconv.cpu import driver

from helpers import assert_matches_reference, assert_same_nonfinite, random_array
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


# (strategy, kernel variant): the direct strategy has a serial row kernel
# for tiny calls, a parallel row kernel, a plane kernel for short rows and
# the tiled kernel for more channels; the GEMM strategy runs the columns
# kernel on real data and BLAS tasks on complex data.
PATHS = [("direct", "serial"), ("direct", "rows"), ("direct", "planes"),
         ("direct", "tiled"), ("gemm", "columns"), ("gemm", "blas")]


@pytest.fixture(params=PATHS, ids=["-".join(p) for p in PATHS])
def path(request, monkeypatch):
    strategy, variant = request.param
    monkeypatch.setattr(driver, "choose_strategy", lambda *call: strategy)
    # The API memoises checked calls (strategy and launch included) and the
    # driver launch data: start both afresh so the settings below count.
    from numba_deconv import api
    monkeypatch.setattr(api, "_CALLS", {})
    monkeypatch.setattr(driver, "launch_for", driver.launch_for.__wrapped__)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS",
                        1 << 62 if variant == "serial" else 0)
    monkeypatch.setattr(config, "PLANES_MAX_ROW", 1 << 30 if variant == "planes" else 0)
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 0 if variant == "tiled" else 1 << 62)
    return request.param


@pytest.mark.parametrize("workspace", [1 << 20, 64, 512])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_strategy_and_split(path, workspace, x_shape, w_shape, kwargs, monkeypatch, rng):
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
    dtype = np.complex128 if path[1] == "blas" else np.float64
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES[:4])
def test_nonfinite_values_on_every_path(path, x_shape, w_shape, kwargs, rng):
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


def test_small_workspace_cuts_slabs_with_halos():
    """The split really happens: channel blocks, then slabs of the outer dim."""
    tasks, dim, block = driver._gemm_tasks(
        n_batch=1, groups=1, c_out_g=4, taps=9, in_spatial=(1, 8, 8),
        out_spatial=(1, 15, 15), kernel=(1, 3, 3), stride=(1, 2, 2),
        dilation=(1, 1, 1), pad=(0, 1, 1), itemsize=8)
    assert dim is None and len(tasks) >= 1  # fits the default workspace
    original = config.WORKSPACE_BYTES
    try:
        config.WORKSPACE_BYTES = 8 * 9 * 4 * 8 * 3  # three input rows of all channels
        tasks, dim, block = driver._gemm_tasks(
            n_batch=1, groups=1, c_out_g=4, taps=9, in_spatial=(1, 8, 8),
            out_spatial=(1, 15, 15), kernel=(1, 3, 3), stride=(1, 2, 2),
            dilation=(1, 1, 1), pad=(0, 1, 1), itemsize=8)
    finally:
        config.WORKSPACE_BYTES = original
    slabs = sorted({t[4] for t in tasks})
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
    # (interleaved one element at a time).
    ((1, 3, 2, 36), (3, 10, 2, 5), dict(stride=(1, 4), padding=(0, 1))),
    ((2, 2, 30), (2, 9, 7), dict(stride=5, padding=2, output_padding=3)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tasks_per_thread", [1, 1 << 10])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", TILE_CASES)
def test_tiled_tiles_and_splits(x_shape, w_shape, kwargs, tasks_per_thread, dtype,
                                monkeypatch, rng):
    """The tiled kernel against the oracle with whole images per task, and
    with images cut into stretches of positions and ranges of tile blocks."""
    monkeypatch.setattr(driver, "choose_strategy", lambda *call: "direct")
    from numba_deconv import api
    monkeypatch.setattr(api, "_CALLS", {})
    monkeypatch.setattr(driver, "launch_for", driver.launch_for.__wrapped__)
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    monkeypatch.setattr(config, "TILED_MIN_CHANNEL_PAIRS", 0)
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 8)
    layouts = []
    real_layout = driver._tiled_layout
    monkeypatch.setattr(driver, "_tiled_layout",
                        lambda *args: layouts.append(real_layout(*args)) or layouts[-1])
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    y = conv_transpose(x, w, b, **kwargs)
    assert_matches_reference(y, x, w, b, **kwargs)
    (*_, chunks, block_parts, sub), = layouts
    if tasks_per_thread > 1:
        assert chunks * block_parts > 1


def test_tiled_layout_cuts_images_whose_window_would_not_fit():
    """Plenty of images for the threads, but an input window of 128 channels
    x 1024 positions x 4 bytes: cut in two at 256 KiB, left whole at 1 MiB."""
    def chunks(window_bytes):
        layout = driver._tiled_layout(
            (1, 2, 2), (1, 2, 2), (1, 1, 1), (0, 0, 0), (1, 64, 64), 64, 1, 128, 64, 4,
            2, 4, 256, window_bytes, 512 << 10)
        return layout[5]
    assert chunks(256 << 10) == 2
    assert chunks(1 << 20) == 1


def test_tiled_kernel_falls_back_on_nonfinite_weights(monkeypatch, rng):
    """The weight table counts non-finite weights as it is built; then the
    tiled kernel is not run (its zero padding would make 0 * inf = NaN)."""
    x = random_array(rng, (1, 4, 5, 5), np.float32)
    w = random_array(rng, (4, 4, 3, 3), np.float32)
    w[1, 2, 0, 1] = np.inf
    table, offsets, finite = driver.weight_tables(
        w.reshape(4, 4, 1, 3, 3), 1,
        driver.phase_tables((1, 3, 3), (1, 2, 2), (1, 1, 1), (0, 0, 0), (1, 11, 11))[3])
    assert not finite
    monkeypatch.setattr(config, "SERIAL_MAX_MULTIPLY_ADDS", 0)
    ran = []
    real_tiled = driver._direct_tiled
    monkeypatch.setattr(driver, "_direct_tiled",
                        lambda *args: ran.append(real_tiled(*args)) or ran[-1])
    assert_same_nonfinite(conv_transpose(x, w, stride=2), reference(x, w, stride=2))
    assert ran == [False]


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
]


def _force_columns(monkeypatch, split, in_place):
    """Route real data to the columns kernel, packed or ``in_place``, with
    one task per thread and all input channels in one block, or (``split``)
    one output channel per task and one input channel per block; returns the
    list that collects each call's layout."""
    monkeypatch.setattr(driver, "choose_strategy", lambda *call: "gemm")
    from numba_deconv import api
    monkeypatch.setattr(api, "_CALLS", {})
    monkeypatch.setattr(driver, "launch_for", driver.launch_for.__wrapped__)
    monkeypatch.setattr(config, "COLUMNS_TASKS_PER_THREAD", 1 << 10 if split else 1)
    monkeypatch.setattr(config, "COLUMNS_PACK_BYTES", 1 if split else 1 << 20)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_MAX_POSITIONS", 1 << 20 if in_place else 0)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_TASKS_PER_THREAD", 1 << 10 if split else 1)
    monkeypatch.setattr(config, "COLUMNS_IN_PLACE_K_BLOCK", 1 if split else 1 << 20)
    layouts = []
    real_layout = driver._columns_layout.__wrapped__
    monkeypatch.setattr(driver, "_columns_layout",
                        lambda *args: layouts.append(real_layout(*args)) or layouts[-1])
    return layouts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", COLUMN_CASES)
def test_columns_kernel_tiles_and_splits(x_shape, w_shape, kwargs, split, in_place, dtype,
                                         monkeypatch, rng):
    """The columns kernel against the oracle, packed and in place, with one
    task per thread and all input channels in one block, and with one
    output channel per task and one input channel per block (partial sums
    added up)."""
    layouts = _force_columns(monkeypatch, split, in_place)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    assert_matches_reference(conv_transpose(x, w, b, **kwargs), x, w, b, **kwargs)
    (channel_block, k_block, was_in_place), = layouts
    assert was_in_place == in_place
    if split:
        assert channel_block == 1 and k_block == 1
    else:
        assert k_block == x_shape[1] // kwargs.get("groups", 1)


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
    assert layouts[0][2]


def test_columns_layout_bounds_the_workspace():
    """512 -> 512 channels on 4 images of 8x8, 4x4 taps, float32, 2
    threads: 8 tasks per thread make blocks of 32 channels (their columns:
    256 positions x 512 weights x 4 bytes = 512 KiB); a 128 KiB workspace
    cuts them to 8 channels; the packed weights of 256 KiB hold 11 tiles of
    48 weights x 128 input channels. On one 4x4 image (16 positions) the
    tiles read in place: 2 tasks per thread, 32 input channels a block."""
    tuning = driver._ColumnsTuning(8, 256 << 10, 32, 2, 32)

    def layout(workspace, batch=4, positions=64):
        return driver._columns_layout(batch, 512, 512, 1, positions, 16, 4, 2, workspace,
                                      tuning)
    assert layout(8 << 20) == (32, (256 << 10) // (11 * 48 * 4), False)
    assert layout(128 << 10)[0] == 8
    assert layout(8 << 20, batch=1, positions=16) == (128, 32, True)
    assert layout(8 << 10, batch=1, positions=16) == (8, 32, True)


@pytest.mark.parametrize("c_in, c_out, batch, spatial, dtype, expected", [
    (64, 64, 8, (32, 32), np.float32, "direct"),  # register tiles beat BLAS + fold
    (256, 256, 2, (4, 4), np.float32, "gemm"),  # weights outweigh 32 positions
    (256, 256, 64, (4, 4), np.float32, "gemm"),  # ... and 1024 (576 per position)
    (256, 256, 128, (4, 4), np.float32, "direct"),  # ... but not 2048
    (256, 256, 2, (16, 16), np.float32, "direct"),  # images big enough for tiles
    (64, 64, 8, (8, 8), np.float32, "direct"),  # 72 weights per position
    (64, 64, 1, (8, 8), np.complex64, "gemm"),  # no register tiles for complex
    (64, 64, 1, (4, 4), np.complex128, "direct"),  # too thin for BLAS
    (128, 64, 8, (32, 32), np.float64, "direct"),  # 3x3 taps overlap in each phase
    (32, 256, 1, (2, 2), np.float32, "direct"),  # too few channels one way
])
def test_heuristic_strategy(c_in, c_out, batch, spatial, dtype, expected):
    geometry = _geometry((batch, c_in) + spatial, (c_in, c_out, 3, 3), dtype)
    assert driver.choose_strategy(geometry, batch, dtype) == expected


def test_heuristic_real_data_takes_register_tiles_with_one_tap_per_phase():
    """unet's 2x2 kernel at stride 2, float64 as float32 (tiled 5.1 ms vs
    BLAS 6.7 once each task's input window fits L2); complex takes BLAS."""
    geometry = _geometry((8, 128, 32, 32), (128, 64, 2, 2), np.float64)
    assert driver.choose_strategy(geometry, 8, np.float64) == "direct"
    assert driver.choose_strategy(geometry, 8, np.float32) == "direct"
    assert driver.choose_strategy(geometry, 8, np.complex128) == "gemm"


def _geometry(x_shape, w_shape, dtype):
    """The checked geometry of a stride-2 call, as the API plans it."""
    from numba_deconv.api import plan_call
    return plan_call(x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None, None,
                     stride=2, padding=0, output_padding=0, dilation=1, groups=1,
                     output_size=None, padding_mode="zeros",
                     data_format="channels_first").geometry
