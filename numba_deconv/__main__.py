"""Command line: ``python -m numba_deconv {demo, explain, bench, info, precompile}``."""

from __future__ import annotations

import argparse
import sys

def _demo(args) -> int:
    from .explain import demo_text

    print(demo_text())
    return 0


def _info(args) -> int:
    import platform

    import llvmlite
    import numba
    import numpy as np

    from . import __version__, cache_info
    from .cpu import kernels

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
    cache = kernels.direct_rows._cache
    print(f"disk cache   {getattr(cache, '_cache_path', 'n/a')}")
    print(f"cuda         {_cuda_status()}")
    variants = cache_info()
    print(f"compiled     {len(variants)} variant(s) in this process")
    return 0


def _cuda_status() -> str:
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda not installed (pip install numba_deconv[cuda])"
    try:
        if cuda.is_available():
            return f"available: {cuda.get_current_device().name}"
    except Exception as err:  # a broken driver must not break `info`
        return f"unavailable ({err})"
    return "no usable GPU or driver"


def _precompile(args) -> int:
    from . import precompile

    def show(v):  # a line per kernel as it is ready
        print(f"{v['device']:4} rank {v['rank']} {v['dtype']:10} {v['layout']:14} "
              f"{v['strategy']:7} {v['kernel']:18} {v['compile_seconds'] * 1e3:9.1f} ms",
              flush=True)

    variants = precompile(ranks=args.ranks, dtypes=args.dtypes, strategies=args.strategies,
                          device=args.device, progress=show)
    total = sum(v["compile_seconds"] for v in variants)
    print(f"{len(variants)} variants ready in Numba's on-disk cache ({total:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._dispatch import STRATEGIES
    from ._plan import DTYPES
    from .bench import add_parser as add_bench_parser
    from .explain import add_parser as add_explain_parser

    parser = argparse.ArgumentParser(
        prog="python -m numba_deconv",
        description="Transposed convolution, exact and fast, compiled with Numba.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="walk through TensorFlow's worked example").set_defaults(
        func=_demo)
    add_explain_parser(sub)
    add_bench_parser(sub)
    sub.add_parser("info", help="versions, threads, caches, CUDA").set_defaults(func=_info)
    pre = sub.add_parser("precompile", help="compile kernels into the on-disk cache")
    pre.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3])
    pre.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    pre.add_argument("--strategies", nargs="+", default=None, choices=list(STRATEGIES),
                     help="default: every strategy of the device")
    pre.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    pre.set_defaults(func=_precompile)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
