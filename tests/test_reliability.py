"""Threads, processes, interrupts and memory: what a long-running pipeline
may do to the library, each in a fresh child process so that the threading
layer, the signal and the memory figures are its own.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

#: Calls of every public function, ranks 1-3, real and complex, both
#: layouts, each big enough for the parallel kernels. Shared by the child
#: scripts below (``CALLS`` and ``run(i)``).
CALLS = textwrap.dedent("""
    import numpy as np
    import numba_deconv as nd

    rng = np.random.default_rng(3)

    def data(shape, dtype):
        a = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        return a.astype(dtype)

    f32, f64, c64 = np.float32, np.float64, np.complex64
    SPECS = [
        (nd.conv_transpose, [((2, 16, 12, 13), f32), ((16, 8, 3, 3), f32)], dict(stride=2)),
        (nd.conv_transpose, [((3, 4, 200), f64), ((4, 2, 5), f64)], dict(stride=3, padding=1)),
        (nd.conv_transpose, [((2, 6, 6, 6, 16), f32), ((16, 4, 2, 2, 2), f32)],
         dict(stride=2, data_format="channels_last")),
        (nd.conv_transpose, [((2, 8, 20, 21), c64), ((8, 4, 3, 3), c64)], dict(stride=2, groups=2)),
        (nd.conv_transpose, [((4, 8, 30, 31), f32), ((8, 1, 3, 3), f32)],
         dict(stride=2, groups=8, padding_mode="reflect", padding=1)),
        (nd.conv, [((2, 16, 24, 25), f32), ((8, 16, 3, 3), f32)], dict(stride=2, padding=1)),
        (nd.conv, [((3, 2, 300), f64), ((3, 2, 4), f64)], dict(stride=2)),
        (nd.conv_weight_grad, [((2, 4, 30, 31), f64), ((2, 3, 14, 15), f64)],
         dict(kernel_size=3, stride=2)),
        (nd.conv_transpose_weight_grad, [((2, 16, 10, 11), f32), ((2, 8, 21, 23), f32)],
         dict(kernel_size=3, stride=2)),
    ]
    CASES = [(fn, [data(s, d) for s, d in specs], kw) for fn, specs, kw in SPECS]

    def run(i):
        fn, arrays, kwargs = CASES[i % len(CASES)]
        return fn(*arrays, **kwargs)
""")


def _child(script: str, *, env=None, timeout=900) -> dict:
    done = subprocess.run([sys.executable, "-c", CALLS + textwrap.dedent(script)],
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


THREADS = """
    import json, threading, numba
    serial = [run(i).tobytes() for i in range(len(CASES))]
    bad, errors = [], []

    def worker(t):
        try:
            for k in range(50):
                i = (7 * t + k) % len(CASES)
                if run(i).tobytes() != serial[i]:
                    bad.append((t, k, i))
        except BaseException as e:  # a crash would end the process instead
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"layer": numba.threading_layer(), "bad": bad, "errors": errors}))
"""


@pytest.mark.parametrize("layer", [None, "workqueue", "omp"])
def test_eight_threads_of_fifty_mixed_calls_match_the_serial_results(layer):
    """The library's default layer, and each layer a user can name: the
    workqueue layer (which aborts on concurrent launches) is serialised."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    done = subprocess.run([sys.executable, "-c", CALLS + textwrap.dedent(THREADS)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == [] and result["bad"] == []
    if layer is None:  # no TBB here: the fork-safe choice
        assert result["layer"] in ("tbb", "workqueue")
    else:
        assert result["layer"] == layer


def test_pools_fork_forkserver_and_spawn_after_the_parent_ran_parallel_kernels(tmp_path):
    script = tmp_path / "pools.py"  # spawn and forkserver re-import __main__ from a file
    script.write_text(CALLS + textwrap.dedent("""
        def job(i):
            return run(i).tobytes()

        if __name__ == "__main__":
            import json, multiprocessing as mp
            expected = [job(i) for i in range(len(CASES))]  # parallel kernels in the parent
            results = {}
            for method in ("fork", "forkserver", "spawn"):
                with mp.get_context(method).Pool(2) as pool:
                    got = pool.map_async(job, range(len(CASES))).get(timeout=600)
                results[method] = got == expected
            print(json.dumps(results))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "fork": True, "forkserver": True, "spawn": True}


COMPILE = """
    import json, sys, time
    start = float(sys.argv[1])
    while time.time() < start:  # all processes begin together
        time.sleep(0.005)
    # One small kernel: what is tested is four writers of one cache, not
    # the compiler. Which of its functions this process compiled rather
    # than loaded from the cache.
    import numba_deconv
    from numba_deconv.cpu import driver
    digest = hash(run(1).tobytes())
    (variant,) = numba_deconv.cache_info()
    compiled = sorted({dispatcher.py_func.__name__
                       for dispatcher, _ in driver.kernel_signatures(variant["kernel"],
                                                                     variant["dtype"])
                       if sum(dispatcher.stats.cache_misses.values())})
    print(json.dumps({"digests": [digest], "compiled": compiled}))
"""


def test_four_processes_compiling_into_one_empty_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONHASHSEED="0")
    start = time.time() + 8  # past the imports of all four
    children = [subprocess.Popen([sys.executable, "-c", CALLS + textwrap.dedent(COMPILE),
                                  str(start)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [child.communicate(timeout=900) for child in children]
    assert all(child.returncode == 0 for child in children), [err for _, err in outputs]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    digests = {tuple(report["digests"]) for report in reports}
    assert len(digests) == 1
    # One compiled the kernel; the others waited for it and loaded it.
    assert sum(1 for report in reports if report["compiled"]) == 1, reports
    # A fifth process loads what they wrote and computes the same.
    fifth = subprocess.run([sys.executable, "-c", CALLS + textwrap.dedent(COMPILE), "0"],
                           env=env, capture_output=True, text=True, timeout=900)
    report = json.loads(fifth.stdout.strip().splitlines()[-1])
    assert tuple(report["digests"]) in digests and report["compiled"] == []


UNWRITABLE = """
    import json, warnings
    warnings.simplefilter("error")  # no warning may escape
    print(json.dumps({"digests": [run(1).tobytes().hex()]}))  # one small kernel, compiled afresh
"""


def test_an_unwritable_cache_directory_falls_back_quietly(tmp_path):
    # Under a plain file no directory can be made, not even by root.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    got = _child(UNWRITABLE, env={"NUMBA_CACHE_DIR": str(blocker / "cache")})
    assert got == _child(UNWRITABLE)


def test_a_read_only_installed_package_computes_correctly(tmp_path):
    """Installed where nothing can be written: Numba's cache beside the
    sources cannot be made (a file named ``__pycache__`` stands in every
    package directory, which stops root too), so it falls back to the
    user's cache directory, quietly."""
    import numba_deconv
    site = tmp_path / "site"
    shutil.copytree(os.path.dirname(numba_deconv.__file__), site / "numba_deconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(site):
        (Path(root) / "__pycache__").write_text("")
    for root, dirs, files in os.walk(site):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    script = CALLS + textwrap.dedent(UNWRITABLE) + textwrap.dedent("""
        assert nd.__file__.startswith(sys.argv[1]), nd.__file__
    """)
    try:
        done = subprocess.run([sys.executable, "-c", "import sys\n" + script, str(site)],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == _child(UNWRITABLE)
    finally:
        for root, dirs, files in os.walk(site):
            os.chmod(root, 0o755)


def test_an_output_too_big_to_allocate_is_refused_and_the_process_goes_on():
    got = _child("""
        import json
        try:
            nd.conv_transpose(np.ones((1, 1, 1024), np.float32), np.ones((1, 1, 3), np.float32),
                              stride=2**30)
            message = None
        except MemoryError as e:
            message = str(e)
        print(json.dumps({"message": message, "after": run(0).shape}))
    """)
    assert got["message"] is not None and "4.00 TiB" in got["message"]
    assert got["after"] == [2, 8, 25, 27]


INTERRUPT = """
    import json, os, signal, sys, time
    # A child starts with its parent's signal mask and ignored signals, and
    # Python leaves an ignored SIGINT ignored: Ctrl-C raises
    # KeyboardInterrupt here whatever ran the tests.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    small = run(0)
    x = np.ones((2048, 256, 16, 16), np.float32)  # a call of a few seconds
    w = np.full((256, 128, 4, 4), 1e-3, np.float32)
    nd.conv_transpose(x[:1], w, stride=2, padding=1)  # compiled before the clock starts
    start = time.perf_counter()
    nd.conv_transpose(x[:512], w, stride=2, padding=1)
    quarter = time.perf_counter() - start
    print(json.dumps({"ready": quarter * 4}), flush=True)
    try:
        nd.conv_transpose(x, w, stride=2, padding=1)
        caught = None
    except KeyboardInterrupt:
        caught = time.time()
    after = run(0)
    print(json.dumps({"caught": caught, "same": after.tobytes() == small.tobytes()}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_ctrl_c_stops_a_long_call_and_the_next_call_is_right():
    child = subprocess.Popen([sys.executable, "-c", CALLS + textwrap.dedent(INTERRUPT)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expected_seconds = json.loads(child.stdout.readline())["ready"]
    time.sleep(min(1.0, expected_seconds / 3))
    sent = time.time()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["caught"] is not None, f"the call ({expected_seconds:.1f} s) was not stopped"
    latency = result["caught"] - sent
    print(f"interrupt latency {latency * 1e3:.0f} ms in a call of ~{expected_seconds:.1f} s")
    assert latency < 0.5
    assert result["same"]


LEAK = """
    import gc, json, resource
    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    for i in range(200):  # warm: every kernel loaded, the recycled outputs filled
        run(i)
    gc.collect()
    before = rss_mib()
    for i in range(10_000):
        run(i)
    gc.collect()
    after = rss_mib()
    nd.release_memory()
    gc.collect()
    print(json.dumps({"before": before, "after": after, "released": rss_mib()}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_ten_thousand_mixed_calls_keep_resident_memory_flat():
    got = _child(LEAK)
    print(f"RSS {got['before']:.1f} -> {got['after']:.1f} MiB after 10,000 calls, "
          f"{got['released']:.1f} after release_memory()")
    assert got["after"] - got["before"] < 8  # MiB: no per-call growth (0.8 KiB a call at most)


def _free_memory_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@pytest.mark.slow
@pytest.mark.skipif(_free_memory_bytes() < 12 << 30, reason="needs 12 GiB of free memory")
def test_index_arithmetic_past_two_to_the_31_elements():
    """An output of 2**31 + 196,612 float32 elements (8 GiB): every
    output gets at most one tap per dim at stride 64, so the last 130 rows
    (flat indices from just below 2**31 to the end) are known from the
    definition element by element."""
    import numba_deconv as nd
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 1025, 513)).astype(np.float32)
    w = rng.standard_normal((1, 1, 2, 2)).astype(np.float32)
    y = nd.conv_transpose(x, w, stride=64)
    assert y.shape == (1, 1, 65538, 32770) and y.size > 2**31
    rows = y[0, 0, -130:]  # the last three input rows reach these
    assert np.ravel_multi_index((65538 - 130, 0), y.shape[2:]) < 2**31 < y.size
    expected = np.zeros_like(rows)
    for i0 in (1022, 1023, 1024):
        for k0 in range(2):
            r = i0 * 64 + k0 - (65538 - 130)
            for k1 in range(2):
                expected[r, k1::64][:513] = x[0, 0, i0] * w[0, 0, k0, k1]
    np.testing.assert_array_equal(rows, expected)
    del y
    nd.release_memory()
