"""Which kernel a call takes: the rules of ``_dispatch.choose_kernel``.

Each case sits on one side of a rule's bound in ``numba_deconv.config``
(the measurements behind each bound are in ``benchmarks/TUNING.md``);
that every kernel computes the same values is ``test_strategies.py``'s
part.
"""

import numpy as np
import pytest

from numba_deconv import _dispatch, config

# Routes made under each test's settings (conftest's fixture), none left behind.
pytestmark = pytest.mark.usefixtures("fresh_routes")


@pytest.mark.parametrize("c_in, c_out, batch, spatial, dtype, expected", [
    (64, 64, 8, (32, 32), np.float32, "phase_tiles"),  # register tiles beat BLAS + fold
    (256, 256, 2, (4, 4), np.float32, "column_tiles"),  # weights outweigh 32 positions
    (256, 256, 64, (4, 4), np.float32, "column_tiles"),  # ... and 1024 (576 per position)
    (256, 256, 128, (4, 4), np.float32, "column_tiles"),  # not 2048, but rows of 4 in 5
    (256, 256, 2, (16, 16), np.float32, "phase_tiles"),  # images big enough for tiles
    (64, 64, 8, (8, 8), np.float32, "phase_tiles"),  # 72 weights per position
    (64, 64, 1, (8, 8), np.complex64, "blas"),  # no register tiles for complex
    (64, 64, 1, (4, 4), np.complex128, "planes"),  # too thin for BLAS, short rows
    (256, 1, 1, (32, 32), np.float32, "tap_rows"),  # 1 output channel: a row per tap
    (128, 2, 4, (16, 16), np.float32, "tap_rows"),  # few output channels, many input
    (128, 8, 4, (16, 16), np.float64, "tap_rows"),  # ... up to 8
    (1024, 12, 4, (16, 16), np.float32, "tap_rows"),  # more, from hundreds of input channels
    (1024, 12, 1, (16, 16), np.float32, "tap_rows"),  # ... 256 positions: 85 for each of 12
    (2048, 24, 1, (16, 16), np.float32, "blas"),  # ... but 24 outputs: 85 input for each
    (128, 12, 4, (16, 16), np.float32, "phase_tiles"),  # ... but not 11 for each
    (128, 16, 4, (16, 16), np.float64, "phase_tiles"),  # float64: 8 for each are too few
    (40, 1, 4, (16, 16), np.float32, "phase_tiles"),  # too few input channels for either
    (256, 1, 1, (4, 4), np.float32, "tap_rows"),  # one output channel, one tile of positions
    (128, 64, 8, (32, 32), np.float64, "phase_tiles"),  # 3x3 taps overlap in each phase
    (32, 256, 1, (2, 2), np.float32, "column_tiles"),  # 18432 weights per position
    (16, 256, 1, (2, 2), np.float32, "phase_tiles"),  # ... but too few channels one way
    (1, 1, 1, (512, 512), np.float32, "rows"),  # one channel, long rows
    (1, 1, 8, (32, 32), np.float32, "planes"),  # one channel, short rows
    (1, 1, 1, (2, 2), np.float32, "rows_serial"),  # too small to wake the threads
])
def test_heuristic_kernel(c_in, c_out, batch, spatial, dtype, expected):
    geometry = _geometry((batch, c_in) + spatial, (c_in, c_out, 3, 3), dtype)
    strategy, kernel, fallback = _dispatch.choose_kernel(geometry, batch, dtype)
    assert kernel == expected
    assert kernel in _dispatch.STRATEGIES[strategy] and fallback in _dispatch.STRATEGIES[strategy]


@pytest.mark.parametrize("c_in, c_out, spatial, kernel, stride, dtype, expected", [
    (60, 4, (94,), 2, 4, np.float64, "phase_tiles"),  # one tap per phase, 4 channels
    (90, 6, (24, 24), 2, 2, np.float32, "phase_tiles"),  # ... 6 channels
    (64, 4, (94,), 2, 4, np.float64, "tap_rows"),  # ... but 16 inputs for each
    (96, 6, (24, 24), 2, 2, np.float32, "tap_rows"),  # ... in either dtype
    (964, 3, (94,), 2, 4, np.float64, "tap_rows"),  # ... or not 4: the tiles wait on loads
    (256, 1, (24, 24), 2, 2, np.float32, "tap_rows"),  # ... or 1
    (256, 2, (24, 24), 3, 2, np.float32, "tap_rows"),  # 2.25 taps per phase
    (120, 8, (16, 16), 1, 2, np.float64, "phase_tiles"),  # kernel < stride
    (128, 8, (16, 16), 1, 2, np.float32, "tap_rows"),  # ... with 16 inputs per output
    (120, 8, (16, 16), 4, 2, np.float64, "tap_rows"),  # 4 taps per phase
    (180, 12, (16, 16), 1, 2, np.float32, "phase_tiles"),  # more channels, one tap
    (192, 12, (16, 16), 1, 2, np.float32, "tap_rows"),  # ... 16 inputs per output
    (1024, 12, (16, 16), 4, 2, np.float32, "tap_rows"),  # ... 4 taps, hundreds of inputs
    # Pointwise too (r22): BLAS would write the output channels first, but
    # read a channels-last input 1.2x slower (the same route either way).
    (484, 19, (27, 25), 1, 1, np.float64, "tap_rows"),
    (240, 19, (27, 25), 1, 1, np.float64, "phase_tiles"),  # 12 inputs per output
])
def test_one_tap_per_phase_keeps_few_output_channels_off_columns(c_in, c_out, spatial, kernel,
                                                                 stride, dtype, expected):
    """Few output channels with many input channels each take the tap rows
    (up to 8) or BLAS, unless every output phase has at most one tap, there
    are more than 3 output channels and fewer than 16 input channels for
    each; with that many, any number take the tap rows."""
    from numba_deconv._plan import plan_call
    geometry = plan_call((2, c_in) + spatial, np.dtype(dtype), (c_in, c_out) + (kernel,)
                         * len(spatial), np.dtype(dtype), None, None, stride=stride, padding=0,
                         output_padding=0, dilation=1, groups=1, output_size=None,
                         padding_mode="zeros", data_format="channels_first").geometry
    assert _dispatch.choose_kernel(geometry, 2, dtype)[1] == expected


def _chosen_kernel(x_shape, c_out, kernel, dtype=np.float32, **kwargs):
    """The kernel ``choose_kernel`` picks for ``x_shape`` (N, C_in, *S) to
    ``c_out`` channels through a square ``kernel`` (``kwargs``: stride,
    padding, dilation), as the API plans the call."""
    from numba_deconv._plan import plan_call
    args = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1,
            **kwargs}
    geometry = plan_call(x_shape, np.dtype(dtype), (x_shape[1], c_out)
                         + (kernel,) * (len(x_shape) - 2), np.dtype(dtype), None, None,
                         output_size=None, padding_mode="zeros", data_format="channels_first",
                         **args).geometry
    return _dispatch.choose_kernel(geometry, x_shape[0], dtype)[1]


@pytest.mark.parametrize("batch, c_in, c_out, spatial, kernel, stride, dtype, expected", [
    (16, 64, 3, (32, 32), 4, 2, np.float32, "phase_tiles"),  # to_rgb: 3 MiB of columns
    (4, 64, 3, (24, 24), 4, 2, np.float32, "tap_rows"),  # 442 KiB: the fold reads from L2
    (16, 96, 3, (32, 32), 4, 2, np.float32, "tap_rows"),  # more input channels
    (16, 64, 1, (32, 32), 4, 2, np.float32, "tap_rows"),  # one output channel
    (16, 64, 3, (32, 32), 2, 2, np.float32, "tap_rows"),  # one tap per phase: no adds to fold
    (4, 80, 4, (20, 20), 4, 1, np.float64, "tap_rows"),  # 16 taps per phase
])
def test_few_taps_per_phase_keep_large_columns_off_the_tap_rows(batch, c_in, c_out, spatial,
                                                                kernel, stride, dtype, expected):
    """With 2-4 taps per output phase, 3 or more output channels and under
    96 input channels, columns past 512 KiB send the call to the phase
    tiles."""
    assert _chosen_kernel((batch, c_in) + spatial, c_out, kernel, dtype, stride=stride,
                          padding=1) == expected


@pytest.mark.parametrize("x_shape, c_out, kernel, stride, dilation, expected", [
    ((15, 144, 13, 13, 14), 2, 3, 3, 1, "tap_rows"),  # one tap an output: 7.7 MB of columns
    ((64, 128, 64, 64), 3, 2, 2, 1, "tap_rows"),  # 12.6 MB
    ((64, 128, 64, 64), 3, 2, 2, 2, "phase_tiles"),  # dilated: two taps on even outputs
    ((64, 128, 64, 64), 3, 3, 2, 1, "phase_tiles"),  # more taps than phases: 4 MiB at most
])
def test_one_tap_an_output_lets_the_tap_rows_take_large_columns(x_shape, c_out, kernel, stride,
                                                                dilation, expected):
    assert _chosen_kernel(x_shape, c_out, kernel, stride=stride, dilation=dilation) == expected


@pytest.mark.parametrize("x_shape, c_out, kernel, stride, expected", [
    ((18, 469, 5, 8), 127, 2, 1, "tap_rows"),  # hundreds of input channels, tiny images
    ((1, 798, 22, 25), 33, 7, 3, "tap_rows"),
    ((18, 200, 5, 8), 127, 2, 1, "phase_tiles"),  # ... but 200
    ((14, 622, 243), 32, 7, 2, "phase_tiles"),  # 1-D: long rows waste nothing
    ((18, 469, 5, 8), 127, 2, 2, "phase_tiles"),  # one tap a phase
    ((64, 512, 16, 16), 256, 4, 2, "phase_tiles"),  # 512 MiB of columns
])
def test_hundreds_of_input_channels_take_the_tap_rows(x_shape, c_out, kernel, stride, expected):
    assert _chosen_kernel(x_shape, c_out, kernel, stride=stride) == expected


@pytest.mark.parametrize("x_shape, c_out, kernel, kwargs, dtype, expected", [
    ((1, 192, 1294), 12, 4, dict(stride=2), np.float32, "tap_rows"),  # 16 per output
    ((1, 192, 34, 28), 16, 3, dict(stride=2), np.float64, "tap_rows"),  # 12
    ((1, 128, 1176), 11, 5, dict(stride=2, dilation=2), np.float64, "phase_tiles"),  # 11.6
    ((2, 160, 552), 16, 3, dict(stride=2, dilation=2), np.float32, "phase_tiles"),  # 10
    ((1, 160, 1294), 12, 2, dict(stride=2), np.float32, "phase_tiles"),  # one tap a phase
    ((1, 384, 1294), 17, 4, dict(stride=2), np.float32, "phase_tiles"),  # 17 outputs
])
def test_many_input_channels_per_output_take_the_tap_rows(x_shape, c_out, kernel, kwargs,
                                                          dtype, expected):
    """Up to 16 output channels with more taps than phases take the tap
    rows from 12 input channels for each (TAP_ROWS_MIN_IN_PER_OUT_CHANNEL),
    also on images the phase tiles would not pad; one tap a phase keeps its
    own bound (16 per output)."""
    assert _chosen_kernel(x_shape, c_out, kernel, dtype, **kwargs) == expected


@pytest.mark.parametrize("x_shape, c_in, c_out, kernel, stride, expected", [
    ((2, 3, 4, 2), 32, 56, 5, 2, "column_tiles"),  # 3-D, 4375 weights per position
    ((2, 4, 29), 227, 56, 6, 4, "column_tiles"),  # 2-D, 116 positions an image
    ((2, 3, 4, 2), 24, 56, 5, 2, "phase_tiles"),  # too few input channels
    ((4, 16, 16), 128, 64, 3, 2, "phase_tiles"),  # images too large
    ((1, 86), 141, 310, 5, 3, "phase_tiles"),  # 1-D: the phase tiles lose little
])
def test_small_images_under_large_kernels_take_the_columns(x_shape, c_in, c_out, kernel, stride,
                                                           expected):
    assert _chosen_kernel((x_shape[0], c_in) + x_shape[1:], c_out, kernel,
                          stride=stride) == expected


@pytest.mark.parametrize("c_in, c_out, spatial, kernel, stride, padding, expected", [
    (50, 24, (7, 6), 7, 1, 2, "column_tiles"),  # rows of 8 outputs in 14: waste 1.75
    (50, 12, (7, 6), 7, 1, 2, "tap_rows"),  # ... 16 output channels or fewer: the tap rows
    (12, 7, (7, 6), 7, 1, 2, "phase_tiles"),  # ... too few input channels to fold
    (549, 190, (58, 5), 4, 2, 1, "column_tiles"),  # rows of 5 in 7: 1.4
    (549, 190, (58, 16), 4, 2, 1, "phase_tiles"),  # rows of 16 in 18: whole vectors
    (70, 12, (76, 6), 4, 4, 1, "phase_tiles"),  # rows of 6 in 7: 1.17
    (70, 3, (76, 6), 4, 4, 1, "tap_rows"),  # ... 3 output channels: the tap rows
])
def test_narrow_images_take_the_columns(c_in, c_out, spatial, kernel, stride, padding,
                                        expected):
    """Where the register tiles would compute many padded positions per
    output (narrow rows) for many input channels, the columns kernel
    (config.COLUMNS_MIN_ROW_WASTE, COLUMNS_MIN_WASTED_MULTIPLY_ADDS), or
    with up to 16 output channels the tap rows
    (TAP_ROWS_NARROW_MIN_ROW_WASTE)."""
    from numba_deconv._plan import plan_call
    geometry = plan_call((8, c_in) + spatial, np.dtype(np.float32), (c_in, c_out)
                         + (kernel,) * 2, np.dtype(np.float32), None, None, stride=stride,
                         padding=padding, output_padding=0, dilation=1, groups=1,
                         output_size=None, padding_mode="zeros",
                         data_format="channels_first").geometry
    assert _dispatch.choose_kernel(geometry, 8, np.float32)[1] == expected


@pytest.mark.parametrize("x_shape, w_shape, groups, tiles", [
    ((16, 1, 64, 64), (1, 1, 5, 5), 1, True),  # one channel, 6.25 taps per phase
    ((16, 1, 32, 32), (1, 1, 5, 5), 1, False),  # ... on too small an image
    ((16, 1, 64, 64), (1, 1, 3, 3), 1, False),  # ... 2.25 taps per phase
    ((2, 3, 16, 16, 16), (3, 1, 4, 4, 4), 1, True),  # 3 -> 1, 8 taps per phase
    ((4, 8, 64, 64), (8, 1, 5, 5), 8, False),  # depthwise: 6.25 taps are too few
    ((4, 8, 64, 64), (8, 1, 6, 6), 8, True),  # ... 9 are not
])
def test_heuristic_few_channel_pairs_with_many_taps(x_shape, w_shape, groups, tiles):
    """Few channel pairs take the register tiles when many taps per phase
    fill them on a large image (config.TILED_FEW_PAIRS_MIN_TAPS), else
    the planes or rows kernel (none of these calls is serial)."""
    from numba_deconv._plan import plan_call
    geometry = plan_call(x_shape, np.dtype(np.float32), w_shape, np.dtype(np.float32), None,
                         None, stride=2, padding=0, output_padding=0, dilation=1,
                         groups=groups, output_size=None, padding_mode="zeros",
                         data_format="channels_first").geometry
    kernel = _dispatch.choose_kernel(geometry, x_shape[0], np.float32)[1]
    assert kernel == "phase_tiles" if tiles else kernel in ("planes", "rows")


@pytest.mark.parametrize("x_shape, w_shape, groups, tiles", [
    ((8, 1, 22, 90), (1, 4, 3, 3), 1, True),  # 2-D: 4 pairs fill the tiles
    ((8, 3, 22, 90), (3, 1, 3, 3), 1, False),  # ... 3 do not
    ((4, 24, 22, 90), (24, 2, 3, 3), 24, False),  # ... nor depthwise 1 -> 2
    ((8, 1, 12, 12, 12), (1, 2, 3, 3, 3), 1, True),  # 3-D: 2 pairs do
    ((2, 16, 12, 12, 12), (16, 2, 3, 3, 3), 16, True),  # ... depthwise 1 -> 2 too
    ((8, 1, 12, 12, 12), (1, 1, 3, 3, 3), 1, False),  # ... 1 does not
    ((32, 1, 4000), (1, 4, 3), 1, False),  # 1-D: 4 pairs do not
])
def test_heuristic_channel_pairs_by_rank(x_shape, w_shape, groups, tiles):
    """Fewer channel pairs fill the register tiles in more dims
    (config.TILED_MIN_CHANNEL_PAIRS_2D, _3D; 8 in 1-D): 2-3 taps per
    phase at stride 2, no call serial, no rule of many taps met."""
    from numba_deconv._plan import plan_call
    geometry = plan_call(x_shape, np.dtype(np.float32), w_shape, np.dtype(np.float32), None,
                         None, stride=2, padding=0, output_padding=0, dilation=1,
                         groups=groups, output_size=None, padding_mode="zeros",
                         data_format="channels_first").geometry
    assert not _dispatch._many_taps_fill_tiles(geometry)
    assert x_shape[0] * geometry.flops // 2 >= config.SERIAL_MAX_MULTIPLY_ADDS
    kernel = _dispatch.choose_kernel(geometry, x_shape[0], np.float32)[1]
    assert kernel == "phase_tiles" if tiles else kernel in ("planes", "rows")


@pytest.mark.parametrize("x_shape, w_shape, registers, expected", [
    ((8, 200, 21, 74), (200, 12, 4, 4), 32, "blas"),  # 16.7 per output, 16 taps per phase
    ((8, 200, 21, 74), (200, 12, 4, 2), 32, "blas"),  # ... 8 taps
    ((8, 200, 21, 74), (200, 12, 2, 3), 32, "tap_rows"),  # ... but not 6 (16.7 per output)
    # 15 per output are too few, and 9.5 MB of columns too many for the tap rows
    ((8, 180, 21, 74), (180, 12, 4, 4), 32, "phase_tiles"),
    ((8, 187, 21, 74), (187, 8, 4, 2), 32, "tap_rows"),  # 8 output channels: the tap rows
    ((8, 187, 21, 74), (187, 8, 4, 4), 32, "blas"),  # ... unless 6 MB of columns
    ((8, 549, 58, 5), (549, 190, 2, 2), 16, "blas"),  # 16 registers: 549 input channels
    # ... 32 registers: the tap rows, for hundreds of input channels
    ((8, 549, 58, 5), (549, 190, 2, 2), 32, "tap_rows"),
    ((8, 384, 58, 5), (384, 190, 2, 2), 16, "column_tiles"),  # ... 384 are too few for BLAS
    # ... and as many output as input channels: the columns
    ((8, 384, 58, 5), (384, 256, 2, 2), 32, "column_tiles"),
])
def test_heuristic_blas_with_many_taps_or_many_input_channels(x_shape, w_shape, registers,
                                                              expected, monkeypatch):
    """Real data takes BLAS with 16 input channels per output channel when
    an output phase has at least 8 taps, and, on CPUs with 16 vector
    registers (AVX2), from 512 input channels (stride 1: the kernel's taps
    are all one phase's)."""
    from numba_deconv._plan import plan_call
    from numba_deconv.cpu import simd
    monkeypatch.setattr(simd, "REGISTERS", registers)
    geometry = plan_call(x_shape, np.dtype(np.float32), w_shape, np.dtype(np.float32), None,
                         None, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                         output_size=None, padding_mode="zeros",
                         data_format="channels_first").geometry
    assert _dispatch.choose_kernel(geometry, x_shape[0], np.float32)[1] == expected


def test_heuristic_never_looks_at_the_thread_count(monkeypatch):
    """One thread runs the kernel two would (the serial kernels sum in
    another order, and set_num_threads must not change a bit)."""
    import numba
    for x_shape, w_shape in [((1, 1, 512, 512), (1, 1, 3, 3)), ((8, 1, 32, 32), (1, 1, 3, 3)),
                             ((8, 64, 32, 32), (64, 64, 3, 3))]:
        geometry = _geometry(x_shape, w_shape, np.float32)
        picks = set()
        for threads in (1, 2, 64):
            monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
            picks.add(_dispatch.choose_kernel(geometry, x_shape[0], np.float32))
        assert len(picks) == 1 and next(iter(picks))[1] != "rows_serial"


def test_heuristic_real_data_takes_register_tiles_with_one_tap_per_phase():
    """unet's 2x2 kernel at stride 2 takes the tiles in float32 and float64
    (once each task's input window fits L2); complex takes BLAS."""
    geometry = _geometry((8, 128, 32, 32), (128, 64, 2, 2), np.float64)
    for dtype, kernel in ((np.float64, "phase_tiles"), (np.float32, "phase_tiles"),
                          (np.complex128, "blas")):
        assert _dispatch.choose_kernel(geometry, 8, dtype)[1] == kernel


def _geometry(x_shape, w_shape, dtype):
    """The checked geometry of a stride-2 call, as the API plans it."""
    from numba_deconv._plan import plan_call
    return plan_call(x_shape, np.dtype(dtype), w_shape, np.dtype(dtype), None, None,
                     stride=2, padding=0, output_padding=0, dilation=1, groups=1,
                     output_size=None, padding_mode="zeros",
                     data_format="channels_first").geometry
