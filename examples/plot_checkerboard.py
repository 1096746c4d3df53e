"""
Checkerboard artifacts: uneven overlap
======================================

A transposed convolution with stride ``s`` spreads every input sample over
``k`` outputs, ``s`` apart from the next sample's. When the kernel size
``k`` is not a multiple of the stride, neighbouring outputs receive
different numbers of products (*uneven overlap*): with ``k = 3, s = 2``,
even outputs sum two taps and odd outputs one. Whatever the weights, the
output then has a built-in period-``s`` pattern, in 2-D a checkerboard,
that a network must learn to cancel. With ``k = 4, s = 2`` every interior
output sums exactly two taps per dim.

:func:`numba_deconv.explain` warns about it. Both calls below give a 16x16
output from an 8x8 input.
"""

import matplotlib.pyplot as plt
import numpy as np

import numba_deconv

x = np.ones((1, 1, 8, 8))                       # a constant image

uneven = dict(stride=2, padding=1, output_padding=1)   # k = 3: 15 + 1 = 16
even = dict(stride=2, padding=1)                       # k = 4: 16

# %%
# How many products reach each output
# -----------------------------------
# With all-ones input and weights, each output is the number of (input,
# tap) products that reach it.

count3 = numba_deconv.conv_transpose(x, np.ones((1, 1, 3, 3)), **uneven)[0, 0]
count4 = numba_deconv.conv_transpose(x, np.ones((1, 1, 4, 4)), **even)[0, 0]
print("kernel 3, stride 2:\n", count3[:6, :6])
print("kernel 4, stride 2:\n", count4[:6, :6])

# %%
# A smooth kernel shows the same thing: a constant input should give a
# constant output, and with uneven overlap it does not. The kernels are
# separable Gaussians (sigma 1 tap) scaled so that each output receives a
# total weight of 1 on average.


def bump(k):
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-0.5 * t ** 2)
    g2 = np.outer(g, g)
    return (g2 / (g2.sum() / 4))[None, None]     # stride 2 in 2-D: 4 outputs per input


smooth3 = numba_deconv.conv_transpose(x, bump(3), **uneven)[0, 0]
smooth4 = numba_deconv.conv_transpose(x, bump(4), **even)[0, 0]

fig, axes = plt.subplots(2, 3, figsize=(11, 7))
for row, (name, count, smooth) in enumerate(
        [("kernel 3, stride 2", count3, smooth3), ("kernel 4, stride 2", count4, smooth4)]):
    im = axes[row, 0].imshow(count, cmap="viridis", vmin=0, vmax=4)
    axes[row, 0].set_title("products per output", fontsize=10)
    axes[row, 0].set_ylabel(name, fontsize=11)
    fig.colorbar(im, ax=axes[row, 0], shrink=0.8)
    im = axes[row, 1].imshow(smooth, cmap="gray")
    axes[row, 1].set_title("constant input, smooth kernel", fontsize=10)
    fig.colorbar(im, ax=axes[row, 1], shrink=0.8)
    axes[row, 2].plot(smooth[8], "o-")
    axes[row, 2].set_ylim(0, 1.1 * smooth.max())
    axes[row, 2].set_title("row 8 of that output", fontsize=10)
    axes[row, 2].set_xlabel("output column")
for ax in axes[:, :2].ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Away from the border, kernel 4 gives a flat output; kernel 3 alternates
# between the sum of two taps and one tap in every row and column.
interior = (slice(2, -2), slice(2, -2))
print("kernel 3 interior values:", np.unique(np.round(smooth3[interior], 6)))
print("kernel 4 interior values:", np.unique(np.round(smooth4[interior], 6)))
assert np.unique(count4[interior]).tolist() == [4.0]
assert np.unique(count3[interior]).tolist() == [1.0, 2.0, 4.0]

# %%
# ``explain`` says so before anything is computed:
print(numba_deconv.explain(x.shape, (1, 1, 3, 3), **uneven))

plt.show()
