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

Several runs make an ensemble (the paper's Section 6, ``python -m experiments
ensemble``), recorded as a variant: each network's metrics, curves and checkpoint hash,
and the test error of their averaged outputs:

    python -m experiments headline --variant ensemble3 --change "3 networks averaged" \
        --run runs/s0 --run runs/s1 --run runs/s2 [--ensemble ens.json] --log ...

``--ensemble`` takes the JSON that ``python -m experiments ensemble ... --out`` wrote
(on a GPU machine, say); without it the ensemble is evaluated here from the runs'
``best.npz``. A run folder may hold ``best.npz.sha256`` (the hash, as ``sha256sum``
writes it) instead of a checkpoint that stayed on another machine.

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

from engine.environment import machine as this_machine   # the CPU model and cores

TARGET = 0.06
# how far (as a fraction) a network's test errors in an ensemble's JSON may be from its
# run's own for the two to count as one network: 3 images of 10,000 (GPU rounding)
SAME_NETWORK_TOL = 3e-4 + 1e-9


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
    cosine = bool(metrics.get("args", {}).get("cosine"))     # train.py --cosine
    pairs = list(zip(hist, hist[1:]))
    # a cosine taken up on --resume (a warm restart) starts where the rate last rose;
    # before it only falls by 10 are drops (a stretched cosine's own steps are not)
    rises = [h["epoch"] for prev, h in pairs if h["lr"] > prev["lr"]] if cosine else []
    cosine_from = rises[-1] if rises else 1
    drops = [h["epoch"] for prev, h in pairs
             if (h["lr"] < prev["lr"] / 5 and h["epoch"] < cosine_from if cosine
                 else h["lr"] != prev["lr"])]
    err = metrics.get("test_tencrop_top1_error", metrics["test_top1_error"])
    device = metrics["device"] + (", TF32 matrix products" if metrics.get("cupy_tf32") else "")
    return dict(
        dataset=metrics["dataset"], model=metrics["model"], device=device,
        test_tencrop_top1_error=err,
        test_center_top1_error=metrics["test_center_top1_error"],
        test_tencrop_top5_error=metrics.get("test_tencrop_top5_error"),
        epochs=len(hist), best_epoch=metrics["best_epoch"],
        stopped_by_time_limit=bool(metrics.get("stopped_by_time_limit", False)),
        epochs_planned=metrics.get("epochs_planned", len(hist)),
        best_val_top1_error=metrics["best_val_top1_error"],
        lr_first=hist[0]["lr"], lr_last=hist[-1]["lr"], lr_drop_epochs=drops,
        lr_schedule="cosine" if cosine else "steps", cosine_from=cosine_from,
        seconds_total=float(sum(secs)), seconds_per_epoch_median=float(statistics.median(secs)),
        seconds_per_epoch_min=float(min(secs)), seconds_per_epoch_max=float(max(secs)),
        target=TARGET, target_met=bool(err <= TARGET),
        # where the errors are, if train.py reported it (runs from 2026-11-28 on)
        class_top1_error=metrics.get("test_class_top1_error"))


def run_checkpoint_hash(run_dir) -> str:
    """SHA-256 of the run's best.npz, or the hash its best.npz.sha256 file holds."""
    ck = os.path.join(run_dir, "best.npz")
    if os.path.isfile(ck):
        return sha256(ck)
    side = ck + ".sha256"
    if os.path.isfile(side):
        with open(side) as f:
            digest = f.read().split()[:1]
        if digest and re.fullmatch(r"[0-9a-f]{64}", digest[0]):
            return digest[0]
        raise ValueError(f"experiments headline: {side} does not hold a SHA-256")
    raise FileNotFoundError(f"experiments headline: {ck} not found (nor {side}); --run "
                            f"must be a finished train.py run")


def copy_logs(logs, dest) -> list:
    """Copy the console logs into dest as train.log (or train-1.log, train-2.log, ...)."""
    kept = []
    for i, log in enumerate(logs):
        name = f"train-{i + 1}.log" if len(logs) > 1 else "train.log"
        shutil.copyfile(log, os.path.join(dest, name))
        kept.append(name)
    return kept


# What a headline run must be: the whole Fashion-MNIST (not the bundled subset train.py
# falls back to, not the first N images), tested on ten crops.
HEADLINE_DATA = dict(dataset="fashion-mnist", train_limit=None)


def check_headline_run(metrics, path):
    """Raise ValueError naming what makes the run at ``path`` no headline run."""
    wrong = []
    if metrics.get("dataset") != HEADLINE_DATA["dataset"]:
        wrong.append(f"it was trained on {metrics.get('dataset')}, not "
                     f"{HEADLINE_DATA['dataset']}")
    limit = metrics.get("args", {}).get("train_limit")
    if limit != HEADLINE_DATA["train_limit"]:
        wrong.append(f"it used the first {limit} training images only (--train-limit)")
    if "test_tencrop_top1_error" not in metrics:
        wrong.append("it was not tested on ten crops (--no-ten-crop)")
    elif metrics.get("test_eval") == "five-crop":
        wrong.append("it was trained without reflections (--no-flip), so tested on five "
                     "crops, not ten")
    if wrong:
        raise ValueError(f"experiments headline: {path}: " + "; ".join(wrong)
                         + ": the headline is the whole dataset, ten crops")


def finished_metrics(run_dir) -> dict:
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"experiments headline: {path} not found "
                                f"(--run must be a finished train.py run)")
    with open(path) as f:
        metrics = json.load(f)
    if "test_center_top1_error" not in metrics:
        raise ValueError(f"experiments headline: {path} has no test errors; the run "
                         f"has not finished (resume it, or test its best.npz: python "
                         f"train.py --eval-only RUN/best.npz --out RUN)")
    check_headline_run(metrics, path)
    return metrics


def record_ensemble(run_dirs, ensemble_json=None, logs=(), commands=(), note="",
                    machine=None, dest=None, change="") -> dict:
    """Record several finished runs and the test error of their averaged outputs (from
    ``ensemble_json``, else evaluated here) in dest, as a variant."""
    for log in logs:
        if not os.path.isfile(log):
            raise FileNotFoundError(f"experiments headline: {log} not found")
    runs = [finished_metrics(d) for d in run_dirs]
    hashes = [run_checkpoint_hash(d) for d in run_dirs]
    if ensemble_json is not None:
        if not os.path.isfile(ensemble_json):
            raise FileNotFoundError(f"experiments headline: {ensemble_json} not found")
        with open(ensemble_json) as f:
            ens = json.load(f)
    else:
        from experiments.ensemble import run as ensemble_run, say
        ens = ensemble_run([os.path.join(d, "best.npz") for d in run_dirs], progress=say)
    nets = ens.get("networks", [])
    if len(nets) != len(run_dirs) or "tencrop_top1_error" not in ens.get("ensemble", {}):
        raise ValueError(f"experiments headline: the ensemble ({ensemble_json}) has "
                         f"{len(nets)} networks with ten-crop errors; --run gave "
                         f"{len(run_dirs)}")
    # the ensemble must be of these runs: each network's test errors are its run's own,
    # to within SAME_NETWORK_TOL (on a GPU with TF32, the ensemble's batches of another
    # size take other cuBLAS paths, and one test image of 10,000 may change its answer)
    for d, m, net in zip(run_dirs, runs, nets):
        mine = (m.get("test_tencrop_top1_error"), m["test_center_top1_error"])
        theirs = (net.get("tencrop_top1_error"), net["center_top1_error"])
        if any(a is None or abs(a - b) > SAME_NETWORK_TOL for a, b in zip(mine, theirs)):
            raise ValueError(f"experiments headline: the ensemble's network "
                             f"{net['checkpoint']} has test errors {theirs}, the run {d} "
                             f"{mine}: not the same network (give --run in the order of "
                             f"the ensemble's checkpoints)")
    os.makedirs(dest, exist_ok=True)
    networks, secs = [], []
    for i, (d, m, digest) in enumerate(zip(run_dirs, runs, hashes), 1):
        shutil.copyfile(os.path.join(d, "metrics.json"), os.path.join(dest, f"metrics-{i}.json"))
        curves = None
        if os.path.isfile(os.path.join(d, "curves.png")):
            curves = f"curves-{i}.png"
            shutil.copyfile(os.path.join(d, "curves.png"), os.path.join(dest, curves))
        n = summarize_run(m)
        n.update(metrics=f"metrics-{i}.json", curves=curves, checkpoint_sha256=digest,
                 seed=m.get("args", {}).get("seed"))
        networks.append(n)
        secs += [h["seconds"] for h in m["history"]]
    with open(os.path.join(dest, "ensemble.json"), "w") as f:
        json.dump(ens, f, indent=1)
    kept_logs = copy_logs(logs, dest)
    e = ens["ensemble"]
    first = networks[0]
    err = e["tencrop_top1_error"]
    summary = dict(
        dataset=first["dataset"], model=first["model"], device=first["device"],
        test_tencrop_top1_error=err, test_center_top1_error=e["center_top1_error"],
        test_tencrop_top5_error=e.get("tencrop_top5_error"), networks=networks,
        seconds_total=float(sum(secs)), seconds_per_epoch_median=float(statistics.median(secs)),
        target=TARGET, target_met=bool(err <= TARGET), commands=list(commands),
        logs=kept_logs, note=note, machine=machine or this_machine(),
        recorded=datetime.date.today().isoformat(), change=change,
        class_top1_error=e.get("class_top1_error"))
    with open(os.path.join(dest, "headline.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def record(run_dir, logs=(), commands=(), note="", machine=None, dest=None,
           change="") -> dict:
    """Copy the run's record into dest (default experiments/results/headline) and write
    headline.json; ``change`` says what a variant changes in the recipe.
    Raises FileNotFoundError naming a missing file of the run."""
    from experiments.__main__ import RESULTS
    dest = dest or os.path.join(RESULTS, "headline")
    metrics = finished_metrics(run_dir)
    digest = run_checkpoint_hash(run_dir)
    for log in logs:
        if not os.path.isfile(log):
            raise FileNotFoundError(f"experiments headline: {log} not found")
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(os.path.join(run_dir, "metrics.json"), os.path.join(dest, "metrics.json"))
    if os.path.isfile(os.path.join(run_dir, "curves.png")):
        shutil.copyfile(os.path.join(run_dir, "curves.png"), os.path.join(dest, "curves.png"))
    kept_logs = copy_logs(logs, dest)
    summary = summarize_run(metrics)
    summary.update(
        checkpoint="best.npz", checkpoint_sha256=digest,
        commands=list(commands), logs=kept_logs, note=note,
        machine=machine or this_machine(),
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


def pct(v: float) -> str:
    """An error rate as a percentage, e.g. 0.0683 -> '6.83%'."""
    return f"{100 * v:.2f}%"


def epochs_text(n: dict) -> str:
    """'40', or '23 of 40 (stopped by --time-limit)' for a run tested before its end."""
    if n.get("stopped_by_time_limit"):
        return f"{n['epochs']} of {n['epochs_planned']} (stopped by --time-limit)"
    return str(n["epochs"])


def chosen_text(s: dict) -> str:
    """Which epoch's weights were tested, and why."""
    if s.get("best_val_top1_error") is None:      # --val-fraction 0
        return (f"no validation set, every training image trained: the last epoch, "
                f"{s['best_epoch']}, tested")
    return (f"best validation error {100 * s['best_val_top1_error']:.2f}% at epoch "
            f"{s['best_epoch']}: the checkpoint tested")


def hardest_text(s) -> str:
    """The four classes with the highest test error, from s["class_top1_error"]."""
    from engine.metrics import hardest_classes
    return ", ".join(f"{c} {100 * e:.2f}%"
                     for c, e in hardest_classes(s["class_top1_error"], 4))


def ensemble_md_lines(s: dict, rel: str) -> list:
    """A recorded ensemble's section of docs/RESULTS.md: each network, then the average."""
    verdict = "**met**" if s["target_met"] else "**not met**"
    lines = [f"### A documented change: {s['change']}", "",
             "| network | seed | epochs | ten crops | centre crop | checkpoint SHA-256 | "
             "record |", "|---|---|---|---|---|---|---|"]
    for i, n in enumerate(s["networks"], 1):
        rec = f"[metrics]({rel}/{n['metrics']})" + (
            f", [curves]({rel}/{n['curves']})" if n.get("curves") else "")
        lines.append(f"| {i} | {n.get('seed')} | {epochs_text(n)} | "
                     f"{pct(n['test_tencrop_top1_error'])} | {pct(n['test_center_top1_error'])}"
                     f" | `{n['checkpoint_sha256']}` | {rec} |")
    mean = statistics.mean(n["test_tencrop_top1_error"] for n in s["networks"])
    (med,), unit = in_one_unit(s["seconds_per_epoch_median"])
    lines += [
        f"| **average of the {len(s['networks'])} networks' outputs** | | | "
        f"**{pct(s['test_tencrop_top1_error'])}** (target {pct(s['target'])}: {verdict}; "
        f"each network {pct(mean)} on average) | {pct(s['test_center_top1_error'])} | | "
        f"[ensemble.json]({rel}/ensemble.json) |",
        "",
        *([f"The average's hardest classes (test top-1 error): {hardest_text(s)}.", ""]
          if s.get("class_top1_error") else []),
        f"Time: {hours_or_minutes(s['seconds_total'])} of training in all, "
        f"{med} {unit} per epoch (median, training only), on {s['machine']} "
        f"({s['device']}); recorded {s['recorded']}"
        + (". Logs: " + ", ".join(f"[{log}]({rel}/{log})" for log in s["logs"])
           if s["logs"] else "") + ".", ""]
    if s["commands"]:
        lines += ["Commands, in the order they ran:", "", "```bash", *s["commands"], "```", ""]
    if s.get("note"):
        lines += [s["note"], ""]
    return lines


def overview_md_lines(records: list) -> list:
    """The section of docs/RESULTS.md that lists every recorded attempt at the target,
    lowest ten-crop error first, each linked to its own section. ``records`` holds
    (anchor, name, summary) triples: the headline's, then each variant's."""
    ranked = sorted(records, key=lambda r: r[2]["test_tencrop_top1_error"])
    met = [name for _, name, s in ranked if s["target_met"]]
    lines = ["## Every attempt, lowest error first", "",
             f"The target is a ten-crop test top-1 error of {pct(TARGET)} or less; "
             + (f"met by {', '.join(met)}." if met else "no attempt has met it yet.")
             + " Each row links to its record below. An ensemble's epochs are its networks' "
               "lengths, each length once; its time is all of them together.", "",
             "| ten crops | centre crop | record | networks | epochs | training time | "
             "machine | recorded |", "|---|---|---|---|---|---|---|---|"]
    for anchor, name, s in ranked:
        nets = s.get("networks") or [s]
        epochs = sorted({n["epochs"] for n in nets})
        ten = pct(s["test_tencrop_top1_error"])
        lines.append(
            f"| {f'**{ten}**' if s['target_met'] else ten} | "
            f"{pct(s['test_center_top1_error'])} | [{name}](#{anchor}) | {len(nets)} | "
            f"{', '.join(str(e) for e in epochs)} | {hours_or_minutes(s['seconds_total'])} | "
            f"{s['machine'].split(',')[0]} ({s['device']}) | {s['recorded']} |")
    return lines + [""]


def hours_or_minutes(seconds: float) -> str:
    """A training time: hours from one hour on (a CPU run), else minutes (a GPU run)."""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def in_one_unit(median: float, *others: float) -> tuple[list, str]:
    """Times per epoch, all in the unit the median needs: minutes from a minute on (a
    CPU run), else seconds (a GPU run). Returns (the numbers as text, the unit)."""
    unit, name, fmt = (60, "min", "{:.1f}") if median >= 60 else (1, "s", "{:.0f}")
    return [fmt.format(v / unit) for v in (median, *others)], name


def cosine_text(s, drops: str) -> str:
    """The learning-rate cell of a --cosine run; one resumed from a run of drops says
    where those came (``drops``, the epochs as text) and where the cosine took over."""
    start = s.get("cosine_from", 1)
    if start <= 1:
        return "on a cosine over the epochs (--cosine) |"
    before = f"divided by 10 before epoch(s) {drops}, then " if s["lr_drop_epochs"] else ""
    return f"{before}on a cosine from epoch {start} on (--cosine, on --resume) |"


def results_md_lines(s: dict, rel="../experiments/results/headline") -> list:
    """The headline section of docs/RESULTS.md, or a variant's (s has a "change")."""
    if "networks" in s:
        return ensemble_md_lines(s, rel)
    verdict = ("**met**" if s["target_met"] else "**not met**")
    drops = (", ".join(str(e) for e in s["lr_drop_epochs"]) if s["lr_drop_epochs"]
             else "none")
    (med, low, high), unit = in_one_unit(s["seconds_per_epoch_median"],
                                         s["seconds_per_epoch_min"], s["seconds_per_epoch_max"])
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
    if s.get("class_top1_error"):
        lines.append(f"| the hardest classes (test top-1 error) | {hardest_text(s)} |")
    lines += [
        f"| epochs | {epochs_text(s)} ({chosen_text(s)}) |",
        f"| learning rate | {s['lr_first']:g} to {s['lr_last']:g}, "
        + (cosine_text(s, drops) if s.get("lr_schedule") == "cosine"
           else f"divided by 10 before epoch(s) {drops} |"),
        f"| time | {hours_or_minutes(s['seconds_total'])} of training, "
        f"{med} {unit} per epoch (median; {low} to {high}), training only, validation not "
        f"included |",
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
    p.add_argument("--run", required=True, action="append",
                   help="the finished train.py output folder (repeat it, with --variant, to "
                        "record an ensemble of the runs)")
    p.add_argument("--ensemble", metavar="JSON", default=None,
                   help="with several --run: the ensemble's errors as `python -m experiments "
                        "ensemble --out` wrote them (default: evaluate them here)")
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
    if len(a.run) > 1 and a.variant is None:
        p.error("several --run make an ensemble, a change to the recipe: give --variant "
                "NAME and --change")
    if a.ensemble and len(a.run) < 2:
        p.error("--ensemble needs two or more --run")
    from data.datasets import DatasetError
    try:
        if len(a.run) > 1:
            s = record_ensemble(a.run, a.ensemble, a.log, a.command, a.note, a.machine,
                                dest=dest, change=a.change.strip())
        else:
            s = record(a.run[0], a.log, a.command, a.note, a.machine, dest=dest,
                       change=a.change.strip())
    except (FileNotFoundError, ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from experiments.__main__ import write_results_md
    write_results_md()
    what = (f"after {s['epochs']} epochs" if "epochs" in s
            else f"averaging {len(s['networks'])} networks")
    print(f"{'variant ' + a.variant if a.variant else 'headline'}: "
          f"{100 * s['test_tencrop_top1_error']:.2f}% ten-crop test top-1 error "
          f"{what} (target {100 * TARGET:.1f}%: "
          f"{'met' if s['target_met'] else 'not met'}); docs/RESULTS.md updated")
    return 0
