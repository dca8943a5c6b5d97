"""What a run carries from one step and one epoch to the next, and into a checkpoint."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Real

from engine.backend import get_array_module, to_numpy

# Points per epoch of the training-error curve kept in each history entry: the error of
# the batches since the previous point (the epoch's average lags by half an epoch, and
# "how many steps to 25% training error" needs finer steps than one epoch).
CURVE_POINTS = 10


class TrainingError(RuntimeError):
    """A run that cannot go on (NaN loss, bad checkpoint): reported in one line."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite (usually a learning rate too large): exit code 3,
    so that a learning-rate sweep can tell it from other failures."""


@dataclass
class EpochTally:
    """The training loss and accuracy of the epoch under way, step by step.

    Each step's loss and count of correct answers may still be on the GPU when they are
    recorded: ``record`` keeps them, and ``read`` brings the recorded ones to the host
    in one wait and adds them up in order, as if each had been read at its step. (A
    read makes the host wait for the GPU; reading every step would stop it queueing
    the next step's work while the GPU runs this one.)
    """
    steps: int                      # batches in the epoch
    images: int                     # images in the epoch
    seen: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0            # training time, validation not counted
    curve: list = field(default_factory=list)      # [fraction of the epoch, error] pairs
    window: list = field(default_factory=lambda: [0, 0])  # images, errors since last point
    pending: list = field(default_factory=list, repr=False)

    def record(self, step: int, images: int, loss, correct) -> None:
        self.pending.append((step, images, loss, correct))

    def read(self, on_non_finite) -> None:
        """Add up the recorded steps; a non-finite loss calls ``on_non_finite(step,
        value)``, which raises."""
        if not self.pending:
            return
        xp = get_array_module(self.pending[0][2])
        losses = to_numpy(xp.stack([p[2] for p in self.pending])).tolist()
        corrects = to_numpy(xp.stack([p[3] for p in self.pending])).tolist()
        steps = [(p[0], p[1]) for p in self.pending]
        self.pending.clear()
        every = max(1, self.steps // CURVE_POINTS)
        for (step, n), loss, ok in zip(steps, losses, corrects):
            if not math.isfinite(loss):
                on_non_finite(step, loss)
            self.seen += n
            self.loss_sum += loss * n
            self.correct += int(ok)
            self.window[0] += n
            self.window[1] += n - int(ok)
            if step % every == 0 or step == self.steps:
                self.curve.append([round(self.seen / self.images, 4),
                                   self.window[1] / self.window[0]])
                self.window = [0, 0]

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen

    @property
    def error(self) -> float:
        return 1 - self.correct / self.seen

    def to_dict(self) -> dict:
        return dict(seen=self.seen, correct=self.correct, loss_sum=self.loss_sum,
                    seconds=self.seconds, curve=self.curve, win=self.window)

    @classmethod
    def from_dict(cls, saved: dict, steps: int, images: int) -> "EpochTally":
        return cls(steps, images, seen=saved["seen"], correct=saved["correct"],
                   loss_sum=saved["loss_sum"], seconds=saved["seconds"],
                   curve=saved.get("curve", []), window=saved.get("win", [0, 0]))


@dataclass
class TrainState:
    """Where a run stands: saved in every checkpoint, so --resume goes on exactly."""
    lr: float
    settings: dict                  # the run's TrainConfig.settings()
    epoch: int = 0                  # whole epochs done
    step: int = 0                   # steps done of the next epoch (a run stopped mid-epoch)
    partial: dict | None = None     # that epoch's EpochTally.to_dict()
    lr_drops: int = 0
    best_val: float | None = None   # the lowest validation error so far
    best_epoch: int | None = None
    since_best: int = 0             # epochs since it
    history: list = field(default_factory=list)   # one dict per epoch
    data: dict | None = None        # what it trains on: its SHA-256, image count, source

    def end_epoch(self, tally: EpochTally, val: dict) -> bool:
        """Record the finished epoch; return whether it is the best so far. With no
        validation set every epoch is the newest best, so best.npz is the last one."""
        self.epoch += 1
        self.history.append(dict(
            epoch=self.epoch, train_loss=tally.loss, train_top1_error=tally.error,
            val_loss=val["loss"], val_top1_error=val["top1_error"],
            val_top5_error=val["top5_error"], lr=self.lr, seconds=tally.seconds,
            images_per_second=tally.seen / tally.seconds, train_curve=tally.curve))
        self.step, self.partial = 0, None
        improved = (val["top1_error"] is None or self.best_val is None
                    or val["top1_error"] < self.best_val)
        if improved:
            self.best_val, self.best_epoch, self.since_best = (val["top1_error"], self.epoch, 0)
        return improved

    def to_dict(self) -> dict:
        saved = dataclasses.asdict(self)
        saved["args"] = saved.pop("settings")
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> "TrainState":
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in saved.items() if k in names}
        return cls(settings=saved.get("args", {}), **kept)


# ---------------------------------------------------------------------------- checking a saved one

def _number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _optional(check):
    return lambda v: v is None or check(v)


# field: (check, what it must be, whether every checkpoint has it)
SAVED_FIELDS = {
    "lr": (lambda v: _number(v) and v > 0, "a positive number", True),
    "epoch": (_count, "an integer >= 0", True),
    "step": (_count, "an integer >= 0", True),
    "history": (lambda v: isinstance(v, list), "a list (one entry per epoch)", True),
    "args": (lambda v: isinstance(v, dict), "a dict of the run's settings", True),
    "partial": (_optional(lambda v: isinstance(v, dict)), "null or a dict", False),
    "lr_drops": (_count, "an integer >= 0", False),
    "best_val": (_optional(_number), "null or a number", False),
    "best_epoch": (_optional(lambda v: _count(v) and v >= 1), "null or an epoch >= 1", False),
    "since_best": (_count, "an integer >= 0", False),
    "data": (_optional(lambda v: isinstance(v, dict) and isinstance(v.get("sha256"), str)
                       and _count(v.get("images"))), "null or a dict with sha256 and images",
             False),
}
# what the report, the plots and the fingerprint of a run read of each epoch
HISTORY_FIELDS = {"epoch": _count, "train_loss": _number, "train_top1_error": _number,
                  "val_loss": _optional(_number), "val_top1_error": _optional(_number),
                  "lr": _number}
PARTIAL_FIELDS = {"seen": _count, "correct": _count, "loss_sum": _number, "seconds": _number}


def check_saved_state(saved: dict) -> None:
    """A ValueError naming the first field of ``saved`` (a checkpoint's train_state,
    as TrainState.to_dict writes it) that TrainState could not go on from."""
    for name, (check, what, required) in SAVED_FIELDS.items():
        if name not in saved:
            if required:
                raise ValueError(f"train_state has no {name!r}")
            continue
        if not check(saved[name]):
            raise ValueError(f"train_state.{name} must be {what}, got "
                             f"{_short(saved[name])}")
    entries = [("history", i, h, HISTORY_FIELDS) for i, h in enumerate(saved["history"])]
    if saved.get("partial") is not None:
        entries.append(("partial", None, saved["partial"], PARTIAL_FIELDS))
    for name, i, entry, fields in entries:
        where = f"train_state.{name}" + ("" if i is None else f"[{i}]")
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {_short(entry)}")
        for key, check in fields.items():
            if not check(entry.get(key)):
                raise ValueError(f"{where}.{key} is missing or of the wrong type "
                                 f"({_short(entry.get(key))})")
    if len(saved["history"]) != saved["epoch"]:
        raise ValueError(f"train_state.history has {len(saved['history'])} epoch(s) but "
                         f"train_state.epoch says {saved['epoch']}")
    if (saved.get("best_epoch") or 0) > saved["epoch"]:
        raise ValueError(f"train_state.best_epoch {saved['best_epoch']} is past "
                         f"train_state.epoch {saved['epoch']}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
