"""Images and scores from a trained generator: sample grids, morphing GIFs, --sample, and
the evaluator's numbers, for a run being trained or one restored from its folder."""
import os
import sys

import numpy as np

import latent
from config import ModelConfig
import outputs
from mlpreprocess import load_dataset, load_recorded_dataset
from runs import (
    CHECKPOINT_DIR,
    UsageError,
    latest_checkpoint,
    read_config,
    restore_checkpoint,
)

BN_BATCHES, BN_BATCH_SIZE = 2, 128  # noise for re-estimating the averaged generator's batch norm
MORPH_PATHS = 16                    # each morphing GIF shows a 4x4 grid of independent loops


class Sampler:
    """Images from the run's generator of choice.

    The averaged generator's batch-norm statistics are re-estimated (from seeded noise)
    whenever the weights have changed since the last estimate, so its images are always
    normalised with statistics that belong to its weights.
    """

    def __init__(self, gan, session, generator, seed):
        self.gan, self.session, self.generator, self.seed = gan, session, generator, seed
        self.z_dim = gan.z_dim
        self._estimated_at = None

    def __call__(self, z, generator=None):
        generator = generator or self.generator
        if generator == "averaged":
            step = int(self.session.run(self.gan.global_step))
            if step != self._estimated_at:
                rng = np.random.default_rng([self.seed, latent.BN_STREAM])
                batches = [latent.uniform_noise(rng, BN_BATCH_SIZE, self.z_dim) for _ in range(BN_BATCHES)]
                self.gan.reestimate_batch_norm(self.session, batches)
                self._estimated_at = step
        return self.gan.generate(self.session, z, generator)


def write_sample_grid(sampler, out_dir, step):
    """A 4x8 grid of samples from fresh noise (the same noise for a given seed)."""
    z = latent.uniform_noise(np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM]), 32, sampler.z_dim)
    grid = outputs.tile_grid(sampler(z), 4, 8)
    outputs.write_png(os.path.join(out_dir, f"samples_step{step:06d}.png"), grid)


def write_morphs(sampler, out_dir, step):
    """Both sphere-morphing GIFs: a 4x4 grid of independent 32-frame loops, enlarged 2x."""
    for schedule in latent.MORPH_SCHEDULES:
        rng = np.random.default_rng([sampler.seed, latent.MORPH_STREAM])
        paths = latent.sphere_paths(rng, sampler.z_dim, MORPH_PATHS, schedule=schedule)
        images = sampler(paths.reshape(-1, sampler.z_dim))
        images = images.reshape(len(paths), MORPH_PATHS, *images.shape[1:])  # [frame, path, H, W, C]
        side = int(np.sqrt(MORPH_PATHS))
        frames = [outputs.upscale(outputs.tile_grid(frame, side, side), 2) for frame in images]
        outputs.write_gif(os.path.join(out_dir, f"morph_{schedule}_step{step:06d}.gif"), frames,
                          frame_seconds=0.12)


def load_run_dataset(config):
    """The dataset of a run, from its config (a config.json or main1's flags): exactly the data
    it recorded ("data"), else the first place that has it. Runs from before data was recorded
    never downloaded, so they look offline."""
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    name = config.get("dataset", "mnist")
    if config.get("data"):
        return load_recorded_dataset(name, config["data"], log)
    return load_dataset(name, config["data_dir"], config.get("image_size", 64), config.get("channels"), log,
                        offline=config.get("offline", True))


def restore_run(out_dir, seed=None, generator=None):
    """The run's config, and its generator restored from the latest checkpoint in a new graph.

    Returns (config, Sampler, step); the sampler uses `generator` and `seed`, else the run's own.
    """
    # TensorFlow and the model are imported here, not at the top: main1.py's flag checks stay fast.
    import tensorflow as tf

    from model import DeepConvolutionalGAN

    config = read_config(out_dir)
    path = latest_checkpoint(out_dir)
    if not path:
        raise UsageError(f"no checkpoint in {os.path.join(out_dir, CHECKPOINT_DIR)}")
    graph = tf.Graph()
    with graph.as_default():
        gan = DeepConvolutionalGAN(ModelConfig.from_dict(config))
    graph.finalize()
    session = tf.compat.v1.Session(graph=graph)
    restore_checkpoint(gan, session, path)
    seed = config["seed"] if seed is None else seed
    sampler = Sampler(gan, session, generator or config["generator"], seed)
    return config, sampler, int(session.run(gan.global_step))


def sample_run(out_dir, n, seed, generator=None):
    """Write n images from the latest checkpoint to samples.npy and the first 64 to samples.png.

    The images go straight into a memory-mapped .npy file, a chunk at a time, so n is bounded
    by disk space rather than memory; the file is renamed into place when complete.
    """
    _config, sampler, step = restore_run(out_dir, seed, generator)
    gan = sampler.gan
    rng = np.random.default_rng([seed, latent.SAMPLE_STREAM])
    path = os.path.join(out_dir, "samples.npy")
    temporary = os.path.join(out_dir, ".samples.npy.tmp")
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(n, *gan.image_shape))
    chunk = 1000
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        array[start:start + count] = sampler(latent.uniform_noise(rng, count, gan.z_dim))
    array.flush()
    first = np.array(array[:64])
    del array
    os.replace(temporary, path)
    side = int(np.ceil(np.sqrt(len(first))))
    outputs.write_png(os.path.join(out_dir, "samples.png"),
                      outputs.tile_grid(first, int(np.ceil(len(first) / side)), side))
    return step
