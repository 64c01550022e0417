"""The model card: the README.md an export folder holds, written from its metadata.

It says what the model is (backbone and where its weights came from), what it learned from
(classes and image counts), how it was chosen (hyperparameters, both phases' validation metrics,
the top of the leaderboard) and how to call each format it was exported in, in a few lines of code
that need only TensorFlow, Keras and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TOP_ROWS = 5


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics(phase: Mapping[str, Any] | None) -> str:
    if not phase:
        return "not run"
    best = phase.get("best") or {}
    parts = [f"{k} {_number(v)}" for k, v in sorted(best.items()) if k.startswith("val_")]
    epochs = phase.get("epochs")
    return (", ".join(parts) or "no validation metrics") + (f" ({epochs} epochs)" if epochs else "")


def _leaderboard(rows: Sequence[Any]) -> list[str]:
    ranked = [r for r in rows if r.rank is not None][:TOP_ROWS]
    if not ranked:
        return ["No completed trial was found."]
    names = sorted({name for r in ranked for name in r.hyperparameters})
    header = ["rank", "trial", "score", "head val acc", "fine-tune val acc", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in ranked:
        cells = [
            str(r.rank),
            r.trial_id,
            _number(r.score),
            _number(r.val_accuracy_head),
            "skipped" if r.finetune_skipped else _number(r.val_accuracy_finetune),
            *(_number(r.hyperparameters.get(n)) for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _usage(formats: Mapping[str, str], size: int, quantize: str) -> list[str]:
    lines = ["## Using the model", ""]
    lines += [
        "Every format returns one probability per class, in the order of `labels.txt`.",
        "",
        "From the command line (with tuner installed), on files or folders:",
        "",
        "```",
        "python -m tuner.predict " + next(iter(formats.values())) + " IMAGE_OR_DIR ...",
        "```",
        "",
    ]
    labels = 'labels = open("labels.txt").read().splitlines()'
    if "keras" in formats:
        lines += [
            f"**Keras** (`{formats['keras']}`): RGB pixels 0-255 of any size, resized inside.",
            "",
            "```python",
            "import keras, numpy as np",
            labels,
            f'model = keras.saving.load_model("{formats["keras"]}", safe_mode=True)',
            'image = keras.utils.img_to_array(keras.utils.load_img("photo.jpg"))',
            "probabilities = model.predict(image[None], verbose=0)[0]",
            "# two classes: one sigmoid output, the probability of labels[1]",
            "```",
            "",
        ]
    if "savedmodel" in formats:
        lines += [
            f"**SavedModel** (`{formats['savedmodel']}/`, e.g. for TensorFlow Serving): "
            f"`serving_default` takes uint8 pixels (N, {size}, {size}, 3); `serving_bytes` "
            "takes encoded JPEG/PNG/GIF/BMP files (N,) and decodes and resizes them inside. Both "
            "return `probabilities`, `class_index` and `class_name`.",
            "",
            "```python",
            "import tensorflow as tf",
            f'model = tf.saved_model.load("{formats["savedmodel"]}")',
            'serve = model.signatures["serving_bytes"]',
            'out = serve(images=tf.constant([open("photo.jpg", "rb").read()]))',
            'print(out["class_name"].numpy()[0].decode(), out["probabilities"].numpy()[0])',
            "```",
            "",
        ]
    if "tflite" in formats:
        kind = {
            "none": "float32",
            "dynamic": "dynamic-range quantized (int8 weights)",
            "float16": "float16 weights",
            "int8": "int8 weights and activations, calibrated on training images",
        }[quantize]
        lines += [
            f"**TFLite** (`{formats['tflite']}`, {kind}): uint8 pixels (N, {size}, {size}, 3) "
            "resized beforehand as training did (bilinear, no antialiasing, rounded).",
            "",
            "```python",
            "import numpy as np, tensorflow as tf",
            f'interpreter = tf.lite.Interpreter(model_path="{formats["tflite"]}")',
            "interpreter.allocate_tensors()",
            "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
            'image = tf.io.decode_image(open("photo.jpg", "rb").read(), channels=3)',
            f"image = tf.image.resize(tf.cast(image, tf.float32), ({size}, {size}))",
            'interpreter.set_tensor(inp["index"], np.uint8(np.clip(np.round(image), 0, 255))[None])',
            "interpreter.invoke()",
            'probabilities = interpreter.get_tensor(out["index"])[0]',
            "```",
            "",
        ]
    return lines


def model_card(metadata: Mapping[str, Any], leaderboard_rows: Sequence[Any] = ()) -> str:
    """The Markdown model card for an export described by `metadata` (see
    `tuner.serve.bundle.export_trial`), with the top of the leaderboard."""
    size = metadata["input"]["image_size"]
    data = metadata.get("data") or {}
    counts = data.get("counts") or {}
    refit = metadata.get("refit") or {}
    phases = metadata.get("phases") or {}
    lines = [
        f"# {metadata['backbone']} image classifier ({len(metadata['class_names'])} classes)",
        "",
        f"Exported by tuner from trial {metadata['trial_id']} of a search; "
        f"{metadata['objective']['name']} {_number(metadata['objective']['value'])} "
        "on the validation images.",
        "",
        "## Model",
        "",
        f"- Backbone: `{metadata['backbone']}` at {size} x {size} px, its own input "
        "preprocessing inside the model.",
        f"- Starting weights: {metadata['weights']}.",
        f"- Output: {metadata['output']}.",
        f"- Formats: {', '.join(f'{k} (`{v}`)' for k, v in metadata['formats'].items())}"
        + (
            f"; TFLite quantization: {metadata['quantize']}."
            if "tflite" in metadata["formats"]
            else "."
        ),
        "",
        "## Data",
        "",
        "| class | train images | validation images |",
        "|---|---|---|",
    ]
    for name in metadata["class_names"]:
        train = (counts.get("train") or {}).get(name, "-")
        val = (counts.get("val") or {}).get(name, "-")
        lines.append(f"| {name} | {train} | {val} |")
    if data.get("folder"):
        lines += ["", f"Images from `{data['folder']}`."]
    lines += ["", "## Training", ""]
    lines.append("| hyperparameter | value |")
    lines.append("|---|---|")
    for name, value in sorted((metadata.get("hyperparameters") or {}).items()):
        lines.append(f"| {name} | {_number(value)} |")
    lines += [
        "",
        f"- Phase 1 (new head on the frozen backbone), best epoch: {_metrics(phases.get('head'))}.",
        f"- Phase 2 (top blocks unfrozen), best epoch: {_metrics(phases.get('finetune'))}.",
    ]
    if refit:
        lines.append(
            f"- Refit: retrained on the training and validation images together, "
            f"{refit['epochs_head']} + {refit['epochs_finetune']} epochs (the trial's own). The "
            "validation metrics above are the search's; the refit model has no held-out score."
        )
    lines += ["", f"## Leaderboard (top {TOP_ROWS})", "", *_leaderboard(leaderboard_rows), ""]
    lines += _usage(metadata["formats"], size, metadata.get("quantize", "none"))
    versions = metadata.get("versions") or {}
    lines.append("Made with " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    return "\n".join(lines) + "\n"
