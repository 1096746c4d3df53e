"""The sdist and the wheel: the sdist carries what its own test suite needs,
the wheel only the package, both the licence and the metadata.

Builds with ``python -m build --no-isolation`` (no download: the running
environment's setuptools builds), so it is skipped where ``build`` is not
installed (``pip install ".[test]"`` installs it). The sdist is built
first and the wheel from the unpacked sdist, as PyPI's tooling does, which
also proves the sdist builds.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

pytest.importorskip("build")
setuptools = pytest.importorskip("setuptools")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if int(setuptools.__version__.split(".")[0]) < 77:
    pytest.skip("building needs setuptools >= 77 (pyproject.toml's build-system)",
                allow_module_level=True)
if not os.path.exists(os.path.join(ROOT, "pyproject.toml")):
    pytest.skip("not run from a source tree", allow_module_level=True)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(out), ROOT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        sdist_files = {n.split("/", 1)[1] for n in names if "/" in n}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    with zipfile.ZipFile(wheel) as whl:
        wheel_files = set(whl.namelist())
        meta = next(n for n in wheel_files if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(meta).decode()
        entry_points = whl.read(meta.replace("METADATA", "entry_points.txt")).decode()
    return {"sdist": sdist_files, "wheel": wheel_files, "pkg_info": pkg_info,
            "metadata": metadata, "entry_points": entry_points}


def test_sdist_carries_its_test_suite(dists):
    files = dists["sdist"]
    for needed in ("LICENSE", "README.md", "pyproject.toml", "MANIFEST.in",
                   "tests/conftest.py", "tests/reference.py", "tests/helpers.py",
                   "tests/cuda/conftest.py", "tests/cuda/cuda_env.py",
                   "tests/cuda/test_no_gpu.py", "tests/cuda/test_cuda_backend.py",
                   # read by tests: the spread table, the asv helpers, the examples
                   "benchmarks/spread_cases.json", "benchmarks/gpu_cases.json",
                   "benchmarks/run_on_gpu.sh", "benchmarks/_common.py",
                   "benchmarks/__init__.py", "examples/deblur_lsqr.py",
                   "numba_deconv/bench/cases.json", "numba_deconv/__main__.py"):
        assert needed in files, needed
    here = {f"tests/{name}" for name in os.listdir(os.path.join(ROOT, "tests"))
            if name.startswith("test_") and name.endswith(".py")}
    assert here <= files, sorted(here - files)
    assert any(f.startswith("docs/") for f in files)


def test_sdist_leaves_out_build_products(dists):
    for name in dists["sdist"]:
        assert "__pycache__" not in name and not name.endswith((".pyc", ".nbi", ".nbc")), name
        assert not name.startswith(("docs/_build/", ".venv", "dist/", "build/")), name


def test_wheel_is_the_package_only(dists):
    files = dists["wheel"]
    assert {"numba_deconv/py.typed", "numba_deconv/__init__.py",
            "numba_deconv/bench/cases.json"} <= set(files)
    assert "numba_deconv/cpu/kernels.py" in files and "numba_deconv/cuda/kernels.py" in files
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files)
    assert not [f for f in files if f.startswith(("tests/", "benchmarks/", "examples/",
                                                   "docs/"))]
    assert "numba-deconv = numba_deconv.__main__:main" in dists["entry_points"]


def test_metadata(dists):
    for text in (dists["pkg_info"], dists["metadata"]):
        meta = email.parser.Parser().parsestr(text)
        assert meta["Name"] == "numba_deconv"
        assert meta["License-Expression"] == "BSD-3-Clause"
        assert meta["Requires-Python"] == ">=3.10"
        classifiers = meta.get_all("Classifier")
        for wanted in ("Programming Language :: Python :: 3.10",
                       "Operating System :: OS Independent",
                       "Topic :: Scientific/Engineering",
                       "Intended Audience :: Science/Research"):
            assert wanted in classifiers
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
        assert {"Homepage", "Documentation", "Source"} <= set(urls)
        assert "LICENSE" in meta.get_all("License-File")


def test_license_file():
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026 The numba_deconv developers" in text
