"""Datasets, read from their official file formats and checked before use.

Everything here returns a :class:`Dataset`: uint8 images ``(N, C, H, W)`` and int64
labels, on the host. Turning them into float32 batches (mean subtraction, crops,
reflections, PCA lighting) is the job of ``data.augment`` and ``data.loader``.

Formats read:

- **idx** (MNIST, Fashion-MNIST), gzipped or not: magic number (2051 images, 2049
  labels), dimensions, and the exact byte count are checked; the gzip CRC catches a
  damaged archive.
- **CIFAR-10 / CIFAR-100 python pickle batches** (``data_batch_1..5`` + ``test_batch``;
  ``train`` + ``test`` with the fine labels for CIFAR-100), from the extracted folder
  or straight from the ``.tar.gz``. Every batch is checked against its published MD5
  before it is unpickled, and the unpickler only accepts NumPy arrays.
- **an image folder** (one subfolder per class, JPEG/PNG), prepared as in the paper:
  shorter side rescaled to ``size``, central ``size x size`` crop, RGB uint8.

``load_dataset(name)`` looks for the files, in this order:

1. ``data_dir`` (the argument): ``data_dir/<name>/`` then ``data_dir/`` itself;
2. ``$ALEXNET_DATA/<name>/`` then ``$ALEXNET_DATA/`` itself (environment variable:
   one root holding all datasets, or the folder of one); a folder named in 1 or 2 that
   holds only some of the files is an error that names the missing ones;
3. the cache, ``$XDG_CACHE_HOME/alexnet-from-scratch/<name>/`` (default
   ``~/.cache/alexnet-from-scratch/<name>/``), or ``cache_dir/<name>/``;
4. for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian package
   ``dataset-fashion-mnist``);
5. else it downloads from the official source into the cache, checking the MD5 of
   each archive before it is used, and writing it atomically.

Fashion-MNIST files found on disk are not necessarily the official archives (Debian
recompresses them, so the ``.gz`` MD5 differs), so for Fashion-MNIST the MD5 of the
*decompressed* content is checked too. MNIST's are checked for their structure (magic
numbers, sizes, label ranges) and, when gzipped, by gzip's CRC; its downloads by their
MD5. When Fashion-MNIST cannot be found nor
downloaded (no network), ``load_dataset('fashion-mnist')`` falls back to the small
balanced subset committed in ``data/fashion-mnist-subset`` and warns; see
:func:`fallback_to_fashion_subset`. ``Dataset.name`` and ``Dataset.source`` always
say which data was loaded.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.resources
import io
import logging
import math
import os
import pickle
import re
import stat
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

# The bundled subset is package data of ``data``: importlib.resources finds it in a
# checkout, an editable install, ``pip install .`` and a wheel alike (a path built from
# this file's folder would not survive every layout). For an installed package it is a
# real folder, so the readers below open its files by path.
SUBSET_DIR = str(importlib.resources.files("data") / "fashion-mnist-subset")
ENV_DATA = "ALEXNET_DATA"
CACHE_NAME = "alexnet-from-scratch"

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

IDX_FILES = (  # (stem, magic), in the order they are read
    ("train-images-idx3-ubyte", IDX_IMAGES_MAGIC),
    ("train-labels-idx1-ubyte", IDX_LABELS_MAGIC),
    ("t10k-images-idx3-ubyte", IDX_IMAGES_MAGIC),
    ("t10k-labels-idx1-ubyte", IDX_LABELS_MAGIC),
)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [  # fine labels, in label order (as in the archive's "meta" file)
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]

# Official sources and the MD5 of each archive as published (the datasets' own pages,
# also torchvision's resource lists). The first URL is the official one; later ones
# are mirrors, safe because the MD5 is checked.
IDX_SOURCES = {
    "fashion-mnist": {
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
    "mnist": {
        # yann.lecun.com is often down; torchvision serves the same files from S3.
        "urls": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
}

# MD5 of the DECOMPRESSED Fashion-MNIST idx files. Computed from the Debian package's
# files (whose .gz differ from upstream) and identical to the values torchvision-style
# loaders publish for the upstream files, so the content is the official release.
FASHION_MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

CIFAR_SOURCES = {
    "cifar10": {
        "urls": ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"],
        "archive": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        "test": ["test_batch"],
        "meta": ("batches.meta", "label_names"),
        "label_key": "labels",
        "classes": CIFAR10_CLASSES,
    },
    "cifar100": {
        "urls": ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"],
        "archive": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", "fine_label_names"),
        "label_key": "fine_labels",
        "classes": CIFAR100_CLASSES,
    },
}

# MD5 of each member of the CIFAR archives (as published with torchvision's loaders).
# The pickles carry no checksum of their own, so these are what catch a damaged batch.
CIFAR_MEMBER_MD5 = {
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}

# Folders outside the search order where a system package installs a dataset.
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"]}

DATASET_NAMES = ("fashion-mnist", "mnist", "cifar10", "cifar100", "fashion-mnist-subset")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset is missing, truncated, malformed or fails its checksum.

    The message names the file (or folder) and the problem.
    """


class DownloadError(DatasetError):
    """A download could not be made (network error): the only case that allows a
    fallback. A download that arrives but fails its MD5 is a plain DatasetError."""


class SubsetFallbackWarning(UserWarning):
    """Full Fashion-MNIST was unavailable; the committed subset is used instead."""


@dataclass(repr=False)
class Dataset:
    """A dataset in memory, on the host.

    name     -- what was loaded ('fashion-mnist', 'fashion-mnist-subset', ...).
    train_x  -- uint8, (N, C, H, W).   train_y -- int64, (N,).
    test_x   -- uint8, (M, C, H, W).   test_y  -- int64, (M,).
    classes  -- class names, indexed by label.
    source   -- where it was read from (and why, for a fallback).
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_x.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train {self.train_x.shape} {self.train_x.dtype}, "
                f"test {self.test_x.shape}, {self.num_classes} classes, source={self.source!r})")


# --------------------------------------------------------------------------- checksums


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- idx


# The most content an idx file may have: the largest of the MNIST family, the training
# images, is 47 MB. A header that claims more is refused before anything is read.
MAX_IDX_BYTES = 64 << 20


def read_idx_bytes(path: str, expected_magic: int | None = None) -> bytes:
    """The content of an idx file, gunzipped if it is a gzip file (by its magic bytes),
    read no further than its header says: content that goes on past the header's size
    is refused as soon as it passes it, so a small gzip file that inflates to gigabytes
    never takes more memory than its header claims (at most MAX_IDX_BYTES). The header
    is checked as parse_idx checks it; a truncated or damaged gzip stream (bad CRC, bad
    length) raises DatasetError."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e})") from e
    try:
        with f:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
            head = stream.read(4)
            ndim = _idx_magic(head, path, expected_magic)
            head += stream.read(4 * ndim)
            if len(head) < 4 + 4 * ndim:
                raise DatasetError(f"{path}: truncated idx header ({len(head)} bytes, need "
                                   f"{4 + 4 * ndim})")
            dims = struct.unpack(">" + "I" * ndim, head[4:])
            size = len(head) + math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise DatasetError(f"{path}: its header says dims {tuple(dims)} = {size:,} "
                                   f"bytes, more than any MNIST-style file (at most "
                                   f"{MAX_IDX_BYTES:,} are read)")
            body = stream.read(size - len(head))
            if stream.read(1):     # at the end, gzip's CRC and length are checked
                raise DatasetError(f"{path}: has trailing bytes: its header says dims "
                                   f"{tuple(dims)} = {size} bytes, and the content goes "
                                   f"on past them")
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: truncated or corrupt gzip data ({e})") from e
    return head + body


def _idx_magic(head: bytes, path: str, expected_magic: int | None) -> int:
    """The number of dimensions an idx file's first four bytes give, once they are
    checked: two zero bytes, 0x08 (unsigned bytes), then at least one dimension."""
    if len(head) < 4:
        raise DatasetError(f"{path}: truncated idx file ({len(head)} bytes, no header)")
    magic = int.from_bytes(head[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        what = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}.get(expected_magic, "idx")
        raise DatasetError(f"{path}: bad magic number {magic} (0x{magic:08x}), expected "
                           f"{expected_magic} (0x{expected_magic:08x}) for an idx {what} file")
    if head[0] != 0 or head[1] != 0 or head[2] != 0x08 or head[3] == 0:
        raise DatasetError(f"{path}: bad magic number {magic} (0x{magic:08x}); expected an "
                           "unsigned-byte idx file (0x0000080N)")
    return head[3]


def parse_idx(raw: bytes, path: str = "<bytes>", expected_magic: int | None = None) -> np.ndarray:
    """Parse idx content (already decompressed) into a uint8 array of its dimensions.

    Format: 2 zero bytes, a type byte (0x08 = unsigned byte, the only one used by the
    MNIST family), the number of dimensions, then one big-endian uint32 per dimension,
    then the data. The byte count must match the dimensions exactly.
    """
    ndim = _idx_magic(raw[:4], path, expected_magic)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated idx header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {problem}: header says dims {tuple(dims)} = {expected} "
                           f"bytes, file content has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: str, expected_magic: int | None = None, content_md5: str | None = None) -> np.ndarray:
    """Read one idx file (gzipped or not), bounded by its header (read_idx_bytes);
    optionally check the MD5 of its content."""
    raw = read_idx_bytes(path, expected_magic)
    if content_md5 is not None:
        got = md5_bytes(raw)
        if got != content_md5:
            raise DatasetError(f"{path}: MD5 of the decompressed content is {got}, expected "
                               f"{content_md5}: the file is corrupt or not the official release")
    return parse_idx(raw, path, expected_magic)


def find_idx_files(folder: str) -> dict | None:
    """Map each idx stem to ``stem.gz`` or ``stem`` in ``folder``; None if any is missing."""
    found = {}
    for stem, _ in IDX_FILES:
        for candidate in (stem + ".gz", stem):
            p = os.path.join(folder, candidate)
            if os.path.isfile(p):
                found[stem] = p
                break
        else:
            return None
    return found


def load_idx_folder(folder: str, name: str = "mnist", classes: list | None = None,
                    content_md5: dict | None = None, image_hw: tuple = (28, 28),
                    files: dict | None = None, source: str | None = None) -> Dataset:
    """Load the four MNIST-style idx files from ``folder`` into a Dataset.

    content_md5 -- optional {stem: md5 of decompressed content}, checked before parsing.
    Checks: magic numbers, byte counts, image size ``image_hw``, as many labels as
    images, and every label below ``len(classes)``.
    """
    classes = list(classes if classes is not None else MNIST_CLASSES)
    files = files or find_idx_files(folder)
    if files is None:
        raise DatasetError(f"{folder}: missing idx files; need "
                           + ", ".join(s + "[.gz]" for s, _ in IDX_FILES))
    arr = {}
    for stem, magic in IDX_FILES:
        md5 = content_md5.get(stem) if content_md5 else None
        arr[stem] = read_idx(files[stem], magic, md5)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ipath, lpath = files[prefix + "-images-idx3-ubyte"], files[prefix + "-labels-idx1-ubyte"]
        x, y = arr[prefix + "-images-idx3-ubyte"], arr[prefix + "-labels-idx1-ubyte"]
        if tuple(x.shape[1:]) != tuple(image_hw):
            raise DatasetError(f"{ipath}: images are {x.shape[1]}x{x.shape[2]}, expected "
                               f"{image_hw[0]}x{image_hw[1]}")
        if len(y) != len(x):
            raise DatasetError(f"{lpath}: {len(y)} labels for {len(x)} images in {ipath}")
        if len(y) and int(y.max()) >= len(classes):
            raise DatasetError(f"{lpath}: label {int(y.max())} out of range for "
                               f"{len(classes)} classes")
        out[split] = (x[:, None, :, :], y.astype(np.int64))
    return Dataset(name, out["train"][0], out["train"][1], out["test"][0], out["test"][1],
                   classes, source or os.path.abspath(folder))


# --------------------------------------------------------------------------- CIFAR


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and NumPy arrays, nothing else.

    Pickle can run arbitrary code; a CIFAR batch only ever needs these globals.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # NumPy 2 name, without the deprecation shim
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        # latin1: the official batches are Python 2 pickles (NumPy's advice for arrays).
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:
        raise DatasetError(f"{where}: not a readable CIFAR pickle batch ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a dict in the pickle, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_batch_arrays(d: dict, label_key: str, n_classes: int, where: str):
    if "data" not in d or label_key not in d:
        raise DatasetError(f"{where}: missing key 'data' or {label_key!r} "
                           f"(has {sorted(map(str, d))})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DatasetError(f"{where}: {labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{where}: label out of range [0, {n_classes}) "
                           f"(min {labels.min()}, max {labels.max()})")
    # Each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# The most bytes read of one CIFAR batch: the largest, CIFAR-100's "train", is 155 MB.
MAX_CIFAR_BATCH_BYTES = 256 << 20


def find_cifar(folder: str, name: str) -> tuple[str, str] | None:
    """Where ``folder`` holds CIFAR ``name``: ('folder', path) for the extracted batches
    (``folder/cifar-10-batches-py`` or ``folder`` itself) or ('tar', path) for the
    archive; None if neither."""
    src = CIFAR_SOURCES[name]
    members = src["train"] + src["test"]
    for d in (os.path.join(folder, src["folder"]), folder):
        if all(os.path.isfile(os.path.join(d, m)) for m in members):
            return "folder", d
    tar = os.path.join(folder, src["archive"])
    if os.path.isfile(tar):
        return "tar", tar
    return None


def _check_batch_size(size: int, where: str) -> None:
    if size > MAX_CIFAR_BATCH_BYTES:
        raise DatasetError(f"{where}: {size:,} bytes, more than any CIFAR batch (at most "
                           f"{MAX_CIFAR_BATCH_BYTES:,} are read)")


def _read_cifar_tar(path: str, src: dict, wanted: list, meta_name: str) -> dict:
    """{member: (bytes or None, where)} of the CIFAR archive ``path``; each member's size
    is checked (from its tar header) before it is read."""
    raw = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            by_name = {os.path.basename(m.name): m for m in tf.getmembers() if m.isfile()}
            for m in wanted + [meta_name]:
                where = f"{path}:{src['folder']}/{m}"
                if m not in by_name:
                    if m == meta_name:
                        raw[m] = (None, where)
                        continue
                    raise DatasetError(f"{path}: archive has no member {src['folder']}/{m}")
                _check_batch_size(by_name[m].size, where)
                raw[m] = (tf.extractfile(by_name[m]).read(), where)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(f"{path}: truncated or corrupt tar.gz archive ({e})") from e
    return raw


def load_cifar(path: str, name: str = "cifar10", verify: bool = True) -> Dataset:
    """Load CIFAR-10 (``name='cifar10'``) or CIFAR-100 (fine labels) from the extracted
    batches folder or from the ``.tar.gz``.

    verify -- check each batch against its published MD5 (CIFAR_MEMBER_MD5) before
    unpickling. Always on through load_dataset.
    """
    if name not in CIFAR_SOURCES:
        raise ValueError(f"name must be one of {sorted(CIFAR_SOURCES)}, got {name!r}")
    src = CIFAR_SOURCES[name]
    member_md5 = CIFAR_MEMBER_MD5[name] if verify else {}
    meta_name, meta_key = src["meta"]
    wanted = src["train"] + src["test"]

    if os.path.isdir(path):
        folder = path
        if not os.path.isfile(os.path.join(folder, wanted[0])) and \
                os.path.isdir(os.path.join(path, src["folder"])):
            folder = os.path.join(path, src["folder"])

        def read(member, required=True):
            p = os.path.join(folder, member)
            if not os.path.isfile(p):
                if required:
                    raise DatasetError(f"{p}: missing CIFAR batch file")
                return None, p
            _check_batch_size(os.path.getsize(p), p)
            with open(p, "rb") as f:
                return f.read(), p

        raw = {m: read(m) for m in wanted}
        raw[meta_name] = read(meta_name, required=False)
        source = os.path.abspath(folder)
    elif os.path.isfile(path):
        raw = _read_cifar_tar(path, src, wanted, meta_name)
        source = os.path.abspath(path)
    else:
        raise DatasetError(f"{path}: no such CIFAR folder or archive")

    for m, (data, where) in raw.items():
        if data is not None and m in member_md5:
            got = md5_bytes(data)
            if got != member_md5[m]:
                raise DatasetError(f"{where}: MD5 {got}, expected {member_md5[m]}: the batch is "
                                   f"corrupt or not the official {name} release")

    classes = list(src["classes"])
    meta_data, meta_where = raw[meta_name]
    if meta_data is not None:
        names = _unpickle(meta_data, meta_where).get(meta_key)
        if names is not None:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            if len(classes) != len(src["classes"]):
                raise DatasetError(f"{meta_where}: {len(classes)} class names, expected "
                                   f"{len(src['classes'])}")

    def split(members):
        xs, ys = [], []
        for m in members:
            data, where = raw[m]
            x, y = _cifar_batch_arrays(_unpickle(data, where), src["label_key"], len(classes), where)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = split(src["train"])
    test_x, test_y = split(src["test"])
    return Dataset(name, train_x, train_y, test_x, test_y, classes, source)


# --------------------------------------------------------------------------- image folder


def _list_images(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def _class_dirs(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root)
                  if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))


def load_image(path: str, size: int = 256, mode: str = "RGB") -> np.ndarray:
    """Read one image as the paper prepares it: RGB, shorter side rescaled to ``size``
    (bilinear, antialiased), central ``size x size`` crop. Returns uint8 (3, size, size);
    with mode "L", grey levels, (1, size, size), as in (Fashion-)MNIST."""
    from PIL import Image, ImageOps

    if mode not in ("RGB", "L"):
        raise ValueError(f"load_image: mode must be 'RGB' or 'L', got {mode!r}")
    f = open_regular_file(path)
    try:
        with f, Image.open(f) as im:
            # a phone photo's orientation tag: upright, as a viewer shows it
            im = ImageOps.exif_transpose(im)
            im = im.convert(mode)  # forces the full decode: a truncated file fails here
            w, h = im.size
            if min(w, h) != size:
                s = size / min(w, h)
                nw, nh = max(size, round(w * s)), max(size, round(h * s))
                im = im.resize((nw, nh), Image.BILINEAR)
                w, h = nw, nh
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # Pillow raises OSError, UnidentifiedImageError, ValueError...
        raise DatasetError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    return arr[None] if mode == "L" else arr.transpose(2, 0, 1)


def open_regular_file(path: str):
    """``path`` opened for reading in binary, if it is a regular file; a DatasetError
    otherwise. Opened without waiting (O_NONBLOCK), so that a FIFO or a device is
    refused rather than read from forever."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read image ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatasetError(f"{path}: not a regular file (a folder, a FIFO or a device): "
                           f"only image files are read")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _load_images(items: list[tuple[str, int]], size: int):
    x = np.empty((len(items), 3, size, size), dtype=np.uint8)
    for i, (p, _) in enumerate(items):
        x[i] = load_image(p, size)
    y = np.array([lab for _, lab in items], dtype=np.int64)
    return x, y


def load_image_folder(path: str, size: int = 256, test_fraction: float = 0.1,
                      seed: int = 0) -> Dataset:
    """Load a folder of JPEG/PNG images, one subfolder per class, into memory.

    Layouts:
      ``path/train/<class>/*`` and ``path/test/<class>/*`` (or ``path/val/...``): the
      given split. Classes are the sorted subfolders of ``train``; a test class that
      is not a train class is an error.
      ``path/<class>/*``: a held-out test split of ``round(test_fraction * n)`` images
      per class, at least one where a class has two (at least one stays in train),
      chosen by a permutation seeded with ``seed``, so the same folder always gives the
      same split.

    Every image is prepared as in the paper (see :func:`load_image`): shorter side to
    ``size``, central ``size x size`` crop, RGB uint8. At 256 this is 192 KiB per image.
    """
    # "folder:~/photos" reaches us unexpanded: the shell expands a ~ only at a word's start
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: image folder " + (
            "is not a folder" if os.path.exists(path) else "does not exist"))
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")

    def gather(root, classes):
        items = []
        for label, c in enumerate(classes):
            d = os.path.join(root, c)
            if not os.path.isdir(d):
                continue
            files = _list_images(d)
            if not files:
                raise DatasetError(f"{d}: class folder has no images "
                                   f"({', '.join(IMAGE_EXTENSIONS)})")
            items.append([(f, label) for f in files])
        return items

    train_root = os.path.join(path, "train")
    if os.path.isdir(train_root):
        classes = _class_dirs(train_root)
        if not classes:
            raise DatasetError(f"{train_root}: no class subfolders (expected train/<class>/image)")
        train_items = [it for per in gather(train_root, classes) for it in per]
        test_root = next((os.path.join(path, s) for s in ("test", "val")
                          if os.path.isdir(os.path.join(path, s))), None)
        if test_root is not None:
            extra = sorted(set(_class_dirs(test_root)) - set(classes))
            if extra:
                raise DatasetError(f"{test_root}: classes {extra} are not in {train_root}")
            test_items = [it for per in gather(test_root, classes) for it in per]
            source = f"{os.path.abspath(train_root)} + {os.path.abspath(test_root)}"
        else:
            train_items, test_items = _hold_out(gather(train_root, classes), test_fraction, seed)
            source = f"{os.path.abspath(train_root)} (test: {test_fraction:g} held out, seed {seed})"
    else:
        classes = _class_dirs(path)
        if not classes:
            raise DatasetError(f"{path}: empty image folder: no class subfolders "
                               "(expected <class>/<image> or train/<class>/<image>)")
        train_items, test_items = _hold_out(gather(path, classes), test_fraction, seed)
        source = f"{os.path.abspath(path)} (test: {test_fraction:g} held out, seed {seed})"

    if len(classes) < 2:
        raise DatasetError(f"{path}: one class folder ({classes[0]}): a classifier needs "
                           f"at least two, one sub-folder of images per class")
    if test_fraction > 0 and not test_items and "held out" in source:
        raise DatasetError(f"{path}: too few images to hold out a test set: every class "
                           f"has one image, which it keeps for training; add images, or "
                           f"give the train/ and test/ layout")
    train_x, train_y = _load_images(train_items, size)
    test_x, test_y = _load_images(test_items, size)
    return Dataset(f"folder:{path}", train_x, train_y, test_x, test_y, classes, source)


def _hold_out(per_class: list, fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    train, test = [], []
    for items in per_class:
        # at least one test image a class (where it has two), so a small folder still
        # has a test set; at least one stays in train
        n_test = min(max(int(round(fraction * len(items))), int(fraction > 0)),
                     len(items) - 1)
        perm = rng.permutation(len(items))
        chosen = set(perm[:n_test].tolist())
        for i, it in enumerate(items):  # keep the sorted order within each split
            (test if i in chosen else train).append(it)
    return train, test


# --------------------------------------------------------------------------- download


def cache_root(cache_dir: str | None = None) -> str:
    """``cache_dir``, else ``$XDG_CACHE_HOME/alexnet-from-scratch``, else
    ``~/.cache/alexnet-from-scratch``."""
    if cache_dir:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, CACHE_NAME)


def _open_url(url: str, timeout: float):
    """The one place that touches the network (tests replace it). Returns a readable
    file-like object usable as a context manager."""
    return urllib.request.urlopen(url, timeout=timeout)


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError)


class _WriteFailed(Exception):
    """Writing a download to disk failed (disk full, no permission): not a network error,
    so no reason to try another URL or to fall back to the bundled subset."""


def download_file(urls: list[str] | str, dest: str, md5: str, timeout: float = 60.0) -> str:
    """Download to ``dest``, trying each URL in turn, and check the MD5 before use.

    The bytes go to a temporary file beside ``dest`` and are moved into place with
    os.replace only once their MD5 matches, so ``dest`` is never a partial or bad file.
    A file that arrives with the wrong MD5 (a proxy's error page, a changed mirror) is
    deleted and the next URL tried. A network failure on every URL raises DownloadError;
    when a file arrived but none matched, DatasetError names the expected and the got
    MD5s; a file that cannot be written (disk full, no permission) is a DatasetError
    naming it.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    folder = os.path.dirname(os.path.abspath(dest))
    errors, mismatches = [], []
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot create the download folder: {e}") from None
    for url in urls:
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(dest) + ".",
                                       suffix=".part")
        except OSError as e:
            raise DatasetError(f"{folder}: cannot write the download there: {e}") from None
        h = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as f, _open_url(url, timeout) as r:
                # A byte counter with rate and ETA (size from Content-Length when the
                # server sends one); shown in a terminal only, so logs stay clean.
                size = (getattr(r, "headers", None) or {}).get("Content-Length")
                with tqdm(total=int(size) if size and size.isdigit() else None,
                          desc=os.path.basename(dest), unit="B", unit_scale=True,
                          unit_divisor=1024, disable=None) as shown:
                    for block in iter(lambda: r.read(1 << 20), b""):
                        try:
                            f.write(block)
                        except OSError as e:
                            raise _WriteFailed(e) from None
                        h.update(block)
                        shown.update(len(block))
        except _WriteFailed as e:
            os.remove(tmp)
            raise DatasetError(f"{dest}: cannot write the download: {e}") from None
        except _NETWORK_ERRORS as e:
            os.remove(tmp)
            errors.append(f"{url}: {e}")
            log.warning("download failed: %s: %s", url, e)
            continue
        except BaseException:
            os.remove(tmp)
            raise
        got = h.hexdigest()
        if got != md5:
            os.remove(tmp)
            mismatches.append(f"{url}: got {got}")
            log.warning("download from %s has the wrong MD5 (%s), deleted", url, got)
            continue
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, dest)
        log.info("downloaded %s -> %s (MD5 ok)", url, dest)
        return dest
    if mismatches:
        raise DatasetError(f"{dest}: MD5 mismatch for the download: expected {md5}; "
                           + "; ".join(mismatches + errors) + "; the bad files were deleted")
    raise DownloadError(f"could not download {os.path.basename(dest)}: " + "; ".join(errors))


def _download(name: str, folder: str) -> str:
    """Download dataset ``name`` into ``folder``; return the folder (idx) or archive."""
    os.makedirs(folder, exist_ok=True)
    if name in IDX_SOURCES:
        src = IDX_SOURCES[name]
        for fname, md5 in src["md5"].items():
            dest = os.path.join(folder, fname)
            if os.path.isfile(dest) and md5_file(dest) == md5:
                continue
            download_file([u + fname for u in src["urls"]], dest, md5)
        return folder
    src = CIFAR_SOURCES[name]
    dest = os.path.join(folder, src["archive"])
    if not (os.path.isfile(dest) and md5_file(dest) == src["md5"]):
        download_file(src["urls"], dest, src["md5"])
    return dest


# --------------------------------------------------------------------------- load_dataset


def _named_dirs(name: str, data_dir: str | None) -> list[str]:
    """The folders the user named (data_dir, then $ALEXNET_DATA): each with its
    ``name`` sub-folder first."""
    dirs = []
    for d in (data_dir, os.environ.get(ENV_DATA) or None):
        if d is not None:
            d = os.path.expanduser(d)
            dirs += [os.path.join(d, name), d]
    return dirs


def _search_dirs(name: str, data_dir: str | None, cache_dir: str | None) -> list[str]:
    if data_dir is not None and not os.path.isdir(os.path.expanduser(data_dir)):
        raise DatasetError(_not_a_folder(data_dir))
    env = os.environ.get(ENV_DATA)
    if env and not os.path.isdir(os.path.expanduser(env)):
        warnings.warn(f"${ENV_DATA} is {env!r}, which is not a folder; ignored", stacklevel=3)
    dirs = _named_dirs(name, data_dir)
    dirs.append(os.path.join(cache_root(cache_dir), name))
    dirs += SYSTEM_DIRS.get(name, [])
    return dirs


def _not_a_folder(data_dir: str) -> str:
    there = os.path.exists(os.path.expanduser(data_dir))
    return f"data_dir {data_dir!r} " + ("is not a folder" if there else "does not exist")


def missing_files(name: str, folder: str) -> list[str]:
    """The files of ``name`` that ``folder`` lacks, where it holds some of them (a copy
    cut short); empty where it holds all, or none (then it is simply not the place)."""
    if name in IDX_SOURCES:
        groups = [[os.path.join(folder, stem + ext) for ext in (".gz", "")]
                  for stem, _ in IDX_FILES]
    elif name in CIFAR_SOURCES:
        src = CIFAR_SOURCES[name]
        if os.path.isfile(os.path.join(folder, src["archive"])):
            return []
        sub = os.path.join(folder, src["folder"])
        base = sub if os.path.isdir(sub) else folder
        groups = [[os.path.join(base, m)] for m in src["train"] + src["test"]]
    else:
        return []
    have = [any(os.path.isfile(p) for p in g) for g in groups]
    if not any(have) or all(have):
        return []
    return [g[0] if len(g) == 1 else f"{g[1]}(.gz)" for g, h in zip(groups, have) if not h]


def _refuse_fashion_as_mnist(labels_path: str):
    """MNIST and Fashion-MNIST share the file names and format, and a folder searched for
    one (``--data-dir`` itself is) may hold the other: their training labels tell them
    apart (Fashion-MNIST's content MD5 is known; the bundled subset's is read here)."""
    got = md5_bytes(read_idx_bytes(labels_path))
    known = {FASHION_MNIST_CONTENT_MD5["train-labels-idx1-ubyte"]: "Fashion-MNIST"}
    subset = os.path.join(SUBSET_DIR, "train-labels-idx1-ubyte.gz")
    if os.path.isfile(subset):
        known[md5_bytes(read_idx_bytes(subset))] = "the bundled Fashion-MNIST subset"
    if got in known:
        raise DatasetError(f"{labels_path}: these are the files of {known[got]}, not MNIST; "
                           f"point --data-dir (or {ENV_DATA}) at the MNIST files, or ask "
                           f"for the dataset they are")


def _load_found(name: str, folder: str) -> Dataset | None:
    if name in IDX_SOURCES:
        files = find_idx_files(folder)
        if files is None:
            return None
        fashion = name == "fashion-mnist"
        if name == "mnist":
            _refuse_fashion_as_mnist(files["train-labels-idx1-ubyte"])
        return load_idx_folder(folder, name,
                               FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES,
                               content_md5=FASHION_MNIST_CONTENT_MD5 if fashion else None,
                               files=files)
    loc = find_cifar(folder, name)
    if loc is None:
        return None
    return load_cifar(loc[1], name, verify=True)


def read_md5sums(path: str) -> dict:
    """Parse an ``md5sum``-style file: ``<md5>  <filename>`` per line."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                parts = line.split(None, 1)
                if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{32}", parts[0]):
                    raise DatasetError(f"{path}, line {n}: expected '<md5>  <file name>', "
                                       f"got {line!r}")
                out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def load_fashion_subset(folder: str | None = None) -> Dataset:
    """Load the committed balanced Fashion-MNIST subset (data/fashion-mnist-subset):
    500 train and 100 test images per class, checked against its MD5SUMS file."""
    folder = folder or SUBSET_DIR
    sums_path = os.path.join(folder, "MD5SUMS")
    if not os.path.isfile(sums_path):
        raise DatasetError(f"{sums_path}: missing; cannot verify the Fashion-MNIST subset "
                           "(regenerate with scripts/make_fashion_subset.py)")
    sums = read_md5sums(sums_path)
    for stem, _ in IDX_FILES:
        fname = stem + ".gz"
        p = os.path.join(folder, fname)
        if not os.path.isfile(p):
            raise DatasetError(f"{p}: missing file of the Fashion-MNIST subset")
        if fname not in sums:
            raise DatasetError(f"{sums_path}: no MD5 listed for {fname}")
        got = md5_file(p)
        if got != sums[fname]:
            raise DatasetError(f"{p}: MD5 {got}, expected {sums[fname]} (from {sums_path}): "
                               "the subset file is corrupt")
    files = {stem: os.path.join(folder, stem + ".gz") for stem, _ in IDX_FILES}
    return load_idx_folder(folder, "fashion-mnist-subset", FASHION_MNIST_CLASSES, files=files)


def fallback_to_fashion_subset(reason: str) -> Dataset:
    """Full Fashion-MNIST is unavailable: warn and return the committed subset.

    The returned Dataset says so: ``name == 'fashion-mnist-subset'`` and ``source``
    starts with ``'FALLBACK'`` and gives the reason, so train.py can report it.
    """
    msg = (f"full Fashion-MNIST is unavailable ({reason}); using the committed subset "
           f"{SUBSET_DIR} (5000 train / 1000 test images). Results are NOT comparable "
           "with the full dataset.")
    warnings.warn(msg, SubsetFallbackWarning, stacklevel=3)
    log.warning(msg)
    ds = load_fashion_subset(SUBSET_DIR)
    ds.source = f"FALLBACK to the committed subset {ds.source} ({reason})"
    return ds


def load_dataset(name: str = "fashion-mnist", data_dir: str | None = None,
                 download: bool = True, cache_dir: str | None = None,
                 fallback: bool = True) -> Dataset:
    """Load a dataset by name; see the module docstring for the search order.

    name -- 'fashion-mnist' (default), 'mnist', 'cifar10', 'cifar100',
        'fashion-mnist-subset' (committed in the repo), or 'folder:PATH' (an image
        folder, see :func:`load_image_folder`, default size 256).
    data_dir -- a folder to look in first; it must exist.
    download -- download from the official source when not found locally.
    cache_dir -- the cache root (default: $XDG_CACHE_HOME or ~/.cache, then
        alexnet-from-scratch); downloads go to ``cache_dir/<name>``.
    fallback -- for 'fashion-mnist' only: when it is nowhere on disk and the download
        fails for lack of network, return the committed subset with a warning.

    Raises ValueError for an unknown name, DatasetError for a missing data_dir, data
    not found (with download=False), or any corrupt file.
    """
    if name.startswith("folder:"):
        return load_image_folder(name[len("folder:"):])
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: "
                         + ", ".join(repr(n) for n in DATASET_NAMES) + ", or 'folder:PATH'")
    if name == "fashion-mnist-subset":
        if data_dir is not None:
            if not os.path.isdir(data_dir):
                raise DatasetError(_not_a_folder(data_dir))
            for d in (os.path.join(data_dir, name), data_dir):
                if os.path.isfile(os.path.join(d, "MD5SUMS")):
                    return load_fashion_subset(d)
        return load_fashion_subset(SUBSET_DIR)

    dirs = _search_dirs(name, data_dir, cache_dir)
    named = _named_dirs(name, data_dir)      # [data_dir/name, data_dir, env/name, env]
    env_itself = named[-1] if os.environ.get(ENV_DATA) else None
    for d in dirs:
        gone = missing_files(name, d) if d in named else []
        if gone:    # a folder the user named holds part of the files: say which are not
            raise DatasetError(f"{d}: holds some of the {name} files but not "
                               + ", ".join(os.path.basename(g) for g in gone))
        if os.path.isdir(d):
            try:
                ds = _load_found(name, d)
            except DatasetError as e:
                if d != env_itself or d in named[:-1]:    # (env is also data_dir)
                    raise
                # $ALEXNET_DATA may be the folder of another dataset (it holds the
                # Fashion-MNIST files, and MNIST is asked for): look on elsewhere
                warnings.warn(f"${ENV_DATA} ({d}) skipped for {name}: {e}", stacklevel=2)
                continue
            if ds is not None:
                log.info("loaded %s from %s", name, ds.source)
                return ds
    if not download:
        hint = " (or use 'fashion-mnist-subset')" if name == "fashion-mnist" else ""
        raise DatasetError(f"{name} not found; looked in: " + ", ".join(dirs)
                           + f". Point --data-dir (data_dir=) or ${ENV_DATA} at the files, "
                           f"or allow the download (no --no-download, download=True){hint}")
    target = os.path.join(cache_root(cache_dir), name)
    try:
        where = _download(name, target)
    except DownloadError as e:
        if name == "fashion-mnist" and fallback:
            return fallback_to_fashion_subset(f"not found in {', '.join(dirs)}; download failed: {e}")
        raise
    ds = _load_found(name, target)
    if ds is None:  # cannot happen unless the cache is modified meanwhile
        raise DatasetError(f"{where}: downloaded, but the dataset files are not there")
    ds.source = f"{ds.source} (downloaded)"
    return ds
