"""Reproduce the paper's claims at small scale: ``python -m experiments NAME``.

    python -m experiments list                 # the claims, and how far each has run
    python -m experiments list --scale medium  # (at the medium scale)
    python -m experiments relu                 # one claim, 3 seeds, small scale
    python -m experiments all --seeds 3        # every claim in sequence
    python -m experiments all --scale medium   # longer runs on 12,000 real images
    python -m experiments lrn --scale full --device cuda
    python -m experiments headline --run runs/full-30ep ...   # record the headline run
    python -m experiments ensemble A/best.npz B/best.npz ...  # average trained networks
    python -m experiments weights A/best.npz --out-dir W       # weights only, half the size

Each run is an ordinary ``train.py`` run; its output lands in
``experiments/results/SCALE/CLAIM/VARIANT/seedN``. A claim's summary (mean and standard
deviation over seeds, a verdict, a plot) goes to ``experiments/results/SCALE/CLAIM.json``
and ``.png``, and ``docs/RESULTS.md`` is regenerated from every summary present.
Runs already finished are reused, so an interrupted sweep continues where it stopped,
and a run another claim already made with the same configuration (the shared baseline:
ReLU, LRN, overlapping pooling, dropout 0.5, augmentation, He init) is not trained twice.
"""
from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import sys
import textwrap
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from experiments.claims import CLAIMS, SCALES  # noqa: E402

RESULTS = os.path.join(ROOT, "experiments", "results")


def read_json(path):
    """A results file, or an error that names it (one file cut short must not stop a
    whole scale with a bare JSONDecodeError)."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise SystemExit(f"experiments: {path} is not valid JSON ({e}); it was probably "
                         f"cut short: move it away (a run's metrics.json: or remove its "
                         f"folder) and run again") from None


def write_json(path, obj):
    """Write a results file atomically: a stop mid-write leaves the old file or the new
    one, never half of one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def epochs_to(history, key, threshold):
    """First (fractional) epoch at which history[key] <= threshold, interpolating
    linearly between epochs; None if never reached."""
    prev_e, prev_v = 0.0, 1.0      # before training the error is ~chance; treat as 100%
    for h in history:
        e, v = float(h["epoch"]), float(h[key])
        if v <= threshold:
            if prev_v == v:
                return e
            return prev_e + (prev_v - threshold) / (prev_v - v) * (e - prev_e)
        prev_e, prev_v = e, v
    return None


def train_error_curve(history) -> list:
    """[{"epoch": e, "err": training error}] at the finest steps the run recorded: the
    error of the batches of each tenth of an epoch where train.py kept its curve
    (``train_curve``, at fractional epochs), else each epoch's average."""
    if history and all(h.get("train_curve") for h in history):
        return [{"epoch": h["epoch"] - 1 + frac, "err": err}
                for h in history for frac, err in h["train_curve"]]
    return [{"epoch": h["epoch"], "err": h["train_top1_error"]} for h in history]


def derived(metrics: dict, epochs: int) -> dict:
    out = dict(metrics)
    hist = metrics["history"]
    reached = epochs_to(train_error_curve(hist), "err", 0.25)
    out["epochs_to_25_train_error"] = reached if reached is not None else float(epochs)
    # the same in optimizer steps (the paper's Figure 1 counts epochs; the issue, steps)
    batch = metrics.get("args", {}).get("batch_size")
    if batch and "images_per_second" in hist[0]:
        images = round(hist[0]["images_per_second"] * hist[0]["seconds"])
        out["steps_to_25_train_error"] = out["epochs_to_25_train_error"] * -(-images // batch)
    out["reached_25"] = reached is not None
    out["train_test_gap"] = metrics["test_center_top1_error"] - hist[-1]["train_top1_error"]
    if "test_tencrop_top1_error" in metrics:
        out["tencrop_vs_center"] = (metrics["test_tencrop_top1_error"]
                                    - metrics["test_center_top1_error"])
    return out


# train.py arguments that say where a run writes or how it reports, not what it computes.
NOT_CONFIG = {"out", "quiet", "device", "data_dir", "no_download", "no_fallback",
              "no_prefetch", "eval_batch_size", "resume", "eval_only", "predict", "invert"}


@functools.lru_cache(maxsize=1)
def train_defaults() -> dict:
    """train.py's default settings, parsed once (every finished run is compared)."""
    import train
    return vars(train.build_parser().parse_args([]))


def config_differences(saved: dict, wanted: dict) -> list:
    """The train.py settings in which a run's saved arguments differ from the wanted
    ones (what the run computes, not NOT_CONFIG), as 'name: saved -> wanted' strings;
    empty: the same run, whatever flags spelled it. A setting the saved arguments lack
    (a flag added to train.py after the run was made) counts as its default, which is
    how that run behaved."""
    defaults = train_defaults()
    out = []
    for k in sorted(wanted):
        if k in NOT_CONFIG:
            continue
        had = saved.get(k, defaults.get(k))
        if had != wanted[k]:
            out.append(f"{k}: {had!r} -> {wanted[k]!r}")
    return out


def check_finished_run(m: dict, path: str, wanted: dict):
    """A finished run's metrics.json must be the run asked for: the same configuration,
    and trained on the dataset it names (not train.py's fallback to the bundled
    subset, which a scale on the real data must never count)."""
    diff = config_differences(m.get("args", {}), wanted)
    if diff:
        raise SystemExit(f"experiments: {path} is a finished run of another configuration "
                         f"({'; '.join(diff)}); the claim or scale has changed since it ran. "
                         f"Move it away, or pass --force to train the runs again")
    if m.get("dataset") != wanted["dataset"] and not wanted["dataset"].startswith("folder:"):
        raise SystemExit(f"experiments: {path} was trained on {m.get('dataset')}, not on "
                         f"{wanted['dataset']} as its scale says; move it away and run "
                         f"again where {wanted['dataset']} can be found or downloaded")


def find_same_run(scale, args: dict):
    """The metrics.json of a finished run of this scale with the same configuration
    (another claim's), or None. Many claims compare against the same baseline, e.g.
    'relu' in the ReLU claim is 'lrn' in the LRN claim: it is trained once."""
    folder = os.path.join(RESULTS, scale)
    for path in sorted(glob.glob(os.path.join(folder, "*", "*", "seed*", "metrics.json"))):
        m = read_json(path)
        if "shared_from" not in m and not config_differences(m.get("args", {}), args):
            return path
    return None


def refresh_shared_copies(out_dir, m: dict) -> None:
    """After a run is trained (again: --force), the other claims' copies of it
    (metrics.json with ``shared_from`` naming it) take its new results."""
    source = os.path.relpath(os.path.abspath(out_dir), RESULTS)
    scale_dir = os.path.join(RESULTS, source.split(os.sep)[0])
    for path in glob.glob(os.path.join(scale_dir, "*", "*", "seed*", "metrics.json")):
        old = read_json(path)
        if old.get("shared_from") == source:
            write_json(path, dict(m, shared_from=source))


def run_one(claim, label, flags, seed, scale, device, out_dir, force=False,
            may_diverge=False) -> dict:
    """metrics.json of one train.py run (trained now, or found finished). With
    ``may_diverge`` (a learning-rate sweep), a run whose loss became NaN returns
    ``{"diverged": True}`` (kept in diverged.json) instead of stopping the sweep."""
    import train

    metrics_path = os.path.join(out_dir, "metrics.json")
    diverged_path = os.path.join(out_dir, "diverged.json")
    # --no-fallback: a run on the real data fails rather than train on the bundled subset
    argv = SCALES[scale]["flags"] + flags + ["--seed", str(seed), "--device", device,
                                             "--out", out_dir, "--no-fallback"]
    wanted = vars(train.build_parser().parse_args(argv))
    if os.path.exists(metrics_path) and not force:
        m = read_json(metrics_path)
        check_finished_run(m, metrics_path, wanted)
        return m
    if may_diverge and os.path.exists(diverged_path) and not force:
        d = read_json(diverged_path)
        # records written before the settings were kept hold only the command line
        saved = d.get("args")
        if saved is None and "--resume" not in d.get("argv", ["--resume"]):
            saved = vars(train.build_parser().parse_args(d["argv"]))
        diff = config_differences(saved, wanted) if saved is not None else []
        if diff:
            raise SystemExit(f"experiments: {diverged_path} is a diverged run of another "
                             f"configuration ({'; '.join(diff)}); the claim or scale has "
                             f"changed since it ran. Move it away, or pass --force to "
                             f"train the runs again")
        return d
    same = None if force else find_same_run(scale, wanted)
    if same is not None:
        m = read_json(same)
        check_finished_run(m, same, wanted)
        m["shared_from"] = os.path.relpath(os.path.dirname(same), RESULTS)
        write_json(metrics_path, m)
        print(f"[{claim.name}] {label} seed {seed}: the same configuration as "
              f"{m['shared_from']}, reused", flush=True)
        return m
    last = os.path.join(out_dir, "last.npz")
    if not force and os.path.exists(last) and not config_differences(
            train.load_checkpoint(last)["train_state"].get("args", {}), wanted):
        # the same run, stopped before its end (Ctrl-C, a session's end): go on from its
        # checkpoint; resuming is exact, so the result is the uninterrupted run's
        print(f"[{claim.name}] {label} seed {seed}: resuming the unfinished run: python "
              f"train.py --resume {last}", flush=True)
        argv = ["--resume", last, "--device", device, "--out", out_dir, "--quiet",
                "--no-fallback"]
    else:
        print(f"[{claim.name}] {label} seed {seed}: python train.py {' '.join(argv)}",
              flush=True)
    t0 = time.perf_counter()
    rc = train.main(argv)
    if rc == 3 and may_diverge:                 # train.py's exit code for a NaN loss
        m = {"diverged": True, "argv": argv, "args": wanted,
             "seconds": time.perf_counter() - t0}
        write_json(diverged_path, m)
        print(f"[{claim.name}] {label} seed {seed}: the loss diverged", flush=True)
        return m
    if rc != 0:
        raise SystemExit(f"experiments: run failed (exit {rc}): train.py {' '.join(argv)}")
    m = read_json(metrics_path)
    check_finished_run(m, metrics_path, wanted)
    refresh_shared_copies(out_dir, m)
    print(f"[{claim.name}] {label} seed {seed}: test top-1 error "
          f"{100 * m['test_top1_error']:.2f}% in {time.perf_counter() - t0:.0f}s", flush=True)
    return m


def claim_status(name, scale, seeds) -> dict:
    """Where a claim stands at a scale, without training: its verdict if its summary
    covers ``seeds`` seeds; else its runs counted as finished (trained here, or the same
    configuration finished by another claim: the shared baseline), stopped midway
    (last.npz, no metrics.json: the next run resumes them) and not started."""
    import train

    claim = CLAIMS[name]
    summary_path = os.path.join(RESULTS, scale, f"{name}.json")
    if os.path.exists(summary_path):
        summary = read_json(summary_path)
        if summary.get("seeds", 0) >= seeds:
            return dict(done=True, verdict=summary["verdict"], seeds=summary["seeds"])
    st = dict(done=False, finished=0, shared=0, unfinished=0, todo=0)
    if claim.tune:          # seed 0 at every value, then the other seeds at the best one
        folder = os.path.join(RESULTS, scale, name)
        finished = len([p for pattern in ("metrics.json", "diverged.json")
                        for p in glob.glob(os.path.join(folder, "**", pattern),
                                           recursive=True)])
        total = len(claim.variants) * (len(claim.tune[1]) + seeds - 1)
        st.update(finished=finished, todo=max(total - finished, 0))
        return st
    parser = train.build_parser()
    for label, flags in claim.variants.items():
        for seed in range(seeds):
            out = os.path.join(RESULTS, scale, name, slug_of(label), f"seed{seed}")
            if os.path.exists(os.path.join(out, "metrics.json")):
                shared = "shared_from" in read_json(os.path.join(out, "metrics.json"))
                st["finished"] += 1
                st["shared"] += shared
            elif find_same_run(scale, vars(parser.parse_args(
                    SCALES[scale]["flags"] + claim.common + flags
                    + ["--seed", str(seed), "--out", out]))):
                st["finished"] += 1
                st["shared"] += 1
            elif os.path.exists(os.path.join(out, "last.npz")):
                st["unfinished"] += 1
            else:
                st["todo"] += 1
    return st


def mean_epoch_seconds(scale):
    """The mean training time of an epoch (validation not included) over this scale's runs,
    or None if none has finished."""
    times = []
    for path in glob.glob(os.path.join(RESULTS, scale, "**", "metrics.json"), recursive=True):
        m = read_json(path)
        if "shared_from" not in m:
            times += [h["seconds"] for h in m.get("history", [])]
    return float(np.mean(times)) if times else None


def print_status(scale, seeds):
    """`python -m experiments list`: each claim, and where it stands at this scale."""
    import train

    per_epoch, parser = mean_epoch_seconds(scale), train.build_parser()
    print(f"scale {scale}: {SCALES[scale]['desc']}; {seeds} seeds"
          + (f"; an epoch has taken {per_epoch:.0f} s here, on average" if per_epoch else ""))
    for name, c in CLAIMS.items():
        st = claim_status(name, scale, seeds)
        if st["done"]:
            where = f"done ({st['seeds']} seed{'s' if st['seeds'] != 1 else ''}): {st['verdict']}"
        else:
            left = st["unfinished"] + st["todo"]
            where = f"{st['finished']} of {st['finished'] + left} runs finished"
            if st["shared"]:
                where += f" ({st['shared']} shared with other claims)"
            if st["unfinished"]:
                where += f", {st['unfinished']} stopped midway (resumed next time)"
            if per_epoch and left:
                epochs = parser.parse_args(SCALES[scale]["flags"] + c.common).epochs
                where += (f"; at most {left * epochs * per_epoch / 60:.0f} min of training "
                          f"left ({left} run{'s' if left != 1 else ''} of {epochs} epochs), "
                          "the tests not counted")
        print(f"{name:<8} {c.title}  [paper: {c.paper}]\n         {where}")


def summarize(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in v]}


def verdict(claim, stats) -> str:
    """Reproduced when the paper's preferred variant is better by more than the sum of
    the two standard deviations; 'not reproduced' when it is worse by that much;
    otherwise inconclusive at this scale. One seed has no spread to judge by: always
    inconclusive."""
    labels = list(stats)
    if min(len(stats[label][claim.metric].get("values", (0, 0))) for label in labels) < 2:
        return "inconclusive: one seed has no spread to judge by"
    if claim.metric == "tencrop_vs_center":
        s = stats[labels[0]][claim.metric]
        if s["mean"] + s["std"] < 0:
            return "reproduced"
        if s["mean"] - s["std"] > 0:
            return "not reproduced"
        return "inconclusive at this scale"
    a, b = stats[labels[0]][claim.metric], stats[labels[1]][claim.metric]
    diff = (b["mean"] - a["mean"]) if claim.lower_is_better else (a["mean"] - b["mean"])
    margin = a["std"] + b["std"]
    if diff > margin:
        return "reproduced"
    if diff < -margin:
        return "not reproduced"
    return "inconclusive at this scale"


def slug_of(text) -> str:
    return text.replace(" ", "_").replace(",", "").replace("+", "_").lstrip("-")


def tune_variant(claim, label, flags, scale, device, force) -> tuple:
    """Seed 0 at each of the claim's tuned values: (the best value, {value: metric or
    None where the loss diverged}, {value: seconds of training}). Ties go to the lower
    test error."""
    flag, values = claim.tune
    sweep, rank, seconds, missed = {}, {}, {}, []
    for value in values:
        out = os.path.join(RESULTS, scale, claim.name, slug_of(label),
                           f"{slug_of(flag)}{value}", "seed0")
        m = run_one(claim, f"{label} {flag} {value}", claim.common + flags + [flag, value],
                    0, scale, device, out, force, may_diverge=True)
        if m.get("diverged"):
            sweep[value], seconds[value] = None, m.get("seconds", 0.0)
            continue
        seconds[value] = sum(h["seconds"] for h in m["history"])
        d = derived(m, m["epochs"])
        sweep[value] = d[claim.metric]
        if claim.metric.startswith("epochs_to_25") and not d["reached_25"]:
            missed.append(value)          # its metric is the epoch budget, a lower bound
        sign = 1 if claim.lower_is_better else -1
        rank[value] = (sign * d[claim.metric], d["test_top1_error"])
    if not rank:
        raise SystemExit(f"experiments: every {flag} of {label!r} diverged: {values}")
    return min(rank, key=rank.get), dict(sweep=sweep, not_reached=missed), seconds


def run_claim(name, seeds, scale, device, force=False) -> dict:
    claim = CLAIMS[name]
    per_variant, tuned = {}, {}
    devices = set()              # where the runs trained: a reused run may come from another
    sweep_seconds = 0.0          # the sweeps' runs other than the seed 0 kept
    for label, flags in claim.variants.items():
        folder = os.path.join(RESULTS, scale, name, slug_of(label))
        flags = claim.common + flags
        if claim.tune:
            best, sweep, secs = tune_variant(claim, label, flags[len(claim.common):],
                                             scale, device, force)
            sweep_seconds += sum(t for v, t in secs.items() if v != best)
            tuned[label] = dict(flag=claim.tune[0], value=best, **sweep)
            folder = os.path.join(folder, f"{slug_of(claim.tune[0])}{best}")
            flags = flags + [claim.tune[0], best]
        runs = []
        for seed in range(seeds):
            out = os.path.join(folder, f"seed{seed}")
            again = force and not (claim.tune and seed == 0)   # the sweep just made it
            m = run_one(claim, label, flags, seed, scale, device, out, again)
            devices.add(m.get("device", device) + (" (TF32)" if m.get("cupy_tf32") else ""))
            runs.append(derived(m, m["epochs"]))
        per_variant[label] = runs
    keys = [claim.metric] + claim.extra_metrics + ["test_top1_error"]
    if claim.metric == "epochs_to_25_train_error" and all(
            "steps_to_25_train_error" in r for runs in per_variant.values() for r in runs):
        keys.append("steps_to_25_train_error")
    stats = {label: {k: summarize([r[k] for r in runs]) for k in dict.fromkeys(keys)}
             for label, runs in per_variant.items()}
    if len(devices) > 1:
        print(f"[{name}] warning: its runs trained on different devices "
              f"({', '.join(sorted(devices))}); their differences include the devices' "
              f"rounding, not only the claim's change", file=sys.stderr)
    for label, runs in per_variant.items():
        stats[label]["reached_25"] = sum(bool(r["reached_25"]) for r in runs)
        if label in tuned:
            stats[label]["tuned"] = tuned[label]
    summary = dict(
        claim=name, title=claim.title, paper=claim.paper, metric=claim.metric,
        notes=claim.notes, setting=claim.setting, scale=scale,
        scale_desc=SCALES[scale]["desc"], seeds=seeds,
        device=", ".join(sorted(devices)), stats=stats, verdict=verdict(claim, stats),
        # training time of all the runs (from their histories, so a summary rebuilt
        # from finished runs still reports how long they took)
        seconds=float(sum(h["seconds"] for runs in per_variant.values() for r in runs
                          for h in r["history"]) + sweep_seconds),
        seconds_per_epoch=float(np.mean([h["seconds"] for runs in per_variant.values()
                                         for r in runs for h in r["history"]])),
        command=f"python -m experiments {name} --seeds {seeds} --scale {scale}"
                + (f" --device {device}" if device != "cpu" else ""),
        histories={label: [r["history"] for r in runs] for label, runs in per_variant.items()})
    path = os.path.join(RESULTS, scale, f"{name}.json")
    kept = read_json(path) if os.path.exists(path) and not force else None
    if kept is not None and kept.get("seeds", 0) > seeds:
        # a quick look with fewer seeds must not replace the fuller summary
        print(f"[{name}] {path} summarizes {kept['seeds']} seeds: kept as it is (this "
              f"run's {seeds} seed(s) are not written over it)")
    else:
        write_json(path, summary)
        plot_claim(summary, os.path.join(RESULTS, scale, f"{name}.png"))
    print(f"[{name}] {summary['verdict']}: " + "; ".join(
        f"{label} {fmt(stats[label][claim.metric], claim.metric)}" for label in stats))
    return summary


def fmt(s, metric) -> str:
    if metric.startswith("epochs"):
        return f"{s['mean']:.2f} ± {s['std']:.2f} epochs"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}%"


def plot_claim(summary, path):
    """Training error per epoch for each variant (mean over seeds), like Figure 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, hists in summary["histories"].items():
        n = min(len(h) for h in hists)
        val = np.mean([[e["val_top1_error"] for e in h[:n]] for h in hists], axis=0)
        tuned = summary["stats"][label].get("tuned")
        name = label + (f", {tuned['flag'].lstrip('-')} {tuned['value']}" if tuned else "")
        curves = [train_error_curve(h) for h in hists]
        if len({len(c) for c in curves}) == 1 and len(curves[0]) > n:
            # the training error of each tenth of an epoch (train.py's curve)
            x = [p["epoch"] for p in curves[0]]
            err = np.mean([[p["err"] for p in c] for c in curves], axis=0)
            line, = ax.plot(x, 100 * err, "-", label=f"{name} (train)")
        else:
            err = np.mean([[e["train_top1_error"] for e in h[:n]] for h in hists], axis=0)
            line, = ax.plot(range(1, n + 1), 100 * err, "-o", label=f"{name} (train)")
        ax.plot(range(1, n + 1), 100 * val, "--", color=line.get_color(),
                label=f"{name} (validation)")
    if summary["metric"].startswith("epochs_to_25"):
        ax.axhline(25, color="gray", lw=1, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 error (%)")
    ax.set_title("\n".join(textwrap.wrap(summary["title"], 70)), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# How the table names the extra metrics of a claim (after its main one).
EXTRA_LABELS = {
    "train_test_gap": "test − train gap",
    "epochs_to_25_train_error": "epochs to 25% training error",
}


def ensemble_md_lines() -> list:
    """A section for every ``experiments/results/SCALE/ensemble.json`` (written by
    ``python -m experiments ensemble ... --out``): the paper's Section 6 averaging. A
    "note" in the file (added by hand: what the networks are, when they are not one
    recipe with different seeds) is printed under the table."""
    found = sorted(glob.glob(os.path.join(RESULTS, "*", "ensemble.json")))
    if not found:
        return []
    lines = ["## Averaging networks (Section 6)", "",
             "The paper: averaging five similar CNNs gave 16.4% top-5 error on ILSVRC-2012 "
             "against 18.2% for one. Ours averages the softmax outputs of networks trained "
             "with different seeds, unless a note under the table says otherwise (test "
             "top-1 error). Each network's errors here come from the ensemble command's "
             "own pass over the test set, not from its train.py test:", "",
             "| scale, or the record | networks | each network, ten crops | ensemble, ten crops | "
             "ensemble, centre crop | command |", "|---|---|---|---|---|---|"]
    notes = []
    for path in found:
        with open(path) as f:
            e = json.load(f)
        nets = e["networks"]
        if e.get("note"):
            notes.append(f"- {os.path.basename(os.path.dirname(path))}: {e['note']}")
        cmd = "python -m experiments ensemble " + " ".join(n["checkpoint"] for n in nets)
        if "tencrop_top1_error" not in e["ensemble"]:       # written with --no-ten-crop
            each, ens = "(not tested on ten crops)", "—"
        else:
            each = ", ".join(f"{100 * n['tencrop_top1_error']:.2f}%" for n in nets)
            mean = np.mean([n["tencrop_top1_error"] for n in nets])
            each += f" (mean {100 * mean:.2f}%)"
            ens = f"**{100 * e['ensemble']['tencrop_top1_error']:.2f}%**"
        lines.append(f"| {os.path.basename(os.path.dirname(path))} | {len(nets)} | {each} "
                     f"| {ens} | {100 * e['ensemble']['center_top1_error']:.2f}% | `{cmd}` |")
    return lines + [""] + (notes + [""] if notes else [])


def write_results_md():
    """docs/RESULTS.md from every summary under experiments/results."""
    rows = []
    for scale in sorted(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else []:
        folder = os.path.join(RESULTS, scale)
        if not os.path.isdir(folder):
            continue
        for name in CLAIMS:
            p = os.path.join(folder, f"{name}.json")
            if os.path.exists(p):
                with open(p) as f:
                    rows.append(json.load(f))
    lines = ["# The paper's claims, at the scale of a CPU", "",
             "Generated by `python -m experiments` from `experiments/results/`; do not edit "
             "by hand. Each number is the mean ± standard deviation over seeds. A claim is "
             "*reproduced* when the paper's preferred variant wins by more than the two "
             "standard deviations added, *not reproduced* when it loses by that much, and "
             "otherwise *inconclusive at this scale*. The ten-crop claim has one number "
             "per seed, ten-crop minus centre-crop error of the same network: reproduced "
             "when its mean plus its standard deviation is below zero. One seed is always "
             "inconclusive. Epoch times are training only, without the validation pass. "
             "The *test − train gap* (how much a "
             "network overfits) is the centre-crop test top-1 error (one patch per image, "
             "as in training; not the ten-crop error shown beside it) minus the training "
             "error of the last epoch, which is measured during training, with dropout and "
             "augmentation on: a negative gap means the training batches were harder than "
             "the test set.",
             ""]
    headline = os.path.join(RESULTS, "headline", "headline.json")
    from experiments.headline import overview_md_lines, results_md_lines, variant_dirs
    variants = variant_dirs(RESULTS)
    records = []      # (anchor, name, summary): the overview links to each section
    if os.path.exists(headline):
        with open(headline) as f:
            records.append(("headline", "headline (the paper's recipe)", json.load(f)))
    for folder in variants:
        with open(os.path.join(folder, "headline.json")) as f:
            name = os.path.basename(folder)
            records.append((name, name[len("headline-"):], json.load(f)))
    if records:
        lines += overview_md_lines(records)
    for anchor, _, s in records:       # each anchor is the record's folder name
        lines += [f'<a id="{anchor}"></a>', ""] + results_md_lines(
            s, rel="../experiments/results/" + anchor)
    if os.path.exists(headline) or variants:
        lines += ["## The claims", ""]
    lines += ["| claim | paper | ours | verdict | scale | time | command |",
              "|---|---|---|---|---|---|---|"]
    for s in rows:
        def cell(label, st):
            text = f"{label}: {fmt(st[s['metric']], s['metric'])}"
            if "steps_to_25_train_error" in st:
                steps = st["steps_to_25_train_error"]
                text += f" ({steps['mean']:.0f} ± {steps['std']:.0f} steps)"
            if "tuned" in st:
                t = st["tuned"]
                flag = t["flag"].lstrip("-")
                def swept(v, m):
                    if m is None:
                        return "diverged"
                    if v in t.get("not_reached", []):
                        return f"not reached in {m:g} epoch{'' if m == 1 else 's'}"
                    return fmt({"mean": m, "std": 0}, s["metric"]).replace(" ± 0.00", "")
                sweep = ", ".join(f"{v} → {swept(v, m)}" for v, m in t["sweep"].items())
                text = text.replace(f"{label}: ", f"{label} at {flag} {t['value']}: ", 1)
                text += f" (seed 0 at each {flag}: {sweep})"
            if s["metric"].startswith("epochs_to_25"):
                text += (f" ({st['reached_25']}/{s['seeds']} runs reached 25%; a run that "
                         f"did not counts as its epoch budget)")
            if s["metric"] == "test_center_top1_error":
                text += f" (centre crop), ten-crop {fmt(st['test_top1_error'], 'err')}"
            elif s["metric"] != "test_top1_error":
                text += f", test top-1 {fmt(st['test_top1_error'], 'err')}"
            for key, what in EXTRA_LABELS.items():
                if key != s["metric"] and key in st:
                    text += f", {what} {fmt(st[key], key)}"
            return text
        ours = "<br>".join(cell(label, st) for label, st in s["stats"].items())
        if s["metric"] == "tencrop_vs_center":
            st = next(iter(s["stats"].values()))
            ours = (f"ten-crop minus centre-crop top-1 error: {fmt(st[s['metric']], 'err')}"
                    f" (test top-1 {fmt(st['test_top1_error'], 'err')})")
        judged = s["verdict"]
        if len(s["stats"]) > 2:        # the rule judges the first two arms; say which
            first, second = list(s["stats"])[:2]
            judged += f" ({first} against {second})"
        lines.append(
            f"| {s['title']} | {s['paper']} | {ours} | {judged} | {s['scale_desc']}"
            f"{'; this claim: ' + s['setting'] if s.get('setting') else ''}; "
            f"{s['seeds']} seeds | {s['seconds'] / 60:.0f} min of training ({s['seconds_per_epoch']:.0f} "
            f"s/epoch, {s['device']}) | `{s['command']}` |")
    lines += ["", "Plots: `experiments/results/SCALE/CLAIM.png` (training and validation "
              "error per epoch, mean over seeds).", ""]
    lines += ensemble_md_lines()
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["headline"]:
        from experiments.headline import main as headline_main
        return headline_main(argv[1:])
    if argv[:1] == ["ensemble"]:
        from experiments.ensemble import main as ensemble_main
        return ensemble_main(argv[1:])
    if argv[:1] == ["weights"]:
        from experiments.ensemble import weights_main
        return weights_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("claim", help="a claim name, 'all', or 'list' (or 'headline' and "
                                 "'ensemble': python -m experiments headline --help)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (at least 3)")
    p.add_argument("--scale", default="small", choices=sorted(SCALES))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    a = p.parse_args(argv)
    if a.claim == "list":
        print_status(a.scale, a.seeds)
        return 0
    names = list(CLAIMS) if a.claim == "all" else [a.claim]
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        print(f"error: unknown claim {unknown[0]!r}; choose one of {', '.join(CLAIMS)}, all, "
              f"list", file=sys.stderr)
        return 2
    if a.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    for n in names:
        run_claim(n, a.seeds, a.scale, a.device, a.force)
        write_results_md()
    return 0


if __name__ == "__main__":
    sys.exit(main())
