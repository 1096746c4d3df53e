"""The libraries: each builds a zero-argument callable for one case.

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


def build_call(lib, case, x, w, threads=2):
    """``(call, to_numpy)``: ``call()`` runs ``lib`` on the case's inputs in
    the library's native tensors; ``to_numpy(call())`` is the channels-first
    NumPy output. Raises :class:`NotApplicable` when ``lib`` cannot do it."""
    return _BUILDERS[lib](case, x, w, threads)


def _build_ours(case, x, w, threads):
    import numba_deconv
    f = getattr(numba_deconv, "conv_transpose", None)
    if f is None:
        raise NotApplicable("numba_deconv.conv_transpose does not exist yet")
    kw = case.kwargs()
    return (lambda: f(x, w, **kw)), np.asarray


def _build_torch(case, x, w, threads):
    import torch
    import torch.nn.functional as F
    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[case.rank - 1]
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    kw = case.kwargs()

    def call():
        with torch.no_grad():
            return conv(xt, wt, None, **kw)

    return call, lambda y: y.numpy()


def _build_onnxruntime(case, x, w, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[str(x.dtype)]
    r = case.rank
    node = helper.make_node(
        "ConvTranspose", ["X", "W"], ["Y"],
        kernel_shape=[case.kernel] * r, strides=[case.stride] * r,
        pads=[case.padding] * (2 * r), output_padding=[case.output_padding] * r,
        dilations=[case.dilation] * r, group=case.groups)
    graph = helper.make_graph(
        [node], "conv_transpose",
        [helper.make_tensor_value_info("X", elem, list(x.shape))],
        [helper.make_tensor_value_info("Y", elem, list(case.out_shape))],
        initializer=[onnx.numpy_helper.from_array(w, "W")])
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
    feed = {"X": x}
    return (lambda: sess.run(["Y"], feed)[0]), np.asarray


def _build_tensorflow(case, x, w, threads):
    import tensorflow as tf
    if case.dilation > 1 and x.dtype != np.float32:
        raise NotApplicable("TF CPU conv transpose takes dilation > 1 in float32 only (oneDNN)")
    if case.groups > 1:
        raise NotApplicable("TF conv transpose has no groups")
    r = case.rank
    # Channels last; filter [*k, out, in] is our [in, out, *k] transposed.
    xl = tf.constant(np.moveaxis(x, 1, -1))
    wl = tf.constant(np.transpose(w, tuple(range(2, 2 + r)) + (1, 0)))
    k, s, p, op, d = case.kernel, case.stride, case.padding, case.output_padding, case.dilation
    full = [(i - 1) * s + d * (k - 1) + 1 for i in case.spatial]
    out_shape = [case.N] + full + [case.C_out]
    conv = (tf.nn.conv1d_transpose, tf.nn.conv2d_transpose, tf.nn.conv3d_transpose)[r - 1]
    extra = max(0, op - p)          # output_padding beyond the cropped pad
    sl = (slice(None),) + tuple(slice(p, f - p + op) for f in full) + (slice(None),)

    @tf.function
    def call_tf(xx, ww):
        y = conv(xx, ww, out_shape, strides=s, padding="VALID", dilations=d)
        if extra:
            y = tf.pad(y, [[0, 0]] + [[0, extra]] * r + [[0, 0]])
        return y[sl]

    def to_numpy(y):
        return np.ascontiguousarray(np.moveaxis(y.numpy(), -1, 1))

    return (lambda: call_tf(xl, wl)), to_numpy


def _build_jax(case, x, w, threads):
    import jax
    import jax.numpy as jnp
    from jax import lax
    r, g = case.rank, case.groups
    k, s, p, op, d = (case.kernel, case.stride, case.padding,
                      case.output_padding, case.dilation)
    # Direct form: (C_in, C_out/g, *k) -> (C_out, C_in/g, *k), flipped.
    cin_g, cout_g = case.C_in // g, case.C_out // g
    rhs = w.reshape((g, cin_g, cout_g) + w.shape[2:])
    rhs = np.swapaxes(rhs, 1, 2).reshape((case.C_out, cin_g) + w.shape[2:])
    rhs = np.ascontiguousarray(rhs[(slice(None),) * 2 + (slice(None, None, -1),) * r])
    lo = d * (k - 1) - p
    sp = "DHW"[-r:]
    dn = ("NC" + sp, "OI" + sp, "NC" + sp)

    @jax.jit
    def call_jax(xx, ww):
        return lax.conv_general_dilated(
            xx, ww, window_strides=(1,) * r, padding=[(lo, lo + op)] * r,
            lhs_dilation=(s,) * r, rhs_dilation=(d,) * r,
            dimension_numbers=dn, feature_group_count=g)

    xj, wj = jnp.asarray(x), jnp.asarray(rhs)
    return (lambda: call_jax(xj, wj).block_until_ready()), np.asarray


_BUILDERS = {OURS: _build_ours, "torch": _build_torch,
             "onnxruntime": _build_onnxruntime, "tensorflow": _build_tensorflow,
             "jax": _build_jax}


def first_line(e, limit=200):
    """A one-line reason: the first line, keeping its end when it is long
    (ONNX Runtime puts the cause after a long source location)."""
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0] if text else ''}"
    return msg if len(msg) <= limit else msg[:60] + " … " + msg[-(limit - 63):]
