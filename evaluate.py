"""How good are a run's samples? The scores of its checkpoints, or of a samples file.

    python evaluate.py --out-dir results/mnist      # evaluate the latest checkpoint of a run
    python evaluate.py --samples results/reference-s1/samples.npy   # score a file of samples
    python evaluate.py --compare results/* --at 6000 20000          # the recipe table (compare.py)

The instrument (metrics.py, with the classifier of classifier.py) scores images; this module
restores a run's generator, draws seeded noise for it and reports the scores.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import compare
import latent
import outputs
import runs
import sampling
from classifier import DEFAULT_CACHE_DIR, MACHINE_LOCAL, InstrumentError, instrument_for
from config import GENERATORS
from metrics import build_evaluator
from mlpreprocess import DatasetError


def make_evaluator(dataset, cache_dir, log=print):
    """(evaluator, classifier info) for a labelled dataset; its classifier cached or trained now."""
    if dataset.labels is None:
        raise runs.UsageError(f"the {dataset.name} dataset has no labels, so its samples cannot be "
                              f"scored (the evaluator's classifier learns from labels)")
    return build_evaluator(dataset.images, dataset.labels, dataset.test_images, dataset.test_labels,
                           cache_dir, log=log, instrument=instrument_for(dataset.name, dataset.image_shape))


def score_generator(evaluator, sampler, generator=None):
    """Evaluator metrics for as many samples as its reference set, from seeded noise."""
    rng = np.random.default_rng([sampler.seed, latent.EVAL_STREAM])
    z = latent.uniform_noise(rng, evaluator.n_samples, sampler.z_dim)
    if not sampler.num_classes:
        return evaluator.metrics(sampler(z, generator))
    labels = latent.balanced_labels(evaluator.n_samples, sampler.num_classes)  # every class equally
    return evaluator.metrics(sampler(z, generator, labels=labels), labels)


def evaluate_run(out_dir, seed, cache_dir, checkpoint="latest"):
    """Scores of every generator variant of the latest checkpoint of a run (or the one
    `checkpoint` names: best, or an iteration), evaluation.json's content. The default seed is
    the run's, matching its metrics.csv."""
    config = runs.read_config(out_dir)
    dataset = runs.load_run_dataset(config, exclude=[out_dir])
    sampler, step = sampling.restore_run(config, seed, checkpoint=checkpoint)
    evaluator, info = make_evaluator(dataset, cache_dir)
    return {"step": step, "n_samples": evaluator.n_samples, "seed": sampler.seed,
            "default_generator": sampler.generator,
            "generators": {name: score_generator(evaluator, sampler, name) for name in GENERATORS},
            "real": evaluator.floor, "classifier": {k: v for k, v in info.items() if k != "cached"}}


def check_samples(samples, path):
    """UsageError unless every value is a number in [0, 1] (the generator's output range)."""
    chunk = 4096
    for start in range(0, len(samples), chunk):
        part = np.asarray(samples[start:start + chunk], dtype=np.float32)
        if not np.isfinite(part).all():
            first_bad = start + int(np.argmax(~np.isfinite(part).reshape(len(part), -1).all(1)))
            raise runs.UsageError(f"--samples {path}: image {first_bad} "
                                  f"holds NaN or infinite values; expected numbers in [0, 1]")
        if part.min() < 0 or part.max() > 1:
            raise runs.UsageError(f"--samples {path}: values from {part.min():g} to {part.max():g}; expected "
                                  f"images in [0, 1] (divide 0-255 pixels by 255)")


def evaluate_samples(path, cache_dir):
    """Scores of the first n_samples images of a samples.npy against the data of the run beside
    it (its config.json)."""
    folder = os.path.dirname(os.path.abspath(path))
    config = runs.read_data_record(folder, f"--samples {path}: no config.json beside it says what data it imitates")
    try:
        samples = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise runs.UsageError(f"--samples {path}: not a readable .npy file ({error})") from None
    shape = tuple(config.image_shape)
    if samples.ndim != 4 or samples.shape[1:] != shape:
        raise runs.UsageError(f"--samples {path}: shape {samples.shape}, expected images of {shape}")
    evaluator, info = make_evaluator(runs.load_run_dataset(config, exclude=[folder]), cache_dir)
    if len(samples) < evaluator.n_samples:
        raise runs.UsageError(f"--samples {path}: {len(samples)} images, expected at least {evaluator.n_samples}")
    samples = samples[:evaluator.n_samples]
    check_samples(samples, path)
    labels_path = os.path.join(folder, "labels.npy")  # a conditional run's --sample writes the classes
    labels = np.load(labels_path, allow_pickle=False)[:evaluator.n_samples] if os.path.exists(labels_path) else None
    return {"n_samples": evaluator.n_samples,
            "samples": evaluator.metrics(np.asarray(samples, dtype=np.float32), labels),
            "real": evaluator.floor, "classifier": {k: v for k, v in info.items() if k != "cached"}}


def write_evaluation(folder, result):
    """evaluation.json beside the run (recorded in its manifest) -> its path."""
    run_folder = runs.RunFolder(folder)
    path = run_folder.output("evaluation.json") if os.path.exists(run_folder.join(runs.MANIFEST_FILE)) \
        else os.path.join(folder, "evaluation.json")
    outputs.write_json(path, result)
    return path


def instrument_line(info):
    """One line saying what scale the figures are on."""
    if info.get("instrument", MACHINE_LOCAL) == MACHINE_LOCAL:
        return ("instrument: machine-local scale (a classifier trained on this machine for this data; "
                "its figures compare only with others made here)")
    return f"instrument: {info['instrument']} (committed weights; reference statistics {info['statistics']})"


def format_report(columns):
    """A text table: one row per metric, one column per set ({title: metrics})."""
    titles = list(columns)
    lines = [f"{'metric':<24}" + "".join(f"{t:>17}" for t in titles)]
    for name in ("frechet_distance", "classifier_score", "class_kl_from_uniform"):
        lines.append(f"{name:<24}" + "".join(f"{columns[t][name]:>17.4f}" for t in titles))
    for name in ("precision", "recall", "density", "coverage"):
        if all(name in columns[t] for t in titles):
            lines.append(f"{name:<24}" + "".join(f"{columns[t][name]:>17.4f}" for t in titles))
    for digit in range(len(columns[titles[0]]["class_shares"])):
        lines.append(f"{'share of class ' + str(digit):<24}"
                     + "".join(f"{columns[t]['class_shares'][digit]:>17.3f}" for t in titles))

    def cell(metrics, name, k=None, form=".4f"):
        value = metrics.get(name) if k is None else (metrics.get(name) or [None] * (k + 1))[k]
        return f"{value:>17{form}}" if value is not None else f"{'':>17}"
    if "label_agreement" in columns[titles[0]]:  # a conditional model: scores of asking for a class
        lines.append(f"{'label_agreement':<24}" + "".join(cell(columns[t], "label_agreement") for t in titles))
        for k in range(len(columns[titles[0]]["class_label_agreement"])):
            lines.append(f"{'agreement of class ' + str(k):<24}"
                         + "".join(cell(columns[t], "class_label_agreement", k, ".3f") for t in titles))
        for k in range(len(columns[titles[0]].get("class_frechet_distance", []))):
            lines.append(f"{'Frechet of class ' + str(k):<24}"
                         + "".join(cell(columns[t], "class_frechet_distance", k, ".1f") for t in titles))
    methods = {metrics["manifold_method"] for metrics in columns.values() if "manifold_method" in metrics}
    if methods and not methods <= {"measured"}:  # the floor of precision ... coverage at fewer images
        lines.append(f"(real floor of precision, recall, density and coverage: {', '.join(sorted(methods))}; "
                     "no second real set of this size exists)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def _checkpoint_choice(value):
    if value in ("latest", "best") or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError(f"expected latest, best or an iteration, got {value!r}")


def main(argv=None):
    parser = runs.ArgumentParser(description="Evaluate the latest checkpoint of a run in --out-dir, "
                                             "or compare the metrics.csv of runs.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out-dir", help="folder of a main1.py run")
    what.add_argument("--compare", nargs="+", metavar="DIR",
                      help="folders of runs made with --eval-every (main1.py or reference.py): their last "
                           "evaluation, and the mean Frechet distance of their last four")
    what.add_argument("--instruments", action="store_true",
                      help="the committed instruments (instruments/instruments.json) as a Markdown table")
    what.add_argument("--samples", metavar="FILE",
                      help="a samples.npy (N x H x W x C in [0, 1]) beside the config.json of the run that "
                           "made it: scores its first images against the run's data")
    parser.add_argument("--at", type=int, nargs="+", metavar="STEP",
                        help="with --compare: the recipe table instead, runs of one recipe grouped as seeds, "
                             "at these evaluated iterations")
    parser.add_argument("--markdown", action="store_true", help="with --compare --at: the table in Markdown")
    parser.add_argument("--own-generator", action="store_true",
                        help="with --compare --at: only each run's own generator (its --generator; the "
                             "reference's raw)")
    parser.add_argument("--bench", metavar="RECORD",
                        help="with --compare --at: a bench.py record whose speed ratios turn the iterations at "
                             "which a recipe reached the reference into a share of the reference's time")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the evaluated noise; default: the run's seed, so the figures match "
                             "the run's metrics.csv at the same iteration")
    parser.add_argument("--checkpoint", default="latest", type=_checkpoint_choice,
                        help="with --out-dir: latest (default), best (the best-scoring one of a run with "
                             "--eval-every) or an iteration N still kept")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                        help="where the trained classifier is cached; default %(default)s")
    with runs.raising_on_signals():
        return _main(parser, argv)


def _main(parser, argv):
    try:
        args = parser.parse_args(argv)
        if args.instruments:
            print(compare.format_instruments())
            return 0
        if args.compare:
            speed = dict(runs.read_json(args.bench, f"--bench {args.bench}: no such record"),
                         file=args.bench) if args.bench else None
            print(compare.format_recipe_table(args.compare, args.at, args.markdown, speed, args.own_generator)
                  if args.at else
                  compare.format_comparison({out_dir: compare.summarize_metrics(out_dir) for out_dir in args.compare}))
            return 0
        folder = os.path.dirname(os.path.abspath(args.samples)) if args.samples else args.out_dir
        with runs.RunFolder(folder) as run_folder:
            run_folder.lock_for_reading("evaluation")  # two evaluations never write one file
            return _evaluate(args, folder)
    except (runs.UsageError, DatasetError, compare.MetricsError, InstrumentError) as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # evaluation.json could not be written: the scores are printed above
        print(f"evaluate.py: error: cannot write {error.filename or 'evaluation.json'}: {error.strerror} "
              f"(the scores above are not saved)", file=sys.stderr)
        return 1
    except runs.Interrupted as stop:
        print(f"evaluate.py: stopped by {stop}; nothing was written", file=sys.stderr)
        return stop.exit_code


def _evaluate(args, folder):
    """Score a run's latest checkpoint or a samples file, print the report, write evaluation.json."""
    if args.samples:
        result = evaluate_samples(args.samples, args.cache_dir)
        print(f"{result['n_samples']} samples per set from {args.samples}; classifier held-out accuracy "
              f"{result['classifier']['heldout_accuracy']:.4f}")
        print(instrument_line(result["classifier"]))
        print(format_report({"samples": result["samples"], "real (floor)": result["real"]}))
    else:
        result = evaluate_run(args.out_dir, args.seed, args.cache_dir, args.checkpoint)
        print(f"iteration {result['step']}, {result['n_samples']} samples per set, seed {result['seed']}; "
              f"classifier held-out accuracy {result['classifier']['heldout_accuracy']:.4f}")
        print(instrument_line(result["classifier"]))
        print(format_report({**result["generators"], "real (floor)": result["real"]}))
    print(f"written to {write_evaluation(folder, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
