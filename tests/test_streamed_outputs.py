"""Channels-last outputs larger than the caches, written with non-temporal
stores (``config.STREAM_OUTPUT_MIN_BYTES``): the same bits as the cached
stores, whichever tiles stream and whichever do not."""

import numpy as np
import pytest

from numba_deconv import config, conv_transpose
from numba_deconv.cpu import driver, tiled

from helpers import assert_matches_reference, launches_of, named_arguments, random_array
from test_strategies import force

pytestmark = pytest.mark.usefixtures("fresh_routes")


# Output channels: whole vectors of both dtypes (16, 32), a ragged last
# vector (24 in float32, 12 in float64), fewer than a vector (6); strides
# 1-4, so phases of one, two and four outputs interleave. Every channel
# of a position in one task and ending mid vector (24 and 27 channels, 2
# groups of 13, 39 on a 1x1 kernel's rows run together), the sums go
# through the stage (config.CHANNELS_LAST_STAGE_MAX_BYTES), rows ending
# mid tile.
CASES = [
    ((2, 9, 13, 11), (9, 16, 3, 3), dict(stride=2, padding=1)),
    ((1, 5, 7, 21), (5, 32, 4, 4), dict(stride=4, padding=(1, 2))),
    ((2, 7, 40), (7, 24, 8), dict(stride=4, padding=2)),
    ((1, 4, 5, 6, 7), (4, 12, 2, 2, 2), dict(stride=2)),
    ((2, 3, 9, 9), (3, 6, 3, 3), dict(stride=1, padding=1)),
    ((2, 5, 45), (5, 27, 6), dict(stride=3, padding=1, output_padding=2)),
    ((1, 6, 83), (6, 13, 7), dict(padding=1, groups=2)),
    ((2, 3, 9, 21), (3, 39, 1, 1), {}),
]


@pytest.mark.usefixtures("tiles_last")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tasks_per_thread", [1, 1 << 10], ids=["whole-images", "many-tasks"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_streamed_channels_last_outputs_are_the_cached_ones(x_shape, w_shape, kwargs,
                                                            tasks_per_thread, dtype,
                                                            monkeypatch, rng):
    """Streamed (a threshold of 0) and cached (no output large enough), the
    phase tiles' channels-last outputs have the same bits, those of the
    oracle; with many tasks, the tasks' ranges of output channels start
    off a vector (blocks of 8 channels), and those stores stay cached."""
    force(monkeypatch, "gather", "phase_tiles")
    monkeypatch.setattr(config, "TILED_TASKS_PER_THREAD", tasks_per_thread)
    monkeypatch.setattr(config, "TILED_MIN_POSITIONS", 8)
    launches = launches_of(monkeypatch, driver.direct_tiled)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1] * kwargs.get("groups", 1),), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    # The first call of a process runs channels first, compiling.
    conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    launches.clear()
    results = []
    for threshold in (0, 1 << 62):
        monkeypatch.setattr(config, "STREAM_OUTPUT_MIN_BYTES", threshold)
        results.append(conv_transpose(x_last, w, b, data_format="channels_last", **kwargs))
    # (layout, streaming) of each launch
    named = [named_arguments(driver.direct_tiled, args) for args in launches]
    assert [(n["layout"], n["streaming"]) for n in named] == [(tiled.CHANNELS_LAST, True),
                                                              (tiled.CHANNELS_LAST, False)]
    np.testing.assert_array_equal(results[0], results[1])
    assert_matches_reference(np.moveaxis(results[0], -1, 1), x, w, b, **kwargs)


def _fake_sysfs(root, caches):
    """A sysfs cache folder at ``root``: an ``index*`` folder per ``(level,
    type, size, shared_cpu_list[, ways_of_associativity])`` of ``caches``,
    and a ``uevent`` file beside them, as Linux lays it out."""
    root.mkdir()
    (root / "uevent").write_text("")
    for index, fields in enumerate(caches):
        folder = root / f"index{index}"
        folder.mkdir()
        for name, value in zip(("level", "type", "size", "shared_cpu_list",
                                "ways_of_associativity"), fields):
            (folder / name).write_text(value + "\n")
    return str(root)


def test_cache_derived_tunables_follow_sysfs(tmp_path):
    """The streaming threshold and the column tiles' rows a pass in place
    come from sysfs's cache folders (sizes in K or M, CPU lists in ranges):
    a quarter of the last level, or the level below where the last holds
    more than 32 MiB for each CPU that shares it (a virtual machine's view
    of its host's cache); the L1's ways. Instruction caches do not count,
    and defaults stand where sysfs cannot be read."""
    zen = _fake_sysfs(tmp_path / "zen", [
        ("1", "Data", "48K", "0", "12"), ("1", "Instruction", "32K", "0", "8"),
        ("2", "Unified", "1024K", "0", "16"), ("3", "Unified", "32768K", "0-1", "16")])
    assert config._data_caches(zen) == {1: (48 << 10, 1, 12), 2: (1 << 20, 1, 16),
                                        3: (32 << 20, 2, 16)}
    assert config._stream_output_min_bytes(config._data_caches(zen)) == 8 << 20
    assert config._l1_ways(config._data_caches(zen)) == 12
    host = _fake_sysfs(tmp_path / "host", [
        ("1", "Data", "48K", "0"), ("1", "Instruction", "64K", "0"),
        ("2", "Unified", "2048K", "0"), ("3", "Unified", "491520K", "0-1")])
    assert config._stream_output_min_bytes(config._data_caches(host)) == 2 << 20
    # 64 CPUs sharing 256 MiB: 4 MiB each, a real cache of that size
    server = _fake_sysfs(tmp_path / "server", [
        ("2", "Unified", "2M", "0"), ("3", "Unified", "256M", "0-31,64-95")])
    assert config._data_caches(server)[3] == (256 << 20, 64, 0)  # no ways given
    assert config._stream_output_min_bytes(config._data_caches(server)) == 64 << 20
    assert config._l1_ways(config._data_caches(server)) == 8  # no L1 listed
    assert config._data_caches(str(tmp_path / "none")) == {}
    broken = _fake_sysfs(tmp_path / "broken", [("2", "Unified", "big", "0")])
    assert config._data_caches(broken) == {}
    assert config._stream_output_min_bytes({}, default=7) == 7
    assert config._l1_ways({}) == 8
    assert config._CACHES == config._data_caches()
    assert config.STREAM_OUTPUT_MIN_BYTES == config._stream_output_min_bytes(config._CACHES)
    assert config.COLUMNS_IN_PLACE_K_BLOCK == config._l1_ways(config._CACHES)
