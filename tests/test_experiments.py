"""The claim runner's arithmetic: epochs-to-threshold, verdicts, summaries."""
import pytest

from experiments.__main__ import epochs_to, main, summarize, verdict
from experiments.claims import CLAIMS


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
