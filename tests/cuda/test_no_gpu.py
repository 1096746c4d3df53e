"""What a machine without a GPU does (and what never needs one).

These tests are exempt from the directory-level skip in conftest.py: the
GPU-less checks run exactly when neither the simulator nor a GPU is there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import numba_deconv
from cuda_env import SIMULATING, gpu_available

no_gpu_only = pytest.mark.skipif(
    SIMULATING or gpu_available(),
    reason="checks the GPU-less behaviour; a GPU or the simulator is present")


def test_import_never_imports_numba_cuda():
    code = ("import sys, numba_deconv, numba_deconv.cuda, numba_deconv.cuda.backend; "
            "print('numba.cuda' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@no_gpu_only
def test_device_cuda_raises_runtime_error():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 2, 2))
    with pytest.raises(RuntimeError, match="needs a CUDA GPU and driver, and none is "
                                           "available") as info:
        numba_deconv.conv_transpose(x, w, device="cuda")
    assert "device='cpu'" in str(info.value)


class _FakeDeviceArray:
    """Claims to live on a GPU (for routing only; never dereferenced)."""

    def __init__(self, shape, typestr="<f8"):
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": typestr, "data": (0, False), "version": 3}


@no_gpu_only
def test_auto_with_a_device_array_raises_runtime_error():
    w = np.ones((1, 1, 2, 2))
    with pytest.raises(RuntimeError, match="none is available"):
        numba_deconv.conv_transpose(_FakeDeviceArray((1, 1, 2, 2)), w)


@no_gpu_only
def test_bad_arguments_are_reported_before_the_gpu_check():
    """A bad argument is a ValueError with the CPU's message, GPU or not."""
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError) as cpu:
        numba_deconv.conv_transpose(x, w, stride=0, device="cpu")
    with pytest.raises(ValueError) as gpu:
        numba_deconv.conv_transpose(x, w, stride=0, device="cuda")
    assert str(gpu.value) == str(cpu.value)
    with pytest.raises(ValueError, match="x has shape"):
        numba_deconv.conv_transpose(_FakeDeviceArray((2, 2)), w)


def test_cpu_and_auto_with_host_arrays_need_no_gpu():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(numba_deconv.conv_transpose(x, w),
                                  numba_deconv.conv_transpose(x, w, device="cpu"))


@pytest.mark.skipif(SIMULATING, reason="the simulator does not compile to PTX")
@pytest.mark.parametrize("kernel", ["gather", "gather_single", "conv_gather", "conv_single",
                                    "fold"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_kernels_compile_to_ptx_without_atomics(kernel, dtype):
    """The real CUDA target types and compiles each kernel for the exact
    signature the backend compiles and launches it with (no GPU needed,
    only NVVM: ``pip install "numba-cuda[cu13]"``), and the PTX has no
    atomic instruction: every output is written by one thread. (The
    simulator checks neither: conv's signature once had an argument too
    many, which only a real compile refuses.)"""
    cuda = pytest.importorskip("numba.cuda")
    from numba_deconv.cuda import kernels
    from numba_deconv.cuda.backend import kernel_signature

    function = {"gather": kernels.gather_kernel, "gather_single": kernels.gather_kernel_single,
                "conv_gather": kernels.conv_kernel, "conv_single": kernels.conv_kernel_single,
                "fold": kernels.fold_kernel}[kernel]
    try:
        ptx, _ = cuda.compile_ptx(function.py_func, kernel_signature(dtype, kernel),
                                  cc=(9, 0))
    except Exception as err:  # no NVVM/NVRTC libraries (or, with Numba's
        # deprecated built-in CUDA target, no driver) on this machine
        text = repr(err).lower()
        if "nvvm" in text or "nvrtc" in text or type(err).__name__ in (
                "CudaSupportError", "DynamicLibNotFoundError"):
            pytest.skip(f"CUDA compiler toolchain not available: {type(err).__name__}")
        raise
    assert ".entry" in ptx
    assert not re.search(r"^\s*(atom|red)\.", ptx, re.MULTILINE)


@pytest.mark.skipif(SIMULATING, reason="the simulator's kernels take no launch options")
def test_gather_and_conv_kernels_cap_their_registers():
    """The cap that lifted the H200's occupancy from 12 %: without it the
    gather kernel holds 134 registers a thread."""
    pytest.importorskip("numba.cuda")
    from numba_deconv.cuda import kernels

    for kernel in (kernels.gather_kernel, kernels.gather_kernel_single, kernels.conv_kernel,
                   kernels.conv_kernel_single):
        assert kernel.targetoptions.get("max_registers") == kernels.MAX_REGISTERS


# Run in a fresh process without the simulator: NumPy 2.5's missing
# row_stack, made by deleting it, and a GPU that claims to be there.
_NUMPY_2_5_PROBE = """
import numpy
try:
    from numba import cuda
except ImportError:
    raise SystemExit("no numba.cuda")
del numpy.row_stack
cuda.is_available = lambda: True
import numba_deconv
numba_deconv.conv_transpose(numpy.ones((1, 1, 2)), numpy.ones((1, 1, 2)), device="cuda")
"""


def test_numba_cuda_on_numpy_2_5_is_a_clear_error():
    """numba-cuda <= 0.30 cannot load its CUDA target where numpy.row_stack
    is gone (NumPy 2.5): the call says so and names the fix, instead of an
    AttributeError from inside numba-cuda's first compile."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", _NUMPY_2_5_PROBE], capture_output=True,
                          text=True, env=env)
    if "no numba.cuda" in done.stderr:
        pytest.skip("numba.cuda is not installed")
    if done.returncode == 0:
        pytest.skip("this numba-cuda loads without numpy.row_stack (fixed upstream)")
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: numba-cuda"), done.stderr
    assert "NumPy 2.5 removed" in last and "pip install 'numpy<2.5'" in last
