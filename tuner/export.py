"""The exported artifact: a self-contained model that takes raw pixels, and its metadata.

`PROJECT_DIR/export/model.keras` takes raw RGB images (0-255, any height and width; resized inside
exactly as training resized them) and returns class probabilities; the backbone's preprocessing is
inside. It uses builtin Keras layers only, so it loads with
`keras.saving.load_model(path, safe_mode=True)` in a process that never imports tuner.
`metadata.json` beside it carries the class names and everything needed to use and trust it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

from tuner.errors import TunerError

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"


def serving_model(model: keras.Model, image_size: int) -> keras.Model:
    """Wrap the classifier so it takes images of any size: resize inside, bilinear, as the data
    loader did when it decoded the training images."""
    # A clone is uncompiled: the artifact carries no optimizer state, only what serving needs.
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(
        inputs
    )
    # training=False is recorded on this call: the Resizing layer's call defaults to
    # training=True and Keras 3 hands that on through the call context, so a direct call
    # `model(x)` would otherwise run the head's dropout (keras/src/layers/layer.py, __call__).
    return keras.Model(inputs, clone(x, training=False), name="tuner_classifier")


def export_model(
    model: keras.Model,
    directory: str | os.PathLike,
    *,
    image_size: int,
    metadata: dict[str, Any],
) -> Path:
    """Write `model.keras` and `metadata.json` into `directory`, atomically.

    Both files are written into a temporary folder beside `directory` and moved into place only
    when complete, so an interrupted export never leaves a model that a later reader trusts.

    Returns:
        The path of `model.keras`.

    Raises:
        TunerError: the folder cannot be written (full disk, read-only, ...).
    """
    directory = Path(directory)
    serve = serving_model(model, image_size)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            serve.save(staging / MODEL_FILE)
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))
            directory.mkdir(parents=True, exist_ok=True)
            for name in (MODEL_FILE, METADATA_FILE):
                os.replace(staging / name, directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise TunerError(
            f"Could not write the export to {directory}: {error.strerror or error}. Free disk "
            "space or pass --export DIR on a writable disk; rerunning the same command resumes "
            "the finished search and exports again."
        ) from error
    return directory / MODEL_FILE
