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
record leaves a line that says which study makes it. A marker without its end (or an end without
its marker), a command that is not a table command or that fails, and a page that cannot be
written are one line naming the page and the marker's line (exit code 2); the page is left as it was.
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
START, END = re.compile(r"<!-- table: \S.*? -->"), "<!-- end table -->"  # each on a line of its own
COMMANDS = {"evaluate.py": evaluate.main, "bench.py": bench.main, "scripts/explore_load.py": explore_load.main}
# Records made by a measuring command rather than by a study: records/NAME/... -> that command.
MEASURED_BY = {"bench": "python bench.py --batches 32 --rows-only --record records/bench/NAME.json",
               "explore": "python scripts/explore_load.py --out-dir RUN --record records/explore/NAME.json"}


class TableError(Exception):
    """A marker whose command cannot make its table: one line naming the page and the command."""


def documents():
    return [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "README.ja.md"),
            *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]


FILE_OPTIONS = ("--bench",)  # options followed by one record file (--compare takes several folders)


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
            if expanded and expanded[-1] in FILE_OPTIONS:
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
    try:
        argv = shlex.split(command)
    except ValueError as error:  # an unclosed quote
        raise TableError(f"'{command}': {error}") from None
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
    except SystemExit as exit:  # argparse's refusal of a flag: its message is in `errors`
        code = exit.code
    finally:
        os.chdir(cwd)
    if code:  # the command's last line says why (argparse's usage lines come before it)
        raise TableError(f"'{command}' failed: {(errors.getvalue().strip().splitlines() or [f'exit code {code}'])[-1]}")
    table = printed.getvalue().rstrip("\n") + "\n"
    return table + ("\n" + missing_note(missing) if missing else "")


def check_markers(text):
    """TableError naming the line of a marker that is not `<!-- table: COMMAND -->` or
    `<!-- end table -->`, or that has no partner: a table's body never holds another marker."""
    opened = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- table"):
            if not START.fullmatch(line):
                raise TableError(f"line {number}: a table's marker is `<!-- table: COMMAND -->` on a line of its own")
            if opened:
                raise TableError(f"line {opened}: the table has no `{END}` before the next marker, on line {number}")
            opened = number
        elif line.startswith("<!-- end table"):
            if line != END:
                raise TableError(f"line {number}: a table ends with `{END}` on a line of its own")
            if not opened:
                raise TableError(f"line {number}: `{END}` with no `<!-- table: COMMAND -->` before it")
            opened = None
    if opened:
        raise TableError(f"line {opened}: the table has no `{END}` after it")


def regenerate(text):
    """The page's text with every generated table made again."""
    check_markers(text)

    def table(match):
        try:
            return f"<!-- table: {match['command']} -->\n{make_table(match['command'])}{END}"
        except TableError as error:
            line = text.count("\n", 0, match.start()) + 1
            raise TableError(f"line {line}: {error}") from None
    return MARKER.sub(table, text)


def rewrite(path, text):
    """Replace the page with `text` whole (a temporary file renamed over it), or leave it as it was."""
    try:
        with open(path + ".tmp", "w") as stream:
            stream.write(text)
        os.replace(path + ".tmp", path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(path + ".tmp")
        raise TableError(f"cannot be written ({error.strerror or error}); it is as it was") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Rewrite the generated tables of the docs from their records.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        page = os.path.relpath(path, ROOT)
        try:
            with open(path) as stream:
                text = stream.read()
            new = regenerate(text)
            if new != text and not args.check:
                rewrite(path, new)
        except (OSError, UnicodeError) as error:
            print(f"tables.py: error: cannot read {page} ({getattr(error, 'strerror', None) or error})",
                  file=sys.stderr)
            return 2
        except TableError as error:
            print(f"tables.py: error: {page} {error}", file=sys.stderr)
            return 2
        stale += [page] if new != text else []
    if args.check and stale:
        print(f"tables.py: generated tables differ from their records in {', '.join(stale)} "
              f"(python scripts/tables.py rewrites them)", file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(stale)) if stale else "every generated table matches its records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
