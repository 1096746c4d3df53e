"""The libraries: each builds a zero-argument callable for one case and op
(:data:`ADAPTERS`, one builder per op and library).

Every library is imported inside the functions that use it, so that a
worker process loads only the one library it times.
"""

import contextlib
import os

import numpy as np

PEERS = ("torch", "onnxruntime", "tensorflow", "jax")
OURS = "numba_deconv"
PEER_LABELS = {OURS: "ours", "torch": "PyTorch", "onnxruntime": "ONNX Runtime",
               "tensorflow": "TensorFlow", "jax": "JAX"}


class NotApplicable(Exception):
    """The library cannot run this case (reason in the message)."""


def setup_library(lib, threads=2):
    """Import ``lib`` and limit it to ``threads`` threads; returns its version.

    Raises ``ImportError`` when it is not installed.
    """
    if lib == OURS:
        import numba
        import numba_deconv
        with contextlib.suppress(Exception):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return f"{getattr(numba_deconv, '__version__', '?')} (numba {numba.__version__})"
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        return torch.__version__
    if lib == "onnxruntime":
        import onnx  # the model is built with onnx.helper
        import onnxruntime
        return f"{onnxruntime.__version__} (onnx {onnx.__version__})"
    if lib == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        return tf.__version__
    if lib == "jax":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        import jaxlib
        jax.config.update("jax_enable_x64", True)   # for the float64 case
        return f"{jax.__version__} (jaxlib {jaxlib.__version__})"
    raise ValueError(f"unknown library {lib!r}; choose from {(OURS,) + PEERS}")


def build_call(lib, case, x, w, threads=2, op="conv_transpose", plan=False):
    """``(call, to_numpy)``: ``call()`` runs ``lib``'s ``op`` on the case's
    inputs in the library's native tensors (``x``, ``w``: the two inputs of
    ``op``, shaped as ``case.shapes(op)`` says); ``to_numpy(call())`` is the
    channels-first NumPy result. Raises :class:`NotApplicable` when ``lib``
    cannot do it, or has no adapter for ``op`` (:data:`ADAPTERS`). With
    ``plan``, ours runs through :func:`numba_deconv.plan`."""
    if op not in ADAPTERS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(ADAPTERS)}")
    if lib not in ADAPTERS[op]:
        raise NotApplicable(f"no {op} adapter for {lib}")
    try:
        case.shapes(op)
    except ValueError as e:
        raise NotApplicable(str(e)) from None
    if lib == OURS and plan:
        return _build_our_plan(case, op, x, w)
    return ADAPTERS[op][lib](case, op, x, w, threads)


def _build_ours(case, op, a, b, threads):
    import numba_deconv
    f = getattr(numba_deconv, op, None)
    if f is None:
        raise NotApplicable(f"numba_deconv.{op} does not exist yet")
    kw = case.kwargs(op)
    return (lambda: f(a, b, **kw)), np.asarray


def _build_our_plan(case, op, a, b):
    import numba_deconv
    if op not in ("conv_transpose", "conv"):
        raise NotApplicable(f"numba_deconv.plan has no {op}")
    p = numba_deconv.plan(b, a.shape, forward=op, **case.kwargs(op))
    return (lambda: p(a)), np.asarray


def _build_torch(case, op, a, b, threads):
    import torch
    import torch.nn.functional as F
    f = getattr(F, f"{op}{case.rank}d")    # conv_transpose2d, conv3d, ...
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    kw = case.kwargs(op)

    def call():
        with torch.no_grad():
            return f(at, bt, None, **kw)

    return call, lambda y: y.numpy()


def _build_torch_weight_grad(case, op, a, b, threads):
    """The weight gradient alone, as autograd's backward computes it:
    ``aten.convolution_backward`` with ``output_mask=[False, True, False]``
    (``a`` the forward input, ``b`` the gradient of its output)."""
    import torch
    r, transposed = case.rank, op == "conv_transpose_weight_grad"
    args = ([case.stride] * r, [case.padding] * r, [case.dilation] * r, transposed,
            [case.output_padding if transposed else 0] * r, case.groups,
            [False, True, False])
    xt, gt = torch.from_numpy(a), torch.from_numpy(b)
    wt = torch.zeros(case.weight_shape, dtype=xt.dtype)   # only its shape is used
    backward = torch.ops.aten.convolution_backward
    return (lambda: backward(gt, xt, wt, None, *args)[1]), lambda y: y.numpy()


def _build_onnxruntime(case, op, a, b, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[str(a.dtype)]
    r = case.rank
    attrs = dict(kernel_shape=[case.kernel] * r, strides=[case.stride] * r,
                 pads=[case.padding] * (2 * r), dilations=[case.dilation] * r,
                 group=case.groups)
    if op == "conv_transpose":
        attrs["output_padding"] = [case.output_padding] * r
    node_type = {"conv_transpose": "ConvTranspose", "conv": "Conv"}[op]
    node = helper.make_node(node_type, ["X", "W"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info("X", elem, list(a.shape))],
        [helper.make_tensor_value_info("Y", elem, list(case.shapes(op)[2]))],
        initializer=[onnx.numpy_helper.from_array(b, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # opset 17's IR version; newer onnx writes one ORT may reject
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. no float64 ConvTranspose kernel
        raise NotApplicable(first_line(e)) from None
    feed = {"X": a}
    return (lambda: sess.run(["Y"], feed)[0]), np.asarray


def _tf_channels_first(y):
    return np.ascontiguousarray(np.moveaxis(y.numpy(), -1, 1))


def _build_tensorflow(case, op, x, w, threads):
    import tensorflow as tf
    if case.dilation > 1 and x.dtype != np.float32:
        raise NotApplicable("TF CPU conv transpose takes dilation > 1 in float32 only (oneDNN)")
    if case.groups > 1:
        raise NotApplicable("TF conv transpose has no groups")
    r = case.rank
    # Channels last; filter [*k, out, in] is our [in, out, *k] transposed.
    xl = tf.constant(np.moveaxis(x, 1, -1))
    wl = tf.constant(np.transpose(w, tuple(range(2, 2 + r)) + (1, 0)))
    k, s, p, opad, d = case.kernel, case.stride, case.padding, case.output_padding, case.dilation
    full = [(i - 1) * s + d * (k - 1) + 1 for i in case.spatial]
    out_shape = [case.N] + full + [case.C_out]
    conv = (tf.nn.conv1d_transpose, tf.nn.conv2d_transpose, tf.nn.conv3d_transpose)[r - 1]
    extra = max(0, opad - p)        # output_padding beyond the cropped pad
    sl = (slice(None),) + tuple(slice(p, f - p + opad) for f in full) + (slice(None),)

    @tf.function
    def call_tf(xx, ww):
        y = conv(xx, ww, out_shape, strides=s, padding="VALID", dilations=d)
        if extra:
            y = tf.pad(y, [[0, 0]] + [[0, extra]] * r + [[0, 0]])
        return y[sl]

    if d > 1:
        # Dilation runs only through oneDNN, which TF enables on some CPUs
        # only (on an AMD Zen 3 it was off): find out with one call.
        try:
            call_tf(xl, wl)
        except tf.errors.InvalidArgumentError as e:
            detail = [line.strip() for line in e.message.splitlines() if "dilation" in line]
            raise NotApplicable("TF CPU conv transpose, dilation > 1: "
                                + (detail[0] if detail else first_line(e))) from None
    return (lambda: call_tf(xl, wl)), _tf_channels_first


def _build_tensorflow_conv(case, op, a, b, threads):
    import tensorflow as tf
    r, s, p, d = case.rank, case.stride, case.padding, case.dilation
    if case.groups > 1 and r == 3:
        raise NotApplicable("TF CPU Conv3D has no groups")
    if s > 1 and d > 1:
        raise NotApplicable("tf.nn.convolution takes dilation > 1 only at stride 1")
    # Channels last; filter [*k, in/groups, out] is conv's [out, in/groups, *k] transposed.
    xl = tf.constant(np.moveaxis(a, 1, -1))
    wl = tf.constant(np.transpose(b, tuple(range(2, 2 + r)) + (1, 0)))
    pads = [[0, 0]] + [[p, p]] * r + [[0, 0]]

    @tf.function
    def call_tf(xx, ww):
        if r == 2 and p:   # only conv2d takes explicit padding; the others get tf.pad
            return tf.nn.conv2d(xx, ww, strides=s, padding=pads, dilations=d)
        return tf.nn.convolution(tf.pad(xx, pads) if p else xx, ww, strides=s,
                                 padding="VALID", dilations=d)

    return (lambda: call_tf(xl, wl)), _tf_channels_first


def _build_jax(case, op, a, b, threads):
    import jax
    import jax.numpy as jnp
    from jax import lax
    r, g = case.rank, case.groups
    k, s, p, d = case.kernel, case.stride, case.padding, case.dilation
    if op == "conv":
        rhs, strides, pads, lhs_dilation = b, s, [(p, p)] * r, 1
    else:
        # Direct form of conv_transpose: (C_in, C_out/g, *k) -> (C_out, C_in/g, *k),
        # flipped, at stride 1 over the input dilated by the stride.
        cin_g, cout_g = case.C_in // g, case.C_out // g
        rhs = b.reshape((g, cin_g, cout_g) + b.shape[2:])
        rhs = np.swapaxes(rhs, 1, 2).reshape((case.C_out, cin_g) + b.shape[2:])
        rhs = np.ascontiguousarray(rhs[(slice(None),) * 2 + (slice(None, None, -1),) * r])
        lo = d * (k - 1) - p
        strides, pads, lhs_dilation = 1, [(lo, lo + case.output_padding)] * r, s
    sp = "DHW"[-r:]
    dn = ("NC" + sp, "OI" + sp, "NC" + sp)

    @jax.jit
    def call_jax(xx, ww):
        return lax.conv_general_dilated(
            xx, ww, window_strides=(strides,) * r, padding=pads,
            lhs_dilation=(lhs_dilation,) * r, rhs_dilation=(d,) * r,
            dimension_numbers=dn, feature_group_count=g)

    xj, wj = jnp.asarray(a), jnp.asarray(rhs)
    return (lambda: call_jax(xj, wj).block_until_ready()), np.asarray


# op -> library -> builder(case, op, first input, second input, threads).
ADAPTERS = {
    "conv_transpose": {OURS: _build_ours, "torch": _build_torch,
                       "onnxruntime": _build_onnxruntime,
                       "tensorflow": _build_tensorflow, "jax": _build_jax},
    "conv": {OURS: _build_ours, "torch": _build_torch, "onnxruntime": _build_onnxruntime,
             "tensorflow": _build_tensorflow_conv, "jax": _build_jax},
    "conv_weight_grad": {OURS: _build_ours, "torch": _build_torch_weight_grad},
    "conv_transpose_weight_grad": {OURS: _build_ours, "torch": _build_torch_weight_grad},
}


def first_line(e, limit=200):
    """A one-line reason: the first line, keeping its end when it is long
    (ONNX Runtime puts the cause after a long source location)."""
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0] if text else ''}"
    return msg if len(msg) <= limit else msg[:60] + " … " + msg[-(limit - 63):]
