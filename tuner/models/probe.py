"""The linear head, fitted in closed form: a regularized logistic regression on standardized features.

A linear probe on standardized pooled features is the standard transfer-learning baseline, and the
first half of LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022): fit the linear head to convergence with the backbone frozen, then
fine-tune from that head. A search that starts its fine-tuning from this head can only improve on
the probe, by the checkpoint rule (the best epoch of either phase is kept).

The regularization strength C is chosen by stratified k-fold cross-validation on the training
features alone, scored by log-loss (weighted by the class weights when the classes are weighed),
then the head is refitted on every training row at that C. The validation set never reaches the
probe: it is kept for choosing epochs and trials. The fit depends only on the frozen features, so
it is the same for every trial of one backbone and is computed once per process.

The cost stays below a plain grid's (one fit per C on the training rows, scored on validation),
measured side by side by `python -m scripts.bench_probe` (docs/design.md §4): each fold walks the
grid from the strongest regularization to the weakest, every fit warm-started from the fold's own
previous solution (lbfgs; never from a fit that saw the fold's held-out rows, which would leak them
into its score), to a looser tolerance than the refit's; the walk stops once the mean fold loss has
risen (`_PATIENCE`), so the weakly regularized fits, the slowest to converge, run only when they
score better; there are 3 folds; and the refit starts from the folds' mean solution at the chosen C.

scikit-learn is imported lazily; this module never imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner import metrics
from tuner.errors import DataError

# Inverse regularization strengths tried, strongest first (scikit-learn's C = 1 / lambda).
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
# Folds of the cross-validation; fewer when the smallest class has fewer training images. Each
# fold fits (k - 1) / k of the rows along the path, so k folds cost about k - 1 refits per C: in
# lbfgs iterations x rows on the benchmark's features (docs/design.md §4), 5 folds cost 2.3x the
# old grid and 3 folds 1.2x at scikit-learn's tolerance, 0.75x at `_CV_TOL`.
FOLDS = 3
# The walk along the grid stops after this many values of C in a row whose mean fold loss is
# worse than the best so far: log-loss against log C is U-shaped (too strong a penalty underfits,
# too weak a one is overconfident on near-separable features), and the weakly regularized fits
# are the slowest to converge where the features are near-separable.
_PATIENCE = 1
# lbfgs's gradient tolerance in the folds' fits, which only score a C: C_GRID's values are a
# decade apart. On the benchmark's features (3 folds), against scikit-learn's 1e-4, it cut the
# iterations x rows from 615 to 383 (the old grid: 509), kept the chosen C (0.01) and moved its
# fold log-loss from 1.0735 to 1.0738 (the neighbouring values of C score 1.13 and 1.40). Looser
# is cheaper but worse at weak C, where the penalty's gradient is small and a warm-started fit
# hardly moves: at 1e-3 the folds' fits at C = 10 took 0 iterations and scored as C = 1 did. The
# refit keeps the tighter default.
_CV_TOL = 5e-4
_TOL = 1e-4
# Iterations of one lbfgs fit; a weakly regularized fit on separable rows stops here (it is still
# usable, and the cross-validation says whether it is the one to keep).
_MAX_ITER = 2000
# Logit given to a class the training set lacks, so the head never predicts it.
_ABSENT_CLASS_BIAS = -30.0


@dataclass(frozen=True)
class LinearHead:
    """The fitted weights of the head's output layer, and how they were chosen."""

    kernel: np.ndarray  # (channels, outputs), float32: outputs is 1 for two classes
    bias: np.ndarray  # (outputs,), float32
    C: float  # the chosen inverse regularization strength
    cv_loss: float | None  # mean held-out fold log-loss at C; None: one C given, no CV run


def fit_linear_head(
    train: np.ndarray,
    train_labels: np.ndarray,
    n_classes: int,
    *,
    sample_weight: np.ndarray | None = None,
    grid: tuple[float, ...] = C_GRID,
    folds: int = FOLDS,
    seed: int = 0,
    groups: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> LinearHead:
    """Chooses C by stratified k-fold log-loss on `train`, then fits the head on all of `train`.

    Args:
        train: standardized training features (rows x channels).
        train_labels: class indices of the training rows.
        n_classes: how many classes the head predicts (2 gives one sigmoid output).
        sample_weight: one weight per row (the class weights of its label), used in every fit
            and in the held-out log-loss. Defaults to none: every row weighs 1.
        grid: the values of C to try. One value fits at that C on every row, without
            cross-validation. Defaults to `C_GRID`.
        folds: the most folds; k = min(folds, the smallest class's count of groups). Defaults to
            `FOLDS`.
        seed: shuffles the rows into folds. Defaults to 0.
        groups: rows that are views of one image share a group and stay in one fold, so no
            image is scored by a fit that saw it. Defaults to none: every row is its own image.
        class_names: the classes' names, for messages. Defaults to their indices.

    Returns:
        The output layer's weights at the chosen C, as a `LinearHead`.

    Raises:
        DataError: a class has fewer than 2 training images, so it cannot be cross-validated.
    """
    x = np.asarray(train)
    y = np.asarray(train_labels).reshape(-1).astype(int)
    weights = None if sample_weight is None else np.asarray(sample_weight, "float64").reshape(-1)
    if len(grid) < 1:
        raise ValueError("Expected at least one value of C. Received: grid=()")
    if len(grid) == 1:
        model = _fit(x, y, weights, grid[0])
        kernel, bias = _output_weights(model, n_classes)
        return LinearHead(kernel, bias, float(grid[0]), None)

    fold = _assign_folds(y, n_classes, folds, seed, groups, class_names)
    k = int(fold.max()) + 1
    models: list = [None] * k
    best: tuple[float, float, list[np.ndarray]] | None = None  # (loss, C, fold solutions)
    worse = 0
    for c in sorted(grid):  # strongest regularization first: each fit warm-starts the next
        losses = []
        for i in range(k):
            held = fold == i
            models[i] = _fit(x[~held], y[~held], _rows(weights, ~held), c, models[i], tol=_CV_TOL)
            probabilities = _full_probabilities(models[i], x[held], n_classes)
            losses.append(metrics.log_loss(probabilities, y[held], _rows(weights, held)))
        loss = float(np.mean(losses))
        if best is None or loss < best[0]:
            best, worse = (loss, c, [_solution(m) for m in models]), 0
        else:
            worse += 1
            if worse >= _PATIENCE:
                break
    assert best is not None
    loss, c, solutions = best
    # The refit starts where the folds ended, on average, at the chosen C (every training fold
    # holds every class, so their solutions have one shape).
    model = _fit(x, y, weights, c, start=np.mean(solutions, axis=0))
    kernel, bias = _output_weights(model, n_classes)
    return LinearHead(kernel, bias, float(c), loss)


def _assign_folds(
    y: np.ndarray,
    n_classes: int,
    folds: int,
    seed: int,
    groups: np.ndarray | None,
    class_names: Sequence[str] | None,
) -> np.ndarray:
    """The fold of every row: groups stratified by their label into k folds."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError(f"Expected folds >= 2 for cross-validation. Received: folds={folds}")
    if groups is None:
        groups = np.arange(len(y))
    unique, first, row_group = np.unique(
        np.asarray(groups).reshape(-1), return_index=True, return_inverse=True
    )
    group_labels = y[first]
    counts = np.bincount(group_labels, minlength=n_classes)
    for label, count in enumerate(counts):
        if count < 2:
            name = class_names[label] if class_names is not None else str(label)
            raise DataError(
                f"class {name!r} has {count} training image{'' if count == 1 else 's'}; the "
                "linear head's regularization is chosen by cross-validation on the training "
                f"images, which needs at least 2 per class: add images of {name!r} or remove "
                "the class"
            )
    k = int(min(folds, counts.min()))
    group_fold = np.empty(len(unique), dtype=int)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, held) in enumerate(splitter.split(np.zeros(len(unique)), group_labels)):
        group_fold[held] = i
    return group_fold[row_group.reshape(-1)]


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    c: float,
    previous=None,
    *,
    start: np.ndarray | None = None,
    tol: float = _TOL,
):
    """A logistic regression at C = `c`, warm-started from `previous` (a fitted model) or from
    `start` (coefficients with the intercept as their last column)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = previous or LogisticRegression(max_iter=_MAX_ITER, warm_start=True)
    model.set_params(C=c, tol=tol)
    if start is not None:
        model.coef_, model.intercept_ = start[:, :-1].copy(), start[:, -1].copy()
    with warnings.catch_warnings():
        # A weakly regularized fit on separable rows stops at max_iter; it is still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=weights)
    return model


def _solution(model) -> np.ndarray:
    """A fitted model's coefficients with its intercept as the last column."""
    return np.concatenate([model.coef_, model.intercept_[:, None]], axis=1)


def _rows(weights: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[mask]


def _full_probabilities(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities of every class (columns 0..n_classes-1), whatever classes the fit saw."""
    kernel, bias = _output_weights(model, n_classes)
    return metrics.tempered(x.astype("float64") @ kernel.astype("float64") + bias, 1.0)


def _output_weights(model, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model as the kernel and bias of a Dense output layer."""
    classes = [int(c) for c in model.classes_]
    coef = np.asarray(model.coef_, dtype="float64")
    intercept = np.asarray(model.intercept_, dtype="float64")
    if n_classes == 2:
        if classes == [0, 1]:
            return coef.T.astype("float32"), intercept.astype("float32")
        # One class only in training: predict it everywhere.
        bias = -_ABSENT_CLASS_BIAS if classes == [1] else _ABSENT_CLASS_BIAS
        return np.zeros((coef.shape[1], 1), "float32"), np.array([bias], "float32")
    kernel = np.zeros((coef.shape[1], n_classes), dtype="float64")
    bias = np.full(n_classes, _ABSENT_CLASS_BIAS, dtype="float64")
    if len(classes) == 2:
        # scikit-learn fits a binary model when only two classes are present: logits 0 and z.
        kernel[:, classes[1]] = coef[0]
        bias[classes[0]], bias[classes[1]] = 0.0, intercept[0]
    else:
        for row, label in enumerate(classes):
            kernel[:, label] = coef[row]
            bias[label] = intercept[row]
    return kernel.astype("float32"), bias.astype("float32")
