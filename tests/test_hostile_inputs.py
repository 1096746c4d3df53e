"""Hostile and odd inputs, across every public function (issue 18, part 5).

The rule: a bad argument gets a ``ValueError`` or ``TypeError`` whose
message names the argument and its value (and, where the message can,
what would be valid), raised before any kernel runs; never a Numba typing
error, a crash or a silently wrong answer. An odd but valid input (views,
negative strides, big-endian, read-only, Fortran order, empty batches,
non-finite values, subnormals, ``out=`` overlapping an input) gives the
result of the definition, checked against ``tests/reference.py``.

``BAD_INPUTS`` is the table of bad inputs; each case lists words that its
message must contain (the argument's name and the value as the message
writes it).

Shapes are tiny and nearly everything is float64 and rank 1, so that the
whole file compiles only a handful of kernel variants.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from typing import Callable, NamedTuple

import numpy as np
import pytest

import numba_deconv as nd
from numba_deconv import grad
from helpers import assert_matches_reference, assert_same_nonfinite
from numba_deconv.compat import onnx as compat_onnx
from numba_deconv.compat import tensorflow as compat_tf
from numba_deconv.cpu import driver
from reference import (conv_pads, conv_reference, conv_weight_grad_ref,
                       conv_transpose_weight_grad_ref, reference)

# --- shared arguments -------------------------------------------------------

X1 = np.ones((1, 2, 4))          # (N, C_in=2, 4)
W1 = np.ones((2, 3, 3))          # (C_in=2, C_out/groups=3, k=3): output (1, 3, 6)
WC = np.ones((3, 2, 3))          # conv's (C_out=3, C_in=2, k=3): output (1, 3, 2)
GY = np.ones((1, 3, 2))          # conv's output gradient for X1 and WC
XT = np.ones((1, 3, 3, 2))       # TensorFlow NHWC input
FT = np.ones((2, 2, 1, 2))       # TensorFlow filters [kh, kw, out, in]


class FakeGpuArray:
    """Claims to live on a GPU and has nothing behind the claim."""

    __cuda_array_interface__ = {}


def _readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def _dask(a):
    da = pytest.importorskip("dask.array")
    return da.from_array(a)


def _plan():
    return nd.plan(np.ones((2, 1, 3)), (1, 2, 4))


def _operator():
    pytest.importorskip("scipy")
    return nd.as_linear_operator


_LONGDOUBLE = np.dtype(np.longdouble) != np.dtype(np.float64)


class Bad(NamedTuple):
    id: str
    call: Callable
    exc: type
    words: tuple


# Every public function, every argument: the expected exception and the
# words its message must hold (the argument's name and its value).
BAD_INPUTS = [
    # conv_transpose: x
    Bad("ct-x-none", lambda: nd.conv_transpose(None, W1), TypeError, ("x has dtype object",)),
    Bad("ct-x-str", lambda: nd.conv_transpose("abc", W1), TypeError, ("x has dtype <U3",)),
    Bad("ct-x-ragged", lambda: nd.conv_transpose([[[1.0, 2.0], [3.0]]], W1), TypeError,
        ("x cannot be read as a numeric array",)),
    Bad("ct-x-datetime", lambda: nd.conv_transpose(np.ones((1, 2, 4), "datetime64[s]"), W1),
        TypeError, ("x has dtype datetime64[s]", "not numeric")),
    Bad("ct-x-scalar", lambda: nd.conv_transpose(np.float64(1.0), W1), ValueError,
        ("x has shape ()", "3 dims")),
    Bad("ct-x-rank", lambda: nd.conv_transpose(np.ones((1, 1, 2, 4)), W1), ValueError,
        ("x has shape (1, 1, 2, 4)", "rank-1")),
    Bad("ct-x-channels", lambda: nd.conv_transpose(np.ones((1, 3, 4)), W1), ValueError,
        ("weight has 2 input channels", "x has 3")),
    Bad("ct-x-no-channels", lambda: nd.conv_transpose(np.ones((1, 0, 4)), np.ones((0, 3, 3))),
        ValueError, ("weight shape (0, 3, 3)", "no channels")),
    Bad("ct-x-gpu-array-on-cpu",
        lambda: nd.conv_transpose(FakeGpuArray(), W1, device="cpu"), TypeError,
        ("x is a GPU array", "device='cpu'")),
    Bad("ct-x-dask-with-out", lambda: nd.conv_transpose(_dask(X1), W1, out=np.zeros((1, 3, 6))),
        TypeError, ("out=", "Dask array x")),
    Bad("ct-x-dask-on-cuda", lambda: nd.conv_transpose(_dask(X1), W1, device="cuda"),
        ValueError, ("device='cuda'", "Dask")),
    Bad("ct-x-dask-stride-0", lambda: nd.conv_transpose(_dask(X1), W1, stride=0), ValueError,
        ("stride=0", ">= 1")),
    Bad("ct-x-dask-str", lambda: nd.conv_transpose(_dask(np.full((1, 2, 4), "a")), W1),
        TypeError, ("x has dtype <U1",)),
    # conv_transpose: weight
    Bad("ct-w-none", lambda: nd.conv_transpose(X1, None), TypeError, ("weight has dtype object",)),
    Bad("ct-w-rank2", lambda: nd.conv_transpose(X1, np.ones((2, 3))), ValueError,
        ("weight has shape (2, 3)", "at least 3 dims")),
    Bad("ct-w-empty-kernel", lambda: nd.conv_transpose(X1, np.ones((2, 3, 0))), ValueError,
        ("weight shape (2, 3, 0)", "empty kernel")),
    Bad("ct-w-no-out-channels", lambda: nd.conv_transpose(X1, np.ones((2, 0, 3))), ValueError,
        ("weight shape (2, 0, 3)", "no channels")),
    Bad("ct-w-object", lambda: nd.conv_transpose(X1, W1.astype(object)), TypeError,
        ("weight has dtype object",)),
    *([Bad("ct-w-longdouble", lambda: nd.conv_transpose(X1, W1.astype(np.longdouble)),
           TypeError, (f"dtype {np.dtype(np.longdouble)}", "not supported", "float64"))]
      if _LONGDOUBLE else []),
    # conv_transpose: bias
    Bad("ct-bias-shape", lambda: nd.conv_transpose(X1, W1, np.ones(4)), ValueError,
        ("bias has shape (4,)", "expected (3,)")),
    Bad("ct-bias-scalar", lambda: nd.conv_transpose(X1, W1, 1.0), ValueError,
        ("bias has shape ()", "expected (3,)")),
    Bad("ct-bias-2d", lambda: nd.conv_transpose(X1, W1, np.ones((1, 3))), ValueError,
        ("bias has shape (1, 3)",)),
    Bad("ct-bias-str", lambda: nd.conv_transpose(X1, W1, "abc"), TypeError,
        ("bias has dtype <U3",)),
    # conv_transpose: stride
    Bad("ct-stride-0", lambda: nd.conv_transpose(X1, W1, stride=0), ValueError,
        ("stride=0", ">= 1")),
    Bad("ct-stride-negative-tuple", lambda: nd.conv_transpose(X1, W1, stride=(-2,)), ValueError,
        ("stride=(-2,)", "got -2")),
    Bad("ct-stride-float", lambda: nd.conv_transpose(X1, W1, stride=1.5), TypeError,
        ("stride=1.5", "must be an int")),
    Bad("ct-stride-nan", lambda: nd.conv_transpose(X1, W1, stride=float("nan")), TypeError,
        ("stride=nan",)),
    Bad("ct-stride-str", lambda: nd.conv_transpose(X1, W1, stride="2"), TypeError,
        ("stride='2'",)),
    Bad("ct-stride-none", lambda: nd.conv_transpose(X1, W1, stride=None), TypeError,
        ("stride=None",)),
    Bad("ct-stride-bool", lambda: nd.conv_transpose(X1, W1, stride=True), TypeError,
        ("stride=True",)),
    Bad("ct-stride-length", lambda: nd.conv_transpose(X1, W1, stride=(1, 1)), ValueError,
        ("stride=(1, 1) has 2 entries", "1 ints")),
    Bad("ct-stride-0d-array", lambda: nd.conv_transpose(X1, W1, stride=np.array(2)), TypeError,
        ("stride=2", "0-d")),
    Bad("ct-stride-huge", lambda: nd.conv_transpose(X1, W1, stride=10**30), ValueError,
        (f"stride={10**30}", "<= 2147483647")),
    Bad("ct-stride-int64-max-one-position",
        lambda: nd.conv_transpose(np.ones((1, 2, 1)), W1, stride=2**63 - 1, output_padding=2),
        ValueError, (f"stride={2**63 - 1}", "<= 2147483647")),
    # conv_transpose: dilation
    Bad("ct-dilation-0", lambda: nd.conv_transpose(X1, W1, dilation=0), ValueError,
        ("dilation=0", ">= 1")),
    Bad("ct-dilation-float-entry", lambda: nd.conv_transpose(X1, W1, dilation=(1.5,)),
        TypeError, ("dilation=(1.5,)", "must hold integers")),
    Bad("ct-dilation-huge-kernel-1",
        lambda: nd.conv_transpose(X1, np.ones((2, 3, 1)), dilation=10**30), ValueError,
        (f"dilation={10**30}", "<= 2147483647")),
    # conv_transpose: padding
    Bad("ct-padding-negative", lambda: nd.conv_transpose(X1, W1, padding=-1), ValueError,
        ("padding=-1", ">= 0")),
    Bad("ct-padding-unknown-string", lambda: nd.conv_transpose(X1, W1, padding="full"),
        ValueError, ("padding='full'", "'valid', 'same'")),
    Bad("ct-padding-bytes", lambda: nd.conv_transpose(X1, W1, padding=b"same"), TypeError,
        ("padding=b'same'",)),
    Bad("ct-padding-float", lambda: nd.conv_transpose(X1, W1, padding=1.5), TypeError,
        ("padding=1.5",)),
    Bad("ct-padding-pair-negative", lambda: nd.conv_transpose(X1, W1, padding=[(1, -2)]),
        ValueError, ("padding=[(1, -2)]", "got (1, -2)")),
    Bad("ct-padding-triple", lambda: nd.conv_transpose(X1, W1, padding=[(1, 2, 3)]),
        ValueError, ("padding=[(1, 2, 3)]", "(before, after) pair")),
    Bad("ct-padding-length", lambda: nd.conv_transpose(X1, W1, padding=(1, 1)), ValueError,
        ("padding=(1, 1) has 2 entries",)),
    Bad("ct-padding-no-output", lambda: nd.conv_transpose(X1, W1, padding=3), ValueError,
        ("padding=3 leaves no output",)),
    Bad("ct-padding-huge", lambda: nd.conv_transpose(X1, W1, padding=10**30), ValueError,
        (f"padding={10**30} leaves no output",)),
    Bad("ct-padding-0d-array", lambda: nd.conv_transpose(X1, W1, padding=np.array(1)),
        TypeError, ("padding=array(1)", "0-d")),
    # conv_transpose: output_padding
    Bad("ct-output-padding-too-large",
        lambda: nd.conv_transpose(X1, W1, stride=2, output_padding=2), ValueError,
        ("output_padding=2", "max(stride, dilation)", "0..1")),
    Bad("ct-output-padding-negative", lambda: nd.conv_transpose(X1, W1, output_padding=-1),
        ValueError, ("output_padding=-1", ">= 0")),
    Bad("ct-output-padding-float",
        lambda: nd.conv_transpose(X1, W1, stride=2, output_padding=0.5), TypeError,
        ("output_padding=0.5",)),
    Bad("ct-output-padding-with-same",
        lambda: nd.conv_transpose(X1, W1, stride=2, padding="same", output_padding=1),
        ValueError, ("output_padding=1", "padding='same'")),
    # conv_transpose: groups
    Bad("ct-groups-0", lambda: nd.conv_transpose(X1, W1, groups=0), ValueError,
        ("groups=0", ">= 1")),
    Bad("ct-groups-float", lambda: nd.conv_transpose(X1, W1, groups=2.0), TypeError,
        ("groups=2.0", "must be an int")),
    Bad("ct-groups-str", lambda: nd.conv_transpose(X1, W1, groups="1"), TypeError,
        ("groups='1'",)),
    Bad("ct-groups-not-dividing", lambda: nd.conv_transpose(X1, W1, groups=3), ValueError,
        ("groups=3", "divide the 2 input channels")),
    # conv_transpose: output_size
    Bad("ct-output-size-unreachable", lambda: nd.conv_transpose(X1, W1, output_size=(9,)),
        ValueError, ("output_size=(9,)", "reachable sizes are 6..6")),
    Bad("ct-output-size-zero", lambda: nd.conv_transpose(X1, W1, output_size=0), ValueError,
        ("output_size=0", ">= 1")),
    Bad("ct-output-size-float", lambda: nd.conv_transpose(X1, W1, output_size=(6.0,)),
        TypeError, ("output_size=(6.0,)",)),
    Bad("ct-output-size-with-output-padding",
        lambda: nd.conv_transpose(X1, W1, stride=2, output_padding=1, output_size=(10,)),
        ValueError, ("output_padding=1 or output_size=(10,)", "not both")),
    Bad("ct-output-size-full-shape-mismatch",
        lambda: nd.conv_transpose(X1, W1, output_size=(2, 3, 6)), ValueError,
        ("output_size=(2, 3, 6)", "does not match")),
    # conv_transpose: padding_mode, data_format, device
    Bad("ct-padding-mode-unknown", lambda: nd.conv_transpose(X1, W1, padding_mode="wrap"),
        ValueError, ("padding_mode='wrap'", "'zeros'")),
    Bad("ct-padding-mode-reflect-too-wide",
        lambda: nd.conv_transpose(X1, W1, padding=2, padding_mode="reflect"), ValueError,
        ("padding_mode='reflect'", "(2, 2)", "at most 1")),
    Bad("ct-data-format-unknown", lambda: nd.conv_transpose(X1, W1, data_format="NCW"),
        ValueError, ("data_format='NCW'", "'channels_first'")),
    Bad("ct-data-format-none", lambda: nd.conv_transpose(X1, W1, data_format=None), ValueError,
        ("data_format=None",)),
    Bad("ct-device-unknown", lambda: nd.conv_transpose(X1, W1, device="gpu"), ValueError,
        ("device='gpu'", "'cpu'")),
    Bad("ct-device-int", lambda: nd.conv_transpose(X1, W1, device=0), ValueError,
        ("device=0",)),
    # conv_transpose: out
    Bad("ct-out-list", lambda: nd.conv_transpose(X1, W1, out=np.zeros((1, 3, 6)).tolist()),
        TypeError, ("out must be a numpy.ndarray of shape (1, 3, 6)", "list")),
    Bad("ct-out-shape", lambda: nd.conv_transpose(X1, W1, out=np.zeros((1, 3, 5))), ValueError,
        ("out has shape (1, 3, 5)", "(1, 3, 6)")),
    Bad("ct-out-dtype", lambda: nd.conv_transpose(X1, W1, out=np.zeros((1, 3, 6), np.float32)),
        TypeError, ("out has dtype float32", "float64")),
    Bad("ct-out-big-endian",
        lambda: nd.conv_transpose(X1, W1, out=np.zeros((1, 3, 6), ">f8")), TypeError,
        ("out has dtype >f8", "float64")),
    Bad("ct-out-read-only",
        lambda: nd.conv_transpose(X1, W1, out=_readonly(np.zeros((1, 3, 6)))), ValueError,
        ("out is read-only",)),
    # conv_transpose: the signature itself
    Bad("ct-unknown-keyword", lambda: nd.conv_transpose(X1, W1, strides=2), TypeError,
        ("strides",)),
    Bad("ct-stride-positional", lambda: nd.conv_transpose(X1, W1, None, 2), TypeError,
        ("positional",)),

    # conv
    Bad("cv-x-str", lambda: nd.conv(np.full((1, 2, 4), "a"), WC), TypeError,
        ("x has dtype <U1",)),
    Bad("cv-w-channels", lambda: nd.conv(X1, np.ones((3, 3, 3))), ValueError,
        ("weight has 3 input channels per group", "has 2")),
    Bad("cv-groups-not-dividing-out", lambda: nd.conv(X1, np.ones((3, 1, 3)), groups=2),
        ValueError, ("groups=2", "divide the 3 output channels")),
    Bad("cv-kernel-longer-than-input", lambda: nd.conv(X1, np.ones((3, 2, 9))), ValueError,
        ("kernel spans 9", "has only 4")),
    Bad("cv-output-padding-keyword", lambda: nd.conv(X1, WC, output_padding=1), TypeError,
        ("output_padding",)),
    Bad("cv-padding-unknown-string", lambda: nd.conv(X1, WC, padding="full"), ValueError,
        ("padding='full'",)),
    Bad("cv-padding-huge", lambda: nd.conv(X1, WC, padding=2**62), ValueError,
        (f"padding={2**62}", "more than an array can index")),
    Bad("cv-stride-huge", lambda: nd.conv(X1, WC, stride=10**30), ValueError,
        (f"stride={10**30}", "<= 2147483647")),
    Bad("cv-reflect-too-wide", lambda: nd.conv(X1, WC, padding=4, padding_mode="reflect"),
        ValueError, ("padding_mode='reflect'", "(4, 4)", "at most 3")),
    Bad("cv-bias-shape", lambda: nd.conv(X1, WC, np.ones(2)), ValueError,
        ("bias has shape (2,)", "expected (3,)")),
    Bad("cv-out-shape", lambda: nd.conv(X1, WC, out=np.zeros((1, 3, 3))), ValueError,
        ("out has shape (1, 3, 3)", "(1, 3, 2)")),
    Bad("cv-data-format", lambda: nd.conv(X1, WC, data_format="NWC"), ValueError,
        ("data_format='NWC'",)),
    Bad("cv-device", lambda: nd.conv(X1, WC, device="tpu"), ValueError, ("device='tpu'",)),

    # conv_weight_grad / conv_transpose_weight_grad
    Bad("gw-kernel-size-0", lambda: nd.conv_weight_grad(X1, GY, 0), ValueError,
        ("kernel_size=0", ">= 1")),
    Bad("gw-kernel-size-float", lambda: nd.conv_weight_grad(X1, GY, 3.0), TypeError,
        ("kernel_size=3.0",)),
    Bad("gw-kernel-size-none", lambda: nd.conv_weight_grad(X1, GY, None), TypeError,
        ("kernel_size=None",)),
    Bad("gw-kernel-size-rank", lambda: nd.conv_weight_grad(X1, GY, (3, 3, 3)), ValueError,
        ("kernel_size=(3, 3, 3) has 3 entries",)),
    Bad("gw-grad-output-shape", lambda: nd.conv_weight_grad(X1, np.ones((1, 3, 3)), 3),
        ValueError, ("grad_output has shape (1, 3, 3)", "(1, 3, 2)")),
    Bad("gw-grad-output-rank", lambda: nd.conv_weight_grad(X1, np.ones((3, 2)), 3), ValueError,
        ("grad_output 2",)),
    Bad("gw-groups-not-dividing", lambda: nd.conv_weight_grad(X1, GY, 3, groups=2), ValueError,
        ("groups=2", "3 channels of grad_output")),
    Bad("gw-stride-0", lambda: nd.conv_weight_grad(X1, GY, 3, stride=0), ValueError,
        ("stride=0",)),
    Bad("gw-padding-mode", lambda: nd.conv_weight_grad(X1, GY, 3, padding_mode="bad"),
        ValueError, ("padding_mode='bad'",)),
    Bad("gw-data-format", lambda: nd.conv_weight_grad(X1, GY, 3, data_format="NCW"),
        ValueError, ("data_format='NCW'",)),
    Bad("gw-x-str", lambda: nd.conv_weight_grad(np.full((1, 2, 4), "a"), GY, 3), TypeError,
        ("x has dtype <U1",)),
    Bad("gw-grad-output-str", lambda: nd.conv_weight_grad(X1, np.full((1, 3, 2), "a"), 3),
        TypeError, ("grad_output has dtype <U1",)),
    Bad("gw-groups-0", lambda: nd.conv_weight_grad(X1, GY, 3, groups=0), ValueError,
        ("groups=0", ">= 1")),
    Bad("gw-groups-str", lambda: nd.conv_weight_grad(X1, GY, 3, groups="1"), TypeError,
        ("groups='1'",)),
    Bad("gtw-kernel-size-0",
        lambda: nd.conv_transpose_weight_grad(X1, np.ones((1, 3, 6)), 0), ValueError,
        ("kernel_size=0",)),
    Bad("gtw-grad-output-shape",
        lambda: nd.conv_transpose_weight_grad(X1, np.ones((1, 3, 5)), 3), ValueError,
        ("grad_output has shape (1, 3, 5)", "(1, 3, 6)")),
    Bad("gtw-output-padding",
        lambda: nd.conv_transpose_weight_grad(X1, np.ones((1, 3, 9)), 3, stride=2,
                                              output_padding=2),
        ValueError, ("output_padding=2", "max(stride, dilation)")),
    Bad("gtw-output-size-keyword",
        lambda: nd.conv_transpose_weight_grad(X1, np.ones((1, 3, 6)), 3, output_size=6),
        TypeError, ("output_size",)),

    # explain
    Bad("ex-x-shape-str", lambda: nd.explain("abc", (2, 1, 3)), TypeError,
        ("x_shape='abc'", "sequence of ints")),
    Bad("ex-x-shape-none", lambda: nd.explain(None, (2, 1, 3)), TypeError, ("x_shape=None",)),
    Bad("ex-x-shape-float", lambda: nd.explain((1, 2, 2.5), (2, 1, 3)), TypeError,
        ("x_shape=(1, 2, 2.5)", "integers")),
    Bad("ex-x-shape-negative", lambda: nd.explain((-1, 2, 3), (2, 1, 3)), ValueError,
        ("x_shape=(-1, 2, 3)", ">= 0")),
    Bad("ex-weight-shape-negative", lambda: nd.explain((1, 2, 3), (2, -1, 3)), ValueError,
        ("weight_shape=(2, -1, 3)", ">= 0")),
    Bad("ex-weight-shape-rank", lambda: nd.explain((1, 2, 3), (2, 1)), ValueError,
        ("weight has shape (2, 1)",)),
    Bad("ex-stride-0", lambda: nd.explain((1, 2, 3), (2, 1, 3), stride=0), ValueError,
        ("stride=0",)),
    Bad("ex-stride-huge", lambda: nd.explain((1, 1, 2), (1, 1, 3), stride=10**20), ValueError,
        (f"stride={10**20}",)),
    Bad("ex-output-size", lambda: nd.explain((1, 2, 3), (2, 1, 3), output_size=(9,)),
        ValueError, ("output_size=(9,)", "5..5")),
    Bad("ex-padding-mode-keyword",
        lambda: nd.explain((1, 2, 3), (2, 1, 3), padding_mode="reflect"), TypeError,
        ("padding_mode",)),
    Bad("ex-direct-shape",
        lambda: nd.explain((1, 2, 3), (2, 1, 3)).direct(np.ones((1, 2, 5)), np.ones((2, 1, 3))),
        ValueError, ("x has shape (1, 2, 5)", "(1, 2, 3)")),
    Bad("ex-direct-str",
        lambda: nd.explain((1, 2, 3), (2, 1, 3)).direct(np.full((1, 2, 3), "a"),
                                                       np.ones((2, 1, 3))),
        TypeError, ("x has dtype <U1",)),

    # as_linear_operator
    Bad("lo-forward", lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4), forward="conv2d"),
        ValueError, ("forward='conv2d'",)),
    Bad("lo-bias", lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4), bias=np.ones(1)),
        TypeError, ("'bias' is not an argument",)),
    Bad("lo-dtype-unknown", lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4), dtype="bogus"),
        TypeError, ("dtype='bogus'",)),
    Bad("lo-dtype-bytes", lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4), dtype="S3"),
        TypeError, ("dtype=|S3",)),
    Bad("lo-dtype-drops-imaginary",
        lambda: _operator()(np.ones((2, 1, 3)) + 1j, (1, 2, 4), dtype="float32"), TypeError,
        ("dtype=float32", "imaginary")),
    Bad("lo-input-shape-float", lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4.5)), TypeError,
        ("input_shape=(1, 2, 4.5)",)),
    Bad("lo-input-shape-negative", lambda: _operator()(np.ones((2, 1, 3)), (1, -2, 4)),
        ValueError, ("input_shape=(1, -2, 4)", ">= 0")),
    Bad("lo-input-shape-channels", lambda: _operator()(np.ones((2, 1, 3)), (1, 3, 4)),
        ValueError, ("weight has 2 input channels", "x has 3")),
    Bad("lo-matvec-objects",
        lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4)).matvec(np.full(8, None)),
        TypeError, ("matvec", "dtype object")),
    Bad("lo-rmatvec-strings",
        lambda: _operator()(np.ones((2, 1, 3)), (1, 2, 4)).rmatvec(np.full(6, "a")),
        TypeError, ("rmatvec", "dtype <U1")),

    # plan
    Bad("pl-forward", lambda: nd.plan(np.ones((2, 1, 3)), (1, 2, 4), forward="conv2d"),
        ValueError, ("forward='conv2d'",)),
    Bad("pl-unknown-keyword", lambda: nd.plan(np.ones((2, 1, 3)), (1, 2, 4), strides=2),
        TypeError, ("'strides' is not an argument",)),
    Bad("pl-input-shape-none", lambda: nd.plan(np.ones((2, 1, 3)), None), TypeError,
        ("input_shape=None",)),
    Bad("pl-bias-shape", lambda: nd.plan(np.ones((2, 1, 3)), (1, 2, 4), bias=np.ones(3)),
        ValueError, ("bias has shape (3,)", "expected (1,)")),
    Bad("pl-dtype-drops-imaginary",
        lambda: nd.plan(np.ones((2, 1, 3)) + 1j, (1, 2, 4), dtype="float32"), TypeError,
        ("dtype=float32", "imaginary")),
    Bad("pl-call-shape", lambda: _plan()(np.ones((1, 2, 5))), ValueError,
        ("x has shape (1, 2, 5)", "(1, 2, 4)")),
    Bad("pl-adjoint-shape", lambda: _plan().adjoint(np.ones((1, 1, 5))), ValueError,
        ("y has shape (1, 1, 5)", "(1, 1, 6)")),
    Bad("pl-call-out-shape", lambda: _plan()(np.ones((1, 2, 4)), out=np.ones((1, 1, 5))),
        ValueError, ("out has shape (1, 1, 5)", "(1, 1, 6)")),
    Bad("pl-input-shape-float", lambda: nd.plan(np.ones((2, 1, 3)), (1, 2, 4.7)), TypeError,
        ("input_shape=(1, 2, 4.7)",)),
    Bad("pl-input-shape-negative-batch", lambda: nd.plan(np.ones((2, 1, 3)), (-1, 2, 4)),
        ValueError, ("input_shape=(-1, 2, 4)",)),
    Bad("pl-dtype-unknown", lambda: nd.plan(np.ones((2, 1, 3)), (1, 2, 4), dtype="bogus"),
        TypeError, ("dtype='bogus'",)),
    Bad("pl-call-str", lambda: _plan()(np.full((1, 2, 4), "a")), TypeError,
        ("x has dtype <U1",)),
    Bad("pl-adjoint-objects", lambda: _plan().adjoint(np.full((1, 1, 6), None)), TypeError,
        ("y has dtype object",)),

    # compat.tensorflow
    Bad("tf-input-str",
        lambda: compat_tf.conv2d_transpose(np.full((1, 3, 3, 2), "a"), FT, [1, 6, 6, 1], 2),
        TypeError, ("conv2d_transpose: input has dtype <U1",)),
    Bad("tf-input-none", lambda: compat_tf.conv2d_transpose(None, FT, [1, 6, 6, 1], 2),
        TypeError, ("input has dtype object",)),
    Bad("tf-filters-str",
        lambda: compat_tf.conv2d_transpose(XT, np.full((2, 2, 1, 2), "a"), [1, 6, 6, 1], 2),
        TypeError, ("filters has dtype <U1",)),
    Bad("tf-data-format",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2, data_format="NWC"),
        ValueError, ("data_format='NWC'", "'NHWC'")),
    Bad("tf-strides-0", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 0), ValueError,
        ("strides=0", ">= 1")),
    Bad("tf-strides-batch-entry",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], [2, 2, 2, 1]), ValueError,
        ("strides=[2, 2, 2, 1]", "batch or channel")),
    Bad("tf-strides-length",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], [2, 2, 2]), ValueError,
        ("strides=[2, 2, 2]", "1, 2 or 4")),
    Bad("tf-strides-float", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2.0),
        TypeError, ("strides=2.0",)),
    Bad("tf-strides-huge", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 10**30),
        ValueError, (f"strides={10**30}", "<= 2147483647")),
    Bad("tf-dilations-0",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2, dilations=0), ValueError,
        ("dilations=0",)),
    Bad("tf-padding-unknown", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2, "FULL"),
        ValueError, ("padding='FULL'", "'SAME', 'VALID'")),
    Bad("tf-padding-batch-pair",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2,
                                           [[1, 0], [0, 0], [0, 0], [0, 0]]),
        ValueError, ("padding=[[1, 0], [0, 0], [0, 0], [0, 0]]", "batch or channel")),
    Bad("tf-padding-negative",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6, 1], 2,
                                           [[0, 0], [-1, 0], [0, 0], [0, 0]]),
        ValueError, ("padding=[[0, 0], [-1, 0], [0, 0], [0, 0]]", ">= 0")),
    Bad("tf-output-shape-batch", lambda: compat_tf.conv2d_transpose(XT, FT, [2, 6, 6, 1], 2),
        ValueError, ("output_shape[0] (batch) = 2", "input has batch 1")),
    Bad("tf-output-shape-unreachable",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, 9, 6, 1], 2), ValueError,
        ("output_shape[1] (height) = 9", "5..6")),
    Bad("tf-output-shape-negative",
        lambda: compat_tf.conv2d_transpose(XT, FT, [1, -6, 6, 1], 2), ValueError,
        ("output_shape=[1, -6, 6, 1]", ">= 0")),
    Bad("tf-output-shape-length", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6, 6], 2),
        ValueError, ("output_shape=[1, 6, 6]", "4 entries")),
    Bad("tf-output-shape-float", lambda: compat_tf.conv2d_transpose(XT, FT, [1, 6.0, 6, 1], 2),
        TypeError, ("output_shape=[1, 6.0, 6, 1]",)),
    Bad("tf-filters-rank",
        lambda: compat_tf.conv2d_transpose(XT, np.ones((2, 1, 2)), [1, 6, 6, 1], 2), ValueError,
        ("filters must be 4-D", "(2, 1, 2)")),
    Bad("tf-filters-in-channels",
        lambda: compat_tf.conv2d_transpose(XT, np.ones((2, 2, 1, 3)), [1, 6, 6, 1], 2),
        ValueError, ("input has 2 channels", "filters (2, 2, 1, 3)")),
    Bad("tf-filters-empty-kernel",
        lambda: compat_tf.conv2d_transpose(XT, np.ones((0, 2, 1, 2)), [1, 6, 6, 1], 2),
        ValueError, ("filters has shape (0, 2, 1, 2)", "empty kernel")),
    Bad("tf-filters-no-output-channels",
        lambda: compat_tf.conv2d_transpose(XT, np.ones((2, 2, 0, 2)), [1, 6, 6, 0], 2),
        ValueError, ("filters has shape (2, 2, 0, 2)", "filters.shape[-2]")),
    Bad("tf-groups-do-not-split",
        lambda: compat_tf.conv2d_transpose(np.ones((1, 3, 3, 3)), np.ones((2, 2, 1, 3)),
                                           [1, 6, 6, 2], 2),
        ValueError, ("3 channels of input", "2 groups")),
    Bad("tf-conv1d-data-format",
        lambda: compat_tf.conv1d_transpose(np.ones((1, 3, 2)), np.ones((2, 1, 2)), [1, 6, 1], 2,
                                           data_format="NHWC"),
        ValueError, ("conv1d_transpose: data_format='NHWC'",)),
    Bad("tf-backprop-input-sizes-length",
        lambda: compat_tf.conv2d_backprop_input([6, 6, 1], FT, XT, 2, "SAME"), ValueError,
        ("input_sizes=[6, 6, 1]", "2 or 4 entries")),
    Bad("tf-backprop-negative-forward-size",
        lambda: compat_tf.conv2d_backprop_input([1, 1, 7, 1], np.ones((5, 3, 1, 1)),
                                                np.ones((1, 0, 3, 1)), 2, "VALID"),
        ValueError, ("input_sizes[1] (height) = 1", "negative")),

    # compat.onnx
    Bad("ox-X-rank", lambda: compat_onnx.conv_transpose(np.ones((2, 3)), np.ones((2, 1, 3))),
        ValueError, ("X must be (N, C, D1", "(2, 3)")),
    Bad("ox-X-str", lambda: compat_onnx.conv_transpose(np.full((1, 2, 3), "a"), W1), TypeError,
        ("X has dtype <U1",)),
    Bad("ox-W-str", lambda: compat_onnx.conv_transpose(X1, np.full((2, 3, 3), "a")), TypeError,
        ("W has dtype <U1",)),
    Bad("ox-B-str", lambda: compat_onnx.conv_transpose(X1, W1, np.full(3, "a")), TypeError,
        ("B has dtype <U1",)),
    Bad("ox-B-shape", lambda: compat_onnx.conv_transpose(X1, W1, np.ones(4)), ValueError,
        ("B has shape (4,)", "expected (3,)")),
    Bad("ox-W-rank", lambda: compat_onnx.conv_transpose(X1, np.ones((2, 3, 3, 3))), ValueError,
        ("W must be (C, M/group", "(2, 3, 3, 3)")),
    Bad("ox-W-channels", lambda: compat_onnx.conv_transpose(X1, np.ones((3, 3, 3))), ValueError,
        ("W.shape[0] = 3", "2 channels of X")),
    Bad("ox-W-empty", lambda: compat_onnx.conv_transpose(X1, np.ones((2, 0, 3))), ValueError,
        ("W has shape (2, 0, 3)",)),
    Bad("ox-auto-pad", lambda: compat_onnx.conv_transpose(X1, W1, auto_pad="SAME"), ValueError,
        ("auto_pad='SAME'", "SAME_UPPER")),
    Bad("ox-group-0", lambda: compat_onnx.conv_transpose(X1, W1, group=0), ValueError,
        ("group=0",)),
    Bad("ox-group-not-dividing", lambda: compat_onnx.conv_transpose(X1, W1, group=3),
        ValueError, ("group=3", "2 channels of X")),
    Bad("ox-strides-length", lambda: compat_onnx.conv_transpose(X1, W1, strides=[1, 1]),
        ValueError, ("strides=[1, 1] has 2 entries",)),
    Bad("ox-strides-str", lambda: compat_onnx.conv_transpose(X1, W1, strides="2"), TypeError,
        ("strides='2'",)),
    Bad("ox-strides-huge", lambda: compat_onnx.conv_transpose(X1, W1, strides=[10**30]),
        ValueError, (f"strides=[{10**30}]", "<= 2147483647")),
    Bad("ox-pads-length", lambda: compat_onnx.conv_transpose(X1, W1, pads=[1]), ValueError,
        ("pads=[1] has 1 entries",)),
    Bad("ox-pads-negative", lambda: compat_onnx.conv_transpose(X1, W1, pads=[-1, 0]),
        ValueError, ("pads=[-1, 0]", ">= 0")),
    Bad("ox-pads-with-auto-pad",
        lambda: compat_onnx.conv_transpose(X1, W1, pads=[1, 1], auto_pad="VALID"), ValueError,
        ("pads=[1, 1]", "auto_pad='VALID'")),
    Bad("ox-kernel-shape", lambda: compat_onnx.conv_transpose(X1, W1, kernel_shape=[2]),
        ValueError, ("kernel_shape=[2]", "[3]")),
    Bad("ox-output-padding", lambda: compat_onnx.conv_transpose(X1, W1, output_padding=[1]),
        ValueError, ("output_padding=[1]", "max(stride, dilation)")),
    Bad("ox-output-shape-0", lambda: compat_onnx.conv_transpose(X1, W1, output_shape=[0]),
        ValueError, ("output_shape=[0]", ">= 1")),
    Bad("ox-dilations-0", lambda: compat_onnx.conv_transpose(X1, W1, dilations=[0]),
        ValueError, ("dilations=[0]",)),

    # precompile (every value is checked before anything compiles)
    Bad("pc-ranks-0", lambda: nd.precompile(ranks=[0]), ValueError, ("ranks=(0,)",)),
    Bad("pc-ranks-str", lambda: nd.precompile(ranks=["1"]), ValueError, ("ranks=('1',)",)),
    Bad("pc-dtypes-float16", lambda: nd.precompile(dtypes=["float16"]), ValueError,
        ("dtypes", "'float16'", "float32")),
    Bad("pc-dtypes-unknown", lambda: nd.precompile(dtypes=["bogus"]), ValueError,
        ("dtypes", "'bogus'")),
    Bad("pc-strategies", lambda: nd.precompile(strategies=["fast"]), ValueError,
        ("strategies", "'fast'", "gather")),
    Bad("pc-layouts", lambda: nd.precompile(layouts=["NHWC"]), ValueError,
        ("layouts", "'NHWC'", "channels_first")),
    Bad("pc-device", lambda: nd.precompile(device="gpu"), ValueError, ("device='gpu'",)),
    Bad("pc-ranks-int", lambda: nd.precompile(ranks=5), TypeError, ("ranks=5",)),
    Bad("pc-dtypes-string", lambda: nd.precompile(ranks=[1], dtypes="float32", strategies=[]),
        ValueError, ("dtypes='float32'",)),
    Bad("pc-layouts-string", lambda: nd.precompile(ranks=[], layouts="channels_first"),
        ValueError, ("layouts='channels_first'",)),
    Bad("ct-x-masked-array",
        lambda: nd.conv_transpose(np.ma.masked_array(X1, mask=True), W1), TypeError,
        ("x is a numpy.ma.MaskedArray",)),
    Bad("ct-x-malformed-cuda-interface", lambda: nd.conv_transpose(FakeGpuArray(), W1),
        TypeError, ("x", "__cuda_array_interface__")),
    Bad("pc-dtypes-none", lambda: nd.precompile(dtypes=None), TypeError, ("dtypes=None",)),
]


def _no_kernel(*args, **kwargs):
    raise AssertionError("a kernel ran for a call that had a bad argument")


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_bad_input(case, monkeypatch):
    """The expected exception, naming the argument and the value, raised
    before any kernel runs (the kernels' entry points are disabled)."""
    for name in ("run", "run_conv"):
        monkeypatch.setattr(driver, name, _no_kernel)
    monkeypatch.setattr(grad, "weight_grad", _no_kernel)
    with pytest.raises((ValueError, TypeError)) as info:
        case.call()
    err = info.value
    assert isinstance(err, case.exc), f"{type(err).__name__}: {err}"
    assert not type(err).__module__.startswith("numba"), f"a Numba error: {err}"
    message = str(err)
    for word in case.words:
        assert word in message, f"{word!r} not in {message!r}"


def test_enough_bad_inputs():
    """Issue 18 asks for at least 60 bad inputs across the public API."""
    assert len(BAD_INPUTS) >= 60
    assert len({c.id for c in BAD_INPUTS}) == len(BAD_INPUTS)


def test_out_untouched_by_a_bad_call():
    out = np.full((1, 3, 6), -7.0)
    for bad in (dict(stride=10**30), dict(padding=np.array(1)), dict(groups=3),
                dict(padding_mode="reflect", padding=2)):
        with pytest.raises((ValueError, TypeError)):
            nd.conv_transpose(X1, W1, out=out, **bad)
    assert (out == -7.0).all()


# --- the CLI ----------------------------------------------------------------

def _main(argv):
    """``python -m numba_deconv`` in this process: (exit status, stderr)."""
    from numba_deconv.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue()


EXPLAIN = ["explain", "--input", "1x1x2", "--kernel", "1x1x3"]

CLI_CASES = [
    ("explain-stride-0", EXPLAIN + ["--stride", "0"], ("stride=0",)),
    ("explain-stride-word", EXPLAIN + ["--stride", "x"], ("--stride", "'x'")),
    ("explain-stride-huge", EXPLAIN + ["--stride", str(10**23)], (f"stride={10**23}",)),
    ("explain-input-word", ["explain", "--input", "abc", "--kernel", "1x1x3"],
     ("--input", "'abc'")),
    ("explain-input-negative", ["explain", "--input", "1x1x-2", "--kernel", "1x1x3"],
     ("x_shape=(1, 1, -2)",)),
    ("explain-padding-word", EXPLAIN + ["--padding", "full"], ("--padding", "'full'")),
    ("explain-padding-triple", EXPLAIN + ["--padding", "1:2:3"], ("padding=", "(1, 2, 3)")),
    ("explain-groups-0", EXPLAIN + ["--groups", "0"], ("groups=0",)),
    ("explain-groups-word", EXPLAIN + ["--groups", "two"], ("--groups", "'two'")),
    ("explain-output-size", EXPLAIN + ["--output-size", "99"], ("output_size=(99,)", "4..4")),
    ("explain-dilation-0", EXPLAIN + ["--dilation", "0"], ("dilation=0",)),
    ("explain-missing-input", ["explain", "--kernel", "1x1x3"], ("--input",)),
    ("precompile-rank-0", ["precompile", "--ranks", "0"], ("--ranks", "0")),
    ("precompile-dtype", ["precompile", "--dtypes", "float16"], ("--dtypes", "float16")),
    ("precompile-strategy", ["precompile", "--strategies", "fast"], ("--strategies", "fast")),
    ("unknown-command", ["bogus"], ("bogus",)),
]


@pytest.mark.parametrize("argv,words", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv, words, monkeypatch):
    """Exit status 2 and a message naming the argument, no traceback, no
    compilation."""
    monkeypatch.setattr(nd._dispatch, "precompile", _no_kernel)
    monkeypatch.setattr(nd, "precompile", _no_kernel)
    status, err = _main(argv)
    assert status == 2, (status, err)
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


def test_cli_bad_input_in_a_process():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nd.__file__)))
    run = subprocess.run([sys.executable, "-m", "numba_deconv"] + EXPLAIN + ["--stride", "0"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2, run
    assert "stride=0" in run.stderr
    assert "Traceback" not in run.stderr


# --- odd but valid inputs ---------------------------------------------------

def _rand(rng, shape, dtype=np.float64):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


KW = dict(stride=2, padding=1, output_padding=1)  # crops, pads and outputs past the taps

ODD_LAYOUTS = {
    "non-contiguous": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "negative-strides": lambda a: np.ascontiguousarray(a[..., ::-1])[..., ::-1],
    "fortran-order": np.asfortranarray,
    "read-only": _readonly,
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "nested-lists": lambda a: a.tolist(),
    "transposed-view": lambda a: (a if a.ndim < 2 else
                                  np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)),
}


@pytest.mark.parametrize("layout", list(ODD_LAYOUTS))
def test_odd_layouts_conv_transpose(layout, rng):
    x, w, b = _rand(rng, (2, 2, 5)), _rand(rng, (2, 3, 3)), _rand(rng, (3,))
    odd = ODD_LAYOUTS[layout]
    ox, ow, ob = odd(x), odd(w), odd(b)
    y = nd.conv_transpose(ox, ow, ob, **KW)
    assert_matches_reference(y, x, w, b, **KW)
    # the inputs are left as they were
    np.testing.assert_array_equal(np.asarray(ox), x)


@pytest.mark.parametrize("layout", ["non-contiguous", "negative-strides", "big-endian",
                                    "read-only", "fortran-order"])
def test_odd_layouts_conv(layout, rng):
    x, w, b = _rand(rng, (2, 2, 7)), _rand(rng, (3, 2, 3)), _rand(rng, (3,))
    odd = ODD_LAYOUTS[layout]
    y = nd.conv(odd(x), odd(w), odd(b), stride=2, padding=1)
    expected = conv_reference(x, w, b, stride=2, padding=1)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert y.dtype == np.float64 and y.dtype.isnative


def test_odd_layouts_channels_last(rng):
    x, w = _rand(rng, (2, 5, 2)), _rand(rng, (2, 3, 3))
    # a view with a negative stride along space and a step of 2 along channels
    view = np.repeat(np.ascontiguousarray(x[:, ::-1]), 2, axis=2)[:, ::-1, ::2]
    assert view.strides[1] < 0 and not view.flags.c_contiguous
    np.testing.assert_array_equal(view, x)
    y = nd.conv_transpose(view, w, data_format="channels_last", **KW)
    assert_matches_reference(y, np.array(view), w, data_format="channels_last", **KW)


@pytest.mark.parametrize("dtype", [">f4", ">c16"])
def test_big_endian_dtypes(dtype, rng):
    x, w = _rand(rng, (1, 2, 4), dtype), _rand(rng, (2, 2, 3), dtype)
    y = nd.conv_transpose(x, w, stride=2)
    assert y.dtype == np.dtype(dtype).newbyteorder("=")
    assert_matches_reference(y, x, w, stride=2)


def test_integer_bool_and_half_inputs(rng):
    x = rng.integers(-3, 4, (1, 2, 4)).astype(np.int8)
    w = rng.integers(0, 2, (2, 3, 3)).astype(bool)
    y = nd.conv_transpose(x, w)
    assert y.dtype == np.float64
    assert_matches_reference(y, x, w)
    xh, wh = x.astype(np.float16), w.astype(np.float16)
    yh = nd.conv_transpose(xh, wh)
    assert yh.dtype == np.float32
    assert_matches_reference(yh, xh, wh)


def test_weight_grads_odd_layouts(rng):
    x = _rand(rng, (2, 2, 7))
    gy = _rand(rng, (2, 3, 4))   # (7 + 2 - 3) // 2 + 1 = 4 outputs
    p = conv_pads((7,), (3,), stride=2, padding=1)
    expected = conv_weight_grad_ref(x, gy, (3,), stride=p["stride"], dilation=p["dilation"],
                                    pad_before=p["pad_before"], pad_after=p["pad_after"])
    for odd in ("negative-strides", "big-endian", "read-only"):
        f = ODD_LAYOUTS[odd]
        got = nd.conv_weight_grad(f(x), f(gy), 3, stride=2, padding=1)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=odd)
    xt, gt = _rand(rng, (2, 2, 3)), _rand(rng, (2, 3, 6))
    expected = conv_transpose_weight_grad_ref(xt, gt, (3,), stride=(2,), dilation=(1,),
                                              pad_before=(1,), pad_after=(1,))
    got = nd.conv_transpose_weight_grad(ODD_LAYOUTS["non-contiguous"](xt),
                                        ODD_LAYOUTS["big-endian"](gt), 3, stride=2,
                                        padding=1, output_padding=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_stride_at_the_limit_with_one_input_position(rng):
    """A stride of 2**31 - 1 is accepted; with one input position only the
    kernel and the output padding make the output."""
    x, w = _rand(rng, (1, 2, 1)), _rand(rng, (2, 3, 3))
    y = nd.conv_transpose(x, w, stride=2**31 - 1, output_padding=4)
    assert_matches_reference(y, x, w, stride=2**31 - 1, output_padding=4)


@pytest.mark.parametrize("stride", [6, 2**20])
def test_stride_past_the_output_with_many_channels(rng, stride):
    """Enough channel pairs for the register tiles, a stride beyond the
    output: the kernels that lay out a phase per stride step must not be
    sized by the stride (2**20 phases) nor drop the empty ones wrongly."""
    x, w = _rand(rng, (16, 16, 1, 1)), _rand(rng, (16, 16, 3, 3))
    y = nd.conv_transpose(x, w, stride=stride, output_padding=(2, 4))
    assert_matches_reference(y, x, w, stride=stride, output_padding=(2, 4))
    g = _rand(rng, y.shape)
    np.testing.assert_allclose(np.vdot(y - nd.conv_transpose(0 * x, w, stride=stride,
                                                             output_padding=(2, 4)), g),
                               np.vdot(x, nd.conv(g, w, stride=stride)), rtol=1e-10)


# --- empty inputs -----------------------------------------------------------

def test_batch_zero(rng):
    w, b = _rand(rng, (2, 3, 3)), _rand(rng, (3,))
    y = nd.conv_transpose(np.ones((0, 2, 4)), w, b, **KW)
    assert y.shape == (0, 3, 8) and y.dtype == np.float64
    y = nd.conv(np.ones((0, 2, 4)), _rand(rng, (3, 2, 3)), b)
    assert y.shape == (0, 3, 2)
    y = nd.conv_transpose(np.ones((0, 4, 2)), w, data_format="channels_last")
    assert y.shape == (0, 6, 3)
    y = nd.conv_transpose(np.ones((0, 2, 4)), w, padding=1, padding_mode="circular")
    assert y.shape == (0, 3, 4)


@pytest.mark.parametrize("func", ["conv_transpose", "conv"])
def test_zero_size_spatial_core(func, rng):
    """The definition sums nothing over an input without positions: the
    result is the bias wherever the output size is positive."""
    x = np.ones((1, 2, 0))
    b = _rand(rng, (3,))
    if func == "conv_transpose":
        w = _rand(rng, (2, 3, 3))
        call = lambda: nd.conv_transpose(x, w, b)  # noqa: E731
        expected = reference(x, w, b)                # (1, 3, 2): zeros + bias
    else:
        w = _rand(rng, (3, 2, 3))
        call = lambda: nd.conv(x, w, b, padding=2)  # noqa: E731
        expected = conv_reference(x, w, b, padding=2)  # (0 + 4 - 3) + 1 = 2 outputs: bias
    y = call()
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected)


def test_zero_wide_out_backprop_tensorflow():
    """TensorFlow's conv2d_backprop_input gives zeros for a 0-wide
    out_backprop (checked against TensorFlow 2: the forward convolution of
    a 2-high VALID input with a 3-high kernel has no rows)."""
    f = np.ones((3, 3, 1, 1), np.float32)
    y = compat_tf.conv2d_backprop_input([1, 2, 7, 1], f, np.ones((1, 0, 3, 1), np.float32), 2,
                                        "VALID")
    assert y.shape == (1, 2, 7, 1) and y.dtype == np.float32 and not y.any()
    # stride 2, kernel 4: TensorFlow's integer division toward zero maps 1 to 0
    y = compat_tf.conv2d_backprop_input([1, 1, 7, 1], np.ones((4, 3, 1, 1)),
                                        np.ones((1, 0, 3, 1)), 2, "VALID")
    assert y.shape == (1, 1, 7, 1) and not y.any()
    # an empty result: SAME maps 0 to 0
    y = compat_tf.conv2d_backprop_input([1, 0, 3, 1], f, np.ones((1, 0, 3, 1)), 1, "SAME")
    assert y.shape == (1, 0, 3, 1)
    # spatial sizes only, explicit padding, 1-D and 3-D
    y = compat_tf.conv2d_backprop_input([1, 5], np.ones((3, 3, 1, 1)), np.ones((1, 0, 3, 1)),
                                        1, [[0, 0], [1, 0], [0, 0], [0, 0]])
    assert y.shape == (1, 1, 5, 1) and not y.any()
    y = compat_tf.conv1d_transpose(np.ones((1, 0, 1)), np.ones((3, 1, 1)), [1, 2, 1], 1, "VALID")
    assert y.shape == (1, 2, 1) and not y.any()
    y = compat_tf.conv3d_transpose(np.ones((1, 0, 2, 2, 1)), np.ones((3, 2, 2, 1, 1)),
                                   [1, 2, 3, 3, 1], 1, "VALID")
    assert y.shape == (1, 2, 3, 3, 1) and not y.any()
    # no input channels: zeros too (TensorFlow 2 returns them)
    y = compat_tf.conv2d_transpose(np.ones((1, 3, 3, 0)), np.ones((2, 2, 1, 0)), [1, 6, 6, 1], 2)
    assert y.shape == (1, 6, 6, 1) and not y.any()


def test_zero_wide_x_onnx(rng):
    W, B = _rand(rng, (2, 3, 3)), _rand(rng, (3,))
    X = np.ones((1, 2, 0))
    y = compat_onnx.conv_transpose(X, W, B)
    np.testing.assert_array_equal(y, reference(X, W, B))   # (1, 3, 2), the bias
    y = compat_onnx.conv_transpose(X, W, strides=[2], output_shape=[5])
    assert y.shape == (1, 3, 5) and not y.any()


# --- NaN, Inf and subnormals ------------------------------------------------

@pytest.mark.parametrize("where", ["x", "weight", "bias"])
def test_nan_inf_propagate(where, rng):
    x, w, b = _rand(rng, (1, 2, 5)), _rand(rng, (2, 2, 3)), _rand(rng, (2,))
    x[0, 0, 1] = 0.0          # a real zero: it meets an Inf weight as 0 * Inf = NaN
    if where == "x":
        x[0, 0, 2], x[0, 1, 4] = np.nan, -np.inf
    elif where == "weight":
        w[0, 1, 2], w[1, 0, 0] = np.inf, np.nan
    else:
        b[1] = np.inf
    for kw in (dict(stride=2, padding=1, output_padding=1), dict(dilation=2, padding=2)):
        y = nd.conv_transpose(x, w, b, **kw)
        assert_same_nonfinite(y, reference(x, w, b, **kw))
    y = nd.conv(x, w.swapaxes(0, 1).copy(), b, padding=1)
    assert_same_nonfinite(y, conv_reference(x, w.swapaxes(0, 1), b, padding=1))


def test_inf_weight_never_meets_inserted_zeros():
    """Inserted and padded zeros are never multiplied: an Inf weight makes
    Inf only where an input reaches, never NaN."""
    x = np.ones((1, 1, 3))
    w = np.array([[[1.0, np.inf, 1.0]]])
    y = nd.conv_transpose(x, w, stride=3, padding=1, output_padding=2)
    expected = reference(x, w, stride=3, padding=1, output_padding=2)
    assert not np.isnan(y).any()
    assert_same_nonfinite(y, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormals_are_kept(dtype, rng):
    """No flush to zero: subnormal inputs times small integers sum exactly."""
    tiny = np.nextafter(dtype(0), dtype(1))
    x = (rng.integers(1, 8, (1, 2, 5)) * tiny).astype(dtype)
    w = rng.integers(1, 4, (2, 2, 3)).astype(dtype)
    y = nd.conv_transpose(x, w, stride=2)
    expected = reference(x, w, stride=2).astype(dtype)
    assert (expected != 0).any()
    np.testing.assert_array_equal(y, expected)
    yc = nd.conv(x, w.swapaxes(0, 1).copy())
    np.testing.assert_array_equal(yc, conv_reference(x, w.swapaxes(0, 1)).astype(dtype))


# --- out= overlapping the inputs --------------------------------------------

def test_out_is_x(rng):
    x, w = _rand(rng, (1, 2, 4)), _rand(rng, (2, 2, 1))
    x0 = x.copy()
    y = nd.conv_transpose(x, w, out=x)
    assert y is x
    assert_matches_reference(y, x0, w)


def test_out_is_weight(rng):
    x, w = _rand(rng, (2, 2, 1)), _rand(rng, (2, 2, 3))  # result (2, 2, 3) = weight's shape
    w0 = w.copy()
    y = nd.conv_transpose(x, w, out=w)
    assert y is w
    assert_matches_reference(y, x, w0)


def test_out_overlaps_x_shifted(rng):
    buf = _rand(rng, (9,))
    x, out = buf[:8].reshape(1, 2, 4), buf[1:].reshape(1, 2, 4)
    x0 = x.copy()
    w = _rand(rng, (2, 2, 1))
    nd.conv_transpose(x, w, out=out)
    assert_matches_reference(out, x0, w)


def test_out_overlaps_bias(rng):
    buf = np.zeros(18)
    buf[:3] = [1.0, 2.0, 3.0]
    bias, out = buf[:3], buf.reshape(1, 3, 6)
    b0 = bias.copy()
    x, w = _rand(rng, (1, 2, 4)), _rand(rng, (2, 3, 3))
    nd.conv_transpose(x, w, bias, out=out)
    assert_matches_reference(out, x, w, b0)


def test_out_is_x_for_conv_channels_last_and_plans(rng):
    w = _rand(rng, (2, 2, 1))
    x = _rand(rng, (1, 2, 4))
    x0 = x.copy()
    nd.conv(x, w, out=x)
    np.testing.assert_allclose(x, conv_reference(x0, w), rtol=1e-12)
    xl = _rand(rng, (1, 4, 2))
    xl0 = xl.copy()
    nd.conv_transpose(xl, w, out=xl, data_format="channels_last")
    assert_matches_reference(xl, xl0, w, data_format="channels_last")
    p = nd.plan(w, (1, 2, 4))
    x = _rand(rng, (1, 2, 4))
    x0 = x.copy()
    p(x, out=x)
    assert_matches_reference(x, x0, w)
    y0 = x.copy()
    p.adjoint(x, out=x)
    np.testing.assert_allclose(x, conv_reference(y0, w), rtol=1e-12)


def test_out_non_contiguous(rng):
    x, w = _rand(rng, (1, 2, 4)), _rand(rng, (2, 3, 3))
    big = np.full((1, 3, 12), 5.0)
    out = big[..., ::2]
    nd.conv_transpose(x, w, out=out)
    assert_matches_reference(out, x, w)
    assert (big[..., 1::2] == 5.0).all()
