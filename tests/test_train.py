"""train.py end to end on the committed Fashion-MNIST subset: a real (short) run that
must learn, exact resume (after an epoch and mid-epoch), NaN handling, evaluation of
a checkpoint, and one-line errors for bad input."""
import json
import os
import shutil

import numpy as np
import pytest

import train
import training.checkpoints
import training.data
import training.evaluation
import training.loop
import training.metrics
import training.report
import training.state
import training.stop
from alexnet import AlexNet
from tests.conftest import ROOT

SUBSET = os.path.join(ROOT, "data", "fashion-mnist-subset")
QUICK = ["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
         "--train-limit", "384", "--batch-size", "64", "--quiet", "--no-ten-crop"]


def params_of(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k.startswith(("param/", "velocity/"))}


def test_short_real_training_run_learns(tmp_path):
    """Three epochs of the tiny net on 2,000 real images must get well below the 90%
    error of chance (measured here: about 40% test top-1 error)."""
    out = tmp_path / "run"
    rc = train.main(["--dataset", "fashion-mnist-subset", "--model", "tiny", "--init", "he",
                     "--train-limit", "2000", "--epochs", "3", "--lr", "0.02",
                     "--dropout", "0", "--quiet", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_top1_error"] < 0.6, m["test_top1_error"]
    assert m["test_top5_error"] < m["test_top1_error"]
    assert m["test_eval"] == "ten-crop" and "test_center_top1_error" in m
    assert len(m["history"]) == 3
    for h in m["history"]:
        assert {"train_loss", "train_top1_error", "val_top1_error", "lr", "seconds"} <= set(h)
    assert m["history"][-1]["train_loss"] < m["history"][0]["train_loss"]
    # within each epoch, the error of the batches since the previous point, at least
    # training.state.CURVE_POINTS of them
    for h in m["history"]:
        frac = [p[0] for p in h["train_curve"]]
        assert frac == sorted(frac) and frac[-1] == 1.0, frac
        points = training.state.CURVE_POINTS
        assert points <= len(frac) <= 2 * points + 1, frac
        assert all(0 <= p[1] <= 1 for p in h["train_curve"])
        sizes = np.diff([0] + frac)          # each point weighs its images
        avg = float(np.dot(sizes, [p[1] for p in h["train_curve"]]))
        assert abs(avg - h["train_top1_error"]) < 1e-3, (avg, h["train_top1_error"])
    for f in ("last.npz", "best.npz", "curves.png", "kernels.png"):
        assert (out / f).stat().st_size > 0


def test_resume_after_an_epoch_gives_identical_weights(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(QUICK + ["--epochs", "2", "--out", str(a)]) == 0
    assert train.main(QUICK + ["--epochs", "1", "--out", str(b)]) == 0
    assert train.main(["--resume", str(b / "last.npz"), "--epochs", "2", "--out", str(b)]) == 0
    pa, pb = params_of(a / "last.npz"), params_of(b / "last.npz")
    assert pa.keys() == pb.keys() and len(pa) == 32
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma["test_top1_error"] == mb["test_top1_error"]


def test_missing_matplotlib_costs_the_plots_not_the_run(tmp_path, monkeypatch, capsys):
    """A Python without matplotlib (a run outside the .venv) still trains, checkpoints
    and reports; only curves.png and kernels.png are missing, with one note saying why."""
    import sys
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import raises ImportError
    monkeypatch.setattr(training.report, "_plot_warned", [])
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "2", "--out", str(out)]) == 0
    for f in ("last.npz", "best.npz", "metrics.json"):
        assert (out / f).stat().st_size > 0
    assert not (out / "curves.png").exists() and not (out / "kernels.png").exists()
    err = capsys.readouterr().err
    assert err.count("note: no plots") == 1, err
    assert "matplotlib" in err


class StopAfter:
    """Stands in for training.stop.StopRequest: asks to stop once `n` steps have run, as
    a Ctrl-C would."""
    n = 2

    def __init__(self, time_limit=None):
        self.checks = 0
        self.timed_out = False
        self.out_of_time = False

    def room_for_an_epoch(self, whole):
        return True

    def epoch_done(self):
        pass

    @property
    def requested(self):
        self.checks += 1
        return self.checks > StopAfter.n

    @property
    def signalled(self):
        return self.checks > StopAfter.n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_interrupt_mid_epoch_saves_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(a)]) == 0
    monkeypatch.setattr(training.loop, "StopRequest", StopAfter)
    assert train.main(QUICK + ["--epochs", "1", "--out", str(b)]) == 130   # like Ctrl-C
    with np.load(b / "last.npz") as f:
        state = json.loads(str(f["train_state"]))
    assert state["epoch"] == 0 and state["step"] == 2
    monkeypatch.undo()
    assert train.main(["--resume", str(b / "last.npz"), "--out", str(b)]) == 0
    pa, pb = params_of(a / "last.npz"), params_of(b / "last.npz")
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    ha = json.loads((a / "metrics.json").read_text())["history"]
    hb = json.loads((b / "metrics.json").read_text())["history"]
    assert ha[0]["train_curve"] == hb[0]["train_curve"]    # the curve survives the stop


class StepClock:
    """A clock for --time-limit (training.stop's time.monotonic) that moves one second
    per SGD step and stands still otherwise, so that the limit stops at a known step."""

    def __init__(self, monkeypatch):
        import time as real_time
        self.now = 0.0
        clock = self

        class FakeTime:
            perf_counter = staticmethod(real_time.perf_counter)

            @staticmethod
            def monotonic():
                return clock.now

        import engine.optim

        class SteppingSGD(engine.optim.SGD):
            def step(self, grads):
                super().step(grads)
                clock.now += 1

        monkeypatch.setattr(training.stop, "time", FakeTime)
        monkeypatch.setattr(engine.optim, "SGD", SteppingSGD)    # what sgd_for builds
        self.monkeypatch = monkeypatch

    def slow(self, name, seconds):
        """Make training.loop.NAME (a function the loop calls) take that many seconds."""
        real = getattr(training.loop, name)

        def slowed(*args, **kw):
            self.now += seconds
            return real(*args, **kw)

        self.monkeypatch.setattr(training.loop, name, slowed)


def test_time_limit_starts_no_epoch_that_would_end_after_it_and_tests_the_best(
        tmp_path, monkeypatch, capsys):
    """QUICK has 6 steps per epoch: with 14 seconds, epoch 2 ends at 12 and epoch 3 would
    end at 18, so two epochs run, the best is tested, and --resume goes on exactly."""
    StepClock(monkeypatch)
    out, ref = tmp_path / "run", tmp_path / "ref"
    assert train.main(QUICK + ["--epochs", "5", "--time-limit", "14", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "time limit of 14 s: stopped after 2 epoch(s) of 5" in err, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 2 and len(m["history"]) == 2
    assert m["stopped_by_time_limit"] is True and m["epochs_planned"] == 5
    assert 0 < m["test_top1_error"] < 1
    # the limit belongs to the invocation: a resume without it trains to the end
    assert train.main(["--resume", str(out / "last.npz"), "--epochs", "3",
                       "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 3 and "stopped_by_time_limit" not in m
    assert train.main(QUICK + ["--epochs", "3", "--out", str(ref)]) == 0
    pa, pb = params_of(ref / "last.npz"), params_of(out / "last.npz")
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    # a limit the run fits in changes nothing
    ok = tmp_path / "ok"
    assert train.main(QUICK + ["--epochs", "2", "--time-limit", "100", "--out", str(ok)]) == 0
    assert "stopped_by_time_limit" not in json.loads((ok / "metrics.json").read_text())


def test_time_limit_counts_the_time_an_epoch_spends_validating_and_saving(
        tmp_path, monkeypatch, capsys):
    """6 steps and 2 seconds of plots make an 8-second epoch: with 23 seconds, epoch 3
    would end at 24, so two epochs run (counting only the steps, 6 each, it would have
    started a third that ends at 22)."""
    clock = StepClock(monkeypatch)
    clock.slow("save_plots", 2)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "5", "--time-limit", "23", "--out", str(out)]) == 0
    assert "stopped after 2 epoch(s) of 5" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_fixed_lr_drops_at_fractions_of_the_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "4", "--lr-drops", "0.5,0.75",
                               "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [h["lr"] for h in m["history"]] == [0.01, 0.01, 0.001, 0.0001]
    assert "2 of 4 epochs done: learning rate divided by 10, now 0.001" in capsys.readouterr().out
    assert m["args"]["lr_drops"] == "0.5,0.75"


def test_no_validation_set_trains_on_every_image_and_tests_the_last_epoch(tmp_path, capsys):
    """--val-fraction 0 (no validation split): all --train-limit images train,
    no validation is computed, and best.npz is the last epoch's weights, the ones
    tested; resuming such a run is exact too."""
    out, b = tmp_path / "run", tmp_path / "resumed"
    argv = QUICK + ["--val-fraction", "0", "--lr-drops", "0.5", "--epochs", "2"]
    assert train.main(argv + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "384 train / 0 validation images" in printed
    assert "epoch 2, the last: no validation set" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["best_val_top1_error"] is None and m["best_epoch"] == 2
    assert all(h["val_top1_error"] is None and h["val_loss"] is None for h in m["history"])
    assert [h["lr"] for h in m["history"]] == [0.01, 0.001]
    ev = tmp_path / "eval"            # the error reported is the last epoch's weights'
    assert train.main(["--eval-only", str(out / "last.npz"), "--out", str(ev)]) == 0
    assert json.loads((ev / "metrics.json").read_text())["test_top1_error"] == \
        m["test_top1_error"]
    last, best = params_of(out / "last.npz"), params_of(out / "best.npz")
    for k in last:
        np.testing.assert_array_equal(last[k], best[k], err_msg=k)
    assert (out / "curves.png").stat().st_size > 0
    # an epoch of 384 images is 6 batches of 64: with a validation split it would be 6 too
    # (346 images), so count the images another way: the mean image of all 384
    with np.load(out / "last.npz") as f:
        mean = f["mean"]
    x = training.data.load_data("fashion-mnist-subset").train_x[:384]
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0) / 255, rtol=1e-5,
                               atol=1e-6)
    assert train.main(QUICK + ["--val-fraction", "0", "--lr-drops", "0.5", "--epochs", "1",
                               "--out", str(b)]) == 0
    assert train.main(["--resume", str(b / "last.npz"), "--epochs", "2", "--out", str(b)]) == 0
    resumed = params_of(b / "last.npz")
    for k in last:
        np.testing.assert_array_equal(last[k], resumed[k], err_msg=k)


def test_time_limit_inside_the_first_epoch_saves_the_steps_and_says_none_finished(
        tmp_path, monkeypatch, capsys):
    StepClock(monkeypatch)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "2", "--time-limit", "3.5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: --time-limit 3.5: no epoch finished in time" in err, err
    with np.load(out / "last.npz") as f:
        state = json.loads(str(f["train_state"]))
    assert state["epoch"] == 0 and state["step"] == 4     # the step that passed 3.5 s
    assert not (out / "best.npz").exists() and not (out / "metrics.json").exists()


@pytest.mark.parametrize("read_every", [1, 4])
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch,
                                                                      capsys, read_every):
    # read_every 4: as on a GPU, where the losses are read every few steps (here 4),
    # the NaN of step 3 is found at the read after it, still before any checkpoint
    monkeypatch.setattr(training.loop, "read_interval", lambda device: read_every)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    before = (out / "last.npz").read_bytes()
    real = training.loop.softmax_cross_entropy
    calls = {"n": 0}

    def exploding(logits, labels, **kw):
        loss, d = real(logits, labels, **kw)
        calls["n"] += 1
        return (loss * np.nan if calls["n"] == 3 else loss), d

    monkeypatch.setattr(training.loop, "softmax_cross_entropy", exploding)
    rc = train.main(["--resume", str(out / "last.npz"), "--epochs", "2", "--out", str(out)])
    assert rc == 3          # its own exit code: a learning-rate sweep records it and goes on
    err = capsys.readouterr().err
    assert "the loss became nan at epoch 2, step 3" in err and "last.npz" in err
    assert (out / "last.npz").read_bytes() == before


def test_nan_weights_from_an_epochs_last_update_are_caught_before_saving(
        tmp_path, monkeypatch, capsys):
    # every training loss is finite (each is computed before its update), but the
    # epoch's last update leaves NaN weights: NaN scores used to count as correct, so
    # validation read 0% error and best.npz took the NaN net
    from engine.optim import SGD
    real_step = SGD.step
    calls = {"n": 0, "poison_at": None}

    def counting_step(self, grads):
        real_step(self, grads)
        calls["n"] += 1
        if calls["n"] == calls["poison_at"]:
            for p in self.params.values():
                p[...] = np.nan

    monkeypatch.setattr(SGD, "step", counting_step)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    before = {n: (out / n).read_bytes() for n in ("last.npz", "best.npz")}
    calls["poison_at"] = 2 * calls["n"]     # the last update of epoch 2
    rc = train.main(["--resume", str(out / "last.npz"), "--epochs", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "outputs are not finite (loss nan)" in err
    assert {n: (out / n).read_bytes() for n in before} == before


def test_resume_refuses_flags_that_would_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    before = (out / "last.npz").read_bytes()
    capsys.readouterr()
    last = str(out / "last.npz")
    # these used to be accepted, then ignored (the network is rebuilt from the
    # checkpoint, the learning rate is its state's) or used (the seed re-split the data)
    for flags, named in ((["--dropout", "0.2"], "--dropout 0.2 (the checkpoint's: 0.5)"),
                         (["--seed", "7"], "--seed 7 (the checkpoint's: 0)"),
                         (["--lr", "0.5", "--model", "paper"],
                          "--model 'paper' (the checkpoint's: 'tiny'), --lr 0.5")):
        rc = train.main(["--resume", last, "--epochs", "2", "--out", str(out)] + flags)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith(f"error: --resume {last}: ") and named in err, err
        assert len(err.splitlines()) == 1
    assert (out / "last.npz").read_bytes() == before
    # the same value again, and the flags a resume may change, are fine
    assert train.main(["--resume", last, "--epochs", "2", "--seed", "0", "--no-flip",
                       "--lr-patience", "3", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs"] == 2 and m["args"]["no_flip"] and m["args"]["lr_patience"] == 3
    rc = train.main(["--eval-only", str(out / "best.npz"), "--no-lrn"])
    assert rc == 2 and "--no-lrn True (the checkpoint's: False)" in capsys.readouterr().err


def test_eval_only_checks_labels_against_the_networks_classes(tmp_path, capsys,
                                                              monkeypatch):
    # a 10-class net on a test set with labels up to 14: on CuPy an index past the end
    # wraps around instead of failing, so this must be caught before any scoring
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    real = training.evaluation.load_data

    def more_classes(*args, **kw):
        ds = real(*args, **kw)
        ds.test_y = ds.test_y + 5
        return ds

    monkeypatch.setattr(training.evaluation, "load_data", more_classes)
    capsys.readouterr()
    rc = train.main(["--eval-only", str(out / "best.npz"), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "test labels outside [0, 10)" in err and "has 10 classes" in err, err
    assert "from 5 to 14" in err and not (tmp_path / "ev" / "metrics.json").exists()


def test_eval_only_without_out_leaves_the_runs_metrics_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    before = (out / "metrics.json").read_bytes()
    capsys.readouterr()
    assert train.main(["--eval-only", str(out / "last.npz")]) == 0
    printed = capsys.readouterr().out
    assert (out / "metrics.json").read_bytes() == before
    ev = json.loads((out / "eval-last.json").read_text())
    assert 0 < ev["test_top1_error"] < 1
    assert f"wrote {out / 'eval-last.json'}" in printed and "best.npz" not in printed


def test_predict_classifies_image_files_as_the_test_set_does(tmp_path, capsys):
    """--eval-only CK --predict IMAGE...: a test image saved as a PNG gets the class
    probabilities the network gives it in the test set (same preparation), under the
    class names the checkpoint keeps; --invert undoes an inverted file."""
    from PIL import Image

    from data.loader import iterate_eval
    from layers.loss import softmax
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    ck = training.checkpoints.load_checkpoint(str(out / "best.npz"))
    assert ck["classes"][0] == "T-shirt/top" and len(ck["classes"]) == 10
    ds = training.data.load_data("fashion-mnist-subset")
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(ds.test_x[i, 0]).save(paths[-1])
    Image.fromarray(255 - ds.test_x[0, 0]).save(tmp_path / "inverted.png")
    capsys.readouterr()
    assert train.main(["--eval-only", str(out / "best.npz"), "--predict", *paths,
                       "--no-ten-crop"]) == 0
    printed = capsys.readouterr().out.splitlines()
    model = AlexNet(**ck["config"])
    model.load_state_dict({k[6:]: v for k, v in ck.items() if k.startswith("param/")})
    xb, _ = next(iterate_eval(ds.test_x[:3], ds.test_y[:3], mean=ck["mean"], pad=2, crop=28))
    want = softmax(model.forward(xb, train=False))
    for i in range(3):
        line = next(ln for ln in printed if ln.startswith(paths[i] + ": "))
        best = int(np.argmax(want[i]))
        assert line.split(": ", 1)[1].startswith(
            f"{ck['classes'][best]} {100 * want[i, best]:.1f}%"), line
        assert line.count("%") == 5                       # the five most probable
    assert train.main(["--eval-only", str(out / "best.npz"), "--predict",
                       str(tmp_path / "inverted.png"), "--invert", "--no-ten-crop"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.split(": ", 1)[1] == next(
        ln for ln in printed if ln.startswith(paths[0] + ": ")).split(": ", 1)[1]
    # bad input: one line naming the problem
    for argv, message in (
            (["--predict", paths[0]], "--predict needs --eval-only CHECKPOINT"),
            (["--eval-only", str(out / "best.npz"), "--predict", str(tmp_path / "no.png")],
             "no.png: cannot read image"),
            (["--eval-only", str(out / "best.npz"), "--invert"], "--invert inverts")):
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_eval_only_reproduces_the_reported_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    ev = tmp_path / "eval"
    assert train.main(["--eval-only", str(out / "best.npz"), "--out", str(ev)]) == 0
    m2 = json.loads((ev / "metrics.json").read_text())
    assert m2["test_top1_error"] == m["test_top1_error"]
    assert m2["test_top5_error"] == m["test_top5_error"]
    # where the errors are: the confusion matrix counts every test image once, its
    # diagonal gives the top-1 error (no ties in float scores), and each class's error
    conf = np.array(m["test_confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 1000
    assert 1 - np.trace(conf) / conf.sum() == pytest.approx(m["test_top1_error"])
    per = m["test_class_top1_error"]
    assert list(per) == training.data.load_data("fashion-mnist-subset").classes
    assert per["Trouser"] == pytest.approx(1 - conf[1, 1] / conf[1].sum())
    assert m2["test_confusion"] == m["test_confusion"]


def test_class_errors_by_true_class():
    conf = np.array([[8, 2, 0],      # class a: 2 of 10 wrong
                     [0, 0, 0],      # class b: no test images
                     [1, 1, 2]])     # class c: 2 of 4 wrong
    per = training.metrics.class_errors(conf, ["a", "b", "c"])
    assert list(per) == ["a", "b", "c"] and per["b"] is None
    assert per["a"] == pytest.approx(0.2) and per["c"] == pytest.approx(0.5)
    assert list(training.metrics.class_errors(conf, ["only", "two"])) == ["0", "1", "2"]


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "error: --dataset: unknown dataset 'imagenet'"),
    (["--data-dir", "/nonexistent/folder"], "error: --data-dir: folder '/nonexistent/folder' does not exist"),
    (["--resume", "/nonexistent/last.npz"], "error: --resume: checkpoint '/nonexistent/last.npz' does not exist"),
    (["--epochs", "0"], "error: --epochs must be >= 1, got 0"),
    (["--pool", "3x2"], "error: --pool must be 'size,stride'"),
    (["--time-limit", "0"], "error: --time-limit must be a positive number of seconds, got 0"),
    (["--lr-drops", "0.7,0.5"], "error: --lr-drops must be increasing fractions of the epochs"),
    (["--lr-drops", "1.5"], "error: --lr-drops must be increasing fractions of the epochs"),
    (["--val-fraction", "0", "--lr-drops", "none"], "error: --val-fraction 0 leaves no "
                                                    "validation set"),
    (["--val-fraction", "1"], "error: --val-fraction must be in [0, 1), got 1.0"),
    (["--pool", "3,0"], "error: --pool: size and stride must be >= 1, got '3,0'"),
    (["--groups", "0"], "error: --groups must be >= 1, got 0"),
    (["--seed", "-1"], "error: --seed must be >= 0, got -1"),
    (["--lr-patience", "0"], "error: --lr-patience must be >= 1 epoch, got 0"),
    (["--max-lr-drops", "-1"], "error: --max-lr-drops must be >= 0, got -1"),
    (["--resume", __file__, "--eval-only", __file__], "error: --resume and --eval-only: "
                                                      "give one"),
    (["--val-fraction", "0"], "error: --val-fraction 0 leaves no validation set, and the "
                              "default schedule"),
    (["--lr", "nan"], "error: --lr must be a finite number, got nan"),
    (["--weight-decay", "nan"], "error: --weight-decay must be a finite number, got nan"),
    (["--width", "inf"], "error: --width must be a finite number, got inf"),
    (["--momentum=-inf"], "error: --momentum must be a finite number, got -inf"),
])
def test_bad_flags_give_one_line_errors(argv, message, capsys):
    rc = train.main(argv + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_unknown_preset_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--model", "huge"])
    assert e.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def test_cuda_without_gpu_is_one_line_error(capsys):
    from engine.backend import gpu_available
    if gpu_available():
        pytest.skip("a GPU is present here, so --device cuda is valid")
    rc = train.main(["--device", "cuda", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: the GPU was requested but is not usable")
    assert "pip install" in err and len(err.splitlines()) == 1


def test_corrupted_dataset_file_is_detected_not_trained_on(tmp_path, capsys):
    bad = tmp_path / "fashion-mnist"
    bad.mkdir()
    for name in os.listdir(SUBSET):
        if name.endswith(".gz"):
            data = open(os.path.join(SUBSET, name), "rb").read()
            if name.startswith("train-images"):
                data = data[: len(data) // 2]                      # truncated download
            (bad / name).write_bytes(data)
    rc = train.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path), "--quiet",
                     "--no-download", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "train-images-idx3-ubyte.gz" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "last.npz").exists()


def test_ten_crop_report_of_a_net_trained_without_crops_points_to_the_centre_crop(
        tmp_path, capsys):
    quick = [f for f in QUICK if f != "--no-ten-crop"] + ["--epochs", "1", "--ten-crop"]
    assert train.main(quick + ["--no-crop", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "test, ten crops" in out and "trained without random crops" in out
    assert train.main(quick + ["--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "test, ten crops" in out and "trained without random crops" not in out


def test_an_earlier_runs_best_npz_in_the_folder_is_never_tested_as_this_ones(
        tmp_path, monkeypatch, capsys):
    # A fresh run into a folder where another run left best.npz, stopped by its time
    # limit before its first epoch ended, used to test that old network and report it
    # (a GPU lease rerun on a warm machine does exactly this).
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    assert (out / "best.npz").exists()
    capsys.readouterr()
    StepClock(monkeypatch)
    # (a new run into a folder holding a run needs --overwrite: tests/test_hostile_inputs.py)
    assert train.main(QUICK + ["--epochs", "2", "--time-limit", "3.5", "--seed", "5",
                               "--out", str(out), "--overwrite"]) == 1
    assert "no epoch finished in time" in capsys.readouterr().err


def test_a_net_trained_without_reflections_is_tested_on_five_crops_not_ten(tmp_path, capsys):
    # Ten crops used to include five mirrored images whatever the net was trained on:
    # for MNIST (no flips; a mirrored digit is another digit) or --no-flip, images of a
    # kind it never saw.
    from data.loader import iterate_eval
    from layers.loss import softmax
    out = tmp_path / "run"
    flags = [f for f in QUICK if f != "--no-ten-crop"]
    assert train.main(flags + ["--no-flip", "--ten-crop", "--epochs", "1", "--out", str(out)]) == 0
    assert "test, five crops (corners and centre; no mirrors" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_eval"] == "five-crop"
    ck, model = training.checkpoints.network_from_checkpoint(str(out / "best.npz"), "cpu")
    ds = training.data.load_data("fashion-mnist-subset", None, download=False, fallback=True)
    prep = training.data.test_prep("fashion-mnist-subset", m["args"], ck["mean"], 28)
    assert prep["mirrors"] is False
    # the reported error is that of the five unmirrored crops' averaged softmax
    probs = np.concatenate([
        np.mean([softmax(model.forward(c, train=False)) for c in xb], axis=0)
        for xb, _ in iterate_eval(ds.test_x, ds.test_y, 250, mode="ten", **prep)])
    assert np.mean(probs.argmax(1) != ds.test_y) == pytest.approx(m["test_top1_error"])
    # a net trained with flips keeps all ten
    assert training.data.test_prep("fashion-mnist", {}, ck["mean"], 28)["mirrors"] is True
    assert training.data.test_prep("mnist", {}, ck["mean"], 28)["mirrors"] is False


def fake_validation(monkeypatch, errors):
    """Validation top-1 errors in the order given, one per epoch across the runs of a
    test (the test set is still evaluated for real)."""
    real, it = training.loop.evaluate, iter(errors)

    def evaluate(*args, **kw):
        out = real(*args, **kw)
        if len(args) == 6 and not kw:      # validate's evaluate(model, val_x, val_y, ...)
            out = dict(out, top1_error=next(it))
        return out

    monkeypatch.setattr(training.loop, "evaluate", evaluate)


@pytest.mark.parametrize("errors, max_drops, lrs", [
    # flat: a drop after every 2 epochs without a new best, at most max_drops of them
    ([0.5] * 6, 3, [0.01, 0.01, 0.01, 0.001, 0.001, 0.0001]),
    ([0.5] * 6, 1, [0.01, 0.01, 0.01, 0.001, 0.001, 0.001]),
    # a new best at epoch 3 starts the count again
    ([0.5, 0.5, 0.4, 0.4, 0.4, 0.4], 3, [0.01] * 5 + [0.001]),
])
def test_the_learning_rate_drops_on_a_validation_plateau(tmp_path, monkeypatch, capsys,
                                                         errors, max_drops, lrs):
    """The paper's schedule, train.py's default: the learning rate divided by 10 after
    --lr-patience epochs without a new best validation error, --max-lr-drops times."""
    fake_validation(monkeypatch, errors)
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "6", "--lr-patience", "2", "--max-lr-drops",
                               str(max_drops), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    np.testing.assert_allclose([h["lr"] for h in m["history"]], lrs, rtol=1e-12)
    drops = sum(b < a for a, b in zip(lrs, lrs[1:]))
    said = capsys.readouterr().out
    assert said.count("validation error has not improved for 2 epochs: learning rate "
                      "divided by 10") == drops, said
    assert m["best_epoch"] == 1 + errors.index(min(errors))


def test_a_resumed_run_goes_on_in_its_checkpoints_folder(tmp_path, monkeypatch, capsys):
    # It used to go to the default folder, over another run's files there, and test
    # that run's best.npz as its own.
    monkeypatch.chdir(tmp_path)
    a = tmp_path / "a"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(a)]) == 0
    assert train.main(QUICK + ["--epochs", "1", "--seed", "5"]) == 0     # default folder
    other = tmp_path / "runs" / "fashion-mnist-subset-tiny"
    before = {f: (other / f).read_bytes() for f in ("metrics.json", "best.npz", "last.npz")}
    capsys.readouterr()
    assert train.main(["--resume", str(a / "last.npz"), "--epochs", "2"]) == 0
    assert f"output in {a}\n" in capsys.readouterr().out
    assert json.loads((a / "metrics.json").read_text())["epochs"] == 2
    assert {f: (other / f).read_bytes() for f in before} == before


def test_a_run_resumed_into_another_folder_tests_its_own_best_epoch(tmp_path, monkeypatch):
    fake_validation(monkeypatch, [0.5, 0.5, 0.6])    # a's epoch 2 is worse than its 1st
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(a)]) == 0
    assert train.main(QUICK + ["--epochs", "1", "--seed", "5", "--out", str(b)]) == 0
    # b holds another run: replacing it takes --overwrite (tests/test_hostile_inputs.py)
    assert train.main(["--resume", str(a / "last.npz"), "--epochs", "2", "--out", str(b),
                       "--overwrite"]) == 0
    m = json.loads((b / "metrics.json").read_text())
    assert m["best_epoch"] == 1 and m["epochs"] == 2 and "tested_epoch" not in m
    best_a, best_b = params_of(a / "best.npz"), params_of(b / "best.npz")
    for k in best_a:                       # b's best.npz is now a's, not the seed-5 run's
        np.testing.assert_array_equal(best_a[k], best_b[k], err_msg=k)
    assert train.main(["--eval-only", str(a / "best.npz"), "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["test_top1_error"] \
        == m["test_top1_error"]


def test_a_run_whose_best_npz_is_gone_tests_its_last_epoch_and_says_so(
        tmp_path, monkeypatch, capsys):
    fake_validation(monkeypatch, [0.5, 0.6])
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    os.remove(out / "best.npz")
    capsys.readouterr()
    assert train.main(["--resume", str(out / "last.npz"), "--epochs", "2"]) == 0
    printed = capsys.readouterr()
    assert "best.npz is not this run's best checkpoint (epoch 1)" in printed.err
    assert "(1000 images, epoch 2, the last: best.npz was not this run's)" in printed.out
    m = json.loads((out / "metrics.json").read_text())
    assert m["tested_epoch"] == 2 and m["best_epoch"] == 1
    assert train.main(["--eval-only", str(out / "last.npz"), "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["test_top1_error"] \
        == m["test_top1_error"]


def test_resume_and_eval_only_never_fall_back_to_the_subset(isolated, capsys):
    # A resumed full-data run used to go on training on the bundled subset where the
    # full data could not be found, and an --eval-only to test on it.
    from data import datasets as D
    tmp_path = isolated
    full = [f if f != "fashion-mnist-subset" else "fashion-mnist" for f in QUICK]
    out = tmp_path / "run"
    with pytest.warns(D.SubsetFallbackWarning):                            # a new run may
        assert train.main(full + ["--epochs", "1", "--out", str(out)]) == 0
    assert "FALLBACK to the committed subset" in capsys.readouterr().out
    for argv in (["--resume", str(out / "last.npz"), "--epochs", "2"],
                 ["--eval-only", str(out / "best.npz")]):
        assert train.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "network disabled in tests" in err, err
        assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_a_checkpoints_data_dir_that_is_gone_is_not_required(tmp_path, capsys):
    # Lease checkpoints saved --data-dir runs/data: from any other folder they failed
    # with "--data-dir: folder 'runs/data' does not exist", even for --predict.
    d, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(SUBSET, d)
    assert train.main(QUICK + ["--epochs", "1", "--data-dir", str(d), "--out", str(out)]) == 0
    shutil.rmtree(d)
    capsys.readouterr()
    assert train.main(["--eval-only", str(out / "best.npz"), "--out", str(tmp_path / "e")]) == 0
    assert f"--data-dir {str(d)!r} is not a folder here" in capsys.readouterr().err


def test_raw_pixels_feed_the_papers_units_and_stay_with_the_checkpoint(tmp_path, capsys):
    out, unit = tmp_path / "raw", tmp_path / "unit"
    assert train.main(QUICK + ["--epochs", "1", "--raw-pixels", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    with np.load(out / "best.npz") as f:
        mean = f["mean"]
    assert 50 < mean.max() <= 255          # the mean image in 0-255 units, not 0-1
    assert training.data.test_prep("fashion-mnist", m["args"], mean, 28)["scale"] == 1.0
    assert training.data.test_prep("fashion-mnist", {}, mean, 28)["scale"] == 1 / 255
    assert train.main(["--eval-only", str(out / "best.npz"), "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["test_top1_error"] \
        == m["test_top1_error"]
    assert train.main(QUICK + ["--epochs", "1", "--out", str(unit)]) == 0
    capsys.readouterr()
    assert train.main(["--resume", str(unit / "last.npz"), "--epochs", "2",
                       "--raw-pixels"]) == 2
    assert "--raw-pixels True (the checkpoint's: False)" in capsys.readouterr().err


def test_without_validation_non_finite_weights_are_caught_before_saving(
        tmp_path, monkeypatch, capsys):
    # No validation pass finds them: NaN weights from an epoch's last update used to be
    # saved as last.npz and best.npz.
    from engine.optim import SGD
    real_step, calls = SGD.step, {"n": 0}

    def poisoning_step(self, grads):
        real_step(self, grads)
        calls["n"] += 1
        if calls["n"] == 6:                # the last of 384 / 64 steps
            for p in self.params.values():
                p[...] = np.nan

    monkeypatch.setattr(SGD, "step", poisoning_step)
    out = tmp_path / "run"
    rc = train.main(QUICK + ["--val-fraction", "0", "--lr-drops", "0.5", "--epochs", "1",
                             "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "the weights became non-finite in epoch 1 (first: conv1.w" in err
    assert not (out / "last.npz").exists() and not (out / "best.npz").exists()


def test_a_divergence_before_any_checkpoint_names_none(tmp_path, monkeypatch, capsys):
    real, calls = training.loop.softmax_cross_entropy, {"n": 0}

    def exploding(logits, labels, **kw):
        loss, d = real(logits, labels, **kw)
        calls["n"] += 1
        return (loss * np.nan if calls["n"] == 2 else loss), d

    monkeypatch.setattr(training.loop, "softmax_cross_entropy", exploding)
    rc = train.main(QUICK + ["--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 3 and "the loss became nan at epoch 1, step 2" in err
    assert "checkpoint" not in err and err.rstrip().endswith("Try a smaller --lr.")
    calls["n"] = 0                         # a run in 0-255 units is told of 0-1 ones
    rc = train.main(QUICK + ["--epochs", "1", "--raw-pixels", "--out", str(tmp_path / "r")])
    assert rc == 3
    assert capsys.readouterr().err.rstrip().endswith(
        "Try a smaller --lr or 0-1 pixels (no --raw-pixels).")


def test_a_flag_added_since_a_checkpoint_was_written_counts_as_its_default(tmp_path, capsys):
    # A checkpoint from before --raw-pixels has no raw_pixels: resuming it with the flag
    # used to train 0-255 pixels against its 0-1 mean image (the loss went to 64).
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    with np.load(out / "last.npz") as f:
        arrays = {k: f[k] for k in f.files}
    ts = json.loads(str(arrays["train_state"]))
    del ts["args"]["raw_pixels"]
    arrays["train_state"] = np.array(json.dumps(ts))
    np.savez(out / "old.npz", **arrays)
    capsys.readouterr()
    assert train.main(["--resume", str(out / "old.npz"), "--epochs", "2", "--raw-pixels"]) == 2
    assert "--raw-pixels True (the checkpoint's: False)" in capsys.readouterr().err
    assert train.main(["--eval-only", str(out / "old.npz"), "--raw-pixels"]) == 2
    assert "--raw-pixels True (the checkpoint's: False)" in capsys.readouterr().err


def test_a_run_stopped_mid_epoch_without_its_best_npz_says_what_was_tested(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert train.main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    os.remove(out / "best.npz")
    StepClock(monkeypatch)
    capsys.readouterr()
    # no epoch time is known after a resume, so the limit stops epoch 2 at its 4th step
    assert train.main(["--resume", str(out / "last.npz"), "--epochs", "3",
                       "--time-limit", "3.5"]) == 0
    printed = capsys.readouterr()
    assert "testing the weights as the run stopped instead" in printed.err
    assert ("(1000 images, 1 epoch(s) and 4 step(s), where it stopped: best.npz was not "
            "this run's)") in printed.out
    m = json.loads((out / "metrics.json").read_text())
    assert m["tested_epoch"] == 1 and m["tested_step"] == 4


def _photo_folder(root, n_per_class=3):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cats", "dogs"):
        os.makedirs(root / c)
        for i in range(n_per_class):
            base = rng.integers(0, 256, size=(1, 1, 3))      # correlated colour channels
            img = np.clip(base + rng.integers(-40, 40, size=(40, 48, 1)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(root / c / f"{i}.png")
    return f"folder:{root}"


class _LoaderMade(Exception):
    pass


def _training_loader_args(monkeypatch, argv):
    """The arguments train.py gives the training BatchLoader, without training."""
    seen = {}

    def record(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise _LoaderMade
    monkeypatch.setattr(training.loop, "BatchLoader", record)
    with pytest.raises(_LoaderMade):
        train.main(argv)
    return seen["args"], seen["kwargs"]


def test_no_crop_trains_image_folders_on_the_centre_crop(tmp_path, monkeypatch):
    # Folder images are 256x256 and the net sees 227: --no-crop used to keep the random
    # 227 crops (only the padding went), so a no-augmentation run was not one.
    from data.augment import center_crop, to_float
    from data.loader import BatchLoader
    ds = _photo_folder(tmp_path / "photos")
    args, kwargs = _training_loader_args(monkeypatch, [
        "--dataset", ds, "--model", "tiny", "--no-crop", "--no-flip", "--no-pca",
        "--val-fraction", "0", "--lr-drops", "0.5", "--out", str(tmp_path / "out")])
    x = args[0]
    assert x.shape[1:] == (3, 256, 256) and kwargs["crop"] == 227
    loader = BatchLoader(*args, **dict(kwargs, prefetch=False))
    want = center_crop(to_float(x, kwargs["mean"], kwargs["scale"]), 227)
    for _ in range(2):                                 # every epoch, the same patches
        got = np.concatenate([xb for xb, _ in loader])
        np.testing.assert_array_equal(got[np.argsort(np.concatenate(loader.batch_indices(
            loader.epoch - 1)))], want)


def test_raw_pixels_keep_the_pca_lightings_share_of_the_pixel_range(tmp_path, monkeypatch):
    # The paper's shift, alpha * eigenvalue, is a variance: computed in 0-255 units it
    # moved pixels 255 times further than in 0-1 units (by hundreds).
    ds = _photo_folder(tmp_path / "photos")
    common = ["--dataset", ds, "--model", "tiny", "--out", str(tmp_path / "out")]
    _, unit = _training_loader_args(monkeypatch, common)
    _, raw = _training_loader_args(monkeypatch, common + ["--raw-pixels"])
    assert raw["scale"] == 1.0 and unit["scale"] == pytest.approx(1 / 255)
    np.testing.assert_allclose(raw["pca"][0], 255 * unit["pca"][0], rtol=1e-5)
    np.testing.assert_array_equal(raw["pca"][1], unit["pca"][1])
    assert unit["pca"][0][0] > 0.005                # a real colour spread to scale


def test_metrics_json_says_which_code_and_machine_made_the_run(tmp_path):
    # two runs with the same settings that disagree can then be told apart
    import platform
    import subprocess
    from tests.conftest import ROOT
    assert train.main(QUICK + ["--epochs", "1", "--out", str(tmp_path)]) == 0
    env = json.loads((tmp_path / "metrics.json").read_text())["environment"]
    assert env["numpy"] == np.__version__ and env["python"] == platform.python_version()
    assert f"{os.cpu_count()} logical cores" in env["machine"]
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        assert env["code"] is None                  # not a git checkout
    else:
        assert env["code"] in (head, head + "+changes")


@pytest.mark.parametrize("flags, said", [
    ([], "schedule: lr 0.01, divided by 10 after 2 epochs without a new best validation "
         "error, at most 3 times"),
    (["--lr-drops", "0.5,0.75"],
     "schedule: lr 0.01, divided by 10 after 50%, 75% of 1 epoch (--lr-drops)"),
    (["--max-lr-drops", "0"], "schedule: lr 0.01 throughout (--max-lr-drops 0)"),
])
def test_the_run_says_its_learning_rate_schedule(tmp_path, capsys, flags, said):
    assert train.main(QUICK + ["--epochs", "1", "--out", str(tmp_path / "run")] + flags) == 0
    assert said + "\n" in capsys.readouterr().out
