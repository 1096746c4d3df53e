"""Dask arrays in, lazy Dask arrays out: ``conv_transpose`` and ``conv``
block by block.

Each function returns a lazy ``dask.array.Array`` holding exactly what the
NumPy function computes on ``x.compute()`` (summed in another order where
spatial chunks meet). Dask is imported only inside these functions.

- Chunks along the batch map directly: when every spatial dim is one chunk,
  each block is one call of the NumPy function with the caller's arguments.
- Spatial chunks (``conv_transpose``): every input block scatters, with no
  padding, over its whole window ``[a*s, (b - 1)*s + d*(k - 1) + 1)`` of
  the full padded extent; each output block then sums the parts of the
  windows that land in it (overlap-add). Positions in the padded border are
  dropped (``zeros``) or folded back into the interior as the padding mode
  says (circular wraps to the other end, reflect mirrors, replicate adds
  onto the edge), the adjoint of the padding ``conv`` applies. Bias is
  added once, by the output block.
- Spatial chunks (``conv``): every output block reads the input window its
  taps need, taken from the input blocks it overlaps and padded per mode at
  the array's ends (circular reads across the seam), and runs one
  unpadded ``conv`` on it.
- Channels are merged into one chunk. Output blocks along a spatial dim
  start where input blocks start, mapped through the stride
  (``b*s - pad_before`` for ``conv_transpose``, ``(b + pad_before) // s``
  for ``conv``).

The geometry (sizes and pads) comes from the library's own planning
(``_plan.plan_call`` / ``_plan.plan_conv``). Every task is a module-level
function with plain arguments, so a ``dask.distributed`` worker process
unpickles it, imports ``numba_deconv`` and compiles or loads its kernels
itself.

Layering: ``api`` imports this module when given a Dask array; the tasks
reach the public NumPy functions by name at run time
(:func:`_numpy_function`) instead of importing ``api`` back.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass

import numpy as np

from . import _plan


# ---------------------------------------------------------------- the tasks

def _numpy_function(name: str):
    """The public NumPy function ``numba_deconv.<name>``, looked up when a
    task runs (on a worker: imports the package there)."""
    return getattr(importlib.import_module("numba_deconv"), name)


def _call_block(block, *, function, weight, bias, call_kwargs):
    """One whole-sample call on a block (the batch-chunks path)."""
    return _numpy_function(function)(block, weight, bias, **call_kwargs)


@dataclass(frozen=True, eq=False)
class _Assemble:
    """One output block of a spatially chunked ``conv_transpose``.

    ``pieces[m]`` belongs to the m-th partial window passed to the task: per
    spatial dim, the runs ``(src, length, dst, step)`` that add
    ``partial[src:src+length]`` to ``out[dst + step*i]`` (step 1: in place,
    -1: mirrored, 0: all onto one element).
    """

    shape: tuple
    dtype: str
    bias: object  # None or an array shaped to broadcast over the block
    spatial_axes: tuple
    pieces: tuple


@dataclass(frozen=True, eq=False)
class _Window:
    """One output block of a spatially chunked ``conv``.

    ``sample_shape`` is the window's shape without the batch axis; the
    input blocks passed to the task fill it: ``pieces[m] = (arg, runs)`` puts
    ``block[arg][src + step*i]`` at ``window[dst + i]`` along each spatial
    dim, for each run ``(dst, length, src, step)`` (step 0 repeats one
    element: replicate padding). Positions no run covers are zeros.
    """

    batch: int
    dtype: str
    sample_shape: tuple
    spatial_axes: tuple
    pieces: tuple
    weight: object
    bias: object
    kwargs: dict


@dataclass(frozen=True, eq=False)
class _Partial:
    """The arguments of one unpadded scatter (no bias)."""

    weight: object
    kwargs: dict


def _ct_partial(spec: _Partial, block):
    """The unpadded scatter of one input block, over its whole window."""
    return _numpy_function("conv_transpose")(block, spec.weight, None, **spec.kwargs)


def _ct_assemble(spec: _Assemble, *partials):
    """Overlap-add: sum the parts of the partial windows that land in this
    output block, folded per padding mode, plus the bias."""
    out = np.zeros(spec.shape, spec.dtype)
    if spec.bias is not None:
        out += spec.bias
    ndim = len(spec.shape)
    for part, runs_per_dim in zip(partials, spec.pieces):
        for combo in itertools.product(*runs_per_dim):
            src = [slice(None)] * ndim
            dst = [slice(None)] * ndim
            flips, sums = [], []
            for axis, (s0, length, d0, step) in zip(spec.spatial_axes, combo):
                src[axis] = slice(s0, s0 + length)
                if step == 1:
                    dst[axis] = slice(d0, d0 + length)
                elif step == -1:
                    dst[axis] = slice(d0 - length + 1, d0 + 1)
                    flips.append(axis)
                else:
                    dst[axis] = slice(d0, d0 + 1)
                    sums.append(axis)
            piece = part[tuple(src)]
            if sums:
                piece = piece.sum(axis=tuple(sums), keepdims=True)
            if flips:
                piece = np.flip(piece, axis=tuple(flips))
            out[tuple(dst)] += piece
    return out


def _conv_window(spec: _Window, *blocks):
    """Build this output block's input window from the input blocks (padded
    per mode at the ends) and run one unpadded ``conv`` on it."""
    window = np.zeros((spec.batch,) + spec.sample_shape, spec.dtype)
    ndim = window.ndim
    for arg, runs in spec.pieces:
        block = blocks[arg]
        for combo in itertools.product(*runs):
            src = [slice(None)] * ndim
            dst = [slice(None)] * ndim
            flips = []
            for axis, (d0, length, s0, step) in zip(spec.spatial_axes, combo):
                dst[axis] = slice(d0, d0 + length)
                if step == 1:
                    src[axis] = slice(s0, s0 + length)
                elif step == -1:
                    src[axis] = slice(s0 - length + 1, s0 + 1)
                    flips.append(axis)
                else:
                    src[axis] = slice(s0, s0 + 1)
            piece = block[tuple(src)]
            if flips:
                piece = np.flip(piece, axis=tuple(flips))
            window[tuple(dst)] = piece  # a length-1 axis broadcasts (repeats)
    return _numpy_function("conv")(window, spec.weight, spec.bias, **spec.kwargs)


# ------------------------------------------------------ index arithmetic

def _source_index(t, size, mode):
    """Where padded position ``t`` (``0 <= t < size`` is the interior) reads
    from, as ``numpy.pad`` pads (``-1``: a zero). For ``conv_transpose``
    with a padding mode the same map says where the scatter's border
    position folds to."""
    t = np.asarray(t, dtype=np.int64)
    if mode == "zeros":
        return np.where((t >= 0) & (t < size), t, -1)
    if mode == "circular":
        return t % size
    if mode == "replicate":
        return np.clip(t, 0, size - 1)
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(t)
        period = 2 * (size - 1)
        m = t % period
        return np.where(m >= size, period - m, m)
    raise ValueError(f"padding_mode={mode!r} is not a padding mode")


def _runs(target, bounds):
    """Split ``target`` (global indices along an axis chunked at ``bounds``,
    ``-1`` for none) into runs ``(position, length, chunk, local, step)``:
    ``target[position + i] = bounds[chunk] + local + step*i`` for
    ``i < length``, with step 1, -1 or 0 and every run inside one chunk."""
    target = np.asarray(target, dtype=np.int64)
    n = len(target)
    valid = target >= 0
    chunk = np.searchsorted(bounds, target, side="right") - 1
    local = target - np.asarray(bounds)[np.clip(chunk, 0, len(bounds) - 1)]
    step = np.diff(target)
    joins = valid[:-1] & valid[1:] & (chunk[:-1] == chunk[1:]) & (np.abs(step) <= 1)
    breaks = {st: np.flatnonzero(~(joins & (step == st))) for st in (1, 0, -1)}
    starts = np.flatnonzero(valid)
    runs, i = [], 0
    while True:
        k = np.searchsorted(starts, i)
        if k == len(starts):
            return runs
        i = int(starts[k])
        if i < n - 1 and joins[i]:
            st = int(step[i])
            stops = breaks[st]
            m = np.searchsorted(stops, i)
            end = int(stops[m]) if m < len(stops) else n - 1
        else:
            st, end = 1, i
        runs.append((i, end - i + 1, int(chunk[i]), int(local[i]), st))
        i = end + 1


def _bounds(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _out_bounds(starts, size):
    """Output chunk boundaries: ``0``, the mapped input block starts (clipped,
    deduplicated) and ``size``."""
    inner = sorted({int(min(max(v, 0), size)) for v in starts} - {0, size})
    return np.array([0] + inner + [size], dtype=np.int64)


# ------------------------------------------------------------- the layout

def _normalise(x, plan, rank):
    """``x`` batched, channels in one chunk and no empty spatial chunk;
    returns it with its channel axis and spatial axes."""
    if not plan.batched:
        x = x[None]
    channel_axis = rank + 1 if plan.channels_last else 1
    spatial_axes = tuple(range(1, rank + 1)) if plan.channels_last else tuple(
        range(2, rank + 2))
    chunks = list(x.chunks)
    chunks[channel_axis] = (x.shape[channel_axis],)
    for axis in spatial_axes:
        chunks[axis] = tuple(c for c in chunks[axis] if c) or chunks[axis]
    if tuple(chunks) != x.chunks:
        x = x.rechunk(tuple(chunks))
    return x, channel_axis, spatial_axes


def _sample_layout(channel_axis, spatial_axes, channels, spatial):
    """A per-sample tuple (``channels`` at the channel axis) in array order."""
    values = [None] * (len(spatial_axes) + 2)
    values[channel_axis] = channels
    for axis, v in zip(spatial_axes, spatial):
        values[axis] = v
    return tuple(values[1:])


def _finish(result, plan):
    return result if plan.batched else result[0]


def _whole_samples(x, plan, name, weight, bias, kwargs, channel_axis, spatial_axes,
                   out_channels, out_spatial):
    """Spatial dims in one chunk: one NumPy call per batch block."""
    out_chunks = (x.chunks[0],) + tuple(
        (c,) for c in _sample_layout(channel_axis, spatial_axes, out_channels, out_spatial))
    result = x.map_blocks(
        _call_block, function=name, weight=weight, bias=bias, call_kwargs=kwargs,
        chunks=out_chunks, dtype=plan.dtype, meta=np.empty((0,) * x.ndim, plan.dtype),
        name=f"{name}-dask-" + _token(x, weight, bias, kwargs))
    return _finish(result, plan)


def _token(*args):
    from dask.base import tokenize

    return tokenize(*args)


def _bias_shape(bias, dtype, ndim, channel_axis):
    if bias is None:
        return None
    shape = [1] * ndim
    shape[channel_axis] = len(bias)
    return np.asarray(bias).astype(dtype).reshape(shape)


# ---------------------------------------------------------- the functions

def conv_transpose_dask(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
                        dilation=1, groups=1, output_size=None, padding_mode="zeros",
                        data_format="channels_first"):
    """``conv_transpose`` of a Dask array, as a lazy Dask array.

    The same arguments and result as ``numba_deconv.conv_transpose`` (with
    ``x`` a ``dask.array.Array``, ``weight`` and ``bias`` NumPy arrays);
    spatial chunks are computed exactly by overlap-add (module docstring).
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    x = da.asarray(x)
    weight = np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    plan = _plan.plan_call(
        x.shape, x.dtype, weight.shape, weight.dtype,
        None if bias is None else bias.shape, None if bias is None else bias.dtype,
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, output_size=output_size, padding_mode=padding_mode,
        data_format=data_format)
    g = plan.geometry
    rank = g.rank
    x, channel_axis, spatial_axes = _normalise(x, plan, rank)

    if all(len(x.chunks[a]) == 1 for a in spatial_axes):
        kwargs = dict(stride=g.stride, padding=tuple(zip(g.pad_before, g.pad_after)),
                      output_padding=g.output_padding, dilation=g.dilation, groups=g.groups,
                      padding_mode=padding_mode, data_format=data_format)
        return _whole_samples(x, plan, "conv_transpose", weight, bias, kwargs, channel_axis,
                              spatial_axes, g.out_channels, g.out_spatial)

    # Per spatial dim: the output blocks, and for each, which input blocks'
    # windows reach it through which runs.
    out_bounds, reach = [], []
    for dim, axis in enumerate(spatial_axes):
        s, d, k = g.stride[dim], g.dilation[dim], g.kernel[dim]
        pb, size = g.pad_before[dim], g.out_spatial[dim]
        in_bounds = _bounds(x.chunks[axis])
        bounds = _out_bounds(in_bounds[1:-1] * s - pb, size)
        per_block = {q: [] for q in range(len(bounds) - 1)}
        for j, (a, b) in enumerate(zip(in_bounds[:-1], in_bounds[1:])):
            window = (b - 1 - a) * s + d * (k - 1) + 1
            target = _source_index(a * s - pb + np.arange(window), size, padding_mode)
            by_block = {}
            for src, length, q, local, step in _runs(target, bounds):
                by_block.setdefault(q, []).append((src, length, local, step))
            for q, runs in by_block.items():
                per_block[q].append((j, tuple(runs)))
        out_bounds.append(bounds)
        reach.append(per_block)

    token = _token(x, weight, bias, stride, padding, output_padding, dilation, groups,
                   output_size, padding_mode, data_format)
    partial_name = "conv_transpose-partial-" + token
    out_name = "conv_transpose-dask-" + token
    partial = _Partial(weight, dict(stride=g.stride, dilation=g.dilation, groups=g.groups,
                                    data_format=data_format))
    bias_block = _bias_shape(bias, plan.dtype, x.ndim, channel_axis)
    out_chunks = [x.chunks[0], None, None] + [None] * (rank - 1)
    out_chunks[channel_axis] = (g.out_channels,)
    for axis, bounds in zip(spatial_axes, out_bounds):
        out_chunks[axis] = tuple(int(v) for v in np.diff(bounds))

    def in_key(nb, js):
        index = [nb, 0, 0] + [0] * (rank - 1)
        for axis, j in zip(spatial_axes, js):
            index[axis] = j
        return (x.name,) + tuple(index)

    dsk = {}
    for nb in range(len(x.chunks[0])):
        for qs in itertools.product(*(range(len(b) - 1) for b in out_bounds)):
            keys, pieces = [], []
            for combo in itertools.product(*(reach[dim][q] for dim, q in enumerate(qs))):
                js = tuple(j for j, _ in combo)
                pkey = (partial_name, nb) + js
                if pkey not in dsk:
                    dsk[pkey] = (_ct_partial, partial, in_key(nb, js))
                keys.append(pkey)
                pieces.append(tuple(runs for _, runs in combo))
            index = [nb, 0, 0] + [0] * (rank - 1)
            shape = [x.chunks[0][nb], g.out_channels, 0] + [0] * (rank - 1)
            for axis, q, bounds in zip(spatial_axes, qs, out_bounds):
                index[axis] = q
                shape[axis] = int(bounds[q + 1] - bounds[q])
            shape[channel_axis] = g.out_channels
            spec = _Assemble(tuple(shape), plan.dtype.str, bias_block, spatial_axes,
                             tuple(pieces))
            dsk[(out_name,) + tuple(index)] = (_ct_assemble, spec) + tuple(keys)
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=[x])
    result = da.Array(graph, out_name, tuple(out_chunks), meta=np.empty((0,) * x.ndim,
                                                                        plan.dtype))
    return _finish(result, plan)


def conv_dask(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
              padding_mode="zeros", data_format="channels_first"):
    """``conv`` of a Dask array, as a lazy Dask array.

    The same arguments and result as ``numba_deconv.conv`` (with ``x`` a
    ``dask.array.Array``, ``weight`` and ``bias`` NumPy arrays); spatial
    chunks read overlapping, mode-padded input windows (module docstring).
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    x = da.asarray(x)
    weight = np.asarray(weight)
    bias = None if bias is None else np.asarray(bias)
    plan = _plan.plan_conv(
        x.shape, x.dtype, weight.shape, weight.dtype,
        None if bias is None else bias.shape, None if bias is None else bias.dtype,
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, data_format=data_format)
    g = plan.geometry  # of the adjoint: its in_spatial is conv's output
    rank = g.rank
    out_channels, out_spatial, in_spatial = g.in_channels, g.in_spatial, g.out_spatial
    x, channel_axis, spatial_axes = _normalise(x, plan, rank)
    pairs = tuple(zip(g.pad_before, g.pad_after))

    if all(len(x.chunks[a]) == 1 for a in spatial_axes):
        kwargs = dict(stride=g.stride, padding=pairs, dilation=g.dilation, groups=g.groups,
                      padding_mode=padding_mode, data_format=data_format)
        return _whole_samples(x, plan, "conv", weight, bias, kwargs, channel_axis,
                              spatial_axes, out_channels, out_spatial)

    # Per spatial dim: the output blocks, and for each, its input window as
    # runs over the input blocks.
    out_bounds, windows = [], []
    for dim, axis in enumerate(spatial_axes):
        s, d, k = g.stride[dim], g.dilation[dim], g.kernel[dim]
        pb, size = g.pad_before[dim], out_spatial[dim]
        in_bounds = _bounds(x.chunks[axis])
        bounds = _out_bounds((in_bounds[1:-1] + pb) // s, size)
        per_block = []
        for o0, o1 in zip(bounds[:-1], bounds[1:]):
            length = (o1 - 1 - o0) * s + d * (k - 1) + 1
            source = _source_index(o0 * s - pb + np.arange(length), in_spatial[dim],
                                   padding_mode)
            per_block.append((int(length), tuple(_runs(source, in_bounds))))
        out_bounds.append(bounds)
        windows.append(per_block)

    token = _token(x, weight, bias, stride, padding, dilation, groups, padding_mode,
                   data_format)
    out_name = "conv-dask-" + token
    kwargs = dict(stride=g.stride, dilation=g.dilation, groups=g.groups,
                  data_format=data_format)
    out_chunks = [x.chunks[0], None, None] + [None] * (rank - 1)
    out_chunks[channel_axis] = (out_channels,)
    for axis, bounds in zip(spatial_axes, out_bounds):
        out_chunks[axis] = tuple(int(v) for v in np.diff(bounds))

    dsk = {}
    for nb in range(len(x.chunks[0])):
        for qs in itertools.product(*(range(len(b) - 1) for b in out_bounds)):
            per_dim = [windows[dim][q] for dim, q in enumerate(qs)]
            # group each dim's runs by the input block they read
            grouped = []
            for _, runs in per_dim:
                by_block = {}
                for dst, length, j, src, step in runs:
                    by_block.setdefault(j, []).append((dst, length, src, step))
                grouped.append(by_block)
            keys, pieces = [], []
            for js in itertools.product(*(sorted(gr) for gr in grouped)):
                index = [nb, 0, 0] + [0] * (rank - 1)
                for axis, j in zip(spatial_axes, js):
                    index[axis] = j
                keys.append((x.name,) + tuple(index))
                pieces.append((len(keys) - 1, tuple(tuple(gr[j]) for gr, j in
                                                     zip(grouped, js))))
            sample = _sample_layout(channel_axis, spatial_axes, x.shape[channel_axis],
                                    [length for length, _ in per_dim])
            spec = _Window(x.chunks[0][nb], x.dtype.str, sample, spatial_axes, tuple(pieces),
                           weight, bias, kwargs)
            index = [nb, 0, 0] + [0] * (rank - 1)
            for axis, q in zip(spatial_axes, qs):
                index[axis] = q
            dsk[(out_name,) + tuple(index)] = (_conv_window, spec) + tuple(keys)
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=[x])
    result = da.Array(graph, out_name, tuple(out_chunks), meta=np.empty((0,) * x.ndim,
                                                                        plan.dtype))
    return _finish(result, plan)
