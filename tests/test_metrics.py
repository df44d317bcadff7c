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
    # One class only: its samples look real (precision) but reach a third of the data (recall).
    assert evaluator.floor["manifold_method"] == "halves (300 vs 300)"
    assert evaluator.floor["recall"] > 0.6 and evaluator.floor["coverage"] > 0.6
    assert scores["recall"] < 0.5 * evaluator.floor["recall"] and scores["coverage"] < 0.5


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


# ----------------------------------------------------------------------------- precision and recall
def test_precision_recall_density_coverage_of_a_case_worked_by_hand():
    # k = 1. Real balls: 0, 1 and 2 have radius 1 (their nearest neighbour), 10 has radius 8.
    # Fake balls: 0.5 and 9 have radius 8.5, 20 has radius 11.
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [9.0], [20.0]])
    result = metrics.precision_recall_density_coverage(real, fake, k=1)
    assert result["precision"] == pytest.approx(2 / 3)  # 0.5 (balls of 0 and 1) and 9 (ball of 10); 20 in none
    assert result["recall"] == pytest.approx(1.0)       # every real point is in the ball of 0.5 or of 9
    assert result["density"] == pytest.approx(3 / 3)    # 2 + 1 + 0 real balls over k * 3 fakes
    assert result["coverage"] == pytest.approx(3 / 4)   # 2's nearest fake (0.5) is 1.5 away, beyond its radius 1


def test_precision_and_recall_tell_a_collapse_from_blur():
    rng = np.random.default_rng(0)
    real, alike = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    same = metrics.precision_recall_density_coverage(real, alike)
    collapsed = metrics.precision_recall_density_coverage(real, real[:1] + 0.01 * rng.normal(size=(600, 8)))
    blurred = metrics.precision_recall_density_coverage(real, 3.0 * rng.normal(size=(600, 8)))
    assert same["precision"] > 0.7 and same["recall"] > 0.7 and 0.7 < same["density"] < 1.3
    assert same["coverage"] > 0.9
    # One point drawn over and over: every sample looks real, but the data is not reached.
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05
    # Samples spread far wider than the data: most look like nothing real.
    assert blurred["precision"] < 0.3 and blurred["density"] < 0.2


def test_the_frechet_distance_of_covariances_that_do_not_commute():
    """Tr((C1 C2)^1/2) by hand for 2x2 matrices: for M with positive eigenvalues,
    Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M)). The pair does not commute, so the classic wrong
    formula Tr(C1^1/2 C2^1/2) gives another value, which this test would catch."""
    c1 = np.array([[9.0, 0.0], [0.0, 0.25]])
    c2 = np.array([[5.0, 4.9], [4.9, 5.0]])
    assert not np.allclose(c1 @ c2, c2 @ c1)
    product = c1 @ c2
    trace_root = np.sqrt(np.trace(product) + 2.0 * np.sqrt(np.linalg.det(product)))
    mean1, mean2 = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    expected = np.sum((mean1 - mean2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * trace_root
    assert metrics.frechet_distance(mean1, c1, mean2, c2) == pytest.approx(expected, rel=1e-12)
    wrong = np.trace(metrics._sqrt_psd(c1) @ metrics._sqrt_psd(c2))
    assert abs(wrong - trace_root) > 0.5  # the wrong formula would fail the assertion above
    # Higher dimensions: the eigenvalues of C1 C2 give the same trace another way.
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    by_eigenvalues = np.sqrt(np.linalg.eigvals(c1 @ c2).real.clip(0)).sum()
    assert metrics.frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(
        np.trace(c1) + np.trace(c2) - 2.0 * by_eigenvalues, rel=1e-9)
