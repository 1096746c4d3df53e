"""Host side of the CUDA backend: device rules, conversions, launch.

``numba_deconv.api.conv_transpose`` calls :func:`conv_transpose_cuda` when
the device resolves to CUDA. This module imports ``numba.cuda`` only inside
functions, so importing it (or ``numba_deconv``) never needs CUDA.

Device rules
------------
- Arguments with ``__cuda_array_interface__`` (Numba device arrays, CuPy
  arrays, PyTorch CUDA tensors) are used in place on the GPU; NumPy arrays,
  lists and scalars are copied in.
- The result stays on the GPU when any of ``x``, ``weight``, ``bias`` was a
  device array: a Numba ``DeviceNDArray``, or a CuPy array when one of them
  was a CuPy array and ``cupy`` is importable (``cupy.asarray`` on the
  device array, no copy). When all three came from the host the result is
  copied back and returned as a NumPy array.
- ``out=`` may be a device array (any of the kinds above) or a NumPy array;
  it is filled and returned.
- No usable GPU (``numba.cuda`` missing or ``cuda.is_available()`` False):
  ``RuntimeError`` saying so; ``device="cpu"`` or ``"auto"`` with host
  arrays runs on the CPU.

Dtypes follow the CPU rules (:func:`numba_deconv._plan.working_dtype`): the
promoted dtype of the inputs, integers and bools in float64, float16 in
float32. A device array that is not C-contiguous or not already in the
working dtype is converted *on the device* by one elementwise copy (Numba's
device-array assignment, which casts), never through the host.

Rank >= 4 has no CUDA kernel: ``NotImplementedError`` (after the usual
argument checks) that points at ``device="cpu"``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading

import numpy as np

from .. import _compiled, _padding
from .._plan import (DTYPES, PADDING_MODES, as_array, check_out, check_out_metadata,
                     is_device_array, plan_call, plan_conv)

#: Threads per block when the caller does not choose (read at each call and
#: passed as a launch parameter, never frozen into compiled code).
THREADS_PER_BLOCK = 256
#: Upper bound on blocks per launch; the kernel's grid-stride loop covers
#: any output with fewer blocks than outputs / threads.
MAX_BLOCKS = 1 << 20
#: This backend's one strategy, a gather (one thread per output), and its
#: kernels: conv_transpose's, conv's, and the fold after conv_transpose's
#: for the padding modes other than zeros.
KERNEL = "gather"
KERNELS = (KERNEL, "gather_single", "conv_gather", "conv_single", "fold")
#: Highest spatial rank with a CUDA kernel.
MAX_RANK = 3

#: How many of the small arrays :func:`_on_device` keeps on the GPU.
DEVICE_CONSTANTS = 64
_device_constants: collections.OrderedDict = collections.OrderedDict()
_device_constants_lock = threading.Lock()

NO_GPU_MESSAGE = (
    "device='cuda' needs a CUDA GPU and driver, and none is available{why}; "
    "use device='cpu' (or device='auto' with host arrays) to run on the CPU")


#: numba-cuda up to 0.30 (the last release; the package is in maintenance
#: mode) registers an overload of ``numpy.row_stack``, which NumPy 2.5
#: removed, when its CUDA target first loads: no kernel can compile.
#: https://github.com/NVIDIA/numba-cuda/issues/907; the ``cuda`` extra caps
#: NumPy for it.
NUMPY_TOO_NEW_MESSAGE = (
    "numba-cuda {version} cannot compile CUDA kernels with NumPy {numpy} ({err}: it "
    "registers numpy.row_stack, which NumPy 2.5 removed; NVIDIA/numba-cuda#907). "
    "Install NumPy below 2.5 in this environment (pip install 'numpy<2.5', which "
    "the package's cuda extra asks for), or use device='cpu'")


def _load_cuda_target():
    """Load the CUDA target's overloads now, so that a numba-cuda that
    cannot load them fails here with a clear message rather than inside
    the first kernel compile (or device-array copy)."""
    try:
        import numba.cuda.cudaimpl  # noqa: F401 (imported for its registrations)
    except AttributeError as err:
        if "row_stack" not in str(err):
            raise
        from importlib.metadata import PackageNotFoundError, version
        try:
            numba_cuda_version = version("numba-cuda")
        except PackageNotFoundError:
            numba_cuda_version = "(Numba's built-in CUDA target)"
        raise RuntimeError(NUMPY_TOO_NEW_MESSAGE.format(
            version=numba_cuda_version, numpy=np.__version__, err=err)) from None


def _require_cuda():
    """``numba.cuda`` when a GPU (or the CUDA simulator) is usable."""
    try:
        from numba import cuda
    except ImportError as err:  # numba-cuda missing or broken
        raise RuntimeError(NO_GPU_MESSAGE.format(
            why=f" (numba.cuda cannot be imported: {err}; install the GPU "
                f"extra from a checkout: pip install '.[cuda]')")) from None
    try:
        available = cuda.is_available()
    except Exception:  # a broken driver install: treat as no GPU
        available = False
    if not available:
        raise RuntimeError(NO_GPU_MESSAGE.format(
            why=" (numba.cuda.is_available() is False)"))
    if not _simulating():
        _load_cuda_target()
    return cuda


def _simulating() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def _is_cupy(value) -> bool:
    return type(value).__module__.split(".")[0] == "cupy"


def _device_meta(value, name: str = "x"):
    """Shape and dtype of a device array without touching the driver."""
    if getattr(value, "__cuda_ndarray__", False) is True:
        return tuple(int(v) for v in value.shape), np.dtype(value.dtype)
    iface = value.__cuda_array_interface__
    try:
        return tuple(int(v) for v in iface["shape"]), np.dtype(iface["typestr"])
    except (KeyError, TypeError, ValueError) as err:
        raise TypeError(
            f"{name} has a malformed __cuda_array_interface__ ({type(err).__name__}: {err}); "
            f"it needs 'shape' and 'typestr' (CUDA Array Interface, version 3)") from None


def check_rank(rank: int) -> None:
    if rank > MAX_RANK:
        raise NotImplementedError(
            f"rank-{rank} transposed convolution has no CUDA kernel (the CUDA "
            f"backend runs spatial ranks 1-{MAX_RANK}); use device='cpu' with "
            f"host arrays, which has a general path for any rank")


def launch_config(total: int, threads_per_block=None, max_blocks=None):
    """``(blocks, threads_per_block)`` for ``total`` outputs.

    ``threads_per_block`` defaults to :data:`THREADS_PER_BLOCK`,
    ``max_blocks`` to :data:`MAX_BLOCKS`; both are read at call time.
    """
    tpb = THREADS_PER_BLOCK if threads_per_block is None else threads_per_block
    cap = MAX_BLOCKS if max_blocks is None else max_blocks
    for name, value, hi in (("threads_per_block", tpb, 1024),
                            ("max_blocks", cap, 2**31 - 1)):
        if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                or not 1 <= value <= hi):
            raise ValueError(f"{name}={value!r} must be an int in 1..{hi}")
    return max(1, min(-(-total // int(tpb)), int(cap))), int(tpb)


def kernel_signature(dtype, kernel=KERNEL):
    """The exact argument types ``kernel`` is launched with for ``dtype``
    (every rank and layout share them)."""
    from numba import from_dtype, types

    flat = types.Array(from_dtype(np.dtype(dtype)), 1, "C")
    table = types.Array(types.int64, 1, "C")
    if kernel == "fold":
        return (flat, flat, flat, types.UniTuple(types.int64, 5),
                types.UniTuple(types.int64, 3), types.int64) + (table,) * 6
    return (flat, flat, flat, flat, table)


def compile_kernel(kernel: str, dtype) -> None:
    """Compile (or load from Numba's disk cache) ``kernel`` for ``dtype``:
    every rank 1-3 and both layouts run the same specialisation. Under the
    CUDA simulator there is nothing to compile."""
    if kernel not in KERNELS:
        raise ValueError(
            f"kernel={kernel!r} is not a CUDA kernel; the CUDA backend has "
            f"{', '.join(repr(k) for k in KERNELS)}")
    if np.dtype(dtype).name not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    _require_cuda()
    if _simulating():
        return
    _dispatcher(kernel).compile(kernel_signature(dtype, kernel))


def _dispatcher(kernel: str):
    """The numba-cuda dispatcher of the kernel named ``kernel``."""
    from . import kernels

    return {KERNEL: kernels.gather_kernel, "gather_single": kernels.gather_kernel_single,
            "conv_gather": kernels.conv_kernel, "conv_single": kernels.conv_kernel_single,
            "fold": kernels.fold_kernel}[kernel]


def _span(value):
    """Byte interval ``[lo, hi)`` an array touches, for overlap checks."""
    iface = getattr(value, "__cuda_array_interface__", None)
    if iface is None:  # the simulator's arrays wrap NumPy arrays
        iface = value.__array_interface__
    itemsize = np.dtype(iface["typestr"]).itemsize
    shape = iface["shape"]
    ptr = iface["data"][0]
    if any(n == 0 for n in shape):
        return ptr, ptr
    strides = iface.get("strides")
    if strides is None:
        return ptr, ptr + itemsize * math.prod(shape)
    lo = ptr + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    hi = ptr + sum(max(0, (n - 1) * s) for n, s in zip(shape, strides)) + itemsize
    return lo, hi


def _overlaps(a, b) -> bool:
    a_lo, a_hi = _span(a)
    b_lo, b_hi = _span(b)
    return a_lo < b_hi and b_lo < a_hi


def _as_device(cuda, value):
    if getattr(value, "__cuda_ndarray__", False) is True:
        return value
    return cuda.as_cuda_array(value)


def _ready(cuda, value, dtype):
    """A C-contiguous device array of ``dtype`` holding ``value``."""
    if isinstance(value, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(value, dtype=dtype))
    dev = _as_device(cuda, value)
    if np.dtype(dev.dtype) == dtype and dev.is_c_contiguous():
        return dev
    ready = cuda.device_array(tuple(dev.shape), dtype=dtype)
    ready[:] = dev  # one elementwise copy on the device, casting as it goes
    return ready


def _on_device(cuda, host_array):
    """``host_array`` on the current GPU, uploaded once per content and
    context: the small read-only arrays the launches take (a zero bias, the
    geometry table, the fold's source tables). An upload from the host is a
    synchronous copy, and on an H200 it cost more than the launch itself
    (144 µs a call against 153)."""
    context = cuda.current_context()
    key = (id(context), host_array.dtype.str, host_array.shape, host_array.tobytes())
    with _device_constants_lock:  # calls from several threads share the store
        entry = _device_constants.get(key)
        if entry is not None and entry[0] is context:  # that context, not a reused id
            _device_constants.move_to_end(key)
            return entry[1]
    array = cuda.to_device(host_array)
    with _device_constants_lock:
        _device_constants[key] = (context, array)
        while len(_device_constants) > DEVICE_CONSTANTS:
            _device_constants.popitem(last=False)
    return array


def _c_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def conv_transpose_cuda(x, weight, bias=None, *, stride=1, padding=0,
                        output_padding=0, dilation=1, groups=1,
                        output_size=None, padding_mode="zeros",
                        data_format="channels_first", out=None,
                        threads_per_block=None, max_blocks=None):
    """``conv_transpose`` on the GPU; same arguments, checks and errors.

    ``threads_per_block`` and ``max_blocks`` tune the launch (defaults
    :data:`THREADS_PER_BLOCK` and :data:`MAX_BLOCKS`). See the module
    docstring for where the result lives.

    Raises
    ------
    ValueError, TypeError
        Exactly as the CPU path, before anything touches the GPU.
    NotImplementedError
        For spatial rank >= 4.
    RuntimeError
        When no CUDA GPU/driver is usable.
    """
    def plan(*meta):
        return plan_call(*meta, stride=stride, padding=padding,
                         output_padding=output_padding, dilation=dilation, groups=groups,
                         output_size=output_size, padding_mode=padding_mode,
                         data_format=data_format)
    return _run(plan, _launch, x, weight, bias, out, threads_per_block, max_blocks)


def conv_cuda(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1,
              padding_mode="zeros", data_format="channels_first", out=None,
              threads_per_block=None, max_blocks=None):
    """``conv`` on the GPU, every padding mode; arguments, checks, errors
    and where the result lives as for :func:`conv_transpose_cuda`."""
    def plan(*meta):
        return plan_conv(*meta, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, data_format=data_format)
    return _run(plan, _launch_conv, x, weight, bias, out, threads_per_block, max_blocks)


def _run(plan_of, launch, x, weight, bias, out, threads_per_block, max_blocks):
    """Plan from the arrays' metadata, check ``out``, move what is on the
    host to the device, launch, and hand the result back where it belongs."""
    on_device = [is_device_array(a) for a in (x, weight, bias)]
    host = {}
    metas = []
    for name, value, dev in zip(("x", "weight", "bias"), (x, weight, bias), on_device):
        if value is None:
            metas.append((None, None))
        elif dev:
            metas.append(_device_meta(value, name))
        else:
            host[name] = as_array(name, value)
            metas.append((host[name].shape, host[name].dtype))
    (x_shape, x_dtype), (w_shape, w_dtype), (b_shape, b_dtype) = metas
    plan = plan_of(x_shape, x_dtype, w_shape, w_dtype, b_shape, b_dtype)
    out_on_device = is_device_array(out)
    if out is not None:
        if out_on_device:
            check_out_metadata(*_device_meta(out, "out"), plan)
        elif isinstance(out, np.ndarray):
            check_out(out, plan)
        else:
            raise TypeError(
                f"out must be a CUDA device array or a numpy.ndarray of shape "
                f"{plan.out_shape} and dtype {plan.dtype}; got {type(out).__name__}")
    dtype = plan.dtype
    check_rank(plan.geometry.rank)
    cuda = _require_cuda()

    total = math.prod(plan.out_shape)
    direct_out = (out_on_device and total > 0
                  and _as_device(cuda, out).is_c_contiguous()
                  and not any(dev and _overlaps(out, a)
                              for a, dev in zip((x, weight, bias), on_device)))
    if direct_out:
        result = _as_device(cuda, out)
    else:
        result = cuda.device_array(plan.out_shape, dtype=dtype)

    if total > 0:
        channels = plan.out_shape[-1 if plan.channels_last else (1 if plan.batched else 0)]
        launch(cuda, plan, result,
               _ready(cuda, host.get("x", x), dtype),
               _ready(cuda, host.get("weight", weight), dtype),
               (_on_device(cuda, np.zeros(channels, dtype)) if bias is None
                else _ready(cuda, host.get("bias", bias), dtype)),
               threads_per_block, max_blocks)

    if out is not None:
        if out_on_device:
            if not direct_out and total > 0:
                _as_device(cuda, out)[:] = result
        elif out.flags.c_contiguous:
            result.copy_to_host(out)
        else:
            out[...] = result.copy_to_host()
        return out
    if not any(on_device):
        return result.copy_to_host()
    if any(_is_cupy(a) for a in (x, weight, bias)):
        try:
            import cupy
        except ImportError:
            return result
        return cupy.asarray(result)
    return result


def _launch(cuda, plan, result, x, w, bias, threads_per_block, max_blocks):
    """``conv_transpose`` into ``result``. With a padding mode other than
    zeros, as on the CPU: the transposed convolution over the whole padded
    extent, then its border folded back onto the elements the padding
    copied (:func:`~.kernels.fold_kernel`), then the bias."""
    geometry, dtype = plan.geometry, plan.dtype
    if plan.padding_mode == "zeros":
        _launch_gather(cuda, plan, geometry, result, x, w, bias, threads_per_block,
                       max_blocks)
        return
    rank, lift = geometry.rank, 3 - geometry.rank
    padded = tuple(b + o + a for b, o, a in zip(geometry.pad_before, geometry.out_spatial,
                                                geometry.pad_after))
    whole = dataclasses.replace(geometry, pad_before=(0,) * rank, pad_after=(0,) * rank,
                                out_spatial=padded)
    shape = plan.out_shape
    full = cuda.device_array(shape[:-1 - rank] + padded + shape[-1:] if plan.channels_last
                             else shape[:-rank] + padded, dtype=dtype)
    _launch_gather(cuda, plan, whole, full, x, w,
                   _on_device(cuda, np.zeros(geometry.out_channels, dtype)),
                   threads_per_block, max_blocks)
    tables = []
    for size, before, after in zip(geometry.out_spatial, geometry.pad_before,
                                   geometry.pad_after):
        tables += [_on_device(cuda, np.asarray(table, np.int64)) for table in
                   _padding.fold_sources(size, before, after, plan.padding_mode)]
    unit = [_on_device(cuda, np.array(v, dtype=np.int64)) for v in ([0, 1], [0])] * lift
    ones = (1,) * lift
    _compiled.ensure(("cuda", rank, dtype, plan.layout, KERNEL, "fold"),
                     compile_kernel, "fold", dtype)
    blocks, tpb = launch_config(result.size, threads_per_block, max_blocks)
    _dispatcher("fold")[blocks, tpb](
        _flat(full), _flat(bias), _flat(result),
        _ints((plan.batch, geometry.out_channels) + ones + geometry.out_spatial),
        _ints(ones + padded), int(plan.channels_last), *(unit + tables))


def _launch_gather(cuda, plan, geometry, result, x, w, bias, threads_per_block, max_blocks):
    """Launch the gather kernel of ``geometry`` over flat views of
    C-contiguous arrays."""
    dims = (plan.batch, geometry.in_channels, geometry.in_spatial,
            geometry.out_channels, geometry.out_spatial)
    k_step = tuple(s // math.gcd(s, d) for s, d in zip(geometry.stride, geometry.dilation))
    _launch_blocks(cuda, plan, geometry, (KERNEL, "gather_single"), result, x, w, bias, dims,
                   k_step, 0, threads_per_block, max_blocks)


def _launch_conv(cuda, plan, result, x, w, bias, threads_per_block, max_blocks):
    """Launch the convolution kernel over flat views of C-contiguous arrays
    (``plan.geometry`` is the adjoint's: conv's input is its output)."""
    geometry = plan.geometry
    dims = (plan.batch, geometry.out_channels, geometry.out_spatial,
            geometry.in_channels, geometry.in_spatial)
    _launch_blocks(cuda, plan, geometry, ("conv_gather", "conv_single"), result, x, w, bias,
                   dims, (0,) * geometry.rank, PADDING_MODES.index(plan.padding_mode),
                   threads_per_block, max_blocks)


def _launch_blocks(cuda, plan, geometry, names, result, x, w, bias, dims, k_step, mode,
                   threads_per_block, max_blocks):
    """Launch a kernel whose threads each compute a block of output
    channels at one position (``names[0]``), or, for one output channel a
    group, its build for one channel (``names[1]``: the block's loops are
    unrolled and predicated, so a block of one would run empty lanes);
    ``dims``, ``k_step`` and ``mode`` as :func:`_geometry_table` takes them."""
    from .kernels import CHANNEL_BLOCK

    batch, _, _, c_result, result_spatial = dims
    c_out_g = c_result // geometry.groups
    name = names[0] if c_out_g > 1 else names[1]
    _compiled.ensure(("cuda", geometry.rank, plan.dtype, plan.layout, KERNEL, name),
                     compile_kernel, name, plan.dtype)
    channel_block = min(CHANNEL_BLOCK, c_out_g)
    table = _geometry_table(plan, geometry, x, dims, k_step, mode, channel_block)
    threads = (batch * geometry.groups * -(-c_out_g // channel_block)
               * math.prod(result_spatial))
    blocks, tpb = launch_config(threads, threads_per_block, max_blocks)
    _dispatcher(name)[blocks, tpb](_flat(x), _flat(w), _flat(bias), _flat(result),
                                   _on_device(cuda, table))


def _geometry_table(plan, geometry, x, dims, k_step, mode, channel_block):
    """The kernels' ``table`` (see :func:`~.kernels.gather_kernel`), ranks 1
    and 2 lifted to rank 3 with unit leading dims: ``dims`` is ``(batch,
    in channels, in spatial, out channels, out spatial)`` as the kernel
    reads ``x`` and writes its output."""
    lift = 3 - geometry.rank
    ones, zeros = (1,) * lift, (0,) * lift
    batch, c_x, x_spatial, c_result, result_spatial = dims
    return np.array(
        _x_strides(plan, x, lift) + (batch, c_x) + ones + x_spatial + (c_result,)
        + ones + result_spatial + ones + geometry.kernel + ones + geometry.stride
        + ones + geometry.dilation + zeros + geometry.pad_before + ones + k_step
        + (geometry.groups, int(plan.channels_last), mode, channel_block), dtype=np.int64)


def _flat(array):
    """A C-contiguous device array as the 1-D view the kernels take."""
    return array.reshape(array.size)


def _x_strides(plan, x, lift):
    """Element strides of ``x`` as (n, c, d, h, w); lifted unit dims and a
    missing batch get 0."""
    strides = _c_strides(tuple(x.shape))
    if not plan.batched:
        strides = (0,) + strides
    if plan.channels_last:
        s_c, s_spatial = strides[-1], strides[1:-1]
    else:
        s_c, s_spatial = strides[1], strides[2:]
    return (strides[0], s_c) + (0,) * lift + tuple(s_spatial)


def _ints(values):
    return tuple(int(v) for v in values)
