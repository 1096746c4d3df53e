"""The peers on the same cases as bench_conv_transpose, for side-by-side
``asv run`` output: PyTorch, ONNX Runtime, TensorFlow, JAX, each with the
same thread budget. A peer that is not installed, or that cannot run a case
(TensorFlow with dilation or groups, ONNX Runtime in float64), is skipped.
How each peer is called is :func:`numba_deconv.bench.build_call`, the same
code as ``python -m numba_deconv bench``.
"""

from ._common import CaseBenchmark


class Torch(CaseBenchmark):
    lib = "torch"

    def time_conv_transpose(self, case, dtype):
        self.call()


class ONNXRuntime(CaseBenchmark):
    lib = "onnxruntime"

    def time_conv_transpose(self, case, dtype):
        self.call()


class TensorFlow(CaseBenchmark):
    lib = "tensorflow"

    def time_conv_transpose(self, case, dtype):
        self.call()


class JAX(CaseBenchmark):
    lib = "jax"

    def time_conv_transpose(self, case, dtype):
        self.call()
