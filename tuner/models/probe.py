"""The linear head, fitted in closed form: a regularized logistic regression on standardized features.

A linear probe on standardized pooled features is the standard transfer-learning baseline, and the
first half of LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022): fit the linear head to convergence with the backbone frozen, then
fine-tune from that head. A search that starts its fine-tuning from this head can only improve on
the probe, by the checkpoint rule (the best epoch of either phase is kept).

The regularization strength is chosen on the validation set. The fit depends only on the frozen
features, so it is the same for every trial of one backbone and is computed once per process.
scikit-learn is imported lazily; this module never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Inverse regularization strengths tried, strongest first (scikit-learn's C = 1 / lambda).
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
# Logit given to a class the training set lacks, so the head never predicts it.
_ABSENT_CLASS_BIAS = -30.0


@dataclass(frozen=True)
class LinearHead:
    """The fitted weights of the head's output layer, and how they were chosen."""

    kernel: np.ndarray  # (channels, outputs), float32: outputs is 1 for two classes
    bias: np.ndarray  # (outputs,), float32
    C: float  # the chosen inverse regularization strength
    val_accuracy: float  # on the validation set, at the chosen C
    val_loss: float  # cross-entropy on the validation set, at the chosen C


def fit_linear_head(
    train: np.ndarray,
    train_labels: np.ndarray,
    val: np.ndarray,
    val_labels: np.ndarray,
    n_classes: int,
    *,
    select_on: str = "accuracy",
    grid: tuple[float, ...] = C_GRID,
) -> LinearHead:
    """Fits a logistic regression for each C in `grid` and keeps the best on the validation set.

    Args:
        train: standardized training features (rows x channels).
        train_labels: class indices of the training rows.
        val: standardized validation features.
        val_labels: class indices of the validation rows.
        n_classes: how many classes the head predicts (2 gives one sigmoid output).
        select_on: "accuracy" (highest validation accuracy, ties to the lower loss) or "loss"
            (lowest validation cross-entropy). Defaults to "accuracy".
        grid: the values of C to try. Defaults to `C_GRID`.

    Returns:
        The output layer's weights for the chosen C, as a `LinearHead`.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    y_train = np.asarray(train_labels).reshape(-1).astype(int)
    y_val = np.asarray(val_labels).reshape(-1).astype(int)
    best: tuple[tuple[float, float], LinearHead] | None = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            # A weakly regularized fit on separable data stops at max_iter; it is still usable,
            # and the validation set decides whether it is the one to keep.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train, y_train)
        kernel, bias = _output_weights(model, n_classes)
        probabilities = _softmax_or_sigmoid(val @ kernel + bias)
        accuracy, loss = _accuracy_and_loss(probabilities, y_val)
        rank = (-accuracy, loss) if select_on == "accuracy" else (loss, -accuracy)
        if best is None or rank < best[0]:
            best = (rank, LinearHead(kernel, bias, c, accuracy, loss))
    assert best is not None, "the grid of C values is empty"
    return best[1]


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


def _softmax_or_sigmoid(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype("float64")
    if logits.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _accuracy_and_loss(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    eps = 1e-7  # Keras clips probabilities the same way in its cross-entropy
    if probabilities.shape[1] == 1:
        p = np.clip(probabilities[:, 0], eps, 1 - eps)
        predicted = (p > 0.5).astype(int)
        loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    else:
        p = np.clip(probabilities, eps, 1 - eps)
        predicted = p.argmax(axis=1)
        loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    return float(np.mean(predicted == labels)), float(loss)
