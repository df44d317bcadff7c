"""The Markdown files: every relative link and image resolves, anchors included, and the README
stays a short guide."""
import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = sorted([ROOT / "README.md", ROOT / "README.ja.md", *(ROOT / "docs").glob("*.md")])
DOCS = sorted((ROOT / "docs").glob("*.md"))
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
    for doc in DOCS:  # every study is reachable from the README
        assert f"docs/{doc.name}" in readme, doc.name


def test_the_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](missing.md) ![pic](images/none.png) `f[0](x)`\n"
                    "```\n[in code](x.md)\n```\n")
    assert links(page) == ["#top", "missing.md", "images/none.png"]
    assert anchors(page) == {"top"}


def readme_flag_rows(name="README.md"):
    """{flag: (default cell, meaning cell)} of a README's flag table, by each row's first flag."""
    rows = {}
    for line in (ROOT / name).read_text().splitlines():
        match = re.match(r"^\| `(--[a-z0-9-]+)[^|]*\|\s*([^|]*?)\s*\| (.*) \|$", line)
        if match:
            rows[match[1]] = (match[2].strip(), match[3])
    return rows


def test_the_readme_flag_table_says_the_codes_defaults():
    import main1
    from config import RECIPE_FIELDS, RunConfig

    rows = readme_flag_rows()
    dests = {names[0]: options["dest"] for names, options in main1.FLAGS + main1.RUN_MODES}
    assert set(dests) - set(rows) <= {"--channels", "--no-bf16", "--no-joint-discriminator-call", "--port",
                                      "--no-stop-on-collapse", "--no-relativistic"}, \
        sorted(set(dests) - set(rows))
    recipe_fields = set(RECIPE_FIELDS) & set(dests.values())
    defaults = RunConfig()
    checked = 0
    for flag, (cell, _) in rows.items():
        dest = dests.get(flag)
        if dest in recipe_fields:  # every recipe's value, as --help says it
            expected = main1.recipe_defaults(dest)
            assert cell == expected, f"README {flag}: {cell!r}, the code: {expected!r}"
            checked += 1
        elif dest not in (None, "out_dir") and getattr(defaults, dest, None) not in (None, False, ()):
            value = getattr(defaults, dest)
            assert str(value) in cell.replace("`", ""), f"README {flag}: {cell!r}, the code's default is {value!r}"
            checked += 1
    assert checked >= 20


def _commands(text):
    """The shell commands a README shows: lines of its code blocks, and inline code that runs python."""
    blocks = [line.strip() for block in re.findall(r"^```\w*\n(.*?)^```", text, re.M | re.S)
              for line in block.splitlines() if line.strip()]
    inline = [span for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", text)) if span.startswith("python ")]
    return set(blocks) | set(inline)


def test_the_two_readmes_say_the_same_commands_flags_and_figures():
    english, japanese = (ROOT / "README.md").read_text(), (ROOT / "README.ja.md").read_text()
    assert "(README.ja.md)" in "\n".join(english.splitlines()[:4])  # each links the other at its top
    assert "(README.md)" in "\n".join(japanese.splitlines()[:4])
    missing = _commands(english) ^ _commands(japanese)
    assert not missing, f"commands in one README only: {sorted(missing)}"
    flags_en, flags_ja = readme_flag_rows(), readme_flag_rows("README.ja.md")
    assert list(flags_en) == list(flags_ja)
    assert {flag: cells[0] for flag, cells in flags_en.items()} == {flag: cells[0] for flag, cells in flags_ja.items()}
    tables = re.compile(r"^<!-- table: .+? -->\n.*?^<!-- end table -->$", re.M | re.S)
    assert tables.findall(english) == tables.findall(japanese)  # the same generated tables, figures and all
    images = re.compile(r"docs/images/[\w.-]+")
    assert set(images.findall(english)) == set(images.findall(japanese))  # the same pictures
