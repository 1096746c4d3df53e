"""The task launcher (``cpu/launch.py``): which threads run a task kernel's
tasks, and the helper team that stays awake between calls."""

import concurrent.futures

import numba
import numpy as np
import pytest
from numba import njit

from numba_deconv import config
from numba_deconv.cpu import atomics


def test_small_task_calls_run_on_the_calling_thread_and_large_ones_wake_helpers():
    """A task kernel below ``PARALLEL_MIN_MULTIPLY_ADDS`` runs on the calling
    thread alone (the same tasks, so the same bits); at the threshold every
    thread takes part."""
    import threading
    import time

    from numba_deconv.cpu import driver
    from numba_deconv.cpu.launch import parallel

    threads_seen = set()

    def kernel(claimed, cancel):
        claimed[0] += 1  # a task (helpers join once the caller has claimed one)
        threads_seen.add(threading.get_ident())
        if threading.get_ident() == caller:
            time.sleep(0.05)  # long enough for the helpers to start

    caller = threading.get_ident()
    parallel(kernel, multiply_adds=config.PARALLEL_MIN_MULTIPLY_ADDS - 1)
    assert threads_seen == {caller}
    if numba.get_num_threads() < 2:
        pytest.skip("one thread: no helpers to wake")
    # On a cold cache a helper's first poll would compile for longer than
    # the caller's task lasts.
    driver.compile_kernel("team_polls", np.int64)
    threads_seen.clear()
    parallel(kernel, multiply_adds=config.PARALLEL_MIN_MULTIPLY_ADDS)
    assert caller in threads_seen and len(threads_seen) == numba.get_num_threads()


@njit(nogil=True)
def _count_tasks(hits, tasks, fail_at, claimed, cancel):
    """A task kernel: ``hits[task] += 1`` for every task it claims; raises
    on task ``fail_at``."""
    while True:
        task = atomics.claim(claimed)
        if task >= tasks or atomics.cancelled(cancel):
            break
        if task == fail_at:
            raise ValueError("task failed")
        for _ in range(200 * (task % 7 + 1)):  # uneven tasks of a few microseconds
            hits[task] += 1


def test_helper_team_runs_every_task_once_over_many_calls_and_threads():
    """The helpers that stay awake between calls (launch._Team): every task
    of thousands of calls in a row runs exactly once, from one caller and
    from several at once (those the team is busy for take the pool)."""
    from numba_deconv.cpu.launch import parallel

    def calls(count, seed):
        rng = np.random.default_rng(seed)
        for _ in range(count):
            tasks = int(rng.integers(0, 40))
            hits = np.zeros(tasks, np.int64)
            parallel(_count_tasks, hits, tasks, -1, multiply_adds=None)
            assert (hits == 200 * (np.arange(tasks) % 7 + 1)).all()

    calls(2000, 0)
    with concurrent.futures.ThreadPoolExecutor(3) as callers:
        for done in [callers.submit(calls, 1000, seed) for seed in range(1, 4)]:
            done.result()


def test_helper_team_passes_a_task_error_to_the_caller_and_keeps_working():
    """An error in any thread's task reaches the caller, after every thread
    has left the call; the next calls run as before."""
    from numba_deconv.cpu.launch import parallel

    if numba.get_num_threads() < 2:
        pytest.skip("one thread: no helpers")
    for fail_at in range(8):
        hits = np.zeros(8, np.int64)
        with pytest.raises(ValueError, match="task failed"):
            parallel(_count_tasks, hits, 8, fail_at, multiply_adds=None)
    hits = np.zeros(30, np.int64)
    parallel(_count_tasks, hits, 30, -1, multiply_adds=None)
    assert (hits == 200 * (np.arange(30) % 7 + 1)).all()


class _Helper:
    """A helper process that compiles until told it is done."""

    done = False

    def poll(self):
        return 0 if self.done else None


def test_a_cold_cache_compiles_the_team_polls_in_a_helper_and_lends_the_pool_meanwhile(
        monkeypatch):
    """On a cold cache the team's polls would compile in the calling thread
    (0.3 s of a 2 s first call): a helper process compiles them instead, the
    pool's threads take the calls meanwhile (every task once, on every
    thread), and the team takes over once the helper is done."""
    import threading
    import time

    from numba_deconv.cpu import launch, tiering

    if numba.get_num_threads() < 2:
        pytest.skip("one thread: no team")
    monkeypatch.setattr(launch, "_polls_loadable", False)
    monkeypatch.setattr(config, "BACKGROUND_COMPILE", True)
    monkeypatch.setattr(tiering, "on_disk", lambda *args: False)
    monkeypatch.setattr(tiering, "cache_writable", lambda *args: True)
    monkeypatch.setattr(tiering, "_helpers", {})
    helper, started, teams = _Helper(), [], []
    monkeypatch.setattr(tiering, "_start_helper",
                        lambda kernel, dtype: started.append((kernel, dtype)) or helper)
    real_team = launch._helper_team
    monkeypatch.setattr(launch, "_helper_team", lambda: teams.append(1) or real_team())
    threads_seen = set()

    def kernel(hits, claimed, cancel):
        threads_seen.add(threading.get_ident())
        if threading.get_ident() == caller:
            time.sleep(0.05)  # long enough for the other threads to start
        _count_tasks(hits, 64, -1, claimed, cancel)

    caller = threading.get_ident()

    hits = np.zeros(64, np.int64)
    for _ in range(3):
        threads_seen.clear()
        launch.parallel(kernel, hits, multiply_adds=None)
        assert len(threads_seen) > 1  # the pool's threads joined the caller
    assert started == [("team_polls", "int64")] and teams == []
    assert (hits == 3 * 200 * (np.arange(64) % 7 + 1)).all()
    helper.done = True
    launch.parallel(kernel, hits, multiply_adds=None)
    assert teams == [1] and launch._polls_loadable and started == [("team_polls", "int64")]
    assert (hits == 4 * 200 * (np.arange(64) % 7 + 1)).all()


def test_the_team_polls_signatures_are_those_the_team_compiles():
    """What a cold process looks for on disk, and what the helper and
    ``precompile`` compile, is what the team runs: after a job, each poll
    holds exactly the signature that ``poll_signatures`` names."""
    from numba_deconv.cpu import driver, launch

    if numba.get_num_threads() < 2:
        pytest.skip("one thread: no team")
    launch.parallel(_count_tasks, np.zeros(8, np.int64), 8, -1, multiply_adds=None)
    polls = launch.poll_signatures()
    assert driver.kernel_signatures("team_polls", np.float32) == polls
    for dispatcher, signature in polls:
        assert list(dispatcher.overloads) == [signature], dispatcher.py_func.__name__
