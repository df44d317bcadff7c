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

Each run gets one TensorFlow thread (two runs side by side on two cores do more work than one
run with two threads; the same thread count repeats a run bit for bit on one machine).
"""
import argparse
import contextlib
import fcntl
import glob
import itertools
import os
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

STUDY_DIR = os.path.join(ROOT, "studies")
RECORD_DIR = os.path.join(ROOT, "records")
WORK_DIR = os.path.join("results", "studies")
RECORD_FILES = ("config.json", "metrics.csv", "timing.json")
SCRIPTS = ("main1.py", "reference.py")
THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


class StudyError(Exception):
    """A study file that cannot be used: one line naming it."""


# ----------------------------------------------------------------------------- studies and records
def study_names():
    return sorted(os.path.splitext(os.path.basename(path))[0] for path in glob.glob(os.path.join(STUDY_DIR, "*.toml")))


def read_study(name):
    """{run name: argv (script first)} of studies/NAME.toml, in the file's order."""
    path = os.path.join(STUDY_DIR, f"{name}.toml")
    try:
        with open(path, "rb") as stream:
            study = tomllib.load(stream)
    except FileNotFoundError:
        raise StudyError(f"no study {name!r}: {path} does not exist (studies: {', '.join(study_names())})") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise StudyError(f"cannot read {path}: {error}") from None
    planned = {}
    for entry in study.get("run", []):
        if not isinstance(entry, dict) or not {"name", "command"} <= set(entry):
            raise StudyError(f"{path}: every [[run]] needs a name and a command")
        each = dict(entry.get("each", {}), **({"seed": entry["seeds"]} if "seeds" in entry else {}))
        for values in itertools.product(*each.values()):
            fill = dict(zip(each, values, strict=True))
            try:
                run_name, command = entry["name"].format(**fill), entry["command"].format(**fill)
            except KeyError as error:
                raise StudyError(f"{path}: run {entry['name']}: nothing gives {{{error.args[0]}}}") from None
            argv = shlex.split(command)
            if not argv or argv[0] not in SCRIPTS:
                raise StudyError(f"{path}: run {run_name}: the command must start with one of {', '.join(SCRIPTS)}")
            if "--out-dir" in argv:
                raise StudyError(f"{path}: run {run_name}: the study chooses --out-dir")
            if run_name in planned:
                raise StudyError(f"{path}: two runs are named {run_name}")
            planned[run_name] = argv
    if not planned:
        raise StudyError(f"{path} lists no runs")
    return planned


def record_dir(study, run):
    return os.path.join(RECORD_DIR, study, run)


def is_recorded(study, run):
    return all(os.path.isfile(os.path.join(record_dir(study, run), name)) for name in RECORD_FILES)


def work_dir(study, run, work_root=WORK_DIR):
    return os.path.join(work_root, study, run)


def keep_record(study, run, out_dir):
    """Copy the run's config.json, metrics.csv and timing.json into records/STUDY/RUN/, whole or
    not at all (a temporary folder renamed into place)."""
    target = record_dir(study, run)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    for name in RECORD_FILES:
        shutil.copyfile(os.path.join(out_dir, name), os.path.join(temporary, name))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(temporary, target)
    return target


# ----------------------------------------------------------------------------- one run
def target_steps(argv):
    """The --steps a command asks for (None: the script's or recipe's default)."""
    for i, word in enumerate(argv):
        if word in ("--steps", "--epochs") and i + 1 < len(argv):
            return int(argv[i + 1])
        if word.startswith(("--steps=", "--epochs=")):
            return int(word.split("=", 1)[1])
    return None


def progress_of(out_dir):
    """The latest complete checkpoint's iteration in a run's folder, or None."""
    if not os.path.isdir(out_dir):
        return None
    checkpoint = runs.latest_checkpoint(out_dir)
    return runs.checkpoint_step(checkpoint) if checkpoint else None


def finished(argv, out_dir):
    """Whether the run in out_dir ended (its record files are there and it reached its steps)."""
    if not all(os.path.isfile(os.path.join(out_dir, name)) for name in RECORD_FILES):
        return False
    steps, step = target_steps(argv), progress_of(out_dir)
    return steps is None or step is None or step >= steps


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


def run_studies(names, jobs, work_root):
    """Run every unrecorded run of the studies, `jobs` at a time -> exit code (0: all recorded)."""
    planned = [(study, run, argv) for study in names for run, argv in read_study(study).items()]
    total = len(planned)
    todo = [item for item in planned if not is_recorded(item[0], item[1])]
    done = total - len(todo)
    started, running, failed = time.time(), {}, []
    print(f"{done} of {total} runs recorded; {len(todo)} to run, {jobs} at a time "
          f"(work folders in {os.path.join(work_root, '')}, records in {os.path.relpath(RECORD_DIR)})", flush=True)
    stop = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: stop.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while (todo or running) and not stop:
            while todo and len(running) < jobs and not stop:
                study, run, argv = todo.pop(0)
                out_dir = work_dir(study, run, work_root)
                lock = Lock(out_dir + ".lock")
                if not lock.acquire():
                    print(f"  {study}/{run}: another runner has it; skipped")
                    lock.release()
                    continue
                if finished(argv, out_dir):  # it ended before its record was kept
                    print(f"  {study}/{run}: finished earlier; record kept in {keep_record(study, run, out_dir)}")
                    lock.release()
                    done += 1
                    continue
                command = command_for(argv, out_dir)
                log_path = out_dir + ".log"
                with open(log_path, "a") as log:
                    log.write(f"\n$ {shlex.join(command)}\n")
                    log.flush()
                    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                               env={**os.environ, **THREADS}, start_new_session=True)
                resumed = " (resumed)" if "--resume" in command else ""
                print(f"  {study}/{run}: started{resumed}, log {log_path}", flush=True)
                running[process] = (study, run, out_dir, lock, time.time())
            time.sleep(1)
            for process in [p for p in running if p.poll() is not None]:
                study, run, out_dir, lock, since = running.pop(process)
                lock.release()
                if process.returncode == 0:
                    done += 1
                    print(f"[{done}/{total} recorded, {clock(time.time() - started)}] {study}/{run} ended in "
                          f"{clock(time.time() - since)}; record in {keep_record(study, run, out_dir)}", flush=True)
                else:
                    failed.append(f"{study}/{run}")
                    print(f"[{done}/{total} recorded, {clock(time.time() - started)}] {study}/{run} failed with "
                          f"exit code {process.returncode}; see {out_dir}.log", flush=True)
    finally:
        for process in running:  # a stop: each run saves its checkpoint and says so in its log
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
        for process in running:
            process.wait()
            running[process][3].release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stop:
        print(f"stopped by {signal.Signals(stop[0]).name} after {clock(time.time() - started)}: {done} of {total} "
              f"runs recorded; the runs in progress continue from their checkpoints next time", file=sys.stderr)
        return 128 + stop[0]
    print(f"{done} of {total} runs recorded in {clock(time.time() - started)}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


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
            step = progress_of(work_dir(study, run, work_root))
            steps = target_steps(planned[run])
            where = f"at iteration {step} of {steps or 'the default'}" if step is not None else "not started"
            print(f"  missing {run}: {where}  ({shlex.join(planned[run])})")
    return 0 if complete else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the missing runs of studies and keep their records.")
    parser.add_argument("studies", nargs="*", metavar="STUDY", help="studies/STUDY.toml (default with --status: all)")
    parser.add_argument("--status", action="store_true", help="list what each study lacks; run nothing")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each; default %(default)s")
    parser.add_argument("--work-dir", default=WORK_DIR, help="where the runs work; default %(default)s")
    args = parser.parse_args(argv)
    try:
        names = args.studies or (study_names() if args.status else None)
        if not names:
            parser.error("name a study (or --status); studies: " + ", ".join(study_names()))
        for name in names:
            read_study(name)
        if args.jobs < 1:
            parser.error("--jobs must be at least 1")
        return status(names, args.work_dir) if args.status else run_studies(names, args.jobs, args.work_dir)
    except StudyError as error:
        print(f"study.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
