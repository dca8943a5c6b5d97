"""Augmentation: each op against explicit slicing or the paper's formula."""
import numpy as np
import pytest

from data import augment
from engine.backend import to_numpy


def batch(xp, shape=(6, 3, 10, 12), seed=0, dtype=np.float32):
    return xp.asarray(np.random.default_rng(seed).integers(0, 256, shape).astype(dtype))


def test_flip_twice_is_identity(xp):
    x = batch(xp)
    once = augment.flip_horizontal(x)
    assert not bool((once == x).all())
    np.testing.assert_array_equal(to_numpy(once), to_numpy(x)[..., ::-1])
    np.testing.assert_array_equal(to_numpy(augment.flip_horizontal(once)), to_numpy(x))


def test_pad_images(xp):
    x = batch(xp, (2, 1, 5, 4))
    p = augment.pad_images(x, 2)
    assert p.shape == (2, 1, 9, 8) and p.dtype == x.dtype
    np.testing.assert_array_equal(to_numpy(p)[:, :, 2:7, 2:6], to_numpy(x))
    inner = np.zeros(p.shape, bool)
    inner[:, :, 2:7, 2:6] = True
    assert (to_numpy(p)[~inner] == 0).all()
    assert augment.pad_images(x, 0) is x


@pytest.mark.parametrize("flip", [False, True])
def test_random_crops_equal_explicit_slices(xp, flip):
    x = augment.pad_images(batch(xp, (40, 3, 8, 9)), 2)  # 12 x 13
    rng = np.random.default_rng(1)
    out, (top, left, flipped) = augment.random_crops(x, 8, rng, flip=flip, return_params=True)
    assert out.shape == (40, 3, 8, 8) and out.dtype == xp.float32
    assert (top >= 0).all() and (top <= 4).all() and (left >= 0).all() and (left <= 5).all()
    xn, on = to_numpy(x), to_numpy(out)
    for n in range(40):
        expect = xn[n, :, top[n]:top[n] + 8, left[n]:left[n] + 8]
        if flipped[n]:
            expect = expect[..., ::-1]
        np.testing.assert_array_equal(on[n], expect)
    if flip:
        assert 0 < flipped.sum() < 40
    else:
        assert not flipped.any()


def test_random_crops_reach_every_position_and_are_reproducible(xp):
    x = batch(xp, (2000, 1, 6, 6))
    _, (top, left, flipped) = augment.random_crops(x, 4, np.random.default_rng(2), return_params=True)
    assert set(top.tolist()) == {0, 1, 2} and set(left.tolist()) == {0, 1, 2}
    assert abs(flipped.mean() - 0.5) < 0.05
    a = augment.random_crops(x, 4, np.random.default_rng(3))
    b = augment.random_crops(x, 4, np.random.default_rng(3))
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_random_crops_uint8_and_bounds(xp):
    x = xp.asarray(np.arange(2 * 1 * 5 * 5, dtype=np.uint8).reshape(2, 1, 5, 5))
    out = augment.random_crops(x, 5, np.random.default_rng(0), flip=False)  # crop == size: identity
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))
    with pytest.raises(ValueError, match="does not fit"):
        augment.random_crops(x, 6, np.random.default_rng(0))


def test_random_flips(xp):
    x = batch(xp, (50, 2, 4, 5))
    out, flipped = augment.random_flips(x, np.random.default_rng(4), return_params=True)
    xn, on = to_numpy(x), to_numpy(out)
    np.testing.assert_array_equal(on[flipped], xn[flipped][..., ::-1])
    np.testing.assert_array_equal(on[~flipped], xn[~flipped])


def test_center_crop_of_padded_is_original(xp):
    x = batch(xp, (3, 1, 28, 28))
    for p in (1, 2, 4):
        np.testing.assert_array_equal(to_numpy(augment.center_crop(augment.pad_images(x, p), 28)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(augment.center_crop(x, 4)), to_numpy(x)[:, :, 12:16, 12:16])


def test_ten_crops_positions_and_order(xp):
    x = batch(xp, (3, 2, 9, 11))
    tc = augment.ten_crops(x, 5)
    assert tc.shape == (10, 3, 2, 5, 5)
    xn, tn = to_numpy(x), to_numpy(tc)
    explicit = [xn[:, :, 0:5, 0:5],      # top-left
                xn[:, :, 0:5, 6:11],     # top-right
                xn[:, :, 4:9, 0:5],      # bottom-left
                xn[:, :, 4:9, 6:11],     # bottom-right
                xn[:, :, 2:7, 3:8]]      # center: offsets (9-5)//2, (11-5)//2
    for k in range(5):
        np.testing.assert_array_equal(tn[k], explicit[k], err_msg=augment.TEN_CROP_ORDER[k])
        np.testing.assert_array_equal(tn[k + 5], explicit[k][..., ::-1], err_msg=augment.TEN_CROP_ORDER[k + 5])
    assert augment.TEN_CROP_ORDER[4] == "center" and augment.TEN_CROP_ORDER[9] == "center flipped"
    # without mirrors (a net trained without reflections): the first five alone
    five = augment.ten_crops(x, 5, mirrors=False)
    assert five.shape == (5, 3, 2, 5, 5)
    np.testing.assert_array_equal(to_numpy(five), tn[:5])


def test_mean_image_is_the_mean(xp):
    x = xp.asarray(np.random.default_rng(5).integers(0, 256, (101, 3, 4, 5), dtype=np.uint8))
    m = augment.mean_image(x, scale=1 / 255, chunk=7)  # chunks that do not divide N
    assert m.shape == (3, 4, 5) and m.dtype == np.float32
    np.testing.assert_allclose(to_numpy(m), to_numpy(x).astype(np.float64).mean(0) / 255, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(augment.mean_image(x, scale=1.0)),
                               to_numpy(x).astype(np.float64).mean(0), rtol=1e-6)


def test_to_float_convention(xp):
    x = xp.asarray(np.random.default_rng(6).integers(0, 256, (4, 1, 3, 3), dtype=np.uint8))
    m = augment.mean_image(x)
    f = augment.to_float(x, m)
    assert f.dtype == np.float32
    np.testing.assert_allclose(to_numpy(f), to_numpy(x) / 255.0 - to_numpy(m), atol=1e-6)
    np.testing.assert_allclose(to_numpy(f).mean(0), 0, atol=1e-6)


def test_rgb_pca_diagonalises_the_covariance():
    rng = np.random.default_rng(7)
    # correlated channels so that the eigenvectors are not the axes
    base = rng.integers(0, 200, (20, 1, 8, 8))
    x = np.concatenate([base + rng.integers(0, 50, (20, 1, 8, 8)) for _ in range(3)], 1).astype(np.uint8)
    vals, vecs = augment.rgb_pca(x, scale=1 / 255)
    assert vals.shape == (3,) and vecs.shape == (3, 3) and vals.dtype == np.float32
    assert vals[0] >= vals[1] >= vals[2] >= 0
    px = x.transpose(1, 0, 2, 3).reshape(3, -1).T / 255.0
    cov = np.cov(px, rowvar=False)
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, cov, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(3), atol=1e-6)
    # subsampled estimate is close to the full one
    vals_s, _ = augment.rgb_pca(x, scale=1 / 255, max_pixels=900)
    np.testing.assert_allclose(vals_s[0], vals[0], rtol=0.15)
    # eigenvalues scale as scale**2
    np.testing.assert_allclose(augment.rgb_pca(x, scale=1.0)[0], vals * 255 ** 2, rtol=1e-4)


def test_pca_lighting_follows_the_formula(xp):
    x = batch(xp, (4, 3, 5, 6)) / 255
    vals = np.array([0.2175, 0.0188, 0.0045], np.float32)
    vecs = np.array([[-0.5675, 0.7192, 0.4009],
                     [-0.5808, -0.0045, -0.8140],
                     [-0.5836, -0.6948, 0.4203]], np.float32)
    out, alphas = augment.pca_lighting(x, vals, vecs, np.random.default_rng(8), std=0.1, return_alphas=True)
    assert alphas.shape == (4, 3) and out.dtype == x.dtype and out.shape == x.shape
    # the alphas are N(0, 0.1) draws, from one rng.normal call
    np.testing.assert_array_equal(alphas, np.random.default_rng(8).normal(0, 0.1, (4, 3)))
    n = 2
    delta = sum(vecs[:, i] * alphas[n, i] * vals[i] for i in range(3))  # [p1 p2 p3][a_i l_i]^T
    np.testing.assert_allclose(to_numpy(out)[n], to_numpy(x)[n] + delta[:, None, None], atol=1e-6)
    # the same offset on every pixel of an image
    d = to_numpy(out - x)
    np.testing.assert_allclose(d, d[:, :, :1, :1] * np.ones_like(d), atol=1e-6)
    # precomputed alphas give the same result without an rng
    again = augment.pca_lighting(x, vals, vecs, alphas=alphas)
    np.testing.assert_allclose(to_numpy(again), to_numpy(out), atol=0)


def test_pca_needs_three_channels(xp):
    x = batch(xp, (2, 1, 4, 4))
    with pytest.raises(ValueError, match="3-channel"):
        augment.pca_lighting(x, np.ones(3), np.eye(3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="3-channel"):
        augment.rgb_pca(np.zeros((2, 1, 4, 4), np.uint8))
