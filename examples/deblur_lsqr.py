"""Recover a sharp image from a blurred, down-sampled, noisy observation.

The observation model is a forward convolution: a 5x5 Gaussian-like blur
applied at stride 2 (each observed pixel sees a 5x5 neighbourhood of the
sharp image, and only every other row and column is kept), with the image
extended by mirror reflection at its borders (``padding_mode="reflect"``),
plus Gaussian noise::

    observed = numba_deconv.conv(image, w, stride=2, padding=2,
                                 padding_mode="reflect") + noise

``numba_deconv.as_linear_operator(w, image_shape, forward="conv", ...)``
turns that model into a ``scipy.sparse.linalg.LinearOperator`` whose
``rmatvec`` is its exact adjoint (a transposed convolution with the same
padding mode), which is all ``scipy.sparse.linalg.lsqr`` needs.

The naive estimate is the transposed convolution of the observation
normalised by that of an all-ones observation (a weighted upsampling): it
undoes the down-sampling but not the blur. lsqr starts from it (``x0``) and
solves the damped least-squares problem ``min |A x - observed|^2 +
damp^2 |x - naive|^2``: it fits the data, and where the data say nothing
(the observation has 4 times fewer pixels than the image) it stays with
the naive estimate.

Run::

    python examples/deblur_lsqr.py                      # 64 x 64
    python examples/deblur_lsqr.py --size 128 --figure deblur.png

``--figure`` needs matplotlib.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import numba_deconv


def test_image(size):
    """A size x size test image in [0, 1]: a smooth background gradient, a
    bright disc, a dark square, a ring and a bar pattern (sharp edges of
    several orientations and widths)."""
    t = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(t, t, indexing="ij")
    img = 0.25 + 0.25 * xx * (1 - 0.5 * yy)                       # gradient
    r = np.hypot(yy - 0.32, xx - 0.30)
    img[r < 0.17] = 0.95                                           # disc
    img[(np.abs(yy - 0.70) < 0.12) & (np.abs(xx - 0.28) < 0.12)] = 0.05   # square
    ring = np.hypot(yy - 0.68, xx - 0.72)
    img[(ring > 0.10) & (ring < 0.16)] = 0.8                       # ring
    bars = (yy > 0.12) & (yy < 0.42) & (xx > 0.58) & (xx < 0.92)
    img[bars] = np.where(np.floor((xx[bars] - 0.58) * size / 3) % 2 == 0, 0.9, 0.15)
    return img


def blur_kernel(sigma=1.2):
    """A normalised 5x5 Gaussian, as a conv weight (C_out=1, C_in=1, 5, 5)."""
    t = np.arange(5) - 2.0
    g = np.exp(-0.5 * (t / sigma) ** 2)
    k = np.outer(g, g)
    return (k / k.sum())[None, None]


#: The observation model: a stride-2 blur with mirrored borders.
MODEL = dict(stride=2, padding=2, padding_mode="reflect")


def relative_error(estimate, truth):
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def run(size=64, noise=0.01, damp=0.05, iterations=100, seed=0, verbose=True):
    """Simulate the observation, reconstruct it two ways, return a dict with
    the images and the relative errors ``naive_error``, ``lsqr_error``."""
    from scipy.sparse.linalg import lsqr

    rng = np.random.default_rng(seed)
    truth = test_image(size)
    image = truth[None, None]                      # (N=1, C=1, size, size)
    w = blur_kernel()

    observed = numba_deconv.conv(image, w, **MODEL)
    observed = observed + noise * rng.standard_normal(observed.shape)

    # Naive: spread every observation back over the pixels it saw, and
    # divide by the total weight each pixel received.
    spread = numba_deconv.conv_transpose(observed, w, output_size=image.shape[2:], **MODEL)
    weight = numba_deconv.conv_transpose(np.ones_like(observed), w,
                                         output_size=image.shape[2:], **MODEL)
    naive = (spread / weight)[0, 0]

    A = numba_deconv.as_linear_operator(w, image.shape, forward="conv", **MODEL)
    start = time.perf_counter()
    result = lsqr(A, observed.ravel(), damp=damp, iter_lim=iterations, x0=naive.ravel())
    seconds = time.perf_counter() - start
    recovered = result[0].reshape(size, size)

    out = dict(truth=truth, observed=observed[0, 0], naive=naive, recovered=recovered,
               naive_error=relative_error(naive, truth),
               lsqr_error=relative_error(recovered, truth),
               lsqr_iterations=int(result[2]), lsqr_seconds=seconds)
    if verbose:
        print(f"image {size}x{size}, observed {observed.shape[2]}x{observed.shape[3]} "
              f"(5x5 Gaussian blur, stride 2, reflect borders, noise sigma {noise})")
        print(f"operator {A.shape[0]} x {A.shape[1]}")
        print(f"relative error, naive upsampling (normalised conv_transpose): "
              f"{out['naive_error']:.4f}")
        print(f"relative error, lsqr (damp {damp}, {out['lsqr_iterations']} iterations, "
              f"{seconds:.2f} s): {out['lsqr_error']:.4f}")
    return out


def save_figure(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("observed", result["observed"]),
              (f"naive, error {result['naive_error']:.3f}", result["naive"]),
              (f"lsqr, error {result['lsqr_error']:.3f}", result["recovered"]),
              ("truth", result["truth"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64,
                        help="image side in pixels (default 64)")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="standard deviation of the added noise (default 0.01)")
    parser.add_argument("--damp", type=float, default=0.05,
                        help="lsqr's damping of the departure from the naive "
                             "estimate (default 0.05)")
    parser.add_argument("--iterations", type=int, default=100,
                        help="lsqr iteration limit (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--figure", metavar="PATH",
                        help="save observed / naive / recovered / truth side by side "
                             "(needs matplotlib)")
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8")
    result = run(args.size, args.noise, args.damp, args.iterations, args.seed)
    if args.figure:
        try:
            save_figure(result, args.figure)
        except ImportError:
            print("matplotlib is not installed; no figure written", file=sys.stderr)
            return 1
        print(f"figure written to {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
