"""Write the balanced Fashion-MNIST subset committed in data/fashion-mnist-subset/.

The subset keeps the original idx .gz format and file names: the first 500 training
images of each class (5000) and the first 100 test images of each class (1000), in
their original order otherwise. The files are gzipped with mtime=0 and no file name
in the header, so the same input gives the same bytes; their MD5s are written to
MD5SUMS (``md5sum -c MD5SUMS`` checks them, and so does
``load_dataset('fashion-mnist-subset')``).

    python scripts/make_fashion_subset.py                    # full data found as load_dataset does
    python scripts/make_fashion_subset.py --source /usr/share/datasets/fashion-mnist
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from data.datasets import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, SUBSET_DIR,  # noqa: E402
                             Dataset, load_dataset)


def first_per_class(y: np.ndarray, k: int, n_classes: int = 10) -> np.ndarray:
    """Indices of the first ``k`` examples of each class, in their original order."""
    keep = np.zeros(len(y), dtype=bool)
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) < k:
            raise ValueError(f"class {c} has only {len(idx)} examples, need {k}")
        keep[idx[:k]] = True
    return np.flatnonzero(keep)


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    """The idx encoding of a uint8 array: magic, big-endian dims, then the data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_gz_atomic(path: str, data: bytes) -> None:
    """gzip ``data`` reproducibly (mtime 0, no name, level 9) into ``path`` atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
                gz.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def make_subset(ds: Dataset, out_dir: str, train_per_class: int = 500,
                test_per_class: int = 100) -> dict:
    """Write the four subset files and MD5SUMS into ``out_dir``; return {file: md5}."""
    if ds.name != "fashion-mnist":
        raise ValueError(f"the subset must be cut from the full Fashion-MNIST, got {ds.name!r}")
    os.makedirs(out_dir, exist_ok=True)
    parts = {}
    for prefix, x, y, k in (("train", ds.train_x, ds.train_y, train_per_class),
                            ("t10k", ds.test_x, ds.test_y, test_per_class)):
        keep = first_per_class(y, k, ds.num_classes)
        parts[f"{prefix}-images-idx3-ubyte.gz"] = idx_bytes(x[keep, 0], IDX_IMAGES_MAGIC)
        parts[f"{prefix}-labels-idx1-ubyte.gz"] = idx_bytes(y[keep], IDX_LABELS_MAGIC)
    sums = {}
    for fname, data in parts.items():
        path = os.path.join(out_dir, fname)
        write_gz_atomic(path, data)
        with open(path, "rb") as f:
            sums[fname] = hashlib.md5(f.read()).hexdigest()
    with open(os.path.join(out_dir, "MD5SUMS"), "w") as f:
        for fname in sorted(sums):
            f.write(f"{sums[fname]}  {fname}\n")
    return sums


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=None,
                   help="folder with the full Fashion-MNIST idx files (default: the "
                        "load_dataset search order, downloading if needed)")
    p.add_argument("--out", default=SUBSET_DIR, help="output folder (default: %(default)s)")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=100)
    args = p.parse_args(argv)
    ds = load_dataset("fashion-mnist", data_dir=args.source, fallback=False)
    print(f"source: {ds.source}")
    sums = make_subset(ds, args.out, args.train_per_class, args.test_per_class)
    total = 0
    for fname, md5 in sorted(sums.items()):
        size = os.path.getsize(os.path.join(args.out, fname))
        total += size
        print(f"{md5}  {fname}  {size} bytes")
    print(f"wrote {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
