"""What a hostile but realistic user does to train.py (issue #39): run twice into one
folder, plant links, fill the disk, feed edited or foreign checkpoints, absurd
networks, one-class datasets, FIFOs, other data on --resume, gzip bombs. Each case
ends in one line and a non-zero exit, or works as documented, and nothing that was on
disk before is changed. Every file here is made by the test itself."""
import errno
import gzip
import io
import json
import os
import shutil
import signal
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

import alexnet
import train
import training.checkpoints
import training.loop
from alexnet import AlexNet
from data import datasets
from data.datasets import DatasetError
from tests.conftest import ROOT

SUBSET = os.path.join(ROOT, "data", "fashion-mnist-subset")
QUICK = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
         "--train-limit", "384", "--batch-size", "64", "--quiet", "--no-ten-crop"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished one-epoch run (metrics.json, last.npz, best.npz), made once: tests
    copy it (``run_copy``) rather than change it."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def one_line_error(capsys, starts="error: "):
    err = capsys.readouterr().err.strip()
    assert err.startswith(starts) and len(err.splitlines()) == 1, err
    return err


def snapshot(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))
            if (folder / p).is_file()}


def temporaries(folder):
    return [p for p in os.listdir(folder)
            if p.startswith((alexnet.TEMP_PREFIX, alexnet.OLD_TEMP_PREFIX))]


# ---------------------------------------------------------------- 1. no run overwrites another

def test_a_new_run_into_a_folder_holding_a_run_is_refused(run_copy, capsys):
    before = snapshot(run_copy)
    assert train.main(QUICK + ["--epochs", "1", "--seed", "7", "--out", str(run_copy)]) == 2
    err = one_line_error(capsys)
    assert "already holds a run (metrics.json, last.npz, best.npz)" in err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(run_copy) == before


def test_the_default_output_folder_is_never_overwritten(trained, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "runs" / "fashion-mnist-subset-tiny"
    shutil.copytree(trained, default)
    before = snapshot(default)
    assert train.main(QUICK + ["--epochs", "1"]) == 2
    err = one_line_error(capsys)
    assert "the output folder runs/fashion-mnist-subset-tiny (the default --out)" in err
    assert snapshot(default) == before


def test_overwrite_lets_a_new_run_replace_the_one_in_its_folder(run_copy, capsys):
    old = json.loads((run_copy / "metrics.json").read_text())
    assert train.main(QUICK + ["--epochs", "1", "--seed", "7", "--out", str(run_copy),
                               "--overwrite"]) == 0
    new = json.loads((run_copy / "metrics.json").read_text())
    assert old["args"]["seed"] == 0 and new["args"]["seed"] == 7
    assert new["args"]["overwrite"] is True


def test_overwrite_is_per_invocation_and_never_taken_from_a_checkpoint():
    from training.config import PER_INVOCATION, TrainConfig
    assert "overwrite" in PER_INVOCATION and TrainConfig().overwrite is False


def test_a_resume_into_another_runs_folder_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    before = snapshot(other)
    assert train.main(["--resume", str(trained / "last.npz"), "--epochs", "2",
                       "--out", str(other)]) == 2
    assert "already holds a run" in one_line_error(capsys)
    assert snapshot(other) == before


def test_eval_only_out_never_replaces_a_runs_metrics(trained, run_copy, capsys):
    before = snapshot(run_copy)
    assert train.main(["--eval-only", str(trained / "best.npz"), "--out", str(run_copy)]) == 2
    err = one_line_error(capsys)
    assert "already holds a run" in err and "--overwrite" in err
    assert snapshot(run_copy) == before


def test_make_train_can_run_twice():
    # the Makefile's command writes to runs/quickstart every time: it says --overwrite
    with open(os.path.join(ROOT, "Makefile")) as f:
        args = next(line for line in f if line.startswith("TRAIN_ARGS ?="))
    assert "--out runs/quickstart" in args and "--overwrite" in args


# ---------------------------------------------------------------- 2. no planted link is followed

def test_writes_never_follow_a_link_planted_in_the_output_folder(trained, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    # the names the old code wrote through, and the plots, in a folder with no run yet
    for name in ("metrics.json.part", "best.npz.part", "curves.png", "kernels.png"):
        os.symlink(victim, out / name)
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    assert victim.read_text() == "precious"
    for name in ("curves.png", "kernels.png", "metrics.json", "last.npz"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    # a folder whose run files are links, replaced with --overwrite: the links go,
    # not what they point to
    again = tmp_path / "again"
    again.mkdir()
    for name in ("metrics.json", "last.npz", "best.npz"):
        os.symlink(victim, again / name)
    assert train.main(["--resume", str(trained / "last.npz"), "--epochs", "2",
                       "--out", str(again), "--overwrite"]) == 0
    assert victim.read_text() == "precious"
    assert not any((again / n).is_symlink() for n in ("metrics.json", "last.npz", "best.npz"))
    # --eval-only's eval-NAME.json beside the checkpoint
    ev = tmp_path / "ev"
    shutil.copytree(trained, ev)
    os.symlink(victim, ev / "eval-best.json")
    assert train.main(["--eval-only", str(ev / "best.npz")]) == 0
    assert victim.read_text() == "precious"
    assert json.loads((ev / "eval-best.json").read_text())["test_top1_error"] > 0


def test_a_write_is_made_in_a_new_exclusive_file_then_renamed(tmp_path):
    made = []
    real = alexnet.tempfile.mkstemp

    def recording(**kw):
        fd, name = real(**kw)
        made.append((kw, name))
        return fd, name

    (tmp_path / "f.json").write_text("old")
    import unittest.mock
    with unittest.mock.patch.object(alexnet.tempfile, "mkstemp", recording):
        alexnet.write_atomic(str(tmp_path / "f.json"), b"new")
    kw, name = made[0]
    assert kw["dir"] == str(tmp_path) and os.path.basename(name).startswith(".alexnet-")
    assert (tmp_path / "f.json").read_bytes() == b"new" and temporaries(tmp_path) == []


# ---------------------------------------------------------------- 3, 7. networks as asked, or refused

@pytest.mark.parametrize("kwargs, said", [
    (dict(groups=3), "groups=3 does not divide conv1's 16 kernels, the input channels of "
                     "conv2"),
    (dict(groups=1000), "groups=1000 does not divide conv1's 16 kernels"),
    (dict(groups=32), "groups may be 1, 2, 4, 8, 16"),
    (dict(groups=2, width=0.3), "groups=2 does not divide conv1's 5 kernels"),
    (dict(width=1e-9), "width=1e-09 leaves conv1 no kernel (16 x 1e-09 rounds to 0): every "
                       "conv layer needs at least one kernel per group, so width must be at "
                       "least 0.03125"),
    (dict(width=1e9), "this project builds at most 2,000,000,000"),
    (dict(width=float("inf")), "width must be positive and finite"),
])
def test_absurd_or_reshaped_networks_are_refused_naming_the_layer_and_numbers(kwargs, said):
    with pytest.raises(ValueError, match="AlexNet: ") as e:
        AlexNet("tiny", **kwargs)
    assert said in str(e.value), str(e.value)


def test_the_presets_keep_their_networks():
    assert AlexNet("paper").num_params() == 60_965_224
    assert AlexNet("mini").num_params() == 4_557_514
    assert AlexNet("tiny").num_params() == 96_074
    # groups that divide every count build exactly the kernels asked for
    net = AlexNet("tiny", groups=4)
    assert [net.params[f"conv{i}.w"].shape[0] for i in range(1, 6)] == [16, 32, 48, 48, 32]


@pytest.mark.parametrize("flags, said", [
    (["--groups", "3"], "groups=3 does not divide conv1's 16 kernels"),
    (["--width", "1e9"], "would have"),
    (["--width", "1e-9"], "leaves conv1 no kernel"),
])
def test_train_py_refuses_them_in_one_line_before_training(tmp_path, capsys, flags, said):
    assert train.main(QUICK + ["--epochs", "1", "--out", str(tmp_path / "o")] + flags) == 2
    assert said in one_line_error(capsys)
    assert not (tmp_path / "o").exists()          # refused before anything was made


def test_parameter_shapes_are_those_of_the_network_built():
    for kw in (dict(preset="paper"), dict(preset="mini", groups=2, pool=(2, 2), lrn=False),
               dict(preset="tiny", width=0.5, input_size=32, in_channels=3)):
        net = AlexNet(**kw)
        assert alexnet.parameter_shapes(net.config) == {k: v.shape
                                                        for k, v in net.params.items()}


# ---------------------------------------------------------------- 4. output failures

def test_an_out_that_is_a_file_or_under_one_is_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert train.main(QUICK + ["--out", str(f)]) == 2
    assert f"--out {f} is not a folder" in one_line_error(capsys)
    assert train.main(QUICK + ["--out", str(f / "sub")]) == 2
    assert "cannot create the folder" in one_line_error(capsys)
    assert f.read_text() == "x"


def test_an_unwritable_out_is_refused_before_the_data_is_loaded(tmp_path, monkeypatch,
                                                               capsys):
    # (the tests may run as root, for whom a read-only folder is writable: the failure
    # to create a file there is simulated)
    def denied(**kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    def no_data(*a, **kw):
        raise AssertionError("the data were loaded before the folder was checked")

    monkeypatch.setattr(training.checkpoints.tempfile, "mkstemp", denied)
    monkeypatch.setattr(training.loop, "load_data", no_data)
    assert train.main(QUICK + ["--out", str(tmp_path / "ro")]) == 2
    assert "cannot write files there (Permission denied)" in one_line_error(capsys)


def test_no_room_for_the_checkpoints_is_refused_before_training(tmp_path, monkeypatch,
                                                               capsys):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(training.checkpoints.shutil, "disk_usage",
                        lambda path: usage._replace(free=100_000))
    assert train.main(QUICK + ["--out", str(tmp_path / "o")]) == 2
    err = one_line_error(capsys)
    # 96,074 parameters: weights and momentum, float32, twice
    assert "not enough room for the checkpoints" in err and "2 MB" in err and "96,074" in err
    assert not (tmp_path / "o" / "last.npz").exists()


def full_disk_after(monkeypatch, writes):
    """os.fsync (each safe write makes one) fails with ENOSPC after ``writes`` calls."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(alexnet.os, "fsync", fsync)


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    full_disk_after(monkeypatch, 4)        # epoch 1: best, last, curves, kernels
    assert train.main(QUICK + ["--epochs", "3", "--out", str(out)]) == 1
    err = one_line_error(capsys)
    assert "No space left on device" in err and f"{out / 'last.npz'}, is kept" in err
    assert f"--resume {out / 'last.npz'}" in err
    monkeypatch.undo()
    ck = training.checkpoints.load_checkpoint(str(out / "last.npz"))
    assert ck["train_state"]["epoch"] == 1
    assert temporaries(out) == []


def test_eval_only_on_a_full_disk_leaves_nothing_behind(trained, tmp_path, monkeypatch,
                                                        capsys):
    full_disk_after(monkeypatch, 0)
    ev = tmp_path / "ev"
    assert train.main(["--eval-only", str(trained / "best.npz"), "--out", str(ev)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write {ev / 'metrics.json'} (No space left")
    assert os.listdir(ev) == []


# ---------------------------------------------------------------- 5. classes

def photo_folder(root, classes, n=3):
    from PIL import Image
    for c in classes:
        os.makedirs(root / c)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return f"folder:{root}"


def test_a_dataset_of_one_class_is_refused(tmp_path, capsys):
    ds = photo_folder(tmp_path / "one", ["cats"])
    assert train.main(["--dataset", ds, "--model", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "one class folder (cats): a classifier needs at least two" in one_line_error(capsys)


def test_every_class_needs_a_training_image():
    from training.data import check_classes
    x = np.zeros((4, 1, 8, 8), np.uint8)
    ds = datasets.Dataset("d", x, np.array([0, 0, 2, 2]), x, np.array([0, 1, 2, 3]),
                          ["a", "b", "c", "d"], "here")
    with pytest.raises(DatasetError, match="no training image of class\\(es\\) 'b', 'd'"):
        check_classes(ds)
    check_classes(datasets.Dataset("d", x, np.array([0, 1, 2, 3]), x, np.array([0]),
                                   ["a", "b", "c", "d"], "here"))


def test_a_folder_dataset_with_a_class_without_training_images_is_refused(tmp_path):
    photo_folder(tmp_path / "p" / "train", ["a", "b"])
    os.makedirs(tmp_path / "p" / "train" / "c")
    with pytest.raises(DatasetError, match="c: class folder has no images"):
        datasets.load_image_folder(str(tmp_path / "p"), size=8)


# ---------------------------------------------------------------- 6, 10. checkpoints as data

def arrays_of(path):
    with np.load(path, allow_pickle=True) as f:
        return {k: f[k] for k in f.files}


def edit_json(key, change):
    def edit(a):
        obj = json.loads(str(a[key]))
        change(obj)
        a[key] = np.array(json.dumps(obj))
    return edit


def drop(key):
    return lambda a: a.pop(key)


def put(key, value):
    return lambda a: a.__setitem__(key, value)


EDITS = {
    "config with an extra key": (edit_json("config", lambda c: c.update(colour=1)),
                                 "config key 'colour' is not a setting of AlexNet"),
    "config of the wrong type": (edit_json("config", lambda c: c.update(groups="2")),
                                 "config: AlexNet: groups must be an integer >= 1"),
    "config that reshapes the net": (edit_json("config", lambda c: c.update(groups=3)),
                                     "config: AlexNet: groups=3 does not divide"),
    "train_state without lr": (edit_json("train_state", lambda s: s.pop("lr")),
                               "train_state has no 'lr'"),
    "train_state lr a string": (edit_json("train_state", lambda s: s.update(lr="fast")),
                                "train_state.lr must be a positive number, got 'fast'"),
    "a setting of the wrong type": (
        edit_json("train_state", lambda s: s["args"].update(dataset=5)),
        "train_state.args.dataset must be str, got 5"),
    "a history entry that is no dict": (
        edit_json("train_state", lambda s: s["history"].__setitem__(0, "x")),
        "train_state.history[0] must be a dict"),
    "train_state not JSON": (put("train_state", np.array("{not json")),
                             "train_state is not valid JSON"),
    "extra_state of the wrong type": (put("extra_state", np.array('{"drop6": "x"}')),
                                      "extra_state must map dropout layers"),
    "a missing weight": (drop("param/fc8.w"), "no param/fc8.w: the network its config "
                                              "builds has fc8.w"),
    "a weight of the wrong shape": (put("param/fc8.w", np.zeros((3, 3), np.float32)),
                                    "param/fc8.w is a float32 array of shape (3, 3); the "
                                    "network its config builds has float (10, 128)"),
    "a missing momentum buffer": (drop("velocity/conv1.b"), "no velocity/conv1.b"),
    "a foreign member": (put("payload", np.zeros(3)),
                         "member 'payload' is not part of a train.py checkpoint"),
    "an object array": (put("mean", np.array([{"a": 1}], dtype=object)),
                        "mean holds Python objects"),
    "a mean image of the wrong shape": (put("mean", np.zeros((1, 3), np.float32)),
                                        "mean is a float32 array of shape (1, 3)"),
    "no train_state (AlexNet.save's file)": (drop("train_state"), "no train_state"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_an_edited_or_foreign_checkpoint_is_one_line_naming_the_key(trained, tmp_path,
                                                                    capsys, name):
    edit, said = EDITS[name]
    arrays = arrays_of(trained / "last.npz")
    edit(arrays)
    path = tmp_path / "edited.npz"
    np.savez(path, **arrays)
    before = path.read_bytes()
    for argv in (["--resume", str(path), "--out", str(tmp_path / "o")],
                 ["--eval-only", str(path), "--out", str(tmp_path / "e")]):
        assert train.main(argv) == 1, argv
        err = one_line_error(capsys)
        assert f"checkpoint {str(path)!r} is not a readable train.py checkpoint (" in err
        assert said in err, err
    assert path.read_bytes() == before and not (tmp_path / "o").exists()


def write_npz_with_member_header(path, arrays, key, header):
    """An npz of ``arrays`` whose member ``key`` has only an .npy header (``header``'s
    shape and dtype) and a few bytes: what a member of that size looks like before it
    is read."""
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            if k == key:
                np.lib.format.write_array_header_1_0(buf, header)
                buf.write(b"\0" * 16)
            else:
                np.lib.format.write_array(buf, np.asarray(v), allow_pickle=False)
            zf.writestr(k + ".npy", buf.getvalue())


def test_a_checkpoint_member_is_checked_against_its_size_before_it_is_read(trained,
                                                                           tmp_path):
    # a 2 GiB param/fc8.w used to be read whole, then fail with a broadcast error that
    # named neither the file nor the array
    path = tmp_path / "huge.npz"
    write_npz_with_member_header(path, arrays_of(trained / "last.npz"), "param/fc8.w",
                                 {"descr": "<f4", "fortran_order": False,
                                  "shape": (1 << 29,)})
    tracemalloc.start()
    try:
        with pytest.raises(training.state.TrainingError) as e:
            training.checkpoints.load_checkpoint(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "param/fc8.w is a float32 array of shape (536870912,)" in str(e.value)
    assert str(path) in str(e.value) and peak < 50e6, peak


# ---------------------------------------------------------------- 8. --predict reads regular files

def test_predict_refuses_a_fifo_instead_of_hanging(trained, tmp_path, capsys):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise AssertionError("--predict hung on a FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        rc = train.main(["--eval-only", str(trained / "best.npz"), "--predict", str(fifo)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert rc == 2
    assert "not a regular file" in one_line_error(capsys)
    assert train.main(["--eval-only", str(trained / "best.npz"), "--predict",
                       str(tmp_path)]) == 2
    assert "not a regular file" in one_line_error(capsys)


# ---------------------------------------------------------------- 9. the data a run resumes on

def changed_subset(folder):
    """A copy of the bundled subset with one training pixel changed, its MD5SUMS
    updated: the same dataset name, other images."""
    shutil.copytree(SUBSET, folder)
    p = folder / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(p.read_bytes()))
    raw[16 + 200] ^= 0xFF                                # the first image's 200th pixel
    p.write_bytes(gzip.compress(bytes(raw), mtime=0))
    sums = (folder / "MD5SUMS").read_text().splitlines()
    digest = datasets.md5_file(str(p))
    (folder / "MD5SUMS").write_text("\n".join(
        f"{digest}  {p.name}" if line.endswith(p.name) else line for line in sums) + "\n")
    return folder


def test_a_resume_on_other_data_is_refused_naming_both(run_copy, tmp_path, capsys):
    from training.data import data_fingerprint
    other = changed_subset(tmp_path / "other")
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy / "last.npz"), "--epochs", "2",
                       "--data-dir", str(other)]) == 2
    err = one_line_error(capsys)
    theirs = data_fingerprint(datasets.load_fashion_subset(SUBSET), 384)["sha256"]
    ours = data_fingerprint(datasets.load_fashion_subset(str(other)), 384)["sha256"]
    assert "these are not the data the run was trained on" in err
    assert theirs[:16] in err and ours[:16] in err and theirs != ours
    assert snapshot(run_copy) == before


def test_a_checkpoint_without_a_fingerprint_resumes_with_a_note(run_copy, capsys):
    arrays = arrays_of(run_copy / "last.npz")
    edit_json("train_state", lambda s: s.pop("data"))(arrays)
    np.savez(run_copy / "last.npz", **arrays)
    capsys.readouterr()
    assert train.main(["--resume", str(run_copy / "last.npz"), "--epochs", "2"]) == 0
    assert "records no fingerprint of its training data" in capsys.readouterr().err
    ck = training.checkpoints.load_checkpoint(str(run_copy / "last.npz"), arrays=False)
    assert ck["train_state"]["data"]["images"] == 384       # recorded from now on


# ---------------------------------------------------------------- 10. bounded reads of idx files

def idx_header(dims, magic=2051):
    return struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    # 1 MB of gzip that inflates to 1 GiB: a header of 12 images, then zeros. Gzip
    # members one after another make one stream, so the bomb is cheap to build.
    mib = gzip.compress(bytes(1 << 20), compresslevel=9)
    bomb = gzip.compress(idx_header((12, 28, 28)) + bytes(1 << 20)) + mib * 1023
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bomb)
    assert len(bomb) < 1.5e6
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="has trailing bytes: its header says dims "
                                               r"\(12, 28, 28\) = 9424 bytes, and the "
                                               "content goes on past them"):
            datasets.read_idx(str(path), 2051)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak


def test_an_idx_header_claiming_more_than_any_mnist_file_is_refused_unread(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_header((1 << 20, 28, 28)) + bytes(100))
    with pytest.raises(DatasetError, match="more than any MNIST-style file"):
        datasets.read_idx(str(path), 2051)


# ---------------------------------------------------------------- 11. messages that say what is true

def test_a_nan_checkpoint_is_refused_as_non_finite_not_called_good(run_copy, capsys):
    arrays = arrays_of(run_copy / "last.npz")
    arrays["param/conv1.w"][0, 0, 0, 0] = np.nan
    np.savez(run_copy / "last.npz", **arrays)
    assert train.main(["--resume", str(run_copy / "last.npz"), "--epochs", "2"]) == 1
    err = one_line_error(capsys)
    assert "holds non-finite weights: param/conv1.w has NaN" in err and "good" not in err


def test_a_nan_mean_image_is_named_as_the_mean_image(run_copy, capsys):
    arrays = arrays_of(run_copy / "best.npz")
    arrays["mean"][0, 3, 3] = np.nan
    np.savez(run_copy / "best.npz", **arrays)
    assert train.main(["--eval-only", str(run_copy / "best.npz"), "--out",
                       str(run_copy / "ev")]) == 1
    err = one_line_error(capsys)
    assert "holds a non-finite mean image: mean has NaN" in err and "weights" not in err


def test_random_bytes_named_npz_are_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(2000))
    assert train.main(["--eval-only", str(junk)]) == 1
    err = one_line_error(capsys)
    assert "(not a zip/npz file)" in err and "allow_pickle" not in err
    with pytest.raises(ValueError, match="not a zip/npz file"):
        AlexNet.load(str(junk))


def test_a_data_dir_that_is_a_file_is_not_a_folder(capsys):
    assert train.main(QUICK + ["--data-dir", "/etc/passwd"]) == 2
    assert "--data-dir: '/etc/passwd' is not a folder" in one_line_error(capsys)
    with pytest.raises(DatasetError, match="is not a folder"):
        datasets.load_dataset("mnist", data_dir="/etc/passwd", download=False)


def test_a_resume_without_best_npz_does_not_claim_it_wrote_one(run_copy, capsys):
    os.remove(run_copy / "best.npz")
    capsys.readouterr()
    assert train.main(["--resume", str(run_copy / "last.npz"), "--epochs", "1"]) == 0
    wrote = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("wrote ")]
    assert wrote == [f"wrote {run_copy / 'metrics.json'}, curves.png, kernels.png"], wrote
    assert not (run_copy / "best.npz").exists()


def test_ctrl_c_during_the_final_test_ends_in_one_line(tmp_path, monkeypatch, capsys):
    real = training.loop.evaluate

    def interrupted_test(*args, **kw):
        if kw.get("confusion"):                      # the final test, not validation
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(training.loop, "evaluate", interrupted_test)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted during the final test; the checkpoints are kept: test "
                   f"again with python train.py --eval-only {out / 'best.npz'}")


def test_stale_temporaries_are_removed_at_the_next_run(run_copy, capsys):
    for name in (".alexnet-k1ll3d.tmp", ".tmp-abc123.npz"):
        (run_copy / name).write_bytes(b"half a checkpoint")
    (run_copy / ".alexnet-keep").write_text("not ours")
    capsys.readouterr()
    assert train.main(["--resume", str(run_copy / "last.npz"), "--epochs", "1"]) == 0
    assert "removed 2 temporary file(s) that a stopped run left" in capsys.readouterr().err
    assert temporaries(run_copy) == [".alexnet-keep"]


def test_a_failed_write_leaves_no_temporary_and_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "last.npz"
    target.write_bytes(b"the last good one")
    full_disk_after(monkeypatch, 0)
    with pytest.raises(OSError, match="No space left"):
        alexnet.atomic_savez(str(target), {"a": np.zeros(3)})
    assert target.read_bytes() == b"the last good one" and temporaries(tmp_path) == []


def test_best_npz_is_written_before_last_npz(tmp_path, monkeypatch):
    # a stop between the two writes then leaves best.npz ahead of last.npz's record,
    # never one epoch behind it
    order, real = [], training.loop.save_checkpoint

    def recording(path, *args):
        order.append(os.path.basename(path))
        return real(path, *args)

    monkeypatch.setattr(training.loop, "save_checkpoint", recording)
    assert train.main(QUICK + ["--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert order == ["best.npz", "last.npz"]
