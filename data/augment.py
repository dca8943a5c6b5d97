"""The paper's preprocessing and augmentation (Sections 2 and 4.1), on batches.

Every function takes a batch ``x`` of shape (N, C, H, W), works with whole-array
operations (no loop over images), and runs on NumPy or CuPy: the array module comes
from ``x``. Random numbers are drawn on the host from a ``numpy.random.Generator``,
in a fixed order, so results do not depend on the backend.

Pixel scale (the project's convention, shared with data.loader):

    image = uint8 * scale - mean        scale = PIXEL_SCALE = 1/255 by default

with ``mean = mean_image(train_x, scale)``, the training set's mean at the same scale
(the paper's "subtract the mean activity over the training set from each pixel").
Pixels are thus in [0, 1] before the mean is removed. The scale matters for the PCA
lighting: the paper adds ``alpha * lambda`` where lambda is an eigenvalue of the RGB
covariance, i.e. a variance, so the shift grows with scale**2. In [0, 1] units the
ImageNet eigenvalues are about (0.2175, 0.0188, 0.0045) and the shifts are a few
percent of the range, as intended; in [0, 255] units the same formula would shift
pixels by hundreds. Compute ``rgb_pca`` at the default scale; for pixels at another
scale multiply its eigenvalues by ``scale * 255`` (``lighting_pca`` does), so that
the shift is the same fraction of the range.

Geometry at small scale: 28x28 images are zero-padded by 2 (after mean subtraction,
so the padding is the mean image's value) and randomly cropped back to 28x28, the
analog of 227 (the paper says 224) crops from 256x256; CIFAR uses pad 4, crop 32.
"""
from __future__ import annotations

import numpy as np

from engine.backend import get_array_module, to_numpy

PIXEL_SCALE = 1.0 / 255.0

# ten_crops order: index k of the first axis.
TEN_CROP_ORDER = ("top-left", "top-right", "bottom-left", "bottom-right", "center",
                  "top-left flipped", "top-right flipped", "bottom-left flipped",
                  "bottom-right flipped", "center flipped")


def _check_batch(x, name="x"):
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}")


def _check_crop(x, crop):
    H, W = x.shape[2], x.shape[3]
    if not (0 < crop <= H and crop <= W):
        raise ValueError(f"crop {crop} does not fit images of {H}x{W}")


def mean_image(train_x, scale: float = PIXEL_SCALE, chunk: int = 8192):
    """The training set's mean image, ``mean_n(train_x[n] * scale)``, float32 (C, H, W).

    Summed in float64 over chunks of ``chunk`` images, so memory stays bounded
    (one float64 image plus NumPy's cast buffers) whatever N is.
    """
    _check_batch(train_x, "train_x")
    xp = get_array_module(train_x)
    n = train_x.shape[0]
    if n == 0:
        raise ValueError("mean_image of an empty training set")
    acc = xp.zeros(train_x.shape[1:], dtype=xp.float64)
    for i in range(0, n, chunk):
        acc += train_x[i:i + chunk].sum(axis=0, dtype=xp.float64)
    return (acc * (scale / n)).astype(xp.float32)


def to_float(x_uint8, mean=None, scale: float = PIXEL_SCALE):
    """``x * scale - mean`` as float32 (the pipeline's first step)."""
    xp = get_array_module(x_uint8)
    out = x_uint8.astype(xp.float32)
    out *= xp.float32(scale)
    if mean is not None:
        out -= xp.asarray(mean, dtype=xp.float32)
    return out


def pad_images(x, pad: int):
    """Zero-pad H and W by ``pad`` on each side: (N, C, H+2p, W+2p), same dtype."""
    _check_batch(x)
    if pad == 0:
        return x
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    xp = get_array_module(x)
    N, C, H, W = x.shape
    out = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    out[:, :, pad:pad + H, pad:pad + W] = x
    return out


def flip_horizontal(x):
    """Mirror left-right (the last axis). A view; flipping twice gives ``x`` back."""
    return x[..., ::-1]


def _windows(x, crop):
    """All crop x crop windows as a strided view: (N, C, H-crop+1, W-crop+1, crop, crop)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    sn, sc, sh, sw = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, H - crop + 1, W - crop + 1, crop, crop),
        strides=(sn, sc, sh, sw, sh, sw))


def crop_at(x, crop: int, top, left, flip=None):
    """Gather one crop per image at given positions: ``out[n] = x[n, :, top[n]:top[n]+crop,
    left[n]:left[n]+crop]``, mirrored where ``flip[n]``. top/left/flip: host arrays (N,).

    One fancy index into a strided view of all windows (no loop over images).
    """
    _check_batch(x)
    _check_crop(x, crop)
    xp = get_array_module(x)
    N = x.shape[0]
    top = np.asarray(top, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    if top.shape != (N,) or left.shape != (N,):
        raise ValueError(f"top and left must have shape ({N},)")
    if (top < 0).any() or (left < 0).any() or (top > x.shape[2] - crop).any() \
            or (left > x.shape[3] - crop).any():
        raise ValueError("crop position out of bounds")
    win = _windows(x, crop)
    # Advanced indices on axes 0, 2, 3 around the slice on axis 1: result is (N, C, crop, crop).
    out = win[xp.arange(N), :, xp.asarray(top), xp.asarray(left)]
    if flip is not None:
        idx = np.flatnonzero(np.asarray(flip))
        if idx.size:
            idx = xp.asarray(idx)
            out[idx] = out[idx][..., ::-1]
    return out


def random_flips(x, rng: np.random.Generator, return_params: bool = False):
    """Mirror each image with probability 0.5 (one draw per image). Returns a copy."""
    _check_batch(x)
    flip = rng.random(x.shape[0]) < 0.5
    out = x.copy()
    idx = np.flatnonzero(flip)
    if idx.size:
        xp = get_array_module(x)
        idx = xp.asarray(idx)
        out[idx] = out[idx][..., ::-1]
    return (out, flip) if return_params else out


def random_crops(x, crop: int, rng: np.random.Generator, flip: bool = True,
                 return_params: bool = False):
    """A random ``crop x crop`` patch of each image, mirrored with probability 0.5.

    Draws, in this order: ``top`` (N integers in [0, H-crop]), ``left`` (N in
    [0, W-crop]), then, if ``flip``, N uniforms (mirror where < 0.5). With
    ``return_params`` also returns ``(top, left, flipped)`` (host arrays) so a test
    can compare with explicit slices.
    """
    _check_batch(x)
    _check_crop(x, crop)
    N, _, H, W = x.shape
    top = rng.integers(0, H - crop + 1, size=N)
    left = rng.integers(0, W - crop + 1, size=N)
    flipped = rng.random(N) < 0.5 if flip else np.zeros(N, dtype=bool)
    out = crop_at(x, crop, top, left, flipped)
    return (out, (top, left, flipped)) if return_params else out


def center_crop(x, crop: int):
    """The central ``crop x crop`` patch (offsets ``(H-crop)//2``, ``(W-crop)//2``). A view."""
    _check_batch(x)
    _check_crop(x, crop)
    H, W = x.shape[2], x.shape[3]
    top, left = (H - crop) // 2, (W - crop) // 2
    return x[:, :, top:top + crop, left:left + crop]


def ten_crop_positions(H: int, W: int, crop: int) -> list[tuple[int, int]]:
    """(top, left) of the five patches of ten_crops, in TEN_CROP_ORDER[:5]."""
    return [(0, 0), (0, W - crop), (H - crop, 0), (H - crop, W - crop),
            ((H - crop) // 2, (W - crop) // 2)]


def ten_crops(x, crop: int, mirrors: bool = True):
    """The paper's test-time patches: (10, N, C, crop, crop).

    Order (TEN_CROP_ORDER): top-left, top-right, bottom-left, bottom-right, center,
    then the same five mirrored left-right. Average the ten softmax outputs.
    mirrors=False gives the first five only, (5, N, C, crop, crop): for a network
    trained without reflections (MNIST: a mirrored digit is another digit).
    """
    _check_batch(x)
    _check_crop(x, crop)
    xp = get_array_module(x)
    H, W = x.shape[2], x.shape[3]
    five = [x[:, :, top:top + crop, left:left + crop]
            for top, left in ten_crop_positions(H, W, crop)]
    return xp.stack(five + ([patch[..., ::-1] for patch in five] if mirrors else []))


def rgb_pca(train_x, scale: float = PIXEL_SCALE, max_pixels: int = 1_000_000, seed: int = 0):
    """PCA of the 3x3 covariance of RGB pixel values (paper, Section 4.1).

    Pixel values are ``uint8 * scale`` (use the loader's scale); the covariance removes
    the global mean colour. Computed on ``max_pixels`` pixels drawn at random (with a
    fixed ``seed``) from all images and positions, or on every pixel if there are fewer.

    Returns ``(eigvals (3,), eigvecs (3, 3))`` as float32 host arrays: eigenvalues in
    decreasing order, ``eigvecs[:, i]`` the unit eigenvector of ``eigvals[i]``, its
    largest-magnitude component made positive (the sign is otherwise arbitrary).
    """
    _check_batch(train_x, "train_x")
    if train_x.shape[1] != 3:
        raise ValueError(f"rgb_pca needs 3-channel (RGB) images, got {train_x.shape[1]} channels")
    N, _, H, W = train_x.shape
    total = N * H * W
    if total <= max_pixels:
        px = to_numpy(train_x).transpose(1, 0, 2, 3).reshape(3, -1).T
    else:
        rng = np.random.default_rng(seed)
        flat = rng.choice(total, size=max_pixels, replace=False)
        n, rem = np.divmod(flat, H * W)
        i, j = np.divmod(rem, W)
        xp = get_array_module(train_x)
        px = to_numpy(train_x[xp.asarray(n), :, xp.asarray(i), xp.asarray(j)])  # (P, 3)
    px = px.astype(np.float64) * scale
    cov = np.cov(px, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(3)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    return np.clip(vals, 0.0, None).astype(np.float32), vecs.astype(np.float32)


def lighting_pca(train_x, scale: float = PIXEL_SCALE):
    """The PCA lighting's (eigenvalues, eigenvectors) for pixels at ``scale``: those of
    0-1 pixels (``rgb_pca``), the eigenvalues times ``scale * 255``, so that the colour
    shift is the same fraction of the pixel range in either unit. The paper's formula
    adds alpha * lambda, a variance, which in 0-255 units (train.py --raw-pixels) would
    shift the pixels 255 times further than in 0-1 units (by hundreds), where its
    ImageNet eigenvalues give the few percent it describes."""
    vals, vecs = rgb_pca(train_x, scale=PIXEL_SCALE)
    return vals * np.float32(scale / PIXEL_SCALE), vecs


def pca_lighting(x, eigvals, eigvecs, rng: np.random.Generator | None = None,
                 std: float = 0.1, alphas=None, return_alphas: bool = False):
    """The paper's colour augmentation ("fancy PCA"), on a batch (N, 3, H, W).

    For image n, draw ``alpha_n ~ N(0, std)`` (3 numbers, host, one call of
    ``rng.normal`` for the batch) and add to every pixel the same RGB offset

        delta_n = eigvecs @ (alpha_n * eigvals)   = [p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T

    ``alphas`` (N, 3) may be given instead of ``rng`` (then nothing is drawn). Returns a
    new array of x's dtype, and the alphas if ``return_alphas``.
    """
    _check_batch(x)
    if x.shape[1] != 3:
        raise ValueError(f"pca_lighting needs 3-channel (RGB) images, got {x.shape[1]} channels")
    xp = get_array_module(x)
    N = x.shape[0]
    if alphas is None:
        if rng is None:
            raise ValueError("pca_lighting needs rng or alphas")
        alphas = rng.normal(0.0, std, size=(N, 3))
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.shape != (N, 3):
        raise ValueError(f"alphas must be ({N}, 3), got {alphas.shape}")
    vals = np.asarray(to_numpy(eigvals), dtype=np.float64).reshape(3)
    vecs = np.asarray(to_numpy(eigvecs), dtype=np.float64).reshape(3, 3)
    delta = (alphas * vals) @ vecs.T  # row n = eigvecs @ (alpha_n * eigvals)
    out = x + xp.asarray(delta.astype(x.dtype))[:, :, None, None]
    return (out, alphas) if return_alphas else out
