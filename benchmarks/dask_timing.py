"""NumPy vs Dask: one unet-like conv_transpose, batch chunks on a 2-process
LocalCluster. Not part of the test suite or the asv suite (no ``time_``
names; nothing runs on import).

    python benchmarks/dask_timing.py [--images 32] [--chunk 8] [--repeat 7]

Prints the median of ``--repeat`` runs of:

- numpy: ``numba_deconv.conv_transpose`` in this process (its own threads);
- dask end-to-end: ``conv_transpose_dask(da.from_array(x)).compute()`` on
  2 worker processes of 1 thread each (input shipped, result gathered);
- dask on-cluster: the input persisted on the workers first, the result
  persisted there (no transfer to or from this process), and for scale
  what a plain copy of each block costs the same way.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_time(fn, repeat):
    fn()  # warm up: compile or load kernels, start pools
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=8, help="images per dask block")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    import warnings

    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster, wait

    import numba_deconv
    from numba_deconv._dask import conv_transpose_dask

    warnings.filterwarnings("ignore", message="Sending large graph")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.images, 128, 32, 32)).astype(np.float32)
    w = rng.uniform(-1, 1, (128, 64, 2, 2)).astype(np.float32)
    print(f"unet-like conv_transpose: x {x.shape} float32, weight {w.shape}, stride 2 "
          f"-> {(args.images, 64, 64, 64)}; dask blocks of {args.chunk} images")

    numpy_s = _median_time(lambda: numba_deconv.conv_transpose(x, w, stride=2), args.repeat)
    print(f"numpy (this process)        median {numpy_s * 1e3:8.2f} ms")

    # One Numba thread per worker (numba_deconv is imported only in main(),
    # so the workers' Numba reads this variable when it first loads).
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                      dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as client:
        # name=False: fresh keys every run, so no run reuses an earlier result
        def fresh_input():
            return da.from_array(x, chunks=(args.chunk, 128, 32, 32), name=False)

        expected = numba_deconv.conv_transpose(x, w, stride=2)
        got = client.compute(conv_transpose_dask(fresh_input(), w, stride=2)).result()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

        e2e = _median_time(
            lambda: client.compute(conv_transpose_dask(fresh_input(), w, stride=2)).result(),
            args.repeat)
        print(f"dask end-to-end (2 procs)   median {e2e * 1e3:8.2f} ms")

        def on_cluster(make):
            times = []
            for _ in range(args.repeat + 1):
                px = client.persist(fresh_input())
                wait(px)
                t0 = time.perf_counter()
                y = client.persist(make(px))
                wait(y)
                times.append(time.perf_counter() - t0)
                del y, px
            return statistics.median(times[1:])

        held = on_cluster(lambda px: conv_transpose_dask(px, w, stride=2))
        print(f"dask on-cluster (2 procs)   median {held * 1e3:8.2f} ms")
        copy = on_cluster(lambda px: px.map_blocks(np.copy))
        print(f"  (dask's own cost there: a copy of each block, median {copy * 1e3:.2f} ms)")

if __name__ == "__main__":
    main()
