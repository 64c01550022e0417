"""Serving parity: every export format and quantization of one search, side by side.

    python -m scripts.serving PROJECT_DIR [--trial ID] [--json FILE]

Exports the trial (default: the leaderboard's first) as .keras, SavedModel and float32 TFLite,
then as TFLite with dynamic, float16 and int8 quantization, each into a temporary folder, with
`python -m tuner.export`. Every model is then read by `tuner.predict` (its real loader) and run on
the search's validation images, decoded as the search decoded them. The table gives, per model:
its size, validation accuracy, top-1 agreement with the .keras model and the largest difference
in any class probability from it, and milliseconds per image (one image at a time, after one
warm-up image). `tests/serve/test_formats.py` holds the same formats to fixed tolerances on the tiny
backbone; this script measures them on any search, with real weights. Every number goes to
`--json FILE` (default: scripts/results/serving.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts import _harness, _report

QUANTIZATIONS = ("dynamic", "float16", "int8")


def say(text: str) -> None:
    """One progress line on standard error."""
    _harness.say("serving", text)


def export_all(project: Path, trial: list[str], work: Path) -> dict[str, Path]:
    """Every format and quantization of the trial, each exported into its own folder of `work`."""
    from tuner import export

    models: dict[str, Path] = {}
    for quantize in (None, *QUANTIZATIONS):
        folder = work / (quantize or "float32")
        argv = [str(project), *trial, "--out", str(folder), "--quiet"]
        if quantize is not None:
            argv += ["--format", "tflite", "--quantize", quantize]
        started = time.perf_counter()
        if export.main(argv) != 0:
            raise SystemExit(f"error: python -m tuner.export {' '.join(argv)} failed")
        say(f"{quantize or 'float32'} export: {time.perf_counter() - started:.1f}s")
        if quantize is None:
            models["keras"] = folder / "model.keras"
            models["savedmodel"] = folder / "saved_model"
            models["tflite float32"] = folder / "model.tflite"
        else:
            models[f"tflite {quantize}"] = folder / "model.tflite"
    return models


def measure(project: Path, models: dict[str, Path]) -> tuple[list[dict[str, Any]], int, int]:
    """One row per model, against the first (.keras); and how many images and classes."""
    import numpy as np

    from tuner.config import CONFIG_FILE, config_from_json
    from tuner.data.pixels import prepare_data
    from tuner.predict import Predictor
    from tuner.ui.display import SearchDisplay

    config = config_from_json((project / CONFIG_FILE).read_text()).replace(
        verbose=0, project_dir=project
    )
    reference = pixels = labels = data = None
    rows = []
    for name, path in models.items():
        predictor = Predictor(path)
        if data is None:
            data = prepare_data(config, predictor.size, SearchDisplay(verbose=0))
            pixels = np.asarray(data.pixels("val", predictor.size))
            labels = data.labels("val")
        predictor(pixels[:1])  # warm-up
        started = time.perf_counter()
        probabilities = np.concatenate([predictor(pixels[i : i + 1]) for i in range(len(pixels))])
        ms = (time.perf_counter() - started) / len(pixels) * 1000
        if reference is None:
            reference = probabilities
        files = path.rglob("*") if path.is_dir() else [path]
        rows.append(
            {
                "model": name,
                "size_mb": sum(p.stat().st_size for p in files) / 2**20,
                "val_accuracy": float(np.mean(probabilities.argmax(1) == labels)),
                "top1_agreement": float(np.mean(probabilities.argmax(1) == reference.argmax(1))),
                "max_abs_dp": float(np.abs(probabilities - reference).max()),
                "ms_per_image": ms,
            }
        )
    return rows, len(pixels), len(data.class_names)


def table(project: Path, rows: list[dict[str, Any]]) -> Any:
    """The rows as a rich `Table`."""

    from rich.table import Table

    out = Table(title=f"serving parity: {project}, validation images")
    for column in ("model", "size", "val accuracy", "top-1 = keras", "max |Δp|", "ms/image"):
        out.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        out.add_row(
            row["model"],
            f"{row['size_mb']:.1f} MB",
            f"{row['val_accuracy']:.4f}",
            f"{row['top1_agreement']:.4f}",
            f"{row['max_abs_dp']:.2e}",
            f"{row['ms_per_image']:.1f}",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Exports, measures, prints and writes the JSON; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("--trial")
    _report.add_json_flag(parser, "serving")
    args = parser.parse_args(argv)
    _harness.start_tensorflow()
    console = _report.make_console(80)
    trial = ["--trial", args.trial] if args.trial else []
    with tempfile.TemporaryDirectory() as work:
        models = export_all(args.project_dir, trial, Path(work))
        rows, images, classes = measure(args.project_dir, models)
    console.print(table(args.project_dir, rows))
    console.print(f"{images} validation images, {classes} classes")
    result = {"project": str(args.project_dir), "images": images, "classes": classes, "rows": rows}
    path = _report.result_file(args, "serving")
    _report.write_result(path, "scripts.serving", result, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
