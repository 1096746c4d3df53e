"""numba_deconv.conv_transpose on the standard workloads (bench_cases.json)."""

from numba_deconv import bench

from ._common import CASES, CaseBenchmark


class ConvTranspose(CaseBenchmark):
    """Time, peak memory and extra memory of one call; JIT warmed in setup.

    ``peakmem_conv_transpose`` is the whole process's peak RSS (interpreter,
    Numba, inputs, output and workspace); ``track_workspace`` is the peak
    memory one call adds beyond its output, which issue 3 wants within one
    image's workspace per thread.
    """

    lib = bench.OURS

    def time_conv_transpose(self, case, dtype):
        self.call()

    def peakmem_conv_transpose(self, case, dtype):
        self.call()

    def track_workspace(self, case, dtype):
        ws = bench.workspace_bytes(self.call)
        if ws is None:
            raise NotImplementedError("needs Linux /proc")
        return ws / 2**20

    track_workspace.unit = "MiB"


class GemmReference:
    """The float32 GEMM rate (NumPy matmul, 2048^3) the dense cases are
    judged against (>= 60 % of it)."""

    timeout = 120

    def track_gemm_gflops(self):
        return bench.gemm_rate(2048, repeat=5)

    track_gemm_gflops.unit = "GFLOP/s"


class ConvTransposeCUDA:
    """device="cuda" on a few cases; skipped without a usable GPU."""

    params = [["unet_2d", "dcgan_2d", "tiny_seed"], ["float32"]]
    param_names = ["case", "dtype"]
    timeout = 300

    def setup(self, case, dtype):
        try:
            from numba import cuda
        except ImportError:
            raise NotImplementedError("numba-cuda is not installed") from None
        if not cuda.is_available():
            raise NotImplementedError("no CUDA GPU")
        import numba_deconv
        c = CASES[case]
        x, w = bench.make_inputs(c, dtype)
        self.cuda = cuda
        self.x, self.w = cuda.to_device(x), cuda.to_device(w)
        self.kw = c.kwargs()
        self.f = numba_deconv.conv_transpose
        try:
            self.f(self.x, self.w, device="cuda", **self.kw)
        except (NotImplementedError, ValueError, TypeError) as e:
            raise NotImplementedError(f"CUDA backend: {e}") from None
        cuda.synchronize()

    def time_conv_transpose(self, case, dtype):
        self.f(self.x, self.w, device="cuda", **self.kw)
        self.cuda.synchronize()
