"""TensorBoard logs of a search, under `PROJECT_DIR/logs`: `tensorboard --logdir PROJECT_DIR/logs`.

    logs/
      <events>                    the HParams experiment: every searched hyperparameter and the
                                  metrics the dashboard shows (`write_experiment`)
      trial_<id>/<events>         the trial's hyperparameters (one HParams session) and its best
                                  objective, `best_<objective>`, at the epoch the checkpoint holds
      trial_<id>/train/<events>   `epoch_loss`, `epoch_accuracy` and `epoch_phase` per epoch
      trial_<id>/validation/...   `epoch_val_loss` and `epoch_val_accuracy` as Keras names them
                                  (`epoch_loss`, `epoch_accuracy`)

Both phases share one epoch axis: phase 2's epochs go on from phase 1's last (the step of every
scalar is the epoch, counted from 1 across both phases), and `epoch_phase` says which phase each
epoch belongs to.

The summaries are written here, not by Keras's `TensorBoard` and HParams callbacks: a trial runs
two `fit` calls (one per phase), and the HParams callback refuses a second `fit`
(docs/design.md §3), while Keras's callback would start each phase's axis at its own first epoch
in a new file. Writing per epoch from the trial's own epoch hook keeps one axis and one session
per trial, on the cached and the full-model path alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api

from tuner.hp import searched

LOGS_DIR = "logs"
PHASE_TAG = "epoch_phase"


def best_tag(objective: str) -> str:
    """The tag of a trial's best objective value, e.g. `best_val_accuracy`."""
    return f"best_{objective}"


def write_experiment(root: Path, space: Iterable[Any], objective: str) -> None:
    """Writes the HParams experiment: one column per searched hyperparameter of `space` (KerasTuner
    hyperparameter objects), and the metrics: the best objective, then the last epoch's
    validation and training metrics."""
    hparams = [
        hp_api.HParam(item.name, _domain(item))
        for item in space
        if item.name in searched({item.name: None})
    ]
    metrics = [
        hp_api.Metric(best_tag(objective), display_name=f"best {objective}"),
        hp_api.Metric("epoch_accuracy", group="validation", display_name="val_accuracy (last)"),
        hp_api.Metric("epoch_loss", group="validation", display_name="val_loss (last)"),
        hp_api.Metric("epoch_accuracy", group="train", display_name="accuracy (last)"),
        hp_api.Metric("epoch_loss", group="train", display_name="loss (last)"),
    ]
    root.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(root))
    try:
        with writer.as_default():
            hp_api.hparams_config(hparams=hparams, metrics=metrics)
    finally:
        writer.close()


def _domain(item: Any) -> Any:
    # KerasTuner's hyperparameter classes, told apart by what they hold: Choice has `values`,
    # Int and Float `min_value`/`max_value` (Int's are ints), Boolean and Fixed have no range.
    values = getattr(item, "values", None)
    if values:
        return hp_api.Discrete(list(values))
    low, high = getattr(item, "min_value", None), getattr(item, "max_value", None)
    if low is None or high is None:
        return None
    if isinstance(low, int) and isinstance(high, int) and type(item).__name__ == "Int":
        return hp_api.IntInterval(low, high)
    return hp_api.RealInterval(float(low), float(high))


class TrialLog:
    """One trial's TensorBoard logs; `close` it when the trial ends.

    Args:
        root: `PROJECT_DIR/logs`.
        trial_id: KerasTuner's trial id.
        values: the trial's hyperparameter values (KerasTuner's `tuner/...` ones are left out).
        objective: the metric that ranks trials.
    """

    def __init__(
        self, root: Path, trial_id: str, values: Mapping[str, Any], objective: str
    ) -> None:
        self.directory = Path(root) / f"trial_{trial_id}"
        self.objective = objective
        self._writers = {
            name: tf.summary.create_file_writer(str(self.directory / name))
            for name in ("", "train", "validation")
        }
        hparams = {
            name: value
            for name, value in searched(values).items()
            if isinstance(value, (bool, int, float, str))
        }
        with self._writers[""].as_default():
            hp_api.hparams(hparams, trial_id=trial_id, start_time_secs=int(time.time()))

    def epoch(self, phase: int, epoch: int, logs: Mapping[str, float]) -> None:
        """Writes one epoch's metrics; `epoch` counts from 1 across both phases."""
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[len("val_") :]: v for k, v in logs.items() if k.startswith("val_")}
        for name, scalars in (("train", train), ("validation", val)):
            with self._writers[name].as_default():
                for key, value in scalars.items():
                    if key in ("learning_rate", "lr") and name == "validation":
                        continue
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        tf.summary.scalar(f"epoch_{key}", float(value), step=epoch)
        with self._writers["train"].as_default():
            tf.summary.scalar(PHASE_TAG, float(phase), step=epoch)

    def close(self, best: Mapping[str, float] | None = None, best_epoch: int | None = None) -> None:
        """Writes the trial's best objective (when it has one) and closes the files."""
        try:
            value = None if best is None else best.get(self.objective)
            if value is not None and math.isfinite(value):
                with self._writers[""].as_default():
                    tf.summary.scalar(best_tag(self.objective), value, step=best_epoch or 0)
        finally:
            for writer in self._writers.values():
                writer.close()
