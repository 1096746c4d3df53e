"""Numba's on-disk cache, stamped with the whole package's sources.

Numba stamps a cached function with its own file's modification time and
size only. A kernel that inlines code from another module (the phase
arithmetic of ``_phases``, the SIMD tiles of ``cpu/simd``, a tunable of
``config``) would load stale machine code after that module changed. Every
numba_deconv function is therefore stamped with one hash of the package's
version and the contents of all its source files: an upgrade or any edit
recompiles everything on first use, and the index written under the old
stamp is replaced.

:func:`install` must run before any kernel module is imported: a
dispatcher picks its cache locator when it is decorated.
"""

from __future__ import annotations

import functools
import hashlib
import os

from numba.core.caching import CacheImpl, _CacheLocator

from ._version import __version__

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=1)
def package_stamp() -> str:
    """SHA-256 of the package version and every ``.py`` file of the package
    (relative path and contents, in sorted order)."""
    digest = hashlib.sha256(__version__.encode())
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, _PACKAGE).encode())
            with open(path, "rb") as source:
                digest.update(source.read())
    return digest.hexdigest()


class PackageStampLocator(_CacheLocator):
    """Numba's own locator for a numba_deconv function (where the cache
    lives is unchanged), with :func:`package_stamp` as the source stamp."""

    def __init__(self, base: _CacheLocator):
        self._base = base

    def ensure_cache_path(self):
        self._base.ensure_cache_path()

    def get_cache_path(self):
        return self._base.get_cache_path()

    def get_source_stamp(self):
        return package_stamp()

    def get_disambiguator(self):
        return self._base.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
            return None
        for locator_class in CacheImpl._locator_classes:
            if locator_class is not cls:
                base = locator_class.from_function(py_func, py_file)
                if base is not None:
                    return cls(base)
        return None


def install() -> None:
    """Put :class:`PackageStampLocator` first among Numba's locators (once)."""
    if PackageStampLocator not in CacheImpl._locator_classes:
        CacheImpl._locator_classes.insert(0, PackageStampLocator)
