"""conv_weight_grad and conv_transpose_weight_grad: the gradients of conv and
conv_transpose with respect to the weight, as PyTorch's autograd gives them
(``w.grad``; complex: ``sum conj(x) * grad_output``).

Checked against the direct-sum oracles ``reference.conv_weight_grad_ref`` /
``conv_transpose_weight_grad_ref``, against torch autograd (float64; for the
transposed convolution with a padding mode, torch's double backward of
conv(F.pad(x))), and by the identity that defines them: for every weight v,
``<grad, v> = <grad_output, f(x, v)>`` (real), ``vdot(f(x, v), g) =
vdot(v, grad)`` (complex).
"""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv as nd
from helpers import random_array
from reference import (conv_pads, conv_ref, conv_transpose_mode_ref,
                       conv_transpose_weight_grad_ref, conv_weight_grad_ref,
                       explicit_pads, to_channels_last)
from test_conv import TORCH_MODES, assert_bounded, torch_pad_list

MODES = ("zeros", "circular", "reflect", "replicate")

# id, rank: spatial, kernel, stride, dilation, padding, groups, mode, dtype
CASES = [
    ("1d-s2-pairs-circ", (9,), (3,), 2, 1, [(2, 1)], 1, "circular", np.float64),
    ("1d-s3-d2-refl", (10,), (2,), 3, 2, 3, 2, "reflect", np.float32),
    ("1d-same-repl", (8,), (4,), 2, 1, "same", 1, "replicate", np.complex128),
    ("1d-zeros-c64", (7,), (3,), 1, 2, 2, 2, "zeros", np.complex64),
    ("2d-zeros-s2", (6, 5), (3, 2), 2, 1, 1, 2, "zeros", np.float32),
    ("2d-circ-mixed", (5, 6), (2, 3), (1, 3), (2, 1), ((1, 2), (0, 3)), 1, "circular",
     np.complex64),
    ("2d-refl-same", (6, 4), (3, 3), 2, 1, "same", 2, "reflect", np.float64),
    ("2d-repl-d2", (5, 5), (2, 2), 1, 2, ((2, 0), (1, 1)), 2, "replicate", np.complex128),
    ("3d-zeros", (4, 3, 4), (2, 2, 2), (2, 1, 1), 1, (1, 0, 1), 1, "zeros", np.float64),
    ("3d-refl", (3, 4, 3), (2, 1, 2), 1, (1, 1, 2), ((1, 0), (2, 1), (0, 2)), 2,
     "reflect", np.complex64),
    ("3d-circ-s3", (4, 4, 3), (1, 2, 2), (3, 2, 1), 1, 2, 1, "circular", np.float32),
    ("4d-repl", (3, 2, 3, 3), (2, 1, 2, 1), (1, 1, 2, 1), 1,
     ((1, 0), (0, 1), (1, 1), (0, 0)), 2, "replicate", np.float64),
]


def case_id(c):
    return c[0]


def _setup(case, seed):
    _, spatial, kernel, stride, dilation, padding, groups, mode, dtype = case
    rank = len(spatial)
    rng = np.random.default_rng(seed)
    p = conv_pads(spatial, kernel, stride=stride, padding=padding, dilation=dilation)
    x = random_array(rng, (2, 2 * groups) + spatial, dtype)
    go = random_array(rng, (2, 3 * groups) + p["out_spatial"], dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=mode)
    ref_kw = dict(stride=p["stride"], dilation=p["dilation"], pad_before=p["pad_before"],
                  pad_after=p["pad_after"], groups=groups, padding_mode=mode)
    return rng, rank, x, go, kw, ref_kw, p


# ---------------------------------------------------------------------------
# The oracles
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_weight_grad_oracles_by_their_defining_identity(mode):
    """<gw, v> == <go, conv(x, v)> for every v (conj on x for complex), and
    the same for the transposed convolution."""
    rng = np.random.default_rng(1)
    x = random_array(rng, (2, 4, 6, 5), np.complex128)
    kw = dict(stride=(2, 1), dilation=(1, 2), pad_before=(2, 1), pad_after=(1, 2),
              groups=2, padding_mode=mode)
    v = random_array(rng, (6, 2, 3, 2), np.complex128)
    go = random_array(rng, conv_ref(x, v, **kw).shape, np.complex128)
    gw = conv_weight_grad_ref(x, go, (3, 2), **kw)
    assert gw.shape == v.shape
    # y = conv(x, v) = sum x * v is linear in v, and gw = sum conj(x) * go,
    # so vdot(y, go) = sum conj(x * v) * go = sum conj(v) * gw = vdot(v, gw)
    assert np.isclose(np.vdot(conv_ref(x, v, **kw), go), np.vdot(v, gw), rtol=1e-12)
    # transposed
    xt = random_array(rng, (2, 4, 4, 4), np.complex128)
    vt = random_array(rng, (4, 3, 3, 2), np.complex128)
    tkw = dict(kw, output_padding=(1, 0))
    yt = conv_transpose_mode_ref(xt, vt, **tkw)
    got = random_array(rng, yt.shape, np.complex128)
    gwt = conv_transpose_weight_grad_ref(xt, got, (3, 2), **tkw)
    assert gwt.shape == vt.shape
    assert np.isclose(np.vdot(yt, got), np.vdot(vt, gwt), rtol=1e-12)


def _torch():
    return pytest.importorskip("torch")


def torch_conv_weight_grad(x, go, w_shape, *, stride, dilation, pad_before, pad_after,
                           groups, padding_mode):
    """w.grad of conv{n}d(F.pad(x, mode), w) for upstream go (float64/complex128)."""
    torch = _torch()
    F = torch.nn.functional
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(w_shape) - 2]
    dt = torch.complex128 if np.iscomplexobj(x) else torch.float64
    w = torch.zeros(w_shape, dtype=dt, requires_grad=True)
    xp = F.pad(torch.from_numpy(x), torch_pad_list(pad_before, pad_after),
               mode=TORCH_MODES[padding_mode])
    fn(xp, w, stride=stride, dilation=dilation, groups=groups).backward(
        torch.from_numpy(go))
    return w.grad.numpy()


def torch_conv_transpose_weight_grad(x, go, w_shape, *, stride, dilation, pad_before,
                                     pad_after, groups, padding_mode):
    """w.grad of the transposed convolution for upstream go: zero mode with
    symmetric pads straight from F.conv_transpose{n}d; otherwise the
    transposed convolution is written as the input gradient of
    conv(F.pad(z, mode), w) (create_graph=True) and differentiated again."""
    torch = _torch()
    F = torch.nn.functional
    rank = len(w_shape) - 2
    w = torch.zeros(w_shape, dtype=torch.float64, requires_grad=True)
    base = tuple((i - 1) * s - pb - pa + d * (k - 1) + 1 for i, s, pb, pa, d, k in zip(
        x.shape[2:], stride, pad_before, pad_after, dilation, w_shape[2:]))
    op = tuple(o - b for o, b in zip(go.shape[2:], base))
    if padding_mode == "zeros" and pad_before == pad_after:
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
        y = fn(torch.from_numpy(x), w, stride=stride, padding=pad_before,
               output_padding=op, dilation=dilation, groups=groups)
    else:
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
        z = torch.zeros(go.shape, dtype=torch.float64, requires_grad=True)
        zp = F.pad(z, torch_pad_list(pad_before, pad_after),
                   mode=TORCH_MODES[padding_mode])
        out = fn(zp, w, stride=stride, dilation=dilation, groups=groups)
        (y,) = torch.autograd.grad(out, z, grad_outputs=torch.from_numpy(x),
                                   create_graph=True)
    (gw,) = torch.autograd.grad(y, w, grad_outputs=torch.from_numpy(go))
    return gw.numpy()


TORCH_CASES = [c for c in CASES if len(c[1]) <= 3]


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_weight_grad_oracles_match_torch(case):
    _, rank, x, go, _, ref_kw, p = _setup(case, 2)
    x, go = x.real.astype(np.float64), go.real.astype(np.float64)
    groups, kernel = case[6], case[2]
    w_shape = (go.shape[1], x.shape[1] // groups) + kernel
    expected = torch_conv_weight_grad(x, go, w_shape, **ref_kw)
    np.testing.assert_allclose(conv_weight_grad_ref(x, go, kernel, **ref_kw), expected,
                               rtol=1e-11, atol=1e-11)
    # transposed: input go-shaped (C = 3*groups), output x-shaped
    expected_t = torch_conv_transpose_weight_grad(go, x, w_shape, **ref_kw)
    np.testing.assert_allclose(
        conv_transpose_weight_grad_ref(go, x, kernel, **ref_kw), expected_t,
        rtol=1e-11, atol=1e-11)


def test_complex_oracle_matches_torch_conjugate_convention():
    torch = _torch()
    rng = np.random.default_rng(3)
    x = random_array(rng, (2, 2, 7), np.complex128)
    go = random_array(rng, (2, 4, 4), np.complex128)
    kw = dict(stride=(2,), dilation=(1,), pad_before=(1,), pad_after=(2,), groups=2,
              padding_mode="circular")
    try:
        expected = torch_conv_weight_grad(x, go, (4, 1, 3), **kw)
    except RuntimeError as err:   # pragma: no cover - depends on torch build
        pytest.skip(f"torch has no complex conv here: {err}")
    np.testing.assert_allclose(conv_weight_grad_ref(x, go, (3,), **kw), expected,
                               rtol=1e-12, atol=1e-12)
    # conv_transpose (zeros) in complex
    F = torch.nn.functional
    xt = random_array(rng, (2, 4, 3), np.complex128)
    w = torch.zeros((4, 2, 3), dtype=torch.complex128, requires_grad=True)
    y = F.conv_transpose1d(torch.from_numpy(xt), w, stride=2, padding=1, groups=2)
    got = random_array(rng, tuple(y.shape), np.complex128)
    y.backward(torch.from_numpy(got))
    actual = conv_transpose_weight_grad_ref(
        xt, got, (3,), stride=(2,), dilation=(1,), pad_before=(1,), pad_after=(1,),
        groups=2)
    np.testing.assert_allclose(actual, w.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# The library against the oracles
# ---------------------------------------------------------------------------

def _grad_tolerance_args(x, go, kernel, ref_fn, **ref_kw):
    bound = ref_fn(np.abs(x), np.abs(go), kernel, **ref_kw)
    # a sum over batch and positions; conv_transpose's padded grad_output
    # can repeat an element up to (1 + pb + pa) times per dim
    n_terms = x.shape[0] * max(int(np.prod(x.shape[2:])), int(np.prod(go.shape[2:])))
    return bound, n_terms + 1


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv_weight_grad_matches_oracle(case):
    _, rank, x, go, kw, ref_kw, p = _setup(case, 4)
    kernel, groups, dtype = case[2], case[6], np.dtype(case[8])
    actual = nd.conv_weight_grad(x, go, kernel, **kw)
    expected = conv_weight_grad_ref(x, go, kernel, **ref_kw)
    bound, n = _grad_tolerance_args(x, go, kernel, conv_weight_grad_ref, **ref_kw)
    assert_bounded(actual, expected, bound, dtype, n)
    assert actual.shape == (go.shape[1], x.shape[1] // groups) + kernel


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv_transpose_weight_grad_matches_oracle(case):
    """The transposed convolution of the case's conv output shape back to
    its input shape: its input is ``go``-shaped, its result ``x``-shaped."""
    _, rank, x, go, kw, ref_kw, p = _setup(case, 5)
    kernel, groups, dtype = case[2], case[6], np.dtype(case[8])
    ct = explicit_pads(p["out_spatial"], kernel, stride=p["stride"],
                       padding=tuple(zip(p["pad_before"], p["pad_after"])),
                       dilation=p["dilation"], output_size=x.shape[2:])
    actual = nd.conv_transpose_weight_grad(
        go, x, kernel, stride=p["stride"], dilation=p["dilation"],
        padding=tuple(zip(p["pad_before"], p["pad_after"])),
        output_padding=ct["output_padding"], groups=groups, padding_mode=case[7])
    expected = conv_transpose_weight_grad_ref(go, x, kernel, **ref_kw)
    bound, n = _grad_tolerance_args(go, x, kernel, conv_transpose_weight_grad_ref,
                                    **ref_kw)
    folds = int(np.prod([1 + b + a for b, a in zip(p["pad_before"], p["pad_after"])]))
    assert_bounded(actual, expected, bound, dtype, n * folds)
    assert actual.shape == (go.shape[1], x.shape[1] // groups) + kernel


@pytest.mark.parametrize("case", CASES[::3], ids=case_id)
def test_weight_grads_by_their_defining_identity(case):
    """Library only: vdot(conv(x, v), go) == vdot(v, conv_weight_grad(x, go))
    and likewise for conv_transpose, in the case's dtype."""
    rng, rank, x, go, kw, ref_kw, p = _setup(case, 6)
    kernel, groups, dtype = case[2], case[6], np.dtype(case[8])
    v = random_array(rng, (go.shape[1], x.shape[1] // groups) + kernel, dtype)
    gw = nd.conv_weight_grad(x, go, kernel, **kw)
    lhs = np.vdot(nd.conv(x, v, **kw).astype(np.complex128), go)
    rhs = np.vdot(v.astype(np.complex128), gw.astype(np.complex128))
    mag = float(np.sum(np.abs(conv_ref(np.abs(x), np.abs(v), **ref_kw) * np.abs(go))))
    eps = float(np.finfo(dtype).eps)
    assert abs(lhs - rhs) <= 16 * (x.size + v.size) * eps * mag


@pytest.mark.parametrize("case", TORCH_CASES[::2], ids=case_id)
def test_weight_grads_match_torch(case):
    _, rank, x, go, kw, ref_kw, p = _setup(case, 7)
    x, go = x.real.astype(np.float64), go.real.astype(np.float64)
    kernel, groups = case[2], case[6]
    w_shape = (go.shape[1], x.shape[1] // groups) + kernel
    np.testing.assert_allclose(nd.conv_weight_grad(x, go, kernel, **kw),
                               torch_conv_weight_grad(x, go, w_shape, **ref_kw),
                               rtol=1e-11, atol=1e-11)
    ct = explicit_pads(p["out_spatial"], kernel, stride=p["stride"],
                       padding=tuple(zip(p["pad_before"], p["pad_after"])),
                       dilation=p["dilation"], output_size=x.shape[2:])
    actual = nd.conv_transpose_weight_grad(
        go, x, kernel, stride=p["stride"], dilation=p["dilation"],
        padding=tuple(zip(p["pad_before"], p["pad_after"])),
        output_padding=ct["output_padding"], groups=groups, padding_mode=case[7])
    np.testing.assert_allclose(actual, torch_conv_transpose_weight_grad(
        go, x, w_shape, **ref_kw), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_weight_grad_conjugates_x(dtype):
    """One channel, one tap, no padding: the gradient is sum conj(x) * go."""
    x = np.array([[[1 + 2j, 3 - 1j]]], dtype=dtype)
    go = np.array([[[2 - 1j, 1j]]], dtype=dtype)
    expected = np.sum(np.conj(x) * go)        # -1 - 2j
    np.testing.assert_allclose(nd.conv_weight_grad(x.copy(), go.copy(), 1)[0, 0, 0],
                               expected, rtol=1e-6)
    np.testing.assert_allclose(
        nd.conv_transpose_weight_grad(x.copy(), go.copy(), 1)[0, 0, 0], expected,
        rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("fn", ["conv_weight_grad", "conv_transpose_weight_grad"])
@pytest.mark.parametrize("shape,kernel", [((1, 1, 5), 3), ((1, 1, 4), 1),
                                          ((1, 1, 4, 3), (2, 1)), ((2, 2, 5), 2)])
def test_weight_grads_leave_inputs_untouched(dtype, fn, shape, kernel, rng):
    """Inputs are never modified (docs/semantics.md 7.2), also where the
    library's own views of them are contiguous (one image, one channel, no
    padding), and the result is right there too."""
    x = random_array(rng, shape, dtype)
    rank = len(shape) - 2
    k = (kernel,) * rank if isinstance(kernel, int) else kernel
    if fn == "conv_weight_grad":
        go_spatial = tuple(i - kk + 1 for i, kk in zip(shape[2:], k))
        ref = conv_weight_grad_ref
    else:
        go_spatial = tuple(i + kk - 1 for i, kk in zip(shape[2:], k))
        ref = conv_transpose_weight_grad_ref
    go = random_array(rng, shape[:2] + go_spatial, dtype)
    x0, go0 = x.copy(), go.copy()
    actual = getattr(nd, fn)(x, go, kernel)
    np.testing.assert_array_equal(x, x0, err_msg="x was modified")
    np.testing.assert_array_equal(go, go0, err_msg="grad_output was modified")
    ones = (1,) * rank
    expected = ref(x0, go0, k, stride=ones, dilation=ones, pad_before=(0,) * rank,
                   pad_after=(0,) * rank)
    bound = ref(np.abs(x0), np.abs(go0), k, stride=ones, dilation=ones,
                pad_before=(0,) * rank, pad_after=(0,) * rank)
    assert_bounded(actual, expected, bound, dtype, x.size + go.size)


def test_weight_grads_channels_last_and_unbatched(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    go_shape = conv_ref(x, np.ones((6, 2, 3, 2)), stride=(2, 1), dilation=(1, 1),
                        pad_before=(1, 0), pad_after=(1, 1), groups=2).shape
    go = rng.standard_normal(go_shape)
    kw = dict(stride=(2, 1), padding=((1, 1), (0, 1)), groups=2, padding_mode="reflect")
    expected = nd.conv_weight_grad(x, go, (3, 2), **kw)
    np.testing.assert_allclose(
        nd.conv_weight_grad(to_channels_last(x), to_channels_last(go), (3, 2),
                            data_format="channels_last", **kw), expected,
        rtol=1e-12, atol=1e-12)
    # unbatched: the sample's own gradient
    np.testing.assert_allclose(
        nd.conv_weight_grad(x[0], go[0], (3, 2), **kw),
        nd.conv_weight_grad(x[:1], go[:1], (3, 2), **kw), rtol=1e-12, atol=1e-12)
    # transposed, channels last
    et = nd.conv_transpose_weight_grad(go, x, (3, 2), output_padding=(1, 0), **kw)
    np.testing.assert_allclose(
        nd.conv_transpose_weight_grad(to_channels_last(go), to_channels_last(x), (3, 2),
                                      output_padding=(1, 0), data_format="channels_last",
                                      **kw), et, rtol=1e-12, atol=1e-12)


def test_int_kernel_size_means_every_dim(rng):
    x = rng.standard_normal((1, 2, 5, 6))
    go = rng.standard_normal((1, 3, 3, 4))
    np.testing.assert_array_equal(nd.conv_weight_grad(x, go, 3),
                                  nd.conv_weight_grad(x, go, (3, 3)))


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", ["conv_weight_grad", "conv_transpose_weight_grad"])
def test_kernel_size_of_the_wrong_length(fn):
    x = np.ones((1, 2, 5, 5))
    go = np.ones((1, 2, 3, 3) if fn == "conv_weight_grad" else (1, 2, 7, 7))
    with pytest.raises(ValueError, match="kernel_size"):
        getattr(nd, fn)(x, go, (3, 3, 3, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        getattr(nd, fn)(x, go, (3,))


@pytest.mark.parametrize("fn", ["conv_weight_grad", "conv_transpose_weight_grad"])
def test_channel_counts_must_fit_the_groups(fn):
    f = getattr(nd, fn)
    go_spatial = (3,) if fn == "conv_weight_grad" else (7,)
    # x has 3 channels, groups 2
    with pytest.raises(ValueError, match=r"groups|channel"):
        f(np.ones((1, 3, 5)), np.ones((1, 2) + go_spatial), 3, groups=2)
    # grad_output has 3 channels, groups 2
    with pytest.raises(ValueError, match=r"groups|channel"):
        f(np.ones((1, 2, 5)), np.ones((1, 3) + go_spatial), 3, groups=2)


@pytest.mark.parametrize("fn", ["conv_weight_grad", "conv_transpose_weight_grad"])
def test_grad_output_of_the_wrong_size(fn):
    f = getattr(nd, fn)
    good = (3,) if fn == "conv_weight_grad" else (7,)
    f(np.ones((1, 2, 5)), np.ones((1, 2) + good), 3)
    with pytest.raises(ValueError, match="grad_output"):
        f(np.ones((1, 2, 5)), np.ones((1, 2, good[0] + 1)), 3)
    with pytest.raises(ValueError, match="grad_output"):   # batch differs
        f(np.ones((1, 2, 5)), np.ones((2, 2) + good), 3)


def test_weight_grad_mode_limits():
    with pytest.raises(ValueError, match="reflect"):
        nd.conv_weight_grad(np.ones((1, 1, 3)), np.ones((1, 1, 9)), 1, padding=3,
                            padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        nd.conv_transpose_weight_grad(np.ones((1, 1, 3)), np.ones((1, 1, 3)), 1,
                                      padding_mode="mirror")
