"""The public ``conv_transpose`` and ``conv``: arrays in, arrays out.

Checks and planning live in :mod:`numba_deconv._plan`, the choice of device
and kernel in :mod:`numba_deconv._dispatch`; here the arrays are brought to
the kernels' layout and the result back to the caller's. ``conv`` of rank
<= 3 runs on its own kernels (:mod:`numba_deconv.cpu.correlate`), other
ranks and BLAS-thick complex data as a sum of stride-1 transposed
convolutions (see :func:`numba_deconv._dispatch.conv_call`); padding modes pad or fold in
:mod:`numba_deconv._padding`.
"""

from __future__ import annotations


import numpy as np

from . import _dispatch, _outputs, _padding, _weight_memo
from ._plan import as_array, check_out, foreign_arrays
from .cpu import driver, real_views, transpose
from ._typing import ArrayLike, DataFormat, Device, Ints, Padding, PaddingMode


def conv_transpose(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *,
                   stride: Ints = 1, padding: Padding = 0, output_padding: Ints = 0,
                   dilation: Ints = 1, groups: int = 1, output_size: Ints | None = None,
                   padding_mode: PaddingMode = "zeros",
                   data_format: DataFormat = "channels_first", device: Device = "auto",
                   out: np.ndarray | None = None) -> np.ndarray:
    """Transposed convolution (deconvolution) of ``x`` with ``weight``.

    Computes, for every input position ``i`` and kernel tap ``k`` (per
    spatial dim), with ``ci`` an input channel of group ``g``::

        y[n, g*Cout_g + co, i*s + k*d - pad_before] += x[n, ci, i] * weight[ci, co, k]

    then adds ``bias``. The kernel is not flipped: this is what PyTorch's
    ``conv_transpose{1,2,3}d``, TensorFlow's ``conv2d_transpose`` and ONNX
    ``ConvTranspose`` compute. Per spatial dim the output size is
    ``(I - 1)*s - pad_before - pad_after + d*(k - 1) + 1 + output_padding``.

    Parameters
    ----------
    x : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; with
        ``data_format="channels_last"`` ``(N, *spatial, C_in)`` or
        ``(*spatial, C_in)``.
    weight : array_like
        ``(C_in, C_out/groups, *kernel)``, the PyTorch/ONNX layout; its rank
        fixes the number of spatial dims ``n = weight.ndim - 2`` (any n >= 1).
    bias : array_like, optional
        ``(C_out,)``, added to every output position of its channel.
    stride, dilation : int or sequence of n ints, >= 1
    padding : int, sequence, "valid" or "same"
        An int, one int per dim, one ``(before, after)`` pair per dim, "valid"
        (no padding) or "same" (output = input * stride, TensorFlow/ONNX
        SAME_UPPER: total ``max(d*(k-1) + 1 - s, 0)``, ``total // 2`` before).
    output_padding : int or sequence of n ints
        Extra size at the end of each dim, ``0 <= output_padding < max(s, d)``.
    groups : int
        Input and output channels split into ``groups`` independent groups.
    output_size : sequence of int, optional
        The wanted spatial output size (or the full output shape); picks
        the output padding. Must lie in the reachable range.
    padding_mode : {"zeros", "circular", "reflect", "replicate"}
        With a mode other than "zeros", the exact adjoint of :func:`conv`
        with that mode: the scatter covers the padded border too, and what
        lands there folds back onto the interior elements the padding copied
        (wrapping around, mirrored without the edge, or onto the edge).
    data_format : {"channels_first", "channels_last"}
    device : {"auto", "cpu", "cuda"}
        "auto" runs where the data lives.
    out : numpy.ndarray, optional
        Preallocated result of the right shape and dtype; filled and returned.
        Not with a Dask array ``x``, which gives a lazy Dask array (spatial
        chunks are exact: neighbouring chunks' halos are added up).

    Returns
    -------
    numpy.ndarray
        The result, in ``x``'s format, of dtype ``numpy.result_type`` of the
        inputs (integers and bools compute in float64, float16 in float32).

    Raises
    ------
    ValueError, TypeError
        For any inconsistent or malformed argument, before any computation.
    RuntimeError
        For ``device="cuda"`` when no CUDA GPU is usable.

    Notes
    -----
    The first call of a kind (device, rank, dtype, kernel) compiles its
    kernel with Numba, which takes seconds; Numba's on-disk cache keeps the
    machine code, so later calls and later processes load it in
    milliseconds. The ``numba_deconv`` logger says so at INFO level, and
    :func:`precompile` compiles ahead of time.

    The CPU kernels run on Numba's threads (``numba.set_num_threads``): the
    result is bitwise the same for any thread count, and several Python
    threads may call at once. Ctrl-C stops a long call made on the main
    thread (its ``out`` is then partially written).

    A result of at least ``config.OUTPUT_CACHE_MIN_BYTES`` may reuse the
    memory of an earlier result that was dropped, never one still
    referenced; :func:`release_memory` hands that memory back.

    Examples
    --------
    The TensorFlow worked example (VALID, stride 2): the first element is
    ``-67 * -1``, the kernel is not flipped.

    >>> import numpy as np, numba_deconv
    >>> x = np.array([[[[-67., -77.], [-117., -127.]]]])
    >>> w = np.array([[[[-1., 2., -3.], [4., -5., 6.], [-7., 8., -9.]]]])
    >>> y = numba_deconv.conv_transpose(x, w, stride=2)
    >>> y.shape
    (1, 1, 5, 5)
    >>> y[0, 0]
    array([[   67.,  -134.,   278.,  -154.,   231.],
           [ -268.,   335.,  -710.,   385.,  -462.],
           [  586.,  -770.,  1620.,  -870.,  1074.],
           [ -468.,   585., -1210.,   635.,  -762.],
           [  819.,  -936.,  1942., -1016.,  1143.]])
    """
    args = (stride, padding, output_padding, dilation, groups, output_size, padding_mode,
            data_format)
    if _plain_numpy(device, x, weight, bias, out):
        call = _dispatch.cpu_call(x.shape, x.dtype, weight.shape, weight.dtype,
                                  None if bias is None else (bias.shape, bias.dtype), args)
        return apply_conv_transpose(call, x, weight, bias, out)
    return _conv_transpose(x, weight, bias, out=out, device=device, args=args)


@foreign_arrays
def _conv_transpose(x, weight, bias, *, out, device, args):
    """:func:`conv_transpose` of anything but plain NumPy arrays: Dask, device
    and foreign arrays, a foreign ``out``, a ``device`` asked for."""
    if _is_dask(x, device, out):
        from ._dask import conv_transpose_dask

        return conv_transpose_dask(x, weight, bias, **dict(zip(_dispatch._ARG_NAMES, args)))
    if _on_gpu(device, x, weight, bias, out):
        from .cuda.backend import conv_transpose_cuda

        return conv_transpose_cuda(x, weight, bias, out=out,
                                   **dict(zip(_dispatch._ARG_NAMES, args)))
    x, weight, bias = _arrays(x, weight, bias)
    call = _dispatch.cpu_call(x.shape, x.dtype, weight.shape, weight.dtype,
                              None if bias is None else (bias.shape, bias.dtype), args)
    return apply_conv_transpose(call, x, weight, bias, out)


def apply_conv_transpose(call, x, weight, bias, out, prepared=None):
    """:func:`conv_transpose` of a planned call; ``prepared``, a dict kept
    by a caller that repeats the call with this weight, keeps the weights
    as the kernels lay them out (see :func:`numba_deconv.cpu.driver.run`).
    Without one, the phase tiles' calls take the layouts that
    :mod:`numba_deconv._weight_memo` kept for weights of these bytes."""
    plan, geometry = call.plan, call.geometry
    if call.serial and kernel_ready(
            plan.dtype, *((x, weight) if bias is None else (x, weight, bias))) and (
                out is None or writes_in_place(out, plan, x, weight, bias)):
        return call.serial(x, weight, call.no_bias if bias is None else bias, out)
    # Channels-last data goes to the kernels as it is where nothing else
    # needs it channels first (the driver picks kernels that read it so).
    keep_last = plan.channels_last and plan.padding_mode == "zeros" and x.size > 0
    x_cf, w_k, bias_k, result, direct_out = _prepare(
        plan, call, x, weight, bias, out, (geometry.out_channels,) + geometry.out_spatial,
        folded=plan.padding_mode != "zeros", keep_last=keep_last)
    if prepared is None and _keeps_layouts(call, "phase_tiles"):
        prepared = _weight_memo.kept(call, w_k)
    if keep_last:
        _run_transposed(call, x_cf, w_k, bias_k, result, prepared, channels_last=True)
    elif plan.batch and x_cf.size:
        if plan.padding_mode == "zeros":
            _run_transposed(call, x_cf, w_k, bias_k, result, prepared)
        else:  # the bias goes on after folding, once per element
            _run_transposed(call, x_cf, w_k, call.no_bias, result, prepared)
            pairs = tuple(zip(plan.geometry.pad_before, plan.geometry.pad_after))
            result = _padding.fold(result, pairs, plan.padding_mode)
            if bias is not None:
                result += bias_k.reshape((-1,) + (1,) * geometry.rank)
    elif plan.batch:  # an input without positions: an empty sum, the bias alone
        result = np.empty((plan.batch, geometry.out_channels) + plan.geometry.out_spatial,
                          plan.dtype)
        result[...] = bias_k.reshape((-1,) + (1,) * geometry.rank)
    elif plan.padding_mode != "zeros":
        result = np.empty((0, geometry.out_channels) + plan.geometry.out_spatial, plan.dtype)
    if call.serial is None:
        _find_serial(call)
    return _finish(plan, result, out, direct_out, keep_last)


#: numpy.ndarray.flags.num bits of an array the kernels take as it is:
#: C-contiguous, aligned, writable.
KERNEL_READY = 0x1 | 0x100 | 0x400


def kernel_ready(dtype, *arrays) -> bool:
    """Whether the kernels can take ``arrays`` as they are: NumPy arrays of
    ``dtype``, C-contiguous, aligned, writable."""
    for a in arrays:
        if (type(a) is not np.ndarray or a.dtype != dtype
                or a.flags.num & KERNEL_READY != KERNEL_READY):
            return False
    return True


def writes_in_place(out, plan, *arrays) -> bool:
    """Whether a kernel can write ``out`` as it is: a kernel-ready NumPy
    array of the planned result's shape and dtype that shares no memory
    with ``arrays`` (None among them is skipped)."""
    return (kernel_ready(plan.dtype, out) and out.shape == plan.out_shape
            and not any(np.may_share_memory(out, a) for a in arrays if a is not None))


def _find_serial(call) -> None:
    """For tiny calls the layers around the kernel cost more than its
    arithmetic: once the serial row kernel that runs a call shape is
    compiled, later calls of that shape with kernel-ready arrays (and an
    ``out`` it can write as it is, or none) call it directly
    (:func:`numba_deconv.cpu.driver.serial_runner`) -- the same kernel on
    the same arrays, so the same bits. Only for
    real data without a padding mode; channels last, where one channel or
    one position does not lay out the input and the output as channels
    first would, through the transposes that the driver makes around the
    same kernel (:func:`numba_deconv.cpu.kernels.rows_tiny_last`)."""
    plan = call.plan
    g = call.geometry
    reordered = plan.channels_last and not (
        transpose.same_order(g.in_channels, g.in_spatial)
        and transpose.same_order(g.out_channels, g.out_spatial))
    _set_serial(call, plan.padding_mode == "zeros" and plan.dtype.kind == "f",
                "rows_serial", driver.serial_runner, channels_last=reordered)


def _set_serial(call, eligible: bool, kernel: str, runner, **options) -> None:
    """``call.serial``: ``runner``'s direct call of ``call``'s route where
    the call is ``eligible`` and the route runs ``kernel`` (None until that
    kernel is compiled: looked for again on a later call), else False;
    ``options`` go to ``runner``."""
    route = call.route() if eligible else None
    if route is None or route.kernel != kernel:
        call.serial = False
        return
    call.serial = runner(route, call.plan.dtype, call.plan.out_shape, **options)


def _keeps_layouts(call, tiles: str) -> bool:
    """Whether ``call``'s weights' layouts are kept for its next call with
    the same weights (:mod:`numba_deconv._weight_memo`): where its kernel,
    or its real twin's for complex data, is the register ``tiles``, which
    build their weight table on every call (21 -> 2 channels k4: 107 ->
    90 µs). The columns kernel reads a one-off call's weights where they
    lie, and its packed weights did not repay comparing them (128 -> 128
    channels k2 s2 on a 2x2 image: 69 -> 93 µs); other kernels read them
    as they are, and so do calls of 4 or more dims, slice by slice."""
    routed = _dispatch.real_twin(call) or call
    if getattr(routed, "phases", None) is not None:
        return False
    route = routed.route()
    return route.kernel == tiles and route.inner is None


def _run_transposed(call, x_cf, w_k, bias_k, result, prepared, channels_last=False):
    """The kernels of a ``conv_transpose`` call into ``result``; complex
    data as its real twin (:func:`numba_deconv._dispatch.real_twin`), whose
    channels last are the complex arrays' real views."""
    twin = _dispatch.real_twin(call)
    if twin is None:
        driver.run(call.route(), x_cf, w_k, bias_k, result, call.geometry, prepared,
                   channels_last=channels_last)
        return
    real = w_k.real.dtype
    # The columns kernel and the tap rows run on the complex arrays' real
    # views, once compiled; a plan, which keeps ``prepared``, packs their
    # weights once for the columns.
    if real_views.ran_on_real_views(twin.route(), x_cf, w_k, bias_k.view(real), result,
                                channels_last, prepared):
        return
    if prepared is None:
        prepared = {}
    if "twin" not in prepared:  # (dict.setdefault would build it every time)
        prepared["twin"] = (_twin_weight(w_k, transposed=True), {})
    w_twin, twin_prepared = prepared["twin"]
    if channels_last:
        driver.run(twin.route(), x_cf.view(real), w_twin, bias_k.view(real),
                   result.view(real), twin.geometry, twin_prepared, channels_last=True)
    else:
        driver.run_parts(twin.route(), x_cf, w_twin, bias_k.view(real), result,
                         twin.geometry, twin_prepared)


def _twin_weight(w, transposed):
    """The real block weight of a complex one, per pair of channels
    ``[[re, im], [-im, re]]`` over (input part, output part); ``w`` is
    ``conv_transpose``'s (C_in, C_out/groups, *k) when ``transposed``, else
    ``conv``'s (C_out, C_in/groups, *k), whose blocks are the transpose."""
    c0, c1 = w.shape[:2]
    blocks = (((w.real, w.imag), (-w.imag, w.real)) if transposed  # rows: inputs
              else ((w.real, -w.imag), (w.imag, w.real)))          # rows: outputs
    twin = np.empty((c0, 2, c1, 2) + w.shape[2:], dtype=w.real.dtype)
    for i in range(2):
        for j in range(2):
            twin[:, i, :, j] = blocks[i][j]
    return twin.reshape((2 * c0, 2 * c1) + w.shape[2:])


def conv(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, *, stride: Ints = 1,
         padding: Padding = 0, dilation: Ints = 1, groups: int = 1,
         padding_mode: PaddingMode = "zeros", data_format: DataFormat = "channels_first",
         device: Device = "auto", out: np.ndarray | None = None) -> np.ndarray:
    """Convolution (cross-correlation) of ``x`` with ``weight``: the exact
    adjoint of :func:`conv_transpose`.

    Computes, with ``xpad`` the input padded by ``padding`` in
    ``padding_mode`` and ``ci`` running over the input channels of the
    group of output channel ``co``::

        y[n, co, o] = bias[co] + sum over ci, k of xpad[n, ci, o*s + k*d] * weight[co, ci, k]

    PyTorch's ``conv{1,2,3}d`` (with ``padding_mode`` as in ``Conv2d``),
    in any number of spatial dims. Per spatial dim the output size is
    ``floor((I + pad_before + pad_after - d*(k - 1) - 1) / s) + 1``.

    With the same ``weight``, stride, padding, dilation, groups and
    ``padding_mode``, ``conv_transpose(y, weight, ..., output_size=<x's
    spatial size>)`` is its adjoint: ``<conv(x), y> = <x, conv_transpose(y)>``
    to rounding (for complex data the Hermitian adjoint takes
    ``weight.conj()``). ``conv_transpose(x, weight)`` is likewise the
    gradient of ``conv`` with respect to its input.

    Parameters
    ----------
    x : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; with
        ``data_format="channels_last"`` ``(N, *spatial, C_in)`` or
        ``(*spatial, C_in)``.
    weight : array_like
        ``(C_out, C_in/groups, *kernel)``, PyTorch's layout (the layout of
        the adjoint ``conv_transpose``'s weight too); its rank fixes the
        number of spatial dims.
    bias : array_like, optional
        ``(C_out,)``.
    stride, dilation : int or sequence of n ints, >= 1
    padding : int, sequence, "valid" or "same"
        An int, one int per dim, one ``(before, after)`` pair per dim,
        "valid" (none) or "same" (TensorFlow's: output ``ceil(I / s)``,
        total ``max((O - 1)*s + d*(k - 1) + 1 - I, 0)``, ``total // 2``
        before).
    groups : int
    padding_mode : {"zeros", "circular", "reflect", "replicate"}
        How ``x`` is padded, as ``torch.nn.functional.pad`` does it;
        reflect needs padding smaller than the size along that dim,
        circular at most that size.
    data_format : {"channels_first", "channels_last"}
    device : {"auto", "cpu", "cuda"}
        "auto" runs where the data lives; a Dask array ``x`` gives a lazy
        Dask array (spatial chunks read overlapping windows).
    out : numpy.ndarray, optional

    Returns
    -------
    numpy.ndarray
        In ``x``'s format, of the promoted dtype of the inputs (integers
        and bools compute in float64, float16 in float32).

    Raises
    ------
    ValueError, TypeError
        For any inconsistent or malformed argument, before any computation.
    RuntimeError
        For ``device="cuda"`` when no CUDA GPU is usable.

    Notes
    -----
    The first call of a kind (device, rank, dtype, kernel) compiles its
    kernel with Numba, which takes seconds; Numba's on-disk cache keeps the
    machine code, so later calls and later processes load it in
    milliseconds. The ``numba_deconv`` logger says so at INFO level, and
    :func:`precompile` compiles ahead of time.

    The CPU kernels run on Numba's threads (``numba.set_num_threads``): the
    result is bitwise the same for any thread count, and several Python
    threads may call at once. Ctrl-C stops a long call made on the main
    thread (its ``out`` is then partially written).

    A result of at least ``config.OUTPUT_CACHE_MIN_BYTES`` may reuse the
    memory of an earlier result that was dropped, never one still
    referenced; :func:`release_memory` hands that memory back.

    Examples
    --------
    A stride-2 convolution and its adjoint: ``y[0] = 0*1 + 0*10 + 1*100``
    (the first input is padding), and both inner products are 871.

    >>> import numpy as np, numba_deconv
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> w = np.array([[[1.0, 10.0, 100.0]]])
    >>> numba_deconv.conv(x, w, stride=2, padding=1)
    array([[[100., 321.,  43.]]])
    >>> y = np.array([[[1.0, 2.0, 3.0]]])
    >>> numba_deconv.conv_transpose(y, w, stride=2, padding=1, output_size=[5])
    array([[[ 10., 102.,  20., 203.,  30.]]])
    >>> float(np.vdot(x, numba_deconv.conv_transpose(y, w, stride=2, padding=1,
    ...                                              output_size=[5])))
    871.0
    """
    args = (stride, padding, dilation, groups, padding_mode, data_format)
    if _plain_numpy(device, x, weight, bias, out):
        return _conv_on_cpu(x, weight, bias, out, args)
    return _conv(x, weight, bias, out=out, device=device, args=args)


@foreign_arrays
def _conv(x, weight, bias, *, out, device, args):
    """:func:`conv` of anything but plain NumPy arrays: Dask, device
    and foreign arrays, a foreign ``out``, a ``device`` asked for."""
    if _is_dask(x, device, out):
        from ._dask import conv_dask

        return conv_dask(x, weight, bias, **dict(zip(_dispatch._CONV_ARG_NAMES, args)))
    if _on_gpu(device, x, weight, bias, out):
        from .cuda.backend import conv_cuda

        return conv_cuda(x, weight, bias, out=out, **dict(zip(_dispatch._CONV_ARG_NAMES, args)))
    return _conv_on_cpu(*_arrays(x, weight, bias), out, args)


def _conv_on_cpu(x, weight, bias, out, args):
    """:func:`conv` of NumPy arrays on the CPU (``args`` in the order of
    ``_dispatch._CONV_ARG_NAMES``)."""
    call = _dispatch.conv_call(x.shape, x.dtype, weight.shape, weight.dtype,
                               None if bias is None else (bias.shape, bias.dtype), args)
    if call.serial and _runs_serial(call, x, weight, bias, out):
        return call.serial(x, weight, call.no_bias if bias is None else bias, out)
    return apply_conv(call, _kept_conv_weights(call, _kernel_ready(weight, call.plan.dtype)),
                      x, weight, bias, out)


def _kept_conv_weights(call, w_k: np.ndarray):
    """:func:`conv_weights`, kept for the call shape's next call with
    weights of the same bytes (:mod:`numba_deconv._weight_memo`) where
    the ``conv`` tiles run it (their weight table, made from complex
    data's twin weights; never ``w_k`` itself, which its caller may
    change)."""
    kept = _weight_memo.kept(call, w_k) if _keeps_layouts(call, "conv_tiles") else None
    if kept is not None and "conv" in kept:
        return kept["conv"]
    weights = conv_weights(call, w_k)
    if kept is not None and conv_weights_laid_out(call, weights):
        kept["conv"] = weights
    return weights


def _runs_serial(call, x, w, bias, out) -> bool:
    """Whether ``call.serial`` may take these arrays as they are."""
    plan = call.plan
    return kernel_ready(plan.dtype, *((x, w) if bias is None else (x, w, bias))) and (
        out is None or writes_in_place(out, plan, x, w, bias))


def apply_conv(call, weights, x, weight, bias, out):
    """:func:`conv` of a planned call with its weights as its kernels read
    them (from :func:`conv_weights`), for callers that repeat it."""
    plan = call.plan
    if call.serial and _runs_serial(call, x, weights, bias, out):
        return call.serial(x, weights, call.no_bias if bias is None else bias, out)
    geometry = plan.geometry  # the adjoint's: conv's output is its input
    x_cf, _, bias_k, result, direct_out = _prepare(
        plan, call, x, weight, bias, out, (geometry.in_channels,) + geometry.in_spatial,
        folded=False)
    if plan.batch and x_cf.size:
        run_conv(call, weights, x_cf, bias_k, result)
    elif plan.batch:  # an input without positions: an empty sum, the bias alone
        result[...] = bias_k.reshape((-1,) + (1,) * geometry.rank)
    if call.serial is None:
        _find_conv_serial(call)
    return _finish(plan, result, out, direct_out)


def _find_conv_serial(call) -> None:
    """:func:`_find_serial` for ``conv``: once the serial plane kernel that
    runs a tiny call shape is compiled, later calls of that shape with
    kernel-ready arrays call it directly
    (:func:`numba_deconv.cpu.driver.conv_serial_runner`), with the same
    bits. Real data, zero padding, channels first."""
    plan = call.plan
    _set_serial(call, not plan.channels_last and plan.padding_mode == "zeros"
                and plan.dtype.kind == "f" and call.phases is None,
                "conv_planes_serial", driver.conv_serial_runner)


def conv_weights(call, w_k: np.ndarray):
    """The weights of a ``conv`` call as its kernels read them: for the
    ``conv`` kernels see :func:`numba_deconv.cpu.driver.conv_weights`; for a
    sum of phases, each phase's taps, flipped, with input and output
    channels swapped in each group, as the phase's transposed convolution
    takes them."""
    groups = call.plan.geometry.groups
    twin = _dispatch.real_twin(call)
    if twin is not None:
        return conv_weights(twin, _twin_weight(w_k, transposed=False))
    if call.phases is None:
        return driver.conv_weights(call.route(), w_k)
    weights = []
    for phase in call.phases:
        taps = w_k[phase.taps]
        c_out, c_in_g = taps.shape[:2]
        weights.append(np.ascontiguousarray(
            taps.reshape((groups, c_out // groups, c_in_g) + taps.shape[2:]).swapaxes(1, 2)
            .reshape((groups * c_in_g, c_out // groups) + taps.shape[2:])))
    return weights


def conv_weights_laid_out(call, weights) -> bool:
    """Whether ``weights`` from :func:`conv_weights` are as the kernels
    will read them from now on, for callers to keep; not where they wait
    for a kernel that is still compiling
    (:func:`numba_deconv.cpu.driver.conv_weights`)."""
    routed = _dispatch.real_twin(call) or call
    return routed.phases is not None or driver.conv_weights_laid_out(routed.route(), weights)


def run_conv(call, weights, x_cf: np.ndarray, bias_k: np.ndarray,
             result: np.ndarray) -> None:
    """``conv`` into ``result`` (N, C_out, *O) from ``x_cf`` (N, C_in, *I),
    with ``weights`` from :func:`conv_weights`: by the ``conv`` kernels
    (zero padding is theirs, other modes pad first), or the padded input
    decimated at each phase, through that phase's transposed convolution,
    summed in phase order."""
    plan = call.plan
    geometry = plan.geometry
    pairs = tuple(zip(geometry.pad_before, geometry.pad_after))
    twin = _dispatch.real_twin(call)
    if twin is not None:  # the mode's padding done here, on the complex data
        if plan.padding_mode != "zeros":
            x_cf = _padding.pad(x_cf, pairs, plan.padding_mode)
        real = np.empty(0, plan.dtype).real.dtype
        if twin.phases is None:
            driver.run_conv_parts(twin.route(), x_cf, weights, bias_k.view(real), result)
            return
        y = transpose.parts_room(result)
        run_conv(twin, weights, transpose.to_parts(x_cf), bias_k.view(real), y)
        transpose.from_parts(y, result)
        return
    if call.phases is None:
        if plan.padding_mode != "zeros":
            x_cf = _padding.pad(x_cf, pairs, plan.padding_mode)
        driver.run_conv(call.route(), x_cf, weights, bias_k, result)
        return
    x_pad = _padding.pad(x_cf.astype(plan.dtype, copy=False), pairs, plan.padding_mode)
    scratch = None
    for i, (phase, w_phase) in enumerate(zip(call.phases, weights)):
        if i == 1:
            scratch = np.empty_like(result)
        driver.run(phase.call.route(), _kernel_ready(x_pad[phase.window], plan.dtype),
                   w_phase, bias_k if i == 0 else call.no_bias,
                   result if i == 0 else scratch, phase.call.geometry)
        if i:
            result += scratch


def _plain_numpy(device, x, weight, bias, out) -> bool:
    """Whether the call has NumPy arrays only (not subclasses), ``out``
    included if given, and ``device="auto"``: it then runs on the CPU with
    the arrays as they are, without the looks for Dask, a GPU and other
    array types (2 of the 12 us of a tiny call)."""
    return (type(x) is np.ndarray and type(weight) is np.ndarray
            and (out is None or type(out) is np.ndarray)
            and (bias is None or type(bias) is np.ndarray) and device == "auto")


def _is_dask(x, device, out) -> bool:
    """Whether ``x`` is a Dask array (found without importing Dask), which
    gives a lazy Dask array computed block by block on the CPU."""
    if type(x) is np.ndarray or not type(x).__module__.startswith("dask."):
        return False
    if out is not None:
        raise TypeError("out= cannot be used with a Dask array x: the result is lazy")
    if device not in ("auto", "cpu"):
        raise ValueError(
            f"device={device!r} with a Dask array x: Dask blocks run on the CPU; use "
            f"device='auto' or 'cpu'")
    return True


def _on_gpu(device, x, weight, bias, out) -> bool:
    """Whether the call runs on the GPU; plain NumPy arrays with
    ``device="auto"`` skip the look."""
    plain_numpy = (device == "auto" and type(x) is np.ndarray and type(weight) is np.ndarray
                   and (bias is None or type(bias) is np.ndarray) and out is None)
    return not plain_numpy and _dispatch.select_device(device, x, weight, bias, out) == "cuda"


def _arrays(x, weight, bias) -> tuple:
    return (as_array("x", x), as_array("weight", weight),
            None if bias is None else as_array("bias", bias))


def _prepare(plan, call, x, weight, bias, out, sample_shape, folded, keep_last=False):
    """``out`` checked; ``x`` batched and channels first (channels last
    with ``keep_last``), the weight and bias ready for the kernels; the
    array the kernels write, in ``x``'s format (``out`` itself where they
    can write it directly, and nothing overlaps)."""
    if out is not None:
        check_out(out, plan)
    dtype = plan.dtype
    x_cf = x if plan.batched else x[np.newaxis]
    if plan.channels_last and not keep_last:
        x_cf = _to_channels_first(x_cf, dtype)
    shape = (plan.batch,) + (sample_shape[1:] + sample_shape[:1] if keep_last else sample_shape)
    direct_out = (out is not None and (keep_last or not plan.channels_last) and not folded
                  and out.flags.c_contiguous
                  and not any(np.may_share_memory(out, a) for a in (x, weight, bias)
                              if a is not None))
    result = (out.reshape(shape) if direct_out
              else _outputs.new_output(shape, dtype, call.out_bytes))
    bias_k = call.no_bias if bias is None else _kernel_ready(bias, dtype)
    return _kernel_ready(x_cf, dtype), _kernel_ready(weight, dtype), bias_k, result, direct_out


def _finish(plan, result, out, direct_out, in_format=False):
    """The result in the caller's format (already, where ``in_format``), or
    ``out`` filled."""
    if plan.channels_last and not in_format:
        result = transpose.to_channels_last(result)
    if not plan.batched:
        result = result[0]
    if out is None:
        return result
    if not direct_out:
        out[...] = result
    return out


def _to_channels_first(x, dtype):
    """(N, *S, C) -> (N, C, *S): a parallel transposing copy where ``x`` is
    C-contiguous in the working dtype, else NumPy's (which also casts)."""
    if transpose.same_order(x.shape[-1], x.shape[1:-1]) or (
            x.dtype == dtype and x.flags.c_contiguous and x.dtype.isnative):
        return transpose.to_channels_first(x)
    return np.moveaxis(x, -1, 1)


def _kernel_ready(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, native byte order, writable, in the working dtype.

    Writable matters: Numba types read-only arrays differently and would
    compile a second copy of every kernel.
    """
    flags = array.flags
    if array.dtype == dtype and flags.c_contiguous and flags.writeable:
        return array
    ready = np.ascontiguousarray(array, dtype=dtype)
    if not ready.flags.writeable:
        ready = ready.copy()
    return ready
