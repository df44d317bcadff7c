"""Deep Convolutional GAN built as a TF1-style graph (tf.compat.v1).

`DeepConvolutionalGAN` only builds graph pieces: the generator, the discriminator, their
losses, one ordered train op, a sampler and a saver. It reads no files and draws no pictures;
`main1.py` owns the session, the loop and every output.

Images are NHWC float32 in [0, 1]; noise vectors are float32 of length `z_dim`.
"""
import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

GENERATOR_SCOPE = "generator"
DISCRIMINATOR_SCOPE = "discriminator"
SUPPORTED_IMAGE_SHAPES = ((28, 28, 1),)

# Real images are class 1, generated ones class 0 (two logits, sparse softmax cross-entropy).
REAL_LABEL = 1
FAKE_LABEL = 0


# ----------------------------------------------------------------------------- layer helpers
def _weight(name, shape):
    return v1.get_variable(name, shape, initializer=v1.truncated_normal_initializer(stddev=0.02))


def _bias(name, size):
    return v1.get_variable(name, [size], initializer=v1.zeros_initializer())


def dense(x, units, name, use_bias=True):
    """x: [batch, n] -> [batch, units]."""
    with v1.variable_scope(name):
        y = tf.matmul(x, _weight("weights", [int(x.shape[-1]), units]))
        return y + _bias("biases", units) if use_bias else y


def conv2d(x, filters, name, kernel=5, stride=2):
    """x: [batch, h, w, c] -> [batch, h/stride, w/stride, filters] ('SAME' padding)."""
    with v1.variable_scope(name):
        w = _weight("weights", [kernel, kernel, int(x.shape[-1]), filters])
        y = tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME")
        return y + _bias("biases", filters)


def conv2d_transpose(x, filters, name, kernel=5, stride=2, use_bias=True):
    """x: [batch, h, w, c] -> [batch, h*stride, w*stride, filters].

    The output shape takes the batch size from the input at run time, so one graph serves
    any number of images (the original hard-wired it to the training batch of 32).
    """
    with v1.variable_scope(name):
        height, width = int(x.shape[1]) * stride, int(x.shape[2]) * stride
        w = _weight("weights", [kernel, kernel, filters, int(x.shape[-1])])
        output_shape = tf.stack([tf.shape(x)[0], height, width, filters])
        y = tf.nn.conv2d_transpose(x, w, output_shape, strides=[1, stride, stride, 1], padding="SAME")
        y.set_shape([None, height, width, filters])
        return y + _bias("biases", filters) if use_bias else y


def batch_norm(x, name, is_training, decay=0.99, epsilon=1e-5):
    """Batch norm over every axis but the last, with moving averages for inference.

    In training mode the batch's moments normalise `x` and the update ops of the moving
    averages are added to the UPDATE_OPS collection; in inference mode the moving averages are
    used, so each image's output depends only on its own input.
    """
    with v1.variable_scope(name):
        channels = int(x.shape[-1])
        beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
        moving_mean = v1.get_variable("moving_mean", [channels], trainable=False,
                                      initializer=v1.zeros_initializer())
        moving_variance = v1.get_variable("moving_variance", [channels], trainable=False,
                                          initializer=v1.ones_initializer())
        if not is_training:
            return tf.nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, epsilon)
        axes = list(range(len(x.shape) - 1))
        mean, variance = tf.nn.moments(x, axes)
        for moving, value in ((moving_mean, mean), (moving_variance, variance)):
            update = v1.assign_sub(moving, (1.0 - decay) * (moving - value))
            v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, update)
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)


def leaky_relu(x, alpha=0.2):
    return tf.maximum(x, alpha * x)


# ----------------------------------------------------------------------------- the model
class DeepConvolutionalGAN:
    """Generator and discriminator of the DCGAN exercise, with losses, train op and sampler.

    Build it inside a `tf.Graph().as_default()` block. Feed `real_images` ([batch, H, W, C] in
    [0, 1]) and `z` ([batch, z_dim]) to `train_op`; feed `sample_z` to `samples`, or call
    `generate(session, z)` for any number of images.
    """

    def __init__(self, image_shape=(28, 28, 1), z_dim=64, learning_rate=1e-4, beta1=0.5,
                 beta2=0.999, max_checkpoints=3):
        image_shape = tuple(int(d) for d in image_shape)
        if image_shape not in SUPPORTED_IMAGE_SHAPES:
            raise ValueError(f"unsupported image shape {image_shape}; supported: "
                             f"{', '.join(str(s) for s in SUPPORTED_IMAGE_SHAPES)}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.image_shape = image_shape
        self.z_dim = z_dim
        self.graph = v1.get_default_graph()

        self.global_step = v1.train.get_or_create_global_step()
        self.real_images = v1.placeholder(tf.float32, [None, *image_shape], name="real_images")
        self.z = v1.placeholder(tf.float32, [None, z_dim], name="z")
        self.fake_images = self.generator(self.z, is_training=True)
        self.d_loss, self.g_loss = self._losses()
        self.d_train_op, self.g_step_loss, self.train_op = self._train_ops(learning_rate, beta1, beta2)

        # The sampler: the same generator weights, inference-mode batch norm, built once.
        self.sample_z = v1.placeholder(tf.float32, [None, z_dim], name="sample_z")
        self.samples = self.generator(self.sample_z, is_training=False, reuse=True)
        self.saver = v1.train.Saver(max_to_keep=max_checkpoints)

    # -- networks
    def generator(self, z, is_training, reuse=False):
        """z: [batch, z_dim] -> images [batch, 28, 28, 1] in [0, 1]."""
        with v1.variable_scope(GENERATOR_SCOPE, reuse=reuse):
            # Biases before batch norm would be cancelled by its mean; beta plays their role.
            x = dense(z, 7 * 7 * 128, "project", use_bias=False)
            x = tf.reshape(x, [-1, 7, 7, 128])                                   # [b, 7, 7, 128]
            x = tf.nn.relu(batch_norm(x, "project_bn", is_training))
            x = conv2d_transpose(x, 64, "deconv0", use_bias=False)              # [b, 14, 14, 64]
            x = tf.nn.relu(batch_norm(x, "deconv0_bn", is_training))
            x = conv2d_transpose(x, self.image_shape[-1], "deconv1")             # [b, 28, 28, 1]
            return tf.sigmoid(x)

    def discriminator(self, images, reuse=False):
        """images: [batch, 28, 28, 1] -> logits [batch, 2] (index 1 = real).

        Its batch norm always uses the batch's own statistics: the discriminator only ever
        runs while training, on a whole real or a whole generated batch.
        """
        with v1.variable_scope(DISCRIMINATOR_SCOPE, reuse=reuse):
            x = conv2d(images, 64, "conv0")                                      # [b, 14, 14, 64]
            x = leaky_relu(self._batch_statistics_norm(x, "conv0_bn"))
            x = conv2d(x, 128, "conv1")                                          # [b, 7, 7, 128]
            x = leaky_relu(self._batch_statistics_norm(x, "conv1_bn"))
            x = tf.reshape(x, [-1, 7 * 7 * 128])
            return dense(x, 2, "classify")

    @staticmethod
    def _batch_statistics_norm(x, name):
        with v1.variable_scope(name):
            channels = int(x.shape[-1])
            beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
            gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
            mean, variance = tf.nn.moments(x, [0, 1, 2])
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)

    # -- losses and training
    @staticmethod
    def _cross_entropy(logits, label):
        labels = tf.fill([tf.shape(logits)[0]], label)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    def _losses(self):
        """Both losses at the current weights; evaluating them changes nothing."""
        real_logits = self.discriminator(self.real_images)
        fake_logits = self.discriminator(self.fake_images, reuse=True)
        d_loss = self._cross_entropy(real_logits, REAL_LABEL) + self._cross_entropy(fake_logits, FAKE_LABEL)
        # Non-saturating generator loss: push D to call generated images real.
        g_loss = self._cross_entropy(fake_logits, REAL_LABEL)
        return d_loss, g_loss

    def _train_ops(self, learning_rate, beta1, beta2):
        """One train op: the discriminator step, then the generator step.

        The generator's step loss is built inside `control_dependencies([d_train_op])`, so the
        discriminator's weights are read after its update: the generator trains against the
        discriminator it will next face. The generator's batch-norm averages are updated last.
        Fetch `g_step_loss` only together with `train_op` (alone it would run the D step).
        """
        d_vars = self.variables(DISCRIMINATOR_SCOPE)
        g_vars = self.variables(GENERATOR_SCOPE)
        d_optimizer = v1.train.AdamOptimizer(learning_rate, beta1, beta2, name="d_adam")
        g_optimizer = v1.train.AdamOptimizer(learning_rate, beta1, beta2, name="g_adam")
        d_train_op = d_optimizer.minimize(self.d_loss, var_list=d_vars)
        with v1.control_dependencies([d_train_op]):
            updated_fake_logits = self.discriminator(self.fake_images, reuse=True)
            g_step_loss = self._cross_entropy(updated_fake_logits, REAL_LABEL)
            g_train_op = g_optimizer.minimize(g_step_loss, var_list=g_vars)
        bn_updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS, scope=GENERATOR_SCOPE + "/")
        with v1.control_dependencies([g_train_op]):
            with v1.control_dependencies(bn_updates):
                train_op = v1.assign_add(self.global_step, 1, name="train_op").op
        return d_train_op, g_step_loss, train_op

    def variables(self, scope, trainable=True):
        """The variables of one network in this model's graph, selected by its variable scope."""
        key = v1.GraphKeys.TRAINABLE_VARIABLES if trainable else v1.GraphKeys.GLOBAL_VARIABLES
        return self.graph.get_collection(key, scope=scope + "/")

    # -- running
    def save(self, session, prefix, step=None):
        """Write a checkpoint (weights, Adam slots, batch-norm averages, step) -> its path."""
        with session.graph.as_default():  # the Saver needs graph mode even if eager is on
            return self.saver.save(session, prefix, global_step=step)

    def restore(self, session, path):
        with session.graph.as_default():
            self.saver.restore(session, path)

    def generate(self, session, z, batch_size=500):
        """Images for every row of `z` ([n, z_dim]) -> float32 [n, H, W, C]; adds no ops."""
        z = np.asarray(z, dtype=np.float32).reshape(-1, self.z_dim)
        chunks = [session.run(self.samples, {self.sample_z: z[i:i + batch_size]})
                  for i in range(0, len(z), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, *self.image_shape), np.float32)
