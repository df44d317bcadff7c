"""Train the DCGAN on MNIST and write its loss plot, progress pictures and morphing GIFs.

    python main1.py                       # 20,000 iterations with the original's settings
    python main1.py --steps 2000 --seed 1 --out-dir results/short
    python main1.py --resume              # continue the run in --out-dir

See README.md for every flag and output.
"""
import os
import signal
import sys

if __name__ == "__main__":  # a Ctrl-C while the modules below load: nothing is written yet
    def _stopped_while_starting(signum, _frame):
        print(f"main1.py: stopped by {signal.Signals(signum).name} while starting; nothing was written",
              file=sys.stderr)
        os._exit(128 + signum)
    signal.signal(signal.SIGINT, _stopped_while_starting)
    signal.signal(signal.SIGTERM, _stopped_while_starting)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the log

import argparse
import dataclasses

import numpy as np

import evaluate
import explore
import export
import runs
import sampling
import training
from classifier import InstrumentError
from config import (
    CLASS_NAMES,
    RECIPE_FIELDS,
    ConfigError,
    RunConfig,
    recipe_defaults,
    recipe_value,
)
from mlpreprocess import DatasetError
from runs import CheckpointError, Interrupted, UsageError


def declared_flags(modes=False):
    """[(spellings, argparse options)] of every flag RunConfig declares (config.py): the run modes,
    or the others. Each sets the field it is declared with; help says its default."""
    flags = []
    for field in dataclasses.fields(RunConfig):
        if field.metadata["mode"] != modes:
            continue
        for spellings, options in field.metadata["flags"]:
            text = options.get("help", "").format(default=field.default, recipes=recipe_defaults(field.name)
                                                  if field.name in RECIPE_FIELDS else None)
            flags.append((spellings, {**options, "dest": field.name, "help": text}))
    return flags


FLAGS, RUN_MODES = declared_flags(), declared_flags(modes=True)


def build_parser():
    """The command line. Untyped flags stay out of the namespace (argument_default=SUPPRESS):
    RunConfig fills in the defaults, and a resumed run can tell what was typed."""
    parser = runs.ArgumentParser(description="Train a Deep Convolutional GAN on MNIST digits (or another "
                                             "dataset) and write its loss plot, progress pictures and "
                                             "morphing GIFs.", argument_default=argparse.SUPPRESS)
    for names, options in FLAGS:
        parser.add_argument(*names, **options)
    run_mode = parser.add_mutually_exclusive_group()
    for names, options in RUN_MODES:
        run_mode.add_argument(*names, **options)
    return parser


def parse_flags(argv=None):
    """-> (RunConfig of the command line, {field: value} of the flags actually typed)."""
    typed = vars(build_parser().parse_args(argv))
    return config_from(typed), typed


def parse_args(argv=None):
    """The RunConfig of a command line."""
    return parse_flags(argv)[0]


def config_from(values, flag_prefix="--"):
    try:
        return RunConfig(**values)
    except ConfigError as error:
        raise UsageError(f"{flag_prefix}{error.field.replace('_', '-')} {error.problem}") from None


def check_new_run(config):
    """What the flags alone say a training run cannot do."""
    if config.label is not None:
        raise UsageError("--label goes with --sample or --morph (training a --conditional run uses every class)")
    if config.bf16 and not runs.cpu_has_bf16():
        raise UsageError("--bf16 needs a CPU with AVX512-BF16 or AMX instructions; this one has neither")
    if config.data_dir is not None and not os.path.isdir(config.data_dir):
        raise UsageError(f"--data-dir {config.data_dir}: no such folder")


def check_steps(config):
    if config.snapshot_every > config.steps:
        raise UsageError(f"--snapshot-every ({config.snapshot_every}) must not exceed --steps ({config.steps})")


def chosen_precision(config):
    """A new run's --bf16 when none was typed: the recipe's, where the CPU has bfloat16; printed."""
    if config.bf16 is not None:
        return config
    bf16 = recipe_value(config.recipe, "bf16") and runs.cpu_has_bf16()
    if bf16:
        print(f"bf16: on (--recipe {config.recipe} uses bfloat16 where the CPU has it; --no-bf16 for FP32)")
    return config.replace(bf16=bf16)


def chosen_seed(config):
    """The seed of a new run: drawn when none was given, and printed, so any run can be repeated."""
    seed = config.seed if config.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed: {seed}")
    return config.replace(seed=seed)


def run_without_training(flags, typed):
    """--sample N, --morph, --export and --explore: from the latest checkpoint, no training."""
    run_config = runs.read_config(flags.out_dir)
    if flags.label is not None:  # checked before TensorFlow starts
        if flags.export or flags.explore:
            raise UsageError("--label goes with --sample or --morph (--export and --explore take every class)")
        sampling.check_label(flags.label, run_config.num_classes, flags.out_dir)
    # Without --seed or --generator: the run's own, stated.
    seed = flags.seed if "seed" in typed else run_config.seed
    generator = flags.generator if "generator" in typed else run_config.generator
    print(f"seed: {seed}" + ("" if "seed" in typed else " (the run's; --seed for other noise)"))
    with runs.RunFolder(flags.out_dir) as folder:
        return _write_without_training(flags, run_config, folder, seed, generator)


def _write_without_training(flags, run_config, folder, seed, generator):
    if flags.sample is not None:
        folder.lock_for_reading("samples")
        step = sampling.sample_run(folder, run_config, flags.sample, seed, generator, flags.label, flags.checkpoint)
        labels = " and labels.npy" if run_config.num_classes else ""
        print(f"{flags.sample} samples of iteration {step} written to "
              f"{folder.join('samples.npy')}{labels} and samples.png")
    elif flags.export:
        folder.lock_for_reading("export")
        export.export_run(folder, run_config, generator, seed, flags.checkpoint)
    elif flags.explore:
        folder.lock_for_reading(None)  # writes nothing; --overwrite is refused until it stops
        return explore.serve(run_config, seed, generator, flags.host, flags.port, flags.checkpoint)
    else:
        folder.lock_for_reading("morph")
        step = sampling.morph_run(folder, run_config, seed, generator, flags.label, flags.checkpoint)
        print(f"morphing GIFs of iteration {step} written to {flags.out_dir}")
    return 0


def prepare_run(flags, typed, folder):
    """Everything before the graph: the folder locked and made this run's, the config resolved
    and checked, the data loaded -> (config, dataset, evaluator)."""
    check_new_run(flags)
    existed = os.path.isdir(flags.out_dir)
    if existed or flags.resume:  # a new folder is created only once the flags and data are good
        folder.lock_for_training(overwrite=flags.overwrite)
    config = runs.resumed_config(flags, typed) if flags.resume else flags
    check_steps(config)
    dataset = runs.load_run_dataset(config, exclude=[config.out_dir])
    if config.batch_size > len(dataset.images):
        raise UsageError(f"--batch-size {config.batch_size} exceeds the {len(dataset.images)} training images")
    if config.conditional and dataset.labels is None:
        raise UsageError(f"--conditional: the {dataset.name} data has no labels")
    evaluator = evaluate.make_evaluator(dataset, config.cache_dir)[0] if config.eval_every else None
    if not existed and not flags.resume:
        folder.lock_for_training(overwrite=flags.overwrite)
    if not config.resume:
        folder.claim_for(config)
        config = chosen_seed(chosen_precision(config)).replace(
            image_shape=dataset.image_shape, data=dataset.origin,
            num_classes=len(CLASS_NAMES[dataset.name]) if config.conditional else 0)
        folder.allow_readers()
    return config, dataset, evaluator


def run(flags, typed):
    """Parse, validate, load data, build, loop, write -> exit code."""
    if ("host" in typed or "port" in typed) and not flags.explore:
        raise UsageError("--host and --port go with --explore")
    if "checkpoint" in typed and not (flags.sample is not None or flags.morph or flags.export or flags.explore):
        raise UsageError("--checkpoint goes with --sample, --morph, --export or --explore (training continues "
                         "from the latest one with --resume)")
    if flags.stop_on_collapse and not flags.eval_every and not flags.resume:
        raise UsageError("--stop-on-collapse needs --eval-every: collapse is seen in the evaluations")
    if flags.sample is not None or flags.morph or flags.export or flags.explore:
        return run_without_training(flags, typed)
    with runs.RunFolder(flags.out_dir) as folder:
        return train_in(folder, flags, typed)


def train_in(folder, flags, typed):
    config, dataset, evaluator = prepare_run(flags, typed, folder)
    print(dataset.source)
    training.configure_tensorflow()
    with training.Trainer(config, folder, dataset, evaluator) as trainer:
        return trainer.train()


def stopped_line(stop, argv):
    """What an interrupted command leaves behind, in one line."""
    if stop.outcome:  # the command said what it left (--export: which export is in place)
        return f"main1.py: stopped by {stop}; {stop.outcome}"
    try:
        out_dir = config_from(vars(build_parser().parse_args(argv))).out_dir
        checkpoint = runs.latest_checkpoint(out_dir) if os.path.isdir(out_dir) else None
    except (UsageError, OSError):
        checkpoint = None
    left = (f"the latest complete checkpoint is iteration {runs.checkpoint_step(checkpoint)} "
            f"(--resume continues from it)" if checkpoint else "no checkpoint was written")
    return f"main1.py: stopped by {stop}; {left}"


def main(argv=None, then=None):
    """The command -> its exit code. `then`: SIGINT's and SIGTERM's handler once it is done (by
    default the one before it)."""
    with runs.raising_on_signals(after=then):
        return _main(argv)


def _main(argv):
    try:
        return run(*parse_flags(argv))
    except Interrupted as stop:
        return stopped(stop, argv)
    except Exception as error:
        if runs.signal_received() is not None:
            # The signal's Interrupted became another error on its way out (a C extension's import
            # says "initialization failed", a library wraps what it caught): it is still the stop.
            return stopped(Interrupted(runs.signal_received()), argv)
        if isinstance(error, (UsageError, DatasetError, InstrumentError)):
            print(f"main1.py: error: {error}", file=sys.stderr)
            return 2
        if isinstance(error, (CheckpointError, export.ExportError)):
            print(f"main1.py: error: {error}", file=sys.stderr)
            return 1
        if isinstance(error, OSError):  # an output could not be written (disk full, folder removed, ...)
            print(f"main1.py: error: cannot write {error.filename or 'an output'}: {error.strerror}",
                  file=sys.stderr)
            return 1
        raise


def stopped(stop, argv):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C must not cut this line short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(stopped_line(stop, argv), file=sys.stderr)
    return stop.exit_code


if __name__ == "__main__":
    # Once the command has said how it ended, a Ctrl-C while the interpreter shuts down changes
    # nothing, and must neither kill it with a signal's status nor print a second line.
    sys.exit(main(then=signal.SIG_IGN))
