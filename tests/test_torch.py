"""Cross-checks against torch.nn.functional.conv_transpose{1,2,3}d.

PyTorch uses the same weight layout (C_in, C_out/groups, *k) and the same
un-flipped scatter, so results must agree to rounding. Skipped when torch
is not installed (CI installs the CPU build).

Asymmetric padding and "same" have no torch spelling: they are checked as
a crop of torch's unpadded result, which is what they mean.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from numba_deconv import conv_transpose  # noqa: E402

TORCH_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
EPS = {np.float32: 1.2e-7, np.float64: 2.3e-16, np.complex64: 1.2e-7,
       np.complex128: 2.3e-16}


def torch_ct(x, w, b=None, **kwargs):
    """torch's transposed convolution in float64/complex128 (exact products),
    plus the magnitude bound |x| * |w| + |b| for the tolerance."""
    rank = w.ndim - 2
    wide = np.complex128 if np.iscomplexobj(x) else np.float64
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a, wide))
    y = TORCH_FN[rank](t(x), t(w), t(b), **kwargs).numpy()
    bound = TORCH_FN[rank](t(np.abs(x)).real, t(np.abs(w)).real,
                           None if b is None else t(np.abs(b)).real,
                           **kwargs).numpy()
    return y, bound


def assert_close_to_torch(actual, expected, bound, dtype, n_terms):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == dtype
    tol = 8 * n_terms * EPS[dtype] * bound + 1e-300
    err = np.abs(actual - expected)
    assert (err <= tol).all(), (
        f"max error {err.max():.3g}, max allowed at that point "
        f"{tol.flat[err.argmax()]:.3g}")


def make(rank, n, c_in, c_out_g, groups, size, k, dtype, seed):
    rng = np.random.default_rng(seed)

    def rand(shape):
        a = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        return a.astype(dtype)

    return (rand((n, c_in) + (size,) * rank), rand((c_in, c_out_g) + (k,) * rank),
            rand((c_out_g * groups,)))


# rank x stride x dilation x padding x groups x output_padding x dtype
SPREAD = [
    (rank, s, d, p, g, op, dtype)
    for rank, s, d, p, g, op_kind, dtype in itertools.product(
        [1, 2, 3], [1, 2, 3], [1, 2], [0, 2], [1, 2], ["zero", "max"],
        [np.float32, np.float64])
    for op in [0 if op_kind == "zero" else max(s, d) - 1]
    if not (op_kind == "max" and max(s, d) == 1)
]


@pytest.mark.parametrize("rank,stride,dilation,padding,groups,output_padding,dtype",
                         SPREAD)
def test_matches_torch(rank, stride, dilation, padding, groups, output_padding,
                       dtype):
    size = 3 if rank < 3 else 2
    x, w, b = make(rank, 2, 2 * groups, 2, groups, size, 3, dtype,
                   seed=rank * 1000 + stride * 100 + dilation * 10 + padding)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation, groups=groups)
    if (size - 1) * stride - 2 * padding + dilation * 2 + 1 + output_padding < 1:
        # torch returns an empty result here; the contract asks for an error
        # that says why.
        with pytest.raises(ValueError, match=r"padding=.*leaves no output"):
            conv_transpose(x, w, b, **kwargs)
        return
    expected, bound = torch_ct(x, w, b, **kwargs)
    actual = conv_transpose(x, w, b, **kwargs)
    assert_close_to_torch(actual, expected, bound, dtype, 2 * 3**rank + 1)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("c_in,c_out_g,groups", [
    (4, 1, 4),        # depthwise
    (3, 2, 3),        # depthwise, multiplier 2
    (6, 2, 3),
    (16, 16, 1),      # many channels
    (32, 8, 2),       # many channels per group
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_groups_and_channels_match_torch(rank, c_in, c_out_g, groups, dtype):
    x, w, b = make(rank, 2, c_in, c_out_g, groups, 4 if rank < 3 else 3, 3,
                   dtype, seed=c_in * 100 + groups + rank)
    kwargs = dict(stride=2, padding=1, output_padding=1, groups=groups)
    expected, bound = torch_ct(x, w, b, **kwargs)
    actual = conv_transpose(x, w, b, **kwargs)
    assert_close_to_torch(actual, expected, bound, dtype,
                          (c_in // groups) * 3**rank + 1)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("groups", [1, 2])
def test_complex_matches_torch(rank, dtype, groups):
    x, w, b = make(rank, 2, 2 * groups, 2, groups, 3, 2, dtype, seed=rank)
    kwargs = dict(stride=2, padding=1, dilation=2, output_padding=1,
                  groups=groups)
    try:
        expected, bound = torch_ct(x, w, b, **kwargs)
    except RuntimeError as err:   # pragma: no cover - depends on torch build
        pytest.skip(f"torch has no complex conv_transpose here: {err}")
    actual = conv_transpose(x, w, b, **kwargs)
    assert_close_to_torch(actual, expected, bound, dtype, 2 * 2**rank + 1)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_per_dim_arguments_match_torch(rank):
    stride, dilation = (3, 1, 2)[:rank], (1, 2, 3)[:rank]
    padding, output_padding = (2, 0, 1)[:rank], (1, 1, 2)[:rank]
    x, w, b = make(rank, 1, 2, 3, 1, 3, 3, np.float64, seed=7)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  dilation=dilation)
    expected, bound = torch_ct(x, w, b, **kwargs)
    assert_close_to_torch(conv_transpose(x, w, b, **kwargs), expected, bound,
                          np.float64, 2 * 3**rank + 1)


@pytest.mark.parametrize("pairs", [((0, 2),), ((3, 0),), ((1, 2), (2, 0)),
                                   ((0, 1), (2, 2), (1, 0))], ids=repr)
@pytest.mark.parametrize("stride", [1, 2])
def test_asymmetric_padding_is_a_crop_of_torch(pairs, stride):
    rank = len(pairs)
    x, w, b = make(rank, 2, 2, 2, 1, 3, 3, np.float64, seed=rank + stride)
    full, bound = torch_ct(x, w, b, stride=stride)
    crop = (slice(None), slice(None)) + tuple(
        slice(pb, n - pa) for (pb, pa), n in zip(pairs, full.shape[2:]))
    actual = conv_transpose(x, w, b, stride=stride, padding=pairs)
    assert_close_to_torch(actual, full[crop], bound[crop], np.float64,
                          2 * 3**rank + 1)


@pytest.mark.parametrize("k,s,d", [(3, 2, 1), (4, 2, 1), (5, 3, 1), (2, 3, 1),
                                   (3, 1, 2), (1, 2, 1)])
def test_same_padding_is_a_crop_of_torch(k, s, d):
    """"same": output I*s, total = max(d*(k-1)+1-s, 0), total//2 cropped
    before; when the full result is shorter than I*s (k*d small), the tail
    is zero + bias (what torch's output_padding gives)."""
    x, w, b = make(2, 1, 2, 2, 1, 4, k, np.float64, seed=k * 10 + s)
    total = max(d * (k - 1) + 1 - s, 0)
    full_n = 3 * s + d * (k - 1) + 1
    extra = max(4 * s + total // 2 - full_n, 0)
    full, bound = torch_ct(x, w, b, stride=s, dilation=d,
                           output_padding=extra)
    crop = (slice(None), slice(None)) + (slice(total // 2, total // 2 + 4 * s),) * 2
    actual = conv_transpose(x, w, b, stride=s, dilation=d, padding="same")
    assert actual.shape[2:] == (4 * s, 4 * s)
    assert_close_to_torch(actual, full[crop], bound[crop], np.float64,
                          2 * k * k + 1)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_output_size_matches_torch_module(rank):
    """torch.nn.ConvTranspose{n}d(...)(x, output_size=...) picks the
    output_padding the same way."""
    module_cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d,
                  3: torch.nn.ConvTranspose3d}[rank]
    module = module_cls(2, 3, 3, stride=3, padding=1, dilation=1).double()
    x = np.random.default_rng(rank).standard_normal((1, 2) + (3,) * rank)
    size = (7, 8, 9)[:rank]      # base (3-1)*3 - 2 + 2 + 1 = 7; reachable 7..9
    with torch.no_grad():
        expected = module(torch.from_numpy(x), output_size=list(size)).numpy()
    w = module.weight.detach().numpy()
    b = module.bias.detach().numpy()
    actual = conv_transpose(x, w, b, stride=3, padding=1, output_size=size)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)
