"""main1.py end to end, in subprocesses, on a tiny synthetic MNIST-format dataset."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_main, write_mnist

import config
import latent
import main1
import outputs
import runs
import sampling
from config import GENERATORS, ModelConfig
from model import DeepConvolutionalGAN
from runs import restore_checkpoint

TINY = ("--batch-size", 8, "--snapshot-every", 5, "--seed", 7, "--checkpoint-every", 5)


@pytest.fixture(scope="module")
def cache_dir(classifier_cache):
    return classifier_cache


@pytest.fixture(scope="module")
def finished_run(data_dir, cache_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    code, stdout, stderr = run_main("--steps", 10, "--data-dir", data_dir, "--out-dir", out, *TINY,
                                    "--eval-every", 5, "--cache-dir", cache_dir)
    assert code == 0, stderr
    return out, stdout


def test_run_prints_seed_and_data_source(finished_run, data_dir):
    _, stdout = finished_run
    assert "seed: 7" in stdout and f"64 training images from {data_dir}" in stdout


def test_config_and_losses_are_written(finished_run):
    out, _ = finished_run
    config = json.loads(Path(os.path.join(out, "config.json")).read_text())
    assert config["steps"] == 10 and config["batch_size"] == 8 and config["seed"] == 7
    data_dir = config["data_dir"]
    assert config["data"] == {"reader": "idx", "path": data_dir, "sha256": {
        name: hashlib.sha256(Path(os.path.join(data_dir, name)).read_bytes()).hexdigest()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")}}
    lines = Path(os.path.join(out, "losses.csv")).read_text().splitlines()
    assert lines[0] == "step,d_loss,g_loss"
    rows = [list(map(float, line.split(","))) for line in lines[1:]]
    assert [r[0] for r in rows] == [5, 10]
    assert all(np.isfinite(r[1:]).all() and min(r[1:]) > 0 for r in rows)


def test_pictures_and_gifs_decode_with_the_right_sizes(finished_run):
    out, _ = finished_run
    tile = 28 + 2
    assert iio.imread(os.path.join(out, "loss.png")).ndim == 3
    assert iio.imread(os.path.join(out, "progress_step000010.png")).ndim == 3
    assert iio.imread(os.path.join(out, "samples_step000010.png")).shape == (4 * tile + 2, 8 * tile + 2)
    progress = iio.imread(os.path.join(out, "progress_step000010.gif"), index=None)
    assert progress.shape[:3] == (2, 4 * tile + 2, 8 * tile + 2)  # one frame per evaluation step
    for schedule in latent.MORPH_SCHEDULES:
        morph = iio.imread(os.path.join(out, f"morph_{schedule}_step000010.gif"), index=None)
        assert morph.shape[:3] == (32, 2 * (4 * tile + 2), 2 * (4 * tile + 2))


def test_tensorboard_holds_losses_and_sample_images(finished_run):
    out, _ = finished_run
    events = os.listdir(os.path.join(out, "tensorboard"))
    assert len(events) == 1
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(os.path.join(out, "tensorboard", events[0])):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss/discriminator"] == tags["loss/generator"] == tags["fixed_noise_samples"] == [5, 10]


def test_checkpoint_restores_into_a_fresh_graph_and_reproduces_the_samples(finished_run):
    out, _ = finished_run
    path = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    assert path.endswith("model.ckpt-10")
    graph = tf.Graph()
    with graph.as_default():
        gan = DeepConvolutionalGAN(ModelConfig(z_dim=64))
    session = tf.compat.v1.Session(graph=graph)
    restore_checkpoint(gan, session, path)
    assert session.run(gan.global_step) == 10
    z = latent.uniform_noise(np.random.default_rng([7, latent.SAMPLE_STREAM]), 32, 64)
    expected = outputs.to_uint8(outputs.tile_grid(sampling.Sampler(gan, session, "averaged", 7)(z), 4, 8))[..., 0]
    np.testing.assert_array_equal(iio.imread(os.path.join(out, "samples_step000010.png")), expected)


def test_evaluation_during_training_writes_metrics(finished_run, cache_dir):
    out, _ = finished_run
    lines = Path(os.path.join(out, "metrics.csv")).read_text().splitlines()
    assert lines[0] == ("step,generator,train_seconds,frechet_distance,classifier_score,class_kl_from_uniform,"
                        + ",".join(f"share_{c}" for c in range(10))
                        + ",precision,recall,density,coverage,instrument,best_step")
    rows = [line.split(",") for line in lines[1:]]
    assert [(int(r[0]), r[1]) for r in rows] == [(s, g) for s in (5, 10) for g in GENERATORS]
    seconds = [float(r[2]) for r in rows]
    assert 0 < seconds[0] == seconds[2] < seconds[3]  # training time before each evaluation
    for row in rows:
        distance, score, kl, *shares = map(float, row[3:16])
        assert distance >= 0 and 1 <= score <= 10 and kl >= 0 and sum(shares) == pytest.approx(1, abs=1e-3)
        assert all(0 <= float(value) <= 1 for value in row[16:18] + row[19:20])  # precision, recall, coverage
        assert float(row[18]) >= 0  # density: a mean count of balls over k, may pass 1
        assert row[20].startswith("digits sha256:")  # the committed instrument measured it
        assert int(row[21]) in (5, 10)  # the best evaluation so far
    assert iio.imread(os.path.join(out, "metrics.png")).ndim == 3


def test_evaluate_cli_scores_the_latest_checkpoint(finished_run, cache_dir):
    out, _ = finished_run
    result = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--out-dir", out,
                             "--cache-dir", cache_dir], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert "frechet_distance" in result.stdout and "real (floor)" in result.stdout
    assert "instrument: digits sha256:" in result.stdout  # the committed instrument: nothing was trained
    report = json.loads(Path(os.path.join(out, "evaluation.json")).read_text())
    assert report["step"] == 10 and report["n_samples"] == 64 and report["default_generator"] == "averaged"
    assert set(report["generators"]) == set(GENERATORS)
    assert all(len(m["class_shares"]) == 10 for m in report["generators"].values())
    assert report["real"]["classifier_score"] >= 1
    # Same checkpoint, same seed: the same figures as the run's last metrics rows.
    for line in Path(os.path.join(out, "metrics.csv")).read_text().splitlines()[-3:]:
        step, generator, _seconds, distance = line.split(",")[:4]
        assert float(distance) == pytest.approx(report["generators"][generator]["frechet_distance"], rel=1e-4)


def test_sample_writes_exactly_n_images_in_range_and_repeats_with_the_seed(finished_run):
    out, _ = finished_run
    code, stdout, stderr = run_main("--out-dir", out, "--sample", 1001, "--seed", 3)
    assert code == 0, stderr
    samples = np.load(os.path.join(out, "samples.npy"))
    assert samples.shape == (1001, 28, 28, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    tile = 28 + 2
    assert iio.imread(os.path.join(out, "samples.png")).shape == (8 * tile + 2, 8 * tile + 2)
    assert run_main("--out-dir", out, "--sample", 5, "--seed", 3)[0] == 0
    np.testing.assert_array_equal(np.load(os.path.join(out, "samples.npy")), samples[:5])
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_morph_remakes_the_gifs_from_the_checkpoint(finished_run):
    out, _ = finished_run
    gif = os.path.join(out, "morph_equal_step000010.gif")
    before = Path(gif).read_bytes()
    os.remove(gif)
    code, _, stderr = run_main("--out-dir", out, "--morph", "--seed", 7)
    assert code == 0, stderr
    assert Path(gif).read_bytes() == before  # same seed, same checkpoint: the same GIF


def test_sample_without_a_run_is_a_clear_error(tmp_path):
    code, _, stderr = run_main("--out-dir", tmp_path, "--sample", 10)
    assert code == 2 and "holds no run" in stderr and len(stderr.splitlines()) == 1


def test_a_second_run_in_the_same_out_dir_is_refused(finished_run, data_dir):
    out, _ = finished_run
    before = sorted(os.listdir(out))
    code, _, stderr = run_main("--steps", 10, "--data-dir", data_dir, "--out-dir", out, *TINY)
    assert code == 2 and "--resume" in stderr and "--overwrite" in stderr
    assert sorted(os.listdir(out)) == before


@pytest.mark.parametrize("recipe, extra", [("original", ()), ("tuned", ()), ("tuned", ("--conditional",)),
                                           ("fast", ("--lr-decay-steps", "16", "--augment", "translation+cutout",
                                                     "--relativistic", "--gradient-penalty", "1",
                                                     "--penalty-every", "3"))])
def test_resume_continues_bit_identically(data_dir, tmp_path, recipe, extra):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    common = ("--data-dir", data_dir, "--recipe", recipe, *extra, *TINY)
    assert run_main("--steps", 20, "--out-dir", straight, *common)[0] == 0
    assert run_main("--steps", 10, "--out-dir", split, *common)[0] == 0
    code, _, stderr = run_main("--steps", 20, "--out-dir", split, "--resume", "--data-dir", data_dir)
    assert code == 0, stderr
    assert Path(os.path.join(split, "losses.csv")).read_text() == Path(os.path.join(straight, "losses.csv")).read_text()
    a = tf.train.load_checkpoint(os.path.join(straight, "checkpoints", "model.ckpt-20"))
    b = tf.train.load_checkpoint(os.path.join(split, "checkpoints", "model.ckpt-20"))
    names = a.get_variable_to_shape_map()
    assert any("g_adam" in n for n in names) and any("moving_mean" in n for n in names)
    assert any("sn_u" in n for n in names) == (recipe != "original")
    assert json.loads(a.get_tensor("model_info"))["recipe"] == recipe
    assert json.loads(Path(os.path.join(split, "config.json")).read_text())["recipe"] == recipe
    assert json.loads(a.get_tensor("model_info"))["num_classes"] == (10 if "--conditional" in extra else 0)
    assert any("class_gains" in n for n in names) == ("--conditional" in extra)
    assert ("augment_key" in names) == ("--augment" in extra)
    for name in names:
        np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)


def test_resume_refuses_data_that_changed_since_the_run_began(finished_run, tmp_path, capsys):
    out = str(tmp_path / "copy")
    shutil.copytree(finished_run[0], out)
    config = json.loads(Path(os.path.join(out, "config.json")).read_text())
    config["data"]["sha256"]["train-images-idx3-ubyte.gz"] = "0" * 64  # as if the file had changed
    Path(os.path.join(out, "config.json")).write_text(json.dumps(config))
    assert main1.main(["--out-dir", out, "--resume", "--steps", "20"]) == 2
    image_file = os.path.join(config["data_dir"], "train-images-idx3-ubyte.gz")
    assert capsys.readouterr().err.strip() == (f"main1.py: error: {image_file}: changed since this run was "
                                               f"trained on it (SHA-256 was {'0' * 64})")


def _wait_for_first_checkpoint(out, process, seconds=120):
    folder = os.path.join(out, "checkpoints")
    deadline = time.time() + seconds
    while time.time() < deadline and process.poll() is None:
        if os.path.isfile(os.path.join(folder, "checkpoint")):
            return
        time.sleep(0.2)
    raise AssertionError("the run wrote no checkpoint")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_with_a_checkpoint_and_outputs(data_dir, tmp_path, signum, code):
    out = str(tmp_path / "run")
    command = [sys.executable, os.path.join(ROOT, "main1.py"), "--steps", "100000", "--out-dir", out,
               "--data-dir", data_dir, *map(str, TINY)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _wait_for_first_checkpoint(out, process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    stopped = re.findall(r"(SIG\w+) received: stopping after iteration (\d+)", stderr)
    assert len(stopped) == 1 and stopped[0][0] == signal.Signals(signum).name
    step = int(stopped[0][1])
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith(f"model.ckpt-{step}")
    assert f"outputs of iteration {step}" in stdout
    assert os.path.exists(os.path.join(out, f"samples_step{step:06d}.png"))
    rows = Path(os.path.join(out, "losses.csv")).read_text().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) <= step


def test_a_signal_that_another_error_replaced_on_its_way_out_is_still_reported_as_the_stop(tmp_path, monkeypatch,
                                                                                           capsys):
    """An Interrupted raised inside a C extension's import comes out as "ImportError:
    initialization failed": the command still ends with the stop's line and code, no traceback."""
    def run_then_fail_importing(*_):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except runs.Interrupted:
            raise ImportError("initialization failed") from None
    monkeypatch.setattr(main1, "run", run_then_fail_importing)
    assert main1.main(["--out-dir", str(tmp_path / "run")]) == 143
    err = capsys.readouterr().err.strip()
    assert err == "main1.py: stopped by SIGTERM; no checkpoint was written"


def test_an_error_without_a_signal_is_not_taken_for_a_stop(tmp_path, monkeypatch):
    def fail(*_):
        raise ImportError("initialization failed")
    monkeypatch.setattr(main1, "run", fail)
    with pytest.raises(ImportError):
        main1.main(["--out-dir", str(tmp_path / "run")])


BAD_INPUT = [
    (("--steps", "0"), "--steps must be a positive integer, got 0"),
    (("--batch-size", "0"), "--batch-size must be a positive integer, got 0"),
    (("--steps", "10", "--snapshot-every", "20"), "--snapshot-every (20) must not exceed --steps (10)"),
    (("--steps", "ten"), "argument --steps/--epochs: invalid int value: 'ten'"),
    (("--learning-rate", "-1"), "--learning-rate must be positive"),
    (("--beta1", "1.5"), "--beta1 must be in [0, 1)"),
    (("--data-dir", "/no/such/folder"), "--data-dir /no/such/folder: no such folder"),
    (("--batch-size", "1000"), "--batch-size 1000 exceeds the 64 training images"),
    (("--recipe", "best"), "argument --recipe: invalid choice: 'best'"),
    (("--without", "hinge"), "--without hinge: not a lever of --recipe original; add --recipe tuned or --recipe fast"),
    (("--recipe", "tuned", "--without", "dropout"), "argument --without: invalid choice: 'dropout'"),
]


@pytest.mark.parametrize("flags, message", BAD_INPUT, ids=[" ".join(f) for f, _ in BAD_INPUT])
def test_bad_flags_give_one_line_and_exit_code_2(flags, message, data_dir, tmp_path, capsys):
    code = main1.main(["--out-dir", str(tmp_path / "out"), "--data-dir", data_dir, *flags])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.splitlines() == [f"main1.py: error: {message}"] or (
        len(stderr.splitlines()) == 1 and message in stderr), stderr
    assert not os.path.exists(tmp_path / "out" / "config.json")


def test_a_bad_flag_in_a_real_process_prints_no_traceback(data_dir, tmp_path):
    code, stdout, stderr = run_main("--out-dir", tmp_path / "out", "--data-dir", data_dir, "--steps", "0",
                                    process=True)
    assert code == 2 and stderr == "main1.py: error: --steps must be a positive integer, got 0" and not stdout


def test_unwritable_out_dir_is_named(data_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, stderr = run_main("--out-dir", blocker / "out", "--data-dir", data_dir)
    assert code == 2 and stderr.startswith(f"main1.py: error: --out-dir {blocker / 'out'} is not writable")
    assert len(stderr.splitlines()) == 1


@pytest.mark.parametrize("case", ["wrong magic", "truncated"])
def test_bad_data_file_is_named_and_nothing_is_written(tmp_path, case):
    folder = tmp_path / "data"
    write_mnist(str(folder), n=4, compress=False)
    images = folder / "train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(b"\0\0\x08\x01" + data[4:] if case == "wrong magic" else data[:100])
    code, _, stderr = run_main("--out-dir", tmp_path / "out", "--data-dir", folder)
    assert code == 2 and len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert str(images) in stderr
    assert not os.path.exists(tmp_path / "out")


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    code, _, stderr = run_main("--out-dir", tmp_path, "--resume")
    assert code == 2 and "--resume: no run to continue" in stderr


def test_checking_flags_needs_no_tensorflow():
    code = ("import sys, main1; main1.main(['--steps', '0']); "
            "print('tensorflow' in sys.modules, 'model' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.stdout.split() == ["False", "False"], result.stderr


def _readme_flags():
    """The flags named in the first column of README.md's flag table."""
    text = Path(os.path.join(ROOT, "README.md")).read_text()
    table = text.split("## Flags", 1)[1].split("\n\n", 2)[1]
    return {flag for line in table.splitlines()[2:] for flag in re.findall(r"`(--[a-z0-9-]+)", line.split("|")[1])}


def test_the_readme_flag_table_lists_exactly_the_parsers_flags():
    parser_flags = {flag for names, _ in main1.FLAGS + main1.RUN_MODES for flag in names}
    assert _readme_flags() == parser_flags
    assert main1.parse_args(["--epochs", "7"]).steps == 7  # the original's name, kept as an alias


def test_recipe_choices_and_levers_come_from_the_config():
    args = main1.parse_args(["--recipe", "tuned", "--without", "hinge", "--without", "ttur"])
    assert args.recipe == "tuned" and args.without == ("hinge", "ttur") and args.learning_rate == 4e-4
    assert main1.parse_args([]).recipe == "original" and main1.parse_args([]).learning_rate == 1e-4
    assert main1.parse_args(["--recipe", "tuned", "--learning-rate", "2e-4"]).learning_rate == 2e-4
    assert config.RECIPES == ("original", "tuned", "fast")
    args = main1.parse_args(["--recipe", "fast"])
    assert (args.learning_rate, args.steps, args.batch_size) == tuple(
        config.recipe_value("fast", name) for name in ("learning_rate", "steps", "batch_size"))
    assert main1.parse_args(["--recipe", "fast", "--steps", "50"]).steps == 50


def test_a_colour_dataset_trains_end_to_end_with_colour_outputs(tmp_path):
    from test_datasets import write_cifar_binary

    data = tmp_path / "cifar"
    write_cifar_binary(str(data), n=8)
    out = tmp_path / "run"
    code, stdout, stderr = run_main("--dataset", "cifar10", "--data-dir", data, "--out-dir", out,
                                    "--steps", 4, "--snapshot-every", 2, "--batch-size", 4, "--seed", 1)
    assert code == 0, stderr
    assert "CIFAR-10: 40 training images" in stdout
    config = json.loads(Path(out / "config.json").read_text())
    assert config["dataset"] == "cifar10" and config["image_shape"] == [32, 32, 3]
    tile = 32 + 2
    assert iio.imread(out / "samples_step000004.png").shape == (4 * tile + 2, 8 * tile + 2, 3)
    assert iio.imread(out / "progress_step000004.gif", index=None).shape[0] == 2
    assert iio.imread(out / "morph_equal_step000004.gif", index=None).shape[-1] in (3, 4)
    code, _, stderr = run_main("--out-dir", out, "--sample", 3, "--seed", 1)
    assert code == 0, stderr
    assert np.load(out / "samples.npy").shape == (3, 32, 32, 3)


def test_scoring_an_unlabelled_folder_is_a_clear_error(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    code, _, stderr = run_main("--dataset", "folder", "--data-dir", tmp_path, "--image-size", 32,
                               "--out-dir", tmp_path / "run", "--steps", 2, "--snapshot-every", 1,
                               "--batch-size", 2, "--eval-every", 1)
    assert code == 2 and "folder dataset has no labels" in stderr and len(stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_run_made_to_collapse_stops_with_the_best_kept(tmp_path, cache_dir):
    """A learning rate of 0.05 wrecks the generator at once: by the first evaluation all its
    samples look like one digit."""
    out = str(tmp_path / "collapse")
    code, stdout, stderr = run_main("--offline", "--out-dir", out, "--steps", 40, "--batch-size", 8,
                                    "--snapshot-every", 10, "--eval-every", 10, "--checkpoint-every", 10, "--seed", 2,
                                    "--learning-rate", 0.05, "--stop-on-collapse", "--cache-dir", cache_dir)
    assert code == 0, stderr
    assert "signs of collapse" in stderr and "each make up under 5.0% of the samples" in stderr
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("stopped at iteration 10 (--stop-on-collapse): iteration 10: classes ")
    assert last.endswith(f"the best checkpoint, iteration 10 (Frechet distance "
                         f"{json.loads(Path(out, 'best.json').read_text())['frechet_distance']:.1f}), is "
                         f"{os.path.join(out, 'checkpoints', 'best.ckpt-10')} (--checkpoint best)")
    header = Path(out, "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "best_step"
    code, stdout, _ = run_main("--out-dir", out, "--sample", 3, "--checkpoint", "best")
    assert code == 0 and "3 samples of iteration 10" in stdout
    code, _, stderr = run_main("--out-dir", out, "--sample", 3, "--checkpoint", "30")
    assert code == 2 and "no checkpoint of iteration 30" in stderr and "(kept: 10)" in stderr
    # Continued without evaluation: trains on, keeps metrics.csv as it was, writes every final output.
    metrics = Path(out, "metrics.csv").read_bytes()
    code, stdout, stderr = run_main("--out-dir", out, "--resume", "--eval-every", 0, "--steps", 20)
    assert code == 0, stderr
    assert Path(out, "metrics.csv").read_bytes() == metrics
    for name in ("samples_step000020.png", "morph_equal_step000020.gif", "progress_step000020.png"):
        assert Path(out, name).is_file(), name
    # Evaluated again, past the signs of collapse: the columns keep a fresh run's order.
    code, stdout, stderr = run_main("--out-dir", out, "--resume", "--eval-every", 10, "--steps", 30,
                                    "--no-stop-on-collapse", "--cache-dir", cache_dir)
    assert code == 0, stderr
    assert "signs of collapse" in stderr and "stopped at iteration" not in stdout
    lines = Path(out, "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == header and {line.split(",")[0] for line in lines[1:]} == {"10", "30"}


def test_a_resumed_run_that_stopped_before_its_pictures_writes_them(finished_run, capsys):
    out = str(Path(finished_run[0]).parent / "no-pictures")
    shutil.copytree(finished_run[0], out)
    step = runs.checkpoint_step(runs.latest_checkpoint(out))
    os.remove(os.path.join(out, f"samples_step{step:06d}.png"))
    assert main1.main(["--out-dir", out, "--resume"]) == 0
    assert f"the run is at iteration {step}, its last; writing its missing final outputs" in capsys.readouterr().out
    assert Path(out, f"samples_step{step:06d}.png").is_file()
    assert main1.main(["--out-dir", out, "--resume"]) == 2
    assert f"already at iteration {step}" in capsys.readouterr().err


def test_a_best_json_naming_another_runs_checkpoint_is_refused(finished_run, capsys):
    out = str(Path(finished_run[0]).parent / "foreign-best")
    shutil.copytree(finished_run[0], out)
    best = json.loads(Path(out, "best.json").read_text())
    for named in ("../other-run/checkpoints/best.ckpt-20", "/tmp/best.ckpt-20", "checkpoints/model.ckpt-20"):
        Path(out, "best.json").write_text(json.dumps({**best, "checkpoint": named}))
        assert main1.main(["--out-dir", out, "--sample", "2", "--checkpoint", "best"]) == 2
        assert f"names '{named}', which is not this run's checkpoints/best.ckpt-N" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (("--checkpoint", "best"), "--checkpoint goes with --sample, --morph, --export or --explore"),
    (("--checkpoint", "newest", "--sample", "2"), "--checkpoint must be latest, best or an iteration"),
    (("--stop-on-collapse",), "--stop-on-collapse needs --eval-every"),
])
def test_checkpoint_and_collapse_flags_are_checked(finished_run, flags, message, capsys):
    assert main1.main(["--out-dir", finished_run[0], *flags]) == 2
    assert message in capsys.readouterr().err


def test_best_on_a_run_without_evaluations_is_one_line(finished_run, capsys):
    out = str(Path(finished_run[0]).parent / "plain")
    shutil.copytree(finished_run[0], out)
    os.remove(os.path.join(out, "best.json"))
    assert main1.main(["--out-dir", out, "--sample", "2", "--checkpoint", "best"]) == 2
    assert "has no best checkpoint (best.json is written by a run with --eval-every)" in capsys.readouterr().err


def _metric_distances(out):
    """{(step, generator): Frechet distance} of the run's metrics.csv."""
    rows = [line.split(",") for line in Path(out, "metrics.csv").read_text().splitlines()[1:]]
    return {(int(row[0]), row[1]): float(row[3]) for row in rows}


def test_evaluate_scores_the_checkpoint_asked_for(finished_run, cache_dir, tmp_path, capsys):
    """--checkpoint best scores the checkpoint best.json names, not the latest. finished_run's best
    is its latest (10), so a copy is made whose best is iteration 5, as keep_best leaves a run whose
    evaluation at 5 was the best: its report has iteration 5's scores, the latest's have 10's."""
    import evaluate

    out = str(tmp_path / "best-earlier")
    shutil.copytree(finished_run[0], out)
    distances = _metric_distances(out)
    checkpoints = os.path.join(out, runs.CHECKPOINT_DIR)
    for suffix in runs.SAVER_SUFFIXES:
        shutil.copyfile(os.path.join(checkpoints, f"model.ckpt-5{suffix}"),
                        os.path.join(checkpoints, f"best.ckpt-5{suffix}"))
        os.remove(os.path.join(checkpoints, f"best.ckpt-10{suffix}"))
    Path(out, "best.json").write_text(json.dumps({"checkpoint": "checkpoints/best.ckpt-5", "generator": "averaged",
                                                  "frechet_distance": distances[5, "averaged"], "step": 5}))
    reports = {}
    for which in ("best", "latest"):
        assert evaluate.main(["--out-dir", out, "--checkpoint", which, "--cache-dir", cache_dir]) == 0
        reports[which] = json.loads(Path(out, "evaluation.json").read_text())
    assert (reports["best"]["step"], reports["latest"]["step"]) == (5, 10)
    tolerance = 1e-3  # metrics.csv keeps five decimals; the same checkpoint and seed give the same images
    # The two iterations score apart, so scoring the latest for best could not pass the checks below.
    assert max(abs(distances[5, g] - distances[10, g]) for g in GENERATORS) > 100 * tolerance
    for generator in GENERATORS:
        for which, step in (("best", 5), ("latest", 10)):
            assert reports[which]["generators"][generator]["frechet_distance"] == pytest.approx(
                distances[step, generator], abs=tolerance), (which, generator)
    capsys.readouterr()
    assert evaluate.main(["--out-dir", out, "--checkpoint", "9", "--cache-dir", cache_dir]) == 2
    assert "--checkpoint 9: no checkpoint of iteration 9" in capsys.readouterr().err


def test_the_fast_recipe_uses_bfloat16_only_where_the_cpu_has_it(monkeypatch, capsys):
    for has_bf16 in (True, False):
        monkeypatch.setattr(main1.runs, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert main1.chosen_precision(main1.parse_args(["--recipe", "fast"])).bf16 is has_bf16
        assert ("bf16: on" in capsys.readouterr().out) is has_bf16
        assert main1.chosen_precision(main1.parse_args(["--recipe", "fast", "--no-bf16"])).bf16 is False
        assert main1.chosen_precision(main1.parse_args(["--recipe", "tuned"])).bf16 is False
    assert main1.chosen_precision(main1.parse_args(["--bf16"])).bf16 is True  # typed: kept (checked elsewhere)


def test_checkpoint_n_chooses_the_iteration_to_export_and_morph(finished_run, tmp_path):
    """--export --checkpoint 5 exports iteration 5 of a run at 10; --morph --checkpoint 5 writes
    the GIFs of iteration 5, named with it, as the generator restored from checkpoint 5 draws them."""
    out = str(tmp_path / "copy")
    shutil.copytree(finished_run[0], out)
    code, stdout, stderr = run_main("--out-dir", out, "--export", "--checkpoint", 5)
    assert code == 0, stderr
    assert "exported iteration 5 (averaged generator)" in stdout
    assert json.loads(Path(out, "export", "saved_model", "assets", "metadata.json").read_text())["iteration"] == 5
    code, stdout, stderr = run_main("--out-dir", out, "--morph", "--checkpoint", 5)
    assert code == 0, stderr
    assert f"morphing GIFs of iteration 5 written to {out}" in stdout
    sampler, step = sampling.restore_run(runs.read_config(out), checkpoint="5")
    os.makedirs(tmp_path / "expected")
    with runs.RunFolder(str(tmp_path / "expected")) as folder:
        sampling.write_morphs(sampler, folder, step)
    for schedule in latent.MORPH_SCHEDULES:
        name = f"morph_{schedule}_step000005.gif"
        assert Path(out, name).read_bytes() == Path(tmp_path, "expected", name).read_bytes(), name
        assert Path(out, name).read_bytes() != Path(out, name.replace("000005", "000010")).read_bytes(), name


def test_explore_serves_the_checkpoint_asked_for(finished_run):
    from test_explore import request, start_explorer, stop

    process, url = start_explorer(finished_run[0], "--checkpoint", "5")
    try:
        status, info = request(url + "api/info")
    finally:
        code, _, stderr = stop(process)
    assert status == 200 and info["iteration"] == 5 and code == 130, stderr
