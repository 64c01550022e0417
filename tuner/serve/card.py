"""The model card: the README.md an export folder holds, written from its metadata.

It opens with the figure a reader can trust most: the held-out test set's, when the export was
scored on one (accuracy, balanced accuracy, per-class recall, the confusion matrix, ECE and
log-loss); else the validation score, labelled "selected on: optimistic", since the validation
images chose the trial, its epoch and its head's regularization; a refit model, trained on the
validation images too, gets no such headline. Then what the model is (backbone and where its
weights came from), what it learned from (classes and image counts), how it was chosen
(objective, class weights, augmentation, hyperparameters, both phases' validation metrics, the
validation confusion matrix, the top of the leaderboard), its calibration (the temperature, and
ECE and log-loss before and after), and how to call each format it was exported in, in a few
lines of code that need only TensorFlow, Keras and numpy.
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


def _fixed(value: Any) -> str:
    """A score such as an ECE or a log-loss, at four decimals."""
    return "-" if value is None else f"{value:.4f}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _confusion(class_names: Sequence[str], per_class: Mapping[str, Any]) -> list[str]:
    """The confusion matrix (rows: true class, columns: predicted) with each class's recall."""
    matrix = per_class.get("confusion") or []
    recall = per_class.get("recall") or [None] * len(class_names)
    if len(matrix) != len(class_names):
        return []
    header = ["true \\ predicted", *class_names, "recall"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row, value in zip(class_names, matrix, recall, strict=False):
        lines.append("| " + " | ".join([name, *map(str, row), _percent(value)]) + " |")
    return lines


def _headline(metadata: Mapping[str, Any]) -> str:
    test = metadata.get("test")
    trial = metadata["trial_id"]
    if metadata.get("refit"):
        opening = (
            f"Exported by tuner from trial {trial} of a search, retrained on the training and "
            "validation images together (`--refit`)"
        )
    else:
        opening = f"Exported by tuner from trial {trial} of a search"
    if test:
        return (
            f"{opening}. On {test['images']} held-out test images: accuracy "
            f"{_percent(test['accuracy'])}, balanced accuracy "
            f"{_percent(test['balanced_accuracy'])}."
        )
    if metadata.get("refit"):
        return f"{opening}; no image was held out from it, so it has no score of its own."
    objective = metadata["objective"]
    return (
        f"{opening}; {objective['name']} {_fixed(objective['value'])} on the validation images "
        "(selected on: optimistic, since these images chose the trial, its epoch and its "
        "head's regularization)."
    )


def _test(metadata: Mapping[str, Any]) -> list[str]:
    test = metadata.get("test")
    if not test:
        return []
    model = "the refit model" if test.get("refit") else "the exported model"
    skipped = test.get("skipped") or 0
    lines = [
        "## Test",
        "",
        f"Scored once, after the export: {model} (`model.keras`, with the calibration below) fed each "
        f"file of `{test['folder']}` at its own size. These images were never used to train, "
        "select, calibrate or refit"
        + (
            f"; {skipped} unreadable file{'s' if skipped != 1 else ''} skipped." if skipped else "."
        ),
        "",
        "| metric | value |",
        "|---|---|",
        f"| images | {test['images']} |",
        f"| accuracy | {_percent(test['accuracy'])} |",
        f"| balanced accuracy | {_percent(test['balanced_accuracy'])} |",
        f"| macro F1 | {_fixed(test.get('macro_f1'))} |",
    ]
    if "auc" in test:
        lines.append(f"| ROC AUC | {_fixed(test.get('auc'))} |")
    lines += [
        f"| ECE | {_fixed(test.get('ece'))} |",
        f"| log-loss | {_fixed(test.get('loss'))} |",
        "",
        *_confusion(metadata["class_names"], test),
        "",
    ]
    return lines


def _validation(metadata: Mapping[str, Any]) -> list[str]:
    objective = metadata["objective"]
    interval = metadata.get("validation_interval")
    per_class = metadata.get("validation_per_class")
    if metadata.get("refit"):
        lines = [
            "## Validation (of the searched trial, not of this model)",
            "",
            f"The search's trial scored {objective['name']} {_fixed(objective['value'])} on the "
            "validation images; the refit model trained on them, so they do not measure it.",
        ]
    else:
        lines = [
            "## Validation (selected on: optimistic)",
            "",
            f"{objective['name']} {_fixed(objective['value'])}"
            + (
                f" (95 % interval {_fixed(interval[0])} to {_fixed(interval[1])})"
                if interval
                else ""
            )
            + ". The validation images chose the head's regularization, the best epoch and the "
            "trial, so this figure is optimistic"
            + ("; the test figures above are not." if metadata.get("test") else "."),
        ]
    if per_class:
        lines += ["", *_confusion(metadata["class_names"], per_class)]
    return [*lines, ""]


def _calibration(metadata: Mapping[str, Any]) -> list[str]:
    record = metadata.get("calibration")
    if not record:
        return []
    validation = record.get("validation") or {}
    before, after = validation.get("before") or {}, validation.get("after")
    images = record.get("images")
    lines = ["## Calibration", ""]
    if record.get("method") == "none":
        lines.append(
            "Not calibrated (`--calibrate none`): the probabilities are the trained model's. "
            f"On the {images} validation images: ECE {_fixed(before.get('ece'))}, log-loss "
            f"{_fixed(before.get('loss'))}."
        )
        return [*lines, ""]
    fitted_on = f"the {images} validation images of trial {record.get('trial_id')}"
    if record.get("refit"):
        fitted_on += (
            " (the search's model, before the refit; the refit model trained on them, so its "
            "temperature is the searched model's)"
        )
    if record.get("note"):
        lines.append(
            f"Temperature scaling was asked for, fitted on {fitted_on}, but T = 1 was kept: "
            f"{record['note'].split('; T = 1 kept')[0]}."
        )
    else:
        lines.append(
            f"Temperature scaling: the logits are divided by T = {_number(record['temperature'])}"
            f", fitted on {fitted_on} to minimize their log-loss and folded into the output "
            "layer of every format. The argmax, and so the accuracy, is unchanged."
        )
        fitted = record.get("fitted")
        if fitted is not None and fitted != record["temperature"]:
            lines[-1] += (
                f" (The log-loss optimum, T = {_number(fitted)}, would raise the validation "
                "ECE: T was moved back toward 1 until it did not.)"
            )
    lines += ["", "| validation | ECE | log-loss |", "|---|---|---|"]
    lines.append(f"| before | {_fixed(before.get('ece'))} | {_fixed(before.get('loss'))} |")
    if after:
        lines.append(f"| after | {_fixed(after.get('ece'))} | {_fixed(after.get('loss'))} |")
    test = metadata.get("test")
    if test:
        lines.append(
            f"| test (calibrated) | {_fixed(test.get('ece'))} | {_fixed(test.get('loss'))} |"
        )
    return [*lines, ""]


def _choices(metadata: Mapping[str, Any]) -> list[str]:
    """How the trial was chosen and trained: objective, class weights, augmentation."""
    lines = [f"- Objective: {metadata['objective']['name']} ({metadata['objective']['direction']})"]
    if metadata.get("select"):
        lines[-1] += f", trial picked by `--select {metadata['select']}`"
    lines[-1] += "."
    mode = metadata.get("class_weight")
    if mode:
        weights = metadata.get("class_weights")
        detail = (
            ": " + ", ".join(f"{k} {_number(v)}" for k, v in weights.items()) if weights else ""
        )
        lines.append(f"- Class weights: {mode}{detail}.")
    if metadata.get("augment"):
        ops = metadata.get("augmentations") or []
        lines.append(
            "- Augmentation: " + (", ".join(ops) if ops else "on") + " (training only; the "
            "export has no augmentation layer)."
        )
    else:
        lines.append("- Augmentation: none.")
    return lines


def model_card(metadata: Mapping[str, Any], leaderboard_rows: Sequence[Any] = ()) -> str:
    """The Markdown model card for an export described by `metadata` (see
    `tuner.serve.bundle.export_trial`), with the top of the leaderboard."""
    size = metadata["input"]["image_size"]
    data = metadata.get("data") or {}
    counts = data.get("counts") or {}
    refit = metadata.get("refit") or {}
    phases = metadata.get("phases") or {}
    test = metadata.get("test") or {}
    lines = [
        f"# {metadata['backbone']} image classifier ({len(metadata['class_names'])} classes)",
        "",
        _headline(metadata),
        "",
        *_test(metadata),
        *_validation(metadata),
        *_calibration(metadata),
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
    ]
    test_counts = test.get("confusion")
    header = ["class", "train images", "validation images"] + (["test images"] if test else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, name in enumerate(metadata["class_names"]):
        cells = [
            name,
            str((counts.get("train") or {}).get(name, "-")),
            str((counts.get("val") or {}).get(name, "-")),
        ]
        if test:
            cells.append(str(sum(test_counts[index])) if test_counts else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if data.get("folder"):
        lines += ["", f"Images from `{data['folder']}`."]
    lines += ["", "## Training", "", *_choices(metadata), ""]
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
            "- Refit: retrained on the training and validation images together, "
            f"{refit.get('epochs_head', '-')} + {refit.get('epochs_finetune', '-')} epochs (up to "
            "the trial's best epoch, the one the search scored). The "
            "validation metrics above are the search's; the refit model has no held-out "
            "validation score."
        )
    lines += ["", f"## Leaderboard (top {TOP_ROWS})", "", *_leaderboard(leaderboard_rows), ""]
    lines += _usage(metadata["formats"], size, metadata.get("quantize", "none"))
    versions = metadata.get("versions") or {}
    lines.append("Made with " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    return "\n".join(lines) + "\n"
