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
