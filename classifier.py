"""The evaluator's classifier: a small convolutional network, the measuring instrument's lens.

conv 5x5/2 (32) -> conv 5x5/2 (64) -> dense 128 (the features) -> dense n_classes. It has layers
of its own (nothing of the GAN's model.py).

For digits and for Fashion-MNIST its weights are committed files (`instruments/`, made by
`python scripts/make_instruments.py`), named with their SHA-256 in instruments/instruments.json
and checked each time they are loaded, so a distance means the same on every machine (pytorch-fid
pins its Inception weights the same way). Other data (CIFAR-10, image folders) has no committed
instrument: its classifier is trained on the machine that first scores a run and cached under the
hash of that data and of this file, and its figures are on that machine's scale.
"""
import contextlib
import functools
import hashlib
import json
import os

import numpy as np

import outputs

SCOPE = "classifier"
DEFAULT_CACHE_DIR = os.path.join("results", "cache")
INSTRUMENT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "instruments")
MANIFEST = "instruments.json"
# The committed instrument of each dataset whose real images every machine can have (all 28x28x1).
DATASET_INSTRUMENTS = {"mnist": "digits", "fashion_mnist": "fashion"}
MACHINE_LOCAL = "machine-local"  # the instrument's name in a record when it was trained here


class InstrumentError(Exception):
    """A committed instrument is missing, altered or unreadable: one line naming the file."""


@functools.cache  # the file is read once per process
def _code_digest():
    """SHA-256 of this file: part of the cache key, so that the cache follows the code."""
    with open(__file__, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def _conv(x, filters, name):
    """5x5 stride-2 'SAME' conv with bias: [b, h, w, c] -> [b, h/2, w/2, filters]."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with v1.variable_scope(name):
        weights = v1.get_variable("weights", [5, 5, int(x.shape[-1]), filters],
                                  initializer=v1.truncated_normal_initializer(stddev=0.02))
        biases = v1.get_variable("biases", [filters], initializer=v1.zeros_initializer())
        return tf.nn.conv2d(x, weights, strides=[1, 2, 2, 1], padding="SAME") + biases


def _dense(x, units, name):
    """[b, n] -> [b, units], with bias."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with v1.variable_scope(name):
        weights = v1.get_variable("weights", [int(x.shape[-1]), units],
                                  initializer=v1.truncated_normal_initializer(stddev=0.02))
        biases = v1.get_variable("biases", [units], initializer=v1.zeros_initializer())
        return tf.matmul(x, weights) + biases


class ImageClassifier:
    """The classifier of one image shape and class count (digits, clothes or CIFAR-10 objects).

    Built in its own graph and session, so it can run beside a finalized GAN graph.
    """

    def __init__(self, image_shape, n_classes, learning_rate=1e-3, seed=0):
        # TensorFlow is imported here, not at the top: main1.py's flag checks stay fast.
        import tensorflow as tf

        v1 = tf.compat.v1
        self.image_shape, self.n_classes = tuple(image_shape), n_classes
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.set_random_seed(seed)
            self.images = v1.placeholder(tf.float32, [None, *image_shape], name="images")
            self.labels = v1.placeholder(tf.int64, [None], name="labels")
            with v1.variable_scope(SCOPE):
                x = tf.nn.relu(_conv(self.images, 32, "conv0"))                  # [b, H/2, W/2, 32]
                x = tf.nn.relu(_conv(x, 64, "conv1"))                            # [b, H/4, W/4, 64]
                x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
                self.features = tf.nn.relu(_dense(x, 128, "features"))           # [b, 128]
                logits = _dense(self.features, n_classes, "logits")              # [b, classes]
            self.probabilities = tf.nn.softmax(logits)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=self.labels, logits=logits))
            self.train_op = v1.train.AdamOptimizer(learning_rate).minimize(loss)
            self.saver = v1.train.Saver(v1.global_variables())
            # The weights by name, and how to set them (load_weights): the graph is finalized below.
            self.variables = {v.op.name: v for v in v1.trainable_variables(SCOPE)}
            self.assignments = {}
            for name, variable in self.variables.items():
                value = v1.placeholder(tf.float32, variable.shape)
                self.assignments[name] = (value, variable.assign(value))
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

    def weights(self):
        """{variable name: float32 array} of the network's weights (not Adam's slots)."""
        return self.session.run(self.variables)

    def load_weights(self, arrays):
        """Set the network's weights from weights()'s form (any float dtype): every variable must
        be there with its shape, or ValueError names the first that is not."""
        feed, ops = {}, []
        for name, (value, assign) in self.assignments.items():
            if name not in arrays:
                raise ValueError(f"no weights for {name}")
            if tuple(arrays[name].shape) != tuple(value.shape):
                raise ValueError(f"{name} has shape {tuple(arrays[name].shape)}, expected {tuple(value.shape)}")
            feed[value] = np.asarray(arrays[name], dtype=np.float32)
            ops.append(assign)
        self.session.run(ops, feed)

    def save(self, prefix):
        with self.graph.as_default():
            self.saver.save(self.session, prefix, write_meta_graph=False)

    def restore(self, prefix):
        with self.graph.as_default():
            self.saver.restore(self.session, prefix)


DigitClassifier = ImageClassifier  # the name it had when it scored only digits


def cache_key(images, labels):
    """16 hex digits of the SHA-256 of the training data and of this file's code."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(images), np.ascontiguousarray(labels)):
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())
    digest.update(_code_digest().encode())
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
        log(f"classifier: the cache in {folder} is damaged ({outputs.error_summary(error)}); training it again")
        return None


def load_or_train_classifier(train_images, train_labels, heldout_images, heldout_labels, cache_dir,
                             steps=None, log=print):
    """The classifier for this training data: from the cache when its key matches, else
    trained now and cached (a cache that cannot be written is said in one line, and the
    classifier is used all the same). Returns (classifier, info dict with the held-out accuracy)."""
    n_classes = int(max(train_labels.max(), heldout_labels.max())) + 1
    key = cache_key(train_images, train_labels)
    folder = os.path.join(cache_dir, f"classifier-{key}")
    classifier = ImageClassifier(train_images.shape[1:], n_classes)
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
            f"{folder} ({outputs.error_summary(error)})")
    return classifier, dict(info, cached=False)


# ----------------------------------------------------------------------------- committed instruments
def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def array_sha256(*arrays):
    """SHA-256 of arrays' dtypes, shapes and bytes: which real images a statistic describes."""
    digest = hashlib.sha256()
    for array in map(np.ascontiguousarray, arrays):
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def read_manifest(folder=None):
    """instruments.json: {instrument name: its entry (file, sha256, what it was trained on, its
    reference statistics' data and floor)}; InstrumentError when missing or unreadable."""
    path = os.path.join(folder or INSTRUMENT_DIR, MANIFEST)
    try:
        with open(path) as stream:
            manifest = json.load(stream)
    except FileNotFoundError:
        raise InstrumentError(f"{path} is missing: the committed instruments are named there "
                              f"(git checkout instruments/, or python scripts/make_instruments.py)") from None
    except (OSError, ValueError) as error:
        raise InstrumentError(f"cannot read {path} ({outputs.error_summary(error)})") from None
    if not isinstance(manifest, dict):
        raise InstrumentError(f"{path} must map instrument names to their entries")
    return manifest


def instrument_for(dataset_name, image_shape):
    """The committed instrument's name for a dataset of this image shape, or None (machine-local)."""
    name = DATASET_INSTRUMENTS.get(dataset_name)
    return name if name is not None and tuple(image_shape) == (28, 28, 1) else None


def load_instrument(name, folder=None):
    """(ImageClassifier with the committed weights, manifest entry, {reference statistics}) of a
    committed instrument, its file checked against the SHA-256 the manifest names. Never trains:
    a missing or altered file is an InstrumentError naming it."""
    folder = folder or INSTRUMENT_DIR
    entry = read_manifest(folder).get(name)
    manifest_path = os.path.join(folder, MANIFEST)
    if not isinstance(entry, dict) or not {"file", "sha256", "image_shape", "n_classes"} <= set(entry):
        raise InstrumentError(f"{manifest_path} has no complete entry for the {name} instrument")
    path = os.path.join(folder, entry["file"])
    if not os.path.isfile(path):
        raise InstrumentError(f"{path} is missing (the {name} instrument; git checkout {os.path.relpath(path)}, "
                              f"or python scripts/make_instruments.py to make a new one)")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise InstrumentError(f"{path}: SHA-256 {digest[:16]}... is not the {entry['sha256'][:16]}... that "
                              f"{manifest_path} names; the file was altered (git checkout it, or re-make both "
                              f"with python scripts/make_instruments.py)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        network = ImageClassifier(entry["image_shape"], entry["n_classes"])
        network.load_weights({key: value for key, value in arrays.items() if key.startswith(SCOPE + "/")})
    except (OSError, ValueError, KeyError) as error:
        raise InstrumentError(f"{path}: not the {name} instrument's weights ({error})") from None
    statistics = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith("reference/")}
    return network, entry, statistics


def instrument_id(entry):
    """'digits sha256:0123456789ab' for a manifest entry: what a record names as its instrument."""
    return f"{entry['name']} sha256:{entry['sha256'][:12]}"
