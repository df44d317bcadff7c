"""The evaluator's classifier: a small convolutional network trained once per dataset, offline.

It is the measuring instrument's lens, so it has layers of its own (nothing of the GAN's
model.py) and its cache key covers this file: a change to the code it runs trains it again,
and a cached classifier is always the one this code would train.

conv 5x5/2 (32) -> conv 5x5/2 (64) -> dense 128 (the features) -> dense n_classes, trained with
Adam on the dataset's labelled training split, then cached on disk under the hash of that data
and of this file.
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
