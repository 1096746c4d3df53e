"""numba_deconv.bench: the case table, flop count, timing, peer calls, table.

Small and quick: the end-to-end run uses tiny_seed, a 64x64 GEMM and a
short sampling time. Peers are exercised only where they are installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import math
import os
import re
import time

import numpy as np
import pytest

import numba_deconv
from numba_deconv import bench
from numba_deconv.bench import harness
from reference import (conv_reference, conv_transpose_weight_grad_ref, conv_weight_grad_ref,
                       reference)

CASES = {c.name: c for c in bench.load_cases()}
INSTALLED = [p for p in bench.PEERS if importlib.util.find_spec(p) is not None]


# -- case table and flops ----------------------------------------------------

def test_table_has_the_standard_cases():
    assert list(CASES) == ["dcgan_2d", "unet_2d", "single_2d", "signal_1d",
                           "vol_3d", "dilated_2d", "depthwise_2d", "tiny_seed",
                           "unet_2d_f64"]
    assert CASES["unet_2d_f64"].dtype == "float64"
    assert CASES["dcgan_2d"].dtype == "float32"


def test_case_shapes():
    c = CASES["tiny_seed"]
    assert c.x_shape == (1, 1, 2, 2)
    assert c.weight_shape == (1, 1, 3, 3)
    assert c.out_shape == (1, 1, 5, 5)
    d = CASES["depthwise_2d"]
    assert d.weight_shape == (64, 1, 4, 4)
    assert d.out_shape == (8, 64, 64, 64)
    v = CASES["vol_3d"]   # (16-1)*2 - 2 + 3 + 1 = 32
    assert v.out_shape == (2, 16, 32, 32, 32)
    assert CASES["dilated_2d"].out_spatial == (32, 32)


def test_flop_count():
    # 2 * N * C_in * C_out/groups * prod(kernel) * prod(in_spatial)
    assert CASES["dcgan_2d"].flops == 2 * 64 * 256 * 128 * 4 * 4 * 16 * 16
    assert CASES["depthwise_2d"].flops == 2 * 8 * 64 * 1 * 16 * 32 * 32
    assert CASES["signal_1d"].flops == 2 * 16 * 32 * 16 * 8 * 4096
    assert CASES["tiny_seed"].flops == 2 * 9 * 4
    assert bench.flop_count(1, 4, 6, 2, (3,), (10,)) == 2 * 4 * 3 * 3 * 10
    with pytest.raises(ValueError, match="divisible by groups=4"):
        bench.flop_count(1, 4, 6, 4, (3,), (10,))


def test_case_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys.*'kernal'"):
        bench.Case.from_dict({"name": "x", "N": 1, "C_in": 1, "C_out": 1,
                              "spatial": [4], "kernal": 3})


SPREAD_TABLE = os.path.join(os.path.dirname(__file__), "..", "benchmarks",
                            "spread_cases.json")


def test_spread_table_covers_what_it_claims():
    spread = bench.load_cases(SPREAD_TABLE)
    assert not {c.name for c in spread} & set(CASES)
    assert any(c.kernel < c.stride for c in spread)
    assert any(c.kernel % c.stride for c in spread)
    assert any(s % 2 for c in spread for s in c.spatial)
    assert any(c.rank == 1 and c.spatial[0] >= 100_000 for c in spread)
    assert any(c.rank == 3 for c in spread)
    assert any(c.C_in >= 512 and max(c.spatial) <= 8 for c in spread)
    assert any(c.C_in <= 4 and min(c.spatial) >= 32 for c in spread)
    assert any(c.groups > 1 for c in spread)
    assert any(c.dtype == "float64" for c in spread)


TINY = {"name": "t", "N": 1, "C_in": 2, "C_out": 2, "spatial": [3], "kernel": 2}


@pytest.mark.parametrize("text, why", [
    ("{", "not valid JSON"),
    ('{"rows": []}', 'must hold an object with a "cases" list'),
    (json.dumps({"cases": [{k: v for k, v in TINY.items() if k != "kernel"}]}),
     r"lacks the keys \['kernel'\]"),
    (json.dumps({"cases": [dict(TINY, dtype="float16")]}), "dtype must be one of"),
    (json.dumps({"cases": [dict(TINY, stride=0)]}), "stride must be an int >= 1, got 0"),
    (json.dumps({"cases": [dict(TINY, groups=2, C_out=3)]}), "groups=2 must divide"),
    (json.dumps({"cases": [dict(TINY, spatial=[])]}), "must be non-empty"),
    (json.dumps({"cases": [dict(TINY, padding=5)]}), "output size >= 1"),
    (json.dumps({"cases": [dict(TINY, spatial="3x3")]}), "spatial must be a list"),
    (json.dumps({"cases": [TINY, TINY]}), r"repeats case names: \['t'\]"),
])
def test_case_file_errors_name_the_problem(tmp_path, text, why):
    path = tmp_path / "cases.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why):
        bench.load_cases(str(path))


def test_cli_runs_a_case_file(tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"cases": [dict(TINY, name="my_shape", stride=2)]}))
    assert bench.main(["--case-file", str(path), "--peers", "none", "--quiet",
                       "--min-time", "0.01", "--no-gemm", "--no-memory"]) == 0
    assert "my_shape" in capsys.readouterr().out
    assert bench.main(["--case-file", str(tmp_path / "absent.json"),
                       "--peers", "none", "--quiet"]) == 2
    assert "absent.json" in capsys.readouterr().err


def test_cli_times_ours_through_a_plan(tmp_path, capsys):
    """--plan: ours through numba_deconv.plan, checked against the peers'
    outputs like any call; refused for ops that have no plan."""
    path = tmp_path / "report.json"
    peers = ",".join(p for p in ("torch",) if p in INSTALLED) or "none"
    for op in ("conv_transpose", "conv"):
        assert bench.main(["--case", "tiny_seed", "--op", op, "--plan", "--peers", peers,
                           "--quiet", "--min-time", "0.01", "--no-gemm", "--no-memory",
                           "--json", str(path)]) == 0
        assert "ours through numba_deconv.plan" in capsys.readouterr().out
        report = json.loads(path.read_text())
        assert report["plan"] is True
        results = report["rows"][0]["results"]
        assert results[bench.OURS]["status"] == "ok"
        if "torch" in results:
            assert results["torch"]["max_err"] <= 1e-4
    with pytest.raises(SystemExit) as refused:
        bench.main(["--op", "conv_weight_grad", "--plan", "--peers", "none"])
    assert refused.value.code == 2
    assert "--plan times --op conv_transpose or conv" in capsys.readouterr().err


def test_cli_times_the_layout_and_complex_variants(capsys):
    """--variants: ours on channels-last and complex data beside the plain
    call, in one process per case, with the ratios."""
    from numba_deconv.bench.variants import time_variants

    (row,) = time_variants(bench.select_cases(bench.load_cases(), ["tiny_seed"], ["float64"]),
                           min_time=0.01)
    assert row.case == "tiny_seed" and row.dtype == "float64"
    assert all(t > 0 for t in (row.channels_first, row.channels_last, row.complex))
    assert bench.main(["--variants", "--case", "tiny_seed", "--quiet", "--min-time",
                       "0.01"]) == 0
    out = capsys.readouterr().out
    assert "| tiny_seed | float32 |" in out and "channels_last" in out and "×" in out
    with pytest.raises(SystemExit):
        bench.main(["--variants", "--op", "conv"])
    assert "--variants times --op conv_transpose alone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--variants", "--plan"])
    assert "not with --plan" in capsys.readouterr().err


def test_gpu_table_scales_the_standard_cases():
    """benchmarks/gpu_cases.json: each case, NAME_xF (and _f64 in float64),
    is standard case NAME with F times the work, and the same kernel,
    stride, padding, dilation and kind of channel split."""
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_cases.json")
    for case in bench.load_cases(path):
        name, factor, f64 = re.fullmatch(r"(.+)_x(\d+)(_f64)?", case.name).groups()
        base = CASES[name]
        for key in ("rank", "kernel", "stride", "padding", "output_padding", "dilation"):
            assert getattr(case, key) == getattr(base, key), (case.name, key)
        assert (case.groups == case.C_in) == (base.groups == base.C_in)
        assert case.flops == int(factor) * base.flops, case.name
        assert case.dtype == ("float64" if f64 else base.dtype)


def test_cli_device_cuda_options_and_no_gpu(capsys):
    """--device cuda: only the ops with CUDA kernels, none of the CPU-only
    modes, and on a machine without a GPU a clear error before any case
    (the timing itself runs under the simulator: tests/cuda)."""
    for extra, why in ((["--op", "conv_weight_grad"], "--op conv_transpose or conv"),
                       (["--plan"], "does not take --plan"),
                       (["--variants"], "does not take --variants")):
        with pytest.raises(SystemExit):
            bench.main(["--device", "cuda", *extra])
        assert why in capsys.readouterr().err
    from numba_deconv.cuda import backend
    try:
        backend._require_cuda()
    except RuntimeError:
        assert bench.main(["--device", "cuda", "--case", "tiny_seed", "--quiet"]) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err
    else:
        pytest.skip("a GPU (or the simulator) is here: tests/cuda times it")


def test_select_cases():
    cases = list(CASES.values())
    default = bench.select_cases(cases)
    assert [(c.name, dt) for c, dt in default][-2:] == [
        ("tiny_seed", "float32"), ("unet_2d_f64", "float64")]
    both = bench.select_cases(cases, ["tiny_seed", "unet_2d_f64"],
                              ["float32", "float64"])
    # the pinned float64 case is not run in float32
    assert [(c.name, dt) for c, dt in both] == [
        ("tiny_seed", "float32"), ("tiny_seed", "float64"),
        ("unet_2d_f64", "float64")]
    with pytest.raises(ValueError, match="unknown bench case.*'nope'.*dcgan_2d"):
        bench.select_cases(cases, ["nope"])
    with pytest.raises(ValueError, match="dtype must be one of"):
        bench.select_cases(cases, ["tiny_seed"], ["float16"])


def test_make_inputs_deterministic():
    c = CASES["tiny_seed"]
    x1, w1 = bench.make_inputs(c, "float64", seed=3)
    x2, w2 = bench.make_inputs(c, "float64", seed=3)
    assert x1.dtype == w1.dtype == np.float64
    assert x1.shape == c.x_shape and w1.shape == c.weight_shape
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(w1, w2)
    x3, _ = bench.make_inputs(c, "float64", seed=4)
    assert not np.array_equal(x1, x3)
    assert -1 <= x1.min() and x1.max() < 1 and np.ptp(x1) > 0


# -- timing ------------------------------------------------------------------

def test_measure_counts_and_batches():
    calls = []
    t = bench.measure(lambda: calls.append(1), min_time=0.01, min_samples=5,
                      max_samples=20)
    assert 5 <= t.samples <= 20
    assert t.inner > 1                      # a no-op is far below 50 µs
    assert len(calls) == 1 + 2 + t.samples * t.inner
    assert 0 < t.best <= t.median


def test_measure_repeat_is_exact():
    calls = []
    t = bench.measure(lambda: calls.append(1), repeat=4, batch_below=0)
    assert (t.samples, t.inner) == (4, 1)
    assert len(calls) == 1 + 2 + 4


def test_measure_never_times_the_first_call():
    calls = []

    def fn():   # the first call "compiles": 30 times slower than the others
        calls.append(1)
        time.sleep(0.06 if len(calls) == 1 else 0.002)

    t = bench.measure(fn, repeat=5, batch_below=0)
    assert (t.samples, t.inner, len(calls)) == (5, 1, 1 + 2 + 5)
    assert 0.0019 < t.best <= t.median < 0.03


def test_measure_together_takes_the_samples_in_turn():
    """After each function's first call and warm-up, every round times one
    batch of each in the given order, a batch as many calls as fill its
    share of ``min_time``."""
    calls = []

    def timed(name, seconds):
        def fn():
            calls.append(name)
            time.sleep(seconds)
        return fn

    t = harness.measure_together({"a": timed("a", 0.001), "b": timed("b", 0.02)},
                                 min_time=0.06, rounds=3)
    a, b = t["a"].inner, t["b"].inner
    assert b == 1 and 3 <= a <= 20  # 20 ms a round: one call of b, up to 20 of a
    assert calls == ["a"] * 3 + ["b"] * 3 + (["a"] * a + ["b"] * b) * 3
    assert t["a"].samples == t["b"].samples == 3
    assert 0.0009 < t["a"].median < 0.01 < t["b"].median < 0.1


def test_gemm_rate_is_flops_over_the_median(monkeypatch):
    # A fake clock: every matmul takes 0.5 s, whatever the machine.
    ticks = iter(np.arange(0, 100, 0.5))
    monkeypatch.setattr(harness.time, "perf_counter", lambda: next(ticks))
    assert bench.gemm_rate(64, repeat=3) == pytest.approx(2 * 64**3 / 0.5 / 1e9)


def test_workspace_bytes():
    ws = bench.workspace_bytes(lambda: np.ones(1000))
    if ws is None:
        pytest.skip("needs Linux /proc")
    # a 64 MiB temporary must show; the returned array does not count
    ws = bench.workspace_bytes(lambda: np.ones(2**23).sum() + np.zeros(8))
    assert ws >= 32 * 2**20


# -- the libraries -------------------------------------------------------------

SMALL = [
    bench.Case("s2d", 2, 4, 6, (5, 6), 3, stride=2, padding=1, output_padding=1),
    bench.Case("dil", 1, 3, 2, (7,), 3, stride=1, padding=2, dilation=2),
    bench.Case("grp", 1, 4, 6, (4, 5), 2, stride=2, groups=2),
    bench.Case("v3d", 1, 2, 3, (3, 4, 3), 3, stride=2, padding=1),
    bench.Case("opad", 1, 2, 2, (4,), 2, stride=3, padding=0, output_padding=2),
]


@pytest.fixture
def restore_library_settings():
    """setup_library changes process-wide settings (torch threads, JAX x64,
    Numba threads); put them back so other test modules see the defaults."""
    import numba
    saved = {"numba": numba.get_num_threads()}
    if "torch" in INSTALLED:
        import torch
        saved["torch"] = torch.get_num_threads()
    if "jax" in INSTALLED:
        import jax
        saved["jax"] = jax.config.jax_enable_x64
    yield
    numba.set_num_threads(saved["numba"])
    if "torch" in saved:
        torch.set_num_threads(saved["torch"])
    if "jax" in saved:
        jax.config.update("jax_enable_x64", saved["jax"])


@pytest.mark.usefixtures("restore_library_settings")
@pytest.mark.parametrize("lib", [bench.OURS] + INSTALLED)
@pytest.mark.parametrize("case", SMALL, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_library_call_matches_reference(lib, case, dtype):
    """Each library's call, as the bench makes it, computes the operation
    (catches a mis-specified peer call before it produces a bogus time)."""
    bench.setup_library(lib, threads=1)
    x, w = bench.make_inputs(case, dtype, seed=1)
    try:
        call, to_numpy = bench.build_call(lib, case, x, w, threads=1)
    except bench.NotApplicable as e:
        assert lib in ("tensorflow", "onnxruntime", bench.OURS), e
        return
    y = to_numpy(call())
    ref = reference(x, w, **case.kwargs())
    assert y.shape == case.out_shape == ref.shape
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.usefixtures("restore_library_settings")
def test_tensorflow_not_applicable_reasons():
    if "tensorflow" not in INSTALLED:
        pytest.skip("tensorflow not installed")
    bench.setup_library("tensorflow", threads=1)
    # TF 2.21's oneDNN kernel takes dilation > 1 in float32, not float64.
    for name, dtype, why in (("dilated_2d", "float64", "dilation"),
                             ("depthwise_2d", "float32", "groups")):
        c = dataclasses.replace(CASES[name], N=1)
        x, w = bench.make_inputs(c, dtype)
        with pytest.raises(bench.NotApplicable, match=why):
            bench.build_call("tensorflow", c, x, w)


# -- end to end, verification and the table -----------------------------------

def test_run_tiny_case_end_to_end():
    peers = [p for p in ("torch", "onnxruntime") if p in INSTALLED]
    report = bench.run(["tiny_seed"], None, peers, min_time=0.01,
                       gemm_size=64, progress=None, timeout=600)
    (row,) = report.rows
    assert row.case.name == "tiny_seed"
    assert report.gemm_gflops > 0
    # The yardstick: the FMA peak of both dtypes, well above a tiny case's rate.
    assert set(report.peaks) == {"float32", "float64"}
    assert all(g > 0 for g in report.peaks.values())
    ours = row.results[bench.OURS]
    assert ours.status == "ok", ours.reason
    for p in peers:
        assert row.results[p].status == "ok", row.results[p].reason
        assert row.results[p].max_err <= 1e-4
    if peers:
        assert row.best_peer()[0] in peers and row.speedup() > 0
    text = bench.format_table(report)
    assert "tiny_seed" in text and "GFLOP/s" in text
    assert "% peak" in text and "FMA peak" in text and "float64" in text
    json.dumps(report.to_dict())


@pytest.mark.parametrize("in_turn", [False, True])
def test_run_reports_missing_peer(tmp_path, monkeypatch, in_turn):
    """A peer whose import fails is reported as not installed, not fatal
    (nor a failure, with the libraries in turn)."""
    fake = tmp_path / "jax"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no jax here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    messages = io.StringIO()
    report = bench.run(["tiny_seed"], None, ["jax"], min_time=0.01, gemm=False,
                       memory=False, progress=messages, in_turn=in_turn)
    assert "failed" not in messages.getvalue()
    assert report.versions["jax"] is None
    assert report.rows[0].results["jax"].status == "not installed"
    assert report.rows[0].results[bench.OURS].status == "ok"
    assert "Not installed: JAX" in bench.format_table(report)


def test_rounds_keep_the_fastest(monkeypatch):
    """Each round's worker reports its own median (slow, fast, failed, slow);
    the report keeps the fast one, and the memory of the first round."""
    medians = iter([0.05, 0.001, None, 0.03])
    spawned = []

    def fake_worker(lib, spec_path, threads, timeout, progress):
        with open(spec_path, encoding="utf-8") as f:
            spec = json.load(f)
        spawned.append((lib, spec["memory"]))
        (item,) = spec["items"]
        np.save(item["out"] + f".{lib}.npy", np.zeros(CASES["tiny_seed"].out_shape))
        yield {"event": "version", "version": "0"}
        median = next(medians)
        if median is None:
            yield {"event": "result", "id": 0, "status": "error", "reason": "boom"}
            return
        timing = bench.Timing(median, median, 5, 1).to_dict()
        yield {"event": "result", "id": 0, "status": "ok", "timing": timing}
        if len(spawned) == 1:
            yield {"event": "workspace", "id": 0, "bytes": 123}

    monkeypatch.setattr(harness, "_run_worker", fake_worker)
    report = bench.run(["tiny_seed"], None, [], gemm=False, rounds=4, progress=None)
    ours = report.rows[0].results[bench.OURS]
    assert spawned == [(bench.OURS, True)] + [(bench.OURS, False)] * 3
    assert ours.status == "ok" and ours.seconds == 0.001
    assert ours.workspace == 123


def test_run_in_turn_end_to_end():
    """With ``in_turn`` every worker stays open and the report holds, for
    each library, the median of its batches: IN_TURN_SAMPLES of them (or
    ``repeat``), checked against ours as usual."""
    peers = [p for p in ("torch", "onnxruntime") if p in INSTALLED]
    report = bench.run(["tiny_seed", "single_2d"], None, peers, min_time=0.01, repeat=4,
                       gemm_size=64, progress=None, timeout=600, in_turn=True)
    for row in report.rows:
        for lib in [bench.OURS, *peers]:
            result = row.results[lib]
            assert result.status == "ok", result.reason
            assert result.timing.samples == 4 and result.seconds > 0
            assert lib == bench.OURS or result.max_err <= 1e-4
    assert report.rows[0].results[bench.OURS].workspace is not None
    assert set(report.peaks) == {"float32", "float64"}
    assert "timed in turn" in bench.format_table(report) and report.to_dict()["in_turn"]


class _FakeTurnWorker:
    """Stands in for harness._Worker: answers the parent's commands as
    :func:`harness._serve_in_turn` would, from a script per library."""

    log = []
    seconds = {}   # library -> its batches' times, in order (None: a failure)

    def __init__(self, lib, spec_path, threads, progress, commands=False):
        assert commands
        self.lib, self.alive = lib, True
        self.batches = iter(self.seconds[lib])

    def ask(self, command, answers, timeout):
        self.log.append((self.lib, command and command["do"]))
        if command is None:
            yield {"event": "version", "version": "0"}
            yield {"event": "listening"}
        elif command["do"] == "prepare":
            status = "n/a" if self.seconds[self.lib] == "n/a" else "ok"
            yield {"event": "ready", "id": command["id"], "status": status,
                   "reason": "cannot" if status == "n/a" else ""}
        elif command["do"] == "batch":
            seconds = next(self.batches)
            yield {"event": "sample", "id": command["id"], "inner": 2,
                   **({"seconds": seconds} if seconds else {"reason": "boom"})}

    def tell(self, command):
        self.log.append((self.lib, command["do"]))

    def close(self):
        pass


def test_in_turn_takes_a_batch_of_each_library_per_round(monkeypatch):
    """Round by round, one batch of each library in order; each keeps the
    median of its own; a library that fails a batch reports the error and
    takes no more turns on that case; one that cannot run the case is n/a."""
    _FakeTurnWorker.log = []
    _FakeTurnWorker.seconds = {bench.OURS: [0.3, 0.1, 0.2], "torch": [0.5, None],
                               "jax": "n/a"}
    monkeypatch.setattr(harness, "_Worker", _FakeTurnWorker)
    monkeypatch.setattr(harness, "IN_TURN_SETTLE_SECONDS", 0.0)
    events = []
    harness._run_in_turn({lib: "spec" for lib in _FakeTurnWorker.seconds}, [{"id": 0}], 2,
                         60, None, lambda ev, lib: events.append((lib, ev)), 3, 0.3)
    turns = [entry for entry in _FakeTurnWorker.log if entry[1] == "batch"]
    assert turns == [(bench.OURS, "batch"), ("torch", "batch")] * 2 + [(bench.OURS, "batch")]
    results = {lib: ev for lib, ev in events if ev["event"] == "result"}
    assert results[bench.OURS]["status"] == "ok"
    assert results[bench.OURS]["timing"] == bench.Timing(0.2, 0.1, 3, 2).to_dict()
    assert results["torch"] == {"event": "result", "id": 0, "status": "error",
                                "reason": "boom"}
    assert results["jax"]["status"] == "n/a" and results["jax"]["reason"] == "cannot"
    assert [lib for lib, do in _FakeTurnWorker.log if do == "drop"] == [bench.OURS, "torch"]
    assert [lib for lib, do in _FakeTurnWorker.log if do == "end"] == list(
        _FakeTurnWorker.seconds)


def _fake_report(tmp_path, peer_out):
    case = CASES["tiny_seed"]
    row = bench.Row(case, "float32")
    t = bench.Timing(1e-5, 9e-6, 10, 5)
    row.results[bench.OURS] = bench.Result("ok", t, workspace=2**20)
    row.results["torch"] = bench.Result("ok", bench.Timing(2e-5, 2e-5, 10, 5))
    row.results["jax"] = bench.Result("n/a", reason="no reason")
    y = np.arange(25, dtype=np.float32).reshape(case.out_shape)
    base = str(tmp_path / "y0")
    np.save(base + ".numba_deconv.npy", y)
    np.save(base + ".torch.npy", peer_out(y))
    harness._verify(row, base, [bench.OURS, "torch", "jax"])
    return bench.Report([row], [bench.OURS, "torch", "jax"],
                        {bench.OURS: "0", "torch": "2", "jax": "3"}, 100.0, 2, "m")


def test_verify_and_table(tmp_path):
    report = _fake_report(tmp_path, lambda y: y + 1e-6)
    row = report.rows[0]
    assert row.results["torch"].status == "ok"
    assert row.best_peer() == ("torch", 2e-5)
    assert row.speedup() == pytest.approx(2.0)
    text = bench.format_table(report)
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith("| case"))
    for col in ("ours", "GFLOP/s", "% GEMM", "PyTorch", "JAX", "best peer",
                "speedup"):
        assert col in header
    data = next(ln for ln in lines if ln.startswith("| tiny_seed"))
    assert "10.00 µs" in data and "20.00 µs" in data and "2.00×" in data
    assert "PyTorch" in data and "n/a" in data and "1.0" in data
    assert "100 GFLOP/s" in text
    assert len({len(ln) for ln in lines if ln.startswith("|")}) == 1  # aligned


def test_verify_catches_a_wrong_peer(tmp_path):
    report = _fake_report(tmp_path, lambda y: y[..., ::-1].copy())
    row = report.rows[0]
    assert row.results["torch"].status == "mismatch"
    assert row.best_peer() == (None, None) and row.speedup() is None
    assert "mismatch" in bench.format_table(report)


def test_format_time():
    assert bench.format_time(7.2e-6) == "7.200 µs"
    assert bench.format_time(0.1318) == "131.8 ms"
    assert bench.format_time(0.00627) == "6.270 ms"
    assert bench.format_time(12.345) == "12.35 s"
    assert bench.format_time(None) == "–"


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    report = _fake_report(tmp_path, lambda y: y)
    out = tmp_path / "b.png"
    bench.plot(report, out)
    assert out.stat().st_size > 1000


# -- command line --------------------------------------------------------------

def test_add_parser():
    p = argparse.ArgumentParser(prog="numba_deconv")
    sub = p.add_subparsers(dest="command", required=True)
    bench.add_parser(sub)
    a = p.parse_args(["bench", "--case", "tiny_seed", "--case", "unet_2d",
                      "vol_3d", "--dtype", "float64", "--peers", "pytorch,tf",
                      "--min-time", "0.5", "--plot", "x.png"])
    assert a.func is bench.run_from_args
    assert a.case == ["tiny_seed", "unet_2d", "vol_3d"]
    assert a.dtype == ["float64"]
    assert a.peers == ["torch", "tensorflow"]
    assert a.min_time == 0.5 and a.plot == "x.png" and a.threads == 2
    assert a.op == "conv_transpose"
    assert p.parse_args(["bench", "--peers", "none"]).peers == []
    assert p.parse_args(["bench"]).peers == list(bench.PEERS)
    for op in bench.OPS:
        assert p.parse_args(["bench", "--op", op]).op == op
    with pytest.raises(SystemExit):
        p.parse_args(["bench", "--peers", "caffe"])
    with pytest.raises(SystemExit):
        p.parse_args(["bench", "--op", "deconv"])


def test_cli_unknown_case_is_a_clear_error(capsys):
    assert bench.main(["--case", "nope", "--peers", "none"]) == 2
    assert "unknown bench case" in capsys.readouterr().err


# -- the ops: conv and the weight gradients --------------------------------------

OTHER_OPS = [op for op in bench.OPS if op != "conv_transpose"]


def test_ops_and_their_adapters():
    assert list(bench.OPS) == ["conv_transpose", "conv", "conv_weight_grad",
                               "conv_transpose_weight_grad"]
    assert set(bench.ADAPTERS) == set(bench.OPS)
    for op in ("conv_transpose", "conv"):
        assert set(bench.ADAPTERS[op]) == {bench.OURS, *bench.PEERS}
    for op in ("conv_weight_grad", "conv_transpose_weight_grad"):
        assert set(bench.ADAPTERS[op]) == {bench.OURS, "torch"}
    c = CASES["tiny_seed"]
    x, w = bench.make_inputs(c, "float32", op="conv_weight_grad")
    with pytest.raises(bench.NotApplicable, match="no conv_weight_grad adapter for jax"):
        bench.build_call("jax", c, x, w, op="conv_weight_grad")
    with pytest.raises(ValueError, match="unknown op 'deconv'"):
        bench.build_call(bench.OURS, c, x, w, op="deconv")
    with pytest.raises(ValueError, match="unknown op 'deconv'"):
        bench.run(["tiny_seed"], None, [], op="deconv", progress=None)


@pytest.mark.parametrize("case", CASES.values(), ids=lambda c: c.name)
def test_op_shapes_round_trip(case):
    """conv runs each case in the direction whose adjoint the case is: the
    conv maps the case's output size back to its input size, with the same
    weight read as conv's (C_out, C_in/groups, *k)."""
    x, w, y = case.x_shape, case.weight_shape, case.out_shape
    assert case.conv_spatial == case.spatial
    assert case.shapes() == (x, w, y)
    assert case.shapes("conv") == (y, w, x)
    assert case.shapes("conv_weight_grad") == (y, x, w)
    assert case.shapes("conv_transpose_weight_grad") == (x, y, w)
    conv_kw = case.kwargs("conv")
    assert conv_kw == {k: v for k, v in case.kwargs().items() if k != "output_padding"}
    assert case.kwargs("conv_weight_grad") == dict(conv_kw, kernel_size=(case.kernel,) * case.rank)
    assert case.kwargs("conv_transpose_weight_grad") == dict(
        case.kwargs(), kernel_size=(case.kernel,) * case.rank)
    # The library agrees (an empty batch: shapes only).
    dt = case.dtype
    empty_y, empty_x = np.zeros((0,) + y[1:], dt), np.zeros((0,) + x[1:], dt)
    assert numba_deconv.conv(empty_y, np.zeros(w, dt), **conv_kw).shape == (0,) + x[1:]
    assert numba_deconv.conv_weight_grad(
        empty_y, empty_x, **case.kwargs("conv_weight_grad")).shape == w
    small = dataclasses.replace(case, N=1)
    for op in bench.OPS:
        inputs = bench.make_inputs(small, dt, op=op)
        assert tuple(a.shape for a in inputs) == small.shapes(op)[:2]


def test_a_case_conv_cannot_map_back_is_not_applicable():
    # output_padding 1 >= stride 1 (allowed by dilation 2): 5 -> 10 -> 6
    c = bench.Case("no_rt", 1, 2, 2, (5,), 3, dilation=2, output_padding=1)
    assert c.out_spatial == (10,) and c.conv_spatial == (6,)
    assert c.shapes("conv_transpose_weight_grad") == (c.x_shape, c.out_shape, c.weight_shape)
    for op in ("conv", "conv_weight_grad"):
        with pytest.raises(ValueError, match=r"maps the output size \[10\] to \[6\]"):
            c.shapes(op)
        with pytest.raises(bench.NotApplicable, match="output_padding >= stride"):
            bench.build_call(bench.OURS, c, *bench.make_inputs(c), op=op)


def _op_reference(op, case, a, b):
    r = case.rank
    per_dim = dict(stride=(case.stride,) * r, dilation=(case.dilation,) * r,
                   pad_before=(case.padding,) * r, pad_after=(case.padding,) * r,
                   groups=case.groups)
    if op == "conv":
        return conv_reference(a, b, **case.kwargs(op))
    if op == "conv_weight_grad":
        return conv_weight_grad_ref(a, b, (case.kernel,) * r, **per_dim)
    return conv_transpose_weight_grad_ref(a, b, (case.kernel,) * r, **per_dim,
                                          output_padding=(case.output_padding,) * r)


@pytest.mark.usefixtures("restore_library_settings")
@pytest.mark.parametrize("op, lib", [(op, lib) for op in OTHER_OPS for lib in bench.ADAPTERS[op]
                                     if lib == bench.OURS or lib in INSTALLED])
@pytest.mark.parametrize("case", SMALL, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_op_call_matches_reference(op, lib, case, dtype):
    """Each library's conv and weight-gradient call, as the bench makes it,
    computes the operation on the op's inputs."""
    bench.setup_library(lib, threads=1)
    a, b = bench.make_inputs(case, dtype, seed=1, op=op)
    try:
        call, to_numpy = bench.build_call(lib, case, a, b, threads=1, op=op)
    except bench.NotApplicable as e:
        assert lib == "onnxruntime" and dtype == "float64", e
        return
    y = to_numpy(call())
    ref = _op_reference(op, case, a, b)
    assert y.shape == case.shapes(op)[2] == ref.shape
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_cli_runs_conv_against_torch(tmp_path, capsys):
    if "torch" not in INSTALLED:
        pytest.skip("torch not installed")
    out = tmp_path / "conv.json"
    assert bench.main(["--op", "conv", "--case", "tiny_seed", "--peers", "torch", "--quiet",
                       "--min-time", "0.01", "--no-gemm", "--no-memory",
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Operation: conv (") and "| tiny_seed" in text
    assert "mismatch" not in text and "error" not in text
    report = json.loads(out.read_text())
    assert report["op"] == "conv"
    (row,) = report["rows"]
    assert row["flops"] == CASES["tiny_seed"].flops
    torch_result = row["results"]["torch"]
    assert torch_result["status"] == "ok", torch_result["reason"]
    assert torch_result["max_err"] <= 1e-6     # the outputs were compared
    assert row["best_peer"] == "torch" and row["speedup"] > 0


def test_run_weight_grad_leaves_out_peers_without_an_adapter():
    peers = [p for p in ("torch", "jax") if p in INSTALLED]
    report = bench.run(["tiny_seed"], None, peers, op="conv_transpose_weight_grad",
                       min_time=0.01, gemm=False, memory=False, progress=None)
    assert report.op == "conv_transpose_weight_grad"
    assert report.libs == [bench.OURS] + [p for p in peers if p == "torch"]
    (row,) = report.rows
    for lib in report.libs:
        assert row.results[lib].status == "ok", row.results[lib].reason
    if "torch" in peers:
        assert row.results["torch"].max_err <= 1e-6
    assert "Operation: conv_transpose_weight_grad" in bench.format_table(report)


def test_verify_catches_a_wrong_weight_gradient(tmp_path):
    case = CASES["unet_2d"]
    row = bench.Row(case, "float32")
    for lib in (bench.OURS, "torch"):
        row.results[lib] = bench.Result("ok", bench.Timing(1e-3, 1e-3, 5, 1))
    g = np.random.default_rng(0).uniform(-1, 1, case.weight_shape).astype(np.float32)
    base = str(tmp_path / "y0")
    np.save(base + ".numba_deconv.npy", g)
    np.save(base + ".torch.npy", np.swapaxes(g, -1, -2))   # kernel taps transposed
    harness._verify(row, base, [bench.OURS, "torch"])
    assert row.results["torch"].status == "mismatch"


def test_asv_inputs_are_the_bench_inputs(monkeypatch):
    """benchmarks/_common.py (which must not import the bench helpers) makes
    the same inputs and keyword arguments as the bench for every op."""
    monkeypatch.setattr(os, "environ", dict(os.environ))   # it sets thread variables
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), ".."))
    common = pytest.importorskip("benchmarks._common")
    table = {d["name"]: d for d in json.load(open(os.path.join(
        os.path.dirname(bench.cases.__file__), "cases.json")))["cases"]}
    for name in ("tiny_seed", "vol_3d", "depthwise_2d"):
        case, entry = CASES[name], dict(table[name], N=1)
        small = dataclasses.replace(case, N=1)
        for op in bench.OPS:
            assert common.conv_kwargs(entry, op) == small.kwargs(op)
            for mine, theirs in zip(common.make_inputs(entry, "float32", 3, op),
                                    bench.make_inputs(small, "float32", 3, op)):
                np.testing.assert_array_equal(mine, theirs)


def test_profile_kernels_names_the_kernels_for_perf(tmp_path):
    """benchmarks/profile_kernels.py writes a perf map that names the
    kernels a call runs, the out-of-line callees of those loaded from the
    cache included, by their qualified Python names."""
    import shutil
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    script = os.path.join(root, "benchmarks", "profile_kernels.py")
    if sys.platform != "linux" or shutil.which("nm") is None:
        pytest.skip("perf maps and nm are Linux tools")
    for run in range(2):  # the second process loads what the first compiled
        done = subprocess.run([sys.executable, script, "tiny_seed", "--seconds", "0.05"],
                              capture_output=True, text=True, check=True)
    path = done.stdout.split(": ")[1].split()[0]
    names = {line.split(" ", 2)[2].strip() for line in open(path)}
    os.unlink(path)
    assert "numba_deconv.cpu.kernels.rows_tiny" in names
    assert "numba_deconv.cpu.kernels._direct_row_range" in names  # its callee
    assert re.search(r"calls, [0-9.]+ us each", done.stdout)
    # --op conv times the adjoint direction: conv's plane kernel, and
    # none of conv_transpose's.
    done = subprocess.run([sys.executable, script, "tiny_seed", "--op", "conv", "--seconds",
                           "0.05"], capture_output=True, text=True, check=True)
    path = done.stdout.split(": ")[1].split()[0]
    names = {line.split(" ", 2)[2].strip() for line in open(path)}
    os.unlink(path)
    assert "numba_deconv.cpu.correlate.conv_planes" in names
    assert "numba_deconv.cpu.kernels.rows_tiny" not in names


def test_cold_start_rows_and_table(tmp_path):
    """``bench --cold``: a cold and a warm process of ours (no PyTorch
    here), and the table that reports them."""
    from numba_deconv.bench import cold

    case = next(c for c in bench.load_cases() if c.name == "tiny_seed")
    rows = cold.cold_start([(case, "float32")], torch=False)
    assert len(rows) == 1 and rows[0].case == "tiny_seed" and rows[0].torch is None
    assert rows[0].ours_cold > 0 and rows[0].ours_warm > 0
    table = cold.format_cold_table(rows)
    assert "| tiny_seed | float32 |" in table and "| – | – |" in table


def test_cold_start_of_the_layout_and_complex_variants():
    """``cold_variants``: ours cold and warm channels first, channels last
    and complex, each in a new process, and the table."""
    from numba_deconv.bench import cold

    case = next(c for c in bench.load_cases() if c.name == "tiny_seed")
    (row,) = cold.cold_variants([(case, "float64")], op="conv")
    assert row.case == "tiny_seed" and row.dtype == "float64"
    assert all(seconds > 0 for pair in (row.first, row.last, row.complex) for seconds in pair)
    table = cold.format_cold_variants_table([row], "conv")
    assert "Cold start of conv by layout and dtype" in table
    assert table.splitlines()[-1].startswith("| tiny_seed | float64 | ")
    assert table.splitlines()[-1].count(" s |") == 6


def test_cli_cold_variants_asks_for_each_layout_and_dtype(monkeypatch, capsys):
    """``bench --cold --variants``: a cold and a warm process for each
    variant, sharing one cache per variant, and their times in the table
    (the processes themselves: the test above; stubbed here, each takes
    seconds)."""
    from numba_deconv.bench import cold

    calls = []

    def fake_first_call(lib, case, dtype, op, threads, cache_dir, channels_last):
        calls.append((lib, case.name, dtype, op, threads, cache_dir, channels_last))
        return len(calls) / 100

    monkeypatch.setattr(cold, "first_call_seconds", fake_first_call)
    assert bench.main(["--cold", "--variants", "--case", "tiny_seed", "--threads", "1",
                       "--quiet"]) == 0
    assert [c[1:5] + c[6:] for c in calls] == [
        ("tiny_seed", dtype, "conv_transpose", 1, last)
        for dtype, last in (("float32", False),) * 2 + (("float32", True),) * 2
        + (("complex64", False),) * 2]
    assert [c[0] for c in calls] == ["ours"] * 6
    caches = [c[5] for c in calls]
    assert caches[0] == caches[1] != caches[2] == caches[3] != caches[4] == caches[5]
    assert ("| tiny_seed | float32 | 0.01 s | 0.02 s | 0.03 s | 0.04 s | 0.05 s | 0.06 s |"
            in capsys.readouterr().out)


def test_random_spread_covers_the_space_and_repeats_by_seed():
    from numba_deconv.bench.spread import MAX_ELEMENTS, MAX_FLOPS, MIN_FLOPS, random_spread

    spread = random_spread(64, seed=3)
    assert spread == random_spread(64, seed=3) and spread != random_spread(64, seed=4)
    cases = [bench.Case.from_dict(d) for d in spread]
    assert len(cases) == 64 and len({c.name for c in cases}) == 64
    assert {c.rank for c in cases} == {1, 2, 3}
    assert {c.dtype for c in cases} == {"float32", "float64"}
    assert any(c.kernel < c.stride for c in cases) and any(c.kernel == 1 for c in cases)
    assert any(c.dilation > 1 for c in cases) and any(c.output_padding for c in cases)
    assert any(c.groups == c.C_in > 1 for c in cases)                # depthwise
    assert any(1 < c.groups < c.C_in for c in cases)                 # grouped
    assert any(s % 2 for c in cases for s in c.spatial)              # odd sizes
    assert any(len(set(c.spatial)) > 1 for c in cases)               # non-square
    assert all(MIN_FLOPS <= c.flops <= MAX_FLOPS for c in cases)
    assert all(c.N * max(c.C_in * math.prod(c.spatial), c.C_out * math.prod(c.out_spatial))
               <= MAX_ELEMENTS for c in cases)
    with pytest.raises(ValueError, match="count=0"):
        random_spread(0)


def test_cli_spread_saves_a_case_file(tmp_path, capsys):
    from numba_deconv.bench.spread import random_spread

    path = tmp_path / "spread.json"
    assert numba_deconv.bench.main(["--spread", "2", "--seed", "5", "--save-cases", str(path),
                                    "--peers", "none", "--min-time", "0.01", "--no-gemm",
                                    "--no-memory", "--quiet"]) == 0
    saved = bench.load_cases(str(path))
    assert [c.name for c in saved] == [d["name"] for d in random_spread(2, 5)]
    assert saved[0].name in capsys.readouterr().out
