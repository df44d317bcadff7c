"""How good are the samples? Numbers from a classifier trained here, offline.

    python evaluate.py --out-dir results/mnist      # evaluate the latest checkpoint of a run
    python evaluate.py --samples results/reference-s1/samples.npy   # score a file of samples
    python evaluate.py --compare results/* --at 6000 20000          # the recipe table

A small convolutional classifier (TF1 style, like the GAN) is trained once on the dataset's
labelled training split and cached on disk under the hash of that data. With it:

- Frechet distance between the Gaussians fitted to the classifier's penultimate-layer features
  of real images and of generated ones (lower is better);
- classifier score exp(E_x KL(p(y|x) || p(y))): up to the number of classes when every sample
  is confidently one class and all classes are equally frequent;
- each class's share among the samples and the KL divergence of the shares from uniform.

Every figure comes with the same figure for a second set of real images, the floor that a
perfect generator would reach with this many samples.
"""
import contextlib
import csv
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import latent  # noqa: E402
import outputs  # noqa: E402
import runs  # noqa: E402
import sampling  # noqa: E402
from config import GENERATORS, RECIPE_LEARNING_RATES  # noqa: E402
from mlpreprocess import DatasetError  # noqa: E402

CLASSIFIER_SCOPE = "classifier"
CLASSIFIER_VERSION = 1  # part of the cache key: bump when the architecture or training changes
DEFAULT_CACHE_DIR = os.path.join("results", "cache")
MAX_EVAL_IMAGES = 10000


# ----------------------------------------------------------------------------- the metrics
def feature_statistics(features):
    """features [n, d] -> (mean [d], covariance [d, d]) in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix):
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues of
    round-off are clipped to zero)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1, cov1, mean2, cov2):
    """Squared Frechet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2):
    |m1 - m2|^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2)."""
    root1 = _sqrt_psd(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_cross = np.sqrt(np.clip(cross, 0.0, None)).sum()
    distance = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_cross
    return float(max(distance, 0.0))


def classifier_score(probabilities, eps=1e-12):
    """exp(E_x KL(p(y|x) || p(y))) for class probabilities [n, classes]."""
    p = np.asarray(probabilities, dtype=np.float64)
    marginal = p.mean(axis=0)
    kl = np.sum(p * (np.log(p + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


def class_shares(probabilities):
    """Share of samples whose most likely class is each class -> [classes], sums to 1."""
    p = np.asarray(probabilities)
    return np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / len(p)


def kl_from_uniform(shares, eps=1e-12):
    """KL(shares || uniform) in nats: 0 when every class is equally frequent."""
    shares = np.asarray(shares, dtype=np.float64)
    return float(np.sum(shares * (np.log(shares + eps) + np.log(len(shares)))))


# ----------------------------------------------------------------------------- the classifier
class DigitClassifier:
    """conv 5x5/2 (32) -> conv 5x5/2 (64) -> dense 128 (the features) -> dense n_classes.

    Built in its own graph and session, so it can run beside a finalized GAN graph.
    """

    def __init__(self, image_shape, n_classes, learning_rate=1e-3, seed=0):
        # TensorFlow and the model are imported here, not at the top: main1.py's flag checks stay fast.
        import tensorflow as tf

        from model import conv2d, dense

        v1 = tf.compat.v1
        self.image_shape, self.n_classes = tuple(image_shape), n_classes
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.set_random_seed(seed)
            self.images = v1.placeholder(tf.float32, [None, *image_shape], name="images")
            self.labels = v1.placeholder(tf.int64, [None], name="labels")
            with v1.variable_scope(CLASSIFIER_SCOPE):
                x = tf.nn.relu(conv2d(self.images, 32, "conv0"))                 # [b, H/2, W/2, 32]
                x = tf.nn.relu(conv2d(x, 64, "conv1"))                           # [b, H/4, W/4, 64]
                x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
                self.features = tf.nn.relu(dense(x, 128, "features"))            # [b, 128]
                logits = dense(self.features, n_classes, "logits")               # [b, classes]
            self.probabilities = tf.nn.softmax(logits)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=self.labels, logits=logits))
            self.train_op = v1.train.AdamOptimizer(learning_rate).minimize(loss)
            self.saver = v1.train.Saver(v1.global_variables())
            init = v1.global_variables_initializer()
        self.graph.finalize()
        self.session = v1.Session(graph=self.graph)
        self.session.run(init)

    def fit(self, images, labels, steps, batch_size=64, seed=0):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            batch = rng.integers(0, len(images), batch_size)
            self.session.run(self.train_op, {self.images: images[batch], self.labels: labels[batch]})

    def predict(self, images, batch_size=1000):
        """images [n, H, W, C] -> (features [n, 128], probabilities [n, classes])."""
        features, probabilities = [], []
        for start in range(0, len(images), batch_size):
            f, p = self.session.run([self.features, self.probabilities],
                                    {self.images: images[start:start + batch_size]})
            features.append(f)
            probabilities.append(p)
        return np.concatenate(features), np.concatenate(probabilities)

    def accuracy(self, images, labels):
        return float(np.mean(self.predict(images)[1].argmax(axis=1) == labels))

    def save(self, prefix):
        with self.graph.as_default():
            self.saver.save(self.session, prefix, write_meta_graph=False)

    def restore(self, prefix):
        with self.graph.as_default():
            self.saver.restore(self.session, prefix)


def data_hash(images, labels):
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    digest.update(f"classifier-v{CLASSIFIER_VERSION}".encode())
    return digest.hexdigest()[:16]


def _cached_classifier(folder, classifier, log):
    """The cached classifier's info, restored into `classifier`; None when there is none, or
    when the cache is damaged (then said in one line: it is trained again)."""
    info_path = os.path.join(folder, "info.json")
    if not os.path.isfile(info_path):
        return None
    try:
        with open(info_path) as stream:
            info = json.load(stream)
        float(info["heldout_accuracy"])
        classifier.restore(os.path.join(folder, "model.ckpt"))
        return info
    except Exception as error:  # noqa: BLE001 (json, KeyError, TensorFlow's errors: all mean "damaged")
        log(f"classifier: the cache in {folder} is damaged ({runs.error_summary(error)}); training it again")
        return None


def load_or_train_classifier(train_images, train_labels, heldout_images, heldout_labels, cache_dir,
                             steps=None, log=print):
    """The classifier for this training data: from the cache when its hash matches, else
    trained now and cached (a cache that cannot be written is said in one line, and the
    classifier is used all the same). Returns (classifier, info dict with the held-out accuracy)."""
    n_classes = int(max(train_labels.max(), heldout_labels.max())) + 1
    key = data_hash(train_images, train_labels)
    folder = os.path.join(cache_dir, f"classifier-{key}")
    classifier = DigitClassifier(train_images.shape[1:], n_classes)
    info = _cached_classifier(folder, classifier, log)
    if info is not None:
        log(f"classifier: cached in {folder}, held-out accuracy {info['heldout_accuracy']:.4f}")
        return classifier, dict(info, cached=True)
    steps = steps or max(1500, 3 * len(train_images) // 64)
    log(f"classifier: training on {len(train_images)} labelled images for {steps} steps (cached after)")
    classifier.fit(train_images, train_labels, steps)
    info = {"data_hash": key, "train_images": len(train_images), "heldout_images": len(heldout_images),
            "steps": steps, "heldout_accuracy": classifier.accuracy(heldout_images, heldout_labels)}
    try:
        os.makedirs(folder, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, "info.json"))  # a damaged cache is invalid while rewritten
        classifier.save(os.path.join(folder, "model.ckpt"))
        outputs.write_json(os.path.join(folder, "info.json"), info)  # written last: a folder without it is retrained
        log(f"classifier: held-out accuracy {info['heldout_accuracy']:.4f}, cached in {folder}")
    except Exception as error:  # noqa: BLE001 (OSError or TensorFlow's write errors)
        log(f"classifier: held-out accuracy {info['heldout_accuracy']:.4f}; not cached: cannot write "
            f"{folder} ({runs.error_summary(error)})")
    return classifier, dict(info, cached=False)


# ----------------------------------------------------------------------------- the evaluator
class Evaluator:
    """Scores sets of `n_samples` generated images against a real reference set of as many.

    `floor` holds the same metrics for real images at the same sample count: the classifier
    score and class shares of the reference itself, and the Frechet distance between two
    disjoint real sets of n_samples each. When the data has fewer than 2 * n_samples real
    images (the 5,000 embedded digits), that distance is extrapolated: the estimator's bias
    falls as 1/n (Chong and Forsyth, CVPR 2020), so the real-vs-real distances of disjoint
    halves and quarters are fitted as a + b / n and read at n = n_samples.
    """

    def __init__(self, classifier, reference_images, floor_images=None, reference_labels=None,
                 heldout_accuracy=None):
        self.classifier = classifier
        reference_features, _ = classifier.predict(reference_images)
        self.reference = feature_statistics(reference_features)
        self.n_samples = len(reference_images)
        # Per-class reference statistics, for a conditional model's per-class distances.
        self.class_reference = None
        if reference_labels is not None:
            self.class_reference = [feature_statistics(reference_features[reference_labels == k])
                                    for k in range(int(reference_labels.max()) + 1)]
        self.floor = self.metrics(reference_images)  # score and shares of real images
        if heldout_accuracy is not None:
            # Label agreement of real images: how often the classifier names a real image's class.
            self.floor["label_agreement"] = heldout_accuracy
        if floor_images is not None and len(floor_images) >= self.n_samples:
            self.floor["frechet_distance"] = self.metrics(floor_images[:self.n_samples])["frechet_distance"]
            self.floor["frechet_method"] = "measured"
        else:
            self.floor["frechet_distance"] = extrapolated_floor(reference_features, self.n_samples)
            self.floor["frechet_method"] = "extrapolated"

    def metrics(self, images, labels=None):
        """Scores of a set of images; with `labels` (the class each image was asked to be, from a
        conditional model) also the label agreement, overall and per class, and per-class
        Frechet distances."""
        features, probabilities = self.classifier.predict(images)
        shares = class_shares(probabilities)
        result = {"frechet_distance": frechet_distance(*self.reference, *feature_statistics(features)),
                  "classifier_score": classifier_score(probabilities),
                  "class_shares": [round(float(s), 4) for s in shares],
                  "class_kl_from_uniform": kl_from_uniform(shares)}
        if labels is not None:
            labels = np.asarray(labels)
            named = probabilities.argmax(axis=1) == labels
            classes = range(probabilities.shape[1])
            result["label_agreement"] = float(named.mean())
            result["class_label_agreement"] = [round(float(named[labels == k].mean()), 4) for k in classes]
            if self.class_reference is not None:
                result["class_frechet_distance"] = [
                    round(frechet_distance(*self.class_reference[k], *feature_statistics(features[labels == k])), 3)
                    for k in classes]
        return result


def split_distance(features, n, rng):
    """Frechet distance between two disjoint random sets of n rows of `features`."""
    order = rng.permutation(len(features))
    first, second = features[order[:n]], features[order[n:2 * n]]
    return frechet_distance(*feature_statistics(first), *feature_statistics(second))


def extrapolated_floor(features, n, seed=0):
    """Real-vs-real Frechet distance at n per set from fewer than 2n real features.

    Distances of disjoint halves (n/2 each) and quarters (n/4 each) of the features, each
    averaged over 4 random splits, give a + b / m; the result is a + b / n.
    """
    rng = np.random.default_rng(seed)
    half, quarter = len(features) // 2, len(features) // 4
    at_half = np.mean([split_distance(features, half, rng) for _ in range(4)])
    at_quarter = np.mean([split_distance(features, quarter, rng) for _ in range(4)])
    slope = (at_quarter - at_half) / (1.0 / quarter - 1.0 / half)
    return float(max(at_half + slope * (1.0 / n - 1.0 / half), 0.0))


def split_real_data(images, labels, test_images=None, test_labels=None, seed=0):
    """Decide which real images train the classifier, which score it, and which are the
    reference and the floor of the metrics.

    With a test split: the classifier trains on all training images and is scored on the test
    split; the reference is the test split (up to MAX_EVAL_IMAGES); the floor as many training
    images. Without one (the 5,000 embedded digits): a fifth is held out to score the
    classifier; the reference is all of the images, and the floor's distance is extrapolated.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    if test_images is not None:
        n = min(len(test_images), MAX_EVAL_IMAGES)
        return {"train": (images, labels), "heldout": (test_images, test_labels),
                "reference": test_images[:n], "reference_labels": test_labels[:n], "floor": images[order[:n]]}
    n_heldout = len(images) // 5
    heldout, train = order[:n_heldout], order[n_heldout:]
    n = min(len(images), MAX_EVAL_IMAGES)
    return {"train": (images[train], labels[train]), "heldout": (images[heldout], labels[heldout]),
            "reference": images[order[:n]], "reference_labels": labels[order[:n]], "floor": None}


def build_evaluator(images, labels, test_images=None, test_labels=None, cache_dir=DEFAULT_CACHE_DIR,
                    classifier_steps=None, log=print):
    parts = split_real_data(images, labels, test_images, test_labels)
    classifier, info = load_or_train_classifier(*parts["train"], *parts["heldout"], cache_dir,
                                                classifier_steps, log)
    return Evaluator(classifier, parts["reference"], parts["floor"], parts["reference_labels"],
                     info["heldout_accuracy"]), info


def make_evaluator(dataset, cache_dir, log=print):
    """(evaluator, classifier info) for a labelled dataset; its classifier cached or trained now."""
    if dataset.labels is None:
        raise runs.UsageError(f"the {dataset.name} dataset has no labels, so its samples cannot be "
                              f"scored (the evaluator's classifier learns from labels)")
    return build_evaluator(dataset.images, dataset.labels, dataset.test_images, dataset.test_labels,
                           cache_dir, log=log)


def score_generator(evaluator, sampler, generator=None):
    """Evaluator metrics for as many samples as its reference set, from seeded noise."""
    rng = np.random.default_rng([sampler.seed, latent.EVAL_STREAM])
    z = latent.uniform_noise(rng, evaluator.n_samples, sampler.z_dim)
    if not sampler.num_classes:
        return evaluator.metrics(sampler(z, generator))
    labels = latent.balanced_labels(evaluator.n_samples, sampler.num_classes)  # every class equally
    return evaluator.metrics(sampler(z, generator, labels=labels), labels)


def evaluate_run(out_dir, seed, cache_dir):
    """Scores of every generator variant of the latest checkpoint of a run (evaluation.json's
    content). The default seed is the run's, matching its metrics.csv."""
    config = runs.read_config(out_dir)
    dataset = sampling.load_run_dataset(config, exclude=[out_dir])
    sampler, step = sampling.restore_run(config, seed)
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
            raise runs.UsageError(f"--samples {path}: image {start + int(np.argmax(~np.isfinite(part).reshape(len(part), -1).all(1)))} "
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
    evaluator, info = make_evaluator(sampling.load_run_dataset(config, exclude=[folder]), cache_dir)
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


def format_report(columns):
    """A text table: one row per metric, one column per set ({title: metrics})."""
    titles = list(columns)
    lines = [f"{'metric':<24}" + "".join(f"{t:>17}" for t in titles)]
    for name in ("frechet_distance", "classifier_score", "class_kl_from_uniform"):
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
    return "\n".join(lines)


def summarize_metrics(out_dir, last=4):
    """{generator: figures} from a run's metrics.csv: the last evaluation's Frechet distance,
    classifier score and smallest / largest class share, and the mean Frechet distance of the
    last `last` evaluations. ValueError when the file is missing or has no rows."""
    rows = read_metric_rows(out_dir)
    by_generator = {}
    for row in rows:
        by_generator.setdefault(row["generator"], []).append(row)
    summary = {}
    for generator, evaluations in by_generator.items():
        evaluations.sort(key=lambda row: int(row["step"]))
        final, window = evaluations[-1], evaluations[-last:]
        shares = [float(value) for key, value in final.items() if key.startswith("share_")]
        summary[generator] = {
            "step": int(final["step"]), "frechet_distance": float(final["frechet_distance"]),
            "mean_frechet_distance": float(np.mean([float(row["frechet_distance"]) for row in window])),
            "window": (int(window[0]["step"]), int(final["step"])),
            "classifier_score": float(final["classifier_score"]),
            "smallest_share": min(shares), "largest_share": max(shares)}
    return summary


def format_comparison(summaries):
    """A text table of summarize_metrics results, {run folder: summary}."""
    width = max(len("run"), *(len(run) for run in summaries))
    lines = [f"{'run':<{width}} {'generator':<16} {'step':>6} {'FD':>7} {'mean FD (steps)':>24} "
             f"{'score':>6} {'shares min / max':>17}"]
    for run, summary in summaries.items():
        for generator, figures in summary.items():
            first, final = figures["window"]
            lines.append(f"{run:<{width}} {generator:<16} {figures['step']:>6} {figures['frechet_distance']:>7.1f} "
                         f"{figures['mean_frechet_distance']:>8.1f} ({first}-{final}) "
                         f"{figures['classifier_score']:>6.2f} "
                         f"{100 * figures['smallest_share']:>7.1f}% / {100 * figures['largest_share']:.1f}%")
    return "\n".join(lines)


class MetricsError(ValueError):
    """A run's metrics.csv is missing or empty: a user error, said in one line."""


def read_metric_rows(out_dir):
    """metrics.csv's rows of a run as dicts; MetricsError when missing or empty."""
    path = os.path.join(out_dir, "metrics.csv")
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise MetricsError(f"cannot read {path} ({error.strerror}); a run writes it with --eval-every") from None
    if not rows:
        raise MetricsError(f"{path} holds no evaluations")
    return rows


def run_label(out_dir):
    """(dataset, what the run trained) from its config.json: 'reference', 'original', 'tuned',
    'tuned without hinge', with any non-default learning rate."""
    values = runs.read_json(os.path.join(out_dir, runs.CONFIG_FILE), f"{out_dir}: no config.json says what it trained")
    if isinstance(values, dict) and values.get("recipe") == "reference":
        return values.get("dataset", "mnist"), "reference"
    config = runs.read_config(out_dir)
    label = config.recipe
    if config.without:
        label += " without " + ", ".join(config.without)
    if config.conditional:
        label += f" conditional ({config.conditioning})"
    if config.learning_rate != RECIPE_LEARNING_RATES[config.recipe]:
        label += f" (learning rate {config.learning_rate:g})"
    return config.dataset, label


def run_labels(out_dirs):
    """{out_dir: label}: runs of one dataset and recipe share a label (the seeds of one recipe);
    the dataset leads the label when the runs are of more than one."""
    labels = {out_dir: run_label(out_dir) for out_dir in out_dirs}
    several = len({dataset for dataset, _ in labels.values()}) > 1
    return {out_dir: f"{dataset}: {label}" if several else label for out_dir, (dataset, label) in labels.items()}


def group_figures(out_dirs, steps):
    """{(label, generator, step): {figure: [one value per run]}} over runs grouped by run_labels:
    the seeds of one recipe on one dataset."""
    groups, labels = {}, run_labels(out_dirs)
    for out_dir in out_dirs:
        label = labels[out_dir]
        for row in read_metric_rows(out_dir):
            if int(row["step"]) not in steps:
                continue
            shares = [float(value) for key, value in row.items() if key.startswith("share_")]
            figures = groups.setdefault((label, row["generator"], int(row["step"])), {})
            for name, value in (("frechet_distance", float(row["frechet_distance"])),
                                ("classifier_score", float(row["classifier_score"])),
                                ("smallest_share", min(shares)), ("largest_share", max(shares)),
                                ("train_seconds", float(row.get("train_seconds") or "nan"))):
                figures.setdefault(name, []).append(value)
            for name in ("label_agreement", "worst_class_label_agreement"):  # conditional runs
                if row.get(name):
                    figures.setdefault(name, []).append(float(row[name]))
    return groups


def steps_to_reach(out_dirs, target):
    """{(label, generator): [per run: the first evaluated step with Frechet distance <= target,
    or None]}."""
    reached, labels = {}, run_labels(out_dirs)
    for out_dir in out_dirs:
        label, firsts = labels[out_dir], {}
        for row in sorted(read_metric_rows(out_dir), key=lambda row: int(row["step"])):
            if float(row["frechet_distance"]) <= target:
                firsts.setdefault(row["generator"], int(row["step"]))
            firsts.setdefault(row["generator"] + "?", None)
        for key in [k for k in firsts if k.endswith("?")]:
            reached.setdefault((label, key[:-1]), []).append(firsts.get(key[:-1]))
    return reached


def format_recipe_table(out_dirs, steps, markdown=False):
    """The recipe x iterations table: per recipe (seeds grouped), generator and step, the mean
    and range of the Frechet distance, the mean classifier score, the smallest and the largest
    class share of any seed, and the mean training time before the evaluation. With reference
    runs among them, also the iteration at which each run first reached the reference's final
    mean. markdown: the table as Markdown rows."""
    groups = group_figures(out_dirs, set(steps))
    width = max([len("recipe")] + [len(label) for label, _, _ in groups])
    # Conditional runs among them: a column of label agreement, mean (the worst class of any seed).
    agreement = any("label_agreement" in figures for figures in groups.values())
    if markdown:
        lines = ["| recipe | generator | iterations | seeds | Frechet distance, mean [range] | classifier score "
                 "| smallest / largest class share | training s |" + (" label agreement (worst class) |" if agreement
                                                                      else ""),
                 "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if agreement else "")]
    else:
        lines = [f"{'recipe':<{width}} {'generator':<16} {'step':>6} {'runs':>4} {'FD mean [min-max]':>24} "
                 f"{'score':>6} {'smallest':>9} {'largest':>8} {'train s':>8}"
                 + ("  label agreement" if agreement else "")]
    for (label, generator, step), figures in sorted(groups.items()):
        fd = figures["frechet_distance"]
        smallest, largest = 100 * min(figures["smallest_share"]), 100 * max(figures["largest_share"])
        score, seconds = np.mean(figures["classifier_score"]), np.mean(figures["train_seconds"])
        agrees = ""
        if "label_agreement" in figures:
            agrees = (f"{100 * np.mean(figures['label_agreement']):.1f}% "
                      f"({100 * min(figures['worst_class_label_agreement']):.1f}%)")
        if markdown:
            lines.append(f"| {label} | {generator} | {step:,} | {len(fd)} | {np.mean(fd):.1f} [{min(fd):.1f}-{max(fd):.1f}] "
                         f"| {score:.2f} | {smallest:.1f}% / {largest:.1f}% | {seconds:.0f} |"
                         + (f" {agrees} |" if agreement else ""))
        else:
            lines.append(f"{label:<{width}} {generator:<16} {step:>6} {len(fd):>4} "
                         f"{np.mean(fd):>8.1f} [{min(fd):6.1f}-{max(fd):6.1f}] {score:>6.2f} "
                         f"{smallest:>8.1f}% {largest:>7.1f}% {seconds:>8.0f}" + (f"  {agrees}" if agreement else ""))
    final = max(steps)
    references = {}  # dataset prefix of the labels ("" for one dataset) -> the reference's distances
    for (label, _, step), figures in groups.items():
        if label.endswith("reference") and step == final:
            references.setdefault(label[:-len("reference")], []).extend(figures["frechet_distance"])
    for prefix, distances in sorted(references.items()):
        target = float(np.mean(distances))
        lines.append(f"first evaluation at or below the {prefix}reference's mean Frechet distance at {final} "
                     f"({target:.1f}):")
        for (label, generator), firsts in sorted(steps_to_reach(out_dirs, target).items()):
            if label.startswith(prefix):
                shown = ", ".join("never" if step is None else str(step) for step in firsts)
                lines.append(f"  {label:<{width}} {generator:<16} {shown}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def main(argv=None):
    parser = runs.ArgumentParser(description="Evaluate the latest checkpoint of a run in --out-dir, "
                                             "or compare the metrics.csv of runs.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out-dir", help="folder of a main1.py run")
    what.add_argument("--compare", nargs="+", metavar="DIR",
                      help="folders of runs made with --eval-every (main1.py or reference.py): their last "
                           "evaluation, and the mean Frechet distance of their last four")
    what.add_argument("--samples", metavar="FILE",
                      help="a samples.npy (N x H x W x C in [0, 1]) beside the config.json of the run that "
                           "made it: scores its first images against the run's data")
    parser.add_argument("--at", type=int, nargs="+", metavar="STEP",
                        help="with --compare: the recipe table instead, runs of one recipe grouped as seeds, "
                             "at these evaluated iterations")
    parser.add_argument("--markdown", action="store_true", help="with --compare --at: the table in Markdown")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the evaluated noise; default: the run's seed, so the figures match "
                             "the run's metrics.csv at the same iteration")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                        help="where the trained classifier is cached; default %(default)s")
    with runs.raising_on_signals():
        return _main(parser, argv)


def _main(parser, argv):
    try:
        args = parser.parse_args(argv)
        if args.compare:
            print(format_recipe_table(args.compare, args.at, args.markdown) if args.at else
                  format_comparison({out_dir: summarize_metrics(out_dir) for out_dir in args.compare}))
            return 0
        folder = os.path.dirname(os.path.abspath(args.samples)) if args.samples else args.out_dir
        with runs.RunFolder(folder) as run_folder:
            run_folder.lock_for_reading("evaluation")  # two evaluations never write one file
            return _evaluate(args, folder)
    except (runs.UsageError, DatasetError, MetricsError) as error:
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
        print(format_report({"samples": result["samples"], "real (floor)": result["real"]}))
    else:
        result = evaluate_run(args.out_dir, args.seed, args.cache_dir)
        print(f"iteration {result['step']}, {result['n_samples']} samples per set, seed {result['seed']}; "
              f"classifier held-out accuracy {result['classifier']['heldout_accuracy']:.4f}")
        print(format_report({**result["generators"], "real (floor)": result["real"]}))
    print(f"written to {write_evaluation(folder, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
