"""BatchLoader and iterate_eval: coverage, determinism, the worker thread, dtypes."""
import gc
import threading
import time

import numpy as np
import pytest

from data import augment
from engine.backend import to_numpy
from data.loader import BatchLoader, PrefetchIterator, iterate_eval


def indexed_images(n, c=1, h=6, w=6):
    """Images that carry their own index: pixel (0, 0) = i // 256, pixel (0, 1) = i % 256."""
    x = np.random.default_rng(0).integers(0, 256, (n, c, h, w), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) // 256
    x[:, 0, 0, 1] = np.arange(n) % 256
    return x


def decode(xb):
    xb = to_numpy(xb)
    return xb[:, 0, 0, 0].astype(np.int64) * 256 + xb[:, 0, 0, 1].astype(np.int64)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "BatchLoader-prefetch" and t.is_alive()]


def wait_no_threads(timeout=5.0):
    end = time.time() + timeout
    while prefetch_threads() and time.time() < end:
        time.sleep(0.01)
    return not prefetch_threads()


@pytest.mark.parametrize("prefetch", [False, True])
def test_every_index_exactly_once_per_epoch(prefetch):
    n = 1000
    x, y = indexed_images(n), np.arange(n) % 10
    loader = BatchLoader(x, y, batch_size=64, shuffle=True, seed=3, scale=1.0, prefetch=prefetch)
    assert len(loader) == 16
    orders = []
    for _ in range(2):
        seen, sizes = [], []
        for xb, yb in loader:
            idx = decode(xb)
            np.testing.assert_array_equal(to_numpy(yb), idx % 10)  # labels travel with images
            seen.append(idx)
            sizes.append(len(idx))
        seen = np.concatenate(seen)
        assert sizes == [64] * 15 + [40]
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
        assert not np.array_equal(seen, np.arange(n))  # shuffled
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # a new order each epoch


def test_no_shuffle_and_drop_last():
    x, y = indexed_images(100), np.zeros(100, int)
    loader = BatchLoader(x, y, batch_size=32, shuffle=False, drop_last=True, scale=1.0, seed=0)
    assert len(loader) == 3
    batches = [decode(xb) for xb, _ in loader]
    assert [len(b) for b in batches] == [32, 32, 32]
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(96))


def test_output_dtypes_and_convention():
    x = np.random.default_rng(1).integers(0, 256, (20, 1, 28, 28), dtype=np.uint8)
    y = np.arange(20, dtype=np.uint8) % 10
    mean = augment.mean_image(x)
    loader = BatchLoader(x, y, batch_size=8, shuffle=False, mean=mean, seed=0)
    xb, yb = next(iter(loader))
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_allclose(xb, x[:8] / 255.0 - mean, atol=1e-6)


def augmented_batches(prefetch, epochs=2, **kw):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (70, 3, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 10, 70)
    pca = augment.rgb_pca(x)
    loader = BatchLoader(x, y, batch_size=16, shuffle=True, seed=11, mean=augment.mean_image(x), pad=2,
                         crop=12, flip=True, pca=pca, prefetch=prefetch, **kw)
    return [(to_numpy(xb).copy(), to_numpy(yb).copy()) for _ in range(epochs) for xb, yb in loader]


def test_same_seed_same_batches_with_and_without_prefetch():
    a = augmented_batches(prefetch=True)
    b = augmented_batches(prefetch=False)
    assert len(a) == len(b) == 10
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == np.float32 and xa.shape[1:] == (3, 12, 12)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # the augmentation does something, and differs between epochs
    assert not np.array_equal(a[0][0], a[5][0])


def test_set_epoch_replays_an_epoch():
    x, y = indexed_images(50), np.zeros(50, int)
    loader = BatchLoader(x, y, batch_size=10, seed=5, scale=1.0, pad=1, crop=6, flip=True)
    first = [to_numpy(xb).copy() for xb, _ in loader]
    second = [to_numpy(xb).copy() for xb, _ in loader]
    loader.set_epoch(0)
    replay = [to_numpy(xb).copy() for xb, _ in loader]
    assert all(np.array_equal(p, q) for p, q in zip(first, replay))
    assert not all(np.array_equal(p, q) for p, q in zip(first, second))


def test_worker_exception_surfaces_in_consumer(monkeypatch):
    x, y = indexed_images(100), np.zeros(100, int)
    loader = BatchLoader(x, y, batch_size=10, seed=0, prefetch=True)
    real = loader.make_batch

    def failing(epoch, b, idx):
        if b == 3:
            raise KeyError("boom in batch 3")
        return real(epoch, b, idx)

    monkeypatch.setattr(loader, "make_batch", failing)
    got = 0
    with pytest.raises(KeyError, match="boom in batch 3"):
        for _ in loader:
            got += 1
    assert got == 3  # the three good batches came first
    assert wait_no_threads()


def test_consumer_stopping_early_stops_the_thread():
    x, y = indexed_images(2000), np.zeros(2000, int)
    loader = BatchLoader(x, y, batch_size=10, seed=0, prefetch=True)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    gc.collect()
    assert wait_no_threads()
    it = iter(loader)
    next(it)
    assert prefetch_threads()
    it.close()
    assert not it.thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_runs_ahead_by_at_most_two():
    started = []

    def job(i):
        def run():
            started.append(i)
            return i
        return run

    with PrefetchIterator([job(i) for i in range(10)], depth=2) as it:
        assert next(it) == 0
        time.sleep(0.2)
        assert len(started) <= 4  # 1 consumed + 2 queued + 1 blocked waiting to be queued
        assert list(it) == list(range(1, 10))


def test_rejects_bad_arguments():
    x, y = indexed_images(10), np.zeros(10, int)
    with pytest.raises(ValueError, match="BatchLoader: x_uint8 must be uint8"):
        BatchLoader(x.astype(np.float32), y)
    with pytest.raises(ValueError, match=r"BatchLoader: y must have shape \(10,\)"):
        BatchLoader(x, y[:7])
    with pytest.raises(ValueError, match="iterate_eval: x_uint8 must be uint8"):
        next(iterate_eval(x.astype(np.float32), y))
    with pytest.raises(ValueError, match=r"iterate_eval: y must have shape \(10,\)"):
        next(iterate_eval(x, y[:, None]))
    with pytest.raises(ValueError, match="mean must have shape"):
        BatchLoader(x, y, mean=np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="3-channel"):
        BatchLoader(x, y, pca=(np.ones(3), np.eye(3)))
    with pytest.raises(ValueError, match="crop"):
        BatchLoader(x, y, crop=9, pad=1)
    with pytest.raises(ValueError, match="device"):
        BatchLoader(x, y, device="tpu")


def test_iterate_eval_center_is_original_and_ten_crops():
    x = np.random.default_rng(3).integers(0, 256, (25, 1, 28, 28), dtype=np.uint8)
    y = np.arange(25) % 10
    mean = augment.mean_image(x)
    expect = (x / 255.0 - mean).astype(np.float32)
    batches = list(iterate_eval(x, y, batch_size=10, mean=mean, pad=2, crop=28, mode="center"))
    assert [len(b[0]) for b in batches] == [10, 10, 5]
    got = np.concatenate([b[0] for b in batches])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expect, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)
    tens = list(iterate_eval(x, y, batch_size=10, mean=mean, pad=2, crop=28, mode="ten"))
    assert tens[0][0].shape == (10, 10, 1, 28, 28) and tens[-1][0].shape == (10, 5, 1, 28, 28)
    padded = augment.pad_images(expect[:10], 2)
    np.testing.assert_allclose(tens[0][0], augment.ten_crops(padded, 28), atol=1e-6)
    np.testing.assert_allclose(tens[0][0][4], expect[:10], atol=1e-6)  # centre == original
    with pytest.raises(ValueError, match="mode"):
        next(iterate_eval(x, y, mode="five"))


def test_cuda_batches_match_cpu(cp):
    """The loader's device='cuda' path: the same augmented batches as on the CPU, as
    device arrays. Through the cp fixture its id names cupy, so ``-k cupy`` selects it,
    on the NumPy stand-in for CuPy and on a GPU alike."""
    cpu = augmented_batches(prefetch=True, epochs=1)
    gpu = augmented_batches(prefetch=True, epochs=1, device="cuda")
    x = np.zeros((4, 3, 12, 12), np.uint8)
    xb, yb = next(iter(BatchLoader(x, np.zeros(4, np.int64), batch_size=4, device="cuda",
                                   seed=0)))
    assert isinstance(xb, cp.ndarray) and isinstance(yb, cp.ndarray)
    assert len(cpu) == len(gpu) == 5
    for (xa, ya), (xg, yg) in zip(cpu, gpu):
        np.testing.assert_allclose(xa, xg, atol=1e-5)
        np.testing.assert_array_equal(ya, yg)


@pytest.mark.parametrize("y, message", [
    (np.array([0.9, 1.5, 2.2, 0.0]), "got dtype float64"),       # not truncated to 0, 1, 2, 0
    (np.array([0, 1, -1, 2]), "smallest -1"),
])
def test_labels_that_are_not_class_indices_are_refused(y, message):
    x = np.zeros((4, 1, 6, 6), np.uint8)
    with pytest.raises(ValueError, match="BatchLoader: y must be class indices.*" + message):
        BatchLoader(x, y, 2)
    with pytest.raises(ValueError, match="iterate_eval: y must be class indices"):
        next(iterate_eval(x, y, 2))


def test_random_crop_false_gives_the_centre_patch_every_epoch():
    # train.py --no-crop on 256x256 folder images: the 227 input must be the centre
    # patch, not a random one
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 3, 12, 12), dtype=np.uint8)
    y = np.arange(6) % 3
    mean = augment.mean_image(x)
    want = augment.center_crop(augment.to_float(x, mean), 9)
    for flip in (False, True):
        loader = BatchLoader(x, y, batch_size=6, shuffle=False, seed=1, mean=mean, crop=9,
                             flip=flip, random_crop=False, prefetch=False)
        for _ in range(3):
            (xb, _), = list(loader)
            assert xb.shape == (6, 3, 9, 9) and xb.flags.c_contiguous
            for n in range(6):           # the centre patch, or (flip) its mirror image
                same = np.array_equal(xb[n], want[n])
                mirrored = np.array_equal(xb[n], want[n][..., ::-1])
                assert same or (flip and mirrored), n
    # the default is still the paper's random crops
    loader = BatchLoader(x, y, batch_size=6, shuffle=False, seed=1, mean=mean, crop=9,
                         prefetch=False)
    (xb, _), = list(loader)
    assert not all(np.array_equal(xb[n], want[n]) for n in range(6))
