"""Comparison tables of runs, read from their metrics.csv and config.json."""
import dataclasses
import json

import compare
import evaluate
from config import DEFINES_RUN, RunConfig, recipe_value


def _write_metrics(path, rows):
    header = "step,generator,frechet_distance,classifier_score,class_kl_from_uniform," + \
             ",".join(f"share_{c}" for c in range(3))
    path.write_text("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n")


def test_compare_summarizes_the_last_evaluation_and_the_mean_of_the_last_four(tmp_path, capsys):
    # Rows out of order and two generators: each generator is summarized on its own.
    rows = [(step, "raw", fd, 5.0 + step / 1000, 0.1, 0.5, 0.3, 0.2)
            for step, fd in [(5000, 50.0), (1000, 90.0), (2000, 80.0), (3000, 70.0), (4000, 60.0)]]
    rows.append((5000, "averaged", 40.0, 7.0, 0.0, 1 / 3, 1 / 3, 1 / 3))
    _write_metrics(tmp_path / "metrics.csv", rows)
    summary = compare.summarize_metrics(str(tmp_path))
    assert summary["raw"] == {"step": 5000, "frechet_distance": 50.0, "mean_frechet_distance": 65.0,
                              "window": (2000, 5000), "classifier_score": 10.0,
                              "smallest_share": 0.2, "largest_share": 0.5}
    assert summary["averaged"]["mean_frechet_distance"] == 40.0 and summary["averaged"]["window"] == (5000, 5000)
    assert evaluate.main(["--compare", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "65.0 (2000-5000)" in lines[1] and "20.0% / 50.0%" in lines[1]


def test_compare_names_a_run_without_metrics(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _write_metrics(tmp_path / "empty" / "metrics.csv", [])
    assert evaluate.main(["--compare", str(tmp_path / "missing")]) == 2
    assert "missing/metrics.csv" in capsys.readouterr().err
    assert evaluate.main(["--compare", str(tmp_path / "empty")]) == 2
    assert "holds no evaluations" in capsys.readouterr().err


def _run_folder(path, config, rows):
    path.mkdir()
    if config.get("recipe") != "reference":
        config = RunConfig(**config).to_json()
    (path / "config.json").write_text(json.dumps(config))
    header = "step,generator,train_seconds,frechet_distance,classifier_score,class_kl_from_uniform," + \
             ",".join(f"share_{c}" for c in range(3))
    (path / "metrics.csv").write_text("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n")
    return str(path)


def test_the_recipe_table_groups_seeds_and_finds_when_the_reference_is_reached(tmp_path):
    shares = (0.2, 0.3, 0.5)
    reference = _run_folder(tmp_path / "ref", {"recipe": "reference"},
                            [(10, "raw", 50.0, 300.0, 5.0, 0.1, *shares), (20, "raw", 100.0, 100.0, 6.0, 0.1, *shares)])
    tuned = [_run_folder(tmp_path / f"tuned{seed}", {"recipe": "tuned", "learning_rate": 4e-4},
                         [(10, "averaged", 20.0, fd10, 7.0, 0.0, *shares),
                          (20, "averaged", 40.0, fd20, 8.0, 0.0, *shares)])
             for seed, (fd10, fd20) in enumerate([(90.0, 60.0), (150.0, 80.0)])]
    ablated = _run_folder(tmp_path / "ablated", {"recipe": "tuned", "learning_rate": 1e-4, "without": ("hinge",)},
                          [(10, "averaged", 20.0, 500.0, 7.0, 0.0, *shares)])
    assert compare.run_label(ablated) == ("mnist", "tuned without hinge (learning rate 0.0001)")
    decay = recipe_value("fast", "lr_decay_steps") + 7  # not the recipe's own
    fast = _run_folder(tmp_path / "fast", {"recipe": "fast", "lr_decay_steps": decay, "batch_size": 64, "bf16": False,
                                                "discriminator_width": 1.0, "joint_discriminator_call": False},
                       [])
    assert compare.run_label(fast)[1] == (f"fast (batch 64) (learning rate decay over {decay}) (D width 1) (FP32) "
                                          "(two D calls)")
    groups = compare.group_figures([reference, *tuned, ablated], {10, 20})
    assert groups[("tuned", "averaged", 20)]["frechet_distance"] == [60.0, 80.0]
    assert groups[("tuned", "averaged", 10)]["smallest_share"] == [0.2, 0.2]
    table = compare.format_recipe_table([reference, *tuned, ablated], [10, 20]).splitlines()
    row = next(line for line in table if line.startswith("tuned ") and " 20 " in line)
    assert "70.0 [  60.0-  80.0]" in row and "8.00" in row
    markdown = compare.format_recipe_table([reference, *tuned], [10, 20], markdown=True).splitlines()
    assert "| tuned | averaged | 20 | 2 | 70.0 [60.0-80.0] | 8.00 | 20.0% / 50.0% | 40 |" in markdown
    # The reference's mean at the last step is 100: the first tuned seed is there at 10, the other at 20.
    assert table[-4].startswith("First evaluation at or below the reference's mean Frechet distance at 20 (100.0)")
    reached = {line.split()[0] + (" ablated" if "without" in line else ""): line.split()[-2:] for line in table[-3:]}
    assert reached == {"reference": ["raw", "20"], "tuned": ["10,", "20"], "tuned ablated": ["averaged", "never"]}


def test_every_setting_that_changes_a_run_shows_in_its_label(tmp_path):
    """Runs whose settings differ must never be grouped as seeds of one recipe: every setting that
    defines a run declares its label, but those the label names otherwise."""
    named_otherwise = {"dataset", "recipe", "without", "conditional", "conditioning",  # run_label's own words
                       "seed",  # what the grouping is over
                       "data_dir", "image_size", "channels",  # the data, recorded beside the run
                       "snapshot_every"}  # when losses are logged; no weight changes
    unlabelled = {field.name for field in dataclasses.fields(RunConfig)
                  if field.metadata["kind"] == DEFINES_RUN and field.metadata["label"] is None}
    assert unlabelled == named_otherwise
    averaged = _run_folder(tmp_path / "ema", {"recipe": "fast", "ema_decay": 0.998,
                                                               "augment": "translation"}, [])
    assert compare.run_label(averaged)[1] == "fast (DiffAugment translation) (average decay 0.998)"
