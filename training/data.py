"""What a run does with its dataset: load it, hold out a validation set, and say how
its images are cropped for training and for testing."""
from __future__ import annotations

import hashlib

import numpy as np

from data.datasets import DatasetError, load_dataset, load_image_folder

# How each dataset is cropped: training uses random `crop` x `crop` patches of the image
# zero-padded by `pad` (the small-scale analog of the paper's random 227 patches of
# 256 x 256 images); testing uses the centre (the unpadded image) or ten crops.
CROPS = {
    "fashion-mnist": dict(pad=2, crop=28, flip=True),
    "fashion-mnist-subset": dict(pad=2, crop=28, flip=True),
    "mnist": dict(pad=2, crop=28, flip=False),   # a mirrored digit is another digit
    "cifar10": dict(pad=4, crop=32, flip=True),
    "cifar100": dict(pad=4, crop=32, flip=True),
    "folder": dict(pad=0, crop=227, flip=True),  # 256 x 256 images, the paper's 227 crops
}


def dataset_kind(name: str) -> str:
    """'folder:/photos' -> 'folder'; a named dataset -> its name."""
    return "folder" if name.startswith("folder:") else name


def load_data(name: str, data_dir=None, download: bool = True, fallback: bool = True):
    """The dataset ``name`` (see ``CROPS``, or folder:PATH) as a data.datasets.Dataset."""
    if name.startswith("folder:"):
        return load_image_folder(name[len("folder:"):])
    return load_dataset(name, data_dir=data_dir, download=download, fallback=fallback)


def pixel_scale(raw_pixels: bool) -> float:
    """What a uint8 pixel is multiplied by before the mean image is subtracted: 1/255
    (pixels in [0, 1], this project's default), or 1 with --raw-pixels (0 to 255, the
    paper's units: its N(0, 0.01) weights, biases of 1 and LRN constants were chosen
    for them)."""
    return 1.0 if raw_pixels else 1.0 / 255.0


def test_prep(kind: str, settings: dict, mean, crop: int) -> dict:
    """How a network is tested: its mean image, the dataset's padding, its crop, and
    whether the test crops include mirrors: only where it was trained on them (a
    mirrored digit is another digit; a net trained with --no-flip never saw one).
    ``settings``: the run's settings (TrainConfig.settings(), or a checkpoint's)."""
    crops = CROPS.get(kind, CROPS["folder"])
    return dict(mean=mean, pad=crops["pad"], crop=crop,
                scale=pixel_scale(settings.get("raw_pixels", False)),
                mirrors=bool(crops["flip"] and not settings.get("no_flip")))


def crops_name(prep: dict) -> str:
    return "ten crops" if prep.get("mirrors", True) else "five crops (no mirrors)"


def split_train_val(x, y, val_fraction: float, seed: int, limit=None):
    """Deterministic hold-out: shuffle indices with the seed, last part is validation.
    val_fraction 0: every image trains, and the validation set is empty."""
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if val_fraction == 0:
        return x, y, x[:0], y[:0]
    n = len(x)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise ValueError(f"--val-fraction {val_fraction} leaves no training images out of {n}")
    perm = np.random.default_rng([seed, 12345]).permutation(n)
    train, val = np.sort(perm[: n - n_val]), np.sort(perm[n - n_val:])
    return x[train], y[train], x[val], y[val]


def check_labels(dataset, num_classes: int, checkpoint, *named_labels):
    """Every label must be one of the network's classes (on CuPy an index past the
    end is not an error but a wrong answer): raise ValueError naming the problem."""
    for name, labels in named_labels:
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            whose = (f"the network of {checkpoint} has {num_classes} classes" if checkpoint
                     else f"{dataset.name} has {len(dataset.classes)} classes")
            raise ValueError(f"{dataset.name}: {name} labels outside [0, {num_classes}) "
                             f"({whose}; the labels run from {int(labels.min())} to "
                             f"{int(labels.max())})")


def check_classes(dataset) -> None:
    """A DatasetError unless ``dataset`` has at least two classes and a training image
    of each: with one class every answer is right, and a class never seen in training
    is never learnt (its test error says nothing of the network)."""
    names = list(dataset.classes)
    if len(names) < 2:
        raise DatasetError(f"{dataset.name}: {len(names)} class ({', '.join(names)}): a "
                           f"classifier needs at least two ({dataset.source})")
    counts = np.bincount(dataset.train_y, minlength=len(names)) if len(dataset.train_y) \
        else np.zeros(len(names), np.int64)
    empty = [names[i] for i in np.flatnonzero(counts[:len(names)] == 0)]
    if empty:
        raise DatasetError(f"{dataset.name}: no training image of class(es) "
                           f"{', '.join(map(repr, empty[:5]))}"
                           + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
                           + f": every class needs one ({dataset.source})")


def data_fingerprint(dataset, limit=None) -> dict:
    """What a run trains on, as its checkpoints record it: the SHA-256 of its training
    images and labels (the first ``limit``, as --train-limit takes them), their count,
    and where they were read from. A resumed run must find the same data."""
    x, y = dataset.train_x[:limit], dataset.train_y[:limit]
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)):
        h.update(f"{a.dtype.str} {a.shape}".encode())
        h.update(a.data)
    return dict(sha256=h.hexdigest(), images=int(len(x)), source=str(dataset.source))


def check_same_data(checkpoint: str, saved, now: dict, warn) -> None:
    """A ValueError where the data a resumed run found (``now``) are not those its
    checkpoint was trained on (``saved``), naming both; for a checkpoint from before
    the fingerprint was recorded (``saved`` None), a note through ``warn``."""
    if saved is None:
        warn(f"note: {checkpoint} records no fingerprint of its training data (it was "
             f"written before they were recorded), so whether these are the same data "
             f"cannot be checked; its next checkpoints record them")
        return
    if saved["sha256"] != now["sha256"]:
        raise ValueError(
            f"--resume {checkpoint}: these are not the data the run was trained on: it "
            f"trained on {saved['images']} images from {saved.get('source', '?')} "
            f"(SHA-256 {saved['sha256'][:16]}), these are {now['images']} images from "
            f"{now['source']} (SHA-256 {now['sha256'][:16]}); point --data-dir at the "
            f"run's data, or start a new run")
