"""The learning rate's schedule, as the paper set it (Section 5): start at 0.01 and
divide by 10 when the validation error stops improving, three times before the end.
Or, with --lr-drops, a fixed schedule: divide by 10 once given fractions of the
epochs are done."""
from __future__ import annotations


class Schedule:
    def __init__(self, config):
        self.lr = config.lr
        self.epochs = config.epochs
        self.patience = config.lr_patience
        self.max_drops = config.max_lr_drops
        self.fractions = config.lr_drop_fractions

    def describe(self) -> str:
        """The schedule in words, for the line that starts a run."""
        if self.fractions:
            over = f"{self.epochs} epoch{'s' * (self.epochs != 1)}"
            at = ", ".join(f"{100 * f:g}%" for f in self.fractions)
            return f"lr {self.lr:g}, divided by 10 after {at} of {over} (--lr-drops)"
        if self.max_drops == 0:
            return f"lr {self.lr:g} throughout (--max-lr-drops 0)"
        return (f"lr {self.lr:g}, divided by 10 after {self.patience} epochs without a new "
                f"best validation error, at most {self.max_drops} times")

    def after_epoch(self, state, optimizer, improved: bool) -> None:
        """Set the rate for the epoch after ``state.epoch``."""
        if self.fractions:
            due = sum(state.epoch >= f * self.epochs - 1e-9 for f in self.fractions)
            while state.lr_drops < due:
                drop(state, optimizer, f"{state.epoch} of {self.epochs} epochs done")
        elif not improved:
            state.since_best += 1
            if state.since_best >= self.patience and state.lr_drops < self.max_drops:
                state.since_best = 0
                drop(state, optimizer, f"validation error has not improved for "
                                       f"{self.patience} epochs")


def drop(state, optimizer, why: str) -> None:
    """Divide the learning rate by 10 (the paper's only change to it), and say why."""
    state.lr /= 10
    state.lr_drops += 1
    optimizer.lr = state.lr
    print(f"{why}: learning rate divided by 10, now {state.lr:g}")
