"""The head: standardized input on any feature scale, the linear head, and its serialization."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.models.network import FeatureStats, build_head


@pytest.mark.parametrize("scale", [1e-12, 1e-5, 1.0, 300.0])
def test_the_head_standardizes_features_of_any_scale(scale):
    rng = np.random.default_rng(0)
    features = (rng.random((64, 8)) * scale).astype("float32")
    features[:, 3] = 0.0  # a dead channel stays finite (zero), never blown up
    stats = FeatureStats.of(features)
    head = build_head(8, units=0, dropout=0.0, n_classes=3, stats=stats)
    standardize = head.get_layer("head_standardize")
    out = np.asarray(standardize(features, training=True))  # frozen: inference mode even so
    np.testing.assert_allclose(out, stats.standardize(features), rtol=1e-4, atol=1e-4)
    live = np.delete(out, 3, axis=1)
    np.testing.assert_allclose(live.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(live.std(axis=0), 1.0, rtol=1e-3)
    assert np.all(out[:, 3] == 0.0)
    assert not standardize.trainable


def test_features_that_carry_nothing_are_refused():
    from tuner.errors import TunerError

    with pytest.raises(TunerError, match="same for every training image"):
        FeatureStats.of(np.ones((10, 4), dtype="float32"))
    with pytest.raises(TunerError, match="NaN or inf"):
        FeatureStats.of(np.full((10, 4), np.inf, dtype="float32"))


def test_a_linear_head_has_no_hidden_layer_and_saves_in_safe_mode(tmp_path):
    import keras

    rng = np.random.default_rng(1)
    features = (rng.random((32, 6)) * 1e-9).astype("float32")
    head = build_head(6, units=0, dropout=0.1, n_classes=2, stats=FeatureStats.of(features))
    assert [layer.name for layer in head.layers] == [
        "head_standardize",
        "head_dropout",
        "head_output",
    ]
    path = tmp_path / "head.keras"
    head.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(features, verbose=0), head.predict(features, verbose=0)
    )


def test_augmentation_builds_only_the_operations_asked_in_a_fixed_order():
    from tuner.models.network import augmentation_layers

    def names(operations) -> list[str]:
        return [layer.name for layer in augmentation_layers(0, operations)]

    assert names(("rotate", "zoom")) == ["augment_rotation", "augment_zoom"]
    assert names(("zoom", "flip")) == ["augment_flip", "augment_zoom"]
    assert names(("flip", "rotate", "zoom")) == ["augment_flip", "augment_rotation", "augment_zoom"]
    with pytest.raises(ValueError, match="Unknown augmentation shear"):
        augmentation_layers(0, ("shear",))


def test_an_operation_transforms_the_same_with_or_without_the_others():
    from tuner.models.network import augmentation_layers

    images = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32") * 255
    (alone,) = augmentation_layers(5, ("rotate",))
    _, among = augmentation_layers(5, ("flip", "rotate"))
    np.testing.assert_array_equal(
        np.asarray(alone(images, training=True)), np.asarray(among(images, training=True))
    )


def test_the_classifier_flips_only_when_asked():
    import keras

    from tuner.models.network import build_classifier

    def augmenting(**kwargs) -> list[str]:
        inputs = keras.Input((8, 8, 3))
        backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
        head = build_head(3, units=0, dropout=0.0, n_classes=2)
        model = build_classifier(backbone, head, image_size=8, preprocessing="none", **kwargs)
        return [layer.name for layer in model.layers if layer.name.startswith("augment")]

    assert augmenting() == []  # no seed: no augmentation
    assert augmenting(augment_seed=0) == ["augment_rotation", "augment_zoom"]  # the default
    assert augmenting(augment_seed=0, augmentations=("flip",)) == ["augment_flip"]
