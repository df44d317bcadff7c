"""How good are a run's samples? The scores of its checkpoints, or of a samples file.

    python evaluate.py --out-dir results/mnist      # evaluate the latest checkpoint of a run
    python evaluate.py --samples results/reference-s1/samples.npy   # score a file of samples
    python evaluate.py --compare results/* --at 6000 20000          # the recipe table (compare.py)

The instrument (metrics.py, with the classifier of classifier.py) scores images; this module
restores a run's generator, draws seeded noise for it and reports the scores.
"""
import argparse
import errno
import math
import os
import stat
import sys
import tokenize
import warnings

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


NPY_KINDS = {"b": "booleans", "i": "integers", "u": "unsigned integers", "f": "floating-point numbers",
             "c": "complex numbers", "O": "Python objects, a pickle", "S": "bytes", "U": "strings",
             "V": "records or sub-arrays", "M": "dates", "m": "time spans"}
FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_npy(path, label, kinds, expected):
    """The array of a .npy file, memory-mapped; UsageError starting with `label` unless it is a
    regular file (opened without blocking, so a named pipe is refused, not waited on) whose
    header is sound, of a dtype kind in `kinds` (`expected` says what), and whose size is what
    the header promises. Only the header is read here."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise runs.UsageError(f"{label}: no such file" if error.errno == errno.ENOENT
                              else f"{label}: cannot open it: {error.strerror}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = next((name for test, name in FILE_KINDS if test(status.st_mode)), "a special file")
            raise runs.UsageError(f"{label}: {kind}, not a regular file")
        with open(descriptor, "rb", closefd=False) as stream:
            return _map_npy(stream, status.st_size, label, kinds, expected)
    except OSError as error:  # the disk failed a read, or the file system cannot map files
        raise runs.UsageError(f"{label}: cannot read it: {error.strerror or error}") from None
    finally:
        os.close(descriptor)


def _map_npy(stream, size, label, kinds, expected):
    """open_npy's checks of the header at the start of `stream`, a file of `size` bytes."""
    if size == 0:
        raise runs.UsageError(f"{label}: empty (0 bytes), not a .npy file; was its writer stopped?")
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError:
        raise runs.UsageError(f"{label}: not a .npy file (no NumPy header; pickles and other formats "
                              f"are not read)") from None
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:  # 3.0 is only for non-Latin-1 names of record fields
        raise runs.UsageError(f"{label}: .npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
    try:
        with warnings.catch_warnings(action="ignore"):  # a header written by Python 2 is read all the same
            shape, fortran_order, dtype = readers[version](stream)
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError) as error:  # numpy evaluates the header
        reason = " ".join(str(error).split())
        raise runs.UsageError(f"{label}: a damaged .npy header ({reason[:100]})") from None
    if any(length < 0 for length in shape):
        raise runs.UsageError(f"{label}: a damaged .npy header (shape {shape})")
    if dtype.kind not in kinds:
        raise runs.UsageError(f"{label}: dtype {dtype} ({NPY_KINDS[dtype.kind]}); expected {expected}")
    offset = stream.tell()
    promised = offset + math.prod(shape) * dtype.itemsize
    if size != promised:
        raise runs.UsageError(f"{label}: {size:,} bytes, but its header promises {promised:,} ({dtype}, shape "
                              f"{shape}); " + ("truncated, was its writer stopped?" if size < promised
                                               else "more than one array?"))
    if promised == offset:  # nothing to map
        return np.empty(shape, dtype)
    return np.memmap(stream, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def check_samples(samples, path):
    """UsageError unless every value is a number in [0, 1] (the generator's output range)."""
    if samples.dtype.kind != "f":
        raise runs.UsageError(f"--samples {path}: dtype {samples.dtype} ({NPY_KINDS[samples.dtype.kind]}); "
                              f"expected real floating-point images in [0, 1]")
    chunk = 4096
    for start in range(0, len(samples), chunk):
        part = np.asarray(samples[start:start + chunk])  # in its own dtype: float32 would make 1e300 infinite
        if not np.isfinite(part).all():
            first_bad = start + int(np.argmax(~np.isfinite(part).reshape(len(part), -1).all(1)))
            raise runs.UsageError(f"--samples {path}: image {first_bad} "
                                  f"holds NaN or infinite values; expected numbers in [0, 1]")
        if part.min() < 0 or part.max() > 1:
            raise runs.UsageError(f"--samples {path}: values from {part.min():g} to {part.max():g}; expected "
                                  f"images in [0, 1] (divide 0-255 pixels by 255)")


def read_sample_labels(folder, label, count, num_classes):
    """labels.npy beside a samples file (a conditional run's --sample writes the class each image
    was asked to be), checked to hold one class per image; None where there is none."""
    path = os.path.join(folder, "labels.npy")
    if not os.path.lexists(path):
        return None
    label = f"{label}: labels.npy beside it"
    labels = np.asarray(open_npy(path, label, "iu", "integer classes"))
    if labels.shape != (count,):
        raise runs.UsageError(f"{label}: shape {labels.shape}, expected one class per image, ({count},)")
    if num_classes and count and (labels.min() < 0 or labels.max() >= num_classes):
        raise runs.UsageError(f"{label}: classes from {labels.min()} to {labels.max()}, expected 0 to "
                              f"{num_classes - 1}")
    return labels


def evaluate_samples(path, cache_dir):
    """Scores of the first n_samples images of a samples.npy against the data of the run beside
    it (its config.json). The file is checked before the evaluator is built."""
    label = f"--samples {path}"
    samples = open_npy(path, label, "f", "real floating-point images in [0, 1]")
    folder = os.path.dirname(os.path.abspath(path))
    config = runs.read_data_record(folder, f"{label}: no config.json beside it says what data it imitates")
    shape = tuple(config.image_shape)
    if samples.ndim != 4 or samples.shape[1:] != shape:
        raise runs.UsageError(f"{label}: shape {samples.shape}, expected images of {shape}")
    labels = read_sample_labels(folder, label, len(samples), config.num_classes)
    evaluator, info = make_evaluator(runs.load_run_dataset(config, exclude=[folder]), cache_dir)
    if len(samples) < evaluator.n_samples:
        raise runs.UsageError(f"{label}: {len(samples)} images, expected at least {evaluator.n_samples}")
    samples = samples[:evaluator.n_samples]
    check_samples(samples, path)
    return {"n_samples": evaluator.n_samples,
            "samples": evaluator.metrics(np.asarray(samples, dtype=np.float32),
                                         None if labels is None else labels[:evaluator.n_samples]),
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
        if args.samples and not os.path.isdir(folder):  # no lock can be taken there: say what is missing
            raise runs.UsageError(f"--samples {args.samples}: no such file")
        if not os.path.isdir(folder):
            raise runs.UsageError(f"--out-dir {folder}: " + ("a file, not a folder" if os.path.exists(folder)
                                                             else "no such folder"))
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
