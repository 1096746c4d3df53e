"""The case table: :class:`Case`, loading and selecting cases, flops, inputs;
the operations a case can be run as (:data:`OPS`)."""

import dataclasses
import json
import math
import os

import numpy as np

DTYPES = ("float32", "float64")
_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")


@dataclasses.dataclass(frozen=True)
class Op:
    """How a case is run as one operation: the two inputs and the result are
    three of the case's shapes (``"x"``: ``(N, C_in, *spatial)``, ``"w"``:
    the weight ``(C_in, C_out/groups, *k)``, ``"y"``: the transposed
    convolution's output ``(N, C_out, *out_spatial)``); ``params`` are the
    case's keyword arguments the function takes."""

    inputs: tuple
    result: str
    params: tuple
    about: str


_CT = ("stride", "padding", "output_padding", "dilation", "groups")
_CONV = ("stride", "padding", "dilation", "groups")
OPS = {
    "conv_transpose": Op(("x", "w"), "y", _CT, "conv_transpose(x, weight)"),
    "conv": Op(("y", "w"), "x", _CONV,
               "conv(y, weight): the adjoint direction, the case's output back "
               "to its input size"),
    "conv_weight_grad": Op(("y", "x"), "w", ("kernel_size",) + _CONV,
                           "conv_weight_grad(y, grad of x): the weight "
                           "gradient of that conv"),
    "conv_transpose_weight_grad": Op(("x", "y"), "w", ("kernel_size",) + _CT,
                                     "conv_transpose_weight_grad(x, grad of y)"),
}


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
    def conv_spatial(self) -> tuple:
        """The size ``conv`` with the case's arguments makes of
        ``out_spatial``: ``spatial`` again unless ``output_padding >= stride``."""
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        return tuple((o + 2 * p - d * (k - 1) - 1) // s + 1 for o in self.out_spatial)

    def shapes(self, op="conv_transpose") -> tuple:
        """``(first input, second input, result)`` shapes of ``op`` on this
        case; ``ValueError`` when the case cannot be run as ``op`` (a conv
        that does not map the output size back to the input size)."""
        o = _op(op)
        if o.inputs[0] == "y" and self.conv_spatial != self.spatial:   # conv of y
            raise ValueError(
                f"{op} of {self.name}: conv maps the output size "
                f"{list(self.out_spatial)} to {list(self.conv_spatial)}, not to "
                f"the input size {list(self.spatial)} (output_padding >= stride)")
        named = {"x": self.x_shape, "w": self.weight_shape, "y": self.out_shape}
        return tuple(named[k] for k in o.inputs + (o.result,))

    @property
    def flops(self) -> int:
        """Useful flops of one call: 2 per real multiply-add (the same for
        every op of :data:`OPS`)."""
        return flop_count(self.N, self.C_in, self.C_out, self.groups,
                          (self.kernel,) * self.rank, self.spatial)

    def kwargs(self, op="conv_transpose") -> dict:
        """Keyword arguments of ``numba_deconv.<op>`` for this case."""
        return {k: (self.kernel,) * self.rank if k == "kernel_size" else getattr(self, k)
                for k in _op(op).params}


def _op(name) -> Op:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; choose from {', '.join(OPS)}")
    return OPS[name]


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


def make_inputs(case: Case, dtype="float32", seed=0, op="conv_transpose"):
    """Deterministic inputs of ``op`` for ``case`` (``(x, weight)`` for
    ``conv_transpose``), uniform in [-1, 1)."""
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1, 1, shape).astype(dtype)
                 for shape in case.shapes(op)[:2])
