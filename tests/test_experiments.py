"""The claim runner's arithmetic: epochs-to-threshold, verdicts, summaries."""
import json
import os

import pytest

import train

from experiments.__main__ import epochs_to, main, summarize, verdict
from experiments.claims import CLAIMS, SCALES


def test_epochs_to_threshold_interpolates():
    hist = [{"epoch": 1, "e": 0.6}, {"epoch": 2, "e": 0.3}, {"epoch": 3, "e": 0.2}]
    # between epoch 2 (0.30) and 3 (0.20), 0.25 is reached half-way
    assert epochs_to(hist, "e", 0.25) == pytest.approx(2.5)
    assert epochs_to(hist, "e", 0.6) == pytest.approx(1.0)
    assert epochs_to(hist, "e", 0.1) is None


def test_summarize_uses_sample_std():
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)


def test_verdicts():
    c = CLAIMS["lrn"]          # lower test error with LRN is the paper's claim
    mk = lambda m, sd: {c.metric: {"mean": m, "std": sd}}
    assert verdict(c, {"lrn": mk(0.10, 0.01), "no-lrn": mk(0.15, 0.01)}) == "reproduced"
    assert verdict(c, {"lrn": mk(0.15, 0.01), "no-lrn": mk(0.10, 0.01)}) == "not reproduced"
    assert verdict(c, {"lrn": mk(0.10, 0.03), "no-lrn": mk(0.12, 0.03)}) == \
        "inconclusive at this scale"


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_scale_is_a_valid_train_command_with_he_init(scale):
    """The paper's N(0, 0.01) init keeps the small presets near chance for a long
    time (the init claim), so every scale's baseline uses He init; only the init claim's 'paper'
    variant, whose flags come after the scale's, changes it back."""
    parser = train.build_parser()
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
    import json

    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
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
    runner.write_results_md()
    table = (tmp_path / "docs" / "RESULTS.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Dropout"))
    assert "dropout 0.5: 10.00 ± 1.00%, test − train gap 2.00 ± 0.50%" in row
    assert "no dropout: 14.00 ± 1.00%, test − train gap 9.00 ± 1.00%" in row
    assert "| reproduced |" in row and "2 min of training" in row
    # a third arm is shown, and the verdict says which two it judged
    summary["stats"]["dropout 0.8"] = summary["stats"]["no dropout"]
    (tmp_path / "results" / "small" / "dropout.json").write_text(json.dumps(summary))
    runner.write_results_md()
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| Dropout"))
    assert "<br>dropout 0.8: 14.00 ± 1.00%" in row
    assert "| reproduced (dropout 0.5 against no dropout) |" in row


def test_headline_record_hashes_the_checkpoint_and_shows_in_results(tmp_path, monkeypatch,
                                                                     capsys):
    import hashlib
    import json

    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    hist = [{"epoch": e, "lr": lr, "seconds": s, "train_top1_error": 0.1, "val_top1_error": 0.1}
            for e, lr, s in [(1, 0.01, 400.0), (2, 0.01, 420.0), (3, 0.001, 500.0)]]
    metrics = dict(dataset="fashion-mnist", model="mini", device="cpu", history=hist,
                   test_top1_error=0.071, test_tencrop_top1_error=0.071,
                   test_center_top1_error=0.074, test_tencrop_top5_error=0.002,
                   test_class_top1_error={"Shirt": 0.2, "Coat": 0.1, "Bag": 0.01,
                                          "Trouser": 0.02, "Dress": 0.05},
                   best_epoch=3, best_val_top1_error=0.069)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "best.npz").write_bytes(b"weights")
    (run / "log.txt").write_text("epoch 1/3 ...\n")
    # not finished yet (no test errors): a clear error, nothing recorded
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "metrics.json").write_text(json.dumps({"history": hist}))
    (unfinished / "best.npz").write_bytes(b"w")
    assert main(["headline", "--run", str(unfinished)]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert main(["headline", "--run", str(tmp_path / "nowhere")]) == 2
    assert "metrics.json not found" in capsys.readouterr().err

    assert main(["headline", "--run", str(run), "--log", str(run / "log.txt"),
                 "--command", "python train.py --epochs 3", "--machine", "test box"]) == 0
    s = json.loads((tmp_path / "results" / "headline" / "headline.json").read_text())
    assert s["checkpoint_sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert s["lr_drop_epochs"] == [3] and s["epochs"] == 3
    assert s["seconds_per_epoch_median"] == 420.0 and s["seconds_total"] == 1320.0
    assert s["target_met"] is False                   # 7.1% > 6.0%
    assert (tmp_path / "results" / "headline" / "train.log").exists()
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "**7.10%** (target 6.00%: **not met**)" in md
    assert hashlib.sha256(b"weights").hexdigest() in md
    assert "python train.py --epochs 3" in md and "test box (cpu)" in md
    assert ("| the hardest classes (test top-1 error) | Shirt 20.00%, Coat 10.00%, "
            "Dress 5.00%, Trouser 2.00% |") in md

    # a variant goes beside the headline, never over it
    metrics.update(test_tencrop_top1_error=0.058, test_top1_error=0.058)
    (run / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit):
        main(["headline", "--run", str(run), "--variant", "lr02"])       # no --change
    with pytest.raises(SystemExit):
        main(["headline", "--run", str(run), "--variant", "../x", "--change", "c"])
    assert not (tmp_path / "x").exists()
    assert main(["headline", "--run", str(run), "--variant", "lr02", "--change",
                 "lr 0.02", "--command", "python train.py --lr 0.02"]) == 0
    v = json.loads((tmp_path / "results" / "headline-lr02" / "headline.json").read_text())
    assert v["change"] == "lr 0.02" and v["target_met"] is True       # 5.8% <= 6.0%
    s = json.loads((tmp_path / "results" / "headline" / "headline.json").read_text())
    assert s["test_tencrop_top1_error"] == 0.071 and "change" not in s
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "**7.10%** (target 6.00%: **not met**)" in md
    head, variant = md.index("## The headline"), md.index("### A documented change: lr 0.02")
    assert head < variant < md.index("## The claims")
    assert "**5.80%** (target 6.00%: **met**)" in md[variant:]
    assert "python train.py --lr 0.02" in md[variant:]
    # the overview above lists both, lowest error first, each linked to its section
    overview = md[md.index("## Every attempt"):head]
    assert "met by lr02." in overview
    assert "| **5.80%** | 7.40% | [lr02](#headline-lr02) | 1 | 3 | 22 min | " in overview
    assert "| 7.10% | 7.40% | [headline (the paper's recipe)](#headline) | 1 | 3 | " in overview
    assert overview.index("#headline-lr02") < overview.index("(#headline)")
    assert md.index('<a id="headline-lr02"></a>') < variant
    assert md.index('<a id="headline"></a>') < head

    # a run tested when --time-limit stopped it says how far it got
    metrics.update(stopped_by_time_limit=True, epochs_planned=40)
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["headline", "--run", str(run), "--variant", "short", "--change",
                 "a GPU lease"]) == 0
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    short = md[md.index("### A documented change: a GPU lease"):]
    assert "| epochs | 3 of 40 (stopped by --time-limit) (best validation" in short
    assert "(cpu) |" in short            # no TF32 note off the GPU
    assert "| epochs | 3 (best validation" in md[variant:md.index("### A documented change: a GPU")]

    # a run with no validation set (--val-fraction 0) says its last epoch was tested
    metrics.update(best_val_top1_error=None, stopped_by_time_limit=False)
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["headline", "--run", str(run), "--variant", "all60k", "--change",
                 "every training image"]) == 0
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert ("| epochs | 3 (no validation set, every training image trained: the last "
            "epoch, 3, tested) |") in md[md.index("### A documented change: every training"):]


def ten_crop_outputs(paths, ds):
    """Each checkpoint's ten-crop softmax outputs on ds's test set, computed here with
    the subset's preparation (pad 2, crop 28), independently of the ensemble's run()."""
    from experiments import ensemble
    probs = []
    for p in paths:
        model, mean, _ = ensemble.load_network(p)
        prep = dict(mean=mean, pad=2, crop=28, scale=1 / 255)
        probs.append(ensemble.predict(model, ds.test_x, ds.test_y, prep, mode="ten"))
    return probs


def test_ensemble_averages_the_networks_softmax_outputs(tmp_path, capsys, monkeypatch):
    """Two tiny nets trained briefly on the subset: each network's errors match what
    train.py reported for it, and the ensemble's equal those of the averaged outputs."""
    import json

    import numpy as np

    import train
    from experiments import ensemble

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
    ds = train.load_data(train.build_parser().parse_args(quick))
    probs = ten_crop_outputs(paths, ds)
    assert not np.allclose(probs[0], probs[1])              # two different networks
    avg = (probs[0] + probs[1]) / 2
    expect = np.mean(avg.argmax(1) != ds.test_y)
    assert abs(res["ensemble"]["tencrop_top1_error"] - expect) < 1e-12
    shirt = ds.test_y == ds.classes.index("Shirt")             # where the errors are
    assert res["ensemble"]["class_top1_error"]["Shirt"] == pytest.approx(
        np.mean(avg.argmax(1)[shirt] != ds.test_y[shirt]))

    # recorded as a headline variant, the ensemble evaluated again from the checkpoints;
    # nets of the subset are no headline (the whole dataset, ten crops) unless the
    # headline's data is the subset, as here
    import experiments.__main__ as runner
    from experiments import headline
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    capsys.readouterr()
    two = ["headline", "--variant", "two", "--change", "two tiny nets",
           "--run", str(runs[0]), "--run", str(runs[1])]
    assert main(two) == 2
    err = capsys.readouterr().err
    assert ("it was trained on fashion-mnist-subset, not fashion-mnist; it used the first "
            "384 training images only (--train-limit)") in err
    monkeypatch.setattr(headline, "HEADLINE_DATA",
                        dict(dataset="fashion-mnist-subset", train_limit=384))
    assert main(two) == 0
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    top = max(res["ensemble"]["class_top1_error"].values())
    first = min(c for c, e in res["ensemble"]["class_top1_error"].items() if e == top)
    assert f"The average's hardest classes (test top-1 error): {first} " in md, md[-3000:]
    s = json.loads((tmp_path / "results" / "headline-two" / "headline.json").read_text())
    assert s["test_tencrop_top1_error"] == res["ensemble"]["tencrop_top1_error"]
    assert s["test_center_top1_error"] == res["ensemble"]["center_top1_error"]

    # networks of the full dataset are never tested on the subset it falls back to
    from data.datasets import load_fashion_subset
    monkeypatch.setattr(ensemble.T, "load_data", lambda a: load_fashion_subset())
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
    import json

    import numpy as np

    import train
    from experiments import ensemble

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

    from experiments import ensemble

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
    ds = train.load_data(train.build_parser().parse_args(quick))
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
    import experiments.__main__ as runner
    from experiments.claims import SCALES

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--model", "tiny", "--epochs", "2"],
                                          desc="fake"))
    return runner


def test_claims_train_a_shared_baseline_once(tmp_path, monkeypatch, tiny_scale):
    """'relu' in the ReLU claim and 'lrn' in the LRN claim are the same run: the second
    claim reuses it (and says so) instead of training it again; a real difference in
    the flags still trains."""
    import train
    runner = tiny_scale
    trained = []

    def fake_main(argv):           # writes what train.py would, without training
        a = train.build_parser().parse_args(argv)
        trained.append(a.out)
        hist = [{"epoch": e, "train_top1_error": 0.5 / e, "val_top1_error": 0.4 / e,
                 "seconds": 1.0} for e in (1, 2)]
        write_fake_run(a, hist)
        return 0

    monkeypatch.setattr(train, "main", fake_main)
    runner.run_claim("relu", 1, "t", "cpu")
    assert len(trained) == 2                      # relu, tanh
    runner.run_claim("lrn", 1, "t", "cpu")
    assert len(trained) == 3                      # only no-lrn is new
    assert trained[-1].endswith(os.path.join("lrn", "no-lrn", "seed0"))
    shared = json.loads((tmp_path / "results" / "t" / "lrn" / "lrn" / "seed0" /
                         "metrics.json").read_text())
    assert shared["shared_from"] == os.path.join("t", "relu", "relu", "seed0")
    summary = json.loads((tmp_path / "results" / "t" / "lrn.json").read_text())
    assert summary["stats"]["lrn"]["test_top1_error"]["mean"] == pytest.approx(0.3)
    assert summary["device"] == "cpu"
    # the baseline trained again (--force): the other claims' copies take its results
    # (they kept the old ones, so the two claims disagreed about one run)
    def fake_main_again(argv):
        a = train.build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": 1, "train_top1_error": 0.3, "val_top1_error": 0.3,
                            "seconds": 1.0}], test_top1_error=0.2)
        return 0

    monkeypatch.setattr(train, "main", fake_main_again)
    runner.run_claim("relu", 1, "t", "cpu", force=True)
    shared = json.loads((tmp_path / "results" / "t" / "lrn" / "lrn" / "seed0" /
                         "metrics.json").read_text())
    assert shared["test_top1_error"] == 0.2
    assert shared["shared_from"] == os.path.join("t", "relu", "relu", "seed0")
    runner.run_claim("lrn", 1, "t", "cpu")
    summary = json.loads((tmp_path / "results" / "t" / "lrn.json").read_text())
    assert summary["stats"]["lrn"]["test_top1_error"]["mean"] == pytest.approx(0.2)


def test_a_claim_names_the_devices_its_runs_trained_on(tmp_path, monkeypatch, capsys,
                                                       tiny_scale):
    # A GPU run of a claim reuses the CPU's shared baseline: the summary used to say
    # "cuda" for all of it, and nothing warned that the two arms differ in device.
    import train
    runner = tiny_scale

    def fake_main(argv):
        a = train.build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": e, "train_top1_error": 0.5 / e, "val_top1_error": 0.4,
                            "seconds": 1.0} for e in (1, 2)],
                       device=a.device, cupy_tf32=a.device == "cuda")
        return 0

    monkeypatch.setattr(train, "main", fake_main)
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
    import train
    runner = tiny_scale

    def fake_main(argv):
        a = train.build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": e, "train_top1_error": 0.5 / e,
                            "val_top1_error": 0.4 / e, "seconds": 30.0} for e in (1, 2)])
        return 0

    monkeypatch.setattr(train, "main", fake_main)
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
    import json

    import numpy as np

    import experiments.__main__ as runner
    import train
    from experiments.claims import CLAIMS, SCALES
    from tests.test_train import QUICK, StopAfter, params_of

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setitem(SCALES, "t", dict(flags=QUICK + ["--epochs", "2"], desc="fake"))
    claim = CLAIMS["dropout"]
    whole, part = tmp_path / "whole", tmp_path / "results" / "t" / "x" / "seed0"
    m_whole = runner.run_one(claim, "a", [], 0, "t", "cpu", str(whole))
    with monkeypatch.context() as mp, pytest.raises(SystemExit, match="exit 130"):
        mp.setattr(train, "StopRequest", StopAfter)           # stops after 2 steps
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
    import json

    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    claim = CLAIMS["augment"]
    assert claim.metric == "test_center_top1_error"
    st = lambda m: {"mean": m, "std": 0.001, "values": [m] * 3}
    stats = {"crops+flips": {"test_center_top1_error": st(0.15), "test_top1_error": st(0.14),
                             "train_test_gap": st(-0.02), "reached_25": 3},
             "none": {"test_center_top1_error": st(0.145), "test_top1_error": st(0.23),
                      "train_test_gap": st(0.03), "reached_25": 3}}
    v = verdict(claim, stats)       # 14.5% against 15.0% on the centre crop: no win
    assert v == "not reproduced"
    summary = dict(claim="augment", title="Data augmentation", paper="p",
                   metric=claim.metric, notes="", scale="small", scale_desc="tiny", seeds=3,
                   device="cpu", verdict=v, seconds=60.0, seconds_per_epoch=5.0,
                   command="python -m experiments augment", stats=stats)
    (tmp_path / "results" / "small").mkdir(parents=True)
    (tmp_path / "results" / "small" / "augment.json").write_text(json.dumps(summary))
    runner.write_results_md()
    row = next(line for line in (tmp_path / "docs" / "RESULTS.md").read_text().splitlines()
               if line.startswith("| Data augmentation"))
    assert "none: 14.50 ± 0.10% (centre crop), ten-crop 23.00 ± 0.10%" in row


def test_results_show_a_recorded_ensemble(tmp_path, monkeypatch):
    import json

    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    net = lambda p, e: {"checkpoint": p, "tencrop_top1_error": e, "center_top1_error": e}
    (tmp_path / "results" / "medium").mkdir(parents=True)
    (tmp_path / "results" / "medium" / "ensemble.json").write_text(json.dumps(
        {"dataset": "fashion-mnist", "test_images": 10,
         "networks": [net("a/best.npz", 0.20), net("b/best.npz", 0.10)],
         "ensemble": {"tencrop_top1_error": 0.09, "center_top1_error": 0.11}}))
    runner.write_results_md()
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
    runner.write_results_md()
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert md.index("| mixed | 2 |") < md.index("- mixed: two recipes")


def test_epochs_to_25_uses_the_curve_within_epochs():
    """With train.py's curve (the error of each tenth of an epoch) the threshold is found
    within the epoch, not from the epoch's average, which lags behind."""
    from experiments.__main__ import derived
    curve = [[0.5, 0.40], [1.0, 0.20]]            # 25% crossed at 0.5 + 0.75 * 0.5
    m = {"history": [{"epoch": 1, "train_top1_error": 0.30, "train_curve": curve}],
         "test_center_top1_error": 0.2}
    assert derived(m, 1)["epochs_to_25_train_error"] == pytest.approx(0.875)
    del m["history"][0]["train_curve"]            # older runs: the epoch's average only
    assert derived(m, 1)["epochs_to_25_train_error"] == 1.0
    assert derived(m, 1)["reached_25"] is False


def test_tuned_claim_sweeps_seed0_then_runs_the_best_value(tmp_path, monkeypatch):
    """figure1 picks each network's learning rate as the paper did: seed 0 at every
    value, the fastest kept (a diverged value is recorded and loses), the other seeds
    at that value only; the table shows the sweep."""
    import os

    import experiments.__main__ as runner
    import train
    from experiments.claims import SCALES

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--model", "tiny", "--lr", "0.02"],
                                          desc="fake"))
    claim = CLAIMS["figure1"]
    values = claim.tune[1]
    assert claim.tune[0] == "--lr" and len(values) >= 3
    # the fake: tanh is fastest at the second value, relu at the third; the largest diverges
    best = {"relu": values[2], "tanh": values[1]}
    calls = []

    def fake_main(argv):
        a = train.build_parser().parse_args(argv)
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

    monkeypatch.setattr(train, "main", fake_main)
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
    runner.write_results_md()
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


def test_headline_records_an_ensemble_of_runs(tmp_path, monkeypatch, capsys):
    """Several --run with --variant: each network's record and hash, and the ensemble's
    error from `experiments ensemble --out`, checked to be of the same networks."""
    import hashlib
    import json

    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    runs, nets = [], []
    for i, (ten, centre) in enumerate([(0.070, 0.073), (0.069, 0.071), (0.071, 0.074)]):
        run = tmp_path / f"s{i}"
        run.mkdir()
        hist = [{"epoch": 1, "lr": 0.02, "seconds": 300.0, "train_top1_error": 0.1,
                 "val_top1_error": 0.08}]
        (run / "metrics.json").write_text(json.dumps(dict(
            dataset="fashion-mnist", model="mini", device="cuda", history=hist,
            test_top1_error=ten, test_tencrop_top1_error=ten, test_center_top1_error=centre,
            best_epoch=1, best_val_top1_error=0.08, args={"seed": i})))
        if i == 2:        # its checkpoint stayed on the GPU machine: only the hash came back
            (run / "best.npz.sha256").write_text("ab" * 32 + "  best.npz\n")
        else:
            (run / "best.npz").write_bytes(b"w%d" % i)
        runs.append(str(run))
        # the ensemble's own evaluation of s0 differs by one image of 10,000 (on a GPU,
        # TF32 products in batches of another size): still the same network
        nets.append({"checkpoint": f"/gpu/s{i}/best.npz", "tencrop_top1_error": ten,
                     "center_top1_error": centre + (1e-4 if i == 0 else 0.0)})
    ens = tmp_path / "ens.json"
    ens.write_text(json.dumps({"dataset": "fashion-mnist", "test_images": 10000,
                               "networks": nets, "ensemble": {"tencrop_top1_error": 0.059,
                                                              "center_top1_error": 0.062}}))
    args = ["headline", "--variant", "ens3", "--change", "3 networks averaged",
            "--ensemble", str(ens)] + [x for r in runs for x in ("--run", r)]
    # an ensemble is a change to the recipe: not the headline itself
    with pytest.raises(SystemExit):
        main(["headline", "--run", runs[0], "--run", runs[1]])
    # the ensemble must be of these networks, in this order
    swapped = args[:-4] + ["--run", runs[2], "--run", runs[1]]
    assert main(swapped) == 2
    assert "not the same network" in capsys.readouterr().err
    assert main(args + ["--command", "python -m experiments ensemble ..."]) == 0
    dest = tmp_path / "results" / "headline-ens3"
    s = json.loads((dest / "headline.json").read_text())
    assert s["target_met"] is True and s["test_tencrop_top1_error"] == 0.059
    assert [n["checkpoint_sha256"] for n in s["networks"]] == [
        hashlib.sha256(b"w0").hexdigest(), hashlib.sha256(b"w1").hexdigest(), "ab" * 32]
    assert [n["seed"] for n in s["networks"]] == [0, 1, 2]
    assert (dest / "metrics-3.json").exists() and (dest / "ensemble.json").exists()
    md = (tmp_path / "docs" / "RESULTS.md").read_text()
    section = md[md.index("### A documented change: 3 networks averaged"):]
    assert "**5.90%** (target 6.00%: **met**; each network 7.00% on average)" in section
    assert "ab" * 32 in section


def test_gpu_headline_script_runs_end_to_end_on_the_cpu(tmp_path, monkeypatch):
    """scripts/gpu_headline.sh with CPU settings (two tiny nets, one epoch): it trains
    the seeds at once while the CuPy tests run (skipped here: no GPU), hashes the
    checkpoints, writes the ensemble and packs all but the checkpoints; its folder is
    what `experiments headline --ensemble` records."""
    import hashlib
    import json
    import os
    import subprocess
    import sys

    import experiments.__main__ as runner
    from tests.conftest import ROOT

    out = tmp_path / "gpu"
    pack = tmp_path / "gpu.tar.gz"
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", MODEL="tiny", EPOCHS="1",
               SEEDS="0 1", DATASET="fashion-mnist-subset", TESTS="parallel",
               PYTHON=sys.executable, TRAIN_SECONDS="900", PACK=str(pack),
               TRAIN_FLAGS="--init he --train-limit 640 --batch-size 64 --no-prefetch")
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_headline.sh")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "seed 1: exit 0" in r.stdout and "ensemble of 2" in r.stdout
    assert "the CuPy cases of the tests: exit 0" in r.stdout
    assert "skipped" in (out / "gpu-tests.log").read_text()      # ran, found no GPU
    m = json.loads((out / "seed1" / "metrics.json").read_text())
    assert m["args"]["time_limit"] == 900 and "stopped_by_time_limit" not in m
    import tarfile
    with tarfile.open(pack) as tar:
        names = set(tar.getnames())
    assert {"gpu/seed0/metrics.json", "gpu/seed1/best.npz.sha256", "gpu/seed0.log",
            "gpu/ensemble.json", "gpu/gpu-tests.log"} <= names, names
    assert not any(n.endswith(".npz") for n in names), names
    for s in (0, 1):
        digest = (out / f"seed{s}" / "best.npz.sha256").read_text().split()[0]
        assert digest == hashlib.sha256((out / f"seed{s}" / "best.npz").read_bytes()).hexdigest()
        assert not (out / f"seed{s}" / "last.npz").exists()
    ens = json.loads((out / "ensemble.json").read_text())

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    for s in (0, 1):                 # as if the checkpoints had stayed on the GPU machine
        (out / f"seed{s}" / "best.npz").unlink()
    from experiments import headline      # a headline of the subset, for this test only
    monkeypatch.setattr(headline, "HEADLINE_DATA",
                        dict(dataset="fashion-mnist-subset", train_limit=640))
    assert main(["headline", "--variant", "gpu2", "--change", "two nets",
                 "--ensemble", str(out / "ensemble.json"), "--run", str(out / "seed0"),
                 "--run", str(out / "seed1"), "--log", str(out / "seed0.log")]) == 0
    rec = json.loads((tmp_path / "results" / "headline-gpu2" / "headline.json").read_text())
    assert rec["test_tencrop_top1_error"] == ens["ensemble"]["tencrop_top1_error"]
    assert rec["networks"][1]["checkpoint_sha256"] == digest


def test_gpu_headline_script_refuses_a_missing_gpu(tmp_path):
    import os
    import subprocess
    import sys

    from engine.backend import gpu_status
    from tests.conftest import ROOT
    if gpu_status()[0]:
        pytest.skip("a GPU is usable here")
    env = dict(os.environ, OUT=str(tmp_path / "gpu"), DEVICE="cuda", PYTHON=sys.executable)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_headline.sh")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "gpu_headline: the GPU was requested but is not usable" in r.stderr
    assert not (tmp_path / "gpu" / "seed0").exists()


def test_gpu_headline_script_names_a_bad_tests_setting(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT
    env = dict(os.environ, OUT=str(tmp_path / "gpu"), TESTS="later", PYTHON=sys.executable)
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_headline.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "gpu_headline: TESTS must be parallel, first or skip, not 'later'" in r.stderr
    assert not (tmp_path / "gpu").exists()


def test_one_seed_is_never_a_decisive_verdict():
    c = CLAIMS["lrn"]
    one = lambda m: {c.metric: {"mean": m, "std": 0.0, "values": [m]}}
    assert verdict(c, {"lrn": one(0.10), "no-lrn": one(0.1001)}).startswith("inconclusive")


def test_a_finished_run_must_be_the_run_asked_for(tmp_path, monkeypatch):
    """A metrics.json found in a claim's folder is reused only if it is the same
    configuration, trained on the dataset the scale names (never train.py's fallback
    to the bundled subset); runs go to train.py with --no-fallback; a results file cut
    short is named; a summary of more seeds is not overwritten by one of fewer."""
    import json

    import experiments.__main__ as runner
    import train
    from experiments.claims import SCALES

    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(runner, "ROOT", str(tmp_path))
    monkeypatch.setitem(SCALES, "t", dict(flags=["--dataset", "fashion-mnist", "--model",
                                                 "tiny", "--epochs", "1"], desc="fake"))
    seen = []

    def fake_main(argv):
        seen.append(argv)
        a = train.build_parser().parse_args(argv)
        write_fake_run(a, [{"epoch": 1, "train_top1_error": 0.5, "val_top1_error": 0.3,
                            "seconds": 2.0}])
        return 0

    monkeypatch.setattr(train, "main", fake_main)
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


def test_a_flag_added_after_a_run_counts_as_its_default():
    """Runs made before a train.py flag existed behaved as its default: they still match
    a configuration with the default, and not one that sets the flag."""
    import experiments.__main__ as runner
    import train
    wanted = vars(train.build_parser().parse_args(["--model", "tiny", "--erase", "0.5"]))
    old = {k: v for k, v in wanted.items() if k != "erase"}        # made before --erase
    assert runner.config_differences(old, wanted) == ["erase: 0.0 -> 0.5"]
    assert runner.config_differences(old, dict(wanted, erase=0.0)) == []
    assert runner.config_differences(old, dict(wanted, erase=0.0, out="x", quiet=True)) == []


def test_a_five_crop_run_is_no_headline():
    from experiments import headline
    ok = dict(dataset="fashion-mnist", args=dict(train_limit=None), test_eval="ten-crop",
              test_tencrop_top1_error=0.06)
    headline.check_headline_run(ok, "runs/x")             # no error
    with pytest.raises(ValueError, match="trained without reflections .* five crops, not ten"):
        headline.check_headline_run(dict(ok, test_eval="five-crop"), "runs/x")


def test_an_ensemble_written_without_ten_crops_has_its_row(tmp_path, monkeypatch):
    # used to be a KeyError that ended every claim and headline record in a traceback
    import experiments.__main__ as runner
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path))
    (tmp_path / "centre-only").mkdir()
    (tmp_path / "centre-only" / "ensemble.json").write_text(json.dumps(dict(
        networks=[dict(checkpoint="a.npz", center_top1_error=0.2),
                  dict(checkpoint="b.npz", center_top1_error=0.3)],
        ensemble=dict(center_top1_error=0.15))))
    row = [r for r in runner.ensemble_md_lines() if r.startswith("| centre-only |")]
    assert row == ["| centre-only | 2 | (not tested on ten crops) | — | 15.00% | "
                   "`python -m experiments ensemble a.npz b.npz` |"]


@pytest.mark.parametrize("old_format", [False, True])
def test_a_diverged_record_counts_only_for_its_own_configuration(
        tmp_path, monkeypatch, tiny_scale, old_format):
    """A sweep's diverged.json is reused like a finished run's metrics.json: for the same
    settings only; one from other settings (the scale or claim changed) is an error, not
    a learning rate silently marked as diverged. Records from before the settings were
    kept in diverged.json are judged by their command line."""
    runner = tiny_scale
    calls = []

    def fake_main(argv):
        calls.append(argv)
        return 3                                   # train.py's exit code for a NaN loss
    monkeypatch.setattr(train, "main", fake_main)
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


def test_a_cosine_run_is_recorded_as_a_cosine_not_as_drops():
    """A run of train.py --cosine changes its rate every epoch: its record says cosine
    and lists no epochs of drops; a run of steps keeps its drop epochs."""
    from experiments.headline import results_md_lines, summarize_run
    hist = [{"epoch": e, "lr": lr, "seconds": 300.0} for e, lr in
            [(1, 0.02), (2, 0.0171), (3, 0.01), (4, 0.0029)]]
    metrics = dict(dataset="fashion-mnist", model="mini", device="cpu", history=hist,
                   test_top1_error=0.07, test_center_top1_error=0.072, best_epoch=4,
                   best_val_top1_error=None, args={"cosine": True})
    s = summarize_run(metrics)
    assert s["lr_schedule"] == "cosine" and s["lr_drop_epochs"] == []
    s.update(machine="test box", checkpoint="best.npz", checkpoint_sha256="0" * 64,
             logs=["train.log"], recorded="2026-11-28", commands=["python train.py"],
             change="cosine")
    md = "\n".join(results_md_lines(s))
    assert "| learning rate | 0.02 to 0.0029, on a cosine over the epochs (--cosine) |" in md
    metrics["args"] = {"cosine": False, "lr_drops": "0.5"}
    s = summarize_run(metrics)
    assert s["lr_schedule"] == "steps" and s["lr_drop_epochs"] == [2, 3, 4]
    # a run of drops resumed on a cosine (a warm restart): the drops before it stay
    metrics["history"] = [{"epoch": e, "lr": lr, "seconds": 300.0} for e, lr in
                          [(1, 0.02), (2, 0.002), (3, 0.0002), (4, 0.0114), (5, 0.0029)]]
    metrics["args"] = {"cosine": True, "lr_drops": None}
    s = summarize_run(metrics)
    assert s["lr_drop_epochs"] == [2, 3] and s["cosine_from"] == 4
    s.update(machine="test box", checkpoint="best.npz", checkpoint_sha256="0" * 64,
             logs=["train.log"], recorded="2026-11-28", commands=["python train.py"],
             change="restart")
    md = "\n".join(results_md_lines(s))
    assert ("| learning rate | 0.02 to 0.0029, divided by 10 before epoch(s) 2, 3, then on "
            "a cosine from epoch 4 on (--cosine, on --resume) |") in md
    # a cosine run resumed with more epochs (the curve stretched, the rate up a little):
    # its own cosine steps before are not drops
    metrics["history"] = [{"epoch": e, "lr": lr, "seconds": 300.0} for e, lr in
                          [(1, 0.02), (2, 0.01), (3, 0.012), (4, 0.006), (5, 0.001)]]
    s = summarize_run(metrics)
    assert s["lr_drop_epochs"] == [] and s["cosine_from"] == 3
