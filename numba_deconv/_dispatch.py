"""Where and how a call runs: device, strategy and kernel, decided in one place.

:func:`select_device` picks the backend from the ``device`` argument and
where the arrays live. For the CPU, :func:`choose_kernel` is the whole
heuristic, and :func:`cpu_call` memoises everything a call shape derives
(the checked :class:`~numba_deconv._plan.CallPlan`, the :class:`Route`
with its launch tables), so a repeated call skips every check and every
table. :func:`reset` empties that memo; do so after changing a tunable in
:mod:`numba_deconv.config`, which is read when a call shape is first seen.

Strategies and their kernels (see :mod:`numba_deconv.cpu.driver`):

- ``gather``: every output gathers its taps straight from ``x``:
  ``phase_tiles`` (register-tiled phase correlations), ``planes``,
  ``rows`` and ``rows_serial``; for ``conv``, ``conv_tiles`` (register
  tiles over the input's phase planes), ``conv_planes`` and
  ``conv_planes_serial``.
- ``columns``: the matrix product ``cols = W^T X``, then folded into the
  output: ``column_tiles`` (register tiles along the weights, real data),
  ``tap_rows`` (register tiles along the positions, real data with few
  output channels) or ``blas`` (NumPy's BLAS, complex data).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from . import _compiled, _weight_memo, config
from ._params import Geometry
from ._phases import polyphase, tap_phase
from ._plan import DEVICES, DTYPES, LAYOUTS, CallPlan, is_device_array, plan_call, plan_conv
from .cpu import driver, simd, work_split
from .cpu.one_tap_last import one_tap_per_phase
from .cpu.launch import thread_count
from ._typing import DTypeLike

STRATEGIES = {"gather": ("rows_serial", "rows", "planes", "phase_tiles",
                         "conv_planes_serial", "conv_planes", "conv_tiles", "weight_dots", "weight_tiles"),
              "columns": ("column_tiles", "tap_rows", "blas")}
#: Kernels that channels-last calls alone run: depthwise calls of the gather
#: routes, calls of the phase tiles with one or a few taps per output
#: phase (the same sums as the route's kernel, in the layout as it lies),
#: and tiny calls of the serial row kernel called directly.
CHANNELS_LAST_KERNELS = {"gather": ("depthwise_last", "depthwise_last_staged",
                                    "one_tap_last", "rows_tiny_last")}
#: The CUDA backend's one strategy, a gather (one thread per output), and
#: its kernels: conv_transpose's and conv's.
CUDA_STRATEGIES = {"gather": ("gather", "gather_single", "conv_gather", "conv_single", "fold")}


def select_device(device, *arrays) -> str:
    """``"cpu"`` or ``"cuda"``: ``device``, or for ``"auto"`` where the data is."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(
            f"device={device!r} is not a device; use 'auto', 'cpu' or 'cuda'")
    if device == "auto":
        return "cuda" if any(is_device_array(a) for a in arrays) else "cpu"
    return device


def choose_kernel(geometry, batch: int, dtype) -> tuple:
    """``(strategy, kernel, fallback)`` for this geometry, batch and dtype
    (never the thread count); ``fallback`` runs where ``kernel`` cannot be exact (it
    multiplies zero padding and a weight is not finite).

    Many channels on small images with few input positions in the whole
    batch take the columns kernel, which reads each weight once per call:
    there the weights outweigh the work on each (and, in 2-3 dims, with
    fewer channels where they outweigh it more). Few output channels from many
    input channels take the tap-rows kernel, whose register tiles hold a
    row per output channel and tap (:func:`_few_outputs_take_tap_rows`),
    and so do more output channels from hundreds of input channels in 2-3
    dims (:func:`_deep_inputs_take_tap_rows`).
    Complex data has no register tiles, so BLAS takes its thick products;
    so does real data with many input channels for each of more output
    channels, where the tiles (along output channels) would find few to
    fill, or fewer with many taps per output phase, and, on CPUs with 16
    vector registers, with hundreds of input channels
    (:func:`_blas_beats_tiles`). Everything else is a
    gather: register tiles given enough channel pairs (or, with few, many
    taps per output phase on large images), else by planes for short rows
    and by rows for long ones, on the calling thread when the call is too
    small to repay waking the thread pool.
    """
    complex_data = np.dtype(dtype).kind == "c"
    in_g = geometry.in_channels // geometry.groups
    out_g = geometry.out_channels // geometry.groups
    positions = math.prod(geometry.in_spatial)
    if not complex_data and _deep_inputs_take_tap_rows(geometry, batch, in_g, out_g, dtype):
        return "columns", "tap_rows", "tap_rows"
    if min(in_g, out_g) >= config.GEMM_MIN_CHANNELS:
        if complex_data and positions >= config.GEMM_MIN_POSITIONS:
            return "columns", "blas", "blas"
        if not complex_data and _weights_outweigh_positions(
                geometry, batch, in_g, out_g, config.GEMM_MAX_IMAGE_POSITIONS,
                config.GEMM_MIN_WEIGHTS_PER_POSITION):
            return "columns", "column_tiles", "column_tiles"
    # In 2-3 dims, fewer channels where the weights outweigh the positions
    # more: small images under large kernels, whose phase tiles compute
    # mostly padding and stream the weights once per image.
    if (not complex_data and geometry.rank >= 2
            and min(in_g, out_g) >= config.GEMM_HEAVY_MIN_CHANNELS
            and _weights_outweigh_positions(geometry, batch, in_g, out_g,
                                            config.GEMM_HEAVY_MAX_IMAGE_POSITIONS,
                                            config.GEMM_HEAVY_MIN_WEIGHTS_PER_POSITION)):
        return "columns", "column_tiles", "column_tiles"
    serial = batch * geometry.flops // 2 < config.SERIAL_MAX_MULTIPLY_ADDS
    if not serial and not complex_data and _few_outputs_take_tap_rows(geometry, batch, in_g,
                                                                      out_g, dtype):
        return "columns", "tap_rows", "tap_rows"
    if (not serial and not complex_data and in_g >= config.GEMM_MIN_CHANNELS
            and positions >= config.GEMM_MIN_POSITIONS and _blas_beats_tiles(
                geometry, in_g, out_g, dtype)):
        return "columns", "blas", "blas"
    if not serial and not complex_data and _narrow_rows_take_columns(geometry, batch, in_g,
                                                                     dtype):
        return "columns", "column_tiles", "column_tiles"
    # The choice never looks at the thread count: the serial kernels sum in
    # another order than the parallel ones, and a result must not change
    # a bit with numba.set_num_threads (the parallel kernels run on one
    # thread as well, for a few microseconds more).
    rows = "rows_serial" if serial else "rows"
    # The tiles and the planes lay out a phase per stride step: not for a
    # stride past the output, which a huge stride would size them by (the
    # rows kernel keeps only the phases that have outputs).
    phases_fit = all(s <= o for s, o in zip(geometry.stride, geometry.out_spatial))
    busy_tiles = _pairs_fill_tiles(geometry, in_g, out_g) or _many_taps_fill_tiles(geometry)
    if not serial and busy_tiles and not complex_data and phases_fit:
        return "gather", "phase_tiles", rows
    if rows == "rows" and geometry.in_spatial[-1] <= config.PLANES_MAX_ROW and phases_fit:
        return "gather", "planes", rows
    return "gather", rows, rows


def _few_outputs_take_tap_rows(geometry, batch: int, in_g: int, out_g: int, dtype) -> bool:
    """Whether the tap-rows kernel takes a real call: many input channels
    (``config.TAP_ROWS_MIN_IN_CHANNELS`` per group), columns that fit
    ``TAP_ROWS_MAX_COLUMN_BYTES`` (more, and writing and folding them costs
    more than the tiles save), and few output channels: at most
    ``TAP_ROWS_MAX_OUT_CHANNELS`` per group with more than one tap per
    output phase, or at most ``TAP_ROWS_ONE_TAP_MAX_OUT_CHANNELS`` with
    one (the phase tiles hold a row per output channel: with a few rows
    they wait on their loads, with more they are ahead, having no fold to
    pay), or any number with one tap and
    ``TAP_ROWS_ONE_TAP_MIN_IN_PER_OUT_CHANNEL`` input channels for each
    (there the tiles' long sums favour the tap rows); or, with more taps,
    up to ``TAP_ROWS_NARROW_MAX_OUT_CHANNELS`` given
    ``TAP_ROWS_MIN_IN_PER_OUT_CHANNEL`` input channels for each, or on
    narrow images where the phase tiles would compute
    ``TAP_ROWS_NARROW_MIN_ROW_WASTE`` positions per output
    (:func:`_tile_row_waste`: the tap rows run along the batch's positions
    and waste none). Not
    with a few taps per phase, several output channels and under
    ``TAP_ROWS_FEW_TAPS_MIN_IN_CHANNELS``, if the columns outgrow
    ``TAP_ROWS_FEW_TAPS_MAX_COLUMN_BYTES``: there the fold, reading them
    back from past L2, costs more than the tiles lose. Where no output
    has two taps the fold only moves the columns, and they may reach
    ``TAP_ROWS_ONE_TAP_MAX_COLUMN_BYTES``."""
    columns = _column_bytes(geometry, batch, dtype)
    one_tap = one_tap_per_phase(geometry.kernel, geometry.stride, geometry.dilation)
    if in_g < config.TAP_ROWS_MIN_IN_CHANNELS or columns > (
            config.TAP_ROWS_ONE_TAP_MAX_COLUMN_BYTES if one_tap
            else config.TAP_ROWS_MAX_COLUMN_BYTES):
        return False
    taps, phases = math.prod(geometry.kernel), math.prod(geometry.stride)
    many_taps = taps > phases
    if (many_taps and taps <= config.TAP_ROWS_FEW_TAPS_PER_PHASE * phases
            and out_g >= config.TAP_ROWS_FEW_TAPS_MIN_OUT_CHANNELS
            and in_g < config.TAP_ROWS_FEW_TAPS_MIN_IN_CHANNELS
            and columns > config.TAP_ROWS_FEW_TAPS_MAX_COLUMN_BYTES):
        return False
    if one_tap and in_g >= config.TAP_ROWS_ONE_TAP_MIN_IN_PER_OUT_CHANNEL * out_g:
        return True
    if out_g <= config.TAP_ROWS_MAX_OUT_CHANNELS:
        return many_taps or out_g <= config.TAP_ROWS_ONE_TAP_MAX_OUT_CHANNELS
    return (many_taps and out_g <= config.TAP_ROWS_NARROW_MAX_OUT_CHANNELS
            and (in_g >= config.TAP_ROWS_MIN_IN_PER_OUT_CHANNEL * out_g
                 or _tile_row_waste(geometry, dtype) >= config.TAP_ROWS_NARROW_MIN_ROW_WASTE))


def _weights_outweigh_positions(geometry, batch: int, in_g: int, out_g: int,
                                max_image_positions: int, min_weights_per_position: int) -> bool:
    """Whether a call's images have at most ``max_image_positions``
    positions, its batch at most ``config.GEMM_MAX_BATCH_POSITIONS``, and
    its weights number ``min_weights_per_position`` per position of the
    batch: the columns kernel reads each weight once per call."""
    positions = math.prod(geometry.in_spatial)
    in_batch = batch * positions
    return (positions <= max_image_positions and in_batch <= config.GEMM_MAX_BATCH_POSITIONS
            and in_g * out_g * math.prod(geometry.kernel) >= min_weights_per_position * in_batch)


def _column_bytes(geometry, batch: int, dtype) -> int:
    """The bytes of a call's columns: output channel x tap x input position
    of the batch."""
    return (geometry.out_channels * math.prod(geometry.kernel) * batch
            * math.prod(geometry.in_spatial) * np.dtype(dtype).itemsize)


def _deep_inputs_take_tap_rows(geometry, batch: int, in_g: int, out_g: int, dtype) -> bool:
    """Whether the tap-rows kernel takes a real call of 2 or 3 dims with
    hundreds of input channels (``config.TAP_ROWS_DEEP_MIN_IN_CHANNELS``
    per group) for more output channels than the few the other rule
    takes (:func:`_few_outputs_take_tap_rows`) but at most one for each
    ``TAP_ROWS_DEEP_MIN_IN_PER_OUT_CHANNEL`` input channels (as many each
    way, the columns kernel's tiles along the weights fill), more taps than output
    phases, ``TAP_ROWS_DEEP_MIN_POSITIONS`` input positions in the batch
    and at most ``TAP_ROWS_DEEP_MAX_COLUMN_BYTES`` of columns: each
    output's fold is then a small share of its multiply-adds, and the
    tap rows' sums run over all the input channels with no padding to
    compute, where the phase tiles compute the padded rows of small
    images and the columns kernel waits on the weights (1-D rows waste
    nothing, and there the phase tiles stay ahead). Measured on AVX-512
    only: with 16 vector registers its 27 accumulators take passes."""
    return (simd.REGISTERS >= 32 and geometry.rank >= 2
            and in_g >= config.TAP_ROWS_DEEP_MIN_IN_CHANNELS
            and config.TAP_ROWS_MAX_OUT_CHANNELS < out_g
            <= in_g // config.TAP_ROWS_DEEP_MIN_IN_PER_OUT_CHANNEL
            and batch * math.prod(geometry.in_spatial) >= config.TAP_ROWS_DEEP_MIN_POSITIONS
            and _column_bytes(geometry, batch, dtype) <= config.TAP_ROWS_DEEP_MAX_COLUMN_BYTES
            and math.prod(geometry.kernel) > math.prod(geometry.stride))


def _narrow_rows_take_columns(geometry, batch: int, in_g: int, dtype) -> bool:
    """Whether the columns kernel takes a real call whose register tiles
    would compute much zero padding (``config``'s ``COLUMNS_MIN_ROW_WASTE``
    and ``COLUMNS_MIN_WASTED_MULTIPLY_ADDS``), where one output channel's
    columns fit ``WORKSPACE_BYTES``."""
    waste = _tile_row_waste(geometry, dtype)
    return (waste >= config.COLUMNS_MIN_ROW_WASTE
            and (waste - 1) * in_g >= config.COLUMNS_MIN_WASTED_MULTIPLY_ADDS
            and batch * math.prod(geometry.in_spatial) * math.prod(geometry.kernel)
            * np.dtype(dtype).itemsize <= config.WORKSPACE_BYTES)


def _tile_row_waste(geometry, dtype, dim: int = -1) -> float:
    """How many positions the register tiles compute per output along
    spatial dim ``dim`` were it the last: each row of a phase's ``Q``
    outputs lies in a row of the zero-padded input, ``Q`` plus the spread
    of the phase shifts wide, and the tiles' vectors run through the rows
    straight (every position) or row by row (whole vectors per row),
    whichever is fewer (:func:`.cpu.tile_products.sweep_segments`). Narrow images
    waste most."""
    k, s, d = geometry.kernel[dim], geometry.stride[dim], geometry.dilation[dim]
    shifts = [tap_phase(t, s, d, geometry.pad_before[dim])[1] for t in range(k)]
    outputs = -(-geometry.out_spatial[dim] // s)
    lanes = simd.VECTOR_BYTES // np.dtype(dtype).itemsize
    row = outputs + max(shifts) - min(shifts)
    return min(row, -(-outputs // lanes) * lanes) / outputs


def swept_dim(geometry, batch: int, dtype) -> int | None:
    """The spatial dim to run a phase-tiles call with last, or None for
    the order given. The tiles' vectors run along the last dim, and rows
    narrower than a few vectors waste lanes (:func:`_tile_row_waste`: 3-D
    outputs 17 wide compute 32 positions a row). The dim that wastes
    fewest goes last (the others keep their order) where the last dim
    wastes ``config.SWEEP_MIN_WASTE_RATIO`` times as many, the call has
    ``SWEEP_MIN_MULTIPLY_ADDS`` multiply-adds, and those it saves (its
    multiply-adds times the share of positions no longer computed) come
    to ``SWEEP_MIN_SAVED_PER_ELEMENT`` for each element of the input and
    output copied to run so. The same sums with the taps in another
    order: every call of a shape runs the same order."""
    multiply_adds = batch * geometry.flops // 2
    if geometry.rank < 2 or multiply_adds < config.SWEEP_MIN_MULTIPLY_ADDS:
        return None
    wastes = [_tile_row_waste(geometry, dtype, dim) for dim in range(geometry.rank)]
    best = min(range(geometry.rank), key=lambda dim: (wastes[dim], -dim))
    if wastes[-1] < config.SWEEP_MIN_WASTE_RATIO * wastes[best]:
        return None
    copied = batch * (geometry.in_channels * math.prod(geometry.in_spatial)
                      + geometry.out_channels * math.prod(geometry.out_spatial))
    saved = multiply_adds * (1 - wastes[best] / wastes[-1])
    return best if saved >= config.SWEEP_MIN_SAVED_PER_ELEMENT * copied else None


def _pairs_fill_tiles(geometry, in_g: int, out_g: int) -> bool:
    """Whether a call has channel pairs per group (input x output channels)
    enough to fill the register tiles: ``config.TILED_MIN_CHANNEL_PAIRS``
    in 1-D, fewer in 2-D and 3-D (``TILED_MIN_CHANNEL_PAIRS_2D``,
    ``..._3D``), where the planes and rows kernels have short loops per
    tap and the tiles share each input vector among the output channels
    over a whole plane."""
    least = (config.TILED_MIN_CHANNEL_PAIRS_3D if geometry.rank >= 3
             else config.TILED_MIN_CHANNEL_PAIRS_2D if geometry.rank == 2
             else config.TILED_MIN_CHANNEL_PAIRS)
    return in_g * out_g >= least


def _many_taps_fill_tiles(geometry) -> bool:
    """Whether each output phase has taps enough, on images large enough,
    to keep the register tiles busy with few channel pairs (``config``'s
    ``TILED_FEW_PAIRS_*``)."""
    min_taps = (config.TILED_FEW_PAIRS_MIN_TAPS_GROUPED if geometry.groups > 1
                else config.TILED_FEW_PAIRS_MIN_TAPS)
    return (math.prod(geometry.kernel) >= min_taps * math.prod(geometry.stride)
            and math.prod(geometry.in_spatial) >= config.TILED_FEW_PAIRS_MIN_POSITIONS)


def _blas_beats_tiles(geometry, in_g: int, out_g: int, dtype) -> bool:
    """Whether BLAS's products beat the register tiles on a real call with
    many input channels (``config``'s ``GEMM_MIN_IN_*`` rules): many input
    channels per output channel, fewer with many taps per output phase,
    or, on CPUs with 16 vector registers, hundreds of input channels; not
    for few output channels with at most one tap per output phase."""
    per_out = in_g / out_g
    if (out_g < config.GEMM_MIN_CHANNELS
            and math.prod(geometry.kernel) <= math.prod(geometry.stride)):
        return False  # one tap per output phase: see config.GEMM_MIN_IN_PER_OUT_CHANNEL
    return (per_out >= (config.GEMM_MIN_IN_PER_OUT_CHANNEL_F64 if dtype == np.float64
                        else config.GEMM_MIN_IN_PER_OUT_CHANNEL)
            or (per_out >= config.GEMM_MIN_IN_PER_OUT_CHANNEL_MANY_TAPS
                and math.prod(geometry.kernel)
                >= config.GEMM_MANY_TAPS_PER_PHASE * math.prod(geometry.stride))
            or (simd.REGISTERS < 32 and in_g >= config.GEMM_MIN_IN_CHANNELS_FEW_REGISTERS))


def choose_conv_kernel(geometry, batch: int, dtype):
    """``(strategy, kernel, fallback)`` of a ``conv`` whose adjoint has this
    ``geometry``, or None where it runs as a sum of phases through the
    transposed kernels: rank > 3, and complex data with channels enough for
    BLAS's products.

    Register tiles given enough channel pairs (real data), else one loop
    per pair, on the calling thread for calls too small to wake the pool.
    Either sums every output in the same order on any number of threads.
    """
    complex_data = np.dtype(dtype).kind == "c"
    in_g = geometry.out_channels // geometry.groups  # conv's own channels
    out_g = geometry.in_channels // geometry.groups
    if geometry.rank > 3:
        return None
    if (complex_data and min(in_g, out_g) >= config.GEMM_MIN_CHANNELS
            and math.prod(geometry.in_spatial) >= config.GEMM_MIN_POSITIONS):
        return None
    serial = batch * geometry.flops // 2 < config.SERIAL_MAX_MULTIPLY_ADDS
    if not serial and in_g * out_g >= config.TILED_MIN_CHANNEL_PAIRS and not complex_data:
        return "gather", "conv_tiles", "conv_tiles"
    kernel = "conv_planes_serial" if serial else "conv_planes"  # not by thread count
    return "gather", kernel, kernel


@dataclasses.dataclass(frozen=True)
class Route:
    """The kernel a CPU call runs and its launch tables."""

    variant: tuple  # (device, rank, dtype, layout, strategy): the record's key
    kernel: str
    fallback: str
    launch: work_split.Launch | None  # rank <= 3, in the order given
    # Rank >= 4: the route of one slice along the first dim; with
    # last_dim, the route of the call with that spatial dim moved last
    # (swept_dim), whose geometry is moved_geometry.
    inner: Route | None
    last_dim: int | None = None
    moved_geometry: Geometry | None = None


class _Routed:
    """A call shape's routes per thread count (under None, one for every
    count when the choice cannot depend on it), planned as first needed."""

    routes: dict

    def route(self) -> Route:
        any_count = self.routes.get(None)
        if any_count is not None:
            return any_count
        threads = thread_count()
        route = self.routes.get(threads)
        if route is None:
            route = self.routes[threads] = self._plan_route(threads)
        return route


@dataclasses.dataclass
class Call(_Routed):
    """What a ``conv_transpose`` call shape derives once: its plan, the
    geometry its kernels compute (for a padding mode, the scatter over the
    whole padded extent, folded afterwards), and its routes."""

    plan: CallPlan
    geometry: Geometry
    no_bias: np.ndarray  # zeros, the bias when none is given (never written)
    out_bytes: int  # of the channels-first result of the kernels
    routes: dict  # thread count (or None: any) -> Route
    twin: Call | bool | None = None  # complex data: its real twin (real_twin), or False
    # The serial row kernel called directly (api.apply_conv_transpose): None
    # until known, False where the call shape does not run it.
    serial: typing.Callable | bool | None = None
    # A twin's (strategy, kernel, fallback), where its complex call chose
    # them (_make_twin); None: choose_kernel's.
    choice: tuple | None = None

    def _plan_route(self, threads: int) -> Route:
        return _route(self.plan, self.geometry, threads, self.choice)


class ConvPhase(typing.NamedTuple):
    """One phase of a strided ``conv``: a stride-1 transposed convolution
    of the padded input decimated at this phase, with a flipped part of the
    weights (see :func:`numba_deconv._phases.polyphase`)."""

    window: tuple  # slices of the padded input (N, C_in, *spatial)
    taps: tuple  # slices of the weight's spatial dims, flipped
    call: Call  # of the transposed convolution on (N, C_in, *window)


@dataclasses.dataclass
class ConvCall(_Routed):
    """What a ``conv`` call shape derives once: its plan, and either its
    routes to the ``conv`` kernels or, where :func:`choose_conv_kernel`
    says so, its phases."""

    plan: CallPlan
    phases: list | None  # of ConvPhase, in a fixed order; None: the conv kernels
    no_bias: np.ndarray
    out_bytes: int
    routes: dict
    twin: ConvCall | bool | None = None  # complex data: its real twin, or False
    # The serial plane kernel called directly (api.apply_conv): None until
    # known, False where the call shape does not run it.
    serial: typing.Callable | bool | None = None

    def _plan_route(self, threads: int) -> Route:
        return _conv_route(self.plan, threads)


def _route(plan: CallPlan, geometry, threads: int, choice=None) -> Route:
    if geometry.rank > 3:
        inner = _route(plan, driver.drop_leading_dim(geometry), threads)
        return Route(inner.variant, inner.kernel, inner.fallback, None, inner)
    route = _route_as_given(plan, geometry, threads, choice)
    dim = swept_dim(geometry, plan.batch, plan.dtype) if route.kernel == "phase_tiles" else None
    if dim is not None:
        moved = driver.move_spatial_last(geometry, dim)
        inner = _route_as_given(plan, moved, threads)
        if inner.kernel == "phase_tiles":
            return Route(inner.variant, inner.kernel, inner.fallback, None, inner, dim, moved)
    return route


def _route_as_given(plan: CallPlan, geometry, threads: int, choice=None) -> Route:
    strategy, kernel, fallback = choice or choose_kernel(geometry, plan.batch, plan.dtype)
    variant = ("cpu", plan.geometry.rank, plan.dtype, plan.layout, strategy)
    launch = work_split.plan_launch(geometry, plan.batch, plan.dtype.itemsize, kernel, threads)
    return Route(variant, kernel, fallback, launch, None)


def _conv_route(plan: CallPlan, threads: int) -> Route:
    g = plan.geometry  # the adjoint's
    strategy, kernel, fallback = choose_conv_kernel(g, plan.batch, plan.dtype)
    variant = ("cpu", g.rank, plan.dtype, plan.layout, strategy)
    in_spatial, pad = g.out_spatial, g.pad_before
    if plan.padding_mode != "zeros":  # the input comes padded in that mode
        in_spatial = tuple(b + i + a for b, i, a in zip(g.pad_before, in_spatial, g.pad_after))
        pad = (0,) * g.rank
    launch = work_split.plan_conv_launch(g, plan.batch, plan.dtype.itemsize, kernel, threads,
                                     in_spatial, pad)
    return Route(variant, kernel, fallback, launch, None)


# Calls whose arguments are plain ints, strings, None and tuples of them (so
# that 2.0 or True can never hit the plan of 2 or 1), by shapes, dtypes and
# arguments: a repeated call skips all argument checking.
_CALLS: dict = {}
_CALLS_MAX = 4096
_ARG_NAMES = ("stride", "padding", "output_padding", "dilation", "groups",
              "output_size", "padding_mode", "data_format")


_PLAIN_TYPES = frozenset({int, str, type(None)})


def _is_plain(values: tuple) -> bool:
    """Whether ``values`` holds only ints, strings, None and tuples of them
    (a loop, not a recursion per item: this runs on every call)."""
    for value in values:
        kind = type(value)
        if kind not in _PLAIN_TYPES and not (kind is tuple and _is_plain(value)):
            return False
    return True


def cpu_call(x_shape, x_dtype, w_shape, w_dtype, bias_meta, args: tuple) -> Call:
    """The :class:`Call` of ``conv_transpose`` on arrays of these shapes and
    dtypes (``bias_meta``: None or the bias's ``(shape, dtype)``) and
    arguments (in the order of ``_ARG_NAMES``), checked on first sight."""
    key = None
    if _is_plain(args):
        key = (x_shape, x_dtype, w_shape, w_dtype, bias_meta) + args
        call = _CALLS.get(key)
        if call is not None:
            return call
    bias_shape, bias_dtype = bias_meta or (None, None)
    plan = plan_call(x_shape, x_dtype, w_shape, w_dtype, bias_shape, bias_dtype,
                     **dict(zip(_ARG_NAMES, args)))
    geometry = plan.geometry
    if plan.padding_mode != "zeros":
        geometry = dataclasses.replace(
            geometry, pad_before=(0,) * geometry.rank, pad_after=(0,) * geometry.rank,
            out_spatial=tuple(b + o + a for b, o, a in zip(
                geometry.pad_before, geometry.out_spatial, geometry.pad_after)))
    call = Call(plan, geometry, np.zeros(geometry.out_channels, plan.dtype),
                plan.batch * geometry.out_channels * math.prod(geometry.out_spatial)
                * plan.dtype.itemsize, {})
    # A call that runs on the calling thread with threads to spare does so
    # with any number of them: its route need not look the count up.
    if geometry.rank <= 3 and choose_kernel(geometry, plan.batch, plan.dtype)[1] == "rows_serial":
        call.routes[None] = _route(plan, geometry, 1)
    if key is not None and len(_CALLS) < _CALLS_MAX:
        _CALLS[key] = call
    return call


_CONV_ARG_NAMES = ("stride", "padding", "dilation", "groups", "padding_mode", "data_format")


def conv_call(x_shape, x_dtype, w_shape, w_dtype, bias_meta, args: tuple) -> ConvCall:
    """The :class:`ConvCall` of ``conv`` (``args`` in the order of
    ``_CONV_ARG_NAMES``), checked and planned on first sight.

    Rank <= 3 runs on the ``conv`` kernels (:mod:`numba_deconv.cpu.correlate`).
    Otherwise, a stride-``s`` correlation reads its (padded) input at ``o*s +
    k*d``: decimated at each phase it is a sum of stride-1 correlations, and
    each of those is a stride-1 transposed convolution with the taps
    flipped, so ``conv`` runs on the same kernels as ``conv_transpose``.
    """
    key = None
    if _is_plain(args):
        key = ("conv", x_shape, x_dtype, w_shape, w_dtype, bias_meta) + args
        call = _CALLS.get(key)
        if call is not None:
            return call
    bias_shape, bias_dtype = bias_meta or (None, None)
    plan = plan_conv(x_shape, x_dtype, w_shape, w_dtype, bias_shape, bias_dtype,
                     **dict(zip(_CONV_ARG_NAMES, args)))
    g = plan.geometry  # the adjoint's: from conv's output (in_) to its input (out_)
    out_bytes = plan.batch * g.in_channels * math.prod(g.in_spatial) * plan.dtype.itemsize
    no_bias = np.zeros(g.in_channels, plan.dtype)
    choice = choose_conv_kernel(g, plan.batch, plan.dtype)
    if choice is not None:
        call = ConvCall(plan, None, no_bias, out_bytes, {})
        if choice[1] == "conv_planes_serial":  # on one thread with any count
            call.routes[None] = _conv_route(plan, 1)
        if key is not None and len(_CALLS) < _CALLS_MAX:
            _CALLS[key] = call
        return call
    padded = tuple(b + i + a for b, i, a in zip(g.pad_before, g.out_spatial, g.pad_after))
    per_dim = [polyphase(k, s, d) for k, s, d in zip(g.kernel, g.stride, g.dilation)]
    phases = []
    for choice in itertools.product(*per_dim):
        window, taps, inputs, pads, dilation, kernel = [], [], [], [], [], []
        for (r, first, count, step, shift, spacing), s, size, o in zip(
                choice, g.stride, padded, g.in_spatial):
            window.append(slice(r, None, s))
            # The phase's taps, last first: the transposed form flips them.
            taps.append(slice(first + (count - 1) * step, first - 1 if first else None, -step))
            inputs.append(len(range(r, size, s)))
            before = (count - 1) * spacing + shift
            pads.append((before, inputs[-1] - shift - o))
            dilation.append(spacing)
            kernel.append(count)
        phase_args = (1, tuple(pads), 0, tuple(dilation), g.groups, None, "zeros",
                      "channels_first")
        phases.append(ConvPhase(
            (slice(None), slice(None)) + tuple(window), (slice(None), slice(None)) + tuple(taps),
            cpu_call((plan.batch, g.out_channels) + tuple(inputs), plan.dtype,
                     (g.out_channels, g.in_channels // g.groups) + tuple(kernel),
                     plan.dtype, None, phase_args)))
    call = ConvCall(plan, phases, no_bias, out_bytes, {})
    if key is not None and len(_CALLS) < _CALLS_MAX:
        _CALLS[key] = call
    return call


def real_twin(call):
    """The real call that a complex ``Call`` or ``ConvCall`` runs as, or
    None where it runs on the complex kernels.

    A complex product is four real ones: with each channel split into two,
    its real parts and then its imaginary parts, and each weight as the
    real block ``[[re, im], [-im, re]]`` (its transpose for ``conv``), a
    complex (transposed) convolution is one real one with twice the
    channels each way, on the real kernels and their register tiles. Its
    geometry is that of the complex call's kernels (a padding mode is
    applied to the complex data around it). Channels last, the twin's
    data are the complex arrays' real views as they lie; channels first,
    the phase tiles read and write the parts where they lie, and other
    kernels take them split into channels and merged back.

    The twin's kernel is its own shape's (:func:`choose_kernel`), but
    where the complex call's shape takes the tap rows as real data, the
    twin takes them too, and so the phase tiles where one tap reaches each
    output phase (:func:`_twin_keeps`). Where the twin takes the columns
    kernel or the tap rows, the call runs on its arrays' real views
    instead (``cpu.real_views.ran_on_real_views``), with the twin's route.

    That pays where the twin takes register tiles: enough channel pairs
    per group (``TILED_MIN_CHANNEL_PAIRS``, or for ``conv_transpose``
    fewer with many taps per output phase on large images,
    ``TILED_FEW_PAIRS_*``), and work enough to leave the calling thread.
    With 64 or more channels each way it beats BLAS's complex products
    too (twin / BLAS 0.60-1.01 in ``benchmarks/TUNING.md``). Elsewhere
    copying the data in and out costs more than it saves.
    """
    if call.twin is None:
        call.twin = _make_twin(call) if _twin_pays(call) else False
    return call.twin or None


def _twin_pays(call) -> bool:
    plan = call.plan
    g = call.geometry if isinstance(call, Call) else plan.geometry
    in_g, out_g = g.in_channels // g.groups, g.out_channels // g.groups
    # The twin's tiles: enough channel pairs, or (conv_transpose) taps
    # enough on large images, as choose_kernel takes them in 1-D (its
    # fewer pairs in 2-3 dims were measured on real data only).
    busy_tiles = in_g * out_g >= config.TILED_MIN_CHANNEL_PAIRS or (
        isinstance(call, Call) and _many_taps_fill_tiles(g))
    return (plan.dtype.kind == "c" and busy_tiles
            and plan.batch * g.flops // 2 >= config.SERIAL_MAX_MULTIPLY_ADDS)


def _twin_keeps(real_kernel: str, twin_kernel: str, geometry) -> bool:
    """Whether the twin of a complex call of ``geometry`` runs the kernel
    that the call's shape takes as real data, ``real_kernel``, rather than
    its own shape's ``twin_kernel`` (see :func:`_make_twin`)."""
    if real_kernel == twin_kernel:
        return False
    return real_kernel == "tap_rows" or (
        real_kernel == "phase_tiles" and twin_kernel == "column_tiles"
        and one_tap_per_phase(geometry.kernel, geometry.stride, geometry.dilation))


def _make_twin(call):
    plan = call.plan
    real = np.empty(0, plan.dtype).real.dtype
    if isinstance(call, Call):
        g = call.geometry
        twin = cpu_call(
            (plan.batch, 2 * g.in_channels) + g.in_spatial, real,
            (2 * g.in_channels, 2 * (g.out_channels // g.groups)) + g.kernel, real,
            ((2 * g.out_channels,), real),
            (g.stride, tuple(zip(g.pad_before, g.pad_after)), g.output_padding,
             g.dilation, g.groups, None, "zeros", "channels_first"))
        # The tap rows' tiles hold a row per output channel and tap, and the
        # twin has twice its complex call's: where the complex call's shape
        # takes the tap rows as real data, its twin does too, even with
        # more output channels than choose_kernel gives them (seed 0's
        # complex r04, r11, r46, r61: 3.2-4.2x their real time, against
        # 4.7-6.2x on the BLAS or the phase tiles). With one tap per output
        # phase, where the complex call's shape takes the phase tiles, its
        # twin keeps them rather than the columns kernel that its four
        # times the weights a position would choose: the tiles read and
        # write the parts where they lie, the columns kernel splits and
        # merges them around its products (seed 0's r23 and r62 4.4-5.0x
        # their real time, 2.4-3.1x on the tiles). A call of its own, so
        # that a real call of the twin's shape keeps its choice.
        choice = choose_kernel(g, plan.batch, real) if g.rank <= 3 else None
        if choice is not None and _twin_keeps(choice[1], twin.route().kernel, g):
            twin = dataclasses.replace(twin, routes={}, serial=None, choice=choice)
        return twin
    g = plan.geometry  # the adjoint's: conv's input is its output
    pairs = tuple(zip(g.pad_before, g.pad_after))
    spatial = g.out_spatial
    if plan.padding_mode != "zeros":  # the input comes padded in its mode
        spatial = tuple(b + i + a for (b, a), i in zip(pairs, spatial))
        pairs = ((0, 0),) * g.rank
    return conv_call(
        (plan.batch, 2 * g.out_channels) + spatial, real,
        (2 * g.in_channels, 2 * (g.out_channels // g.groups)) + g.kernel, real,
        ((2 * g.in_channels,), real),
        (g.stride, pairs, g.dilation, g.groups, "zeros", "channels_first"))


def reset() -> None:
    """Forget every memoised call plan and route (after changing a tunable
    in :mod:`numba_deconv.config`), and the weights' layouts kept for them."""
    _CALLS.clear()
    work_split.columns_parts_layout.cache_clear()
    work_split.tap_rows_parts_layout.cache_clear()
    _weight_memo.forget()


def precompile(ranks: Sequence[int] = (1, 2, 3), dtypes: Sequence[DTypeLike] = DTYPES,
               strategies: Sequence[str] | None = None, layouts: Sequence[str] = LAYOUTS,
               device: Literal["cpu", "cuda"] = "cpu",
               progress: Callable[[str], None] | None = None) -> list[dict]:
    """Compile variants ahead of time into Numba's on-disk cache.

    The next process that needs one of these variants loads it from disk
    instead of compiling it (a first call then takes milliseconds, not
    seconds). On the CPU it also compiles the polls of the launcher's
    threads, which every parallel call needs.

    Parameters
    ----------
    ranks : iterable of int
        Spatial ranks (>= 1).
    dtypes : iterable of str or numpy dtype
        Any of float32, float64, complex64, complex128.
    strategies : iterable of str, optional
        CPU strategies, ``"gather"`` and/or ``"columns"`` (default both);
        the CUDA backend has one, ``"gather"``.
    layouts : iterable of str
        ``"channels_first"`` and/or ``"channels_last"``.
    device : {"cpu", "cuda"}
        Which backend's kernels to compile.
    progress : callable, optional
        Called with each variant's :func:`numba_deconv.cache_info` entry
        as soon as it is ready (the CLI prints a line per kernel).

    Returns
    -------
    list of dict
        :func:`numba_deconv.cache_info` after compiling.

    Raises
    ------
    ValueError
        For an unknown rank, dtype, strategy, layout or device.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not a backend; use 'cpu' or 'cuda'")
    for name, value in (("ranks", ranks), ("dtypes", dtypes), ("strategies", strategies),
                        ("layouts", layouts)):
        if isinstance(value, (str, bytes)):  # would be taken character by character
            raise ValueError(f"{name}={value!r} must be a sequence, e.g. [{value!r}]")
        if not hasattr(value, "__iter__") and not (name == "strategies" and value is None):
            raise TypeError(f"{name}={value!r} must be a sequence, e.g. [{value!r}]")
    ranks = tuple(ranks)
    for rank in ranks:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"ranks={ranks!r}: {rank!r} is not a spatial rank (an int >= 1)")
    names = []
    for dtype in dtypes:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise ValueError(f"dtypes: {dtype!r} is not one of {', '.join(DTYPES)}")
        names.append(name)
    known = CUDA_STRATEGIES if device == "cuda" else STRATEGIES
    strategies = tuple(known) if strategies is None else tuple(strategies)
    for strategy in strategies:
        if strategy not in known:
            raise ValueError(f"strategies: {strategy!r} is not one of {', '.join(known)}")
    for layout in layouts:
        if layout not in LAYOUTS:
            raise ValueError(f"layouts: {layout!r} is not one of {', '.join(LAYOUTS)}")
    if device == "cuda":
        from .cuda.backend import check_rank, compile_kernel

        for rank in ranks:
            check_rank(rank)
    else:
        compile_kernel = driver.compile_kernel
        # The launcher's team of threads, which runs every parallel call.
        compile_kernel("team_polls", np.int64)
    for rank in ranks:
        for name in names:
            for layout in layouts:
                for strategy in strategies:
                    layout_kernels = (CHANNELS_LAST_KERNELS.get(strategy, ())
                                      if device == "cpu" and layout == "channels_last" else ())
                    for kernel in known[strategy] + layout_kernels:
                        key = (device, int(rank), np.dtype(name), layout, strategy, kernel)
                        fresh = key not in _compiled.recorded()
                        _compiled.ensure(key, compile_kernel, kernel, np.dtype(name))
                        if progress is not None and fresh:
                            progress(_compiled.cache_info()[-1])
    return _compiled.cache_info()
