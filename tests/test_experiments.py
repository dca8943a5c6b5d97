"""The claim runner's arithmetic (epochs-to-threshold, verdicts, summaries), its runs,
docs/RESULTS.md, and averaging networks."""
import ast
import glob
import json
import math
import os

import pytest

import train
import training.loop
from experiments import ensemble, results_md, runner
from experiments.__main__ import main
from experiments.claims import CLAIMS, SCALES
from experiments.runner import epochs_to, paired_verdict, summarize, t_975, verdict
from training.flags import build_parser


def test_epochs_to_threshold_interpolates():
    hist = [{"epoch": 1, "e": 0.6}, {"epoch": 2, "e": 0.3}, {"epoch": 3, "e": 0.2}]
    # between epoch 2 (0.30) and 3 (0.20), 0.25 is reached half-way
    assert epochs_to(hist, "e", 0.25) == pytest.approx(2.5)
    assert epochs_to(hist, "e", 0.6) == pytest.approx(1.0)
    assert epochs_to(hist, "e", 0.1) is None


def test_summarize_uses_sample_std():
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)


def test_paired_verdict_outcomes_and_a_hand_computed_interval():
    """The interval of pooling's three paired differences at medium-mini (2x2 minus 3x3,
    in points), by hand: mean (0.45 + 1.38 + 0.89) / 3 = 0.9067; deviations -0.4567,
    0.4733, -0.0167, squares summing to 0.4329, so sd = sqrt(0.4329 / 2) = 0.4652;
    half-width t(0.975, 2) * sd / sqrt(3) = 4.3027 * 0.4652 / 1.7321 = 1.1556. All three
    seeds favour the paper, yet the interval [-0.249, 2.062] holds zero."""
    p = paired_verdict([0.45, 1.38, 0.89])
    assert p["n"] == 3 and p["t"] == pytest.approx(4.3027)
    assert p["mean"] == pytest.approx(0.9067, abs=1e-4)
    assert p["std"] == pytest.approx(0.4652, abs=1e-4)
    assert p["low"] == pytest.approx(0.9067 - 1.1556, abs=1e-3)
    assert p["high"] == pytest.approx(0.9067 + 1.1556, abs=1e-3)
    assert p["verdict"] == "inconclusive"
    # the same spread, shifted clear of zero: reproduced on the paper's side
    assert paired_verdict([1.45, 2.38, 1.89])["verdict"] == "reproduced"
    # ... contradicted on the other side, and the paper's side is the caller's
    assert paired_verdict([-1.45, -2.38, -1.89])["verdict"] == "contradicted"
    assert paired_verdict([-1.45, -2.38, -1.89], paper_side=-1)["verdict"] == "reproduced"
    # the pairing matters: differences of 0.1 on every seed, however the seeds spread the
    # two arms' own errors, have no spread left: reproduced
    assert paired_verdict([0.1, 0.1, 0.1])["verdict"] == "reproduced"
    assert paired_verdict([0.0, 0.0, 0.0])["verdict"] == "inconclusive"
    # one difference has no spread, so no interval
    one = paired_verdict([0.5])
    assert one["verdict"] == "inconclusive" and one["low"] is None and one["n"] == 1


def t_density_integral(t, df, steps=20000):
    """P(0 < T < t) for Student's t with df degrees of freedom: its density integrated by
    Simpson's rule (no SciPy), a reference computed apart from the table."""
    import numpy as np
    x = np.linspace(0.0, t, 2 * steps + 1)
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = c * (1 + x * x / df) ** (-(df + 1) / 2)
    return (x[1] - x[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 31, 60, 200])
def test_t_quantile_leaves_2_5_percent_in_each_tail(df):
    """t_975 (the table to df 30, an expansion beyond) against the density itself."""
    assert t_density_integral(t_975(df), df) == pytest.approx(0.475, abs=2e-5)


def test_verdicts_pair_the_arms_seed_by_seed():
    c = CLAIMS["lrn"]          # lower test error with LRN is the paper's claim
    mk = lambda values, seeds=None: {c.metric: summarize(values),
                                     **({"seeds": seeds} if seeds else {})}
    # the seeds spread each arm by 4 points, but no-lrn is 1 point worse on every seed
    assert verdict(c, {"lrn": mk([0.10, 0.14, 0.12]),
                       "no-lrn": mk([0.11, 0.15, 0.13])}) == "reproduced"
    assert verdict(c, {"lrn": mk([0.11, 0.15, 0.13]),
                       "no-lrn": mk([0.10, 0.14, 0.12])}) == "contradicted"
    # the same two sets of numbers, paired the other way round: the sign changes by seed
    assert verdict(c, {"lrn": mk([0.10, 0.14, 0.12]),
                       "no-lrn": mk([0.15, 0.11, 0.13])}) == "inconclusive"
    # a seed one arm lacks is left out, and n says how many pairs there were
    cmp = runner.compare(c, {"lrn": mk([0.10, 0.14, 0.12, 0.2], [0, 1, 2, 3]),
                             "no-lrn": mk([0.11, 0.13], [0, 2])})
    assert cmp["seeds"] == [0, 2] and cmp["n"] == 2
    assert cmp["diffs"] == pytest.approx([0.01, 0.01]) and cmp["verdict"] == "reproduced"
    assert cmp["what"] == "no-lrn − lrn"
    assert runner.format_difference(cmp) == \
        "no-lrn − lrn: +1.00 points, 95% CI [+1.00, +1.00] (n = 2)"
    # ten crops: one arm, each network against itself; ten crops 0.2 points better
    tc = CLAIMS["tencrop"]
    cmp = runner.compare(tc, {"ten-crop": {tc.metric: summarize([-0.003, -0.0025, -0.002])}})
    assert cmp["what"] == "centre crop − ten crops" and cmp["verdict"] == "reproduced"
    assert cmp["mean"] == pytest.approx(0.0025)


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_scale_is_a_valid_train_command_with_he_init(scale):
    """The paper's N(0, 0.01) init keeps the small presets near chance for a long
    time (the init claim), so every scale's baseline uses He init; only the init claim's 'paper'
    variant, whose flags come after the scale's, changes it back."""
    parser = build_parser()
    flags = SCALES[scale]["flags"]
    args = parser.parse_args(flags)
    assert args.init == "he"
    assert args.model in SCALES[scale]["desc"]
    assert f"{args.epochs} epochs" in SCALES[scale]["desc"]
    paper = parser.parse_args(flags + CLAIMS["init"].variants["paper"])
    assert paper.init == "paper"


def test_unknown_claim_is_an_error(capsys):
    assert main(["bogus"]) == 2
    assert "unknown claim 'bogus'" in capsys.readouterr().err


def test_results_table_shows_the_overfitting_gap(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    st = lambda m, s: {"mean": m, "std": s, "values": [m]}
    summary = dict(
        claim="dropout", title="Dropout reduces overfitting", paper="overfits",
        metric="test_top1_error", notes="", scale="small", scale_desc="tiny", seeds=3,
        device="cpu", verdict="reproduced", seconds=120.0, seconds_per_epoch=5.0,
        command="python -m experiments dropout --seeds 3 --scale small",
        stats={"dropout 0.5": {"test_top1_error": st(0.10, 0.01),
                               "train_test_gap": st(0.02, 0.005), "reached_25": 3},
               "no dropout": {"test_top1_error": st(0.14, 0.01),
                              "train_test_gap": st(0.09, 0.01), "reached_25": 3}})
    (tmp_path / "results" / "small").mkdir(parents=True)
    (tmp_path / "results" / "small" / "dropout.json").write_text(json.dumps(summary))
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    table = (tmp_path / "docs" / "RESULTS.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Dropout"))
    assert "dropout 0.5: 10.00 ± 1.00%, test − train gap 2.00 ± 0.50%" in row
    assert "no dropout: 14.00 ± 1.00%, test − train gap 9.00 ± 1.00%" in row
    assert "| reproduced |" in row and "2 min of training" in row
    # the paired difference beside the means (one value each: no interval)
    assert "| no dropout − dropout 0.5: +4.00 points (n = 1: no interval) |" in row
    # a third arm is shown, and the verdict says which two it judged
    summary["stats"]["dropout 0.8"] = summary["stats"]["no dropout"]
    (tmp_path / "results" / "small" / "dropout.json").write_text(json.dumps(summary))
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| Dropout"))
    assert "<br>dropout 0.8: 14.00 ± 1.00%" in row
    assert "| reproduced (dropout 0.5 against no dropout) |" in row


def ten_crop_outputs(paths, ds):
    """Each checkpoint's ten-crop softmax outputs on ds's test set, computed here with
    the subset's preparation (pad 2, crop 28), independently of the ensemble's run()."""
    probs = []
    for p in paths:
        model, mean, _ = ensemble.load_network(p)
        prep = dict(mean=mean, pad=2, crop=28, scale=1 / 255)
        probs.append(ensemble.predict(model, ds.test_x, prep, mode="ten"))
    return probs


def test_ensemble_averages_the_networks_softmax_outputs(tmp_path, capsys, monkeypatch):
    """Two tiny nets trained briefly on the subset: each network's errors match what
    train.py reported for it, and the ensemble's equal those of the averaged outputs."""
    import numpy as np

    quick = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
             "--train-limit", "384", "--batch-size", "64", "--quiet", "--epochs", "1"]
    runs = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        assert train.main(quick + ["--seed", str(seed), "--out", str(out)]) == 0
        runs.append(out)
    paths = [str(r / "best.npz") for r in runs]
    res_file = tmp_path / "ens.json"
    assert main(["ensemble", *paths, "--out", str(res_file)]) == 0
    printed = capsys.readouterr()
    assert "ensemble of 2" in printed.out
    # while it works (minutes on a CPU), it says which network it is testing
    assert printed.err.splitlines() == [
        f"network {i}/2, {p}: testing on 1000 images (centre crop, ten crops)"
        for i, p in enumerate(paths, 1)]
    res = json.loads(res_file.read_text())
    assert res["test_images"] == 1000
    for run, net in zip(runs, res["networks"]):
        m = json.loads((run / "metrics.json").read_text())
        assert net["center_top1_error"] == m["test_center_top1_error"]
        assert net["tencrop_top1_error"] == m["test_tencrop_top1_error"]
    # the ensemble's error, recomputed from the two networks' outputs here
    ds, _ = ensemble.load_test_set("fashion-mnist-subset")
    probs = ten_crop_outputs(paths, ds)
    assert not np.allclose(probs[0], probs[1])              # two different networks
    avg = (probs[0] + probs[1]) / 2
    expect = np.mean(avg.argmax(1) != ds.test_y)
    assert abs(res["ensemble"]["tencrop_top1_error"] - expect) < 1e-12
    shirt = ds.test_y == ds.classes.index("Shirt")             # where the errors are
    assert res["ensemble"]["class_top1_error"]["Shirt"] == pytest.approx(
        np.mean(avg.argmax(1)[shirt] != ds.test_y[shirt]))

    # networks of the full dataset are never tested on the subset it falls back to
    from data.datasets import load_fashion_subset
    monkeypatch.setattr(ensemble, "load_test_set",
                        lambda dataset, data_dir=None: (load_fashion_subset(), "fashion-mnist"))
    capsys.readouterr()
    assert main(["ensemble", *paths, "--dataset", "fashion-mnist"]) == 2
    err = capsys.readouterr().err
    assert "the networks were trained on fashion-mnist, but fashion-mnist-subset was " \
           "loaded" in err and "pass --data-dir" in err
    # nor averaged with a network of another dataset
    mnist_net = tmp_path / "mnist.npz"
    with np.load(paths[1]) as f:
        arrays = dict(f)
    state = json.loads(str(arrays["train_state"]))
    state["args"]["dataset"] = "mnist"
    arrays["train_state"] = np.array(json.dumps(state))
    np.savez(mnist_net, **arrays)
    assert main(["ensemble", paths[0], str(mnist_net)]) == 2
    assert "trained on different datasets" in capsys.readouterr().err


def test_weights_only_copies_evaluate_the_same_and_refuse_to_resume(tmp_path, capsys):
    """python -m experiments weights: the checkpoint without its momentum, half the
    size; the ensemble and --eval-only read the same network from it; --resume says
    why not."""
    import numpy as np

    quick = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
             "--train-limit", "384", "--batch-size", "64", "--quiet", "--epochs", "1"]
    out = tmp_path / "run"
    assert train.main(quick + ["--out", str(out)]) == 0
    best = out / "best.npz"
    assert main(["weights", str(best), "--out-dir", str(tmp_path / "w")]) == 0
    copy = tmp_path / "w" / "run.npz"                # named after the run's folder
    assert "run.npz" in capsys.readouterr().out
    with np.load(best) as full, np.load(copy) as light:
        assert any(k.startswith("velocity/") for k in full.files)
        assert not any(k.startswith("velocity/") for k in light.files)
        assert bool(light["weights_only"])
        for k in full.files:
            if not k.startswith("velocity/"):
                np.testing.assert_array_equal(light[k], full[k])
    assert copy.stat().st_size < 0.6 * best.stat().st_size
    res = ensemble.run([str(best), str(copy)], ten_crop=False)
    a, b = res["networks"]
    assert a["center_top1_error"] == b["center_top1_error"] == res["ensemble"]["center_top1_error"]
    assert train.main(["--eval-only", str(copy), "--dataset", "fashion-mnist-subset",
                       "--no-ten-crop", "--quiet", "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["test_center_top1_error"] == a["center_top1_error"]

    capsys.readouterr()
    assert train.main(quick + ["--resume", str(copy), "--out", str(tmp_path / "again")]) != 0
    err = capsys.readouterr().err
    assert "holds the weights only" in err and "--eval-only" in err
    # bad input: one line each
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    assert main(["weights", str(tmp_path / "junk.npz"), "--out-dir", str(tmp_path / "w")]) == 1
    assert "not a readable train.py checkpoint" in capsys.readouterr().err
    assert main(["weights", str(best), str(best), "--out-dir", str(tmp_path / "w")]) == 2
    assert "one distinct name per checkpoint" in capsys.readouterr().err


def test_ensemble_bad_input_gives_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["ensemble", str(tmp_path / "a.npz")])           # one checkpoint
    capsys.readouterr()
    assert main(["ensemble", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: experiments ensemble: checkpoint") and "a.npz" in err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert main(["ensemble", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable train.py checkpoint" in err and len(err.splitlines()) == 1


def test_ensemble_subsets_and_cache(tmp_path, capsys, monkeypatch):
    """--subsets: every pair of three networks, each pair's errors those of the two
    outputs averaged here; --cache: a second ensemble tests no network again, a changed
    checkpoint is tested afresh, and a cached file of the wrong shape is refused."""
    import numpy as np

    quick = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
             "--train-limit", "384", "--batch-size", "64", "--quiet", "--epochs", "1"]
    assert train.main(quick + ["--out", str(tmp_path / "run")]) == 0
    paths = [str(tmp_path / "run" / "best.npz")]
    rng = np.random.default_rng(0)
    with np.load(paths[0]) as f:
        arrays = dict(f)
    w = [k for k in arrays if k.startswith("param/") and arrays[k].ndim == 2][-1]
    for i in (2, 3):                   # two other networks: the last layer's weights moved
        moved = dict(arrays)
        moved[w] = arrays[w] + rng.normal(0, 0.3 * arrays[w].std(), arrays[w].shape
                                          ).astype(arrays[w].dtype)
        np.savez(tmp_path / f"net{i}.npz", **moved)
        paths.append(str(tmp_path / f"net{i}.npz"))
    cache = tmp_path / "cache"
    res_file = tmp_path / "ens.json"
    assert main(["ensemble", *paths, "--subsets", "--cache", str(cache),
                 "--out", str(res_file)]) == 0
    printed = capsys.readouterr()
    assert "ensemble of networks 1 + 3" in printed.out and "ensemble of 3" in printed.out
    res = json.loads(res_file.read_text())
    assert [s["networks"] for s in res["subsets"]] == [[0, 1], [0, 2], [1, 2]]
    assert len(list(cache.glob("*.npy"))) == 6            # 3 networks x 2 crops
    ds, _ = ensemble.load_test_set("fashion-mnist-subset")
    probs = ten_crop_outputs(paths, ds)
    assert not np.allclose(probs[0], probs[1]) and not np.allclose(probs[1], probs[2])
    for s in res["subsets"]:
        i, j = s["networks"]
        expect = np.mean(((probs[i] + probs[j]) / 2).argmax(1) != ds.test_y)
        assert abs(s["tencrop_top1_error"] - expect) < 1e-12
    # the cached outputs are the networks' own: the same ensemble without testing again
    monkeypatch.setattr(ensemble, "predict", lambda *a, **k: pytest.fail("tested again"))
    assert main(["ensemble", *paths, "--subsets", "--cache", str(cache),
                 "--out", str(tmp_path / "again.json")]) == 0
    assert "centre crop, ten crops from the cache" in capsys.readouterr().err
    assert json.loads((tmp_path / "again.json").read_text()) == res
    # a checkpoint changed in place is another network: tested, not read from the cache
    moved = dict(arrays)
    moved[w] = arrays[w] * 0.5
    np.savez(tmp_path / "net3.npz", **moved)
    with pytest.raises(pytest.fail.Exception, match="tested again"):
        main(["ensemble", *paths, "--cache", str(cache)])
    monkeypatch.undo()
    # a damaged cache file is named, not averaged
    victim, = cache.glob(ensemble.sha256(paths[0])[:32] + "-*-ten.npy")
    np.save(victim, np.zeros((3, 10)))
    capsys.readouterr()
    assert main(["ensemble", *paths[:2], "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "(3, 10)" in err and "delete the file" in err
    with pytest.raises(SystemExit):                      # two networks have no subsets
        main(["ensemble", *paths[:2], "--subsets"])
    assert "--subsets needs three or more" in capsys.readouterr().err


def write_fake_run(a, hist, **extra):
    """The metrics.json train.py would write for the parsed arguments ``a`` after
    ``hist`` (a test error of 30%), without training; ``extra`` adds keys."""
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump({"args": vars(a), "dataset": a.dataset, "history": hist,
                   "epochs": len(hist),
                   "test_top1_error": 0.3, "test_center_top1_error": 0.3, **extra}, f)


@pytest.fixture
def tiny_scale(tmp_path, monkeypatch):
    """The runner, writing under tmp_path, with a scale "t": tiny preset, 2 epochs."""
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--model", "tiny", "--epochs", "2"],
                                          desc="fake"))
    return runner


def test_claims_train_a_shared_baseline_once(tmp_path, monkeypatch, capsys, tiny_scale):
    """'relu' in the ReLU claim and 'lrn' in the LRN claim are the same run: the second
    claim reuses it (and says so) instead of training it again, and keeps no copy of
    it; a real difference in the flags still trains."""
    trained = []

    def fake_main(argv):           # writes what train.py would, without training
        a = build_parser().parse_args(argv)
        trained.append(a.out)
        hist = [{"epoch": e, "train_top1_error": 0.5 / e, "val_top1_error": 0.4 / e,
                 "seconds": 1.0} for e in (1, 2)]
        write_fake_run(a, hist)
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    runner.run_claim("relu", 1, "t", "cpu")
    assert len(trained) == 2                      # relu, tanh
    capsys.readouterr()
    runner.run_claim("lrn", 1, "t", "cpu")
    assert len(trained) == 3                      # only no-lrn is new
    assert trained[-1].endswith(os.path.join("lrn", "no-lrn", "seed0"))
    assert ("[lrn] lrn seed 0: the same configuration as "
            f"{os.path.join('t', 'relu', 'relu', 'seed0')}, reused") in capsys.readouterr().out
    assert not (tmp_path / "results" / "t" / "lrn" / "lrn").exists()
    summary = json.loads((tmp_path / "results" / "t" / "lrn.json").read_text())
    assert summary["stats"]["lrn"]["test_top1_error"]["mean"] == pytest.approx(0.3)
    assert summary["device"] == "cpu"
    # the baseline trained again (--force): the claims that share it read its new results
    def fake_main_again(argv):
        a = build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": 1, "train_top1_error": 0.3, "val_top1_error": 0.3,
                            "seconds": 1.0}], test_top1_error=0.2)
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main_again)
    runner.run_claim("relu", 1, "t", "cpu", force=True)
    runner.run_claim("lrn", 1, "t", "cpu")
    summary = json.loads((tmp_path / "results" / "t" / "lrn.json").read_text())
    assert summary["stats"]["lrn"]["test_top1_error"]["mean"] == pytest.approx(0.2)


def test_a_claim_names_the_devices_its_runs_trained_on(tmp_path, monkeypatch, capsys,
                                                       tiny_scale):
    # A GPU run of a claim reuses the CPU's shared baseline: the summary used to say
    # "cuda" for all of it, and nothing warned that the two arms differ in device.

    def fake_main(argv):
        a = build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": e, "train_top1_error": 0.5 / e, "val_top1_error": 0.4,
                            "seconds": 1.0} for e in (1, 2)],
                       device=a.device, cupy_tf32=a.device == "cuda")
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    runner.run_claim("relu", 1, "t", "cpu")
    capsys.readouterr()
    runner.run_claim("lrn", 1, "t", "cuda")              # the lrn arm: relu's cpu run
    assert ("[lrn] warning: its runs trained on different devices (cpu, cuda (TF32))"
            in capsys.readouterr().err)
    summary = json.loads((tmp_path / "results" / "t" / "lrn.json").read_text())
    assert summary["device"] == "cpu, cuda (TF32)"


def test_list_says_how_far_each_claim_has_run(tmp_path, monkeypatch, capsys, tiny_scale):
    """`list --scale S`: a claim with a summary shows its verdict; another counts the
    runs it shares with it as finished, a run with only last.npz as stopped midway, and
    estimates the training left from the scale's epoch times."""

    def fake_main(argv):
        a = build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": e, "train_top1_error": 0.5 / e,
                            "val_top1_error": 0.4 / e, "seconds": 30.0} for e in (1, 2)])
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    runner.run_claim("relu", 1, "t", "cpu")
    stopped = tmp_path / "results" / "t" / "pool" / "2x2_s2" / "seed0"
    stopped.mkdir(parents=True)
    (stopped / "last.npz").write_bytes(b"")
    capsys.readouterr()

    def status(seeds):          # claim name -> the line under its title
        assert main(["list", "--scale", "t", "--seeds", str(seeds)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "an epoch has taken 30 s here" in lines[0]
        return {lines[i].split()[0]: lines[i + 1].strip() for i in range(1, len(lines), 2)}

    after = status(1)
    assert list(after) == list(CLAIMS)
    assert after["relu"].startswith("done (1 seed): ")
    assert after["lrn"].startswith("1 of 2 runs finished (1 shared with other claims); "
                                   "at most 1 min of training left (1 run of 2 epochs)")
    assert after["pool"].startswith("1 of 2 runs finished (1 shared with other claims), "
                                    "1 stopped midway")
    assert after["groups"].startswith("0 of 2 runs finished; at most 2 min")
    # asking for more seeds than the summary has reopens the claim
    assert status(2)["relu"].startswith("2 of 4 runs finished; at most 2 min")


def test_a_claim_run_stopped_midway_is_resumed_not_restarted(tmp_path, monkeypatch, capsys):
    """A claim's run stopped mid-epoch (Ctrl-C, the end of a session) leaves last.npz
    and no metrics.json: running the claim again resumes it, and the result equals an
    uninterrupted run's; a checkpoint of another configuration is not resumed."""

    import numpy as np

    from tests.test_train import QUICK, StopAfter, params_of

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setitem(SCALES, "t", dict(flags=QUICK + ["--epochs", "2"], desc="fake"))
    claim = CLAIMS["dropout"]
    whole, part = tmp_path / "whole", tmp_path / "results" / "t" / "x" / "seed0"
    m_whole = runner.run_one(claim, "a", [], 0, "t", "cpu", str(whole))
    with monkeypatch.context() as mp, pytest.raises(SystemExit, match="exit 130"):
        mp.setattr(training.loop, "StopRequest", StopAfter)           # stops after 2 steps
        runner.run_one(claim, "a", [], 0, "t", "cpu", str(part))
    assert (part / "last.npz").exists() and not (part / "metrics.json").exists()
    m_part = runner.run_one(claim, "a", [], 0, "t", "cpu", str(part))
    assert "resuming the unfinished run" in capsys.readouterr().out
    assert m_part["test_top1_error"] == m_whole["test_top1_error"]
    for k, v in params_of(whole / "last.npz").items():
        np.testing.assert_array_equal(v, params_of(part / "last.npz")[k], err_msg=k)
    # another configuration in the same folder is trained anew, not resumed
    (part / "metrics.json").unlink()
    m_other = runner.run_one(claim, "a", ["--dropout", "0"], 0, "t", "cpu", str(part))
    assert "resuming" not in capsys.readouterr().out
    assert m_other["args"]["dropout"] == 0 and len(m_other["history"]) == 2
    assert json.loads((part / "metrics.json").read_text())["args"]["dropout"] == 0


def test_augment_claim_compares_centre_crops(tmp_path, monkeypatch):
    """A net trained without crops never saw ten-crop testing's shifted crops: the
    augmentation claim is decided on the centre crop, and the table says so."""

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    claim = CLAIMS["augment"]
    assert claim.metric == "test_center_top1_error"
    st = lambda m: {"mean": m, "std": 0.001, "values": [m] * 3}
    stats = {"crops+flips": {"test_center_top1_error": st(0.15), "test_top1_error": st(0.14),
                             "train_test_gap": st(-0.02), "reached_25": 3},
             "none": {"test_center_top1_error": st(0.145), "test_top1_error": st(0.23),
                      "train_test_gap": st(0.03), "reached_25": 3}}
    v = verdict(claim, stats)       # 14.5% against 15.0% on the centre crop: no win
    assert v == "contradicted"
    summary = dict(claim="augment", title="Data augmentation", paper="p",
                   metric=claim.metric, notes="", scale="small", scale_desc="tiny", seeds=3,
                   device="cpu", verdict=v, seconds=60.0, seconds_per_epoch=5.0,
                   command="python -m experiments augment", stats=stats)
    (tmp_path / "results" / "small").mkdir(parents=True)
    (tmp_path / "results" / "small" / "augment.json").write_text(json.dumps(summary))
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| Data augmentation"))
    assert "none: 14.50 ± 0.10% (centre crop), ten-crop 23.00 ± 0.10%" in row


def test_results_show_a_recorded_ensemble(tmp_path, monkeypatch):

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    net = lambda p, e: {"checkpoint": p, "tencrop_top1_error": e, "center_top1_error": e}
    (tmp_path / "results" / "medium").mkdir(parents=True)
    (tmp_path / "results" / "medium" / "ensemble.json").write_text(json.dumps(
        {"dataset": "fashion-mnist", "test_images": 10,
         "networks": [net("a/best.npz", 0.20), net("b/best.npz", 0.10)],
         "ensemble": {"tencrop_top1_error": 0.09, "center_top1_error": 0.11}}))
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| medium | 2 |"))
    assert "20.00%, 10.00% (mean 15.00%) | **9.00%** | 11.00% |" in row
    assert "`python -m experiments ensemble a/best.npz b/best.npz`" in row
    assert "- medium:" not in (tmp_path / "docs" / "RESULTS.md").read_text()
    # a note in the file (what the networks are) goes under the table
    (tmp_path / "results" / "mixed").mkdir()
    (tmp_path / "results" / "mixed" / "ensemble.json").write_text(json.dumps(
        {"dataset": "fashion-mnist", "test_images": 10, "note": "two recipes",
         "networks": [net("c/best.npz", 0.20), net("d/best.npz", 0.10)],
         "ensemble": {"tencrop_top1_error": 0.12, "center_top1_error": 0.13}}))
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert md.index("| mixed | 2 |") < md.index("- mixed: two recipes")


def test_epochs_to_25_uses_the_curve_within_epochs():
    """With train.py's curve (the error of each tenth of an epoch) the threshold is found
    within the epoch, not from the epoch's average, which lags behind."""
    curve = [[0.5, 0.40], [1.0, 0.20]]            # 25% crossed at 0.5 + 0.75 * 0.5
    m = {"history": [{"epoch": 1, "train_top1_error": 0.30, "train_curve": curve}],
         "test_center_top1_error": 0.2}
    assert runner.derived(m, 1)["epochs_to_25_train_error"] == pytest.approx(0.875)
    del m["history"][0]["train_curve"]            # older runs: the epoch's average only
    assert runner.derived(m, 1)["epochs_to_25_train_error"] == 1.0
    assert runner.derived(m, 1)["reached_25"] is False


def test_tuned_claim_sweeps_seed0_then_runs_the_best_value(tmp_path, monkeypatch):
    """figure1 picks each network's learning rate as the paper did: seed 0 at every
    value, the fastest kept (a diverged value is recorded and loses), the other seeds
    at that value only; the table shows the sweep."""


    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--model", "tiny", "--lr", "0.02"],
                                          desc="fake"))
    claim = CLAIMS["figure1"]
    values = claim.tune[1]
    assert claim.tune[0] == "--lr" and len(values) >= 3
    # the fake: tanh is fastest at the second value, relu at the third; the largest diverges
    best = {"relu": values[2], "tanh": values[1]}
    calls = []

    def fake_main(argv):
        a = build_parser().parse_args(argv)
        assert a.dropout == 0 and a.no_crop and a.no_flip and a.weight_decay == 0
        calls.append((a.activation, str(a.lr), a.seed))
        if str(a.lr) == values[-1]:
            return 3
        speed = 1.0 if str(a.lr) == best[a.activation] else 0.5
        speed *= 2 if a.activation == "relu" else 1
        curve = [[f / 10, max(0.05, 0.9 - speed * f / 10)] for f in range(1, 11)]
        hist = [{"epoch": 1, "train_top1_error": 0.5, "val_top1_error": 0.3, "seconds": 2.0,
                 "images_per_second": 640.0, "train_curve": curve}]   # 10 steps of 128
        write_fake_run(a, hist)
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    s = runner.run_claim("figure1", 3, "t", "cpu")
    for act in ("relu", "tanh"):
        assert s["stats"][act]["tuned"]["value"] == best[act]
        assert s["stats"][act]["tuned"]["sweep"][values[-1]] is None       # diverged
        assert sorted(seed for a, lr, seed in calls if a == act and lr == best[act]) == \
            [0, 1, 2]
        assert len([c for c in calls if c[0] == act]) == len(values) + 2
    # relu at its best: 0.9 - 2 x = 0.25 at x = 0.325 epochs; tanh: 0.65
    assert s["stats"]["relu"]["epochs_to_25_train_error"]["mean"] == pytest.approx(0.325)
    assert s["stats"]["tanh"]["epochs_to_25_train_error"]["mean"] == pytest.approx(0.65)
    assert s["stats"]["tanh"]["steps_to_25_train_error"]["mean"] == pytest.approx(6.5)
    assert s["verdict"] == "reproduced"
    assert os.path.exists(tmp_path / "results" / "t" / "figure1" / "relu" /
                          f"lr{values[-1]}" / "seed0" / "diverged.json")
    n = len(calls)
    runner.run_claim("figure1", 3, "t", "cpu")      # everything finished: nothing reruns
    assert len(calls) == n
    results_md.write_results_md(str(tmp_path / "docs" / "RESULTS.md"))
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| ReLU trains faster than tanh, in Figure 1"))
    assert f"relu at lr {best['relu']}: 0.33 ± 0.00 epochs (3 ± 0 steps)" in row
    assert f"{values[-1]} → diverged" in row
    assert f"tanh at lr {best['tanh']}" in row
    assert f"{values[0]} → not reached in 1 epoch," in row     # tanh's slow rates: 1.3 > 1
    assert "this claim: 6 epochs, no dropout" in row
    # the time counts the sweep too: 2 x (4 finished values + 2 more seeds) runs of 2 s
    assert s["seconds"] == pytest.approx(2 * 6 * 2.0, abs=1.0)
    assert (tmp_path / "results" / "t" / "figure1.png").stat().st_size > 0


def test_one_seed_is_never_a_decisive_verdict():
    c = CLAIMS["lrn"]
    one = lambda m: {c.metric: {"mean": m, "std": 0.0, "values": [m]}}
    assert verdict(c, {"lrn": one(0.10), "no-lrn": one(0.2)}) == "inconclusive"


def test_a_finished_run_must_be_the_run_asked_for(tmp_path, monkeypatch):
    """A metrics.json found in a claim's folder is reused only if it is the same
    configuration, trained on the dataset the scale names (never train.py's fallback
    to the bundled subset); runs go to train.py with --no-fallback; a results file cut
    short is named; a summary of more seeds is not overwritten by one of fewer."""


    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--dataset", "fashion-mnist", "--model",
                                                 "tiny", "--epochs", "1"], desc="fake"))
    seen = []

    def fake_main(argv):
        seen.append(argv)
        a = build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": 1, "train_top1_error": 0.5, "val_top1_error": 0.3,
                            "seconds": 2.0}])
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    claim = CLAIMS["dropout"]
    out = tmp_path / "results" / "t" / "dropout" / "x" / "seed0"
    m = runner.run_one(claim, "x", [], 0, "t", "cpu", str(out))
    assert "--no-fallback" in seen[-1] and m["dataset"] == "fashion-mnist"
    # the scale's flags changed since: the old result is not counted as the new run
    with pytest.raises(SystemExit, match=r"another configuration \(dropout: 0.5 -> 0.2\)"):
        runner.run_one(claim, "x", ["--dropout", "0.2"], 0, "t", "cpu", str(out))
    # trained on the subset (the fallback) although the scale says fashion-mnist
    m["dataset"] = "fashion-mnist-subset"
    (out / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(SystemExit, match="trained on fashion-mnist-subset, not on "
                                         "fashion-mnist"):
        runner.run_one(claim, "x", [], 0, "t", "cpu", str(out))
    (out / "metrics.json").write_text(json.dumps(m)[:40])          # cut short
    with pytest.raises(SystemExit, match=f"{out / 'metrics.json'} is not valid JSON"):
        runner.run_one(claim, "x", [], 0, "t", "cpu", str(out))
    # a 2-seed summary stays when the claim is run again with 1 seed
    (out / "metrics.json").unlink()
    runner.run_claim("dropout", 2, "t", "cpu")
    assert json.loads((tmp_path / "results" / "t" / "dropout.json").read_text())["seeds"] == 2
    runner.run_claim("dropout", 1, "t", "cpu")
    assert json.loads((tmp_path / "results" / "t" / "dropout.json").read_text())["seeds"] == 2


def test_more_seeds_train_only_the_new_runs(tmp_path, monkeypatch, capsys, tiny_scale):
    """`--seeds 0,1,2,3,4` (or `--seeds 5`) after three seeds trains seeds 3 and 4 only,
    and the summary pairs all five; a list that leaves out a summarized seed does not
    overwrite the summary."""
    monkeypatch.setattr(results_md, "RESULTS_MD", str(tmp_path / "docs" / "RESULTS.md"))
    trained = []

    def fake_main(argv):
        a = build_parser().parse_args(argv)
        trained.append((a.dropout, a.seed))
        # no dropout is 1 point worse, plus a seed's own offset shared by both arms
        err = 0.2 + 0.01 * (a.dropout == 0) + 0.03 * (a.seed % 3)
        write_fake_run(a, [{"epoch": 1, "train_top1_error": 0.3, "val_top1_error": 0.3,
                            "seconds": 1.0}], test_top1_error=err)
        return 0

    monkeypatch.setattr(runner, "run_training", fake_main)
    assert main(["dropout", "--scale", "t", "--seeds", "3"]) == 0
    assert len(trained) == 6
    assert main(["dropout", "--scale", "t", "--seeds", "0,1,2,3,4"]) == 0
    assert sorted(trained[6:]) == [(0.0, 3), (0.0, 4), (0.5, 3), (0.5, 4)]
    s = json.loads((tmp_path / "results" / "t" / "dropout.json").read_text())
    assert s["seeds"] == 5 and s["comparison"]["n"] == 5
    assert s["comparison"]["seeds"] == [0, 1, 2, 3, 4]
    assert s["comparison"]["mean"] == pytest.approx(0.01)       # no dropout − dropout 0.5
    assert s["verdict"] == "reproduced"
    assert s["command"] == "python -m experiments dropout --seeds 5 --scale t"
    assert "| no dropout − dropout 0.5: +1.00 points, 95% CI [+1.00, +1.00] (n = 5) |" in \
        (tmp_path / "docs" / "RESULTS.md").read_text()
    assert main(["dropout", "--scale", "t", "--seeds", "5"]) == 0     # nothing new
    assert main(["dropout", "--scale", "t", "--seeds", "3,4"]) == 0   # kept: 0-2 missing
    assert len(trained) == 10
    assert "summarizes seeds 0, 1, 2, 3, 4: kept" in capsys.readouterr().out
    assert json.loads((tmp_path / "results" / "t" / "dropout.json").read_text())["seeds"] == 5
    with pytest.raises(SystemExit):             # argparse: not a count or a list of seeds
        main(["dropout", "--scale", "t", "--seeds", "1,x"])


def test_a_flag_added_after_a_run_counts_as_its_default():
    """Runs made before a train.py flag existed behaved as its default: they still match
    a configuration with the default, and not one that sets the flag."""
    wanted = runner.train_settings(["--model", "tiny", "--raw-pixels"])
    old = {k: v for k, v in wanted.items() if k != "raw_pixels"}   # made before the flag
    assert runner.config_differences(old, wanted) == ["raw_pixels: False -> True"]
    assert runner.config_differences(old, dict(wanted, raw_pixels=False)) == []
    assert runner.config_differences(old, dict(wanted, raw_pixels=False, out="x",
                                                 quiet=True)) == []


def test_an_ensemble_written_without_ten_crops_has_its_row(tmp_path, monkeypatch):
    # a file of --no-ten-crop has no ten-crop errors: its row says so
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path))
    (tmp_path / "centre-only").mkdir()
    (tmp_path / "centre-only" / "ensemble.json").write_text(json.dumps(dict(
        networks=[dict(checkpoint="a.npz", center_top1_error=0.2),
                  dict(checkpoint="b.npz", center_top1_error=0.3)],
        ensemble=dict(center_top1_error=0.15))))
    row = [r for r in results_md.ensemble_md_lines() if r.startswith("| centre-only |")]
    assert row == ["| centre-only | 2 | (not tested on ten crops) | — | 15.00% | "
                   "`python -m experiments ensemble a.npz b.npz` |"]


@pytest.mark.parametrize("old_format", [False, True])
def test_a_diverged_record_counts_only_for_its_own_configuration(
        tmp_path, monkeypatch, tiny_scale, old_format):
    """A sweep's diverged.json is reused like a finished run's metrics.json: for the same
    settings only; one from other settings (the scale or claim changed) is an error, not
    a learning rate silently marked as diverged. Records from before the settings were
    kept in diverged.json are judged by their command line."""
    calls = []

    def fake_main(argv):
        calls.append(argv)
        return 3                                   # train.py's exit code for a NaN loss
    monkeypatch.setattr(runner, "run_training", fake_main)
    claim = CLAIMS["figure1"]
    out = str(tmp_path / "results" / "t" / "x" / "seed0")
    flags = claim.common + ["--lr", "0.1"]
    d = runner.run_one(claim, "relu", flags, 0, "t", "cpu", out, may_diverge=True)
    assert d["diverged"] and len(calls) == 1
    path = os.path.join(out, "diverged.json")
    if old_format:
        rec = json.load(open(path))
        del rec["args"]
        json.dump(rec, open(path, "w"))
    assert runner.run_one(claim, "relu", flags, 0, "t", "cpu", out, may_diverge=True)[
        "diverged"] and len(calls) == 1            # the same settings: reused, not rerun
    monkeypatch.setitem(SCALES, "t", dict(SCALES["t"], flags=SCALES["t"]["flags"]
                                          + ["--batch-size", "64"]))
    with pytest.raises(SystemExit, match=r"diverged.json is a diverged run of another "
                                         r"configuration \(batch_size: 128 -> 64\)"):
        runner.run_one(claim, "relu", flags, 0, "t", "cpu", out, may_diverge=True)
    assert len(calls) == 1




def test_results_md_is_what_the_results_make(tmp_path):
    """docs/RESULTS.md is generated: writing it again from experiments/results/ changes
    nothing (after a change to the results or to results_md.py, run
    `python -c "from experiments.results_md import write_results_md as w; w()"`)."""
    out = tmp_path / "RESULTS.md"
    results_md.write_results_md(str(out))
    with open(results_md.RESULTS_MD, encoding="utf-8") as f:
        assert out.read_text(encoding="utf-8") == f.read()


def test_the_headline_record_goes_into_results_md_with_its_links_from_docs(
        tmp_path, monkeypatch):
    """RESULTS/headline/README.md, written by hand, is copied into RESULTS.md above the
    claims; its links to files lead there from docs/, its links to anchors and to the
    web are kept."""
    results = tmp_path / "experiments" / "results"
    (results / "headline").mkdir(parents=True)
    (results / "headline" / "README.md").write_text(
        "## The headline\n\n[m](metrics.json), [e](../x-1/ensemble.json), [a](#x-1), "
        "[w](https://example.org/p)\n\n![curves](curves.png)\n")
    monkeypatch.setattr(runner, "RESULTS", str(results))
    monkeypatch.setattr(results_md, "RESULTS_MD", str(tmp_path / "docs" / "RESULTS.md"))
    results_md.write_results_md()
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert ("[m](../experiments/results/headline/metrics.json), "
            "[e](../experiments/results/x-1/ensemble.json), [a](#x-1), "
            "[w](https://example.org/p)") in md
    assert "![curves](../experiments/results/headline/curves.png)" in md
    assert md.index("## The headline") < md.index("## The claims")


def test_the_experiments_modules_import_one_way():
    """No import cycle among experiments/*.py: __main__ (the command line) imports the
    others, and none of them imports __main__."""
    folder = os.path.dirname(runner.__file__)
    modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(folder, "*.py"))}
    imports = {}
    for name in modules:
        with open(os.path.join(folder, name + ".py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "experiments":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "experiments."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names
                          if a.name.startswith("experiments.")}
        imports[name] = found & modules
    assert not any("__main__" in found for found in imports.values()), imports
    done, visiting = set(), []

    def visit(name):                 # depth first: a module met again on its own path
        assert name not in visiting, f"import cycle: {' -> '.join(visiting + [name])}"
        if name in done:
            return
        visiting.append(name)
        for other in sorted(imports[name]):
            visit(other)
        visiting.pop()
        done.add(name)

    for name in sorted(modules):
        visit(name)
