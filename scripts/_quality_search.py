"""The quality benchmark's search rows: the real command line in a subprocess, then its export
scored as a user would score it, beside the test figures the search reports itself.

`run_search` runs `python -m tuner.search --data TRAIN --val-data VAL --test-data TEST ...
--time-budget T --seed S` (T: the recipe's train time minus a margin), then `evaluate_export`
loads the exported `model.keras` with `keras.saving.load_model(safe_mode=True)` and calls it on
each TEST file decoded at its own size. When the package wrote `PROJECT/test.json` (its own
scoring of the export on `--test-data`), its figures are recorded with their difference from
ours; issue 25 wants them equal to within one image. The export's temperature (metadata.json
`calibration`) gives the uncalibrated test ECE: the same outputs with the temperature taken back
out. `check_init` says whether the search's random init is the one the anchors started from.
"""

from __future__ import annotations

import json
import math
import numbers
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
    CaseData,
    Row,
    Settings,
    say,
    search_settings,
)

# TensorFlow's C++ start-up lines (absl), which TF_CPP_MIN_LOG_LEVEL does not silence.
LOG_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:)")
TEST_FILE = "test.json"  # tuner.project.layout.TEST_FILE: the search's own scoring of --test-data


def decode_as_user(path: str):
    """One image file decoded at its own size, as a user of the export would."""

    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def evaluate_export(project: Path, data: CaseData) -> dict[str, Any]:
    """Load the export without tuner and classify each TEST file at its own size; returns its
    probabilities in `data.class_names` order, and the export's metadata."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tuner import metrics

    model = keras.saving.load_model(project / "export" / "model.keras", safe_mode=True)
    metadata = json.loads((project / "export" / "metadata.json").read_text())
    order = [list(metadata["class_names"]).index(name) for name in data.class_names]
    # One trace for every image size (the export resizes inside); eager calls or predict() per
    # size would give the same numbers, only slower.
    call = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    groups: dict[tuple[int, ...], list[int]] = {}
    decoded = []
    for i, path in enumerate(data.test.paths):
        pixels = decode_as_user(path).numpy()
        decoded.append(pixels)
        groups.setdefault(pixels.shape, []).append(i)
    raw = None
    for members in groups.values():
        batch = np.stack([decoded[i] for i in members]).astype("float32")  # 0-255 RGB
        out = call(batch).numpy()
        if raw is None:
            raw = np.empty((len(decoded), out.shape[1]), dtype="float64")
        raw[members] = out
    assert raw is not None, "no test image"
    logit_values = None
    temperature = (metadata.get("calibration") or {}).get("temperature", 1.0)
    if temperature != 1.0:
        # For the uncalibrated ECE: the output layer's own pre-activation (z / T). Recovering it
        # from the probabilities (log p) fails for a sharpening T < 1, whose float32 softmax
        # saturates at 0 and 1.
        from tuner.serve.calibration import predict_logits

        logit_values = np.empty_like(raw)
        for members in groups.values():
            logit_values[members] = predict_logits(model, np.stack([decoded[i] for i in members]))
    # A sigmoid export gives one column: make it two, then put the columns in our class order.
    probabilities = metrics.as_matrix(raw)[:, order]
    return {
        "probabilities": probabilities,
        "raw": raw,
        "logits": logit_values,
        "metadata": metadata,
        "distinct_sizes": len(groups),
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


def search_project(s: Settings, case: Case, seed: int, name: str) -> Path:
    """The project folder of one search row of one seed."""
    tail = "" if name == "search" else "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s.work_dir / f"{case.name}-s{seed}{tail}"


def _logged(command: list[str], log: Path, mode: str) -> subprocess.CompletedProcess:
    """Runs `command` from the repository, its output written to `log` (opened with `mode`)."""
    with open(log, mode) as out:
        return subprocess.run(
            command,
            cwd=_harness.REPO,
            env=_harness.child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )


def run_search(
    case: Case,
    weights: str,
    dirs: dict[str, Path],
    data: CaseData,
    budget: float,
    s: Settings,
    *,
    seed: int,
    name: str = "search",
    flags: tuple[str, ...] = (),
) -> tuple[Row, Path]:
    """One search row: the command line with a time budget of `budget` seconds, `--seed seed`,
    `--test-data TEST` and `flags`, then its export scored on TEST."""
    project = search_project(s, case, seed, name)
    log = project.with_name(project.name + ".search.log")
    command = [
        sys.executable,
        "-m",
        "tuner.search",
        *_harness.cli_flags(
            **search_settings(case, weights, dirs, seed),
            test_data=dirs["test"],
            project_dir=project,
            overwrite=True,
            quiet=True,
            time_budget=f"{budget:.0f}",
            max_trials=SEARCH_MAX_TRIALS,
        ),
        *flags,
        *s.search_extra,
    ]
    row = Row(name, seed=seed)
    row.details["command"] = " ".join(command[1:])
    row.details["time_budget_s"] = round(budget)
    say(f"  $ python {row.details['command']}")
    s.work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = _logged(command, log, "w")
    if result.returncode == 0 and s.search_refit:
        # The export retrains the exported trial on train+val and scores it on TEST again.
        refit = [sys.executable, "-m", "tuner.export", str(project), "--refit", "--quiet"]
        row.details["refit_command"] = " ".join(refit[1:])
        result = _logged(refit, log, "a")
    search_s = time.perf_counter() - start
    row.details["search_s"] = search_s
    row.details["exit_code"] = result.returncode
    row.details["log"] = str(log)
    if result.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        # The command's own one-line message when it gave one, else the log's last lines.
        said = [line for line in lines if line.startswith("error:")]
        tail = said[-1:] or [line for line in lines if not LOG_NOISE.match(line)][-3:]
        row.error = f"exit {result.returncode}: " + " | ".join(tail)
        row.wall_s = search_s
        return row, project
    own_test_s = package_test_seconds(project)
    row.details["package_test_s"] = own_test_s
    # The command's time without the package's own TEST scoring (which a search without
    # --test-data does not do), so that it compares with the recipe's train time.
    row.details["train_s"] = search_s - (own_test_s or 0.0)
    evaluated = evaluate_export(project, data)
    row.wall_s = time.perf_counter() - start
    row.details["test_eval_s"] = row.wall_s - search_s
    metadata = evaluated["metadata"]
    probabilities = evaluated["probabilities"]
    row.score(probabilities, data.test.labels, data.n_classes)
    objective = metadata.get("objective", {})
    row.val_accuracy = objective.get("value")
    row.details.update(
        {
            "distinct_sizes": evaluated["distinct_sizes"],
            "predicted_counts": _counts(row.predicted, data.n_classes),
            "objective": objective.get("name"),
            "best_trial": metadata.get("trial_id"),
            "hyperparameters": metadata.get("hyperparameters"),
            "weights_origin": metadata.get("weights"),
            "export_image_size": (metadata.get("input") or {}).get("image_size"),
            "settings": resolved_settings(project),
            "calibration": calibration_record(
                metadata, evaluated["raw"], row, data, evaluated.get("logits")
            ),
            "package_test": package_test_record(project, row),
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


def _counts(predicted: list[int] | None, n_classes: int) -> list[int]:
    import numpy as np

    return np.bincount(predicted or [], minlength=n_classes).tolist()


def resolved_settings(project: Path) -> dict[str, Any]:
    """The class weights and objective the search resolved `auto` to (its run.json or
    config.json); empty when neither says."""
    for name in ("run.json", "config.json"):
        try:
            saved = json.loads((project / name).read_text())
        except (OSError, ValueError):
            continue
        found = {k: saved[k] for k in ("class_weight", "objective", "calibrate") if k in saved}
        config = saved.get("config") if isinstance(saved.get("config"), dict) else {}
        for key in ("class_weight", "objective", "calibrate"):
            if key not in found and key in config:
                found[key] = config[key]
        if found:
            return found
    return {}


# ------------------------------------------------------------------- what the package reported


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` as `{"a/b": 1}`; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def find_number(
    tree: Any, *words: str, any_of: tuple[str, ...] = (), none_of: tuple[str, ...] = ()
) -> float | None:
    """The first number in `tree` whose key path holds every one of `words`, one of `any_of`
    when given, and none of `none_of` (lower case, as substrings of the path's parts); None if
    none does. The package's calibration block is read this way so that its exact layout does
    not matter."""
    for path, value in _flatten(tree).items():
        parts = path.lower().split("/")
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            continue
        if (
            all(any(w in p for p in parts) for w in words)
            and (not any_of or any(a in p for a in any_of for p in parts))
            and not any(x in p for x in none_of for p in parts)
        ):
            return float(value)
    return None


def calibration_record(
    metadata: dict[str, Any], raw: Any, row: Row, data: CaseData, logit_values: Any = None
) -> dict:
    """The export's calibration and the uncalibrated test figures.

    The uncalibrated ECE comes from the export's own outputs with its temperature taken back out
    (probabilities of T x the output layer's pre-activation when `logit_values` holds it, else
    of T x log p; a temperature leaves the argmax, so the accuracy, unchanged), or
    else from what metadata.json records as the ECE before calibration on test; `unknown` when
    the export records neither (no calibration block: an export of a package without it)."""
    import numpy as np

    from tuner import metrics

    block = metadata.get("calibration")
    record: dict[str, Any] = {"present": isinstance(block, dict)}
    if not isinstance(block, dict):
        record["uncalibrated_ece"] = None
        record["source"] = "unknown: metadata.json has no calibration block"
        return record
    record["block"] = block
    temperature = find_number(block, "temperature")
    record["temperature"] = temperature
    recorded = find_number(block, "test", "ece", any_of=("before", "uncalibrated", "raw"))
    record["recorded_uncalibrated_test_ece"] = recorded
    record["recorded_calibrated_test_ece"] = find_number(
        block, "test", "ece", any_of=("after", "calibrated"), none_of=("before", "uncalibrated")
    )
    if temperature is not None and temperature > 0 and math.isfinite(temperature):
        # raw is what the model outputs: p = softmax(z / T) (or a sigmoid column); the
        # logits of p are z / T up to a per-row constant, so T x logits(p) gives z back.
        z = metrics.logits(raw) if logit_values is None else np.asarray(logit_values, "float64")
        uncalibrated = metrics.tempered(z, 1.0 / temperature)
        order = [list(metadata["class_names"]).index(name) for name in data.class_names]
        figures = metrics.scores(
            metrics.as_matrix(uncalibrated)[:, order], data.test.labels, data.n_classes
        )
        record["uncalibrated_ece"] = figures["ece"]
        record["uncalibrated_accuracy"] = figures["accuracy"]
        record["same_accuracy"] = abs(figures["accuracy"] - (row.test_accuracy or 0.0)) < 1e-12
        record["source"] = "the export's outputs with its temperature taken out"
    elif recorded is not None:
        record["uncalibrated_ece"] = recorded
        record["source"] = "metadata.json calibration (test, before)"
    else:
        record["uncalibrated_ece"] = None
        record["source"] = "unknown: the calibration block has no temperature or test ECE"
    return record


def _figures_block(tree: Any) -> dict[str, Any] | None:
    """The first dict in `tree` (itself, then breadth first) that holds an `accuracy`."""
    queue = [tree]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if isinstance(node.get("accuracy"), numbers.Real):
                return node
            queue.extend(node.values())
    return None


def package_test_seconds(project: Path) -> float | None:
    """How long the package's own TEST scoring took: test.json's `seconds` when it records
    them, else the time between the exported model.keras and test.json (the export is scored
    after it is written); None without test.json."""
    path = project / TEST_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError:
        return None
    recorded = find_number(saved, "seconds")
    if recorded is not None:
        return recorded
    model = project / "export" / "model.keras"
    if model.exists():
        return max(0.0, path.stat().st_mtime - model.stat().st_mtime)
    return None


def package_test_record(project: Path, row: Row) -> dict[str, Any]:
    """The test figures the search reported (PROJECT/test.json) beside ours, and whether they
    agree to within one image; `present: False` when the search wrote no test.json."""
    path = project / TEST_FILE
    source = str(path)
    try:
        saved = json.loads(path.read_text())
    except OSError:
        # The same block may be in the export's metadata.json (`test`) alone.
        metadata = project / "export" / "metadata.json"
        try:
            saved = json.loads(metadata.read_text()).get("test")
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict):
            return {"present": False, "path": str(path), "note": f"no {TEST_FILE}"}
        source = f"{metadata} (test)"
    except ValueError as error:
        return {"present": False, "note": f"{path} unreadable: {error}"}
    block = _figures_block(saved)
    if block is None or row.test is None:
        return {"present": True, "source": source, "note": "no accuracy in it", "file": saved}
    ours = row.test
    images = int(block.get("images") or ours["images"])
    record: dict[str, Any] = {"present": True, "source": source, "images": images}
    for key in ("accuracy", "balanced_accuracy", "ece", "loss"):
        theirs = block.get(key)
        if isinstance(theirs, numbers.Real):
            record[key] = float(theirs)
            record[f"{key}_difference"] = float(theirs) - float(ours[key])
    # Within one image: the counts of correct images differ by at most one, and so do the
    # confusion matrices when both are there.
    correct = abs(round(record["accuracy"] * images) - round(ours["accuracy"] * ours["images"]))
    record["correct_images_difference"] = int(correct)
    agree = correct <= 1 and images == ours["images"]
    confusion = block.get("confusion")
    if isinstance(confusion, list):
        import numpy as np

        theirs_m, ours_m = np.asarray(confusion), np.asarray(ours["confusion"])
        if theirs_m.shape == ours_m.shape:
            moved = int(np.abs(theirs_m - ours_m).sum() // 2)
            record["images_classified_differently"] = moved
            agree = agree and moved <= 1
    record["within_one_image"] = bool(agree)
    return record
