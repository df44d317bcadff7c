import json
import os

import numpy as np
import pytest

import evaluate
from config import RunConfig


def test_frechet_distance_is_zero_for_identical_sets():
    features = np.random.default_rng(0).normal(size=(500, 6))
    stats = evaluate.feature_statistics(features)
    assert evaluate.frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    # Diagonal covariances: FD = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mean1, mean2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mean1 - mean2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert evaluate.frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2)) == pytest.approx(expected)
    # A rotated pair: the distance does not depend on the basis.
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    rotated = evaluate.frechet_distance(rotation @ mean1, rotation @ np.diag(var1) @ rotation.T,
                                        rotation @ mean2, rotation @ np.diag(var2) @ rotation.T)
    assert rotated == pytest.approx(expected)


def test_frechet_distance_grows_with_a_known_shift():
    features = np.random.default_rng(2).normal(size=(2000, 4))
    stats = evaluate.feature_statistics(features)
    distances = []
    for shift in (0.5, 1.0, 2.0):
        shifted = evaluate.feature_statistics(features + shift)
        distances.append(evaluate.frechet_distance(*stats, *shifted))
        assert distances[-1] == pytest.approx(4 * shift ** 2, rel=1e-6)  # |shift * ones(4)|^2
    assert distances == sorted(distances)


def test_classifier_score_is_one_for_a_single_class_and_n_for_a_uniform_confident_set():
    single = np.tile(np.eye(10)[3], (100, 1))
    assert evaluate.classifier_score(single) == pytest.approx(1.0)
    uniform_confident = np.eye(10)[np.arange(1000) % 10]
    assert evaluate.classifier_score(uniform_confident) == pytest.approx(10.0, rel=1e-6)
    unsure = np.full((100, 10), 0.1)
    assert evaluate.classifier_score(unsure) == pytest.approx(1.0)


def test_class_shares_and_their_distance_from_uniform():
    probabilities = np.eye(4)[[0, 0, 1, 2, 3, 3, 3, 3]]
    shares = evaluate.class_shares(probabilities)
    assert shares.tolist() == [0.25, 0.125, 0.125, 0.5]
    assert evaluate.kl_from_uniform([0.25] * 4) == pytest.approx(0.0, abs=1e-9)
    assert evaluate.kl_from_uniform([1.0, 0, 0, 0]) == pytest.approx(np.log(4))


def _toy_digits(n, seed, offset=0):
    """Three easily told apart classes: a bright bar at one of three heights."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 0.2, (n, 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(labels):
        images[i, 4 + 9 * label + offset:8 + 9 * label + offset, :, 0] = 1.0
    return images, labels


def test_classifier_is_cached_and_retrained_when_the_data_changes(tmp_path):
    images, labels = _toy_digits(300, 0)
    heldout, heldout_labels = _toy_digits(100, 1)
    messages = []
    first, info = evaluate.load_or_train_classifier(images, labels, heldout, heldout_labels, str(tmp_path),
                                                    steps=150, log=messages.append)
    assert not info["cached"] and info["heldout_accuracy"] > 0.9
    again, info_again = evaluate.load_or_train_classifier(images, labels, heldout, heldout_labels,
                                                          str(tmp_path), steps=150, log=messages.append)
    assert info_again["cached"] and info_again["heldout_accuracy"] == info["heldout_accuracy"]
    np.testing.assert_array_equal(first.predict(heldout)[0], again.predict(heldout)[0])
    changed = images.copy()
    changed[0, 0, 0, 0] = 0.9
    _, info_changed = evaluate.load_or_train_classifier(changed, labels, heldout, heldout_labels,
                                                        str(tmp_path), steps=150, log=messages.append)
    assert not info_changed["cached"] and info_changed["data_hash"] != info["data_hash"]
    assert len(os.listdir(tmp_path)) == 2


def test_evaluator_floor_is_near_zero_and_a_collapsed_generator_scores_worse(tmp_path):
    images, labels = _toy_digits(600, 2)
    evaluator, _ = evaluate.build_evaluator(images, labels, cache_dir=str(tmp_path), classifier_steps=150,
                                            log=lambda _: None)
    assert evaluator.n_samples == 600 and evaluator.floor["frechet_method"] == "extrapolated"
    collapsed = images[labels == 0]
    metrics = evaluator.metrics(collapsed)
    assert metrics["class_shares"][0] > 0.95 and metrics["classifier_score"] < 1.2
    assert metrics["frechet_distance"] > 10 * evaluator.floor["frechet_distance"]
    assert evaluator.floor["classifier_score"] > 2.5
    assert evaluator.floor["class_kl_from_uniform"] < 0.05


def test_the_extrapolated_floor_matches_a_measured_one():
    """From n real features alone, the real-vs-real distance of two disjoint sets of n each."""
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(40000, 6)) * np.array([3.0, 2.0, 1.0, 1.0, 0.5, 0.2])
    measured = np.mean([evaluate.split_distance(pool, 2000, rng) for _ in range(10)])
    extrapolated = np.mean([evaluate.extrapolated_floor(pool[i * 2000:(i + 1) * 2000], 2000, seed=i)
                            for i in range(10)])
    assert extrapolated == pytest.approx(measured, rel=0.15)
    # Half the samples, about twice the distance: the bias the extrapolation removes.
    assert np.mean([evaluate.split_distance(pool, 1000, rng) for _ in range(10)]) > 1.6 * measured


def test_with_a_test_split_the_floor_is_measured_on_as_many_other_real_images(tmp_path):
    images, labels = _toy_digits(500, 4)
    test_images, test_labels = _toy_digits(200, 5)
    evaluator, _ = evaluate.build_evaluator(images, labels, test_images, test_labels, cache_dir=str(tmp_path),
                                            classifier_steps=100, log=lambda _: None)
    assert evaluator.n_samples == 200 and evaluator.floor["frechet_method"] == "measured"


def _write_metrics(path, rows):
    header = "step,generator,frechet_distance,classifier_score,class_kl_from_uniform," + \
             ",".join(f"share_{c}" for c in range(3))
    path.write_text("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n")


def test_compare_summarizes_the_last_evaluation_and_the_mean_of_the_last_four(tmp_path, capsys):
    # Rows out of order and two generators: each generator is summarized on its own.
    rows = [(step, "raw", fd, 5.0 + step / 1000, 0.1, 0.5, 0.3, 0.2)
            for step, fd in [(5000, 50.0), (1000, 90.0), (2000, 80.0), (3000, 70.0), (4000, 60.0)]]
    rows.append((5000, "averaged", 40.0, 7.0, 0.0, 1 / 3, 1 / 3, 1 / 3))
    _write_metrics(tmp_path / "metrics.csv", rows)
    summary = evaluate.summarize_metrics(str(tmp_path))
    assert summary["raw"] == {"step": 5000, "frechet_distance": 50.0, "mean_frechet_distance": 65.0,
                              "window": (2000, 5000), "classifier_score": 10.0,
                              "smallest_share": 0.2, "largest_share": 0.5}
    assert summary["averaged"]["mean_frechet_distance"] == 40.0 and summary["averaged"]["window"] == (5000, 5000)
    assert evaluate.main(["--compare", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "65.0 (2000-5000)" in lines[1] and "20.0% / 50.0%" in lines[1]


def test_compare_names_a_run_without_metrics(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _write_metrics(tmp_path / "empty" / "metrics.csv", [])
    assert evaluate.main(["--compare", str(tmp_path / "missing")]) == 2
    assert "missing/metrics.csv" in capsys.readouterr().err
    assert evaluate.main(["--compare", str(tmp_path / "empty")]) == 2
    assert "holds no evaluations" in capsys.readouterr().err


def _run_folder(path, config, rows):
    path.mkdir()
    if config.get("recipe") != "reference":
        config = RunConfig(**config).to_json()
    (path / "config.json").write_text(json.dumps(config))
    header = "step,generator,train_seconds,frechet_distance,classifier_score,class_kl_from_uniform," + \
             ",".join(f"share_{c}" for c in range(3))
    (path / "metrics.csv").write_text("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n")
    return str(path)


def test_the_recipe_table_groups_seeds_and_finds_when_the_reference_is_reached(tmp_path):
    shares = (0.2, 0.3, 0.5)
    reference = _run_folder(tmp_path / "ref", {"recipe": "reference"},
                            [(10, "raw", 50.0, 300.0, 5.0, 0.1, *shares), (20, "raw", 100.0, 100.0, 6.0, 0.1, *shares)])
    tuned = [_run_folder(tmp_path / f"tuned{seed}", {"recipe": "tuned", "learning_rate": 4e-4},
                         [(10, "averaged", 20.0, fd10, 7.0, 0.0, *shares), (20, "averaged", 40.0, fd20, 8.0, 0.0, *shares)])
             for seed, (fd10, fd20) in enumerate([(90.0, 60.0), (150.0, 80.0)])]
    ablated = _run_folder(tmp_path / "ablated", {"recipe": "tuned", "learning_rate": 1e-4, "without": ("hinge",)},
                          [(10, "averaged", 20.0, 500.0, 7.0, 0.0, *shares)])
    assert evaluate.run_label(ablated) == ("mnist", "tuned without hinge (learning rate 0.0001)")
    groups = evaluate.group_figures([reference, *tuned, ablated], {10, 20})
    assert groups[("tuned", "averaged", 20)]["frechet_distance"] == [60.0, 80.0]
    assert groups[("tuned", "averaged", 10)]["smallest_share"] == [0.2, 0.2]
    table = evaluate.format_recipe_table([reference, *tuned, ablated], [10, 20]).splitlines()
    row = next(line for line in table if line.startswith("tuned ") and " 20 " in line)
    assert "70.0 [  60.0-  80.0]" in row and "8.00" in row
    markdown = evaluate.format_recipe_table([reference, *tuned], [10, 20], markdown=True).splitlines()
    assert "| tuned | averaged | 20 | 2 | 70.0 [60.0-80.0] | 8.00 | 20.0% / 50.0% | 40 |" in markdown
    # The reference's mean at the last step is 100: the first tuned seed is there at 10, the other at 20.
    assert table[-4].startswith("first evaluation at or below the reference's mean Frechet distance at 20 (100.0)")
    reached = {line.split()[0] + (" ablated" if "without" in line else ""): line.split()[-2:] for line in table[-3:]}
    assert reached == {"reference": ["raw", "20"], "tuned": ["10,", "20"], "tuned ablated": ["averaged", "never"]}
