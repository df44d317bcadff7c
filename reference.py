"""The quality reference: the exercise's network written the plain way, trained on the same data.

    python reference.py --seed 1 --steps 20000 --eval-every 2000 --out-dir results/reference-s1
    python reference.py ... --out-dir results/reference-s1 --resume     # after Ctrl-C: continue bit for bit

The same layer sizes as the original exercise (see model.py), written the way the TensorFlow
DCGAN tutorial writes a GAN today: Keras 3 models, GradientTape, tf.function. The DCGAN paper's
rule of no batch norm on the discriminator's input layer; the discriminator step, then the
generator step; Adam 1e-4 / 0.5 / 0.999; noise uniform in [-1, 1]; pixels in [0, 1]. It trains on
the same batches and noise as `main1.py --seed S` (latent.TrainingFeed) and writes what a run
writes for scoring: metrics.csv (with --eval-every, same evaluator, same noise), samples.npy and
a sample grid, so `evaluate.py --compare` and `evaluate.py --samples` score it on the same scale.
It checkpoints its models, both Adam states and its metric history (tf.train.Checkpoint), so a
stopped run continues exactly where it stopped.
bench.py times the same code (`keras_networks`, `keras_train_step`) for speed.
"""
import glob
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from tqdm import tqdm

import classifier
import evaluate
import latent
import outputs
import runs
import training
from mlpreprocess import DatasetError, load_dataset

REFERENCE_DATASETS = ("mnist", "fashion_mnist")  # the exercise's 28x28x1 layout


def keras_networks(z_dim=64, image_shape=(28, 28, 1), d_input_batch_norm=False, seed=0):
    """(generator, discriminator): Keras 3 models with the exercise's layer sizes.

    d_input_batch_norm=True gives the original exercise's discriminator (bench.py's speed
    comparison); False follows the DCGAN paper (the quality reference).
    """
    keras.utils.set_random_seed(seed)
    init = keras.initializers.TruncatedNormal(stddev=0.02, seed=seed)
    generator = keras.Sequential([
        keras.Input((z_dim,)),
        layers.Dense(7 * 7 * 128, use_bias=False, kernel_initializer=init),
        layers.Reshape((7, 7, 128)),
        layers.BatchNormalization(momentum=0.99, epsilon=1e-5), layers.ReLU(),
        layers.Conv2DTranspose(64, 5, 2, "same", use_bias=False, kernel_initializer=init),
        layers.BatchNormalization(momentum=0.99, epsilon=1e-5), layers.ReLU(),
        layers.Conv2DTranspose(image_shape[-1], 5, 2, "same", kernel_initializer=init,
                               activation="sigmoid")])
    input_norm = [layers.BatchNormalization(epsilon=1e-5)] if d_input_batch_norm else []
    discriminator = keras.Sequential([
        keras.Input(image_shape),
        layers.Conv2D(64, 5, 2, "same", kernel_initializer=init), *input_norm, layers.LeakyReLU(0.2),
        layers.Conv2D(128, 5, 2, "same", kernel_initializer=init),
        layers.BatchNormalization(epsilon=1e-5), layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dense(2, kernel_initializer=init)])
    return generator, discriminator


def keras_train_step(generator, discriminator, learning_rate=1e-4, beta1=0.5, beta2=0.999):
    """A tf.function (images, z) -> (D loss, G loss): the D step, then the G step against the
    updated D; two-logit cross-entropy (index 1 = real), non-saturating generator loss."""
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    g_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta1, beta_2=beta2)
    d_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta1, beta_2=beta2)

    @tf.function
    def train_step(images, z):
        batch = tf.shape(images)[0]
        real_label, fake_label = tf.ones([batch], tf.int32), tf.zeros([batch], tf.int32)
        with tf.GradientTape() as tape:  # D step against the current G
            fake = generator(z, training=True)
            d_loss = (cross_entropy(real_label, discriminator(images, training=True))
                      + cross_entropy(fake_label, discriminator(fake, training=True)))
        d_optimizer.apply_gradients(zip(tape.gradient(d_loss, discriminator.trainable_variables),
                                        discriminator.trainable_variables, strict=True))
        with tf.GradientTape() as tape:  # then the G step against the updated D
            fake = generator(z, training=True)
            g_loss = cross_entropy(real_label, discriminator(fake, training=True))
        g_optimizer.apply_gradients(zip(tape.gradient(g_loss, generator.trainable_variables),
                                        generator.trainable_variables, strict=True))
        return d_loss, g_loss
    train_step.optimizers = (g_optimizer, d_optimizer)  # what a checkpoint keeps besides the models
    return train_step


class KerasSampler:
    """Images from the reference generator (inference-mode batch norm), called like sampling.Sampler."""
    generator = "raw"
    num_classes = 0  # unconditional, like every run it is compared with

    def __init__(self, generator, seed, z_dim):
        self.model, self.seed, self.z_dim = generator, seed, z_dim

    def __call__(self, z, generator=None, batch_size=500):
        chunks = [self.model(z[i:i + batch_size], training=False).numpy() for i in range(0, len(z), batch_size)]
        return np.concatenate(chunks)


def parse_args(argv):
    parser = runs.ArgumentParser(description="Train the plain Keras DCGAN reference and write what "
                                             "evaluate.py scores.")
    parser.add_argument("--steps", type=int, default=20000, help="training iterations; default %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="seed of weights, data order and noise; "
                                                            "default %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default %(default)s")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="every this many iterations, score samples into metrics.csv (0: never)")
    parser.add_argument("--checkpoint-every", type=int, default=1000,
                        help="iterations between checkpoints (one is always written at the end and when "
                             "stopped by Ctrl-C); default %(default)s")
    parser.add_argument("--samples", type=int, default=5000,
                        help="images written to samples.npy at the end; default %(default)s")
    parser.add_argument("--dataset", default="mnist", choices=REFERENCE_DATASETS,
                        help="the 28x28 grey images to learn, as for main1.py; default %(default)s")
    parser.add_argument("--data-dir", default=None, help="IDX files of --dataset, as for main1.py")
    parser.add_argument("--offline", action="store_true", help="never touch the network, as for main1.py")
    parser.add_argument("--out-dir", required=True, help="folder for the outputs (created)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out-dir from its latest checkpoint (bit for bit)")
    parser.add_argument("--cache-dir", default=classifier.DEFAULT_CACHE_DIR,
                        help="where the evaluator's classifier is cached; default %(default)s")
    args = parser.parse_args(argv)
    for flag in ("steps", "batch_size", "samples", "checkpoint_every"):
        if getattr(args, flag) < 1:
            raise runs.UsageError(f"--{flag.replace('_', '-')} must be a positive integer")
    if args.eval_every < 0:
        raise runs.UsageError("--eval-every must be 0 (never) or positive")
    return args


DEFINING = ("dataset", "seed", "batch_size", "z_dim")  # what a resumed run must share with its config.json


def run_config(args, dataset, z_dim=64):
    """config.json's content: what the run is (compare.py labels it "reference")."""
    return {"recipe": "reference", "dataset": args.dataset, "data_dir": args.data_dir, "data": dataset.origin,
            "steps": args.steps, "seed": args.seed, "batch_size": args.batch_size,
            "image_shape": list(dataset.image_shape), "z_dim": z_dim}


def check_resumable(args, config):
    """UsageError unless --resume may continue the run whose config.json is `config`."""
    saved = runs.read_json(os.path.join(args.out_dir, "config.json"),
                           f"--resume: no run to continue in {args.out_dir} (no config.json)")
    changed = [name for name in DEFINING if saved.get(name) != config[name]]
    if saved.get("recipe") != "reference" or changed:
        what = ", ".join(f"--{name.replace('_', '-')} {config[name]} (the run's: {saved.get(name)})"
                         for name in changed) or "it is not a reference.py run"
        raise runs.UsageError(f"--resume: {args.out_dir} holds another run: {what}")


class Checkpoints:
    """The models, both Adam states and the metric history of a run, every --checkpoint-every
    iterations, in OUT/checkpoints/reference-N (tf.train.Checkpoint; the history beside it)."""

    def __init__(self, out_dir, generator, discriminator, optimizers):
        for optimizer, model in zip(optimizers, (generator, discriminator), strict=True):
            optimizer.build(model.trainable_variables)  # its slots exist now, so a restore fills them
        import tensorflow as tf

        self.checkpoint = tf.train.Checkpoint(generator=generator, discriminator=discriminator,
                                              g_optimizer=optimizers[0], d_optimizer=optimizers[1])
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(out_dir, runs.CHECKPOINT_DIR),
                                                  max_to_keep=2, checkpoint_name="reference")

    def save(self, step, rows, seconds):
        """The history first, then the checkpoint, whose index entry makes both current."""
        prefix = os.path.join(self.manager.directory, f"reference-{step}")
        os.makedirs(self.manager.directory, exist_ok=True)
        outputs.write_json(prefix + ".history.json", {"rows": rows, "seconds": seconds})
        self.manager.save(checkpoint_number=step)
        kept = {path + ".history.json" for path in self.manager.checkpoints}
        for history in glob.glob(os.path.join(self.manager.directory, "reference-*.history.json")):
            if history not in kept:  # its checkpoint was pruned
                os.remove(history)

    def restore(self):
        """-> (step, metric rows, training seconds) of the latest checkpoint."""
        path = self.manager.latest_checkpoint
        if path is None:
            raise runs.UsageError(f"--resume: no checkpoint in {self.manager.directory}; start it again "
                                  f"without --resume")
        self.checkpoint.restore(path).assert_existing_objects_matched()
        history = runs.read_json(path + ".history.json", f"--resume: {path}.history.json is missing")
        return runs.checkpoint_step(path), history["rows"], history["seconds"]


def train(args, dataset, evaluator, z_dim=64):
    """Train from the start or the latest checkpoint, scoring every --eval-every iterations and
    checkpointing every --checkpoint-every -> (sampler, metric rows, training seconds, the signal
    that stopped it or None)."""
    generator, discriminator = keras_networks(z_dim, dataset.image_shape, seed=args.seed)
    train_step = keras_train_step(generator, discriminator)
    checkpoints = Checkpoints(args.out_dir, generator, discriminator, train_step.optimizers)
    start, rows, seconds = checkpoints.restore() if args.resume else (0, [], 0.0)
    feed = latent.TrainingFeed(dataset.images, args.batch_size, z_dim, args.seed)
    sampler = KerasSampler(generator, args.seed, z_dim)
    signals = training.SignalFlag()  # a stop ends the iteration, then saves
    try:
        for step in tqdm(range(start + 1, args.steps + 1), initial=start, total=args.steps, desc="reference",
                         unit="it", mininterval=1.0, file=sys.stderr):
            started = time.perf_counter()
            d_loss, _ = train_step(feed.batch(step - 1), feed.noise(step - 1))
            d_loss.numpy()  # wait for the step to finish before stopping the clock
            seconds += time.perf_counter() - started
            if evaluator and (step % args.eval_every == 0 or step == args.steps):
                metrics = evaluate.score_generator(evaluator, sampler)
                rows.append(outputs.metric_row(step, "raw", seconds, metrics))
                outputs.write_metrics(os.path.join(args.out_dir, "metrics.csv"),
                                      os.path.join(args.out_dir, "metrics.png"), rows, evaluator.floor)
                print(f"iteration {step}: Frechet distance {metrics['frechet_distance']:.1f} "
                      f"(real {evaluator.floor['frechet_distance']:.1f}), {seconds:.0f} s of training",
                      file=sys.stderr)
            if step % args.checkpoint_every == 0 or step == args.steps or signals.signum is not None:
                with runs.signals_deferred():  # a second Ctrl-C waits for the checkpoint
                    checkpoints.save(step, rows, seconds)
            if signals.signum is not None:
                return sampler, rows, seconds, signals.signum
    finally:
        signals.restore()
    return sampler, rows, seconds, None


def write_samples(sampler, n, out_dir, step):
    """samples.npy (n images from the sample stream, as main1.py --sample) and a 4x8 grid."""
    rng = np.random.default_rng([sampler.seed, latent.SAMPLE_STREAM])
    images = sampler(latent.uniform_noise(rng, n, sampler.z_dim))
    with open(os.path.join(out_dir, ".samples.npy.tmp"), "wb") as stream:
        np.save(stream, images.astype(np.float32))
    os.replace(os.path.join(out_dir, ".samples.npy.tmp"), os.path.join(out_dir, "samples.npy"))
    outputs.write_png(os.path.join(out_dir, f"samples_step{step:06d}.png"), outputs.tile_grid(images[:32], 4, 8))


def run(args):
    """Load, train (or continue), write -> exit code."""
    dataset = load_dataset(args.dataset, args.data_dir, log=lambda line: print(line, file=sys.stderr),
                           offline=args.offline)
    print(dataset.source, file=sys.stderr)
    config = run_config(args, dataset)
    if args.resume:
        check_resumable(args, config)
    elif runs.latest_checkpoint(args.out_dir):
        raise runs.UsageError(f"--out-dir {args.out_dir} holds a reference run at iteration "
                              f"{runs.checkpoint_step(runs.latest_checkpoint(args.out_dir))}: --resume continues it; "
                              f"or choose another --out-dir")
    evaluator = evaluate.make_evaluator(dataset, args.cache_dir)[0] if args.eval_every else None
    os.makedirs(args.out_dir, exist_ok=True)
    outputs.write_json(os.path.join(args.out_dir, "config.json"), config)
    tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    sampler, rows, seconds, signum = train(args, dataset, evaluator)
    step = args.steps if signum is None else runs.checkpoint_step(tf.train.latest_checkpoint(
        os.path.join(args.out_dir, runs.CHECKPOINT_DIR)))
    if signum is None:
        write_samples(sampler, args.samples, args.out_dir, step)
    total = time.perf_counter() - started
    previous = os.path.join(args.out_dir, "timing.json") if args.resume else None
    outputs.write_json(os.path.join(args.out_dir, "timing.json"), runs.timing_record(
        {"training": seconds, "other": total - seconds, "total": total}, previous))
    if signum is not None:
        print(f"reference.py: stopped by {signal.Signals(signum).name}; the latest checkpoint is iteration {step} "
              f"(--resume continues from it)", file=sys.stderr)
        return runs.SIGNAL_EXIT_CODES[signum]
    print(f"reference: {step} iterations in {seconds:.0f} s of training; outputs in {args.out_dir}")
    return 0


def main(argv=None):
    try:
        with runs.raising_on_signals():
            return run(parse_args(argv))
    except (runs.UsageError, DatasetError, classifier.InstrumentError) as error:
        print(f"reference.py: error: {error}", file=sys.stderr)
        return 2
    except runs.Interrupted as stop:
        print(f"reference.py: stopped by {stop}; the checkpoints in {runs.CHECKPOINT_DIR}/ are as they were",
              file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
