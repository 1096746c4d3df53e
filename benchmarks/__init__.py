"""asv benchmarks for numba_deconv (asv.conf.json; how to run: README.md here).

Self-contained: the benchmarks use only numba_deconv's public functions
(``conv_transpose``, ``conv``, the weight gradients, looked up in ``setup``)
and this directory (``cases.json``, ``_common.py``, ``_peers.py``), so the
suite runs against any commit of the package; what a commit lacks is
skipped. See README.md here for recording and comparing history.

Every library gets the same thread budget as ``python -m numba_deconv
bench`` (2 unless ``NUMBA_DECONV_BENCH_THREADS`` says otherwise). The
thread-count variables are set here, before any benchmark module imports
NumPy, Numba or a peer, and only where the caller has not set them.
"""

import importlib.util
import os
import sys

THREADS = int(os.environ.get("NUMBA_DECONV_BENCH_THREADS", "2"))

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Time the tuned kernels: a setup's first call compiles them in place
# rather than behind the baseline kernel (bench_cold measures that path).
os.environ.setdefault("NUMBA_DECONV_BACKGROUND_COMPILE", "0")

# `asv run --python=same` (an "existing" environment) measures whatever
# numba_deconv this interpreter imports; when it has none installed, fall back
# to the checkout this suite lives in. Never in an environment asv built for a
# commit (virtualenv, conda, ...): there the package must be that commit's
# build, and a missing one must fail, not measure this checkout instead.
if importlib.util.find_spec("numba_deconv") is None and \
        os.environ.get("ASV_ENV_TYPE", "existing") == "existing":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
