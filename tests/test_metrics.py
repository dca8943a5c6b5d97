"""Top-k error and the confusion matrix on hand-made cases."""
import numpy as np
import pytest

from engine.backend import to_numpy
from training.metrics import confusion_matrix, topk_correct, topk_error


def test_topk_on_hand_made_scores():
    scores = np.array([[0.1, 0.5, 0.4],     # label 1: top-1 right
                       [0.6, 0.3, 0.1],     # label 1: second best -> top-2 only
                       [0.2, 0.3, 0.5]])    # label 0: last -> wrong even in top-2
    labels = np.array([1, 1, 0])
    np.testing.assert_array_equal(topk_correct(scores, labels, 1), [True, False, False])
    np.testing.assert_array_equal(topk_correct(scores, labels, 2), [True, True, False])
    assert topk_error(scores, labels, 1) == pytest.approx(2 / 3)
    assert topk_error(scores, labels, 2) == pytest.approx(1 / 3)
    assert topk_error(scores, labels, 3) == 0.0


def test_topk_ties_count_against_the_label():
    # a constant prediction must not score as correct by ties
    scores = np.zeros((4, 10))
    assert topk_error(scores, np.arange(4), 5) == 1.0


def test_topk_nan_scores_are_never_correct():
    # NaN compares false with everything: a diverged net must not score 0% error
    scores = np.array([[np.nan] * 3,             # all NaN (a diverged net)
                       [0.9, np.nan, 0.1],       # label 0 highest among the numbers
                       [0.1, 0.8, 0.1]])         # an ordinary right answer
    labels = np.array([0, 0, 1])
    np.testing.assert_array_equal(topk_correct(scores, labels, 1), [False, False, True])
    np.testing.assert_array_equal(topk_correct(scores, labels, 3), [False, False, True])


def test_topk_bad_input():
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        topk_correct(np.zeros((2, 3)), np.array([0, 1]), 5)
    with pytest.raises(ValueError, match="scores must be"):
        topk_correct(np.zeros(3), np.array([0]), 1)


def test_confusion_matrix_counts():
    m = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_topk_correct_stays_on_the_scores_device(xp, rng):
    # train.py counts each step's correct answers without reading them back: on CuPy
    # the answer is a CuPy array, computed there (on the NumPy stand-in for CuPy,
    # nothing is copied to the host), equal to the NumPy answer, ties included
    scores = np.round(rng.standard_normal((50, 7)), 1)
    labels = rng.integers(0, 7, 50)
    want = [topk_correct(scores, labels, k) for k in (1, 3)]
    s, y = xp.asarray(scores), xp.asarray(labels)
    calls = getattr(xp, "CALLS", None)            # the stand-in counts host copies
    if calls is not None:
        calls.clear()
    got = [topk_correct(s, y, k) for k in (1, 3)]
    if calls is not None:
        assert not [c for c in calls if c.startswith("sync")], calls
    for g, w in zip(got, want):
        assert type(g) is type(s)
        np.testing.assert_array_equal(to_numpy(g), w)
    np.testing.assert_array_equal(to_numpy(topk_correct(s, labels, 1)), want[0])  # host labels


@pytest.mark.parametrize("labels, message", [
    ([-1, 0], r"labels must be in \[0, 3\), got -1"),     # would be the last class
    ([0, 3], r"labels must be in \[0, 3\), got 3"),
    ([0.0, 2.7], "labels must be integers, got dtype float64"),   # 2.7 would be 2
])
def test_labels_that_are_not_class_indices_are_refused(labels, message):
    scores = np.array([[0.1, 0.2, 0.9], [0.5, 0.3, 0.2]])
    with pytest.raises(ValueError, match=message):
        topk_correct(scores, labels, 1)
    with pytest.raises(ValueError, match=message):
        confusion_matrix([2, 0], labels, 3)
    with pytest.raises(ValueError, match=r"predictions\): labels must be in \[0, 3\)"):
        confusion_matrix([2, 5], [0, 1], 3)
