"""Rewrite every generated table of README.md and docs/*.md from the records it names.

    python scripts/tables.py            # rewrite the tables in place
    python scripts/tables.py --check    # change nothing; exit 1 naming each table that differs

A generated table sits between two markers that say how it is made:

    <!-- table: evaluate.py --compare records/fast/fast-mnist-s? --at 2000 5000 --markdown -->
    ... (everything here is replaced) ...
    <!-- end table -->

The command is one of the project's table commands (evaluate.py --compare, which reads only the
records' metrics.csv and config.json; bench.py --table and scripts/explore_load.py --table, which
read their own records), run in this
process with its file patterns expanded from the repository's root. A pattern that matches no
record leaves a line that says which study makes it.
"""
import argparse
import contextlib
import glob
import io
import os
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/, for explore_load

import explore_load  # noqa: E402

import bench  # noqa: E402 (after the paths that find them)
import evaluate  # noqa: E402

MARKER = re.compile(r"^<!-- table: (?P<command>.+?) -->\n(?P<body>.*?)^<!-- end table -->$", re.M | re.S)
COMMANDS = {"evaluate.py": evaluate.main, "bench.py": bench.main, "scripts/explore_load.py": explore_load.main}
# Records made by a measuring command rather than by a study: records/NAME/... -> that command.
MEASURED_BY = {"bench": "python bench.py --batches 32 --rows-only --record records/bench/NAME.json",
               "explore": "python scripts/explore_load.py --out-dir RUN --record records/explore/NAME.json"}


class TableError(Exception):
    """A marker whose command cannot make its table: one line naming the page and the command."""


def documents():
    return [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "README.ja.md"),
            *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


def expand(argv):
    """Patterns among the arguments -> the matching paths (relative to the root), sorted. A pattern
    that matches nothing, or an option's record file that does not exist yet, is left out (the
    option with it) and named among the missing."""
    expanded, missing = [], []
    for word in argv:
        if word.startswith("records/") and any(character in word for character in "*?["):
            matches = sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, word)))
            expanded += matches
            if not matches:
                missing.append(word)
        elif word.startswith("records/") and not os.path.exists(os.path.join(ROOT, word)):
            missing.append(word)
            if expanded and expanded[-1].startswith("--"):
                expanded.pop()  # the option whose file this was
        else:
            expanded.append(word)
    return expanded, missing


def missing_note(missing):
    """One line: which records are missing, and the commands that make them."""
    folders = sorted({pattern.split("/")[1] for pattern in missing})
    studies = [folder for folder in folders if folder not in MEASURED_BY]
    makers = ([f"`python scripts/study.py {' '.join(studies)}`"] if studies else []) + \
        [f"`{MEASURED_BY[folder]}`" for folder in folders if folder in MEASURED_BY]
    return (f"_No record matches {', '.join(missing)} yet: {' and '.join(makers)} "
            f"{'make' if len(makers) > 1 else 'makes'} them._\n")


def make_table(command):
    """The Markdown a marker's command prints, from the records there are, and a line naming those
    still missing."""
    argv = shlex.split(command)
    if not argv or argv[0] not in COMMANDS:
        raise TableError(f"'{command}': a table comes from one of {', '.join(COMMANDS)}")
    arguments, missing = expand(argv[1:])
    patterns = [word for word in argv[1:] if word.startswith("records/") and "/bench/" not in word]
    if patterns and all(pattern in missing for pattern in patterns) or (
            not patterns and missing):  # nothing to make the table from yet
        return missing_note(missing)
    printed, errors = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            code = COMMANDS[argv[0]](arguments)
    finally:
        os.chdir(cwd)
    if code:
        raise TableError(f"'{command}' failed: {errors.getvalue().strip() or f'exit code {code}'}")
    table = printed.getvalue().rstrip("\n") + "\n"
    return table + ("\n" + missing_note(missing) if missing else "")


def regenerate(text):
    """The page's text with every generated table made again."""
    return MARKER.sub(lambda match: f"<!-- table: {match['command']} -->\n{make_table(match['command'])}"
                                    f"<!-- end table -->", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Rewrite the generated tables of the docs from their records.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args(argv)
    stale = []
    try:
        for path in documents():
            with open(path) as stream:
                text = stream.read()
            new = regenerate(text)
            if new == text:
                continue
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path + ".tmp", "w") as stream:
                    stream.write(new)
                os.replace(path + ".tmp", path)
    except TableError as error:
        print(f"tables.py: error: {path}: {error}", file=sys.stderr)
        return 2
    if args.check and stale:
        print(f"tables.py: generated tables differ from their records in {', '.join(stale)} "
              f"(python scripts/tables.py rewrites them)", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "every generated table matches its records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
