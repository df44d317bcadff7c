"""Studies, their records and the tables made from them: every record says what its study's
command runs today, on the committed instrument, and every generated table is what its records
make."""
import csv
import importlib.util
import json
import os
import shutil

import pytest
from conftest import ROOT

import classifier
import main1
import reference
from config import DEFINES_RUN, MAY_CHANGE, RunConfig


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study = _script("study")
tables = _script("tables")
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
        config = config.replace(bf16=main1.RECIPE_SETTINGS[config.recipe].bf16)
    return {name: (list(value) if isinstance(value, tuple) else value)
            for name in RunConfig.names(DEFINES_RUN, MAY_CHANGE) for value in [getattr(config, name)]}


@pytest.mark.parametrize(("name", "run", "argv"), RECORDS, ids=[f"{n}/{r}" for n, r, _ in RECORDS])
def test_a_record_holds_what_its_command_runs_today_on_the_committed_instrument(name, run, argv):
    folder = study.record_dir(name, run)
    with open(os.path.join(folder, "config.json")) as stream:
        recorded = json.load(stream)
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
    source = study.record_dir("fast", "fast-mnist-s1")
    if not os.path.isdir(source):
        pytest.skip("no fast record yet")
    records = tmp_path / "records" / "fast" / "fast-mnist-s1"
    records.mkdir(parents=True)
    for name in study.RECORD_FILES:
        shutil.copyfile(os.path.join(source, name), records / name)
    monkeypatch.setattr(tables, "ROOT", str(tmp_path))
    page = ("<!-- table: evaluate.py --compare records/fast/fast-mnist-s? --at 1000 --markdown -->\n"
            "<!-- end table -->")
    made = tables.regenerate(page)
    assert "| fast | averaged | 1,000 | 1 |" in made and tables.regenerate(made) == made
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
