"""`python -m tuner.predict MODEL IMAGE_OR_DIR...`: classify image files with an exported model.

MODEL is a `.keras` file, a SavedModel folder or a `.tflite` file from `python -m tuner.export`
(or the search's own export). The class names come from the `labels.txt` beside it (or in the
folder above a SavedModel), the input size from `metadata.json` or the model itself.

Every image is decoded and resized exactly as the search decoded its training images
(`tuner.data.decode`), then fed to the model as uint8 pixels at its size, so the three formats see the
same input. A file that is not an image gets a line of its own saying why; the others are still
predicted. Prints a table (file, top class, probability, top 3) or, with `--json`, one JSON
object. Exit status: 0 when at least one file was predicted, 2 when none could be (or the model
cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuner._cli import Command
from tuner.errors import ConfigError, DataError, TunerError
from tuner.runtime import startup as runtime

TOP_K = 3


class Predictor:
    """One exported model in any of its formats, taking uint8 (N, size, size, 3) pixels and
    returning (N, classes) probabilities."""

    def __init__(self, path: Path, *, debug: bool = False) -> None:
        self.path = path
        self.debug = debug  # TensorFlow's start-up lines shown (`tuner.runtime.startup`)
        self.folder = path if path.is_dir() else path.parent
        self.metadata = _read_metadata(self.folder)
        if path.is_dir():
            self.kind = "savedmodel"
        elif path.suffix == ".keras":
            self.kind = "keras"
        elif path.suffix == ".tflite":
            self.kind = "tflite"
        else:
            raise ConfigError(
                f"{path} is not a model: pass a .keras file, a SavedModel folder or a .tflite file "
                "from python -m tuner.export."
            )
        try:
            self._load()
        except TunerError:
            raise
        except Exception as error:  # noqa: BLE001 - any loader failure is one line
            raise ConfigError(
                f"Cannot load {path} as a {self.kind} model: {_first_line(error)}"
            ) from error
        self.class_names = _read_labels(self.folder, self.n_outputs)

    def _load(self) -> None:
        runtime.start(debug=self.debug)
        if self.kind == "keras":
            import keras

            self.model = keras.saving.load_model(self.path, safe_mode=True)
            self.size = int((self.metadata.get("input") or {}).get("image_size") or 0)
            if not self.size:
                raise ConfigError(
                    f"{self.folder / 'metadata.json'} is missing or has no input.image_size; "
                    "keep the export folder's files together."
                )
            out = self.model.output_shape[-1]
            self.n_outputs = 2 if out == 1 else out
        elif self.kind == "savedmodel":
            import tensorflow as tf

            if not (self.path / "saved_model.pb").is_file():
                raise ConfigError(f"{self.path} is a folder but not a SavedModel.")
            self.model = tf.saved_model.load(str(self.path))
            self.serve = self.model.signatures["serving_default"]
            spec = self.serve.structured_input_signature[1]["images"]
            self.size = int(spec.shape[1])
            self.n_outputs = int(self.serve.structured_outputs["probabilities"].shape[-1])
        else:
            import tensorflow as tf

            with warnings.catch_warnings():
                # TF 2.20+ points to the separate LiteRT package; this one still runs the file.
                warnings.simplefilter("ignore")
                self.interpreter = tf.lite.Interpreter(model_path=str(self.path))
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.size = int(self.input["shape"][1])
            self.n_outputs = int(self.output["shape"][-1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.uint8)
        if self.kind == "keras":
            out = np.asarray(self.model(pixels.astype("float32"), training=False))
            return np.concatenate([1.0 - out, out], axis=-1) if out.shape[-1] == 1 else out
        if self.kind == "savedmodel":
            import tensorflow as tf

            return self.serve(images=tf.constant(pixels))["probabilities"].numpy()
        rows = []
        for row in pixels:  # TFLite runs the batch of one it was allocated for
            self.interpreter.resize_tensor_input(self.input["index"], [1, *row.shape])
            self.interpreter.allocate_tensors()
            self.interpreter.set_tensor(self.input["index"], row[None])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self.output["index"])[0])
        return np.stack(rows)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _read_metadata(folder: Path) -> dict[str, Any]:
    for candidate in (folder / "metadata.json", folder.parent / "metadata.json"):
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def _read_labels(folder: Path, n_outputs: int) -> list[str]:
    for candidate in (folder / "labels.txt", folder.parent / "labels.txt"):
        try:
            names = [line.strip() for line in candidate.read_text().splitlines() if line.strip()]
        except OSError:
            continue
        if len(names) != n_outputs:
            raise ConfigError(
                f"{candidate} names {len(names)} classes but the model has {n_outputs} outputs; "
                "keep the export folder's files together."
            )
        return names
    return [str(i) for i in range(n_outputs)]


def _image_files(inputs: Sequence[Path]) -> list[Path]:
    """Files named, and the image files (by extension, hidden ones left out) under folders named,
    in sorted order per folder."""
    from tuner.data.folders import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = [
                Path(root) / name
                for root, dirs, names in os.walk(item)
                for name in names
                if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
            ]
            files.extend(sorted(found))
        else:
            files.append(item)
    return files


def _predict_files(predictor: Predictor, files: Sequence[Path], top_k: int = TOP_K) -> list[dict]:
    """One result per file: its top classes, or why it could not be read."""
    from tuner.data.decode import read_image, resize_like_training

    results = []
    for path in files:
        try:
            pixels = resize_like_training(read_image(path), predictor.size)
        except DataError as error:
            results.append({"file": str(path), "error": _reason(error)})
            continue
        probabilities = predictor(pixels[None])[0]
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        top = [
            {"class": predictor.class_names[i], "probability": float(probabilities[i])}
            for i in order
        ]
        results.append(
            {
                "file": str(path),
                "class": top[0]["class"],
                "probability": top[0]["probability"],
                "top": top,
            }
        )
    return results


def _reason(error: DataError) -> str:
    # read_image says "Cannot use image 'PATH': REASON. Pass a readable image file."
    text = str(error)
    if ": " in text:
        text = text.split(": ", 1)[1]
    return text.removesuffix(" Pass a readable image file.").rstrip(".")


def _render(results: Sequence[dict], console: Any) -> None:
    """Prints the results as a table: file, top class, its probability, the top classes."""
    from rich.table import Table

    table = Table(title="predictions")
    table.add_column("file", overflow="fold")
    table.add_column("class")
    table.add_column("probability", justify="right")
    table.add_column(f"top {TOP_K}")
    for result in results:
        if "error" in result:
            table.add_row(result["file"], "-", "-", f"[red]{result['error']}[/]")
            continue
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
        table.add_row(result["file"], result["class"], f"{result['probability']:.3f}", top)
    console.print(table)


class _Predict(Command):
    name = "predict"
    description = "Classify images with an exported model (.keras, SavedModel folder or .tflite)."
    interrupted = "interrupted: no predictions were printed (this command writes no files)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", type=Path, help="a .keras file, SavedModel folder or .tflite")
        parser.add_argument("images", type=Path, nargs="+", help="image files or folders of them")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(self, args: argparse.Namespace) -> int:
        # The predictions are the result, and this command prints nothing else (TensorFlow's
        # start-up lines only with --debug): `--quiet` leaves its output as it is.
        if not args.model.exists():
            raise ConfigError(
                f"No model at {args.model}: pass the path python -m tuner.export printed."
            )
        missing = [str(p) for p in args.images if not p.exists()]
        predictor = Predictor(args.model, debug=args.debug)
        files = _image_files([p for p in args.images if p.exists()])
        results = [{"file": m, "error": "no such file or folder"} for m in missing]
        results += _predict_files(predictor, files)
        if not results:
            raise ConfigError("No image files found in the folders given.")
        if args.json:
            print(json.dumps({"model": str(args.model), "predictions": results}, indent=2))
        else:
            from rich.console import Console

            _render(results, Console())
        return 0 if any("error" not in r for r in results) else 2


main = _Predict().main  # main(argv) runs the command line, returns the exit status


if __name__ == "__main__":
    sys.exit(main())
