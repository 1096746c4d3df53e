"""numba_deconv.explain: sizes, the direct form, the account, the CLI parser."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numba_deconv import conv_transpose
from numba_deconv.explain import add_parser, cli_explain, demo_text, explain

X = np.array([[-67.0, -77.0], [-117.0, -127.0]])[None, None]
W = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])[None, None]


def test_worked_example_attributes():
    e = explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2)
    assert e.output_shape == (1, 1, 5, 5)
    assert e.upsampled_shape == (3, 3)
    assert e.pad == ((2, 2), (2, 2))
    assert e.kernel_flip is True


def test_worked_example_direct():
    d = explain(X.shape, W.shape, stride=2).direct(X, W)
    np.testing.assert_array_equal(d.upsampled[0, 0], [[-67, 0, -77], [0, 0, 0], [-117, 0, -127]])
    assert d.padded.shape == (1, 1, 7, 7)
    np.testing.assert_array_equal(d.padded[0, 0, 2:5, 2:5], d.upsampled[0, 0])
    assert not d.padded[0, 0, :2].any() and not d.padded[0, 0, :, 5:].any()
    np.testing.assert_array_equal(d.flipped_kernel[0, 0], W[0, 0, ::-1, ::-1])
    np.testing.assert_array_equal(d.result[0, 0, 0], [67, -134, 278, -154, 231])
    np.testing.assert_array_equal(d.result[0, 0, 4], [819, -936, 1942, -1016, 1143])
    assert d.result[0, 0, 2, 2] == 1620
    np.testing.assert_array_equal(d.result, conv_transpose(X, W, stride=2))


def test_pad_negative_means_crop_and_unbatched():
    e = explain((2, 4), (2, 1, 2), stride=2, padding=3, output_padding=1)
    # d*(k-1) - pad_before = 1 - 3, d*(k-1) - pad_after + output_padding = 1 - 3 + 1
    assert e.pad == ((-2, -1),)
    assert e.output_shape == (1, 3)  # (4 - 1)*2 - 3 - 3 + 1*(2 - 1) + 1 + 1
    x = np.arange(8.0).reshape(2, 4)
    w = np.array([[[1.0, 10.0]], [[100.0, 1000.0]]])
    d = e.direct(x, w)
    assert d.upsampled.shape == (2, 7) and d.padded.shape == (2, 7 - 2 - 1)
    np.testing.assert_array_equal(d.result, conv_transpose(x, w, stride=2, padding=3,
                                                           output_padding=1))


def test_groups_flip_swaps_channels_per_group():
    w = np.arange(4 * 3 * 2, dtype=float).reshape(4, 3, 2)  # 2 groups: 2 in, 3 out each
    e = explain((1, 4, 3), w.shape, groups=2)
    d = e.direct(np.ones((1, 4, 3)), w)
    assert d.flipped_kernel.shape == (6, 2, 2)
    for g in range(2):
        for co in range(3):
            for ci in range(2):
                np.testing.assert_array_equal(d.flipped_kernel[g * 3 + co, ci],
                                              w[g * 2 + ci, co, ::-1])


@st.composite
def configs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    cin = groups * draw(st.integers(1, 2))
    cout_g = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    kind = draw(st.sampled_from(["pairs", "same", "valid", "int"]))
    kwargs = dict(stride=stride, dilation=dilation, groups=groups)
    if kind == "same":
        kwargs["padding"] = "same"
    elif kind == "valid":
        kwargs["padding"] = "valid"
    else:
        pads = []
        for i, k, s, d in zip(spatial, kernel, stride, dilation):
            full = (i - 1) * s + d * (k - 1) + 1
            pb = draw(st.integers(0, full))
            pa = draw(st.integers(0, full - pb))
            if pb + pa >= full:  # keep at least one output
                pa = max(full - pb - 1, 0)
                pb = min(pb, full - 1)
            pads.append((pb, pa))
        if kind == "int":
            p = min(min(pair) for pair in pads)
            kwargs["padding"] = p
            pads = [(p, p)] * rank
        else:
            kwargs["padding"] = pads
        if draw(st.booleans()):
            kwargs["output_padding"] = tuple(
                draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    batched = draw(st.booleans())
    x_shape = ((draw(st.integers(1, 2)),) if batched else ()) + (cin, *spatial)
    return x_shape, (cin, cout_g, *kernel), kwargs


@given(configs(), st.integers(0, 2**32 - 1))
def test_direct_equals_conv_transpose(config, seed):
    x_shape, w_shape, kwargs = config
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    e = explain(x_shape, w_shape, **kwargs)
    d = e.direct(x, w)
    y = conv_transpose(x, w, **kwargs)
    assert e.output_shape == y.shape == d.result.shape
    np.testing.assert_allclose(d.result, y, rtol=1e-10, atol=1e-10)
    spatial = d.upsampled.shape[-len(e.upsampled_shape):]
    assert spatial == e.upsampled_shape
    assert d.padded.shape[-len(e.upsampled_shape):] == e.padded_shape


def test_output_size_full_shape_and_errors():
    e = explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2, output_size=(1, 1, 6, 5))
    assert e.output_shape == (1, 1, 6, 5)
    assert e.geometry.output_padding == (1, 0)
    with pytest.raises(ValueError, match="reachable sizes are 5..6"):
        explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2, output_size=(7, 5))
    with pytest.raises(ValueError, match="input channels"):
        explain((1, 2, 2, 2), (1, 1, 3, 3))
    e = explain((1, 1, 2, 2), (1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"x has shape \(1, 1, 3, 3\); this explanation is for"):
        e.direct(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)))


def test_str_worked_example():
    text = str(explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2))
    for fragment in [
        "x 1x1x2x2, weight 1x1x3x3 (C_in, C_out/groups, kH, kW) -> y 1x1x5x5",
        "H: (2 - 1)*2 - 0 - 0 + 1*(3 - 1) + 1 + 0 = 5",
        "Reachable output sizes with these pads: H 5..6, W 5..6",
        "1. insert s - 1 zeros between input samples: 2x2 -> 3x3",
        "H (2, 2), W (2, 2) -> 7x7",
        "kernel flipped in every spatial axis and C_in/C_out swapped -> 5x5",
        "Warning: uneven overlap in H, W",
        "torch.nn.functional.conv_transpose2d(x, weight, stride=2)",
        "filters = weight.transpose(2, 3, 1, 0)",
        'tf.nn.conv2d_transpose(x.transpose(0, 2, 3, 1), filters, '
        'output_shape=[1, 5, 5, 1], strides=2, padding="VALID")',
    ]:
        assert fragment in text, fragment


def test_str_even_overlap_has_no_warning():
    text = str(explain((1, 8, 4, 4), (8, 8, 4, 4), stride=2, padding=1))
    assert "Warning" not in text
    assert "conv_transpose2d(x, weight, stride=2, padding=1)" in text
    assert 'padding="SAME"' in text


def test_str_no_product_positions_and_rank_4():
    assert "receive no product at all" in str(explain((1, 1, 3), (1, 1, 1), stride=2))
    text = str(explain((1, 1, 2, 2, 2, 2), (1, 1, 2, 2, 2, 2), stride=2))
    assert "PyTorch has no rank-4" in text and "TensorFlow has no rank-4" in text


def _calls(text):
    lines = text.splitlines()
    torch_line = lines[lines.index("Same call in PyTorch (weight as is):") + 1].strip()
    start = next(i for i, line in enumerate(lines) if line.startswith("Same call in TensorFlow"))
    tf_lines = [line.strip() for line in lines[start + 1:]]
    return torch_line, tf_lines


def _torch_configs():
    for x_shape, w_shape, kwargs in [
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=[(0, 2)])),          # asymmetric
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=[(2, 0)])),
        ((2, 2, 4, 3), (2, 2, 3, 2), dict(stride=(2, 3), padding=[(1, 2), (0, 0)],
                                         output_padding=(1, 2))),
        ((2, 4, 3, 3), (4, 1, 3, 3), dict(stride=2, padding="same", groups=4)),
        ((1, 2, 3, 3), (2, 2, 2, 3), dict(stride=1, dilation=(3, 2), output_padding=(2, 1))),
        ((2, 3, 2), (3, 2, 4), dict(stride=3, padding=1, output_size=(6,))),
        ((1, 2, 2, 3, 2), (2, 2, 2, 3, 2), dict(stride=(2, 1, 2), padding=[(1, 0), 1, (0, 1)])),
        ((2, 3, 4, 4), (3, 2, 4, 4), dict(stride=2, padding=1)),
        ((1, 2, 3, 3), (2, 1, 3, 3), dict(stride=2, padding="same")),
        ((2, 5), (2, 3, 3), dict(stride=2, padding=1)),  # unbatched
    ]:
        yield x_shape, w_shape, kwargs


@pytest.mark.parametrize("x_shape, w_shape, kwargs", list(_torch_configs()))
def test_str_pytorch_call_runs(x_shape, w_shape, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    torch_line, _ = _calls(str(explain(x_shape, w_shape, **kwargs)))
    got = eval(torch_line, {"torch": torch, "x": torch.from_numpy(x),
                            "weight": torch.from_numpy(w)}).numpy()
    np.testing.assert_allclose(got, conv_transpose(x, w, **kwargs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", list(_torch_configs()))
def test_str_tensorflow_call_runs(x_shape, w_shape, kwargs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    import numba_deconv.compat.tensorflow  # noqa: F401  (used by rank 1/3 explicit calls)
    import numba_deconv

    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    e = explain(x_shape, w_shape, **kwargs)
    _, tf_lines = _calls(str(e))
    if tf_lines[0].startswith("not expressible"):
        g = e.geometry
        assert any(op >= s for op, s in zip(g.output_padding, g.stride))
        return
    scope = {"tf": tf, "x": x, "weight": w, "numba_deconv": numba_deconv}
    exec(tf_lines[0], scope)  # filters = weight.transpose(...)
    call = next(line for line in tf_lines[1:] if not line.startswith("("))
    try:
        got = np.asarray(eval(call, scope))
    except tf.errors.InvalidArgumentError as error:  # grouped: TF runs it on GPUs only
        if "not supported on CPU" not in error.message:
            raise
        pytest.skip(f"TensorFlow's CPU kernels refuse it: {error.message.split('[Op')[0]}")
    got = np.moveaxis(got, -1, 1)  # channels last -> first
    expected = conv_transpose(x, w, **kwargs)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["explain", *argv])


def test_cli(capsys):
    args = _parse(["--input", "1x1x2x2", "--kernel", "1x1x3x3", "--stride", "2"])
    assert args.func is cli_explain
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.strip() == str(explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2))


def test_cli_argument_forms(capsys):
    args = _parse(["--input", "1,2,4,5", "--kernel", "2x2x3x3", "--stride", "2x1",
                   "--padding", "1:2x0:1", "--dilation", "1x2", "--output-padding", "1x0",
                   "--groups", "2"])
    assert args.padding == [(1, 2), (0, 1)] and args.stride == (2, 1)
    assert cli_explain(args) == 0
    expected = explain((1, 2, 4, 5), (2, 2, 3, 3), stride=(2, 1), padding=[(1, 2), (0, 1)],
                       dilation=(1, 2), output_padding=(1, 0), groups=2)
    assert capsys.readouterr().out.strip() == str(expected)
    for padding, parsed in [("same", "same"), ("VALID", "valid"), ("2", 2), ("1x2", [1, 2])]:
        assert _parse(["--input", "1x1x2x2", "--kernel", "1x1x3x3",
                       "--padding", padding]).padding == parsed
    args = _parse(["--input", "1x1x2x2", "--kernel", "1x1x3x3", "--stride", "2",
                   "--output-size", "6x6"])
    assert cli_explain(args) == 0
    assert "1x1x6x6" in capsys.readouterr().out


def test_cli_errors(capsys):
    args = _parse(["--input", "1x1x2x2", "--kernel", "1x1x3x3", "--stride", "2",
                   "--output-size", "9x9"])
    assert cli_explain(args) == 2
    assert "error: output_size=(9, 9)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(["--input", "1xax2", "--kernel", "1x1x3x3"])


def test_demo_text():
    text = demo_text()
    assert "-67 x -1 = 67" in text and "-67 x -9 = 603" in text
    assert "    67   -134    278   -154    231" in text
    assert str(explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2)) in text
