"""The linear head fitted in closed form: C chosen by k-fold on the training features only, its
weights acting in a Dense layer as in scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tuner import metrics
from tuner.errors import DataError
from tuner.models import probe
from tuner.models.probe import C_GRID, fit_linear_head


def blobs(n_classes: int, n: int, seed: int, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = np.random.default_rng(99).normal(size=(n_classes, 10)) * spread
    return (centres[labels] + rng.normal(size=(n, 10))).astype("float32"), labels


def predict(linear: probe.LinearHead, x: np.ndarray) -> np.ndarray:
    logits = x.astype("float64") @ linear.kernel + linear.bias
    return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)


class FitSpy:
    """Records what every LogisticRegression.fit sees."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sklearn.linear_model import LogisticRegression

        self.calls: list[tuple[np.ndarray, np.ndarray | None]] = []
        original = LogisticRegression.fit

        def fit(model, x, y, sample_weight=None):
            self.calls.append((np.array(x), None if sample_weight is None else sample_weight))
            return original(model, x, y, sample_weight=sample_weight)

        monkeypatch.setattr(LogisticRegression, "fit", fit)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_fitted_head_predicts_in_keras_what_it_predicts_in_numpy(n_classes):
    import keras

    x, y = blobs(n_classes, 200, 0)
    vx, vy = blobs(n_classes, 100, 1)
    linear = fit_linear_head(x, y, n_classes)
    assert np.mean(predict(linear, vx) == vy) > 0.85
    assert linear.C in C_GRID and linear.cv_loss is not None and linear.cv_loss > 0
    outputs = 1 if n_classes == 2 else n_classes
    assert linear.kernel.shape == (10, outputs) and linear.bias.shape == (outputs,)
    dense = keras.layers.Dense(outputs, activation="sigmoid" if n_classes == 2 else "softmax")
    dense.build((None, 10))
    dense.set_weights([linear.kernel, linear.bias])
    p = np.asarray(dense(vx))
    predicted = (p[:, 0] > 0.5).astype(int) if n_classes == 2 else p.argmax(axis=1)
    assert np.array_equal(predicted, predict(linear, vx))


def test_c_follows_the_training_data_strong_for_noise_weak_for_clean_clusters():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(120, 10)).astype("float32")
    assert fit_linear_head(noise, np.arange(120) % 3, 3).C <= 0.01
    x, y = blobs(3, 300, 1, spread=4.0)
    assert fit_linear_head(x, y, 3).C >= 1.0


def test_the_chosen_c_is_the_grid_value_with_the_lowest_fold_log_loss():
    x, y = blobs(3, 90, 2, spread=0.6)
    linear = fit_linear_head(x, y, 3, seed=5)
    fold = probe._assign_folds(y, 3, probe.FOLDS, 5, None, None)
    losses = {}
    for c in C_GRID:
        per_fold = []
        for i in range(fold.max() + 1):
            held = fold == i
            model = probe._fit(x[~held], y[~held], None, c)
            per_fold.append(
                metrics.log_loss(probe._full_probabilities(model, x[held], 3), y[held], None)
            )
        losses[c] = float(np.mean(per_fold))
    best = min(losses, key=losses.get)
    assert linear.C == best
    assert linear.cv_loss == pytest.approx(losses[best], rel=0.02)


def test_a_single_c_fits_once_on_every_row_without_cross_validation(monkeypatch):
    spy = FitSpy(monkeypatch)
    x, y = blobs(3, 60, 3)
    linear = fit_linear_head(x, y, 3, grid=(0.1,))
    assert (linear.C, linear.cv_loss) == (0.1, None)
    assert len(spy.calls) == 1 and len(spy.calls[0][0]) == 60


def test_class_weights_change_the_fit_and_raise_the_minority_s_recall():
    rng = np.random.default_rng(4)
    y = np.array([0] * 150 + [1] * 150 + [2] * 12)
    centres = np.array([[0.0, 0.0], [1.2, 0.0], [0.6, 1.0]])
    x = (centres[y] + rng.normal(scale=0.8, size=(len(y), 2))).astype("float32")
    from tuner.metrics import class_weights

    weights = class_weights(np.bincount(y))[y]
    plain = fit_linear_head(x, y, 3)
    weighted = fit_linear_head(x, y, 3, sample_weight=weights)
    assert not np.allclose(plain.kernel, weighted.kernel)
    vy = np.array([0, 1, 2] * 200)
    vx = centres[vy] + np.random.default_rng(5).normal(scale=0.8, size=(len(vy), 2))
    recall = [np.mean(predict(head, vx)[vy == 2] == 2) for head in (plain, weighted)]
    assert recall[1] > recall[0]


def test_the_held_out_log_loss_is_weighted_by_the_rows_weights():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    each = -np.log([0.9, 0.8, 0.4])
    assert metrics.log_loss(p, labels, None) == pytest.approx(each.mean())
    weights = np.array([1.0, 1.0, 4.0])
    assert metrics.log_loss(p, labels, weights) == pytest.approx((each * weights).sum() / 6)


def test_folds_are_stratified_keep_an_image_s_views_together_and_shrink_to_the_smallest_class():
    y = np.array([0] * 20 + [1] * 20 + [2] * 2)
    assert probe._assign_folds(y, 3, 5, 0, None, None).max() + 1 == 2
    images = np.arange(30) % 3
    views = 4
    groups = np.tile(np.arange(30), views)
    fold = probe._assign_folds(np.tile(images, views), 3, 3, 0, groups, None)
    assert fold.max() + 1 == 3
    for image in range(30):
        assert len(set(fold[groups == image])) == 1
    for i in range(3):  # each fold holds out images of every class
        assert set(images[np.unique(groups[fold == i])]) == {0, 1, 2}


@pytest.mark.parametrize("count", [0, 1])
def test_a_class_with_fewer_than_two_training_images_is_a_one_line_data_error(count):
    y = np.array([0] * 10 + [1] * 10 + [2] * count)
    x = np.random.default_rng(0).normal(size=(len(y), 4))
    with pytest.raises(DataError) as error:
        fit_linear_head(x, y, 3, class_names=["cat", "dog", "emu"])
    message = str(error.value)
    assert "'emu'" in message and f"has {count} training image" in message
    assert "\n" not in message and "at least 2" in message


# --------------------------------------------------------------------------------------------
# Features.linear_head: the validation features never reach the probe


@dataclass
class _Split:
    labels: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(self.names)}


class _Data:
    """What Features.linear_head reads of the search's images."""

    def __init__(self, train_labels: np.ndarray, val_labels: np.ndarray) -> None:
        self.class_names = ("cat", "dog")
        self.n_classes = 2
        self.train = _Split(train_labels, self.class_names)
        self.val = _Split(val_labels, self.class_names)

    def labels(self, which: str) -> np.ndarray:
        return getattr(self, which).labels


def features_on(tmp_path: Path, train: np.ndarray, val: np.ndarray, data: _Data, **config):
    from tests.helpers import tiny_config
    from tuner.frozen.context import Overhead, SearchContext
    from tuner.frozen.features import Features
    from tuner.ui.display import SearchDisplay

    settings = tiny_config(tmp_path, tmp_path / "project", cache=False, objective="val_accuracy")
    settings = settings.replace(**{"class_weight": "none", **config})
    context = SearchContext(settings, data, SearchDisplay(verbose=0), Overhead())
    features = Features(context, image_sizes={"tiny": 32}, max_unfreeze_blocks=0)
    pooled = {"train": train, "val": val}
    features.pooled = lambda name, which: pooled[which]  # type: ignore[method-assign]
    return features


def test_validation_features_never_reach_the_linear_head(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y_train, y_val = np.arange(200) % 2, np.arange(200) % 2
    # The training features carry no label signal; the validation features carry a perfect one.
    train = rng.normal(size=(200, 6)).astype("float32")
    val = rng.normal(size=(200, 6)).astype("float32")
    val[:, 0] = np.where(y_val == 1, 8.0, -8.0)
    features = features_on(tmp_path, train, val, _Data(y_train, y_val))
    spy = FitSpy(monkeypatch)
    linear = features.linear_head("tiny")

    standardized = features.feature_stats("tiny").standardize(val)
    assert np.mean(predict(linear, standardized) == y_val) < 0.7  # chance, not the val signal
    seen_train = {row.tobytes() for row in features.feature_stats("tiny").standardize(train)}
    assert spy.calls
    for x, _ in spy.calls:
        assert {row.tobytes() for row in np.asarray(x, "float32")} <= seen_train

    # Other validation features and labels: the very same head.
    other = features_on(
        tmp_path, train, rng.normal(size=(50, 6)).astype("float32"), _Data(y_train, y_val[:50])
    )
    again = other.linear_head("tiny")
    assert again.C == linear.C and np.array_equal(again.kernel, linear.kernel)


def test_the_linear_head_weighs_the_classes_when_the_search_does(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    y = np.array([0] * 90 + [1] * 10)
    train = (rng.normal(size=(100, 4)) + y[:, None] * 0.8).astype("float32")
    val = train[:20]
    spy = FitSpy(monkeypatch)
    plain = features_on(tmp_path, train, val, _Data(y, y[:20])).linear_head("tiny")
    assert all(weights is None for _, weights in spy.calls)
    spy.calls.clear()
    balanced = features_on(
        tmp_path, train, val, _Data(y, y[:20]), class_weight="balanced"
    ).linear_head("tiny")
    weights = spy.calls[-1][1]  # the refit, on every row
    assert weights is not None and weights[y == 1][0] == pytest.approx(9 * weights[y == 0][0])
    assert not np.allclose(plain.kernel, balanced.kernel)
