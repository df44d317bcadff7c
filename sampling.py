"""Images and scores from a trained generator: sample grids, morphing GIFs, --sample, and
the evaluator's numbers, for a run being trained or one restored from its folder."""
import io
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

    def __call__(self, z, generator=None, labels=None):
        """Images for noise z [n, z_dim]; a conditional model draws row i as class labels[i]
        (default: classes 0, 1, ..., K-1, 0, 1, ... in turn)."""
        generator = generator or self.generator
        if generator == "averaged":
            step = int(self.session.run(self.gan.global_step))
            if step != self._estimated_at:
                rng = np.random.default_rng([self.seed, latent.BN_STREAM])
                batches = [latent.uniform_noise(rng, BN_BATCH_SIZE, self.z_dim) for _ in range(BN_BATCHES)]
                self.gan.reestimate_batch_norm(self.session, batches)
                self._estimated_at = step
        return self.gan.generate(self.session, z, generator, labels=labels)

    @property
    def num_classes(self):
        return self.gan.num_classes


def write_sample_grid(sampler, out_dir, step):
    """A 4x8 grid of samples from fresh noise (the same noise for a given seed)."""
    z = latent.uniform_noise(np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM]), 32, sampler.z_dim)
    grid = outputs.tile_grid(sampler(z), 4, 8)
    outputs.write_png(os.path.join(out_dir, f"samples_step{step:06d}.png"), grid)


CLASS_GRID_COLUMNS = 8


def write_class_grid(sampler, out_dir, step, class_names):
    """classes_stepN.png: one row per class, named; each column one noise vector for every
    row, so a column shows one style in every class."""
    classes = sampler.num_classes
    z = latent.uniform_noise(np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM]),
                             CLASS_GRID_COLUMNS, sampler.z_dim)
    images = sampler(np.tile(z, (classes, 1)), labels=np.repeat(np.arange(classes), CLASS_GRID_COLUMNS))
    names = class_names or [str(k) for k in range(classes)]
    outputs.write_class_grid(os.path.join(out_dir, f"classes_step{step:06d}.png"),
                             outputs.tile_grid(images, classes, CLASS_GRID_COLUMNS), names)


def morph_labels(num_classes, label=None):
    """The class of each of the MORPH_PATHS loops: all `label`; else each column of the 4x4 grid
    one class, spread over the classes (0, 3, 6, 9 of ten)."""
    if label is not None:
        return np.full(MORPH_PATHS, label, dtype=np.int64)
    side = int(np.sqrt(MORPH_PATHS))
    columns = np.round(np.linspace(0, num_classes - 1, side)).astype(np.int64)
    return np.tile(columns, side)  # path p sits in column p % side


def write_morphs(sampler, out_dir, step, label=None):
    """Both sphere-morphing GIFs: a 4x4 grid of independent 32-frame loops, enlarged 2x. A
    conditional model holds each loop's class fixed: `label` for all, else one class per column
    (and the files are named ..._classK_... for one class)."""
    name = f"_class{label}" if label is not None else ""
    for schedule in latent.MORPH_SCHEDULES:
        rng = np.random.default_rng([sampler.seed, latent.MORPH_STREAM])
        paths = latent.sphere_paths(rng, sampler.z_dim, MORPH_PATHS, schedule=schedule)
        labels = None
        if sampler.num_classes:
            labels = np.tile(morph_labels(sampler.num_classes, label), len(paths))  # frame-major, as paths
        images = sampler(paths.reshape(-1, sampler.z_dim), labels=labels)
        images = images.reshape(len(paths), MORPH_PATHS, *images.shape[1:])  # [frame, path, H, W, C]
        side = int(np.sqrt(MORPH_PATHS))
        frames = [outputs.upscale(outputs.tile_grid(frame, side, side), 2) for frame in images]
        outputs.write_gif(os.path.join(out_dir, f"morph_{schedule}{name}_step{step:06d}.gif"), frames,
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


def check_label(label, num_classes, out_dir):
    """UsageError unless `label` (None: not given) is a class of the run's model."""
    if label is None:
        return
    if not num_classes:
        raise UsageError(f"--label: the run in {out_dir} is unconditional (trained without --conditional)")
    if not 0 <= label < num_classes:
        raise UsageError(f"--label {label}: the run in {out_dir} has classes 0 to {num_classes - 1}")


def sample_run(out_dir, n, seed, generator=None, label=None):
    """Write n images from the latest checkpoint to samples.npy and the first 64 to samples.png;
    for a conditional run also labels.npy (int64 [n]: the class each image was asked to be,
    classes 0, 1, ..., K-1, 0, 1, ... in turn, or all `label`).

    The images go straight into a memory-mapped .npy file, a chunk at a time, so n is bounded
    by disk space rather than memory; the file is renamed into place when complete.
    """
    _config, sampler, step = restore_run(out_dir, seed, generator)
    gan = sampler.gan
    check_label(label, gan.num_classes, out_dir)
    labels = None
    if gan.num_classes:
        labels = np.full(n, label, np.int64) if label is not None else latent.balanced_labels(n, gan.num_classes)
    rng = np.random.default_rng([seed, latent.SAMPLE_STREAM])
    path = os.path.join(out_dir, "samples.npy")
    temporary = os.path.join(out_dir, ".samples.npy.tmp")
    array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(n, *gan.image_shape))
    chunk = 1000
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        array[start:start + count] = sampler(latent.uniform_noise(rng, count, gan.z_dim),
                                             labels=None if labels is None else labels[start:start + count])
    array.flush()
    first = np.array(array[:64])
    del array
    os.replace(temporary, path)
    if labels is not None:
        outputs.write_atomic(os.path.join(out_dir, "labels.npy"), _npy_bytes(labels))
    elif os.path.exists(os.path.join(out_dir, "labels.npy")):
        os.remove(os.path.join(out_dir, "labels.npy"))
    side = int(np.ceil(np.sqrt(len(first))))
    outputs.write_png(os.path.join(out_dir, "samples.png"),
                      outputs.tile_grid(first, int(np.ceil(len(first) / side)), side))
    return step


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
