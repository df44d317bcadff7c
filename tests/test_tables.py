"""scripts/tables.py on pages a user got wrong: each mistake is one line naming the page, the line
and what was expected, the page is left as it was, and --check names a stale page."""
import os
import shutil

import pytest
from conftest import ROOT, script

tables = script("tables")
COMPARE = "<!-- table: evaluate.py --compare records/fast/fast-mnist-s? --at 1000 --markdown -->"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A root with the pages tables.py reads (README.md, README.ja.md, docs/) and one fast record."""
    source = os.path.join(ROOT, "records", "fast-screen", "mnist-hinge-s1")  # a committed record
    shutil.copytree(source, tmp_path / "records" / "fast" / "fast-mnist-s1")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.ja.md").write_text("")
    monkeypatch.setattr(tables, "ROOT", str(tmp_path))
    return tmp_path


def refused(site, capsys, page, expected):
    """tables.py refuses the page in one line that says `expected`, and leaves it as it was."""
    (site / "README.md").write_text(page)
    assert tables.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tables.py: error: README.md") and expected in err and err.count("\n") == 1, err
    assert (site / "README.md").read_text() == page


@pytest.mark.parametrize(("page", "expected"), [
    (f"intro\n{COMPARE}\nold table\n", "line 2: the table has no `<!-- end table -->` after it"),
    (f"{COMPARE}\nold table\n{COMPARE}\n<!-- end table -->\n",  # the first table would swallow the second
     "line 1: the table has no `<!-- end table -->` before the next marker, on line 3"),
    ("text\n<!-- end table -->\n", "line 2: `<!-- end table -->` with no `<!-- table: COMMAND -->` before it"),
    ("<!-- table:  -->\n<!-- end table -->\n", "line 1: a table's marker is `<!-- table: COMMAND -->`"),
    (f"{COMPARE}\n<!-- end table --> \n", "line 2: a table ends with `<!-- end table -->` on a line of its own"),
    ("\n<!-- table: main1.py --steps 3 -->\n<!-- end table -->\n",
     "line 2: 'main1.py --steps 3': a table comes from one of evaluate.py, bench.py"),
    ("<!-- table: evaluate.py --compare 'records/fast -->\n<!-- end table -->\n", "No closing quotation"),
    ("<!-- table: bench.py --table --bogus -->\n<!-- end table -->\n",  # argparse's exit, not a silent 2
     "'bench.py --table --bogus' failed: "),
])
def test_a_page_with_a_broken_marker_is_one_line_and_left_as_it_was(site, capsys, page, expected):
    refused(site, capsys, page, expected)


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda metrics: metrics.write_text(""), "records/fast/fast-mnist-s1/metrics.csv holds no evaluations"),
    (lambda metrics: metrics.write_text(metrics.read_text().replace("digits sha256:", "digits sha256:0", 1)),
     "records/fast/fast-mnist-s1/metrics.csv mixes instruments"),
])
def test_a_record_the_command_cannot_use_is_one_line_naming_it(site, capsys, damage, expected):
    damage(site / "records" / "fast" / "fast-mnist-s1" / "metrics.csv")
    refused(site, capsys, f"{COMPARE}\n<!-- end table -->\n", expected)


def test_check_names_a_stale_page_and_changes_nothing(site, capsys):
    (site / "README.md").write_text(f"{COMPARE}\n<!-- end table -->\n")
    assert tables.main([]) == 0
    made = (site / "README.md").read_text()
    stale = made.replace("| averaged | 1,000 |", "| averaged | 9,999 |")
    assert stale != made
    (site / "docs" / "page.md").write_text(stale)
    capsys.readouterr()
    assert tables.main(["--check"]) == 1
    assert "differ from their records in docs/page.md (python scripts/tables.py rewrites them)" in \
        capsys.readouterr().err
    assert (site / "docs" / "page.md").read_text() == stale


def test_a_page_that_cannot_be_written_is_one_line_and_left_as_it_was(site, capsys):
    (site / "README.md.tmp").mkdir()  # where the new page would go first: not writable as a file
    refused(site, capsys, f"{COMPARE}\n<!-- end table -->\n", "README.md cannot be written (Is a directory); "
                                                               "it is as it was")


def test_a_missing_or_unreadable_page_is_one_line(site, capsys):
    (site / "README.md").write_bytes(b"\xff\xfe")
    assert tables.main([]) == 2
    assert capsys.readouterr().err.startswith("tables.py: error: cannot read README.md ('utf-8' codec")
    os.remove(site / "README.md")
    assert tables.main([]) == 2
    assert capsys.readouterr().err == "tables.py: error: cannot read README.md (No such file or directory)\n"


def test_a_missing_first_folder_of_compare_leaves_the_option_and_the_others():
    """--compare A B with A not recorded yet: the table of B, and A named as missing (the option
    itself stays; only an option of one file, --bench, goes with its missing file)."""
    arguments, missing = tables.expand(["--compare", "records/nowhere/run-s1", "records/fast-screen/mnist-hinge-s1",
                                        "--at", "5000", "--bench", "records/bench/nowhere.json"])
    assert arguments == ["--compare", "records/fast-screen/mnist-hinge-s1", "--at", "5000"]
    assert missing == ["records/nowhere/run-s1", "records/bench/nowhere.json"]
