"""Drop-in front ends with the argument names and semantics of other frameworks.

- :mod:`numba_deconv.compat.tensorflow`: ``conv1d_transpose``,
  ``conv2d_transpose``, ``conv3d_transpose`` and ``conv2d_backprop_input``
  with TensorFlow's arguments (filters ``[*k, out, in]``, ``SAME``/``VALID``/
  explicit padding, ``output_shape`` checked as TensorFlow checks it).
- :mod:`numba_deconv.compat.onnx`: ``conv_transpose`` with the attributes of
  the ONNX ``ConvTranspose`` operator (``auto_pad``, ``pads``,
  ``output_shape``, ``output_padding``, ``group``, any rank).

Both only translate arguments and call :func:`numba_deconv.conv_transpose`;
neither imports TensorFlow or ONNX.
"""

from . import onnx, tensorflow

__all__ = ["onnx", "tensorflow"]
