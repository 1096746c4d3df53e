"""A slow, obviously-right NumPy oracle for transposed convolution.

This module is the test suite's source of truth. It deliberately does NOT
import ``numba_deconv``: everything here is derived from the definition in
``docs/semantics.md`` (section 1, Definition) so that a bug in the
library's argument handling or kernels cannot hide in the oracle too.

The operation (scatter form, channels first, weight ``(C_in, C_out/groups,
*kernel)``, ``g`` the group of input channel ``ci``, ``Cout_g = C_out /
groups``)::

    y[n, g*Cout_g + co, i*s + kk*d - pad_before] += x[n, ci, i] * w[ci, co, kk]

then ``+ bias[c]``. Per spatial dim the output size is::

    O = (I - 1)*s - pad_before - pad_after + d*(k - 1) + 1 + output_padding

:func:`conv_transpose_ref` computes exactly this: it scatters every product
into the full, un-cropped output ``(I - 1)*s + d*(k - 1) + 1`` per dim (plus
room for an ``output_padding`` that reaches past ``pad_after``), then crops
``pad_before`` at the start and keeps ``O`` values. No kernel flip, no phase
tricks, no gather form.

:func:`explicit_pads` turns the public arguments (every ``padding`` form,
``output_padding``, ``output_size``) into explicit ``(pad_before, pad_after,
output_padding)`` tuples, again straight from the formulas, independently of
``numba_deconv._params``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv_transpose_ref",
    "explicit_pads",
    "reference",
    "magnitude_bound",
    "to_channels_first",
    "to_channels_last",
]


def _per_dim(value, rank):
    """An int or a sequence of ``rank`` ints as a tuple of ``rank`` ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    assert len(value) == rank, (value, rank)
    return value


def conv_transpose_ref(x, w, bias=None, *, stride, dilation, pad_before,
                       pad_after, output_padding, groups=1, dtype=None):
    """Transposed convolution by the scatter definition.

    Parameters
    ----------
    x : ndarray, shape ``(N, C_in, *in_spatial)``
        Batched, channels first.
    w : ndarray, shape ``(C_in, C_out // groups, *kernel)``
    bias : ndarray of shape ``(C_out,)`` or None
    stride, dilation, pad_before, pad_after, output_padding : tuple of int
        One entry per spatial dim; already explicit (see
        :func:`explicit_pads`).
    groups : int
    dtype : dtype, optional
        The dtype the products are accumulated in. Default: float64, or
        complex128 if any input is complex (more precise than anything the
        library computes in, so the comparison tolerance only has to cover
        the library's rounding).

    Returns
    -------
    ndarray, shape ``(N, C_out, *out_spatial)``
    """
    x = np.asarray(x)
    w = np.asarray(w)
    rank = w.ndim - 2
    assert x.ndim == rank + 2, (x.shape, w.shape)
    if dtype is None:
        arrays = [x, w] + ([np.asarray(bias)] if bias is not None else [])
        dtype = (np.complex128 if any(np.iscomplexobj(a) for a in arrays)
                 else np.float64)
    x = x.astype(dtype)
    w = w.astype(dtype)

    n_batch, c_in = x.shape[:2]
    in_spatial = x.shape[2:]
    kernel = w.shape[2:]
    cout_g = w.shape[1]
    assert w.shape[0] == c_in and c_in % groups == 0
    c_out = cout_g * groups

    out_spatial = tuple(
        (i - 1) * s - pb - pa + d * (k - 1) + 1 + op
        for i, s, pb, pa, k, d, op in zip(in_spatial, stride, pad_before,
                                          pad_after, kernel, dilation,
                                          output_padding))
    # The full scatter target: every position i*s + kk*d, plus enough room
    # at the end that cropping [pad_before, pad_before + O) stays inside.
    full = tuple(
        max((i - 1) * s + d * (k - 1) + 1, pb + o)
        for i, s, k, d, pb, o in zip(in_spatial, stride, kernel, dilation,
                                     pad_before, out_spatial))
    y_full = np.zeros((n_batch, c_out) + full, dtype=dtype)

    with np.errstate(invalid="ignore", over="ignore"):
        # Inf * 0 and Inf - Inf give NaN here exactly as the definition says.
        _scatter(x, w, y_full, groups, stride, dilation)

    crop = tuple(slice(pb, pb + o) for pb, o in zip(pad_before, out_spatial))
    y = y_full[(slice(None), slice(None)) + crop]
    if bias is not None:
        b = np.asarray(bias).astype(dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            y = y + b.reshape((1, c_out) + (1,) * rank)
    return np.ascontiguousarray(y)


def _scatter(x, w, y_full, groups, stride, dilation):
    """y_full[n, g*Cout_g + co, i*s + kk*d] += x[n, ci, i] * w[ci, co, kk]."""
    n_batch, c_in = x.shape[:2]
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    cin_g, cout_g = c_in // groups, w.shape[1]
    for g in range(groups):
        cin = slice(g * cin_g, (g + 1) * cin_g)
        cout = slice(g * cout_g, (g + 1) * cout_g)
        for i in np.ndindex(*in_spatial):
            xi = x[(slice(None), cin) + i]                 # (N, cin_g)
            for kk in np.ndindex(*kernel):
                o = tuple(ii * s + kj * d
                          for ii, kj, s, d in zip(i, kk, stride, dilation))
                # (N, cin_g) @ (cin_g, cout_g) -> (N, cout_g); the elementwise
                # product form keeps NaN/Inf semantics those of x*w summed.
                wk = w[(cin, slice(None)) + kk]            # (cin_g, cout_g)
                contrib = (xi[:, :, None] * wk[None, :, :]).sum(axis=1)
                y_full[(slice(None), cout) + o] += contrib


def explicit_pads(in_spatial, kernel, *, stride=1, padding=0,
                  output_padding=0, dilation=1, output_size=None):
    """Resolve the public size arguments to explicit per-dim tuples.

    Follows the contract of ``conv_transpose`` directly:

    - ``padding``: int, one int per dim, one ``(before, after)`` pair per dim,
      ``"valid"`` (no padding) or ``"same"`` (``total = max(d*(k-1) + 1 - s,
      0)``, ``before = total // 2``, the rest after; output ``I * s``).
    - ``output_size``: ``None`` or the wanted spatial output sizes; the
      output_padding is then ``output_size - base`` per dim.

    Returns
    -------
    dict with keys stride, dilation, pad_before, pad_after, output_padding
    (tuples) and out_spatial (tuple), ready for :func:`conv_transpose_ref`.
    """
    rank = len(kernel)
    stride = _per_dim(stride, rank)
    dilation = _per_dim(dilation, rank)
    same = False
    if isinstance(padding, str):
        if padding.lower() == "valid":
            before = after = (0,) * rank
        elif padding.lower() == "same":
            same = True
            totals = [max(d * (k - 1) + 1 - s, 0)
                      for k, s, d in zip(kernel, stride, dilation)]
            before = tuple(t // 2 for t in totals)
            after = tuple(t - t // 2 for t in totals)
        else:
            raise ValueError(padding)
    elif isinstance(padding, (int, np.integer)):
        before = after = (int(padding),) * rank
    else:
        before, after = [], []
        for p in padding:
            if isinstance(p, (int, np.integer)):
                before.append(int(p))
                after.append(int(p))
            else:
                b, a = p
                before.append(int(b))
                after.append(int(a))
        before, after = tuple(before), tuple(after)

    base = tuple((i - 1) * s - pb - pa + d * (k - 1) + 1
                 for i, s, pb, pa, k, d in zip(in_spatial, stride, before,
                                               after, kernel, dilation))
    if output_size is not None:
        op = tuple(int(o) - b for o, b in zip(output_size, base))
    elif same:
        op = tuple(i * s - b for i, s, b in zip(in_spatial, stride, base))
    else:
        op = _per_dim(output_padding, rank)
    out_spatial = tuple(b + o for b, o in zip(base, op))
    return dict(stride=stride, dilation=dilation, pad_before=before,
                pad_after=after, output_padding=op, out_spatial=out_spatial)


def to_channels_first(a):
    """``(N, *spatial, C)`` -> ``(N, C, *spatial)``."""
    return np.moveaxis(np.asarray(a), -1, 1)


def to_channels_last(a):
    """``(N, C, *spatial)`` -> ``(N, *spatial, C)``."""
    return np.moveaxis(np.asarray(a), 1, -1)


def reference(x, weight, bias=None, *, stride=1, padding=0, output_padding=0,
              dilation=1, groups=1, output_size=None,
              data_format="channels_first", dtype=None):
    """The oracle with the public calling convention of ``conv_transpose``.

    Accepts batched or unbatched ``x`` in either data format, every padding
    form and ``output_size`` given as spatial sizes (``rank`` ints) or the
    full output shape; returns the result in the same format and
    batchedness, in float64/complex128 (or ``dtype``).
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    rank = weight.ndim - 2
    batched = x.ndim == rank + 2
    if not batched:
        x = x[None]
    if data_format == "channels_last":
        x = to_channels_first(x)
    if output_size is not None and len(output_size) != rank:
        # The full output shape, in the result's format and batchedness.
        full = tuple(output_size)
        output_size = (full[-rank - 1:-1] if data_format == "channels_last"
                       else full[-rank:])
    p = explicit_pads(x.shape[2:], weight.shape[2:], stride=stride,
                      padding=padding, output_padding=output_padding,
                      dilation=dilation, output_size=output_size)
    y = conv_transpose_ref(x, weight, bias, stride=p["stride"],
                           dilation=p["dilation"], pad_before=p["pad_before"],
                           pad_after=p["pad_after"],
                           output_padding=p["output_padding"], groups=groups,
                           dtype=dtype)
    if data_format == "channels_last":
        y = to_channels_last(y)
    if not batched:
        y = y[0]
    return y


def magnitude_bound(x, weight, bias=None, **kwargs):
    """``reference(|x|, |w|, |bias|)``: per output, the sum of the magnitudes
    of its terms, which bounds the rounding error of any summation order
    (``error <= n_terms * eps * bound``). Used to scale tolerances."""
    xa = np.abs(np.asarray(x)).astype(np.float64)
    wa = np.abs(np.asarray(weight)).astype(np.float64)
    ba = None if bias is None else np.abs(np.asarray(bias)).astype(np.float64)
    return reference(xa, wa, ba, dtype=np.float64, **kwargs)
