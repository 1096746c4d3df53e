"""Results of a run and their presentation: the Markdown table and the plot."""

import contextlib
import dataclasses
import os
import platform

from .cases import OPS
from .peers import OURS, PEER_LABELS


@dataclasses.dataclass
class Result:
    """One library on one (case, dtype)."""

    status: str                     # ok, n/a, error, mismatch, not installed
    timing: object = None           # a harness.Timing
    reason: str = ""
    workspace: int | None = None    # bytes (ours only)
    max_err: float | None = None    # max |peer - ours| / max |ours|

    @property
    def seconds(self):
        return self.timing.median if (self.timing and self.status == "ok") else None


@dataclasses.dataclass
class Row:
    case: object                    # a cases.Case
    dtype: str
    results: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self):
        return self.case.name if self.dtype == self.case.dtype else \
            f"{self.case.name}[{self.dtype}]"

    @property
    def ours(self):
        return self.results.get(OURS, Result("not run")).seconds

    def best_peer(self):
        """``(name, seconds)`` of the fastest peer that ran and agreed."""
        times = [(r.seconds, lib) for lib, r in self.results.items()
                 if lib != OURS and r.seconds is not None]
        if not times:
            return None, None
        t, lib = min(times)
        return lib, t

    def speedup(self):
        _, t = self.best_peer()
        return None if t is None or self.ours is None else t / self.ours

    def gflops(self):
        return None if self.ours is None else self.case.flops / self.ours / 1e9


@dataclasses.dataclass
class Report:
    rows: list
    libs: list                      # [OURS, *peers] in column order
    versions: dict                  # lib -> version string or None if missing
    gemm_gflops: float | None
    threads: int
    machine: str
    op: str = "conv_transpose"
    peaks: dict = dataclasses.field(default_factory=dict)  # dtype -> FMA peak GFLOP/s
    plan: bool = False              # ours timed through numba_deconv.plan
    in_turn: bool = False           # the libraries timed in turn, case by case

    def to_dict(self):
        rows = [{"case": row.case.name, "dtype": row.dtype, "flops": row.case.flops,
                 "results": {lib: {"status": r.status, "reason": r.reason,
                                   "timing": r.timing.to_dict() if r.timing else None,
                                   "workspace": r.workspace, "max_err": r.max_err}
                             for lib, r in row.results.items()},
                 "best_peer": row.best_peer()[0], "speedup": row.speedup()}
                for row in self.rows]
        return {"op": self.op, "plan": self.plan, "in_turn": self.in_turn,
                "machine": self.machine,
                "threads": self.threads,
                "gemm_gflops": self.gemm_gflops, "peak_gflops": self.peaks,
                "versions": self.versions,
                "rows": rows}


def machine_description():
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count()
    return f"{cpu}, {n} CPUs available, Python {platform.python_version()}"


def format_time(seconds) -> str:
    """``7.20 µs``, ``6.27 ms``, ``131.8 ms``, ``1.23 s`` (3-4 significant digits)."""
    if seconds is None:
        return "–"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            digits = 1 if v >= 100 else 2 if v >= 10 else 3
            return f"{v:.{digits}f} {unit}"


def cell(r: Result) -> str:
    """A result as a table cell: its time, or why there is none."""
    if r.status == "ok":
        return format_time(r.seconds)
    if r.status == "mismatch":
        return f"mismatch ({format_time(r.timing.median)})" if r.timing else "mismatch"
    return r.status


def format_table(report: Report) -> str:
    """The report as an aligned Markdown table, with notes underneath."""
    peers = [lib for lib in report.libs if lib != OURS]
    header = ["case", "dtype", "ours", "GFLOP/s", "% peak", "% GEMM", "extra MB"] + \
        [PEER_LABELS[p] for p in peers] + ["best peer", "speedup"]
    body = []
    notes = []
    gemm = report.gemm_gflops
    for row in report.rows:
        ours = row.results.get(OURS, Result("not run"))
        gf = row.gflops()
        peak = report.peaks.get(row.dtype)
        ws = ours.workspace
        best, _ = row.best_peer()
        sp = row.speedup()
        body.append(
            [row.label, row.dtype, cell(ours),
             "–" if gf is None else f"{gf:.1f}" if gf < 10 else f"{gf:.0f}",
             f"{100 * gf / peak:.0f} %" if (gf is not None and peak) else "–",
             f"{100 * gf / gemm:.0f} %" if (gf is not None and gemm) else "–",
             "–" if ws is None else f"{ws / 2**20:.1f}"]
            + [cell(row.results.get(p, Result("not run"))) for p in peers]
            + [PEER_LABELS[best] if best else "–",
               "–" if sp is None else f"{sp:.2f}×"])
        notes += [f"{row.label} {PEER_LABELS[lib]}: {r.status}: {r.reason}"
                  for lib, r in row.results.items()
                  if r.status in ("n/a", "error", "mismatch") and r.reason]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]

    def line(cells):   # the first two columns left-aligned, numbers right
        return "| " + " | ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i >= 2 else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    head = [f"Operation: {report.op} ({OPS[report.op].about})"
            + (", ours through numba_deconv.plan (checked and laid out once)."
               if report.plan else "."),
            f"Machine: {report.machine}; {report.threads} threads per library, "
            "each library in its own process; medians after warm-up"
            + ("; the libraries timed in turn, a batch of calls each per round."
               if report.in_turn else "."),
            "float32 GEMM (NumPy matmul, best of before and after ours) in this "
            f"run: {f'{gemm:.0f} GFLOP/s' if gemm else 'not measured'}.",
            "FMA peak (a tight vector multiply-add loop per thread, Numba; "
            "% peak is the case's share of it): " + (", ".join(
                f"{dt} {g:.0f} GFLOP/s" for dt, g in sorted(report.peaks.items()))
                or "not measured") + ".",
            "Versions: " + "; ".join(
                f"{PEER_LABELS[lib]} {v if v else 'not installed'}"
                for lib, v in report.versions.items()),
            ""]
    missing = [PEER_LABELS[lib] for lib, v in report.versions.items()
               if v is None and lib != OURS]
    tail = [""]
    if missing:
        tail.append("Not installed: " + ", ".join(missing) +
                    ' (pip install ".[bench]" from the checkout).')
    if notes:
        tail += ["Notes:"] + [f"- {n}" for n in dict.fromkeys(notes)]
    tail.append("speedup = best peer's median / ours (> 1 means we are faster); "
                "extra MB = our peak memory beyond the output (estimate).")
    return "\n".join(head + [line(header), sep] + [line(b) for b in body] + tail)


def plot_titles(report: Report):
    """The plot's title (operation, dtypes, threads) and subtitle (the machine)."""
    dtypes = ", ".join(dict.fromkeys(row.dtype for row in report.rows)) or "no cases"
    return (f"{report.op} ({dtypes}), {report.threads} thread"
            f"{'' if report.threads == 1 else 's'} per library",
            report.machine or platform.processor() or platform.machine())


def figure(report: Report):
    """The grouped bar chart of :func:`plot` as a matplotlib figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    libs = [lib for lib in report.libs
            if any(r.results.get(lib) and r.results[lib].seconds for r in report.rows)]
    if not libs:
        raise SystemExit("--plot: no library produced a time to plot")
    n = len(report.rows)
    width = 0.8 / len(libs)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * n + 3), 5))
    for j, lib in enumerate(libs):
        bars = [(i + (j - (len(libs) - 1) / 2) * width, row.results[lib].seconds)
                for i, row in enumerate(report.rows)
                if row.results.get(lib) and row.results[lib].seconds]
        drawn = ax.bar([b[0] for b in bars], [b[1] * 1e3 for b in bars], width,
                       label="numba_deconv" if lib == OURS else PEER_LABELS[lib])
        # Each bar's median above it, in the unit that suits it.
        ax.bar_label(drawn, labels=[format_time(b[1]) for b in bars], rotation=90,
                     padding=2, fontsize=6)
    ax.set_yscale("log")
    low, high = ax.get_ylim()   # headroom above the tallest bar for its label
    ax.set_ylim(low, high * (high / low) ** 0.2)
    ax.set_xticks(range(n))
    ax.set_xticklabels([r.label for r in report.rows], rotation=30, ha="right")
    ax.set_ylabel("median time per call (ms, log scale; lower is better)")
    title, machine = plot_titles(report)
    fig.suptitle(title)
    ax.set_title(machine, fontsize="small")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot(report: Report, path):
    """Grouped bar chart of the medians (log scale), one group per case, each
    bar labelled with its time; the title names the operation, the dtypes,
    the threads per library and the machine."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "--plot needs matplotlib: pip install matplotlib "
            '(or pip install ".[bench]")') from None
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=120)
    plt.close(fig)
