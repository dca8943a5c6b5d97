"""The project's Markdown documents link to files that exist, and to sections that exist
in them (a heading's anchor as GitHub makes it, or an explicit <a id="...">)."""
import glob
import os
import re

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
