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

#: The GEMM strategy (columns, then col2im) needs at least GEMM_MIN_CHANNELS
#: input and output channels per group. For real data (the columns kernel)
#: it is chosen for images of at most GEMM_MAX_IMAGE_POSITIONS input
#: positions, at most GEMM_MAX_BATCH_POSITIONS in the whole batch, and at
#: least GEMM_MIN_WEIGHTS_PER_POSITION weights per position of the batch:
#: there the weights outweigh the work on each. Measured against the tiled
#: kernel, 2 cores, float32 (float64): 256 -> 256, 4x4 taps on 2 images of
#: 4x4 columns 0.74 ms vs tiled 1.37 (1.19 vs 2.40); 3x3 taps on 64 of 4x4
#: 9.1 vs 12.5; 512 -> 256 on 8 of 8x8 12.0 vs 13.3 (21.7 vs 25.2), on 16
#: of 8x8 26.5 vs 23.7 in float32 (a loss) but 43.9 vs 50.2 in float64; and
#: the tiles win on 256 -> 128 on 2 of 16x16 (3.4 vs 2.8) and on 128 -> 64,
#: 2x2 taps on 8 of 8x8 (0.66 vs 0.30). Complex data has no
#: register tiles: it takes BLAS on images of at least GEMM_MIN_POSITIONS
#: positions.
GEMM_MIN_CHANNELS = 64
GEMM_MAX_IMAGE_POSITIONS = 64
GEMM_MAX_BATCH_POSITIONS = 1024
GEMM_MIN_WEIGHTS_PER_POSITION = 512
GEMM_MIN_POSITIONS = 64

#: The columns kernel (the GEMM strategy for real data) splits the output
#: channels into about this many tasks per thread, and packs the weights of
#: a task COLUMNS_PACK_BYTES at a time (they stay in L2 while every
#: position passes them). Measured, 512 -> 512 on 4 images of 8x8: 8 tasks
#: per thread 10.1 ms, 4 tasks 10.7; 200 or 540 KiB packs within noise.
COLUMNS_TASKS_PER_THREAD = 8
COLUMNS_PACK_BYTES = 256 << 10

#: With at most COLUMNS_IN_PLACE_MAX_POSITIONS positions in the whole
#: batch, the columns kernel's tiles read the weights in place instead:
#: each weight then serves at most 4 tiles, and copying it would cost as
#: much. Its tasks read long runs of each row of weights (2 tasks per
#: thread) and sum COLUMNS_IN_PLACE_K_BLOCK input channels per pass (more
#: rows would contend for the cache sets of rows a power of two apart).
#: Measured, float32 on 2 threads, ms (in place at 128 channels x 32 rows
#: per block, packed at 32 x 124): 1024 -> 512 on one 4x4 image 1.65 vs
#: 2.04; 512 -> 512 on one 4x8 image 1.75 vs 1.95; 256 -> 256 on 2 images
#: of 4x4 0.50 vs 0.53; but 256 -> 256 on 4 images of 4x4 1.06 vs 0.98,
#: and 512 -> 512 on 2 of 8x8 7.1 vs 5.5. Tasks of 32 channels in place:
#: 1.85 ms on the first; 64 rows per block: 2.2.
COLUMNS_IN_PLACE_MAX_POSITIONS = 32
COLUMNS_IN_PLACE_TASKS_PER_THREAD = 2
COLUMNS_IN_PLACE_K_BLOCK = 32

#: The direct strategy runs the tiled kernel (phase planes, register
#: tiles) when C_in/groups * C_out/groups reaches this; below it a tile has
#: nothing to reuse and the plane or row kernel wins (depthwise_2d: planes
#: 0.97 ms, tiled 1.45). Measured: 4 -> 4 channels tiled 1.9x faster.
TILED_MIN_CHANNEL_PAIRS = 8

#: The tiled kernel splits each image into about this many tasks per thread
#: (more balance the load), and into tasks whose input window stays within
#: TILED_WINDOW_BYTES (so that it, the accumulator rows and a block's
#: weights share L2), each covering at least TILED_MIN_POSITIONS
#: accumulator positions (fewer would spend more on copying the halo of
#: input each task reads). The window bound took unet_2d (a 512 KiB window
#: per image) from 3.50 to 3.06 ms and its float64 twin from 6.7 to 4.7.
TILED_TASKS_PER_THREAD = 4
TILED_MIN_POSITIONS = 256
TILED_WINDOW_BYTES = 256 << 10

#: Bytes of accumulator rows (all output channels of a group, every W
#: phase) one sweep of the tiled kernel fills before interleaving them into
#: the output. The register tiles write them once each, so they may live
#: in L2; what the size buys is fewer sweeps, each of which streams all the
#: weights again (dcgan_2d: 32 KiB 115 ms, 128 KiB 112, 512 KiB 79).
TILED_ACC_BYTES = 512 << 10

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

#: Outputs of at least OUTPUT_CACHE_MIN_BYTES are allocated from recycled
#: memory: the library keeps the memory of up to OUTPUT_CACHE_SLOTS outputs
#: (OUTPUT_CACHE_BYTES in all) after the caller drops them, and hands it out
#: again to the next output of the same size (as TensorFlow's and XLA's
#: allocators do). Fresh memory costs a page fault per 4 KiB page the
#: kernel writes: dcgan_2d's 32 MiB output took 62 ms into a reused array
#: and 66-69 ms into a fresh one, on top of allocators that return outputs
#: this large to the system at once (glibc: above 32 MiB). Recycled outputs
#: also start on a cache line, which vector stores like (unet_2d 2.43 vs
#: 2.52 ms into an array 16 bytes off). Set OUTPUT_CACHE_BYTES to 0 to
#: allocate every output afresh.
OUTPUT_CACHE_MIN_BYTES = 256 << 10
OUTPUT_CACHE_BYTES = 256 << 20
OUTPUT_CACHE_SLOTS = 8
