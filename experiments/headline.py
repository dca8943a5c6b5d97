"""The headline run: the ``mini`` preset on the full Fashion-MNIST, the paper's recipe.

    python -m experiments headline --run runs/full-30ep \\
        --log runs/full-30ep/train.log --command "python train.py ..." [--note TEXT]

records a finished ``train.py`` run in ``experiments/results/headline/``: its
metrics.json (every epoch's loss, errors, learning rate and time), its console logs,
its curves, and ``headline.json``, which holds the test errors, the epochs, the
learning-rate drops, the time per epoch, the machine, the commands and the SHA-256 of
``best.npz`` (the checkpoint itself, tens of MB, stays out of git: the hash lets
anyone check that a checkpoint they are given is the one reported).
``docs/RESULTS.md`` shows it above the table of claims.

A run that departs from the paper's recipe is recorded beside it, never over it:

    python -m experiments headline --variant lr02 --change "lr 0.02, patience 4" \
        --run runs/v2 --log ... --command ...

writes ``experiments/results/headline-lr02/`` and a section "A documented change" under
the headline in ``docs/RESULTS.md``, in the same form.

The target is the issue's: test top-1 error at most 6.0% with ten crops, i.e. 94.0%
accuracy, above every AlexNet-style entry of the Fashion-MNIST benchmark table.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import re
import shutil
import statistics
import sys

from bench.cpu import machine as bench_machine   # the CPU model and cores

TARGET = 0.06


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def summarize_run(metrics: dict) -> dict:
    """The numbers of a finished run, from its metrics.json."""
    hist = metrics["history"]
    secs = [h["seconds"] for h in hist]
    drops = [h["epoch"] for prev, h in zip(hist, hist[1:]) if h["lr"] != prev["lr"]]
    err = metrics.get("test_tencrop_top1_error", metrics["test_top1_error"])
    return dict(
        dataset=metrics["dataset"], model=metrics["model"], device=metrics["device"],
        test_tencrop_top1_error=err,
        test_center_top1_error=metrics["test_center_top1_error"],
        test_tencrop_top5_error=metrics.get("test_tencrop_top5_error"),
        epochs=len(hist), best_epoch=metrics["best_epoch"],
        best_val_top1_error=metrics["best_val_top1_error"],
        lr_first=hist[0]["lr"], lr_last=hist[-1]["lr"], lr_drop_epochs=drops,
        seconds_total=float(sum(secs)), seconds_per_epoch_median=float(statistics.median(secs)),
        seconds_per_epoch_min=float(min(secs)), seconds_per_epoch_max=float(max(secs)),
        target=TARGET, target_met=bool(err <= TARGET))


def record(run_dir, logs=(), commands=(), note="", machine=None, dest=None,
           change="") -> dict:
    """Copy the run's record into dest (default experiments/results/headline) and write
    headline.json; ``change`` says what a variant changes in the recipe.
    Raises FileNotFoundError naming a missing file of the run."""
    from experiments.__main__ import RESULTS
    dest = dest or os.path.join(RESULTS, "headline")
    need = [os.path.join(run_dir, f) for f in ("metrics.json", "best.npz")]
    for path in need + list(logs):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"experiments headline: {path} not found "
                                    f"(--run must be a finished train.py run)")
    with open(need[0]) as f:
        metrics = json.load(f)
    if "test_center_top1_error" not in metrics:
        raise ValueError(f"experiments headline: {need[0]} has no test errors; the run "
                         f"has not finished (resume it, or run --eval-only on best.npz)")
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(need[0], os.path.join(dest, "metrics.json"))
    if os.path.isfile(os.path.join(run_dir, "curves.png")):
        shutil.copyfile(os.path.join(run_dir, "curves.png"), os.path.join(dest, "curves.png"))
    kept_logs = []
    for i, log in enumerate(logs):
        name = f"train-{i + 1}.log" if len(logs) > 1 else "train.log"
        shutil.copyfile(log, os.path.join(dest, name))
        kept_logs.append(name)
    summary = summarize_run(metrics)
    summary.update(
        checkpoint="best.npz", checkpoint_sha256=sha256(need[1]),
        commands=list(commands), logs=kept_logs, note=note,
        machine=machine or bench_machine(),
        recorded=datetime.date.today().isoformat())
    if change:
        summary["change"] = change
    with open(os.path.join(dest, "headline.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def variant_dirs(results) -> list:
    """The recorded variants' folders (results/headline-NAME), sorted by name."""
    return sorted(d for d in glob.glob(os.path.join(results, "headline-*"))
                  if os.path.isfile(os.path.join(d, "headline.json")))


def results_md_lines(s: dict, rel="../experiments/results/headline") -> list:
    """The headline section of docs/RESULTS.md, or a variant's (s has a "change")."""
    pct = lambda v: f"{100 * v:.2f}%"
    verdict = ("**met**" if s["target_met"] else "**not met**")
    drops = (", ".join(str(e) for e in s["lr_drop_epochs"]) if s["lr_drop_epochs"]
             else "none")
    title = (f"### A documented change: {s['change']}" if s.get("change")
             else f"## The headline: `{s['model']}` on the full Fashion-MNIST")
    lines = [
        title, "",
        "| | |", "|---|---|",
        f"| test top-1 error, ten crops | **{pct(s['test_tencrop_top1_error'])}** "
        f"(target {pct(s['target'])}: {verdict}) |",
        f"| test top-1 error, centre crop | {pct(s['test_center_top1_error'])} |",
    ]
    if s.get("test_tencrop_top5_error") is not None:
        lines.append(f"| test top-5 error, ten crops | {pct(s['test_tencrop_top5_error'])} |")
    lines += [
        f"| epochs | {s['epochs']} (best validation error {pct(s['best_val_top1_error'])} "
        f"at epoch {s['best_epoch']}: the checkpoint tested) |",
        f"| learning rate | {s['lr_first']:g} to {s['lr_last']:g}, divided by 10 before "
        f"epoch(s) {drops} |",
        f"| time | {s['seconds_total'] / 3600:.1f} h of training, "
        f"{s['seconds_per_epoch_median'] / 60:.1f} min per epoch (median; "
        f"{s['seconds_per_epoch_min'] / 60:.1f} to {s['seconds_per_epoch_max'] / 60:.1f}), "
        f"validation included |",
        f"| machine | {s['machine']} ({s['device']}) |",
        f"| checkpoint | `{s['checkpoint']}` SHA-256 `{s['checkpoint_sha256']}` |",
        f"| record | [metrics.json]({rel}/metrics.json) (every epoch), "
        + ", ".join(f"[{log}]({rel}/{log})" for log in s["logs"])
        + f", [curves]({rel}/curves.png), recorded {s['recorded']} |",
        "", "Commands, in the order they ran:", "", "```bash",
        *s["commands"], "```", ""]
    if s.get("note"):
        lines += [s["note"], ""]
    what = "this variant" if s.get("change") else "the headline run"
    lines += [f"![Training curves of {what}]({rel}/curves.png)", ""]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments headline",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the finished train.py output folder")
    p.add_argument("--log", action="append", default=[],
                   help="a console log of the run (repeatable, in order)")
    p.add_argument("--command", action="append", default=[],
                   help="a command that produced the run (repeatable, in order)")
    p.add_argument("--note", default="", help="a paragraph shown under the table")
    p.add_argument("--machine", default=None,
                   help="default: this machine's CPU and cores, as the benchmark prints them")
    p.add_argument("--variant", metavar="NAME",
                   help="record a run that departs from the paper's recipe under this name "
                        "(letters, digits, '-'), beside the headline instead of over it")
    p.add_argument("--change", default="",
                   help="with --variant: what it changes in the recipe, e.g. 'lr 0.02'")
    a = p.parse_args(argv)
    dest = None
    if a.variant is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", a.variant):
            p.error(f"--variant must be letters, digits and '-', got {a.variant!r}")
        if not a.change.strip():
            p.error("--variant needs --change: what the variant changes in the recipe")
        from experiments.__main__ import RESULTS
        dest = os.path.join(RESULTS, f"headline-{a.variant}")
    elif a.change:
        p.error("--change goes with --variant NAME")
    try:
        s = record(a.run, a.log, a.command, a.note, a.machine, dest=dest,
                   change=a.change.strip())
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from experiments.__main__ import write_results_md
    write_results_md()
    print(f"{'variant ' + a.variant if a.variant else 'headline'}: "
          f"{100 * s['test_tencrop_top1_error']:.2f}% ten-crop test top-1 error "
          f"after {s['epochs']} epochs (target {100 * TARGET:.1f}%: "
          f"{'met' if s['target_met'] else 'not met'}); docs/RESULTS.md updated")
    return 0
