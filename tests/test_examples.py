"""The scripts in examples/ run and do what they say."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytest.importorskip("scipy")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def load(name):
    """Import examples/<name>.py as a module (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def deblur():
    return load("deblur_lsqr")


def test_deblur_lsqr_beats_the_naive_estimate(deblur, capsys):
    assert deblur.main(["--size", "24"]) == 0
    printed = capsys.readouterr().out
    assert "naive" in printed and "lsqr" in printed
    result = deblur.run(size=24, verbose=False)
    assert result["observed"].shape == (12, 12)
    assert result["recovered"].shape == result["truth"].shape == (24, 24)
    # clearly below: at most 80 % of the naive error (about 65 % measured)
    assert result["lsqr_error"] < 0.8 * result["naive_error"], result


def test_deblur_lsqr_writes_a_figure(deblur, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "deblur.png"
    assert deblur.main(["--size", "16", "--iterations", "10", "--figure", str(path)]) == 0
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deblur_lsqr_rejects_a_tiny_image(deblur):
    with pytest.raises(SystemExit):
        deblur.main(["--size", "4"])
