"""The README is a front page and the rest lives under docs/: the pages exist, link to each other
correctly (files and #anchors, as GitHub names them), and every page is in the mkdocs nav."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (the Markdown of the heading line, after the #s)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [a or b for a, b in LINK.findall(text)]


def test_slug_follows_github():
    assert slug("Statistics (`bench_stats.py`)") == "statistics-bench_statspy"
    assert slug("IG-CBIR (papers 001/003) in practice") == "ig-cbir-papers-001003-in-practice"
    assert slug("The papers' methods") == "the-papers-methods"


def test_readme_is_a_front_page_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert re.search(r"^make demo +# ", readme, re.M) and re.search(r"^make test +# ", readme, re.M)
    shots = re.findall(r"!\[[^\]]+\]\((docs/img/[^)]+\.png)\)", readme)
    assert shots, "the front page shows a screenshot"
    for shot in shots:
        assert (ROOT / shot).stat().st_size < 300_000, f"{shot} is over 300 KB"
    linked = {Path(t.split("#")[0]).name for t in links(ROOT / "README.md") if t.startswith("docs/")}
    missing = {p.name for p in PAGES} - linked - {"index.md"}
    assert not missing, f"README's 'where to read on' does not link {sorted(missing)}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: link to missing {target}"
        if anchor:
            assert anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


def test_every_page_is_in_the_mkdocs_nav():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r":\s*([\w./-]+\.md)\s*$", config, re.M))
    assert {p.name for p in PAGES} == nav
