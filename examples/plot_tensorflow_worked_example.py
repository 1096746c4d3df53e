"""
Why 67 and not 603: TensorFlow's worked example
===============================================

TensorFlow's documentation of ``conv2d_transpose`` works one example by
hand: a 2x2 input, a 3x3 filter, stride 2, ``VALID`` padding, a 5x5 result.
Its first element is ``67``. Anyone who remembers that "a transposed
convolution flips the kernel" expects ``-67 x -9 = 603`` there instead.
This example draws where every number of the result comes from, and shows
where the flip people remember lives (the slow *direct* form) and why it
still gives 67.

The values are those of ``docs/semantics.md``, section 6.1.
"""

# %%
# The call
# --------
# One image, one channel each way. The weight layout is PyTorch's and
# ONNX's, ``(C_in, C_out/groups, kH, kW)``; TensorFlow's filter
# ``[kH, kW, C_out, C_in]`` holds the same numbers, transposed, never
# flipped.

import matplotlib.pyplot as plt
import numpy as np

import numba_deconv

x = np.array([[-67.0, -77.0], [-117.0, -127.0]])
w = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0], [-7.0, 8.0, -9.0]])

y = numba_deconv.conv_transpose(x[None, None], w[None, None], stride=2)[0, 0]
print(y)

# %%
# The first element is ``x[0, 0] * w[0, 0] = -67 * -1 = 67``: only the
# corner input reaches the corner output, through the corner tap of the
# kernel *as stored*.
assert y[0, 0] == 67.0 == x[0, 0] * w[0, 0]
assert y[0, 0] != x[0, 0] * w[2, 2]        # -67 * -9 = 603: a flipped kernel

# %%
# The scatter form: every input spreads a scaled copy of the kernel
# ----------------------------------------------------------------------
# ``y[i*s + k] += x[i] * w[k]`` per dim: input ``(i, j)`` adds
# ``x[i, j] * w`` to the 3x3 block of the output that starts at
# ``(2i, 2j)``. The four blocks overlap on the middle row and column,
# where the output sums two or four products.


def draw_grid(ax, values, title, mask=None, cmap="RdBu_r", limit=None):
    """A matrix with its numbers written in (blank where ``mask`` is False)."""
    limit = 1.5 * (limit or np.abs(values).max())    # pale colours: the numbers stay legible
    shown = np.where(mask, values, np.nan) if mask is not None else values
    ax.imshow(shown, cmap=cmap, vmin=-limit, vmax=limit)
    for (r, c), v in np.ndenumerate(values):
        if mask is None or mask[r, c]:
            ax.text(c, r, f"{v + 0:g}", ha="center", va="center", fontsize=8)  # no "-0"
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.set_xticks(np.arange(-0.5, values.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, values.shape[0]), minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_title(title, fontsize=9)


fig, axes = plt.subplots(1, 5, figsize=(14, 3.6))
limit = np.abs(y).max()
for ax, (i, j) in zip(axes, np.ndindex(2, 2)):
    part = np.zeros((5, 5))
    part[2 * i:2 * i + 3, 2 * j:2 * j + 3] = x[i, j] * w
    mask = np.zeros((5, 5), bool)
    mask[2 * i:2 * i + 3, 2 * j:2 * j + 3] = True
    draw_grid(ax, part, f"x[{i}, {j}] = {x[i, j]:g} times w\nat rows {2 * i}.., cols {2 * j}..",
              mask, limit=limit)
draw_grid(axes[4], y, "sum = conv_transpose(x, w, stride=2)", limit=limit)
axes[4].add_patch(plt.Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor="k", linewidth=2))
fig.suptitle("The scatter form: y[2i + k, 2j + l] += x[i, j] * w[k, l] (kernel as stored)")
fig.tight_layout(rect=(0, 0, 1, 0.93))

# %%
# ``603 = -67 * -9`` does appear, in the first panel: at ``(2, 2)``, where
# the last tap of ``x[0, 0]``'s copy lands, not at ``(0, 0)``.
#
# Each partial result is the library's own answer for that input alone, so
# the four panels add up to the result exactly:
parts = []
for i, j in np.ndindex(2, 2):
    alone = np.zeros_like(x)
    alone[i, j] = x[i, j]
    parts.append(numba_deconv.conv_transpose(alone[None, None], w[None, None], stride=2)[0, 0])
assert np.array_equal(sum(parts), y)

# %%
# Where the flip comes from: the direct form
# ------------------------------------------
# The same numbers can be computed the slow way that most diagrams draw:
# insert ``s - 1 = 1`` zero between input samples, pad by ``k - 1 = 2``
# zeros, and *correlate* at stride 1 with the kernel flipped in both axes.
# :func:`numba_deconv.explain` computes every intermediate of it.

e = numba_deconv.explain((1, 1, 2, 2), (1, 1, 3, 3), stride=2)
direct = e.direct(x[None, None], w[None, None])
print("upsampled", e.upsampled_shape, "pad", e.pad, "kernel_flip", e.kernel_flip)
assert np.array_equal(direct.result[0, 0], y)

padded = direct.padded[0, 0]
flipped = direct.flipped_kernel[0, 0]

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
input_mask = padded != 0
draw_grid(axes[0], padded, "upsampled and zero-padded x (7x7)", limit=limit)
axes[0].add_patch(plt.Rectangle((-0.5, -0.5), 3, 3, fill=False, edgecolor="k", linewidth=2))
draw_grid(axes[1], flipped, "the window: w flipped (w[::-1, ::-1])")
axes[1].add_patch(plt.Rectangle((1.5, 1.5), 1, 1, fill=False, edgecolor="k", linewidth=2))
window = padded[:3, :3] * flipped
draw_grid(axes[2], window, f"products of the first window\nsum = {window.sum():g} = y[0, 0]",
          limit=limit)
fig.tight_layout()

# %%
# The first window covers eight zeros and one input sample, ``-67``, which
# meets the bottom-right entry of the *flipped* kernel: that entry is
# ``w[0, 0] = -1``. The flip in the direct form undoes the reversal that
# rewriting a scatter as a correlation introduces; both forms multiply
# ``x[0, 0]`` by ``w[0, 0]``. Flipping the kernel of the scatter form, or
# forgetting the flip in the direct form, gives the wrong 603:
wrong = numba_deconv.conv_transpose(x[None, None], w[None, None, ::-1, ::-1], stride=2)[0, 0]
print("with a flipped kernel, y[0, 0] would be", wrong[0, 0])
assert wrong[0, 0] == 603.0

# %%
# Of the direct form's multiplications most hit inserted or padded zeros;
# the scatter form (and every kernel of this library) forms only the
# products of the definition:
print(e)

plt.show()
