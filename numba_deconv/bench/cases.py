"""The case table: :class:`Case`, loading and selecting cases, flops, inputs."""

import dataclasses
import json
import math
import os

import numpy as np

DTYPES = ("float32", "float64")
_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")


@dataclasses.dataclass(frozen=True)
class Case:
    """One workload of the case table: channels first, PyTorch weight layout.

    ``kernel``, ``stride``, ``padding``, ``output_padding`` and ``dilation``
    are the same in every spatial dim (ints); ``dtype`` is the case's own
    dtype (``float32`` unless the table names one).
    """

    name: str
    N: int
    C_in: int
    C_out: int
    spatial: tuple
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    dilation: int = 1
    groups: int = 1
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        """A case from one entry of a case file; ``ValueError`` naming the
        case and the key for anything missing, unknown or out of range."""
        if not isinstance(d, dict):
            raise ValueError(f"a bench case must be a JSON object, got {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        name = d.get("name")
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(
                f"bench case {name!r} has unknown keys {sorted(unknown)}; "
                f"valid keys are {sorted(fields)}")
        missing = [f.name for f in fields.values()
                   if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"bench case {name!r} lacks the keys {missing}")
        d = dict(d)
        try:
            d["spatial"] = tuple(int(v) for v in d["spatial"])
        except (TypeError, ValueError):
            raise ValueError(f"bench case {name!r}: spatial must be a list of "
                             f"ints, got {d['spatial']!r}") from None
        if d.get("dtype", "float32") not in DTYPES:
            raise ValueError(f"bench case {name!r}: dtype must be one of "
                             f"{DTYPES}, got {d['dtype']!r}")
        case = cls(**d)
        minimum = {"N": 1, "C_in": 1, "C_out": 1, "kernel": 1, "stride": 1,
                   "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1}
        for key, low in minimum.items():
            value = getattr(case, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"bench case {name!r}: {key} must be an int "
                                 f">= {low}, got {value!r}")
        if not case.spatial or min(case.out_spatial) < 1 or min(case.spatial) < 1:
            raise ValueError(f"bench case {name!r}: spatial {list(case.spatial)} "
                             "must be non-empty with every input and output "
                             "size >= 1")
        if case.C_in % case.groups or case.C_out % case.groups:
            raise ValueError(f"bench case {name!r}: groups={case.groups} must "
                             f"divide C_in={case.C_in} and C_out={case.C_out}")
        return case

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), spatial=list(self.spatial))

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def x_shape(self) -> tuple:
        return (self.N, self.C_in) + self.spatial

    @property
    def weight_shape(self) -> tuple:
        return (self.C_in, self.C_out // self.groups) + (self.kernel,) * self.rank

    @property
    def out_spatial(self) -> tuple:
        k, s, p, op, d = (self.kernel, self.stride, self.padding,
                          self.output_padding, self.dilation)
        return tuple((i - 1) * s - 2 * p + d * (k - 1) + 1 + op
                     for i in self.spatial)

    @property
    def out_shape(self) -> tuple:
        return (self.N, self.C_out) + self.out_spatial

    @property
    def flops(self) -> int:
        """Useful flops of one call: 2 per real multiply-add."""
        return flop_count(self.N, self.C_in, self.C_out, self.groups,
                          (self.kernel,) * self.rank, self.spatial)

    def kwargs(self) -> dict:
        """Keyword arguments of ``conv_transpose`` for this case."""
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding,
                    dilation=self.dilation, groups=self.groups)


def flop_count(N, C_in, C_out, groups, kernel, in_spatial) -> int:
    """``2*N*C_in*(C_out/groups)*prod(kernel)*prod(in_spatial)``.

    The multiply-adds a transposed convolution really needs: each input
    sample meets each of its group's ``C_out/groups`` output channels through
    every kernel tap once. Multiplications by the zeros that the "insert
    zeros then convolve" formulation adds are not counted.
    """
    if C_out % groups or C_in % groups:
        raise ValueError(
            f"C_in={C_in} and C_out={C_out} must both be divisible by "
            f"groups={groups}")
    return (2 * N * C_in * (C_out // groups)
            * math.prod(kernel) * math.prod(in_spatial))


def load_cases(path=None) -> list:
    """The case table as a list of :class:`Case`.

    ``path`` defaults to the copy shipped in the package
    (``numba_deconv/bench/cases.json``).
    """
    where = path or "numba_deconv/bench/cases.json"
    try:
        with open(path or _TABLE, encoding="utf-8") as f:
            table = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"case file {where} is not valid JSON: {e}") from None
    except FileNotFoundError:
        if path:
            raise
        raise FileNotFoundError(
            f"{where} is missing from the installed package; it must be "
            "listed in [tool.setuptools.package-data]") from None
    if not isinstance(table, dict) or not isinstance(table.get("cases"), list):
        raise ValueError(f'case file {where} must hold an object with a "cases" '
                         "list, as numba_deconv/bench/cases.json does")
    cases = [Case.from_dict(d) for d in table["cases"]]
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case file {where} repeats case names: "
                         f"{sorted({n for n in names if names.count(n) > 1})}")
    return cases


def select_cases(cases, names=None, dtypes=None) -> list:
    """``(case, dtype)`` pairs to run.

    ``names`` (default: all) picks cases by name, in the table's order, and
    raises ``ValueError`` naming the known cases for an unknown one.
    ``dtypes`` (default: each case's own dtype) runs every picked case in
    each listed dtype; a case whose table entry names a dtype (such as
    ``unet_2d_f64``) only runs in that dtype.
    """
    if names:
        known = {c.name for c in cases}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"unknown bench case(s) {unknown}; the table has "
                f"{sorted(known)}")
        cases = [c for c in cases if c.name in set(names)]
    bad = [dt for dt in dtypes or () if dt not in DTYPES]
    if bad:
        raise ValueError(f"dtype must be one of {DTYPES}, got {bad[0]!r}")
    pairs = []
    for c in cases:
        for dt in dtypes or [c.dtype]:
            # A case the table pins to another dtype runs only in that one.
            if (c.dtype == "float32" or dt == c.dtype) and (c, dt) not in pairs:
                pairs.append((c, dt))
    return pairs


def make_inputs(case: Case, dtype="float32", seed=0):
    """Deterministic ``(x, weight)`` for ``case``, uniform in [-1, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, case.x_shape).astype(dtype)
    w = rng.uniform(-1, 1, case.weight_shape).astype(dtype)
    return x, w
