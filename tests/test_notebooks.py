"""The notebooks: each one runs top to bottom, and the committed ones are not stale.

Every notebook is built fresh from its source (notebooks/src/NN_name.py) into
tmp_path and executed in a new kernel with ALEXNET_NOTEBOOK_SMALL=1, one test per
notebook, so a failure names the notebook and shows the failing cell. A separate
test runs ``scripts/build_notebooks.py --check`` against the committed .ipynb files:
their cells must equal the sources and every code cell must have run without error.
"""
import glob
import importlib.util
import os
import tempfile

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "build_notebooks", os.path.join(ROOT, "scripts", "build_notebooks.py"))
bn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bn)

NOTEBOOKS = ["01_convolution_im2col", "02_activations_and_loss",
             "03_local_response_normalization", "04_overlapping_max_pooling", "05_dropout",
             "06_alexnet_end_to_end", "07_data_and_augmentation", "08_training_fashion_mnist",
             "09_gpu", "10_the_papers_claims", "11_sgd_and_initialization"]


def test_the_series_is_complete():
    assert [bn.notebook_name(p) for p in bn.sources()] == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_small_mode(name, tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient.exceptions import CellExecutionError

    path = str(tmp_path / f"{name}.ipynb")
    bn.write(bn.build_notebook(os.path.join(bn.SRC_DIR, name + ".py")), path)
    nb = nbformat.read(path, as_version=4)
    scratch = os.path.join(tempfile.gettempdir(), "alexnet-nb*")
    before = set(glob.glob(scratch))
    try:
        bn.execute_notebook(nb, small=True, timeout=600)
    except CellExecutionError as e:
        pytest.fail(f"notebook {name} failed in small mode:\n{e}", pytrace=False)
    finally:
        bn.write(nb, path)  # the partial outputs stay in tmp_path to look at
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cell"
    assert all(c.execution_count is not None for c in code), f"{name}: a cell did not run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: error outputs {[(o.ename, o.evalue) for o in errors]}"
    # a notebook's temporary folders (training runs' checkpoints) go with its kernel
    left = set(glob.glob(scratch)) - before
    assert not left, f"{name} left temporary folders behind: {sorted(left)}"


def test_committed_notebooks_are_up_to_date():
    """Equivalent to ``python scripts/build_notebooks.py --check``."""
    problems = bn.check_all()
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the build script itself

def test_percent_format_is_parsed_into_cells():
    text = ("# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
            "# %%\nx = 1  # a comment stays\n\n\nprint(x)\n\n"
            "# %% [markdown]\n# Last.\n")
    assert bn.parse_percent(text) == [("markdown", "# Title\n\nSome *text*."),
                                      ("code", "x = 1  # a comment stays\n\n\nprint(x)"),
                                      ("markdown", "Last.")]


def test_a_markdown_line_without_comment_mark_is_an_error():
    with pytest.raises(bn.BuildError, match="x.py:2"):
        bn.parse_percent("# %% [markdown]\nnot a comment\n", where="x.py")
    with pytest.raises(bn.BuildError, match="unknown cell marker"):
        bn.parse_percent("# %% [raw]\n", where="x.py")


def test_check_flags_a_stale_or_unexecuted_notebook(tmp_path):
    src = tmp_path / "01_demo.py"
    src.write_text("# %% [markdown]\n# Hello\n\n# %%\nprint(1)\n")
    nb_path = str(tmp_path / "01_demo.ipynb")
    nb = bn.build_notebook(str(src))
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.metadata["alexnet_notebook"] = {"small": False}
    bn.write(nb, nb_path)
    assert bn.check_notebook(str(src), nb_path) == []

    src.write_text("# %% [markdown]\n# Hello\n\n# %%\nprint(2)\n")     # the source changed
    assert any("differ" in p for p in bn.check_notebook(str(src), nb_path))

    bn.write(bn.build_notebook(str(src)), nb_path)                     # rebuilt, never run
    problems = bn.check_notebook(str(src), nb_path)
    assert any("never executed" in p for p in problems)
    assert any("normal size" in p for p in problems)


def test_keep_outputs_only_when_the_code_is_unchanged(tmp_path):
    src = tmp_path / "01_demo.py"
    src.write_text("# %% [markdown]\n# Hello\n\n# %%\nprint(1)\n")
    nb_path = str(tmp_path / "01_demo.ipynb")
    nb = bn.build_notebook(str(src))
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.metadata["alexnet_notebook"] = {"small": False}
    bn.write(nb, nb_path)

    src.write_text("# %% [markdown]\n# Hello, edited\n\n# %%\nprint(1)\n")   # prose only
    rebuilt = bn.build_notebook(str(src))
    assert bn.reuse_outputs(rebuilt, nb_path, small=False)
    assert rebuilt.cells[1].outputs[0]["text"] == "1\n"
    bn.write(rebuilt, nb_path)
    assert bn.check_notebook(str(src), nb_path) == []
    assert not bn.reuse_outputs(bn.build_notebook(str(src)), nb_path, small=True)  # other size

    src.write_text("# %% [markdown]\n# Hello, edited\n\n# %%\nprint(2)\n")   # code changed
    assert not bn.reuse_outputs(bn.build_notebook(str(src)), nb_path, small=False)


def test_build_is_deterministic():
    src = os.path.join(bn.SRC_DIR, NOTEBOOKS[0] + ".py")
    assert nbformat.writes(bn.build_notebook(src)) == nbformat.writes(bn.build_notebook(src))
