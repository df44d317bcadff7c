"""A run folder on disk: its config, history and checkpoints, and the errors that say in one
line what is wrong with any of them."""
import argparse
import glob
import json
import os
import shutil

import numpy as np

import outputs
from config import RECIPE_CONDITIONINGS, ModelConfig

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "model.ckpt"
# Flags a resumed run must share with the run it continues.
RUN_DEFINING_FLAGS = ("dataset", "image_size", "channels", "batch_size", "eval_step", "recipe", "without",
                      "conditional", "conditioning",
                      "learning_rate", "beta1", "beta2", "ema_decay", "bf16", "z_dim", "seed", "data_dir")
# Flags a resumed run keeps from its config.json unless they are given again.
RESUMABLE_FLAGS = ("steps", "generator", "eval_every", "checkpoint_every")


class UsageError(Exception):
    """A user mistake (flag, file, folder): reported in one line, exit code 2."""


class CheckpointError(Exception):
    """A checkpoint could not be written; the previous one stays current."""


def error_summary(error):
    """One line saying what went wrong, from an OSError or a TensorFlow error's long report."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    noise = ("[[", "Hint:", "Detected at", "File ", "Node:", "Graph execution error")
    useful = [line for line in lines if not line.startswith(noise)]
    if not useful:
        return type(error).__name__
    return useful[-1].rsplit("; ", 1)[-1]  # TF puts the file before "; " and the reason after


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def cpu_has_bf16():
    """Whether /proc/cpuinfo lists bfloat16 instructions oneDNN can use."""
    try:
        with open("/proc/cpuinfo") as stream:
            flags = stream.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def session_config(bf16, model_config=None):
    """Session options: with bf16, oneDNN's automatic bfloat16 rewrite of the heavy ops.

    Ops run one at a time, each on every core: a second inter-op thread measured no faster
    (bench.py's speed, within 1%), and one at a time, a traced op's time is its own.
    A spectrally normalised discriminator (conv, bias, leaky ReLU with no batch norm between)
    makes TensorFlow 2.21's grappler remapper fail on the whole graph with an error line
    ("fanout ... LeakyReluGrad exist for missing node"), leaving the graph as if it were off;
    it is turned off for such models so that nothing is printed (the same speed, measured).
    """
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1)
    if model_config is not None and model_config.uses("spectral_norm"):
        config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    if bf16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def latest_checkpoint(out_dir):
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast

    return tf.train.latest_checkpoint(os.path.join(out_dir, CHECKPOINT_DIR))


def read_config(out_dir, missing_message=None):
    """The config.json of the run in out_dir; UsageError when there is none or it is unreadable."""
    path = os.path.join(out_dir, "config.json")
    try:
        with open(path) as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise UsageError(missing_message or f"--out-dir {out_dir} holds no run (no config.json)") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def restore_checkpoint(gan, session, path):
    """gan.restore, with a damaged or foreign checkpoint turned into a one-line UsageError."""
    import tensorflow as tf  # here, not at the top: main1.py's flag checks stay fast

    try:
        gan.restore(session, path)
    except (tf.errors.OpError, ValueError) as error:
        if isinstance(error, ValueError):  # the model's own one-line message names the path
            raise UsageError(str(error)) from None
        raise UsageError(f"cannot restore checkpoint {path}: {error_summary(error)}") from None


# ----------------------------------------------------------------------------- the out dir
def holds_run(out_dir):
    return os.path.exists(os.path.join(out_dir, "config.json")) or \
        os.path.isdir(os.path.join(out_dir, CHECKPOINT_DIR))


RUN_OUTPUT_PATTERNS = ("config.json", "timing.json", "metrics.csv", "metrics.png", "evaluation.json",
                       "samples.npy", "labels.npy", "samples.png", "classes_step*.png", "losses.csv", "loss.png",
                       "progress_step*.png",
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
    args.data = saved.get("data")  # train on exactly the data the run began with
    # Runs made before these flags existed:
    saved = {"recipe": "original", "without": [], "conditional": False,
             "conditioning": RECIPE_CONDITIONINGS[saved.get("recipe", "original")], **saved}
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


def model_config(args, image_shape, num_classes=0):
    return ModelConfig(image_shape=tuple(image_shape), z_dim=args.z_dim, dataset=args.dataset,
                       recipe=args.recipe, without=tuple(args.without), learning_rate=args.learning_rate,
                       beta1=args.beta1, beta2=args.beta2, ema_decay=args.ema_decay,
                       num_classes=num_classes, conditioning=args.conditioning)


def save_config(args, image_shape, data_origin, num_classes=0):
    config = {name: getattr(args, name) for name in
              ("dataset", "image_size", "channels", "steps", "batch_size", "eval_step", "recipe", "without",
               "conditional", "conditioning",
               "learning_rate",
               "beta1", "beta2", "ema_decay", "generator", "bf16", "z_dim", "seed", "data_dir", "out_dir",
               "checkpoint_every", "eval_every")}
    config["image_shape"] = list(image_shape)
    config["num_classes"] = num_classes
    config["data"] = data_origin  # which data exactly: resume and evaluation read it again
    outputs.write_json(os.path.join(args.out_dir, "config.json"), config)


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

    def add_train_seconds(self, seconds):
        self.train_seconds += seconds

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

    FILES = (".history.json", ".snapshots.npy")  # beside each checkpoint, named by its prefix

    @classmethod
    def prune(cls, checkpoint_prefix, kept):
        """Delete the history files of every checkpoint of `checkpoint_prefix` not in `kept`
        (the prefixes the Saver still keeps): history and weights leave together."""
        kept = {os.path.basename(prefix) for prefix in kept}
        for path in glob.glob(f"{checkpoint_prefix}-*{cls.FILES[0]}"):
            prefix = path[:-len(cls.FILES[0])]
            if os.path.basename(prefix) not in kept:
                for suffix in cls.FILES:
                    os.remove(prefix + suffix)

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
