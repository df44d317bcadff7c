"""The evaluator's classifier: trained once, cached under its data and its code."""
import os

import numpy as np
from conftest import toy_digits

import classifier


def test_classifier_is_cached_and_retrained_when_the_data_changes(tmp_path):
    images, labels = toy_digits(300, 0)
    heldout, heldout_labels = toy_digits(100, 1)
    messages = []
    first, info = classifier.load_or_train_classifier(images, labels, heldout, heldout_labels, str(tmp_path),
                                                    steps=150, log=messages.append)
    assert not info["cached"] and info["heldout_accuracy"] > 0.9
    again, info_again = classifier.load_or_train_classifier(images, labels, heldout, heldout_labels,
                                                          str(tmp_path), steps=150, log=messages.append)
    assert info_again["cached"] and info_again["heldout_accuracy"] == info["heldout_accuracy"]
    np.testing.assert_array_equal(first.predict(heldout)[0], again.predict(heldout)[0])
    changed = images.copy()
    changed[0, 0, 0, 0] = 0.9
    _, info_changed = classifier.load_or_train_classifier(changed, labels, heldout, heldout_labels,
                                                        str(tmp_path), steps=150, log=messages.append)
    assert not info_changed["cached"] and info_changed["data_hash"] != info["data_hash"]
    assert len(os.listdir(tmp_path)) == 2


def test_a_damaged_classifier_cache_is_rebuilt_with_a_notice(tmp_path):
    images, labels = toy_digits(100, 0)
    cache = str(tmp_path / "cache")
    lines = []
    classifier.load_or_train_classifier(images, labels, images, labels, cache, steps=5, log=lines.append)
    folder = os.path.join(cache, os.listdir(cache)[0])
    with open(os.path.join(folder, "model.ckpt.index"), "wb") as stream:
        stream.write(b"garbage")
    lines.clear()
    _, info = classifier.load_or_train_classifier(images, labels, images, labels, cache, steps=5, log=lines.append)
    assert not info["cached"] and any("is damaged" in line and "training it again" in line for line in lines)
    _, info = classifier.load_or_train_classifier(images, labels, images, labels, cache, steps=5, log=lines.append)
    assert info["cached"]


def test_the_cache_key_follows_the_classifier_code(monkeypatch):
    images, labels = toy_digits(50, 0)
    key = classifier.cache_key(images, labels)
    assert classifier.cache_key(images, labels) == key
    monkeypatch.setattr(classifier, "_code_digest", lambda: "another version of classifier.py")
    assert classifier.cache_key(images, labels) != key


def test_the_classifier_trains_the_same_weights_from_the_same_seed():
    images, labels = toy_digits(200, 3)
    first, second = (classifier.ImageClassifier(images.shape[1:], 3) for _ in range(2))
    first.fit(images, labels, 20)
    second.fit(images, labels, 20)
    np.testing.assert_array_equal(first.predict(images)[0], second.predict(images)[0])
