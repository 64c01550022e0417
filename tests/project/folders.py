"""Project folders written by hand, as KerasTuner 1.4.8 and our engine write them: what the
leaderboard's tests read (fast: no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN = {
    "objective": "val_accuracy",
    "direction": "max",
    "backbones": ["xception"],
    "weights": "imagenet",
    "image_size": 96,
    "augment": False,
    "augment_views": 0,
    "oracle": "random",
    "class_names": ["cat", "dog"],
    "cache": True,
    "seed": 1,
}

TRACEBACK = """Traceback (most recent call last):
  File "/venv/keras_tuner/src/engine/base_tuner.py", line 274, in _try_run_and_update_trial
    self._run_and_update_trial(trial, *fit_args, **fit_kwargs)
  File "/work/main/tuner/engine/transfer.py", line 88, in run_trial
    raise TrialError("out of memory while building xception at 96px")
tuner.errors.TrialError: out of memory while building xception at 96px

"""


def _space() -> list[dict[str, Any]]:
    # Exactly what HyperParameters.get_config() writes for these declarations in KerasTuner 1.4.8.
    return [
        {
            "class_name": "Choice",
            "config": {
                "name": "head/units",
                "default": 64,
                "conditions": [],
                "values": [64, 128, 256],
                "ordered": True,
            },
        },
        {
            "class_name": "Float",
            "config": {
                "name": "head/dropout",
                "default": 0.0,
                "conditions": [],
                "min_value": 0.0,
                "max_value": 0.5,
                "step": 0.25,
                "sampling": "linear",
            },
        },
        {
            "class_name": "Float",
            "config": {
                "name": "head/learning_rate",
                "default": 0.0001,
                "conditions": [],
                "min_value": 0.0001,
                "max_value": 0.01,
                "step": None,
                "sampling": "log",
            },
        },
        {
            "class_name": "Int",
            "config": {
                "name": "finetune/unfreeze_blocks",
                "default": None,
                "conditions": [],
                "min_value": 0,
                "max_value": 2,
                "step": 1,
                "sampling": "linear",
            },
        },
        {
            "class_name": "Float",
            "config": {
                "name": "finetune/learning_rate",
                "default": 1e-05,
                "conditions": [],
                "min_value": 1e-05,
                "max_value": 0.001,
                "step": None,
                "sampling": "log",
            },
        },
        {
            "class_name": "Fixed",
            "config": {"name": "tuner/epochs", "conditions": [], "value": 6},
        },
    ]


def trial_state(
    trial_id: str,
    *,
    status: str,
    values: dict[str, Any],
    score: float | None = None,
    best_step: int = 0,
    message: str | None = None,
) -> dict[str, Any]:
    """Returns a trial's state in the format of KerasTuner 1.4.8's `Trial.get_state()`."""
    observations = [] if score is None else [{"value": [score], "step": best_step}]
    return {
        "trial_id": trial_id,
        "hyperparameters": {"space": _space(), "values": {**values, "tuner/epochs": 6}},
        "metrics": {
            "metrics": {"val_accuracy": {"direction": "max", "observations": observations}}
            if score is not None
            else {}
        },
        "score": score,
        "best_step": best_step,
        "status": status,
        "message": message,
    }


def summary(
    trial_id: str,
    *,
    head: tuple[int, float, float],
    finetune: tuple[int, float, float] | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Returns a summary.json as our engine writes it.

    Phases are given as (epochs, seconds, val_accuracy); `finetune=None` means no phase 2.
    """

    def phase(epochs: int, seconds: float, accuracy: float) -> dict[str, Any]:
        return {
            "epochs": epochs,
            "seconds": seconds,
            "val_accuracy": accuracy,
            "best": {"val_accuracy": accuracy, "val_loss": 0.25},
        }

    phases = [head] + ([finetune] if finetune else [])
    return {
        "trial_id": trial_id,
        "backbone": "xception",
        "phase1": phase(*head),
        "phase2": phase(*finetune) if finetune else None,
        "epochs_run": sum(p[0] for p in phases),
        "seconds": sum(p[1] for p in phases),
        "reason": reason,
        "augment": False,
    }


def hp_values(units: int, dropout: float, head_lr: float, unfreeze: int, ft_lr: float) -> dict:
    return {
        "head/units": units,
        "head/dropout": dropout,
        "head/learning_rate": head_lr,
        "finetune/unfreeze_blocks": unfreeze,
        "finetune/learning_rate": ft_lr,
    }


def write_trial(
    project: Path, state: dict[str, Any], summary_data: dict[str, Any] | None = None
) -> None:
    trial_dir = project / "trials" / f"trial_{state['trial_id']}"
    trial_dir.mkdir(parents=True)
    (trial_dir / "trial.json").write_text(json.dumps(state))
    if summary_data is not None:
        (trial_dir / "summary.json").write_text(json.dumps(summary_data))


def make_project(root: Path) -> Path:
    """`project`'s folder, written at `root`."""
    (root / "trials").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps(RUN))
    (root / "trials" / "oracle.json").write_text(json.dumps({"ongoing_trials": {"tuner0": "04"}}))
    write_trial(
        root,
        trial_state(
            "00",
            status="COMPLETED",
            values=hp_values(64, 0.25, 1e-3, 1, 1e-5),
            score=0.9125,
            best_step=5,
        ),
        summary("00", head=(4, 12.34, 0.9), finetune=(2, 125.0, 0.9125)),
    )
    write_trial(
        root,
        trial_state(
            "01",
            status="COMPLETED",
            values=hp_values(128, 0.0, 3.2e-4, 0, 1e-4),
            score=0.875,
            best_step=3,
        ),
        summary("01", head=(4, 9.5, 0.875), finetune=None),
    )
    write_trial(
        root,
        trial_state(
            "02",
            status="COMPLETED",
            values=hp_values(256, 0.5, 1e-2, 2, 2.5e-5),
            score=0.9431,
            best_step=5,
        ),
        summary("02", head=(4, 11.0, 0.9012), finetune=(2, 3725.0, 0.9431)),
    )
    write_trial(
        root,
        trial_state(
            "03",
            status="FAILED",
            values=hp_values(64, 0.25, 1e-3, 2, 1e-5),
            message=TRACEBACK,
        ),
    )
    write_trial(
        root,
        trial_state("04", status="RUNNING", values=hp_values(128, 0.25, 1e-4, 1, 1e-5)),
    )
    return root


def write_scored_trial(
    project: Path,
    trial_id: str,
    *,
    accuracy: float,
    interval: tuple[float, float] | None = None,
    kerastuner_score: float | None = None,
    units: int = 0,
    unfreeze: int = 0,
    best_epoch: int | None = None,
    epochs: tuple[int, int] = (4, 0),
    seconds: tuple[float, float] = (10.0, 0.0),
    balanced: float | None = None,
    recall: list[float | None] | None = None,
    confusion: list[list[int]] | None = None,
    images: int | None = None,
) -> None:
    """A completed trial as the engine records it since issue 25: summary.json's `best` holds
    the best epoch's metrics, with `per_class` and `interval`. `kerastuner_score` is trial.json's
    score (the oracle's, which may differ from the objective); default: the accuracy."""
    head = (epochs[0], seconds[0], accuracy)
    finetune = (epochs[1], seconds[1], accuracy) if epochs[1] else None
    data = summary(trial_id, head=head, finetune=finetune)
    data["best"] = {"val_accuracy": accuracy, "val_loss": 0.3, "loss": 0.2, "accuracy": 0.99}
    if balanced is not None:
        data["best"]["val_balanced_accuracy"] = balanced
    data["best_epoch"] = best_epoch if best_epoch is not None else sum(epochs)
    if recall is not None:
        data["per_class"] = {"recall": recall, "confusion": confusion, "images": images}
    if interval is not None:
        data["interval"] = list(interval)
    score = accuracy if kerastuner_score is None else kerastuner_score
    values = hp_values(units, 0.0, 1e-3, unfreeze, 1e-5)
    write_trial(
        project, trial_state(trial_id, status="COMPLETED", values=values, score=score), data
    )


def make_scored_project(root: Path, select: str = "one-se") -> Path:
    """A search recorded since issue 25, ranked by val_accuracy on 90 validation images.

    00 is best (0.95); 01, 02 and 03 have intervals that hold 0.95, 04's does not. The cheapest
    tied trial is 03 (no block fine-tuned, linear head); 02 unfroze a block, but its best epoch
    was in phase 1; trial.json's scores (a composite, for the oracle) would rank 04 first.
    """
    (root / "trials").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({**RUN, "select": select}))
    recall, confusion = [1.0, 0.9], [[45, 0], [4, 41]]
    trials: list[tuple[str, dict[str, Any]]] = [
        ("00", dict(accuracy=0.95, interval=(0.88, 0.98), units=64, unfreeze=2, epochs=(4, 3))),
        ("01", dict(accuracy=0.93, interval=(0.86, 0.97), units=0, unfreeze=2, epochs=(4, 3))),
        ("02", dict(accuracy=0.92, interval=(0.85, 0.96), units=128, unfreeze=1, best_epoch=3)),
        ("03", dict(accuracy=0.9, interval=(0.82, 0.95), units=0, unfreeze=0)),
        ("04", dict(accuracy=0.8, interval=(0.71, 0.87), units=0, unfreeze=0)),
    ]
    for trial_id, spec in trials:
        composite = 0.99 if trial_id == "04" else spec["accuracy"] - 0.001
        if trial_id == "02":
            spec["epochs"] = (4, 3)
        write_scored_trial(
            root,
            trial_id,
            kerastuner_score=composite,
            recall=recall,
            confusion=confusion,
            images=90,
            **spec,
        )
    return root


TEST_JSON = {
    "trial_id": "03",
    "export": "export",
    "refit": None,
    "folder": "/data/test",
    "class_names": ["cat", "dog"],
    "images": 200,
    "skipped": 1,
    "accuracy": 0.93,
    "balanced_accuracy": 0.915,
    "macro_f1": 0.91,
    "loss": 0.21,
    "ece": 0.031,
    "recall": [0.98, 0.85],
    "confusion": [[98, 2], [15, 85]],
}
