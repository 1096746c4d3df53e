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


# ---------------------------------------------------------------------------
# Forward convolution, padding modes and weight gradients.
#
# Everything below follows the definitions of the forward convolution
# (PyTorch's conv{1,2,3}d, any rank), of the padding modes (NumPy's np.pad,
# equal to torch.nn.functional.pad), of their adjoints and of the weight
# gradients, again without importing numba_deconv.
# ---------------------------------------------------------------------------

#: padding_mode -> the np.pad mode that pads exactly so.
#: (torch.nn.functional.pad: "constant", "circular", "reflect", "replicate".)
NP_PAD_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect",
                "replicate": "edge"}

__all__ += [
    "NP_PAD_MODES",
    "pad_ref",
    "pad_index_map",
    "pad_adjoint_ref",
    "conv_pads",
    "conv_ref",
    "conv_reference",
    "conv_transpose_mode_ref",
    "conv_weight_grad_ref",
    "conv_transpose_weight_grad_ref",
]


def _wide_dtype(*arrays):
    """complex128 if any input is complex, else float64."""
    return (np.complex128 if any(a is not None and np.iscomplexobj(a)
                                 for a in arrays) else np.float64)


def pad_ref(x, pairs, mode="zeros"):
    """Pad the spatial dims of a batched, channels-first array.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)``
    pairs : sequence of ``(before, after)``, one per spatial dim, all >= 0
    mode : {"zeros", "circular", "reflect", "replicate"}
        As ``torch.nn.functional.pad`` (modes "constant", "circular",
        "reflect", "replicate"); here NumPy's ``np.pad`` modes "constant",
        "wrap", "reflect" (mirror without repeating the edge) and "edge".
        PyTorch's limits (reflect: each pad < size; circular: each pad <=
        size) are asserted, since beyond them np.pad and torch differ.

    Returns
    -------
    ndarray, shape ``(N, C, *(before + size + after))``, x's dtype
    """
    x = np.asarray(x)
    pairs = [(int(b), int(a)) for b, a in pairs]
    assert len(pairs) == x.ndim - 2, (x.shape, pairs)
    for size, (b, a) in zip(x.shape[2:], pairs):
        assert b >= 0 and a >= 0, pairs
        if mode == "reflect":
            assert max(b, a) < size, (mode, size, pairs)
        elif mode == "circular":
            assert max(b, a) <= size, (mode, size, pairs)
    return np.pad(x, [(0, 0), (0, 0)] + pairs, mode=NP_PAD_MODES[mode])


def pad_index_map(spatial, pairs, mode="zeros"):
    """The padding operator as an index map.

    Returns an int array of the padded spatial shape whose entry at a padded
    position is the flat (C-order) index of the unpadded element that
    :func:`pad_ref` copies there, or -1 where it writes a zero. Built by
    padding ``arange(prod(spatial))`` itself, so it is the padding op by
    construction.
    """
    spatial = tuple(int(s) for s in spatial)
    idx = np.arange(int(np.prod(spatial)), dtype=np.int64).reshape(spatial)
    if mode == "zeros":
        # Shift by one so that the constant 0 of np.pad marks "no source".
        return pad_ref((idx + 1)[None, None], pairs, mode)[0, 0] - 1
    return pad_ref(idx[None, None], pairs, mode)[0, 0]


def pad_adjoint_ref(y, spatial, pairs, mode="zeros"):
    """The adjoint (transpose) of :func:`pad_ref`.

    ``y`` has the padded shape ``(N, C, *(before + size + after))``; every
    padded position adds its value onto the unpadded element that the
    padding copied there (``np.add.at`` over :func:`pad_index_map`), and
    positions the padding filled with zeros are dropped. For "zeros" that
    is a crop; "circular" wraps the borders onto the far side, "reflect"
    mirrors them without the edge, "replicate" adds them onto the edge
    element.

    Returns
    -------
    ndarray, shape ``(N, C, *spatial)``, y's dtype
    """
    y = np.asarray(y)
    spatial = tuple(int(s) for s in spatial)
    idx = pad_index_map(spatial, pairs, mode)
    assert idx.shape == y.shape[2:], (idx.shape, y.shape)
    n, c = y.shape[:2]
    flat_idx = idx.reshape(-1)
    keep = flat_idx >= 0
    y_t = y.reshape(n, c, -1).transpose(2, 0, 1)        # (positions, N, C)
    out_t = np.zeros((int(np.prod(spatial)), n, c), dtype=y.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(out_t, flat_idx[keep], y_t[keep])
    return np.ascontiguousarray(out_t.transpose(1, 2, 0).reshape((n, c) + spatial))


def conv_pads(in_spatial, kernel, *, stride=1, padding=0, dilation=1):
    """Resolve ``conv``'s size arguments to explicit per-dim tuples.

    ``padding``: int, one int per dim, ``(before, after)`` pairs, "valid"
    (0) or "same" (TensorFlow's SAME: ``O = ceil(I/s)``, ``total =
    max((O-1)*s + d*(k-1) + 1 - I, 0)``, ``total // 2`` before, the rest
    after). Output ``O = floor((I + pb + pa - d*(k-1) - 1)/s) + 1``.

    Returns
    -------
    dict with keys stride, dilation, pad_before, pad_after (tuples) and
    out_spatial (tuple), ready for :func:`conv_ref`.
    """
    rank = len(kernel)
    stride = _per_dim(stride, rank)
    dilation = _per_dim(dilation, rank)
    if isinstance(padding, str) and padding.lower() == "same":
        outs = [-(-i // s) for i, s in zip(in_spatial, stride)]
        totals = [max((o - 1) * s + d * (k - 1) + 1 - i, 0)
                  for o, i, k, s, d in zip(outs, in_spatial, kernel, stride,
                                           dilation)]
        before = tuple(t // 2 for t in totals)
        after = tuple(t - t // 2 for t in totals)
    else:
        # Every other form means what it means for conv_transpose.
        p = explicit_pads((1,) * rank, kernel, stride=stride, padding=padding,
                          dilation=dilation)
        before, after = p["pad_before"], p["pad_after"]
    out_spatial = tuple(
        (i + pb + pa - d * (k - 1) - 1) // s + 1
        for i, pb, pa, k, s, d in zip(in_spatial, before, after, kernel,
                                      stride, dilation))
    return dict(stride=stride, dilation=dilation, pad_before=before,
                pad_after=after, out_spatial=out_spatial)


def _tap_view(xpad, kk, stride, dilation, out_spatial):
    """``xpad[n, c, o*s + kk*d]`` for every output position ``o``:
    shape ``(N, C, *out_spatial)``."""
    sl = tuple(slice(k * d, k * d + (o - 1) * s + 1, s)
               for k, s, d, o in zip(kk, stride, dilation, out_spatial))
    v = xpad[(slice(None), slice(None)) + sl]
    assert v.shape[2:] == tuple(out_spatial), (v.shape, out_spatial)
    return v


def conv_ref(x, w, bias=None, *, stride, dilation, pad_before, pad_after,
             groups=1, padding_mode="zeros", dtype=None):
    """Forward convolution (cross-correlation, PyTorch's conv{n}d) by the
    definition::

        y[n, co, o] = bias[co] + sum_{ci in group(co), kk}
                      xpad[n, ci, o*s + kk*d] * w[co, ci_local, kk]

    with ``xpad = pad_ref(x, zip(pad_before, pad_after), padding_mode)``.

    Parameters
    ----------
    x : ndarray, shape ``(N, C_in, *in_spatial)``
    w : ndarray, shape ``(C_out, C_in // groups, *kernel)``
    bias : ``(C_out,)`` or None
    stride, dilation, pad_before, pad_after : tuple of int, one per dim
    groups : int
    padding_mode : {"zeros", "circular", "reflect", "replicate"}
    dtype : accumulation dtype (default float64 / complex128)

    Returns
    -------
    ndarray, shape ``(N, C_out, *out_spatial)``, ``O = floor((I + pb + pa -
    d*(k-1) - 1)/s) + 1``
    """
    x = np.asarray(x)
    w = np.asarray(w)
    rank = w.ndim - 2
    assert x.ndim == rank + 2, (x.shape, w.shape)
    if dtype is None:
        dtype = _wide_dtype(x, w, bias)
    x = x.astype(dtype)
    w = w.astype(dtype)
    n_batch, c_in = x.shape[:2]
    c_out, cin_g = w.shape[:2]
    kernel = w.shape[2:]
    assert cin_g * groups == c_in and c_out % groups == 0, (x.shape, w.shape)
    cout_g = c_out // groups

    xpad = pad_ref(x, list(zip(pad_before, pad_after)), padding_mode)
    out_spatial = tuple(
        (p - d * (k - 1) - 1) // s + 1
        for p, k, s, d in zip(xpad.shape[2:], kernel, stride, dilation))
    assert all(o >= 1 for o in out_spatial), out_spatial
    y = np.zeros((n_batch, c_out) + out_spatial, dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            cin = slice(g * cin_g, (g + 1) * cin_g)
            cout = slice(g * cout_g, (g + 1) * cout_g)
            for kk in np.ndindex(*kernel):
                xs = _tap_view(xpad, kk, stride, dilation, out_spatial)[:, cin]
                wk = w[(cout, slice(None)) + kk]               # (cout_g, cin_g)
                # sum over ci of xs[n, ci, o] * wk[co, ci]
                prod = xs[:, None] * wk.reshape((1, cout_g, cin_g) + (1,) * rank)
                y[:, cout] += prod.sum(axis=2)
        if bias is not None:
            y = y + np.asarray(bias).astype(dtype).reshape((1, c_out) + (1,) * rank)
    return y


def conv_reference(x, weight, bias=None, *, stride=1, padding=0, dilation=1,
                   groups=1, padding_mode="zeros", data_format="channels_first",
                   dtype=None):
    """:func:`conv_ref` with the public calling convention of ``conv``
    (every padding form, batched or unbatched, either data format)."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    rank = weight.ndim - 2
    batched = x.ndim == rank + 2
    if not batched:
        x = x[None]
    if data_format == "channels_last":
        x = to_channels_first(x)
    p = conv_pads(x.shape[2:], weight.shape[2:], stride=stride,
                  padding=padding, dilation=dilation)
    y = conv_ref(x, weight, bias, stride=p["stride"], dilation=p["dilation"],
                 pad_before=p["pad_before"], pad_after=p["pad_after"],
                 groups=groups, padding_mode=padding_mode, dtype=dtype)
    if data_format == "channels_last":
        y = to_channels_last(y)
    if not batched:
        y = y[0]
    return y


def conv_transpose_mode_ref(x, w, bias=None, *, stride, dilation, pad_before,
                            pad_after, output_padding, groups=1,
                            padding_mode="zeros", dtype=None):
    """Transposed convolution with a padding mode: the exact adjoint of
    :func:`conv_ref` with the same mode.

    Scatters every product by the definition (section 1, without cropping)
    into the whole padded extent ``pad_before + O + pad_after`` per dim
    (``O`` the transposed output size, section 2), then applies
    :func:`pad_adjoint_ref`, the adjoint of the padding: "zeros" crops (so
    this equals :func:`conv_transpose_ref`), the other modes fold what
    landed in the border back into the interior. Bias last.

    Arguments as :func:`conv_transpose_ref`, weight ``(C_in, C_out/groups,
    *kernel)``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    rank = w.ndim - 2
    if dtype is None:
        dtype = _wide_dtype(x, w, bias)
    x = x.astype(dtype)
    w = w.astype(dtype)
    n_batch, c_in = x.shape[:2]
    cout_g = w.shape[1]
    c_out = cout_g * groups
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    out_spatial = tuple(
        (i - 1) * s - pb - pa + d * (k - 1) + 1 + op
        for i, s, pb, pa, k, d, op in zip(in_spatial, stride, pad_before,
                                          pad_after, kernel, dilation,
                                          output_padding))
    padded = tuple(pb + o + pa for pb, o, pa in zip(pad_before, out_spatial,
                                                     pad_after))
    # Every scatter target i*s + kk*d lies inside the padded extent.
    assert all((i - 1) * s + d * (k - 1) < p for i, s, d, k, p in zip(
        in_spatial, stride, dilation, kernel, padded)), (in_spatial, padded)
    y_full = np.zeros((n_batch, c_out) + padded, dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        _scatter(x, w, y_full, groups, stride, dilation)
        y = pad_adjoint_ref(y_full, out_spatial,
                            list(zip(pad_before, pad_after)), padding_mode)
        if bias is not None:
            y = y + np.asarray(bias).astype(dtype).reshape((1, c_out) + (1,) * rank)
    return y


def conv_weight_grad_ref(x, grad_output, kernel_size, *, stride, dilation,
                         pad_before, pad_after, groups=1, padding_mode="zeros",
                         dtype=None):
    """Gradient of ``conv_ref`` with respect to its weight, by the direct sum
    (PyTorch's ``w.grad``; complex: the conjugate of x, PyTorch's
    convention)::

        gw[co, ci_local, kk] = sum_{n, o} conj(xpad[n, g*Cin_g + ci_local,
                                                    o*s + kk*d]) * go[n, co, o]

    ``grad_output`` is ``(N, C_out, *O)`` with ``O`` the forward output size
    (asserted). Returns ``(C_out, C_in // groups, *kernel_size)``.
    """
    x = np.asarray(x)
    go = np.asarray(grad_output)
    rank = len(kernel_size)
    assert x.ndim == go.ndim == rank + 2, (x.shape, go.shape, kernel_size)
    if dtype is None:
        dtype = _wide_dtype(x, go)
    x = x.astype(dtype)
    go = go.astype(dtype)
    c_in, c_out = x.shape[1], go.shape[1]
    assert c_in % groups == 0 and c_out % groups == 0
    cin_g, cout_g = c_in // groups, c_out // groups
    xpad = pad_ref(x, list(zip(pad_before, pad_after)), padding_mode)
    out_spatial = tuple(
        (p - d * (k - 1) - 1) // s + 1
        for p, k, s, d in zip(xpad.shape[2:], kernel_size, stride, dilation))
    assert out_spatial == go.shape[2:], (out_spatial, go.shape)
    gw = np.zeros((c_out, cin_g) + tuple(kernel_size), dtype=dtype)
    axes = tuple(range(2, 2 + rank))
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            cin = slice(g * cin_g, (g + 1) * cin_g)
            for kk in np.ndindex(*kernel_size):
                xs = np.conj(_tap_view(xpad, kk, stride, dilation,
                                       out_spatial)[:, cin])   # (N, cin_g, *O)
                for co in range(cout_g):
                    prod = xs * go[:, g * cout_g + co][:, None]
                    gw[(g * cout_g + co, slice(None)) + kk] = prod.sum(
                        axis=(0,) + axes)
    return gw


def conv_transpose_weight_grad_ref(x, grad_output, kernel_size, *, stride,
                                   dilation, pad_before, pad_after, groups=1,
                                   padding_mode="zeros", output_padding=None,
                                   dtype=None):
    """Gradient of :func:`conv_transpose_mode_ref` with respect to its weight,
    by the direct sum. The output is ``P^T S(x, w)`` (scatter, then the
    adjoint of the padding), so with ``gpad = pad_ref(go, pairs, mode)``
    (zero mode: ``go`` zero-padded, the adjoint of the crop)::

        gw[ci, co, kk] = sum_{n, i} conj(x[n, ci, i])
                                    * gpad[n, g*Cout_g + co, i*s + kk*d]

    ``grad_output`` is ``(N, C_out, *O)``; its size fixes the output padding
    (checked against ``output_padding`` when that is given). Returns
    ``(C_in, C_out // groups, *kernel_size)``.
    """
    x = np.asarray(x)
    go = np.asarray(grad_output)
    rank = len(kernel_size)
    assert x.ndim == go.ndim == rank + 2, (x.shape, go.shape, kernel_size)
    if dtype is None:
        dtype = _wide_dtype(x, go)
    x = x.astype(dtype)
    go = go.astype(dtype)
    c_in, c_out = x.shape[1], go.shape[1]
    assert c_in % groups == 0 and c_out % groups == 0
    cin_g, cout_g = c_in // groups, c_out // groups
    in_spatial = x.shape[2:]
    base = tuple((i - 1) * s - pb - pa + d * (k - 1) + 1
                 for i, s, pb, pa, k, d in zip(in_spatial, stride, pad_before,
                                               pad_after, kernel_size, dilation))
    op = tuple(o - b for o, b in zip(go.shape[2:], base))
    assert all(p >= 0 for p in op), (go.shape, base)
    if output_padding is not None:
        assert op == tuple(output_padding), (op, output_padding)
    gpad = pad_ref(go, list(zip(pad_before, pad_after)), padding_mode)
    gw = np.zeros((c_in, cout_g) + tuple(kernel_size), dtype=dtype)
    axes = tuple(range(2, 2 + rank))
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            cin = slice(g * cin_g, (g + 1) * cin_g)
            for kk in np.ndindex(*kernel_size):
                # gpad[n, c, i*s + kk*d] for every input position i
                gs = _tap_view(gpad, kk, stride, dilation, in_spatial)
                xs = np.conj(x[:, cin])                          # (N, cin_g, *I)
                for co in range(cout_g):
                    prod = xs * gs[:, g * cout_g + co][:, None]
                    gw[(cin, co) + kk] = prod.sum(axis=(0,) + axes)
    return gw
