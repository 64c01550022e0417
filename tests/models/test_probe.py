"""The linear head fitted in closed form: its weights act in a Dense layer as in scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.models.probe import fit_linear_head


def blobs(n_classes: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centres = np.random.default_rng(99).normal(size=(n_classes, 10)) * 2
    return (centres[labels] + rng.normal(size=(n, 10))).astype("float32"), labels


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_fitted_head_predicts_in_keras_what_it_scored(n_classes):
    import keras

    x, y = blobs(n_classes, 200, 0)
    vx, vy = blobs(n_classes, 100, 1)
    linear = fit_linear_head(x, y, vx, vy, n_classes)
    assert linear.val_accuracy > 0.85
    outputs = 1 if n_classes == 2 else n_classes
    assert linear.kernel.shape == (10, outputs) and linear.bias.shape == (outputs,)
    dense = keras.layers.Dense(outputs, activation="sigmoid" if n_classes == 2 else "softmax")
    dense.build((None, 10))
    dense.set_weights([linear.kernel, linear.bias])
    p = np.asarray(dense(vx))
    predicted = (p[:, 0] > 0.5).astype(int) if n_classes == 2 else p.argmax(axis=1)
    assert np.mean(predicted == vy) == pytest.approx(linear.val_accuracy)


def test_regularization_is_chosen_on_validation():
    x, y = blobs(3, 60, 2)
    vx, vy = blobs(3, 60, 3)
    by_loss = fit_linear_head(x, y, vx, vy, 3, select_on="loss")
    for c in (0.001, 10.0):
        single = fit_linear_head(x, y, vx, vy, 3, select_on="loss", grid=(c,))
        assert by_loss.val_loss <= single.val_loss + 1e-9
