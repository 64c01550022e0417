"""Classification scores from predicted probabilities, in NumPy: what every trial, the test set,
the calibration and the leaderboard's intervals measure with.

One function, `scores`, turns (probabilities, labels) into every figure the package reports:
accuracy, balanced accuracy (the mean of per-class recall), macro F1, ROC AUC for two classes,
cross-entropy, the expected calibration error, per-class recall and the confusion matrix. The
validation callback, the test set scored on the export, and `scripts/quality.py` all call it, so
a figure means the same thing wherever it is shown. Also here: balanced class weights, the test
for imbalance, Wilson and bootstrap intervals, and the temperature fit. NumPy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

# Keras clips probabilities the same way inside its cross-entropy, so our log-loss equals its.
EPSILON = 1e-7
# A training set whose largest class has at least this many times the images of its smallest is
# "imbalanced": `--class-weight auto` weighs its classes and `--objective auto` ranks by balanced
# accuracy.
IMBALANCE_RATIO = 3.0
ECE_BINS = 15
Z95 = 1.959963984540054  # the two-sided 95 % quantile of the standard normal


def as_matrix(probabilities: Any) -> np.ndarray:
    """(N, classes) float64 probabilities; a one-column sigmoid output becomes two columns."""
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[1] == 1:
        p = np.concatenate([1.0 - p, p], axis=1)
    return p


def predicted_classes(probabilities: Any) -> np.ndarray:
    """The class each row predicts (a sigmoid's 0.5 threshold, as Keras's binary accuracy)."""
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim == 2 and p.shape[1] == 1:
        return (p[:, 0] > 0.5).astype(int)
    return as_matrix(p).argmax(axis=1)


def confusion(labels: Any, predicted: Any, n_classes: int) -> np.ndarray:
    """The (true class, predicted class) counts, `n_classes` x `n_classes`, int64."""
    labels = np.asarray(labels, dtype=int).reshape(-1)
    predicted = np.asarray(predicted, dtype=int).reshape(-1)
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def recalls(matrix: np.ndarray) -> list[float | None]:
    """Each class's recall (None for a class with no image)."""
    support = matrix.sum(axis=1)
    return [float(matrix[c, c] / support[c]) if support[c] else None for c in range(len(matrix))]


def balanced_accuracy(matrix: np.ndarray) -> float:
    """The mean recall over the classes that have images.

    Summed exactly (fractions), so two confusion matrices with the same balanced accuracy give
    the same float, whatever order their recalls add up in: a tie stays a tie for the tiebreak.
    """
    support = matrix.sum(axis=1)
    parts = [Fraction(int(matrix[c, c]), int(support[c])) for c in range(len(matrix)) if support[c]]
    return float(sum(parts) / len(parts)) if parts else 0.0


def macro_f1(matrix: np.ndarray) -> float:
    """The mean F1 over the classes that have images or predictions."""
    scores = []
    for c in range(len(matrix)):
        true, predicted, hit = int(matrix[c].sum()), int(matrix[:, c].sum()), int(matrix[c, c])
        if true == 0 and predicted == 0:
            continue
        scores.append(Fraction(2 * hit, true + predicted))  # exact, as balanced_accuracy
    return float(sum(scores) / len(scores)) if scores else 0.0


def binary_auc(labels: Any, scores: Any) -> float | None:
    """The ROC AUC of `scores` for class 1 (the Mann-Whitney statistic, ties counted half);
    None when one class is absent."""
    labels = np.asarray(labels, dtype=int).reshape(-1)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype="float64")
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    total = ranks[labels == 1].sum() - positives * (positives + 1) / 2.0
    return float(total / (positives * negatives))


def log_loss(probabilities: Any, labels: Any, weights: Any = None) -> float:
    """Mean cross-entropy of the true class, probabilities clipped as Keras clips them; with
    `weights` (one per row), the weighted mean."""
    p = np.clip(as_matrix(probabilities), EPSILON, 1.0 - EPSILON)
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if not len(labels):
        return 0.0
    losses = -np.log(p[np.arange(len(labels)), labels])
    if weights is None:
        return float(np.mean(losses))
    weights = np.asarray(weights, dtype="float64").reshape(-1)
    return float(np.sum(weights * losses) / np.sum(weights))


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """The top-label ECE: confidence against accuracy in `bins` equal-width bins, weighted by
    their share of images."""
    p = as_matrix(probabilities)
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if not len(labels):
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype("float64")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def scores(probabilities: Any, labels: Any, n_classes: int) -> dict[str, Any]:
    """Every figure of one set of predictions.

    Returns:
        `accuracy`, `balanced_accuracy`, `macro_f1`, `auc` (two classes only; None when a class
        is absent), `loss` (cross-entropy), `ece`, `recall` (per class, None for a class with
        no image), `confusion` (rows: true class, columns: predicted) and `images`.
    """
    labels = np.asarray(labels, dtype=int).reshape(-1)
    predicted = predicted_classes(probabilities)
    matrix = confusion(labels, predicted, n_classes)
    result: dict[str, Any] = {
        "images": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0,
        "balanced_accuracy": balanced_accuracy(matrix),
        "macro_f1": macro_f1(matrix),
        "loss": log_loss(probabilities, labels),
        "ece": expected_calibration_error(probabilities, labels),
        "recall": recalls(matrix),
        "confusion": matrix.tolist(),
    }
    if n_classes == 2:
        result["auc"] = binary_auc(labels, as_matrix(probabilities)[:, 1])
    return result


def class_weights(counts: Sequence[int]) -> np.ndarray:
    """Balanced class weights, `images / (classes * images of the class)` (scikit-learn's
    "balanced"); a class with no image gets 0."""
    counts = np.asarray(counts, dtype="float64")
    total, k = counts.sum(), len(counts)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, total / (k * np.maximum(counts, 1)), 0.0)
    return weights


def imbalance(counts: Sequence[int]) -> float:
    """The largest class's image count over the smallest's (inf when a class is empty)."""
    counts = [int(c) for c in counts]
    if not counts:
        return 1.0
    smallest = min(counts)
    return math.inf if smallest == 0 else max(counts) / smallest


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n` (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    reps: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """A percentile bootstrap interval of `statistic(rows)` over resamples of `n` row indices."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(reps)], dtype="float64")
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


def logits(probabilities: Any) -> np.ndarray:
    """Logits that give `probabilities` back: log p for a softmax (up to a per-row constant, to
    which a softmax is blind), the log-odds for a one-column sigmoid."""
    p = np.clip(np.asarray(probabilities, dtype="float64"), EPSILON, 1.0 - EPSILON)
    if p.ndim == 2 and p.shape[1] == 1:
        return np.log(p) - np.log1p(-p)
    return np.log(p)


def tempered(logit_values: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities of `logit_values / temperature`, as the model's output layer gives them
    (one sigmoid column for a one-column input, else a softmax)."""
    z = np.asarray(logit_values, dtype="float64") / temperature
    if z.ndim == 2 and z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(
    logit_values: Any, labels: Any, *, low: float = 0.05, high: float = 20.0
) -> float:
    """The temperature T > 0 that minimizes the cross-entropy of `logit_values / T` on `labels`
    (one parameter: a golden-section search on log T, which the loss is unimodal in)."""
    z = np.asarray(logit_values, dtype="float64")
    labels = np.asarray(labels, dtype=int).reshape(-1)

    def loss(log_t: float) -> float:
        return log_loss(tempered(z, math.exp(log_t)), labels)

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2.0))


# The metric `scores` computes for each objective (its `val_` prefix dropped).
METRIC_OF = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "macro_f1": "macro_f1",
    "auc": "auc",
    "loss": "loss",
}


def score_interval(
    objective: str, probabilities: Any, labels: Any, n_classes: int, *, seed: int = 0
) -> tuple[float, float] | None:
    """The 95 % interval of `objective` (`val_accuracy`, `val_balanced_accuracy`, ...) on these
    predictions: Wilson's for accuracy, a percentile bootstrap over images for the others; None
    for a metric `scores` does not compute."""
    name = METRIC_OF.get(objective.removeprefix("val_"))
    if name is None:
        return None
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if not len(labels):
        return None
    p = as_matrix(probabilities)
    predicted = p.argmax(axis=1)
    if name == "accuracy":
        return wilson(float(np.sum(predicted == labels)), len(labels))

    def statistic(rows: np.ndarray) -> float:
        y = labels[rows]
        if name == "loss":
            return log_loss(p[rows], y)
        if name == "auc":
            value = binary_auc(y, p[rows, 1])
            return math.nan if value is None else value
        matrix = confusion(y, predicted[rows], n_classes)
        return balanced_accuracy(matrix) if name == "balanced_accuracy" else macro_f1(matrix)

    return bootstrap(statistic, len(labels), seed=seed)
