"""The command line: python -m numba_deconv {demo, explain, bench, info, precompile}.

Running bench and precompile has its own tests (test_bench.py,
test_dispatch.py); here: --version, the answer to every bad argument (a
usage line and one error line, exit status 2, nothing run), info's report
of the disk cache and the bench plot.
"""

import os
import re
import subprocess
import sys
import sysconfig

import pytest

from numba_deconv.__main__ import build_parser, main


def test_demo_walks_through_the_tensorflow_example(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # The published first and last rows of the 5x5 result, and the why.
    assert "67   -134    278   -154    231" in out
    assert "819   -936   1942  -1016   1143" in out
    assert "-67 x -1 = 67" in out


def test_explain_prints_the_arithmetic(capsys):
    assert main(["explain", "--input", "1x1x2x2", "--kernel", "1x1x3x3",
                 "--stride", "2"]) == 0
    out = capsys.readouterr().out
    assert "-> y 1x1x5x5" in out and "Reachable output sizes" in out


def test_info_reports_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for field in ("numba_deconv", "numpy", "numba", "threads", "cuda", "compiled"):
        assert field in out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "numba_deconv", "info"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("numba_deconv ")


# -- --version ---------------------------------------------------------------------

def test_version_option(capsys):
    from numba_deconv import __version__
    from numba_deconv.bench import main as bench_main

    for run in (lambda: main(["--version"]), lambda: bench_main(["--version"])):
        with pytest.raises(SystemExit) as exit_info:
            run()
        assert exit_info.value.code == 0
        assert capsys.readouterr().out == f"numba_deconv {__version__}\n"


def _console_script():
    path = os.path.join(sysconfig.get_path("scripts"), "numba-deconv")
    if not os.path.exists(path):
        pytest.skip("the numba-deconv script is not installed in this environment")
    return path


def test_console_script_version_and_its_name_in_errors():
    from numba_deconv import __version__

    script = _console_script()
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"numba_deconv {__version__}\n"
    done = subprocess.run([script, "bench", "--threads", "0"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == \
        "numba-deconv bench: error: argument --threads: must be at least 1, got 0"
    assert "Traceback" not in done.stderr


# -- bad arguments: usage, one error line, exit status 2, no traceback --------------

def _usage_error(capsys, argv, run=None):
    """The error line of ``main(argv)``, which must be a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        (run or main)(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    assert lines[0].startswith("usage:") and len(lines) == 2, captured.err
    return lines[1]


@pytest.fixture
def no_bench_run(monkeypatch):
    """Fail the test if the bench got as far as timing anything."""
    import numba_deconv.bench.cli as bench_cli

    def never(*args, **kwargs):
        raise AssertionError("the bench started although an argument was bad")

    monkeypatch.setattr(bench_cli, "run", never)
    monkeypatch.setattr(bench_cli, "_run_cold", never)
    monkeypatch.setattr(bench_cli, "_write_spread", never)


@pytest.mark.parametrize("argv, why", [
    (["--repeat", "0"], "argument --repeat: must be at least 1, got 0"),
    (["--min-time", "-1"], "argument --min-time: must be a number of seconds >= 0, got -1"),
    (["--min-time", "nan"], "argument --min-time: must be a number of seconds >= 0"),
    (["--min-time", "soon"], "argument --min-time: 'soon' is not a number of seconds"),
    (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["--threads", "two"], "argument --threads: 'two' is not an integer"),
    (["--rounds", "0"], "argument --rounds: must be at least 1, got 0"),
    (["--gemm-size", "-5"], "argument --gemm-size: must be at least 1, got -5"),
    (["--spread", "0"], "argument --spread: must be at least 1, got 0"),
    (["--json", "/missing/dir/x.json"],
     "argument --json: cannot write '/missing/dir/x.json': directory '/missing/dir' "
     "does not exist"),
    (["--plot", "/missing/dir/b.png"], "argument --plot: cannot write '/missing/dir/b.png'"),
    (["--plot", "bench"], "argument --plot: 'bench' has no extension"),
    (["--save-cases", "/missing/dir/s.json", "--spread", "3"],
     "argument --save-cases: cannot write '/missing/dir/s.json'"),
    (["--save-cases", "s.json"], "--save-cases writes the shapes of --spread N"),
    (["--spread", "3", "--case-file", "x.json"], "--spread and --case-file exclude each other"),
    (["--cold", "--op", "conv_weight_grad"], "--cold times --op conv_transpose or conv"),
    (["--cold", "--json", "c.json"], "--cold prints its own table; --json does not apply"),
    (["--in-turn", "--variants"], "--in-turn times the peers' processes side by side; not "
                                  "with --cold, --variants or --device cuda"),
    (["--peers", "caffe"], "argument --peers: unknown peer(s) ['caffe']"),
])
def test_bench_rejects_bad_arguments_before_running(capsys, no_bench_run, argv, why):
    from numba_deconv.bench import main as bench_main

    line = _usage_error(capsys, ["bench", *argv])
    assert line.startswith("python -m numba_deconv bench: error: ")
    assert why in line
    line = _usage_error(capsys, argv, run=bench_main)   # python -m numba_deconv.bench
    assert line.startswith("python -m numba_deconv.bench: error: ") and why in line


def test_bench_plot_format_is_checked_before_running(capsys, no_bench_run, tmp_path):
    pytest.importorskip("matplotlib")
    line = _usage_error(capsys, ["bench", "--plot", str(tmp_path / "b.txt")])
    assert "matplotlib cannot write .txt files; use one of" in line and ".png" in line
    line = _usage_error(capsys, ["bench", "--plot", str(tmp_path)])
    assert "is a directory" in line


def test_bench_plot_without_matplotlib_is_one_line(capsys, no_bench_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)               # import fails
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    line = _usage_error(capsys, ["bench", "--plot", "b.png"])
    assert "--plot needs matplotlib" in line


def test_bench_help_shows_each_default_once():
    help_text = build_parser().commands["bench"].format_help()
    entries = re.split(r"\n  (?=-)", help_text.split("options:", 1)[1])
    assert len(entries) > 15
    for entry in entries:
        assert entry.count("default") <= 1, entry
    for shown in ("--threads N           threads per library (default: 2)",
                  "(default: 2048)", "(default: conv_transpose)",
                  "the fewest samples (default: 1)"):
        assert " ".join(help_text.split()).count(" ".join(shown.split())) == 1, shown


def test_precompile_help_describes_every_option():
    pre = build_parser().commands["precompile"]
    assert pre.description and "on-disk cache" in pre.description
    for action in pre._actions:
        assert action.help, action.option_strings
    text = pre.format_help()
    for option in ("--ranks", "--dtypes", "--strategies", "--layouts", "--device"):
        assert option in text


@pytest.mark.parametrize("argv, why", [
    (["--ranks", "0"], "argument --ranks: 0 is not a spatial rank (an int >= 1)"),
    (["--ranks", "-1"], "argument --ranks: -1 is not a spatial rank"),
    (["--ranks", "two"], "argument --ranks: 'two' is not a spatial rank"),
    (["--dtypes", "float16"], "argument --dtypes: invalid choice: 'float16'"),
    (["--strategies", "fft"], "argument --strategies: invalid choice: 'fft'"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--layouts", "NHWC"], "argument --layouts: invalid choice: 'NHWC'"),
    (["--device", "cuda", "--ranks", "4"], "--device cuda: no CUDA kernel for rank(s) [4]"),
    (["--device", "cuda", "--strategies", "columns"],
     "--device cuda has the strategy gather only, not columns"),
])
def test_precompile_rejects_bad_arguments(capsys, monkeypatch, argv, why):
    import numba_deconv

    def never(**kwargs):
        raise AssertionError("precompile ran although an argument was bad")

    monkeypatch.setattr(numba_deconv, "precompile", never)
    line = _usage_error(capsys, ["precompile", *argv])
    assert line.startswith("python -m numba_deconv precompile: error: ") and why in line


def test_precompile_value_errors_are_usage_errors(capsys, monkeypatch):
    import numba_deconv

    def refuse(**kwargs):
        raise ValueError("layouts: 'diagonal' is not one of channels_first, channels_last")

    monkeypatch.setattr(numba_deconv, "precompile", refuse)
    line = _usage_error(capsys, ["precompile", "--ranks", "1"])
    assert line.endswith("error: layouts: 'diagonal' is not one of channels_first, "
                         "channels_last")


def test_precompile_cuda_without_a_gpu_is_one_line(capsys, monkeypatch):
    """No GPU is a condition of the machine, not a bad argument: exit 1."""
    import numba_deconv
    import numba_deconv.__main__ as cli

    monkeypatch.setattr(cli, "_cuda_status", lambda: "no usable GPU or driver")
    monkeypatch.setattr(numba_deconv, "precompile", lambda **kwargs: pytest.fail("ran"))
    assert main(["precompile", "--device", "cuda", "--ranks", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("python -m numba_deconv precompile: error: --device cuda needs "
                            "a CUDA GPU: no usable GPU or driver; --device cpu compiles the "
                            "CPU kernels\n")
    # A driver that fails only once compiling starts: one line, exit 1 as well.
    monkeypatch.setattr(cli, "_cuda_status", lambda: "available: a GPU")

    def broken(**kwargs):
        raise RuntimeError("device='cuda' needs a CUDA GPU and driver, and none is available")

    monkeypatch.setattr(numba_deconv, "precompile", broken)
    assert main(["precompile", "--device", "cuda", "--ranks", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none is available" in err


@pytest.mark.parametrize("argv", [["demo", "--fast"], ["info", "extra"], ["explain"],
                                  ["explain", "--input", "1xax2", "--kernel", "1x1x3x3"]])
def test_other_commands_reject_bad_arguments(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "python -m numba_deconv")


def test_explain_bad_shapes_are_one_line(capsys):
    assert main(["explain", "--input", "1x1x2x2", "--kernel", "1x1x3x3", "--groups", "0"]) == 2
    err = capsys.readouterr().err
    assert "groups=0" in err and err.count("\n") == 1 and "Traceback" not in err
    # Too large to lay out: a usage error, not a MemoryError's traceback.
    huge = "1x1x" + "x".join(["1000000000000000"] * 2)
    try:
        code = main(["explain", "--input", huge, "--kernel", "1x1x3x3"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err.strip().splitlines()[-1]


# -- info: the disk cache ---------------------------------------------------------

def test_info_reports_the_disk_cache(capsys, monkeypatch, tmp_path):
    import numba

    import numba_deconv.__main__ as cli

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))   # NUMBA_CACHE_DIR
    dirs = cli.kernel_cache_dirs()
    assert dirs and all(d.startswith(str(tmp_path)) for d in dirs)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "disk cache   0 index (.nbi) and 0 data (.nbc) files, 0 bytes" in out
    assert "precompile fills it" in out and dirs[0] in out
    assert "variant(s) in this process" in out
    with open(os.path.join(dirs[0], "kernels.rows-12.py311.nbi"), "wb") as f:
        f.write(b"i" * 100)
    for n in (1, 2):
        with open(os.path.join(dirs[-1], f"kernels.rows-12.py311.{n}.nbc"), "wb") as f:
            f.write(b"d" * 1000)
    with open(os.path.join(dirs[0], "kernels.cpython-311.pyc"), "wb") as f:
        f.write(b"p" * 5000)   # not Numba's: not counted
    assert cli.disk_cache_summary() == {"dirs": dirs, "index_files": 1, "data_files": 2,
                                        "bytes": 2100}
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "disk cache   1 index (.nbi) and 2 data (.nbc) files, 2.1 KiB" in out
    assert "precompile fills it" not in out


def test_info_counts_what_a_call_cached():
    """The real cache: a kernel that ran has an index file in it."""
    import numpy as np

    import numba_deconv
    import numba_deconv.__main__ as cli

    numba_deconv.conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    summary = cli.disk_cache_summary()
    if not summary["dirs"]:
        pytest.skip("no writable Numba cache directory here")
    assert summary["index_files"] >= 1 and summary["data_files"] >= 1
    assert summary["bytes"] > 0


# -- the bench plot ----------------------------------------------------------------

def _plot_report():
    from numba_deconv import bench

    cases = {c.name: c for c in bench.load_cases()}
    rows = []
    for name, dtype, ours, torch in (("tiny_seed", "float32", 1e-5, 2e-5),
                                     ("vol_3d", "float64", 0.1318, None)):
        row = bench.Row(cases[name], dtype)
        row.results[bench.OURS] = bench.Result("ok", bench.Timing(ours, ours, 10, 1))
        if torch:
            row.results["torch"] = bench.Result("ok", bench.Timing(torch, torch, 10, 1))
        rows.append(row)
    return bench.Report(rows, [bench.OURS, "torch"], {}, 100.0, 3, "Some CPU, 4 CPUs available")


def test_plot_labels_bars_and_names_dtype_threads_machine(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from numba_deconv.bench import report as report_module

    report = _plot_report()
    title, subtitle = report_module.plot_titles(report)
    assert title == "conv_transpose (float32, float64), 3 threads per library"
    assert subtitle == "Some CPU, 4 CPUs available"
    fig = report_module.figure(report)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sorted(texts) == sorted(["10.00 µs", "131.8 ms", "20.00 µs"])
    assert fig._suptitle.get_text() == title
    assert fig.axes[0].get_title() == subtitle
    plt.close(fig)
    out = tmp_path / "b.svg"
    report_module.plot(report, str(out))
    assert out.stat().st_size > 1000
