"""Run a study's missing runs and keep each one's record in the repository.

    python scripts/study.py --status              # every study: runs recorded, missing, in progress
    python scripts/study.py fast                  # run what the fast study lacks, two at a time
    python scripts/study.py fast recipes --jobs 1

A study is a file studies/NAME.toml that lists its runs, each a name and the command that makes
it; `seeds = [1, 2, 3]` makes one run per seed ({seed} in the name and command), and
`each = {lever = [...], seed = [...]}` one per combination. A run's record is records/NAME/RUN/ with the run's own
config.json, metrics.csv and timing.json (a few kilobytes), copied there the moment the run ends
with exit code 0. The runs themselves work in results/studies/NAME/RUN/ (git-ignored): a run
stopped part way (Ctrl-C, a closed session) continues from its latest checkpoint the next time,
so a campaign advances across sittings and machines and loses at most the runs in progress.
Each run is locked while it runs, so a second runner on the same study skips it. A run that fails
keeps no record (the line names its log); the others go on. Exit code: 0 when every run is
recorded, 1 when some are not, 2 for a study that cannot be used, 130/143 after Ctrl-C or SIGTERM
(each run in progress saves its checkpoint first).

Each run gets one TensorFlow thread (two runs side by side on two cores do more work than one
run with two threads; the same thread count repeats a run bit for bit on one machine).
"""
import argparse
import contextlib
import fcntl
import glob
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import runs  # noqa: E402 (after the path that finds it)
from config import RECIPES, RunConfig, recipe_value  # noqa: E402

STUDY_DIR = os.path.join(ROOT, "studies")
RECORD_DIR = os.path.join(ROOT, "records")
WORK_DIR = os.path.join("results", "studies")
RECORD_FILES = ("config.json", "metrics.csv", "timing.json")
SCRIPTS = ("main1.py", "reference.py")
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a study's or a run's: a folder name, never a path
THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


class StudyError(Exception):
    """A study file that cannot be used: one line naming it."""


# ----------------------------------------------------------------------------- studies and records
def study_names():
    return sorted(os.path.splitext(os.path.basename(path))[0] for path in glob.glob(os.path.join(STUDY_DIR, "*.toml")))


def read_study(name):
    """{run name: argv (script first)} of studies/NAME.toml, in the file's order."""
    if not PLAIN_NAME.fullmatch(name) or name.endswith(".toml"):
        raise StudyError(f"{name!r} is not a study: name a file of {os.path.relpath(STUDY_DIR)}/ without "
                         f".toml (studies: {', '.join(study_names())})")
    path = os.path.join(STUDY_DIR, f"{name}.toml")
    try:
        with open(path, "rb") as stream:
            study = tomllib.load(stream)
    except FileNotFoundError:
        raise StudyError(f"no study {name!r}: {path} does not exist (studies: {', '.join(study_names())})") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise StudyError(f"cannot read {path}: {error}") from None
    entries = study.get("run", [])
    if not isinstance(entries, list):
        raise StudyError(f"{path}: runs are listed as [[run]] tables, each with a name and a command")
    planned = {}
    for entry in entries:
        for run_name, argv in expand_run(entry, path):
            if run_name in planned:
                raise StudyError(f"{path}: two runs are named {run_name}")
            planned[run_name] = argv
    if not planned:
        raise StudyError(f"{path} lists no runs")
    return planned


def expand_run(entry, path):
    """One [[run]] table -> (run name, argv) for each of its seeds or combinations; StudyError naming
    the run and what is wrong with it."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("name", "command")):
        raise StudyError(f"{path}: every [[run]] needs a name and a command (both strings)")
    each, seeds = entry.get("each", {}), {"seed": entry["seeds"]} if "seeds" in entry else {}
    if not isinstance(each, dict) or not all(isinstance(values, list) for values in [*each.values(), *seeds.values()]):
        raise StudyError(f"{path}: run {entry['name']}: seeds is a list and each a table of lists, "
                         f"as seeds = [1, 2] or each = {{lever = [\"hinge\", \"ttur\"]}}")
    each = {**each, **seeds}
    for values in itertools.product(*each.values()):
        fill = dict(zip(each, values, strict=True))
        try:
            run_name, argv = entry["name"].format(**fill), shlex.split(entry["command"].format(**fill))
        except KeyError as error:
            raise StudyError(f"{path}: run {entry['name']}: nothing gives {{{error.args[0]}}}") from None
        except (IndexError, ValueError) as error:  # "{0}", a lone "{", an unclosed quote
            raise StudyError(f"{path}: run {entry['name']}: {error}") from None
        check_run(run_name, argv, path)
        yield run_name, argv


def check_run(run_name, argv, path):
    """StudyError when a run's name is not a folder name or its command cannot make a record."""
    if not PLAIN_NAME.fullmatch(run_name):
        raise StudyError(f"{path}: run {run_name!r}: a run's name is its folder's: letters, digits, '.', '-', '_'")
    if not argv or argv[0] not in SCRIPTS:
        raise StudyError(f"{path}: run {run_name}: the command must start with one of {', '.join(SCRIPTS)}")
    if any(word.partition("=")[0] == "--out-dir" for word in argv):
        raise StudyError(f"{path}: run {run_name}: the study chooses --out-dir")
    if option_value(argv, "--eval-every") == "0":
        raise StudyError(f"{path}: run {run_name}: --eval-every 0 writes no metrics.csv, so leaves nothing to record")
    try:
        target_steps(argv)
    except ValueError:
        raise StudyError(f"{path}: run {run_name}: --steps and --epochs take a whole number") from None


def record_dir(study, run):
    return os.path.join(RECORD_DIR, study, run)


def missing_files(folder):
    """The record files the folder lacks (an empty one is as good as missing: a copy cut short)."""
    return [name for name in RECORD_FILES for path in [os.path.join(folder, name)]
            if not os.path.isfile(path) or os.path.getsize(path) == 0]


def is_recorded(study, run):
    return not missing_files(record_dir(study, run))


def work_dir(study, run, work_root=WORK_DIR):
    return os.path.join(work_root, study, run)


def keep_record(study, run, out_dir):
    """Copy the run's config.json, metrics.csv and timing.json into records/STUDY/RUN/, whole or
    not at all: a temporary folder renamed into place, the earlier record (if any) set aside until
    then and put back if anything fails. StudyError saying what was kept."""
    target = record_dir(study, run)
    temporary, earlier = f"{target}.tmp-{os.getpid()}", f"{target}.old-{os.getpid()}"
    if missing_files(out_dir):
        raise StudyError(f"{out_dir} has no {' or '.join(missing_files(out_dir))}: no record kept")
    try:
        shutil.rmtree(temporary, ignore_errors=True)
        os.makedirs(temporary)
        for name in RECORD_FILES:
            shutil.copyfile(os.path.join(out_dir, name), os.path.join(temporary, name))
        if os.path.exists(target):
            os.rename(target, earlier)
        os.rename(temporary, target)
    except OSError as error:
        if os.path.exists(earlier) and not os.path.exists(target):
            os.rename(earlier, target)
        shutil.rmtree(temporary, ignore_errors=True)
        kept = "the earlier record there is as it was" if os.path.exists(target) else "no record is kept"
        raise StudyError(f"cannot write its record in {target} ({error.strerror or error}); "
                         f"{kept}, the run's own files stay in {out_dir}") from None
    shutil.rmtree(earlier, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- one run
def option_value(argv, *flags):
    """The value the last of `flags` has in argv (--flag V or --flag=V), as argparse reads it; or None."""
    value = None
    for i, word in enumerate(argv):
        flag, equals, rest = word.partition("=")
        if flag in flags:
            value = rest if equals else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def target_steps(argv):
    """The --steps a command asks for, else its recipe's today (main1.py); None: the script's default."""
    value = option_value(argv, "--steps", "--epochs")
    if value is not None:
        return int(value)
    recipe = option_value(argv, "--recipe") or RunConfig.recipe  # the declared default recipe
    return recipe_value(recipe, "steps") if argv[0] == "main1.py" and recipe in RECIPES else None


def progress_of(out_dir):
    """The latest complete checkpoint's iteration in a run's folder, or None."""
    if not os.path.isdir(out_dir):
        return None
    checkpoint = runs.latest_checkpoint(out_dir)
    return runs.checkpoint_step(checkpoint) if checkpoint else None


def finished(argv, out_dir):
    """Whether the run in out_dir ended: its record files are there and its latest checkpoint is at
    the steps it was asked for (a folder of files with no checkpoint is not a run that ended)."""
    if missing_files(out_dir):
        return False
    step, steps = progress_of(out_dir), target_steps(argv) or stored_steps(out_dir)
    return step is not None and steps is not None and step >= steps


def stored_steps(out_dir):
    """The steps the run in out_dir stored in its config.json (the script's or recipe's default), or None."""
    try:
        with open(os.path.join(out_dir, "config.json")) as stream:
            steps = json.load(stream).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def command_for(argv, out_dir):
    """The command line that makes or continues the run in out_dir."""
    command = [sys.executable, *argv, "--out-dir", out_dir]
    if argv[0] == "main1.py" and os.path.isdir(out_dir):
        command.append("--resume" if progress_of(out_dir) is not None else "--overwrite")
    elif argv[0] == "reference.py" and progress_of(out_dir) is not None:
        command.append("--resume")
    return command


class Lock:
    """An exclusive lock on one run of a study, so that two runners never run it twice."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.stream = open(path, "a")  # noqa: SIM115 (held for the run's life, closed by release)

    def acquire(self):
        try:
            fcntl.flock(self.stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self):
        self.stream.close()


# ----------------------------------------------------------------------------- the runner
def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def last_line(log_path):
    """The last line of a log that says something (a failed run's error, as a rule)."""
    try:
        with open(log_path, "rb") as stream:
            stream.seek(max(0, os.path.getsize(log_path) - 4096))
            lines = stream.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def claim(study, run, argv, out_dir):
    """Take the run's lock and start it -> ("started", process, lock), or ("recorded" | "busy" |
    "failed", None, None): recorded by another runner meanwhile or its record kept just now,
    another runner has it, or it cannot start (the line printed says why)."""
    lock = Lock(out_dir + ".lock")
    if not lock.acquire():
        print(f"  {study}/{run}: another runner has it; skipped", flush=True)
        lock.release()
        return "busy", None, None
    try:
        process = None if is_recorded(study, run) else start(study, run, argv, out_dir)
    except (StudyError, runs.UsageError) as error:
        print(f"  {study}/{run}: {error}", flush=True)
        lock.release()
        return "failed", None, None
    if process is None:
        lock.release()
        return "recorded", None, None
    return "started", process, lock


def start(study, run, argv, out_dir):
    """Start the run (its lock held) -> its process, or None when it had ended before its record
    was kept (kept now). StudyError or runs.UsageError: it cannot start."""
    step, steps = progress_of(out_dir), target_steps(argv)
    if step is not None and steps is not None and step > steps:
        raise StudyError(f"its work folder {out_dir} holds iteration {step}, past the {steps} its command asks "
                         "for today (a recipe's length changed?): remove that folder to run it again")
    if finished(argv, out_dir):
        print(f"  {study}/{run}: finished earlier; record kept in {keep_record(study, run, out_dir)}", flush=True)
        return None
    command = command_for(argv, out_dir)
    with open(out_dir + ".log", "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **THREADS}, start_new_session=True)
    resumed = " (resumed)" if "--resume" in command else ""
    print(f"  {study}/{run}: started{resumed}, log {out_dir}.log", flush=True)
    return process


def ended(process, study, run, out_dir, since):
    """What became of a run whose process ended -> (a line, whether its record is kept)."""
    if process.returncode != 0:
        why = last_line(out_dir + ".log")
        return (f"{study}/{run} failed with exit code {process.returncode}{f' ({why})' if why else ''}; "
                f"no record kept; log {out_dir}.log"), False
    try:
        record = keep_record(study, run, out_dir)
    except StudyError as error:
        return f"{study}/{run} ended, but {error}", False
    return f"{study}/{run} ended in {clock(time.time() - since)}; record in {record}", True


def stop_runs(running):
    """A stop: each run saves its checkpoint (SIGINT, as Ctrl-C would) -> how many ended all the
    same, their records kept."""
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
    recorded = 0
    for process, (study, run, out_dir, lock, since) in running.items():
        process.wait()
        if process.returncode == 0:
            line, kept = ended(process, study, run, out_dir, since)
            recorded += kept
            print(f"  {line}", flush=True)
        lock.release()
    return recorded


def run_studies(names, jobs, work_root):
    """Run every unrecorded run of the studies, `jobs` at a time -> exit code (0: all recorded)."""
    planned = [(study, run, argv) for study in names for run, argv in read_study(study).items()]
    total = len(planned)
    todo = [item for item in planned if not is_recorded(item[0], item[1])]
    done, running, left, stop, began = total - len(todo), {}, {"failed": [], "busy": []}, [], time.time()
    print(f"{done} of {total} runs recorded; {len(todo)} to run, {jobs} at a time "
          f"(work folders in {os.path.join(work_root, '')}, records in {os.path.relpath(RECORD_DIR)})", flush=True)
    previous = {signum: signal.signal(signum, lambda signum, _frame: stop.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (todo or running) and not stop:
            while todo and len(running) < jobs and not stop:
                study, run, argv = todo.pop(0)
                out_dir = work_dir(study, run, work_root)
                outcome, process, lock = claim(study, run, argv, out_dir)
                if process:
                    running[process] = (study, run, out_dir, lock, time.time())
                elif outcome == "recorded":
                    done += 1
                else:
                    left[outcome].append(f"{study}/{run}")
            time.sleep(1)
            for process in [p for p in running if p.poll() is not None]:
                study, run, out_dir, lock, since = running.pop(process)
                line, kept = ended(process, study, run, out_dir, since)
                lock.release()  # after the record is kept: another runner then finds it recorded
                done += kept
                left["failed"] += [] if kept else [f"{study}/{run}"]
                print(f"[{done}/{total} recorded, {clock(time.time() - began)}] {line}", flush=True)
    finally:
        done += stop_runs(running)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop:
        print(f"study.py: stopped by {signal.Signals(stop[0]).name} after {clock(time.time() - began)}: {done} of "
              f"{total} runs recorded; the runs in progress continue from their checkpoints next time", file=sys.stderr)
        return 128 + stop[0]
    print(f"{done} of {total} runs recorded in {clock(time.time() - began)}"
          + (f"; failed: {', '.join(left['failed'])} (see above)" if left["failed"] else "")
          + (f"; another runner has: {', '.join(left['busy'])}" if left["busy"] else ""))
    return 0 if done == total else 1


def status(names, work_root):
    """One block per study: recorded runs, and each missing one with how far its work folder got."""
    complete = True
    for study in names:
        planned = read_study(study)
        missing = [run for run in planned if not is_recorded(study, run)]
        complete &= not missing
        print(f"{study}: {len(planned) - len(missing)} of {len(planned)} runs recorded"
              + ("" if missing else " (complete)"))
        for run in missing:
            try:
                where = progress_line(planned[run], work_dir(study, run, work_root))
            except runs.UsageError as error:  # a damaged checkpoint index
                where = str(error)
            print(f"  missing {run}: {where}  ({shlex.join(planned[run])})")
    return 0 if complete else 1


def progress_line(argv, out_dir):
    """How far the run in out_dir got, in words."""
    step = progress_of(out_dir)
    if step is None:
        return "not started"
    if finished(argv, out_dir):
        return f"ended at iteration {step}; its record is kept when the study runs next"
    return f"at iteration {step} of {target_steps(argv) or stored_steps(out_dir) or 'the default'}"


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number at least 1, not {text!r}")
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the missing runs of studies and keep their records.")
    parser.add_argument("studies", nargs="*", metavar="STUDY", help="studies/STUDY.toml (default with --status: all)")
    parser.add_argument("--status", action="store_true", help="list what each study lacks; run nothing")
    parser.add_argument("--jobs", type=positive_int, default=2,
                        help="runs at a time, one thread each; default %(default)s")
    parser.add_argument("--work-dir", default=WORK_DIR, help="where the runs work; default %(default)s")
    args = parser.parse_args(argv)
    try:
        names = args.studies or (study_names() if args.status else None)
        if not names:
            parser.error("name a study (or --status); studies: " + ", ".join(study_names()))
        for name in names:
            read_study(name)
        return status(names, args.work_dir) if args.status else run_studies(names, args.jobs, args.work_dir)
    except (StudyError, runs.UsageError, OSError) as error:
        print(f"study.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the runner took SIGINT over: nothing had started
        print("study.py: stopped by SIGINT; nothing was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
