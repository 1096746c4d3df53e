"""The phase arithmetic of a strided transposed convolution, in one place.

Along one spatial dim, input ``i`` reaches output ``o = i*s + k*d - p``
through tap ``k`` (stride ``s``, dilation ``d``, before-padding ``p``).
Writing the tap's offset ``k*d - p = shift*s + phase`` (floor division)
gives ``o = (i + shift)*s + phase``: a tap feeds exactly one output *phase*
``o mod s``, from a contiguous run of inputs. Every kernel family builds on
that: the CPU row and plane kernels accumulate each output row split by
phase, the tiled kernel computes each phase as a stride-1 correlation, the
columns kernel folds its columns by runs, and the CUDA kernel gathers the
taps that reach one output.

Plain Python on scalars, no Numba here: the CPU kernels compile these
functions with ``njit(inline="always")`` and the CUDA kernel with
``cuda.jit(device=True)``, and host code calls them as they are. So none of
those calls another (a plain function cannot be called from compiled code);
:func:`polyphase` is for the host only.
"""

import math


def tap_phase(k, stride, dilation, pad):
    """``(phase, shift)`` of tap ``k``: it moves input ``i`` to output
    ``(i + shift)*stride + phase``, with ``0 <= phase < stride``."""
    offset = k * dilation - pad
    return offset % stride, offset // stride


def tap_inputs(k, stride, dilation, pad, in_size, out_size):
    """``(phase, shift, lo, hi)``: :func:`tap_phase` of tap ``k`` and the
    inputs ``lo <= i < hi`` whose outputs through it lie in ``[0, out_size)``
    (``hi <= lo`` when there are none)."""
    offset = k * dilation - pad
    phase, shift = offset % stride, offset // stride
    outputs_in_phase = (out_size - phase + stride - 1) // stride
    return phase, shift, max(0, -shift), min(in_size, outputs_in_phase - shift)


def tap_source(o, k, stride, dilation, pad, in_size):
    """The input that reaches output ``o`` through tap ``k``, or -1."""
    t = o + pad - k * dilation
    if t >= 0 and t % stride == 0 and t // stride < in_size:
        return t // stride
    return -1


def taps_reaching(o, k_size, stride, dilation, pad, in_size, k_step):
    """The taps that reach output ``o``: ``(first, count, source)``.

    They are ``first + j*k_step`` for ``j < count`` (``k_step = stride //
    gcd(stride, dilation)``), tap ``first`` reads input ``source`` and each
    later one reads ``k_step*dilation // stride`` lower; ``count`` is 0 when
    no tap does. For a gather, one output at a time, without a division per
    tap.
    """
    t = o + pad
    k_hi = min(k_size - 1, t // dilation)
    # t - k*d <= (in_size - 1)*s  <=>  k >= ceil((t - (in_size - 1)*s) / d)
    k_lo = max(0, -(((in_size - 1) * stride - t) // dilation))
    for k in range(k_lo, min(k_lo + k_step, k_hi + 1)):
        if (t - k * dilation) % stride == 0:
            return k, (k_hi - k) // k_step + 1, (t - k * dilation) // stride
    return 0, 0, 0


def polyphase(kernel, stride, dilation):
    """The phases of a strided correlation along one dim, on the host.

    A correlation reads ``x[o*stride + k*dilation]`` through tap ``k``;
    with :func:`tap_phase` (no padding) that is ``x_r[o + shift]`` of the
    input decimated at phase ``r``. Returns ``(phase, first, count, step,
    shift, spacing)`` for every phase that some tap reads: its taps are
    ``first + j*step`` for ``j < count``, and tap ``j`` reads ``x_r[o +
    shift + j*spacing]``. So a strided correlation is a sum of stride-1
    dilated correlations, one per phase.
    """
    step = stride // math.gcd(stride, dilation)
    phases = []
    for phase in range(stride):
        taps = [k for k in range(kernel) if (k * dilation) % stride == phase]
        if taps:
            phases.append((phase, taps[0], len(taps), step, taps[0] * dilation // stride,
                           step * dilation // stride))
    return phases
