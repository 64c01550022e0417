"""One trial as an export: its model, calibrated, the metadata and model card that describe it,
written in the formats asked for (`tuner.serve.formats`), and scored on the test set.

The search exports its best trial here, and so does `python -m tuner.export`, with any trial,
format and quantization, or a refit model. In order:

1. the temperature is fitted on the trial's own validation predictions (its checkpoint's, also
   for a refit model, which trained on those images) and folded into the model
   (`tuner.serve.calibration`);
2. every format is written; with a test folder, the written model.keras is loaded back and
   scored on it file by file (`tuner.serve.evaluate`), and the figures join metadata.json (`test`)
   and the model card before anything is moved into place;
3. PROJECT_DIR/test.json gets the same test block, so the leaderboard shows it; an export
   without a test set into the folder test.json describes removes it, since it no longer
   describes that folder's model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import tensorflow as tf

from tuner.errors import TunerError
from tuner.hp import searched
from tuner.project.layout import TEST_FILE, TrialSummary, atomic_write_text, trial_dir
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
    test_data: str | os.PathLike | None = None,
    calibrate: str | None = None,
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
        test_data: a test folder (`--test-data`) to score the written model on; None: none.
        calibrate: `tuner.serve.calibration.METHODS`; None: the search's `--calibrate`.
    """
    from tuner.serve.calibration import fit, predict_logits
    from tuner.serve.card import model_card
    from tuner.serve.formats import CALIBRATION_IMAGES, write_formats

    config, data = tuner.context.config, tuner.context.data
    directory = Path(directory)
    test_set = None
    if test_data is not None:  # a wrong folder stops the export before any model is built
        from tuner.serve.evaluate import load_test_set

        test_set, test_skipped = load_test_set(
            Path(test_data), data.class_names, (data.train, data.val)
        )
    searched_model = tuner.load_model(trial)
    model = model if model is not None else searched_model
    name = tuner.hypermodel.values(trial.hyperparameters).backbone
    size = tuner.context.features.image_sizes[name]
    metadata = _metadata(tuner, trial, name, size, refit)
    # Fitted on the searched trial's validation images, also for a refit model: those images
    # are the only ones it was not trained on (the refit's own model trained on them).
    logits = predict_logits(searched_model, data.pixels("val", size), config.batch_size)
    calibration = fit(logits, data.labels("val"), data.n_classes, calibrate or config.calibrate)
    calibration.update({"trial_id": trial.trial_id, "refit": refit is not None})
    metadata["calibration"] = calibration
    del searched_model, logits
    int8 = None
    if quantize == "int8":
        pixels = data.pixels("train", size)
        int8 = (pixels[i] for i in range(min(CALIBRATION_IMAGES, len(pixels))))
    try:
        rows = read_ranking(config.project_dir).rows
    except TunerError:
        rows = ()

    score = None
    blocks: list[dict[str, Any]] = []  # the test block, once scored
    if test_set is not None:
        from tuner.serve.evaluate import make_block, score_files

        def score(written: keras.Model) -> dict[str, Any]:
            scores, unreadable = score_files(written, test_set)
            block = make_block(
                scores,
                trial_id=trial.trial_id,
                export=directory,
                refit=refit is not None,
                folder=Path(test_data),
                class_names=data.class_names,
                skipped=len(test_skipped) + len(unreadable),
                temperature=calibration["temperature"],
            )
            blocks.append(block)
            return block

    paths = write_formats(
        model,
        directory,
        image_size=size,
        metadata=metadata,
        formats=formats,
        quantize=quantize,
        calibration=int8,
        card=lambda final: model_card(final, rows),
        temperature=calibration["temperature"],
        score=score,
    )
    _record_test(config.project_dir, directory, blocks[0] if blocks else None)
    return paths


def _record_test(project_dir: Path, directory: Path, block: dict[str, Any] | None) -> None:
    """PROJECT_DIR/test.json: the test block of the export just written, or, when it was not
    scored, no stale block that names its folder."""
    path = Path(project_dir) / TEST_FILE
    if block is not None:
        atomic_write_text(path, json.dumps(block, indent=2))
        return
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(previous, dict) or _same_folder(previous.get("export"), directory):
        path.unlink(missing_ok=True)


def _same_folder(recorded: Any, directory: Path) -> bool:
    try:
        return Path(str(recorded)).resolve() == directory.resolve()
    except (OSError, RuntimeError):
        return False


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
            # The objective at the trial's best epoch; the oracle's score (trial.score) folds the
            # tiebreak in (`tuner.engine.oracles`), and older projects hold only that.
            "value": (summary.best or {}).get(config.objective, trial.score),
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
        "validation_per_class": summary.per_class,
        "validation_interval": summary.interval,
        "class_weight": config.class_weight,
        "class_weights": (
            dict(zip(data.class_names, map(float, weights), strict=True))
            if (weights := tuner.context.class_weights()) is not None
            else None
        ),
        "select": config.select,
        "refit": refit,
        "trial_id": trial.trial_id,
        "augment": config.augment,
        "augmentations": list(config.augmentations) if config.augment else [],
        "cache": config.cache,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
