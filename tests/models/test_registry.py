"""Tests for tuner.models.registry (the registry, building, weights errors) and tuner.models.preprocessing."""

from __future__ import annotations

import os
import socket
import textwrap
import urllib.error

import keras
import numpy as np
import pytest

from tests.helpers import python_env, run_python
from tuner.errors import ConfigError, WeightsError
from tuner.models import registry as backbones
from tuner.models.preprocessing import preprocessing_layers
from tuner.models.registry import (
    Backbone,
    build_backbone,
    get_backbone,
    is_backbone,
    list_backbones,
    register_backbone,
    weights_file_for,
    weights_origin,
)

EXPECTED = {
    "vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2",
    "resnet152v2", "inceptionv3", "inceptionresnetv2", "xception", "mobilenet", "mobilenetv2",
    "mobilenetv3small", "mobilenetv3large", "densenet121", "densenet169", "densenet201",
    "nasnetmobile", "nasnetlarge", "efficientnetv2b0", "efficientnetv2b1", "efficientnetv2b2",
    "efficientnetv2b3", "efficientnetv2s", "convnexttiny", "tiny",
    *(f"efficientnetb{i}" for i in range(8)),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session(free_memory=False)  # gc.collect() costs 0.6 s a test here


# --- registry ---------------------------------------------------------------------------------


def test_registry_holds_every_expected_backbone():
    assert set(list_backbones()) == EXPECTED
    assert list_backbones() == sorted(list_backbones())


def test_list_backbones_filters_with_fnmatch_case_insensitively():
    assert list_backbones("efficientnetb*") == [f"efficientnetb{i}" for i in range(8)]
    assert list_backbones("ResNet*V2") == ["resnet101v2", "resnet152v2", "resnet50v2"]
    assert list_backbones("nothing*") == []


def test_get_backbone_is_case_insensitive():
    assert get_backbone("Xception") is get_backbone("xception")
    assert get_backbone("EfficientNetV2B0").family == "efficientnetv2"
    assert is_backbone("ConvNeXtTiny")
    assert not is_backbone("alexnet")


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ConfigError) as info:
        get_backbone("alexnet")
    message = str(info.value)
    assert "'alexnet'" in message
    for name in ("xception", "resnet50", "tiny", "efficientnetv2s"):
        assert name in message


def test_register_rejects_a_different_backbone_under_a_taken_name(monkeypatch):
    monkeypatch.setattr(backbones, "_REGISTRY", dict(backbones._REGISTRY))
    tiny = get_backbone("tiny")
    assert register_backbone(tiny) is tiny  # the same record again is fine
    other = Backbone("tiny", "tuner.models.registry:_tiny", 32, 16, "tf", None, "tiny")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(other)
    mine = register_backbone(
        Backbone("mine", "tuner.models.registry:_tiny", 32, 16, "none", None, "x")
    )
    assert get_backbone("MINE") is mine


def test_backbone_records_are_consistent():
    for name in list_backbones():
        backbone = get_backbone(name)
        assert backbone.name == name
        assert backbone.preprocessing in ("tf", "caffe", "torch", "none")
        assert backbone.min_size <= backbone.default_size
        if name != "tiny":
            assert backbone.constructor.startswith("keras.applications.")
            assert backbone.weights_file and backbone.weights_file.endswith(".h5")


def test_backbone_rejects_bad_records():
    with pytest.raises(ValueError, match="lower case"):
        Backbone("Big", "x.Y", 224, 32, "tf", None, "x")
    with pytest.raises(ValueError, match="preprocessing"):
        Backbone("big", "x.Y", 224, 32, "bgr", None, "x")
    with pytest.raises(ValueError, match="min_size"):
        Backbone("big", "x.Y", 224, 300, "tf", None, "x")


def test_weights_file_depends_on_size_only_where_keras_does():
    mobilenet = get_backbone("mobilenet")
    assert weights_file_for(mobilenet, 160) == "mobilenet_1_0_160_tf_no_top.h5"
    assert weights_file_for(mobilenet, 150) == "mobilenet_1_0_224_tf_no_top.h5"
    v2 = get_backbone("mobilenetv2")
    assert weights_file_for(v2, 96).endswith("_1.0_96_no_top.h5")
    xception = get_backbone("xception")
    assert weights_file_for(xception, 150) == "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert weights_file_for(get_backbone("tiny"), 64) is None


# --- building ---------------------------------------------------------------------------------


def test_image_size_below_minimum_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        build_backbone(get_backbone("xception"), 70, None)
    message = str(info.value)
    assert "at least 71" in message and "image_size=70" in message and "xception" in message


def test_image_size_must_be_an_integer():
    with pytest.raises(ConfigError, match="image_size=64.5"):
        build_backbone(get_backbone("tiny"), 64.5, None)
    assert build_backbone(get_backbone("tiny"), np.int64(16), None).input_shape == (None, 16, 16, 3)


def test_missing_weights_file_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ConfigError, match="does not exist"):
        build_backbone(get_backbone("tiny"), 32, str(missing))
    with pytest.raises(ConfigError, match="does not exist"):
        weights_origin(str(missing))


def test_offline_imagenet_download_names_file_cache_and_alternatives(monkeypatch, tmp_path):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    # A fresh cache folder, so a cached file can never satisfy the request.
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(WeightsError) as info:
        build_backbone(get_backbone("vgg16"), 32, "imagenet")
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert os.path.join(str(tmp_path), "models") in message
    assert "--weights PATH" in message and "--weights none" in message
    assert "URL fetch failure" in message
    assert "\n" not in message


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        build_backbone(get_backbone("tiny"), 32, "imagenet")


def test_tiny_builds_named_backbone_and_trains_a_step():
    model = build_backbone(get_backbone("tiny"), 32, None)
    assert model.name == "backbone"
    assert model.output.shape == (None, 64)
    names = [layer.name for layer in model.layers]
    assert {"block1_add", "block2_add", "block3_add", "avg_pool"} <= set(names)

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(model(inputs))
    classifier = keras.Model(inputs, outputs)
    classifier.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 2, size=(8,))
    before = [w.copy() for w in model.get_weights()]
    history = classifier.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_tiny_loads_a_weights_file_and_weights_origin_hashes_it(tmp_path):
    model = build_backbone(get_backbone("tiny"), 32, None)
    path = str(tmp_path / "tiny.weights.h5")
    model.save_weights(path)
    again = build_backbone(get_backbone("tiny"), 32, path)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    origin = weights_origin(path)
    assert origin.startswith("file:") and len(origin) == len("file:") + 12
    assert weights_origin(None) == "none" and weights_origin("none") == "none"
    assert weights_origin("imagenet") == "imagenet"


def test_a_weights_file_that_does_not_fit_is_a_weights_error(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    with pytest.raises(WeightsError, match="Could not load the weights file") as info:
        build_backbone(get_backbone("tiny"), 32, path)
    assert "\n" not in str(info.value) and "--weights none" in str(info.value)


# --- preprocessing ----------------------------------------------------------------------------

RAW = np.random.default_rng(1).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")


def _apply(kind: str, x: np.ndarray) -> np.ndarray:
    for layer in preprocessing_layers(kind):
        x = layer(x)
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "kind, reference",
    [
        ("tf", keras.applications.xception.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("caffe", keras.applications.vgg16.preprocess_input),
        ("caffe", keras.applications.resnet50.preprocess_input),
    ],
)
def test_preprocessing_matches_keras_preprocess_input(kind, reference):
    expected = reference(RAW.copy())  # preprocess_input works in place on numpy arrays
    got = _apply(kind, RAW)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_caffe_preprocessing_is_exact():
    expected = keras.applications.vgg16.preprocess_input(RAW.copy())
    np.testing.assert_array_equal(_apply("caffe", RAW), expected)


def test_preprocessing_layers_are_frozen_and_named():
    assert preprocessing_layers("none") == []
    for kind in ("tf", "torch", "caffe"):
        for layer in preprocessing_layers(kind):
            assert not layer.trainable
            assert layer.name.startswith("preprocess_")


def test_every_backbone_preprocessing_has_layers_or_is_none():
    for name in list_backbones():
        kind = get_backbone(name).preprocessing
        assert (preprocessing_layers(kind) == []) == (kind == "none")


def test_unknown_preprocessing_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="kind='bgr'"):
        preprocessing_layers("bgr")


def test_preprocessing_survives_safe_mode_load_in_a_process_without_tuner(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = []
    for kind in ("tf", "torch", "caffe"):
        x = inputs
        for layer in preprocessing_layers(kind):
            x = layer(x)
        outputs.append(x)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "pre.keras")
    model.save(path)
    np.save(tmp_path / "raw.npy", RAW)
    for i, out in enumerate(model.predict(RAW, verbose=0)):
        np.save(tmp_path / f"expected{i}.npy", out)

    script = textwrap.dedent(
        f"""
        import sys
        import keras, numpy as np
        model = keras.saving.load_model({path!r}, safe_mode=True)
        assert "tuner" not in sys.modules, "tuner was imported"
        outs = model.predict(np.load({str(tmp_path / "raw.npy")!r}), verbose=0)
        for i, out in enumerate(outs):
            expected = np.load({str(tmp_path)!r} + f"/expected{{i}}.npy")
            np.testing.assert_array_equal(out, expected)
        print("OK")
        """
    )
    env = python_env(PYTHONPATH=None, TF_CPP_MIN_LOG_LEVEL="3")
    result = run_python("-c", script, cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout
