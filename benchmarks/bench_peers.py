"""The peers on the same cases as bench_conv_transpose, for side-by-side
``asv run`` output: PyTorch, ONNX Runtime, TensorFlow, JAX, each with the
same thread budget. How each peer is called is
``numba_deconv.bench.build_call``, the same code as ``python -m numba_deconv
bench``. Skipped: a commit without those adapters, a peer that is not
installed, a case the peer cannot run (TensorFlow with dilation or groups,
ONNX Runtime in float64).
"""

from . import THREADS
from ._common import CaseBenchmark


class _Peer(CaseBenchmark):
    lib = None

    def make_call(self, case, x, w):
        try:
            from numba_deconv.bench import Case, NotApplicable, build_call, setup_library
        except ImportError as e:
            raise NotImplementedError(f"no peer adapters in numba_deconv.bench: {e}") from None
        try:
            setup_library(self.lib, THREADS)
        except ImportError:
            raise NotImplementedError(f"{self.lib} is not installed") from None
        try:
            call, _ = build_call(self.lib, Case.from_dict(case), x, w, THREADS)
        except (NotApplicable, ValueError) as e:
            raise NotImplementedError(str(e)) from None
        return call

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
