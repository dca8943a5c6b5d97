"""Checkpoints: one .npz holding a network's weights, the optimizer's momentum, the
run's state and how its images were prepared, so that --resume goes on exactly and
--eval-only tests the network as it was trained.

    param/NAME      the weights (AlexNet.state_dict())
    velocity/NAME   SGD's momentum buffers (absent in a weights-only file)
    mean            the training set's mean image; pca_eigvals, pca_eigvecs for RGB data
    classes         the class names (JSON), for --predict
    config          the network's constructor arguments (JSON)
    extra_state     the dropout layers' random streams (JSON)
    train_state     the TrainState (JSON)
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

from alexnet import AlexNet, atomic_savez
from engine.backend import to_numpy
from training.state import TrainingError


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


def load_checkpoint(path) -> dict:
    """The arrays of a checkpoint, with config, train_state, extra_state and classes
    decoded from JSON; TrainingError if it is not one this project wrote."""
    try:
        with np.load(path, allow_pickle=False) as f:
            ck = {k: f[k] for k in f.files}
        ck["config"] = json.loads(str(ck["config"]))
        ck["train_state"] = json.loads(str(ck["train_state"]))
        ck["extra_state"] = json.loads(str(ck.get("extra_state", np.array("{}"))))
        if "classes" in ck:
            ck["classes"] = json.loads(str(ck["classes"]))
    except Exception as e:
        raise TrainingError(f"checkpoint {path!r} is not a readable train.py checkpoint ({e})") \
            from e
    return ck


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
        saved = load_checkpoint(path)["train_state"]
    except TrainingError:
        return False
    return (saved.get("epoch") == state.best_epoch
            and run_fingerprint(saved.get("history", []))
            == run_fingerprint(state.history)[:saved.get("epoch", 0)])


def carry_best(src, dst, state) -> None:
    """A run resumed into another folder (--out) brings its best.npz along, so that its
    final test is of the best epoch, whichever folder it was written in."""
    if os.path.abspath(src) == os.path.abspath(dst) or is_runs_best(dst, state):
        return
    if not is_runs_best(src, state):
        print(f"warning: {src} is not this run's best checkpoint (epoch "
              f"{state.best_epoch}); unless a later epoch does better, the final test "
              f"will be of the last epoch's weights", file=sys.stderr)
        return
    shutil.copyfile(src, dst + ".part")
    os.replace(dst + ".part", dst)
