"""Top-k error, the paper's two numbers (Section 4.1 reports top-1 and top-5)."""
from __future__ import annotations

import numpy as np

from engine.backend import get_array_module, to_numpy


def topk_correct(scores, labels, k: int):
    """Boolean (N,): is the true label among the k highest scores of its row?

    Ties are broken pessimistically: a label counts as in the top k only if fewer than
    k other classes score strictly higher *or equal*. (A constant prediction is then
    never correct, which keeps an untrained net from scoring 100% top-5 by ties.) A row
    with a NaN score is never correct: NaN compares false with everything, so without
    this a diverged net (all NaN) would score 0% error.

    Computed where the scores are (NumPy or CuPy; the labels are brought there), and
    returned there: on a GPU nothing is copied to the host, so a training step that
    counts its correct answers need not wait for the GPU (train.py reads the counts
    every few steps).
    """
    xp = get_array_module(scores)
    s = scores if xp is not np else np.asarray(scores)
    y = xp.asarray(labels) if xp is not np else to_numpy(labels)
    if s.ndim != 2 or tuple(y.shape) != (s.shape[0],):
        raise ValueError(f"topk_correct: scores must be (N, K) and labels (N,), got "
                         f"{tuple(s.shape)} and {tuple(y.shape)}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"topk_correct: k must be in [1, {s.shape[1]}], got {k}")
    # on the GPU the range is not checked: that would wait for the GPU at every step
    y = check_labels_in_range(y, s.shape[1], "topk_correct", values=xp is np)
    true = s[xp.arange(len(y)), y][:, None]
    others_at_least = (s >= true).sum(axis=1) - 1   # classes other than y scoring >= y's
    return (others_at_least < k) & ~xp.isnan(s).any(axis=1)


def check_labels_in_range(y, num_classes: int, who: str, values: bool = True):
    """``y`` as int64, once it is known to be integer class indices in [0, num_classes)
    (``values`` False: the dtype only). A label of -1 would index the last class and
    2.7 would become 2: wrong numbers, silently."""
    xp = get_array_module(y)
    if y.dtype.kind not in "iu":
        raise ValueError(f"{who}: labels must be integers, got dtype {y.dtype}")
    if values and y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)]
        raise ValueError(f"{who}: labels must be in [0, {num_classes}), got {int(bad[0])}")
    return y.astype(xp.int64, copy=False)


def topk_error(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose label is not among the k highest scores."""
    return float(1.0 - topk_correct(scores, labels, k).mean())


def class_errors(conf, classes) -> dict:
    """Class name -> top-1 error on the test images of that class (None where it has
    none), from a confusion matrix whose rows are the true classes. The names are the
    classes' indices where ``classes`` has another length than the matrix."""
    conf = np.asarray(conf)
    n = conf.sum(axis=1)
    if len(classes) != len(conf):
        classes = [str(i) for i in range(len(conf))]
    return {str(c): (None if n[i] == 0 else float(1 - conf[i, i] / n[i]))
            for i, c in enumerate(classes)}


def hardest_classes(per_class: dict, k: int) -> list:
    """The k (class, error) pairs of ``class_errors`` with the highest error, ties by
    name."""
    known = [(c, e) for c, e in per_class.items() if e is not None]
    return sorted(known, key=lambda ce: (-ce[1], ce[0]))[:k]


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    p = check_labels_in_range(to_numpy(pred), num_classes, "confusion_matrix (predictions)")
    y = check_labels_in_range(to_numpy(labels), num_classes, "confusion_matrix")
    if p.shape != y.shape:
        raise ValueError(f"confusion_matrix: predictions {p.shape} and labels {y.shape} "
                         f"differ in shape")
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y, p), 1)  # a tiny matrix, once per evaluation: clarity over speed
    return m
