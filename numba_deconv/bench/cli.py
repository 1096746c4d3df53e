"""``python -m numba_deconv bench``: the options, and a run from them."""

import argparse
import importlib.util
import json
import os
import sys
import tempfile

from .cases import DTYPES, OPS, load_cases, select_cases
from .harness import run
from .peers import PEERS
from .report import format_table, plot

DESCRIPTION = ("Benchmark conv_transpose (or --op conv, conv_weight_grad, "
               "conv_transpose_weight_grad) against PyTorch, ONNX Runtime, "
               "TensorFlow and JAX.")
_ALIASES = {"pytorch": "torch", "ort": "onnxruntime", "onnx": "onnxruntime",
            "tf": "tensorflow"}


def _peer_list(text):
    peers = [p.strip().lower() for p in text.split(",") if p.strip()]
    if peers in ([], ["none"]):
        return []
    peers = [_ALIASES.get(p, p) for p in peers]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {bad}; choose from {','.join(PEERS)} or 'none'")
    return list(dict.fromkeys(peers))


def configure_parser(p):
    """Add the bench options to an ``argparse`` parser."""
    p.add_argument("--op", choices=list(OPS), default="conv_transpose",
                   help="the operation to time on the cases (default conv_transpose); "
                        "conv runs the convolution whose adjoint each case is, the "
                        "weight gradients are compared with PyTorch only")
    p.add_argument("--case", nargs="+", action="extend", metavar="NAME",
                   help="cases of the table to run (default: all); repeatable")
    p.add_argument("--case-file", metavar="FILE.json",
                   help="run your own shapes: a JSON file in the format of "
                        "numba_deconv/bench/cases.json (default: the standard "
                        "table); benchmarks/spread_cases.json is a wider spread")
    p.add_argument("--spread", type=int, metavar="N",
                   help="run a seeded random spread of N shapes instead of the table "
                        "(ranks 1-3, every kind of kernel, stride, padding and channel "
                        "split; numba_deconv/bench/spread.py)")
    p.add_argument("--seed", type=int, default=0, help="the spread's seed (default 0)")
    p.add_argument("--save-cases", metavar="FILE.json",
                   help="write the spread's shapes as a case file (for --case-file)")
    p.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES,
                   help="run the cases in these dtypes (default: each case's own)")
    p.add_argument("--peers", type=_peer_list, default=list(PEERS), metavar="LIST",
                   help="comma-separated peers to time, or 'none' "
                        f"(default: {','.join(PEERS)})")
    p.add_argument("--min-time", type=float, default=1.0, metavar="SECONDS",
                   help="time to spend sampling each case per library (default 1)")
    p.add_argument("--repeat", type=int, default=None, metavar="N",
                   help="exactly N samples per case instead of --min-time")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="run every library N times, interleaved, keeping each "
                        "one's fastest median (steadier on a busy machine)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads per library (default 2)")
    p.add_argument("--no-gemm", dest="gemm", action="store_false",
                   help="skip measuring the float32 GEMM rate")
    p.add_argument("--gemm-size", type=int, default=2048, metavar="N",
                   help="size of the reference GEMM (default 2048)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip estimating our extra peak memory")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw a grouped bar chart (needs matplotlib)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the full results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--cold", action="store_true",
                   help="time the cold start instead: import plus the first call, each "
                        "in a new process, ours with an empty and then a warm Numba "
                        "cache, PyTorch's beside it (--op conv_transpose or conv)")
    p.set_defaults(func=run_from_args)
    return p


def add_parser(subparsers):
    """Register the ``bench`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "bench", help="time conv_transpose (or conv, or a weight gradient) against "
                      "PyTorch, ONNX Runtime, TensorFlow and JAX on the standard "
                      "workloads",
        description=DESCRIPTION)
    return configure_parser(p)


def run_from_args(args) -> int:
    """Run ``bench`` for parsed arguments; returns the exit status."""
    if args.plot:   # fail before the long run, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib: pip install matplotlib",
                  file=sys.stderr)
            return 2
    if args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    if args.spread is not None:
        if args.case_file:
            print("error: --spread and --case-file exclude each other", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="numba_deconv_spread_") as scratch:
            try:
                args.case_file = _write_spread(
                    args.spread, args.seed,
                    args.save_cases or os.path.join(scratch, "spread.json"))
            except (ValueError, OSError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            args.spread = None
            return run_from_args(args)
    if args.cold:
        return _run_cold(args)
    try:
        report = run(args.case, args.dtype, args.peers, op=args.op, min_time=args.min_time,
                     repeat=args.repeat, threads=args.threads, gemm=args.gemm,
                     gemm_size=args.gemm_size, memory=args.memory,
                     rounds=args.rounds, case_file=args.case_file,
                     progress=None if args.quiet else sys.stderr)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=1)
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _write_spread(count, seed, path) -> str:
    """The spread as a case file at ``path``; returns ``path``."""
    from .spread import random_spread

    table = {"about": f"python -m numba_deconv bench --spread {count} --seed {seed}",
             "cases": random_spread(count, seed)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
    return path


def _run_cold(args) -> int:
    from .cold import cold_start, format_cold_table

    if args.op not in ("conv_transpose", "conv"):
        print("error: --cold times --op conv_transpose or conv", file=sys.stderr)
        return 2
    try:
        pairs = select_cases(load_cases(args.case_file), args.case, args.dtype)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch = "torch" in args.peers and importlib.util.find_spec("torch") is not None
    rows = cold_start(pairs, op=args.op, threads=args.threads, torch=torch,
                      progress=None if args.quiet else sys.stderr)
    print(format_cold_table(rows, args.op))
    return 0


def main(argv=None) -> int:
    """``python -m numba_deconv.bench`` without the package's CLI."""
    p = configure_parser(argparse.ArgumentParser(prog="numba_deconv bench",
                                                 description=DESCRIPTION))
    args = p.parse_args(argv)
    return args.func(args)
