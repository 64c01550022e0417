"""One trial as an export: its model, the metadata and model card that describe it, written in
the formats asked for (`tuner.serve.formats`).

The search exports its best trial here, and so does `python -m tuner.export`, with any trial,
format and quantization, or a refit model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from tuner.errors import TunerError
from tuner.hp import searched
from tuner.project.layout import TrialSummary, trial_dir
from tuner.project.trials import read_ranking


def export_trial(
    tuner: Any,
    trial: kt.engine.trial.Trial,
    directory: str | os.PathLike,
    *,
    formats: tuple[str, ...] = ("keras",),
    quantize: str = "none",
    model: keras.Model | None = None,
    refit: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Exports one trial's model to `directory` with its labels, metadata and model card; returns
    each format's path.

    Args:
        tuner: the search (`tuner.engine.transfer.TransferTuner`).
        trial: the trial to export.
        directory: the export folder.
        formats: any of `tuner.serve.formats.FORMATS`.
        quantize: the TFLite model's quantization (`tuner.serve.formats.QUANTIZE`); int8 calibrates on
            the first training images.
        model: the model to export instead of the trial's checkpoint (`--refit`).
        refit: what the refit did, recorded in the metadata; None: no refit.
    """
    from tuner.serve.card import model_card
    from tuner.serve.formats import CALIBRATION_IMAGES, FORMAT_FILES, write_formats

    model = model if model is not None else tuner.load_model(trial)
    name = tuner.hypermodel.values(trial.hyperparameters).backbone
    size = tuner.context.features.image_sizes[name]
    metadata = _metadata(tuner, trial, name, size, refit)
    calibration = None
    if quantize == "int8":
        pixels = tuner.context.data.pixels("train", size)
        calibration = (pixels[i] for i in range(min(CALIBRATION_IMAGES, len(pixels))))
    try:
        rows = read_ranking(tuner.context.config.project_dir).rows
    except TunerError:
        rows = ()
    card_metadata = {
        **metadata,
        "formats": {f: FORMAT_FILES[f] for f in formats},
        "quantize": quantize if "tflite" in formats else "none",
    }
    return write_formats(
        model,
        directory,
        image_size=size,
        metadata=metadata,
        formats=formats,
        quantize=quantize,
        calibration=calibration,
        card=model_card(card_metadata, rows),
    )


def _metadata(
    tuner: Any, trial: kt.engine.trial.Trial, name: str, size: int, refit: dict[str, Any] | None
) -> dict[str, Any]:
    """What metadata.json says of the trial's model: its input and output, backbone and weights,
    hyperparameters, scores, data and versions."""
    config = tuner.context.config
    data = tuner.context.data
    summary, _ = TrialSummary.read(trial_dir(config.project_dir, trial.trial_id))
    summary = summary or TrialSummary(trial.trial_id)
    return {
        "format": 1,
        "class_names": list(data.class_names),
        "input": {
            "image_size": size,
            "channels": "RGB",
            "range": [0, 255],
            "note": "model.keras: raw pixels of any size, resized (bilinear) and preprocessed "
            "inside; saved_model and model.tflite: see README.md",
        },
        "output": "sigmoid probability of class_names[1]"
        if data.n_classes == 2
        else "softmax probabilities over class_names",
        "backbone": name,
        "weights": tuner.context.features.weights(name).origin,
        "hyperparameters": searched(trial.hyperparameters.values),
        "objective": {
            "name": config.objective,
            "direction": config.direction,
            "value": trial.score,
        },
        "validation": summary.best or {},
        "phases": {
            "head": summary.phase1.as_dict() if summary.phase1 else None,
            "finetune": summary.phase2.as_dict() if summary.phase2 else None,
        },
        "data": {
            "folder": str(config.data),
            "counts": {"train": data.train.counts(), "val": data.val.counts()},
        },
        "refit": refit,
        "trial_id": trial.trial_id,
        "augment": config.augment,
        "cache": config.cache,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
