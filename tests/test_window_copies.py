"""The phase tiles' window copies, one for each shift of the taps along W
(``tiled.phase_tables``, ``work_split._tiled_layout``): what each copy
holds against the padded input of the definition, which calls take them,
and results that are the oracle's and bitwise the window alone's."""

import numpy as np
import pytest

from numba_deconv import _dispatch, config, conv_transpose
from numba_deconv.cpu import simd, tiled, work_split

from helpers import assert_matches_reference, random_array

pytestmark = pytest.mark.usefixtures("fresh_routes")

LANES = simd.VECTOR_BYTES // 4  # float32


def _out_spatial(in_spatial, kernel, stride, dilation, pad, output_pad=(0, 0, 0)):
    return tuple((i - 1) * s + d * (k - 1) + 1 - 2 * p + op for i, k, s, d, p, op
                 in zip(in_spatial, kernel, stride, dilation, pad, output_pad))


@pytest.mark.parametrize("in_spatial, kernel, stride, dilation, pad", [
    ((1, 16, 16), (1, 4, 4), (1, 2, 2), (1, 1, 1), (0, 1, 1)),  # dcgan: shifts 0, 1, 2
    ((1, 9, 16), (1, 3, 3), (1, 1, 1), (1, 1, 1), (0, 1, 1)),  # stride 1: 0, 1, 2
    ((1, 7, 16), (1, 5, 5), (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ((1, 1, 32), (1, 1, 8), (1, 1, 4), (1, 1, 1), (0, 0, 2)),  # 1-D
    ((1, 6, 32), (1, 3, 3), (1, 1, 1), (1, 2, 2), (0, 2, 2)),  # dilated: 0, 2, 4
])
def test_each_tap_reads_the_padded_input_from_its_copy(in_spatial, kernel, stride, dilation,
                                                       pad):
    """For every output of every phase, each tap's read of its copy at the
    accumulator position plus its offset is the input the definition gives
    that output through that tap (output ``o`` takes tap ``k`` from input
    ``(o + p - k*d) / s``, zero outside the image); the rows start on
    vector boundaries."""
    out_spatial = _out_spatial(in_spatial, kernel, stride, dilation, pad)
    pitch, shift_max, phases, taps, copy_shift = tiled.phase_tables(
        kernel, stride, dilation, pad, out_spatial, LANES, 4)
    assert copy_shift.size > 1 and pitch[2] % LANES == 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal(in_spatial)
    # Copy c: xp (the input at shift_max, zeros around it) from column
    # copy_shift[c] on, rows of pitch[2], with room past the last row.
    rows = pitch[0] * pitch[1]
    copies = np.zeros((copy_shift.size, rows + 1, pitch[2]))
    for c, shift in enumerate(copy_shift):
        for i_d in range(in_spatial[0]):
            for i_h in range(in_spatial[1]):
                row = (i_d + shift_max[0]) * pitch[1] + i_h + shift_max[1]
                for i_w in range(in_spatial[2]):
                    column = i_w + shift_max[2] - shift
                    if 0 <= column < pitch[2]:
                        copies[c, row, column] = x[i_d, i_h, i_w]
    flat = copies.reshape(copy_shift.size, -1)
    for ph, phase_taps in enumerate(taps):
        r, counts = phases[ph, :3], phases[ph, 3:]
        for j in np.ndindex(*counts):
            position = (j[0] * pitch[1] + j[1]) * pitch[2] + j[2]
            o = [j_k * s + r_k for j_k, s, r_k in zip(j, stride, r)]
            for kd, kh, kw, offset, copy in phase_taps:
                source = [(o_k + p - k * d) for o_k, p, k, d in
                          zip(o, pad, (kd, kh, kw), dilation)]
                assert all(v % s == 0 for v, s in zip(source, stride))
                i = [v // s for v, s in zip(source, stride)]
                expected = (x[tuple(i)] if all(0 <= v < n for v, n in zip(i, in_spatial))
                            else 0.0)
                assert flat[copy, position + offset] == expected


def test_without_copies_the_offsets_take_the_shift():
    """``copies_max`` 0 (the default) leaves the window alone: one copy,
    unshifted, and the rows as long as the padded input's."""
    kernel, stride, pad = (1, 4, 4), (1, 2, 2), (0, 1, 1)
    out_spatial = _out_spatial((1, 16, 16), kernel, stride, (1, 1, 1), pad)
    pitch, _, _, taps, copy_shift = tiled.phase_tables(kernel, stride, (1, 1, 1), pad,
                                                       out_spatial)
    assert copy_shift.tolist() == [0] and pitch[2] == 18
    assert {tap[4] for phase in taps for tap in phase} == {0}


def _layout(x_shape, w_shape, stride, pad, dtype=np.float32, groups=1):
    rank = len(x_shape) - 2
    to3 = (1,) * (3 - rank)
    out_spatial = _out_spatial(x_shape[2:], w_shape[2:], (stride,) * rank, (1,) * rank,
                               (pad,) * rank)
    return work_split._tiled_layout(
        x_shape[:2] + to3 + x_shape[2:], w_shape[:2] + to3 + w_shape[2:],
        (x_shape[0], w_shape[1] * groups) + to3 + out_spatial, to3 + (stride,) * rank,
        (1, 1, 1), (0,) * (3 - rank) + (pad,) * rank, groups, np.dtype(dtype).itemsize, 2)


# dcgan_2d in float64: 256 input channels, 4 taps a phase, so a chunk of
# the tiles' pairs (tile_products.K_CHUNK_BYTES: 256 pairs) reads 64 of
# them; rows of 288 positions with 3 copies: 442 KiB a chunk, and a window
# of 1.7 MiB.
_DCGAN_F64 = ((64, 256, 16, 16), (256, 128, 4, 4), 2, 1, np.float64)


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, dtype, budget, copies", [
    ((4, 64, 16, 16), (64, 32, 4, 4), 2, 1, np.float32, 1 << 20, 3),  # whole blocks of 8
    ((1, 1, 64, 64), (1, 1, 5, 5), 2, 2, np.float32, 1 << 20, 3),  # one input channel
    ((4, 64, 16, 16), (64, 3, 4, 4), 2, 1, np.float32, 1 << 20, 1),  # 3 output channels
    ((4, 16, 32, 32), (16, 16, 3, 3), 1, 1, np.float32, 1 << 20, 1),  # stride 1
    ((1, 16, 16, 16, 16), (16, 8, 4, 4, 4), 2, 1, np.float32, 1 << 20, 1),  # depth
    _DCGAN_F64 + (1 << 20, 3),  # a window past the budget, a chunk's rows within
    _DCGAN_F64 + (256 << 10, 1),  # a chunk's rows past it
])
def test_which_calls_take_copies(x_shape, w_shape, stride, pad, dtype, budget, copies,
                                 monkeypatch):
    """Copies for tiles of whole blocks or one input channel, no depth, a
    stride along W, and the rows that a chunk of the tiles' pairs reads
    within the budget."""
    monkeypatch.setattr(config, "TILED_WINDOW_COPIES_MAX_BYTES", budget)
    assert _layout(x_shape, w_shape, stride, pad, dtype).copy_shift.size == copies


_SHAPES = [  # each takes copies in float32 and float64
    ((2, 12, 9, 16), (12, 16, 4, 4), dict(stride=2, padding=1)),
    ((2, 5, 11, 16), (5, 8, 3, 3), dict(stride=(1, 2), padding=1)),
    ((1, 6, 13, 15), (6, 9, 5, 5), dict(stride=3, padding=1, output_padding=2)),
    ((3, 7, 32), (7, 8, 8), dict(stride=4, padding=2)),
    ((2, 1, 20, 30), (1, 1, 5, 5), dict(stride=2, padding=2, output_padding=1)),
    ((2, 12, 8, 16), (12, 8, 3, 3), dict(stride=(1, 2), padding=2, dilation=2, groups=2)),
]


# Complex calls with channel pairs enough for the real twin, which runs on
# the phase tiles with the twin's copies (a complex call of one channel
# runs no register tiles).
@pytest.mark.parametrize("x_shape, w_shape, kwargs, dtype", [
    shape + (dtype,) for shape in _SHAPES for dtype in (np.float32, np.float64)] + [
    _SHAPES[k] + (np.complex64,) for k in (0, 1, 3)])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.usefixtures("tiles_last")  # channels last too, the phase tiles themselves
def test_copies_give_the_window_alones_bits(x_shape, w_shape, kwargs, dtype, data_format,
                                            monkeypatch, ran):
    """With the copies (any size of window allowed), the phase tiles' result
    is the oracle's and, bit for bit, the result they give without copies:
    each tap reads the same values, summed in the same order."""
    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    monkeypatch.setattr(config, "TILED_WINDOW_COPIES_MAX_BYTES", 1 << 30)
    rng = np.random.default_rng(1)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    bias = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    with_copies = conv_transpose(x, w, bias, data_format=data_format, **kwargs)
    assert ("phase_tiles", True) in ran
    assert_matches_reference(with_copies, x, w, bias, data_format=data_format, **kwargs)
    monkeypatch.setattr(config, "TILED_WINDOW_COPIES_MAX", 0)
    _dispatch.reset()
    alone = conv_transpose(x, w, bias, data_format=data_format, **kwargs)
    np.testing.assert_array_equal(with_copies.view(np.uint8), alone.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", _SHAPES)
def test_the_calls_above_take_copies(x_shape, w_shape, kwargs, dtype, monkeypatch):
    """The launch of each call of the test above carries its copies."""
    monkeypatch.setattr(_dispatch, "choose_kernel",
                        lambda *call: ("gather", "phase_tiles", "rows"))
    monkeypatch.setattr(config, "TILED_WINDOW_COPIES_MAX_BYTES", 1 << 30)
    arguments = [kwargs.get(name, default) for name, default in
                 (("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1),
                  ("groups", 1))]
    call = _dispatch.cpu_call(x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None,
                              tuple(arguments) + (None, "zeros", "channels_first"))
    route = call.route()
    assert route.kernel == "phase_tiles"
    assert route.launch.layout.copy_shift.size > 1


@pytest.mark.parametrize("span, lanes, chunks", [
    (4336, 16, 64), (4336, 16, 4), (271, 1, 64), (16, 16, 8), (100, 8, 3), (5000, 16, 7),
])
def test_stretches_of_whole_vectors_leave_none_empty(span, lanes, chunks):
    """``_whole_vector_stretches`` gives at least the stretches asked for
    (as many as there are vectors, at most), and the kernel's cut of the
    span into that many (``ceil(vectors / n)`` vectors each) leaves none
    empty and misses no position."""
    n = work_split._whole_vector_stretches(span, lanes, chunks)
    vectors = -(-span // lanes)
    assert n >= min(chunks, vectors)
    chunk = -(-span // (n * lanes)) * lanes  # as tiled.direct_tiled cuts it
    assert (n - 1) * chunk < span <= n * chunk
