#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one go (CI has none: it runs the
# CUDA kernels under Numba's simulator only):
#   - the CUDA tests on the GPU itself;
#   - `bench --device cuda` beside PyTorch's cuDNN on the standard table,
#     on benchmarks/gpu_cases.json (the same shapes scaled to a GPU's worth
#     of work) and, for the adjoint, --op conv.
# Results land in OUTDIR (default: gpu_results/). Exits non-zero if any
# step failed, after running them all.
#
# Usage: benchmarks/run_on_gpu.sh [OUTDIR]
# Needs: numba-cuda with NumPy < 2.5 (NVIDIA/numba-cuda#907; where the
# machine's image has NumPy 2.5, put a NumPy 2.4 first on PYTHONPATH), pytest,
# pytest-xdist and hypothesis; PyTorch with CUDA for the comparison.
# PYTHON names the interpreter (default: python3).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_results}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$python" - <<'PY'
import sys
import numba, numpy
from numba import cuda
print("python", sys.version.split()[0], "| numba", numba.__version__,
      "| numpy", numpy.__version__)
try:
    import torch
    print("torch", torch.__version__, "| cuDNN", torch.backends.cudnn.version())
except ImportError:
    print("torch: not installed")
device = cuda.get_current_device()
print(device.name.decode() if isinstance(device.name, bytes) else device.name,
      "compute capability", device.compute_capability)
PY
} 2>&1 | tee "$out/machine.txt" || status=1

bench() {   # NAME, then bench's arguments
    local name=$1
    shift
    "$python" -m numba_deconv bench --device cuda --min-time 0.3 --quiet \
        --json "$out/$name.json" "$@" 2>&1 | tee "$out/$name.md" || status=1
}
bench standard
bench scaled --case-file benchmarks/gpu_cases.json --no-gemm
bench conv --op conv --no-gemm

"$python" -m pytest tests/cuda -q -n 8 -p no:cacheprovider 2>&1 | tee "$out/tests.txt" \
    || status=1
exit $status
