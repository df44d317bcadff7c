"""The two recipes: `original` is the exercise's graph unchanged; each lever of `tuned` on its own."""
import numpy as np
import pytest
import tensorflow as tf
from tiny_gan import build, feed

from config import TUNED_LEVERS, ModelConfig, describe, recipe_value
from model import (
    AUGMENT_KEY,
    DISCRIMINATOR_SCOPE,
    GENERATOR_SCOPE,
    SPECTRAL_NORM_UPDATES,
    diff_augment,
    discriminator,
    realness,
    spectral_normalize,
)
from runs import UsageError, restore_checkpoint, save_checkpoint

v1 = tf.compat.v1

# The original exercise's variables, as this project has always built them (z_dim 8 here).
ORIGINAL_VARIABLES = [
    ("global_step", []), ("generator/project/weights", [8, 6272]), ("generator/project_bn/beta", [128]),
    ("generator/project_bn/gamma", [128]), ("generator/project_bn/moving_mean", [128]),
    ("generator/project_bn/moving_variance", [128]), ("generator/deconv0/weights", [5, 5, 64, 128]),
    ("generator/deconv0_bn/beta", [64]), ("generator/deconv0_bn/gamma", [64]),
    ("generator/deconv0_bn/moving_mean", [64]), ("generator/deconv0_bn/moving_variance", [64]),
    ("generator/deconv1/weights", [5, 5, 1, 64]), ("generator/deconv1/biases", [1]),
    ("discriminator/conv0/weights", [5, 5, 1, 64]), ("discriminator/conv0/biases", [64]),
    ("discriminator/conv0_bn/beta", [64]), ("discriminator/conv0_bn/gamma", [64]),
    ("discriminator/conv1/weights", [5, 5, 64, 128]), ("discriminator/conv1/biases", [128]),
    ("discriminator/conv1_bn/beta", [128]), ("discriminator/conv1_bn/gamma", [128]),
    ("discriminator/classify/weights", [6272, 2]), ("discriminator/classify/biases", [2]),
]


def variable_shapes(graph):
    with graph.as_default():
        return [(v.op.name, v.shape.as_list()) for v in v1.global_variables()]



def power_iteration_sigma(matrix, steps, seed=0):
    """sigma of a [fan_in, units] numpy matrix after `steps` power iterations, as
    spectral_normalize computes it."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        weights = tf.constant(matrix, tf.float32)
        normalized = spectral_normalize(weights)
        update = [v1.assign(u, u_next) for u, u_next in v1.get_collection(SPECTRAL_NORM_UPDATES)]
        sigma = weights[0, 0] / normalized[0, 0]
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(steps - 1):
                session.run(update)
            return float(session.run(sigma))


def test_original_builds_the_exercise_graph_unchanged():
    graph, _, _ = build()
    shapes = variable_shapes(graph)
    assert shapes[:len(ORIGINAL_VARIABLES)] == ORIGINAL_VARIABLES
    # The rest: Adam slots of those weights, the weight averages, the averaged generator's
    # batch-norm statistics and the model info; nothing of the tuned recipe.
    assert not [name for name, _ in shapes if "sn_u" in name]
    assert len(shapes) == 76


def test_tuned_keeps_the_generator_and_normalises_the_discriminator_spectrally():
    original, _, _ = build()
    tuned, gan, _ = build(recipe="tuned")
    generator = [item for item in variable_shapes(original) if item[0].startswith("generator/")
                 and "adam" not in item[0]]
    assert [item for item in variable_shapes(tuned) if item[0].startswith("generator/")
            and "adam" not in item[0]] == generator
    d_names = {v.op.name for v in gan.variables(DISCRIMINATOR_SCOPE)}
    assert d_names == {f"discriminator/{layer}/{kind}" for layer in ("conv0", "conv1", "classify")
                       for kind in ("weights", "biases")}  # no batch norm left in D
    assert sorted(name for name, _ in variable_shapes(tuned) if name.endswith("sn_u")) == [
        "discriminator/classify/sn_u", "discriminator/conv0/sn_u", "discriminator/conv1/sn_u"]


def test_without_spectral_norm_the_tuned_discriminator_has_batch_norm_but_not_on_its_input():
    _, gan, _ = build(recipe="tuned", without=("spectral_norm",))
    names = {v.op.name for v in gan.variables(DISCRIMINATOR_SCOPE)}
    assert "discriminator/conv1_bn/gamma" in names and "discriminator/conv0_bn/gamma" not in names


@pytest.mark.parametrize("shape", [(6, 4), (40, 3), (3, 30)])
def test_power_iteration_converges_to_the_largest_singular_value(shape):
    rng = np.random.default_rng(sum(shape))
    matrix = rng.normal(size=shape)
    singular_values = np.linalg.svd(matrix, compute_uv=False)
    assert power_iteration_sigma(matrix, 200) == pytest.approx(singular_values[0], rel=1e-4)
    # One step from a random start is an underestimate: sigma = v^T W u <= the top value.
    assert power_iteration_sigma(matrix, 1) <= singular_values[0] * (1 + 1e-6)


def test_spectrally_normalised_layers_have_unit_norm_after_training_steps():
    graph, gan, session = build(recipe="tuned")
    for step in range(60):  # the power iteration refines once per step
        session.run(gan.train_op, feed(gan, seed=step))
    with graph.as_default():
        weights = {v.op.name: v for v in gan.variables(DISCRIMINATOR_SCOPE) if v.op.name.endswith("weights")}
    for name, variable in weights.items():
        matrix = session.run(variable).reshape(-1, variable.shape[-1])
        top = np.linalg.svd(matrix, compute_uv=False)[0]
        with graph.as_default(), v1.variable_scope(name.rsplit("/", 1)[0], reuse=True):
            u = v1.get_variable("sn_u")
        u = session.run(u)
        # One refinement per step, of weights that move: the stored vector tracks the top right
        # singular vector, so |W u| approaches sigma from below.
        assert 0.85 * top <= np.linalg.norm(matrix @ u) <= top * (1 + 1e-5), name


def test_hinge_losses_follow_their_formulas():
    graph, gan, session = build(recipe="tuned")
    values = feed(gan, 6, seed=3)
    with graph.as_default():
        real = realness(discriminator(gan.real_images, gan.config, reuse=True))
        fake = realness(discriminator(gan.fake_images, gan.config, reuse=True))
    d_loss, g_loss, s_real, s_fake = session.run([gan.d_loss, gan.g_loss, real, fake], values)
    expected_d = np.mean(np.maximum(0, 1 - s_real)) + np.mean(np.maximum(0, 1 + s_fake))
    assert d_loss == pytest.approx(expected_d, rel=1e-5)
    assert g_loss == pytest.approx(-np.mean(s_fake), rel=1e-5, abs=1e-6)


def test_without_hinge_the_losses_are_the_cross_entropy_ones():
    graph, gan, session = build(recipe="tuned", without=("hinge",))
    values = feed(gan, 6, seed=3)
    with graph.as_default():
        real = realness(discriminator(gan.real_images, gan.config, reuse=True))
        fake = realness(discriminator(gan.fake_images, gan.config, reuse=True))
    d_loss, g_loss, s_real, s_fake = session.run([gan.d_loss, gan.g_loss, real, fake], values)
    def softplus(x):
        return np.log1p(np.exp(x))
    assert d_loss == pytest.approx(np.mean(softplus(-s_real)) + np.mean(softplus(s_fake)), rel=1e-4)
    assert g_loss == pytest.approx(np.mean(softplus(-s_fake)), rel=1e-4)


def _largest_change(session, variables, before):
    return max(np.abs(session.run(v) - b).max() for v, b in zip(variables, before, strict=True))


@pytest.mark.parametrize("without, d_over_g", [((), 4.0), (("ttur",), 1.0)])
def test_the_discriminator_learns_at_four_times_the_generator_rate(without, d_over_g):
    # Adam's first step moves each weight by almost exactly the learning rate (|m / sqrt(v)| = 1).
    graph, gan, session = build(recipe="tuned", without=without, learning_rate=1e-4)
    d_vars, g_vars = gan.variables(DISCRIMINATOR_SCOPE), gan.variables(GENERATOR_SCOPE)
    d_before, g_before = session.run(d_vars), session.run(g_vars)
    session.run(gan.train_op, feed(gan))
    assert _largest_change(session, g_vars, g_before) == pytest.approx(1e-4, rel=1e-3)
    assert _largest_change(session, d_vars, d_before) == pytest.approx(d_over_g * 1e-4, rel=1e-3)


@pytest.mark.parametrize("without, decay", [((), 0.1), (("ema_warmup",), 0.999)])
def test_the_weight_average_warms_up(without, decay):
    # Warm-up: decay min(0.999, (1 + n) / (10 + n)) = 0.1 at the first update (n = 0).
    _, gan, session = build(recipe="tuned", without=without)
    g_vars = gan.variables(GENERATOR_SCOPE)
    before = session.run(g_vars)
    session.run(gan.train_op, feed(gan))
    after, averages = session.run(g_vars), session.run([gan.ema.average(v) for v in g_vars])
    for old, new, average in zip(before, after, averages, strict=True):
        np.testing.assert_allclose(average, decay * old + (1 - decay) * new, rtol=1e-5, atol=1e-7)


def test_tuned_training_is_deterministic_for_a_seed():
    losses = []
    for _ in range(2):
        _, gan, session = build(seed=3, recipe="tuned")
        losses.append([session.run([gan.train_op, gan.d_loss, gan.g_step_loss], feed(gan, seed=s))[1:]
                       for s in range(3)])
    assert losses[0] == losses[1]


def test_a_tuned_checkpoint_does_not_restore_into_an_original_model(tmp_path):
    _, gan, session = build(recipe="tuned")
    path = save_checkpoint(gan, session, str(tmp_path / "model.ckpt"))
    graph, other, other_session = build()
    with pytest.raises(UsageError, match="holds a mnist 28x28x1, z_dim 8, recipe tuned model, not "
                                         "mnist 28x28x1, z_dim 8, recipe original"):
        restore_checkpoint(other, other_session, path)


def test_config_refuses_levers_it_does_not_know_or_cannot_use():
    with pytest.raises(ValueError, match=r"without names unknown lever\(s\) \['dropout'\]"):
        ModelConfig(recipe="tuned", without=("dropout",))
    with pytest.raises(ValueError, match="without hinge: not a lever of --recipe original"):
        ModelConfig(without=("hinge",))
    with pytest.raises(ValueError, match="without ttur: not a lever of --recipe fast; add --recipe tuned"):
        ModelConfig(recipe="fast", without=("ttur",))
    with pytest.raises(ValueError, match="recipe must be one of"):
        ModelConfig(recipe="best")
    assert set(TUNED_LEVERS) == {"spectral_norm", "hinge", "ttur", "ema_warmup"}


def test_each_recipe_has_its_own_default_learning_rate():
    assert ModelConfig().learning_rate == 1e-4
    assert ModelConfig(recipe="tuned").learning_rate == 4e-4
    assert ModelConfig(recipe="tuned").d_learning_rate == pytest.approx(1.6e-3)
    assert ModelConfig(recipe="tuned", without=("ttur",)).d_learning_rate == 4e-4
    assert ModelConfig(recipe="tuned", learning_rate=1e-3).learning_rate == 1e-3


def test_the_fast_recipe_keeps_the_generator_and_sets_its_own_defaults():
    """Same generator variables as every recipe; its own levers, rates and length."""
    fast, tuned = build(recipe="fast"), build(recipe="tuned")
    generator = [v for v in variable_shapes(fast[0]) if v[0].startswith(GENERATOR_SCOPE + "/")]
    assert generator == [v for v in variable_shapes(tuned[0]) if v[0].startswith(GENERATOR_SCOPE + "/")]
    config = fast[1].config
    assert config.uses("spectral_norm") and config.uses("hinge") and not config.uses("ttur")
    assert config.d_learning_rate == config.learning_rate == recipe_value("fast", "learning_rate")
    assert config.lr_decay_steps == recipe_value("fast", "lr_decay_steps")
    assert ModelConfig(recipe="tuned").lr_decay_steps == 0


def test_the_learning_rates_decay_linearly_to_a_floor():
    """lr_decay_steps 4: both rates fall by equal steps to LR_DECAY_FLOOR of themselves at step 4 and
    stay there; Adam's first step moves each weight by almost exactly the rate it used."""
    graph, gan, session = build(recipe="fast", learning_rate=1e-3, lr_decay_steps=4)
    factors = []
    for step in range(6):
        factors.append(session.run(gan.rate_factor))
        session.run(gan.train_op, feed(gan, seed=step))
    np.testing.assert_allclose(factors, [1.0, 0.775, 0.55, 0.325, 0.1, 0.1], rtol=1e-6)
    graph, gan, session = build(recipe="fast", learning_rate=1e-3, lr_decay_steps=4)
    with graph.as_default():
        session.run(v1.assign(gan.global_step, 2))
    g_vars = gan.variables(GENERATOR_SCOPE)
    before = session.run(g_vars)
    session.run(gan.train_op, feed(gan))
    assert _largest_change(session, g_vars, before) == pytest.approx(0.55e-3, rel=1e-3)
    assert not hasattr(build(recipe="fast", lr_decay_steps=0)[1], "rate_factor")
    with pytest.raises(ValueError, match="lr_decay_steps must be 0"):
        ModelConfig(lr_decay_steps=-1)


def test_config_round_trips_and_reads_older_model_info():
    config = ModelConfig(image_shape=[32, 32, 3], recipe="tuned", without=["ttur", "hinge"], dataset="cifar10")
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.without == ("hinge", "ttur")
    older = {"image_shape": [28, 28, 1], "z_dim": 64, "dataset": "mnist"}  # before recipes existed
    assert ModelConfig.from_dict(older).recipe == "original"
    assert describe(config.info()) == "cifar10 32x32x3, z_dim 64, recipe tuned without hinge, ttur"


def test_the_discriminator_width_scales_only_the_discriminator():
    """discriminator_width 0.5: D's convs have 32 and 64 channels, G's variables are untouched,
    and the model still trains."""
    graph, gan, session = build(recipe="fast", discriminator_width=0.5)
    shapes = dict(variable_shapes(graph))
    assert shapes[DISCRIMINATOR_SCOPE + "/conv0/weights"] == [5, 5, 1, 32]
    assert shapes[DISCRIMINATOR_SCOPE + "/classify/weights"] == [7 * 7 * 64, 2]
    full = dict(variable_shapes(build(recipe="fast", discriminator_width=1.0)[0]))
    assert full[DISCRIMINATOR_SCOPE + "/conv1/weights"] == [5, 5, 64, 128]
    assert {k: v for k, v in shapes.items() if k.startswith(GENERATOR_SCOPE + "/")} == \
        {k: v for k, v in full.items() if k.startswith(GENERATOR_SCOPE + "/")}
    d_loss, _ = session.run([gan.d_loss, gan.train_op], feed(gan))
    assert np.isfinite(d_loss)
    assert ModelConfig(recipe="tuned").discriminator_width == 1.0
    with pytest.raises(ValueError, match=r"discriminator_width must be in \(0, 4\)"):
        ModelConfig(discriminator_width=0)


def test_diff_augment_shifts_and_blanks_each_image_and_repeats_a_steps_draws():
    """translation: every image is itself shifted by at most 1/8 of the side (zeros shifted in);
    cutout also blanks at most a square of half the side; the same seed draws the same, another
    step other draws, and the gradient reaches every pixel not blanked."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 28, 28, 1])
        step = v1.placeholder(tf.int32, [])
        shifted = diff_augment(images, "translation", tf.stack([step, 5]))
        cut = diff_augment(images, "translation+cutout", tf.stack([step, 5]))
        gradient = tf.gradients(tf.reduce_sum(cut), images)[0]
        session = v1.Session(graph=graph)
    batch = np.random.default_rng(0).random((32, 28, 28, 1)).astype(np.float32) + 0.1  # no zero pixel
    first, blanked, grad = session.run([shifted, cut, gradient], {images: batch, step: 3})
    np.testing.assert_array_equal(session.run(shifted, {images: batch, step: 3}), first)
    assert not np.array_equal(session.run(shifted, {images: batch, step: 4}), first)
    shifts = set()
    for image, out in zip(batch[..., 0], first[..., 0], strict=True):
        padded = np.pad(image, 4)
        matches = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                   if np.array_equal(padded[4 + dy:32 + dy, 4 + dx:32 + dx], out)]
        assert len(matches) == 1
        shifts.update(matches)
    assert len(shifts) > 10  # drawn per image
    blank = (blanked == 0) & (first != 0)  # cutout's own zeros
    assert 0 < blank.reshape(32, -1).sum(1).max() <= 14 * 14 and blank.reshape(32, -1).sum(1).min() > 0
    np.testing.assert_array_equal(blanked[~blank], first[~blank])
    assert (grad > 0).sum() > 0.5 * grad.size


def test_augmentation_leaves_the_generator_and_trains():
    """--augment: the same generator variables, one more (the draws' key), finite losses."""
    graph, gan, session = build(recipe="fast", augment="translation+cutout")
    shapes = dict(variable_shapes(graph))
    plain = dict(variable_shapes(build(recipe="fast")[0]))
    assert set(shapes) - set(plain) == {AUGMENT_KEY}
    assert {k: v for k, v in shapes.items() if k.startswith(GENERATOR_SCOPE + "/")} == \
        {k: v for k, v in plain.items() if k.startswith(GENERATOR_SCOPE + "/")}
    d_loss, _ = session.run([gan.d_loss, gan.train_op], feed(gan))
    assert np.isfinite(d_loss)
    with pytest.raises(ValueError, match="augment must be one of off, translation, translation\\+cutout"):
        ModelConfig(augment="flip")


def test_the_relativistic_loss_and_the_gradient_penalties_follow_their_formulas():
    """--relativistic: D's loss softplus(s_fake - s_real), G's the reverse, pair by pair; the
    penalty gamma/2 * every * (E|grad s(real)|^2 + E|grad s(fake)|^2) on the steps it is due, else 0."""
    graph, gan, session = build(recipe="fast", relativistic=True, gradient_penalty=3.0, penalty_every=2)
    values = feed(gan, 6, seed=3)
    with graph.as_default():
        def score_and_norm(images):
            score = realness(discriminator(images, gan.config, reuse=True))
            return score, tf.reduce_sum(tf.square(tf.gradients(tf.reduce_sum(score), images)[0]), axis=[1, 2, 3])
        (s_real, n_real), (s_fake, n_fake) = score_and_norm(gan.real_images), score_and_norm(gan.fake_images)
    d_loss, g_loss, penalty, r, f, nr, nf = session.run([gan.d_loss, gan.g_loss, gan.penalty, s_real, s_fake,
                                                          n_real, n_fake], values)
    def softplus(x):
        return np.log1p(np.exp(x))
    assert d_loss == pytest.approx(np.mean(softplus(f - r)), rel=1e-4)
    assert g_loss == pytest.approx(np.mean(softplus(r - f)), rel=1e-4)
    assert penalty == pytest.approx(3.0 / 2 * 2 * (nr.mean() + nf.mean()), rel=1e-3) and penalty > 0
    session.run(gan.train_op, values)
    assert session.run(gan.penalty, values) == 0  # step 1: not due
    with pytest.raises(ValueError, match="gradient_penalty must be at least 0, got -1"):
        ModelConfig(gradient_penalty=-1)
