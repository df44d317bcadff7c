"""training.py: one run in memory. The same seed gives the same steps, a checkpoint taken and
restored continues exactly, outputs land in the folder's manifest, and the clock and the signal
flag do what the loop in main1.py relies on."""
import os
import signal
import time

import numpy as np
import pytest
from conftest import toy_digits

import runs
import training
from config import RunConfig
from mlpreprocess import Dataset


def dataset(conditional=False):
    images, labels = toy_digits(40, seed=0)
    return Dataset("mnist", images, labels.astype(np.int64) if conditional else None)


def trainer_in(folder, resume=False, **settings):
    config = RunConfig(**{"steps": 6, "batch_size": 4, "snapshot_every": 2, "seed": 5, "z_dim": 8,
                          "checkpoint_every": 3, "out_dir": folder.path, "image_shape": (28, 28, 1),
                          "resume": resume, **settings})
    return training.Trainer(config, folder, dataset(config.conditional))


@pytest.fixture
def folder(tmp_path):
    with runs.RunFolder(str(tmp_path / "run")) as run_folder:
        os.makedirs(run_folder.path)
        run_folder.lock_for_training()
        yield run_folder


@pytest.mark.parametrize("settings", [{}, {"recipe": "tuned", "conditional": True, "num_classes": 10}],
                         ids=["original", "tuned-conditional"])
def test_a_checkpoint_taken_and_restored_continues_exactly(folder, tmp_path, settings):
    straight = trainer_in(folder, **settings)
    losses = [straight.train_step(i) for i in range(5)]
    with runs.RunFolder(str(tmp_path / "other")) as other:
        os.makedirs(other.path)
        other.lock_for_training()
        again = trainer_in(other, **settings)
        assert [again.train_step(i) for i in range(3)] == losses[:3]  # same seed, same steps
        for step in (1, 2, 3):
            again.history.add_losses(*losses[step - 1])
            if step % 2 == 0:
                again.snapshot(step)
        again.save_checkpoint(3)
        resumed = trainer_in(other, resume=True, **settings)
        assert resumed.step == 3
        assert resumed.history.loss_rows == again.history.loss_rows
        np.testing.assert_array_equal(resumed.history.snapshots, again.history.snapshots)
        assert [resumed.train_step(i) for i in (3, 4)] == losses[3:]


def test_outputs_are_written_and_recorded_in_the_manifest(folder):
    trainer = trainer_in(folder)
    for step in range(1, 5):
        trainer.history.add_losses(*trainer.train_step(step - 1))
        if step % 2 == 0:
            trainer.snapshot(step)
    trainer.save_checkpoint(4)
    trainer.write_outputs(4)
    written = set(folder.manifest()["files"])
    for name in ("losses.csv", "loss.png", "progress_step000004.png", "progress_step000004.gif",
                 "samples_step000004.png", "morph_fast-slow_step000004.gif", "morph_equal_step000004.gif"):
        assert name in written and os.path.getsize(folder.join(name)) > 0, name
    assert runs.checkpoint_step(runs.latest_checkpoint(folder.path)) == 4
    on_disk = {os.path.relpath(os.path.join(d, f), folder.path) for d, _, files in os.walk(folder.path)
               for f in files if not f.startswith(".") and f != "manifest.json"}
    assert on_disk <= written  # nothing is written that --overwrite would not remove


def test_a_repeated_save_of_the_same_step_writes_nothing(folder):
    trainer = trainer_in(folder)
    trainer.history.add_losses(*trainer.train_step(0))
    trainer.save_checkpoint(1)
    index = os.path.join(folder.path, runs.CHECKPOINT_DIR, "checkpoint")
    before = os.stat(index).st_mtime_ns
    trainer.save_checkpoint(1)
    assert os.stat(index).st_mtime_ns == before


def test_the_stopwatch_adds_up_its_blocks():
    stopwatch, told = training.Stopwatch(), []
    with stopwatch("a", also=told.append):
        time.sleep(0.01)
    with stopwatch("a"):
        pass
    with pytest.raises(KeyError), stopwatch("b"):  # a failed block is timed too
        raise KeyError
    report = stopwatch.report()
    assert set(report) == {"a", "b", "other", "total"}
    assert report["a"] >= told[0] >= 0.01
    assert report["total"] == pytest.approx(report["a"] + report["b"] + report["other"])


def test_the_signal_flag_waits_for_the_loop_then_a_second_signal_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    flag = training.SignalFlag()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.signum == signal.SIGTERM  # noted, for the loop to stop after this iteration
        with pytest.raises(runs.Interrupted) as stop:
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.value.exit_code == 130
    finally:
        flag.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_inside_a_deferred_block_goes_to_the_loops_flag_once_the_block_is_done():
    """Library calls whose locks and worker threads an exception must not cut into (the event
    writer's queue, the progress bar) run deferred: the first signal still only sets the flag, and
    a second one raises only after the call completed."""
    flag = training.SignalFlag()
    finished = []
    try:
        with runs.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("first")
        assert flag.signum == signal.SIGINT and finished == ["first"]
        with pytest.raises(runs.Interrupted) as stop, runs.signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            finished.append("second")
        assert finished == ["first", "second"] and stop.value.exit_code == 143
    finally:
        flag.restore()


# ----------------------------------------------------------------------------- the best model, collapse
def scores(distance, shares=(0.25, 0.25, 0.25, 0.25)):
    return {"frechet_distance": distance, "class_shares": list(shares)}


def test_the_best_evaluation_is_kept_and_a_lasting_rise_or_a_rare_class_is_a_sign_of_collapse():
    history = runs.History()
    assert training.judge_evaluation(history, 10, scores(100.0), "averaged") == (True, [])
    assert training.judge_evaluation(history, 20, scores(80.0), "averaged") == (True, [])
    assert history.best == {"step": 20, "frechet_distance": 80.0, "generator": "averaged"}
    assert training.judge_evaluation(history, 30, scores(101.0), "averaged") == (False, [])  # 26% above, once
    assert training.judge_evaluation(history, 40, scores(99.0), "averaged") == (False, [])   # 24%: the count restarts
    assert training.judge_evaluation(history, 50, scores(120.0), "averaged") == (False, [])
    is_best, signs = training.judge_evaluation(history, 60, scores(150.0), "averaged")
    assert not is_best and signs == ["iteration 60: the Frechet distance (150.0) has stayed more than 25% above the "
                                     "best (80.0, iteration 20) for 2 evaluations in a row"]
    assert training.judge_evaluation(history, 70, scores(70.0), "averaged") == (True, [])
    assert history.above_best == 0
    _, signs = training.judge_evaluation(history, 80, scores(75.0, (0.5, 0.3, 0.18, 0.02)), "averaged")
    assert signs == ["iteration 80: class 3 makes up under 12.5% of the samples (uniform: 25.0%; smallest 2.0%)"]


def test_the_best_checkpoint_outlives_pruning_and_is_found_by_name(folder):
    trainer = trainer_in(folder)
    trainer.history.add_losses(*trainer.train_step(0))
    trainer.history.best, trainer.history.above_best = {"step": 1, "frechet_distance": 5.0, "generator": "raw"}, 1
    trainer.save_checkpoint(1)
    trainer.keep_best(1)
    for step in range(2, 6):  # the Saver keeps the last three: model.ckpt-1 goes
        trainer.history.add_losses(*trainer.train_step(step - 1))
        trainer.save_checkpoint(step)
    checkpoints = os.path.join(folder.path, runs.CHECKPOINT_DIR)
    assert not os.path.exists(os.path.join(checkpoints, "model.ckpt-1.index"))
    best = runs.chosen_checkpoint(folder.path, "best")
    assert best == os.path.join(checkpoints, "best.ckpt-1") and runs.chosen_checkpoint(folder.path, "1") == best
    assert runs.chosen_checkpoint(folder.path, "latest").endswith("model.ckpt-5")
    with pytest.raises(runs.UsageError, match=r"no checkpoint of iteration 9 .* \(kept: 1, 3, 4, 5\)"):
        runs.chosen_checkpoint(folder.path, "9")
    written = set(folder.manifest()["files"])
    assert {"best.json", "checkpoints/best.ckpt-1.index", "checkpoints/best.ckpt-1.data-00000-of-00001"} <= written
    # The next best replaces the copy; the history that a resumed run reads holds the best.
    trainer.history.best = {"step": 5, "frechet_distance": 4.0, "generator": "raw"}
    trainer.keep_best(5)
    assert runs.chosen_checkpoint(folder.path, "best").endswith("best.ckpt-5")
    assert not os.path.exists(os.path.join(checkpoints, "best.ckpt-1.index"))
    restored = runs.History.load(runs.latest_checkpoint(folder.path))
    assert restored.best == {"step": 1, "frechet_distance": 5.0, "generator": "raw"} and restored.above_best == 1
