import numpy as np
import pytest
import tensorflow as tf
from tiny_gan import Z_DIM, build, feed

import model
from config import ModelConfig
from model import (
    DISCRIMINATOR_SCOPE,
    GENERATOR_SCOPE,
    DeepConvolutionalGAN,
    discriminator,
)
from runs import restore_checkpoint, save_checkpoint
from sampling import generate

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def trained():
    """A model after a few train steps, so batch-norm averages are no longer their initial values."""
    graph, gan, session = build()
    for step in range(3):
        session.run(gan.train_op, feed(gan, seed=step))
    return graph, gan, session


@pytest.mark.parametrize("batch", [1, 5])
def test_generator_and_discriminator_output_shapes(trained, batch):
    graph, gan, session = trained
    values = feed(gan, batch)
    fake = session.run(gan.fake_images, values)
    assert fake.shape == (batch, 28, 28, 1)
    assert fake.min() >= 0.0 and fake.max() <= 1.0
    assert generate(gan, session, values[gan.z]).shape == (batch, 28, 28, 1)
    with graph.as_default():
        logits = discriminator(gan.real_images, gan.config, reuse=True)
    assert session.run(logits, values).shape == (batch, 2)


def test_variables_are_split_by_scope():
    graph, gan, _ = build()
    with graph.as_default():
        g_vars = gan.variables(GENERATOR_SCOPE)
        d_vars = gan.variables(DISCRIMINATOR_SCOPE)
        trainable = v1.trainable_variables()
    assert g_vars and d_vars
    assert all(v.name.startswith("generator/") for v in g_vars)
    assert all(v.name.startswith("discriminator/") for v in d_vars)
    assert {v.name for v in g_vars} | {v.name for v in d_vars} == {v.name for v in trainable}
    assert not {v.name for v in g_vars} & {v.name for v in d_vars}
    shapes = {v.name: v.shape.as_list() for v in g_vars + d_vars}
    assert shapes["generator/project/weights:0"] == [Z_DIM, 7 * 7 * 128]
    assert shapes["generator/deconv0/weights:0"] == [5, 5, 64, 128]
    assert shapes["discriminator/conv0/weights:0"] == [5, 5, 1, 64]
    assert shapes["discriminator/conv1/weights:0"] == [5, 5, 64, 128]
    assert shapes["discriminator/classify/weights:0"] == [7 * 7 * 128, 2]


def _values(session, variables):
    return [session.run(v) for v in variables]


def test_train_op_runs_the_discriminator_step_then_the_generator_step():
    _, gan, combined = build(seed=3)
    _, gan_check, stepwise = build(seed=3)
    values = feed(gan, 8, seed=9)
    check_values = {gan_check.real_images: values[gan.real_images], gan_check.z: values[gan.z]}
    g_loss_before_d_step = stepwise.run(gan_check.g_loss, check_values)

    _, g_loss_in_train_op = combined.run([gan.train_op, gan.g_step_loss], values)
    # Stepwise: the discriminator step alone, then the generator loss it produces.
    stepwise.run(gan_check.d_train_op, check_values)
    g_loss_after_d_step = stepwise.run(gan_check.g_loss, check_values)

    assert g_loss_in_train_op == pytest.approx(g_loss_after_d_step, rel=1e-5)
    assert abs(g_loss_after_d_step - g_loss_before_d_step) > 1e-4
    # The discriminator stepped against the generator's old weights: same D weights both ways.
    d_combined = _values(combined, gan.variables(DISCRIMINATOR_SCOPE))
    d_stepwise = _values(stepwise, gan_check.variables(DISCRIMINATOR_SCOPE))
    assert len(d_combined) == len(d_stepwise) == 10
    for a, b in zip(d_combined, d_stepwise, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # ...and the generator did move in the combined op.
    _, gan_initial, initial = build(seed=3)
    g_initial = _values(initial, gan_initial.variables(GENERATOR_SCOPE))
    assert len(g_initial) == 8
    g_trained = _values(combined, gan.variables(GENERATOR_SCOPE))
    assert all(not np.allclose(a, b) for a, b in zip(g_initial, g_trained, strict=True))
    assert combined.run(gan.global_step) == 1


def test_unsupported_image_shape_is_a_clear_error():
    with tf.Graph().as_default(), pytest.raises(ValueError, match=r"unsupported image shape \(30, 30, 1\)"):
        DeepConvolutionalGAN(ModelConfig(image_shape=(30, 30, 1)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (28, 28, 3), (32, 32, 1), (32, 32, 3), (64, 64, 1), (64, 64, 3)])
def test_every_supported_shape_builds_trains_and_samples(shape):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        gan = DeepConvolutionalGAN(ModelConfig(image_shape=shape, z_dim=Z_DIM))
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    rng = np.random.default_rng(0)
    values = {gan.real_images: rng.uniform(0, 1, (3, *shape)).astype(np.float32),
              gan.z: rng.uniform(-1, 1, (3, Z_DIM)).astype(np.float32)}
    _, d_loss = session.run([gan.train_op, gan.d_loss], values)
    assert np.isfinite(d_loss)
    assert generate(gan, session, values[gan.z][:2]).shape == (2, *shape)
    with graph.as_default():
        logits = discriminator(gan.real_images, gan.config, reuse=True)
    assert session.run(logits, values).shape == (3, 2)
    # DCGAN layout for 32 and 64: dense to 4x4, one transposed conv per doubling.
    deconvs = [v for v in gan.variables(GENERATOR_SCOPE) if "deconv" in v.name and v.name.endswith("weights:0")]
    assert len(deconvs) == {28: 2, 32: 3, 64: 4}[shape[0]]


@pytest.mark.parametrize("shape", [(30, 30, 1), (32, 32, 2), (64, 32, 3)])
def test_unsupported_shapes_name_what_is_supported(shape):
    with tf.Graph().as_default(), pytest.raises(ValueError, match=r"supported: 28x28, 32x32, 64x64 with 1 or 3 "
                                                                   r"channels"):
        DeepConvolutionalGAN(ModelConfig(image_shape=shape))


# ----------------------------------------------------------------------------- weight averaging
def _generator_weights(gan, session):
    return {v.name: session.run(v) for v in gan.variables(GENERATOR_SCOPE)}


def _averages(gan, session):
    return {v.name: session.run(gan.ema.average(v)) for v in gan.variables(GENERATOR_SCOPE)}


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_the_average_moves_toward_the_weights_after_each_generator_step(decay):
    _, gan, session = build(seed=4, ema_decay=decay)
    before = _generator_weights(gan, session)
    assert all(np.array_equal(_averages(gan, session)[k], before[k]) for k in before)  # starts equal
    session.run(gan.train_op, feed(gan, 4, seed=0))
    after, averages = _generator_weights(gan, session), _averages(gan, session)
    for name in before:
        assert not np.allclose(after[name], before[name])  # the generator step happened...
        # ...and the average took in the weights *after* it: decay * old + (1 - decay) * new.
        np.testing.assert_allclose(averages[name], decay * before[name] + (1 - decay) * after[name],
                                   rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- image-side convs
@pytest.mark.parametrize("side,channels", [(28, 1), (32, 3), (8, 2)])
def test_image_side_convs_equal_the_library_convs_in_values_and_gradients(side, channels):
    """The sub-pixel transposed conv and the conv with its custom gradient are the same maps."""
    rng = np.random.default_rng(side)
    def normal(*shape):
        return tf.constant(rng.normal(size=shape).astype(np.float32))
    with tf.Graph().as_default(), v1.Session() as session:
        features = normal(3, side // 2, side // 2, 16)
        images = normal(3, side, side, channels)
        filters = normal(5, 5, channels, 16)  # [h, w, image side, feature side] for both
        image_grad, feature_grad = normal(3, side, side, channels), normal(3, side // 2, side // 2, 16)
        pairs = [(tf.nn.conv2d_transpose(features, filters, [3, side, side, channels], 2, "SAME"),
                  model.image_conv_transpose(features, filters), features, image_grad),
                 (tf.nn.conv2d(images, filters, 2, "SAME"), model.image_conv(images, filters), images,
                  feature_grad)]
        for library, ours, x, upstream in pairs:
            expected = session.run([library, *tf.gradients(library, [x, filters], upstream)])
            got = session.run([ours, *tf.gradients(ours, [x, filters], upstream)])
            assert got[0].shape == expected[0].shape
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


IMPLEMENTATIONS = [(False, False), (True, False), (False, True), (True, True)]  # (fused BN, sub-pixel)


def assert_same_model(configs, tmp_path, step_atol=0.0):
    """Each ModelConfig of `configs` computes the first one's model: same weights in, same losses,
    gradients and next-step losses out, up to float rounding (step_atol: of the next-step losses,
    as a share of the largest; Adam's first step is about lr * sign(gradient), so a gradient that
    is rounding noise moves its weight a whole step either way)."""
    shape, labels = configs[0].image_shape, configs[0].num_classes
    rng = np.random.default_rng(0)
    values = [rng.uniform(0, 1, (6, *shape)).astype(np.float32), rng.uniform(-1, 1, (6, Z_DIM)).astype(np.float32)]
    results, checkpoint, graphs = [], None, []
    for config in configs:
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(0)
            gan = DeepConvolutionalGAN(config)
            gradients = [tf.convert_to_tensor(g) for g in  # a class embedding's gradient is sparse
                         tf.gradients(gan.d_loss, gan.variables(DISCRIMINATOR_SCOPE))
                         + tf.gradients(gan.g_loss, gan.variables(GENERATOR_SCOPE))]
            init = v1.global_variables_initializer()
        session = v1.Session(graph=graph)
        session.run(init)
        if checkpoint is None:
            checkpoint = save_checkpoint(gan, session, str(tmp_path / "start.ckpt"))
        else:
            restore_checkpoint(gan, session, checkpoint)
        graphs.append(graph)
        fed = dict(zip([gan.real_images, gan.z], values, strict=True))
        if labels:
            fed[gan.labels] = np.arange(6) % labels
        before = session.run([gan.d_loss, gan.g_loss, gradients], fed)
        session.run(gan.train_op, fed)
        results.append((before, session.run([gan.d_loss, gan.g_loss], fed)))
    (plain, plain_after), others = results[0], results[1:]
    assert len(plain[2]) > 10
    # The biases before batch norm get pure rounding noise (BN cancels them): compare every
    # gradient against the scale of the largest one.
    scale = max(np.abs(g).max() for g in plain[2])
    for other, other_after in others:
        np.testing.assert_allclose(other[:2], plain[:2], rtol=1e-5)
        assert len(other[2]) == len(plain[2])
        for a, b in zip(other[2], plain[2], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
        np.testing.assert_allclose(other_after, plain_after, rtol=1e-4,
                                   atol=step_atol * np.abs(plain_after).max())
    return graphs


@pytest.mark.parametrize("shape, recipe", [((28, 28, 1), "original"), ((32, 32, 3), "original"),
                                           ((28, 28, 1), "tuned")])
def test_every_implementation_choice_computes_the_same_model(shape, recipe, tmp_path):
    """Fused or unfused batch norm, library or sub-pixel image convs, chosen through ModelConfig."""
    configs = [ModelConfig(image_shape=shape, z_dim=Z_DIM, recipe=recipe, fused_batch_norm=fused,
                           subpixel_image_convs=subpixel) for fused, subpixel in IMPLEMENTATIONS]
    for graph, (fused, subpixel) in zip(assert_same_model(configs, tmp_path), IMPLEMENTATIONS, strict=True):
        op_types = {op.type for op in graph.get_operations()}
        assert ("DepthToSpace" in op_types) == subpixel
        assert any("FusedBatchNorm" in kind for kind in op_types) == fused


@pytest.mark.parametrize("recipe, num_classes", [("fast", 0), ("tuned", 0), ("fast", 3)])
def test_one_discriminator_call_on_both_batches_computes_the_same_model(recipe, num_classes, tmp_path):
    """joint_discriminator_call: the D loss calls D once on real and generated images together;
    with no batch norm in D (spectral normalisation) that is the same model as two calls,
    conditional too."""
    # G at 4e-4: Adam's first step moves each weight by about the rate whatever its gradient, so at
    # the fast recipe's 1.6e-3 the rounding noise of the gradients of G's biases before batch norm
    # (which BN cancels) moves the next-step loss by more than the tolerance.
    configs = [ModelConfig(z_dim=Z_DIM, recipe=recipe, num_classes=num_classes, joint_discriminator_call=joint,
                           learning_rate=4e-4) for joint in (False, True)]
    graphs = assert_same_model(configs, tmp_path, step_atol=1e-3)
    convs = [len([op for op in graph.get_operations() if op.type == "Conv2D" and "gradients" not in op.name])
             for graph in graphs]
    assert convs[1] < convs[0]  # fewer forward convolutions with the joint call
    assert ModelConfig(recipe="fast").joint_discriminator_call  # the recipe's, where D has no batch norm
    assert not ModelConfig(recipe="fast", without=("spectral_norm",)).joint_discriminator_call
    assert not ModelConfig(recipe="tuned").joint_discriminator_call
    with pytest.raises(ValueError, match="without batch norm"):
        ModelConfig(recipe="original", joint_discriminator_call=True)
