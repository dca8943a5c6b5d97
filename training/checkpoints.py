"""Checkpoints: one .npz holding a network's weights, the optimizer's momentum, the
run's state and how its images were prepared, so that --resume goes on exactly and
--eval-only tests the network as it was trained.

    param/NAME      the weights (AlexNet.state_dict())
    velocity/NAME   SGD's momentum buffers (absent in a weights-only file)
    mean            the training set's mean image; pca_eigvals, pca_eigvecs for RGB data
    classes         the class names (JSON), for --predict
    config          the network's constructor arguments (JSON)
    extra_state     the dropout layers' random streams (JSON)
    train_state     the TrainState (JSON), with a fingerprint of the training data

A checkpoint is read as data from outside, never trusted: every member's shape is
checked against what its config builds before the member is read, and the JSON
against what TrainState and AlexNet take (``load_checkpoint``). This module also
checks the output folder a run writes its checkpoints to (``prepare_output``).
"""
from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import zipfile

import numpy as np

from alexnet import (TEMP_PREFIX, TEMP_SUFFIX, AlexNet, atomic_savez, network_config,
                     parameter_shapes, remove_stale_temporaries, write_atomic)
from engine.backend import to_numpy
from training.config import check_settings
from training.state import TrainingError, check_saved_state


def save_checkpoint(path, model, optimizer, state, prep):
    """Write ``model``, ``optimizer``'s momentum (None: the weights only, marked
    ``weights_only``), the TrainState ``state`` and ``prep`` (mean, pca, classes)."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    if optimizer is None:
        arrays["weights_only"] = np.array(True)
    else:
        arrays.update({f"velocity/{k}": to_numpy(v) for k, v in optimizer.velocity.items()})
    arrays["mean"] = np.asarray(prep["mean"])
    if prep.get("classes") is not None:
        arrays["classes"] = np.array(json.dumps(list(prep["classes"])))
    if prep.get("pca") is not None:
        arrays["pca_eigvals"] = np.asarray(prep["pca"][0])
        arrays["pca_eigvecs"] = np.asarray(prep["pca"][1])
    arrays["config"] = np.array(json.dumps(model.config))
    arrays["extra_state"] = np.array(json.dumps(model.extra_state()))
    arrays["train_state"] = np.array(json.dumps(state.to_dict()))
    atomic_savez(path, arrays)


# ---------------------------------------------------------------------------- reading

JSON_KEYS = ("config", "train_state", "extra_state", "classes")
# The settings and history of a run are a few hundred kB after a hundred epochs.
MAX_JSON_BYTES = 64 << 20
ARRAY_GROUPS = ("param/", "velocity/", "swa/")     # each holds one array per parameter


def load_checkpoint(path, arrays: bool = True) -> dict:
    """A checkpoint's members by name, with config, train_state, extra_state and classes
    decoded from JSON; with ``arrays`` False only those (and no array is read).

    Checked before use, as data from outside: a TrainingError names the first member or
    key that is missing, of the wrong type or shape, or (arrays) not finite. No member
    is read before its shape is known to be the one its config's network has."""
    def bad(reason):
        return TrainingError(f"checkpoint {path!r} is not a readable train.py checkpoint "
                             f"({reason})")
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise bad(e.strerror or str(e)) from None
    if not stat.S_ISREG(mode):        # a FIFO would block the read
        raise bad("not a regular file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise bad("not a zip/npz file") from None
    try:
        with zf:
            headers = member_headers(zf, bad)
            ck = read_settings(zf, headers, bad)
            check_array_shapes(ck["config"], headers, bad)
            if "weights_only" in headers:
                ck["weights_only"] = read_member(zf, headers["weights_only"][2], bad)
            if arrays:
                for key, (_, _, info) in headers.items():
                    if key not in JSON_KEYS and key != "weights_only":
                        ck[key] = read_member(zf, info, bad)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise bad(f"damaged: {e}") from None
    if arrays:
        check_finite(ck, path)
    return ck


def member_headers(zf, bad) -> dict:
    """``{key: (shape, dtype, ZipInfo)}`` of every member, from its .npy header alone."""
    headers = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise bad(f"member {info.filename!r} is not a NumPy array")
        key = info.filename[:-len(".npy")]
        try:
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f".npy format version {version}")
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise bad(f"{key} is not a readable NumPy array: {e}") from None
        if dtype.hasobject:
            raise bad(f"{key} holds Python objects, which a checkpoint never does")
        headers[key] = (tuple(shape), dtype, info)
    return headers


def read_member(zf, info, bad):
    """One member's array; its header was checked by member_headers."""
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise bad(f"{info.filename[:-4]}: {e}") from None


def read_settings(zf, headers, bad) -> dict:
    """The JSON members, decoded and checked: config (AlexNet's arguments), train_state
    (a TrainState with the run's settings), extra_state and classes."""
    needed = {"config": "the network's settings",
              "train_state": "the run's state: AlexNet.save writes the network alone, "
                             "which AlexNet.load reads",
              "mean": "the training images' mean image"}
    for key, what in needed.items():
        if key not in headers:
            raise bad(f"no {key}, {what}")
    ck = {}
    for key in JSON_KEYS:
        if key not in headers:
            continue
        shape, dtype, info = headers[key]
        if shape != () or dtype.kind != "U" or dtype.itemsize > MAX_JSON_BYTES:
            raise bad(f"{key} is not a JSON text but a {dtype} array of shape {shape}")
        try:
            ck[key] = json.loads(str(read_member(zf, info, bad)))
        except json.JSONDecodeError as e:
            raise bad(f"{key} is not valid JSON: {e}") from None
    ck.setdefault("extra_state", {})
    expect = dict(config=dict, train_state=dict, extra_state=dict, classes=list)
    for key, kind in expect.items():
        if key in ck and not isinstance(ck[key], kind):
            raise bad(f"{key} must be a JSON {kind.__name__}, got {type(ck[key]).__name__}")
    if "classes" in ck and not all(isinstance(c, str) for c in ck["classes"]):
        raise bad("classes must be a list of names")
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
               and v >= 0 for k, v in ck["extra_state"].items()):
        raise bad("extra_state must map dropout layers to call counts (integers >= 0)")
    check_network_config(ck["config"], bad)
    try:
        check_saved_state(ck["train_state"])
        check_settings(ck["train_state"]["args"], "train_state.args")
    except ValueError as e:
        raise bad(str(e)) from None
    return ck


def check_network_config(config: dict, bad) -> dict:
    """The checked network settings (network_config) of a checkpoint's config."""
    known = inspect.signature(network_config).parameters
    for k in config:
        if k not in known:
            raise bad(f"config key {k!r} is not a setting of AlexNet (it takes "
                      f"{', '.join(known)})")
    if "preset" not in config:
        raise bad("config has no 'preset'")
    try:
        return network_config(**config)
    except (ValueError, TypeError) as e:
        raise bad(f"config: {e}") from None


def check_array_shapes(config: dict, headers, bad) -> None:
    """Every array member has the shape the network of ``config`` gives it: param/* its
    parameters exactly (velocity/* and swa/* too, where present), mean the image's."""
    net = network_config(**config)
    expected = parameter_shapes(net)
    for group in ARRAY_GROUPS:
        names = {k[len(group):]: k for k in headers if k.startswith(group)}
        if not names and group != "param/":
            continue
        for name in expected:
            if name not in names:
                raise bad(f"no {group}{name}: the network its config builds has {name}")
        for name, key in names.items():
            if name not in expected:
                raise bad(f"{key} is not a parameter of the network its config builds")
            shape, dtype, _ = headers[key]
            if shape != expected[name] or dtype.kind != "f":
                raise bad(f"{key} is a {dtype} array of shape {shape}; the network its "
                          f"config builds has float {expected[name]}")
    c, size = net["in_channels"], net["input_size"]
    shape, dtype, _ = headers["mean"]
    if (dtype.kind != "f" or len(shape) != 3 or shape[0] != c
            or not size <= min(shape[1:]) <= max(shape[1:]) <= 2 * size):
        raise bad(f"mean is a {dtype} array of shape {shape}; the mean image of the "
                  f"network's {c}-channel {size}x{size} input is float ({c}, H, W), with "
                  f"H and W from {size} to {2 * size}")
    sizes = {"pca_eigvals": (3,), "pca_eigvecs": (3, 3), "weights_only": ()}
    known = set(JSON_KEYS) | set(sizes) | {"mean"}
    for key, (shape, dtype, _) in headers.items():
        if key.startswith(ARRAY_GROUPS):
            continue
        if key not in known:
            raise bad(f"member {key!r} is not part of a train.py checkpoint")
        if key in sizes and (shape != sizes[key] or dtype.kind not in "fb"):
            raise bad(f"{key} is a {dtype} array of shape {shape}, not {sizes[key]}")


def check_finite(ck: dict, path) -> None:
    """A TrainingError naming the first array that holds NaN or infinity: such a
    network can be neither trained on nor tested."""
    what = {"param/": "non-finite weights", "velocity/": "non-finite momentum",
            "swa/": "non-finite averaged weights", "mean": "a non-finite mean image",
            "pca_eigvals": "non-finite colour PCA", "pca_eigvecs": "non-finite colour PCA"}
    for key, value in ck.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            continue
        kind = next((w for k, w in what.items() if key == k or key.startswith(k)), None)
        if kind and not np.isfinite(value).all():
            raise TrainingError(f"checkpoint {path!r} holds {kind}: {key} has NaN or "
                                f"infinite values (a run that diverged?), so it can be "
                                f"neither trained on nor tested")


def weights_of(ck: dict) -> dict:
    """The network's weights in a loaded checkpoint, by parameter name."""
    return {k[len("param/"):]: v for k, v in ck.items() if k.startswith("param/")}


def network_from_checkpoint(path, device="cpu"):
    """(the checkpoint as load_checkpoint reads it, its network on ``device``)."""
    ck = load_checkpoint(path)
    model = AlexNet(**ck["config"])
    model.load_state_dict(weights_of(ck))
    model.to(device)
    return ck, model


def save_weights_only(src, dst) -> list:
    """Write checkpoint ``src`` without its momentum buffers (velocity/*), to ``dst``:
    half the size, and all that testing a network needs. The file is marked
    ``weights_only``, and --resume refuses it: resuming with the momentum reset would
    silently change the run. Returns the names of the arrays written."""
    load_checkpoint(src)                 # a readable checkpoint, or say so
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith(("velocity/", "swa/"))}
    arrays["weights_only"] = np.array(True)
    atomic_savez(dst, arrays)
    return sorted(arrays)


def run_fingerprint(history) -> list:
    """What identifies a run's epochs: each one's number and training loss."""
    return [(h["epoch"], h["train_loss"]) for h in history]


def is_runs_best(path, state) -> bool:
    """Whether ``path`` is the best.npz this run (``state``) wrote: the epoch it names,
    with the same history up to it; not a best.npz another run left there."""
    if not os.path.isfile(path):
        return False
    try:
        saved = load_checkpoint(path, arrays=False)["train_state"]
    except TrainingError:
        return False
    return (saved.get("epoch") == state.best_epoch
            and run_fingerprint(saved.get("history", []))
            == run_fingerprint(state.history)[:saved.get("epoch", 0)])


def carry_best(src, dst, state) -> bool:
    """A run resumed into another folder (--out) brings its best.npz along, so that its
    final test is of the best epoch, whichever folder it was written in. Returns
    whether it wrote ``dst``."""
    if os.path.abspath(src) == os.path.abspath(dst) or is_runs_best(dst, state):
        return False
    if not is_runs_best(src, state):
        print(f"warning: {src} is not this run's best checkpoint (epoch "
              f"{state.best_epoch}); unless a later epoch does better, the final test "
              f"will be of the last epoch's weights", file=sys.stderr)
        return False
    with open(src, "rb") as f:
        data = f.read()
    try:
        write_atomic(dst, data)
    except OSError as e:
        raise TrainingError(f"cannot copy {src} to {dst} ({e.strerror or e}); nothing "
                            f"was trained") from None
    return True


# ---------------------------------------------------------------------------- the output folder

RUN_FILES = ("metrics.json", "last.npz", "best.npz")     # what says a folder holds a run


def prepare_output(folder, what: str, may_hold_a_run: bool, remedy: str | None = None,
                   clean: bool = True) -> list:
    """Make sure ``folder`` (``what`` names it in messages, e.g. "--out runs/a") is a
    folder, made if need be, that this process can write to; unless
    ``may_hold_a_run``, that it holds no run's files (metrics.json, last.npz, best.npz).
    A ValueError says what is wrong in one line, and ``remedy`` what to do about a run
    there. With ``clean``, removes the temporary files a killed run left there, and
    returns their names."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{what} is not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{what}: cannot create the folder ({e.strerror or e})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{what}: cannot write files there ({e.strerror or e})") from None
    held = [name for name in RUN_FILES if os.path.lexists(os.path.join(folder, name))]
    if held and not may_hold_a_run:
        remedy = remedy or (f"continue it with --resume {os.path.join(folder, 'last.npz')}, "
                            f"choose another --out, or replace it with --overwrite")
        raise ValueError(f"{what}: the folder already holds a run ({', '.join(held)}); "
                         f"{remedy}")
    return remove_stale_temporaries(folder) if clean else []


def checkpoint_bytes(num_params: int) -> int:
    """The size of a checkpoint: weights and momentum, float32."""
    return 2 * 4 * num_params


def check_room(folder, num_params: int) -> None:
    """A ValueError unless ``folder`` has room for last.npz and best.npz."""
    need = 2 * checkpoint_bytes(num_params)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ValueError(f"{folder}: not enough room for the checkpoints: last.npz and "
                         f"best.npz need about {megabytes(need)} ({num_params:,} "
                         f"parameters, weights and momentum in float32, in each), and "
                         f"{megabytes(free)} is free")


def megabytes(n: int) -> str:
    return f"{math.ceil(n / 1e6):,} MB"
