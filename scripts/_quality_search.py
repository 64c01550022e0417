"""The quality benchmark's search row: the real command line in a subprocess, then its export
scored as a user would score it.

`run_search` runs `python -m tuner.search --data TRAIN --val-data VAL ... --time-budget T` (T: the
faster recipe row's time minus a margin), then `evaluate_export` loads the exported `model.keras`
with `keras.saving.load_model(safe_mode=True)`, without tuner, and calls it on each TEST file
decoded at its own size. `check_init` says whether the search's random init is the one the anchors
started from.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scripts import _harness
from scripts._quality_cases import (
    SEARCH_MAX_TRIALS,
    Case,
    Row,
    Settings,
    predicted_classes,
    say,
    search_settings,
)

# TensorFlow's C++ start-up lines (absl), which TF_CPP_MIN_LOG_LEVEL does not silence.
LOG_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:)")


def decode_as_user(path: str):
    """One image file decoded at its own size, as a user of the export would."""

    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def evaluate_export(project: Path, test_dir: Path) -> dict[str, Any]:
    """Load the export without tuner and classify each TEST file at its own size."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tuner.data import folders as data

    model = keras.saving.load_model(project / "export" / "model.keras", safe_mode=True)
    metadata = json.loads((project / "export" / "metadata.json").read_text())
    class_names = list(metadata["class_names"])
    images, _ = data.scan(test_dir)  # file list and true labels only; pixels decoded below
    truth = np.array([class_names.index(images.class_names[i]) for i in images.labels])
    # One trace for every image size (the export resizes inside); eager calls or predict() per
    # size would give the same numbers, only slower.
    call = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    groups: dict[tuple[int, ...], list[int]] = {}
    decoded = []
    for i, path in enumerate(images.paths):
        pixels = decode_as_user(path).numpy()
        decoded.append(pixels)
        groups.setdefault(pixels.shape, []).append(i)
    predicted = np.empty(len(images), dtype=np.int64)
    sizes = set()
    for shape, members in groups.items():
        sizes.add(shape[:2])
        batch = np.stack([decoded[i] for i in members]).astype("float32")  # 0-255 RGB
        predicted[members] = predicted_classes(call(batch).numpy())
    return {
        "test_accuracy": float(np.mean(predicted == truth)),
        "metadata": metadata,
        "distinct_sizes": len(sizes),
        "predicted_counts": np.bincount(predicted, minlength=len(class_names)).tolist(),
    }


def check_init(case: Case, project: Path, recipe_init: list | None) -> bool | None:
    """Whether the search's random init file equals the init the recipe and probe started from."""
    if case.weights != "none" or recipe_init is None:
        return None
    import numpy as np

    from tuner.models.registry import build_backbone, get_backbone

    path = project / "init" / f"{case.backbone}-{case.image_size}.weights.h5"
    if not path.exists():
        return None
    model = build_backbone(get_backbone(case.backbone), case.image_size, str(path))
    theirs = model.get_weights()
    return len(theirs) == len(recipe_init) and all(
        np.array_equal(a, b) for a, b in zip(theirs, recipe_init, strict=True)
    )


def run_search(
    case: Case, weights: str, dirs: dict[str, Path], budget: float, s: Settings
) -> tuple[Row, Path]:
    """The search row: the command line with a time budget of `budget` seconds, then its export
    on TEST."""
    project = s.work_dir / case.name
    log = s.work_dir / f"{case.name}.search.log"
    flags = _harness.cli_flags(
        **search_settings(case, weights, dirs),
        project_dir=project,
        overwrite=True,
        quiet=True,
        time_budget=f"{budget:.0f}",
        max_trials=SEARCH_MAX_TRIALS,
    )
    command = [sys.executable, "-m", "tuner.search", *flags, *s.search_extra]
    row = Row("search")
    row.details["command"] = " ".join(command[1:])
    row.details["time_budget_s"] = round(budget)
    say(f"  $ python {row.details['command']}")
    s.work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run(
            command,
            cwd=_harness.REPO,
            env=_harness.child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    search_s = time.perf_counter() - start
    row.details["search_s"] = search_s
    row.details["train_s"] = search_s  # the whole command: decode, cache, trials, export
    row.details["exit_code"] = result.returncode
    row.details["log"] = str(log)
    if result.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = [line for line in lines if not LOG_NOISE.match(line)][-3:]
        row.error = f"exit {result.returncode}: " + " | ".join(tail)
        row.wall_s = search_s
        return row, project
    evaluated = evaluate_export(project, dirs["test"])
    row.wall_s = time.perf_counter() - start
    row.details["test_eval_s"] = row.wall_s - search_s
    metadata = evaluated.pop("metadata")
    row.test_accuracy = evaluated["test_accuracy"]
    objective = metadata.get("objective", {})
    row.val_accuracy = objective.get("value")
    row.details.update(evaluated)
    row.details.update(
        {
            "objective": objective.get("name"),
            "best_trial": metadata.get("trial_id"),
            "hyperparameters": metadata.get("hyperparameters"),
            "weights_origin": metadata.get("weights"),
            "export_image_size": (metadata.get("input") or {}).get("image_size"),
        }
    )
    try:
        from tuner.ui.board import load

        board = load(project)
        statuses = [r.status for r in board.rows]
        row.details["trials"] = len(statuses)
        row.details["trials_completed"] = statuses.count("COMPLETED")
    except Exception as error:  # noqa: BLE001 - the trial count is a detail, not the result
        row.details["trials_error"] = str(error).splitlines()[0] if str(error) else repr(error)
    return row, project
