"""Timing, and the processes: one worker per library, the parent checks and collects.

The workers import this module without the ``numba_deconv`` package (see
``_BOOT``), so a peer's process never loads Numba and ours never loads a peer.
"""

import contextlib
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from .cases import DTYPES, OPS, Case, load_cases, make_inputs, select_cases
from .peers import ADAPTERS, OURS, PEER_LABELS, PEERS, NotApplicable, build_call, \
    first_line, setup_library
from .report import Report, Result, Row, cell, machine_description

# Relative tolerance (of the largest |output|) for "the peer agrees with us".
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


@dataclasses.dataclass
class Timing:
    median: float          # seconds per call
    best: float            # fastest sample, seconds per call
    samples: int           # number of samples taken
    inner: int             # calls per sample (batched when calls are tiny)

    def to_dict(self):
        return dataclasses.asdict(self)


def measure(fn, *, min_time=1.0, repeat=None, warmup=2, min_samples=7,
            max_samples=2000, batch_below=50e-6) -> Timing:
    """Median seconds per call of ``fn()`` after warm-up.

    The first call (compilation, caches) is never timed. Then ``warmup``
    more calls give an estimate ``t``; the sample count is
    ``min_time / t`` clamped to ``[min_samples, max_samples]`` (3 for calls
    over a second), or exactly ``repeat``. Calls shorter than
    ``batch_below`` seconds are timed in batches of ``inner`` calls, so that
    the timer's resolution does not matter.
    """
    perf = time.perf_counter
    est = _estimate(fn, warmup)
    inner = 1 if est >= batch_below else math.ceil(batch_below / est)
    n = int(repeat) if repeat else max(3 if est > 1.0 else min_samples,
                                       min(max_samples, int(min_time / (est * inner))))
    samples = []
    for _ in range(n):
        t0 = perf()
        for _ in range(inner):
            fn()
        samples.append((perf() - t0) / inner)
    return Timing(statistics.median(samples), min(samples), n, inner)


def _estimate(fn, warmup) -> float:
    """Seconds of the fastest of ``warmup`` calls of ``fn()``, after a
    first call that is not timed."""
    fn()
    est = math.inf
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        fn()
        est = min(est, time.perf_counter() - t0)
    return max(est, 1e-9)


def measure_together(fns: dict, *, min_time=1.0, rounds=15, warmup=2) -> dict:
    """Median seconds per call of each of ``fns`` (name -> function), as
    :func:`measure` but in turns: ``rounds`` rounds, each a batch of every
    function in order, a batch as many calls as last about ``min_time /
    rounds`` seconds (one at least), a sample its mean; ``{name: Timing}``.
    A slow spell of the machine then falls on all of them alike, and the
    ratios of their medians hold where the times drift (on a shared 2-core
    machine, one case's ratio of two calls timed one after the other read
    1.9x and 3.2x a minute apart). Batches of many calls keep each call's
    data as warm in the caches as when it is timed alone."""
    per_batch = min_time / rounds
    inner = {name: max(1, math.ceil(per_batch / _estimate(fn, warmup)))
             for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: Timing(statistics.median(times), min(times), rounds, inner[name])
            for name, times in samples.items()}


def gemm_rate(n=2048, repeat=5, dtype="float32") -> float:
    """GFLOP/s of NumPy's ``a @ b`` on ``n x n`` matrices (median of ``repeat``)."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    c = np.matmul(a, b)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _emit_peaks(threads):
    """The FMA peak of float32 and float64 (:func:`.peak.fma_peak`)."""
    from .peak import fma_peak

    for dtype in DTYPES:
        _emit({"event": "peak", "dtype": dtype, "gflops": fma_peak(dtype, threads)})


def workspace_bytes(fn):
    """Peak resident memory a call of ``fn()`` adds, minus its result's size.

    Linux only (``None`` elsewhere): makes glibc hand large blocks straight
    back to the system, resets the peak-RSS mark (``/proc/self/clear_refs``)
    and reads ``VmHWM`` after one call. An estimate: threads' stacks and
    allocator slack count, memory a library keeps cached does not. Our
    recycled outputs are let go first: an output made in memory kept from
    earlier calls would hide the workspace behind the output's size.
    """
    import numba_deconv
    numba_deconv.release_memory()
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 128 * 1024)   # M_MMAP_THRESHOLD: fixed, no adaptation
        libc.malloc_trim(0)
        before = _proc_status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError, KeyError):
        return None
    result = fn()
    return max(0, _proc_status("VmHWM") - before - getattr(result, "nbytes", 0))


def _proc_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


# -- the worker: one library, every case, JSON lines on stdout ----------------

def _thread_env(threads):
    t = str(threads)
    return dict(
        os.environ, NUMBA_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t,
        OPENBLAS_NUM_THREADS=t, BLIS_NUM_THREADS=t, VECLIB_MAXIMUM_THREADS=t,
        NUMEXPR_NUM_THREADS=t, TF_NUM_INTRAOP_THREADS=t, TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore",
        # The warm-up compiles the tuned kernels in place: timing the
        # baseline that stands in while a helper compiles them would not
        # measure the kernels (bench --cold measures the first call).
        NUMBA_DECONV_BACKGROUND_COMPILE="0")


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_main(lib, spec_path):
    """Time ``lib`` on every item of the spec, reporting JSON lines."""
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    threads = spec["threads"]
    with contextlib.suppress(AttributeError, OSError):   # pin to `threads` CPUs
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > threads:
            os.sched_setaffinity(0, cpus[:threads])
    try:
        version = setup_library(lib, threads)
    except ImportError as e:
        _emit({"event": "missing", "reason": first_line(e)})
        return 0
    _emit({"event": "version", "version": version})
    gemm = {"event": "gemm", "size": spec["gemm_size"]} if spec["gemm"] else None
    if gemm:
        _emit(dict(gemm, gflops=gemm_rate(gemm["size"])))
        _emit_peaks(threads)

    def load(item):
        return Case.from_dict(item["case"]), np.load(item["x"]), np.load(item["w"])

    op = spec.get("op", "conv_transpose")

    def prepare(item, res):
        """The item's call, its output saved for the parent's check, or
        None with ``res`` saying why."""
        try:
            call, to_numpy = build_call(lib, *load(item), threads, op=op,
                                        plan=spec.get("plan", False))
            np.save(item["out"] + f".{lib}.npy", to_numpy(call()))
            res["status"] = "ok"
            return call
        except NotApplicable as e:
            res.update(status="n/a", reason=str(e))
        except Exception as e:  # report, keep going with the next case
            res.update(status="error", reason=first_line(e))
        return None

    if spec.get("in_turn"):
        _serve_in_turn(spec, prepare)
    else:
        for item in spec["items"]:
            res = {"event": "result", "id": item["id"]}
            call = prepare(item, res)
            if call is not None:
                res["timing"] = measure(call, min_time=spec["min_time"],
                                        repeat=spec["repeat"]).to_dict()
            _emit(res)
    if gemm:   # again: the best of both is the machine's ceiling
        _emit(dict(gemm, gflops=gemm_rate(gemm["size"])))
        _emit_peaks(threads)
    if spec["memory"]:
        # After every timing: measuring memory fixes glibc's mmap threshold,
        # after which each large allocation is mapped and faulted in afresh,
        # which would slow the calls timed after it.
        for item in spec["items"]:
            with contextlib.suppress(Exception):
                call, _ = build_call(lib, *load(item), threads, op=op,
                                     plan=spec.get("plan", False))
                _emit({"event": "workspace", "id": item["id"],
                       "bytes": workspace_bytes(call)})
    return 0


def _serve_in_turn(spec, prepare):
    """Time the spec's items a batch at a time, as the parent asks on
    stdin, one JSON command a line: ``prepare`` item ``id`` (its call
    made, run and its output saved, then a batch sized to last ``batch``
    seconds), time a ``batch`` of it (after one call not timed, which
    finds the caches as the last library left them), ``drop`` it, or
    ``end``. Each command but ``drop`` and ``end`` is answered on stdout:
    ``ready`` (with the status), ``sample`` (seconds per call, or why the
    batch failed)."""
    items = {item["id"]: item for item in spec["items"]}
    prepared = {}
    _emit({"event": "listening"})
    for line in sys.stdin:
        command = json.loads(line)
        do, item_id = command["do"], command.get("id")
        if do == "end":
            return
        if do == "drop":
            prepared.pop(item_id, None)
        elif do == "prepare":
            res = {"event": "ready", "id": item_id}
            call = prepare(items[item_id], res)
            if call is not None:
                inner = max(1, math.ceil(command["batch"] / _estimate(call, 2)))
                prepared[item_id] = call, inner
            _emit(res)
        elif do == "batch":
            call, inner = prepared[item_id]
            sample = {"event": "sample", "id": item_id, "inner": inner}
            try:
                call()
                t0 = time.perf_counter()
                for _ in range(inner):
                    call()
                sample["seconds"] = (time.perf_counter() - t0) / inner
            except Exception as e:
                sample["reason"] = first_line(e)
            _emit(sample)


# -- the parent: run the workers, check the outputs, make the report ----------

# Imports this directory as the package `_numba_deconv_bench`, without running
# numba_deconv/__init__.py (which imports Numba), then runs the worker.
_BOOT = ("import importlib, sys, types; d, lib, spec = sys.argv[1:4]; "
         "pkg = types.ModuleType('_numba_deconv_bench'); pkg.__path__ = [d]; "
         "sys.modules[pkg.__name__] = pkg; sys.exit(importlib.import_module("
         "'_numba_deconv_bench.harness').worker_main(lib, spec))")


class _Worker:
    """A library's worker process (:func:`worker_main`) and its events; with
    ``commands``, it reads its commands on stdin (:func:`_serve_in_turn`)."""

    def __init__(self, lib, spec_path, threads, progress, commands=False):
        _progress(f"{PEER_LABELS[lib]}: starting its own process", progress)
        here = os.path.dirname(os.path.abspath(__file__))
        env = _thread_env(threads)
        if lib == OURS:   # the package this file belongs to is the one to time
            env["PYTHONPATH"] = os.pathsep.join(
                [os.path.dirname(os.path.dirname(here))]
                + [p for p in [os.environ.get("PYTHONPATH")] if p])
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, here, lib, spec_path],
            stdin=subprocess.PIPE if commands else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        self.alive, self.got_any, self.missing = True, False, False

    def ask(self, command, answers, timeout):
        """Send ``command`` (None: none), then yield the worker's events up
        to the first of a kind in ``answers`` (all of them for none); an exit
        before it, or no answer within ``timeout`` seconds, ends them with a
        'crash' event and the worker."""
        if not self.alive:
            return
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            self.proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            if command is not None:
                self.proc.stdin.write(json.dumps(command) + "\n")
                self.proc.stdin.flush()
            for line in self.proc.stdout:
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a library printing on stdout
                self.got_any = True
                self.missing = ev["event"] == "missing"
                yield ev
                if ev["event"] in answers:
                    return
        except OSError:   # its stdin closed: it has exited
            pass
        finally:
            watchdog.cancel()
        self.alive = False
        rc = self.proc.wait()
        if timed_out.is_set():
            yield {"event": "crash", "reason": f"timed out after {timeout} s"}
        elif rc != 0:
            self.err.seek(0)
            tail = [ln for ln in self.err.read().strip().splitlines() if ln.strip()]
            yield {"event": "crash", "reason": f"exit status {rc}"
                   + (f": {tail[-1][:200]}" if tail else "")}
        elif not self.got_any:
            yield {"event": "crash", "reason": "worker reported nothing"}
        elif answers and not self.missing:
            yield {"event": "crash", "reason": "worker ended without answering"}

    def tell(self, command):
        """Send ``command``, which has no answer."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps(command) + "\n")
                self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def _run_worker(lib, spec_path, threads, timeout, progress):
    """Yield the worker's events; a crash or timeout becomes a 'crash' event."""
    worker = _Worker(lib, spec_path, threads, progress)
    try:
        yield from worker.ask(None, (), timeout)
    finally:
        worker.close()


def _verify(row, out_base, libs):
    """Compare each peer's saved output with ours (or, without ours, with the
    first peer that ran); a disagreement turns the peer's status to mismatch."""
    ref_lib = next((lib for lib in libs if row.results.get(lib)
                    and row.results[lib].status == "ok"), None)
    if ref_lib is None:
        return
    ref = np.load(f"{out_base}.{ref_lib}.npy")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = TOLERANCE[row.dtype]
    for lib in libs:
        r = row.results.get(lib)
        if lib == ref_lib or r is None or r.status != "ok":
            continue
        y = np.load(f"{out_base}.{lib}.npy")
        if y.shape != ref.shape:
            r.status, r.reason = "mismatch", \
                f"shape {y.shape} but {ref_lib} gives {ref.shape}"
            continue
        err = float(np.max(np.abs(y.astype(np.float64) - ref))) if y.size else 0.0
        r.max_err = err / scale if scale else err
        if not r.max_err <= tol:
            r.status = "mismatch"
            r.reason = (f"max |{lib} - {ref_lib}| = {r.max_err:.2e} of the "
                        f"largest output (tolerance {tol:g})")


def _progress(msg, stream):
    if stream is not None:
        stream.write(msg + "\n")
        stream.flush()


def run(cases=None, dtypes=None, peers=PEERS, *, op="conv_transpose", min_time=1.0,
        repeat=None, threads=2, gemm=True, gemm_size=2048, memory=True, rounds=1,
        progress=sys.stderr, case_file=None, timeout=1800, plan=False,
        in_turn=False) -> Report:
    """Run the benchmark of ``op`` (one of :data:`OPS`) and return a :class:`Report`.

    ``cases`` are case names (default all), ``dtypes`` as in
    :func:`select_cases`, ``peers`` a subset of :data:`PEERS` (those without
    an adapter for ``op`` in :data:`ADAPTERS` are left out); ``plan`` times
    ours through :func:`numba_deconv.plan` (``op`` conv_transpose or conv). With
    ``rounds > 1`` every library is run that many times, the libraries
    interleaved, and each keeps its fastest median: on a shared machine a
    burst of load then hurts no library alone. With ``in_turn``, the
    libraries' processes stay open side by side and take turns case by
    case, a batch of calls each (:func:`_run_in_turn`): the samples of a
    case that a ratio compares then lie seconds apart, not minutes.
    """
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise ValueError(f"unknown peer {bad[0]!r}; choose from {', '.join(PEERS)}")
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
    skipped = [PEER_LABELS[p] for p in peers if p not in ADAPTERS[op]]
    if skipped:
        _progress(f"{op}: no adapter for {', '.join(skipped)} (not run)", progress)
    pairs = select_cases(load_cases(case_file), cases, dtypes)
    rows = [Row(c, dt) for c, dt in pairs]
    libs = [OURS, *(p for p in peers if p in ADAPTERS[op])]
    versions = {}
    gemm_gflops = None
    peaks = {}  # dtype -> the best FMA peak seen, GFLOP/s
    tmp = tempfile.mkdtemp(prefix="numba_deconv_bench_")
    try:
        items = []
        for i, (c, dt) in enumerate(pairs):
            item = {"id": i, "case": c.to_dict(), "out": os.path.join(tmp, f"y{i}")}
            try:
                inputs = make_inputs(c, dt, seed=i, op=op)
            except ValueError:   # the case cannot be run as op: every worker says n/a
                inputs = make_inputs(c, dt, seed=i)
            for key, a in zip("xw", inputs):
                item[key] = os.path.join(tmp, f"{key}{i}.npy")
                np.save(item[key], a)
            items.append(item)

        def absorb(ev, lib):
            nonlocal gemm_gflops
            gemm_gflops = _absorb(ev, lib, rows, versions, progress, gemm_gflops, peaks)

        for rnd in range(max(1, rounds)):
            if rounds > 1:
                _progress(f"round {rnd + 1}/{rounds}", progress)
            spec_paths = {}
            for lib in libs:
                if rnd and versions.get(lib, "") is None:
                    continue   # not installed: no point asking again
                # Our memory once, in the first round (later rounds keep it).
                spec = {"items": items, "op": op, "plan": plan, "threads": threads,
                        "min_time": min_time, "repeat": repeat, "in_turn": in_turn,
                        "gemm": gemm and lib == OURS, "gemm_size": gemm_size,
                        "memory": memory and lib == OURS and not rnd}
                spec_paths[lib] = os.path.join(tmp, f"spec_{lib}.json")
                with open(spec_paths[lib], "w", encoding="utf-8") as f:
                    json.dump(spec, f)
            if in_turn:
                _run_in_turn(spec_paths, items, threads, timeout, progress, absorb,
                             repeat or IN_TURN_SAMPLES, min_time)
                continue
            for lib, spec_path in spec_paths.items():
                for ev in _run_worker(lib, spec_path, threads, timeout, progress):
                    absorb(ev, lib)
        for row, item in zip(rows, items):
            _verify(row, item["out"], libs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Report(rows, libs, versions, gemm_gflops, threads, machine_description(), op,
                  peaks, plan, in_turn)


#: With the libraries in turn: samples of each per case (unless ``repeat``
#: says), and the pause before each batch, in which the library before it
#: lets go of the CPUs: thread pools spin a while after a call, ONNX
#: Runtime's for about 35 ms of CPU time (PyTorch's 6, ours and
#: TensorFlow's under 1), which would slow the next library's batch.
IN_TURN_SAMPLES = 15
IN_TURN_SETTLE_SECONDS = 0.05


def _run_in_turn(spec_paths, items, threads, timeout, progress, absorb, samples, min_time):
    """Time each item on every library of ``spec_paths`` (library -> its
    spec), their workers open side by side: ``samples`` rounds of a batch of
    each library in turn, a batch about ``min_time / samples`` seconds of
    calls (as :func:`measure_together` does in one process), so that a slow
    spell of the machine falls on all of them alike. The workers' events go
    to ``absorb(event, library)``; each library's samples become a 'result'
    event."""
    workers = {lib: _Worker(lib, path, threads, progress, commands=True)
               for lib, path in spec_paths.items()}

    def ask(lib, command, answer):
        """The worker's answer to ``command`` (None if it gave none), its
        other events absorbed."""
        reply = None
        for ev in workers[lib].ask(command, (answer,), timeout):
            if ev["event"] == answer:
                reply = ev
            else:
                absorb(ev, lib)
        return reply

    try:
        for lib in workers:   # each reports its version (or that it is missing)
            ask(lib, None, "listening")
        for item in items:
            ready = []
            for lib in workers:
                ev = ask(lib, {"do": "prepare", "id": item["id"], "batch": min_time / samples},
                         "ready")
                if ev is not None and ev["status"] == "ok":
                    ready.append(lib)
                elif ev is not None:
                    absorb(dict(ev, event="result"), lib)
            times = {lib: [] for lib in ready}   # a library leaves when it fails
            inner = {}
            for _ in range(samples):
                for lib in [lib for lib in ready if lib in times]:
                    time.sleep(IN_TURN_SETTLE_SECONDS)
                    ev = ask(lib, {"do": "batch", "id": item["id"]}, "sample")
                    if ev is not None and "seconds" in ev:
                        times[lib].append(ev["seconds"])
                        inner[lib] = ev["inner"]
                        continue
                    del times[lib]
                    if ev is not None:
                        absorb({"event": "result", "id": item["id"], "status": "error",
                                "reason": ev["reason"]}, lib)
            for lib in ready:
                if lib in times:
                    timing = Timing(statistics.median(times[lib]), min(times[lib]),
                                    len(times[lib]), inner[lib])
                    absorb({"event": "result", "id": item["id"], "status": "ok",
                            "timing": timing.to_dict()}, lib)
                workers[lib].tell({"do": "drop", "id": item["id"]})
        for lib in workers:   # the GEMM rate again, and our memory
            for ev in workers[lib].ask({"do": "end"}, (), timeout):
                absorb(ev, lib)
    finally:
        for worker in workers.values():
            worker.close()


def _absorb(ev, lib, rows, versions, progress, gemm_gflops, peaks=None):
    """Record one worker event in ``rows``, ``versions`` and ``peaks``;
    returns the GEMM rate so far. A later round's result replaces an
    earlier one only when it is faster."""
    kind = ev["event"]
    if kind == "missing":
        versions[lib] = None
        for row in rows:
            row.results[lib] = Result("not installed", reason=ev["reason"])
        _progress(f"  {lib}: not installed ({ev['reason']})", progress)
    elif kind == "version":
        versions[lib] = ev["version"]
        _progress(f"{PEER_LABELS[lib]} {ev['version']}", progress)
    elif kind == "gemm":
        gemm_gflops = max(gemm_gflops or 0.0, ev["gflops"])
        _progress(f"  float32 GEMM {ev['size']}^3: {ev['gflops']:.0f} GFLOP/s", progress)
    elif kind == "peak":
        if peaks is not None:
            peaks[ev["dtype"]] = max(peaks.get(ev["dtype"], 0.0), ev["gflops"])
        _progress(f"  {ev['dtype']} FMA peak: {ev['gflops']:.0f} GFLOP/s", progress)
    elif kind == "result":
        row = rows[ev["id"]]
        new = Result(ev["status"], Timing(**ev["timing"]) if ev.get("timing") else None,
                     ev.get("reason", ""))
        old = row.results.get(lib)
        if old is None or old.seconds is None or (
                new.seconds is not None and new.seconds < old.seconds):
            if old is not None:
                new.workspace = old.workspace
            row.results[lib] = new
        _progress(f"  [{ev['id'] + 1}/{len(rows)}] {row.label} {row.dtype}: "
                  + cell(new), progress)
    elif kind == "workspace":
        result = rows[ev["id"]].results.get(lib)
        if result is not None and result.workspace is None:
            result.workspace = ev["bytes"]
    elif kind == "crash":
        for row in rows:
            row.results.setdefault(lib, Result("error", reason=ev["reason"]))
        versions.setdefault(lib, "?")
        _progress(f"  {lib} failed: {ev['reason']}", progress)
    return gemm_gflops
