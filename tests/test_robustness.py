"""Runs that are interrupted, killed, fed damaged checkpoints or starved of disk space."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_main, tmpfs

TINY = ("--batch-size", 8, "--snapshot-every", 5, "--seed", 7)


def _checkpoint_tensors(out, step=None):
    folder = os.path.join(out, "checkpoints")
    path = os.path.join(folder, f"model.ckpt-{step}") if step else tf.train.latest_checkpoint(folder)
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def straight_run(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("straight"))
    code, _, stderr = run_main("--steps", 60, "--out-dir", out, "--data-dir", data_dir, *TINY)
    assert code == 0, stderr
    return out


def test_same_seed_gives_an_identical_loss_history(straight_run, data_dir, tmp_path):
    code, _, _ = run_main("--steps", 60, "--out-dir", tmp_path, "--data-dir", data_dir, *TINY)
    assert code == 0
    assert Path(tmp_path / "losses.csv").read_text() == Path(os.path.join(straight_run, "losses.csv")).read_text()


def test_without_seed_one_is_chosen_printed_and_stored(data_dir, tmp_path):
    code, stdout, _ = run_main("--steps", 5, "--snapshot-every", 5, "--batch-size", 8, "--out-dir", tmp_path,
                               "--data-dir", data_dir)
    assert code == 0
    printed = int(stdout.split("seed: ", 1)[1].split()[0])
    assert json.loads(Path(tmp_path / "config.json").read_text())["seed"] == printed


def test_killed_at_random_moments_the_run_always_resumes_and_ends_bit_identical(straight_run, data_dir,
                                                                                 tmp_path):
    out = str(tmp_path / "run")
    command = [sys.executable, os.path.join(ROOT, "main1.py"), "--steps", "60", "--out-dir", out,
               "--data-dir", data_dir, "--checkpoint-every", "1", *map(str, TINY)]
    chance = random.Random(0)
    first, kills = True, 0
    for _ in range(3):
        process = subprocess.Popen(command if first else command + ["--resume"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        first = False
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline:
            if os.path.isfile(os.path.join(out, "checkpoints", "checkpoint")):
                break
            time.sleep(0.05)
        time.sleep(chance.uniform(0.0, 0.5))  # checkpoints are written every iteration: often mid-write
        process.kill()
        process.wait()
        assert _checkpoint_tensors(out)  # the latest checkpoint is always readable
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL
        kills += 1
    assert kills >= 1  # at least one run really was killed mid-way
    code, _, stderr = run_main("--steps", 60, "--out-dir", out, "--resume", "--data-dir", data_dir)
    assert code == 0 or "already at iteration 60" in stderr
    final, expected = _checkpoint_tensors(out, 60), _checkpoint_tensors(straight_run, 60)
    assert final.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(final[name], expected[name], err_msg=name)
    assert Path(out, "losses.csv").read_text() == Path(straight_run, "losses.csv").read_text()


def _copy_run(source, destination):
    shutil.copytree(source, destination)
    return str(destination)


def test_a_corrupted_checkpoint_is_a_clear_error(straight_run, tmp_path):
    out = _copy_run(straight_run, tmp_path / "run")
    data = os.path.join(out, "checkpoints", "model.ckpt-60.data-00000-of-00001")
    with open(data, "r+b") as stream:
        stream.truncate(1000)
    code, _, stderr = run_main("--steps", 70, "--out-dir", out, "--resume")
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert "model.ckpt-60 is damaged" in stderr
    assert json.loads(Path(os.path.join(out, "config.json")).read_text())["steps"] == 60  # config untouched


def test_a_checkpoint_of_another_shape_is_a_clear_error(straight_run, tmp_path):
    out = _copy_run(straight_run, tmp_path / "run")
    config_path = os.path.join(out, "config.json")
    config = json.loads(Path(config_path).read_text())
    config["z_dim"] = 32  # the checkpoint holds a 64-value generator input
    Path(config_path).write_text(json.dumps(config))
    code, _, stderr = run_main("--steps", 70, "--out-dir", out, "--resume")
    assert code == 2 and len(stderr.splitlines()) == 1, stderr
    assert ("holds a mnist 28x28x1, z_dim 64, recipe original model, not mnist 28x28x1, z_dim 32, "
            "recipe original") in stderr


def test_resuming_with_a_different_run_defining_flag_is_refused(straight_run, tmp_path):
    out = _copy_run(straight_run, tmp_path / "run")
    code, _, stderr = run_main("--steps", 70, "--out-dir", out, "--resume", "--batch-size", 16)
    assert code == 2 and "--batch-size 16 differs from the resumed run's 8" in stderr


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    code, _, stderr = run_main("--steps", 200, "--out-dir", tmp_path, "--data-dir", data_dir,
                               "--learning-rate", "1e38", "--checkpoint-every", 1, *TINY)
    assert code == 1, stderr
    message = [line for line in stderr.splitlines() if "training stopped" in line]
    assert len(message) == 1 and "loss is not finite" in message[0]
    bad_step = int(message[0].split("iteration ")[1].split(":")[0])
    last = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert last is None or int(last.rsplit("-", 1)[1]) == bad_step - 1
    assert os.path.exists(tmp_path / "losses.csv")


@pytest.fixture
def tiny_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "25m") as folder:
        yield folder


def test_a_full_disk_is_a_clear_error_and_keeps_the_last_checkpoint(data_dir, tiny_disk):
    out = os.path.join(tiny_disk, "run")
    code, _, stderr = run_main("--steps", 100, "--out-dir", out, "--data-dir", data_dir,
                               "--checkpoint-every", 5, *TINY)
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("main1.py: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], stderr
    assert "Traceback" not in stderr
    tensors = _checkpoint_tensors(out)  # the last checkpoint that fitted is intact
    assert tensors["global_step"] >= 5
    # main1.main ran in this process, and let go of every file of the run despite the error.
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [path for path in held if path.startswith(out)]
