"""``explain()``: the arithmetic of one transposed convolution, made visible.

:func:`explain` takes the shapes and arguments of a
:func:`numba_deconv.conv_transpose` call and returns an :class:`Explanation`:
the output shape, the equivalent "zero-insert, pad, correlate with the
flipped kernel" form with its sizes, a slow NumPy implementation of that
form for teaching (:meth:`Explanation.direct`), and a readable account
(``str()``) that also writes the same call for PyTorch and TensorFlow.

:func:`add_parser` registers the ``explain`` command of the CLI and
:func:`demo_text` walks through TensorFlow's worked example.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._params import Geometry
from ._typing import Ints, Padding

__all__ = ["explain", "Explanation", "DirectForm", "add_parser", "cli_explain",
           "demo_text"]

_AXIS_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _axis_names(rank: int) -> tuple:
    return _AXIS_NAMES.get(rank, tuple(f"dim{i}" for i in range(rank)))


@dataclass(frozen=True)
class DirectForm:
    """The intermediates of the direct (slow) form, channels first.

    Attributes
    ----------
    upsampled : numpy.ndarray
        The input with ``s - 1`` zeros inserted between samples,
        ``(N, C_in, *upsampled_shape)``.
    padded : numpy.ndarray
        ``upsampled`` zero-padded (or cropped, where a pad is negative) by
        :attr:`Explanation.pad`.
    flipped_kernel : numpy.ndarray
        ``(C_out, C_in / groups, *kernel)``: the weight flipped in every
        spatial axis with in/out channels swapped per group, i.e. the weight
        of the equivalent forward (stride-1) convolution.
    result : numpy.ndarray
        The stride-1 correlation of ``padded`` with ``flipped_kernel``,
        equal to ``conv_transpose(x, w, ...)``.

    Unbatched inputs give unbatched intermediates.
    """

    upsampled: np.ndarray
    padded: np.ndarray
    flipped_kernel: np.ndarray
    result: np.ndarray


@dataclass(frozen=True)
class Explanation:
    """The arithmetic of one transposed convolution; see :func:`explain`.

    Attributes
    ----------
    x_shape, weight_shape : tuple of int
        The shapes explained (channels first; weight ``(C_in, C_out/groups,
        *kernel)``).
    geometry : Geometry
        The resolved sizes (stride, dilation, pads, output_padding, ...).
    output_shape : tuple of int
        The full shape of the result.
    upsampled_shape : tuple of int
        Per spatial dim ``(I - 1)*s + 1``: the size after inserting ``s - 1``
        zeros between input samples.
    pad : tuple of (int, int)
        Per spatial dim the ``(before, after)`` zero padding of the
        upsampled input for the equivalent stride-1 correlation:
        ``d*(k - 1) - pad_before`` and ``d*(k - 1) - pad_after +
        output_padding``; negative means crop.
    kernel_flip : bool
        Always True: that correlation uses the kernel flipped in every
        spatial axis, with in/out channels swapped. (The scatter form that
        frameworks compute uses the kernel as it is.)
    """

    x_shape: tuple
    weight_shape: tuple
    geometry: Geometry
    output_shape: tuple
    upsampled_shape: tuple
    pad: tuple
    kernel_flip: bool = True

    @property
    def batched(self) -> bool:
        return len(self.x_shape) == len(self.weight_shape)

    @property
    def padded_shape(self) -> tuple:
        """Spatial size of the padded, upsampled input."""
        return tuple(u + b + a for u, (b, a) in zip(self.upsampled_shape, self.pad))

    # ------------------------------------------------------------------ direct
    def direct(self, x, w) -> DirectForm:
        """Compute the result the explicit, slow way, in plain NumPy.

        Insert ``s - 1`` zeros between input samples, zero-pad (or crop) by
        :attr:`pad`, then correlate at stride 1 (with the dilation) with the
        kernel flipped in every spatial axis and in/out channels swapped.

        Parameters
        ----------
        x : array_like
            Input of shape :attr:`x_shape` (channels first).
        w : array_like
            Weight of shape :attr:`weight_shape`.

        Returns
        -------
        DirectForm
            ``upsampled``, ``padded``, ``flipped_kernel`` and ``result``;
            ``result`` equals ``conv_transpose(x, w, ...)`` with this
            explanation's arguments (no bias).

        Raises
        ------
        ValueError, TypeError
            ``x`` or ``w`` of another shape than explained, or not numeric.

        Examples
        --------
        >>> import numpy as np
        >>> from numba_deconv.explain import explain
        >>> e = explain((1, 1, 2), (1, 1, 3), stride=2)
        >>> d = e.direct(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]]))
        >>> d.upsampled[0, 0], d.padded[0, 0], d.flipped_kernel[0, 0]
        (array([1., 0., 2.]), array([0., 0., 1., 0., 2., 0., 0.]), array([100.,  10.,   1.]))
        >>> d.result[0, 0]
        array([  1.,  10., 102.,  20., 200.])
        """
        from ._plan import as_array, check_numeric

        x = as_array("x", x)
        w = as_array("w", w)
        check_numeric("x", x.dtype)
        check_numeric("w", w.dtype)
        if x.shape != tuple(self.x_shape):
            raise ValueError(f"x has shape {x.shape}; this explanation is for {self.x_shape}")
        if w.shape != tuple(self.weight_shape):
            raise ValueError(
                f"w has shape {w.shape}; this explanation is for {self.weight_shape}")
        dtype = np.result_type(x, w)
        if dtype.kind in "biu":
            dtype = np.dtype(np.float64)
        if not self.batched:
            x = x[None]
        g = self.geometry
        rank = g.rank
        n, c_in = x.shape[:2]
        groups = g.groups
        all_ = (slice(None), slice(None))

        up = np.zeros((n, c_in, *self.upsampled_shape), dtype)
        up[all_ + tuple(slice(None, None, s) for s in g.stride)] = x

        grow = [(0, 0), (0, 0)] + [(max(b, 0), max(a, 0)) for b, a in self.pad]
        padded = np.pad(up, grow)
        padded = padded[all_ + tuple(
            slice(max(-b, 0), padded.shape[2 + i] - max(-a, 0))
            for i, (b, a) in enumerate(self.pad))]

        cin_g, cout_g = c_in // groups, w.shape[1]
        flipped = w[all_ + (slice(None, None, -1),) * rank]
        flipped = flipped.reshape(groups, cin_g, cout_g, *g.kernel).swapaxes(1, 2)
        flipped = np.ascontiguousarray(
            flipped.reshape(groups * cout_g, cin_g, *g.kernel), dtype=dtype)

        out = g.out_spatial
        result = np.zeros((n, groups, cout_g, *out), dtype)
        fk = flipped.reshape(groups, cout_g, cin_g, *g.kernel)
        for tap in np.ndindex(*g.kernel):
            window = padded[all_ + tuple(
                slice(t * d, t * d + o) for t, d, o in zip(tap, g.dilation, out))]
            window = window.reshape(n, groups, cin_g, *out)
            result += np.einsum("ngc...,goc->ngo...", window,
                                fk[(slice(None), slice(None), slice(None)) + tap])
        result = result.reshape(n, groups * cout_g, *out)
        if not self.batched:
            up, padded, result = up[0], padded[0], result[0]
        return DirectForm(up, padded, flipped, result)

    # ------------------------------------------------------------------- text
    def _useful_products(self) -> tuple:
        """(products in the direct form, those that touch an input sample),
        per (input channel, output channel) pair."""
        g = self.geometry
        total = useful = 1
        for i in range(g.rank):
            o = np.arange(g.out_spatial[i])[:, None]
            t = np.arange(g.kernel[i])[None, :]
            j = o + t * g.dilation[i] - self.pad[i][0]
            hit = (j >= 0) & (j < self.upsampled_shape[i]) & (j % g.stride[i] == 0)
            total *= hit.size
            useful *= int(hit.sum())
        return total, useful

    def _taps_per_phase(self, i: int) -> list:
        """How many taps of dim ``i`` reach an output position, per phase."""
        g = self.geometry
        s = g.stride[i]
        counts = [0] * s
        for k in range(g.kernel[i]):
            counts[(k * g.dilation[i]) % s] += 1
        return counts

    def __str__(self) -> str:
        g = self.geometry
        rank = g.rank
        names = _axis_names(rank)
        lines = []
        w_axes = ", ".join(["C_in", "C_out/groups"] + [f"k{a}" for a in names])
        lines.append(
            f"conv_transpose: x {_shape(self.x_shape)}, weight "
            f"{_shape(self.weight_shape)} ({w_axes}) -> y {_shape(self.output_shape)}"
            + (f", groups {g.groups}" if g.groups > 1 else ""))
        lines.append("")
        lines.append("Output size, O = (I - 1)*s - pad_before - pad_after "
                     "+ d*(k - 1) + 1 + output_padding:")
        for i in range(rank):
            lines.append(
                f"  {names[i]}: ({g.in_spatial[i]} - 1)*{g.stride[i]} - {g.pad_before[i]} "
                f"- {g.pad_after[i]} + {g.dilation[i]}*({g.kernel[i]} - 1) + 1 + "
                f"{g.output_padding[i]} = {g.out_spatial[i]}")
        reach = ", ".join(f"{names[i]} {lo}..{hi}" if hi > lo else f"{names[i]} {lo}"
                          for i, (lo, hi) in enumerate(g.reachable_out_spatial))
        lines.append(f"Reachable output sizes with these pads: {reach}")
        limits = [max(s, d) for s, d in zip(g.stride, g.dilation)]
        if max(limits) > 1:
            lines.append(
                "  (one input size fits up to max(stride, dilation) output sizes; pick "
                "one with output_padding or output_size)")
        lines.append("")
        lines.append("Computed as (scatter form, kernel used as is, no flip):")
        lines.append("  y[n, g*C_out/groups + co, i*s + k*d - pad_before] "
                     "+= x[n, ci, i] * w[ci, co, k]")
        lines.append("")
        lines.append("Equivalent direct form (slow):")
        lines.append(
            f"  1. insert s - 1 zeros between input samples: {_shape(g.in_spatial)} -> "
            f"{_shape(self.upsampled_shape)}")
        pads = ", ".join(f"{names[i]} ({b}, {a})" for i, (b, a) in enumerate(self.pad))
        crop = " (negative = crop)" if any(v < 0 for p in self.pad for v in p) else ""
        lines.append(
            f"  2. zero-pad by (d*(k - 1) - pad_before, d*(k - 1) - pad_after + "
            f"output_padding): {pads}{crop} -> {_shape(self.padded_shape)}")
        dil = (f", dilation {_compact(g.dilation)}" if max(g.dilation) > 1 else "")
        lines.append(
            f"  3. correlate at stride 1{dil} with the kernel flipped in every spatial "
            f"axis and C_in/C_out swapped -> {_shape(g.out_spatial)}")
        total, useful = self._useful_products()
        if total:
            lines.append(
                f"  per channel pair it multiplies {total} times, {useful} of them "
                f"({100 * useful / total:.0f}%) by an input sample; the rest hit "
                f"inserted or padded zeros")
        uneven = []
        for i in range(rank):
            counts = self._taps_per_phase(i)
            if len(set(counts)) > 1:
                uneven.append((i, counts))
        if uneven:
            lines.append("")
            dims = ", ".join(names[i] for i, _ in uneven)
            detail = "; ".join(
                f"{names[i]}: kernel {g.kernel[i]}, stride {g.stride[i]}, "
                f"{min(c)} to {max(c)} taps" for i, c in uneven)
            lines.append(
                f"Warning: uneven overlap in {dims} ({detail} per output position). "
                f"The kernel size is not a multiple of the stride, so neighbouring "
                f"outputs sum different numbers of products: the source of "
                f"checkerboard artifacts. A kernel that is a multiple of the stride "
                f"(e.g. {_even_kernel(g, uneven)}) overlaps evenly.")
            if any(min(c) == 0 for _, c in uneven):
                lines.append(
                    "  Some output positions receive no product at all (zero, or "
                    "the bias).")
        lines.append("")
        lines.extend(self._pytorch_lines())
        lines.extend(self._tensorflow_lines())
        return "\n".join(lines)

    def _pytorch_lines(self) -> list:
        g = self.geometry
        rank = g.rank
        if rank > 3:
            return [f"PyTorch has no rank-{rank} transposed convolution."]
        padding, out_pad, slices = [], [], []
        for i in range(rank):
            pb, pa, op = g.pad_before[i], g.pad_after[i], g.output_padding[i]
            limit = max(g.stride[i], g.dilation[i])
            if pb == pa or 0 <= pb - pa + op < limit:
                padding.append(pb)
                out_pad.append(pb - pa + op)
                slices.append(":")
            else:  # not expressible by symmetric padding: compute more and slice
                padding.append(0)
                out_pad.append(max(0, op - pa))
                slices.append(f"{pb}:{pb + g.out_spatial[i]}")
        args = [f"stride={_compact(g.stride)}"]
        if any(padding):
            args.append(f"padding={_compact(padding)}")
        if any(out_pad):
            args.append(f"output_padding={_compact(out_pad)}")
        if g.groups > 1:
            args.append(f"groups={g.groups}")
        if max(g.dilation) > 1:
            args.append(f"dilation={_compact(g.dilation)}")
        call = f"torch.nn.functional.conv_transpose{rank}d(x, weight, {', '.join(args)})"
        if any(s != ":" for s in slices):
            lead = ":, :" if self.batched else ":"
            call += f"[{lead}, {', '.join(slices)}]"
        return ["Same call in PyTorch (weight as is):", f"  {call}"]

    def _tensorflow_lines(self) -> list:
        g = self.geometry
        rank = g.rank
        if rank > 3:
            return [f"TensorFlow has no rank-{rank} transposed convolution."]
        fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[rank]
        modes = {"SAME": True, "VALID": True}
        for i in range(rank):
            s, k_eff, o, n = (g.stride[i], g.effective_kernel[i], g.out_spatial[i],
                              g.in_spatial[i])
            same_pad = max((n - 1) * s + k_eff - o, 0) // 2
            modes["SAME"] &= -(-o // s) == n and same_pad == g.pad_before[i]
            modes["VALID"] &= (-(-(o - k_eff + 1) // s) == n and g.pad_before[i] == 0)
        perm = (*range(2, 2 + rank), 1, 0)
        out_channels = g.out_channels
        batch = str(self.x_shape[0]) if self.batched else "1"
        shape = f"[{batch}, {', '.join(map(str, g.out_spatial))}, {out_channels}]"
        x_perm = (0, *range(2, 2 + rank), 1)
        head = [f"Same call in TensorFlow ({fmt}; filters [{', '.join(f'k{a}' for a in _axis_names(rank))}, "
                f"C_out/groups, C_in] = weight transposed, not flipped):",
                f"  filters = weight.transpose{perm}"]
        x_expr = f"x.transpose{x_perm}" if self.batched else f"x[None].transpose{x_perm}"
        func = f"tf.nn.conv{rank}d_transpose"
        dil = f", dilations={_compact(g.dilation)}" if max(g.dilation) > 1 else ""
        if modes["VALID"] or modes["SAME"]:
            padding = '"VALID"' if modes["VALID"] else '"SAME"'
        else:
            pairs = []
            for i in range(rank):
                pa_tf = max(g.pad_after[i] - g.output_padding[i], 0)
                if g.output_padding[i] - g.pad_after[i] > g.stride[i] - 1:
                    return head[:1] + [
                        "  not expressible: TensorFlow cannot reach output_padding >= "
                        "stride (it comes from dilation > stride)."]
                pairs.append(f"[{g.pad_before[i]}, {pa_tf}]")
            padding = f"[[0, 0], {', '.join(pairs)}, [0, 0]]"
            if rank != 2:
                func = f"numba_deconv.compat.tensorflow.conv{rank}d_transpose"
                head.append(f"  (tf.nn.conv{rank}d_transpose has no explicit padding; "
                            f"the compat function accepts it)")
        refused = [name for name, used in (("groups", g.groups > 1),
                                           ("dilation > 1", max(g.dilation) > 1)) if used]
        if refused:
            head.append(f"  (TensorFlow runs {' and '.join(refused)} on GPUs only: its CPU "
                        f"kernels refuse them)")
        head.append(f"  {func}({x_expr}, filters, output_shape={shape}, "
                    f"strides={_compact(g.stride)}, padding={padding}{dil})")
        return head


def _shape(values) -> str:
    return "x".join(str(v) for v in values)


def _compact(values):
    values = tuple(values)
    return values[0] if len(set(values)) == 1 else values


def _even_kernel(g: Geometry, uneven) -> str:
    i = uneven[0][0]
    s, k = g.stride[i], g.kernel[i]
    return f"kernel {-(-k // s) * s} at stride {s}"


def explain(x_shape: Sequence[int], weight_shape: Sequence[int], *, stride: Ints = 1,
            padding: Padding = 0, output_padding: Ints = 0, dilation: Ints = 1,
            groups: int = 1, output_size: Ints | None = None) -> Explanation:
    """Explain the arithmetic of ``conv_transpose(x, weight, ...)``.

    Parameters
    ----------
    x_shape : sequence of int
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``, channels
        first.
    weight_shape : sequence of int
        ``(C_in, C_out/groups, *kernel)``.
    stride, padding, output_padding, dilation, groups, output_size
        As in :func:`numba_deconv.conv_transpose` (``output_size`` the
        spatial sizes or the full output shape).

    Returns
    -------
    Explanation
        ``.output_shape``, ``.upsampled_shape``, ``.pad``, ``.kernel_flip``,
        ``.direct(x, w)``; ``str()`` gives a short account of the call.

    Raises
    ------
    ValueError, TypeError
        The same errors as :func:`numba_deconv.conv_transpose` for the same
        arguments; a shape that is not a sequence of non-negative ints.

    Examples
    --------
    >>> from numba_deconv.explain import explain
    >>> e = explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2)
    >>> e.output_shape, e.upsampled_shape, e.pad, e.kernel_flip
    ((1, 1, 5, 5), (3, 3), ((2, 2), (2, 2)), True)
    """
    from ._params import shape_tuple
    from ._plan import plan_call

    x_shape = shape_tuple("x_shape", x_shape)
    weight_shape = shape_tuple("weight_shape", weight_shape)
    f64 = np.dtype(np.float64)
    plan = plan_call(x_shape, f64, weight_shape, f64, None, None, stride=stride,
                     padding=padding, output_padding=output_padding, dilation=dilation,
                     groups=groups, output_size=output_size, padding_mode="zeros",
                     data_format="channels_first")
    g = plan.geometry
    upsampled = tuple((i - 1) * s + 1 for i, s in zip(g.in_spatial, g.stride))
    pad = tuple((d * (k - 1) - pb, d * (k - 1) - pa + op) for d, k, pb, pa, op in zip(
        g.dilation, g.kernel, g.pad_before, g.pad_after, g.output_padding))
    return Explanation(x_shape=x_shape, weight_shape=weight_shape, geometry=g,
                       output_shape=tuple(plan.out_shape), upsampled_shape=upsampled,
                       pad=pad)


# --------------------------------------------------------------------- CLI
def _sizes(text: str) -> tuple:
    """'1x1x2x2' or '1,1,2,2' -> (1, 1, 2, 2)."""
    try:
        return tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of sizes; write e.g. 1x1x2x2") from None


def _per_dim(text: str):
    values = _sizes(text)
    return values[0] if len(values) == 1 else values


def _padding(text: str):
    """'same', 'valid', '1', '1x2' or before:after pairs '1:2x0:1'."""
    if text.lower() in ("same", "valid"):
        return text.lower()
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [tuple(int(v) for v in p.split(":")) if ":" in p else int(p)
                  for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a padding; write same, valid, 1, 1x2 or 1:2x0:1 "
            f"(before:after per dim)") from None
    return values[0] if len(values) == 1 and not isinstance(values[0], tuple) else values


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``explain`` on an ``argparse`` subparsers object.

    The parser's default ``func`` is :func:`cli_explain`.
    """
    p = subparsers.add_parser(
        "explain", help="show the arithmetic of one transposed convolution",
        description="Print the output-size formula, the equivalent direct form, "
                    "the reachable sizes and the same call for PyTorch and TensorFlow.")
    p.add_argument("--input", required=True, type=_sizes, metavar="SHAPE",
                   help="x shape, channels first, e.g. 1x1x2x2 (N x C_in x H x W)")
    p.add_argument("--kernel", required=True, type=_sizes, metavar="SHAPE",
                   help="weight shape (C_in x C_out/groups x kH x kW), e.g. 1x1x3x3")
    p.add_argument("--stride", type=_per_dim, default=1, help="e.g. 2 or 2x1")
    p.add_argument("--padding", type=_padding, default=0,
                   help="same, valid, 1, 1x2, or before:after per dim (1:2x0:1)")
    p.add_argument("--output-padding", type=_per_dim, default=0, dest="output_padding")
    p.add_argument("--dilation", type=_per_dim, default=1)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--output-size", type=_sizes, default=None, dest="output_size",
                   help="spatial output size, e.g. 6x6")
    p.set_defaults(func=cli_explain)
    return p


def cli_explain(args) -> int:
    """Print ``str(explain(...))`` for parsed CLI arguments; 2 on a bad argument."""
    try:
        e = explain(args.input, args.kernel, stride=args.stride, padding=args.padding,
                    output_padding=args.output_padding, dilation=args.dilation,
                    groups=args.groups, output_size=args.output_size)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(e)
    return 0


# -------------------------------------------------------------------- demo
DEMO_INPUT = np.array([[-67.0, -77.0], [-117.0, -127.0]])
DEMO_KERNEL = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])


def demo_text() -> str:
    """TensorFlow's worked example (2x2 input, 3x3 kernel, stride 2, VALID)
    walked through with :func:`explain`, as text."""
    from .api import conv_transpose

    x, w = DEMO_INPUT[None, None], DEMO_KERNEL[None, None]
    e = explain(x.shape, w.shape, stride=2)
    d = e.direct(x, w)
    y = conv_transpose(x, w, stride=2)
    assert np.array_equal(y, d.result)

    def block(a) -> str:
        return "\n".join("    " + " ".join(f"{v:6.0f}" for v in row) for row in a)

    return "\n".join([
        "TensorFlow's worked example: conv2d_transpose, stride 2, VALID, 2x2 -> 5x5",
        "",
        "  input x:", block(DEMO_INPUT),
        "  kernel w:", block(DEMO_KERNEL),
        "  output y = conv_transpose(x, w, stride=2):", block(y[0, 0]),
        "",
        f"Why y[0, 0] = {y[0, 0, 0, 0]:g}: each input sample scatters a copy of the "
        f"kernel, scaled by",
        "the sample, at stride 2. Only x[0, 0] reaches the corner, through tap "
        "w[0, 0]:",
        "-67 x -1 = 67. The kernel is not flipped (a flipped one would give "
        "-67 x -9 = 603).",
        "",
        str(e),
        "",
        "The direct form step by step (explain(...).direct(x, w)):",
        "  1. zero-inserted input:", block(d.upsampled[0, 0]),
        f"  2. padded by {e.pad}:", block(d.padded[0, 0]),
        "  3. flipped kernel (correlated at stride 1):", block(d.flipped_kernel[0, 0]),
        "  result (equal to y):", block(d.result[0, 0]),
        "  At the corner the flipped kernel's last tap -1 meets -67: the flip in "
        "the direct",
        "  form undoes the flip of correlation, so both forms give 67.",
    ])
