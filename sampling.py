"""Images from a trained generator: sample and class grids, morphing GIFs, batch-norm
re-estimation and --sample, for a run being trained or one restored from its folder."""
import os
import shutil

import numpy as np

import latent
import outputs
from config import ModelConfig, info_differences
from runs import UsageError, checkpoint_info, chosen_checkpoint, restore_checkpoint

BN_BATCHES, BN_BATCH_SIZE = 2, 128  # noise for re-estimating the averaged generator's batch norm
RESTORE_ATTEMPTS = 5               # readers beside a training run: checkpoints come and go
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
                reestimate_batch_norm(self.gan, self.session, batches)
                self._estimated_at = step
        return generate(self.gan, self.session, z, generator, labels=labels)

    @property
    def num_classes(self):
        return self.gan.num_classes


def generate(gan, session, z, generator="raw", labels=None, batch_size=500):
    """Images for every row of `z` ([n, z_dim]) -> float32 [n, H, W, C], in chunks of
    batch_size; adds no ops. A conditional model draws row i as class labels[i] (default:
    latent.balanced_labels).

    generator: "raw" (trained weights, moving-average batch norm), "raw-batch-stats" (trained
    weights, each chunk normalised by its own statistics) or "averaged" (weight averages; call
    reestimate_batch_norm first, or use a Sampler, which does).
    """
    z = np.asarray(z, dtype=np.float32).reshape(-1, gan.z_dim)
    labels = (latent.balanced_labels(len(z), gan.num_classes) if labels is None
              else np.asarray(labels).reshape(-1))
    if gan.num_classes and len(labels) != len(z):
        raise ValueError(f"{len(labels)} labels for {len(z)} noise vectors")
    chunks = [session.run(gan.samples[generator], _sample_feed(gan, z[i:i + batch_size], labels[i:i + batch_size]))
              for i in range(0, len(z), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, *gan.image_shape), np.float32)


def _sample_feed(gan, z, labels=None):
    """Feed of the sampler placeholders; a conditional model's classes default to balanced."""
    if not gan.num_classes:
        return {gan.sample_z: z}
    return {gan.sample_z: z,
            gan.sample_labels: latent.balanced_labels(len(z), gan.num_classes) if labels is None else labels}


def reestimate_batch_norm(gan, session, z_batches):
    """Population batch-norm statistics of the averaged generator from noise batches.

    Layer by layer the batch moments are averaged over the batches (each batch normalised by
    its own moments, as in training), then stored; sampling the averaged generator uses them.
    Returns the number of statistics set.
    """
    totals = None
    for z in z_batches:
        values = session.run(gan.bn_batch_values, _sample_feed(gan, z))
        totals = values if totals is None else [t + v for t, v in zip(totals, values, strict=True)]
    feed = {p: t / len(z_batches) for p, t in zip(gan.bn_inputs, totals, strict=True)}
    session.run(gan.bn_assign, feed)
    return len(feed)


def write_sample_grid(sampler, folder, step):
    """A 4x8 grid of samples from fresh noise (the same noise for a given seed)."""
    z = latent.uniform_noise(np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM]), 32, sampler.z_dim)
    grid = outputs.tile_grid(sampler(z), 4, 8)
    outputs.write_png(folder.output(f"samples_step{step:06d}.png"), grid)


CLASS_GRID_COLUMNS = 8


def write_class_grid(sampler, folder, step, class_names):
    """classes_stepN.png: one row per class, named; each column one noise vector for every
    row, so a column shows one style in every class."""
    classes = sampler.num_classes
    z = latent.uniform_noise(np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM]),
                             CLASS_GRID_COLUMNS, sampler.z_dim)
    images = sampler(np.tile(z, (classes, 1)), labels=np.repeat(np.arange(classes), CLASS_GRID_COLUMNS))
    names = class_names or [str(k) for k in range(classes)]
    outputs.write_class_grid(folder.output(f"classes_step{step:06d}.png"),
                             outputs.tile_grid(images, classes, CLASS_GRID_COLUMNS), names)


def morph_labels(num_classes, label=None):
    """The class of each of the MORPH_PATHS loops: all `label`; else each column of the 4x4 grid
    one class, spread over the classes (0, 3, 6, 9 of ten)."""
    if label is not None:
        return np.full(MORPH_PATHS, label, dtype=np.int64)
    side = int(np.sqrt(MORPH_PATHS))
    columns = np.round(np.linspace(0, num_classes - 1, side)).astype(np.int64)
    return np.tile(columns, side)  # path p sits in column p % side


def write_morphs(sampler, folder, step, label=None, tag=""):
    """Both sphere-morphing GIFs: a 4x4 grid of independent 32-frame loops, enlarged 2x. A
    conditional model holds each loop's class fixed: `label` for all, else one class per column
    (and the files are named ..._classK_... for one class). `tag` goes into the file names
    (another seed or generator than the run's: the run's own GIFs stay)."""
    name = (f"_class{label}" if label is not None else "") + tag
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
        outputs.write_gif(folder.output(f"morph_{schedule}{name}_step{step:06d}.gif"), frames, frame_seconds=0.12)


def morph_run(folder, config, seed, generator, label=None, checkpoint="latest"):
    """--morph: both morphing GIFs of a run's checkpoint -> its iteration. Another seed or
    generator than the run's own writes files named with them, beside the run's GIFs."""
    sampler, step = restore_run(config, seed, generator, checkpoint)
    own = seed == config.seed and generator == config.generator
    tag = "" if own else f"_seed{seed}" + ("" if generator == config.generator else f"_{generator}")
    write_morphs(sampler, folder, step, label, tag=tag)
    return step


def checkpoint_model_config(config, path):
    """The model a checkpoint holds, rebuilt from the checkpoint's own record (its whole
    ModelConfig; older checkpoints: the run's config.json). A checkpoint whose shape-defining
    settings are not the run's is a one-line UsageError."""
    saved = checkpoint_info(path) or {}
    expected = config.model_config()
    differences = info_differences(saved, expected.info())
    if differences:
        listed = ", ".join(f"{name} {held!r} (config.json: {wanted!r})" for name, (held, wanted) in
                           sorted(differences.items()))
        raise UsageError(f"checkpoint {path} is not a checkpoint of this run's model: {listed}; was it copied "
                         f"from another run?")
    if "model_config" not in saved:
        return expected
    return ModelConfig.from_dict(saved["model_config"])


def restore_run(config, seed=None, generator=None, checkpoint="latest"):
    """The run's generator restored in a new graph from its latest complete checkpoint, or the
    one `checkpoint` names (best, or an iteration; runs.chosen_checkpoint).

    Returns (Sampler, step); the sampler uses `generator` and `seed`, else the run's own.
    """
    # TensorFlow and the model are imported here, not at the top: main1.py's flag checks stay fast.
    import tensorflow as tf

    from model import DeepConvolutionalGAN

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config.seed or 0)  # initial values, replaced by the checkpoint's
        gan = DeepConvolutionalGAN(checkpoint_model_config(config, chosen_checkpoint(config.out_dir, checkpoint)))
    graph.finalize()
    session = tf.compat.v1.Session(graph=graph)
    for attempt in range(RESTORE_ATTEMPTS):
        path = chosen_checkpoint(config.out_dir, checkpoint)
        try:
            restore_checkpoint(gan, session, path)
            break
        except UsageError:
            # A run training beside this reader may have pruned (or replaced the best) checkpoint
            # while it was read: then another one is named, and is read instead.
            if attempt == RESTORE_ATTEMPTS - 1 or chosen_checkpoint(config.out_dir, checkpoint) == path:
                raise
    sampler = Sampler(gan, session, generator or config.generator, config.seed if seed is None else seed)
    return sampler, int(session.run(gan.global_step))


def check_label(label, num_classes, out_dir):
    """UsageError unless `label` (None: not given) is a class of the run's model."""
    if label is None:
        return
    if not num_classes:
        raise UsageError(f"--label: the run in {out_dir} is unconditional (trained without --conditional)")
    if not 0 <= label < num_classes:
        raise UsageError(f"--label {label}: the run in {out_dir} has classes 0 to {num_classes - 1}")


SAMPLE_CHUNK = 1000


def sample_bytes(n, image_shape, num_classes):
    """Disk space --sample n needs: samples.npy (float32), labels.npy, and room for samples.png."""
    header = 128
    return header + 4 * n * int(np.prod(image_shape)) + (header + 8 * n if num_classes else 0) + (1 << 20)


def sample_run(folder, config, n, seed, generator=None, label=None, checkpoint="latest"):
    """Write n images from the latest checkpoint to samples.npy and the first 64 to samples.png;
    for a conditional run also labels.npy (int64 [n]: the class each image was asked to be,
    classes 0, 1, ..., K-1, 0, 1, ... in turn, or all `label`).

    The free space is checked first; the images are then written a chunk at a time with plain
    file writes (a full disk is an OSError, never a signal) under a temporary name, removed on
    any failure or interruption, and renamed into place when complete.
    """
    check_label(label, config.num_classes, config.out_dir)
    needed, free = sample_bytes(n, config.image_shape, config.num_classes), shutil.disk_usage(folder.path).free
    if needed > free:
        raise UsageError(f"--sample {n}: needs {needed:,} bytes in {folder.path}, and {free:,} are free")
    sampler, step = restore_run(config, seed, generator, checkpoint)
    labels = None
    if config.num_classes:
        labels = (np.full(n, label, np.int64) if label is not None
                  else latent.balanced_labels(n, config.num_classes))
    rng = np.random.default_rng([seed, latent.SAMPLE_STREAM])
    temporary = folder.claim(f".samples.npy.{os.getpid()}.tmp")
    path = folder.output("samples.npy")
    try:
        with open(temporary, "wb") as stream:
            np.lib.format.write_array_header_1_0(stream, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                "shape": (n, *config.image_shape)})
            for start in range(0, n, SAMPLE_CHUNK):
                count = min(SAMPLE_CHUNK, n - start)
                images = sampler(latent.uniform_noise(rng, count, config.z_dim),
                                 labels=None if labels is None else labels[start:start + count])
                if start == 0:
                    first = images[:64]
                stream.write(np.ascontiguousarray(images, dtype=np.float32).tobytes())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    if labels is not None:
        outputs.write_atomic(folder.output("labels.npy"), outputs.npy_bytes(labels))
    elif os.path.exists(folder.join("labels.npy")) and folder.owns("labels.npy"):
        os.remove(folder.join("labels.npy"))  # an earlier conditional --sample's: not these samples'
    side = int(np.ceil(np.sqrt(len(first))))
    outputs.write_png(folder.output("samples.png"), outputs.tile_grid(first, int(np.ceil(len(first) / side)), side))
    return step
