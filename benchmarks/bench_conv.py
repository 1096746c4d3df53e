"""numba_deconv.conv and the weight gradients on the standard workloads.

Each case runs in the direction whose adjoint it is (as ``python -m
numba_deconv bench --op ...``): ``conv`` takes an input shaped like the
case's ``conv_transpose`` output and the case's weight, and returns the
case's input shape; the weight gradients take the two activations. Only
the public API; a commit without these functions is skipped.
"""

from ._common import OpBenchmark, conv_kwargs, public_function


class _Ours(OpBenchmark):
    def make_call(self, case, a, b):
        f, kw = public_function(self.op), conv_kwargs(case, self.op)
        return lambda: f(a, b, **kw)


class Conv(_Ours):
    op = "conv"

    def time_conv(self, case, dtype):
        self.call()

    def peakmem_conv(self, case, dtype):
        self.call()


class ConvWeightGrad(_Ours):
    op = "conv_weight_grad"

    def time_conv_weight_grad(self, case, dtype):
        self.call()

    def peakmem_conv_weight_grad(self, case, dtype):
        self.call()


class ConvTransposeWeightGrad(_Ours):
    op = "conv_transpose_weight_grad"

    def time_conv_transpose_weight_grad(self, case, dtype):
        self.call()

    def peakmem_conv_transpose_weight_grad(self, case, dtype):
        self.call()
