"""Deep Convolutional GAN built as a TF1-style graph (tf.compat.v1): graph building only.

`generator` and `discriminator` are functions of their inputs and a ModelConfig (each layer
opens its own variable scope and calls `get_variable`; calling one again with reuse=True
shares its weights). `LOSSES` holds the two losses, chosen once per model.
`DeepConvolutionalGAN` holds the placeholders, the ordered train op, the weight average, the
samplers' tensors and the saver. Nothing here reads files or runs a session: sampling.py runs
the samplers, runs.py restores checkpoints, training.py runs the train op.

Images are NHWC float32 in [0, 1]; noise vectors are float32 of length `z_dim`.
"""
import dataclasses
import json
from collections import namedtuple

import numpy as np
import tensorflow as tf

from config import LR_DECAY_FLOOR, ModelConfig

v1 = tf.compat.v1

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"
AVERAGED_STATS_SUFFIX = "_of_averaged"  # batch-norm statistics that belong to the averaged weights
MODEL_INFO = "model_info"  # a string variable saved in every checkpoint: what model it holds


@dataclasses.dataclass(frozen=True)
class Layout:
    """Feature-map sizes of both networks for one image shape."""
    start_side: int       # side of the generator's first feature map (after the dense layer)
    g_channels: tuple     # generator feature-map channels before the output layer
    d_channels: tuple     # discriminator conv channels


# 28x28: the original exercise's layout exactly (ModelConfig.d_input_batch_norm says where D's
# input layer is batch-normalised). 32x32 and 64x64: the DCGAN paper's guidelines (dense to 4x4,
# each stride-2 layer doubles the side and halves the channels).
LAYOUTS = {28: Layout(7, (128, 64), (64, 128)),
           32: Layout(4, (256, 128, 64), (64, 128, 256)),
           64: Layout(4, (512, 256, 128, 64), (64, 128, 256, 512))}
SUPPORTED_CHANNELS = (1, 3)


def layout_for(image_shape):
    """The Layout for [H, W, C], or ValueError naming what is supported."""
    height, width, channels = image_shape
    if height != width or height not in LAYOUTS or channels not in SUPPORTED_CHANNELS:
        sizes = ", ".join(f"{s}x{s}" for s in LAYOUTS)
        raise ValueError(f"unsupported image shape {tuple(image_shape)}; supported: {sizes} with "
                         f"1 or 3 channels")
    return LAYOUTS[height]

# Real images are class 1, generated ones class 0 (two logits, sparse softmax cross-entropy).
REAL_LABEL = 1
FAKE_LABEL = 0


# ----------------------------------------------------------------------------- layer helpers
def _weight(name, shape):
    return v1.get_variable(name, shape, initializer=v1.truncated_normal_initializer(stddev=0.02))


def _bias(name, size):
    return v1.get_variable(name, [size], initializer=v1.zeros_initializer())


def dense(x, units, name, use_bias=True, weight_transform=None):
    """x: [batch, n] -> [batch, units]. weight_transform: applied to the weights before use
    (spectral normalisation)."""
    with v1.variable_scope(name):
        w = _weight("weights", [int(x.shape[-1]), units])
        if weight_transform is not None:
            w = weight_transform(w)
        y = tf.matmul(x, w)
        return y + _bias("biases", units) if use_bias else y


def conv2d(x, filters, name, subpixel=True, weight_transform=None):
    """5x5 stride-2 conv, x: [batch, h, w, c] -> [batch, h/2, w/2, filters] ('SAME' padding).

    subpixel: compute the image-side gradient of a few-channel input in sub-pixel form (below).
    weight_transform: applied to the filters before use (spectral normalisation).
    """
    with v1.variable_scope(name):
        w = _weight("weights", [5, 5, int(x.shape[-1]), filters])
        if weight_transform is not None:
            w = weight_transform(w)
        if subpixel and _few_channels(x.shape[-1]):
            y = image_conv(x, w)
        else:
            y = tf.nn.conv2d(x, w, strides=[1, 2, 2, 1], padding="SAME")
        return y + _bias("biases", filters)


def conv2d_transpose(x, filters, name, use_bias=True, subpixel=True):
    """5x5 stride-2 transposed conv, x: [batch, h, w, c] -> [batch, 2h, 2w, filters].

    The output shape takes the batch size from the input at run time, so one graph serves
    any number of images (the original hard-wired it to the training batch of 32).
    subpixel: compute a few-channel output in sub-pixel form (below).
    """
    with v1.variable_scope(name):
        height, width = int(x.shape[1]) * 2, int(x.shape[2]) * 2
        w = _weight("weights", [5, 5, filters, int(x.shape[-1])])
        if subpixel and _few_channels(filters):
            y = image_conv_transpose(x, w)
        else:
            output_shape = tf.stack([tf.shape(x)[0], height, width, filters])
            y = tf.nn.conv2d_transpose(x, w, output_shape, strides=[1, 2, 2, 1], padding="SAME")
            y.set_shape([None, height, width, filters])
        return y + _bias("biases", filters) if use_bias else y


# ----------------------------------------------------------------------------- image-side convolutions
# The layers that touch the image (D's first conv, G's last transposed conv) have 1 or 3
# channels on the image side. oneDNN computes a transposed convolution with so few output
# channels (Conv2DBackpropInput: G's forward pass, and the gradient that reaches a generated
# image) several times slower per FLOP than its other convolutions. The same function
# written as a stride-1 3x3 convolution to 4x the channels, rearranged by depth_to_space
# ("sub-pixel" convolution), takes about half to two thirds of the time (bench.py measures
# both). It is the same linear map (equal up to float rounding): the maths does not change.
# ModelConfig.subpixel_image_convs chooses it.
IMAGE_SIDE_CHANNELS = 4  # at most this many image-side channels takes the sub-pixel path


def _few_channels(channels):
    """Whether a layer's image side is narrow enough for the sub-pixel path (every supported
    image side is even, as it needs)."""
    return int(channels) <= IMAGE_SIDE_CHANNELS


def _subpixel_filters(filters):
    """[5, 5, out, in] transposed-conv filters -> [3, 3, in, 4 * out] stride-1 conv filters.

    With 'SAME' padding and stride 2, output row 2m + p of the transposed conv sums input
    rows m - 1, m, m + 1 through filter rows p + 3, p + 1, p - 1 (a row outside 0..4 is a
    zero, padded in front). Columns likewise. Output channel (2 * p_row + p_col) * out + c
    of the stride-1 conv is channel c at phase (p_row, p_col): depth_to_space's order.
    """
    out_channels, in_channels = int(filters.shape[2]), int(filters.shape[3])
    padded = tf.pad(filters, [[1, 0], [1, 0], [0, 0], [0, 0]])                # [6, 6, out, in]
    # [row tap, row phase, column tap, column phase, out, in]; taps reversed: tap j reads m - 1 + j
    phases = tf.reshape(padded, [3, 2, 3, 2, out_channels, in_channels])[::-1, :, ::-1]
    phases = tf.transpose(phases, [0, 2, 5, 1, 3, 4])                        # [3, 3, in, 2, 2, out]
    return tf.reshape(phases, [3, 3, in_channels, 4 * out_channels])


def _subpixel_conv_transpose(x, filters):
    """conv2d_transpose(x, filters), stride 2, 'SAME': [b, h, w, in] -> [b, 2h, 2w, out]."""
    y = tf.nn.conv2d(x, _subpixel_filters(filters), strides=1, padding="SAME")  # [b, h, w, 4 * out]
    return tf.nn.depth_to_space(y, 2)


def _filter_gradient(conv_input, filters, conv_output_gradient):
    """Gradient of a stride-2 5x5 'SAME' conv2d(conv_input, filters) with respect to the filters."""
    return v1.nn.conv2d_backprop_filter(conv_input, tf.shape(filters), conv_output_gradient,
                                        strides=[1, 2, 2, 1], padding="SAME")


@tf.custom_gradient
def image_conv_transpose(x, filters):
    """The generator's output layer: stride-2 5x5 transposed conv to few channels.

    Forward: the sub-pixel form. Backward: the usual kernels, which are fast here
    (a strided conv over the image-side gradient, and its filter gradient).
    """
    def gradient(dy):
        return (tf.nn.conv2d(dy, filters, strides=2, padding="SAME"),
                _filter_gradient(dy, filters, x))
    return _subpixel_conv_transpose(x, filters), gradient


@tf.custom_gradient
def image_conv(x, filters):
    """The discriminator's input layer: stride-2 5x5 conv from few channels.

    Forward: the usual kernel. Backward: the gradient reaching the image is a transposed
    conv to few channels, so it takes the sub-pixel form.
    """
    def gradient(dy):
        return _subpixel_conv_transpose(dy, filters), _filter_gradient(x, filters, dy)
    return tf.nn.conv2d(x, filters, strides=2, padding="SAME"), gradient


BN_MODES = ("train", "inference", "batch", "measure")


def normalize_by_batch(x, beta, gamma, fused=True, epsilon=1e-5):
    """Normalise NHWC `x` with its own per-channel moments -> (y, mean, variance).

    fused: one kernel (and one for its gradient) instead of about ten element-wise ops; the
    same normalisation up to rounding (ModelConfig.fused_batch_norm; bench.py measures both).
    """
    if fused:
        return v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)
    mean, variance = tf.nn.moments(x, [0, 1, 2])
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon), mean, variance
BN_MEASUREMENTS = "bn_measurements"  # graph collection: (statistic variable, batch value) pairs


def batch_norm(x, name, mode, stats_suffix="", fused=True, decay=0.99, epsilon=1e-5):
    """Batch norm over every axis but the last, with population statistics for inference.

    mode "train": normalise with the batch's moments and add updates of the moving averages
    to UPDATE_OPS. "inference": normalise with the stored statistics, so each image's output
    depends only on its own input. "batch": the batch's moments, nothing recorded. "measure":
    the batch's moments, with (statistic, batch value) pairs put in the BN_MEASUREMENTS
    collection so that population statistics can be re-estimated. `stats_suffix` names a
    separate set of statistics (the averaged generator has its own).
    """
    if mode not in BN_MODES:
        raise ValueError(f"batch-norm mode must be one of {BN_MODES}, got {mode!r}")
    with v1.variable_scope(name):
        channels = int(x.shape[-1])
        beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
        moving_mean = v1.get_variable("moving_mean" + stats_suffix, [channels], trainable=False,
                                      initializer=v1.zeros_initializer())
        moving_variance = v1.get_variable("moving_variance" + stats_suffix, [channels], trainable=False,
                                          initializer=v1.ones_initializer())
        if mode == "inference":
            return tf.nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, epsilon)
        y, mean, variance = normalize_by_batch(x, beta, gamma, fused, epsilon)
        for statistic, value in ((moving_mean, mean), (moving_variance, variance)):
            if mode == "train":
                update = v1.assign_sub(statistic, (1.0 - decay) * (statistic - value))
                v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, update)
            elif mode == "measure":
                v1.add_to_collection(BN_MEASUREMENTS, (statistic, value))
        return y


def batch_statistics_norm(x, name, fused=True):
    """Batch norm with the batch's own moments and no population statistics (the
    discriminator's: it only ever runs while training)."""
    with v1.variable_scope(name):
        channels = int(x.shape[-1])
        beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
        return normalize_by_batch(x, beta, gamma, fused)[0]


def leaky_relu(x, alpha=0.2):
    # One kernel and one gradient kernel, instead of maximum(x, alpha * x)'s select ops.
    return tf.nn.leaky_relu(x, alpha)


SPECTRAL_NORM_UPDATES = "spectral_norm_updates"  # graph collection: (u variable, refined u) pairs


def spectral_normalize(weights, update=True, epsilon=1e-12):
    """weights / sigma, sigma the largest singular value of weights seen as [fan_in, units].

    sigma comes from one step of power iteration per training step (Miyato et al. 2018): a
    persistent vector u [units] (variable "sn_u", created in the caller's scope) is refined
    once per step, and sigma = v^T W u with u and v held constant in the gradient. update:
    put (u, refined u) in the SPECTRAL_NORM_UPDATES collection, for the train op to assign
    once both discriminator calls of the D loss have read u (the first call does this).
    """
    units = int(weights.shape[-1])
    matrix = tf.reshape(weights, [-1, units])                                    # [fan_in, units]
    u = v1.get_variable("sn_u", [units], trainable=False,
                        initializer=v1.random_normal_initializer())
    v = tf.stop_gradient(tf.math.l2_normalize(tf.linalg.matvec(matrix, u), epsilon=epsilon))  # [fan_in]
    u_next = tf.stop_gradient(tf.math.l2_normalize(tf.linalg.matvec(matrix, v, transpose_a=True),
                                                   epsilon=epsilon))                           # [units]
    sigma = tf.tensordot(v, tf.linalg.matvec(matrix, u_next), 1)
    if update:
        v1.add_to_collection(SPECTRAL_NORM_UPDATES, (u, u_next))
    return weights / sigma


# ----------------------------------------------------------------------------- the networks
def averaged_getter(average):
    """A variable getter that hands out `average`'s moving average of a weight where there is one."""
    def averaged(getter, name, *args, **kwargs):  # TensorFlow passes `getter` by name
        variable = getter(name, *args, **kwargs)
        moving_average = average.average(variable)
        return variable if moving_average is None else moving_average
    return averaged


def generator(z, config, mode, labels=None, reuse=False, average=None):
    """z: [batch, z_dim] (and labels [batch] int32 for a conditional model) -> images
    [batch, H, W, C] in [0, 1].

    28x28: dense to 7x7x128, transposed convs to 14x14x64 and 28x28xC (the original).
    mode: the batch-norm mode (see batch_norm). average: an ExponentialMovingAverage of the
    generator's weights; given, the network uses the averages, and the batch-norm statistics
    that belong to them.
    """
    layout = layout_for(config.image_shape)
    side, channels = layout.start_side, layout.g_channels
    subpixel = config.subpixel_image_convs
    scope = v1.variable_scope(GENERATOR_SCOPE, reuse=v1.AUTO_REUSE if average else reuse,
                              custom_getter=averaged_getter(average) if average else None)
    suffix = AVERAGED_STATS_SUFFIX if average else ""
    if config.conditional and config.conditioning == "concat":
        z = tf.concat([z, tf.one_hot(labels, config.num_classes)], axis=1)     # [b, z_dim + classes]
    with scope:
        # Biases before batch norm would be cancelled by its mean; beta plays their role.
        x = dense(z, side * side * channels[0], "project", use_bias=False)
        x = tf.reshape(x, [-1, side, side, channels[0]])                        # [b, 7, 7, 128]
        x = tf.nn.relu(_generator_norm(x, "project_bn", mode, suffix, labels, config))
        for i, width in enumerate(channels[1:]):                                 # side doubles
            x = conv2d_transpose(x, width, f"deconv{i}", use_bias=False, subpixel=subpixel)  # [b, 14, 14, 64]
            x = tf.nn.relu(_generator_norm(x, f"deconv{i}_bn", mode, suffix, labels, config))
        x = conv2d_transpose(x, config.image_shape[-1], f"deconv{len(channels) - 1}",
                             subpixel=subpixel)                                  # [b, H, W, C]
        return tf.sigmoid(x)


def _generator_norm(x, name, mode, suffix, labels, config):
    """Batch norm; with projection conditioning its gain and bias also depend on the class
    (class-conditional batch norm): gamma (1 + gain[class]), beta + bias[class], the class
    terms starting at zero."""
    y = batch_norm(x, name, mode, suffix, config.fused_batch_norm)
    if not (config.conditional and config.conditioning == "projection"):
        return y
    with v1.variable_scope(name):
        shape = [config.num_classes, int(x.shape[-1])]
        gains = v1.get_variable("class_gains", shape, initializer=v1.zeros_initializer())
        biases = v1.get_variable("class_biases", shape, initializer=v1.zeros_initializer())
    gain = tf.gather(gains, labels)[:, None, None, :]                           # [b, 1, 1, channels]
    bias = tf.gather(biases, labels)[:, None, None, :]
    return y * (1.0 + gain) + bias


def discriminator(images, config, labels=None, reuse=False):
    """images: [batch, H, W, C] (and labels [batch] for a conditional model) -> logits
    [batch, 2] (index 1 = real).

    28x28: convs to 14x14x64 and 7x7x128, then dense (the original; config.discriminator_width
    scales those channels, as the fast recipe does). Its batch norm always
    uses the batch's own statistics: the discriminator only ever runs while training, on a
    whole real or a whole generated batch. With spectral normalisation (tuned recipe) every
    layer's weights are divided by their largest singular value instead, and no layer is
    batch-normalised; the first call in a step (reuse=False) refines the power iteration.
    """
    spectral = config.uses("spectral_norm")
    transform = (lambda w: spectral_normalize(w, update=not reuse)) if spectral else None
    conditioning = config.conditioning if config.conditional else None
    with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=reuse):
        x = images
        if conditioning == "concat":  # one constant plane per class: [b, H, W, C + classes]
            planes = tf.one_hot(labels, config.num_classes)[:, None, None, :] * tf.ones_like(images[..., :1])
            x = tf.concat([images, planes], axis=-1)
        channels = [max(1, round(c * config.discriminator_width)) for c in layout_for(config.image_shape).d_channels]
        for i, width in enumerate(channels):  # side halves
            x = conv2d(x, width, f"conv{i}", config.subpixel_image_convs, transform)  # [b, 14, 14, 64] ...
            if not spectral and (i > 0 or config.d_input_batch_norm):
                x = batch_statistics_norm(x, f"conv{i}_bn", config.fused_batch_norm)
            x = leaky_relu(x)
        x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])                      # [b, 7 * 7 * 128]
        logits = dense(x, 2, "classify", weight_transform=transform)
        if conditioning == "projection":
            logits += _class_projection(x, labels, transform, config.num_classes)
        return logits


def _class_projection(features, labels, transform, num_classes):
    """The projection discriminator's class term: <embedding[class], features> added to the
    real logit, so D judges "a real image of this class" (Miyato and Koyama 2018)."""
    with v1.variable_scope("class_projection"):
        embedding = _weight("embedding", [num_classes, int(features.shape[-1])])  # [classes, F]
        if transform is not None:
            embedding = transform(embedding)
    score = tf.reduce_sum(tf.gather(embedding, labels) * features, axis=1)       # [b]
    return score[:, None] * tf.one_hot(REAL_LABEL, 2)


# ----------------------------------------------------------------------------- augmentation
AUGMENT_KEY = "augment_key"  # a variable of a model with augment on: its draws' share of the seed


def diff_augment(images, policy, seed):
    """Differentiable augmentation of the discriminator's inputs (Zhao et al. 2020, DiffAugment):
    per image, "translation" shifts it by up to an eighth of its side (zeros shifted in) and
    "cutout" blanks a square of half its side; the generator's gradient flows through both.
    seed: a stateless seed [2] (int32), so that the draws depend on it alone and a resumed run
    draws what the uninterrupted one did."""
    batch = tf.shape(images)[0]
    height, width = int(images.shape[1]), int(images.shape[2])
    if "translation" in policy:
        most = np.array([int(height / 8 + 0.5), int(width / 8 + 0.5)], np.int32)
        shift = _random_integers([batch, 2], seed, 2 * most + 1) - most                  # [b, 2] in [-most, most]
        # Index 0 and side + 1 of the padded image are zeros: whatever is shifted in.
        rows = tf.clip_by_value(tf.range(height)[None, :] + shift[:, :1] + 1, 0, height + 1)   # [b, H]
        cols = tf.clip_by_value(tf.range(width)[None, :] + shift[:, 1:] + 1, 0, width + 1)     # [b, W]
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if "cutout" in policy:
        size = np.array([int(height / 2 + 0.5), int(width / 2 + 0.5)], np.int32)
        centre = _random_integers([batch, 2], seed + [0, 1], np.array([height, width], np.int32) + 1 - size % 2)
        top_left = centre - size // 2                                                # [b, 2]
        in_rows = tf.logical_and(tf.range(height)[None, :] >= top_left[:, :1],
                                 tf.range(height)[None, :] < top_left[:, :1] + size[0])          # [b, H]
        in_cols = tf.logical_and(tf.range(width)[None, :] >= top_left[:, 1:],
                                 tf.range(width)[None, :] < top_left[:, 1:] + size[1])           # [b, W]
        blank = tf.logical_and(in_rows[:, :, None], in_cols[:, None, :])[..., None]               # [b, H, W, 1]
        images = images * tf.cast(tf.logical_not(blank), images.dtype)
    return images


def _random_integers(shape, seed, counts):
    """Stateless integers of `shape`, column j uniform over [0, counts[j])."""
    return tf.cast(tf.floor(tf.random.stateless_uniform(shape, seed) * counts.astype(np.float32)), tf.int32)


# ----------------------------------------------------------------------------- the losses
def realness(logits):
    """[batch, 2] logits -> [batch] log-odds that an image is real (the hinge loss's score)."""
    return logits[:, REAL_LABEL] - logits[:, FAKE_LABEL]


def _cross_entropy(logits, label):
    labels = tf.fill([tf.shape(logits)[0]], label)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


Loss = namedtuple("Loss", "discriminator generator")  # each (real logits, fake logits) -> its network's loss
LOSSES = {
    # The exercise's: D classifies real against generated; G's non-saturating loss pushes D to
    # call generated images real.
    "cross_entropy": Loss(
        discriminator=lambda real, fake: _cross_entropy(real, REAL_LABEL) + _cross_entropy(fake, FAKE_LABEL),
        generator=lambda real, fake: _cross_entropy(fake, REAL_LABEL)),
    # Hinge (Lim and Ye 2017): D is paid for a margin of 1 on each side; G raises D's score.
    "hinge": Loss(
        discriminator=lambda real, fake: (tf.reduce_mean(tf.nn.relu(1.0 - realness(real)))
                                          + tf.reduce_mean(tf.nn.relu(1.0 + realness(fake)))),
        generator=lambda real, fake: -tf.reduce_mean(realness(fake))),
    # The relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): each real
    # image is judged against the generated one beside it, D paid for the pair's margin, G for the reverse.
    "relativistic": Loss(
        discriminator=lambda real, fake: tf.reduce_mean(tf.nn.softplus(realness(fake) - realness(real))),
        generator=lambda real, fake: tf.reduce_mean(tf.nn.softplus(realness(real) - realness(fake)))),
}


def loss_for(config):
    """The Loss a model trains with: the relativistic one where asked, else the tuned recipe's hinge
    unless left out."""
    if config.relativistic:
        return LOSSES["relativistic"]
    return LOSSES["hinge" if config.uses("hinge") else "cross_entropy"]


# ----------------------------------------------------------------------------- the model
class DeepConvolutionalGAN:
    """Both networks of the DCGAN exercise wired for training and sampling.

    Build it inside a `tf.Graph().as_default()` block from a ModelConfig. Feed `real_images`
    ([batch, H, W, C] in [0, 1]) and `z` ([batch, z_dim]) to `train_op`; feed `sample_z` (and
    `sample_labels`) to one of the `samples` tensors, one per generator of GENERATORS
    (sampling.generate runs them in chunks).
    """

    def __init__(self, config=None, max_checkpoints=3, batch_size=None):
        self.config = config = config or ModelConfig()
        self.image_shape, self.z_dim = config.image_shape, config.z_dim
        self.num_classes = config.num_classes
        self.graph = v1.get_default_graph()
        self.info = config.info()
        self.loss = loss_for(config)
        self.global_step = v1.train.get_or_create_global_step()
        # The tuned recipe's average warms up: decay min(ema_decay, (1 + n) / (10 + n)) at step n.
        self.ema = v1.train.ExponentialMovingAverage(
            config.ema_decay, num_updates=self.global_step if config.uses("ema_warmup") else None,
            name="generator_average")

        # batch_size None: any batch. A fixed one makes every shape static (bench.py counts FLOPs so).
        self.real_images = v1.placeholder(tf.float32, [batch_size, *self.image_shape], name="real_images")
        self.z = v1.placeholder(tf.float32, [batch_size, self.z_dim], name="z")
        # Conditional models: the class of each real image, which is also the class asked of the
        # generated image in the same row. (Built only then: an unconditional graph is unchanged.)
        self.labels = v1.placeholder(tf.int32, [batch_size], name="labels") if config.conditional else None
        self.fake_images = generator(self.z, config, "train", self.labels)
        # Both losses at the current weights; evaluating them changes nothing.
        augment = self._augmentation()
        if config.joint_discriminator_call:  # one call on both batches: larger, fewer kernels
            labels = None if self.labels is None else tf.concat([self.labels, self.labels], 0)
            both = discriminator(augment(tf.concat([self.real_images, self.fake_images], 0), 0), config, labels)
            self.real_logits, fake_logits = tf.split(both, 2)                       # [batch, 2] each
        else:
            self.real_logits = discriminator(augment(self.real_images, 0), config, self.labels)  # [batch, 2]
            fake_logits = discriminator(augment(self.fake_images, 1), config, self.labels, reuse=True)
        self.d_loss = self.loss.discriminator(self.real_logits, fake_logits)
        self.g_loss = self.loss.generator(self.real_logits, fake_logits)
        self.d_train_op, self.g_step_loss, self.train_op = self._train_ops(augment)

        # The samplers, built once: the same generator function with the raw weights and their
        # moving-average batch norm, the raw weights with batch statistics, and the averaged
        # weights with batch-norm statistics re-estimated for them.
        self.sample_z = v1.placeholder(tf.float32, [None, self.z_dim], name="sample_z")
        self.sample_labels = (v1.placeholder(tf.int32, [None], name="sample_labels")
                              if config.conditional else None)
        labels = self.sample_labels
        self.samples = {"raw": generator(self.sample_z, config, "inference", labels, reuse=True),
                        "raw-batch-stats": generator(self.sample_z, config, "batch", labels, reuse=True),
                        "averaged": generator(self.sample_z, config, "inference", labels, average=self.ema)}
        self._build_batch_norm_reestimation()
        # Created last so that it does not shift the seeds of the ops above (same seed, same run).
        self.info_variable = v1.get_variable(MODEL_INFO,
                                             initializer=json.dumps(config.checkpoint_record(), sort_keys=True),
                                             dtype=tf.string, trainable=False)
        # Relative paths in the 'checkpoint' index: a copied or moved run folder stays self-contained.
        self.saver = v1.train.Saver(max_to_keep=max_checkpoints, save_relative_paths=True)

    def _augmentation(self):
        """augment(images, stream) -> the discriminator's view of them: config.augment's
        (diff_augment), drawn anew at each step for each stream (0 and 1: the D step's batches;
        2: the G step's), or the images themselves."""
        if self.config.augment == "off":
            return lambda images, stream: images
        key = v1.get_variable(AUGMENT_KEY, initializer=v1.random_uniform([], 0, 2**27, dtype=tf.int32),
                              trainable=False)  # drawn from the graph's seed, kept in checkpoints
        step = tf.cast(self.global_step, tf.int32)
        return lambda images, stream: diff_augment(images, self.config.augment, tf.stack([step, key * 8 + 2 * stream]))

    def _train_ops(self, augment):
        """One train op: the discriminator step, then the generator step.

        The generator's step loss is built inside `control_dependencies([d_train_op])`, so the
        discriminator's weights are read after its update: the generator trains against the
        discriminator it will next face. Then the moving average of the generator's weights
        takes the new weights in, and the generator's batch-norm averages are updated.
        Fetch `g_step_loss` only together with `train_op` (alone it would run the D step).
        """
        config = self.config
        d_vars = self.variables(DISCRIMINATOR_SCOPE)
        g_vars = self.variables(GENERATOR_SCOPE)
        d_rate, g_rate = self._learning_rates()
        d_optimizer = v1.train.AdamOptimizer(d_rate, config.beta1, config.beta2, name="d_adam")
        g_optimizer = v1.train.AdamOptimizer(g_rate, config.beta1, config.beta2, name="g_adam")
        self.penalty = self._gradient_penalty()  # 0 unless asked for
        # Spectral normalisation: store the refined power-iteration vectors once the D loss and
        # the penalty have read the old ones, and before the G step's call reads them.
        with v1.control_dependencies([self.d_loss, self.penalty]):
            power_iteration = [v1.assign(u, u_next) for u, u_next in
                               self.graph.get_collection(SPECTRAL_NORM_UPDATES)]
        with v1.control_dependencies(power_iteration):
            d_train_op = d_optimizer.minimize(self.d_loss + self.penalty, var_list=d_vars)
        with v1.control_dependencies([d_train_op]):
            updated_fake_logits = discriminator(augment(self.fake_images, 2), config, self.labels, reuse=True)
            # The relativistic loss pairs G's images with real ones, judged by the same updated D.
            updated_real_logits = (discriminator(augment(self.real_images, 3), config, self.labels, reuse=True)
                                   if config.relativistic else None)
            g_step_loss = self.loss.generator(updated_real_logits, updated_fake_logits)
            g_train_op = g_optimizer.minimize(g_step_loss, var_list=g_vars)
        bn_updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS, scope=GENERATOR_SCOPE + "/")
        with v1.control_dependencies([g_train_op]):
            # The weight average follows the generator step it averages.
            self.ema_update = self.ema.apply(g_vars)
        with v1.control_dependencies([self.ema_update] + bn_updates):
            train_op = v1.assign_add(self.global_step, 1, name="train_op").op
        return d_train_op, g_step_loss, train_op

    def _gradient_penalty(self):
        """Zero-centred gradient penalties of D's realness on real images (R1, Mescheder et al. 2018)
        and generated ones (R2), gradient_penalty / 2 times the mean squared gradient norm of each,
        as R3GAN pairs them. Lazy (Karras et al. 2020): computed every penalty_every steps, at that
        many times the weight, else 0. Of D's inputs before any augmentation."""
        config = self.config
        if not config.gradient_penalty:
            return tf.constant(0.0)
        def squared_gradient_norm(images):
            score = realness(discriminator(images, config, self.labels, reuse=True))       # [b]
            gradient = tf.gradients(tf.reduce_sum(score), images)[0]                       # [b, H, W, C]
            return tf.reduce_mean(tf.reduce_sum(tf.square(gradient), axis=[1, 2, 3]))
        def penalty():
            both = squared_gradient_norm(self.real_images) + squared_gradient_norm(tf.stop_gradient(self.fake_images))
            return config.gradient_penalty / 2 * config.penalty_every * both
        due = tf.equal(tf.math.floormod(self.global_step, config.penalty_every), 0)
        return tf.cond(due, penalty, lambda: tf.constant(0.0), name="gradient_penalty")

    def _learning_rates(self):
        """(D's, G's) Adam rates: constants, or with lr_decay_steps both falling linearly from the
        config's rates at step 0 to LR_DECAY_FLOOR of them at that step, and staying there."""
        config = self.config
        if not config.lr_decay_steps:
            return config.d_learning_rate, config.learning_rate
        with v1.name_scope("learning_rate_decay"):
            progress = tf.minimum(tf.cast(self.global_step, tf.float32) / config.lr_decay_steps, 1.0)
            self.rate_factor = 1.0 - (1.0 - LR_DECAY_FLOOR) * progress
        return config.d_learning_rate * self.rate_factor, config.learning_rate * self.rate_factor

    def variables(self, scope):
        """The trainable variables of one network in this model's graph, selected by its scope."""
        return self.graph.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope=scope + "/")

    def _build_batch_norm_reestimation(self):
        """Tensors that set the averaged generator's batch-norm statistics to population values.

        The statistics gathered while training belong to the raw weights; the averaged
        weights need their own: the averaged generator runs on noise in "measure" mode, and
        `bn_batch_values` are each batch's moments, in the order of `bn_statistics`;
        feeding their means over batches to `bn_inputs` and running `bn_assign` stores them
        (sampling.reestimate_batch_norm).
        """
        self.graph.clear_collection(BN_MEASUREMENTS)
        generator(self.sample_z, self.config, "measure", self.sample_labels, average=self.ema)
        pairs = self.graph.get_collection(BN_MEASUREMENTS)
        self.bn_statistics = [statistic for statistic, _ in pairs]
        self.bn_batch_values = [value for _, value in pairs]
        self.bn_inputs = [v1.placeholder(tf.float32, s.shape) for s in self.bn_statistics]
        self.bn_assign = tf.group(*[v1.assign(s, p) for s, p in zip(self.bn_statistics, self.bn_inputs, strict=True)])
