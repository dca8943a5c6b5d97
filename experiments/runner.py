"""Running a claim: its train.py runs, over seeds, and a summary with a verdict.

``run_claim(name, seeds, scale, device)`` trains each variant of the claim with each
seed (``run_one``: an ordinary ``train.py`` run, its output in
``RESULTS/SCALE/CLAIM/VARIANT/seedN``), then writes ``RESULTS/SCALE/CLAIM.json``: the
mean and standard deviation of the claim's metric for each variant, the paired
difference of the two arms seed by seed with its 95% confidence interval, the verdict
drawn from that interval (``compare``), and every run's history; and a plot of the
training curves beside it.

A finished run is never trained twice. Its metrics.json is reused when the claim runs
again (so an interrupted sweep continues where it stopped), and when another claim
asks for the same configuration: the shared baseline (ReLU, LRN, overlapping pooling,
dropout 0.5, augmentation, He init) is one run for all the claims that compare
against it. A run stopped midway (last.npz, no metrics.json) is resumed.
"""
from __future__ import annotations

import functools
import glob
import json
import os
import sys
import textwrap
import time

import numpy as np

from experiments.claims import CLAIMS, SCALES
from training import DivergedError, fit, load_checkpoint
from training.flags import build_parser, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the runs and the summaries go (the notebook and the tests point it elsewhere).
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


@functools.lru_cache(maxsize=1)
def train_parser():
    return build_parser()


def train_settings(argv) -> dict:
    """The settings (parsed arguments) of ``train.py ARGV``, as a dict."""
    return vars(train_parser().parse_args(argv))


# train.py arguments that say where a run writes or how it reports, not what it computes.
NOT_CONFIG = {"out", "quiet", "device", "data_dir", "no_download", "no_fallback",
              "no_prefetch", "eval_batch_size", "resume", "eval_only", "predict", "invert",
              "overwrite"}


def config_differences(saved: dict, wanted: dict) -> list:
    """The train.py settings in which a run's saved arguments differ from the wanted
    ones (what the run computes, not NOT_CONFIG), as 'name: saved -> wanted' strings;
    empty: the same run, whatever flags spelled it. A setting the saved arguments lack
    (a flag added to train.py after the run was made) counts as its default, which is
    how that run behaved."""
    defaults = train_settings([])
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
        if not config_differences(read_json(path).get("args", {}), args):
            return path
    return None


def run_one(claim, label, flags, seed, scale, device, out_dir, force=False,
            may_diverge=False) -> dict:
    """metrics.json of one train.py run (trained now, or found finished: in out_dir, or
    another claim's run of the same configuration, then with ``shared_from`` naming its
    folder). With ``may_diverge`` (a learning-rate sweep), a run whose loss became NaN
    returns ``{"diverged": True}`` (kept in diverged.json) instead of stopping the
    sweep."""
    metrics_path = os.path.join(out_dir, "metrics.json")
    diverged_path = os.path.join(out_dir, "diverged.json")
    # --no-fallback: a run on the real data fails rather than train on the bundled subset
    argv = SCALES[scale]["flags"] + flags + ["--seed", str(seed), "--device", device,
                                             "--out", out_dir, "--no-fallback"]
    wanted = train_settings(argv)
    if os.path.exists(metrics_path) and not force:
        m = read_json(metrics_path)
        check_finished_run(m, metrics_path, wanted)
        return m
    if may_diverge and os.path.exists(diverged_path) and not force:
        d = read_json(diverged_path)
        # a record that holds only the command line: its settings are parsed from it
        saved = d.get("args")
        if saved is None and "--resume" not in d.get("argv", ["--resume"]):
            saved = train_settings(d["argv"])
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
        print(f"[{claim.name}] {label} seed {seed}: the same configuration as "
              f"{m['shared_from']}, reused", flush=True)
        return m
    last = os.path.join(out_dir, "last.npz")
    if not force and os.path.exists(last) and not config_differences(
            load_checkpoint(last)["train_state"].get("args", {}), wanted):
        # the same run, stopped before its end (Ctrl-C, a session's end): go on from its
        # checkpoint; resuming is exact, so the result is the uninterrupted run's
        print(f"[{claim.name}] {label} seed {seed}: resuming the unfinished run: python "
              f"train.py --resume {last}", flush=True)
        argv = ["--resume", last, "--device", device, "--out", out_dir, "--quiet",
                "--no-fallback"]
    else:
        if "overwrite" in train_settings([]):
            # a fresh run replaces what its folder holds (a stopped run of another
            # configuration, or a finished one with --force), which train.py refuses to
            # do unless told
            argv = argv + ["--overwrite"]
        print(f"[{claim.name}] {label} seed {seed}: python train.py {' '.join(argv)}",
              flush=True)
    t0 = time.perf_counter()
    rc = run_training(argv)
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
    print(f"[{claim.name}] {label} seed {seed}: test top-1 error "
          f"{100 * m['test_top1_error']:.2f}% in {time.perf_counter() - t0:.0f}s", flush=True)
    return m


def run_training(argv) -> int:
    """``python train.py ARGV`` in this process, as its exit code: 0 when it finished,
    3 when the loss diverged, 130 when it was interrupted (Ctrl-C)."""
    try:
        metrics = fit(parse(argv)[1])
    except DivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 130 if metrics.get("interrupted") else 0


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
    """A run's metrics.json with the metrics the claims compare added: epochs (and
    steps) to 25% training error, the test - train gap, ten crops against the centre."""
    out = dict(metrics)
    hist = metrics["history"]
    reached = epochs_to(train_error_curve(hist), "err", 0.25)
    out["epochs_to_25_train_error"] = reached if reached is not None else float(epochs)
    # the same in optimizer steps (the paper's Figure 1 counts epochs)
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


def summarize(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in v]}


# --- The verdict: paired differences and a t interval -------------------------------
#
# Each seed gives both arms of a claim the same initialization stream and the same data
# order, so the two runs of one seed are a pair: their difference d_i removes what the
# seed does to both. With n seeds, the mean difference has the 95% confidence interval
#     mean(d) ± t(0.975, n - 1) * sd(d) / sqrt(n)       (sd: the sample one, ddof=1)
# Reproduced: the whole interval lies on the paper's side of zero; contradicted: on the
# other side; inconclusive: the interval holds zero (the seeds cannot tell the sign).

# t(0.975, df), the two-sided 95% critical value of Student's t for df = 1..30: the
# standard table (e.g. NIST/SEMATECH e-Handbook of Statistical Methods, section
# 1.3.6.7.2), to four decimals; the tests check it against the t density integrated
# numerically.
T_975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622,
         2.2281, 2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930,
         2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452,
         2.0423)
Z_975 = 1.959964           # the normal distribution's 97.5% quantile


def t_975(df: int) -> float:
    """t(0.975, df): half the 95% two-sided interval, in standard errors. Beyond the table,
    the normal quantile corrected to second order in 1/df (Abramowitz and Stegun 26.7.5),
    within 1e-4 of the exact value there."""
    if df < 1:
        raise ValueError(f"t needs at least one degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


VERDICTS = ("reproduced", "inconclusive", "contradicted")


def paired_verdict(diffs, paper_side=1) -> dict:
    """The verdict on paired differences ``diffs`` (one per seed). ``paper_side`` is the
    sign the paper predicts for them (+1: positive). Returns n, the mean and sample
    standard deviation of the differences, t(0.975, n - 1), the 95% interval (low,
    high), and the verdict: 'reproduced' when the interval excludes zero on the
    paper's side, 'contradicted' when it excludes zero on the other side, otherwise
    'inconclusive'. Fewer than two differences have no spread: inconclusive, without
    an interval (low and high None)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    out = dict(n=n, mean=float(d.mean()) if n else None, std=None, t=None, low=None,
               high=None, verdict="inconclusive")
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    t = t_975(n - 1)
    half = t * sd / np.sqrt(n)
    out.update(std=sd, t=t, low=out["mean"] - half, high=out["mean"] + half)
    if out["low"] > 0 or out["high"] < 0:       # zero lies outside the interval
        side = 1 if out["low"] > 0 else -1
        out["verdict"] = "reproduced" if side == paper_side else "contradicted"
    return out


def pair_by_seed(a: dict, b: dict) -> tuple:
    """The seeds both arms ran, in order, and the difference b - a for each: a seed one
    arm lacks has no pair and is left out. ``a``, ``b``: {seed: value}."""
    seeds = [s for s in a if s in b]
    return seeds, [b[s] - a[s] for s in seeds]


def by_seed(st: dict, metric: str) -> dict:
    """{seed: value} of one arm's metric in a summary's stats (the seeds are the arm's
    ``seeds``; a summary without them lists its values in seed order from 0)."""
    values = st[metric]["values"]
    return dict(zip(st.get("seeds", range(len(values))), values))


def compare(claim, stats) -> dict:
    """The claim's paired comparison, from its stats: which difference (``what``, in the
    metric's units), the seeds paired, each seed's difference, and ``paired_verdict``'s
    interval and verdict. Two or more arms: the second arm minus the first (the paper's
    choice) for each seed, so a positive difference is the paper's side when the metric
    is an error or a count of epochs (lower is better); a third arm is shown, not
    judged. The ten-crop claim, one arm: each network's centre-crop minus its ten-crop
    error, the pair within one run."""
    labels = list(stats)
    if claim.metric == "tencrop_vs_center":
        vals = by_seed(stats[labels[0]], claim.metric)      # ten-crop minus centre
        seeds, diffs = list(vals), [-v for v in vals.values()]
        what = "centre crop − ten crops"
    else:
        first, second = labels[0], labels[1]
        seeds, diffs = pair_by_seed(by_seed(stats[first], claim.metric),
                                    by_seed(stats[second], claim.metric))
        what = f"{second} − {first}"
    out = paired_verdict(diffs, paper_side=1 if claim.lower_is_better else -1)
    return dict(what=what, metric=claim.metric, seeds=list(seeds),
                diffs=[float(x) for x in diffs], **out)


def verdict(claim, stats) -> str:
    """The claim's verdict (``compare``): reproduced, inconclusive or contradicted."""
    return compare(claim, stats)["verdict"]


def format_stat(s, metric) -> str:
    """A mean ± standard deviation, in epochs or as percentages."""
    if metric.startswith("epochs"):
        return f"{s['mean']:.2f} ± {s['std']:.2f} epochs"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}%"


def format_difference(c: dict) -> str:
    """A paired comparison (``compare``) in words: 'no-lrn − lrn: +0.15 points, 95% CI
    [-1.20, +1.50] (n = 3)'; error metrics in percentage points."""
    unit, k = (" epochs", 1) if c["metric"].startswith("epochs") else (" points", 100)
    if c["mean"] is None:
        return f"{c['what']}: no seed ran both arms"
    text = f"{c['what']}: {k * c['mean']:+.2f}{unit}"
    if c["low"] is None:
        return text + f" (n = {c['n']}: no interval)"
    return text + f", 95% CI [{k * c['low']:+.2f}, {k * c['high']:+.2f}] (n = {c['n']})"


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


def seed_list(seeds) -> list:
    """The seeds a claim runs: a count N is seeds 0 to N - 1, else the seeds given."""
    if isinstance(seeds, (int, np.integer)):
        return list(range(seeds))
    return sorted(set(int(s) for s in seeds))


def seeds_flag(seeds) -> str:
    """How ``--seeds`` spells these seeds: a count when they are 0 to N - 1."""
    seeds = seed_list(seeds)
    return str(len(seeds)) if seeds == list(range(len(seeds))) else ",".join(map(str, seeds))


def summary_seeds(summary) -> list:
    """The seeds a claim's summary covers (an older one names only their count)."""
    first = next(iter(summary.get("stats", {}).values()), {})
    return first.get("seeds") or list(range(summary.get("seeds", 0)))


def run_claim(name, seeds, scale, device, force=False) -> dict:
    """Train (or reuse) every run of the claim with ``seeds`` (a count N: seeds 0 to
    N - 1; or a list) and write its summary and plot. A summary of seeds this call does
    not cover is kept (a quick look with one seed must not replace the fuller one)."""
    claim = CLAIMS[name]
    seeds = seed_list(seeds)
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
        for seed in seeds:
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
        stats[label]["seeds"] = seeds         # the seed of each value, for the pairing
        if label in tuned:
            stats[label]["tuned"] = tuned[label]
    comparison = compare(claim, stats)
    summary = dict(
        claim=name, title=claim.title, paper=claim.paper, metric=claim.metric,
        notes=claim.notes, setting=claim.setting, scale=scale,
        scale_desc=SCALES[scale]["desc"], seeds=len(seeds),
        device=", ".join(sorted(devices)), stats=stats, verdict=comparison["verdict"],
        comparison=comparison,
        # training time of all the runs (from their histories, so a summary rebuilt
        # from finished runs still reports how long they took)
        seconds=float(sum(h["seconds"] for runs in per_variant.values() for r in runs
                          for h in r["history"]) + sweep_seconds),
        seconds_per_epoch=float(np.mean([h["seconds"] for runs in per_variant.values()
                                         for r in runs for h in r["history"]])),
        command=f"python -m experiments {name} --seeds {seeds_flag(seeds)} --scale {scale}"
                + (f" --device {device}" if device != "cpu" else ""),
        histories={label: [r["history"] for r in runs] for label, runs in per_variant.items()})
    path = os.path.join(RESULTS, scale, f"{name}.json")
    kept = read_json(path) if os.path.exists(path) and not force else None
    if kept is not None and not set(summary_seeds(kept)) <= set(seeds):
        # a quick look with fewer seeds must not replace the fuller summary
        print(f"[{name}] {path} summarizes seeds "
              f"{', '.join(map(str, summary_seeds(kept)))}: kept as it is (this run's "
              f"seeds {', '.join(map(str, seeds))} are not written over it)")
    else:
        write_json(path, summary)
        plot_claim(summary, os.path.join(RESULTS, scale, f"{name}.png"))
    print(f"[{name}] {summary['verdict']}: " + "; ".join(
        f"{label} {format_stat(stats[label][claim.metric], claim.metric)}" for label in stats)
        + f"; {format_difference(comparison)}")
    return summary


def plot_claim(summary, path):
    """Training error per epoch for each variant (mean over seeds), like Figure 1."""
    import matplotlib              # optional: only the plots need it
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
    title = textwrap.wrap(summary["title"], 70)
    if summary.get("comparison"):       # the verdict, and the paired difference behind it
        c = summary["comparison"]
        title += textwrap.wrap(f"{c['verdict']}: {format_difference(c)}", 80)
    ax.set_title("\n".join(title), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def claim_status(name, scale, seeds) -> dict:
    """Where a claim stands at a scale, without training: its verdict if its summary
    covers ``seeds`` (a count N: seeds 0 to N - 1; or a list); else its runs counted as
    finished (trained here, or the same configuration finished by another claim: the
    shared baseline), stopped midway (last.npz, no metrics.json: the next run resumes
    them) and not started."""
    claim = CLAIMS[name]
    seeds = seed_list(seeds)
    summary_path = os.path.join(RESULTS, scale, f"{name}.json")
    if os.path.exists(summary_path):
        summary = read_json(summary_path)
        if set(seeds) <= set(summary_seeds(summary)):
            return dict(done=True, verdict=summary["verdict"], seeds=summary["seeds"],
                        comparison=summary.get("comparison"))
    st = dict(done=False, finished=0, shared=0, unfinished=0, todo=0)
    if claim.tune:          # seed 0 at every value, then the other seeds at the best one
        folder = os.path.join(RESULTS, scale, name)
        finished = len([p for pattern in ("metrics.json", "diverged.json")
                        for p in glob.glob(os.path.join(folder, "**", pattern),
                                           recursive=True)])
        total = len(claim.variants) * (len(claim.tune[1]) + len(set(seeds) - {0}))
        st.update(finished=finished, todo=max(total - finished, 0))
        return st
    for label, flags in claim.variants.items():
        for seed in seeds:
            out = os.path.join(RESULTS, scale, name, slug_of(label), f"seed{seed}")
            if os.path.exists(os.path.join(out, "metrics.json")):
                st["finished"] += 1
            elif find_same_run(scale, train_settings(
                    SCALES[scale]["flags"] + claim.common + flags
                    + ["--seed", str(seed), "--out", out])):
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
        times += [h["seconds"] for h in read_json(path).get("history", [])]
    return float(np.mean(times)) if times else None


def print_status(scale, seeds):
    """`python -m experiments list`: each claim, and where it stands at this scale."""
    per_epoch = mean_epoch_seconds(scale)
    print(f"scale {scale}: {SCALES[scale]['desc']}; seeds "
          f"{', '.join(map(str, seed_list(seeds)))}"
          + (f"; an epoch has taken {per_epoch:.0f} s here, on average" if per_epoch else ""))
    for name, c in CLAIMS.items():
        st = claim_status(name, scale, seeds)
        if st["done"]:
            where = f"done ({st['seeds']} seed{'s' if st['seeds'] != 1 else ''}): {st['verdict']}"
            if st.get("comparison"):
                where += f" ({format_difference(st['comparison'])})"
        else:
            left = st["unfinished"] + st["todo"]
            where = f"{st['finished']} of {st['finished'] + left} runs finished"
            if st["shared"]:
                where += f" ({st['shared']} shared with other claims)"
            if st["unfinished"]:
                where += f", {st['unfinished']} stopped midway (resumed next time)"
            if per_epoch and left:
                epochs = train_settings(SCALES[scale]["flags"] + c.common)["epochs"]
                where += (f"; at most {left * epochs * per_epoch / 60:.0f} min of training "
                          f"left ({left} run{'s' if left != 1 else ''} of {epochs} epochs), "
                          "the tests not counted")
        print(f"{name:<8} {c.title}  [paper: {c.paper}]\n         {where}")
