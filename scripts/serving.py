"""Serving parity: every export format and quantization of one search, side by side.

    python scripts/serving.py PROJECT_DIR [--trial ID]

Exports the trial (default: the leaderboard's first) as .keras, SavedModel and float32 TFLite,
then as TFLite with dynamic, float16 and int8 quantization, each into a temporary folder, with
`python -m tuner.export`. Every model is then read by `tuner.predict` (its real loader) and run on
the search's validation images, decoded as the search decoded them. The table gives, per model:
its size, validation accuracy, top-1 agreement with the .keras model and the largest difference
in any class probability from it, and milliseconds per image (one image at a time, after one
warm-up image). `tests/serve/test_formats.py` holds the same formats to fixed tolerances on the tiny
backbone; this script measures them on any search, with real weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("--trial")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from tuner import export
    from tuner.config import CONFIG_FILE, config_from_json
    from tuner.data.pixels import prepare_data
    from tuner.predict import Predictor
    from tuner.ui.display import SearchDisplay

    console = Console()
    config = config_from_json((args.project_dir / CONFIG_FILE).read_text()).replace(
        verbose=0, project_dir=args.project_dir
    )
    trial = ["--trial", args.trial] if args.trial else []
    models: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        out = work / "float32"
        argv = [str(args.project_dir), *trial, "--out", str(out), "--quiet"]
        started = time.perf_counter()
        assert export.main(argv) == 0
        console.print(f"[serving] float32 export: {time.perf_counter() - started:.1f}s")
        models["keras"] = out / "model.keras"
        models["savedmodel"] = out / "saved_model"
        models["tflite float32"] = out / "model.tflite"
        for quantize in ("dynamic", "float16", "int8"):
            folder = work / quantize
            argv = [str(args.project_dir), *trial, "--format", "tflite", "--quantize", quantize]
            started = time.perf_counter()
            assert export.main([*argv, "--out", str(folder), "--quiet"]) == 0
            console.print(f"[serving] {quantize} export: {time.perf_counter() - started:.1f}s")
            models[f"tflite {quantize}"] = folder / "model.tflite"

        reference = None
        table = Table(title=f"serving parity: {args.project_dir}, validation images")
        for column in ("model", "size", "val accuracy", "top-1 = keras", "max |Δp|", "ms/image"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, path in models.items():
            predictor = Predictor(path)
            if reference is None:
                data = prepare_data(config, predictor.size, SearchDisplay(verbose=0))
                pixels = np.asarray(data.pixels("val", predictor.size))
                labels = data.labels("val")
            predictor(pixels[:1])  # warm-up
            started = time.perf_counter()
            probabilities = np.concatenate(
                [predictor(pixels[i : i + 1]) for i in range(len(pixels))]
            )
            ms = (time.perf_counter() - started) / len(pixels) * 1000
            if reference is None:
                reference = probabilities
            size = (
                sum(p.stat().st_size for p in path.rglob("*"))
                if path.is_dir()
                else path.stat().st_size
            )
            table.add_row(
                name,
                f"{size / 2**20:.1f} MB",
                f"{np.mean(probabilities.argmax(1) == labels):.4f}",
                f"{np.mean(probabilities.argmax(1) == reference.argmax(1)):.4f}",
                f"{np.abs(probabilities - reference).max():.2e}",
                f"{ms:.1f}",
            )
        console.print(table)
        console.print(f"{len(pixels)} validation images, {len(data.class_names)} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
