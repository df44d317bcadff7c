"""Studies, their records and the tables made from them: every record says what its study's
command runs today, on the committed instrument, and every generated table is what its records
make."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, script, tmpfs

import classifier
import main1
import reference
from config import DEFINES_RUN, MAY_CHANGE, RunConfig

study = script("study")
tables = script("tables")
make_instruments = script("make_instruments")
RECORDS = [(name, run, argv) for name in study.study_names() for run, argv in study.read_study(name).items()
           if study.is_recorded(name, run)]


def test_every_study_reads_and_every_command_parses():
    names = study.study_names()
    assert {"fast", "reference", "recipes"} <= set(names)
    for name in names:
        for run, argv in study.read_study(name).items():
            flags = [*argv[1:], "--out-dir", "x"]
            if argv[0] == "main1.py":
                main1.parse_flags(flags)
            else:
                reference.parse_args(flags)
            assert run.replace("-", "").replace(".", "").replace("_", "").isalnum(), run


def test_no_record_is_left_over_from_a_run_no_study_lists():
    listed = {(name, run) for name in study.study_names() for run in study.read_study(name)}
    on_disk = {(name, run) for name in os.listdir(study.RECORD_DIR) if name not in tables.MEASURED_BY
               for run in os.listdir(os.path.join(study.RECORD_DIR, name))}
    assert on_disk <= listed, sorted(on_disk - listed)


def expected_settings(argv):
    """What the command runs today, in config.json's terms: the stored settings a record must hold."""
    if argv[0] == "reference.py":
        args = reference.parse_args([*argv[1:], "--out-dir", "x"])
        return {"recipe": "reference", "dataset": args.dataset, "steps": args.steps, "seed": args.seed,
                "batch_size": args.batch_size}
    config, typed = main1.parse_flags([*argv[1:], "--out-dir", "x"])
    if config.bf16 is None:  # a new run takes the recipe's (main1.chosen_precision, on a CPU with bfloat16)
        config = config.replace(bf16=main1.recipe_value(config.recipe, "bf16"))
    return {name: (list(value) if isinstance(value, tuple) else value)
            for name in RunConfig.names(DEFINES_RUN, MAY_CHANGE) for value in [getattr(config, name)]}


@pytest.mark.parametrize(("name", "run", "argv"), RECORDS, ids=[f"{n}/{r}" for n, r, _ in RECORDS])
def test_a_record_holds_what_its_command_runs_today_on_the_committed_instrument(name, run, argv):
    folder = study.record_dir(name, run)
    with open(os.path.join(folder, "config.json")) as stream:
        recorded = json.load(stream)
    if argv[0] == "main1.py":  # read as a resume reads it: a setting newer than the record takes its legacy value
        recorded = RunConfig.from_json(recorded).to_json()
    changed = {key: (recorded.get(key), value) for key, value in expected_settings(argv).items()
               if recorded.get(key) != value}
    assert not changed, (f"{name}/{run}: recorded with other settings than `{' '.join(argv)}` runs today "
                         f"(recorded, today): {changed}; measure it again (python scripts/study.py {name})")
    with open(os.path.join(folder, "metrics.csv"), newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert rows, f"{name}/{run}: no evaluations"
    wanted = classifier.instrument_for(recorded["dataset"], recorded["image_shape"])
    entry = classifier.read_manifest()[wanted]
    assert {row.get("instrument") for row in rows} == {classifier.instrument_id(entry)}, \
        f"{name}/{run}: not measured with today's committed {wanted} instrument; measure it again"
    with open(os.path.join(folder, "timing.json")) as stream:
        timing = json.load(stream)
    assert timing["total"] > 0 and timing["machine"]["cpu"]


def test_every_generated_table_is_what_its_records_make():
    stale = []
    for path in tables.documents():
        with open(path) as stream:
            text = stream.read()
        if tables.regenerate(text) != text:
            stale.append(os.path.relpath(path, ROOT))
    assert not stale, f"tables that differ from their records in {stale}: python scripts/tables.py rewrites them"


def test_the_table_maker_sees_a_changed_record(tmp_path, monkeypatch):
    """A table made from records, then one record changed: the page no longer matches."""
    source = study.record_dir("fast-screen", "mnist-hinge-s1")  # a committed record, scored every 500
    records = tmp_path / "records" / "fast" / "fast-mnist-s1"
    records.mkdir(parents=True)
    for name in study.RECORD_FILES:
        shutil.copyfile(os.path.join(source, name), records / name)
    monkeypatch.setattr(tables, "ROOT", str(tmp_path))
    page = ("<!-- table: evaluate.py --compare records/fast/fast-mnist-s? --at 1000 --markdown -->\n"
            "<!-- end table -->")
    made = tables.regenerate(page)
    assert "| averaged | 1,000 | 1 |" in made and tables.regenerate(made) == made
    metrics = records / "metrics.csv"
    lines = metrics.read_text().splitlines()
    changed = [line.split(",") for line in lines[1:]]
    for row in changed:
        row[3] = "1.0"  # every evaluation's Frechet distance
    metrics.write_text("\n".join([lines[0], *(",".join(row) for row in changed)]) + "\n")
    assert tables.regenerate(made) != made
    assert "No record matches records/none/x-s?" in tables.make_table(
        "evaluate.py --compare records/none/x-s? --at 1 --markdown")


def test_a_study_runs_what_is_missing_resumes_a_stopped_run_and_keeps_each_record(tmp_path, monkeypatch, data_dir,
                                                                                   capsys):
    monkeypatch.setattr(study, "STUDY_DIR", str(tmp_path / "studies"))
    monkeypatch.setattr(study, "RECORD_DIR", str(tmp_path / "records"))
    (tmp_path / "studies").mkdir()
    command = (f"main1.py --data-dir {data_dir} --batch-size 8 --snapshot-every 2 --eval-every 2 --seed {{seed}} "
               "--offline")
    (tmp_path / "studies" / "tiny.toml").write_text(
        f'[[run]]\nname = "tiny-s{{seed}}"\nseeds = [1, 2]\ncommand = "{command} --steps 4"\n')
    work = tmp_path / "work"
    # Seed 2 was stopped at iteration 2 in an earlier sitting: its checkpoint is in the work folder.
    assert main1.main([*command.format(seed=2).split()[1:], "--steps", "2", "--out-dir",
                       str(work / "tiny" / "tiny-s2")]) == 0
    assert study.main(["--status", "tiny", "--work-dir", str(work)]) == 1
    assert "missing tiny-s2: at iteration 2 of 4" in capsys.readouterr().out
    assert study.main(["tiny", "--work-dir", str(work), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "0 of 2 runs recorded" in out and "tiny/tiny-s2: started (resumed)" in out and "2 of 2 runs recorded" in out
    for seed, processes in ((1, 1), (2, 2)):
        record = tmp_path / "records" / "tiny" / f"tiny-s{seed}"
        assert sorted(os.listdir(record)) == sorted(study.RECORD_FILES)
        assert json.loads((record / "config.json").read_text())["steps"] == 4
        assert json.loads((record / "timing.json").read_text())["processes"] == processes
        steps = {row["step"] for row in csv.DictReader(open(record / "metrics.csv"))}  # noqa: SIM115
        assert steps == {"2", "4"}
    assert study.main(["--status", "tiny", "--work-dir", str(work)]) == 0
    assert "2 of 2 runs recorded (complete)" in capsys.readouterr().out
    assert study.main(["nosuch"]) == 2 and "no study 'nosuch'" in capsys.readouterr().err


def test_a_work_folder_past_the_length_its_command_asks_for_is_not_recorded(tmp_path, monkeypatch, data_dir, capsys):
    """A recipe's default length went down after a run of the old length ended in its work folder:
    that run is not what the command runs today, so it is named and not kept as the record."""
    monkeypatch.setattr(study, "STUDY_DIR", str(tmp_path / "studies"))
    monkeypatch.setattr(study, "RECORD_DIR", str(tmp_path / "records"))
    monkeypatch.setattr(study, "recipe_value", lambda recipe, name: 2 if name == "steps" else None)
    (tmp_path / "studies").mkdir()
    command = f"main1.py --data-dir {data_dir} --batch-size 8 --snapshot-every 2 --eval-every 2 --seed 1 --offline"
    (tmp_path / "studies" / "tiny.toml").write_text(f'[[run]]\nname = "tiny"\ncommand = "{command}"\n')
    work = tmp_path / "work"
    assert main1.main([*command.split()[1:], "--steps", "4", "--out-dir", str(work / "tiny" / "tiny")]) == 0
    capsys.readouterr()
    assert study.main(["tiny", "--work-dir", str(work)]) == 1
    out = capsys.readouterr().out
    assert f"tiny/tiny: its work folder {work / 'tiny' / 'tiny'} holds iteration 4, past the 2 its command" in out
    assert "failed: tiny/tiny" in out and not (tmp_path / "records" / "tiny").exists()


# ----------------------------------------------------------------------------- a user's mistakes
@pytest.fixture
def studies(tmp_path, monkeypatch):
    """Empty studies/ and records/ folders in tmp_path that study.py reads and writes."""
    monkeypatch.setattr(study, "STUDY_DIR", str(tmp_path / "studies"))
    monkeypatch.setattr(study, "RECORD_DIR", str(tmp_path / "records"))
    (tmp_path / "studies").mkdir()
    return tmp_path


@pytest.mark.parametrize(("body", "expected"), [
    ('[[run]\nname = "x"', "cannot read"),
    ('[[run]]\nname = "x"', "every [[run]] needs a name and a command"),
    ('[[run]]\nname = 3\ncommand = "main1.py"', "every [[run]] needs a name and a command"),
    ("run = 3", "runs are listed as [[run]] tables"),
    ('[[run]]\nname = "x"\ncommand = "evaluate.py --compare"', "must start with one of main1.py, reference.py"),
    ('[[run]]\nname = "x-s{seed}"\ncommand = "main1.py --seed {seed}"', "nothing gives {seed}"),
    ('[[run]]\nname = "x-s{seed}"\nseeds = 3\ncommand = "main1.py"', "seeds is a list and each a table of lists"),
    ('[[run]]\nname = "x-{lr}"\neach = [1, 2]\ncommand = "main1.py"', "seeds is a list and each a table of lists"),
    ('[[run]]\nname = "x-{0}"\ncommand = "main1.py"', "x-{0}"),
    ('[[run]]\nname = "x"\ncommand = "main1.py --tag \'open"', "No closing quotation"),
    ('[[run]]\nname = "x"\ncommand = "main1.py"\n[[run]]\nname = "x"\ncommand = "main1.py --seed 2"',
     "two runs are named x"),
    ("", "lists no runs"),
    ('[[run]]\nname = "../x"\ncommand = "main1.py"', "a run's name is its folder's"),
    ('[[run]]\nname = "x"\ncommand = "main1.py --out-dir=elsewhere"', "the study chooses --out-dir"),
    ('[[run]]\nname = "x"\ncommand = "main1.py --eval-every 0"', "--eval-every 0 writes no metrics.csv"),
    ('[[run]]\nname = "x"\ncommand = "main1.py --steps many"', "--steps and --epochs take a whole number"),
])
def test_a_study_file_that_cannot_be_used_is_one_line_naming_it(studies, capsys, body, expected):
    (studies / "studies" / "bad.toml").write_text(body)
    assert study.main(["bad", "--status", "--work-dir", str(studies / "work")]) == 2  # --status: never a run
    err = capsys.readouterr().err
    assert err.startswith("study.py: error: ") and expected in err and "bad.toml" in err, err
    assert err.count("\n") == 1 and not (studies / "work").exists() and not (studies / "records").exists()


@pytest.mark.parametrize("name", ["../studies/ok", "sub/ok", "/abs/ok", "ok.toml"])
def test_a_study_is_named_by_its_file_name_never_by_a_path(studies, capsys, name):
    (studies / "studies" / "ok.toml").write_text('[[run]]\nname = "x"\ncommand = "main1.py"\n')
    assert study.main([name, "--status"]) == 2
    assert f"{name!r} is not a study: name a file of" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["0", "-1", "abc", "1.5"])
def test_jobs_is_a_whole_number_at_least_one(studies, capsys, jobs):
    with pytest.raises(SystemExit) as stop:
        study.main(["ok", "--jobs", jobs])
    assert stop.value.code == 2
    assert f"argument --jobs: must be a whole number at least 1, not '{jobs}'" in capsys.readouterr().err


def write_record_files(folder, text="x"):
    os.makedirs(folder, exist_ok=True)
    for name in study.RECORD_FILES:
        with open(os.path.join(folder, name), "w") as stream:
            stream.write(f"{text} {name}\n")


def test_a_record_with_a_file_missing_or_empty_is_not_recorded(studies):
    record = study.record_dir("s", "r")
    write_record_files(record)
    assert study.is_recorded("s", "r")
    open(os.path.join(record, "metrics.csv"), "w").close()  # a copy cut short
    assert not study.is_recorded("s", "r")
    os.remove(os.path.join(record, "metrics.csv"))
    assert not study.is_recorded("s", "r")


def test_a_work_folder_of_record_files_without_a_checkpoint_is_not_a_run_that_ended(tmp_path, monkeypatch):
    """Someone else's config.json, metrics.csv and timing.json in a work folder never become a record."""
    write_record_files(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text('{"steps": 4}')
    assert not study.finished(["main1.py", "--steps", "4"], str(tmp_path / "run"))
    monkeypatch.setattr(study, "progress_of", lambda out_dir: 2)
    assert not study.finished(["main1.py", "--steps", "4"], str(tmp_path / "run"))
    monkeypatch.setattr(study, "progress_of", lambda out_dir: 4)
    assert study.finished(["main1.py", "--steps", "4"], str(tmp_path / "run"))
    # main1.py's default length is its recipe's today (the exercise's 20,000), not what config.json stored
    assert not study.finished(["main1.py"], str(tmp_path / "run"))
    assert study.finished(["reference.py"], str(tmp_path / "run"))  # reference.py's: as config.json stored it


def test_a_full_disk_while_keeping_a_record_keeps_the_earlier_one(studies, monkeypatch):
    write_record_files(studies / "work" / "r", "new")
    write_record_files(study.record_dir("s", "r"), "earlier")
    os.remove(os.path.join(study.record_dir("s", "r"), "timing.json"))  # half there: to be copied again
    copy = shutil.copyfile

    def disk_full_at_metrics(source, target):
        if target.endswith("metrics.csv"):
            raise OSError(28, "No space left on device")
        return copy(source, target)
    monkeypatch.setattr(shutil, "copyfile", disk_full_at_metrics)
    with pytest.raises(study.StudyError, match=r"No space left on device\); the earlier record there is as it was"):
        study.keep_record("s", "r", str(studies / "work" / "r"))
    assert sorted(os.listdir(studies / "records" / "s")) == ["r"]  # no temporary folder left behind
    assert (studies / "records" / "s" / "r" / "metrics.csv").read_text() == "earlier metrics.csv\n"
    shutil.rmtree(study.record_dir("s", "r"))
    with pytest.raises(study.StudyError, match="no record is kept"):
        study.keep_record("s", "r", str(studies / "work" / "r"))
    assert os.listdir(studies / "records" / "s") == []
    monkeypatch.setattr(shutil, "copyfile", copy)
    study.keep_record("s", "r", str(studies / "work" / "r"))
    assert study.is_recorded("s", "r")


def test_a_full_disk_on_a_real_small_filesystem_keeps_the_earlier_record(studies):
    write_record_files(studies / "work" / "r", "new" * 4000)  # 12 kB each: three pages or more
    with tmpfs(studies / "records", "16k"):
        write_record_files(study.record_dir("s", "r"), "earlier")
        os.remove(os.path.join(study.record_dir("s", "r"), "timing.json"))
        with pytest.raises(study.StudyError, match="No space left on device.*the earlier record there is as it was"):
            study.keep_record("s", "r", str(studies / "work" / "r"))
        assert sorted(os.listdir(study.record_dir("s", "r"))) == ["config.json", "metrics.csv"]
        assert os.listdir(studies / "records" / "s") == ["r"]


# A stand-in for main1.py that the runner starts: it writes its record files and exits 0, or fails
# with a line, or waits for a signal and "saves its checkpoint" as main1.py does.
CHILD = """
import os, signal, sys, time
out_dir, behaviour = sys.argv[1], os.path.basename(sys.argv[1])
os.makedirs(out_dir, exist_ok=True)
if behaviour.startswith("fails"):
    print("main1.py: error: the data folder is gone")
    sys.exit(3)
if behaviour.startswith("waits"):
    def save(signum, frame):
        open(os.path.join(out_dir, "saved-" + signal.Signals(signum).name), "w").close()
        sys.exit(130)
    signal.signal(signal.SIGINT, save)
    open(os.path.join(out_dir, "started"), "w").close()
    time.sleep(120)
for name in ("config.json", "metrics.csv", "timing.json"):
    with open(os.path.join(out_dir, name), "w") as stream:
        stream.write("{}\\n")
"""


@pytest.fixture
def fake_runs(studies, monkeypatch):
    """A study whose runs are CHILD processes (named for what they do): no TensorFlow, no training."""
    monkeypatch.setattr(study, "command_for", lambda argv, out_dir: [sys.executable, "-c", CHILD, out_dir])
    (studies / "studies" / "s.toml").write_text(
        '[[run]]\nname = "{what}"\neach = {what = ["ends", "fails", "ends-too"]}\ncommand = "main1.py"\n')
    return studies


def test_a_failed_run_keeps_no_record_says_why_and_the_others_go_on(fake_runs, capsys):
    assert study.main(["s", "--work-dir", str(fake_runs / "work"), "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    log = fake_runs / "work" / "s" / "fails.log"
    assert (f"s/fails failed with exit code 3 (main1.py: error: the data folder is gone); no record kept; log {log}"
            in out)
    assert "2 of 3 runs recorded" in out and "failed: s/fails (see above)" in out
    assert study.is_recorded("s", "ends") and study.is_recorded("s", "ends-too") and not study.is_recorded("s", "fails")


def test_a_run_another_runner_holds_is_skipped_not_run_twice(fake_runs, capsys):
    held = study.Lock(str(fake_runs / "work" / "s" / "ends.lock"))
    assert held.acquire()
    try:
        assert study.main(["s", "--work-dir", str(fake_runs / "work")]) == 1
    finally:
        held.release()
    out = capsys.readouterr().out
    assert "s/ends: another runner has it; skipped" in out and "another runner has: s/ends" in out
    assert not (fake_runs / "work" / "s" / "ends").exists() and not study.is_recorded("s", "ends")


def test_a_run_that_ended_before_its_record_was_kept_is_recorded_without_running_again(fake_runs, monkeypatch,
                                                                                       capsys):
    (fake_runs / "studies" / "s.toml").write_text('[[run]]\nname = "ends"\ncommand = "main1.py --steps 4"\n')
    write_record_files(fake_runs / "work" / "s" / "ends", "finished")
    write_record_files(study.record_dir("s", "ends"), "half")
    os.remove(os.path.join(study.record_dir("s", "ends"), "timing.json"))
    monkeypatch.setattr(study, "progress_of", lambda out_dir: 4)
    monkeypatch.setattr(study, "command_for", lambda argv, out_dir: pytest.fail("started a run that had ended"))
    assert study.main(["s", "--work-dir", str(fake_runs / "work")]) == 0
    assert "s/ends: finished earlier; record kept in" in capsys.readouterr().out
    assert (fake_runs / "records" / "s" / "ends" / "timing.json").read_text() == "finished timing.json\n"


RUNNER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("study", sys.argv[1])
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)
study.STUDY_DIR, study.RECORD_DIR = sys.argv[2] + "/studies", sys.argv[2] + "/records"
study.command_for = lambda argv, out_dir: [sys.executable, "-c", sys.argv[3], out_dir]
sys.exit(study.main(["s", "--work-dir", sys.argv[2] + "/work"]))
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_runner_after_its_runs_saved_their_checkpoints(studies, signum, code):
    (studies / "studies" / "s.toml").write_text('[[run]]\nname = "waits"\ncommand = "main1.py"\n')
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, os.path.join(ROOT, "scripts", "study.py"), str(studies),
                               CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = studies / "work" / "s" / "waits" / "started"
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and runner.poll() is None:
        time.sleep(0.1)
    runner.send_signal(signum)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == code, err
    assert err.count("\n") == 1 and err.startswith(f"study.py: stopped by {signal.Signals(signum).name}"), err
    assert "the runs in progress continue from their checkpoints next time" in err
    assert (studies / "work" / "s" / "waits" / "saved-SIGINT").exists()  # the run was told as Ctrl-C tells it
    assert not (studies / "records").exists()


# ----------------------------------------------------------------------------- scripts/make_instruments.py
@pytest.fixture
def instrument_folder(tmp_path, monkeypatch):
    """A folder with an instrument and its manifest, no Fashion-MNIST anywhere, and no training
    allowed: (folder, {file name: bytes} as it was)."""
    import mlpreprocess

    monkeypatch.setattr(classifier.ImageClassifier, "fit", lambda *args, **kwargs: pytest.fail("it trained"))
    monkeypatch.setattr(mlpreprocess, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-debian-package"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-cache"))
    monkeypatch.chdir(tmp_path)  # no data/fashion_mnist here
    folder = tmp_path / "instruments"
    folder.mkdir()
    (folder / "digits.npz").write_bytes(b"the digits instrument")
    (folder / classifier.MANIFEST).write_text('{"digits": {"file": "digits.npz", "sha256": "..."}}\n')
    return folder, {name: (folder / name).read_bytes() for name in os.listdir(folder)}


@pytest.mark.parametrize(("flags", "expected"), [
    (["--fashion-data-dir", "/nonexistent"], "--fashion-data-dir /nonexistent: no Fashion-MNIST IDX files there"),
    (["--only", "fashion", "--fashion-data-dir", "/nonexistent"], "--fashion-data-dir /nonexistent: no Fashion"),
    ([], "no Fashion-MNIST IDX files in data/fashion_mnist or "),  # nowhere on the machine either
])
def test_make_instruments_without_fashion_mnist_fails_in_one_line_before_it_trains(instrument_folder, capsys,
                                                                                   flags, expected):
    folder, before = instrument_folder
    assert make_instruments.main([*flags, "--folder", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_instruments.py: error: ") and expected in err, err
    assert err.endswith(f"nothing in {folder} was changed\n") and err.count("\n") == 1
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before


def test_make_instruments_keeps_a_manifest_it_cannot_read_rather_than_drop_its_entries(instrument_folder, capsys):
    folder, _ = instrument_folder
    (folder / classifier.MANIFEST).write_text('{"digits": ')
    assert make_instruments.main(["--only", "digits", "--folder", str(folder)]) == 2
    assert f"cannot read {folder / classifier.MANIFEST}" in capsys.readouterr().err
    assert (folder / classifier.MANIFEST).read_text() == '{"digits": '
