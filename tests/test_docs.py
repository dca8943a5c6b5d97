"""The project's Markdown documents: the README is a front page (issue #36), and every
document links to files that exist, and to sections that exist in them (a heading's
anchor as GitHub makes it, or an explicit <a id="...">).

What is checked, and where:

- README.md is at most 220 lines, its sections come in the issue's order, a picture
  comes before them, it links the notebooks and gives the gradient-check command in
  its first 80 lines, it holds at most three dates, and each row of its results table
  links to the doc with the details;
- README.md, notebooks/README.md and every docs/*.md hold no machine paths (rule:
  MACHINE_PATH below), no broken relative links or anchors, and name only tests that
  exist;
- the README's picture is what scripts/draw_network.py draws from the model.

That the README's commands run is tests/test_readme_commands.py's job.
"""
import glob
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "notebooks/README.md", *sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (word
    characters, spaces and hyphens kept), each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path) -> set:
    """Every anchor a link into the Markdown file at path may name; a heading that
    repeats gets -1, -2, ... as on GitHub."""
    found, seen, fence = set(), {}, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fence = not fence
            if fence:
                continue
            m = re.match(r"#{1,6} (.+)", line)
            if m:
                a = github_anchor(m.group(1))
                n = seen.get(a, 0)
                seen[a] = n + 1
                found.add(a if n == 0 else f"{a}-{n}")
            found.update(re.findall(r'<a id="([^"]+)"></a>', line))
    return found


def test_github_anchor_follows_githubs_rule():
    assert (github_anchor("The headline: `mini` on the full Fashion-MNIST")
            == "the-headline-mini-on-the-full-fashion-mnist")
    assert github_anchor("Averaging networks (Section 6)") == "averaging-networks-section-6"
    assert github_anchor("Every attempt, lowest error first") == "every-attempt-lowest-error-first"


@pytest.mark.parametrize("doc", DOCS)
def test_links_reach_files_and_sections_that_exist(doc):
    path = os.path.join(ROOT, doc)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):          # http:, https:, mailto:
            continue
        file, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            broken.append(f"{target} (no file {os.path.relpath(dest, ROOT)})")
        elif frag and dest.endswith(".md") and frag not in anchors(dest):
            broken.append(f"{target} (no section #{frag} in {os.path.relpath(dest, ROOT)})")
    assert not broken, f"{doc} has broken links: " + "; ".join(broken)


def read(doc) -> str:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------ the front page
README_SECTIONS = ["Start: two commands", "Learn", "On a GPU", "Results at a glance",
                   "Layout", "Dependencies and license"]


def test_readme_is_at_most_220_lines():
    n = len(read("README.md").splitlines())
    assert n <= 220, f"README.md has {n} lines; details belong in docs/"


def test_readme_sections_come_in_the_front_pages_order():
    """What it is (the opening paragraph), a picture, the two commands, learn, the GPU,
    results, layout, dependencies and license (issue #36)."""
    text = read("README.md")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == README_SECTIONS
    before = text.split("\n## ", 1)[0]
    assert re.search(r"!\[[^\]]+\]\(docs/images/[^)]+\.png\)", before), \
        "the picture comes before the first section"


def test_readme_links_the_notebooks_and_gives_the_gradient_check_in_its_first_80_lines():
    head = "\n".join(read("README.md").splitlines()[:80])
    assert re.search(r"\]\(notebooks/[^)]*\)", head), "no link to the notebooks in lines 1-80"
    assert re.search(r"(make gradcheck|python gradcheck\.py)", head), \
        "no gradient-check command in lines 1-80"


DATE = re.compile(
    r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b"                                   # 2026-11-28
    r"|\b(?:\d{1,2} )?(?:January|February|March|April|May|June|July|August|September"
    r"|October|November|December) (?:\d{1,2}, )?(?:19|20)\d\d\b")             # 28 November 2026


def test_date_pattern_finds_the_forms_a_date_takes():
    assert len(DATE.findall("on 2026-11-28, 28 November 2026, November 28, 2026")) == 3
    assert not DATE.findall("commit 1fc4934, 2.56 +- 0.06, 60,965,224 parameters, 12-20")


def test_readme_has_at_most_three_dates():
    """The README is not a lab log: a run's date goes with its record in docs/."""
    dates = DATE.findall(read("README.md"))
    assert len(dates) <= 3, f"README.md has {len(dates)} dates: {dates}"


def test_each_row_of_the_readmes_results_links_to_its_details():
    text = read("README.md")
    section = text.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines()
            if line.startswith("|") and not re.match(r"\|[-| ]+\|$", line)][1:]
    assert rows, "no results table"
    for row in rows:
        assert re.search(r"\]\(docs/[^)]+\.md(#[^)]*)?\)", row), f"no link to a doc: {row}"


# ------------------------------------------------------------------ machine paths
# A machine path is an absolute path: a "/" that begins a word (at the start of a line
# or after a space, quote, backtick, bracket, "=", ":", "|", "," or ";") and is
# followed by a letter, as in /home/me/x or `/tmp/a.png`. URLs do not match (their
# slashes follow ":" or "/" and then "/"), nor do HTML tags (</a>), relative paths
# (runs/x, docs/y.md) or home-relative ones (~/.cache/...). The one allowed is where a
# system package installs a dataset and train.py looks for it (data/datasets.py,
# SYSTEM_DIRS: Debian's dataset-fashion-mnist at /usr/share/datasets/fashion-mnist).
MACHINE_PATH = re.compile(r"(?:^|(?<=[\s`'\"(\[=:|,;]))/[A-Za-z][\w.+-]*(?:/[\w.+-]*)*")


def allowed_paths() -> set:
    from data.datasets import SYSTEM_DIRS
    return {d for dirs in SYSTEM_DIRS.values() for d in dirs}


def test_machine_path_rule_finds_absolute_paths_only():
    found = lambda text: MACHINE_PATH.findall(text)                     # noqa: E731
    assert found("data: x from /work/main/data/x: 5000") == ["/work/main/data/x"]
    assert found("--predict /tmp/fm0.png") == ["/tmp/fm0.png"]
    assert found("`/home/me/photos`") == ["/home/me/photos"]
    assert found("see https://github.com/zalandoresearch/fashion-mnist/data/x") == []
    assert found('<a id="x"></a> runs/data/x, docs/GPU.md, ~/.cache/a, 1/0, and / or') == []
    assert allowed_paths() == {"/usr/share/datasets/fashion-mnist"}


@pytest.mark.parametrize("doc", DOCS)
def test_no_machine_paths(doc):
    allowed = allowed_paths()
    bad = [f"{doc}:{i}: {p}" for i, line in enumerate(read(doc).splitlines(), 1)
           for p in MACHINE_PATH.findall(line)
           if p.rstrip(".,:;") not in allowed and not any(p.startswith(a + "/") for a in allowed)]
    assert not bad, "machine paths (write them relative to the repository): " + "; ".join(bad)


# ------------------------------------------------------------------ the picture
def test_the_readmes_picture_is_drawn_from_the_model(tmp_path, monkeypatch):
    """scripts/draw_network.py reads every block from AlexNet('paper'): the output
    shapes are the paper's (PAPER.md, Figure 2), and the committed picture is the size
    the script draws."""
    import importlib.util

    from PIL import Image

    from alexnet import AlexNet

    spec = importlib.util.spec_from_file_location(
        "draw_network", os.path.join(ROOT, "scripts", "draw_network.py"))
    draw = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "draw_network", draw)     # its dataclass looks itself up
    spec.loader.exec_module(draw)
    model = AlexNet("paper")
    in_shape, blocks = draw.blocks(model)
    assert in_shape == (3, 227, 227)
    assert [(b.name, b.shape) for b in blocks] == [
        ("conv1", (96, 27, 27)), ("conv2", (256, 13, 13)), ("conv3", (384, 13, 13)),
        ("conv4", (384, 13, 13)), ("conv5", (256, 6, 6)), ("fc6", (4096,)), ("fc7", (4096,)),
        ("fc8", (1000,))]
    assert [b.name for b in blocks if b.groups == 2] == ["conv2", "conv4", "conv5"]
    assert blocks[0].ops == ["ReLU", "LRN", "max-pool 3x3/2"]
    assert sum(b.params for b in blocks) == model.num_params() == 60_965_224
    out = tmp_path / "alexnet.png"
    draw.draw(model, str(out))
    committed = os.path.join(ROOT, draw.DEFAULT_OUT)
    assert f"]({draw.DEFAULT_OUT})" in read("README.md")
    with Image.open(out) as fresh, Image.open(committed) as kept:
        assert fresh.size == kept.size


@pytest.mark.parametrize("doc", DOCS)
def test_tests_a_doc_names_exist(doc):
    """A doc that says a promise is held by a test names a test that is there."""
    names = set(re.findall(r"`(test_\w+)`", read(doc)))
    suite = "".join(read(os.path.relpath(p, ROOT))
                    for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py")))
    missing = sorted(n for n in names if not re.search(rf"def {n}\(", suite))
    assert not missing, f"{doc} names tests that do not exist: {missing}"
