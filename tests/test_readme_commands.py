"""Every command in the README runs as written (issue #36).

The README's commands are read from it: each line of its ```bash blocks, each "$ "
line of a sample output, and each inline `code` span that starts with a command (python, make, pip, .venv/bin/...). The
short ones run here, from the repository root, and must exit 0. The long ones (a
training run, the whole suite, an install, a GPU) cannot run in the suite; each is
listed in NOT_RUN with the reason and what is checked instead. A command in neither
list fails the test, so a new command in the README is run here or says why not.

The commands of docs/TRAINING.md and docs/GPU.md are checked the same cheap way:
every `python train.py ...` parses with train.py's own parser (a removed flag fails),
every `python -m MODULE` names a module that exists, every `python scripts/X.py` a
file that exists.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMMAND_START = ("python ", ".venv/bin/", "make ", "pip ", "PYTHONPATH=", "ALEXNET_GPU_ROUTES=")


def read(doc) -> str:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def commands(doc) -> list:
    """The commands of a Markdown file: the lines of its bash blocks, comments cut, the
    "$ " lines of its sample outputs, and its inline code spans that start with a
    command."""
    text = read(doc)
    found = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(shlex.join(words))
    for block in re.findall(r"```\w*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():       # a sample output's "$ command" line
            if line.startswith("$ "):
                found.append(shlex.join(shlex.split(line[2:], comments=True)))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())         # a span may run over a line break
        if span.startswith(COMMAND_START):
            found.append(shlex.join(shlex.split(span)))
    return list(dict.fromkeys(found))


def normal(command: str) -> str:
    """The command with .venv/bin/python written as python."""
    return re.sub(r"(^|\s)\.venv/bin/python(?=\s)", r"\1python", command)


# The README's short commands, run here: each must exit 0, and its output must hold
# the text given. `python scripts/draw_network.py` as written would rewrite the
# committed picture, so it writes to a temporary file instead (tests/test_docs.py
# checks the picture against the model).
RUN = {
    "python train.py --help": "--time-limit",
    "python gradcheck.py --only lrn": "passed, 0 failed",
    "python -m experiments list --scale medium-mini": "relu",
    "python scripts/draw_network.py": "wrote",
}

# The README's commands that do not run in the suite, and why.
NOT_RUN = {
    "pip install .": "installs into the environment; tests/test_package.py builds the wheel "
                     "and runs its commands from an unrelated folder instead",
    "make train": "trains for minutes; its command is the README's sample output's, "
                  "checked against the Makefile below",
    "make test": "runs this suite",
    "make gradcheck": "the Makefile runs python gradcheck.py, checked below; "
                      "python gradcheck.py --only lrn runs here",
    "make train 'ARGS=--epochs 10'": "trains for minutes; the Makefile passes ARGS on, "
                                      "checked below",
    "python train.py --dataset fashion-mnist-subset --model mini --init he --epochs 4 "
    "--out runs/quickstart --overwrite": "the sample output's command: trains for minutes; its flags "
                             "parse, and it is the Makefile's",
    "python -m experiments CLAIM": "trains for minutes; python -m experiments list runs here",
    "python -m bench.cpu --quick": "needs PyTorch and takes minutes",
    "python -m bench.gpu": "needs a GPU, CuPy and PyTorch",
    "python train.py --device cuda": "needs a GPU; its flags parse",
    ".venv/bin/pip install -e '.[notebooks]'": "an install from PyPI; the extra exists",
    ".venv/bin/pip install -e '.[cuda12]'": "an install from PyPI; the extra exists",
    ".venv/bin/jupyter lab notebooks/": "opens a browser; the folder exists",
}


def test_every_readme_command_is_run_here_or_says_why_not():
    listed = {normal(c) for c in RUN} | {normal(c) for c in NOT_RUN}
    missing = [c for c in commands("README.md") if normal(c) not in listed]
    assert not missing, ("README commands neither run in tests/test_readme_commands.py "
                         "nor listed in NOT_RUN: " + "; ".join(missing))
    stale = sorted(listed - {normal(c) for c in commands("README.md")})
    assert not stale, "listed here but not in the README: " + "; ".join(stale)


@pytest.mark.parametrize("command", sorted(RUN))
def test_readme_short_command_runs(command, tmp_path):
    argv = shlex.split(command)
    argv[0] = sys.executable
    if command == "python scripts/draw_network.py":
        argv += ["--out", str(tmp_path / "alexnet.png")]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{command}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    assert RUN[command] in r.stdout, f"{command}: {r.stdout[-2000:]}"


def test_readme_python_example_runs():
    """The README's ```python block, as a learner would paste it."""
    blocks = re.findall(r"```python\n(.*?)```", read("README.md"), flags=re.S)
    assert blocks, "the README has no Python example"
    for code in blocks:
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]


def makefile() -> str:
    return read("Makefile")


def test_make_targets_run_what_the_readme_says():
    mk = makefile()
    train_args = re.search(r"^TRAIN_ARGS \?= (.+)$", mk, flags=re.M).group(1).strip()
    sample = next(c for c in commands("README.md") if "--out runs/quickstart" in c)
    assert normal(sample) == f"python train.py {train_args}", \
        "the README's sample output is not make train's command"
    assert re.search(r"^train:.*\n\t\$\(PY\) train\.py \$\(TRAIN_ARGS\) \$\(ARGS\)$", mk, re.M)
    assert re.search(r"^gradcheck:.*\n\t\$\(PY\) gradcheck\.py$", mk, re.M)
    assert re.search(r"^test:.*\n\t\$\(PY\) -m pytest", mk, re.M)


def test_the_readmes_install_extras_and_folders_exist():
    pyproject = read("pyproject.toml")
    for extra in ("notebooks", "cuda12", "cuda13", "dev", "bench"):
        assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra
    assert os.path.isdir(os.path.join(ROOT, "notebooks"))


# ------------------------------------------------------------------ the docs' commands
DOCS_WITH_COMMANDS = ["README.md", "docs/TRAINING.md", "docs/GPU.md"]


def python_commands(doc):
    for c in commands(doc):
        words = shlex.split(c)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]                  # PYTHONPATH=... ALEXNET_GPU_ROUTES=...
        if words and words[0] in ("python", ".venv/bin/python"):
            yield c, words[1:]


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_train_commands_use_flags_train_py_has(doc, capsys):
    from training.flags import build_parser

    bad = []
    for command, args in python_commands(doc):
        if args[:1] != ["train.py"]:
            continue
        try:
            build_parser().parse_args(args[1:])
        except SystemExit as e:
            if e.code == 0:                   # --help
                continue
            bad.append(f"{command}: {capsys.readouterr().err.strip().splitlines()[-1]}")
    assert not bad, f"{doc}: " + "; ".join(bad)


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_python_commands_name_modules_and_scripts_that_exist(doc):
    bad = []
    for command, args in python_commands(doc):
        if args[:1] == ["-m"]:
            if importlib.util.find_spec(args[1]) is None and args[1] != "pytest":
                bad.append(command)
        elif args and args[0].endswith(".py") and not os.path.isfile(os.path.join(ROOT, args[0])):
            bad.append(command)
    assert not bad, f"{doc}: " + "; ".join(bad)
