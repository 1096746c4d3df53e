"""Dask arrays in, lazy Dask arrays out (``numba_deconv._dask``).

Every result is compared with the NumPy function on ``x.compute()``: batch
chunks (one NumPy call per block), spatial chunks with halos (overlap-add
for ``conv_transpose``, overlapping input windows for ``conv``), padding
modes across the seams, layouts, and one run on a real ``distributed``
cluster of worker processes. Shapes are small: compiling the kernels is
what these tests spend.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import numba_deconv  # noqa: E402
from numba_deconv._dask import (_source_index, conv_dask,  # noqa: E402
                                conv_transpose_dask)

MODES = ("circular", "reflect", "replicate")


def _conv():
    conv = getattr(numba_deconv, "conv", None)
    if conv is None:
        pytest.skip("numba_deconv.conv does not exist yet")
    return conv


def _inputs(rng, x_shape, w_shape, out_channels, dtype=np.float64, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype) if bias else None
    return x, w, b


def _close(actual, expected):
    assert isinstance(actual, da.Array)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    got = actual.compute(scheduler="sync")
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if expected.dtype in (np.float32, np.complex64):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    return got


def check_transpose(rng, x_shape, w_shape, chunks, dtype=np.float64, bias=True, **kwargs):
    groups = kwargs.get("groups", 1)
    x, w, b = _inputs(rng, x_shape, w_shape, w_shape[1] * groups, dtype, bias)
    y = conv_transpose_dask(da.from_array(x, chunks=chunks), w, b, **kwargs)
    _close(y, numba_deconv.conv_transpose(x, w, b, **kwargs))
    return y


def check_conv(rng, x_shape, w_shape, chunks, dtype=np.float64, **kwargs):
    conv = _conv()
    x, w, b = _inputs(rng, x_shape, w_shape, w_shape[0], dtype)
    y = conv_dask(da.from_array(x, chunks=chunks), w, b, **kwargs)
    _close(y, conv(x, w, b, **kwargs))
    return y


# --- batch chunks -----------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_batch_chunks_are_one_call_per_block(rng, data_format):
    shape = (5, 3, 6, 7) if data_format == "channels_first" else (5, 6, 7, 3)
    chunks = (2, 3, 6, 7) if data_format == "channels_first" else (2, 6, 7, 3)
    y = check_transpose(rng, shape, (3, 2, 3, 2), chunks, stride=2, padding=((1, 0), (0, 1)),
                        output_padding=1, data_format=data_format)
    assert y.chunks[0] == (2, 2, 1) and y.numblocks[1:] == (1, 1, 1)
    assert len(y.__dask_graph__().layers) == 2  # the input and one map_blocks


def test_batch_chunks_float32_and_output_size(rng):
    check_transpose(rng, (4, 2, 9), (2, 3, 4), (1, 2, 9), dtype=np.float32, stride=3,
                    output_size=(29,))


# --- spatial chunks: overlap-add ---------------------------------------------

@pytest.mark.parametrize("case", [
    # 1-D: stride, dilation, asymmetric pairs, output_padding
    dict(x=(3, 2, 20), w=(2, 3, 3), chunks=(2, 2, 7), stride=2),
    dict(x=(2, 2, 20), w=(2, 2, 3), chunks=(2, 2, 5), stride=3, dilation=2,
         padding=((4, 1),), output_padding=2),
    dict(x=(2, 4, 17), w=(4, 1, 5), chunks=(1, 4, 4), groups=2, padding="same"),
    dict(x=(2, 2, 12), w=(2, 2, 1), chunks=(2, 2, 5), stride=3, padding="same"),
    dict(x=(1, 2, 11), w=(2, 2, 2), chunks=(1, 2, 3), stride=2, padding=((3, 0),),
         output_size=(20,)),
    # 2-D: one dim chunked and both, with pairs that crop at the ends
    dict(x=(2, 3, 13, 11), w=(3, 2, 3, 2), chunks=(1, 3, 4, 11), stride=(2, 3),
         padding=((1, 2), (0, 3)), output_padding=(1, 0)),
    dict(x=(2, 3, 13, 11), w=(3, 2, 4, 3), chunks=(2, 3, 5, 4), stride=2, dilation=(2, 1),
         padding=((0, 5), (2, 1))),
    # 3-D
    dict(x=(2, 2, 7, 6, 5), w=(2, 2, 3, 2, 2), chunks=(1, 2, 3, 2, 4), stride=(2, 3, 1),
         dilation=(1, 1, 2), padding=((1, 2), 0, (2, 0)), output_padding=(1, 2, 0)),
])
def test_spatial_chunks_conv_transpose(rng, case):
    case = dict(case)
    check_transpose(rng, case.pop("x"), case.pop("w"), case.pop("chunks"), **case)


def test_spatial_chunks_float32_channels_last_unbatched(rng):
    check_transpose(rng, (9, 10, 3), (3, 2, 3, 3), (4, 3, 3), dtype=np.float32, stride=2,
                    padding=1, output_padding=1, data_format="channels_last")
    check_transpose(rng, (2, 7, 8, 3), (3, 4, 2, 3), (1, 3, 3, 2), dtype=np.complex128,
                    stride=(3, 2), dilation=2, data_format="channels_last")


def test_channel_chunks_are_merged_and_output_chunks_follow_the_input(rng):
    y = check_transpose(rng, (2, 4, 12), (4, 2, 2), (1, 3, 4), stride=2, bias=False)
    # unet-like (k == s): no halo, output blocks are the input blocks times s
    assert y.chunks == ((1, 1), (2,), (8, 8, 8))


def test_integers_empty_batch_and_empty_chunks(rng):
    w = rng.standard_normal((3, 2, 3)).astype(np.float32)
    x = rng.integers(-4, 5, (2, 3, 8))
    for chunks in ((1, 3, 8), ((1, 1), (3,), (0, 3, 0, 5))):
        y = conv_transpose_dask(da.from_array(x, chunks=chunks), w, stride=2,
                                output_size=(2, 2, 18))
        _close(y, numba_deconv.conv_transpose(x, w, stride=2, output_size=(2, 2, 18)))
    empty = np.zeros((0, 3, 8), np.float32)
    for chunks in ((1, 3, 8), (1, 3, 3)):
        y = conv_transpose_dask(da.from_array(empty, chunks=chunks), w, stride=2)
        _close(y, numba_deconv.conv_transpose(empty, w, stride=2))


def test_the_result_is_lazy():
    def explode(block):
        raise AssertionError("computed while building the graph")

    x = da.zeros((2, 2, 12, 6), chunks=(1, 2, 5, 3)).map_blocks(explode, dtype=float)
    w = np.ones((2, 2, 3, 3))
    y = conv_transpose_dask(x, w, stride=2, padding=1)
    assert isinstance(y, da.Array) and y.shape == (2, 2, 23, 11)
    z = conv_transpose_dask(x.rechunk((1, 2, 12, 6)), w)  # batch-chunks path
    assert isinstance(z, da.Array)
    if hasattr(numba_deconv, "conv"):
        assert isinstance(conv_dask(x, np.ones((3, 2, 3, 3)), padding=1), da.Array)


def test_errors_are_the_numpy_ones():
    x = da.zeros((1, 3, 8), chunks=(1, 3, 4))
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_dask(x, np.ones((3, 1, 2)), stride=2, output_padding=2)


# --- conv ---------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    dict(x=(3, 2, 20), w=(3, 2, 3), chunks=(2, 2, 7), stride=2),
    dict(x=(2, 2, 23), w=(2, 2, 3), chunks=(2, 2, 5), stride=3, dilation=2,
         padding=((4, 1),)),
    dict(x=(2, 4, 17), w=(2, 2, 5), chunks=(1, 4, 4), groups=2, padding="same"),
    dict(x=(2, 3, 13, 11), w=(2, 3, 3, 2), chunks=(1, 3, 4, 5), stride=(2, 3),
         padding=((1, 2), (0, 1))),
    dict(x=(2, 8, 9, 3), w=(4, 3, 3, 2), chunks=(1, 3, 4, 3), stride=2, dilation=(1, 2),
         padding="same", data_format="channels_last"),
    dict(x=(2, 9, 8, 7), w=(3, 2, 3, 2, 2), chunks=(2, 4, 3, 3), stride=2,
         dilation=(1, 2, 1), padding=1),  # unbatched 3-D
])
def test_spatial_chunks_conv(rng, case):
    case = dict(case)
    check_conv(rng, case.pop("x"), case.pop("w"), case.pop("chunks"), **case)


def test_conv_batch_chunks_float32(rng):
    y = check_conv(rng, (5, 3, 10, 9), (4, 3, 3, 3), (2, 3, 10, 9), dtype=np.float32,
                   stride=2, padding=1, padding_mode="reflect")
    assert len(y.__dask_graph__().layers) == 2


# --- padding modes across chunk seams -----------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_padding_modes_across_seams(rng, mode):
    _conv()
    check_conv(rng, (2, 2, 17), (2, 2, 4), (1, 2, 5), stride=2, padding=((3, 2),),
               padding_mode=mode)
    check_conv(rng, (1, 2, 9, 10), (2, 2, 3, 3), (1, 2, 4, 3), stride=(1, 2),
               dilation=(2, 1), padding=((3, 2), (1, 2)), padding_mode=mode)
    check_conv(rng, (7, 8, 2), (2, 2, 3, 3), (3, 3, 2), padding="same", padding_mode=mode,
               data_format="channels_last")
    check_transpose(rng, (2, 2, 17), (2, 2, 4), (1, 2, 5), stride=2, padding=((3, 2),),
                    output_padding=1, padding_mode=mode)
    check_transpose(rng, (1, 2, 9, 10), (2, 2, 3, 3), (1, 2, 4, 3), stride=(1, 2),
                    dilation=(2, 1), padding=((3, 2), (1, 2)), padding_mode=mode)
    check_transpose(rng, (2, 5, 6, 4), (2, 2, 2, 3, 2), (2, 2, 3, 2), stride=2,
                    padding=1, padding_mode=mode)
    check_transpose(rng, (8, 9, 2), (2, 2, 3), (4, 3, 2), padding="same", padding_mode=mode,
                    data_format="channels_last", dtype=np.float32)


def test_source_index_is_numpy_pad():
    modes = {"zeros": "constant", "circular": "wrap", "reflect": "reflect",
             "replicate": "edge"}
    for mode, np_mode in modes.items():
        for size in (2, 3, 5):
            for pad in (0, 1, size - 1, 2 * size + 1):
                padded = np.pad(np.arange(1, size + 1), pad, mode=np_mode)
                index = _source_index(np.arange(-pad, size + pad), size, mode)
                np.testing.assert_array_equal(np.where(index < 0, 0, index + 1), padded)


def test_importing_the_package_does_not_import_dask():
    code = ("import sys, numba_deconv, numba_deconv._dask; "
            "assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- a real cluster of worker processes ---------------------------------------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=None)
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()


def test_on_a_distributed_cluster(rng, client):
    x, w, b = _inputs(rng, (4, 3, 12, 10), (3, 2, 3, 3), 2)
    kwargs = dict(stride=2, padding=((1, 0), (2, 1)), output_padding=1)
    expected = numba_deconv.conv_transpose(x, w, b, **kwargs)
    for chunks in ((2, 3, 12, 10), (2, 3, 5, 4)):  # batch, then spatial chunks
        y = conv_transpose_dask(da.from_array(x, chunks=chunks), w, b, **kwargs)
        np.testing.assert_allclose(client.compute(y).result(), expected, rtol=1e-12,
                                   atol=1e-12)
    if hasattr(numba_deconv, "conv"):
        w2, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
        for mode in ("zeros", "circular"):
            expected = numba_deconv.conv(x, w2, b, stride=2, padding=1, padding_mode=mode)
            for chunks in ((2, 3, 12, 10), (2, 3, 5, 4)):
                y = conv_dask(da.from_array(x, chunks=chunks), w2, b, stride=2, padding=1,
                              padding_mode=mode)
                np.testing.assert_allclose(client.compute(y).result(), expected,
                                           rtol=1e-12, atol=1e-12)
