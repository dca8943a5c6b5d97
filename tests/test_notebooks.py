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

NOTEBOOKS = ["00_start_here", "01_convolution_im2col", "02_activations_and_loss",
             "03_local_response_normalization", "04_overlapping_max_pooling", "05_dropout",
             "06_alexnet_end_to_end", "07_data_and_augmentation", "08_training_fashion_mnist",
             "09_gpu", "10_the_papers_claims", "11_sgd_and_initialization",
             "12_fully_connected_and_backprop"]


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
    assert bn.parse_percent(text) == [("markdown", "# Title\n\nSome *text*.", ()),
                                      ("code", "x = 1  # a comment stays\n\n\nprint(x)", ()),
                                      ("markdown", "Last.", ())]


def test_cell_tags_reach_the_notebook_and_the_staleness_check(tmp_path):
    """``# %% tags=["exercise"]`` (jupytext's spelling) tags a code cell, and
    ``# %% [markdown] tags=[...]`` a markdown one; the tags land in the cell's
    metadata, and --check sees a changed tag as a stale notebook."""
    text = ('# %% tags=["exercise"]\ndef f():\n    raise NotImplementedError\n\n'
            '# %% tags=["check"]\nprint(1)\n\n'
            '# %% [markdown] tags=["question", "answer-inside"]\n# Why?\n\n# %%\nx = 2\n')
    assert bn.parse_percent(text) == [
        ("code", "def f():\n    raise NotImplementedError", ("exercise",)),
        ("code", "print(1)", ("check",)),
        ("markdown", "Why?", ("question", "answer-inside")),
        ("code", "x = 2", ())]
    src = tmp_path / "01_demo.py"
    src.write_text(text)
    nb = bn.build_notebook(str(src))
    assert [c.metadata.get("tags") for c in nb.cells] == [
        ["exercise"], ["check"], ["question", "answer-inside"], None]
    for c in nb.cells:
        if c.cell_type == "code":
            c.execution_count, c.outputs = 1, []
    nb.metadata["alexnet_notebook"] = {"small": False}
    nb_path = str(tmp_path / "01_demo.ipynb")
    bn.write(nb, nb_path)
    assert bn.check_notebook(str(src), nb_path) == []
    src.write_text(text.replace('tags=["check"]', 'tags=["exercise-setup"]'))
    assert any("differ" in p for p in bn.check_notebook(str(src), nb_path))


def test_malformed_cell_tags_are_an_error():
    for marker in ('# %% tags=exercise', '# %% tags=[1]', '# %% tags=["a",]',
                   '# %% [markdown] tags=[""]', '# %% [raw] tags=["a"]'):
        with pytest.raises(bn.BuildError, match="x.py:1"):
            bn.parse_percent(marker + "\n# text\n", where="x.py")


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


# ------------------------------------------------ what the notebooks say, kept in step
# A notebook that states what the committed results say reads them from the files;
# where its prose draws a conclusion from them, the test below holds the files to it.
RESULTS = os.path.join(ROOT, "experiments", "results")


def _claim(scale, name):
    import json
    with open(os.path.join(RESULTS, scale, name + ".json")) as f:
        return json.load(f)["stats"]


def _source(name):
    with open(os.path.join(bn.SRC_DIR, name + ".py"), encoding="utf-8") as f:
        return f.read()


def test_figures_are_drawn_at_100_dpi_or_more():
    """Every notebook sets matplotlib's figure.dpi, at 100 or more."""
    import re
    for name in NOTEBOOKS:
        dpis = [int(d) for d in re.findall(r'"figure\.dpi":\s*(\d+)', _source(name))]
        assert dpis and min(dpis) >= 100, (name, dpis)


def test_notebook_02_relu_sentences_match_the_recorded_runs():
    """02 says: with mini (medium-mini) ReLU reaches 25% training error first with every
    seed; with tiny (small, medium) tanh gets there first on average."""
    text = _source("02_activations_and_loss")
    assert "fewer epochs than tanh with every seed" in text
    stats = _claim("medium-mini", "relu")
    relu = stats["relu"]["epochs_to_25_train_error"]["values"]
    tanh = stats["tanh"]["epochs_to_25_train_error"]["values"]
    assert all(r < t for r, t in zip(relu, tanh)), (relu, tanh)
    for scale in ("small", "medium"):
        stats = _claim(scale, "relu")
        assert (stats["tanh"]["epochs_to_25_train_error"]["mean"]
                < stats["relu"]["epochs_to_25_train_error"]["mean"]), scale


def test_notebook_05_dropout_sentences_match_the_recorded_runs():
    """05 says: at none of the scales does dropout lower the test error beyond the seeds'
    spread; with tiny it is worse at both sizes, with mini level; the gaps are within a
    few points, some negative, and mini's is smaller with dropout."""
    text = _source("05_dropout")
    assert "At none of the three recorded scales does dropout lower the test error" in text
    gaps = []
    for scale in ("small", "medium", "medium-mini"):
        st = _claim(scale, "dropout")
        on, off = st["dropout 0.5"]["test_top1_error"], st["no dropout"]["test_top1_error"]
        assert on["mean"] - off["mean"] > -(on["std"] + off["std"]), scale
        if scale in ("small", "medium"):
            assert on["mean"] > off["mean"], scale
        else:
            assert abs(on["mean"] - off["mean"]) < on["std"] + off["std"], scale
        gaps += [st[v]["train_test_gap"]["mean"] for v in st]
    assert all(abs(g) < 0.06 for g in gaps) and min(gaps) < 0, gaps
    mini = _claim("medium-mini", "dropout")
    assert (mini["dropout 0.5"]["train_test_gap"]["mean"]
            < mini["no dropout"]["train_test_gap"]["mean"])


def _outputs(name):
    nb = nbformat.read(os.path.join(bn.NB_DIR, name + ".ipynb"), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")


def test_notebook_05_and_08_prose_matches_their_committed_outputs():
    """What 05 and 08 say about their own runs is what the committed outputs print."""
    import re
    out = _outputs("05_dropout")
    m = re.search(r"gap ([\d.]+) points without dropout, ([\d.]+) with; test error ([\d.]+)% "
                  r"without, ([\d.]+)% with: dropout did not lower", out)
    assert m, "05: the committed run no longer says dropout did not lower the test error"
    gap_off, gap_on = float(m.group(1)), float(m.group(2))
    assert gap_off > 10 and gap_on < gap_off
    out = _outputs("08_training_fashion_mnist")
    rates = {name: float(rate) for rate, name in
             re.findall(r"class: ([\d.]+)% of test images, by (fc7 features|raw pixels)", out)}
    assert rates["raw pixels"] > rates["fc7 features"]                   # "the opposite"
    rows = re.findall(r"^(mirrored|shifted by up to 2 pixels(?:, mirrored)?|as they are)"
                      r"\s+([\d.]+)%\s+([\d.]+)%$", out, flags=re.MULTILINE)
    assert len(rows) == 4, rows
    rows = {label: (float(f), float(p)) for label, f, p in rows}
    for label, (fc7, pixels) in rows.items():
        if label != "as they are":
            assert fc7 > pixels, (label, fc7, pixels)        # "more often than pixels do"
            assert (rows["as they are"][1] - pixels) > (rows["as they are"][0] - fc7)


def test_notebook_09_h200_numbers_are_those_of_the_docs():
    """notebooks/gpu_h200.json, which 09 reads, copies docs/PERFORMANCE.md and
    docs/GPU.md; and 09's prose (more than twice PyTorch's, most of it host time)."""
    import json
    with open(os.path.join(bn.NB_DIR, "gpu_h200.json")) as f:
        h200 = json.load(f)
    with open(os.path.join(ROOT, "docs", "PERFORMANCE.md"), encoding="utf-8") as f:
        perf = f.read()
    with open(os.path.join(ROOT, "docs", "GPU.md"), encoding="utf-8") as f:
        gpu = f.read()
    assert h200["step_command"] in perf and h200["software"].split(",")[0] in perf
    for r in h200["step"]:
        row = (f"| {r['case']} {r['route']} | {r['ours_ms']:.2f} | {r['ours_host_ms']:.2f} | "
               f"{r['torch_ms']:.2f} | {r['ratio']:.2f} | {r['ours_img_s']:,} | "
               f"{r['torch_img_s']:,} |")
        assert row in perf, row
    for r in h200["training"]:
        row = f"| {r['code']} | {r['networks']} | {r['s_per_epoch']} | {r['img_s']:,} |"
        assert row in perf, row
    acc = h200["accuracy"]
    assert (f"two networks trained together for {acc['seconds_each']} s ({acc['epochs']} epochs"
            in gpu)
    assert (f"{' and '.join(acc['each_tencrop_error'])} ten-crop test error, "
            f"{acc['averaged_tencrop_error']} averaged" in gpu)
    few = next(r for r in h200["step"] if r["route"] == "few")
    assert few["ratio"] > 2 and few["ours_host_ms"] > few["ours_ms"] / 2


def test_notebook_11_cosine_sentences_match_results_md():
    """11 reads the attempts' rows from docs/RESULTS.md; its prose: the cosine run ended
    below both 20-epoch runs with fixed drops, and no warm restart beat the 40-epoch
    run with the paper's drops."""
    import re
    with open(os.path.join(ROOT, "docs", "RESULTS.md"), encoding="utf-8") as f:
        md = f.read()

    def err(name):
        m = re.search(rf'^\| ([0-9.]+)% \| ([0-9.]+)% \| <a id="headline-{re.escape(name)}"></a>',
                      md, flags=re.MULTILINE)
        assert m, f"no row {name} in docs/RESULTS.md"
        return float(m.group(1))

    cosine = err("cosine-20ep-seed2")
    assert cosine < err("lr02-drops-20ep") and cosine < err("lr02-drops-swa-20ep-seed0")
    restarts = [err("restart-cosine-43ep-seed0"), err("restart-cosine-39ep-seed2")]
    assert max(restarts) < cosine and min(restarts) >= err("lr02-patience4")


def test_timings_list_every_notebook():
    import json
    with open(os.path.join(bn.NB_DIR, "timings.json")) as f:
        seconds = json.load(f)["seconds"]
    assert list(seconds) == NOTEBOOKS
    measured = {k: v for k, v in seconds.items() if v is not None}
    assert len(measured) >= len(NOTEBOOKS) - 1, seconds      # 10 may be left unmeasured
    assert all(0 < v < 1800 for v in measured.values()), measured
