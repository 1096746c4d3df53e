"""The peers on the same cases as bench_conv_transpose and bench_conv, for
side-by-side ``asv run`` output: PyTorch, ONNX Runtime, TensorFlow, JAX
(``conv_transpose``, ``conv``) and PyTorch (the weight gradients), each with
the same thread budget. How each peer is called is
``numba_deconv.bench.build_call``, the same code as ``python -m numba_deconv
bench [--op ...]``. Skipped: a commit without those adapters, a peer that is
not installed, a case the peer cannot run (TensorFlow with dilation or
groups, ONNX Runtime in float64).
"""

from . import THREADS
from ._common import CaseBenchmark, OpBenchmark


class _Adapter:
    """``make_call`` through the bench's adapter of ``lib`` for ``op``."""

    lib = None
    op = "conv_transpose"

    def make_call(self, case, x, w):
        try:
            from numba_deconv.bench import Case, NotApplicable, build_call, setup_library
        except ImportError as e:
            raise NotImplementedError(f"no peer adapters in numba_deconv.bench: {e}") from None
        try:
            setup_library(self.lib, THREADS)
        except ImportError:
            raise NotImplementedError(f"{self.lib} is not installed") from None
        kw = {} if self.op == "conv_transpose" else {"op": self.op}  # older: no op
        try:
            call, _ = build_call(self.lib, Case.from_dict(case), x, w, THREADS, **kw)
        except (NotApplicable, ValueError, TypeError) as e:
            raise NotImplementedError(str(e)) from None
        return call


class _Peer(_Adapter, CaseBenchmark):
    def time_conv_transpose(self, case, dtype):
        self.call()


class Torch(_Peer):
    lib = "torch"


class ONNXRuntime(_Peer):
    lib = "onnxruntime"


class TensorFlow(_Peer):
    lib = "tensorflow"


class JAX(_Peer):
    lib = "jax"


class _ConvPeer(_Adapter, OpBenchmark):
    op = "conv"

    def time_conv(self, case, dtype):
        self.call()


class TorchConv(_ConvPeer):
    lib = "torch"


class ONNXRuntimeConv(_ConvPeer):
    lib = "onnxruntime"


class TensorFlowConv(_ConvPeer):
    lib = "tensorflow"


class JAXConv(_ConvPeer):
    lib = "jax"


class TorchConvWeightGrad(_Adapter, OpBenchmark):
    lib, op = "torch", "conv_weight_grad"

    def time_conv_weight_grad(self, case, dtype):
        self.call()


class TorchConvTransposeWeightGrad(_Adapter, OpBenchmark):
    lib, op = "torch", "conv_transpose_weight_grad"

    def time_conv_transpose_weight_grad(self, case, dtype):
        self.call()
