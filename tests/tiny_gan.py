"""A DeepConvolutionalGAN with an 8-value noise vector in its own graph and session, for tests."""
import numpy as np
import tensorflow as tf

from config import ModelConfig
from model import DeepConvolutionalGAN

v1 = tf.compat.v1
Z_DIM = 8


def build(seed=0, **config):
    """(graph, gan, session) with initialised variables; `config`: ModelConfig fields."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        gan = DeepConvolutionalGAN(ModelConfig(z_dim=Z_DIM, **config))
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return graph, gan, session


def feed(gan, batch=4, seed=1):
    """A feed of real-looking 28x28 images and noise for the train op."""
    rng = np.random.default_rng(seed)
    return {gan.real_images: rng.uniform(0, 1, (batch, 28, 28, 1)).astype(np.float32),
            gan.z: rng.uniform(-1, 1, (batch, Z_DIM)).astype(np.float32)}
