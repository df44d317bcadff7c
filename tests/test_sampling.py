"""sampling.py: images from a generator in any batch, the averaged generator's re-estimated batch
norm, sample and class grids, morphing GIFs, and the label and disk checks of --sample."""
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_main
from tiny_gan import Z_DIM, build, feed

import latent
import outputs
import runs
import sampling
from runs import UsageError
from sampling import Sampler, generate, reestimate_batch_norm

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def trained():
    """A model after a few train steps, so batch-norm averages are no longer their initial values."""
    graph, gan, session = build()
    for step in range(3):
        session.run(gan.train_op, feed(gan, seed=step))
    return graph, gan, session


@pytest.fixture(scope="module")
def conditional():
    """A tiny class-conditional model (three classes) after two train steps."""
    graph, gan, session = build(seed=2, num_classes=3, conditioning="concat")
    for step in range(2):
        values = feed(gan, seed=step)
        values[gan.labels] = np.arange(4) % 3
        session.run(gan.train_op, values)
    return graph, gan, session


def test_sampler_gives_the_same_image_for_the_same_z_in_any_batch(trained):
    graph, gan, session = trained
    z = np.random.default_rng(5).uniform(-1, 1, (1000, Z_DIM)).astype(np.float32)
    ops_before = len(graph.get_operations())
    alone = generate(gan, session, z[:1])
    in_seven = generate(gan, session, z[:7])
    in_thousand = generate(gan, session, z)
    assert in_thousand.shape == (1000, 28, 28, 1)
    np.testing.assert_allclose(in_seven[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(in_thousand[:7], in_seven, atol=1e-6)
    assert len(graph.get_operations()) == ops_before  # sampling adds no ops


def test_sampler_uses_the_batch_norm_moving_averages(trained):
    graph, gan, session = trained
    with graph.as_default():
        means = [v for v in v1.global_variables() if v.name.endswith("moving_mean:0")]
    assert means and all(np.abs(session.run(m)).max() > 0 for m in means)  # training moved them
    z = np.random.default_rng(6).uniform(-1, 1, (6, Z_DIM)).astype(np.float32)
    training_mode = session.run(gan.fake_images, {gan.z: z})
    inference_mode = generate(gan, session, z)
    assert not np.allclose(training_mode, inference_mode, atol=1e-4)


def test_averaged_sampling_with_reestimated_statistics_is_deterministic(trained):
    graph, gan, session = trained
    rng = np.random.default_rng(11)
    batches = [rng.uniform(-1, 1, (64, Z_DIM)).astype(np.float32) for _ in range(3)]
    z = rng.uniform(-1, 1, (9, Z_DIM)).astype(np.float32)
    ops_before = len(graph.get_operations())
    assert reestimate_batch_norm(gan, session, batches) == 4  # mean and variance of two layers
    first = generate(gan, session, z, "averaged")
    with graph.as_default():
        stats = [v for v in v1.global_variables() if v.name.endswith("moving_mean_of_averaged:0")]
    estimated = [session.run(v) for v in stats]
    reestimate_batch_norm(gan, session, batches)
    np.testing.assert_array_equal(generate(gan, session, z, "averaged"), first)
    assert len(graph.get_operations()) == ops_before
    # The estimate is the mean over the batches of each layer's batch moments.
    per_batch = [session.run(gan.bn_batch_values, {gan.sample_z: b}) for b in batches]
    expected = np.mean([values[0] for values in per_batch], axis=0)  # first layer's mean
    assert len(stats) == 2
    np.testing.assert_allclose(estimated[0], expected, rtol=1e-5, atol=1e-7)


def test_raw_batch_statistics_sampling_depends_on_the_batch(trained):
    _, gan, session = trained
    z = np.random.default_rng(12).uniform(-1, 1, (8, Z_DIM)).astype(np.float32)
    whole = generate(gan, session, z, "raw-batch-stats")
    halves = np.concatenate([generate(gan, session, z[:4], "raw-batch-stats"),
                             generate(gan, session, z[4:], "raw-batch-stats")])
    assert whole.shape == (8, 28, 28, 1) and not np.allclose(whole, halves)


def test_the_sampler_reestimates_the_average_only_when_the_weights_moved(trained):
    _, gan, session = trained
    sampler = Sampler(gan, session, "averaged", seed=3)
    z = np.random.default_rng(13).uniform(-1, 1, (5, Z_DIM)).astype(np.float32)
    first = sampler(z)
    np.testing.assert_array_equal(sampler(z), first)  # same step: same statistics, same images
    assert not np.allclose(sampler(z, generator="raw"), first)  # the other weights
    assert sampler._estimated_at == int(session.run(gan.global_step))


def test_a_conditional_generator_draws_the_classes_asked_for(conditional):
    _, gan, session = conditional
    z = np.random.default_rng(14).uniform(-1, 1, (1, Z_DIM)).astype(np.float32)
    by_class = [generate(gan, session, z, labels=[k]) for k in range(3)]
    assert not np.allclose(by_class[0], by_class[1]) and not np.allclose(by_class[1], by_class[2])
    # Without labels, rows are classes 0, 1, 2, 0, ... in turn.
    np.testing.assert_allclose(generate(gan, session, np.repeat(z, 3, axis=0)), np.concatenate(by_class),
                               atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        generate(gan, session, np.repeat(z, 2, axis=0), labels=[0])


def test_grids_and_gifs_are_written_with_the_right_sizes(trained, conditional, tmp_path):
    with runs.RunFolder(str(tmp_path)) as folder:
        plain = Sampler(trained[1], trained[2], "raw", seed=1)
        sampling.write_sample_grid(plain, folder, 7)
        sampling.write_morphs(plain, folder, 7)
        sampler = Sampler(conditional[1], conditional[2], "raw", seed=1)
        sampling.write_morphs(sampler, folder, 7, label=2)
        sampling.write_class_grid(sampler, folder, 7, ["a", "b", "c"])
    def grid(rows, columns):  # the tiles with their gaps
        return outputs.tile_grid(np.zeros((rows * columns, 28, 28, 1), np.float32), rows, columns).shape[:2]
    assert iio.imread(tmp_path / "samples_step000007.png").shape[:2] == grid(4, 8)
    for name in ("fast-slow", "equal", "fast-slow_class2", "equal_class2"):
        frames = iio.imread(tmp_path / f"morph_{name}_step000007.gif", index=None)
        assert frames.shape[:3] == (32, *(2 * side for side in grid(4, 4)))
    assert iio.imread(tmp_path / "classes_step000007.png").ndim >= 2


def test_morph_loops_hold_one_class_per_column_or_the_one_asked_for():
    np.testing.assert_array_equal(sampling.morph_labels(10), np.tile([0, 3, 6, 9], 4))
    np.testing.assert_array_equal(sampling.morph_labels(10, label=7), np.full(16, 7))
    np.testing.assert_array_equal(sampling.morph_labels(3), np.tile([0, 1, 1, 2], 4))


@pytest.mark.parametrize("label, classes, message", [
    (3, 0, "unconditional"), (10, 10, "has classes 0 to 9"), (-1, 10, "has classes 0 to 9")])
def test_a_label_outside_the_runs_classes_is_a_usage_error(label, classes, message):
    with pytest.raises(UsageError, match=message):
        sampling.check_label(label, classes, "results/x")
    sampling.check_label(None, classes, "results/x")
    sampling.check_label(0, 10, "results/x")


def test_sample_bytes_covers_the_arrays_it_writes():
    n, shape = 1000, (28, 28, 1)
    assert sampling.sample_bytes(n, shape, 0) >= 4 * n * 28 * 28
    assert sampling.sample_bytes(n, shape, 10) - sampling.sample_bytes(n, shape, 0) >= 8 * n


def test_sample_with_a_label_draws_the_runs_images_of_that_class(exported_run, tmp_path):
    """--sample N --label K: the images are those the run's generator draws for class K from
    --sample's seeded noise (so a sampler that ignored the label, or drew another class, fails)."""
    out = str(tmp_path / "copy")
    shutil.copytree(exported_run[0], out)
    n, label, seed = 6, 3, 4
    code, stdout, stderr = run_main("--out-dir", out, "--sample", n, "--label", label, "--seed", seed)
    assert code == 0, stderr
    samples = np.load(f"{out}/samples.npy")
    np.testing.assert_array_equal(np.load(f"{out}/labels.npy"), np.full(n, label))
    sampler, _ = sampling.restore_run(runs.read_config(out), seed=seed)
    z = latent.uniform_noise(np.random.default_rng([seed, latent.SAMPLE_STREAM]), n, sampler.z_dim)
    assert np.abs(samples - sampler(z, labels=[label] * n)).max() <= 1e-6
    # Each row differs from the next class's image of the same noise: the label reached the generator.
    other = sampler(z, labels=[label + 1] * n)
    assert np.abs(samples - other).reshape(n, -1).max(axis=1).min() > 0.01
