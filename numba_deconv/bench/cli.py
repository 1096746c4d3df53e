"""``python -m numba_deconv bench``: the options, and a run from them."""

import argparse
import importlib.util
import json
import math
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


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text}")
    return value


def _writable_file(text):
    """An output path whose directory exists: checked now, not after the run."""
    if not text:
        raise argparse.ArgumentTypeError("needs a file name")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file name")
    folder = os.path.dirname(text) or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: directory {folder!r} "
                                         "does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: directory {folder!r} "
                                         "is not writable")
    return text


def _image_file(text):
    """``--plot``'s file: an image format named by its extension, in a directory that exists."""
    _writable_file(text)
    if not os.path.splitext(text)[1].strip("."):
        raise argparse.ArgumentTypeError(
            f"{text!r} has no extension to name the image format; write e.g. bench.png "
            "(or .svg, .pdf)")
    return text


def check_args(args):
    """What argparse cannot check option by option: a message for the first
    problem, or None. Runs before anything is timed."""
    for name, least in (("threads", 1), ("rounds", 1), ("gemm_size", 1)):
        if getattr(args, name) < least:
            return f"--{name.replace('_', '-')} must be at least {least}"
    if args.repeat is not None and args.repeat < 1:
        return "--repeat must be at least 1"
    if not (args.min_time >= 0 and math.isfinite(args.min_time)):
        return "--min-time must be a number of seconds >= 0"
    if args.spread is not None and args.case_file:
        return "--spread and --case-file exclude each other"
    if args.save_cases and args.spread is None:
        return "--save-cases writes the shapes of --spread N; give --spread too"
    if args.in_turn and (args.cold or args.variants or args.device == "cuda"):
        return ("--in-turn times the peers' processes side by side; not with --cold, "
                "--variants or --device cuda")
    if args.variants and not args.cold and (args.op != "conv_transpose" or args.plan):
        return "--variants times --op conv_transpose alone (not with --plan)"
    if args.device == "cuda":
        if args.op not in ("conv_transpose", "conv"):
            return "--device cuda times --op conv_transpose or conv (the CUDA kernels)"
        extra = [o for o, v in (("--plan", args.plan), ("--cold", args.cold),
                                ("--variants", args.variants), ("--plot", args.plot))
                 if v]
        if extra:
            return f"--device cuda does not take {' or '.join(extra)}"
    if args.plan and args.op not in ("conv_transpose", "conv"):
        return "--plan times --op conv_transpose or conv (numba_deconv.plan has no other)"
    if args.cold:
        if args.op not in ("conv_transpose", "conv"):
            return "--cold times --op conv_transpose or conv"
        extra = [o for o, v in (("--plot", args.plot), ("--json", args.json)) if v]
        if extra:
            return (f"--cold prints its own table; {' and '.join(extra)} "
                    f"{'does' if len(extra) == 1 else 'do'} not apply to it")
    if args.plot:
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError:
            return '--plot needs matplotlib: pip install matplotlib (or pip install ".[bench]")'
        kinds = FigureCanvasBase.get_supported_filetypes()
        kind = os.path.splitext(args.plot)[1].lstrip(".").lower()
        if kind not in kinds:
            return (f"--plot {args.plot}: matplotlib cannot write .{kind} files; use one of "
                    f"{', '.join('.' + k for k in sorted(kinds))}")
    return None


def configure_parser(p):
    """Add the bench options to an ``argparse`` parser."""
    p.add_argument("--op", choices=list(OPS), default="conv_transpose",
                   help="the operation to time on the cases; conv runs the convolution "
                        "whose adjoint each case is, the weight gradients are compared "
                        "with PyTorch only (default: conv_transpose)")
    p.add_argument("--case", nargs="+", action="extend", metavar="NAME",
                   help="cases of the table to run (default: all); repeatable")
    p.add_argument("--case-file", metavar="FILE.json",
                   help="run your own shapes: a JSON file in the format of "
                        "numba_deconv/bench/cases.json (default: the standard "
                        "table); benchmarks/spread_cases.json is a wider spread")
    p.add_argument("--spread", type=_positive_int, metavar="N",
                   help="run a seeded random spread of N shapes instead of the table "
                        "(ranks 1-3, every kind of kernel, stride, padding and channel "
                        "split; numba_deconv/bench/spread.py)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="the spread's seed (default: 0)")
    p.add_argument("--save-cases", metavar="FILE.json", type=_writable_file,
                   help="with --spread: also write its shapes as a case file (for "
                        "--case-file)")
    p.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES,
                   help="run the cases in these dtypes (default: each case's own)")
    p.add_argument("--peers", type=_peer_list, default=list(PEERS), metavar="LIST",
                   help="comma-separated peers to time, or 'none' "
                        f"(default: {','.join(PEERS)})")
    p.add_argument("--min-time", type=_seconds, default=1.0, metavar="SECONDS",
                   help="time to spend sampling each case per library; 0 takes the "
                        "fewest samples (default: 1)")
    p.add_argument("--repeat", type=_positive_int, default=None, metavar="N",
                   help="exactly N samples per case instead of --min-time")
    p.add_argument("--rounds", type=_positive_int, default=1, metavar="N",
                   help="run every library N times, interleaved, keeping each "
                        "one's fastest median (steadier on a busy machine) (default: 1)")
    p.add_argument("--in-turn", action="store_true",
                   help="keep every library's process open and time them in turn, "
                        "case by case, 15 rounds (or --repeat) of a batch of calls "
                        "each, so that a slow spell of the machine falls on all alike")
    p.add_argument("--threads", type=_positive_int, default=2, metavar="N",
                   help="threads per library (default: 2)")
    p.add_argument("--plan", action="store_true",
                   help="time ours through numba_deconv.plan: the call checked and the "
                        "weights laid out once, as ONNX Runtime's session does when "
                        "it loads (--op conv_transpose or conv)")
    p.add_argument("--no-gemm", dest="gemm", action="store_false",
                   help="skip measuring the float32 GEMM rate")
    p.add_argument("--gemm-size", type=_positive_int, default=2048, metavar="N",
                   help="size of the reference GEMM (default: 2048)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip estimating our extra peak memory")
    p.add_argument("--plot", metavar="FILE.png", type=_image_file,
                   help="also draw a grouped bar chart, in the format the extension "
                        "names (.png, .svg, .pdf, ...; needs matplotlib)")
    p.add_argument("--json", metavar="FILE.json", type=_writable_file,
                   help="also write the full results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--variants", action="store_true",
                   help="time ours on channels-last and on complex data beside the "
                        "channels-first real call, and print the ratios (no peers; "
                        "--op conv_transpose); with --cold, their cold starts "
                        "(--op conv_transpose or conv)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: time the CUDA kernels on the GPU beside PyTorch's "
                        "(cuDNN) instead of the CPU peers (default: cpu)")
    p.add_argument("--cold", action="store_true",
                   help="time the cold start instead: import plus the first call, each "
                        "in a new process, ours with an empty and then a warm Numba "
                        "cache, PyTorch's beside it (--op conv_transpose or conv)")
    p.set_defaults(func=run_from_args, check=check_args)
    return p


def add_parser(subparsers):
    """Register the ``bench`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "bench", help="time conv_transpose (or conv, or a weight gradient) against "
                      "PyTorch, ONNX Runtime, TensorFlow and JAX on the standard "
                      "workloads",
        description=DESCRIPTION, usage="%(prog)s [options]")
    return configure_parser(p)


def run_from_args(args) -> int:
    """Run ``bench`` for parsed arguments; returns the exit status."""
    problem = check_args(args)   # fail before the long run, not after
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.spread is not None:
        with tempfile.TemporaryDirectory(prefix="numba_deconv_spread_") as scratch:
            try:
                args.case_file = _write_spread(
                    args.spread, args.seed,
                    args.save_cases or os.path.join(scratch, "spread.json"))
            except (ValueError, OSError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            args.spread = args.save_cases = None
            return run_from_args(args)
    if args.cold:
        return _run_cold(args)
    if args.variants:
        return _run_variants(args)
    if args.device == "cuda":
        return _run_gpu(args)
    try:
        report = run(args.case, args.dtype, args.peers, op=args.op, min_time=args.min_time,
                     repeat=args.repeat, threads=args.threads, gemm=args.gemm,
                     gemm_size=args.gemm_size, memory=args.memory,
                     rounds=args.rounds, case_file=args.case_file, plan=args.plan,
                     in_turn=args.in_turn,
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


def _selected_pairs(args):
    """The ``(case, dtype)`` pairs ``args`` select, or None after saying why
    there are none."""
    try:
        return select_cases(load_cases(args.case_file), args.case, args.dtype)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _run_cold(args) -> int:
    from .cold import cold_start, cold_variants, format_cold_table, format_cold_variants_table

    pairs = _selected_pairs(args)
    if pairs is None:
        return 2
    progress = None if args.quiet else sys.stderr
    if args.variants:
        rows = cold_variants(pairs, op=args.op, threads=args.threads, progress=progress)
        print(format_cold_variants_table(rows, args.op))
        return 0
    torch = "torch" in args.peers and importlib.util.find_spec("torch") is not None
    rows = cold_start(pairs, op=args.op, threads=args.threads, torch=torch, progress=progress)
    print(format_cold_table(rows, args.op))
    return 0


def _run_variants(args) -> int:
    from .variants import format_variants_table, time_variants

    pairs = _selected_pairs(args)
    if pairs is None:
        return 2
    rows = time_variants(pairs, threads=args.threads, min_time=args.min_time,
                         repeat=args.repeat, progress=None if args.quiet else sys.stderr)
    print(format_variants_table(rows))
    return 0


def _run_gpu(args) -> int:
    from .gpu import format_gpu_table, gpu_yardsticks, time_on_gpu, torch_with_cuda

    pairs = _selected_pairs(args)
    if pairs is None:
        return 2
    try:
        rows = time_on_gpu(pairs, op=args.op, min_time=args.min_time,
                           progress=None if args.quiet else sys.stderr)
    except RuntimeError as e:   # no GPU
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch = torch_with_cuda()
    yardsticks = gpu_yardsticks(torch) if torch is not None and args.gemm else {}
    print(format_gpu_table(rows, yardsticks))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"op": args.op, "yardsticks": yardsticks,
                       "rows": [r._asdict() for r in rows]}, f, indent=1)
    return 0


def main(argv=None) -> int:
    """``python -m numba_deconv.bench`` without the package's CLI."""
    from .._version import __version__

    p = argparse.ArgumentParser(prog="python -m numba_deconv.bench", description=DESCRIPTION,
                                usage="%(prog)s [options]")
    p.add_argument("--version", action="version", version=f"numba_deconv {__version__}")
    args = configure_parser(p).parse_args(argv)
    problem = check_args(args)
    if problem:
        p.error(problem)   # usage and one line, exit 2
    return args.func(args)
