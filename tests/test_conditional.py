"""Class-conditional models: graphs with labels, sampling a class, scores of asking for a class,
and main1.py's --conditional / --label end to end on a tiny synthetic dataset."""
import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_main, toy_digits
from tiny_gan import Z_DIM, build, feed

import latent
import main1
import metrics
import outputs
import runs
import sampling
from config import ModelConfig, RunConfig
from model import DeepConvolutionalGAN
from runs import restore_checkpoint, save_checkpoint
from sampling import generate, reestimate_batch_norm

v1 = tf.compat.v1
CONDITIONED = [("original", "projection"), ("tuned", "projection"), ("original", "concat"), ("tuned", "concat")]


def _conditional(recipe="tuned", conditioning="projection", seed=0):
    return build(seed, recipe=recipe, num_classes=10, conditioning=conditioning)


def _randomise_class_terms(gan, session):
    """Class-conditional batch norm starts as plain batch norm (zero class gains and biases);
    give them values, as training would."""
    rng = np.random.default_rng(5)
    with gan.graph.as_default():
        for variable in gan.variables("generator"):
            if "class_" in variable.name:
                session.run(variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32)))


@pytest.mark.parametrize("recipe, conditioning", CONDITIONED)
def test_shapes_with_labels_and_a_label_changes_the_image_and_the_judgement(recipe, conditioning):
    _, gan, session = _conditional(recipe, conditioning)
    for batch in (1, 5):
        data = feed(gan, batch)
        data[gan.labels] = np.arange(batch) % 10
        images, logits = session.run([gan.fake_images, gan.real_logits], data)
        assert images.shape == (batch, 28, 28, 1) and logits.shape == (batch, 2)
        assert generate(gan, session, data[gan.z], "averaged").shape == (batch, 28, 28, 1)
    _randomise_class_terms(gan, session)
    z = np.repeat(np.random.default_rng(0).uniform(-1, 1, (1, Z_DIM)), 2, axis=0).astype(np.float32)
    three, seven = generate(gan, session, z, "raw", labels=[3, 7])
    assert np.abs(three - seven).max() > 1e-3
    logits = session.run(gan.real_logits, {gan.real_images: np.repeat(three[None], 2, axis=0), gan.labels: [3, 7]})
    assert np.abs(logits[0] - logits[1]).max() > 1e-4


@pytest.mark.parametrize("generator", ["raw", "averaged"])
def test_the_same_noise_and_label_give_the_same_image_in_any_batch(generator):
    _, gan, session = _conditional()
    _randomise_class_terms(gan, session)
    z = np.random.default_rng(1).uniform(-1, 1, (6, Z_DIM)).astype(np.float32)
    labels = np.array([4, 0, 9, 4, 2, 7])
    reestimate_batch_norm(gan, session, [np.random.default_rng(2).uniform(-1, 1, (16, Z_DIM))])
    together = generate(gan, session, z, generator, labels=labels)
    alone = np.concatenate([generate(gan, session, z[i:i + 1], generator, labels=labels[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # The default classes are balanced, 0, 1, 2, ... in turn.
    np.testing.assert_array_equal(generate(gan, session, z, generator), generate(gan, session, z, generator,
                                                                                    labels=np.arange(6)))


def test_restoring_conditional_into_unconditional_and_back_is_a_clear_error(tmp_path):
    _, conditional, session = _conditional("original")
    conditional_path = save_checkpoint(conditional, session, str(tmp_path / "conditional" / "model.ckpt"))
    _, plain, plain_session = build()
    plain_path = save_checkpoint(plain, plain_session, str(tmp_path / "plain" / "model.ckpt"))
    for path, config, message in (
            (conditional_path, ModelConfig(z_dim=Z_DIM), r"holds a conditional \(10 classes, projection\) mnist "
                                                         r".* model, not mnist 28x28x1"),
            (plain_path, ModelConfig(z_dim=Z_DIM, num_classes=10), r"holds a mnist 28x28x1, z_dim 8, recipe "
                                                                   r"original model, not conditional")):
        graph = tf.Graph()
        with graph.as_default():
            other = DeepConvolutionalGAN(config)
        with pytest.raises(runs.UsageError, match=message):
            restore_checkpoint(other, v1.Session(graph=graph), path)


def test_an_unconditional_graph_has_no_class_inputs_or_variables():
    _, gan, _ = build()
    names = [v.name for v in gan.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)]
    assert gan.labels is None and gan.sample_labels is None
    assert not [n for n in names if "class_" in n]


def test_batches_carry_the_labels_of_their_images():
    images = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)  # each image holds its index
    labels = np.arange(50) % 7
    feed = latent.TrainingFeed(images, 8, 3, seed=4, labels=labels)
    for iteration in (0, 6, 13):  # within the first pass, across its end, a later pass
        indices = feed.batch(iteration).reshape(-1).astype(int)
        np.testing.assert_array_equal(feed.batch_labels(iteration), labels[indices])
        assert feed.batch_labels(iteration).dtype == np.int32


def test_label_agreement_counts_images_the_classifier_names_as_asked(tmp_path):
    images, labels = toy_digits(600, 2)
    evaluator, info = metrics.build_evaluator(images, labels, cache_dir=str(tmp_path), classifier_steps=150,
                                               log=lambda _: None)
    right = evaluator.metrics(images, labels)
    wrong = evaluator.metrics(images, (labels + 1) % 3)
    assert right["label_agreement"] > 0.95 and wrong["label_agreement"] < 0.05
    assert len(right["class_label_agreement"]) == 3 and min(right["class_label_agreement"]) > 0.9
    assert len(right["class_frechet_distance"]) == 3
    assert evaluator.floor["label_agreement"] == info["heldout_accuracy"]
    row = outputs.metric_row(100, "raw", 1.0, wrong)
    assert row["label_agreement"] < 0.05 and row["worst_class_label_agreement"] < 0.05


def test_the_class_grid_has_one_named_row_per_class(monkeypatch, tmp_path):
    class FakeSampler:  # draws each image as a flat grey level: its class / 10
        num_classes, seed, z_dim = 3, 0, 4

        def __call__(self, z, generator=None, labels=None):
            return np.broadcast_to(np.asarray(labels, np.float32)[:, None, None, None] / 10, (len(z), 5, 5, 1))
    drawn = {}
    monkeypatch.setattr(outputs, "write_class_grid",
                        lambda path, picture, names: drawn.update(path=path, picture=picture, names=names))
    sampling.write_class_grid(FakeSampler(), runs.RunFolder(str(tmp_path)), 40, ["cat", "dog", "frog"])
    picture = drawn["picture"]
    assert drawn["names"] == ["cat", "dog", "frog"] and drawn["path"].endswith("classes_step000040.png")
    assert picture.shape == (3 * 7 + 2, sampling.CLASS_GRID_COLUMNS * 7 + 2, 1)
    for row in range(3):  # every tile of a row is its class
        np.testing.assert_allclose(picture[2 + 7 * row:7 + 7 * row, 2:-2:7], row / 10)


def test_morph_labels_hold_one_class_or_one_per_column():
    assert sampling.morph_labels(10, 6).tolist() == [6] * 16
    assert sampling.morph_labels(10).tolist() == [0, 3, 6, 9] * 4


# ----------------------------------------------------------------------------- main1.py end to end
TINY = ("--batch-size", 8, "--snapshot-every", 5, "--seed", 7, "--checkpoint-every", 5)


@pytest.fixture(scope="module")
def conditional_run(data_dir, classifier_cache, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conditional"))
    code, _, stderr = run_main("--steps", 10, "--data-dir", data_dir, "--out-dir", out, "--conditional",
                               "--recipe", "tuned", *TINY, "--eval-every", 10,
                               "--cache-dir", classifier_cache)
    assert code == 0, stderr
    return out


def test_a_conditional_run_writes_its_class_grid_and_label_scores(conditional_run):
    config = json.loads(Path(os.path.join(conditional_run, "config.json")).read_text())
    assert config["conditional"] and config["num_classes"] == 10 and config["conditioning"] == "projection"
    grid = iio.imread(os.path.join(conditional_run, "classes_step000010.png"))
    assert grid.ndim == 3 and grid.shape[0] > grid.shape[1]  # ten rows of eight
    header = Path(os.path.join(conditional_run, "metrics.csv")).read_text().splitlines()[0].strip().split(",")
    assert "label_agreement" in header and "worst_class_label_agreement" in header


def test_sample_writes_balanced_labels_and_label_k_only_k(conditional_run):
    code, stdout, stderr = run_main("--out-dir", conditional_run, "--sample", 25, "--seed", 3)
    assert code == 0, stderr
    labels = np.load(os.path.join(conditional_run, "labels.npy"))
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(25)]
    assert np.load(os.path.join(conditional_run, "samples.npy")).shape == (25, 28, 28, 1)
    code, _, stderr = run_main("--out-dir", conditional_run, "--sample", 6, "--seed", 3, "--label", 4)
    assert code == 0, stderr
    assert np.load(os.path.join(conditional_run, "labels.npy")).tolist() == [4] * 6
    code, _, stderr = run_main("--out-dir", conditional_run, "--morph", "--label", 2)
    assert code == 0, stderr
    assert os.path.isfile(os.path.join(conditional_run, "morph_equal_class2_step000010.gif"))


@pytest.mark.parametrize("flags, message", [
    (("--sample", 5, "--label", 10), "--label 10: the run in {out} has classes 0 to 9"),
    (("--morph", "--label", -1), "--label -1: the run in {out} has classes 0 to 9"),
])
def test_a_bad_label_is_one_line_and_exit_code_2(conditional_run, capsys, flags, message):
    flags = [str(f) for f in flags]
    assert main1.main(["--out-dir", conditional_run, *flags]) == 2
    assert capsys.readouterr().err.splitlines() == [f"main1.py: error: {message.format(out=conditional_run)}"]


def test_a_label_when_training_is_one_line_and_exit_code_2(data_dir, tmp_path, capsys):
    assert main1.main(["--out-dir", str(tmp_path / "new"), "--data-dir", data_dir, "--conditional",
                       "--label", "3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "main1.py: error: --label goes with --sample or --morph (training a --conditional run uses every class)"]


def test_a_label_on_an_unconditional_run_is_one_line_and_exit_code_2(data_dir, tmp_path, capsys):
    out = str(tmp_path / "plain")
    os.makedirs(out)
    Path(os.path.join(out, "config.json")).write_text(json.dumps(RunConfig(seed=1, image_shape=(28, 28, 1)).to_json()))
    assert main1.main(["--out-dir", out, "--sample", "5", "--label", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"main1.py: error: --label: the run in {out} is unconditional (trained without --conditional)"]


def test_conditional_needs_a_labelled_dataset(tmp_path, capsys):
    assert main1.main(["--dataset", "folder", "--data-dir", str(tmp_path), "--conditional",
                       "--out-dir", str(tmp_path / "out")]) == 2
    assert "--conditional needs a labelled dataset" in capsys.readouterr().err
