"""tuner.metrics: every figure checked against scikit-learn or by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
)

from tuner import metrics


def _predictions(n: int = 400, classes: int = 3, seed: int = 0, sharpness: float = 3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.0
    return metrics.tempered(sharpness * logits, 1.0), labels


def test_scores_agree_with_scikit_learn():
    p, y = _predictions()
    got = metrics.scores(p, y, 3)
    predicted = p.argmax(axis=1)
    assert got["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert got["loss"] == pytest.approx(log_loss(y, p), rel=1e-6)
    assert got["confusion"] == confusion_matrix(y, predicted).tolist()
    assert got["images"] == len(y)
    assert "auc" not in got  # two classes only


def test_a_sigmoid_column_is_the_probability_of_class_1():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    score = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    got = metrics.scores(score[:, None], y, 2)
    assert got["accuracy"] == pytest.approx(np.mean((score > 0.5) == y))
    assert got["auc"] == pytest.approx(roc_auc_score(y, score))
    # Ties in the scores count half, as scikit-learn counts them.
    rounded = np.round(score, 1)
    assert metrics.binary_auc(y, rounded) == pytest.approx(roc_auc_score(y, rounded))


def test_majority_class_predictions_score_chance_balanced_accuracy():
    y = np.array([0] * 90 + [1] * 10)
    p = np.tile([0.9, 0.1], (100, 1))
    got = metrics.scores(p, y, 2)
    assert got["accuracy"] == pytest.approx(0.9)
    assert got["balanced_accuracy"] == pytest.approx(0.5)
    assert got["recall"] == [1.0, 0.0]


def test_a_class_without_images_has_no_recall_and_does_not_count():
    matrix = metrics.confusion([0, 0, 1], [0, 1, 1], 3)
    assert metrics.recalls(matrix) == [0.5, 1.0, None]
    assert metrics.balanced_accuracy(matrix) == pytest.approx(0.75)


def test_ece_is_zero_for_calibrated_bins_and_the_gap_otherwise():
    y = np.array([0, 0, 0, 1])
    # Confidence 0.75 everywhere and 3 of 4 right: calibrated.
    assert metrics.expected_calibration_error(np.tile([0.75, 0.25], (4, 1)), y) == 0.0
    # Confidence 1.0 and 3 of 4 right: a gap of 0.25.
    got = metrics.expected_calibration_error(np.tile([1.0, 0.0], (4, 1)), y)
    assert got == pytest.approx(0.25)


def test_the_fitted_temperature_undoes_an_overconfident_scale():
    p, y = _predictions(n=2000, sharpness=1.0, seed=3)
    logits = metrics.logits(p)
    overconfident = metrics.tempered(logits * 4.0, 1.0)
    t = metrics.fit_temperature(metrics.logits(overconfident), y)
    assert t == pytest.approx(4.0, rel=0.15)
    calibrated = metrics.tempered(metrics.logits(overconfident), t)
    assert (calibrated.argmax(1) == overconfident.argmax(1)).all()
    before = metrics.scores(overconfident, y, 3)
    after = metrics.scores(calibrated, y, 3)
    assert after["loss"] < before["loss"]
    assert after["ece"] < before["ece"] / 2


def test_temperature_on_a_sigmoid_column():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000)
    z = (2 * y - 1) * 1.0 + rng.normal(size=1000)
    p = metrics.tempered((z * 5.0)[:, None], 1.0)
    t = metrics.fit_temperature(metrics.logits(p), y)
    assert t > 2.0
    assert ((metrics.tempered(metrics.logits(p), t) > 0.5) == (p > 0.5)).all()


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 150 + [1] * 150 + [2] * 10)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert metrics.class_weights([150, 150, 10]) == pytest.approx(expected)
    assert metrics.imbalance([150, 150, 10]) == 15.0
    assert metrics.imbalance([3, 0]) == math.inf


def test_wilson_interval_holds_the_proportion_and_stays_in_0_1():
    low, high = metrics.wilson(90, 90)
    assert 0.95 < low < 1.0 and high == 1.0
    low, high = metrics.wilson(45, 90)
    assert low < 0.5 < high
    assert metrics.wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    "objective", ["val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_loss"]
)
def test_score_interval_holds_the_score(objective):
    p, y = _predictions(n=300)
    key = objective.removeprefix("val_")
    value = metrics.scores(p, y, 3)[key]
    low, high = metrics.score_interval(objective, p, y, 3)
    assert low <= value <= high
    assert high - low < 0.5


def test_score_interval_of_auc_and_of_an_unknown_metric():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 200), 0, 1)[:, None]
    low, high = metrics.score_interval("val_auc", p, y, 2)
    assert low <= metrics.binary_auc(y, p[:, 0]) <= high
    assert metrics.score_interval("val_precision", p, y, 2) is None
