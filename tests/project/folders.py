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
