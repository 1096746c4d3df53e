"""The CUDA tests run under Numba's CUDA simulator or on a real GPU.

Run them with ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda`` (CI)
or on a machine with an NVIDIA GPU. Anywhere else every test here is
skipped, except those of ``test_no_gpu.py``, which check what a GPU-less
machine does.

The environment variable must be set before Numba is imported, so it is read
from the environment, never set here.
"""

from __future__ import annotations

import os

import pytest

from cuda_env import ALWAYS, HERE, kernels_can_run  # noqa: E402


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items
            if os.path.dirname(str(item.path)) == HERE
            and os.path.basename(str(item.path)) not in ALWAYS]
    if not mine or kernels_can_run():
        return
    skip = pytest.mark.skip(
        reason="no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 to use Numba's CUDA simulator")
    for item in mine:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def small_launches(request, monkeypatch):
    """Small blocks and a capped grid, so several blocks run and the
    kernels' grid-stride loops take more than one step (the simulator runs
    every thread as a Python thread: small launches also keep it fast)."""
    if os.path.basename(str(request.node.path)) in ALWAYS:
        return
    from numba_deconv.cuda import backend

    monkeypatch.setattr(backend, "THREADS_PER_BLOCK", 8)
    monkeypatch.setattr(backend, "MAX_BLOCKS", 4)
