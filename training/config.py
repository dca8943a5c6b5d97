"""The settings of a run, in one dataclass whose defaults are the paper's recipe
(Section 5: SGD, batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01 divided
by 10 when the validation error stops improving, at most three times).

train.py turns its flags into a ``TrainConfig``; a notebook or a script builds one
directly: ``fit(TrainConfig(dataset="fashion-mnist-subset", model="tiny", epochs=2))``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from alexnet import network_config

DATASETS = ("fashion-mnist", "fashion-mnist-subset", "mnist", "cifar10", "cifar100")
PRESET_NAMES = ("mini", "paper", "tiny")
INITS = ("paper", "he", "caffe")


@dataclass
class TrainConfig:
    # data
    dataset: str = "fashion-mnist"      # one of DATASETS, or folder:PATH
    data_dir: str | None = None
    no_download: bool = False
    no_fallback: bool = False           # never train on the bundled subset instead
    train_limit: int | None = None      # only the first N training images
    val_fraction: float = 0.1           # held out of the training set
    no_crop: bool = False
    no_flip: bool = False
    no_pca: bool = False
    raw_pixels: bool = False            # pixels 0-255 as the paper, not 0-1
    ten_crop: bool = True
    no_prefetch: bool = False
    # model
    model: str = "mini"
    groups: int | None = None           # None: the preset's
    # He init by default, on every preset: with the paper's N(0, 0.01) the small presets
    # sit at chance for epochs (docs/TRAINING.md, "Pixels and initialization");
    # --init paper is the paper's.
    init: str = "he"
    activation: str = "relu"
    no_lrn: bool = False
    pool: str = "3,2"                   # size,stride
    dropout: float = 0.5
    width: float = 1.0
    # optimization
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_patience: int = 2
    max_lr_drops: int = 3
    lr_drops: str | None = None         # fixed drops at fractions of the epochs: "0.5,0.7"
    seed: int = 0
    # this invocation
    device: str = "cpu"
    out: str | None = None
    resume: str | None = None
    time_limit: float | None = None     # seconds
    eval_batch_size: int = 256
    quiet: bool = False
    overwrite: bool = False             # replace a run already in --out

    @property
    def pool_size_stride(self) -> tuple[int, int]:
        return parse_pool(self.pool)

    @property
    def lr_drop_fractions(self) -> list[float]:
        return parse_fractions(self.lr_drops)

    def settings(self) -> dict:
        """Every setting, as saved in checkpoints and metrics.json ("args")."""
        return dataclasses.asdict(self)

    def validate(self, training: bool = True) -> "TrainConfig":
        """Raise ValueError (or FileNotFoundError) naming the first bad setting."""
        for k in ("val_fraction", "dropout", "width", "lr", "momentum", "weight_decay",
                  "time_limit"):
            v = getattr(self, k)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{flag(k)} must be a finite number, got {v}")
        if not (self.dataset in DATASETS or self.dataset.startswith("folder:")):
            raise ValueError(f"--dataset: unknown dataset {self.dataset!r}; choose one of "
                             f"{', '.join(DATASETS)} or folder:PATH")
        for k in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"{flag(k)} must be >= 1, got {getattr(self, k)}")
        checks = [
            (self.train_limit is None or self.train_limit >= 2, "train_limit", ">= 2"),
            (0 <= self.val_fraction < 1, "val_fraction", "in [0, 1)"),
            (self.lr > 0, "lr", "positive"),
            (self.seed >= 0, "seed", ">= 0"),
            (self.lr_patience >= 1, "lr_patience", ">= 1 epoch"),
            (self.max_lr_drops >= 0, "max_lr_drops", ">= 0"),
            (self.groups is None or self.groups >= 1, "groups", ">= 1"),
            (self.time_limit is None or self.time_limit > 0, "time_limit",
             "a positive number of seconds"),
            (self.width > 0, "width", "positive"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
        ]
        for ok, k, what in checks:
            if not ok:
                raise ValueError(f"{flag(k)} must be {what}, got {getattr(self, k)}")
        if self.model not in PRESET_NAMES:
            raise ValueError(f"--model: unknown preset {self.model!r}; choose one of "
                             f"{', '.join(PRESET_NAMES)}")
        if self.init not in INITS:
            raise ValueError(f"--init: unknown {self.init!r}; choose one of {', '.join(INITS)}")
        if min(self.pool_size_stride) < 1:
            raise ValueError(f"--pool: size and stride must be >= 1, got {self.pool!r}")
        # --groups and --width checked before any data is loaded (with the preset's
        # input size; the network built later has the data's)
        network_config(self.model, groups=self.groups, pool=self.pool_size_stride,
                       dropout=self.dropout, seed=self.seed, width=self.width)
        if training and self.val_fraction == 0 and not self.lr_drop_fractions:
            raise ValueError("--val-fraction 0 leaves no validation set, and the default "
                             "schedule divides the learning rate when the validation error "
                             "stops improving: add a fixed schedule, e.g. --lr-drops 0.5,0.7")
        if self.data_dir is not None:          # --data-dir=~/x reaches us unexpanded
            self.data_dir = os.path.expanduser(self.data_dir)
            if not os.path.isdir(self.data_dir):
                raise FileNotFoundError(
                    f"--data-dir: {self.data_dir!r} is not a folder"
                    if os.path.exists(self.data_dir) else
                    f"--data-dir: folder {self.data_dir!r} does not exist")
        if self.resume is not None and not os.path.isfile(self.resume):
            raise FileNotFoundError(f"--resume: checkpoint {self.resume!r} " + (
                "is not a file" if os.path.exists(self.resume) else "does not exist"))
        return self


_TYPES = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float),
          "None": (type(None),)}


def check_settings(saved: dict, where: str) -> None:
    """A ValueError naming the first of ``saved``'s settings (a checkpoint's) that is
    not of its TrainConfig field's type (e.g. a string where a number belongs). Names
    TrainConfig does not know are left alone: they are never taken."""
    for f in dataclasses.fields(TrainConfig):
        if f.name not in saved:
            continue
        kinds = [k.strip() for k in str(f.type).split("|")]
        value = saved[f.name]
        ok = any(isinstance(value, _TYPES[k]) for k in kinds)
        if isinstance(value, bool) and "bool" not in kinds:
            ok = False
        if not ok:
            text = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ValueError(f"{where}.{f.name} must be {' or '.join(kinds)}, got {text}")


def flag(name: str) -> str:
    """'lr_patience' -> '--lr-patience'."""
    return "--" + name.replace("_", "-")


def parse_pool(text: str) -> tuple[int, int]:
    try:
        size, stride = (int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"--pool must be 'size,stride' such as 3,2; got {text!r}") from None
    return size, stride


def parse_fractions(text) -> list[float]:
    """'0.5,0.7' -> [0.5, 0.7]: increasing fractions in (0, 1); None or 'none' -> []."""
    if text is None or str(text).strip().lower() == "none":
        return []
    try:
        fractions = [float(t) for t in str(text).split(",")]
    except ValueError:
        fractions = None
    if not fractions or any(not 0 < f < 1 for f in fractions) or fractions != sorted(set(fractions)):
        raise ValueError(f"--lr-drops must be increasing fractions of the epochs between 0 "
                         f"and 1, such as 0.5,0.7; got {text!r}")
    return fractions


# Settings of the invocation, not of the run: never taken from a checkpoint.
PER_INVOCATION = ("resume", "device", "out", "quiet", "no_prefetch", "eval_batch_size",
                  "time_limit", "overwrite")

# Settings that make the run what it is: the network (rebuilt from the checkpoint), the
# data split and the shuffling (from the seed), the step size in images, the PCA and the
# learning rate (taken from the checkpoint's state). A resumed run given another value
# would ignore them or become a different run, so that is an error. (--epochs, the
# schedule and the augmentation switches may change.)
FIXED_ON_RESUME = ("dataset", "model", "groups", "init", "activation", "no_lrn", "pool",
                   "dropout", "width", "seed", "val_fraction", "train_limit",
                   "batch_size", "no_pca", "lr", "raw_pixels")
# Testing a checkpoint: the network's settings are the checkpoint's (the dataset may differ).
FIXED_ON_EVAL = ("model", "groups", "init", "activation", "no_lrn", "pool", "dropout",
                 "width", "raw_pixels")


def merge_saved_settings(config: TrainConfig, saved: dict, explicit: set, path: str,
                         evaluating: bool = False, warn=print) -> TrainConfig:
    """The run's settings from a checkpoint (``saved``, its "args"), except those given
    explicitly now (``explicit``: e.g. --epochs to train longer) and per-invocation
    ones. An explicit setting that would change what the checkpoint fixes
    (FIXED_ON_RESUME, or FIXED_ON_EVAL when ``evaluating``) is a ValueError naming it."""
    fixed = FIXED_ON_EVAL if evaluating else FIXED_ON_RESUME
    default = TrainConfig()
    # a setting the checkpoint lacks (one added since it was written) had its default
    had = {k: saved.get(k, getattr(default, k)) for k in fixed}
    clash = [k for k in fixed if k in explicit and getattr(config, k) != had[k]]
    command = "--eval-only" if evaluating else "--resume"
    if clash:
        said = ", ".join(f"{flag(k)} {getattr(config, k)!r} (the checkpoint's: {had[k]!r})"
                         for k in clash)
        how = ("--eval-only tests the network as it was trained" if evaluating else
               "a resumed run keeps its network, data split, batch size and learning rate")
        raise ValueError(f"{command} {path}: {said}: {how}; drop the flag, or start a new "
                         f"run without --resume")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    taken = {}
    for k, v in saved.items():
        if k in explicit or k in PER_INVOCATION or k not in known:
            continue
        if k == "data_dir" and v is not None and not os.path.isdir(v):
            # saved as given, perhaps relative to another folder or machine: search the
            # usual places instead (the dataset is checked wherever it is found)
            if warn:
                warn(f"note: the checkpoint's --data-dir {v!r} is not a folder here; "
                     f"looking for the data in the usual places")
            continue
        taken[k] = v
    return dataclasses.replace(config, **taken)
