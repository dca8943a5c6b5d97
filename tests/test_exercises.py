"""The notebooks' exercises: the blanks run, the reference solutions pass, a wrong
solution fails.

An exercise is a code cell tagged ``exercise`` in a notebook source (a stub
``def my_...(...): raise NotImplementedError``), followed by a cell tagged ``check``
that hands the function to notebooks/exercises.py; the cells they need are tagged
``exercise-setup``. The tests below take those cells from each source
(notebooks/src/NN_name.py) and run them in this process, without the rest of the
notebook, three ways:

- as written: every check prints ``not written yet: NAME``;
- with the reference solution (notebooks/solutions/NN_name.py) in place of each stub:
  every check prints ``PASS NAME: ...``;
- with a deliberately wrong solution (a classic bug, below): its check prints
  ``FAIL NAME: ...``, so the checks can fail.

That every notebook also runs top to bottom with its blanks untouched is
tests/test_notebooks.py's job (it runs each one in small mode).
"""
import ast
import contextlib
import importlib.util
import io
import os

import numpy as np
import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    "build_notebooks", os.path.join(ROOT, "scripts", "build_notebooks.py"))
bn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bn)

from notebooks import exercises  # noqa: E402  (after the build script is loaded)

SOURCES = {bn.notebook_name(p): p for p in bn.sources()}


def cells_of(name):
    with open(SOURCES[name], encoding="utf-8") as f:
        return bn.parse_percent(f.read(), where=name)


def exercises_of(name):
    """[(stub name, exercise cell source, check cell source)] of a notebook, and its
    setup cells' sources."""
    cells = cells_of(name)
    setup = [src for kind, src, tags in cells if "exercise-setup" in tags]
    pairs = []
    for i, (kind, src, tags) in enumerate(cells):
        if "exercise" not in tags:
            continue
        assert kind == "code", f"{name}: an exercise cell must be code"
        nxt = cells[i + 1] if i + 1 < len(cells) else ("", "", ())
        assert nxt[0] == "code" and "check" in nxt[2], \
            f"{name}: the exercise cell {i} is not followed by a cell tagged 'check'"
        defs = [n.name for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)]
        assert len(defs) == 1 and defs[0].startswith("my_"), \
            f"{name}: exercise cell {i} must define one function my_..., defines {defs}"
        pairs.append((defs[0], src, nxt[1]))
    return pairs, setup


WITH_EXERCISES = [n for n in SOURCES if exercises_of(n)[0]]


def run_exercises(name, replace=None):
    """Run the notebook's setup cells, then each exercise (or, for the stubs named in
    ``replace``, the function given there) and its check. Returns {stub: the lines
    its check printed}."""
    replace = replace or {}
    pairs, setup = exercises_of(name)
    namespace = {"__name__": f"exercises_of_{name}"}
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for src in setup:
            exec(compile(src, f"{name} (setup)", "exec"), namespace)
    for stub, exercise, check in pairs:
        if stub in replace:
            namespace[stub] = replace[stub]
        else:
            exec(compile(exercise, f"{name} ({stub})", "exec"), namespace)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(check, f"{name} (check of {stub})", "exec"), namespace)
        out[stub] = printed.getvalue().splitlines()
    return out


def solution(name, stub):
    return exercises.reference(name, stub)


# ----------------------------------------------------------------- the shape of it
def test_at_least_16_exercises_in_at_least_8_notebooks():
    counts = {n: len(exercises_of(n)[0]) for n in WITH_EXERCISES}
    assert len(counts) >= 8, counts
    assert sum(counts.values()) >= 16, counts
    # the list: every notebook that teaches an op or a rule has two or more
    for n in ("01", "02", "03", "04", "05", "11", "12"):
        matching = [k for k in counts if k.startswith(n + "_")]
        assert matching and counts[matching[0]] >= 2, (n, counts)


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_stub_has_a_solution_and_a_check_that_names_it(name):
    pairs, setup = exercises_of(name)
    assert setup, f"{name}: no cell tagged 'exercise-setup'"
    for stub, exercise, check in pairs:
        assert "raise NotImplementedError" in exercise, f"{name}: {stub} is not a stub"
        assert stub in check and "check_" in check, f"{name}: the check of {stub}"
        assert callable(solution(name, stub)), f"no solution {stub} in solutions/{name}.py"


# ----------------------------------------------------------------- three ways to run
@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_blanks_untouched_say_not_written_yet(name):
    for stub, lines in run_exercises(name).items():
        assert lines == [f"not written yet: {stub}"], (name, stub, lines)


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_reference_solutions_pass(name):
    stubs = [stub for stub, _, _ in exercises_of(name)[0]]
    printed = run_exercises(name, {s: solution(name, s) for s in stubs})
    for stub, lines in printed.items():
        assert len(lines) == 1 and lines[0].startswith(f"PASS {stub}: max error "), \
            (name, stub, lines)


def _wrong_conv_forward(x, w, b, stride, pad):               # the bias forgotten
    return solution("01_convolution_im2col", "my_conv_forward")(x, w, 0 * b, stride, pad)


def _wrong_softmax_cross_entropy(logits, labels):            # not divided by N
    loss, d = solution("02_activations_and_loss", "my_softmax_cross_entropy")(logits, labels)
    return loss, d * len(labels)


def _wrong_lrn_backward(dout, x, size, alpha, beta, k):      # the neighbours' term left out
    squares = np.stack([(x[:, max(0, c - size // 2):c + size // 2 + 1] ** 2).sum(axis=1)
                        for c in range(x.shape[1])], axis=1)
    return dout * (k + alpha * squares) ** -beta


def _wrong_maxpool_backward(dout, x, size, stride):          # '=' where windows overlap
    N, C, _, _ = x.shape
    dx = np.zeros_like(x)
    n, c = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            p, q = np.divmod(window.reshape(N, C, -1).argmax(axis=2), size)
            dx[n, c, i * stride + p, j * stride + q] = dout[:, :, i, j]
    return dx


def _wrong_dropout_inverted(x, keep, p, train):              # not divided by 1 - p
    return x * keep if train else x


def _wrong_ten_crop_average(logits):                         # the softmax of the mean logits
    z = logits.mean(axis=0)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _wrong_sgd_step(w, g, v, lr, momentum, weight_decay):    # decay not scaled by lr
    v = momentum * v - weight_decay * w - lr * g
    return w + v, v


def _wrong_linear_backward(dout, x, w):                      # db averaged over the batch
    return dout @ w, dout.T @ x, dout.mean(axis=0)


def _wrong_head_backward(dlogits, params, acts):             # the dropout masks forgotten
    no_masks = dict(acts, m6=np.ones_like(acts["m6"]), m7=np.ones_like(acts["m7"]))
    return solution("12_fully_connected_and_backprop", "my_head_backward")(
        dlogits, params, no_masks)


WRONG = {"01_convolution_im2col": {"my_conv_forward": _wrong_conv_forward},
         "02_activations_and_loss": {"my_softmax_cross_entropy": _wrong_softmax_cross_entropy},
         "03_local_response_normalization": {"my_lrn_backward": _wrong_lrn_backward},
         "04_overlapping_max_pooling": {"my_maxpool_backward": _wrong_maxpool_backward},
         "05_dropout": {"my_dropout_inverted": _wrong_dropout_inverted},
         "07_data_and_augmentation": {"my_ten_crop_average": _wrong_ten_crop_average},
         "11_sgd_and_initialization": {"my_sgd_step": _wrong_sgd_step},
         "12_fully_connected_and_backprop": {"my_linear_backward": _wrong_linear_backward,
                                             "my_head_backward": _wrong_head_backward}}


def test_every_exercise_notebook_has_a_wrong_solution():
    assert sorted(WRONG) == sorted(WITH_EXERCISES)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_solution_fails(name):
    stubs = [stub for stub, _, _ in exercises_of(name)[0]]
    replace = {s: solution(name, s) for s in stubs}
    replace.update(WRONG[name])
    printed = run_exercises(name, replace)
    for stub, lines in printed.items():
        assert len(lines) == 1, (name, stub, lines)
        expected = f"FAIL {stub}: " if stub in WRONG[name] else f"PASS {stub}: "
        assert lines[0].startswith(expected), (name, stub, lines)


# ----------------------------------------------------------------- the check module
def test_a_failure_names_the_largest_difference_and_where():
    expected = np.zeros((2, 3))
    mine = expected.copy()
    mine[1, 2] = 0.5
    with pytest.raises(exercises.Mismatch, match=r"largest difference 5\.0e-01 at index "
                                                 r"\(1, 2\) of dx"):
        exercises.compare("dx", mine, expected)
    with pytest.raises(exercises.Mismatch, match=r"dx has shape \(3, 2\), expected \(2, 3\)"):
        exercises.compare("dx", mine.T, expected)
    with pytest.raises(exercises.Mismatch, match="NaN|largest difference"):
        exercises.compare("dx", np.full((2, 3), np.nan), expected)


def test_a_check_prints_one_line_for_an_error_raised_inside_the_learners_code(capsys):
    def broken(dout, x):
        raise IndexError("too many indices\nsecond line")

    exercises.check_relu_backward(broken)
    assert capsys.readouterr().out == ("FAIL my_relu_backward: it raised IndexError: "
                                       "too many indices\n")


def test_the_check_module_imports_only_the_library():
    """engine/, layers/, data/ and alexnet: never train.py or training/."""
    with open(os.path.join(ROOT, "notebooks", "exercises.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert mods <= {"__future__", "importlib", "os", "numpy", "engine", "layers", "data",
                    "alexnet"}, mods
