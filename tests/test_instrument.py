"""The committed measuring instrument: its files are checked, it never trains, and its figures do
not move with the thread count or with the text of classifier.py."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, script

import classifier
import metrics
from mlpreprocess import DatasetError, embedded_dataset, load_dataset


@pytest.fixture(scope="module")
def digits():
    return embedded_dataset("mnist")


def test_every_committed_instrument_is_named_with_its_hash_and_is_small():
    manifest = classifier.read_manifest()
    assert set(manifest) == set(classifier.DATASET_INSTRUMENTS.values())
    for name, entry in manifest.items():
        assert entry["name"] == name
        path = os.path.join(classifier.INSTRUMENT_DIR, entry["file"])
        assert classifier.file_sha256(path) == entry["sha256"]
        assert os.path.getsize(path) == entry["bytes"] < 2_000_000
        # float16 weights are kept only where they give the float32 figures to 0.1%
        assert entry["weights_dtype"] == "float32" or entry["float16_check"]["largest_relative_change"] <= 1e-3


@pytest.fixture()
def copied_instruments(tmp_path):
    folder = tmp_path / "instruments"
    shutil.copytree(classifier.INSTRUMENT_DIR, folder)
    return folder


def test_an_altered_or_missing_instrument_is_one_line_naming_the_file(copied_instruments):
    path = copied_instruments / "digits.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(classifier.InstrumentError, match=r"digits\.npz: SHA-256 .* is not the .*instruments\.json"):
        classifier.load_instrument("digits", str(copied_instruments))
    path.unlink()
    with pytest.raises(classifier.InstrumentError, match=r"digits\.npz is missing"):
        classifier.load_instrument("digits", str(copied_instruments))
    (copied_instruments / "instruments.json").write_text("{not json")
    with pytest.raises(classifier.InstrumentError, match=r"cannot read .*instruments\.json"):
        classifier.load_instrument("fashion", str(copied_instruments))


def test_scoring_with_a_broken_instrument_fails_in_one_line_and_never_trains(tmp_path, monkeypatch, digits):
    monkeypatch.setattr(classifier, "INSTRUMENT_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(metrics, "load_or_train_classifier", lambda *a, **k: pytest.fail("trained a classifier"))
    with pytest.raises(classifier.InstrumentError, match="instruments.json is missing"):
        metrics.build_evaluator(digits.images, digits.labels, cache_dir=str(tmp_path), instrument="digits")


def test_the_committed_statistics_are_those_of_the_committed_weights_here(digits):
    """The instrument's reference statistics and floor are used as committed, and this machine's
    features of the same images give the same mean and covariance up to rounding."""
    evaluator, info = metrics.build_evaluator(digits.images, digits.labels, instrument="digits", log=lambda _: None)
    entry = classifier.read_manifest()["digits"]
    assert info["statistics"] == "committed" and info["instrument"] == classifier.instrument_id(entry)
    assert evaluator.floor["frechet_distance"] == entry["reference"]["floor"]["frechet_distance"]
    mean, covariance = metrics.feature_statistics(evaluator.reference_features)
    np.testing.assert_allclose(mean, evaluator.reference[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(covariance, evaluator.reference[1], rtol=1e-3, atol=1e-4)
    assert evaluator.metrics(digits.images[:100])["instrument"] == info["instrument"]


def test_other_real_images_get_statistics_from_the_committed_weights(digits):
    """A real set without committed statistics (the full MNIST, here 2,000 of the digits with a
    test split) is measured with the committed weights, never a classifier trained here."""
    evaluator, info = metrics.build_evaluator(digits.images[:3000], digits.labels[:3000], digits.images[3000:4000],
                                              digits.labels[3000:4000], instrument="digits", log=lambda _: None)
    assert info["statistics"].startswith("computed here") and info["heldout_accuracy"] > 0.9
    assert evaluator.floor["frechet_method"] == "measured"
    # The embedded digits come sorted by class: this test split holds only sixes and sevens, so no
    # per-class distance can be measured against it (none is made of an empty class).
    assert evaluator.class_reference is None


SCORE = """
import json, sys
import numpy as np
sys.path.insert(0, ".")
import metrics
from mlpreprocess import DatasetError, embedded_dataset, load_dataset
data = embedded_dataset("mnist")
evaluator, info = metrics.build_evaluator(data.images, data.labels, instrument="digits", log=lambda _: None)
rng = np.random.default_rng(1)
images = np.clip(data.images + rng.normal(0, 0.2, data.images.shape).astype(np.float32), 0, 1)
scores = evaluator.metrics(np.roll(images, 2, axis=1))
print(json.dumps({k: scores[k] for k in ("frechet_distance", "classifier_score", "precision", "recall",
                                         "class_kl_from_uniform", "instrument")}))
"""


def score_in_process(folder, threads):
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", SCORE], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_figures_hold_across_thread_counts_and_a_changed_classifier_py(tmp_path):
    one, two = score_in_process(ROOT, 1), score_in_process(ROOT, 2)
    for name in ("frechet_distance", "classifier_score", "precision", "recall", "class_kl_from_uniform"):
        assert one[name] == pytest.approx(two[name], rel=5e-5), name  # four significant digits
    assert one["frechet_distance"] > 100  # a set far from the real digits, not a trivial case
    # A copy of the code whose classifier.py has one more comment: the same figures, exactly.
    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "results", "records", "tests", "docs",
                                                              "__pycache__"))
    with open(copy / "classifier.py", "a") as stream:
        stream.write("\n# a comment changes no figure\n")
    assert score_in_process(copy, 1) == one


def _make_instruments():
    return script("make_instruments")


@pytest.mark.parametrize("name", ["digits", "fashion"])
def test_this_machine_scores_the_check_set_to_the_figures_recorded_where_the_instrument_was_made(name):
    """The manifest keeps the figures of a fixed test set (the reference images, perturbed with
    seeded noise) as scored on the machine that made the instrument: here they come out the same
    to four significant digits."""
    entry = classifier.read_manifest()[name]
    dataset_name = entry["reference"]["dataset"]
    try:
        dataset = load_dataset(dataset_name, offline=True, log=lambda _: None)
    except DatasetError as error:
        pytest.skip(f"no {dataset_name} files here: {error}")
    parts = metrics.split_real_data(dataset.images, dataset.labels, dataset.test_images, dataset.test_labels)
    evaluator, info = metrics.build_evaluator(dataset.images, dataset.labels, dataset.test_images,
                                              dataset.test_labels, instrument=name, log=lambda _: None)
    assert info["statistics"] == "committed"
    scores = evaluator.metrics(_make_instruments().perturbed(parts["reference"]))
    recorded = entry["float16_check"][entry["weights_dtype"]]
    for figure in ("frechet_distance", "classifier_score"):
        assert scores[figure] == pytest.approx(recorded[figure], rel=5e-5), figure
