"""
Super-resolution by least squares, with a boundary mode
=======================================================

An image is observed blurred, at half its resolution and with noise:

.. code-block:: python

    observed = numba_deconv.conv(image, w, stride=2, padding=2,
                                 padding_mode="reflect") + noise

that is a 5x5 Gaussian blur applied at stride 2, the image extended by
mirror reflection at its borders. :func:`numba_deconv.as_linear_operator`
turns this model into a :class:`scipy.sparse.linalg.LinearOperator` whose
``rmatvec`` is its exact adjoint, a transposed convolution that folds
what lands in the mirrored border back onto the pixels it mirrors. That is
all :func:`scipy.sparse.linalg.lsqr` needs to recover the sharp image.

The command-line version of this example, with options, is
``examples/deblur_lsqr.py`` in the repository.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.sparse.linalg import lsqr

import numba_deconv

size = 48
t = (np.arange(size) + 0.5) / size
yy, xx = np.meshgrid(t, t, indexing="ij")
truth = 0.25 + 0.25 * xx * (1 - 0.5 * yy)                           # a gradient
truth[np.hypot(yy - 0.32, xx - 0.30) < 0.17] = 0.95                 # a disc
truth[(np.abs(yy - 0.70) < 0.12) & (np.abs(xx - 0.28) < 0.12)] = 0.05   # a square
ring = np.hypot(yy - 0.68, xx - 0.72)
truth[(ring > 0.10) & (ring < 0.16)] = 0.8                          # a ring
bars = (yy > 0.1) & (yy < 0.42) & (xx > 0.58) & (xx < 0.94)
truth[bars] = np.where(np.floor((xx[bars] - 0.58) * size / 3) % 2 == 0, 0.9, 0.15)
image = truth[None, None]                                           # (N, C, H, W)

g = np.exp(-0.5 * ((np.arange(5) - 2.0) / 1.2) ** 2)
w = (np.outer(g, g) / np.outer(g, g).sum())[None, None]            # conv weight (1, 1, 5, 5)
model = dict(stride=2, padding=2, padding_mode="reflect")

rng = np.random.default_rng(0)
observed = numba_deconv.conv(image, w, **model)
observed = observed + 0.01 * rng.standard_normal(observed.shape)
print("image", image.shape, "-> observed", observed.shape)

# %%
# Two estimates
# -------------
# The naive one spreads every observation back over the pixels it saw (the
# adjoint, ``conv_transpose`` with the same arguments) and divides by the
# weight each pixel received: it undoes the sampling, not the blur. lsqr
# starts from it and solves ``min |A x - observed|^2 + damp^2 |x - naive|^2``.

back = dict(output_size=image.shape[2:], **model)
naive = (numba_deconv.conv_transpose(observed, w, **back)
         / numba_deconv.conv_transpose(np.ones_like(observed), w, **back))[0, 0]

A = numba_deconv.as_linear_operator(w, image.shape, forward="conv", **model)
print("operator", A.shape)
x0 = naive.ravel()
solution = lsqr(A, observed.ravel() - A.matvec(x0), damp=0.05, iter_lim=100)
recovered = (x0 + solution[0]).reshape(size, size)


def error(estimate):
    return np.linalg.norm(estimate - truth) / np.linalg.norm(truth)


print(f"relative error: naive {error(naive):.3f}, lsqr {error(recovered):.3f} "
      f"({solution[2]} iterations)")

# %%
# The adjoint is exact
# --------------------
# ``<A x, y> = <x, A^T y>`` to rounding, border included:
u = rng.standard_normal(A.shape[1])
v = rng.standard_normal(A.shape[0])
print("adjoint mismatch:", abs(A.matvec(u) @ v - u @ A.rmatvec(v)) / abs(A.matvec(u) @ v))

# %%
# The wrong boundary model
# ------------------------
# The same solve with zero padding in the operator, while the data were made
# with mirrored borders: the model now claims the image is dark outside, and
# lsqr explains the border's brightness by brightening the outermost pixels.
A_zeros = numba_deconv.as_linear_operator(w, image.shape, forward="conv", stride=2, padding=2)
solution_zeros = lsqr(A_zeros, observed.ravel() - A_zeros.matvec(x0), damp=0.05, iter_lim=100)
recovered_zeros = (x0 + solution_zeros[0]).reshape(size, size)
print(f"relative error with the zero-padding model: {error(recovered_zeros):.3f}")

panels = [("observed (24x24)", observed[0, 0]),
          (f"naive, error {error(naive):.3f}", naive),
          (f"lsqr, reflect model\nerror {error(recovered):.3f}", recovered),
          (f"lsqr, zero-padding model\nerror {error(recovered_zeros):.3f}", recovered_zeros),
          ("truth (48x48)", truth)]
fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.6))
for ax, (title, img) in zip(axes, panels):
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
fig.tight_layout()

# %%
# Where the two models differ: the absolute error of each reconstruction.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
for ax, (title, img) in zip(axes, [("reflect model", recovered),
                                   ("zero-padding model", recovered_zeros)]):
    im = ax.imshow(np.abs(img - truth), cmap="magma", vmin=0, vmax=0.3)
    ax.set_title(f"|error|, {title}")
    ax.set_axis_off()
fig.colorbar(im, ax=axes, shrink=0.8)

plt.show()
