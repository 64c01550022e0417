"""Temperature scaling: fitted on validation logits without raising their ECE, folded into the
output layer so the model gives the tempered probabilities and the same argmax. The exported
formats are checked on a real search in tests/serve/test_formats.py."""

from __future__ import annotations

import numpy as np
import pytest

from tuner import metrics
from tuner.serve import calibration
from tuner.serve.calibration import fit, fold_temperature, output_layer, predict_logits


def _overconfident(seed: int = 0, n: int = 200, k: int = 3):
    """Logits of a model right about 70 % of the time and far surer than that."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    right = rng.random(n) < 0.7
    logits[np.arange(n), np.where(right, labels, (labels + 1) % k)] += 3.0
    return logits * 4.0, labels


def test_an_overconfident_model_is_softened_and_its_accuracy_kept():
    logits, labels = _overconfident()
    record = fit(logits, labels, 3)
    before, after = record["validation"]["before"], record["validation"]["after"]
    assert record["method"] == "temperature" and record["note"] is None
    assert record["temperature"] == record["fitted"] > 2.0
    assert record["temperature"] == pytest.approx(metrics.fit_temperature(logits, labels))
    assert after["loss"] < before["loss"] and after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]
    assert after["balanced_accuracy"] == before["balanced_accuracy"]
    assert record["images"] == 200


def test_the_temperature_steps_back_toward_1_rather_than_raise_the_ece():
    # Found by search over seeds: on these 8 images the log-loss optimum raises the ECE.
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(0, 2, (8, 3)), rng.integers(0, 3, 8)
    record = fit(logits, labels, 3)
    before, after = record["validation"]["before"], record["validation"]["after"]
    optimum = metrics.tempered(logits, record["fitted"])
    assert metrics.expected_calibration_error(optimum, labels) > before["ece"]
    assert 1.0 < record["temperature"] < record["fitted"]
    assert after["ece"] <= before["ece"] and after["loss"] < before["loss"]
    # And when no step back helps, T = 1 stays, with the reason.
    rng = np.random.default_rng(47)
    logits, labels = rng.normal(0, 2, (8, 3)), rng.integers(0, 3, 8)
    record = fit(logits, labels, 3)
    assert record["temperature"] == 1.0 and "would raise the validation ECE" in record["note"]
    assert "after" not in record["validation"]


def _underconfident(n: int, wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images of 3 classes, every right one at a margin of 1.5 (p = 0.69) and `wrong` of
    them wrong by a margin of 0.2: the log-loss optimum sharpens (T < 1)."""
    labels = np.arange(n) % 3
    logits = np.zeros((n, 3))
    logits[np.arange(n), labels] = 1.5
    logits[:wrong] = 0.0
    logits[np.arange(wrong), (labels[:wrong] + 1) % 3] = 0.2
    return logits, labels


def test_sharpening_needs_enough_wrong_images():
    # One wrong image among 62 (as in a quality run, where T = 0.20 doubled the test ECE): the
    # optimum sharpens, and T = 1 is kept with the reason.
    logits, labels = _underconfident(62, 1)
    record = fit(logits, labels, 3)
    assert record["fitted"] < 0.5 and record["temperature"] == 1.0
    assert "on the strength of 1 wrong validation image " in record["note"]
    assert "after" not in record["validation"]
    # With MIN_ERRORS_TO_SHARPEN wrong images the evidence is enough.
    logits, labels = _underconfident(62, calibration.MIN_ERRORS_TO_SHARPEN)
    record = fit(logits, labels, 3)
    assert record["note"] is None and record["temperature"] < 1.0


def test_no_temperature_when_validation_is_all_right_or_calibration_is_off():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [4.0, 1.0]])
    record = fit(logits, [0, 1, 0], 2)
    assert (
        record["temperature"] == 1.0
        and "every validation image is predicted right" in (record["note"])
    )
    logits, labels = _overconfident()
    record = fit(logits, labels, 3, method="none")
    assert record["method"] == "none" and record["temperature"] == 1.0
    assert record["note"] is None and "after" not in record["validation"]
    assert record["validation"]["before"]["ece"] == pytest.approx(
        metrics.expected_calibration_error(metrics.tempered(logits, 1.0), labels)
    )


@pytest.mark.parametrize("outputs", [1, 3])
def test_folding_divides_the_output_layer_and_gives_the_tempered_probabilities(outputs):
    import keras

    activation = "sigmoid" if outputs == 1 else "softmax"
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(outputs, activation=activation, name="out")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.3, w.shape) for w in model.get_weights()])
    pixels = rng.integers(0, 255, (6, 4, 4, 3)).astype("uint8")
    as_trained = np.asarray(model(pixels.astype("float32")))
    logits = predict_logits(model, pixels, batch_size=4)
    # The activation is back: the model still gives probabilities.
    np.testing.assert_allclose(np.asarray(model(pixels.astype("float32"))), as_trained)
    np.testing.assert_allclose(metrics.tempered(logits, 1.0), as_trained, rtol=1e-5, atol=1e-6)
    kernel, bias = (np.array(w) for w in output_layer(model).get_weights())
    fold_temperature(model, 2.5)
    np.testing.assert_allclose(output_layer(model).get_weights()[0], kernel / 2.5, rtol=1e-6)
    np.testing.assert_allclose(output_layer(model).get_weights()[1], bias / 2.5, rtol=1e-6)
    tempered = np.asarray(model(pixels.astype("float32")))
    np.testing.assert_allclose(tempered, metrics.tempered(logits, 2.5), rtol=1e-5, atol=1e-6)
    assert np.array_equal(
        metrics.predicted_classes(tempered), metrics.predicted_classes(as_trained)
    )
