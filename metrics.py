"""The instrument: scores of a set of images against real ones, from a classifier's features.

- Frechet distance between the Gaussians fitted to the classifier's penultimate-layer features
  of real images and of generated ones (lower is better);
- classifier score exp(E_x KL(p(y|x) || p(y))): up to the number of classes when every sample
  is confidently one class and all classes are equally frequent;
- each class's share among the samples and the KL divergence of the shares from uniform;
- improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et
  al. 2020), from k-nearest-neighbour balls in the same features: precision and density say how
  many samples look real, recall and coverage how much of the real data the samples reach.

Every figure comes with the same figure for a second set of real images, the floor that a
perfect generator would reach with this many samples. An `Evaluator` takes images (and the
classes they were asked to be) only: it knows nothing of GANs, runs or checkpoints.
"""
import numpy as np

from classifier import (
    DEFAULT_CACHE_DIR,
    MACHINE_LOCAL,
    array_sha256,
    instrument_id,
    load_instrument,
    load_or_train_classifier,
)

MAX_EVAL_IMAGES = 10000
NEIGHBOURS = 5  # k of the k-nearest-neighbour balls (Naeem et al. 2020 use 5)
MANIFOLD_METRICS = ("precision", "recall", "density", "coverage")


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


def _distances(a, b):
    """Euclidean distances [len(a), len(b)] between the rows of a and b (float32)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(squared, 0.0, None)).astype(np.float32)


def neighbour_radii(features, k=NEIGHBOURS):
    """Distance from each row to its k-th nearest other row: the radius of its ball."""
    # Column 0 of the partition is the row itself (distance 0), so index k is the k-th neighbour.
    return np.partition(_distances(features, features), k, axis=1)[:, k]


def precision_recall_density_coverage(real, fake, k=NEIGHBOURS):
    """The four manifold metrics of `fake` features against `real` ones ([n, d] each):

    precision: share of fakes inside at least one real ball; recall: share of reals inside at
    least one fake ball; density: mean number of real balls a fake is in, divided by k (about 1
    for a fake set distributed like the real one); coverage: share of reals whose ball holds a fake.
    """
    real_radii, fake_radii = neighbour_radii(real, k), neighbour_radii(fake, k)
    between = _distances(real, fake)                        # [n_real, n_fake]
    in_real_ball = between <= real_radii[:, None]
    return {"precision": float(in_real_ball.any(axis=0).mean()),
            "recall": float((between <= fake_radii[None, :]).any(axis=1).mean()),
            "density": float(in_real_ball.sum(axis=0).mean() / k),
            "coverage": float((between.min(axis=1) <= real_radii).mean())}


# ----------------------------------------------------------------------------- the evaluator
class Evaluator:
    """Scores sets of `n_samples` generated images against a real reference set of as many.

    `floor` holds the same metrics for real images at the same sample count: the classifier
    score and class shares of the reference itself, and the Frechet distance between two
    disjoint real sets of n_samples each. When the data has fewer than 2 * n_samples real
    images (the 5,000 embedded digits), that distance is extrapolated: the estimator's bias
    falls as 1/n (Chong and Forsyth, CVPR 2020), so the real-vs-real distances of disjoint
    halves and quarters are fitted as a + b / n and read at n = n_samples.

    `committed`: the reference's statistics ("mean", "covariance") and "floor" as the committed
    instrument's files hold them for exactly these reference images, used instead of computing
    them here, so that they are the same figures on every machine. `instrument` names the
    instrument in every set of metrics (a record says what scale its figures are on).
    """

    def __init__(self, classifier, reference_images, floor_images=None, reference_labels=None,
                 heldout_accuracy=None, committed=None, instrument=MACHINE_LOCAL):
        self.classifier, self.instrument = classifier, instrument
        reference_features, _ = classifier.predict(reference_images)
        self.reference_features = reference_features
        self.n_samples = len(reference_images)
        if committed is not None:
            self.reference = (np.asarray(committed["mean"], np.float64),
                              np.asarray(committed["covariance"], np.float64))
            self.floor = dict(committed["floor"])
        else:
            self.reference = feature_statistics(reference_features)
        # Per-class reference statistics, for a conditional model's per-class distances: only
        # where every class has real images to compare with (a test split may lack one).
        self.class_reference = None
        if reference_labels is not None and np.bincount(reference_labels).min() > 1:
            self.class_reference = [feature_statistics(reference_features[reference_labels == k])
                                    for k in range(int(reference_labels.max()) + 1)]
        if committed is None:
            self.floor = self._measured_floor(reference_images, floor_images, heldout_accuracy)

    def _measured_floor(self, reference_images, floor_images, heldout_accuracy):
        """The real floor of every metric, measured on this machine (see the class)."""
        reference_features = self.reference_features
        floor = self.metrics(reference_images, manifold=False)  # score and shares of real images
        if heldout_accuracy is not None:
            # Label agreement of real images: how often the classifier names a real image's class.
            floor["label_agreement"] = heldout_accuracy
        if floor_images is not None and len(floor_images) >= self.n_samples:
            measured = self.metrics(floor_images[:self.n_samples])
            floor["frechet_distance"] = measured["frechet_distance"]
            floor["frechet_method"] = "measured"
            floor.update({name: measured[name] for name in MANIFOLD_METRICS if name in measured})
            floor["manifold_method"] = "measured"
        else:
            floor["frechet_distance"] = extrapolated_floor(reference_features, self.n_samples)
            floor["frechet_method"] = "extrapolated"
            # No second real set of this size: two disjoint halves of the reference, which is
            # the floor at half the sample count (the k-NN balls shrink as sets grow).
            half = self.n_samples // 2
            if half > NEIGHBOURS:
                order = np.random.default_rng(0).permutation(self.n_samples)
                floor.update(precision_recall_density_coverage(reference_features[order[:half]],
                                                               reference_features[order[half:2 * half]]))
                floor["manifold_method"] = f"halves ({half} vs {half})"
        return floor

    def metrics(self, images, labels=None, manifold=True):
        """Scores of a set of images; with `labels` (the class each image was asked to be, from a
        conditional model) also the label agreement, overall and per class, and per-class
        Frechet distances. `manifold`: also precision, recall, density and coverage."""
        features, probabilities = self.classifier.predict(images)
        shares = class_shares(probabilities)
        result = {"frechet_distance": frechet_distance(*self.reference, *feature_statistics(features)),
                  "classifier_score": classifier_score(probabilities),
                  "class_shares": [round(float(s), 4) for s in shares],
                  "class_kl_from_uniform": kl_from_uniform(shares), "instrument": self.instrument}
        if manifold and min(len(features), len(self.reference_features)) > NEIGHBOURS:
            result.update(precision_recall_density_coverage(self.reference_features, features))
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
                    classifier_steps=None, log=print, instrument=None):
    """(Evaluator, classifier info) for a labelled real set. `instrument`: the name of a committed
    instrument (classifier.DATASET_INSTRUMENTS) to measure with; None: a classifier trained on
    this data on this machine (cached), whose figures are on this machine's scale."""
    parts = split_real_data(images, labels, test_images, test_labels)
    if instrument is None:
        classifier, info = load_or_train_classifier(*parts["train"], *parts["heldout"], cache_dir,
                                                    classifier_steps, log)
        return Evaluator(classifier, parts["reference"], parts["floor"], parts["reference_labels"],
                         info["heldout_accuracy"]), dict(info, instrument=MACHINE_LOCAL)
    classifier, entry, statistics = load_instrument(instrument)
    reference = entry["reference"]
    committed = None
    if array_sha256(parts["reference"], parts["reference_labels"]) == reference["data_sha256"]:
        # The real set the instrument's statistics were made from: its committed figures.
        committed = {**statistics, "floor": reference["floor"]}
        heldout_accuracy = reference["floor"]["label_agreement"]
    else:  # other real images (the full MNIST, a test's data): computed here with the committed weights
        heldout_accuracy = classifier.accuracy(*parts["heldout"])
    name = instrument_id(entry)
    log(f"evaluator: the committed {name} instrument, reference statistics "
        f"{'committed' if committed else 'computed here'}")
    info = {"instrument": name, "heldout_accuracy": heldout_accuracy,
            "statistics": "committed" if committed else "computed here from the committed weights"}
    return Evaluator(classifier, parts["reference"], parts["floor"], parts["reference_labels"], heldout_accuracy,
                     committed=committed, instrument=name), info
