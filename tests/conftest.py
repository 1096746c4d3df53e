"""Shared fixtures and the hypothesis profiles of the test suite.

Profiles (select with ``HYPOTHESIS_PROFILE=<name>``):

- ``ci`` (default): few examples, so the whole suite stays well under a few
  minutes on two cores, where JIT compilation of each kernel variant is what
  costs time, not the examples.
- ``dev``: more examples, for a thorough local run.

``deadline=None`` everywhere: the first example of a new dtype or rank pays
for Numba compilation, which would otherwise trip hypothesis' deadline.
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Let test modules `import reference` / `import helpers` however pytest is run.
sys.path.insert(0, os.path.dirname(__file__))

# The tuned kernels are what the tests are about: on a cold cache they
# compile in place rather than behind the baseline kernel (whose own tests
# turn it on where they need it), here and in every process a test starts.
os.environ.setdefault("NUMBA_DECONV_BACKGROUND_COMPILE", "0")

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A NumPy Generator seeded from the test's id: reproducible per test,
    different between tests."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture
def tiles_last(monkeypatch):
    """Channels-last calls of the phase tiles through the tiles' own
    transposed scatter, for the tests of that scatter: one_tap_last (which
    takes the calls of one or a few taps per output phase and few input
    channels, many of theirs) off."""
    from numba_deconv.cpu import driver

    monkeypatch.setattr(driver, "ONE_TAP_LAST", ())


@pytest.fixture(autouse=True)
def team_polls_ready(monkeypatch):
    """The launcher's team takes parallel calls from the start, as where its
    polls are on disk: the tests that turn the background compile on expect
    helpers for the kernels they name alone (tests/test_launch.py covers
    the polls' own helper)."""
    from numba_deconv.cpu import launch

    monkeypatch.setattr(launch, "_polls_loadable", True)


@pytest.fixture
def fresh_routes():
    """Plans and routes made under the settings a test sets, and none of
    them left behind for the next test."""
    from numba_deconv import _dispatch

    _dispatch.reset()
    yield
    _dispatch.reset()


@pytest.fixture
def ran(monkeypatch):
    """The CPU kernels launched, as (kernel, whether it computed), in order."""
    from numba_deconv.cpu import driver

    launched = []

    def spy(name, launcher):
        def launch(*args, **kwargs):
            done = launcher(*args, **kwargs)
            launched.append((name, done))
            return done
        return launch
    for name, launcher in list(driver.LAUNCHERS.items()):
        monkeypatch.setitem(driver.LAUNCHERS, name, spy(name, launcher))
    return launched
