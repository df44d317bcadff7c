"""The instrument's numbers: each metric against a case worked out by hand, and the floor."""
import numpy as np
import pytest
from conftest import toy_digits

import metrics


def test_frechet_distance_is_zero_for_identical_sets():
    features = np.random.default_rng(0).normal(size=(500, 6))
    stats = metrics.feature_statistics(features)
    assert metrics.frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    # Diagonal covariances: FD = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mean1, mean2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mean1 - mean2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert metrics.frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2)) == pytest.approx(expected)
    # A rotated pair: the distance does not depend on the basis.
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    rotated = metrics.frechet_distance(rotation @ mean1, rotation @ np.diag(var1) @ rotation.T,
                                        rotation @ mean2, rotation @ np.diag(var2) @ rotation.T)
    assert rotated == pytest.approx(expected)


def test_frechet_distance_grows_with_a_known_shift():
    features = np.random.default_rng(2).normal(size=(2000, 4))
    stats = metrics.feature_statistics(features)
    distances = []
    for shift in (0.5, 1.0, 2.0):
        shifted = metrics.feature_statistics(features + shift)
        distances.append(metrics.frechet_distance(*stats, *shifted))
        assert distances[-1] == pytest.approx(4 * shift ** 2, rel=1e-6)  # |shift * ones(4)|^2
    assert distances == sorted(distances)


def test_classifier_score_is_one_for_a_single_class_and_n_for_a_uniform_confident_set():
    single = np.tile(np.eye(10)[3], (100, 1))
    assert metrics.classifier_score(single) == pytest.approx(1.0)
    uniform_confident = np.eye(10)[np.arange(1000) % 10]
    assert metrics.classifier_score(uniform_confident) == pytest.approx(10.0, rel=1e-6)
    unsure = np.full((100, 10), 0.1)
    assert metrics.classifier_score(unsure) == pytest.approx(1.0)


def test_class_shares_and_their_distance_from_uniform():
    probabilities = np.eye(4)[[0, 0, 1, 2, 3, 3, 3, 3]]
    shares = metrics.class_shares(probabilities)
    assert shares.tolist() == [0.25, 0.125, 0.125, 0.5]
    assert metrics.kl_from_uniform([0.25] * 4) == pytest.approx(0.0, abs=1e-9)
    assert metrics.kl_from_uniform([1.0, 0, 0, 0]) == pytest.approx(np.log(4))


def test_evaluator_floor_is_near_zero_and_a_collapsed_generator_scores_worse(tmp_path):
    images, labels = toy_digits(600, 2)
    evaluator, _ = metrics.build_evaluator(images, labels, cache_dir=str(tmp_path), classifier_steps=150,
                                            log=lambda _: None)
    assert evaluator.n_samples == 600 and evaluator.floor["frechet_method"] == "extrapolated"
    collapsed = images[labels == 0]
    scores = evaluator.metrics(collapsed)
    assert scores["class_shares"][0] > 0.95 and scores["classifier_score"] < 1.2
    assert scores["frechet_distance"] > 10 * evaluator.floor["frechet_distance"]
    assert evaluator.floor["classifier_score"] > 2.5
    assert evaluator.floor["class_kl_from_uniform"] < 0.05


def test_the_extrapolated_floor_matches_a_measured_one():
    """From n real features alone, the real-vs-real distance of two disjoint sets of n each."""
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(40000, 6)) * np.array([3.0, 2.0, 1.0, 1.0, 0.5, 0.2])
    measured = np.mean([metrics.split_distance(pool, 2000, rng) for _ in range(10)])
    extrapolated = np.mean([metrics.extrapolated_floor(pool[i * 2000:(i + 1) * 2000], 2000, seed=i)
                            for i in range(10)])
    assert extrapolated == pytest.approx(measured, rel=0.15)
    # Half the samples, about twice the distance: the bias the extrapolation removes.
    assert np.mean([metrics.split_distance(pool, 1000, rng) for _ in range(10)]) > 1.6 * measured


def test_with_a_test_split_the_floor_is_measured_on_as_many_other_real_images(tmp_path):
    images, labels = toy_digits(500, 4)
    test_images, test_labels = toy_digits(200, 5)
    evaluator, _ = metrics.build_evaluator(images, labels, test_images, test_labels, cache_dir=str(tmp_path),
                                            classifier_steps=100, log=lambda _: None)
    assert evaluator.n_samples == 200 and evaluator.floor["frechet_method"] == "measured"
