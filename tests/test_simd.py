"""The SIMD vector intrinsics of the tiled kernel against NumPy."""

import functools

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from numba_deconv.cpu import register_tiles, simd
from numba_deconv.cpu.kernels import interleave
from numba_deconv.cpu.transpose import channels_to_rows

DTYPES = [np.float32, np.float64]


def lanes_of(dtype):
    return simd.VECTOR_BYTES // np.dtype(dtype).itemsize


@njit
def _arithmetic(a, b, out):
    """out[0:L] = a[1:1+L] * b[0] + a[2:2+L] + b[1], then the lane count."""
    v = simd.fma(simd.load(a, 1), b[0], simd.load(a, 2))
    simd.store(out, 0, simd.add(v, simd.splat(a, b[1])))
    simd.store(out, simd.lanes(a), simd.zeros(a))
    return simd.lanes(a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_fma_add_splat_store(dtype, rng):
    lanes = lanes_of(dtype)
    a = rng.standard_normal(lanes + 2).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    out = np.full(2 * lanes + 1, 7, dtype=dtype)
    assert _arithmetic(a, b, out) == lanes
    expected = a[1:1 + lanes] * b[0] + a[2:2 + lanes] + b[1]
    np.testing.assert_allclose(out[:lanes], expected, rtol=4 * np.finfo(dtype).eps)
    assert not out[lanes:2 * lanes].any()
    assert out[-1] == 7  # nothing past the two vectors


@njit
def _interleave(a, out, count):
    """Store the first ``count`` vectors of ``a`` interleaved at out[1:]."""
    lanes = simd.lanes(a)
    v0, v1 = simd.load(a, 0), simd.load(a, lanes)
    v2, v3 = simd.load(a, 2 * lanes), simd.load(a, 3 * lanes)
    if count == 1:
        simd.store_interleaved(out, 1, (v0,))
    elif count == 2:
        simd.store_interleaved(out, 1, (v0, v1))
    elif count == 3:
        simd.store_interleaved(out, 1, (v0, v1, v2))
    else:
        simd.store_interleaved(out, 1, (v0, v1, v2, v3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_store_interleaved(count, dtype, rng):
    lanes = lanes_of(dtype)
    a = rng.standard_normal(4 * lanes).astype(dtype)
    out = np.zeros(count * lanes + 2, dtype=dtype)
    _interleave(a, out, count)
    # Element j*count + r is lane j of vector r.
    np.testing.assert_array_equal(out[1:-1], a[:count * lanes].reshape(count, lanes).T.ravel())
    assert out[0] == 0 and out[-1] == 0


@njit
def _interleave_first(a, out, count, n):
    lanes = simd.lanes(a)
    if n == 1:
        simd.store_interleaved_first(out, 1, (simd.load(a, 0),), count)
    elif n == 2:
        simd.store_interleaved_first(out, 1, (simd.load(a, 0), simd.load(a, lanes)), count)
    elif n == 3:
        simd.store_interleaved_first(out, 1, (simd.load(a, 0), simd.load(a, lanes),
                                              simd.load(a, 2 * lanes)), count)
    else:
        simd.store_interleaved_first(out, 1, (simd.load(a, 0), simd.load(a, lanes),
                                              simd.load(a, 2 * lanes),
                                              simd.load(a, 3 * lanes)), count)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_store_interleaved_first(n, dtype, rng):
    """The first ``count`` elements of the interleave, for every count from
    1 to all of them; nothing past them written."""
    lanes = lanes_of(dtype)
    a = rng.standard_normal(4 * lanes).astype(dtype)
    interleaved = a[:n * lanes].reshape(n, lanes).T.ravel()
    for count in range(1, n * lanes + 1):
        out = np.full(n * lanes + 2, np.nan, dtype=dtype)
        _interleave_first(a, out, count, n)
        np.testing.assert_array_equal(out[1:1 + count], interleaved[:count])
        assert np.isnan(out).sum() == out.size - count


@njit
def _copy_part(a, out, whole, count):
    loaded = simd.load_part(a, 0, count)
    simd.store_part(out, 1, loaded, count)
    simd.store(whole, 0, loaded)


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_and_store_part(dtype, rng):
    """The first ``count`` lanes are loaded (the others zero) and stored,
    for every count from 1 to a vector; nothing past them is written, and
    a part that ends where the array does reads nothing past it."""
    lanes = lanes_of(dtype)
    for count in range(1, lanes + 1):
        a = rng.standard_normal(count).astype(dtype)  # ends where the part does
        out, whole = np.full(lanes + 2, np.nan, dtype=dtype), np.empty(lanes, dtype)
        _copy_part(a, out, whole, count)
        np.testing.assert_array_equal(out[1:1 + count], a)
        assert np.isnan(out).sum() == out.size - count
        np.testing.assert_array_equal(whole, np.concatenate([a, np.zeros(lanes - count, dtype)]))


@njit
def _transpose(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at):
    if addend.size:
        simd.transpose_tile_add(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at)
    else:
        simd.transpose_tile(src, src_at, src_step, dst, dst_at, dst_step)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("add", [False, True])
def test_transpose_tile(add, dtype, rng):
    """Row r of a lanes x lanes tile (rows ``src_step`` apart) becomes lane r
    of every row of the result (rows ``dst_step`` apart), plus the addend's
    lane r; nothing else is written."""
    lanes = lanes_of(dtype)
    src = rng.standard_normal(lanes * 37 + 5).astype(dtype)
    dst = np.full(lanes * 41 + 11, np.nan, dtype=dtype)
    addend = rng.standard_normal(lanes + 3).astype(dtype) if add else np.zeros(0, dtype)
    _transpose(src, 5, 37, dst, np.int64(11), np.uint64(41), addend, 3)
    tile = np.lib.stride_tricks.as_strided(src[5:], (lanes, lanes), (37 * src.itemsize,
                                                                       src.itemsize))
    written = np.lib.stride_tricks.as_strided(dst[11:], (lanes, lanes), (41 * dst.itemsize,
                                                                          dst.itemsize))
    expected = tile.T + addend[3:3 + lanes] if add else tile.T
    np.testing.assert_array_equal(written, expected)
    assert np.isnan(dst).sum() == dst.size - lanes * lanes


@njit
def _transpose_part(src, src_at, src_step, dst, dst_at, dst_step, addend, addend_at, rows,
                    cols):
    if addend.size:
        simd.transpose_tile_part_add(src, src_at, src_step, dst, dst_at, dst_step, addend,
                                     addend_at, rows, cols)
    else:
        simd.transpose_tile_part(src, src_at, src_step, dst, dst_at, dst_step, rows, cols)


def _random_part(rng, lanes, rows, cols, dtype, add):
    """A source row every 37 elements from element 5, NaN but for a random
    ``rows`` x ``cols`` part; and an addend from element 3, NaN but for
    ``rows`` random values (none without ``add``)."""
    src = np.full(lanes * 37 + 5, np.nan, dtype=dtype)
    part = np.lib.stride_tricks.as_strided(src[5:], (rows, cols),
                                           (37 * src.itemsize, src.itemsize))
    part[...] = rng.standard_normal((rows, cols))
    addend = np.full(lanes + 3, np.nan, dtype) if add else np.zeros(0, dtype)
    if add:
        addend[3:3 + rows] = rng.standard_normal(rows)
    return src, part, addend


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("add", [False, True])
def test_transpose_tile_part(add, dtype, rng):
    """For every part of 1..lanes x 1..lanes elements: row r < rows of the
    part becomes lane r of its first ``cols`` rows of the result, plus the
    addend's lane r; nothing else is written, and nothing outside the part
    (NaN there) reaches what is."""
    lanes = lanes_of(dtype)
    for rows in range(1, lanes + 1):
        for cols in range(1, lanes + 1):
            src, part, addend = _random_part(rng, lanes, rows, cols, dtype, add)
            dst = np.full(lanes * 41 + 11, np.nan, dtype=dtype)
            _transpose_part(src, 5, 37, dst, np.int64(11), np.uint64(41), addend, 3, rows, cols)
            written = np.lib.stride_tricks.as_strided(dst[11:], (cols, rows),
                                                      (41 * dst.itemsize, dst.itemsize))
            expected = part.T + addend[3:3 + rows] if add else part.T
            np.testing.assert_array_equal(written, expected)
            assert np.isnan(dst).sum() == dst.size - rows * cols


@njit
def _transpose_scatter(src, src_at, src_step, dst, dst_at, table, table_at, addend, addend_at,
                       rows, cols):
    simd.transpose_tile_scatter_add(src, src_at, src_step, dst, dst_at, table, table_at, addend,
                                    addend_at, rows, cols)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_tile_scatter_add(dtype, rng):
    """For every part of 1..lanes x 1..lanes elements: column c < cols of
    the transposed part, plus the addend, goes to ``dst[dst_at +
    table[table_at + c]:][:rows]``, and nowhere where that entry is -1;
    nothing else is written, and nothing outside the part reaches what
    is."""
    lanes = lanes_of(dtype)
    for rows in range(1, lanes + 1):
        for cols in range(1, lanes + 1):
            src, part, addend = _random_part(rng, lanes, rows, cols, dtype, True)
            # Columns to positions lanes apart in a shuffled order, every
            # third column nowhere; the entries past cols point into dst too.
            table = np.full(lanes + 2 + 7, -1, dtype=np.int64)
            table[7:7 + lanes] = rng.permutation(lanes) * lanes
            table[7:7 + lanes:3] = -1
            dst = np.full(lanes * lanes + 11, np.nan, dtype=dtype)
            _transpose_scatter(src, 5, 37, dst, np.int64(11), table, np.int64(7), addend, 3,
                               rows, cols)
            expected = np.full_like(dst, np.nan)
            for c in range(cols):
                if table[7 + c] >= 0:
                    expected[11 + table[7 + c]:][:rows] = part[:, c] + addend[3:3 + rows]
            np.testing.assert_array_equal(dst, expected)



@njit
def _store_all(out, vectors):
    for c in range(len(vectors)):
        simd.store(out, c * simd.lanes(out), vectors[c])


@njit
def _load_ways(array, index, ways, out):
    # (one call site per literal count of ways)
    if ways == 2:
        _store_all(out, simd.load_ways(array, index, 2))
    elif ways == 3:
        _store_all(out, simd.load_ways(array, index, 3))
    elif ways == 4:
        _store_all(out, simd.load_ways(array, index, 4))
    else:
        _store_all(out, simd.load_ways(array, index, 8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ways", [2, 3, 4, 8])
def test_load_ways_splits_a_stretch_by_lane(ways, dtype, rng):
    """Vector c holds array[index + ways*j + c], j < lanes: the elements of
    ``ways * lanes`` from ``index``, none before or past them."""
    lanes = lanes_of(dtype)
    array = rng.standard_normal(ways * lanes + 8).astype(dtype)
    out = np.full(ways * lanes, np.nan, dtype)
    _load_ways(array, 5, ways, out)
    np.testing.assert_array_equal(out.reshape(ways, lanes),
                                  array[5:5 + ways * lanes].reshape(lanes, ways).T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("extra", [0, 3])  # other channels at each position, not moved
def test_channels_to_rows_is_the_transpose(channels, extra, dtype, rng):
    """Positions of ``channels`` (of ``channels + extra`` side by side) to a
    row per channel, for runs of whole vectors of positions and ragged
    ends alike; nothing past each row's run is written."""
    lanes = lanes_of(dtype)
    step = channels + extra
    for positions in (1, lanes - 1, lanes, 3 * lanes + 5):
        source = rng.standard_normal(positions * step + 7).astype(dtype)
        target = np.full(channels * (positions + 40), np.nan, dtype)
        channels_to_rows(source, 7, step, target, 2, positions + 40, positions, channels)
        expected = np.full_like(target, np.nan).reshape(channels, positions + 40)
        expected[:, 2:2 + positions] = source[7:].reshape(positions, step)[:, :channels].T
        np.testing.assert_array_equal(target.reshape(channels, -1), expected)


@njit
def _alignment(room, size):
    view = simd.aligned(room, size)
    lead = (view.ctypes.data - room.ctypes.data) // room.itemsize
    return simd.lanes_before_boundary(room), simd.lanes_before_boundary(view), lead, view.size


@pytest.mark.parametrize("dtype", DTYPES)
def test_aligned_views_start_on_a_vector_boundary(dtype):
    """Rooms 0..lanes-1 elements past a 64-byte boundary: the offset is read
    back, and the aligned view of ``size`` elements starts at the next
    boundary inside the room (which has lanes - 1 elements to spare)."""
    lanes = lanes_of(dtype)
    block = np.empty(4 * lanes, dtype=dtype)
    first = -(block.ctypes.data // block.itemsize) % lanes  # first boundary in block
    for offset in range(lanes):
        room = block[first + offset:first + offset + 2 * lanes - 1]
        assert _alignment(room, lanes) == (offset, 0, -offset % lanes, lanes)


@pytest.mark.parametrize("lanes, itemsize", [(8, 4), (16, 4), (4, 8), (8, 8), (2, 8)])
def test_window_rows_are_an_odd_number_of_cache_lines_apart(lanes, itemsize):
    """Whole vectors, never less than the row, at most a vector and a line
    more; never a multiple of two cache lines (4 KiB rows would all share
    one L1 set): 1024 float32 -> 1040, 512 float64 -> 520."""
    pitch = njit(lambda length: simd.window_pitch(length, lanes, itemsize))
    for length in range(1, 3000):
        p = pitch(length)
        assert p % lanes == 0 and length <= p < length + lanes + 64 // itemsize
        assert p * itemsize % 128 != 0
    assert pitch(4096 // itemsize) == (4096 + 64) // itemsize


def test_typing_errors_name_the_operation():
    @njit
    def load_ints(a):
        return simd.load(a, 0)

    with pytest.raises(TypingError, match="simd.load"):
        load_ints(np.zeros(16, dtype=np.int32))

    @njit
    def mixed_add(a, b):
        return simd.add(simd.load(a, 0), simd.load(b, 0))

    with pytest.raises(TypingError, match="simd.add"):
        mixed_add(np.zeros(16, np.float32), np.zeros(16, np.float64))


@pytest.mark.parametrize("features, machine, expected", [
    ("+avx,+avx2,+fma,+avx512f,+avx512bw", "x86_64", (64, 32)),
    ("+avx,+avx2,+fma,-avx512f", "x86_64", (32, 16)),  # Zen 3, Haswell
    ("+sse2,+sse4.2,-avx", "x86_64", (16, 16)),
    ("+neon", "aarch64", (16, 32)),
    ("", "x86_64", (16, 16)),  # features unknown: the narrowest
])
def test_vector_registers_follow_the_cpu_features(features, machine, expected):
    assert simd._vector_registers(features, machine) == expected


@pytest.mark.parametrize("registers, rows, vectors, expected", [
    (32, 8, 3, ([(0, 8)], [(0, 3)])),  # AVX-512: 24 accumulators + 3 + 1 fit
    (32, 4, 6, ([(0, 4)], [(0, 6)])),
    (16, 8, 3, ([(0, 4), (4, 4)], [(0, 3)])),  # AVX2: two passes of 4 x 3
    (16, 4, 6, ([(0, 4)], [(0, 3), (3, 3)])),  # ... 4 x 3 twice, along the vectors
    (16, 2, 8, ([(0, 2)], [(0, 4), (4, 4)])),
    (16, 1, 4, ([(0, 1)], [(0, 4)])),
])
def test_tile_passes_fit_the_registers(registers, rows, vectors, expected, monkeypatch):
    monkeypatch.setattr(simd, "REGISTERS", registers)
    assert register_tiles._passes(rows, vectors) == expected
    row_blocks, vector_blocks = expected
    for _, r in row_blocks:
        for _, v in vector_blocks:
            assert r * v + v + 1 <= registers


@functools.cache
def _strided_tile_runner(registers, prefetch):
    """A jitted call of the 8 x 3 "strided" tile spelled for ``registers``
    vector registers, with or without prefetching (how far ahead is an
    argument): compiled once for the tests that share a spelling."""
    saved, simd.REGISTERS = simd.REGISTERS, registers
    try:
        tile = register_tiles.spell_tile(8, 3, 8, "strided", prefetch=prefetch)
    finally:
        simd.REGISTERS = saved
    if not prefetch:
        @njit
        def run(acc, first, pitch, add, vec, v_at, v_pitch, scalars, s_at, k_total, ahead_rows):
            tile(acc, first, pitch, add, vec, v_at, v_pitch, scalars, s_at, k_total)
    else:
        @njit
        def run(acc, first, pitch, add, vec, v_at, v_pitch, scalars, s_at, k_total, ahead_rows):
            tile(acc, first, pitch, add, vec, v_at, v_pitch, scalars, s_at, k_total, ahead_rows)
    return run


@pytest.mark.parametrize("registers", [32, 16, 8])
@pytest.mark.parametrize("add", [False, True])
@pytest.mark.parametrize("ahead_rows", [None, 0, 3, 1 << 40], ids=["no-prefetch", "prefetch-0",
                                                                    "prefetch-3", "prefetch-far"])
def test_tile_in_passes_sums_as_the_definition(registers, add, ahead_rows, rng):
    """An 8 x 3 "strided" tile spelled for 32, 16 and 8 registers (one,
    two and four passes) against NumPy: acc[m, v*lanes + l] (+)= sum over k
    of scalars[8k + m] * vec[k*pitch + v*lanes + l]. In float64, where
    the products and sums of small integers are exact in any order. The
    prefetching tile asks for rows past the array too (far past it: a
    prefetch never faults) and sums the same."""
    run = _strided_tile_runner(registers, ahead_rows is not None)
    lanes, k_total, v_pitch, pitch = lanes_of(np.float64), 7, 40, 50
    width = 3 * lanes
    vec = rng.integers(-8, 8, size=k_total * v_pitch + width).astype(np.float64)
    scalars = rng.integers(-8, 8, size=8 * k_total + 3).astype(np.float64)
    acc = rng.integers(-8, 8, size=8 * pitch + 5).astype(np.float64)
    before = acc.copy()
    run(acc, 5, pitch, add, vec, 2, v_pitch, scalars, 3, k_total, ahead_rows or 0)
    rows = np.stack([vec[2 + k * v_pitch:][:width] for k in range(k_total)])  # (k, width)
    weights = scalars[3:3 + 8 * k_total].reshape(k_total, 8)  # (k, m)
    expected = weights.T @ rows
    got = np.stack([acc[5 + m * pitch:][:width] for m in range(8)])
    base = np.stack([before[5 + m * pitch:][:width] for m in range(8)])
    np.testing.assert_array_equal(got, expected + base if add else expected)
    written = np.zeros(acc.size, dtype=bool)
    for m in range(8):
        written[5 + m * pitch:5 + m * pitch + width] = True
    np.testing.assert_array_equal(acc[~written], before[~written])  # nothing else


@njit
def _interleave_row(acc, first, phase_stride, s_w, bias, out, row, o_w):
    interleave(acc, first, phase_stride, s_w, bias, out, row, o_w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("s_w", [1, 2, 3, 4])
def test_kernels_interleave_a_row_from_its_phases(s_w, dtype, rng):
    """The kernels' ``interleave``: out[row + j*s_w + r] = acc[first +
    r*phase_stride + j] + bias, in vector shuffles (complex data on its
    parts) for strides 1, 2 and 4 and element by element past the last
    whole vector and for other strides: exactly the sums NumPy makes, over
    rows of whole vectors and ragged ones, writing nothing else."""
    lanes = lanes_of(np.empty(0, dtype).real.dtype)
    for o_w in (1, s_w * lanes - 1, 3 * s_w * lanes, 3 * s_w * lanes + s_w + 1):
        phase_stride = -(-o_w // s_w) + 3
        acc = random_parts(rng, 2 + s_w * phase_stride, dtype)
        bias = random_parts(rng, 1, dtype)[0]
        out = random_parts(rng, o_w + 7, dtype)
        before = out.copy()
        _interleave_row(acc, 2, phase_stride, s_w, bias, out, 5, o_w)
        expected = np.array([acc[2 + o % s_w * phase_stride + o // s_w] + bias
                             for o in range(o_w)], dtype=dtype)
        np.testing.assert_array_equal(out[5:5 + o_w], expected)
        np.testing.assert_array_equal(out[:5], before[:5])
        np.testing.assert_array_equal(out[5 + o_w:], before[5 + o_w:])


def random_parts(rng, size, dtype):
    values = rng.standard_normal(size)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(size)
    return values.astype(dtype)


@njit
def _interleave_rows(acc, rows_at, bias, out, n_rows, length):
    simd.interleave_rows_add(acc, 3, rows_at, bias, out, 1, n_rows, length)


@pytest.mark.parametrize("dtype", DTYPES)
def test_interleave_rows_add(dtype, rng):
    """Every row count from 2 to a vector, rows anywhere in the source,
    each plus its own addend, interleaved as far as ``length`` (whole
    vectors, a partial one, a few elements); nothing past it written."""
    lanes = lanes_of(dtype)
    acc = rng.standard_normal(lanes * 40).astype(dtype)
    for n_rows in range(2, lanes + 1):
        rows_at = rng.permutation(np.arange(0, 36 * lanes, 3))[:n_rows].astype(np.int64)
        bias = rng.standard_normal(n_rows).astype(dtype)
        rows = np.stack([acc[3 + at:3 + at + lanes] for at in rows_at])
        interleaved = (rows + bias[:, None]).T.ravel()
        for length in sorted({n_rows * lanes, n_rows * lanes - 1, lanes + 1, lanes, 3, 1}):
            out = np.full(n_rows * lanes + 2, np.nan, dtype=dtype)
            _interleave_rows(acc, rows_at, bias, out, n_rows, length)
            np.testing.assert_array_equal(out[1:1 + length], interleaved[:length])
            assert np.isnan(out).sum() == out.size - length

