"""
Upsampling a 1-D signal
=======================

Upsampling a signal by an integer factor ``L`` is a transposed convolution
with stride ``L``: every sample spreads a scaled copy of the interpolation
kernel, ``L`` outputs apart from the next sample's. The kernel decides the
interpolation:

- ``[1, 1, 1, 1]`` holds each sample for ``L = 4`` outputs (zero-order hold);
- a triangle of length ``2L - 1`` interpolates linearly;
- a windowed sinc approximates band-limited interpolation.

Each kernel is centred on its sample with asymmetric padding, one
``(before, after)`` pair per dim: ``before`` is the centre tap's index, and
``after`` is chosen so that the output has exactly ``L`` samples per input
sample (output size ``(I - 1)*L - before - after + k = L*I``).
"""

import matplotlib.pyplot as plt
import numpy as np

import numba_deconv

L = 4
n = 24
t_low = np.arange(n)
t_high = np.arange(n * L) / L


def signal(t):
    """A chirp-like test signal, band-limited well below the low rate's Nyquist."""
    return np.sin(2 * np.pi * (0.03 * t + 0.004 * t ** 2)) + 0.3 * np.cos(2 * np.pi * 0.05 * t)


x = signal(t_low)

hold = np.ones(L)
triangle = 1 - np.abs(np.arange(-(L - 1), L)) / L                # 2L - 1 taps
m = np.arange(-3 * L, 3 * L + 1)                                 # 6 lobes, 6L + 1 taps
sinc = np.sinc(m / L) * np.hanning(len(m) + 2)[1:-1]


def upsample(x, h, centre):
    """conv_transpose at stride L, kernel tap ``centre`` on each input sample."""
    before = centre
    after = len(h) - L - before                                  # output L * len(x)
    y = numba_deconv.conv_transpose(x[None, None], h[None, None], stride=L,
                                    padding=[(before, after)])
    return y[0, 0]


results = {"zero-order hold": upsample(x, hold, 0),
           "linear (triangle)": upsample(x, triangle, L - 1),
           "windowed sinc": upsample(x, sinc, 3 * L)}
for name, y in results.items():
    rms = np.sqrt(np.mean((y - signal(t_high))[2 * L:-3 * L] ** 2))
    print(f"{name:18s} output {y.shape}, rms error away from the ends {rms:.4f}")

# %%
# The kernels and what they make of the signal
# --------------------------------------------
fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), gridspec_kw={"height_ratios": [1, 2]})
for name, h in [("zero-order hold", hold), ("linear (triangle)", triangle),
                ("windowed sinc", sinc)]:
    taps = np.arange(len(h)) - int(np.argmax(h == h.max()))
    axes[0].plot(taps, h, "o-", ms=3, label=f"{name}, {len(h)} taps")
axes[0].set_xlabel("tap, relative to the sample it spreads (output samples)")
axes[0].set_title(f"interpolation kernels for stride {L}")
axes[0].legend(fontsize="small")
axes[0].grid(alpha=0.3)

fine = np.linspace(0, n, 2000)
axes[1].plot(fine, signal(fine), color="0.75", lw=3, label="true signal")
for name, y in results.items():
    axes[1].plot(t_high, y, lw=1.2, label=name, drawstyle="steps-post" if "hold" in name else None)
axes[1].plot(t_low, x, "ko", ms=4, label=f"{n} input samples")
axes[1].set_xlabel("time (input samples)")
axes[1].set_title(f"conv_transpose(x, h, stride={L}): {n} -> {n * L} samples")
axes[1].legend(fontsize="small", ncol=3, loc="lower left")
fig.tight_layout()

# %%
# The same as SciPy's ``upfirdn``
# -------------------------------
# Without padding (``"valid"``), a stride-``L`` transposed convolution of one
# channel is exactly :func:`scipy.signal.upfirdn` with ``up=L``: insert
# ``L - 1`` zeros, filter, keep everything. It computes no product with an
# inserted zero, though.
from scipy.signal import upfirdn  # noqa: E402

full = numba_deconv.conv_transpose(x[None, None], sinc[None, None], stride=L)[0, 0]
print("upfirdn:", upfirdn(sinc, x, up=L).shape, "conv_transpose:", full.shape,
      "max difference:", np.abs(full - upfirdn(sinc, x, up=L)).max())

plt.show()
