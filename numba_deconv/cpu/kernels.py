"""Numba CPU kernels, in the rank-3 form (channels first unless named).

- ``direct_rows``: the gather strategy's row kernel, one task per chunk of
  output rows (on the calling thread alone for tiny calls, ``rows_serial``).
- ``direct_planes``: the gather strategy for short rows, one long loop per
  tap over a block of zero-padded rows.
- ``col2im``: folds the BLAS kernel's columns into the output.

Ranks 1 and 2 reach these kernels as rank 3 with unit leading dims (a free
reshape), so one compiled kernel per dtype serves ranks 1-3. Every kernel
is a *gather*: a task owns a set of output rows ``out[n, c, od, oh, :]``,
writes nothing else, and sums the taps that reach them in a fixed order, so
results are identical run to run and inserted zeros are never multiplied.

Phase decomposition (:mod:`numba_deconv._phases`): along W, output
``ow = j*s + r`` receives tap ``kw`` from input ``iw = j - q`` where
``kw*d - p = q*s + r``. So each row is
accumulated split by phase, ``acc[r, j]``, where every tap adds a contiguous
stretch of an input row to a contiguous stretch of one phase (a loop LLVM
vectorises), and the phases are interleaved into the output row at the
end. Along D and H, which taps reach an output row is looked up in small
tables built once per call, so no division runs per row.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import _phases
from ..config import FASTMATH
from . import atomics, simd
from .views import flat


_tap_source = njit(inline="always")(_phases.tap_source)
_tap_inputs = njit(inline="always")(_phases.tap_inputs)


@njit(nogil=True, cache=True)
def _sources(out_size, taps, stride, dilation, pad, in_size):
    """``table[o, k]``: the input index reaching output ``o`` through tap
    ``k``, or -1 where none does."""
    table = np.empty((out_size, taps), dtype=np.int64)
    for o in range(out_size):
        for k in range(taps):
            table[o, k] = _tap_source(o, k, stride, dilation, pad, in_size)
    return table


@njit(nogil=True, cache=True)
def _phase_spans(taps, stride, dilation, pad, in_size, out_size):
    """Per tap ``kw``: phase ``r``, shift ``q`` and the input range
    ``[lo, hi)`` whose outputs ``(iw + q)*s + r`` exist."""
    spans = np.empty((taps, 4), dtype=np.int64)
    for k in range(taps):
        spans[k, 0], spans[k, 1], spans[k, 2], spans[k, 3] = _tap_inputs(
            k, stride, dilation, pad, in_size, out_size)
    return spans


# The inner loops run over flat (raveled) arrays with unsigned offsets.
# Measured on the depthwise case: multi-dimensional indexing inside the
# loop was 4.5x slower (per-dim index arithmetic and Numba's negative-index
# wraparound branch block vectorisation), and sliced views cost atomic
# reference-count updates per row.
@njit(inline="always")
def _axpy(acc, dst, x, src, length, weight):
    """acc[dst + t] += weight * x[src + t] for t < length (flat arrays)."""
    d = np.uint64(dst)
    s = np.uint64(src)
    for t in range(np.uint64(length)):
        acc[d + t] += weight * x[s + t]


@njit(inline="always")
def _axpy2(acc, dst, x, src0, src1, length, weight0, weight1):
    """acc[dst + t] += weight0 * x[src0 + t] + weight1 * x[src1 + t]."""
    d = np.uint64(dst)
    s0 = np.uint64(src0)
    s1 = np.uint64(src1)
    for t in range(np.uint64(length)):
        acc[d + t] += weight0 * x[s0 + t] + weight1 * x[s1 + t]


@njit(inline="always")
def _add(acc, dst, x, src, length):
    """acc[dst + t] += x[src + t] for t < length (flat arrays)."""
    d = np.uint64(dst)
    s = np.uint64(src)
    for t in range(np.uint64(length)):
        acc[d + t] += x[s + t]


def _element_lines(s_w, indent):
    """Source lines, at ``indent`` spaces, of :func:`_interleave_elements`
    on ``(acc, first, phase_stride, s_w, bias, out, at, count)`` with the
    stride ``s_w`` spelled in (a number, or the name of a variable)."""
    lines = ["base = np.uint64(at)",
             f"for r in range(min({s_w}, count)):",
             "    ar = np.uint64(first + r * phase_stride)",
             f"    for j in range(np.uint64((count - r + {s_w} - 1) // {s_w})):",
             f"        out[base + j * np.uint64({s_w}) + np.uint64(r)] = acc[ar + j] + bias"]
    return "".join(" " * indent + line + "\n" for line in lines)


def _spelled(name, arguments, body):
    """The function ``name(arguments)`` with the source lines ``body``,
    jitted to be inlined."""
    namespace = {"simd": simd, "np": np}
    exec(f"def {name}({arguments}):\n{body}", namespace)
    return njit(inline="always")(namespace[name])


# out[at + j*s_w + r] = acc[first + r*phase_stride + j] + bias, the
# ``count`` outputs of a row (or a stretch of one that starts at phase 0)
# from its phases (flat arrays), one element at a time: any dtype, any
# stride. Inlined, though every copy costs compile time: rows shorter than
# a vector take only this path, and as a call it kept LLVM from
# specialising the kernels' row loops (1x1 kernels on 3-D images ran at
# half the speed, or worse).
_interleave_elements = _spelled(
    "_interleave_elements", "acc, first, phase_stride, s_w, bias, out, at, count",
    _element_lines("s_w", 4))


def _vector_lines(s_w, indent):
    """Source lines, at ``indent`` spaces, that write the ``count`` outputs
    from ``at`` of a row of stride ``s_w`` from its phases in ``acc`` (from
    ``first``, ``phase_stride`` apart) plus ``bias``: a vector of each phase
    at a time, shuffled into ``s_w`` vectors of consecutive outputs, then
    the last outputs one at a time."""
    phases = ", ".join(f"simd.add(simd.load(acc, first + {r} * phase_stride + j), b)"
                       for r in range(s_w))
    lines = ["lanes = simd.lanes(acc)",
             "b = simd.splat(acc, bias)",
             f"whole = count // ({s_w} * lanes) * lanes",
             "for j in range(0, whole, lanes):",
             f"    simd.store_interleaved(out, at + {s_w} * j, ({phases},))",
             "first += whole",
             f"at += {s_w} * whole",
             f"count -= {s_w} * whole"]
    return "".join(" " * indent + line + "\n" for line in lines) + _element_lines(s_w, indent)


# out[at + 2j + r] = acc[first + r*phase_stride + j] + bias for the
# ``count`` outputs of a stretch of a row that starts at phase 0 (flat
# arrays), at stride 2: complex values from their parts
# (interleave_parts_real).
_interleave2 = _spelled("_interleave2", "acc, first, phase_stride, bias, out, at, count",
                        _vector_lines(2, 4))

# The same for any stride: in vector shuffles for strides 1, 2 and 4 (the
# common ones; each is compiled into every kernel that interleaves), one
# element at a time for the others. One body with no helpers to inline:
# Numba copies and types an inlined function's own inlined helpers anew at
# every site, and this as a dispatch over a function per stride, each
# inlining _interleave_elements, cost 3-6 s more compile a site (float32,
# fresh cache: col2im 24.8 -> 15.5 s, rows_serial 20.5 -> 14-16 s).
_interleave_vectors = _spelled(
    "_interleave_vectors", "acc, first, phase_stride, s_w, bias, out, at, count",
    "".join(f"    {'if' if s_w == 1 else 'elif'} s_w == {s_w}:\n" + _vector_lines(s_w, 8)
            for s_w in (1, 2, 4))
    + "    else:\n" + _element_lines("s_w", 8))


def _spelled_interleave_complex(s_w):
    """Source of :func:`_interleave_complex_vectors` for a stride of
    ``s_w``, on the real views of complex arrays (``first``,
    ``phase_stride``, ``at`` and ``count`` in complex elements): the real
    and imaginary parts of a vector of each phase, plus the bias's, then
    shuffled into ``2 * s_w`` vectors of consecutive outputs' parts. The
    sums are the complex ones (a complex add is one per part); returns how
    many of the ``count`` outputs it wrote."""
    loads = "\n".join(
        f"        re{r}, im{r} = simd.load_ways(af, 2 * (first + {r} * phase_stride + j), 2)"
        for r in range(s_w))
    parts = ", ".join(f"simd.add(re{r}, b_re), simd.add(im{r}, b_im)" for r in range(s_w))
    source = f"""
def _interleave_complex{s_w}(af, first, phase_stride, bias_re, bias_im, of, at, count):
    lanes = simd.lanes(af)
    b_re = simd.splat(af, bias_re)
    b_im = simd.splat(af, bias_im)
    whole = count // ({s_w} * lanes) * lanes
    for j in range(0, whole, lanes):
{loads}
        simd.store_interleaved(of, 2 * (at + {s_w} * j), ({parts},))
    return {s_w} * whole
"""
    namespace = {"simd": simd}
    exec(source, namespace)
    return njit(inline="always")(namespace[f"_interleave_complex{s_w}"])


_interleave_complex1, _interleave_complex2, _interleave_complex4 = (
    _spelled_interleave_complex(s_w) for s_w in (1, 2, 4))


# interleave_real(acc, first, phase_stride, s_w, bias, out, row, o_w):
# :func:`interleave` for float32/float64 arrays only, for the kernels that
# take no other dtype: Numba types an overload inlined with
# ``inline="always"`` anew at each resolution, which cost
# :func:`.tiled.direct_tiled` 3-7 s of its 27-29 s compile. The body itself,
# not a function that calls it: Numba runs its untyped passes on every
# level of an inlined chain and copies each level's IR at every site: the
# extra level made the inlining at its 19 sites in the float32 kernels
# take 24.0 s instead of 12.9 s (``benchmarks/TUNING.md``).
interleave_real = _interleave_vectors


@njit(inline="always")
def interleave_parts_real(parts, first, part_stride, out, at, count):
    """:func:`interleave_parts` for float32/float64 arrays only (see
    :func:`interleave_real`)."""
    _interleave2(parts, first, part_stride, -0.0, out, at, 2 * count)


def interleave_parts(parts, first, part_stride, out, at, count):
    """``out[at + 2*j + p] = parts[first + p*part_stride + j]`` for ``j <
    count``, ``p < 2`` (flat arrays): a stretch of complex values from its
    real and imaginary parts; in vector shuffles for float32/float64,
    element by element for other dtypes. Adding -0.0 leaves every value as
    it is, signed zeros too. Jitted code only."""
    raise NotImplementedError("interleave_parts is for jitted code")


@overload(interleave_parts, inline="always")
def _interleave_parts_for(parts, first, part_stride, out, at, count):
    if parts.dtype in (types.float32, types.float64) and out.dtype == parts.dtype:
        def in_vectors(parts, first, part_stride, out, at, count):
            interleave_parts_real(parts, first, part_stride, out, at, count)
        return in_vectors

    def by_element(parts, first, part_stride, out, at, count):
        _interleave_elements(parts, first, part_stride, 2, -0.0, out, at, 2 * count)
    return by_element


def interleave(acc, first, phase_stride, s_w, bias, out, row, o_w):
    """out[row + j*s_w + r] = acc[first + r*phase_stride + j] + bias: one
    output row (or a stretch of one that starts at phase 0) from its phases,
    flat arrays; in vector shuffles for float32/float64, and for complex
    data on their parts, element by element for other dtypes. Jitted code
    only."""
    raise NotImplementedError("interleave is for jitted code")


@overload(interleave, inline="always")
def _interleave_for(acc, first, phase_stride, s_w, bias, out, row, o_w):
    if acc.dtype in (types.float32, types.float64) and out.dtype == acc.dtype:
        def in_vectors(acc, first, phase_stride, s_w, bias, out, row, o_w):
            interleave_real(acc, first, phase_stride, s_w, bias, out, row, o_w)
        return in_vectors

    if acc.dtype in (types.complex64, types.complex128) and out.dtype == acc.dtype:
        real = np.float32 if acc.dtype == types.complex64 else np.float64

        # Complex rows element by element took most of a depthwise call
        # (complex64: 2.5 of 4.3 ms, float32 0.57 of 1.0 ms).
        # How many outputs the vectors write is counted here, without a
        # branch: ``done`` set in the branches below tripped Numba's IR
        # checks (a NumbaIRAssumptionWarning on every compile inlining it).
        def in_parts(acc, first, phase_stride, s_w, bias, out, row, o_w):
            af, of = acc.view(real), out.view(real)
            step = s_w * simd.lanes(af)
            done = o_w // step * step * ((s_w == 1) | (s_w == 2) | (s_w == 4))
            if s_w == 1:
                _interleave_complex1(af, first, phase_stride, bias.real, bias.imag, of, row,
                                     o_w)
            elif s_w == 2:
                _interleave_complex2(af, first, phase_stride, bias.real, bias.imag, of, row,
                                     o_w)
            elif s_w == 4:
                _interleave_complex4(af, first, phase_stride, bias.real, bias.imag, of, row,
                                     o_w)
            if done < o_w:
                _interleave_elements(acc, first + done // s_w, phase_stride, s_w, bias, out,
                                     row + done, o_w - done)
        return in_parts

    def by_element(acc, first, phase_stride, s_w, bias, out, row, o_w):
        _interleave_elements(acc, first, phase_stride, s_w, bias, out, row, o_w)
    return by_element


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _direct_row_range(xf, wf, bias, of, af, dims, groups, src_d, src_h, spans, first, last, s_w):
    """Output rows ``first <= row < last`` (flat over N, C_out, OD, OH).

    ``xf``, ``wf`` and ``of`` are x (N, C_in, D, H, W), w (C_in,
    C_out/groups, KD, KH, KW) and out (N, C_out, OD, OH, OW) raveled,
    ``dims`` ``(C_in, D, H, W, C_out/groups, KD, KH, KW, C_out, OD, OH,
    OW)``; ``src_d``, ``src_h`` and ``spans`` the raveled tables of
    :func:`_sources` and :func:`_phase_spans`. ``af`` is the phase buffer,
    ``min(s_w, OW)`` phases of ``ceil(OW / s_w)`` (phases at or past the
    row's end have no outputs: a stride beyond the output size would
    otherwise size it by the stride). Flat arguments, so that a tiny
    call's kernel (:func:`rows_tiny`) reshapes nothing: each reshape calls
    into Numba's helper library, and with nine of them the TF worked
    example's kernel took 1.14-2.01 us, 0.80-0.95 without.
    """
    c_in, i_d, i_h, i_w, c_out_g, k_d, k_h, k_w, c_out, o_d, o_h, o_w = dims
    c_in_g = c_in // groups
    phase_len = (o_w + s_w - 1) // s_w
    w_ci_stride = c_out_g * k_d * k_h * k_w
    # Decode the first row once, then step (n, co, od, oh) like an odometer:
    # integer division per row cost as much as a depthwise row's arithmetic.
    oh = first % o_h
    rest = first // o_h
    od = rest % o_d
    rest //= o_d
    co = rest % c_out
    n = rest // c_out
    g = co // c_out_g
    co_g = co - g * c_out_g
    for row in range(first, last):
        af[:] = 0
        for kd in range(k_d):
            i_dd = src_d[od * k_d + kd]
            if i_dd < 0:
                continue
            for kh in range(k_h):
                i_hh = src_h[oh * k_h + kh]
                if i_hh < 0:
                    continue
                for ci in range(g * c_in_g, (g + 1) * c_in_g):
                    x_row = (((n * c_in + ci) * i_d + i_dd) * i_h + i_hh) * i_w
                    w_taps = ci * w_ci_stride + ((co_g * k_d + kd) * k_h + kh) * k_w
                    for kw in range(k_w):
                        phase, shift, lo, hi = (spans[4 * kw], spans[4 * kw + 1],
                                                spans[4 * kw + 2], spans[4 * kw + 3])
                        if hi > lo:
                            _axpy(af, phase * phase_len + shift + lo, xf, x_row + lo, hi - lo,
                                  wf[w_taps + kw])
        interleave(af, 0, phase_len, s_w, bias[co], of, row * o_w, o_w)
        oh += 1
        if oh == o_h:
            oh = 0
            od += 1
            if od == o_d:
                od = 0
                co += 1
                co_g += 1
                if co_g == c_out_g:
                    co_g = 0
                    g += 1
                if co == c_out:
                    co = co_g = g = 0
                    n += 1


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def direct_rows(x, w, bias, out, groups, stride, dilation, pad, n_chunks, claimed, cancel):
    """Transposed convolution straight from ``x`` and ``w`` (few channels).

    x (N, C_in, D, H, W), w (C_in, C_out/groups, KD, KH, KW), bias (C_out,),
    out (N, C_out, OD, OH, OW), all C-contiguous; stride, dilation, pad:
    3-tuples (pad is the before-padding; the after-padding is implied by
    out's shape). The output rows are shared out in ``n_chunks`` chunks,
    which the threads running this task kernel claim from ``claimed``
    (:func:`.launch.parallel`), each with its own phase buffer.
    """
    src_d = _sources(out.shape[2], w.shape[2], stride[0], dilation[0], pad[0], x.shape[2])
    src_h = _sources(out.shape[3], w.shape[3], stride[1], dilation[1], pad[1], x.shape[3])
    spans = _phase_spans(w.shape[4], stride[2], dilation[2], pad[2], x.shape[4], out.shape[4])
    rows = out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3]
    s_w = stride[2]
    dims = x.shape[1:] + w.shape[1:] + out.shape[1:]
    while True:
        chunk = atomics.claim(claimed)
        if chunk >= n_chunks or atomics.cancelled(cancel):
            break
        acc = np.empty(min(s_w, out.shape[4]) * ((out.shape[4] + s_w - 1) // s_w),
                       dtype=out.dtype)
        _direct_row_range(flat(x), flat(w), bias, flat(out), acc, dims, groups,
                          flat(src_d), flat(src_h), flat(spans),
                          chunk * rows // n_chunks, (chunk + 1) * rows // n_chunks, s_w)


def row_geometry(x_shape, w_shape, out_shape, groups, stride, dilation, pad):
    """What :func:`rows_tiny` needs of a call shape (rank 3, as
    :func:`direct_rows` takes it), worked out once: an int64 array of
    ``x_shape`` and ``out_shape`` (5 each), ``groups``, the W stride, then
    direct_rows's tables of sources along D and H and spans along W."""
    src_d = _sources(out_shape[2], w_shape[2], stride[0], dilation[0], pad[0], x_shape[2])
    src_h = _sources(out_shape[3], w_shape[3], stride[1], dilation[1], pad[1], x_shape[3])
    spans = _phase_spans(w_shape[4], stride[2], dilation[2], pad[2], x_shape[4], out_shape[4])
    head = np.array(tuple(x_shape) + tuple(out_shape) + (groups, stride[2]), dtype=np.int64)
    return np.concatenate((head, src_d.ravel(), src_h.ravel(), spans.ravel()))


@njit(nogil=True, cache=True)
def rows_tiny(x, w, bias, out, geometry):
    """:func:`direct_rows` on the calling thread, for a tiny call with
    nothing between the caller and the kernel: the same rows in the same
    order, so the same bits. ``x`` and ``out`` as the caller shapes them
    (C-contiguous), ``w`` (C_in, C_out/groups, KD, KH, KW), ``geometry``
    from :func:`row_geometry`. A call's layers in Python (reshapes, tables,
    a task counter) cost more than its arithmetic (the TF worked example:
    0.25 us of 3.4)."""
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    o_d, o_h, o_w = geometry[7], geometry[8], geometry[9]
    groups, s_w = geometry[10], geometry[11]
    dims = (geometry[1], geometry[2], geometry[3], geometry[4], c_out_g, k_d, k_h, k_w,
            geometry[6], o_d, o_h, o_w)
    src_d = geometry[12:12 + o_d * k_d]
    src_h = geometry[12 + o_d * k_d:12 + o_d * k_d + o_h * k_h]
    spans = geometry[12 + o_d * k_d + o_h * k_h:]
    rows = geometry[5] * geometry[6] * o_d * o_h
    acc = np.empty(min(s_w, o_w) * ((o_w + s_w - 1) // s_w), dtype=out.dtype)
    # np.int64(0), not 0: a literal first row would make Numba compile
    # _direct_row_range a second time (seconds) instead of reusing direct_rows's.
    _direct_row_range(flat(x), flat(w), bias, flat(out), acc, dims, groups,
                      src_d, src_h, spans, np.int64(0), rows, s_w)


@njit(nogil=True, cache=True)
def rows_tiny_last(x, w, bias, out, geometry):
    """:func:`rows_tiny` of a channels-last call: ``x`` (N, *I, C_in) and
    ``out`` (N, *O, C_out), or unbatched, C-contiguous; ``w`` and ``geometry`` as
    :func:`rows_tiny` takes them for the channels-first call. The input is
    moved channels first into scratch, the rows computed there and moved
    back: what a larger channels-last call does with its transposes around
    the same row kernel, so the same bits, without the Python layers around
    them (a 4 -> 4 channel call on 64 positions: 12 us a call that way, of
    which the rows are 3)."""
    n, c_in, c_out = geometry[0], geometry[1], geometry[6]
    p_in = geometry[2] * geometry[3] * geometry[4]
    p_out = geometry[7] * geometry[8] * geometry[9]
    xf, of = flat(x), flat(out)
    x_first = np.empty((n, c_in, p_in), dtype=x.dtype)
    for b in range(n):
        for p in range(p_in):
            for c in range(c_in):
                x_first[b, c, p] = xf[(b * p_in + p) * c_in + c]
    out_first = np.empty((n, c_out, p_out), dtype=out.dtype)
    rows_tiny(x_first, w, bias, out_first, geometry)
    for b in range(n):
        for p in range(p_out):
            for c in range(c_out):
                of[(b * p_out + p) * c_out + c] = out_first[b, c, p]


@njit(nogil=True, cache=True)
def _plane_layout(k_w, s_w, d_w, p_w, i_w, o_w):
    """Row geometry of the plane kernel: (P, L, phase_len).

    Input rows are copied zero-padded as ``xp[..., P + iw]`` in rows of
    length ``L``, so that for every tap ``kw`` (shift ``q``) and every output
    phase index ``j < phase_len`` the input ``j - q`` lies inside the same
    padded row; positions ``j >= phase_len`` of an accumulator row are
    scratch that absorbs what spills over from the neighbouring row.
    """
    q_min = (0 * d_w - p_w) // s_w
    q_max = ((k_w - 1) * d_w - p_w) // s_w
    phase_len = (o_w + s_w - 1) // s_w
    pad = max(q_max, 0)
    length = max(pad + phase_len - q_min, pad + i_w)
    return pad, length, phase_len


@njit(inline="always")
def copy_elements(dst, dst_first, src, src_first, length):
    """dst[dst_first + t] = src[src_first + t] for t < length (flat arrays)."""
    d = np.uint64(dst_first)
    s = np.uint64(src_first)
    for t in range(np.uint64(length)):
        dst[d + t] = src[s + t]


@njit(nogil=True, cache=True, _nrt=False)
def _load_planes(padded, xf, src, planes, i_h, i_w, plane_len, length, x_pad):
    """:func:`direct_planes`' padded planes: input row ``h`` of plane ``p``
    (from ``xf[src:]``) to ``padded[p * plane_len + h * length + x_pad:]``.
    Without reference counts (see :func:`_plane_task_sums`)."""
    for plane in range(planes):
        for h in range(i_h):
            copy_elements(padded, plane * plane_len + h * length + x_pad, xf,
                          src + (plane * i_h + h) * i_w, i_w)


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _write_rows(acc, n_rows, length, s_w, bias, of, first_row, s_h, o_w):
    """:func:`direct_planes`' ``n_rows`` output rows of a task, ``s_h``
    rows apart from ``first_row``, each from its phases in ``acc`` plus
    ``bias`` (:func:`interleave`). Without reference counts (see
    :func:`_plane_task_sums`)."""
    for jh in range(n_rows):
        interleave(acc, jh * length, n_rows * length, s_w, bias, of,
                   (first_row + jh * s_h) * o_w, o_w)


@njit(nogil=True, cache=True, fastmath=FASTMATH, _nrt=False)
def _plane_task_sums(acc, padded, wf, src_d, spans, od, rh, jh_first, jh_last, g, co_g, c_in_g,
                     i_d, i_h, kernel, s_h, s_w, d_h, p_h, plane_len, length, x_pad,
                     w_ci_stride):
    """:func:`direct_planes`' sums of one task (output rows ``jh_first ..
    jh_last`` of phase ``rh``, plane ``od``, channel ``co_g`` of group
    ``g``) into ``acc``, every tap a stretch of the padded planes. Without
    reference counts (see :mod:`.register_tiles`): inlined there, every
    stretch added, row copied and row written counted its two arrays up
    and down: 131000 counts up a call of depthwise_2d on complex data."""
    k_d, k_h, k_w = kernel
    n_rows = jh_last - jh_first
    for kd in range(k_d):
        i_dd = src_d[od, kd]
        if i_dd < 0:
            continue
        for kh in range(k_h):
            t = rh + p_h - kh * d_h
            if t % s_h != 0:
                continue
            c = t // s_h  # this tap reads input row jh + c
            lo = max(jh_first, -c)
            hi = min(jh_last, i_h - c)
            if hi <= lo:
                continue
            for ci in range(c_in_g):
                x_rows = (ci * i_d + i_dd) * plane_len + (lo + c) * length + x_pad
                w_taps = ((g * c_in_g + ci) * w_ci_stride
                          + ((co_g * k_d + kd) * k_h + kh) * k_w)
                # Taps kw and kw + s_w feed the same phase: add them in one
                # pass, halving the accumulator's traffic.
                for kw in range(min(s_w, k_w)):
                    dst = (spans[kw, 0] * n_rows + lo - jh_first) * length
                    for k2 in range(kw, k_w - s_w, 2 * s_w):
                        _axpy2(acc, dst, padded, x_rows - spans[k2, 1],
                               x_rows - spans[k2 + s_w, 1], (hi - lo) * length,
                               wf[w_taps + k2], wf[w_taps + k2 + s_w])
                    last = kw + ((k_w - 1 - kw) // s_w) * s_w
                    if ((k_w - 1 - kw) // s_w) % 2 == 0:
                        _axpy(acc, dst, padded, x_rows - spans[last, 1], (hi - lo) * length,
                              wf[w_taps + last])


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def direct_planes(x, w, bias, out, groups, stride, dilation, pad, n_blocks, n_chunks,
                  claimed, cancel):
    """The direct strategy over whole planes, for short rows and finite weights.

    A task owns output rows ``oh = jh*s_h + rh`` for one ``(n, co, od, rh)``
    and a block of ``jh``: for phase ``rh`` the same H taps reach every such
    row, from input rows ``jh + c``, so on a copy of the input with
    zero-padded rows (layout from :func:`_plane_layout`) each tap
    ``(kh, kw)`` adds one long contiguous stretch to the accumulator, across
    all rows of the block at once (the row kernel pays loop overheads per
    row instead). Zero padding adds ``0 * w``, which is 0 only for finite
    weights: the caller checks. Tasks are shared out in ``n_chunks``
    chunks, claimed as :func:`direct_rows` claims them; each chunk keeps one
    accumulator and the padded planes of the image and group it is working
    on.
    """
    n_batch, c_in, i_d, i_h, i_w = x.shape
    c_out_g, k_d, k_h, k_w = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    c_out, o_d, o_h, o_w = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    c_in_g = c_in // groups
    s_h, s_w = stride[1], stride[2]
    d_h, p_h = dilation[1], pad[1]
    x_pad, length, _ = _plane_layout(k_w, s_w, dilation[2], pad[2], i_w, o_w)
    src_d = _sources(o_d, k_d, stride[0], dilation[0], pad[0], i_d)
    spans = _phase_spans(k_w, s_w, dilation[2], pad[2], i_w, o_w)
    block = ((o_h + s_h - 1) // s_h + n_blocks - 1) // n_blocks
    xf, wf, of = x.reshape(-1), w.reshape(-1), out.reshape(-1)
    w_ci_stride = c_out_g * k_d * k_h * k_w
    plane_len = (i_h + 1) * length  # one spare zero row absorbs overreads
    tasks = n_batch * c_out * o_d * s_h * n_blocks
    while True:
        chunk = atomics.claim(claimed)
        if chunk >= n_chunks or atomics.cancelled(cancel):
            break
        acc = np.empty(s_w * block * length, dtype=out.dtype)
        padded = np.zeros(c_in_g * i_d * plane_len, dtype=x.dtype)
        loaded = -1  # which (n, g) the padded planes hold
        for task in range(chunk * tasks // n_chunks, (chunk + 1) * tasks // n_chunks):
            b = task % n_blocks
            rest = task // n_blocks
            rh = rest % s_h
            rest //= s_h
            od = rest % o_d
            rest //= o_d
            co = rest % c_out
            n = rest // c_out
            g = co // c_out_g
            co_g = co - g * c_out_g
            if n * groups + g != loaded:
                _load_planes(padded, xf, (n * c_in + g * c_in_g) * i_d * i_h * i_w,
                             c_in_g * i_d, i_h, i_w, plane_len, length, x_pad)
                loaded = n * groups + g
            jh_first = b * block
            jh_last = min(jh_first + block, (o_h - rh + s_h - 1) // s_h)
            n_rows = jh_last - jh_first
            if n_rows <= 0:
                continue
            acc[:s_w * n_rows * length] = 0
            _plane_task_sums(acc, padded, wf, src_d, spans, od, rh, jh_first, jh_last, g, co_g,
                             c_in_g, i_d, i_h, (k_d, k_h, k_w), s_h, s_w, d_h, p_h, plane_len,
                             length, x_pad, w_ci_stride)
            _write_rows(acc, n_rows, length, s_w, bias[co], of,
                        ((n * c_out + co) * o_d + od) * o_h + jh_first * s_h + rh, s_h, o_w)


@njit(inline="always")
def padded_row(k_w, s_w, d_w, p_w, i_w, per_phase):
    """``(lead, length)``: where an input row goes, at ``padded[lead + iw]``,
    in a zero-padded row of ``length`` positions that holds every input a W
    tap of any phase reads for ``per_phase`` outputs (the zeros are set once:
    each copy overwrites the row alone)."""
    lead = max(((k_w - 1) * d_w - p_w) // s_w, 0)
    return lead, lead + max(i_w, per_phase - (-p_w // s_w))


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def col2im(cols, bias, out, co_first, od_first, oh_first, out_d, out_h,
           stride, dilation, pad):
    """Fold GEMM columns into a block of one image's output.

    cols (C, KD, KH, KW, D, H, W) holds ``w[ci, co, k] * x[ci, i]`` already
    summed over the input channels, for output channels ``co_first ..
    co_first + C``; they fill the output block ``od_first .. + out_d``,
    ``oh_first .. + out_h`` (all of W) of out (C_out, OD, OH, OW), which is
    C-contiguous; bias (C_out,); ``pad`` is relative to the first input
    plane of ``cols``. Serial and ``nogil``: the GEMM driver runs one call
    per task in its own threads, each task owning its output block.
    """
    c_block, k_d, k_h, k_w, i_d, i_h, i_w = cols.shape
    o_dd, o_hh, o_w = out.shape[1], out.shape[2], out.shape[3]
    src_d = _sources(out_d, k_d, stride[0], dilation[0], pad[0], i_d)
    src_h = _sources(out_h, k_h, stride[1], dilation[1], pad[1], i_h)
    spans = _phase_spans(k_w, stride[2], dilation[2], pad[2], i_w, o_w)
    s_w = stride[2]
    phase_len = (o_w + s_w - 1) // s_w
    af = np.empty(s_w * phase_len, dtype=out.dtype)
    cf, of = cols.reshape(-1), out.reshape(-1)
    plane = i_d * i_h * i_w
    # Kernel as wide as the stride (unet's 2x2/2): tap kw alone fills phase
    # kw of a row, from the same input range for every kw. Then a row that
    # one (kd, kh) reaches is just its taps' columns interleaved, with no
    # accumulator to clear and add into.
    disjoint_w = k_w == s_w
    for kw in range(k_w):
        disjoint_w = disjoint_w and (
            spans[kw, 0] == kw and spans[kw, 1] + spans[kw, 2] == 0
            and spans[kw, 2] == spans[0, 2]
            and spans[kw, 3] - spans[kw, 2] == (o_w - kw + s_w - 1) // s_w)
    for c in range(c_block):
        co = co_first + c
        for od in range(out_d):
            for oh in range(out_h):
                row = ((co * o_dd + od_first + od) * o_hh + oh_first + oh) * o_w
                if disjoint_w:
                    reaching = 0
                    src = 0
                    for kd in range(k_d):
                        for kh in range(k_h):
                            if src_d[od, kd] >= 0 and src_h[oh, kh] >= 0:
                                reaching += 1
                                tap = ((c * k_d + kd) * k_h + kh) * k_w
                                src = (tap * plane + (src_d[od, kd] * i_h + src_h[oh, kh]) * i_w
                                       + spans[0, 2])
                    if reaching == 1:
                        interleave(cf, src, plane, s_w, bias[co], of, row, o_w)
                        continue
                af[:] = 0
                for kd in range(k_d):
                    i_dd = src_d[od, kd]
                    if i_dd < 0:
                        continue
                    for kh in range(k_h):
                        i_hh = src_h[oh, kh]
                        if i_hh < 0:
                            continue
                        for kw in range(k_w):
                            lo = spans[kw, 2]
                            if spans[kw, 3] > lo:
                                tap = ((c * k_d + kd) * k_h + kh) * k_w + kw
                                src = tap * plane + (i_dd * i_h + i_hh) * i_w + lo
                                _add(af, spans[kw, 0] * phase_len + spans[kw, 1] + lo,
                                     cf, src, spans[kw, 3] - lo)
                interleave(af, 0, phase_len, s_w, bias[co], of, row, o_w)


@njit(nogil=True, cache=True, fastmath=FASTMATH)
def col2im_last(cols, bias, out, co_first, od_first, oh_first, out_d, out_h, kernel, stride,
                dilation, pad):
    """:func:`col2im` of channels-last data: fold the GEMM columns into a
    block of one image's output.

    cols (D, H, W, KD*KH*KW, C) holds ``w[ci, co, k] * x[i, ci]`` summed
    over the input channels, for output channels ``co_first .. co_first +
    C`` (each position's taps, and each tap's channels, side by side);
    they fill the output block ``od_first .. + out_d``, ``oh_first .. +
    out_h`` (all of W) of out (OD, OH, OW, C_out), C-contiguous; bias
    (C_out,); ``pad`` is relative to the first input plane of ``cols``.
    Row by row: every tap that reaches an output row adds its run of
    positions, each position's channels side by side, to the row's sums in
    tap order (the same order for every output), and the row goes out
    with its bias. Serial and ``nogil``, as :func:`col2im`."""
    i_d, i_h, i_w, taps, c_block = cols.shape
    o_hh, o_w, c_out = out.shape[1], out.shape[2], out.shape[3]
    k_d, k_h, k_w = kernel
    src_d = _sources(out_d, k_d, stride[0], dilation[0], pad[0], i_d)
    src_h = _sources(out_h, k_h, stride[1], dilation[1], pad[1], i_h)
    spans = _phase_spans(k_w, stride[2], dilation[2], pad[2], i_w, o_w)
    s_w = np.uint64(stride[2])
    block = np.uint64(c_block)
    row = np.empty(o_w * c_block, dtype=out.dtype)
    cf, of = cols.reshape(-1), out.reshape(-1)
    for od in range(out_d):
        for oh in range(out_h):
            row[:] = 0
            for kd in range(k_d):
                i_dd = src_d[od, kd]
                if i_dd < 0:
                    continue
                for kh in range(k_h):
                    i_hh = src_h[oh, kh]
                    if i_hh < 0:
                        continue
                    for kw in range(k_w):
                        # Inputs lo .. hi reach outputs (iw + q) * s_w + r.
                        r, q, lo, hi = spans[kw, 0], spans[kw, 1], spans[kw, 2], spans[kw, 3]
                        tap = (kd * k_h + kh) * k_w + kw
                        src = np.uint64((((i_dd * i_h + i_hh) * i_w + lo) * taps + tap) * c_block)
                        dst = np.uint64(((lo + q) * stride[2] + r) * c_block)
                        for _ in range(lo, hi):
                            for c in range(block):
                                row[dst + c] += cf[src + c]
                            src += np.uint64(taps * c_block)
                            dst += s_w * block
            at = np.uint64((((od_first + od) * o_hh + oh_first + oh) * o_w) * c_out + co_first)
            for ow in range(np.uint64(o_w)):
                for c in range(block):
                    of[at + c] = bias[co_first + c] + row[ow * block + c]
                at += np.uint64(c_out)
