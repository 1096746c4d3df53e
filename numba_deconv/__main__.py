"""Command line: ``python -m numba_deconv {demo, explain, bench, info, precompile}``
(installed as the ``numba-deconv`` script too).

A bad argument of any command is a usage error: one ``prog: error: ...``
line after the usage, exit status 2, no traceback. A valid request that
this machine cannot serve (``precompile --device cuda`` without a GPU)
is one ``prog: error: ...`` line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._version import __version__

PROG = "python -m numba_deconv"


class UsageError(Exception):
    """A bad argument found while running a command: reported like argparse's own (exit 2)."""


class Unavailable(Exception):
    """A valid request this machine cannot serve (exit 1)."""


def _demo(args) -> int:
    from .explain import demo_text

    print(demo_text())
    return 0


def _explain(args) -> int:
    from .explain import cli_explain

    try:
        return cli_explain(args)   # prints its own one-line error for a bad shape
    except (MemoryError, OverflowError) as err:
        raise UsageError(f"these shapes are too large to explain ({type(err).__name__}: "
                         f"{err})") from None
    except (ValueError, TypeError, NotImplementedError) as err:   # while printing it
        raise UsageError(str(err)) from None


# ------------------------------------------------------------------- info
def kernel_cache_dirs() -> list:
    """The directories where Numba keeps numba_deconv's compiled kernels.

    One per package directory that holds kernel sources, found the way
    Numba finds it for a function of that directory: ``NUMBA_CACHE_DIR``
    when set, else the ``__pycache__`` beside the source when writable, else
    the user-wide cache. Each directory is numba_deconv's alone (Numba keys
    it by the source directory), so every ``.nbi``/``.nbc`` file in it is
    one of ours.
    """
    from numba.core.caching import CacheImpl

    from ._cache import PackageStampLocator, kernel_sources

    def probe():  # a locator reads the line number of a function; any will do
        pass

    dirs = []
    for source in kernel_sources():
        for locator_class in CacheImpl._locator_classes:
            if locator_class is PackageStampLocator:   # it wraps the others
                continue
            try:
                locator = locator_class.from_function(probe, source)
            except Exception:   # a locator that cannot serve this file
                locator = None
            if locator is not None:
                path = locator.get_cache_path()
                if path not in dirs:
                    dirs.append(path)
                break
    return dirs


def disk_cache_summary(dirs=None) -> dict:
    """What Numba's on-disk cache holds for numba_deconv: ``dirs``, and the
    number of ``index_files`` (``.nbi``, one per cached function), ``data_files``
    (``.nbc``, one per compiled signature) and their ``bytes``, over all dirs."""
    dirs = kernel_cache_dirs() if dirs is None else dirs
    index = data = size = 0
    for path in dirs:
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            kind = os.path.splitext(entry.name)[1]
            if kind not in (".nbi", ".nbc") or not entry.is_file():
                continue
            index += kind == ".nbi"
            data += kind == ".nbc"
            try:
                size += entry.stat().st_size
            except OSError:
                pass
    return {"dirs": dirs, "index_files": index, "data_files": data, "bytes": size}


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _info(args) -> int:
    import platform

    import llvmlite
    import numba
    import numpy as np

    from . import cache_info

    print(f"numba_deconv {__version__}")
    print(f"python       {platform.python_version()} ({platform.machine()})")
    print(f"numpy        {np.__version__}")
    print(f"numba        {numba.__version__} (llvmlite {llvmlite.__version__})")
    print(f"threads      {numba.get_num_threads()} "
          f"(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})")
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialised yet (first parallel call chooses)"
    print(f"threading    {layer}")
    disk = disk_cache_summary()
    if not disk["dirs"]:
        print("disk cache   none: no writable cache directory (set NUMBA_CACHE_DIR); "
              "every process compiles its kernels")
    else:
        print(f"disk cache   {disk['index_files']} index (.nbi) and {disk['data_files']} "
              f"data (.nbc) files, {_size(disk['bytes'])}, of numba_deconv's kernels"
              + ("" if disk["index_files"] else
                 " (empty: python -m numba_deconv precompile fills it)"))
        for i, path in enumerate(disk["dirs"]):
            print(f"{'  in' if i == 0 else '':12} {path}")
    print(f"cuda         {_cuda_status()}")
    variants = cache_info()
    print(f"compiled     {len(variants)} variant(s) in this process "
          "(compiled or loaded from the disk cache since it started)")
    return 0


def _cuda_status() -> str:
    """``available: <device>`` when ``--device cuda`` can run, else why not."""
    try:
        from numba import config, cuda
    except ImportError:
        return 'numba-cuda not installed (pip install ".[cuda]")'
    try:
        available = cuda.is_available()
    except Exception as err:  # a broken driver must not break `info`
        return f"unavailable ({err})"
    if not available:
        return "no usable GPU or driver"
    if getattr(config, "ENABLE_CUDASIM", 0):
        return "available: Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        name = cuda.get_current_device().name
    except Exception as err:
        return f"available (device name unknown: {err})"
    return f"available: {name.decode() if isinstance(name, bytes) else name}"


# ------------------------------------------------------------- precompile
def _rank(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a spatial rank (an int >= 1)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a spatial rank (an int >= 1)")
    return value


def _check_precompile(args):
    """The combinations argparse cannot check alone: a message, or None."""
    if args.device == "cuda":
        from ._dispatch import CUDA_STRATEGIES
        from .cuda.backend import MAX_RANK   # imports no numba.cuda

        high = [r for r in args.ranks if r > MAX_RANK]
        if high:
            return (f"--device cuda: no CUDA kernel for rank(s) {high} (the CUDA backend "
                    f"runs ranks 1-{MAX_RANK}; --device cpu has every rank)")
        bad = [s for s in args.strategies or () if s not in CUDA_STRATEGIES]
        if bad:
            return (f"--device cuda has the strategy {', '.join(CUDA_STRATEGIES)} only, "
                    f"not {', '.join(bad)}")
    return None


def _precompile(args) -> int:
    from . import precompile

    if args.device == "cuda":
        status = _cuda_status()
        if not status.startswith("available"):
            raise Unavailable(f"--device cuda needs a CUDA GPU: {status}; "
                              "--device cpu compiles the CPU kernels")

    def show(v):  # a line per kernel as it is ready
        print(f"{v['device']:4} rank {v['rank']} {v['dtype']:10} {v['layout']:14} "
              f"{v['strategy']:7} {v['kernel']:18} {v['compile_seconds'] * 1e3:9.1f} ms",
              flush=True)

    try:
        variants = precompile(ranks=args.ranks, dtypes=args.dtypes,
                              strategies=args.strategies, layouts=args.layouts,
                              device=args.device, progress=show)
    except (ValueError, NotImplementedError) as err:
        raise UsageError(str(err)) from None
    except RuntimeError as err:
        if args.device != "cuda":
            raise
        raise Unavailable(str(err)) from None
    total = sum(v["compile_seconds"] for v in variants)
    print(f"{len(variants)} variants ready in Numba's on-disk cache ({total:.1f} s)")
    return 0


# ------------------------------------------------------------------ parser
def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The whole command line; ``parser.commands`` maps each command to its parser."""
    from ._dispatch import STRATEGIES
    from ._plan import DTYPES, LAYOUTS
    from .bench import add_parser as add_bench_parser
    from .explain import add_parser as add_explain_parser

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Transposed convolution, exact and fast, compiled with Numba.")
    parser.add_argument("--version", action="version", version=f"numba_deconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    sub.add_parser("demo", help="walk through TensorFlow's worked example",
                   description="Walk through TensorFlow's worked example of a "
                               "transposed convolution (2x2 input, 3x3 kernel, "
                               "stride 2) with its arithmetic.").set_defaults(func=_demo)
    add_explain_parser(sub).set_defaults(func=_explain)
    add_bench_parser(sub)
    sub.add_parser("info", help="versions, threads, the disk cache, CUDA",
                   description="Versions, threads, what Numba's on-disk cache holds "
                               "of numba_deconv's kernels, and CUDA.").set_defaults(func=_info)
    strategies = ", ".join(STRATEGIES)
    pre = sub.add_parser(
        "precompile", help="compile kernels into the on-disk cache", usage="%(prog)s [options]",
        description="Compile numba_deconv's kernels into Numba's on-disk cache, so "
                    "that later processes load them instead of compiling them (a "
                    "first call then takes milliseconds, not seconds). A line is "
                    "printed per kernel as it is ready.")
    pre.add_argument("--ranks", type=_rank, nargs="+", default=[1, 2, 3], metavar="RANK",
                     help="spatial ranks to compile for: 1 (signals), 2 (images), "
                          "3 (volumes) or higher on the CPU (default: 1 2 3)")
    pre.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES,
                     metavar="DTYPE",
                     help=f"data types: any of {', '.join(DTYPES)} (default: all four)")
    pre.add_argument("--strategies", nargs="+", default=None, choices=list(STRATEGIES),
                     metavar="STRATEGY",
                     help=f"CPU strategies: {strategies}; CUDA has gather only "
                          "(default: every strategy of the device)")
    pre.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS,
                     metavar="LAYOUT",
                     help=f"data layouts: any of {', '.join(LAYOUTS)} (default: both; "
                          "channels_last adds three kernels of its own)")
    pre.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                     help="whose kernels: cpu, or cuda (needs a GPU and "
                          "numba-cuda) (default: cpu)")
    pre.set_defaults(func=_precompile, check=_check_precompile)
    parser.commands = sub.choices
    return parser


def _prog() -> str:
    """``numba-deconv`` when run as the installed script, else ``python -m numba_deconv``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("__main__.py", "-c") and not name.endswith(".py") \
        else PROG


def main(argv=None) -> int:
    parser = build_parser(_prog() if argv is None else PROG)
    args = parser.parse_args(argv)
    command = parser.commands[args.command]
    check = getattr(args, "check", None)
    problem = check(args) if check else None
    if problem:
        command.error(problem)   # usage and one line, exit 2
    try:
        return args.func(args)
    except UsageError as err:
        command.error(str(err))
    except Unavailable as err:
        print(f"{command.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{command.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
