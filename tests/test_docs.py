"""The Markdown files: every relative link and image resolves, anchors included, and the README
stays a short guide."""
import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")  # inline code: what looks like a link there is not one


def anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def links(path):
    text = CODE.sub("", FENCE.sub("", path.read_text()))
    return [a or b for a, b in LINK.findall(text)]


def test_the_docs_are_found():
    assert {p.name for p in MARKDOWN} >= {"README.md", "recipes.md", "datasets.md", "evaluation.md"}


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.name)
def test_every_relative_link_and_image_resolves(path):
    broken = []
    for target in links(path):
        if urllib.parse.urlparse(target).scheme in ("http", "https", "mailto"):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / urllib.parse.unquote(file_part)).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{path.name}: " + "; ".join(broken)


def test_every_committed_image_is_shown_somewhere():
    shown = {(path.parent / target).resolve() for path in MARKDOWN for target in links(path)}
    unused = [image.name for image in (ROOT / "docs" / "images").iterdir() if image.resolve() not in shown]
    assert not unused, f"images no page shows: {unused}"


def test_the_readme_leads():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for command in ("pip install -r requirements.txt", "python main1.py", "python -m pytest"):
        assert command in readme
    for doc in MARKDOWN[1:]:  # every study is reachable from the README
        assert f"docs/{doc.name}" in readme, doc.name


def test_the_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](missing.md) ![pic](images/none.png) `f[0](x)`\n"
                    "```\n[in code](x.md)\n```\n")
    assert links(page) == ["#top", "missing.md", "images/none.png"]
    assert anchors(page) == {"top"}
