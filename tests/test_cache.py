"""Numba's on-disk cache never serves a kernel compiled from older sources.

Numba alone stamps a cached function with its own file's time and size,
so a kernel in ``cpu/kernels.py`` that inlines ``_phases.tap_source``
would load stale code after ``_phases.py`` changed. In a copy of the
package: the first process compiles, the second loads from the cache,
and after an edit of the helper the third must compile afresh and compute
with the new helper.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba_deconv

SCRIPT = """
import json
import numba_deconv
from numba_deconv.cpu import kernels
# The tap table of the TensorFlow worked example's rows (5 outputs, 3 taps,
# stride 2, 2 inputs): a cached kernel of kernels.py that inlines
# _phases.tap_source, and one that compiles in a fraction of a second (the
# row kernel that reads this table takes 15 s, to the same end).
table = kernels._sources(5, 3, 2, 1, 0, 2)
stats = kernels._sources.stats
print(json.dumps({"file": numba_deconv.__file__, "first": int(table[0, 0]),
                  "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _run(package_root: Path, cache: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(package_root), NUMBA_CACHE_DIR=str(cache))
    # Run from the copy's parent: the checkout in the working directory
    # would come first on sys.path.
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=package_root,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_edited_helper_recompiles_instead_of_loading_a_stale_kernel(tmp_path):
    root = tmp_path / "src"
    package = root / "numba_deconv"
    shutil.copytree(Path(numba_deconv.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"

    first = _run(root, cache)
    assert first["file"].startswith(str(package))
    assert first["first"] == 0 and first["misses"] > 0

    again = _run(root, cache)
    assert again["first"] == 0 and again["hits"] > 0 and again["misses"] == 0

    # A helper in another file: no tap reaches any output any more.
    phases = package / "_phases.py"
    source = phases.read_text()
    edited = source.replace('    """The input that reaches output ``o`` through tap ``k``, or -1."""\n',
                            '    """The input that reaches output ``o`` through tap ``k``, or -1."""\n'
                            '    return -1\n')
    assert edited != source
    phases.write_text(edited)

    after = _run(root, cache)
    assert after["misses"] > 0 and after["hits"] == 0
    assert after["first"] == -1


LOGGED = """
import logging
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
import numpy as np
import numba_deconv
numba_deconv.conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), stride=2)
numba_deconv.conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), stride=2)
"""


def test_a_first_call_that_compiles_says_so_once(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def lines():
        done = subprocess.run([sys.executable, "-c", LOGGED], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600, check=True)
        return [line for line in done.stderr.splitlines() if line.startswith("numba_deconv")]

    cold = lines()
    assert len(cold) == 1, cold
    assert cold[0].startswith("numba_deconv INFO compiling the rows_serial kernel for float64")
    assert "cache" in cold[0]
    assert lines() == []  # the next process loads it from the cache


def test_the_stamp_covers_what_kernels_reach_and_not_host_code():
    from numba_deconv import _cache
    package = Path(numba_deconv.__file__).parent
    sources = {str(Path(p).relative_to(package)) for p in _cache.kernel_sources()}
    # Jitted modules, the helpers they inline, and the tunables frozen into them.
    assert {"cpu/kernels.py", "cpu/tiled.py", "cpu/simd.py", "_phases.py", "config.py",
            "cuda/kernels.py"} <= sources
    # Host code: editing a front end or the CLI keeps the compiled kernels.
    assert not {"api.py", "explain.py", "compat/tensorflow.py", "bench/cli.py",
                "cpu/driver.py"} & sources


def test_a_cache_directory_others_can_write_is_warned_about(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    own = tmp_path / "own"
    own.mkdir()
    own.chmod(0o700)
    script = "import warnings; warnings.simplefilter('always'); import numba_deconv"
    for directory, warned in ((shared, True), (own, False)):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=dict(os.environ, NUMBA_CACHE_DIR=str(directory)), timeout=300)
        assert done.returncode == 0, done.stderr
        assert ("can be written by other users" in done.stderr) == warned, done.stderr


def test_the_locator_answers_what_numba_reads_off_its_own():
    """Numba reads ``_py_file`` off a locator to warn that a function cannot
    be cached; the package's locator hands such reads to Numba's own."""
    from numba_deconv import _cache
    from numba_deconv.cpu import kernels

    locator = kernels.direct_rows._cache._impl.locator
    assert isinstance(locator, _cache.PackageStampLocator)
    assert locator._py_file == os.path.abspath(kernels.__file__)
