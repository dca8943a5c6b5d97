"""Batches for training and evaluation, prepared on a background thread.

A batch goes through the paper's pipeline (data.augment), in this order:

    uint8 (N, C, H, W) --[to device]--> float32 x * scale - mean --> zero-pad by ``pad``
        --> random ``crop`` x ``crop`` patch, mirrored with p = 0.5 --> + PCA lighting

with ``mean`` the training set's mean image at the same ``scale`` (default 1/255, see
data.augment). For 28x28 grayscale: pad=2, crop=28 (test: the centre crop, which is
the original image); CIFAR: pad=4, crop=32; image folders: pad=0, crop=227 from 256.

Determinism: epoch ``e`` of a loader with seed ``s`` shuffles with a Generator seeded
by ``(s, e)``, and batch ``b`` draws its augmentation from one seeded by
``(s, e, b + 1)``. Batches are therefore identical with or without prefetching, in
whatever order they are prepared.
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from data.augment import (PIXEL_SCALE, center_crop, pad_images, pca_lighting,
                          random_crops, random_flips, ten_crops, to_float)
from engine.backend import check_device, to_device

_STOP_POLL_S = 0.05


def _images_and_labels(x_uint8, y, who):
    """x_uint8 and y as arrays, checked: uint8 images (N, C, H, W) and N labels."""
    x_uint8 = np.asarray(x_uint8)
    y = np.asarray(y)
    if x_uint8.ndim != 4 or x_uint8.dtype != np.uint8:
        raise ValueError(f"{who}: x_uint8 must be uint8 (N, C, H, W), "
                         f"got {x_uint8.dtype} {x_uint8.shape}")
    if y.shape != (len(x_uint8),):
        raise ValueError(f"{who}: y must have shape ({len(x_uint8)},), got {y.shape}")
    if y.dtype.kind not in "iu" or (len(y) and int(y.min()) < 0):
        raise ValueError(f"{who}: y must be class indices (integers >= 0), got dtype "
                         f"{y.dtype}" + (f", smallest {y.min()}" if len(y) else ""))
    return x_uint8, y


class BatchLoader:
    """One epoch of ``(x_batch float32, y_batch int64)`` per ``iter()``.

    x_uint8   -- uint8 images (N, C, H, W) on the host.   y -- labels (N,).
    batch_size, shuffle, drop_last -- as usual; the last short batch is kept unless
        ``drop_last``.
    seed      -- int; or ``rng``, a numpy Generator a seed is drawn from; neither: a
        random seed (then fixed for the loader's life).
    mean      -- float32 (C, H, W) to subtract (at ``scale``), or None.
    pad, crop, flip -- zero-pad, crop size (None: no crop), random mirror.
    random_crop -- True: a random ``crop`` patch of each (padded) image; False: the
        centre patch every time (train.py --no-crop; images larger than ``crop``, such
        as an image folder's 256x256, are still cut to the network's input).
    pca       -- ``(eigvals, eigvecs)`` from ``lighting_pca`` (at ``scale``), or None;
        ``pca_std`` is the std of the alphas (paper: 0.1).
    scale     -- pixel scale, default 1/255.
    device    -- 'cpu' or 'cuda': the uint8 batch is copied to the GPU
        (engine.backend.to_device) and the float work is done there.
    prefetch  -- prepare the next batches on a background thread (queue of 2) while
        the current one trains; an exception there is raised here, and the thread is
        stopped if the consumer stops early.

    Each ``iter(loader)`` runs the next epoch (0, 1, ...); ``set_epoch`` changes it.
    """

    def __init__(self, x_uint8, y, batch_size: int = 128, shuffle: bool = True,
                 seed: int | None = None, mean=None, pad: int = 0, crop: int | None = None,
                 flip: bool = False, pca=None, scale: float = PIXEL_SCALE,
                 device: str = "cpu", drop_last: bool = False, prefetch: bool = True,
                 rng: np.random.Generator | None = None, pca_std: float = 0.1,
                 random_crop: bool = True):
        x_uint8, y = _images_and_labels(x_uint8, y, "BatchLoader")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        N, C, H, W = x_uint8.shape
        if mean is not None and tuple(np.shape(mean)) != (C, H, W):
            raise ValueError(f"mean must have shape {(C, H, W)}, got {tuple(np.shape(mean))}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if crop is not None and not 0 < crop <= min(H, W) + 2 * pad:
            raise ValueError(f"crop {crop} does not fit {H}x{W} images padded by {pad}")
        if pca is not None and C != 3:
            raise ValueError(f"PCA lighting needs 3-channel images, got {C} channels")
        check_device(device)
        if seed is None:
            seed = int(rng.integers(2**63)) if rng is not None else \
                int(np.random.SeedSequence().entropy % 2**63)
        self.x, self.y = x_uint8, y.astype(np.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.pad, self.crop, self.flip = int(seed), pad, crop, flip
        self.random_crop = bool(random_crop)
        self.scale, self.device, self.prefetch, self.pca_std = scale, device, prefetch, pca_std
        self.pca = None if pca is None else (np.asarray(pca[0], np.float32),
                                             np.asarray(pca[1], np.float32))
        self.mean = None if mean is None else to_device(np.asarray(mean, np.float32), device)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The example indices of each batch of ``epoch``."""
        n = len(self.x)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle \
            else np.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size,
                                                              self.batch_size)]

    def make_batch(self, epoch: int, b: int, idx: np.ndarray):
        """Prepare batch ``b`` of ``epoch`` (examples ``idx``): the whole pipeline."""
        rng = np.random.default_rng([self.seed, epoch, b + 1])
        xb = to_device(self.x[idx], self.device)  # uint8 on the wire: 4x less than float32
        xb = to_float(xb, self.mean, self.scale)
        xb = pad_images(xb, self.pad)
        if self.crop is not None and self.random_crop:
            xb = random_crops(xb, self.crop, rng, flip=self.flip)
        else:
            if self.crop is not None and xb.shape[2:] != (self.crop, self.crop):
                xb = center_crop(xb, self.crop).copy()     # contiguous, as the ops want
            if self.flip:
                xb = random_flips(xb, rng)
        if self.pca is not None:
            xb = pca_lighting(xb, self.pca[0], self.pca[1], rng, std=self.pca_std)
        return xb, to_device(self.y[idx], self.device)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.iterate(epoch)

    def iterate(self, epoch: int, start: int = 0):
        """The batches of ``epoch`` from batch number ``start`` on.

        Every batch depends only on (seed, epoch, batch number), so a run resumed in
        the middle of an epoch sees exactly the batches it would have seen.
        """
        plan = self.batch_indices(epoch)
        jobs = [(lambda b=b, idx=idx: self.make_batch(epoch, b, idx))
                for b, idx in enumerate(plan) if b >= start]
        if self.prefetch:
            return PrefetchIterator(jobs)
        return (job() for job in jobs)


class PrefetchIterator:
    """Runs ``jobs`` (callables) in order on one background thread, at most
    ``depth`` results ahead, and yields their results.

    An exception in a job is re-raised by ``__next__`` (the original exception, with
    its traceback). ``close()`` (also on ``with`` exit, on exhaustion, and when the
    iterator is garbage collected) stops the thread.
    """

    def __init__(self, jobs, depth: int = 2):
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        # The thread must not hold a reference to self, or an abandoned iterator
        # could never be collected (and so never stop its thread).
        self._thread = threading.Thread(target=_prefetch_worker,
                                        args=(list(jobs), self._queue, self._stop),
                                        name="BatchLoader-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, item = self._queue.get(timeout=_STOP_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("prefetch thread ended without a result")
        if kind == "ok":
            return item
        self.close()
        if kind == "error":
            raise item
        raise StopIteration  # kind == "end"

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._stop.set()
        while True:  # free the worker if it is blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    """Put, giving up when ``stop`` is set (the consumer went away)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_STOP_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _prefetch_worker(jobs, q: queue.Queue, stop: threading.Event) -> None:
    try:
        for job in jobs:
            if stop.is_set() or not _put(q, stop, ("ok", job())):
                return
        _put(q, stop, ("end", None))
    except BaseException as e:  # noqa: BLE001 -- handed to the consumer, raised there
        _put(q, stop, ("error", e))


def iterate_eval(x_uint8, y, batch_size: int = 256, mean=None, pad: int = 0,
                 crop: int | None = None, mode: str = "center", scale: float = PIXEL_SCALE,
                 device: str = "cpu", mirrors: bool = True):
    """Evaluation batches, in order, no randomness: yields ``(x, y_int64)``.

    mode 'center': x is the central ``crop`` patch of the padded image, (B, C, crop, crop)
        (with pad p and crop = H this is exactly the unpadded image).
    mode 'ten': x is ``ten_crops`` of the padded image, (10, B, C, crop, crop): four
        corners, centre, and their mirrors (data.augment.TEN_CROP_ORDER); with
        mirrors=False the five without mirrors, (5, B, C, crop, crop).
    crop None: the (padded) image itself, for either mode 'center'.
    """
    if mode not in ("center", "ten"):
        raise ValueError(f"mode must be 'center' or 'ten', got {mode!r}")
    x_uint8, y = _images_and_labels(x_uint8, y, "iterate_eval")
    if mode == "ten" and crop is None:
        raise ValueError("mode 'ten' needs a crop size")
    check_device(device)
    mean_on_device = None if mean is None else to_device(np.asarray(mean, np.float32), device)
    for i in range(0, len(x_uint8), batch_size):
        xb = to_float(to_device(x_uint8[i:i + batch_size], device), mean_on_device, scale)
        xb = pad_images(xb, pad)
        if mode == "ten":
            xb = ten_crops(xb, crop, mirrors)
        elif crop is not None:
            xb = center_crop(xb, crop).copy()  # contiguous, like the training batches
        yield xb, to_device(y[i:i + batch_size].astype(np.int64), device)
