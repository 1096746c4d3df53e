"""Padding modes ("zeros", "circular", "reflect", "replicate") of conv and
conv_transpose.

``conv`` pads its input as torch.nn.functional.pad / np.pad do;
``conv_transpose`` with the same mode is its exact adjoint: the scatter over
the whole padded extent, with what lands in the border folded back (the
adjoint of the padding). Checked three ways:

- the oracles (``reference.pad_ref``, ``pad_adjoint_ref``, ``conv_ref``,
  ``conv_transpose_mode_ref``) against hand-computed values and torch;
- the library against the oracles on a seeded selection of configurations
  that covers mode x rank (1, 2, 3, one 4-D per mode) x dtype x groups x
  stride/dilation (stride 2 and 3, dilation 2, asymmetric pairs, "same");
- the dot-product test ``vdot(conv(x, w), y) == vdot(x, conv_transpose(y,
  conj(w), output_size=x's size))`` on the same selection.
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv as nd
from helpers import random_array
from reference import (conv_pads, conv_ref, conv_transpose_mode_ref,
                       conv_transpose_ref, explicit_pads, pad_adjoint_ref,
                       pad_index_map, pad_ref, to_channels_first,
                       to_channels_last)
from test_conv import EPS, TORCH_MODES, assert_bounded, torch_pad_list

MODES = ("zeros", "circular", "reflect", "replicate")
DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


# ---------------------------------------------------------------------------
# The selection of configurations
# ---------------------------------------------------------------------------

def _config(rng, mode, rank, dtype, groups, padding_kind):
    """One valid random geometry for ``mode``/``rank`` (input sizes small
    enough for the loop oracles)."""
    size_range = {1: (4, 10), 2: (3, 7), 3: (3, 5), 4: (2, 4)}[rank]
    k_max = 3 if rank < 4 else 2
    for _ in range(1000):
        spatial = tuple(int(v) for v in rng.integers(*size_range, size=rank))
        kernel = tuple(int(v) for v in rng.integers(1, k_max + 1, size=rank))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=rank))
        dilation = tuple(int(v) for v in rng.integers(1, 3, size=rank))
        if padding_kind == "same":
            # conv_transpose's "same" takes its pads from k and s alone; they
            # are conv's SAME pads where s divides I (docs/semantics.md 3).
            spatial = tuple(max(s, (i // s) * s) for i, s in zip(spatial, stride))
            padding = "same"
        elif padding_kind == "int":
            padding = int(rng.integers(0, 3))
        else:
            padding = tuple((int(rng.integers(0, 4)), int(rng.integers(0, 4)))
                            for _ in range(rank))
        p = conv_pads(spatial, kernel, stride=stride, padding=padding,
                      dilation=dilation)
        limit = {"reflect": lambda i: i - 1, "circular": lambda i: i}.get(
            mode, lambda i: 99)
        if any(max(b, a) > limit(i) for i, b, a in
               zip(spatial, p["pad_before"], p["pad_after"])):
            continue
        if min(p["out_spatial"]) < 1:
            continue
        return dict(mode=mode, rank=rank, dtype=np.dtype(dtype), groups=groups,
                    spatial=spatial, kernel=kernel, stride=stride,
                    dilation=dilation, padding=padding, batch=int(rng.integers(1, 3)),
                    cin_g=int(rng.integers(1, 3)), cout_g=int(rng.integers(1, 3)),
                    bias=bool(rng.integers(0, 2)))
    raise AssertionError("no valid geometry found")


def make_configs(seed=1234):
    """40 configurations: each mode x rank 1..3 three times, plus one 4-D
    per mode; dtype, groups and padding form rotate so that every mode sees
    every dtype, both group counts and every padding form."""
    rng = np.random.default_rng(seed)
    kinds = ("pairs", "same", "int")
    configs = []
    for mi, mode in enumerate(MODES):
        for rep in range(3):
            for rank in (1, 2, 3):
                configs.append(_config(
                    rng, mode, rank, DTYPES[(mi + rep + rank) % 4],
                    1 + (rep + rank) % 2, kinds[(rep + rank + mi) % 3]))
        configs.append(_config(rng, mode, 4, DTYPES[mi], 1 + mi % 2,
                               ("pairs", "int")[mi % 2]))
    return configs


CONFIGS = make_configs()


def config_id(c):
    pad = c["padding"] if isinstance(c["padding"], (str, int)) else "pairs"
    return (f"{c['mode']}-{c['rank']}d-{c['dtype'].name}-g{c['groups']}"
            f"-s{''.join(map(str, c['stride']))}-d{''.join(map(str, c['dilation']))}"
            f"-{pad}")


def test_configs_cover_the_cross_product():
    """The selection is what the docstring promises."""
    seen = {(c["mode"], c["rank"]) for c in CONFIGS}
    assert seen == {(m, r) for m in MODES for r in (1, 2, 3, 4)}
    for mode in MODES:
        mine = [c for c in CONFIGS if c["mode"] == mode]
        assert {c["dtype"] for c in mine} == {np.dtype(t) for t in DTYPES}, mode
        assert {c["groups"] for c in mine} == {1, 2}, mode
        assert any(c["padding"] == "same" for c in mine), mode
        assert any(not isinstance(c["padding"], (str, int)) and
                   any(b != a for b, a in c["padding"]) for c in mine), mode
    strides = {s for c in CONFIGS for s in c["stride"]}
    assert {2, 3} <= strides
    assert 2 in {d for c in CONFIGS for d in c["dilation"]}
    # every mode pads for real somewhere (not only zero pads)
    for mode in MODES:
        assert any(max(conv_pads(c["spatial"], c["kernel"], stride=c["stride"],
                                 padding=c["padding"], dilation=c["dilation"])
                       ["pad_before"]) > 0 for c in CONFIGS if c["mode"] == mode)


def arrays(c, seed):
    """x (conv input), w (conv weight (C_out, C_in/g, *k)), bias, and the
    upstream y (conv output shape)."""
    rng = np.random.default_rng(seed)
    g = c["groups"]
    x = random_array(rng, (c["batch"], g * c["cin_g"]) + c["spatial"], c["dtype"])
    w = random_array(rng, (g * c["cout_g"], c["cin_g"]) + c["kernel"], c["dtype"])
    b = random_array(rng, (g * c["cout_g"],), c["dtype"]) if c["bias"] else None
    p = conv_pads(c["spatial"], c["kernel"], stride=c["stride"],
                  padding=c["padding"], dilation=c["dilation"])
    y = random_array(rng, (c["batch"], g * c["cout_g"]) + p["out_spatial"], c["dtype"])
    return x, w, b, y, p


def conv_kwargs(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"], padding_mode=c["mode"])


# ---------------------------------------------------------------------------
# The oracles
# ---------------------------------------------------------------------------

Y7 = np.arange(1.0, 8.0)[None, None]          # [[[1 2 3 4 5 6 7]]]


@pytest.mark.parametrize("mode,expected", [
    # x of length 3 padded by 2 each side has 7 positions:
    ("zeros", [3, 4, 5]),              # [0 0 x0 x1 x2 0 0]: a crop
    ("circular", [3 + 6, 1 + 4 + 7, 2 + 5]),   # [x1 x2 x0 x1 x2 x0 x1]
    ("reflect", [3 + 7, 2 + 4 + 6, 1 + 5]),    # [x2 x1 x0 x1 x2 x1 x0]
    ("replicate", [1 + 2 + 3, 4, 5 + 6 + 7]),  # [x0 x0 x0 x1 x2 x2 x2]
])
def test_pad_adjoint_by_hand(mode, expected):
    np.testing.assert_array_equal(pad_adjoint_ref(Y7, (3,), [(2, 2)], mode),
                                  [[expected]])
    # and the oracle and library transposed convolutions with a 1x1 identity
    # kernel are exactly that adjoint
    kw = dict(stride=(1,), dilation=(1,), pad_before=(2,), pad_after=(2,),
              output_padding=(0,), padding_mode=mode)
    np.testing.assert_array_equal(
        conv_transpose_mode_ref(Y7, np.ones((1, 1, 1)), **kw), [[expected]])


@pytest.mark.parametrize("mode,expected", [
    ("zeros", [3, 4, 5]),
    ("circular", [3 + 6, 1 + 4 + 7, 2 + 5]),
    ("reflect", [3 + 7, 2 + 4 + 6, 1 + 5]),
    ("replicate", [1 + 2 + 3, 4, 5 + 6 + 7]),
])
def test_conv_transpose_fold_by_hand(mode, expected):
    y = nd.conv_transpose(Y7, np.ones((1, 1, 1)), padding=2, padding_mode=mode)
    np.testing.assert_array_equal(y, [[expected]])


@pytest.mark.parametrize("mode", MODES)
def test_pad_ref_matches_torch(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for rank, pairs in [(1, [(2, 3)]), (2, [(1, 0), (3, 2)]),
                        (3, [(0, 2), (1, 1), (3, 0)])]:
        x = rng.standard_normal((2, 3) + (4,) * rank)
        expected = torch.nn.functional.pad(
            torch.from_numpy(x), torch_pad_list(*zip(*pairs)),
            mode=TORCH_MODES[mode]).numpy()
        np.testing.assert_array_equal(pad_ref(x, pairs, mode), expected)
        # and the index map is the same operator
        idx = pad_index_map(x.shape[2:], pairs, mode)
        flat = x.reshape(2, 3, -1)
        via_map = np.where(idx >= 0, flat[:, :, np.maximum(idx, 0)], 0.0)
        np.testing.assert_array_equal(via_map, expected)


@pytest.mark.parametrize("mode", MODES)
def test_pad_adjoint_ref_is_the_adjoint(mode):
    rng = np.random.default_rng(4)
    for shape, pairs in [((5,), [(4, 2)]), ((3, 4), [(2, 2), (0, 3)]),
                         ((2, 3, 3), [(1, 1), (2, 0), (0, 2)])]:
        x = rng.standard_normal((2, 2) + shape)
        y = rng.standard_normal(pad_ref(x, pairs, mode).shape)
        lhs = np.vdot(pad_ref(x, pairs, mode), y)
        rhs = np.vdot(x, pad_adjoint_ref(y, shape, pairs, mode))
        assert abs(lhs - rhs) <= 1e-12 * (np.abs(x).sum() * np.abs(y).sum()) ** 0.5


def test_mode_oracle_in_zero_mode_is_the_old_oracle():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 4, 3))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(6)
    kw = dict(stride=(2, 3), dilation=(1, 2), pad_before=(2, 0), pad_after=(1, 3),
              output_padding=(1, 2), groups=2)
    np.testing.assert_allclose(conv_transpose_mode_ref(x, w, b, **kw),
                               conv_transpose_ref(x, w, b, **kw), rtol=1e-13,
                               atol=1e-13)


def _torch_input_grad(x_shape, w, y, *, stride, dilation, pad_before, pad_after,
                      groups, mode):
    """torch autograd: d<conv(pad(x), w), y>/dx, i.e. the adjoint applied to y."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.ndim - 2]
    xt = torch.zeros(x_shape, dtype=torch.float64, requires_grad=True)
    xp = F.pad(xt, torch_pad_list(pad_before, pad_after), mode=TORCH_MODES[mode])
    out = fn(xp, torch.from_numpy(w), stride=stride, dilation=dilation, groups=groups)
    assert tuple(out.shape) == y.shape, (tuple(out.shape), y.shape)
    out.backward(torch.from_numpy(y))
    return xt.grad.numpy()


TORCH_CASES = [c for c in CONFIGS if c["rank"] <= 3][::3]


@pytest.mark.parametrize("c", TORCH_CASES, ids=config_id)
def test_mode_oracle_matches_torch_autograd(c):
    """conv_transpose_mode_ref(y) is torch's input gradient of conv(F.pad(x))
    for upstream y (real, float64)."""
    x, w, _, y, p = arrays(c, 11)
    x, w, y = x.real.astype(np.float64), w.real.astype(np.float64), y.real.astype(np.float64)
    kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
              pad_after=p["pad_after"], groups=c["groups"])
    expected = _torch_input_grad(x.shape, w, y, mode=c["mode"], **kw)
    ct = explicit_pads(p["out_spatial"], c["kernel"], stride=p["stride"],
                       padding=tuple(zip(p["pad_before"], p["pad_after"])),
                       dilation=p["dilation"], output_size=c["spatial"])
    actual = conv_transpose_mode_ref(y, w, output_padding=ct["output_padding"],
                                     padding_mode=c["mode"], **kw)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", CONFIGS[::4], ids=config_id)
def test_oracles_are_adjoint(c):
    x, w, _, y, p = arrays(c, 12)
    kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
              pad_after=p["pad_after"], groups=c["groups"], padding_mode=c["mode"])
    ct = explicit_pads(p["out_spatial"], c["kernel"], stride=p["stride"],
                       padding=tuple(zip(p["pad_before"], p["pad_after"])),
                       dilation=p["dilation"], output_size=c["spatial"])
    lhs = np.vdot(conv_ref(x, w, **kw), y)
    rhs = np.vdot(x, conv_transpose_mode_ref(y, np.conj(w),
                                             output_padding=ct["output_padding"], **kw))
    assert abs(lhs - rhs) <= 1e-11 * max(1.0, abs(lhs))


# ---------------------------------------------------------------------------
# The library against the oracles
# ---------------------------------------------------------------------------

def _ct_args(c, p):
    """conv_transpose's padding for the adjoint of conv(config): the config's
    own argument (an int, pairs, or "same" where s divides I, see _config),
    which resolves to conv's pads ``p``."""
    return c["padding"]


@pytest.mark.parametrize("c", CONFIGS, ids=config_id)
def test_conv_matches_oracle(c):
    x, w, b, _, p = arrays(c, 21)
    actual = nd.conv(x, w, b, **conv_kwargs(c))
    kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
              pad_after=p["pad_after"], groups=c["groups"], padding_mode=c["mode"])
    expected = conv_ref(x, w, b, **kw)
    bound = conv_ref(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    n_terms = c["cin_g"] * int(np.prod(c["kernel"])) + 1
    assert_bounded(actual, expected, bound, c["dtype"], n_terms)


def _ct_terms(c, p, n_in_channels):
    """Terms per transposed output, folds included: each padded position
    folds onto one interior position, and at most 1 + pb + pa of them per dim
    land on the same one (replicate's edge)."""
    folds = int(np.prod([1 + b + a for b, a in zip(p["pad_before"], p["pad_after"])]))
    return n_in_channels * int(np.prod(c["kernel"])) * folds + 1


@pytest.mark.parametrize("c", CONFIGS, ids=config_id)
def test_conv_transpose_matches_oracle(c):
    """conv_transpose(y, w) with a padding mode; here y is the transposed
    convolution's input ((N, C_in, *I), the conv output's shape) and w its
    weight (C_in, C_out/groups, *k), the conv weight's layout."""
    _, w, _, y, p = arrays(c, 22)
    rng = np.random.default_rng(23)
    b = random_array(rng, (c["groups"] * c["cin_g"],), c["dtype"]) if c["bias"] else None
    actual = nd.conv_transpose(y, w, b, stride=c["stride"], padding=_ct_args(c, p),
                               dilation=c["dilation"], groups=c["groups"],
                               padding_mode=c["mode"], output_size=c["spatial"])
    ct = explicit_pads(p["out_spatial"], c["kernel"], stride=p["stride"],
                       padding=tuple(zip(p["pad_before"], p["pad_after"])),
                       dilation=p["dilation"], output_size=c["spatial"])
    kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
              pad_after=p["pad_after"], output_padding=ct["output_padding"],
              groups=c["groups"], padding_mode=c["mode"])
    expected = conv_transpose_mode_ref(y, w, b, **kw)
    bound = conv_transpose_mode_ref(np.abs(y), np.abs(w),
                                    None if b is None else np.abs(b), **kw)
    assert_bounded(actual, expected, bound, c["dtype"], _ct_terms(c, p, c["cout_g"]))


@pytest.mark.parametrize("c", CONFIGS, ids=config_id)
def test_dot_product_adjoint(c):
    """vdot(conv(x, w), y) == vdot(x, conv_transpose(y, conj(w), output_size=I)),
    both sides from the library; the tolerance covers the library's rounding
    of each output (the dots themselves are taken in complex128)."""
    x, w, _, y, p = arrays(c, 31)
    fwd = nd.conv(x, w, **conv_kwargs(c))
    adj = nd.conv_transpose(y, np.conj(w), stride=c["stride"], padding=_ct_args(c, p),
                            dilation=c["dilation"], groups=c["groups"],
                            padding_mode=c["mode"], output_size=c["spatial"])
    assert fwd.shape == y.shape and adj.shape == x.shape
    assert fwd.dtype == adj.dtype == c["dtype"]
    lhs = np.vdot(fwd.astype(np.complex128), y.astype(np.complex128))
    rhs = np.vdot(x.astype(np.complex128), adj.astype(np.complex128))
    kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
              pad_after=p["pad_after"], groups=c["groups"], padding_mode=c["mode"])
    magnitude = float(np.sum(conv_ref(np.abs(x), np.abs(w), **kw) * np.abs(y)))
    n_terms = (c["cin_g"] * int(np.prod(c["kernel"])) + 1
               + _ct_terms(c, p, c["cout_g"]))
    factor = 8.0 if c["dtype"].kind == "c" else 4.0
    tol = factor * n_terms * EPS[c["dtype"]] * magnitude
    assert abs(lhs - rhs) <= tol, (lhs, rhs, tol)


def test_same_adjoint_where_stride_does_not_divide_size(rng):
    """conv's SAME pads depend on I; conv_transpose's "same" does not (it
    targets I*s). The adjoint of conv(padding="same") on I = 5, s = 2, k = 3
    (pads (1, 1)) is conv_transpose with those explicit pads."""
    x = rng.standard_normal((1, 2, 5))
    w = rng.standard_normal((3, 2, 3))
    for mode in MODES:
        fwd = nd.conv(x, w, stride=2, padding="same", padding_mode=mode)
        y = rng.standard_normal(fwd.shape)
        adj = nd.conv_transpose(y, w, stride=2, padding=1, padding_mode=mode,
                                output_size=(5,))
        assert np.isclose(np.vdot(fwd, y), np.vdot(x, adj), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_layouts_and_unbatched(mode, data_format, rng):
    x = rng.standard_normal((2, 4, 5, 4))
    w = rng.standard_normal((4, 1, 3, 2))
    b = rng.standard_normal(2)
    kw = dict(stride=(2, 1), dilation=(1, 2), pad_before=(2, 1), pad_after=(1, 2),
              output_padding=(1, 0), groups=2, padding_mode=mode)
    expected = conv_transpose_mode_ref(x, w, b, **kw)
    args = dict(stride=(2, 1), dilation=(1, 2), padding=((2, 1), (1, 2)),
                output_padding=(1, 0), groups=2, padding_mode=mode,
                data_format=data_format)
    xin = to_channels_last(x) if data_format == "channels_last" else x
    y = nd.conv_transpose(xin, w, b, **args)
    y1 = nd.conv_transpose(xin[0], w, b, **args)
    if data_format == "channels_last":
        y, y1 = to_channels_first(y), np.moveaxis(y1, -1, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y1, expected[0], rtol=1e-12, atol=1e-12)
    # conv in the same layouts
    xc = rng.standard_normal((2, 4, 5, 6))
    wc = rng.standard_normal((6, 2, 3, 2))
    ce = conv_ref(xc, wc, stride=(1, 2), dilation=(2, 1), pad_before=(1, 3),
                  pad_after=(2, 0), groups=2, padding_mode=mode)
    xcin = to_channels_last(xc) if data_format == "channels_last" else xc
    yc = nd.conv(xcin, wc, stride=(1, 2), dilation=(2, 1), padding=((1, 2), (3, 0)),
                 groups=2, padding_mode=mode, data_format=data_format)
    if data_format == "channels_last":
        yc = to_channels_first(yc)
    np.testing.assert_allclose(yc, ce, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_conv_transpose_mode_matches_torch(mode):
    """The library's conv_transpose with a mode is torch's input gradient of
    conv(F.pad(x, mode)) (float64, ranks 1-3)."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    for rank, stride, dilation, pb, pa, groups in [
            (1, (3,), (1,), (2,), (1,), 1),
            (2, (2, 1), (1, 2), (1, 2), (2, 0), 2),
            (3, (1, 2, 1), (2, 1, 1), (0, 1, 2), (2, 1, 1), 1)]:
        x_shape = (2, 2 * groups) + (5, 4, 4)[:rank]
        w = rng.standard_normal((3 * groups, 2) + (2, 3, 2)[:rank])
        p = conv_pads(x_shape[2:], w.shape[2:], stride=stride,
                      padding=tuple(zip(pb, pa)), dilation=dilation)
        y = rng.standard_normal((2, 3 * groups) + p["out_spatial"])
        expected = _torch_input_grad(x_shape, w, y, stride=stride, dilation=dilation,
                                     pad_before=pb, pad_after=pa, groups=groups,
                                     mode=mode)
        actual = nd.conv_transpose(y, w, stride=stride, dilation=dilation,
                                   padding=tuple(zip(pb, pa)), groups=groups,
                                   padding_mode=mode, output_size=x_shape[2:])
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Limits of the modes and errors
# ---------------------------------------------------------------------------

def _assert_names_dim_and_limit(err, dim, size):
    msg = str(err.value)
    assert f"dim {dim}" in msg or f"dimension {dim}" in msg, msg
    assert str(size) in msg, msg


def test_reflect_pad_must_be_smaller_than_the_size():
    x = np.ones((1, 1, 6, 3))
    w = np.ones((1, 1, 1, 1))
    nd.conv(x, w, padding=((0, 0), (2, 2)), padding_mode="reflect")   # 2 < 3: fine
    with pytest.raises(ValueError, match="reflect") as err:
        nd.conv(x, w, padding=((0, 0), (0, 3)), padding_mode="reflect")
    _assert_names_dim_and_limit(err, 1, 3)
    # conv_transpose: the limit is its output size, 12 - 6 = 6 here
    y = np.ones((1, 1, 12))
    nd.conv_transpose(y, np.ones((1, 1, 1)), padding=((5, 0),), padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect") as err:
        nd.conv_transpose(y, np.ones((1, 1, 1)), padding=((6, 0),),
                          padding_mode="reflect")
    _assert_names_dim_and_limit(err, 0, 6)


def test_circular_pad_may_equal_but_not_exceed_the_size():
    x = np.arange(3.0)[None, None]
    w = np.ones((1, 1, 1))
    y = nd.conv(x, w, padding=3, padding_mode="circular")
    np.testing.assert_array_equal(y, [[[0, 1, 2] * 3]])
    with pytest.raises(ValueError, match="circular") as err:
        nd.conv(x, w, padding=((4, 0),), padding_mode="circular")
    _assert_names_dim_and_limit(err, 0, 3)
    # conv_transpose: input 9, pads 3 + 3, output 3: pad 3 is fine, 4 is not
    nd.conv_transpose(np.ones((1, 1, 9)), w, padding=3, padding_mode="circular")
    with pytest.raises(ValueError, match="circular") as err:
        nd.conv_transpose(np.ones((1, 1, 10)), w, padding=((4, 3),),
                          padding_mode="circular")
    _assert_names_dim_and_limit(err, 0, 3)


def test_reflect_limit_uses_the_padded_dim_only():
    """Only a dim that is padded counts: a 1-wide dim with no padding is
    fine in reflect mode."""
    x = np.ones((1, 1, 1, 5))
    y = nd.conv(x, np.ones((1, 1, 1, 3)), padding=((0, 0), (1, 1)),
                padding_mode="reflect")
    assert y.shape == (1, 1, 1, 5)


@pytest.mark.parametrize("fn", ["conv", "conv_transpose"])
@pytest.mark.parametrize("mode", ["mirror", "", "constant"])
def test_unknown_padding_mode(fn, mode):
    with pytest.raises(ValueError, match="padding_mode"):
        getattr(nd, fn)(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding=1,
                        padding_mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_inputs_are_never_modified(mode, dtype, rng):
    """docs/semantics.md 7.2, also for one image and one channel, where a
    library's internal views of the inputs are contiguous."""
    for shape, w_shape in [((1, 1, 6), (1, 1, 3)), ((1, 1, 4, 5), (1, 1, 2, 3))]:
        x = random_array(rng, shape, dtype)
        w = random_array(rng, w_shape, dtype)
        b = random_array(rng, (1,), dtype)
        x0, w0, b0 = x.copy(), w.copy(), b.copy()
        nd.conv(x, w, b, padding=1, padding_mode=mode)
        nd.conv_transpose(x, w, b, padding=1, padding_mode=mode)
        nd.conv(x, w, b, padding=0, padding_mode=mode)
        nd.conv_transpose(x, w, b, padding=0, padding_mode=mode)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, b0)


def _held(p, size, before, mode):
    """The element that position ``p`` of a padded dim holds, by the rule of
    each mode (``torch.nn.functional.pad``'s), written out."""
    t = p - before
    if mode == "circular":
        return t % size
    if mode == "reflect":
        return -t if t < 0 else 2 * (size - 1) - t if t >= size else t
    return min(max(t, 0), size - 1)  # replicate


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("size, before, after", [(5, 2, 3), (4, 0, 3), (3, 2, 0), (1, 0, 0),
                                                 (6, 5, 5), (2, 2, 1)])
def test_fold_sources_list_every_copy(mode, size, before, after):
    """The GPU's fold tables: each element lists, in ascending order, every
    padded position holding a copy of it, its own position included, and
    each position is listed once."""
    from numba_deconv._padding import fold_sources

    if mode == "reflect" and max(before, after) >= size:
        pytest.skip("reflect pads less than the size")
    starts, sources = fold_sources(size, before, after, mode)
    assert sorted(sources) == list(range(before + size + after))
    for i in range(size):
        listed = list(sources[starts[i]:starts[i + 1]])
        assert listed == sorted(listed) and before + i in listed
        assert listed == [p for p in range(before + size + after)
                          if _held(p, size, before, mode) == i]
