"""asv benchmarks for numba_deconv: ``asv run --python=same``.

Self-contained: our benchmarks use only ``numba_deconv.conv_transpose`` and
this directory, so the suite runs against any commit of the package.

Every library gets the same thread budget as ``python -m numba_deconv
bench`` (2 unless ``NUMBA_DECONV_BENCH_THREADS`` says otherwise). The
thread-count variables are set here, before any benchmark module imports
NumPy, Numba or a peer, and only where the caller has not set them.
"""

import os
import sys

THREADS = int(os.environ.get("NUMBA_DECONV_BENCH_THREADS", "2"))

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_var, str(THREADS))
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# With environment_type "existing" asv does not install the project: fall
# back to the checkout this suite lives in when numba_deconv is not installed.
try:
    import numba_deconv  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
