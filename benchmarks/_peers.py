"""How each peer library is called, for ``bench_peers``: one builder per op
and library (:data:`ADAPTERS`) that returns a zero-argument callable.

A copy of the peer adapters of ``numba_deconv/bench/peers.py`` (as of
ed9da7d), written against the plain case dicts of ``cases.json``: the suite
must not import ``numba_deconv.bench``, which older commits lack and newer
ones may change. The peers do not depend on numba_deconv at all; they are
here for side-by-side ratios in one ``asv run``. Every library is imported
inside the builder that uses it, so a missing one only skips its benchmarks.
"""

import contextlib
import os

import numpy as np

from ._common import conv_kwargs


class NotApplicable(Exception):
    """The library cannot run this case (reason in the message)."""


class _Geometry:
    """The attributes the builders read, from one entry of ``cases.json``."""

    def __init__(self, case):
        self.N, self.C_in, self.C_out = case["N"], case["C_in"], case["C_out"]
        self.spatial = tuple(case["spatial"])
        self.kernel = case["kernel"]
        self.stride = case.get("stride", 1)
        self.padding = case.get("padding", 0)
        self.output_padding = case.get("output_padding", 0)
        self.dilation = case.get("dilation", 1)
        self.groups = case.get("groups", 1)
        self.rank = len(self.spatial)
        self.weight_shape = (self.C_in, self.C_out // self.groups) + (self.kernel,) * self.rank
        k, s, p, opad, d = (self.kernel, self.stride, self.padding, self.output_padding,
                            self.dilation)
        self.out_shape = (self.N, self.C_out) + tuple(
            (i - 1) * s - 2 * p + d * (k - 1) + 1 + opad for i in self.spatial)
        self.x_shape = (self.N, self.C_in) + self.spatial


def setup_library(lib, threads):
    """Import ``lib`` and hold it to ``threads`` threads; ``ImportError``
    when it is not installed."""
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    elif lib == "onnxruntime":
        import onnx  # noqa: F401  (the model is built with onnx.helper)
        import onnxruntime  # noqa: F401
    elif lib == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    elif lib == "jax":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        jax.config.update("jax_enable_x64", True)   # for the float64 case
    else:
        raise ValueError(f"unknown peer {lib!r}")


def build_call(lib, case, a, b, threads, op="conv_transpose"):
    """``call()`` running ``lib``'s ``op`` on ``a``, ``b`` (the two inputs of
    ``op`` as ``_common.make_inputs`` makes them) in the library's own
    tensors. ``NotApplicable`` when ``lib`` has no adapter for ``op`` or
    cannot run the case."""
    builder = ADAPTERS.get(op, {}).get(lib)
    if builder is None:
        raise NotApplicable(f"no {op} adapter for {lib}")
    return builder(case, op, a, b, threads)


def _build_torch(case, op, a, b, threads):
    import torch
    import torch.nn.functional as F
    g = _Geometry(case)
    f = getattr(F, f"{op}{g.rank}d")    # conv_transpose2d, conv3d, ...
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    kw = conv_kwargs(case, op)

    def call():
        with torch.no_grad():
            return f(at, bt, None, **kw)

    return call


def _build_torch_weight_grad(case, op, a, b, threads):
    """The weight gradient alone, as autograd's backward computes it:
    ``aten.convolution_backward`` with ``output_mask=[False, True, False]``
    (``a`` the forward input, ``b`` the gradient of its output)."""
    import torch
    g = _Geometry(case)
    r, transposed = g.rank, op == "conv_transpose_weight_grad"
    args = ([g.stride] * r, [g.padding] * r, [g.dilation] * r, transposed,
            [g.output_padding if transposed else 0] * r, g.groups, [False, True, False])
    xt, gt = torch.from_numpy(a), torch.from_numpy(b)
    wt = torch.zeros(g.weight_shape, dtype=xt.dtype)   # only its shape is used
    backward = torch.ops.aten.convolution_backward
    return lambda: backward(gt, xt, wt, None, *args)[1]


def _build_onnxruntime(case, op, a, b, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    g = _Geometry(case)
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[str(a.dtype)]
    r = g.rank
    attrs = dict(kernel_shape=[g.kernel] * r, strides=[g.stride] * r,
                 pads=[g.padding] * (2 * r), dilations=[g.dilation] * r, group=g.groups)
    if op == "conv_transpose":
        attrs["output_padding"] = [g.output_padding] * r
    node_type = {"conv_transpose": "ConvTranspose", "conv": "Conv"}[op]
    result = g.out_shape if op == "conv_transpose" else g.x_shape
    node = helper.make_node(node_type, ["X", "W"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info("X", elem, list(a.shape))],
        [helper.make_tensor_value_info("Y", elem, list(result))],
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
        raise NotApplicable(f"{type(e).__name__}: {str(e).strip()[:200]}") from None
    feed = {"X": a}
    return lambda: sess.run(["Y"], feed)[0]


def _build_tensorflow(case, op, x, w, threads):
    import tensorflow as tf
    g = _Geometry(case)
    if g.dilation > 1 and x.dtype != np.float32:
        raise NotApplicable("TF CPU conv transpose takes dilation > 1 in float32 only (oneDNN)")
    if g.groups > 1:
        raise NotApplicable("TF conv transpose has no groups")
    r = g.rank
    # Channels last; filter [*k, out, in] is our [in, out, *k] transposed.
    xl = tf.constant(np.moveaxis(x, 1, -1))
    wl = tf.constant(np.transpose(w, tuple(range(2, 2 + r)) + (1, 0)))
    k, s, p, opad, d = g.kernel, g.stride, g.padding, g.output_padding, g.dilation
    full = [(i - 1) * s + d * (k - 1) + 1 for i in g.spatial]
    out_shape = [g.N] + full + [g.C_out]
    conv = (tf.nn.conv1d_transpose, tf.nn.conv2d_transpose, tf.nn.conv3d_transpose)[r - 1]
    extra = max(0, opad - p)        # output_padding beyond the cropped pad
    sl = (slice(None),) + tuple(slice(p, f - p + opad) for f in full) + (slice(None),)

    @tf.function
    def call_tf(xx, ww):
        y = conv(xx, ww, out_shape, strides=s, padding="VALID", dilations=d)
        if extra:
            y = tf.pad(y, [[0, 0]] + [[0, extra]] * r + [[0, 0]])
        return y[sl]

    return lambda: call_tf(xl, wl)


def _build_tensorflow_conv(case, op, a, b, threads):
    import tensorflow as tf
    g = _Geometry(case)
    r, s, p, d = g.rank, g.stride, g.padding, g.dilation
    if g.groups > 1 and r == 3:
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

    return lambda: call_tf(xl, wl)


def _build_jax(case, op, a, b, threads):
    import jax
    import jax.numpy as jnp
    from jax import lax
    c = _Geometry(case)
    r, g = c.rank, c.groups
    k, s, p, d = c.kernel, c.stride, c.padding, c.dilation
    if op == "conv":
        rhs, strides, pads, lhs_dilation = b, s, [(p, p)] * r, 1
    else:
        # Direct form of conv_transpose: (C_in, C_out/g, *k) -> (C_out, C_in/g, *k),
        # flipped, at stride 1 over the input dilated by the stride.
        cin_g, cout_g = c.C_in // g, c.C_out // g
        rhs = b.reshape((g, cin_g, cout_g) + b.shape[2:])
        rhs = np.swapaxes(rhs, 1, 2).reshape((c.C_out, cin_g) + b.shape[2:])
        rhs = np.ascontiguousarray(rhs[(slice(None),) * 2 + (slice(None, None, -1),) * r])
        lo = d * (k - 1) - p
        strides, pads, lhs_dilation = 1, [(lo, lo + c.output_padding)] * r, s
    sp = "DHW"[-r:]
    dn = ("NC" + sp, "OI" + sp, "NC" + sp)

    @jax.jit
    def call_jax(xx, ww):
        return lax.conv_general_dilated(
            xx, ww, window_strides=(strides,) * r, padding=pads,
            lhs_dilation=(lhs_dilation,) * r, rhs_dilation=(d,) * r,
            dimension_numbers=dn, feature_group_count=g)

    xj, wj = jnp.asarray(a), jnp.asarray(rhs)
    return lambda: call_jax(xj, wj).block_until_ready()


# op -> library -> builder(case dict, op, first input, second input, threads).
ADAPTERS = {
    "conv_transpose": {"torch": _build_torch, "onnxruntime": _build_onnxruntime,
                       "tensorflow": _build_tensorflow, "jax": _build_jax},
    "conv": {"torch": _build_torch, "onnxruntime": _build_onnxruntime,
             "tensorflow": _build_tensorflow_conv, "jax": _build_jax},
    "conv_weight_grad": {"torch": _build_torch_weight_grad},
    "conv_transpose_weight_grad": {"torch": _build_torch_weight_grad},
}
