"""Averaging the predictions of several trained networks (the paper, Section 6).

    python -m experiments ensemble runs/full-30ep/best.npz runs/v2/best.npz

The paper's best ILSVRC-2012 entry was not one network: "averaging the predictions of
five similar CNNs gives an error rate of 16.4%", against 18.2% for one (top-5). This
command does the same with ``train.py`` checkpoints: each network computes its softmax
output on the test set (the centre crop, and the average over ten crops, as in
``train.py``), and the ensemble's prediction is the mean of the networks' outputs.
It prints each network's test error and the ensemble's, and ``--out FILE`` also
writes them as JSON.

With three or more networks, ``--subsets`` also reports every smaller ensemble (each
pair, each three, ...) from the same outputs, at no extra cost: which networks add to
the average, and which only repeat another. ``--cache DIR`` keeps each network's
outputs in DIR, keyed by the checkpoint's SHA-256, the test set's and the crop, so a
later ensemble with that network does not test it again (minutes a network on a CPU);
a changed checkpoint or test set has another key, and a cached file of the wrong shape
is refused (after a change to the evaluation code itself, delete DIR).

Each checkpoint keeps its own input preparation (its mean image and crop size); the
dataset is the one the first checkpoint was trained on unless ``--dataset`` says
otherwise, and all of them must predict the same classes.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys

import numpy as np

from data.datasets import DatasetError
from engine.backend import GPUUnavailableError
from training import (TrainingError, dataset_kind, load_data, network_from_checkpoint,
                      save_weights_only, softmax_outputs, test_prep)
from training.metrics import class_errors, confusion_matrix, topk_correct


# What the ensemble takes from train.py: a network from its checkpoint, the test set,
# how a network prepares its images, and the network's softmax outputs.

def load_network(path, device="cpu"):
    """(model, mean image, the run's saved train.py arguments) of a checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"experiments ensemble: checkpoint {path!r} does not exist")
    ck, model = network_from_checkpoint(path, device)
    return model, ck["mean"], ck["train_state"].get("args", {})


def load_test_set(dataset, data_dir=None):
    """(the dataset, whose test images the networks are tested on; the kind of input
    preparation its networks were trained with)."""
    return load_data(dataset, data_dir, fallback=False), dataset_kind(dataset)


def test_preparation(kind, args, mean, model) -> dict:
    """How the network prepares a test image: its mean image, padding and crop."""
    return test_prep(kind, args, mean, model.config["input_size"])


def predict(model, x_u8, prep, batch_size=256, device="cpu", mode="center"):
    """(N, classes) float64 softmax outputs on the test images; mode 'ten' averages the
    ten crops' outputs, as train.py's evaluation does."""
    return softmax_outputs(model, x_u8, prep, batch_size, device, mode)


def sha256(path) -> str:
    """The SHA-256 of a file (a checkpoint), as sha256sum prints it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pct(v: float) -> str:
    """An error rate as a percentage, e.g. 0.0683 -> '6.83%'."""
    return f"{100 * v:.2f}%"


MODE_TEXT = {"center": "centre crop", "ten": "ten crops"}
TAG = {"center": "center", "ten": "tencrop"}     # the JSON keys' prefix for each mode


def say(line):
    """Where run() reports its progress from the command line: stderr, at once."""
    print(line, file=sys.stderr, flush=True)


def errors(probs, y):
    """Top-1 and top-5 error of the scores ``probs`` (N, classes) against labels y."""
    k5 = min(5, probs.shape[1])
    return (1 - topk_correct(probs, y, 1).mean(), 1 - topk_correct(probs, y, k5).mean())


def test_set_key(x, y) -> str:
    """A short hash of the test images and labels, for the cache's file names."""
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class OutputCache:
    """Softmax outputs kept on disk: DIR/<checkpoint sha256>-<test set hash>-<mode>.npy."""

    def __init__(self, folder):
        self.folder = folder

    def file(self, ck_hash, data_key, mode):
        return os.path.join(self.folder, f"{ck_hash[:32]}-{data_key}-{mode}.npy")

    def get(self, ck_hash, data_key, mode, shape):
        path = self.file(ck_hash, data_key, mode)
        if not os.path.isfile(path):
            return None
        try:
            probs = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"experiments ensemble: cached outputs {path} cannot be read "
                             f"({e}); delete the file") from None
        if probs.shape != shape or probs.dtype != np.float64:
            raise ValueError(f"experiments ensemble: cached outputs {path} have shape "
                             f"{probs.shape} and dtype {probs.dtype}, expected {shape} "
                             f"float64; delete the file")
        return probs

    def put(self, ck_hash, data_key, mode, probs):
        os.makedirs(self.folder, exist_ok=True)
        path = self.file(ck_hash, data_key, mode)
        tmp = path + ".part.npy"
        np.save(tmp, probs)
        os.replace(tmp, path)


def mean_errors(outputs, idx, y) -> dict:
    """The top-1 and top-5 errors, for each mode of ``outputs`` (mode -> list of the
    networks' outputs), of the mean output of the networks at indices ``idx``."""
    res = {}
    for m, outs in outputs.items():
        res[f"{TAG[m]}_top1_error"], res[f"{TAG[m]}_top5_error"] = \
            errors(sum(outs[i] for i in idx) / len(idx), y)
    return res


def subset_errors(outputs, y):
    """Every ensemble of 2 to n-1 of the n networks: a list of dicts with the networks'
    indices (from 0, in the order given) and the errors of their mean output."""
    n = len(next(iter(outputs.values())))
    return [dict(networks=list(idx), **mean_errors(outputs, idx, y))
            for k in range(2, n) for idx in itertools.combinations(range(n), k)]


def run(paths, dataset=None, data_dir=None, device="cpu", batch_size=256, ten_crop=True,
        progress=None, cache_dir=None, subsets=False):
    """Each network's and the ensemble's test errors, as a dict. ``progress``, if given,
    is called with a line of text as each network is evaluated (minutes on a CPU).
    ``cache_dir`` keeps and reuses each network's outputs; ``subsets`` adds the errors of
    every smaller ensemble of the networks (result["subsets"])."""
    nets = [load_network(p, device) for p in paths]
    trained_on = {p: args.get("dataset") for p, (_, _, args) in zip(paths, nets)}
    if len(set(trained_on.values())) > 1:
        raise ValueError("experiments ensemble: the networks were trained on different "
                         "datasets (" + ", ".join(f"{p}: {d}" for p, d in trained_on.items())
                         + "); an ensemble averages networks of one dataset")
    dataset = dataset or nets[0][2].get("dataset")
    if dataset is None:
        raise ValueError(f"experiments ensemble: {paths[0]} does not say which dataset it "
                         f"was trained on; pass --dataset")
    classes = {m.config["num_classes"] for m, _, _ in nets}
    if len(classes) > 1:
        raise ValueError(f"experiments ensemble: the checkpoints predict different numbers "
                         f"of classes ({sorted(classes)}); an ensemble needs the same classes")
    if data_dir is None:           # where the first network's run read its files, if here
        saved = nets[0][2].get("data_dir")
        data_dir = saved if saved and os.path.isdir(saved) else None
    ds, kind = load_test_set(dataset, data_dir)
    if ds.name != dataset and not dataset.startswith("folder:"):
        raise ValueError(f"experiments ensemble: the networks were trained on {dataset}, but "
                         f"{ds.name} was loaded ({ds.source}); pass --data-dir with the "
                         f"{dataset} files")
    modes = ["center"] + (["ten"] if ten_crop else [])
    outputs = {m: [] for m in modes}
    cache = OutputCache(cache_dir) if cache_dir else None
    data_key = test_set_key(ds.test_x, ds.test_y) if cache else None
    shape = (len(ds.test_y), len(ds.classes))
    result = dict(dataset=ds.name, test_images=int(len(ds.test_y)), device=device,
                  batch_size=batch_size, networks=[])
    for path, (model, mean, args) in zip(paths, nets):
        if model.config["in_channels"] != ds.test_x.shape[1]:
            raise ValueError(f"experiments ensemble: {path} expects "
                             f"{model.config['in_channels']} channel(s) but {ds.name} has "
                             f"{ds.test_x.shape[1]}")
        if model.config["num_classes"] != len(ds.classes):
            raise ValueError(f"experiments ensemble: {path} predicts "
                             f"{model.config['num_classes']} classes but {ds.name} has "
                             f"{len(ds.classes)}")
        prep = test_preparation(kind, args, mean, model)
        entry = dict(checkpoint=path)
        ck_hash = sha256(path) if cache else None
        cached = {m: cache.get(ck_hash, data_key, m, shape) for m in modes} if cache else {}
        todo = [m for m in modes if cached.get(m) is None]
        if progress:
            said = []
            if todo:
                said.append(f"testing on {len(ds.test_y)} images ("
                            + ", ".join(MODE_TEXT[m] for m in todo) + ")")
            if len(todo) < len(modes):
                said.append(", ".join(MODE_TEXT[m] for m in modes if m not in todo)
                            + " from the cache")
            progress(f"network {len(result['networks']) + 1}/{len(paths)}, {path}: "
                     + "; ".join(said))
        for m in modes:
            p = cached.get(m)
            if p is None:
                p = predict(model, ds.test_x, prep, batch_size, device, m)
                if cache:
                    cache.put(ck_hash, data_key, m, p)
            outputs[m].append(p)
            t = TAG[m]
            entry[f"{t}_top1_error"], entry[f"{t}_top5_error"] = errors(p, ds.test_y)
        result["networks"].append(entry)
    ens = mean_errors(outputs, range(len(paths)), ds.test_y)
    # where the ensemble's errors are, on the last mode (ten crops unless --no-ten-crop)
    conf = confusion_matrix(sum(outputs[modes[-1]]).argmax(axis=1), ds.test_y,
                            len(ds.classes))
    ens["class_top1_error"] = class_errors(conf, ds.classes)
    result["ensemble"] = ens
    if subsets:
        result["subsets"] = subset_errors(outputs, ds.test_y)
    return result


def table(result) -> str:
    ten = "tencrop_top1_error" in result["ensemble"]
    lines = [f"test set: {result['dataset']}, {result['test_images']} images; top-1 error",
             f"{'network':<50} {'centre':>8}" + (f" {'ten crops':>10}" if ten else "")]
    rows = [(f"{i}. {e['checkpoint']}", e) for i, e in enumerate(result["networks"], 1)]
    rows += [("ensemble of networks " + " + ".join(str(i + 1) for i in e["networks"]), e)
             for e in result.get("subsets", [])]
    rows.append((f"ensemble of {len(result['networks'])} (mean of the softmax outputs)",
                 result["ensemble"]))
    for name, e in rows:
        lines.append(f"{name:<50} {pct(e['center_top1_error']):>8}"
                     + (f" {pct(e['tencrop_top1_error']):>10}" if ten else ""))
    return "\n".join(lines)


def weights_main(argv=None) -> int:
    """python -m experiments weights CHECKPOINT... --out-dir DIR: weights-only copies."""
    p = argparse.ArgumentParser(
        prog="python -m experiments weights",
        description="Copy train.py checkpoints without their momentum buffers: half the "
                    "size, enough for --eval-only and python -m experiments ensemble, "
                    "not for --resume. Each CHECKPOINT goes to DIR/NAME.npz, NAME from "
                    "--names or the checkpoint's folder.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--out-dir", required=True, help="folder for the copies")
    p.add_argument("--names", default=None,
                   help="comma-separated names for the copies, one per checkpoint")
    a = p.parse_args(argv)
    names = (a.names.split(",") if a.names else
             [os.path.basename(os.path.dirname(os.path.abspath(c))) for c in a.checkpoints])
    if len(names) != len(a.checkpoints) or len(set(names)) != len(names):
        print(f"python -m experiments weights: need one distinct name per checkpoint, got "
              f"{names} for {len(a.checkpoints)} checkpoint(s); pass --names", file=sys.stderr)
        return 2
    os.makedirs(a.out_dir, exist_ok=True)
    for src, name in zip(a.checkpoints, names):
        dst = os.path.join(a.out_dir, name + ".npz")
        try:
            save_weights_only(src, dst)
        except (OSError, TrainingError) as e:
            print(f"python -m experiments weights: {e}", file=sys.stderr)
            return 1
        print(f"{src} -> {dst} ({os.path.getsize(dst) / 2**20:.1f} MiB)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments ensemble", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="train.py checkpoints (best.npz), two or more")
    p.add_argument("--dataset", default=None,
                   help="the test set (default: the one the first checkpoint trained on)")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-ten-crop", action="store_true", help="the centre crop only")
    p.add_argument("--out", default=None, help="also write the errors to this JSON file")
    p.add_argument("--subsets", action="store_true",
                   help="also every smaller ensemble of the networks (three or more)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="keep each network's test outputs in DIR and reuse them")
    a = p.parse_args(argv)
    if len(a.checkpoints) < 2:
        p.error("an ensemble needs two or more checkpoints")
    if a.subsets and len(a.checkpoints) < 3:
        p.error("--subsets needs three or more checkpoints (two have no smaller ensemble)")
    if a.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {a.batch_size}")
    try:
        result = run(a.checkpoints, a.dataset, a.data_dir, a.device, a.batch_size,
                     not a.no_ten_crop, progress=say, cache_dir=a.cache, subsets=a.subsets)
    except (FileNotFoundError, ValueError, DatasetError, GPUUnavailableError,
            TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0
