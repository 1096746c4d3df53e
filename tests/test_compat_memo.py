"""The front ends check a call shape once (numba_deconv.compat._memo): a
call of a shape already checked skips the checks and computes the same
bits; anything else is checked, and a bad call fails every time."""

from __future__ import annotations

import numpy as np
import pytest

import numba_deconv
from numba_deconv.compat import _memo, onnx, tensorflow
from numba_deconv.compat._memo import CallMemo, call_key


class _Refused(Exception):
    pass


def _refuse(*args, **kwargs):
    raise _Refused


def test_call_keys_tell_apart_what_the_checks_tell_apart():
    x = np.zeros((2, 3), np.float32)
    assert call_key(x, [1, 2], "SAME") == call_key(np.ones((2, 3), np.float32), [1, 2], "SAME")
    different = [call_key(x.astype(np.float64)), call_key(x.T), call_key(x.astype(">f4")),
                 call_key(np.zeros((2, 3), np.float32))]
    assert len(set(different)) == 4  # dtype, shape, byte order; the same key as x's
    assert different[3] == call_key(x)
    values = [1, True, "1", b"1", None, [1], (1,), [[1, 2]], [(1, 2)]]
    assert len({call_key(v) for v in values}) == len(values)
    # Array-likes and NumPy scalars are not keyed: such calls are checked each time.
    for unkeyed in (np.int64(1), [np.int64(1)], 1.0, np.float32(1), {"a": 1},
                    np.zeros(2).view(np.ma.MaskedArray)):
        assert call_key(x, unkeyed) is None


def test_a_call_memo_keeps_the_latest():
    memo = CallMemo(most=2)
    for key in "abc":
        memo.keep((key,), key)
    assert len(memo) == 2 and memo.get(("a",)) is None and memo.get(("c",)) == "c"
    memo.keep(None, "x")
    assert memo.get(None) is None and len(memo) == 2


def _tf_call(rng, dtype=np.float32):
    x = rng.standard_normal((2, 5, 4, 3)).astype(dtype)        # NHWC
    filters = rng.standard_normal((3, 3, 4, 3)).astype(dtype)  # [kh, kw, out, in]
    kwargs = dict(output_shape=[2, 10, 8, 4], strides=2, padding="SAME")
    return x, filters, kwargs


def test_tensorflow_checks_a_call_shape_once(rng, monkeypatch):
    x, filters, kwargs = _tf_call(rng)
    first = tensorflow.conv2d_transpose(x, filters, **kwargs)
    weight = np.transpose(filters, (3, 2, 0, 1))
    core = numba_deconv.conv_transpose(x, weight, stride=2, padding=((0, 1), (0, 1)),
                                       output_size=(10, 8), data_format="channels_last")
    assert first.tobytes() == core.tobytes()
    with monkeypatch.context() as patched:
        patched.setattr(tensorflow, "_check", _refuse)
        x2 = rng.standard_normal(x.shape).astype(x.dtype)
        again = tensorflow.conv2d_transpose(x2, filters, **kwargs)
        want = numba_deconv.conv_transpose(x2, weight, stride=2, padding=((0, 1), (0, 1)),
                                           output_size=(10, 8), data_format="channels_last")
        assert again.tobytes() == want.tobytes()
        # Anything that is not the same call shape is checked again.
        for other in (dict(kwargs, padding="VALID", output_shape=[2, 11, 9, 4]),
                      dict(kwargs, strides=[2, 2])):
            with pytest.raises(_Refused):
                tensorflow.conv2d_transpose(x, filters, **other)
        with pytest.raises(_Refused):
            tensorflow.conv2d_transpose(x.astype(np.float64), filters, **kwargs)
        with pytest.raises(_Refused):
            tensorflow.conv2d_transpose(x.tolist(), filters, **kwargs)
        with pytest.raises(_Refused):  # the same shape through another function
            tensorflow.conv2d_backprop_input([2, 10, 8, 4], filters, x, 2, "SAME")


def test_tensorflow_bad_calls_fail_every_time(rng):
    x, filters, kwargs = _tf_call(rng)
    bad = dict(kwargs, output_shape=[2, 13, 8, 4])  # SAME, stride 2: 5 rows come from 9-10
    kept = len(tensorflow._CHECKED)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"output_shape\[1\] \(height\) = 13"):
            tensorflow.conv2d_transpose(x, filters, **bad)
    assert len(tensorflow._CHECKED) == kept


def test_tensorflow_empty_inputs_from_the_memo(rng):
    filters = rng.standard_normal((3, 4, 2)).astype(np.float32)
    x = np.zeros((2, 0, 2), np.float32)
    for _ in range(2):
        y = tensorflow.conv1d_transpose(x, filters, [2, 0, 4], 2, "VALID")
        assert y.shape == (2, 0, 4) and y.dtype == np.float32


def test_onnx_checks_a_call_shape_once(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(2)
    attrs = dict(strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0])
    first = onnx.conv_transpose(x, w, b, **attrs)
    core = numba_deconv.conv_transpose(x, w, b, stride=2, padding=((1, 1), (0, 1)),
                                       output_padding=(1, 0))
    assert first.tobytes() == core.tobytes()
    with monkeypatch.context() as patched:
        patched.setattr(onnx, "_check", _refuse)
        assert onnx.conv_transpose(x, w, b, **attrs).tobytes() == first.tobytes()
        for other in (dict(x=x, w=w, b=None, attrs=attrs),
                      dict(x=x, w=w, b=b, attrs=dict(attrs, pads=[0, 0, 1, 1])),
                      dict(x=x.astype(np.float32), w=w, b=b, attrs=attrs),
                      dict(x=x, w=w, b=b.tolist(), attrs=attrs)):
            with pytest.raises(_Refused):
                onnx.conv_transpose(other["x"], other["w"], other["b"], **other["attrs"])


@pytest.mark.parametrize("attrs", [
    dict(auto_pad="SAME_UPPER", strides=[3]),  # negative pads: zero borders
    dict(output_shape=[9], strides=[2]),       # output past the unpadded size
    dict(strides=[2]),
])
def test_onnx_memoised_calls_give_the_same_bits(attrs, rng):
    x = rng.standard_normal((1, 2, 3))
    w = rng.standard_normal((2, 1, 1))
    results = [onnx.conv_transpose(x, w, [0.5], **attrs) for _ in range(2)]
    assert results[0].tobytes() == results[1].tobytes()
    # No input channels: Y is the bias, every time.
    sums = [onnx.conv_transpose(np.zeros((1, 0, 3)), np.zeros((0, 1, 1)), [0.5], **attrs)
            for _ in range(2)]
    assert sums[0].shape == results[0].shape
    assert np.all(sums[0] == 0.5) and np.all(sums[1] == 0.5)


def test_onnx_bad_calls_fail_every_time():
    x = np.ones((1, 2, 3))
    kept = len(onnx._CHECKED)
    for _ in range(2):
        with pytest.raises(ValueError, match="group=3 does not divide"):
            onnx.conv_transpose(x, np.ones((2, 1, 2)), group=3)
    assert len(onnx._CHECKED) == kept


def test_the_memos_are_bounded():
    assert tensorflow._CHECKED._most == onnx._CHECKED._most == _memo.MAX_CALLS
