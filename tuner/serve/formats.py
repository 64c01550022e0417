"""The files of an export folder: a model that takes raw pixels in three formats, its labels,
metadata and model card. Exporting a trial is `tuner.serve.bundle.export_trial`, which gathers what
they say and calls `write_formats`.

`write_formats` writes, into one folder:

- `model.keras` (format `keras`): raw RGB images (0-255, any height and width; resized inside
  exactly as training resized them) in, class probabilities out. Builtin Keras layers only, so it
  loads with `keras.saving.load_model(path, safe_mode=True)` in a process that never imports tuner.
- `saved_model/` (format `savedmodel`), for TensorFlow Serving and `tf.saved_model.load`, with two
  signatures:
  - `serving_default`: `images`, a uint8 batch (N, size, size, 3) of RGB pixels at the model's
    size;
  - `serving_bytes`: `images`, a string batch (N,) of encoded JPEG, PNG, GIF or BMP files, decoded
    and resized inside the graph exactly as the search decoded its training images
    (`tuner.data.decode`: `tf.io.decode_image` to RGB, bilinear resize, rounded to uint8).
  Both return `probabilities` (N, classes), `class_index` (N,) and `class_name` (N,).
- `model.tflite` (format `tflite`), for `tf.lite.Interpreter` and phones: a uint8 (N, size, size,
  3) input and float32 probabilities (N, classes) out, quantized as `--quantize` says: `none`
  (float32), `dynamic` (int8 weights), `float16` (float16 weights) or `int8` (weights and
  activations, calibrated on training images).
- `labels.txt` (one class name per line, in the output's order), `metadata.json` and `README.md`
  (the model card) beside every export.

Every file is written into a staging folder beside the target and moved in only when all are
complete, so an interrupted export never leaves a model that a later reader trusts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tuner.errors import ConfigError, TunerError

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"
CARD_FILE = "README.md"
FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZE = ("none", "dynamic", "float16", "int8")
FORMAT_FILES = {"keras": MODEL_FILE, "savedmodel": SAVED_MODEL_DIR, "tflite": TFLITE_FILE}
# Training images the int8 calibration runs over (TFLite's guidance is a few hundred at most).
CALIBRATION_IMAGES = 200


def parse_formats(text: str) -> tuple[str, ...]:
    """`keras,savedmodel,tflite` (any subset, any order) as a tuple in FORMATS order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if not names or unknown:
        raise ConfigError(
            f"--format takes a comma-separated list of {', '.join(FORMATS)}. Received: {text!r}"
        )
    return tuple(f for f in FORMATS if f in names)


def parse_quantize(text: str) -> str:
    """One of QUANTIZE, case and spaces ignored."""
    quantize = text.strip().lower()
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}. Received: {text!r}")
    return quantize


def _serving_model(model: keras.Model, image_size: int, temperature: float = 1.0) -> keras.Model:
    """Wrap the classifier so it takes images of any size: resize inside, bilinear, as the data
    loader did when it decoded the training images; `temperature` is folded into its output
    layer (`tuner.serve.calibration`)."""
    from tuner.serve.calibration import fold_temperature

    # A clone is uncompiled: the artifact carries no optimizer state, only what serving needs.
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    fold_temperature(clone, temperature)
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(
        inputs
    )
    # training=False is recorded on this call: the Resizing layer's call defaults to
    # training=True and Keras 3 hands that on through the call context, so a direct call
    # `model(x)` would otherwise run the head's dropout (keras/src/layers/layer.py, __call__).
    return keras.Model(inputs, clone(x, training=False), name="tuner_classifier")


def _decode_and_resize(encoded: Any, image_size: int) -> Any:
    """One encoded image (a scalar string tensor) to uint8 (size, size, 3), in the graph: what
    `tuner.data.decode` does to a training image (decode to RGB, first frame of a GIF, bilinear
    resize without antialiasing, rounded and clipped to uint8)."""
    import tensorflow as tf

    pixels = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    pixels.set_shape([None, None, 3])
    resized = tf.image.resize(
        tf.cast(pixels, tf.float32), (image_size, image_size), method="bilinear", antialias=False
    )
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _probabilities(serve: keras.Model, pixels: Any, n_classes: int) -> Any:
    """(N, classes) probabilities for uint8 pixels at the model's size (two columns for two
    classes, whose model has one sigmoid unit)."""
    import tensorflow as tf

    out = serve(tf.cast(pixels, tf.float32), training=False)
    if n_classes == 2:
        out = tf.concat([1.0 - out, out], axis=-1)
    return out


def _write_saved_model(
    serve: keras.Model, path: Path, image_size: int, class_names: Sequence[str]
) -> None:
    """The SavedModel with the `serving_default` (uint8 pixels) and `serving_bytes` signatures."""
    import tensorflow as tf

    n_classes = len(class_names)
    labels = tf.constant(list(class_names))

    def outputs(pixels: Any) -> dict[str, Any]:
        probabilities = _probabilities(serve, pixels, n_classes)
        index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "class_index": index,
            "class_name": tf.gather(labels, index),
        }

    def from_bytes(encoded: Any) -> dict[str, Any]:
        pixels = tf.map_fn(
            lambda one: _decode_and_resize(one, image_size),
            encoded,
            fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.uint8),
        )
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(serve)
    archive.add_endpoint(
        "serving_default",
        outputs,
        input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, "images")],
    )
    archive.add_endpoint(
        "serving_bytes", from_bytes, input_signature=[tf.TensorSpec((None,), tf.string, "images")]
    )
    archive.write_out(str(path), verbose=False)


def _write_tflite(
    serve: keras.Model,
    path: Path,
    image_size: int,
    n_classes: int,
    quantize: str,
    calibration: Iterable[np.ndarray] | None,
) -> None:
    """The TFLite model: uint8 pixels in, float32 probabilities out, quantized as asked."""
    import tensorflow as tf

    # Converted from a SavedModel, whose variables the converter freezes: from a concrete function
    # of the Keras model, int8 calibration fails on a variable read (READ_VARIABLE).
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        archive = keras.export.ExportArchive()
        archive.track(serve)
        archive.add_endpoint(
            "serving_default",
            lambda pixels: {"probabilities": _probabilities(serve, pixels, n_classes)},
            input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, "images")],
        )
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        _configure(converter, quantize, calibration)
        try:
            flat = converter.convert()
        except Exception as error:  # noqa: BLE001 - the converter raises many kinds
            lines = str(error).strip().splitlines() or [type(error).__name__]
            raise TunerError(
                f"TFLite could not convert this model ({lines[0][:160]}); export the other "
                "formats with --format keras,savedmodel, or try another --quantize."
            ) from error
        path.write_bytes(flat)


def _configure(converter: Any, quantize: str, calibration: Iterable[np.ndarray] | None) -> None:
    """Sets `converter`'s quantization."""
    import tensorflow as tf

    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None:
            raise ConfigError("--quantize int8 needs training images to calibrate on.")
        images = list(calibration)

        def representative() -> Iterable[list[np.ndarray]]:
            for image in images:
                yield [np.asarray(image, dtype=np.uint8)[None]]

        converter.representative_dataset = representative
        # Integer kernels wherever TFLite has one; an op without one stays float.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]


def _labels_text(class_names: Sequence[str]) -> str:
    """labels.txt: one class name per line, line i naming output i."""
    return "".join(f"{name}\n" for name in class_names)


def write_formats(
    model: keras.Model,
    directory: str | os.PathLike,
    *,
    image_size: int,
    metadata: dict[str, Any],
    formats: Sequence[str] = ("keras",),
    quantize: str = "none",
    calibration: Iterable[np.ndarray] | None = None,
    card: str | Callable[[dict[str, Any]], str] | None = None,
    temperature: float = 1.0,
    score: Callable[[keras.Model], dict[str, Any] | None] | None = None,
) -> dict[str, Path]:
    """Write the formats asked for, `labels.txt`, `metadata.json` and the model card into
    `directory`, atomically.

    Args:
        model: the trained classifier, taking float pixels (0-255) at `image_size`.
        directory: the export folder (created; files already there that this export writes are
            replaced, others are kept).
        image_size: the model's input side.
        metadata: what `metadata.json` records; `class_names` is required. The formats written
            and the quantization are added.
        formats: any of FORMATS.
        quantize: one of QUANTIZE; applies to the TFLite model.
        calibration: uint8 (size, size, 3) training images, for `quantize="int8"`.
        card: the model card's Markdown, or a function of the final metadata that writes it;
            None writes none.
        temperature: divides the output layer's logits (`tuner.serve.calibration`); 1 leaves
            the model as trained.
        score: called with the written model.keras, loaded back in safe mode (or, when keras is
            not among `formats`, the same serving model in memory), once every model is written
            and before any file is moved into `directory`; what it returns is metadata.json's
            `test`.

    Returns:
        Each format's path, by format name.

    Raises:
        ConfigError: an unknown format or quantization.
        TunerError: the folder cannot be written (full disk, read-only, ...).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"Unknown export format {unknown}; choose from {', '.join(FORMATS)}.")
    quantize = parse_quantize(quantize)
    class_names = list(metadata["class_names"])
    directory = Path(directory)
    serve = _serving_model(model, image_size, temperature)
    metadata = {
        **metadata,
        "formats": {f: FORMAT_FILES[f] for f in formats},
        "quantize": quantize if "tflite" in formats else "none",
    }
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            _write_models(serve, staging, formats, class_names, image_size, quantize, calibration)
            if score is not None:
                written = (
                    keras.saving.load_model(staging / MODEL_FILE, safe_mode=True)
                    if "keras" in formats
                    else serve
                )
                test = score(written)
                if test is not None:
                    metadata["test"] = test
            text = card(metadata) if callable(card) else card
            files = {CARD_FILE: text} if text is not None else {}
            files[METADATA_FILE] = json.dumps(metadata, indent=2, default=str)
            files[LABELS_FILE] = _labels_text(class_names)
            for name, text in files.items():
                (staging / name).write_text(text)
            directory.mkdir(parents=True, exist_ok=True)
            # A format this export does not write, left by an earlier one, is another model:
            # removed, so the folder holds one model, the one metadata.json describes.
            for name in FORMAT_FILES.values():
                _remove(directory / name)
            for name in [FORMAT_FILES[f] for f in formats] + list(files):
                _remove(directory / name)
                os.replace(staging / name, directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise TunerError(
            f"Could not write the export to {directory}: {error.strerror or error}. Free disk "
            "space or pass another folder on a writable disk; the search's trials are kept, so "
            "exporting again needs no training."
        ) from error
    return {f: directory / FORMAT_FILES[f] for f in formats}


def _write_models(
    serve: keras.Model,
    folder: Path,
    formats: Sequence[str],
    class_names: Sequence[str],
    image_size: int,
    quantize: str,
    calibration: Iterable[np.ndarray] | None,
) -> None:
    """Writes the serving model into `folder` in each of `formats`, under `FORMAT_FILES` names."""
    if "keras" in formats:
        serve.save(folder / MODEL_FILE)
    if "savedmodel" in formats:
        _write_saved_model(serve, folder / SAVED_MODEL_DIR, image_size, class_names)
    if "tflite" in formats:
        _write_tflite(
            serve, folder / TFLITE_FILE, image_size, len(class_names), quantize, calibration
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
