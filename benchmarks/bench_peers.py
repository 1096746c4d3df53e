"""The peers on the same cases as bench_conv_transpose and bench_conv, for
side-by-side ``asv run`` output: PyTorch, ONNX Runtime, TensorFlow, JAX
(``conv_transpose``, ``conv``) and PyTorch (the weight gradients), each with
the same thread budget. How each peer is called is ``_peers.py`` in this
directory (a copy of ``numba_deconv.bench``'s adapters, so that the suite
needs nothing from the commit it measures). Skipped: a peer that is not
installed (none is in asv's own environments, see asv.conf.json; they run
with ``--python=same`` in an interpreter that has them), a case the peer
cannot run (TensorFlow with dilation or groups, ONNX Runtime in float64).
"""

from . import THREADS
from ._common import CaseBenchmark, OpBenchmark


class _Adapter:
    """``make_call`` through ``_peers``' adapter of ``lib`` for ``op``."""

    lib = None
    op = "conv_transpose"
    # A peer's first call may reject a case the adapter let through: skip it.
    skip_errors = (NotImplementedError, TypeError, ValueError)

    def make_call(self, case, x, w):
        from ._peers import NotApplicable, build_call, setup_library
        try:
            setup_library(self.lib, THREADS)
        except ImportError:
            raise NotImplementedError(f"{self.lib} is not installed") from None
        try:
            return build_call(self.lib, case, x, w, THREADS, op=self.op)
        except (NotApplicable, ValueError, TypeError) as e:
            raise NotImplementedError(str(e)) from None


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
