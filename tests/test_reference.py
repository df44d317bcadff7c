"""reference.py: the plain Keras DCGAN, trained on the same data and scored on the same scale."""
import csv
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_mnist

import compare
import evaluate
import reference
from config import ModelConfig
from model import DISCRIMINATOR_SCOPE, GENERATOR_SCOPE, DeepConvolutionalGAN


def _kernel_shapes(model):
    return [tuple(w.shape) for w in model.weights if w.path.endswith("kernel")]


def test_the_reference_has_the_exercise_layer_sizes_and_no_batch_norm_on_d_input():
    graph = tf.Graph()
    with graph.as_default():
        gan = DeepConvolutionalGAN(ModelConfig())
        ours = {scope: [tuple(v.shape.as_list()) for v in gan.variables(scope) if v.op.name.endswith("weights")]
                for scope in (GENERATOR_SCOPE, DISCRIMINATOR_SCOPE)}
    generator, discriminator = reference.keras_networks()
    assert _kernel_shapes(generator) == ours[GENERATOR_SCOPE]
    assert _kernel_shapes(discriminator) == ours[DISCRIMINATOR_SCOPE]
    norms = [layer for layer in discriminator.layers if "batch_normalization" in layer.name]
    assert len(norms) == 1 and discriminator.layers.index(norms[0]) > 2  # after the second conv only
    _, original_d = reference.keras_networks(d_input_batch_norm=True)  # bench.py's like-for-like model
    assert len([layer for layer in original_d.layers if "batch_normalization" in layer.name]) == 2


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("mnist")
    write_mnist(str(data), n=64)
    out, cache = tmp_path_factory.mktemp("reference"), tmp_path_factory.mktemp("cache")
    code = reference.main(["--steps", "4", "--eval-every", "2", "--samples", "70", "--seed", "3",
                           "--data-dir", str(data), "--out-dir", str(out), "--cache-dir", str(cache)])
    assert code == 0
    return out, cache


def test_the_reference_writes_samples_metrics_and_config(reference_run):
    out, _ = reference_run
    samples = np.load(out / "samples.npy")
    assert samples.shape == (70, 28, 28, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    rows = list(csv.DictReader(Path(out / "metrics.csv").read_text().splitlines()))
    assert [(int(r["step"]), r["generator"]) for r in rows] == [(2, "raw"), (4, "raw")]
    assert 0 < float(rows[0]["train_seconds"]) < float(rows[1]["train_seconds"])
    config = json.loads(Path(out / "config.json").read_text())
    assert config["recipe"] == "reference" and config["steps"] == 4 and config["image_shape"] == [28, 28, 1]
    assert compare.run_label(str(out)) == ("mnist", "reference")


def test_evaluate_scores_the_reference_samples_like_a_run(reference_run, capsys):
    out, cache = reference_run
    assert evaluate.main(["--samples", str(out / "samples.npy"), "--cache-dir", str(cache)]) == 0
    assert "64 samples per set" in capsys.readouterr().out
    result = json.loads(Path(out / "evaluation.json").read_text())
    assert result["n_samples"] == 64 and len(result["samples"]["class_shares"]) == 10
    # Four iterations of training make noise, far from real digits: much farther than the floor.
    assert result["samples"]["frechet_distance"] > 5 * result["real"]["frechet_distance"]


def test_samples_of_the_wrong_shape_or_count_are_named(reference_run, tmp_path, capsys):
    out, cache = reference_run
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "config.json").write_text((out / "config.json").read_text())
    np.save(folder / "samples.npy", np.zeros((10, 28, 28, 1), np.float32))
    assert evaluate.main(["--samples", str(folder / "samples.npy"), "--cache-dir", str(cache)]) == 2
    error = capsys.readouterr().err
    assert "samples.npy: 10 images, expected at least 64" in error
    np.save(folder / "samples.npy", np.zeros((64, 32, 32, 1), np.float32))
    assert evaluate.main(["--samples", str(folder / "samples.npy"), "--cache-dir", str(cache)]) == 2
    assert "shape (64, 32, 32, 1), expected images of (28, 28, 1)" in capsys.readouterr().err


def test_bad_reference_flags_are_one_line_errors(tmp_path, capsys):
    assert reference.main(["--steps", "0", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "reference.py: error: --steps must be a positive integer"


def test_the_reference_trains_on_fashion_mnist_and_says_so(tmp_path):
    data, out = tmp_path / "fashion", tmp_path / "out"
    write_mnist(str(data), n=64)  # Fashion-MNIST's files have MNIST's names and format
    assert reference.main(["--dataset", "fashion_mnist", "--steps", "2", "--eval-every", "0", "--samples", "8",
                           "--data-dir", str(data), "--out-dir", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["dataset"] == "fashion_mnist"
    assert np.load(out / "samples.npy").shape == (8, 28, 28, 1)
    assert compare.run_label(str(out)) == ("fashion_mnist", "reference")


def test_a_stopped_reference_run_resumes_bit_for_bit(tmp_path, capsys, monkeypatch):
    data = tmp_path / "mnist"
    write_mnist(str(data), n=64)
    common = ["--seed", "2", "--batch-size", "8", "--eval-every", "3", "--samples", "16", "--data-dir", str(data),
              "--cache-dir", str(tmp_path / "cache"), "--checkpoint-every", "2"]
    assert reference.main([*common, "--steps", "6", "--out-dir", str(tmp_path / "straight")]) == 0
    # Stopped by Ctrl-C in its fourth iteration: it finishes that iteration, saves, says where.
    flags = []

    class StoppedAtFour(reference.training.SignalFlag):
        @property
        def signum(self):
            return signal.SIGINT if len(flags) >= 4 else None

        @signum.setter
        def signum(self, value):
            pass
    real_step = reference.keras_train_step

    def counting(*args, **kwargs):
        step = real_step(*args, **kwargs)

        def counted(*inner):
            flags.append(1)
            return step(*inner)
        counted.optimizers = step.optimizers
        return counted
    monkeypatch.setattr(reference.training, "SignalFlag", StoppedAtFour)
    monkeypatch.setattr(reference, "keras_train_step", counting)
    out = tmp_path / "stopped"
    assert reference.main([*common, "--steps", "6", "--out-dir", str(out)]) == 130
    assert "stopped by SIGINT; the latest checkpoint is iteration 4 (--resume continues from it)" in \
        capsys.readouterr().err
    monkeypatch.undo()
    assert reference.main([*common, "--steps", "6", "--out-dir", str(out)]) == 2
    assert "holds a reference run at iteration 4: --resume continues it" in capsys.readouterr().err
    assert reference.main([*common, "--steps", "6", "--out-dir", str(out), "--seed", "3"]) == 2
    assert reference.main([*common, "--steps", "6", "--out-dir", str(out), "--resume"]) == 0
    np.testing.assert_array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "straight" / "samples.npy"))
    resumed = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    straight = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").read_text().splitlines()))
    assert [row["frechet_distance"] for row in resumed] == [row["frechet_distance"] for row in straight]
    assert json.loads((out / "timing.json").read_text())["processes"] == 2
    assert sorted(path.name for path in (out / "checkpoints").glob("*.history.json")) == \
        ["reference-4.history.json", "reference-6.history.json"]  # those of the two checkpoints kept
