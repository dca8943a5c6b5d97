"""Dataset readers, on small files written in each official format; downloads are
served by a fake ``_open_url`` (no network)."""
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error

import numpy as np
import pytest
from PIL import Image

from data import datasets
from data.datasets import DatasetError

FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------- helpers


def idx_bytes(arr, magic):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx_set(folder, n_train=12, n_test=6, gz=True, seed=0, n_classes=10):
    """Write the four MNIST-style files; return the arrays written."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), 2051),
        "train-labels-idx1-ubyte": (rng.integers(0, n_classes, n_train, dtype=np.uint8), 2049),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), 2051),
        "t10k-labels-idx1-ubyte": (rng.integers(0, n_classes, n_test, dtype=np.uint8), 2049),
    }
    for stem, (a, magic) in arrays.items():
        data = idx_bytes(a, magic)
        if gz:
            with open(os.path.join(folder, stem + ".gz"), "wb") as f:
                f.write(gzip.compress(data))
        else:
            with open(os.path.join(folder, stem), "wb") as f:
                f.write(data)
    return {k: v[0] for k, v in arrays.items()}


def md5(data):
    return hashlib.md5(data).hexdigest()


def serve(monkeypatch, files):
    """Make _open_url serve {basename: bytes}; record the URLs asked for."""
    asked = []

    def fake(url, timeout):
        asked.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError(f"404 {url}")
        return io.BytesIO(files[name])

    monkeypatch.setattr(datasets, "_open_url", fake)
    return asked


# ----------------------------------------------------------------------------- idx


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_roundtrip(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    ds = datasets.load_idx_folder(str(tmp_path))
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (6, 1, 28, 28)
    assert ds.train_y.dtype == np.int64 and ds.test_y.dtype == np.int64
    np.testing.assert_array_equal(ds.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.train_y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.test_x[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])
    assert ds.classes == datasets.MNIST_CLASSES


def test_load_dataset_mnist_from_data_dir(isolated):
    write_idx_set(isolated / "d" / "mnist")
    ds = datasets.load_dataset("mnist", data_dir=str(isolated / "d"), download=False)
    assert ds.name == "mnist" and ds.source == os.path.abspath(isolated / "d" / "mnist")
    assert len(ds.train_x) == 12


def test_alexnet_data_env_var(isolated, monkeypatch):
    write_idx_set(isolated / "root" / "mnist", gz=False)
    monkeypatch.setenv("ALEXNET_DATA", str(isolated / "root"))
    ds = datasets.load_dataset("mnist", download=False)
    assert ds.source == os.path.abspath(isolated / "root" / "mnist")


def test_truncated_gz_names_file(tmp_path):
    write_idx_set(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*(truncated|corrupt)"):
        datasets.load_idx_folder(str(tmp_path))


def test_truncated_raw_idx_names_file_and_sizes(tmp_path):
    write_idx_set(tmp_path, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: truncated.*4720 bytes.*4620"):
        datasets.load_idx_folder(str(tmp_path))


def test_truncated_content_inside_valid_gzip(tmp_path):
    write_idx_set(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-3]))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: truncated"):
        datasets.load_idx_folder(str(tmp_path))


def test_corrupt_gzip_crc(tmp_path):
    write_idx_set(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz.*corrupt"):
        datasets.load_idx_folder(str(tmp_path))


def test_bad_magic_number(tmp_path):
    write_idx_set(tmp_path)
    # labels where images are expected: magic 2049 instead of 2051
    shutil.copy(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: bad magic number 2049.*2051"):
        datasets.load_idx_folder(str(tmp_path))


def test_label_out_of_range_and_count_mismatch(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(12, 10), 2049))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte: label 10 out of range"):
        datasets.load_idx_folder(str(tmp_path))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11), 2049))
    with pytest.raises(DatasetError, match="11 labels for 12 images"):
        datasets.load_idx_folder(str(tmp_path))


# ----------------------------------------------------------------------------- downloads


def test_download_verified_and_atomic(isolated, monkeypatch):
    src = isolated / "src"
    write_idx_set(src)
    files = {f: (src / f).read_bytes() for f in os.listdir(src)}
    monkeypatch.setitem(datasets.IDX_SOURCES, "mnist", {
        "urls": ["https://mirror.invalid/mnist/"], "md5": {f: md5(b) for f, b in files.items()}})
    asked = serve(monkeypatch, files)
    ds = datasets.load_dataset("mnist", cache_dir=str(isolated / "cache"))
    cache = isolated / "cache" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(files)  # no leftover .part file
    assert len(asked) == 4 and "downloaded" in ds.source
    assert len(ds.train_x) == 12
    # a second load finds the cache and downloads nothing
    datasets.load_dataset("mnist", cache_dir=str(isolated / "cache"))
    assert len(asked) == 4


def test_corrupted_download_is_deleted_and_raises(isolated, monkeypatch):
    good = gzip.compress(b"not what was published")
    expected = "0123456789abcdef0123456789abcdef"
    serve(monkeypatch, {"cifar-10-python.tar.gz": good})
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10",
                        dict(datasets.CIFAR_SOURCES["cifar10"], urls=["https://mirror.invalid/cifar-10-python.tar.gz"],
                             md5=expected))
    cache = isolated / "cache"
    with pytest.raises(DatasetError) as e:
        datasets.load_dataset("cifar10", cache_dir=str(cache))
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and expected in msg and md5(good) in msg
    assert os.listdir(cache / "cifar10") == []  # neither the file nor a temp file remains


def test_download_tries_mirrors(isolated, monkeypatch):
    data = b"payload"
    calls = []

    def fake(url, timeout):
        calls.append(url)
        if "first" in url:
            raise urllib.error.URLError("down")
        return io.BytesIO(data)

    monkeypatch.setattr(datasets, "_open_url", fake)
    dest = isolated / "f.bin"
    datasets.download_file(["https://first.invalid/f", "https://second.invalid/f"], str(dest), md5(data))
    assert dest.read_bytes() == data and len(calls) == 2


def test_a_wrong_file_from_one_mirror_tries_the_next(isolated, monkeypatch):
    # a proxy's error page from the first URL: deleted, and the second URL's file used
    data = b"payload"
    monkeypatch.setattr(datasets, "_open_url", lambda url, timeout: io.BytesIO(
        b"<html>login</html>" if "first" in url else data))
    dest = isolated / "f.bin"
    datasets.download_file(["https://first.invalid/f", "https://second.invalid/f"], str(dest), md5(data))
    assert dest.read_bytes() == data
    assert [p for p in os.listdir(isolated) if p.startswith("f.")] == ["f.bin"]  # no .part


def test_a_download_that_cannot_be_written_is_not_a_network_error(isolated, monkeypatch):
    # a full disk is no reason to fall back to the bundled subset: DatasetError, not
    # DownloadError, naming the file, and no partial file left
    monkeypatch.setattr(datasets, "_open_url", lambda url, timeout: io.BytesIO(b"x" * 10))
    real_fdopen = os.fdopen

    def full_disk(fd, mode):
        f = real_fdopen(fd, mode)

        class Writer:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, block):
                raise OSError(28, "No space left on device")
        return Writer()

    monkeypatch.setattr(datasets.os, "fdopen", full_disk)
    with pytest.raises(DatasetError, match="f.bin: cannot write the download: .*No space") as e:
        datasets.download_file(["https://a.invalid/f"], str(isolated / "f.bin"), md5(b"x" * 10))
    assert not isinstance(e.value, datasets.DownloadError)
    assert not [p for p in os.listdir(isolated) if p.startswith("f.")]


def test_fashion_mnist_files_are_not_taken_for_mnist(isolated):
    # same names and format: --data-dir pointed at the wrong folder must not pass
    subset = datasets.SUBSET_DIR
    with pytest.raises(DatasetError, match="the bundled Fashion-MNIST subset, not MNIST"):
        datasets.load_dataset("mnist", data_dir=subset, download=False)


def test_network_error_without_fallback_raises_download_error(isolated):
    with pytest.raises(datasets.DownloadError, match="network disabled"):
        datasets.load_dataset("mnist", cache_dir=str(isolated / "cache"))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'fashion-mnist'.*'mnist'.*'cifar10'.*'cifar100'"):
        datasets.load_dataset("imagenet")


def test_missing_data_dir_is_named(isolated):
    missing = str(isolated / "nope")
    with pytest.raises(DatasetError, match="nope"):
        datasets.load_dataset("mnist", data_dir=missing)


def test_not_found_without_download_says_where_it_looked(isolated, monkeypatch):
    monkeypatch.setenv("ALEXNET_DATA", str(isolated / "env"))
    (isolated / "env").mkdir()
    (isolated / "dd").mkdir()
    with pytest.raises(DatasetError) as e:
        datasets.load_dataset("fashion-mnist", data_dir=str(isolated / "dd"), download=False,
                       cache_dir=str(isolated / "cache"))
    msg = str(e.value)
    for where in ("dd", "env", "cache"):
        assert str(isolated / where) in msg


def test_fashion_falls_back_to_subset_on_network_error(isolated):
    with pytest.warns(datasets.SubsetFallbackWarning, match="committed subset"):
        ds = datasets.load_dataset("fashion-mnist", cache_dir=str(isolated / "cache"))
    assert ds.name == "fashion-mnist-subset"
    assert ds.source.startswith("FALLBACK") and "network disabled" in ds.source
    assert ds.train_x.shape == (5000, 1, 28, 28)


def test_no_fallback_when_disabled(isolated):
    with pytest.raises(datasets.DownloadError):
        datasets.load_dataset("fashion-mnist", cache_dir=str(isolated / "cache"), fallback=False)


# ----------------------------------------------------------------------------- subset


def test_committed_subset_is_balanced_and_verified():
    ds = datasets.load_dataset("fashion-mnist-subset")
    assert ds.name == "fashion-mnist-subset"
    assert ds.train_x.shape == (5000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.train_y, minlength=10), [500] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y, minlength=10), [100] * 10)
    assert ds.classes == datasets.FASHION_MNIST_CLASSES
    sums = datasets.read_md5sums(os.path.join(datasets.SUBSET_DIR, "MD5SUMS"))
    assert sorted(sums) == sorted(s + ".gz" for s, _ in datasets.IDX_FILES)
    for f, m in sums.items():
        assert datasets.md5_file(os.path.join(datasets.SUBSET_DIR, f)) == m
    total = sum(os.path.getsize(os.path.join(datasets.SUBSET_DIR, f)) for f in os.listdir(datasets.SUBSET_DIR))
    assert total < 4_000_000


def test_modified_subset_fails_md5sums(tmp_path):
    copy = tmp_path / "fashion-mnist-subset"
    shutil.copytree(datasets.SUBSET_DIR, copy)
    p = copy / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(p.read_bytes()))
    labels[8] = (labels[8] + 1) % 10  # still a valid file: only the MD5 can tell
    p.write_bytes(gzip.compress(bytes(labels), mtime=0))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: MD5 .* expected"):
        datasets.load_dataset("fashion-mnist-subset", data_dir=str(tmp_path))


def _load_script():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "make_fashion_subset.py")
    spec = importlib.util.spec_from_file_location("make_fashion_subset", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not os.path.isdir(FASHION_SYSTEM_DIR), reason="full Fashion-MNIST not installed")
def test_subset_is_first_k_per_class_of_full_dataset(tmp_path):
    full = datasets.load_dataset("fashion-mnist", data_dir=FASHION_SYSTEM_DIR, download=False)
    assert full.train_x.shape == (60000, 1, 28, 28) and full.test_x.shape == (10000, 1, 28, 28)
    sub = datasets.load_fashion_subset()
    mod = _load_script()
    keep = mod.first_per_class(full.train_y, 500)
    np.testing.assert_array_equal(sub.train_x, full.train_x[keep])
    np.testing.assert_array_equal(sub.train_y, full.train_y[keep])
    keep = mod.first_per_class(full.test_y, 100)
    np.testing.assert_array_equal(sub.test_x, full.test_x[keep])
    # regenerating gives the same content (the bytes too, with the same zlib)
    mod.make_subset(full, str(tmp_path))
    for stem, _ in datasets.IDX_FILES:
        a = gzip.decompress((tmp_path / (stem + ".gz")).read_bytes())
        b = gzip.decompress(open(os.path.join(datasets.SUBSET_DIR, stem + ".gz"), "rb").read())
        assert a == b


@pytest.mark.skipif(not os.path.isdir(FASHION_SYSTEM_DIR), reason="full Fashion-MNIST not installed")
def test_fashion_content_md5_catches_modified_file(tmp_path):
    for stem, _ in datasets.IDX_FILES:
        os.symlink(os.path.join(FASHION_SYSTEM_DIR, stem + ".gz"), tmp_path / (stem + ".gz"))
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(target.read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # a plausible label: parsing alone would accept it
    target.unlink()
    target.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: MD5 of the decompressed "
                                           "content is .*, expected 15d484375f8d13e6eb1aabb0c3f46965"):
        datasets.load_dataset("fashion-mnist", data_dir=str(tmp_path), download=False)


def test_fashion_content_md5_rejects_other_idx_data(isolated):
    write_idx_set(isolated / "d")  # valid idx files, but not Fashion-MNIST
    with pytest.raises(DatasetError, match="MD5 of the decompressed content"):
        datasets.load_dataset("fashion-mnist", data_dir=str(isolated / "d"), download=False)


# ----------------------------------------------------------------------------- CIFAR


def cifar_batch(n, n_classes, label_key, seed):
    rng = np.random.default_rng(seed)
    d = {b"batch_label": b"testing batch", label_key.encode(): rng.integers(0, n_classes, n).tolist(),
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         b"filenames": [b"img%d.png" % i for i in range(n)]}
    if label_key == "fine_labels":
        d[b"coarse_labels"] = [0] * n
    return pickle.dumps(d, protocol=2)


def write_cifar(folder, name, n=4):
    """Write the member files of CIFAR ``name`` into ``folder``; return {member: bytes}."""
    src = datasets.CIFAR_SOURCES[name]
    nc = len(src["classes"])
    members = {m: cifar_batch(n, nc, src["label_key"], i) for i, m in enumerate(src["train"] + src["test"])}
    meta_name, meta_key = src["meta"]
    members[meta_name] = pickle.dumps({meta_key.encode(): [c.encode() for c in src["classes"]]}, protocol=2)
    os.makedirs(folder, exist_ok=True)
    for m, b in members.items():
        (folder / m).write_bytes(b)
    return members


def expected_cifar(members, name):
    src = datasets.CIFAR_SOURCES[name]
    key = src["label_key"].encode()

    def cat(ms):
        ds = [pickle.loads(members[m]) for m in ms]
        return (np.concatenate([d[b"data"] for d in ds]).reshape(-1, 3, 32, 32),
                np.concatenate([d[key] for d in ds]))
    return cat(src["train"]), cat(src["test"])


@pytest.fixture
def trusted_cifar(monkeypatch):
    """Accept the test's own batches: set the member MD5 table to theirs."""
    def trust(name, members):
        monkeypatch.setitem(datasets.CIFAR_MEMBER_MD5, name, {m: md5(b) for m, b in members.items()})
    return trust


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_folder(isolated, trusted_cifar, name):
    folder = isolated / "d" / name / datasets.CIFAR_SOURCES[name]["folder"]
    members = write_cifar(folder, name)
    trusted_cifar(name, members)
    ds = datasets.load_dataset(name, data_dir=str(isolated / "d"), download=False)
    (tx, ty), (vx, vy) = expected_cifar(members, name)
    n_train = 5 * 4 if name == "cifar10" else 4
    assert ds.train_x.shape == (n_train, 3, 32, 32) and ds.train_x.dtype == np.uint8
    np.testing.assert_array_equal(ds.train_x, tx)
    np.testing.assert_array_equal(ds.train_y, ty)
    np.testing.assert_array_equal(ds.test_x, vx)
    np.testing.assert_array_equal(ds.test_y, vy)
    assert ds.classes == datasets.CIFAR_SOURCES[name]["classes"]
    assert len(ds.classes) == (10 if name == "cifar10" else 100)


def test_cifar_layout_is_channel_planes(isolated, trusted_cifar):
    folder = isolated / "c"
    members = write_cifar(folder, "cifar10")
    d = pickle.loads(members["data_batch_1"])
    trusted_cifar("cifar10", members)
    ds = datasets.load_cifar(str(folder), "cifar10")
    row = d[b"data"][1]
    # pixel (r=3, c=5) of image 1: red at 3*32+5, green 1024 later, blue 2048 later
    np.testing.assert_array_equal(ds.train_x[1, :, 3, 5], row[[101, 1024 + 101, 2048 + 101]])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_tar_gz(isolated, trusted_cifar, name):
    src = datasets.CIFAR_SOURCES[name]
    folder = isolated / "x" / src["folder"]
    members = write_cifar(folder, name)
    trusted_cifar(name, members)
    tar = isolated / "d" / src["archive"]
    tar.parent.mkdir()
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(folder, arcname=src["folder"])
    ds = datasets.load_dataset(name, data_dir=str(isolated / "d"), download=False)
    (tx, ty), _ = expected_cifar(members, name)
    np.testing.assert_array_equal(ds.train_x, tx)
    np.testing.assert_array_equal(ds.train_y, ty)
    assert ds.source == os.path.abspath(tar)


def test_cifar_download_then_load(isolated, monkeypatch, trusted_cifar):
    src = datasets.CIFAR_SOURCES["cifar10"]
    folder = isolated / "x" / src["folder"]
    members = write_cifar(folder, "cifar10")
    trusted_cifar("cifar10", members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=src["folder"])
    archive = buf.getvalue()
    monkeypatch.setitem(datasets.CIFAR_SOURCES, "cifar10", dict(src, md5=md5(archive)))
    serve(monkeypatch, {src["archive"]: archive})
    ds = datasets.load_dataset("cifar10", cache_dir=str(isolated / "cache"))
    assert ds.train_x.shape == (20, 3, 32, 32) and "downloaded" in ds.source


def test_cifar_member_md5_rejects_unofficial_batch(isolated):
    folder = isolated / "c"
    write_cifar(folder, "cifar10")  # not the official bytes, and nobody trusted them
    with pytest.raises(DatasetError, match=r"data_batch_1: MD5 .*, expected c99cafc152244af753f735de768cd75f"):
        datasets.load_cifar(str(folder), "cifar10")


def test_cifar_truncated_tar(isolated, trusted_cifar):
    src = datasets.CIFAR_SOURCES["cifar10"]
    members = write_cifar(isolated / "x" / src["folder"], "cifar10")
    trusted_cifar("cifar10", members)
    tar = isolated / src["archive"]
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(isolated / "x" / src["folder"], arcname=src["folder"])
    tar.write_bytes(tar.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        datasets.load_cifar(str(tar), "cifar10")


def test_cifar_unpickler_refuses_code(isolated, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    bad = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    folder = isolated / "c"
    members = write_cifar(folder, "cifar10")
    (folder / "data_batch_1").write_bytes(bad)
    members["data_batch_1"] = bad
    monkeypatch.setitem(datasets.CIFAR_MEMBER_MD5, "cifar10", {m: md5(b) for m, b in members.items()})
    with pytest.raises(DatasetError, match="data_batch_1.*not allowed"):
        datasets.load_cifar(str(folder), "cifar10")


# ----------------------------------------------------------------------------- image folder


def save(path, arr, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def test_image_folder_resize_and_center_crop(tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (16, 40, 3), dtype=np.uint8)  # H=16, W=40: shorter side == size
    save(str(tmp_path / "a" / "wide.png"), wide)
    save(str(tmp_path / "a" / "big.png"), np.full((48, 32, 3), 200, np.uint8))  # needs rescaling
    save(str(tmp_path / "b" / "gray.png"), np.full((20, 30), 77, np.uint8))  # grayscale PNG
    save(str(tmp_path / "b" / "photo.jpg"), np.full((30, 17, 3), 120, np.uint8), "JPEG")
    ds = datasets.load_image_folder(str(tmp_path), size=16, test_fraction=0.0)
    assert ds.classes == ["a", "b"]
    assert ds.train_x.shape == (4, 3, 16, 16) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (0, 3, 16, 16)
    np.testing.assert_array_equal(ds.train_y, [0, 0, 1, 1])
    # files sorted: a/big.png, a/wide.png, b/gray.png, b/photo.jpg
    assert (ds.train_x[0] == 200).all()
    np.testing.assert_array_equal(ds.train_x[1], wide[:, 12:28].transpose(2, 0, 1))
    assert (ds.train_x[2] == 77).all()  # gray -> RGB
    assert np.abs(ds.train_x[3].astype(int) - 120).max() <= 3  # JPEG is lossy


def test_image_folder_split_layout(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for c in ("cat", "dog"):
            for i in range(n):
                save(str(tmp_path / split / c / f"{i}.png"), np.full((10, 12, 3), i, np.uint8))
    ds = datasets.load_dataset(f"folder:{tmp_path}")  # default size 256
    assert ds.train_x.shape == (6, 3, 256, 256) and ds.test_x.shape == (2, 3, 256, 256)
    assert ds.classes == ["cat", "dog"]
    np.testing.assert_array_equal(ds.test_y, [0, 1])


def test_image_folder_expands_the_home_tilde(tmp_path, monkeypatch):
    # README's "--dataset folder:~/photos": the shell leaves a ~ after "folder:" alone
    monkeypatch.setenv("HOME", str(tmp_path))
    for c in ("cat", "dog"):
        for i in range(2):
            save(str(tmp_path / "photos" / c / f"{i}.png"), np.full((8, 8, 3), 9, np.uint8))
    ds = datasets.load_dataset("folder:~/photos")
    assert ds.classes == ["cat", "dog"] and len(ds.train_x) + len(ds.test_x) == 4
    assert len(ds.test_x) == 2      # round(0.1 x 2) is 0, but each class gives one to test


def test_image_folder_held_out_fraction_is_deterministic(tmp_path):
    for c in ("x", "y"):
        for i in range(10):
            save(str(tmp_path / c / f"{i:02d}.png"), np.full((8, 8, 3), i * 20, np.uint8))
    a = datasets.load_image_folder(str(tmp_path), size=8, test_fraction=0.3, seed=1)
    b = datasets.load_image_folder(str(tmp_path), size=8, test_fraction=0.3, seed=1)
    assert len(a.train_x) == 14 and len(a.test_x) == 6
    np.testing.assert_array_equal(np.bincount(a.test_y), [3, 3])
    np.testing.assert_array_equal(a.test_x, b.test_x)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    # train and test are disjoint and together are every image
    values = lambda ds, k: sorted(ds.train_x[ds.train_y == k, 0, 0, 0].tolist() +
                                  ds.test_x[ds.test_y == k, 0, 0, 0].tolist())
    assert values(a, 0) == values(a, 1) == [i * 20 for i in range(10)]


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty.*no class subfolders"):
        datasets.load_image_folder(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.load_image_folder(str(tmp_path / "missing"))
    (tmp_path / "bad" / "c").mkdir(parents=True)
    save(str(tmp_path / "bad" / "c" / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    save(str(tmp_path / "bad" / "d" / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "bad" / "c" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match="broken.png: cannot read image"):
        datasets.load_image_folder(str(tmp_path / "bad"), size=4)
    for c in ("x", "y"):               # one image a class: it stays in train
        save(str(tmp_path / "few" / c / "0.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="few: too few images to hold out a test set"):
        datasets.load_image_folder(str(tmp_path / "few"), size=4)
    (tmp_path / "noimg" / "c").mkdir(parents=True)
    (tmp_path / "noimg" / "c" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="noimg.c: class folder has no images"):
        datasets.load_image_folder(str(tmp_path / "noimg"))


def test_a_phone_photos_orientation_tag_is_applied(tmp_path):
    # A portrait photo is stored sideways with EXIF orientation 6 ("rotate 90 degrees
    # clockwise to view"): the network must get what a viewer shows, not the raw pixels.
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8] = 255                      # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    got = datasets.load_image(path, size=8, mode="L")[0]
    # rotated 90 degrees clockwise, the stored left half is the top half
    assert got[:4].mean() > 200 and got[4:].mean() < 55, got


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("gz", [True, False])
def test_a_named_folder_with_some_of_the_files_names_the_missing_ones(isolated, gz):
    # Passed over in silence, such a folder would make Fashion-MNIST fall back to the
    # bundled subset without saying why.
    write_idx_set(isolated / "d", gz=gz)
    os.remove(isolated / "d" / ("train-labels-idx1-ubyte" + (".gz" if gz else "")))
    for name in ("mnist", "fashion-mnist"):
        with pytest.raises(DatasetError, match=r"holds some of the .* files but not "
                                               r"train-labels-idx1-ubyte\(\.gz\)$"):
            datasets.load_dataset(name, data_dir=str(isolated / "d"))


def test_a_cifar_folder_without_one_batch_names_it(isolated, trusted_cifar):
    folder = isolated / "d" / "cifar10" / datasets.CIFAR_SOURCES["cifar10"]["folder"]
    trusted_cifar("cifar10", write_cifar(folder, "cifar10"))
    os.remove(folder / "data_batch_5")
    with pytest.raises(DatasetError, match="but not data_batch_5"):
        datasets.load_dataset("cifar10", data_dir=str(isolated / "d"))


def test_alexnet_data_may_be_the_datasets_own_folder(isolated, monkeypatch):
    write_idx_set(isolated / "m", gz=False)
    monkeypatch.setenv("ALEXNET_DATA", str(isolated / "m"))
    assert datasets.load_dataset("mnist", download=False).source == os.path.abspath(isolated / "m")
    monkeypatch.setenv("ALEXNET_DATA", str(isolated / "nowhere"))
    with pytest.warns(UserWarning, match="ALEXNET_DATA is .*nowhere.*not a folder"):
        with pytest.raises(DatasetError, match="not found"):
            datasets.load_dataset("mnist", download=False)


def test_alexnet_data_expands_the_home_tilde(isolated, monkeypatch):
    write_idx_set(isolated / "home" / "data" / "mnist")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    monkeypatch.setenv("ALEXNET_DATA", "~/data")
    assert datasets.load_dataset("mnist", download=False).source == \
        os.path.abspath(isolated / "home" / "data" / "mnist")


def test_a_malformed_md5sums_line_names_the_file_and_line(tmp_path):
    p = tmp_path / "MD5SUMS"
    p.write_text("# sums\n" + "0" * 32 + "  a.gz\nnot-a-sum\n")
    with pytest.raises(DatasetError, match=r"MD5SUMS, line 3: expected '<md5>  <file "
                                           r"name>', got 'not-a-sum'"):
        datasets.read_md5sums(str(p))
    p.write_text("0" * 32 + "  a.gz\n" + "F" * 32 + " *b.gz\n")
    assert datasets.read_md5sums(str(p)) == {"a.gz": "0" * 32, "b.gz": "f" * 32}


def test_alexnet_data_set_to_another_datasets_folder_is_skipped(isolated, monkeypatch):
    # $ALEXNET_DATA at the Fashion-MNIST files (here the bundled subset's) must not stop
    # MNIST from loading from the cache
    monkeypatch.setenv("ALEXNET_DATA", datasets.SUBSET_DIR)
    write_idx_set(isolated / "xdg" / "alexnet-from-scratch" / "mnist")
    with pytest.warns(UserWarning, match="ALEXNET_DATA .* skipped for mnist: .*not MNIST"):
        ds = datasets.load_dataset("mnist", download=False)
    assert ds.source == os.path.abspath(isolated / "xdg" / "alexnet-from-scratch" / "mnist")
    with pytest.raises(DatasetError, match="not MNIST"):     # a folder passed as such: said
        datasets.load_dataset("mnist", data_dir=datasets.SUBSET_DIR, download=False)
