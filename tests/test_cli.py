"""The command line: python -m numba_deconv {demo, explain, bench, info, precompile}.

bench and precompile have their own tests (test_bench.py, test_dispatch.py).
"""

import subprocess
import sys

import pytest

from numba_deconv.__main__ import main


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
