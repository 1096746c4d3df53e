"""Tunables of numba_deconv, in one place.

Numba freezes globals into compiled code, so values that may change at run
time are passed to kernels as arguments; only compile-time choices live
here as plain constants.

Each tunable states its rule and, in one line, why. The measurements
behind the values (machine, commit, command) are in
``benchmarks/TUNING.md``. The dispatcher reads them when it first plans a
call shape and keeps that plan: call ``numba_deconv._dispatch.reset()``
after changing one.
"""

import os as _os


def _data_caches(root="/sys/devices/system/cpu/cpu0/cache"):
    """``{level: (bytes, cpus, ways)}``: each level of CPU 0's data caches,
    its size, how many of the CPUs this system shows share it and its ways
    (0 where not given), as Linux reports them in sysfs (``root``: an
    ``index*`` folder per cache, beside other files); empty where it does
    not."""
    caches = {}
    try:
        for index in sorted(name for name in _os.listdir(root) if name.startswith("index")):
            fields = {}
            for name in ("level", "type", "size", "shared_cpu_list"):
                with open(_os.path.join(root, index, name)) as text:
                    fields[name] = text.read().strip()
            if fields["type"] == "Instruction":
                continue
            size = fields["size"].upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            # a CPU list: "0-1", "0,2,4-7"
            cpus = 0
            for span in fields["shared_cpu_list"].split(","):
                first, _, last = span.partition("-")
                cpus += int(last or first) - int(first) + 1
            ways_file = _os.path.join(root, index, "ways_of_associativity")
            ways = 0
            if _os.path.exists(ways_file):
                with open(ways_file) as text:
                    ways = int(text.read())
            caches[int(fields["level"])] = (int(size.rstrip("KM")) * scale, cpus, ways)
    except (OSError, ValueError):
        return {}
    return caches


def _l1_ways(caches, default=8):
    """The ways of the level-1 data cache in ``caches`` (from
    :func:`_data_caches`), ``default`` where not known."""
    return (caches.get(1) or (0, 0, 0))[2] or default


def _l2_share(caches, share=0.75, default=1536 << 10):
    """``share`` of the level-2 cache in ``caches`` (from
    :func:`_data_caches`), ``default`` where not known."""
    size = (caches.get(2) or (0, 0, 0))[0]
    return int(size * share) if size else default


#: CPU 0's data caches as sysfs describes them (empty where it does not).
_CACHES = _data_caches()


#: Floating-point flags for every CPU kernel: only ``contract`` (multiply
#: and add fused into one FMA, one rounding instead of two). ``nnan`` and
#: ``ninf`` would break NaN/Inf propagation, and the inner loops (axpys,
#: not reductions) need no re-association.
#: Why: FMAs speed up the kernels and results stay deterministic.
FASTMATH = {"contract"}

#: The columns strategy (cols = W^T X, then folded into the output) needs
#: at least GEMM_MIN_CHANNELS input and output channels per group. Real
#: data (the column_tiles kernel) takes it on images of at most GEMM_MAX_IMAGE_POSITIONS input positions,
#: at most GEMM_MAX_BATCH_POSITIONS in the whole batch, and at least
#: GEMM_MIN_WEIGHTS_PER_POSITION weights per position of the batch; complex
#: data (no register tiles) takes the blas kernel on images of at least
#: GEMM_MIN_POSITIONS positions.
#: Why: there the weights outweigh the work, and column tiles read each once.
GEMM_MIN_CHANNELS = 64
GEMM_MAX_IMAGE_POSITIONS = 64
GEMM_MAX_BATCH_POSITIONS = 1024
GEMM_MIN_WEIGHTS_PER_POSITION = 512
GEMM_MIN_POSITIONS = 64
#: Real calls of 2-3 dims take the column_tiles kernel with fewer channels,
#: GEMM_HEAVY_MIN_CHANNELS each way per group, on images of up to
#: GEMM_HEAVY_MAX_IMAGE_POSITIONS, where there are
#: GEMM_HEAVY_MIN_WEIGHTS_PER_POSITION weights per position of the batch.
#: Why, one process, us (phase tiles before): 3-D 32 -> 56, k5 s2 on
#: 2-6 per side 1249 -> 254, 200 -> 256, k6 s3 28475 -> 11084; 2-D
#: 227 -> 56, k6 s4 d2 on 4x29 2110 -> 1274, 256 -> 128, k6 7702 -> 4413;
#: 11 shapes 1.1-4.9x faster; a 1-D one 365 -> 384, so not 1-D
#: (benchmarks/TUNING.md).
GEMM_HEAVY_MIN_CHANNELS = 32
GEMM_HEAVY_MAX_IMAGE_POSITIONS = 256
GEMM_HEAVY_MIN_WEIGHTS_PER_POSITION = 1536

#: Real data with few output channels for many input channels -- at least
#: GEMM_MIN_CHANNELS input channels per group and GEMM_MIN_IN_PER_OUT_CHANNEL
#: (float64: GEMM_MIN_IN_PER_OUT_CHANNEL_F64) per output channel -- takes
#: the blas kernel too, on images of at least GEMM_MIN_POSITIONS positions,
#: unless the call runs serial.
#: Why: the tiles run along output channels and find almost none there
#: (1.3-4.5x slower than BLAS for C_out/groups <= 2, 64-256 input channels).
#: Float64 tiles hold half the lanes: BLAS wins from 16 input channels per
#: output channel, float32 tiles still win some shapes at 32.
#: None of the rules here and below holds for fewer than GEMM_MIN_CHANNELS
#: output channels per group when each output phase has at most one tap
#: (prod(kernel) <= prod(stride)).
#: Why: then the tiles read each input once per block of output channels,
#: and BLAS adds its columns and their fold for nothing (964 -> 3 float64,
#: kernel 2, stride 4: 0.52 against 0.66 ms; 11 of 13 such shapes took
#: 0.58-0.88x the BLAS time in the tiles, two 256 -> 2 and 6 float64 on
#: 2-D took 1.11-1.16x).
GEMM_MIN_IN_PER_OUT_CHANNEL = 64
GEMM_MIN_IN_PER_OUT_CHANNEL_F64 = 16

#: ... and so do real calls with GEMM_MIN_IN_PER_OUT_CHANNEL_MANY_TAPS input
#: channels per output channel when each output phase has at least
#: GEMM_MANY_TAPS_PER_PHASE taps (prod(kernel) / prod(stride)).
#: Why: taps multiply the pairs each tile streams from scattered input rows;
#: BLAS reads them as one matrix (187 -> 8 channels, 16 taps: 6.2 against
#: 10.4 ms; 66 -> 4, 8 taps: 2.4 against 2.9; 64 -> 3 with 4 taps stays in
#: the tiles: 2.2 against 2.4).
GEMM_MIN_IN_PER_OUT_CHANNEL_MANY_TAPS = 16
GEMM_MANY_TAPS_PER_PHASE = 8

#: On CPUs with 16 vector registers (AVX2), where the tiles run in two
#: passes (:func:`numba_deconv.cpu.register_tiles.spell_tile`), real calls with at
#: least GEMM_MIN_IN_CHANNELS_FEW_REGISTERS input channels per group take
#: the blas kernel too.
#: Why: there OpenBLAS's products beat them (549 -> 190 channels: 76
#: against 115 ms; 512 -> 256: 216 against 272; 384 -> 192 ties, 256 -> 128
#: on dcgan_2d's shape: 176 against 161, tiles ahead).
GEMM_MIN_IN_CHANNELS_FEW_REGISTERS = 512

#: The column_tiles kernel splits the output channels into about
#: COLUMNS_TASKS_PER_THREAD tasks per thread and packs a task's weights
#: COLUMNS_PACK_BYTES at a time.
#: Why: a pack stays in L2 while every position passes it.
COLUMNS_TASKS_PER_THREAD = 8
COLUMNS_PACK_BYTES = 256 << 10
#: ... and takes fewer output channels per task where their columns would
#: pass COLUMNS_TASK_COLUMN_BYTES, three quarters of L2.
#: Why: each block of input channels adds to all of a task's columns; past
#: L2, every block read and wrote them in L3. On an Intel Xeon (2 MiB L2),
#: one process, three rounds, uncapped -> 1.5 MiB: 443 -> 273 float64 k6
#: s4 on 11 6x7 images (1.9 MB a task) 0.87x, complex128 (as its real
#: twin, 2.9 MB) 0.77x, 549 -> 190 k4 s2 on 8 58x5 images 0.91x; 1 MiB
#: about the same; 16 other column_tiles shapes 0.96-1.05x. Where the
#: channels whose columns fit fill less than two tiles, the images are split
#: into ranges whose columns fit blocks that fill tiles
#: (:func:`numba_deconv.cpu.work_split._few_channel_split`): the complex
#: 549 -> 190 call's parts, 32 columns a channel, ran 158 -> 108 ms on an
#: Ice Lake (1.25 MiB L2, one channel fits), 106 -> 73 ms on an Emerald
#: Rapids (2 MiB L2, two fit, in two tiles of 48 lanes).
COLUMNS_TASK_COLUMN_BYTES = _l2_share(_CACHES)

#: Channels last, the columns kernel folds a task's output channels
#: together, each position's channels written side by side, where their
#: turned columns (a row of positions per tap, each channel) fit this many
#: bytes; else a channel at a time, its outputs c_out apart.
#: Why: a channel at a time, 443 -> 273 float64 k6 s4 on 11 6x7 images
#: spent 23 % of its channels-last call in the fold (10 % channels first).
#: Together, Intel Xeon VM, three rounds: 549 -> 190 k4 s2 0.90x, that
#: call 0.97x (its 1.07 MB of turned columns per task), 512 -> 256 on 8x8
#: 0.95x, the other column_tiles shapes 0.98-1.01x.
COLUMNS_FOLD_LAST_BYTES = 2 << 20
#: With fewer output channels than COLUMNS_TASKS_PER_THREAD tasks need, the
#: column_tiles kernel takes the blocks of channels and ranges of images
#: that run fewest tiles a thread, and of those the one nearest
#: COLUMNS_IMAGE_TASKS_PER_THREAD tasks per thread
#: (:func:`numba_deconv.cpu.work_split._few_channel_split`).
#: Why: blocks of one channel waste most of a tile (25 taps fill 25 of 48
#: lanes), and so do blocks cut for a task count (5 channels of 9 taps as
#: 3 + 2: 45 of 96 lanes; as one block, 45 of 48).
COLUMNS_IMAGE_TASKS_PER_THREAD = 2

#: Real calls whose register tiles would compute COLUMNS_MIN_ROW_WASTE
#: positions or more per output along the last dim (narrow images: a row
#: of 5 outputs lies in a padded row of 7) take the column_tiles kernel,
#: which computes no padding, where that waste costs at least
#: COLUMNS_MIN_WASTED_MULTIPLY_ADDS per output and tap ((waste - 1) times
#: the input channels per group): enough to pay for the columns' fold, a
#: pass over every output's taps.
#: Why, column_tiles / tiles in one process on 32 shapes of seeds 0-3
#: (waste 1.1 or more, 8 input channels per group or more): from 33 up
#: 0.28-0.70 (seven shapes) and 1.05 once (52, a tie); below it 0.93-4.7
#: (25 shapes; 31: 1.77, 24: 0.95).
COLUMNS_MIN_ROW_WASTE = 1.1
COLUMNS_MIN_WASTED_MULTIPLY_ADDS = 33

#: With at most COLUMNS_IN_PLACE_MAX_POSITIONS positions in the whole batch,
#: or at most COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS and weights of at least
#: COLUMNS_IN_PLACE_LARGE_WEIGHT_BYTES, the column_tiles kernel's tiles read
#: the weights in place, in tasks that read long runs of each row of weights
#: (COLUMNS_IN_PLACE_TASKS_PER_THREAD per thread) and sum
#: COLUMNS_IN_PLACE_K_BLOCK input channels per pass, as many as the L1 data
#: cache has ways (more rows would contend for the cache sets of rows a
#: power of two apart: an 8-way L1, as on AMD's Zen 3, holds 8 of them).
#: Why: a weight then serves at most 2 tiles (4 with the large weights,
#: which come from memory on every call: half the Zen 3's 32 MiB L3), so
#: copying it costs as much. 8 rows instead of 32 on the Zen 3: 1024 -> 512
#: on 4x4, 3.2 against 5.4 ms; 256 -> 256, 1.27 against 1.44. Packed
#: against in place on the Zen 3, one process, 3 s per setting: 256 -> 256
#: on 2 4x4 images (32 positions, 4 MiB) 0.61 against 0.70 ms, 512 -> 384
#: (12 MiB) 1.8-2.0 against 2.1; in place ahead or level at 16 positions
#: and with 16 MiB. On an Intel Xeon (2 MiB L2, 12-way 48 KiB L1), in
#: place at 32 positions: 4.2 MiB 0.92x the packed time, 9.4 MiB 0.88x,
#: 1-2 MiB 1.0x; its tiles keep a tile of weights in L1 for the 4 tiles of
#: positions, so only copying weights larger than the L2 costs a second
#: pass, hence 4 MiB; 12 rows (its L1's ways) instead of 8: 1024 -> 512 on
#: 4x4 0.94x the time, 256 -> 256 0.96x (benchmarks/TUNING.md).
COLUMNS_IN_PLACE_MAX_POSITIONS = 16
COLUMNS_IN_PLACE_LARGE_MAX_POSITIONS = 32
COLUMNS_IN_PLACE_LARGE_WEIGHT_BYTES = 4 << 20
COLUMNS_IN_PLACE_TASKS_PER_THREAD = 2
COLUMNS_IN_PLACE_K_BLOCK = _l1_ways(_CACHES)

#: Weights packed once (a plan) reach the column_tiles kernel's tiles as one
#: stream per task, read once from memory; each step of a tile asks for the
#: row COLUMNS_PREPACKED_PREFETCH_ROWS ahead of the one it loads.
#: Why: one stream a thread ran at 11 GB/s on an Intel Xeon (1024 -> 512 on
#: a 4x4 image through a plan, 1.67 ms; one thread 3.0 ms); 8, 16 and 32
#: rows ahead (1.5-6 KiB): 1.30-1.37, 1.24 and 1.28-1.29 ms. The same ahead
#: of the weights read in place or packed per call was slower (in place:
#: 1.53-1.57 -> 1.64-1.82 ms), so they ask for nothing.
COLUMNS_PREPACKED_PREFETCH_ROWS = 16

#: Real calls with at least TAP_ROWS_MIN_IN_CHANNELS input channels per
#: group and at most TAP_ROWS_MAX_COLUMN_BYTES of columns (output channels x
#: taps x input positions of the batch) take the tap_rows kernel when they
#: have few output channels per group: at most TAP_ROWS_MAX_OUT_CHANNELS
#: with more taps than output phases, at most
#: TAP_ROWS_ONE_TAP_MAX_OUT_CHANNELS with one tap a phase, or, on images so
#: narrow that the phase tiles would compute TAP_ROWS_NARROW_MIN_ROW_WASTE
#: positions per output, at most TAP_ROWS_NARROW_MAX_OUT_CHANNELS. Why: on
#: 16 decoder-end shapes (64-512 -> 1-8 channels) it ran 1.1-2.5x faster
#: than the kernel chosen before; on 36 shapes of 8-96 -> 1-16 channels it
#: lost with fewer input channels, one tap per phase for 4-8 output
#: channels (96 -> 4, 2x2 at stride 2, float64: 341 against 267 us; with 1-3
#: it won, 96 -> 1 at stride 3: 0.77 against 2.8 ms), 9-16 channels on wide
#: images (48 -> 12, 1-D: 618 against 465 us; on narrow ones it won
#: 1.1-2.6x), or 33 MB of columns (64 -> 8, 4x2 on 16^3: 16.6 against 7.4
#: ms) (benchmarks/TUNING.md).
TAP_ROWS_MAX_OUT_CHANNELS = 8
TAP_ROWS_ONE_TAP_MAX_OUT_CHANNELS = 3
TAP_ROWS_NARROW_MAX_OUT_CHANNELS = 16
TAP_ROWS_NARROW_MIN_ROW_WASTE = 1.1
#: ... and so do calls of up to TAP_ROWS_NARROW_MAX_OUT_CHANNELS output
#: channels with more taps than phases on any image, given
#: TAP_ROWS_MIN_IN_PER_OUT_CHANNEL input channels per output channel.
#: Why: their phase tiles' rows are few, and each pair of a long sum
#: waits on its loads. On an Intel Xeon, 48 random shapes of 64-384 -> 9-16
#: channels (1-3 dims, k2-5), default against the tap rows forced, three
#: rounds: from 12 per output 0.44-0.94x the time in 18 of 19 (160 -> 10,
#: k4 s1 on 641 positions: 1.10x), shapes of seed 22 held out (0.69-0.87x
#: in 8 of 9); at 9-12 per output 0.69-1.14x, below 9 mostly slower
#: (benchmarks/TUNING.md).
TAP_ROWS_MIN_IN_PER_OUT_CHANNEL = 12
TAP_ROWS_MIN_IN_CHANNELS = 48
TAP_ROWS_MAX_COLUMN_BYTES = 4 << 20
#: Where no output has two taps (each kernel dim at most its stride over
#: the stride's common factor with the dilation), the fold only moves the
#: columns (columns.single_source), and they may reach
#: TAP_ROWS_ONE_TAP_MAX_COLUMN_BYTES: 144 -> 2 channels, k3 s3 on 13x13x14
#: 7964 -> 5965 us with 7.7 MB, 32228 -> 23282 with 31 MB; 256 -> 1, k4 s4
#: (8.4 MB) 21298 -> 15532; 128 -> 3, k2 s2 (12.6 MB) 12405 -> 13055
#: (benchmarks/TUNING.md).
TAP_ROWS_ONE_TAP_MAX_COLUMN_BYTES = 32 << 20
#: With one tap a phase, any number of output channels takes the tap rows
#: given TAP_ROWS_ONE_TAP_MIN_IN_PER_OUT_CHANNEL input channels per output
#: channel: the phase tiles' sums through hundreds of input channels then
#: lose to the tap rows' 9-row tiles, which need no fold beyond moving the
#: columns. In one process, forced kernels alternating, phase tiles against
#: tap rows: 621 -> 5, k2 s3 on 123x48 3780 -> 2643 us; on 165 shapes of
#: 32-2048 -> 4-48 channels (1-3 dims, k1-3 at strides 2-4), from 32 input
#: channels per output the tap rows ran 0.96-1.90x the phase tiles' speed
#: in float32 (1 of 65 below 1.0x) and 0.94-1.73x in float64 (4 of 34
#: below, 0.94-0.99x), below it 0.54-1.38x. Once the tap rows asked for
#: their input ahead (TAP_ROWS_PREFETCH_ROWS), on an Intel Xeon, 48 shapes
#: of 24-672 -> 4-24 channels: from 16 per output 0.54-0.93x the phase
#: tiles' time (2 of 19 at 1.10-1.11x), at 12 0.61-1.04x, below 12
#: 0.83-2.24x (benchmarks/TUNING.md).
TAP_ROWS_ONE_TAP_MIN_IN_PER_OUT_CHANNEL = 16
#: Except: with at most TAP_ROWS_FEW_TAPS_PER_PHASE taps per output phase
#: (but more than one), at least TAP_ROWS_FEW_TAPS_MIN_OUT_CHANNELS output
#: channels and fewer than TAP_ROWS_FEW_TAPS_MIN_IN_CHANNELS input channels
#: per group, columns past TAP_ROWS_FEW_TAPS_MAX_COLUMN_BYTES (out of L2
#: before the fold reads them) cost more than the tiles lose: 16, 64 -> 3,
#: k4 s2 on 32x32 (to_rgb) 764 against 662 us; 8, 64 -> 3 on 24x24
#: level; 4, 64 -> 3 on 24x24 (442 KiB) 126 against 144; 96 input
#: channels 1090 against 1145; 1 output channel 452 against 538
#: (benchmarks/TUNING.md).
TAP_ROWS_FEW_TAPS_PER_PHASE = 4
TAP_ROWS_FEW_TAPS_MIN_OUT_CHANNELS = 3
TAP_ROWS_FEW_TAPS_MIN_IN_CHANNELS = 96
TAP_ROWS_FEW_TAPS_MAX_COLUMN_BYTES = 512 << 10
#: Real calls of 2-3 dims with at least TAP_ROWS_DEEP_MIN_IN_CHANNELS input
#: channels per group, more output channels than TAP_ROWS_MAX_OUT_CHANNELS
#: but at most one for each TAP_ROWS_DEEP_MIN_IN_PER_OUT_CHANNEL input
#: channels, more taps than phases, at least TAP_ROWS_DEEP_MIN_POSITIONS input
#: positions in the batch and at most TAP_ROWS_DEEP_MAX_COLUMN_BYTES of
#: columns take the tap rows too. Why, on the 9 shapes of seeds 0-5 that
#: 256+ input channels would move: 2-D 18, 347 -> 56, k5 d3 on 13x8
#: 12905 -> 9802 us, 469 -> 127, k2 on 5x8 2619 -> 1936, 775 -> 39, k5
#: on 11x12 36089 -> 30144, 870 -> 15, k7 s4 d3 39022 -> 27668; slower
#: with 2 output channels (3-D 301 -> 2: 11534 -> 12876, 2-D 262 -> 2:
#: 7923 -> 9325, where BLAS runs) and in 1-D (500 -> 60: 5230 -> 5803,
#: 352 -> 36 5710 -> 6341, 622 -> 32 level) and with as many output
#: channels as input (64, 256 -> 256, k3 s2 on 4x4: 7430 on the columns
#: kernel against 9018; 16, 256 -> 256, k4 s2 on 8x8: 12840 against
#: 14456); 256 -> 128, k3 on 6x6: 2273 (phase tiles) -> 1857
#: (benchmarks/TUNING.md).
TAP_ROWS_DEEP_MIN_IN_CHANNELS = 256
TAP_ROWS_DEEP_MIN_IN_PER_OUT_CHANNEL = 2
TAP_ROWS_DEEP_MIN_POSITIONS = 512
TAP_ROWS_DEEP_MAX_COLUMN_BYTES = 16 << 20
#: The tap_rows kernel's products take TAP_ROWS_STRETCH_TILES tiles of
#: positions per task, and its fold at least TAP_ROWS_FOLD_MIN_CHUNK
#: outputs per task (fewer cost more to claim than to fold).
TAP_ROWS_STRETCH_TILES = 4
TAP_ROWS_FOLD_MIN_CHUNK = 512
#: Each step of a tap_rows tile asks for the vectors of the input channel
#: TAP_ROWS_PREFETCH_ROWS ahead of the one it loads.
#: Why: the tiles read ``x`` where it lies, a vector or three from each of
#: hundreds of channels a plane apart, and waited on those loads: on an
#: Intel Xeon, in one process each, three rounds, 0 / 8 / 16 / 32 ahead
#: (us): 632 -> 1 k4 s2 d3 1112-1177 / 1002-1066 / 985-1099 / 983-1080;
#: 964 -> 3 k2 s4 365-398 / 338-358 / 329-380 / 341-376. (A later copy of
#: each stretch first, dropped again, and 8 / 32 / 64 ahead on the
#: model-207 Xeon: benchmarks/TUNING.md.)
TAP_ROWS_PREFETCH_ROWS = 16

#: A phase_tiles call runs with the spatial dim whose rows waste the fewest
#: vector lanes moved last (the input and output copied so) where the last
#: dim's rows waste SWEEP_MIN_WASTE_RATIO times the positions per output
#: that that dim's would, the call has SWEEP_MIN_MULTIPLY_ADDS
#: multiply-adds, and those it saves come to SWEEP_MIN_SAVED_PER_ELEMENT
#: per element copied. Why, in one process, us: 3-D outputs 17x25x17 (k5,
#: dilation 3, 11 -> 66 channels) 101800 -> 55700, 31x15x18 (k6, 6 -> 409)
#: 69200 -> 50100, 26x46x20 (float64, grouped) 3410 -> 2660; 2-D 251x13
#: (k7 s2 d3) 1537 -> 1244; level from 48 saved per element down to 63;
#: slower with 18 (3-D grouped k5 s3: 9520 -> 12250) and in calls of
#: 1.5-5 M multiply-adds (72 -> 97, 246 -> 269) (benchmarks/TUNING.md).
SWEEP_MIN_WASTE_RATIO = 1.2
SWEEP_MIN_MULTIPLY_ADDS = 1 << 24
SWEEP_MIN_SAVED_PER_ELEMENT = 30

#: The gather strategy runs the phase_tiles kernel (phase planes, register
#: tiles) when C_in/groups * C_out/groups reaches TILED_MIN_CHANNEL_PAIRS,
#: or with fewer channel pairs when each output phase has at least
#: TILED_FEW_PAIRS_MIN_TAPS taps on average (TILED_FEW_PAIRS_MIN_TAPS_GROUPED
#: with groups) and each image at least TILED_FEW_PAIRS_MIN_POSITIONS input
#: positions; else the planes or rows kernel.
#: Why: below it a tile has nothing to reuse across channels; but many
#: taps on large images fill the one-row tiles (one channel, 262144
#: positions, 16 taps stride 4: 0.30 against the rows kernel's 1.47 ms;
#: 6 -> 1, 3-D, 125 taps stride 2: 3.8 against the planes' 9.4 ms;
#: depthwise 1 -> 2 on 51x113, 16 taps stride 1: 1.3 against 1.9-3.3 ms).
#: Depthwise calls with 4 taps per phase ran as fast or faster by planes or
#: rows (64 groups on 32x32 to 64x64: 0.96 against 1.37 ms, 4.9 against
#: 5.2), as did 1-2 taps per phase (1.6-2.6x) and small images.
TILED_MIN_CHANNEL_PAIRS = 8
#: In 2-D and 3-D fewer pairs fill the tiles: TILED_MIN_CHANNEL_PAIRS_2D and
#: TILED_MIN_CHANNEL_PAIRS_3D. Why (one process, forced kernels alternating,
#: 1-3 image channels or 16-32 groups of 1-2 -> 1-4): with 4-6 pairs
#: in 2-D the phase tiles ran 0.96-2.95x the planes' or rows' speed (43
#: shapes, 2 below 1.0x: 30-40 us calls on 300 positions), with 2-6 in 3-D
#: 1.23-3.20x (36 shapes); with 2-3 in 2-D they lost on short rows (1 -> 2
#: on 11x44: 0.88-1.01x) and on large images with one tap a phase (3 -> 1,
#: k1 on 128x128: 0.73x), and in 1-D on images of 500-2000 positions
#: (0.57-1.31x, most below 1.0x) (benchmarks/TUNING.md).
TILED_MIN_CHANNEL_PAIRS_2D = 4
TILED_MIN_CHANNEL_PAIRS_3D = 2
TILED_FEW_PAIRS_MIN_TAPS = 4
TILED_FEW_PAIRS_MIN_TAPS_GROUPED = 8
TILED_FEW_PAIRS_MIN_POSITIONS = 2048

#: The phase_tiles kernel splits each image into about TILED_TASKS_PER_THREAD
#: tasks per thread, and into tasks whose input window stays within
#: TILED_WINDOW_BYTES, each covering at least TILED_MIN_POSITIONS
#: accumulator positions (fewer would spend more on copying the halo).
#: Why: balanced load, with window, accumulators and weights sharing L2.
TILED_TASKS_PER_THREAD = 4
TILED_MIN_POSITIONS = 256
#: ... down to TILED_MIN_POSITIONS_CROWDED positions where there would not
#: be TILED_TASKS_PER_THREAD tasks per thread otherwise (many threads, few
#: images and channels).
#: Why: copying a larger share of halo costs less than an idle thread.
TILED_MIN_POSITIONS_CROWDED = 64
#: ... and its output channels into ranges of register-tile blocks only as
#: far as each task keeps TILED_MIN_TASK_MULTIPLY_ADDS of work (one task a
#: thread at least), an output written counting as TILED_OUTPUT_MULTIPLY_ADDS
#: multiply-adds (stores at memory speed); so do the conv tiles (``conv``,
#: the adjoint).
#: Why: each range of channels copies the same input window and runs every
#: sweep again. On the Ice Lake Xeon, the same kernel alternating both
#: splits in one process, 2 threads: 11 -> 17 channels k5 s3 d2 on a 19x7
#: image (9 tasks -> 3) 0.66-0.69x the time; of 384 random shapes 3
#: changed, all faster (0.54-0.80x), and of their adjoints 7 (0.59-0.98x);
#: the standard and fixed-spread cases keep their splits. Counting products
#: alone cut the channels of calls that are mostly stores (2 -> 554
#: channels k2 s3: 1.45x the time).
TILED_MIN_TASK_MULTIPLY_ADDS = 1 << 18
TILED_OUTPUT_MULTIPLY_ADDS = 32
TILED_WINDOW_BYTES = 256 << 10

#: The phase_tiles kernel reads each shift of its taps along W from a copy
#: of its input window of its own, where there are at most
#: TILED_WINDOW_COPIES_MAX shifts and the output rows fill whole vectors
#: (:func:`numba_deconv.cpu.tiled.phase_tables`): then every load of the
#: register tiles starts on a vector boundary. Only for whole blocks of
#: output channels (tiles of 8 rows) or one input channel, calls without
#: depth and with a stride along W, and where the rows of the input
#: channels that one chunk of the tiles' pairs reads
#: (``cpu.tile_products.K_CHUNK_BYTES`` of a block's weights; every block
#: of output channels sums a chunk before the next), with their copies,
#: fit TILED_WINDOW_COPIES_MAX_BYTES.
#: Why: the register tiles ran 0.6-0.75 times as fast on loads across two
#: cache lines as on aligned ones (dcgan_2d 78 -> 64 ms, wide_128_64x64
#: 12.0 -> 10.0 ms); but the tiles of fewer rows load more lines for each
#: multiply-add, and copies make more lines (64 -> 3 channels k4 s2: 1.1-1.2x
#: the time), as at stride 1, all the taps of a row in one phase (16 -> 16
#: k3 on 32x32: 1.16-1.25x). A window out of L2 cost more than misaligned
#: loads in it (dcgan_2d_f64, 1.7 MB: 1.1x) while each block of output
#: channels ran every chunk in turn; with each chunk run by every block,
#: a chunk's rows stay in L2 however large the window (dcgan_2d's complex
#: twin with copies, 1.9 MB: 0.82-0.86x the time without)
#: (``benchmarks/TUNING.md``).
TILED_WINDOW_COPIES_MAX = 4
TILED_WINDOW_COPIES_MAX_BYTES = _l2_share(_CACHES)

#: Output rows a task of the channels-last depthwise kernel (fewer where
#: there would not be TILED_TASKS_PER_THREAD tasks per thread).
#: Why: the input rows that neighbouring output rows share are copied
#: once a task (45 -> 90 channels k4 s1 copied each input row four times,
#: 0.5 of a 1.2 ms call); 8 rows leave tasks enough on most calls.
DEPTHWISE_LAST_ROW_BLOCK = 8
#: ... whose input rows are copied once a task where a ring of them (every
#: row one output row reads, in slots that never meet) fits this many
#: bytes; else once an output row.
#: Why: the ring stays in L2 (a large dilation's ring is mostly rows that
#: no output row of the task reads).
DEPTHWISE_LAST_RING_BYTES = 1 << 20
#: ... and, where a position's channels pass a vector and end mid one, the
#: kernel has at most DEPTHWISE_LAST_STAGE_MAX_TAPS taps for each output
#: phase (its taps over the product of its strides) and the output is at
#: least STREAM_OUTPUT_MIN_BYTES, passes each tile of outputs through a
#: stage in L1 that leaves in whole vectors.
#: Why: such calls are little but stores to memory, and straight to the
#: output each vector of a position's channels straddled two cache lines
#: (47 float64 channels k2 s4, 10.8 MB: 1.5x the channels-first time; 48
#: channels 0.9x). Stage against straight, 28 random depthwise shapes of
#: 17-260 channels, one process each, three rounds: at most 1.5 taps an
#: output 0.73-0.96x in 12 and ties in 3; 2-25 taps, 0.85-0.87x in 2,
#: 1.05-1.19x in the other 10 (there the sums hide the stores, and the
#: stage adds a copy). 14 more shapes of at most 1.5 taps, held out:
#: 0.69-0.92x in 11 of them, ties in 2, 1.43x on a 0.3 MB output (in L2,
#: where a straddling store costs little); 6 channels, 0.92 against 0.74x
#: straight (each position inside a vector).
DEPTHWISE_LAST_STAGE_MAX_TAPS = 1.5

#: Channels last, a call of the phase tiles whose every output phase has at
#: most one tap (:func:`numba_deconv.cpu.one_tap_last.one_tap_per_phase`)
#: runs :func:`~numba_deconv.cpu.one_tap_last.one_tap_last` (sums along
#: the output channels, nothing transposed) where each group has at least
#: a vector of output channels and an output sums at most
#: ONE_TAP_LAST_MAX_MULTIPLY_ADDS products on average (input channels a
#: group times taps over the product of the strides).
#: Why: the tiles' transposes are most of such a call where the sums are
#: short. Against the tiles' own channels-last time, Intel Xeon VM, three
#: rounds: 14 -> 39 channels 1x1 (18 MB) 0.55x, 4 -> 144 1x1 0.53x, 3-D
#: 1x1 0.67-0.74x, 80 -> 10 1x1 s3 0.83x, 2-D k2 s3 and k3 s3 0.76-0.92x,
#: 64 -> 32 k2 s2 3-D (64 products) 0.91x; but 78 -> 515 1x1 float64 (78)
#: 1.1x, 128 -> 64 k2 s2 (128) 1.06-1.12x, and groups of 2-10 output
#: channels 1.0-2.4x (masked vectors mostly empty).
ONE_TAP_LAST_MAX_MULTIPLY_ADDS = 64
#: Calls with several taps in a phase take it too, where an output sums at
#: most FEW_TAPS_LAST_MAX_MULTIPLY_ADDS products on average ...
#: Why: the tiles' products run faster than these, and their transposes
#: matter less, the more products each output sums. Channels last against
#: channels first, the tiles' way -> this kernel's, Ice Lake Xeon VM, 2
#: threads, three rounds: 2 -> 408 k6 s4 0.78 -> 0.24x, 1 -> 72 k6 s3
#: 0.92 -> 0.72, 3 -> 80 in 5 groups k7 s2 1.71 -> 0.95, 2 -> 16 k4 s2
#: 1.22 -> 0.81, 2 -> 51 k3 1.13 -> 0.66 (4-10.5 products); 3 -> 64 k4 s2
#: (12) 0.78 -> 0.81; but 2 -> 620 k5 (50) 1.08 -> 0.97 only, and 23 ->
#: 27 k6 s3 (46) 1.23 -> 1.58, 16 -> 16 k3 s2 d2 (36) 1.39 -> 1.59, 32 ->
#: 16 and 32 -> 32 1-D (64) 0.96 -> 1.23 and 1.07 -> 1.13.
FEW_TAPS_LAST_MAX_MULTIPLY_ADDS = 16
#: ... and where a W phase of its input rows is at least
#: ONE_TAP_LAST_MIN_WIDTH_PER_EDGE times as wide as the outputs at each
#: row's ends that only some of the phase's taps reach
#: (:func:`numba_deconv.cpu.one_tap_last.edge_outputs`), which it sums one
#: at a time.
#: Why: one output at a time, its sums are chains of dependent
#: multiply-adds: 1 -> 31 k4 d3 on rows of 25 (9 such outputs a row) 1.11
#: -> 1.89x the channels-first time, 1 -> 18 3-D k4 d2 (6 of 18) 0.82 ->
#: 1.39, 11 -> 17 k5 s3 d2 (2 of 7) 1.4 -> 1.8-4.4.
ONE_TAP_LAST_MIN_WIDTH_PER_EDGE = 8
#: ... on the calling thread alone where its output is smaller than
#: ONE_TAP_LAST_PARALLEL_MIN_BYTES and it has fewer multiply-adds than
#: ONE_TAP_LAST_PARALLEL_MIN_MULTIPLY_ADDS.
#: Why: mostly stores, such a call gains less from a second thread than the
#: thread's start costs: 1 against 2 threads, 10 -> 31 k3 s3 d2 (0.7 MB
#: output, 1.8 M multiply-adds) 76-79 against 97-100 us; 0.5 and 1.3 MB
#: ties; 1.6-4.6 MB outputs 0.65-0.7x on 2 threads; 38 -> 292 float64
#: 1-D (0.9 MB, 4.4 M) the kernel alone 172 against 98-120 us on 2.
ONE_TAP_LAST_PARALLEL_MIN_BYTES = 1 << 20
ONE_TAP_LAST_PARALLEL_MIN_MULTIPLY_ADDS = 1 << 22

#: Bytes of accumulator rows (all output channels of a group, every W
#: phase) one sweep of the phase_tiles kernel fills before interleaving them into
#: the output; they may live in L2 (the register tiles write each once).
#: Why: every sweep streams all the weights again, so fewer sweeps win
#: (and a stretch one tile longer goes in one sweep:
#: :func:`numba_deconv.cpu.work_split._sweep`).
TILED_ACC_BYTES = 512 << 10

#: ``conv``'s window copies a row of input into its two W phase planes of
#: stride 2 in one pass (each load split by lane) where the planes' rows
#: are at most CONV_SPLIT_MAX_ROW positions long.
#: Why: short rows are mostly each run's start and scalar tail, which the
#: split halves (depthwise_2d's conv, rows of 33: see benchmarks/TUNING.md);
#: on long rows two planes written at once ran slower than one after the
#: other (single_2d, rows of 513).
CONV_SPLIT_MAX_ROW = 64

#: The conv_planes kernel sums each output channel over CONV_PLANES_SWEEP
#: positions at a time.
#: Why: the accumulator row stays in L1 while every pair streams into it.
CONV_PLANES_SWEEP = 2048

#: The weight gradients' kernel lays out the operands of as many images at
#: a time as fit WEIGHT_GRAD_BLOCK_BYTES (at least one); a task owns up to
#: WEIGHT_GRAD_A_BLOCK channels of one operand and WEIGHT_GRAD_PAIR_BLOCK
#: pairs (channel, tap) of the other, fewer pairs when there would be less
#: than TILED_TASKS_PER_THREAD tasks per thread.
#: Why: a task's rows of the block stay in L2 while its tiles pass them.
WEIGHT_GRAD_BLOCK_BYTES = 1 << 20
WEIGHT_GRAD_A_BLOCK = 32
WEIGHT_GRAD_PAIR_BLOCK = 256

#: Bytes of columns one task of the blas kernel may produce before its fold
#: (col2im) reads them back; bigger images are split (output channels, then
#: slabs).
#: Why: it bounds memory only; splitting to fit L2 measured slower.
WORKSPACE_BYTES = 8 << 20

#: The blas kernel splits a call into about one task per
#: BLAS_TASK_MULTIPLY_ADDS, at most BLAS_MAX_TASKS, whatever the thread
#: count (a product's shape can change BLAS's last bits).
#: Why: enough tasks for 32+ threads on big calls, while each task's product
#: stays long enough to repay its Python-level launch (about 15 us).
BLAS_TASK_MULTIPLY_ADDS = 8 << 20
BLAS_MAX_TASKS = 64
#: Channels last, the blas kernel reads and writes the data where they lie
#: (:func:`numba_deconv.cpu._blas.run_blas_last`: each task's positions x
#: channels times its weights, folded a tap's channels at a time) where a
#: task's block of output channels is at least BLAS_LAST_MIN_BLOCK_BYTES;
#: else it runs channels first between transposes.
#: Why: the fold adds a tap's channels of a position as one vector; with 1-2
#: channels they go element by element, taps x channels apart. On the Ice
#: Lake Xeon, channels last, old and new (alternating processes, and in one
#: process): 187 -> 8 float32 k4 s1 d3 0.86-0.88x (1.27 -> 1.07x its
#: channels-first time), 716 -> 9 float64 0.92-0.94x, 622 -> 32 float64 1-D
#: 0.97-1.0x; 262 -> 2 float64 1.27x (and 178 -> 1 float64 3-D 1.34x its
#: channels-first time, against 1.0x before).
BLAS_LAST_MIN_BLOCK_BYTES = 32
#: ... and cuts slabs for more tasks only where each is at least
#: SLAB_MIN_HALOS times the inputs two neighbouring slabs both read.
#: Why: beyond that the recomputed products cost more than idle threads.
SLAB_MIN_HALOS = 4

#: Splitting output channels to fit WORKSPACE_BYTES stops at this many rows
#: of the product (C_out block x kernel taps); then the driver cuts the outermost
#: spatial dim into slabs instead.
#: Why: below it BLAS loses efficiency.
GEMM_MIN_ROWS = 128

#: The rows and planes kernels hand out their work in this many chunks per
#: thread (each chunk allocates its buffers once).
#: Why: enough to balance uneven rows, few enough for small per-chunk costs.
DIRECT_CHUNKS_PER_THREAD = 16

#: Input rows up to this long go to the planes kernel of the gather strategy
#: (one long loop per tap over a zero-padded copy of the input), longer ones
#: to the rows kernel.
#: Why: short rows make short loops per tap; long rows are faster by rows.
PLANES_MAX_ROW = 64

#: Calls with fewer multiply-adds than this run on the calling thread.
#: Why: waking a thread pool costs microseconds idle, milliseconds when busy.
SERIAL_MAX_MULTIPLY_ADDS = 32_768

#: A parallel task kernel runs its tasks on the calling thread alone below
#: this many multiply-adds: the same tasks in the same order, so the same
#: bits, only without helpers.
#: Why: with helpers that stay awake between calls (TEAM_SPIN_READS) two
#: threads on the project's 2-vCPU machine broke even at about 230 Ki
#: multiply-adds (50 us of work) and took 0.55-0.9x the time of one from
#: 330 Ki up; at 83 Ki they took 1.3x (``benchmarks/TUNING.md``).
PARALLEL_MIN_MULTIPLY_ADDS = 1 << 18

#: The phase tiles' weight table is built on every thread from
#: WEIGHT_TABLE_PARALLEL_MIN weights (about 50 us of copying on one), in
#: tasks of a block of output channels and up to WEIGHT_TABLE_CHUNK input
#: channels (turned in L1 by ``cpu.weight_table.fill_weight_table``).
#: Why: a plain call builds it each time, and one thread took a fifth to
#: a third of small calls with many output channels (31 -> 399 channels
#: on 18x5, k3 s3: 112 of 440 us).
WEIGHT_TABLE_PARALLEL_MIN = 1 << 16
WEIGHT_TABLE_CHUNK = 16

#: A call shape on the phase tiles (or conv's tiles) whose weights are the
#: same bytes as at its last call reuses their weight table
#: (``numba_deconv._weight_memo``), for weights of at most
#: WEIGHT_MEMO_MAX_BYTES and the WEIGHT_MEMO_ENTRIES call shapes used last.
#: Set WEIGHT_MEMO_ENTRIES to 0 to lay the weights out on every call.
#: Why: a loop of calls with the same weights built the table every time,
#: a quarter of small calls (32 -> 16 channels k7 s2 on 8x8: 259 -> 196
#: us); comparing 1 MiB costs about what its table takes to build.
WEIGHT_MEMO_MAX_BYTES = 1 << 20
WEIGHT_MEMO_ENTRIES = 8

#: A helper thread that finishes a task kernel's job, and a caller waiting
#: for its helpers, poll for the next event this many times without the GIL
#: before they sleep (``numba_deconv.cpu.launch``).
#: Why: waking a sleeping thread took 15-35 us on a 2-vCPU virtual machine;
#: 2**18 reads are a few hundred microseconds of polling.
TEAM_SPIN_READS = 1 << 18

#: Outputs of at least OUTPUT_CACHE_MIN_BYTES are allocated from recycled
#: memory: the library keeps the memory of up to OUTPUT_CACHE_SLOTS outputs
#: (OUTPUT_CACHE_BYTES in all) after the caller drops them and hands it to
#: the next output of the same size (as TensorFlow's and XLA's allocators
#: do), since allocators return blocks this large to the system at once
#: (glibc: above 32 MiB); recycled outputs start on a cache line. Set
#: OUTPUT_CACHE_BYTES to 0 to allocate every output afresh.
#: Why: fresh memory costs a page fault per page written, on every call.
OUTPUT_CACHE_MIN_BYTES = 256 << 10
OUTPUT_CACHE_BYTES = 256 << 20
OUTPUT_CACHE_SLOTS = 8


def _stream_output_min_bytes(caches, default=8 << 20, host_cache_per_cpu=32 << 20):
    """:data:`STREAM_OUTPUT_MIN_BYTES` for the data caches ``caches`` (from
    :func:`_data_caches`; ``default`` where there are none): a quarter of
    the last level, or where that level has more than
    ``host_cache_per_cpu`` for each CPU that shares it here, the level
    below whole. A virtual machine shows its host's whole last-level cache
    (480 MiB for 2 CPUs on an Intel Xeon), of which it keeps an unknown
    share."""
    if not caches:
        return default
    last = max(caches)
    size, cpus, _ = caches[last]
    if size <= host_cache_per_cpu * cpus or last - 1 not in caches:
        return size // 4
    return caches[last - 1][0]


#: Channels-last outputs of the phase tiles of at least
#: STREAM_OUTPUT_MIN_BYTES are written with non-temporal stores: whole
#: aligned cache lines that go to memory without being read into the cache
#: first. It is a quarter of the last-level cache, or the level below where
#: the last is a virtual machine's view of its host's
#: (:func:`_stream_output_min_bytes`).
#: Why: a channels-last output that the cache does not keep took its
#: transposed stores 1.8 times as long as the channels-first interleave
#: took its own (the store misses stalled the transposes' loads). Streamed,
#: in one process: 8-16 MB outputs 0.84-0.96x the time (signal_1d 3.98 ->
#: 3.33 ms, unet_2d 0.96x), 1-4 MB ones 1.02-1.10x (AMD Zen 5, a 32 MiB L3
#: for 2 CPUs). On an Intel Xeon VM (2 MiB L2, the host's 480 MiB L3),
#: 2-8 MB outputs 0.66-0.95x (r27 7.9 MB 0.66x, signal_2048 2.1 MB 0.86x),
#: 17-34 MB ones 0.97-1.00x, 1.2 MB 1.38x (benchmarks/TUNING.md).
STREAM_OUTPUT_MIN_BYTES = _stream_output_min_bytes(_CACHES)

#: Channels last, a task of the phase tiles that writes every channel of
#: its positions, where the channels end mid vector, transposes its sums
#: for ``lanes`` outputs of every W phase into a stage of at most
#: CHANNELS_LAST_STAGE_MAX_BYTES and copies it out as one run (streamed
#: above STREAM_OUTPUT_MIN_BYTES), instead of transposing them straight
#: into the output.
#: Why: straight, every transposed store of 27 or 39 channels straddles two
#: cache lines and no line can stream. On an Intel Xeon VM, alternating
#: processes, five rounds: 3 -> 126 channels k1 (2.9 MB output) 0.57x,
#: 23 -> 27 k6 s3 (3.0 MB) 0.77x, 10 -> 40 grouped (5 MB) 0.90x, 10 -> 61
#: float64 (1.6 MB, not streamed) 0.87x, 40 -> 104 grouped (14 MB) 0.97x;
#: but 14 -> 39 k1 on 11 114x94 images (18 MB) 1.10x slower, and 1.04x at
#: 6.7 MB: the stream is slower than the cached stores there
#: (benchmarks/TUNING.md).
CHANNELS_LAST_STAGE_MAX_BYTES = 64 << 10

#: A call on the main thread with at least this many multiply-adds runs its
#: parallel kernel on other threads only, so that Ctrl-C stops it within a
#: task (see :mod:`numba_deconv.cpu.launch`); smaller calls end sooner than
#: a person can tell.
#: Why: handing the work to other threads costs tens of microseconds, under
#: 0.2 % of a call this long (30 ms at the FMA peak of 2 cores).
INTERRUPTIBLE_MIN_MULTIPLY_ADDS = 1 << 32

#: A call whose tuned kernel is neither loaded nor in the on-disk cache runs
#: the baseline kernel (the same bits, see :mod:`numba_deconv.cpu.tiering`)
#: while a helper process compiles the tuned one, if BACKGROUND_COMPILE
#: (environment variable NUMBA_DECONV_BACKGROUND_COMPILE=0 turns it off) and
#: the call has at most BASELINE_MAX_MULTIPLY_ADDS multiply-adds
#: (BASELINE_TILES_MAX_MULTIPLY_ADDS where it stands in for the phase tiles,
#: conv's tiles or the weight gradients' kernels).
#: Why: the baseline compiles in 0.9-1.3 s where a tuned kernel takes 3-10
#: s; for the row, plane, columns and tap-rows kernels it runs at 1.6-13 G
#: multiply-adds a second on 2 cores here (the tuned kernels at up to 250),
#: so a call past 2**32 would wait longer for it than for the compile. In
#: the phase tiles' order it compiles in 0.9 s and runs at 12-21 G a second
#: (dcgan_2d, 2**33: 0.63 s), where the phase tiles take 11-19 s to
#: compile: a cold first call of dcgan_2d took 2.9 s instead of 19.0
#: (benchmarks/TUNING.md); 2**35 would take 3-5 s, while the helper
#: compiles. conv's tiles take about 12 s to compile, its baseline runs
#: at 12-26 G a second (dcgan_2d's conv: 0.46 s); the weight gradients'
#: kernels 8-12 s, their baseline 6-9 G a second.
BACKGROUND_COMPILE = _os.environ.get("NUMBA_DECONV_BACKGROUND_COMPILE", "1") != "0"
BASELINE_MAX_MULTIPLY_ADDS = 1 << 32
BASELINE_TILES_MAX_MULTIPLY_ADDS = 1 << 35

#: Calls of at least this many multiply-adds that the baseline computes in
#: the phase tiles' order run its form with the sums in registers
#: (``baseline.tiles_in_registers``, the same bits).
#: Why: it runs at 1.7-1.9 times the speed (dcgan_2d 0.72 -> 0.39 s on two
#: threads) but compiles in 1.3 s instead of 1.0; at 2**33 multiply-adds
#: the run time saved pays the compile (benchmarks/TUNING.md).
BASELINE_REGISTERS_MIN_MULTIPLY_ADDS = 1 << 33
