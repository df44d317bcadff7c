"""The run folder is safe with a user's work: one trainer at a time, readers beside it, only the
program's own files deleted, damaged files refused in one line, clean stops in every phase."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TF_NOISE, run_main, tmpfs, write_mnist
from tiny_gan import Z_DIM, build, feed

import evaluate
import main1
import outputs
import runs
from config import ModelConfig
from model import GENERATOR_SCOPE, DeepConvolutionalGAN
from runs import UsageError, restore_checkpoint, save_checkpoint
from sampling import generate

v1 = tf.compat.v1

TINY = ("--batch-size", 8, "--snapshot-every", 5, "--seed", 7, "--checkpoint-every", 5)


def one_error_line(stderr, program="main1.py"):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_run(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("small") / "run")
    code, _, stderr = run_main("--steps", 10, "--data-dir", data_dir, "--out-dir", out, *TINY)
    assert code == 0, stderr
    return out


def copy_run(source, tmp_path):
    destination = str(tmp_path / "run")
    shutil.copytree(source, destination)
    return destination


def start(*args):
    command = [sys.executable, os.path.join(ROOT, "main1.py"), *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for_line(process, stream_name, text, seconds=120):
    """Read the process's stdout or stderr until a line holds `text` (the phase has begun)."""
    stream = getattr(process, stream_name)
    deadline = time.time() + seconds
    seen = []
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            raise AssertionError(f"ended before {text!r}: {''.join(seen)[-2000:]}")
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {seconds} s")


def finish(process, timeout=120):
    stdout, stderr = process.communicate(timeout=timeout)
    stderr = "\n".join(line for line in stderr.splitlines()
                       if not line.startswith(TF_NOISE) and not line.startswith("train:"))
    return process.returncode, stdout, stderr


def wait_for_checkpoint(out, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if runs.latest_checkpoint(out):
            return
        time.sleep(0.2)
    raise AssertionError("no checkpoint")


# ----------------------------------------------------------------------------- one trainer at a time
def test_a_second_trainer_is_refused_and_readers_work_beside_the_first(data_dir, tmp_path):
    out = str(tmp_path / "run")
    trainer = start("--steps", 100000, "--data-dir", data_dir, "--out-dir", out, *TINY)
    try:
        wait_for_checkpoint(out, trainer)
        for extra in ((), ("--overwrite",)):
            code, _, stderr = run_main("--steps", 20, "--data-dir", data_dir, "--out-dir", out, *TINY, *extra)
            assert code == 2
            assert f"is in use by process {trainer.pid} (main1.py" in one_error_line(stderr)
        code, _, stderr = run_main("--out-dir", out, "--resume", "--steps", 100001)
        assert code == 2 and f"process {trainer.pid}" in stderr
        # Peeking at a run in progress is normal use: a sample from its latest complete checkpoint.
        code, stdout, stderr = run_main("--out-dir", out, "--sample", 5)
        assert code == 0, stderr
        assert np.load(os.path.join(out, "samples.npy")).shape == (5, 28, 28, 1)
    finally:
        trainer.send_signal(signal.SIGINT)
        code, _, stderr = finish(trainer)
    assert code == 130, stderr
    config = json.loads(Path(os.path.join(out, "config.json")).read_text())
    assert config["steps"] == 100000  # the refused commands changed nothing
    assert os.path.exists(os.path.join(out, "losses.csv"))


def test_two_readers_of_one_output_the_second_is_refused(small_run, tmp_path):
    out = copy_run(small_run, tmp_path)
    folder = runs.RunFolder(out)
    folder.lock_for_reading("samples")  # as a --sample in progress would
    code = main1.main(["--out-dir", out, "--sample", "3"])
    assert code == 2  # the lock is this process's own, but flock is per open file: the same refusal


def test_overwrite_is_refused_while_a_reader_uses_the_folder(small_run, data_dir, tmp_path, capsys):
    out = copy_run(small_run, tmp_path)
    runs.RunFolder(out).lock_for_reading("evaluation")
    code = main1.main(["--out-dir", out, "--overwrite", "--data-dir", data_dir, "--steps", "10", *map(str, TINY)])
    assert code == 2 and "--overwrite: another command" in one_error_line(capsys.readouterr().err)
    assert os.path.exists(os.path.join(out, "losses.csv"))


# ----------------------------------------------------------------------------- only its own files
USER_FILES = ["progress_step_for_my_thesis.png", "samples_step_mine.png", "morph_notes_step1.gif",
              "checkpoints/my_notes.txt", "tensorboard/events.out.tfevents.123.mine", "notes.md"]


def test_overwrite_deletes_exactly_what_the_run_wrote(small_run, data_dir, tmp_path):
    out = copy_run(small_run, tmp_path)
    for name in USER_FILES:
        with open(os.path.join(out, name), "w") as stream:
            stream.write("the user's own")
    written = set(runs.RunFolder(out).manifest()["files"])
    assert "losses.csv" in written and not written & set(USER_FILES)
    code, stdout, stderr = run_main("--steps", 5, "--data-dir", data_dir, "--out-dir", out, "--overwrite",
                                    "--batch-size", 8, "--snapshot-every", 5, "--seed", 3)
    assert code == 0, stderr
    assert f"removed the {len([n for n in written if os.path.exists(os.path.join(small_run, n))])} files" in stdout
    for name in USER_FILES:
        assert Path(os.path.join(out, name)).read_text() == "the user's own", name
    assert not os.path.exists(os.path.join(out, "samples_step000010.png"))  # the old run's
    assert os.path.exists(os.path.join(out, "samples_step000005.png"))
    assert json.loads(Path(os.path.join(out, "config.json")).read_text())["seed"] == 3


def test_a_new_run_refuses_files_it_would_write_but_did_not(data_dir, tmp_path):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "loss.png").write_bytes(b"my plot")
    (out / "losses.csv").write_text("my numbers")
    code, _, stderr = run_main("--steps", 5, "--data-dir", data_dir, "--out-dir", out, "--snapshot-every", 5)
    assert code == 2
    line = one_error_line(stderr)
    assert "did not write (loss.png, losses.csv)" in line, line
    assert (out / "loss.png").read_bytes() == b"my plot" and not (out / "config.json").exists()
    code, _, stderr = run_main("--steps", 5, "--data-dir", data_dir, "--out-dir", out, "--snapshot-every", 5,
                               "--overwrite")
    assert code == 2 and "loss.png" in stderr  # --overwrite deletes only what the program wrote
    assert (out / "losses.csv").read_text() == "my numbers"


# ----------------------------------------------------------------------------- damaged files
DAMAGE = [
    ("a key removed", lambda c: {k: v for k, v in c.items() if k != "batch_size"}, "'batch_size' is missing"),
    ("a string for a number", lambda c: {**c, "z_dim": "64"}, "'z_dim' must be an integer"),
    ("an unknown recipe", lambda c: {**c, "recipe": "best"}, "'recipe' must be one of original, tuned"),
    ("a list instead of an object", lambda c: [c], "must be a JSON object, got list"),
    ("an unknown key", lambda c: {**c, "colour": 1}, "'colour' is not a setting of a run"),
    ("a broken data record", lambda c: {**c, "data": {"reader": "idx"}}, "'data' lacks path, sha256"),
]


@pytest.mark.parametrize("name, damage, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_config_is_one_line_for_every_command(small_run, tmp_path, capsys, name, damage, message):
    out = copy_run(small_run, tmp_path)
    path = os.path.join(out, "config.json")
    damaged = damage(json.loads(Path(path).read_text()))
    with open(path, "w") as stream:
        json.dump(damaged, stream)
    for argv in (["--resume", "--steps", "20"], ["--sample", "3"], ["--morph"]):
        assert main1.main(["--out-dir", out, *argv]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert message in line and path in line, argv
    assert evaluate.main(["--out-dir", out]) == 2
    assert message in one_error_line(capsys.readouterr().err, "evaluate.py")


def test_a_binary_config_or_checkpoint_index_is_one_line(small_run, tmp_path, capsys):
    out = copy_run(small_run, tmp_path)
    index = os.path.join(out, "checkpoints", "checkpoint")
    with open(index, "wb") as stream:
        stream.write(bytes(range(256)) * 4)
    assert main1.main(["--out-dir", out, "--sample", "3"]) == 2
    assert f"{index} is damaged" in one_error_line(capsys.readouterr().err)
    assert main1.main(["--out-dir", out, "--resume", "--steps", "20"]) == 2
    assert f"{index} is damaged" in one_error_line(capsys.readouterr().err)
    with open(os.path.join(out, "config.json"), "wb") as stream:
        stream.write(b"\xff\xfe\x00garbage")
    assert main1.main(["--out-dir", out, "--sample", "3"]) == 2
    assert "config.json: not a text file" in one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- data checked
def _image_folder(folder, n=6):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((40, 40), 30 * i, np.uint8)).save(os.path.join(folder, f"{i}.png"))


def test_a_changed_image_folder_is_refused_on_resume_and_its_own_outputs_are_not_data(tmp_path, capsys):
    data = str(tmp_path / "images")
    _image_folder(data)
    out = os.path.join(data, "run")  # the out dir inside --data-dir: its PNGs are never data
    common = ["--dataset", "folder", "--data-dir", data, "--image-size", "32", "--batch-size", "2",
              "--snapshot-every", "2", "--seed", "1"]
    assert main1.main([*common, "--out-dir", out, "--steps", "2"]) == 0
    recorded = json.loads(Path(os.path.join(out, "config.json")).read_text())["data"]
    assert sorted(recorded["sha256"]) == [f"{i}.png" for i in range(6)] and recorded["channels"] == 1
    assert main1.main(["--out-dir", out, "--resume", "--steps", "4"]) == 0  # its own PNGs are not data
    assert main1.main([*common, "--out-dir", out, "--steps", "2", "--overwrite"]) == 0
    assert json.loads(Path(os.path.join(out, "config.json")).read_text())["data"]["channels"] == 1
    capsys.readouterr()
    _image_folder(os.path.join(data, "more"), n=1)
    assert main1.main(["--out-dir", out, "--resume", "--steps", "6"]) == 2
    assert f"{os.path.join(data, 'more', '0.png')}: added since" in one_error_line(capsys.readouterr().err)
    shutil.rmtree(os.path.join(data, "more"))
    os.remove(os.path.join(data, "3.png"))
    assert main1.main(["--out-dir", out, "--resume", "--steps", "6"]) == 2
    assert f"{os.path.join(data, '3.png')}: this run was trained on it, and it is gone" in capsys.readouterr().err
    _image_folder(data, n=6)  # 3.png back, the same pixels: accepted again
    assert main1.main(["--out-dir", out, "--resume", "--steps", "6"]) == 0


def test_labels_outside_the_classes_are_one_line_before_anything_is_written(tmp_path):
    folder = str(tmp_path / "data")
    write_mnist(folder, n=16, compress=False)
    labels = os.path.join(folder, "train-labels-idx1-ubyte")
    data = bytearray(Path(labels).read_bytes())
    data[8 + 3] = 12
    Path(labels).write_bytes(bytes(data))
    for recipe in ("original", "tuned"):
        code, _, stderr = run_main("--out-dir", tmp_path / "out", "--data-dir", folder, "--recipe", recipe,
                                   "--conditional", "--steps", 2, "--snapshot-every", 1, "--batch-size", 4)
        assert code == 2
        assert one_error_line(stderr) == f"main1.py: error: {labels}: label 12 at index 3, expected 0..9"
    assert not (tmp_path / "out").exists()


def test_relative_data_and_out_dirs_work_from_anywhere(data_dir, tmp_path):
    relative = os.path.relpath(data_dir, ROOT)
    out = str(tmp_path / "run")
    assert run_main("--steps", 5, "--data-dir", relative, "--out-dir", out, *TINY)[0] == 0
    assert json.loads(Path(os.path.join(out, "config.json")).read_text())["data_dir"] == os.path.abspath(data_dir)
    # From the folder above the run, as `--out-dir results/mnist` is typed in the README.
    for command in (("--resume", "--steps", "10"), ("--sample", "3")):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "main1.py"), "--out-dir", "run", *command],
                                capture_output=True, text=True, cwd=str(tmp_path), check=False)
        assert result.returncode == 0, result.stderr
    assert np.load(os.path.join(out, "samples.npy")).shape == (3, 28, 28, 1)


# ----------------------------------------------------------------------------- disks and signals
@pytest.fixture
def tiny_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "40m") as folder:
        yield folder


def test_sample_checks_the_free_space_first_and_leaves_no_temp_file(small_run, tiny_disk, capsys):
    out = os.path.join(tiny_disk, "run")
    shutil.copytree(small_run, out)
    free = shutil.disk_usage(out).free
    assert main1.main(["--out-dir", out, "--sample", "20000"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("main1.py: error: --sample 20000: needs ") and " are free" in line
    needed, said_free = (int(word.replace(",", "")) for word in line.split() if word[0].isdigit() and "," in word)
    assert needed > 20000 * 28 * 28 * 4 and abs(said_free - free) < 1 << 20
    # Room for the check, not for the file: the write fails with one line, and leaves nothing.
    n = (free - (2 << 20)) // (4 * 28 * 28)
    filler = os.path.join(tiny_disk, "filler")
    with open(filler, "wb") as stream:
        stream.write(b"\0" * (free // 2))
    assert main1.main(["--out-dir", out, "--sample", str(n // 3)]) in (0, 2)
    os.remove(filler)
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_ctrl_c_while_sampling_removes_the_temp_file(small_run, tmp_path):
    out = copy_run(small_run, tmp_path)
    process = start("--out-dir", out, "--sample", 200000)
    wait_for_line(process, "stdout", "seed: 7")
    deadline = time.time() + 60
    while time.time() < deadline and not [n for n in os.listdir(out) if n.startswith(".samples.npy")]:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    code, _, stderr = finish(process)
    assert code == 130
    assert one_error_line(stderr).startswith("main1.py: stopped by SIGINT")
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    assert not os.path.exists(os.path.join(out, "samples.npy"))


def test_ctrl_c_at_start_up_leaves_a_folder_the_next_run_accepts(data_dir, tmp_path):
    out = str(tmp_path / "run")
    process = start("--steps", 20, "--data-dir", data_dir, "--out-dir", out, *TINY)
    wait_for_line(process, "stdout", "seed: 7")  # the graph is being built
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == 143
    assert one_error_line(stderr) == "main1.py: stopped by SIGTERM; no checkpoint was written"
    code, _, stderr = run_main("--steps", 10, "--data-dir", data_dir, "--out-dir", out, *TINY)
    assert code == 0, stderr


def test_two_ctrl_c_in_a_row_stop_at_once_with_one_line_and_a_resumable_run(data_dir, tmp_path):
    out = str(tmp_path / "run")
    process = start("--steps", 100000, "--data-dir", data_dir, "--out-dir", out, *TINY)
    wait_for_checkpoint(out, process)
    process.send_signal(signal.SIGINT)
    # Two signals sent while the process runs one long TensorFlow call arrive as one: the second
    # Ctrl-C is sent again until the process is gone (before that it is still training or writing).
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
    code, _, stderr = finish(process)
    assert code == 130
    lines = [line for line in stderr.splitlines() if line.startswith("main1.py")]
    assert len(lines) == 1 and "stopped by SIGINT; the latest complete checkpoint is iteration" in lines[0], stderr
    assert "Traceback" not in stderr
    step = runs.checkpoint_step(runs.latest_checkpoint(out))
    code, _, stderr = run_main("--out-dir", out, "--resume", "--steps", step + 5)
    assert code == 0, stderr


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_prints_its_scores_before_a_failed_write(small_run, classifier_cache, tmp_path, capsys,
                                                          monkeypatch):
    out = copy_run(small_run, tmp_path)
    real_write = outputs.write_atomic

    def read_only(path, data):
        if path.endswith("evaluation.json"):
            raise OSError(30, "Read-only file system", path)
        return real_write(path, data)
    monkeypatch.setattr(outputs, "write_atomic", read_only)
    assert evaluate.main(["--out-dir", out, "--cache-dir", classifier_cache]) == 1
    captured = capsys.readouterr()
    assert "frechet_distance" in captured.out
    error = one_error_line(captured.err, "evaluate.py")
    assert error.endswith("Read-only file system (the scores above are not saved)")


def test_samples_outside_zero_to_one_are_refused(small_run, classifier_cache, tmp_path, capsys):
    out = copy_run(small_run, tmp_path)
    for bad, message in ((np.nan, "NaN or infinite"), (255.0, "values from 0 to 255")):
        samples = np.zeros((64, 28, 28, 1), np.float32)
        samples[3, 0, 0, 0] = bad
        np.save(os.path.join(out, "bad.npy"), samples)
        assert evaluate.main(["--samples", os.path.join(out, "bad.npy"), "--cache-dir", classifier_cache]) == 2
        assert message in one_error_line(capsys.readouterr().err, "evaluate.py")


# ----------------------------------------------------------------------------- smaller promises
def test_morph_and_sample_without_seed_use_the_runs_own_and_keep_its_pictures(small_run, tmp_path, capsys):
    out = copy_run(small_run, tmp_path)
    gif = os.path.join(out, "morph_equal_step000010.gif")
    before = Path(gif).read_bytes()
    assert main1.main(["--out-dir", out, "--morph"]) == 0
    assert "seed: 7 (the run's" in capsys.readouterr().out
    assert Path(gif).read_bytes() == before
    assert main1.main(["--out-dir", out, "--morph", "--seed", "3"]) == 0
    assert Path(gif).read_bytes() == before and os.path.exists(os.path.join(out, "morph_equal_seed3_step000010.gif"))


@pytest.mark.parametrize("flags, message", [
    (("--out-dir", ""), "--out-dir must be a non-empty path, got ''"),
    (("--learning-rate", "inf"), "--learning-rate must be a finite number, got inf"),
    (("--ema-decay", "nan"), "--ema-decay must be a finite number, got nan"),
])
def test_empty_paths_and_non_finite_numbers_are_usage_errors(flags, message, capsys):
    assert main1.main(list(flags)) == 2
    assert one_error_line(capsys.readouterr().err) == f"main1.py: error: {message}"


# ----------------------------------------------------------------------------- checkpoints
def _generator_weights(gan, session):
    return {v.name: session.run(v) for v in gan.variables(GENERATOR_SCOPE)}


def _averages(gan, session):
    return {v.name: session.run(gan.ema.average(v)) for v in gan.variables(GENERATOR_SCOPE)}


def test_checkpoint_restores_into_a_fresh_graph(tmp_path):
    _, gan, session = build()
    for step in range(2):
        session.run(gan.train_op, feed(gan, seed=step))
    z = np.random.default_rng(7).uniform(-1, 1, (4, Z_DIM)).astype(np.float32)
    path = save_checkpoint(gan, session, str(tmp_path / "model.ckpt"))
    _, fresh, fresh_session = build(seed=99)
    assert not np.allclose(generate(fresh, fresh_session, z), generate(gan, session, z))
    restore_checkpoint(fresh, fresh_session, path)
    np.testing.assert_array_equal(generate(fresh, fresh_session, z), generate(gan, session, z))


def test_restoring_a_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    _, gan, session = build()
    path = save_checkpoint(gan, session, str(tmp_path / "model.ckpt"))
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        other = DeepConvolutionalGAN(ModelConfig(image_shape=(32, 32, 3), z_dim=Z_DIM, dataset="cifar10"))
    with pytest.raises(UsageError, match=r"holds a mnist 28x28x1, z_dim 8, recipe original model, "
                                         r"not cifar10 32x32x3, z_dim 8, recipe original"):
        restore_checkpoint(other, v1.Session(graph=graph), path)


def test_a_checkpoint_restores_both_weight_sets(tmp_path):
    _, gan, session = build(seed=5, ema_decay=0.5)
    for step in range(2):
        session.run(gan.train_op, feed(gan, 4, seed=step))
    path = save_checkpoint(gan, session, str(tmp_path / "model.ckpt"))
    _, fresh, fresh_session = build(seed=6, ema_decay=0.5)
    restore_checkpoint(fresh, fresh_session, path)
    for mine, theirs in ((_generator_weights(gan, session), _generator_weights(fresh, fresh_session)),
                         (_averages(gan, session), _averages(fresh, fresh_session))):
        for name in mine:
            np.testing.assert_array_equal(mine[name], theirs[name])


def test_a_checkpoint_records_its_whole_model_and_a_foreign_one_is_one_line(data_dir, tmp_path, capsys):
    """Every checkpoint holds its ModelConfig (the generator is rebuilt from it); one whose
    shape-defining settings are not its run's (here D's width) is refused in one line."""
    common = ["--steps", "2", "--batch-size", "8", "--snapshot-every", "1", "--data-dir", data_dir, "--seed", "1",
              "--recipe", "fast", "--no-bf16"]
    narrow, wide = str(tmp_path / "narrow"), str(tmp_path / "wide")
    assert main1.main([*common, "--out-dir", narrow]) == 0
    assert main1.main([*common, "--out-dir", wide, "--discriminator-width", "1"]) == 0
    record = runs.checkpoint_info(runs.latest_checkpoint(narrow))
    assert ModelConfig.from_dict(record["model_config"]) == runs.read_config(narrow).model_config()
    assert record["discriminator_width"] == 0.5
    for name in os.listdir(os.path.join(wide, "checkpoints")):
        if name.startswith("model.ckpt-2."):
            shutil.copy(os.path.join(wide, "checkpoints", name), os.path.join(narrow, "checkpoints", name))
    capsys.readouterr()
    assert main1.main(["--out-dir", narrow, "--sample", "2"]) == 2
    assert "is not a checkpoint of this run's model: discriminator_width 1.0 (config.json: 0.5); was it copied " \
           "from another run?" in capsys.readouterr().err
    assert main1.main(["--out-dir", narrow, "--resume", "--steps", "3"]) == 2
    assert "holds a mnist 28x28x1, z_dim 64, recipe fast model, not mnist 28x28x1, z_dim 64, recipe fast, " \
           "D width 0.5" in capsys.readouterr().err


def test_a_checkpoint_from_before_it_recorded_its_model_is_judged_on_what_it_recorded():
    from config import info_differences

    legacy = {"image_shape": [28, 28, 1], "z_dim": 64, "dataset": "mnist", "recipe": "fast", "without": [],
              "num_classes": 0}
    narrow = ModelConfig(recipe="fast", discriminator_width=0.5).info()
    assert info_differences(legacy, narrow) == {}  # no width recorded: its variables' shapes decide on restore
    assert info_differences({"image_shape": [28, 28, 1], "z_dim": 64}, ModelConfig(recipe="tuned").info()) == \
        {"recipe": ("original", "tuned")}  # the oldest checkpoints recorded no recipe: they were original
