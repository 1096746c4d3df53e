"""Whether CUDA kernels can run here: the simulator, a real GPU, or neither.

A module of its own (not conftest.py) so that test modules can import it;
two conftest.py files in one test tree cannot both be imported by name.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

SIMULATING = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HERE = os.path.dirname(os.path.abspath(__file__))
#: Modules that run whether or not kernels can run.
ALWAYS = ("test_no_gpu.py",)


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """Whether a real CUDA GPU is usable, asked in a subprocess so that this
    process does not import numba.cuda (nor pay for a driver probe) unless
    the tests need it."""
    if SIMULATING:
        return False
    probe = "from numba import cuda; print(cuda.is_available())"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "True"


def kernels_can_run() -> bool:
    return SIMULATING or gpu_available()
