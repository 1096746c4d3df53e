"""Foreign arrays: torch tensors in and as ``out=``, writable buffers as
``out=``, xarray DataArrays (docs/interop.rst).

Every result is compared bitwise with the same call on NumPy arrays: the
conversions are views, so nothing may change a bit. Shapes are tiny and
few (one float64 and one float32 2-D geometry), to compile few kernels.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import numba_deconv as nd
from numba_deconv import _plan, api

X_SHAPE, W_SHAPE, STRIDE = (2, 2, 3, 3), (2, 1, 2, 2), 2
OUT_SHAPE = (2, 1, 6, 6)  # conv_transpose's result


def arrays(dtype=np.float64):
    rng = np.random.default_rng(19)
    return (rng.standard_normal(X_SHAPE).astype(dtype),
            rng.standard_normal(W_SHAPE).astype(dtype),
            rng.standard_normal(1).astype(dtype))


def reference(dtype=np.float64):
    x, w, b = arrays(dtype)
    return nd.conv_transpose(x, w, b, stride=STRIDE)


def assert_bitwise(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert actual.tobytes() == expected.tobytes()


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if a kernel would run: errors must come before."""
    def ran(*args, **kwargs):
        raise AssertionError("a kernel ran before the error")
    monkeypatch.setattr(api, "_run_transposed", ran)
    monkeypatch.setattr(api, "run_conv", ran)


# --- no import of foreign libraries -------------------------------------------

def test_foreign_libraries_are_never_imported():
    code = ("import sys, numpy as np, numba_deconv\n"
            "from numba_deconv import _plan\n"
            "a = np.zeros((2, 3))\n"
            "assert _plan.as_array('x', a) is a and not _plan.is_device_array(a)\n"
            "_plan.writable_out(memoryview(bytearray(48)).cast('d', (2, 3)))\n"
            "_plan.foreign_arrays(lambda x, weight, bias=None, out=None: x)([1.0], [2.0])\n"
            "print(sorted(m for m in ('torch', 'xarray') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


# --- torch tensors as inputs --------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_torch_inputs_conv_transpose(dtype, requires_grad):
    torch = pytest.importorskip("torch")
    x, w, b = arrays(dtype)
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_(requires_grad) for a in (x, w, b))
    y = nd.conv_transpose(tx, tw, tb, stride=STRIDE)
    assert type(y) is np.ndarray  # a NumPy result, outside torch's graph
    assert_bitwise(y, reference(dtype))
    assert all(t.requires_grad is requires_grad and t.grad is None for t in (tx, tw, tb))


def test_torch_parameter_and_conv():
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    expected = nd.conv(x, w.transpose(1, 0, 2, 3), b)
    y = nd.conv(torch.from_numpy(x).requires_grad_(),
                torch.nn.Parameter(torch.from_numpy(w.transpose(1, 0, 2, 3))),
                torch.nn.Parameter(torch.from_numpy(b)))
    assert_bitwise(y, expected)


def test_torch_mixed_with_numpy_and_keyword_arguments():
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    y = nd.conv_transpose(x=torch.from_numpy(x).requires_grad_(), weight=w, bias=b,
                          stride=STRIDE)
    assert_bitwise(y, reference())


def test_torch_inputs_to_a_plan():
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    p = nd.plan(torch.nn.Parameter(torch.from_numpy(w)), X_SHAPE,
                bias=torch.from_numpy(b).requires_grad_(), stride=STRIDE)
    assert_bitwise(p(torch.from_numpy(x).requires_grad_()), reference())


def test_torch_cpu_tensor_is_read_without_a_copy():
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    view = _plan.as_array("x", t)
    assert np.shares_memory(view, t.detach().numpy())
    strided = torch.zeros(4, 6, dtype=torch.float64)[::2, 1::2]
    assert np.shares_memory(_plan.as_array("x", strided), strided.numpy())


def test_torch_lazy_negative_and_conjugate_views_are_resolved():
    torch = pytest.importorskip("torch")
    neg = torch.arange(3.0, dtype=torch.float64)._neg_view()
    assert neg.is_neg()
    np.testing.assert_array_equal(_plan.as_array("x", neg), [-0.0, -1.0, -2.0])
    conj = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex128).conj()
    assert conj.is_conj()
    np.testing.assert_array_equal(_plan.as_array("x", conj), [1 - 2j, 3 + 4j])


def test_torch_dtype_numpy_lacks_is_a_type_error_naming_the_argument(no_kernel):
    torch = pytest.importorskip("torch")
    x, w, _ = arrays()
    with pytest.raises(TypeError, match=r"weight is a torch tensor of dtype torch.bfloat16"):
        nd.conv_transpose(x, torch.from_numpy(w).to(torch.bfloat16), stride=STRIDE)


def _fake_cuda_tensor(torch, shape):
    """A CPU tensor that says it is on cuda:0: as a real CUDA tensor that
    requires grad, its ``__cuda_array_interface__`` raises RuntimeError."""
    class FakeCuda(torch.Tensor):
        @property
        def device(self):
            return torch.device("cuda", 0)

        @property
        def is_cuda(self):
            return True

    return torch.zeros(shape, dtype=torch.float64).as_subclass(FakeCuda).requires_grad_()


def test_cuda_tensor_requiring_grad_is_a_device_array_not_a_torch_error():
    torch = pytest.importorskip("torch")
    t = _fake_cuda_tensor(torch, X_SHAPE)
    with pytest.raises(RuntimeError, match="requires grad"):
        hasattr(t, "__cuda_array_interface__")  # what a plain look would meet
    assert _plan.is_device_array(t)
    detached = _plan._input("x", t)
    assert not detached.requires_grad and detached.device.type == "cuda"


def test_cuda_tensor_with_device_cpu_is_a_clear_type_error(no_kernel):
    torch = pytest.importorskip("torch")
    _, w, _ = arrays()
    with pytest.raises(TypeError, match=r"x is a GPU array \(a torch tensor on cuda:0\)"
                                        r".*device='cpu'.*x\.cpu\(\)"):
        nd.conv_transpose(_fake_cuda_tensor(torch, X_SHAPE), w, device="cpu")
    with pytest.raises(TypeError, match=r"x is a GPU array .*device='cpu'"):
        _plan.as_array("x", _fake_cuda_tensor(torch, X_SHAPE))


# --- out= as a torch tensor ---------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_torch_tensor_is_filled_and_returned(dtype):
    torch = pytest.importorskip("torch")
    x, w, b = arrays(dtype)
    out = torch.full(OUT_SHAPE, 7.0, dtype=torch.float64 if dtype == np.float64
                     else torch.float32)
    y = nd.conv_transpose(x, w, b, stride=STRIDE, out=out)
    assert y is out
    assert_bitwise(out.numpy(), reference(dtype))


def test_out_torch_tensor_not_contiguous_and_with_torch_inputs():
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    base = torch.zeros(OUT_SHAPE[::-1], dtype=torch.float64)
    out = base.permute(3, 2, 1, 0)  # a strided view of ``base``
    y = nd.conv_transpose(torch.from_numpy(x).requires_grad_(), torch.from_numpy(w),
                          torch.from_numpy(b), stride=STRIDE, out=out)
    assert y is out
    assert_bitwise(np.ascontiguousarray(base.numpy().transpose(3, 2, 1, 0)), reference())


def test_out_torch_tensor_conv():
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    wc = w.transpose(1, 0, 2, 3)
    expected = nd.conv(x, wc, b)
    out = torch.empty(expected.shape, dtype=torch.float64)
    assert nd.conv(x, wc, b, out=out) is out
    assert_bitwise(out.numpy(), expected)


def test_out_torch_tensor_requiring_grad_is_refused(no_kernel):
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    out = torch.zeros(OUT_SHAPE, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"out is a torch tensor that requires grad"):
        nd.conv_transpose(x, w, b, stride=STRIDE, out=out)
    assert not out.detach().any()


def test_out_torch_tensor_with_lazy_bit_is_refused(no_kernel):
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    out = torch.zeros(OUT_SHAPE, dtype=torch.float64)._neg_view()
    with pytest.raises(ValueError, match=r"out is a torch tensor with its lazy neg bit"):
        nd.conv_transpose(x, w, b, stride=STRIDE, out=out)


@pytest.mark.parametrize("shape, dtype, exc, message", [
    (OUT_SHAPE, "float32", TypeError, r"out has dtype float32; the result has dtype float64"),
    ((2, 1, 6, 5), "float64", ValueError, r"out has shape \(2, 1, 6, 5\); the result"),
])
def test_out_torch_tensor_wrong_shape_or_dtype(no_kernel, shape, dtype, exc, message):
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    with pytest.raises(exc, match=message):
        nd.conv_transpose(x, w, b, stride=STRIDE,
                          out=torch.zeros(shape, dtype=getattr(torch, dtype)))


# --- out= as a buffer ---------------------------------------------------------

def test_out_memoryview_is_filled_and_returned():
    x, w, b = arrays()
    buffer = bytearray(8 * int(np.prod(OUT_SHAPE)))
    out = memoryview(buffer).cast("B").cast("d", OUT_SHAPE)
    assert nd.conv_transpose(x, w, b, stride=STRIDE, out=out) is out
    assert_bitwise(np.frombuffer(buffer).reshape(OUT_SHAPE), reference())


def test_out_bytearray_backed_array():
    x, w, b = arrays()
    buffer = bytearray(8 * int(np.prod(OUT_SHAPE)))
    out = np.frombuffer(buffer, np.float64).reshape(OUT_SHAPE)
    assert nd.conv_transpose(x, w, b, stride=STRIDE, out=out) is out
    assert_bitwise(np.frombuffer(buffer).reshape(OUT_SHAPE), reference())


class Interface:
    """A foreign array exposing ``__array_interface__`` only."""

    def __init__(self, base):
        self.base = base
        self.__array_interface__ = base.__array_interface__


def test_out_array_interface_object():
    x, w, b = arrays()
    base = np.zeros(OUT_SHAPE)
    out = Interface(base)
    assert nd.conv_transpose(x, w, b, stride=STRIDE, out=out) is out
    assert_bitwise(base, reference())


def test_out_read_only_buffer_is_refused(no_kernel):
    x, w, b = arrays()
    out = memoryview(bytes(8 * int(np.prod(OUT_SHAPE)))).cast("B").cast("d", OUT_SHAPE)
    with pytest.raises(ValueError, match="out is read-only"):
        nd.conv_transpose(x, w, b, stride=STRIDE, out=out)


@pytest.mark.parametrize("out", [bytearray(8 * 72), [[0.0] * 6] * 6], ids=["bytes", "list"])
def test_out_of_wrong_kind_names_out(no_kernel, out):
    x, w, b = arrays()
    with pytest.raises((TypeError, ValueError), match=r"^out (must be|has)"):
        nd.conv_transpose(x, w, b, stride=STRIDE, out=out)


# --- xarray -------------------------------------------------------------------

def labelled(xr, x, dims=("n", "c", "h", "w")):
    coords = {"n": ["a", "b"], "sample_id": ("n", [11, 12]), "c": ["red", "green"],
              "h": [0.0, 0.5, 1.0], "run": 3}
    if x.ndim == 3:
        coords = {k: v for k, v in coords.items() if k not in ("n", "sample_id")}
    return xr.DataArray(x, dims=dims[-x.ndim:], coords=coords, name="image",
                        attrs={"units": "K", "source": "test"})


def test_xarray_conv_transpose_keeps_batch_labels():
    xr = pytest.importorskip("xarray")
    x, w, b = arrays()
    y = nd.conv_transpose(labelled(xr, x), w, b, stride=STRIDE)
    assert isinstance(y, xr.DataArray)
    assert y.dims == ("n", "c", "h", "w") and y.shape == OUT_SHAPE
    assert set(y.coords) == {"n", "sample_id", "run"}
    assert list(y["n"].values) == ["a", "b"] and list(y["sample_id"].values) == [11, 12]
    assert "n" in y.indexes and "c" not in y.coords and "h" not in y.coords
    assert y.name == "image" and y.attrs == {"units": "K", "source": "test"}
    assert_bitwise(y.data, reference())


def test_xarray_unbatched_and_conv():
    xr = pytest.importorskip("xarray")
    x, w, b = arrays()
    wc = w.transpose(1, 0, 2, 3)
    y = nd.conv(labelled(xr, x[0]), wc, b)
    assert isinstance(y, xr.DataArray) and y.dims == ("c", "h", "w")
    assert set(y.coords) == {"run"}
    assert_bitwise(y.data, nd.conv(x[0], wc, b))


def test_xarray_weight_and_torch_weight_with_data_array_x():
    xr = pytest.importorskip("xarray")
    torch = pytest.importorskip("torch")
    x, w, b = arrays()
    weight = xr.DataArray(w, dims=("ci", "co", "kh", "kw"))
    y = nd.conv_transpose(labelled(xr, x), weight, b, stride=STRIDE)
    assert_bitwise(y.data, reference())
    y = nd.conv_transpose(labelled(xr, x), torch.from_numpy(w).requires_grad_(), b,
                          stride=STRIDE)
    assert isinstance(y, xr.DataArray) and y.sizes["n"] == 2
    assert_bitwise(y.data, reference())


def test_xarray_with_out_returns_out():
    xr = pytest.importorskip("xarray")
    x, w, b = arrays()
    out = np.zeros(OUT_SHAPE)
    assert nd.conv_transpose(labelled(xr, x), w, b, stride=STRIDE, out=out) is out
    assert_bitwise(out, reference())
    out_da = xr.DataArray(np.zeros(OUT_SHAPE), dims=("n", "c", "h", "w"), attrs={"a": 1})
    assert nd.conv_transpose(x, w, b, stride=STRIDE, out=out_da) is out_da
    assert_bitwise(out_da.data, reference())


def test_xarray_dask_backed_stays_lazy():
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    x, w, b = arrays()
    lazy = labelled(xr, x).chunk({"n": 1})
    y = nd.conv_transpose(lazy, w, b, stride=STRIDE)
    assert isinstance(y, xr.DataArray) and isinstance(y.data, da.Array)
    assert list(y["n"].values) == ["a", "b"]
    assert_bitwise(y.compute().data, reference())
