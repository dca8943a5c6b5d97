"""Build the notebooks from their plain-text sources, run them, and check them.

The notebooks are written as Python files in the "percent" format, in
``notebooks/src/NN_name.py``:

    # %% [markdown]
    # # A title
    # Markdown text, each line a ``# ``-prefixed comment.

    # %%
    print("a code cell")

A cell marker may carry Jupyter cell tags, as jupytext writes them:
``# %% tags=["exercise"]`` or ``# %% [markdown] tags=["question"]``. They go into the
cell's ``metadata.tags`` (the notebooks' exercises are the cells tagged ``exercise``,
each followed by one tagged ``check``; see notebooks/exercises.py).

A source is the only place a notebook is edited; the ``.ipynb`` next to it is
built from it (and, with ``--execute``, run so that it carries its outputs).

    python scripts/build_notebooks.py             # build notebooks/NN_name.ipynb, no outputs
    python scripts/build_notebooks.py --execute   # build and run each one, save the outputs
    python scripts/build_notebooks.py --check     # are the committed notebooks up to date?
    python scripts/build_notebooks.py --execute --keep-outputs   # re-run only where code changed
    ALEXNET_NOTEBOOK_SMALL=1 python scripts/build_notebooks.py --execute --out /tmp/nb

``--check`` fails when a notebook's cells differ from the cells built from its
source (an edited source whose outputs went stale), when a code cell was never
run or ended in an error, or when the notebook was run in small mode.

The kernel runs with its working directory in ``notebooks/`` (whatever ``--out``
is), so the notebooks find the project as they do in Jupyter.
Needs nbformat and jupytext; ``--execute`` also needs nbclient and ipykernel (``pip install -e '.[dev]'``).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
SRC_DIR = os.path.join(NB_DIR, "src")
SMALL_ENV = "ALEXNET_NOTEBOOK_SMALL"
KERNEL = "python3"

_CELL_RE = re.compile(r"^# %%(?P<rest>.*)$")
# what may follow "# %%": an optional "[markdown]", then optional tags=[...] (a JSON list)
_MARKER_RE = re.compile(r"^(?P<kind>\[markdown\])?\s*(?:tags=(?P<tags>\[.*\]))?$")


class BuildError(ValueError):
    """A source that cannot be turned into a notebook (the message names file and line)."""


def sources(only: str | None = None) -> list[str]:
    """Paths of notebooks/src/NN_name.py, sorted; ``only`` keeps names containing it."""
    paths = sorted(glob.glob(os.path.join(SRC_DIR, "[0-9][0-9]_*.py")))
    if only:
        paths = [p for p in paths if only in os.path.basename(p)]
    return paths


def notebook_name(src_path: str) -> str:
    """'notebooks/src/01_convolution_im2col.py' -> '01_convolution_im2col'."""
    return os.path.splitext(os.path.basename(src_path))[0]


def _parse_marker(rest: str, where: str, lineno: int, line: str) -> str:
    """Check what follows a '# %%' marker: '' or '[markdown]', then optional
    tags=["a", ...]; return the cell's kind."""
    m = _MARKER_RE.match(rest.strip())
    if m is None:
        raise BuildError(f"{where}:{lineno}: unknown cell marker {line!r}; use '# %%' "
                         "or '# %% [markdown]', optionally followed by tags=[\"...\"]")
    if m.group("tags") is not None:
        try:
            tags = json.loads(m.group("tags"))
        except ValueError:
            tags = None
        if not (isinstance(tags, list) and all(isinstance(t, str) and t for t in tags)):
            raise BuildError(f"{where}:{lineno}: cell tags must be a JSON list of strings, "
                             f"as tags=[\"exercise\"], got {line!r}")
    return "markdown" if m.group("kind") else "code"


def check_source(text: str, where: str = "<source>") -> None:
    """What jupytext would read without a word but this project refuses, naming the
    line: a cell marker other than code or markdown, tags that are not a list of
    names, and a markdown line that is not a comment (it would be lost)."""
    kind = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _CELL_RE.match(line)
        if m:
            kind = _parse_marker(m.group("rest"), where, lineno, line)
        elif kind == "markdown" and line.strip() and not (line == "#" or line.startswith("# ")):
            raise BuildError(f"{where}:{lineno}: a markdown cell's lines must start with "
                             f"'# ' (or be '#'), got {line!r}")


def parse_percent(text: str, where: str = "<source>") -> list[tuple[str, str, tuple]]:
    """Split a percent-format source into ``[(cell_type, source, tags), ...]``.

    ``# %%`` starts a code cell and ``# %% [markdown]`` a markdown cell, whose lines
    are comments (``# text``, or a bare ``#`` for an empty line). Either marker may end
    with ``tags=["a", "b"]``, the cell's Jupyter tags. jupytext reads the cells (the
    format is its own, so Jupyter with jupytext opens a source as a notebook);
    ``check_source`` refuses first what jupytext would take silently. Empty cells are
    dropped.
    """
    import jupytext

    check_source(text, where)
    nb = jupytext.reads(text, fmt="py:percent")
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ())))
            for c in nb.cells if c.source.strip()]


def build_notebook(src_path: str):
    """The notebook (nbformat v4, no outputs) for one source file."""
    with open(src_path, encoding="utf-8") as f:
        cells = parse_percent(f.read(), where=os.path.relpath(src_path, ROOT))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text, tags) in enumerate(cells):
        # Stable cell ids (nbformat would draw random ones), so a rebuild of an
        # unchanged source gives the same file.
        cid = f"{'md' if kind == 'markdown' else 'code'}-{i:02d}"
        cell = (nbformat.v4.new_markdown_cell(text, id=cid) if kind == "markdown"
                else nbformat.v4.new_code_cell(text, id=cid))
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def execute_notebook(nb, small: bool = False, timeout: int = 1200, cwd: str = NB_DIR):
    """Run every cell in a fresh python3 kernel (the interpreter running this script),
    in place. Raises nbclient's CellExecutionError at the first failing cell.

    ``small`` sets ALEXNET_NOTEBOOK_SMALL=1 for the kernel (less work everywhere).
    Returns the wall time in seconds.
    """
    from nbclient import NotebookClient

    env = dict(os.environ)
    if small:
        env[SMALL_ENV] = "1"
    else:
        env.pop(SMALL_ENV, None)
    # No figure windows, ever: the inline backend draws into the notebook.
    env.pop("MPLBACKEND", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False,
                            resources={"metadata": {"path": cwd}})
    t0 = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - t0
    nb.metadata["alexnet_notebook"] = {"small": bool(small)}
    return seconds


def reuse_outputs(nb, old_path: str, small: bool = False) -> bool:
    """Copy the outputs of the notebook at ``old_path`` into ``nb`` when their code cells
    are identical (same sources, same order): only markdown was edited, so the old
    outputs are still the outputs of this code. Returns False (and changes nothing)
    when the code differs, the old notebook is missing, was not fully executed, or was
    run at the other size (``small``)."""
    if not os.path.isfile(old_path):
        return False
    old = nbformat.read(old_path, as_version=4)
    if old.metadata.get("alexnet_notebook", {}).get("small") != bool(small):
        return False
    old_code = [c for c in old.cells if c.cell_type == "code"]
    new_code = [c for c in nb.cells if c.cell_type == "code"]
    if [c.source for c in old_code] != [c.source for c in new_code]:
        return False
    if any(c.get("execution_count") is None for c in old_code):
        return False
    for o, n in zip(old_code, new_code):
        n.outputs, n.execution_count = o.outputs, o.execution_count
    nb.metadata["alexnet_notebook"] = old.metadata["alexnet_notebook"]
    return True


def write(nb, path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.replace(tmp, path)


def _cells_of(nb) -> list[tuple[str, str, tuple]]:
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def check_notebook(src_path: str, nb_path: str) -> list[str]:
    """Problems with the committed notebook ``nb_path`` built from ``src_path``
    (an empty list when it is up to date and fully, successfully executed)."""
    name = os.path.basename(nb_path)
    if not os.path.isfile(nb_path):
        return [f"{name}: missing; run scripts/build_notebooks.py --execute"]
    nb = nbformat.read(nb_path, as_version=4)
    problems = []
    built, committed = _cells_of(build_notebook(src_path)), _cells_of(nb)
    if built != committed:
        first = next((i for i, (a, b) in enumerate(zip(built, committed)) if a != b),
                     min(len(built), len(committed)))
        problems.append(f"{name}: its cells differ from {os.path.relpath(src_path, ROOT)} "
                        f"(first difference at cell {first}; {len(committed)} cells committed, "
                        f"{len(built)} in the source): the outputs are stale, re-run "
                        "scripts/build_notebooks.py --execute")
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        if c.get("execution_count") is None:
            problems.append(f"{name}: code cell {i} was never executed")
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                problems.append(f"{name}: code cell {i} ended in an error: "
                                f"{o.get('ename')}: {o.get('evalue')}")
    if nb.metadata.get("alexnet_notebook", {}).get("small", True):
        problems.append(f"{name}: not executed at normal size (small mode, or not by this "
                        "script); re-run scripts/build_notebooks.py --execute without "
                        f"{SMALL_ENV}")
    return problems


def check_all(nb_dir: str = NB_DIR) -> list[str]:
    """--check over every source; also flags a notebook whose source is gone."""
    problems = []
    srcs = sources()
    if not srcs:
        problems.append(f"no sources found in {SRC_DIR}")
    for src in srcs:
        problems += check_notebook(src, os.path.join(nb_dir, notebook_name(src) + ".ipynb"))
    names = {notebook_name(s) for s in srcs}
    for p in sorted(glob.glob(os.path.join(nb_dir, "[0-9][0-9]_*.ipynb"))):
        if os.path.splitext(os.path.basename(p))[0] not in names:
            problems.append(f"{os.path.basename(p)}: no source notebooks/src/"
                            f"{os.path.splitext(os.path.basename(p))[0]}.py")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/build_notebooks.py",
                                description="Build notebooks/NN_name.ipynb from notebooks/src/"
                                            "NN_name.py; optionally run them or check them.")
    p.add_argument("--execute", action="store_true",
                   help="run each notebook (nbclient, python3 kernel) and save its outputs")
    p.add_argument("--check", action="store_true",
                   help="verify the committed notebooks: cells equal to the sources, every "
                        "code cell executed without error, at normal size; build nothing")
    p.add_argument("--out", default=NB_DIR,
                   help="folder to write the notebooks into (default: notebooks/)")
    p.add_argument("--only", default=None, metavar="TEXT",
                   help="only the notebooks whose name contains TEXT (e.g. 03)")
    p.add_argument("--keep-outputs", action="store_true",
                   help="with --execute: a notebook whose code cells are unchanged (only "
                        "markdown was edited) keeps the outputs it has, without running")
    p.add_argument("--timeout", type=int, default=1200, help="seconds allowed per cell")
    a = p.parse_args(argv)

    if a.check:
        problems = check_all(a.out)
        for line in problems:
            print(line, file=sys.stderr)
        print("notebooks up to date" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0

    srcs = sources(a.only)
    if not srcs:
        print(f"no sources match in {SRC_DIR}", file=sys.stderr)
        return 2
    small = os.environ.get(SMALL_ENV, "0") not in ("", "0")
    failed = 0
    for src in srcs:
        name = notebook_name(src)
        dest = os.path.join(a.out, name + ".ipynb")
        nb = build_notebook(src)
        if a.execute and a.keep_outputs and reuse_outputs(nb, dest, small):
            print(f"{name}: code unchanged, outputs kept (markdown rebuilt) -> "
                  f"{os.path.relpath(dest)}")
        elif a.execute:
            from nbclient.exceptions import CellExecutionError
            try:
                seconds = execute_notebook(nb, small=small, timeout=a.timeout)
            except CellExecutionError as e:
                failed += 1
                print(f"FAILED {name}:\n{e}", file=sys.stderr)
                write(nb, dest)  # keep the partial outputs to look at
                continue
            size = len(nbformat.writes(nb).encode())
            print(f"{name}: ran in {seconds:.1f} s{' (small mode)' if small else ''}, "
                  f"{size / 1024:.0f} KiB -> {os.path.relpath(dest)}", flush=True)
        else:
            print(f"{name}: built -> {os.path.relpath(dest)}")
        write(nb, dest)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
