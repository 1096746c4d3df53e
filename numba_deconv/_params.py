"""Normalising the geometric arguments of a transposed convolution.

Pure Python, no Numba: every public entry point (``conv_transpose``, the
TensorFlow and ONNX front ends, ``explain``, the CUDA backend) turns its
arguments into one :class:`Geometry` here, so the arithmetic of sizes and
padding lives in one place and every bad value is reported the same way.

Per spatial dimension (``s`` stride, ``d`` dilation, ``k`` kernel size)::

    O = (I - 1)*s - pad_before - pad_after + d*(k - 1) + 1 + output_padding

with ``0 <= output_padding < max(s, d)``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

PADDING_STRINGS = ("valid", "same")

#: The largest stride or dilation: the kernels index in int64, and a step
#: beyond this is never a real geometry (it only overflows).
MAX_STEP = 2**31 - 1
#: The largest span of any spatial dim (the full scatter extent of a
#: transposed convolution, the padded input of a convolution): products of
#: a position with a small factor stay inside int64.
MAX_EXTENT = 2**62


@dataclass(frozen=True)
class Geometry:
    """Sizes of one transposed convolution, all spatial tuples of length ``rank``.

    ``pad_before``/``pad_after`` are the implicit zero padding of the
    *forward* convolution, i.e. how much the full scatter result is cropped
    at each end; ``output_padding`` is added at the end of each dim.
    """

    in_channels: int
    out_channels: int
    groups: int
    in_spatial: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad_before: tuple
    pad_after: tuple
    output_padding: tuple
    out_spatial: tuple

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def effective_kernel(self) -> tuple:
        """Span of the dilated kernel, ``d*(k - 1) + 1`` per dim."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def base_out_spatial(self) -> tuple:
        """Output size per dim without output_padding (the smallest reachable)."""
        return tuple(
            o - op for o, op in zip(self.out_spatial, self.output_padding))

    @property
    def reachable_out_spatial(self) -> tuple:
        """Per dim the inclusive (lowest, highest) output size these pads reach."""
        return tuple(
            (b, b + max(s, d) - 1)
            for b, s, d in zip(self.base_out_spatial, self.stride, self.dilation))

    @property
    def flops(self) -> int:
        """Real multiply-adds x 2 per image (no inserted zeros counted)."""
        k = 1
        for v in self.kernel:
            k *= v
        i = 1
        for v in self.in_spatial:
            i *= v
        return 2 * self.in_channels * (self.out_channels // self.groups) * k * i


def is_int(value) -> bool:
    """An integer (NumPy's too), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fmt(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def int_tuple(name: str, value, rank: int, *, minimum: int, maximum: int | None = None) -> tuple:
    """An int or a sequence of ``rank`` ints, each ``>= minimum`` (and
    ``<= maximum`` where given), as a tuple."""
    if is_int(value):
        values = (int(value),) * rank
    elif isinstance(value, (tuple, list)) or _looks_like_array(value):
        values = tuple(value)
        if len(values) != rank:
            raise ValueError(
                f"{name}={_fmt(value)} has {len(values)} entries; expected an int "
                f"or {rank} ints (one per spatial dim of a rank-{rank} "
                f"convolution)")
        if not all(is_int(v) for v in values):
            raise TypeError(
                f"{name}={_fmt(value)} must hold integers; got "
                f"{[type(v).__name__ for v in values]}")
        values = tuple(int(v) for v in values)
    else:
        raise TypeError(
            f"{name}={_fmt(value)} must be an int or a sequence of {rank} ints; "
            f"got {_type_name(value)}")
    bad = [v for v in values if v < minimum]
    if bad:
        raise ValueError(
            f"{name}={_fmt(value)} must be >= {minimum} in every dim; got {bad[0]}")
    if maximum is not None:
        bad = [v for v in values if v > maximum]
        if bad:
            raise ValueError(
                f"{name}={_fmt(value)} must be <= {maximum} in every dim; got {bad[0]}")
    return values


def shape_tuple(name: str, value) -> tuple:
    """A shape given by the caller (``explain``'s shapes, an operator's
    ``input_shape``): a sequence of non-negative ints, as a tuple. Floats
    are refused rather than truncated."""
    if isinstance(value, (str, bytes)) or not (
            isinstance(value, (tuple, list)) or _looks_like_array(value)):
        raise TypeError(
            f"{name}={_fmt(value)} must be a sequence of ints, e.g. (1, 2, 5); got "
            f"{_type_name(value)}")
    values = tuple(value)
    if not all(is_int(v) for v in values):
        raise TypeError(
            f"{name}={_fmt(value)} must hold integers; got "
            f"{[type(v).__name__ for v in values]}")
    values = tuple(int(v) for v in values)
    bad = [v for v in values if v < 0]
    if bad:
        raise ValueError(f"{name}={_fmt(value)} must be >= 0 in every dim; got {bad[0]}")
    return values


def _type_name(value) -> str:
    if getattr(value, "ndim", None) == 0 and hasattr(value, "dtype"):
        return f"a 0-d {type(value).__name__} (use int(...) or a sequence)"
    return type(value).__name__


def _looks_like_array(value) -> bool:
    """A NumPy-like array of at least one dim (a 0-d array has no length)."""
    return (hasattr(value, "__len__") and hasattr(value, "dtype") and not isinstance(value, str)
            and getattr(value, "ndim", 1) >= 1)


def padding_pairs(padding, rank: int, in_spatial: tuple, kernel: tuple,
                  stride: tuple, dilation: tuple):
    """Resolve ``padding`` to ``(before, after)`` per dim.

    Returns ``(pairs, same)`` where ``same`` tells that the output size is
    fixed at ``input * stride`` ("same").
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * rank, False
        if mode == "same":
            pairs = []
            for k, s, d in zip(kernel, stride, dilation):
                total = max(d * (k - 1) + 1 - s, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs), True
        raise ValueError(
            f"padding={padding!r} is not a padding mode; use 'valid', 'same', an "
            f"int, {rank} ints, or {rank} (before, after) pairs")
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"padding={padding} must be >= 0")
        return ((int(padding), int(padding)),) * rank, False
    if not (isinstance(padding, (tuple, list)) or _looks_like_array(padding)):
        raise TypeError(
            f"padding={padding!r} must be 'valid', 'same', an int, {rank} ints or "
            f"{rank} (before, after) pairs; got {_type_name(padding)}")
    entries = tuple(padding)
    if len(entries) != rank:
        raise ValueError(
            f"padding={_fmt(padding)} has {len(entries)} entries; expected an int, "
            f"{rank} ints or {rank} (before, after) pairs for a rank-{rank} "
            f"convolution")
    pairs = []
    for entry in entries:
        if is_int(entry):
            pair = (int(entry), int(entry))
        elif isinstance(entry, (tuple, list)) or _looks_like_array(entry):
            pair = tuple(entry)
            if len(pair) != 2 or not all(is_int(v) for v in pair):
                raise ValueError(
                    f"padding={_fmt(padding)}: entry {_fmt(entry)} is not a "
                    f"(before, after) pair of ints")
            pair = (int(pair[0]), int(pair[1]))
        else:
            raise TypeError(
                f"padding={_fmt(padding)}: entry {_fmt(entry)} must be an int or a "
                f"(before, after) pair of ints")
        if min(pair) < 0:
            raise ValueError(
                f"padding={_fmt(padding)} must be >= 0 in every dim; got {pair}")
        pairs.append(pair)
    return tuple(pairs), False


def _check_groups(groups) -> None:
    if not is_int(groups):
        raise TypeError(f"groups={_fmt(groups)} must be an int; got {type(groups).__name__}")
    if groups < 1:
        raise ValueError(f"groups={groups} must be >= 1")


def _check_sizes(in_spatial, in_channels, weight_shape) -> None:
    """Shapes given as numbers (``explain``, plans) cannot be negative."""
    if in_channels < 0 or any(i < 0 for i in in_spatial):
        raise ValueError(
            f"x has {in_channels} channels and spatial shape {tuple(in_spatial)}; sizes "
            f"must be >= 0")
    if any(int(v) < 0 for v in weight_shape):
        raise ValueError(
            f"weight shape {tuple(weight_shape)} has a negative size; sizes must be >= 0")


def resolve_geometry(in_spatial, in_channels, weight_shape, *, stride=1,
                     padding=0, output_padding=0, dilation=1, groups=1,
                     output_size=None, empty_output=False) -> Geometry:
    """Check every geometric argument and return the :class:`Geometry`.

    ``in_spatial`` is the input's spatial shape, ``weight_shape`` the
    ``(C_in, C_out/groups, *kernel)`` shape, ``output_size`` ``None`` or the
    spatial output size (one int per dim). Raises ``ValueError`` or
    ``TypeError`` naming the argument, its value and what would be valid.
    """
    rank = len(weight_shape) - 2
    in_spatial = tuple(int(v) for v in in_spatial)
    kernel = tuple(int(v) for v in weight_shape[2:])
    w_in, w_out_per_group = int(weight_shape[0]), int(weight_shape[1])
    _check_sizes(in_spatial, in_channels, weight_shape)

    _check_groups(groups)
    if w_in != in_channels:
        raise ValueError(
            f"weight has {w_in} input channels (weight.shape[0]) but x has "
            f"{in_channels}; the weight layout is (C_in, C_out/groups, *kernel)")
    if in_channels == 0 or w_out_per_group == 0:
        raise ValueError(
            f"weight shape {tuple(weight_shape)} has no channels; C_in and "
            f"C_out/groups must be >= 1")
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the {in_channels} input channels; "
            f"valid groups divide {in_channels}")
    if any(k == 0 for k in kernel):
        raise ValueError(
            f"weight shape {tuple(weight_shape)} has an empty kernel; every "
            f"kernel size must be >= 1")

    stride_arg, dilation_arg = stride, dilation
    stride = int_tuple("stride", stride, rank, minimum=1, maximum=MAX_STEP)
    dilation = int_tuple("dilation", dilation, rank, minimum=1, maximum=MAX_STEP)
    limits = tuple(max(s, d) for s, d in zip(stride, dilation))
    for dim, (i, s, d, k, lim) in enumerate(zip(in_spatial, stride, dilation, kernel, limits)):
        span = (i - 1) * s + d * (k - 1) + 1 + lim
        if span > MAX_EXTENT:
            raise ValueError(
                f"stride={_fmt(stride_arg)} and dilation={_fmt(dilation_arg)} make spatial "
                f"dim {dim} span ({i} - 1)*{s} + {d}*({k} - 1) + 1 = {span - lim} "
                f"positions, more than an array can index ({MAX_EXTENT}); reduce the "
                f"stride or dilation")
    pairs, same = padding_pairs(padding, rank, in_spatial, kernel, stride, dilation)
    pad_before = tuple(p[0] for p in pairs)
    pad_after = tuple(p[1] for p in pairs)
    base = tuple(
        (i - 1) * s - pb - pa + d * (k - 1) + 1
        for i, s, pb, pa, k, d in zip(in_spatial, stride, pad_before, pad_after,
                                      kernel, dilation))

    user_op = int_tuple("output_padding", output_padding, rank, minimum=0)
    for dim, (op, lim, s, d) in enumerate(zip(user_op, limits, stride, dilation)):
        if op >= lim:
            raise ValueError(
                f"output_padding={_fmt(output_padding)} must be smaller than "
                f"max(stride, dilation) = max({s}, {d}) = {lim} in dim {dim}; "
                f"valid values are 0..{lim - 1}")
    if same and any(user_op):
        raise ValueError(
            f"output_padding={_fmt(output_padding)} cannot be combined with "
            f"padding='same', which fixes the output size at input * stride; use "
            f"output_size to choose another reachable size")

    if output_size is not None:
        if any(user_op):
            raise ValueError(
                f"pass output_padding={_fmt(output_padding)} or "
                f"output_size={_fmt(output_size)}, not both: each fixes the "
                f"output size")
        wanted = int_tuple("output_size", output_size, rank, minimum=0 if empty_output else 1)
        op = []
        for dim, (o, b, lim) in enumerate(zip(wanted, base, limits)):
            if not b <= o <= b + lim - 1:
                raise ValueError(
                    f"output_size={_fmt(output_size)}: size {o} in spatial dim "
                    f"{dim} is not reachable; with input size {in_spatial[dim]}, "
                    f"stride {stride[dim]}, dilation {dilation[dim]}, kernel "
                    f"{kernel[dim]} and padding {pairs[dim]} the reachable sizes "
                    f"are {b}..{b + lim - 1}")
            op.append(o - b)
        out_padding = tuple(op)
    elif same:
        out_padding = tuple(i * s - b for i, s, b in zip(in_spatial, stride, base))
    else:
        out_padding = user_op

    out_spatial = tuple(b + op for b, op in zip(base, out_padding))
    for dim, o in enumerate(out_spatial):
        if o < 1 and not (empty_output and o == 0):
            raise ValueError(
                f"padding={_fmt(padding)} leaves no output in spatial dim {dim}: "
                f"({in_spatial[dim]} - 1)*{stride[dim]} - {pad_before[dim]} - "
                f"{pad_after[dim]} + {dilation[dim]}*({kernel[dim]} - 1) + 1 + "
                f"{out_padding[dim]} = {o}; reduce the padding")
    return Geometry(
        in_channels=in_channels, out_channels=w_out_per_group * groups,
        groups=int(groups), in_spatial=in_spatial, kernel=kernel, stride=stride,
        dilation=dilation, pad_before=pad_before, pad_after=pad_after,
        output_padding=out_padding, out_spatial=out_spatial)


def resolve_conv_geometry(in_spatial, in_channels, weight_shape, *, stride=1, padding=0,
                          dilation=1, groups=1) -> Geometry:
    """Check the arguments of a (forward) convolution; return the
    :class:`Geometry` of its adjoint transposed convolution.

    ``in_spatial`` and ``in_channels`` are the convolution's input, and
    ``weight_shape`` its ``(C_out, C_in/groups, *kernel)`` weight, which is
    also the adjoint's weight: the geometry runs from the convolution's
    output (``in_spatial`` of the result, ``O = floor((I + pb + pa -
    d*(k-1) - 1)/s) + 1`` per dim) back to its input (``out_spatial``).
    "same" follows TensorFlow: ``O = ceil(I / s)``, total padding ``max((O -
    1)*s + d*(k-1) + 1 - I, 0)``, ``total // 2`` before.
    """
    rank = len(weight_shape) - 2
    in_spatial = tuple(int(v) for v in in_spatial)
    kernel = tuple(int(v) for v in weight_shape[2:])
    c_out, c_in_per_group = int(weight_shape[0]), int(weight_shape[1])
    _check_sizes(in_spatial, in_channels, weight_shape)
    _check_groups(groups)
    if c_in_per_group * groups != in_channels:
        raise ValueError(
            f"weight has {c_in_per_group} input channels per group (weight.shape[1]) "
            f"and groups={groups}, so x needs {c_in_per_group * groups} channels; it "
            f"has {in_channels}. The weight layout of conv is (C_out, C_in/groups, *kernel)")
    if c_out % groups:
        raise ValueError(
            f"groups={groups} must divide the {c_out} output channels (weight.shape[0])")
    if any(k == 0 for k in kernel) or c_out == 0 or c_in_per_group == 0:
        raise ValueError(
            f"weight shape {tuple(weight_shape)} is empty; channels and kernel sizes "
            f"must be >= 1")
    dilation_arg = dilation
    stride = int_tuple("stride", stride, rank, minimum=1, maximum=MAX_STEP)
    dilation = int_tuple("dilation", dilation, rank, minimum=1, maximum=MAX_STEP)
    if isinstance(padding, str) and padding.lower() == "same":
        pairs = []
        for i, k, s, d in zip(in_spatial, kernel, stride, dilation):
            total = max((-(-i // s) - 1) * s + d * (k - 1) + 1 - i, 0)
            pairs.append((total // 2, total - total // 2))
    else:
        pairs, _ = padding_pairs(padding, rank, in_spatial, kernel, stride, dilation)
    out = []
    for dim, (i, k, s, d, (pb, pa)) in enumerate(zip(in_spatial, kernel, stride, dilation,
                                                      pairs)):
        span = d * (k - 1) + 1
        if i + pb + pa > MAX_EXTENT or span > MAX_EXTENT:
            raise ValueError(
                f"padding={_fmt(padding)} and dilation={_fmt(dilation_arg)} make spatial dim "
                f"{dim} span {max(i + pb + pa, span)} positions (input {i} padded by "
                f"{(pb, pa)}, kernel span {span}), more than an array can index "
                f"({MAX_EXTENT}); reduce the padding or dilation")
        if i + pb + pa < span:
            raise ValueError(
                f"the kernel spans {span} positions in spatial dim {dim} (dilation {d} x "
                f"(kernel {k} - 1) + 1) but x padded by {(pb, pa)} has only "
                f"{i + pb + pa}; pad more or use a smaller kernel or dilation")
        out.append((i + pb + pa - span) // s + 1)
    # The adjoint's output is conv's input, which may have no positions.
    return resolve_geometry(tuple(out), c_out, weight_shape, stride=stride,
                            padding=tuple(pairs), dilation=dilation, groups=groups,
                            output_size=in_spatial, empty_output=True)
