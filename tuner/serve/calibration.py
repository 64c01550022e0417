"""Temperature scaling of the exported model: one parameter T, fitted on the validation images,
folded into the output layer.

A classifier's softmax (or sigmoid) tends to be surer than its accuracy warrants. Dividing its
logits by one temperature T > 1 softens every prediction alike (T < 1 sharpens), and keeps every
argmax, so accuracy cannot change. T is the value that minimizes the cross-entropy of the
validation images (`tuner.metrics.fit_temperature`), fitted on the logits of the trial that is
exported, computed exactly (the output layer's pre-activation) rather than recovered from
clipped probabilities.

T is folded into the output Dense layer: `softmax((Wx + b) / T) = softmax((W/T)x + b/T)`, and
likewise for a sigmoid, so the exported model has the same builtin layers as an uncalibrated one
(it still loads in safe mode), and the SavedModel and TFLite models, written from it, follow.

Calibration must not make the reported calibration worse. On a small validation set the
log-loss and the binned calibration error (ECE) can disagree, so when the log-loss optimum would
raise the validation ECE, T steps back from it toward 1 and stops at the first value that does
not (every T on that path still lowers the log-loss). T = 1 is kept, with its reason in the
record, when no such value exists, and when every validation image is predicted right: the
cross-entropy then falls all the way to T -> 0, so the images say nothing about how sure the
model should be.

A few wrong images are little better. With 1 error in 62 images the log-loss optimum sharpens by
5x (T = 0.20 on a quality run), because 61 right answers outweigh one wrong one near the
boundary, and on the test set that model was surer than before and worse calibrated (ECE 0.054 ->
0.092, with the test's own best T at 1.64: it needed softening). So T < 1, the direction that an
all-but-perfect validation set always points to, needs at least MIN_ERRORS_TO_SHARPEN wrong
images; with fewer, T = 1 is kept. Softening (T > 1) comes from confident errors, which are
evidence of over-confidence however few they are, and is fitted as before.

Light to import: Keras is used through the model it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuner import metrics

# The output Dense layer's name inside the head (`tuner.models.network.build_head`).
OUTPUT_NAME = "head_output"
METHODS = ("temperature", "none")
# Validation figures reported before and after: those a temperature can move, and accuracy,
# which it must not.
FIGURES = ("accuracy", "balanced_accuracy", "ece", "loss")
# Temperatures tried from the log-loss optimum back toward 1, when the optimum raises the ECE.
STEPS = 20
# A temperature below 1 (sharpening) is fitted only from at least this many wrong validation
# images; see the module docstring.
MIN_ERRORS_TO_SHARPEN = 5


def output_layer(model: Any) -> Any:
    """The classifier's output Dense layer (`head_output` in the head), or the last Dense layer
    with a softmax or sigmoid activation found anywhere in the model."""
    from tuner.models.network import HEAD_NAME

    try:
        return model.get_layer(HEAD_NAME).get_layer(OUTPUT_NAME)
    except (ValueError, AttributeError):
        pass
    found = None
    for layer in model._flatten_layers(include_self=False, recursive=True):
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if hasattr(layer, "kernel") and activation in ("softmax", "sigmoid"):
            found = layer
    if found is None:
        raise ValueError("The model has no Dense output layer with a softmax or sigmoid.")
    return found


def fold_temperature(model: Any, temperature: float) -> None:
    """Divides the output layer's kernel and bias by `temperature`, in place."""
    if temperature == 1.0:
        return
    layer = output_layer(model)
    for weight in (layer.kernel, layer.bias):
        if weight is not None:
            weight.assign(np.asarray(weight.numpy(), "float64") / temperature)


def predict_logits(model: Any, pixels: Any, batch_size: int = 32) -> np.ndarray:
    """The output layer's pre-activation (N, outputs) on uint8 `pixels`, in batches.

    The activation is switched off for the calls and put back after; the calls are eager, so no
    traced function keeps the switched layer.
    """
    layer = output_layer(model)
    import keras

    activation = layer.activation
    rows = []
    layer.activation = keras.activations.linear
    try:
        for start in range(0, len(pixels), batch_size):
            batch = np.asarray(pixels[start : start + batch_size], dtype="float32")
            rows.append(np.asarray(model(batch, training=False), dtype="float64"))
    finally:
        layer.activation = activation
    width = layer.units
    return np.concatenate(rows) if rows else np.zeros((0, width), "float64")


def _figures(probabilities: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, Any]:
    scores = metrics.scores(probabilities, labels, n_classes)
    return {name: scores[name] for name in FIGURES}


def fit(
    logits: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    n_classes: int,
    method: str = "temperature",
) -> dict[str, Any]:
    """Fits the temperature of `method` on validation logits; returns the record metadata.json
    keeps (`calibration`): the method, T, the validation figures before and after, and why T was
    kept at 1 when it was.

    Args:
        logits: the exported trial's validation logits (`predict_logits`).
        labels: the validation labels.
        n_classes: the number of classes.
        method: one of METHODS; "none" fits nothing (T = 1) and reports the figures as they are.
    """
    labels = np.asarray(labels, dtype=int).reshape(-1)
    before = _figures(metrics.tempered(logits, 1.0), labels, n_classes)
    record: dict[str, Any] = {
        "method": method,
        "temperature": 1.0,
        "images": int(len(labels)),
        "validation": {"before": before},
        "note": None,
    }
    if method == "none" or not len(labels):
        return record
    predicted = metrics.predicted_classes(metrics.tempered(logits, 1.0))
    errors = int(np.sum(predicted != labels))
    if not errors:
        record["note"] = (
            "every validation image is predicted right, so the validation loss keeps falling as "
            "T -> 0: no temperature can be fitted; T = 1 kept"
        )
        return record
    fitted = metrics.fit_temperature(logits, labels)
    if fitted < 1.0 and errors < MIN_ERRORS_TO_SHARPEN:
        record["fitted"] = float(fitted)
        record["note"] = (
            f"the log-loss optimum T = {fitted:.3g} would make the model surer on the strength of "
            f"{errors} wrong validation image{'s' if errors > 1 else ''} (sharpening needs at "
            f"least {MIN_ERRORS_TO_SHARPEN}); T = 1 kept"
        )
        return record
    # From the log-loss optimum back toward T = 1 (log T shrunk in even steps): the log-loss
    # falls all along that path (it is unimodal in log T), so the first T whose ECE is no
    # higher than the model's own lowers the one and does not raise the other.
    for step in range(STEPS):
        temperature = math.exp(math.log(fitted) * (1.0 - step / STEPS))
        after = _figures(metrics.tempered(logits, temperature), labels, n_classes)
        if after["ece"] <= before["ece"]:
            break
    else:
        record["note"] = (
            f"every T between the log-loss optimum {fitted:.3g} and 1 would raise the validation "
            f"ECE ({before['ece']:.3g}); T = 1 kept"
        )
        return record
    record["temperature"] = float(temperature)
    record["fitted"] = float(fitted)
    record["validation"]["after"] = after
    return record
