"""Where every parallel CPU kernel starts: safe from any number of Python
threads, and stopped by Ctrl-C within a task.

Two kinds of parallel kernel:

- Most kernels are *task kernels*, plain serial functions that release the
  GIL and take their tasks one at a time from a shared counter
  (:func:`.atomics.claim`) until none is left. :func:`parallel` runs one on
  the calling thread and on ``numba.get_num_threads() - 1`` threads of a
  pool of our own. Why not ``prange``: Numba compiles a ``prange`` loop
  into a second function and optimises the kernel's code twice, which
  made up about half of a cold first call (direct_tiled 18 s to compile
  with ``prange``, 10 s without). A task goes to whichever thread is free,
  but each task owns its outputs and sums them in a fixed order, so results
  do not depend on the thread count or the timing.
- The weight-gradient kernels run several parallel passes in one call
  (each pass needs the previous one complete) and keep ``prange``;
  :func:`parallel_prange` starts them. Numba's ``workqueue``
  layer aborts the process when two threads launch such kernels at once,
  so on that layer those launches take one process-wide lock. Which layer
  runs is decided by :func:`prefer_fork_safe_layer` at import.

Interrupts. A compiled loop never returns to the interpreter, so a SIGINT
waits for the whole call. A call long enough to notice (see
``config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS``) made on the main thread
therefore runs entirely on other threads while the main thread waits,
where Python can raise ``KeyboardInterrupt``. It then sets the kernel's
``cancel`` flag, which every task checks before it starts, waits for the
tasks under way (each is a small share of the call), and re-raises. What
the cancelled call was writing (its ``out=``) is left partially written.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError

import numba
import numpy as np
from numba import njit, types

from .. import config
from . import atomics

_LOCK = threading.RLock()
_layer_is_workqueue = None
_pool = None
_pool_lock = threading.Lock()
_team = None
_read_thread_count = None

#: The flag of a call that cannot be cancelled (nothing ever sets it).
NEVER = np.zeros(1, np.uint8)
#: How long a caller whose helpers are still in tasks naps between polls.
_IDLE_NAP_SECONDS = 50e-6
#: How often the main thread looks for a pending Ctrl-C while a kernel runs.
_SIGNAL_POLL_SECONDS = 0.02


def prefer_fork_safe_layer() -> None:
    """Ask Numba for a fork-safe threading layer unless the user chose one.

    Numba's default order takes GNU OpenMP on Linux where TBB is missing,
    and GNU OpenMP kills a child forked after the parent ran a parallel
    kernel (``multiprocessing``'s default start method on Linux before
    Python 3.14). ``"forksafe"`` takes TBB where it is installed, else
    ``workqueue``; a layer named by ``NUMBA_THREADING_LAYER`` or set in
    ``numba.config`` before import is kept.
    """
    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"


def _serialised() -> bool:
    """Whether ``prange`` launches must take the lock: the layer is
    ``workqueue`` (known once the layer is loaded; loaded here on first use)."""
    global _layer_is_workqueue
    if _layer_is_workqueue is None:
        try:
            from numba.np.ufunc import parallel
            parallel._launch_threads()
            _layer_is_workqueue = numba.threading_layer() == "workqueue"
        except Exception:  # internals that moved: be safe
            _layer_is_workqueue = True
    return _layer_is_workqueue


def serialised():
    """A context for code that launches ``prange`` kernels directly: the
    process-wide launch lock on ``workqueue``, else nothing."""
    return _LOCK if _serialised() else contextlib.nullcontext()


def thread_count() -> int:
    """``numba.get_num_threads()`` (the calling thread's setting): read
    straight from the threading layer once it is loaded, without the two
    locks that Numba's function takes on every call (about 1 us, twice per
    call of a 60 us kernel)."""
    global _read_thread_count
    if _read_thread_count is None:
        threads = numba.get_num_threads()  # loads the layer
        from numba.np.ufunc import parallel
        # The layer's own reader; Numba's function if that moved.
        _read_thread_count = getattr(parallel, "_get_num_threads", None)
        if _read_thread_count is None or _read_thread_count() != threads:
            _read_thread_count = numba.get_num_threads
    return _read_thread_count()


def worker_pool() -> ThreadPoolExecutor:
    """The threads that help run task kernels (and the BLAS kernel's
    products): as many as Numba may use, made on first use and anew in a
    forked child (whose parent's threads do not exist there)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS,
                                       thread_name_prefix="numba_deconv")
        return _pool


@njit(nogil=True, cache=True)
def _next_job(generation, seen, even, odd, busy, done, reads):
    """A helper's wait, without the GIL: leave the job it was in (``busy``
    less ``done``), then poll at most ``reads`` times for a job after
    ``seen`` whose caller has started its kernel (its first task claimed
    from its counter, ``even`` or ``odd`` by the job's number, so the
    caller no longer holds the GIL that the helper needs to start its own
    share); join it (``busy`` + 1) and return its number, or ``seen`` if
    none came."""
    atomics.fetch_add(busy, -done)
    for _ in range(reads):
        current = atomics.read(generation)
        if current != seen and atomics.read(odd if current % 2 else even) != 0:
            atomics.fetch_add(busy, 1)
            return current
    return seen


@njit(nogil=True, cache=True)
def _post_job(generation, claimed, number):
    """Publish job ``number`` with its task counter cleared: the counter
    first, so that a helper that sees the number sees the counter cleared."""
    atomics.write(claimed, 0)
    atomics.write(generation, number)


@njit(nogil=True, cache=True)
def _close_job(claimed):
    """Mark a job started for helpers still waiting on a kernel that
    claimed no task (one that had none to claim)."""
    if atomics.read(claimed) == 0:
        atomics.fetch_add(claimed, 1)


@njit(nogil=True, cache=True)
def _await_idle(busy, reads):
    """Whether ``busy[0]`` reached 0, polled without the GIL at most
    ``reads`` times."""
    for _ in range(reads):
        if atomics.read(busy) == 0:
            return True
    return False


class _Team:
    """Helper threads for task kernels that stay awake between calls.

    Waking a sleeping thread and waiting for one to finish each took 10-35
    us on this project's 2-vCPU virtual machines (a pool's round trip with
    no work measured 21-38 us), which ate the gain of a second thread on
    calls of 50-300 us. So the helpers poll, without the GIL, for
    ``config.TEAM_SPIN_READS`` reads before they sleep, and the caller
    polls for them to finish. Each poll also waits out the GIL: a helper
    starts once the caller's kernel has claimed its first task (the caller
    holds no GIL then), and leaves a job only inside its next poll.

    One job at a time (a second caller meanwhile takes the pool, see
    :func:`parallel`, as do calls while the polls are not yet compiled or
    on disk: :func:`_polls_ready`). Jobs take turns with two task counters: a helper
    joins (counts itself ``busy``) before it reads the job, and every
    caller waits until no helper is busy, so a helper that arrives after
    its job's caller has left -- and finds no job (the caller clears it
    once every task is claimed), or leaves a newer one alone -- is still
    waited for by the next caller,
    before the counter it holds is cleared for the job after. (One shared
    counter let such a helper take the next job's first task into the last
    job's arrays.)
    """

    def __init__(self, size: int):
        self.generation = np.zeros(1, np.int64)  # the latest job's number
        # The task counters of even and odd jobs, a cache line apart.
        counters = np.zeros(16, np.int64)
        self.counters = (counters[:1], counters[8:9])
        self.busy = np.zeros(1, np.int64)  # helpers in a job
        # The running job: (number, kernel, args, task counter, helpers
        # wanted, errors); None between jobs.
        self.job = None
        self.lock = threading.Lock()
        self.sleeping = 0
        self.wake = threading.Condition()  # for helpers that stopped polling
        for rank in range(size):
            threading.Thread(target=self._serve, args=(rank,), daemon=True,
                             name=f"numba_deconv_team_{rank}").start()

    def run(self, kernel, args: tuple, helpers: int) -> None:
        """``kernel(*args, claimed, NEVER)`` on the calling thread and
        ``helpers`` helpers; call with :attr:`lock` held."""
        errors = []
        number = int(self.generation[0]) + 1
        claimed = self.counters[number % 2]
        self.job = (number, kernel, args, claimed, helpers, errors)
        _post_job(self.generation, claimed, number)
        if self.sleeping:
            with self.wake:
                self.wake.notify_all()
        try:
            kernel(*args, claimed, NEVER)
        finally:
            # Every task is claimed (or the call failed): a helper that reads
            # the job from now on finds none, and those running their share
            # hold it only until they leave, which the caller waits for. So
            # no thread holds the call's arrays once it returns (kept until
            # the next job, they kept a dropped input alive and its output's
            # memory from being reused: a loop of calls took turns between
            # two).
            self.job = None
            _close_job(claimed)
            while not _await_idle(self.busy, config.TEAM_SPIN_READS):
                time.sleep(_IDLE_NAP_SECONDS)
        if errors:
            raise errors[0]

    def _serve(self, rank: int) -> None:
        seen = done = 0
        while True:
            current = _next_job(self.generation, seen, *self.counters, self.busy, done,
                                config.TEAM_SPIN_READS)
            done = 0
            if current == seen:
                with self.wake:
                    self.sleeping += 1
                    while self.generation[0] == seen:
                        self.wake.wait()
                    self.sleeping -= 1
                continue
            seen, done = current, 1
            job = self.job  # None once its caller has left
            if job is None or job[0] != current or rank >= job[4]:
                continue
            _, kernel, args, claimed, _, errors = job
            try:
                kernel(*args, claimed, NEVER)
            except BaseException as error:  # the caller raises it
                errors.append(error)
            # Hold none of the job's arrays while waiting for the next.
            del job, kernel, args, claimed, errors


#: Whether the team's polls are compiled in this process or on disk.
_polls_loadable = False
#: ``() -> bool``: whether a helper process compiles the team's polls now,
#: set by :mod:`.tiering` (:func:`.tiering.polls_compiling`); unset, they
#: compile in this process on first need.
polls_compiling = None


def _polls_ready() -> bool:
    """Whether the team may run a job: its polls (:func:`_next_job` and the
    three others) are compiled here, or can be loaded from Numba's on-disk
    cache. On a cold cache they would compile in the calling thread, 0.3 s
    of a 2 s first call; a helper process compiles them instead
    (:data:`polls_compiling`), and until they are on disk the pool lends
    the threads, which run the same tasks."""
    global _polls_loadable
    if not _polls_loadable:
        if polls_compiling is not None and polls_compiling():
            return False
        _polls_loadable = True
    return True


def poll_signatures() -> list:
    """The team's polls as ``(dispatcher, signature)`` pairs, with the
    argument types the team passes (what :func:`_polls_ready` looks for on
    disk and a helper compiles)."""
    flag, count = types.Array(types.int64, 1, "C"), types.int64
    return [(_next_job, (flag, count, flag, flag, flag, count, count)),
            (_post_job, (flag, flag, count)),
            (_close_job, (flag,)),
            (_await_idle, (flag, count))]


def _helper_team() -> _Team:
    global _team
    with _pool_lock:
        if _team is None:
            _team = _Team(numba.config.NUMBA_NUM_THREADS - 1)
        return _team


def _forget_pool() -> None:
    global _pool, _pool_lock, _team
    _pool, _pool_lock, _team = None, threading.Lock(), None


os.register_at_fork(after_in_child=_forget_pool)


def _interruptible(multiply_adds: int) -> bool:
    return (multiply_adds >= config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS
            and threading.current_thread() is threading.main_thread())


def parallel(kernel, *args, multiply_adds: int | None = None) -> None:
    """``kernel(*args, claimed, cancel)`` on ``numba.get_num_threads()``
    threads at once: a task kernel, which claims its tasks from
    ``claimed`` (:func:`.atomics.claim`) and stops early once ``cancel`` is
    set. A call of fewer than ``config.PARALLEL_MIN_MULTIPLY_ADDS``
    multiply-adds runs on the calling thread alone (:func:`serial`; None:
    not a count, never alone). The calling thread takes tasks too, unless
    the call has at least ``config.INTERRUPTIBLE_MIN_MULTIPLY_ADDS``
    multiply-adds and it is the main thread (the only one Python delivers
    signals to): then it waits and watches for Ctrl-C."""
    threads = thread_count()
    if multiply_adds is not None and multiply_adds < config.PARALLEL_MIN_MULTIPLY_ADDS:
        threads = 1
    interruptible = _interruptible(multiply_adds or 0)
    if threads > 1 and not interruptible and _polls_ready():
        team = _helper_team()
        if team.lock.acquire(blocking=False):
            try:
                team.run(kernel, args, threads - 1)
            finally:
                team.lock.release()
            return
    claimed = np.zeros(1, np.int64)
    if not interruptible:
        helpers = [worker_pool().submit(kernel, *args, claimed, NEVER)
                   for _ in range(threads - 1)]
        try:
            kernel(*args, claimed, NEVER)
        finally:
            _join(helpers)
        return
    cancel = np.zeros(1, np.uint8)
    _watch([worker_pool().submit(kernel, *args, claimed, cancel) for _ in range(threads)],
           cancel)


def serial(kernel, *args) -> None:
    """A task kernel on the calling thread alone, for calls too small to
    repay waking other threads: the same tasks, in the same order."""
    kernel(*args, np.zeros(1, np.int64), NEVER)


def _join(helpers) -> None:
    """Wait for the helpers that started; those still queued behind other
    calls' work are dropped (every task was claimed without them)."""
    for helper in helpers:
        if not helper.cancel():
            helper.result()


def parallel_prange(kernel, *args, multiply_adds: int = 0) -> None:
    """``kernel(*args, cancel)`` for a ``prange`` kernel: serialised where
    the threading layer needs it, and stoppable with Ctrl-C as
    :func:`parallel` is."""
    with serialised():
        if not _interruptible(multiply_adds):
            kernel(*args, NEVER)
            return
        cancel = np.zeros(1, np.uint8)
        _watch([worker_pool().submit(kernel, *args, cancel)], cancel)


def _watch(running, cancel) -> None:
    """Wait on the main thread for the futures ``running``, watching for
    Ctrl-C: then set ``cancel``, wait for the tasks under way and re-raise."""
    try:
        # A SIGINT may land on any thread, which wakes no waiting main
        # thread: look for it every so often.
        for future in running:
            while True:
                try:
                    future.result(timeout=_SIGNAL_POLL_SECONDS)
                    break
                except TimeoutError:
                    continue
    except KeyboardInterrupt:
        cancel[0] = 1
        while True:  # the tasks under way finish; a second Ctrl-C cannot orphan them
            try:
                _join(running)
                break
            except KeyboardInterrupt:
                continue
        raise
