"""Tunables of numba_deconv, in one place.

Numba freezes globals into compiled code, so values that may change at run
time are passed to kernels as arguments; only compile-time choices live
here as plain constants.
"""

#: Floating-point flags for every CPU kernel: only ``contract``, which lets
#: LLVM fuse multiply and add into one FMA (one rounding instead of two;
#: about 5-10 % on the direct kernel). Results stay deterministic. The other
#: fast-math flags are off on purpose: ``nnan``/``ninf`` would break NaN/Inf
#: propagation, and re-association is not needed (the inner loops are axpys,
#: not reductions).
FASTMATH = {"contract"}

#: Use the GEMM + col2im strategy when both the input channels per group
#: and the output columns per group (C_out/groups * prod(kernel)) reach
#: these counts; below them the direct kernel wins.
GEMM_MIN_IN_CHANNELS = 8
GEMM_MIN_COLUMNS = 16

#: Bytes of GEMM columns one task may produce before its col2im reads them
#: back; bigger images are split (output channels, then slabs). Measured on
#: this project's machine (2 MiB L2 per core, large L3): splitting to fit L2
#: made vol_3d 25 % and dilated_2d 10 % slower (smaller GEMMs, recomputed
#: halos), so the limit only bounds the memory of very large images.
WORKSPACE_BYTES = 8 << 20

#: Splitting output channels to fit WORKSPACE_BYTES stops at this many GEMM
#: rows (C_out block x kernel taps); below it BLAS loses efficiency, and the
#: driver cuts the outermost spatial dim into slabs instead.
GEMM_MIN_ROWS = 128

#: The direct kernel hands out output rows in this many chunks per thread
#: (each chunk allocates its phase buffer once): enough to balance uneven
#: rows, few enough to keep per-chunk costs negligible.
DIRECT_CHUNKS_PER_THREAD = 16

#: Input rows up to this long go to the plane kernel of the direct strategy
#: (one long loop per tap over a zero-padded copy of the input), longer ones
#: to the row kernel. Measured: depthwise_2d (rows of 32) 1.5 -> 0.9 ms;
#: single_2d (rows of 512) is faster by rows.
PLANES_MAX_ROW = 64

#: Calls with fewer multiply-adds than this run on the calling thread: waking
#: a thread pool costs microseconds on an idle machine and can cost
#: milliseconds on a busy one.
SERIAL_MAX_MULTIPLY_ADDS = 32_768
