"""A run folder on disk: its config and checkpoints, the session that trains or restores it,
and the errors that say in one line what is wrong with any of them."""
import argparse
import json
import os

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "model.ckpt"


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


def session_config(bf16):
    """Session options: with bf16, oneDNN's automatic bfloat16 rewrite of the heavy ops.

    Ops run one at a time, each on every core: a second inter-op thread measured no faster
    (bench.py's speed, within 1%), and one at a time, a traced op's time is its own.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1)
    if bf16:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def latest_checkpoint(out_dir):
    import tensorflow as tf

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
    import tensorflow as tf

    try:
        gan.restore(session, path)
    except (tf.errors.OpError, ValueError) as error:
        if isinstance(error, ValueError):  # the model's own one-line message names the path
            raise UsageError(str(error)) from None
        raise UsageError(f"cannot restore checkpoint {path}: {error_summary(error)}") from None
