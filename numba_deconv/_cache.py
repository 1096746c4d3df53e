"""Numba's on-disk cache, stamped with the whole package's sources.

Numba stamps a cached function with its own file's modification time and
size only. A kernel that inlines code from another module (the phase
arithmetic of ``_phases``, the SIMD tiles of ``cpu/simd``, a tunable of
``config``) would load stale machine code after that module changed. Every
numba_deconv function is therefore stamped with one hash of the package's
version and the contents of every source file that compiled code can
reach: the modules that define jitted functions and, transitively, the
package modules they import (``config``'s tunables are frozen into the
machine code as constants). An upgrade or an edit of any of them
recompiles everything on first use, and the index written under the old
stamp is replaced; an edit of host-only code (the front ends, the bench,
the CLI) keeps the cache.

:func:`install` must run before any kernel module is imported: a
dispatcher picks its cache locator when it is decorated.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import stat
import warnings

from numba.core.caching import CacheImpl, _CacheLocator

from ._version import __version__

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


# A decorator or call that makes Numba compile the function it wraps.
_JITTED = re.compile(r"@(?:numba\.|cuda\.)?(?:njit|jit|overload|intrinsic|register_jitable)\b")


def _module_level(statements):
    """The statements that run at import, into ``if`` and ``try`` blocks:
    the imports whose names jitted code can use as globals (a function's
    own imports are not globals, and Numba compiles none of them)."""
    for node in statements:
        yield node
        for block in ("body", "orelse", "finalbody"):
            if isinstance(node, (ast.If, ast.Try)):
                yield from _module_level(getattr(node, block, []))
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                yield from _module_level(handler.body)


def _package_imports(path: str) -> set[str]:
    """The package's own source files that module ``path`` imports."""
    with open(path, "rb") as source:
        tree = ast.parse(source.read(), path)
    here = os.path.dirname(path)
    found = set()
    for node in _module_level(tree.body):
        if isinstance(node, ast.Import):  # import numba_deconv.cpu.simd as simd
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "numba_deconv":
                    module = os.path.join(os.path.dirname(_PACKAGE), *parts)
                    found.update(c for c in (module + ".py", os.path.join(module, "__init__.py"))
                                 if os.path.isfile(c))
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here
            for _ in range(node.level - 1):
                base = os.path.dirname(base)
        elif (node.module or "").split(".")[0] == "numba_deconv":
            base = os.path.dirname(_PACKAGE)
        else:
            continue
        module = os.path.join(base, *node.module.split(".")) if node.module else base
        for alias in node.names:
            # ``from .. import _phases`` imports a submodule; ``from ..config
            # import FASTMATH`` a name of a module (or of a package's __init__).
            for candidate in (os.path.join(module, alias.name + ".py"), module + ".py",
                              os.path.join(module, "__init__.py")):
                if os.path.isfile(candidate):
                    found.add(candidate)
                    break
    return found


def kernel_sources() -> list[str]:
    """Every package source that jitted code can reach, sorted: the files
    with a jit decorator and the package modules they import, transitively."""
    pending = []
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".py"):
                with open(path, encoding="utf-8") as source:
                    if _JITTED.search(source.read()):
                        pending.append(path)
    reached = set()
    while pending:
        path = pending.pop()
        if path not in reached:
            reached.add(path)
            pending.extend(_package_imports(path) - reached)
    return sorted(reached)


@functools.lru_cache(maxsize=1)
def package_stamp() -> str:
    """SHA-256 of the package version and every file of
    :func:`kernel_sources` (relative path and contents, in sorted order)."""
    digest = hashlib.sha256(__version__.encode())
    for path in kernel_sources():
        digest.update(os.path.relpath(path, _PACKAGE).encode())
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()


class PackageStampLocator(_CacheLocator):
    """Numba's own locator for a numba_deconv function (where the cache
    lives is unchanged), with :func:`package_stamp` as the source stamp."""

    def __init__(self, base: _CacheLocator):
        self._base = base

    def __getattr__(self, name):
        # What Numba reads off a locator beyond its interface (such as
        # ``_py_file`` when it warns that a function cannot be cached).
        return getattr(self._base, name)

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


def warn_if_others_can_write(directory: str | None) -> None:
    """Warn (once: ``warnings`` shows a message once per place) where Numba's
    cache directory can be written by other users: the cache holds pickled
    code that a process loads and runs, so whoever can write it can run
    code as the user who imports numba_deconv."""
    if not directory:
        return
    try:
        mode = os.stat(directory).st_mode
    except OSError:  # not made yet: Numba creates it with the user's umask
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        warnings.warn(
            f"NUMBA_CACHE_DIR={directory!r} can be written by other users; Numba's cache "
            "holds pickled code that numba_deconv loads and runs, so anyone who can write "
            "there can run code as you. Use a directory only you can write.",
            UserWarning, stacklevel=3)


def install() -> None:
    """Put :class:`PackageStampLocator` first among Numba's locators (once)."""
    warn_if_others_can_write(os.environ.get("NUMBA_CACHE_DIR"))
    if PackageStampLocator not in CacheImpl._locator_classes:
        CacheImpl._locator_classes.insert(0, PackageStampLocator)
