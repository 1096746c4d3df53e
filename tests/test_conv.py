"""numba_deconv.conv: the forward convolution (cross-correlation, PyTorch's
conv{1,2,3}d semantics, any rank) against the oracle ``reference.conv_ref``
and, where installed, against torch (float64).

Also holds the comparison helpers that test_padding_modes, test_weight_grad
and test_linear_operator share (tolerances scaled by the dtype's eps and by
the magnitude of the terms, as tests/helpers.py does).
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv as nd
from helpers import random_array
from reference import (conv_pads, conv_ref, conv_reference, to_channels_first,
                       to_channels_last)

#: Unit round-off of each native dtype.
EPS = {np.dtype(t): float(np.finfo(t).eps)
       for t in (np.float32, np.float64, np.complex64, np.complex128)}


def tolerance(bound, dtype, n_terms):
    """Largest acceptable error of a sum of ``n_terms`` products whose
    magnitudes add up to ``bound``, computed in ``dtype`` (complex products
    round a few times more: factor 8 instead of 4)."""
    dtype = np.dtype(dtype)
    factor = 8.0 if dtype.kind == "c" else 4.0
    return factor * n_terms * EPS[dtype] * np.asarray(bound) + np.finfo(np.float64).tiny


def assert_bounded(actual, expected, bound, dtype, n_terms):
    """``actual`` has ``expected``'s shape, the dtype ``dtype`` and is within
    :func:`tolerance` of ``expected`` everywhere."""
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    if actual.size == 0:
        return
    tol = tolerance(bound, dtype, n_terms)
    err = np.abs(actual.astype(expected.dtype) - expected)
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{bad.sum()} of {bad.size} values differ from the oracle; first at "
            f"{idx}: got {actual[idx]!r}, expected {expected[idx]!r} "
            f"(tolerance {tol[idx]:.3g})")


def assert_conv_matches_oracle(actual, x, w, bias=None, dtype=None, **kwargs):
    """``actual == conv_reference(x, w, bias, **kwargs)`` to rounding."""
    dtype = np.result_type(x, w, *([] if bias is None else [bias])) if dtype is None else dtype
    expected = conv_reference(x, w, bias, **kwargs)
    bound = conv_reference(np.abs(x), np.abs(w),
                           None if bias is None else np.abs(bias), **kwargs)
    w = np.asarray(w)
    n_terms = w.shape[1] * int(np.prod(w.shape[2:])) + 1
    assert_bounded(actual, expected, bound, dtype, n_terms)


def torch_pad_list(pad_before, pad_after):
    """torch.nn.functional.pad's list: last dim first, (before, after)."""
    out = []
    for b, a in reversed(list(zip(pad_before, pad_after))):
        out += [b, a]
    return out


TORCH_MODES = {"zeros": "constant", "circular": "circular", "reflect": "reflect",
               "replicate": "replicate"}


def torch_conv(x, w, b=None, *, stride, dilation, pad_before, pad_after, groups=1,
               padding_mode="zeros"):
    """F.pad, then F.conv{n}d, in float64 (x, w, b NumPy float64 arrays)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.ndim - 2]
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a, np.float64))
    xp = F.pad(t(x), torch_pad_list(pad_before, pad_after),
               mode=TORCH_MODES[padding_mode])
    return fn(xp, t(w), t(b), stride=stride, dilation=dilation, groups=groups).numpy()


# ---------------------------------------------------------------------------
# The oracle itself
# ---------------------------------------------------------------------------

def test_conv_ref_by_hand():
    """1-D, one channel: y[o] = sum_k xpad[o*s + k*d] w[k]."""
    x = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    w = np.array([[[1.0, 10.0, 100.0]]])
    y = conv_ref(x, w, stride=(1,), dilation=(1,), pad_before=(0,), pad_after=(0,))
    np.testing.assert_array_equal(y, [[[321.0, 432.0, 543.0]]])
    # stride 2, dilation 2, pads (1, 2): xpad = [0 1 2 3 4 5 0 0],
    # O = floor((8 - 4 - 1)/2) + 1 = 2
    y = conv_ref(x, w, stride=(2,), dilation=(2,), pad_before=(1,), pad_after=(2,))
    np.testing.assert_array_equal(y, [[[0 + 20 + 400, 2 + 40 + 0]]])
    # SAME, I = 5, s = 2, k = 3: O = 3, total = max(2*2 + 3 - 5, 0) = 2 -> (1, 1)
    p = conv_pads((5,), (3,), stride=2, padding="same")
    assert (p["pad_before"], p["pad_after"], p["out_spatial"]) == ((1,), (1,), (3,))
    p = conv_pads((6,), (4,), stride=2, padding="same")     # total 2 -> (1, 1)
    assert (p["pad_before"], p["pad_after"], p["out_spatial"]) == ((1,), (1,), (3,))
    p = conv_pads((7,), (4,), stride=1, dilation=2, padding="SAME")  # total 6
    assert (p["pad_before"], p["pad_after"], p["out_spatial"]) == ((3,), (3,), (7,))
    p = conv_pads((5,), (2,), stride=1, padding="same")     # total 1 -> (0, 1)
    assert (p["pad_before"], p["pad_after"]) == ((0,), (1,))


ORACLE_TORCH_CASES = [
    # rank, stride, dilation, pad_before, pad_after, groups, mode
    (1, (2,), (1,), (1,), (2,), 1, "zeros"),
    (1, (3,), (2,), (2,), (0,), 2, "circular"),
    (1, (1,), (1,), (3,), (1,), 1, "reflect"),
    (1, (2,), (2,), (0,), (3,), 2, "replicate"),
    (2, (2, 1), (1, 2), (1, 0), (2, 1), 2, "zeros"),
    (2, (1, 3), (2, 1), (2, 2), (0, 1), 1, "circular"),
    (2, (2, 2), (1, 1), (1, 3), (2, 0), 2, "reflect"),
    (2, (3, 1), (1, 1), (0, 2), (3, 1), 1, "replicate"),
    (3, (2, 1, 1), (1, 1, 2), (1, 0, 2), (0, 1, 1), 2, "reflect"),
    (3, (1, 2, 3), (2, 1, 1), (2, 1, 0), (1, 0, 2), 1, "circular"),
    (3, (1, 1, 2), (1, 2, 1), (1, 1, 1), (2, 0, 1), 2, "replicate"),
]


@pytest.mark.parametrize("rank,stride,dilation,pb,pa,groups,mode", ORACLE_TORCH_CASES)
def test_conv_ref_matches_torch(rank, stride, dilation, pb, pa, groups, mode):
    rng = np.random.default_rng(rank * 100 + groups)
    x = rng.standard_normal((2, 2 * groups) + (5, 4, 4)[:rank])
    w = rng.standard_normal((3 * groups, 2) + (3, 2, 2)[:rank])
    b = rng.standard_normal(3 * groups)
    kw = dict(stride=stride, dilation=dilation, pad_before=pb, pad_after=pa,
              groups=groups, padding_mode=mode)
    expected = torch_conv(x, w, b, **kw)
    np.testing.assert_allclose(conv_ref(x, w, b, **kw), expected, rtol=1e-12,
                               atol=1e-12)


# ---------------------------------------------------------------------------
# numba_deconv.conv against the oracle
# ---------------------------------------------------------------------------

CASES = [
    # id, input spatial, kernel, groups, kwargs
    ("1d-plain", (7,), (3,), 1, dict()),
    ("1d-s2-p1", (8,), (3,), 1, dict(stride=2, padding=1)),
    ("1d-s3-d2-pairs", (11,), (3,), 2, dict(stride=3, dilation=2, padding=[(2, 0)])),
    ("1d-same-s2", (7,), (4,), 1, dict(stride=2, padding="same")),
    ("1d-SAME-d2", (6,), (3,), 2, dict(dilation=2, padding="SAME")),
    ("1d-valid", (6,), (2,), 1, dict(stride=2, padding="valid")),
    ("1d-k1-s3", (7,), (1,), 2, dict(stride=3)),
    ("2d-s2-same", (6, 5), (3, 3), 1, dict(stride=2, padding="same")),
    ("2d-per-dim", (7, 6), (3, 2), 2, dict(stride=(2, 1), dilation=(1, 2), padding=(1, 0))),
    ("2d-pairs", (5, 6), (2, 3), 1, dict(stride=(1, 3), padding=((0, 2), (1, 0)))),
    ("2d-s3-d2", (8, 7), (2, 2), 2, dict(stride=3, dilation=2, padding=2)),
    ("3d-s2", (4, 5, 4), (2, 2, 3), 1, dict(stride=2, padding=1)),
    ("3d-mixed", (5, 4, 4), (3, 2, 1), 2, dict(stride=(1, 2, 3), dilation=(2, 1, 1),
                                              padding=((1, 2), (0, 1), (2, 0)))),
    ("3d-same", (4, 3, 5), (2, 3, 2), 1, dict(stride=(2, 1, 3), padding="same")),
    ("4d", (3, 4, 3, 3), (2, 2, 1, 2), 2, dict(stride=(1, 2, 1, 2), padding=(1, 0, 1, 0),
                                               dilation=(1, 1, 2, 1))),
]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv_matches_oracle(case, rng):
    _, spatial, kernel, groups, kwargs = case
    # one dtype per case, cycling, so every rank sees several
    dtype = DTYPES[CASES.index(case) % len(DTYPES)]
    x = random_array(rng, (2, 2 * groups) + spatial, dtype)
    w = random_array(rng, (3 * groups, 2) + kernel, dtype)
    b = random_array(rng, (3 * groups,), dtype)
    y = nd.conv(x, w, b, groups=groups, **kwargs)
    assert_conv_matches_oracle(y, x, w, b, groups=groups, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_dtypes_and_no_bias(dtype, rng):
    x = random_array(rng, (1, 2, 6, 5), dtype)
    w = random_array(rng, (4, 1, 3, 2), dtype)
    y = nd.conv(x, w, stride=2, padding=1, groups=2)
    assert_conv_matches_oracle(y, x, w, stride=2, padding=1, groups=2)


def test_conv_output_size_formula(rng):
    """O = floor((I + pb + pa - d*(k-1) - 1)/s) + 1 per dim; "same" gives
    ceil(I/s)."""
    x = rng.standard_normal((1, 1, 10, 9, 7))
    w = rng.standard_normal((1, 1, 3, 2, 4))
    y = nd.conv(x, w, stride=(3, 2, 1), dilation=(2, 1, 2), padding=((1, 2), (0, 0), (3, 1)))
    assert y.shape == (1, 1, (10 + 3 - 4 - 1) // 3 + 1, (9 - 1 - 1) // 2 + 1, 7 + 4 - 6)
    for s in (1, 2, 3):
        assert nd.conv(x, w, stride=s, padding="same").shape[2:] == (
            -(-10 // s), -(-9 // s), -(-7 // s))


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("batched", [True, False])
def test_conv_layouts(data_format, batched, rng):
    x = random_array(rng, (2, 4, 6, 5), np.float64)      # channels first
    w = random_array(rng, (6, 2, 3, 3), np.float64)
    b = random_array(rng, (6,), np.float64)
    kw = dict(stride=2, padding=((1, 0), (2, 1)), groups=2)
    expected = conv_ref(x, w, b, stride=(2, 2), dilation=(1, 1), pad_before=(1, 2),
                        pad_after=(0, 1), groups=2)
    xin = to_channels_last(x) if data_format == "channels_last" else x
    if not batched:
        xin, expected = xin[:1][0], expected[:1]
    y = nd.conv(xin, w, b, data_format=data_format, **kw)
    if data_format == "channels_last":
        y = to_channels_first(y[None] if not batched else y)
    elif not batched:
        y = y[None]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv_result_dtype_and_inputs_untouched(rng):
    x = rng.integers(-3, 4, size=(1, 2, 5)).astype(np.int32)
    w = rng.integers(-3, 4, size=(2, 2, 2)).astype(np.int64)
    x0, w0 = x.copy(), w.copy()
    y = nd.conv(x, w, padding=1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, conv_reference(x, w, padding=1))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    y16 = nd.conv(x.astype(np.float16), w.astype(np.float16), padding=1)
    assert y16.dtype == np.float32
    y32 = nd.conv(x.astype(np.float32), w.astype(np.float64), padding=1)
    assert y32.dtype == np.float64


def test_conv_out(rng):
    x = rng.standard_normal((2, 2, 7))
    w = rng.standard_normal((3, 2, 3))
    expected = nd.conv(x, w, stride=2, padding=1)
    out = np.full(expected.shape, np.nan)
    res = nd.conv(x, w, stride=2, padding=1, out=out)
    assert res is out
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------
# against torch
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rank,stride,dilation,pb,pa,groups,mode", ORACLE_TORCH_CASES)
def test_conv_matches_torch(rank, stride, dilation, pb, pa, groups, mode):
    rng = np.random.default_rng(rank * 10 + groups)
    x = rng.standard_normal((2, 2 * groups) + (5, 4, 4)[:rank])
    w = rng.standard_normal((3 * groups, 2) + (3, 2, 2)[:rank])
    b = rng.standard_normal(3 * groups)
    expected = torch_conv(x, w, b, stride=stride, dilation=dilation, pad_before=pb,
                          pad_after=pa, groups=groups, padding_mode=mode)
    y = nd.conv(x, w, b, stride=stride, dilation=dilation, padding=tuple(zip(pb, pa)),
                groups=groups, padding_mode=mode)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank,k,d", [(1, 4, 1), (2, 3, 2), (3, 2, 1)])
def test_same_matches_torch_same_at_stride_1(rank, k, d):
    """torch's padding="same" (stride 1 only) puts total // 2 before, like
    TensorFlow's SAME."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((1, 2) + (5, 4, 4)[:rank])
    w = rng.standard_normal((2, 2) + (k,) * rank)
    expected = fn(torch.from_numpy(x), torch.from_numpy(w), padding="same",
                  dilation=d).numpy()
    np.testing.assert_allclose(nd.conv(x, w, padding="same", dilation=d), expected,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_conv_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = random_array(rng, (2, 4, 6, 5), dtype)
    w = random_array(rng, (2, 2, 3, 2), dtype)
    try:
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x.astype(np.complex128)),
            torch.from_numpy(w.astype(np.complex128)), stride=2, padding=1,
            groups=2).numpy()
    except RuntimeError as err:   # pragma: no cover - depends on torch build
        pytest.skip(f"torch has no complex conv here: {err}")
    y = nd.conv(x, w, stride=2, padding=1, groups=2)
    bound = conv_reference(np.abs(x), np.abs(w), stride=2, padding=1, groups=2)
    assert_bounded(y, expected, bound, dtype, 2 * 6 + 1)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_conv_unknown_padding_mode():
    with pytest.raises(ValueError, match="padding_mode"):
        nd.conv(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding=1, padding_mode="mirror")


def test_conv_channel_mismatch():
    # x has 3 channels; weight (2, 2, 3) with groups=1 expects 2
    with pytest.raises(ValueError, match=r"(?i)channel|group"):
        nd.conv(np.ones((1, 3, 5)), np.ones((2, 2, 3)))
    # groups must divide C_out
    with pytest.raises(ValueError, match=r"(?i)channel|group"):
        nd.conv(np.ones((1, 4, 5)), np.ones((3, 2, 3)), groups=2)


def test_conv_kernel_larger_than_padded_input():
    with pytest.raises(ValueError):
        nd.conv(np.ones((1, 1, 3)), np.ones((1, 1, 5)), padding=0)
