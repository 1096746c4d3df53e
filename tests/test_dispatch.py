"""cache_info() and precompile(): the record of compiled variants."""

import time

import numpy as np
import pytest

import numba_deconv
from numba_deconv import _compiled, _dispatch


@pytest.fixture
def fresh_record():
    """An empty in-process record (compiled code itself stays loaded), and
    no planned calls: a call planned earlier may go straight to its kernel,
    past the record."""
    saved, saved_calls = dict(_compiled._COMPILED), dict(_dispatch._CALLS)
    _compiled.forget()
    _dispatch._CALLS.clear()
    yield
    _compiled._COMPILED.clear()
    _compiled._COMPILED.update(saved)
    _dispatch._CALLS.update(saved_calls)


def test_a_call_records_exactly_the_kernel_it_ran(fresh_record):
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    start = time.perf_counter()
    numba_deconv.conv_transpose(x, w, stride=2)
    elapsed = time.perf_counter() - start
    numba_deconv.conv_transpose(x, w, stride=2)  # the second call adds nothing
    info = numba_deconv.cache_info()
    assert [(v["device"], v["rank"], v["dtype"], v["layout"], v["strategy"], v["kernel"])
            for v in info] == [("cpu", 2, "float32", "channels_first", "gather", "rows_serial")]
    # Seconds, spent inside the first call (compiling, or loading from disk).
    assert 0 < info[0]["compile_seconds"] < elapsed


def test_compile_seconds_time_the_compilation(fresh_record):
    """The record holds the time the compile step took, whatever it was."""
    _compiled.ensure(("cpu", 1, np.dtype("float32"), "channels_first", "gather", "probe"),
                     time.sleep, 0.05)
    _compiled.ensure(("cpu", 1, np.dtype("float32"), "channels_first", "gather", "probe"),
                     time.sleep, 1.0)  # recorded already: not run again
    seconds, = (v["compile_seconds"] for v in numba_deconv.cache_info())
    assert 0.05 <= seconds < 0.5


def test_variants_differ_by_rank_dtype_layout_and_strategy(fresh_record):
    numba_deconv.conv_transpose(np.ones((2, 3)), np.ones((2, 1, 2)))
    # Thick complex data runs as its real twin: float32 columns.
    numba_deconv.conv_transpose(np.ones((1, 64, 8, 8), np.complex64),
                                np.ones((64, 64, 3, 3), np.complex64), stride=2)
    # Depthwise complex data keeps the complex kernels.
    numba_deconv.conv_transpose(np.ones((1, 4, 8, 8), np.complex64),
                                np.ones((4, 1, 3, 3), np.complex64), stride=2, groups=4)
    numba_deconv.conv_transpose(np.ones((1, 5, 5, 2)), np.ones((2, 1, 2, 2)),
                                data_format="channels_last")
    seen = {(v["rank"], v["dtype"], v["layout"], v["strategy"])
            for v in numba_deconv.cache_info()}
    assert seen == {(1, "float64", "channels_first", "gather"),
                    (2, "float32", "channels_first", "columns"),
                    (2, "complex64", "channels_first", "gather"),
                    (2, "float64", "channels_last", "gather")}


def test_precompile_compiles_what_it_is_asked_for(fresh_record):
    info = numba_deconv.precompile(ranks=(1, 3), dtypes=("float32", np.float64),
                                   strategies=("columns",), layouts=("channels_first",))
    assert {(v["rank"], v["dtype"], v["strategy"], v["kernel"]) for v in info} == {
        (r, d, "columns", kernel) for r in (1, 3) for d in ("float32", "float64")
        for kernel in ("column_tiles", "tap_rows", "blas")}
    info = numba_deconv.precompile(ranks=(2,), dtypes=("float32",),
                                   layouts=("channels_last",))
    kernels = {v["kernel"] for v in info if v["layout"] == "channels_last"}
    assert kernels == {"rows_serial", "rows", "planes", "phase_tiles", "column_tiles",
                       "tap_rows", "blas",
                       "conv_planes_serial", "conv_planes", "conv_tiles", "weight_dots", "weight_tiles",
                       "depthwise_last", "depthwise_last_staged", "one_tap_last",
                       "rows_tiny_last"}


def test_precompile_compiles_the_polls_of_the_launchers_threads(monkeypatch):
    """Every parallel call needs the team's polls (cpu/launch.py): a
    precompiled process must not compile them on its first call."""
    from numba_deconv.cpu import driver

    compiled = []
    monkeypatch.setattr(driver, "compile_kernel",
                        lambda kernel, dtype: compiled.append((kernel, np.dtype(dtype))))
    numba_deconv.precompile(ranks=())
    assert compiled == [("team_polls", np.dtype(np.int64))]


@pytest.mark.parametrize("kwargs, match", [
    (dict(ranks=(0,)), "ranks"),
    (dict(ranks=(1.5,)), "ranks"),
    (dict(dtypes=("int32",)), "dtypes: 'int32'"),
    (dict(dtypes=("float16",)), "dtypes"),
    (dict(strategies=("fft",)), "strategies: 'fft'"),
    (dict(layouts=("NHWC",)), "layouts: 'NHWC'"),
    (dict(device="tpu"), "device='tpu'"),
])
def test_precompile_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        numba_deconv.precompile(**kwargs)


def test_cli_precompile_prints_the_variants(capsys, fresh_record):
    """A line per variant that this process had not recorded (with an
    empty record, whatever the tests before it compiled: every one)."""
    from numba_deconv.__main__ import main

    assert main(["precompile", "--ranks", "2", "--dtypes", "float32",
                 "--strategies", "columns"]) == 0
    out = capsys.readouterr().out
    assert "rank 2 float32" in out and "blas" in out and "variants ready" in out
    assert main(["precompile", "--ranks", "2", "--dtypes", "float32", "--strategies", "gather",
                 "--layouts", "channels_last"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all("channels_last" in line for line in lines[:-1])
    assert any("depthwise_last_staged" in line for line in lines)
