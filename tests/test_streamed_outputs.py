"""Channels-last outputs larger than the caches, written with non-temporal
stores (``config.STREAM_OUTPUT_MIN_BYTES``): the same bits as the cached
stores, whichever tiles stream and whichever do not."""

import numpy as np
import pytest

from numba_deconv import config, conv_transpose
from numba_deconv.cpu import driver, tiled

from helpers import assert_matches_reference, random_array
from test_strategies import force

pytestmark = pytest.mark.usefixtures("fresh_routes")


def _spy_streaming(monkeypatch):
    """The ``(layout, streaming)`` arguments of each phase-tiles launch, in
    order."""
    flags = []
    real_parallel = driver.parallel

    def spy(kernel, *args, **kwargs):
        if kernel is driver.direct_tiled:
            flags.append(args[13:15])
        return real_parallel(kernel, *args, **kwargs)
    monkeypatch.setattr(driver, "parallel", spy)
    return flags


# Output channels: whole vectors of both dtypes (16, 32), a ragged last
# vector (24 in float32, 12 in float64), fewer than a vector (6); strides
# 1-4, so phases of one, two and four outputs interleave.
CASES = [
    ((2, 9, 13, 11), (9, 16, 3, 3), dict(stride=2, padding=1)),
    ((1, 5, 7, 21), (5, 32, 4, 4), dict(stride=4, padding=(1, 2))),
    ((2, 7, 40), (7, 24, 8), dict(stride=4, padding=2)),
    ((1, 4, 5, 6, 7), (4, 12, 2, 2, 2), dict(stride=2)),
    ((2, 3, 9, 9), (3, 6, 3, 3), dict(stride=1, padding=1)),
]


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
    flags = _spy_streaming(monkeypatch)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    b = random_array(rng, (w_shape[1],), dtype)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    # The first call of a process runs channels first, compiling.
    conv_transpose(x_last, w, b, data_format="channels_last", **kwargs)
    flags.clear()
    results = []
    for threshold in (0, 1 << 62):
        monkeypatch.setattr(config, "STREAM_OUTPUT_MIN_BYTES", threshold)
        results.append(conv_transpose(x_last, w, b, data_format="channels_last", **kwargs))
    assert flags == [(tiled.CHANNELS_LAST, True), (tiled.CHANNELS_LAST, False)]
    np.testing.assert_array_equal(results[0], results[1])
    assert_matches_reference(np.moveaxis(results[0], -1, 1), x, w, b, **kwargs)


def test_streaming_threshold_is_a_quarter_of_the_largest_cache(tmp_path):
    """The threshold's cache size comes from sysfs's ``size`` files (in K
    or M, the largest level wins), and a default where they are missing or
    unreadable."""
    for index, size in enumerate(["48K", "1024K", "32M"]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert config._last_level_cache_bytes(root=str(tmp_path)) == 32 << 20
    assert config._last_level_cache_bytes(default=7, root=str(tmp_path / "none")) == 7
    (tmp_path / "index0" / "size").write_text("big\n")
    assert config._last_level_cache_bytes(default=7, root=str(tmp_path)) == 7
    assert config.STREAM_OUTPUT_MIN_BYTES == config._last_level_cache_bytes() // 4
