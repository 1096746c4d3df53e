"""numba-cuda kernels of the GPU backend, all in a rank-3 gather form.

Importing this module imports ``numba.cuda``; only
:mod:`numba_deconv.cuda.backend` does, lazily, so ``import numba_deconv``
never needs CUDA.

One kernel, :func:`gather_kernel`, serves every configuration of
``conv_transpose`` the backend runs (with :func:`fold_kernel` after it for
the padding modes other than zeros; compiled a second time for one output
channel a thread, :data:`gather_kernel_single`, for groups of one channel),
and :func:`conv_kernel` (likewise with :data:`conv_kernel_single`) every
one of ``conv``:

- ranks 1-3: ranks 1 and 2 arrive as rank 3 with unit leading dims (the
  host passes size 1, stride 1, dilation 1 and padding 0 for them), exactly
  as the CPU kernels do. Rank >= 4 has no kernel: the backend raises
  ``NotImplementedError`` before any launch (the CPU path has a general one).
- both data formats: the arrays are passed flat (1-D, C-contiguous) and the
  kernel indexes ``x`` through explicit element strides, so channels-last
  input is read in place, never transposed. A thread's flat index ``t`` is
  unravelled in the output's memory order (``channels_last`` decides
  which), so consecutive threads write neighbouring addresses in either
  format.
- groups, stride, dilation, every padding form (the host resolves them all
  to ``pad_before`` and the output size), bias, and the four dtypes (one
  compiled specialisation per dtype).

Deterministic by construction: one thread owns each output element (in
:func:`gather_kernel` and :func:`conv_kernel`, a block of output channels
at one position), starts from its bias and adds the taps that reach it in
a fixed order (kd, kh, kw, then input channel; the order of the CPU
kernels), so no atomics are used and results are bitwise identical run to
run.

Inserted zeros are never multiplied: for output ``o`` only the taps ``k``
with ``(o + pad - k*d) % s == 0`` and an in-range source reach it; they form
an arithmetic progression in ``k`` with step ``s / gcd(s, d)``
(:func:`numba_deconv._phases.taps_reaching`), so the loops visit exactly those taps (phase
decomposition), stepping input offsets without any division.

Launch configuration is not frozen in the kernel: the host picks threads
per block and blocks from the output size, and the kernel walks the output
with a grid-stride loop, so any grid covers any output.
"""

from numba import config as numba_config
from numba import cuda

from .. import _phases
from ..config import FASTMATH


_taps_reaching = cuda.jit(device=True, inline="always")(_phases.taps_reaching)

#: Most output channels one thread of :func:`gather_kernel` computes (the
#: host's table says how many: fewer where a group has fewer).
CHANNEL_BLOCK = 8
#: Registers a thread of the gather and conv kernels may use. Uncapped, the
#: gather kernel took 134 registers (its geometry is int64 throughout),
#: which left room for one block of 256 threads per multiprocessor: 12 %
#: occupancy on an H200, latency-bound. Capped at 64, the
#: same launches ran 1.45-1.92x faster on six standard cases, with the same
#: bits; 48 and 96 were both slower than 64 (benchmarks/TUNING.md).
MAX_REGISTERS = 64
#: The launch options of those two kernels (Numba's CUDA simulator takes no
#: register cap).
_CAPPED = {} if numba_config.ENABLE_CUDASIM else {"max_registers": MAX_REGISTERS}


@cuda.jit(device=True, inline="always")
def _output_position(t, c_out, o_d, o_h, o_w, channels_last):
    """``(n, co, od, oh, ow)`` of flat output index ``t``, unravelled in the
    output's memory order, so consecutive threads write consecutive
    addresses in either layout."""
    if channels_last:
        co = t % c_out
        r = t // c_out
        ow = r % o_w
        r = r // o_w
        oh = r % o_h
        return r // o_h // o_d, co, r // o_h % o_d, oh, ow
    ow = t % o_w
    r = t // o_w
    oh = r % o_h
    r = r // o_h
    od = r % o_d
    r = r // o_d
    return r // c_out, r % c_out, od, oh, ow


@cuda.jit(device=True, inline="always")
def _triple(table, at):
    return table[at], table[at + 1], table[at + 2]


@cuda.jit(device=True, inline="always")
def _block_grid(table, c_out_g):
    """The blocks of output channels a kernel's threads walk: the block
    (the table's field 32), blocks per group and in all, the output's
    channel stride and the number of (image, block, position) items."""
    n_batch, groups, channels_last = table[5], table[29], table[30]
    o_spatial = table[11] * table[12] * table[13]
    channel_block = table[32]
    blocks_per_group = (c_out_g + channel_block - 1) // channel_block
    blocks = groups * blocks_per_group
    e_co = 1 if channels_last else o_spatial
    return channel_block, blocks_per_group, blocks, e_co, n_batch * blocks * o_spatial


@cuda.jit(device=True, inline="always")
def _channel_block(cb, blocks_per_group, channel_block, c_out_g):
    """Group ``g`` of block ``cb`` of output channels, its first channel
    within the group and overall, and how many channels it has."""
    g = cb // blocks_per_group
    co_g = (cb - g * blocks_per_group) * channel_block
    return g, co_g, g * c_out_g + co_g, min(channel_block, c_out_g - co_g)


@cuda.jit(device=True, inline="always")
def _store_block(out, at, step, acc, count):
    """``out[at + j*step] = acc[j]`` for the block's ``count`` channels;
    the loop runs over the whole register array, predicated, so that it
    unrolls and ``acc`` stays in registers."""
    for j in range(len(acc)):
        if j < count:
            out[at + j * step] = acc[j]


@cuda.jit(device=True, inline="always")
def _output_at(n, co, od, oh, ow, c_out, o_d, o_h, o_w, channels_last):
    """Flat index of output element ``(n, co, od, oh, ow)``."""
    if channels_last:
        return (((n * o_d + od) * o_h + oh) * o_w + ow) * c_out + co
    return (((n * c_out + co) * o_d + od) * o_h + oh) * o_w + ow


def _gather_kernel(block):
    """:func:`gather_kernel` for at most ``block`` output channels a
    thread (the size of its register array and of its unrolled loops)."""

    @cuda.jit(cache=True, fastmath=FASTMATH, **_CAPPED)
    def gather_kernel(x, w, bias, out, table):
        """Transposed convolution, a block of output channels at one position
        per thread iteration.

        x : 1-D view of the input; element ``(n, ci, id, ih, iw)`` is at
            ``n*sn + ci*sc + id*sd + ih*sh + iw*sw``.
        w : 1-D C-contiguous ``(C_in, C_out/groups, KD, KH, KW)``.
        bias : 1-D ``(C_out,)`` (zeros when the call has no bias).
        out : 1-D C-contiguous output, ``(N, C_out, OD, OH, OW)`` in memory
            order, or ``(N, OD, OH, OW, C_out)`` when ``channels_last`` is 1.
        table : the call's geometry, 33 int64s (one array rather than a dozen
            tuples: numba-cuda prepares each launch argument in Python, element
            by element): ``x``'s element strides ``(sn, sc, sd, sh, sw)``, dims
            ``(N, C_in, ID, IH, IW, C_out, OD, OH, OW)``, then the 3-tuples
            kernel, stride, dilation, pad (the before-padding) and ``k_step =
            stride // gcd(stride, dilation)``, then groups, channels_last,
            (for :func:`conv_kernel`) the padding mode's code and the channel
            block, at most ``block``.
        """
        s_n, s_c, s_d, s_h, s_w = table[0], table[1], table[2], table[3], table[4]
        c_in, i_d, i_h, i_w = table[6], table[7], table[8], table[9]
        c_out, o_d, o_h, o_w = table[10], table[11], table[12], table[13]
        k_d, k_h, k_w = _triple(table, 14)
        st_d, st_h, st_w = _triple(table, 17)
        dl_d, dl_h, dl_w = _triple(table, 20)
        p_d, p_h, p_w = _triple(table, 23)
        ks_d, ks_h, ks_w = _triple(table, 26)
        groups, channels_last = table[29], table[30]
        c_in_g = c_in // groups
        c_out_g = c_out // groups
        # Strides of w in elements.
        w_kh = k_w
        w_kd = k_h * k_w
        w_co = k_d * w_kd
        w_ci = c_out_g * w_co
        # Consecutive reaching taps are k_step apart and read inputs
        # k_step*dilation/stride apart (exact); in elements of x:
        xs_d = (ks_d * dl_d // st_d) * s_d
        xs_h = (ks_h * dl_h // st_h) * s_h
        xs_w = (ks_w * dl_w // st_w) * s_w

        # A thread computes a block of up to ``block`` output channels of
        # one group at one position: each input it loads feeds every channel
        # of the block, in registers.
        channel_block, blocks_per_group, blocks, e_co, total = _block_grid(table, c_out_g)
        for t in range(cuda.grid(1), total, cuda.gridsize(1)):
            n, cb, od, oh, ow = _output_position(t, blocks, o_d, o_h, o_w, channels_last)
            g, co_g, co0, in_block = _channel_block(cb, blocks_per_group, channel_block,
                                                    c_out_g)
            ci_lo = g * c_in_g
            ci_hi = ci_lo + c_in_g
            w_base = co_g * w_co
            x_base = n * s_n
            acc = cuda.local.array(block, out.dtype)
            for j in range(block):
                if j < in_block:
                    acc[j] = bias[co0 + j]
            kd0, n_kd, id0 = _taps_reaching(od, k_d, st_d, dl_d, p_d, i_d, ks_d)
            kh0, n_kh, ih0 = _taps_reaching(oh, k_h, st_h, dl_h, p_h, i_h, ks_h)
            kw0, n_kw, iw0 = _taps_reaching(ow, k_w, st_w, dl_w, p_w, i_w, ks_w)
            # Walk the taps with running offsets: no division in the tap loops.
            x_d = x_base + id0 * s_d
            w_d = w_base + kd0 * w_kd
            for _jd in range(n_kd):
                x_h = x_d + ih0 * s_h
                w_h = w_d + kh0 * w_kh
                for _jh in range(n_kh):
                    x_w = x_h + iw0 * s_w
                    w_w = w_h + kw0
                    for _jw in range(n_kw):
                        for ci in range(ci_lo, ci_hi):
                            value = x[x_w + ci * s_c]
                            w_at = w_w + ci * w_ci
                            for j in range(block):
                                if j < in_block:
                                    acc[j] += value * w[w_at + j * w_co]
                        x_w -= xs_w
                        w_w += ks_w
                    x_h -= xs_h
                    w_h += ks_h * w_kh
                x_d -= xs_d
                w_d += ks_d * w_kd
            _store_block(out, _output_at(n, co0, od, oh, ow, c_out, o_d, o_h, o_w,
                                         channels_last), e_co, acc, in_block)

    return gather_kernel


#: A block of up to :data:`CHANNEL_BLOCK` output channels a thread.
gather_kernel = _gather_kernel(CHANNEL_BLOCK)
#: One output channel a thread, for one channel a group (depthwise), where
#: the block's predicated loops would spend seven of eight issue slots on
#: nothing.
gather_kernel_single = _gather_kernel(1)


@cuda.jit(device=True, inline="always")
def _padded_source(t, size, mode):
    """The element that position ``t`` of an array of ``size`` padded in
    ``mode`` (0 zeros, 1 circular, 2 reflect, 3 replicate) holds, or -1 for
    a zero: what ``torch.nn.functional.pad`` copies there."""
    if 0 <= t < size:
        return t
    if mode == 0:
        return -1
    if mode == 1:
        return t % size
    if mode == 2:
        return -t if t < 0 else 2 * (size - 1) - t
    return 0 if t < 0 else size - 1


def _conv_kernel(block):
    """:func:`conv_kernel` for at most ``block`` output channels a thread."""

    @cuda.jit(cache=True, fastmath=FASTMATH, **_CAPPED)
    def conv_kernel(x, w, bias, out, table):
        """Convolution (cross-correlation), a block of output channels at one
        position per thread iteration, reading the padded input through
        :func:`_padded_source`.

        Arguments as for :func:`gather_kernel`, with ``w`` 1-D C-contiguous
        ``(C_out, C_in/groups, KD, KH, KW)``; ``table``'s fields are
        ``gather_kernel``'s, ``x`` being conv's input, with ``k_step``
        unused (conv visits every tap), the padding mode's code in field 31
        and the channel block (at most ``block``) in field 32. Each input a
        thread loads feeds every channel of its block. Padding zeros are
        multiplied like any input (``0 * inf`` is NaN, as the definition
        says); the taps run in a fixed order, so results are deterministic.
        """
        s_n, s_c, s_d, s_h, s_w = table[0], table[1], table[2], table[3], table[4]
        c_in, i_d, i_h, i_w = table[6], table[7], table[8], table[9]
        c_out, o_d, o_h, o_w = table[10], table[11], table[12], table[13]
        k_d, k_h, k_w = _triple(table, 14)
        stride = _triple(table, 17)
        dilation = _triple(table, 20)
        pad = _triple(table, 23)
        groups, channels_last, mode = table[29], table[30], table[31]
        c_in_g = c_in // groups
        c_out_g = c_out // groups
        taps = k_d * k_h * k_w
        w_co = c_in_g * taps   # w's output-channel stride
        channel_block, blocks_per_group, blocks, e_co, total = _block_grid(table, c_out_g)
        for t in range(cuda.grid(1), total, cuda.gridsize(1)):
            n, cb, od, oh, ow = _output_position(t, blocks, o_d, o_h, o_w, channels_last)
            g, _, co0, in_block = _channel_block(cb, blocks_per_group, channel_block, c_out_g)
            ci0 = g * c_in_g
            acc = cuda.local.array(block, out.dtype)
            for j in range(block):
                if j < in_block:
                    acc[j] = bias[co0 + j]
            for kd in range(k_d):
                sd = _padded_source(od * stride[0] + kd * dilation[0] - pad[0], i_d, mode)
                for kh in range(k_h):
                    sh = _padded_source(oh * stride[1] + kh * dilation[1] - pad[1], i_h, mode)
                    for kw in range(k_w):
                        sw = _padded_source(ow * stride[2] + kw * dilation[2] - pad[2], i_w,
                                            mode)
                        inside = sd >= 0 and sh >= 0 and sw >= 0
                        at = n * s_n + sd * s_d + sh * s_h + sw * s_w
                        tap = (kd * k_h + kh) * k_w + kw
                        for ci in range(c_in_g):
                            value = x[at + (ci0 + ci) * s_c] if inside else 0
                            w_at = co0 * w_co + ci * taps + tap
                            for j in range(block):
                                if j < in_block:
                                    acc[j] += value * w[w_at + j * w_co]
            _store_block(out, _output_at(n, co0, od, oh, ow, c_out, o_d, o_h, o_w,
                                         channels_last), e_co, acc, in_block)

    return conv_kernel


#: A block of up to :data:`CHANNEL_BLOCK` output channels a thread.
conv_kernel = _conv_kernel(CHANNEL_BLOCK)
#: One output channel a thread, for one channel a group.
conv_kernel_single = _conv_kernel(1)


@cuda.jit(cache=True, fastmath=FASTMATH)
def fold_kernel(full, bias, out, dims, padded, channels_last, starts_d, sources_d,
                starts_h, sources_h, starts_w, sources_w):
    """``conv_transpose`` with a padding mode: ``out`` = the adjoint of the
    padding applied to ``full`` (the transposed convolution over the whole
    padded extent, from :func:`gather_kernel`), plus bias; one output
    element per thread iteration.

    Along each dim, output element ``i`` sums the positions of the padded
    extent that hold a copy of it, ``sources[starts[i]:starts[i + 1]]``
    (:func:`numba_deconv._padding.fold_sources`; never empty: ``i``'s own
    position is one). The dims fold in the host's order, D then H then W
    (a partial sum per dim), then the bias is added, as
    :func:`numba_deconv._padding.fold` and the CPU path do.

    full : 1-D view of ``(N, C_out, PD, PH, PW)`` (channels last
        ``(N, PD, PH, PW, C_out)``); out : 1-D view of the output, the same
        with ``(OD, OH, OW)``; dims : ``(N, C_out, OD, OH, OW)``;
        padded : ``(PD, PH, PW)``.
    """
    n_batch, c_out, o_d, o_h, o_w = dims
    p_d, p_h, p_w = padded
    total = n_batch * c_out * o_d * o_h * o_w
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, co, od, oh, ow = _output_position(t, c_out, o_d, o_h, o_w, channels_last)
        # Element (n, co, pd, ph, pw) of full is at (base + pd*e_d + ph*e_h + pw*e_w).
        if channels_last:
            e_w = c_out
            base = n * p_d * p_h * p_w * c_out + co
        else:
            e_w = 1
            base = (n * c_out + co) * p_d * p_h * p_w
        e_h = p_w * e_w
        e_d = p_h * e_h
        sum_w = full[base]  # typed as full's elements; replaced by the first term
        for i_w in range(starts_w[ow], starts_w[ow + 1]):
            at_w = base + sources_w[i_w] * e_w
            sum_h = full[at_w]
            for i_h in range(starts_h[oh], starts_h[oh + 1]):
                at_h = at_w + sources_h[i_h] * e_h
                sum_d = full[at_h + sources_d[starts_d[od]] * e_d]
                for i_d in range(starts_d[od] + 1, starts_d[od + 1]):
                    sum_d += full[at_h + sources_d[i_d] * e_d]
                if i_h == starts_h[oh]:
                    sum_h = sum_d
                else:
                    sum_h += sum_d
            if i_w == starts_w[ow]:
                sum_w = sum_h
            else:
                sum_w += sum_h
        out[t] = sum_w + bias[co]
