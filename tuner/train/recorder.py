"""The best epoch of a trial, across both phases, what each epoch measures and reports, and when
a phase stops.

One rule ranks epochs everywhere (`better`): the objective, ties broken by `tuner.config.TIEBREAK`.
`Validation` scores the model on the validation set at the end of every epoch, from one
prediction pass, with `tuner.metrics.scores`, and writes the `VAL_METRICS` into the epoch's logs;
it comes first in the callback list, so everything after it sees them. `EarlyStop` ends a phase
after `patience` epochs without improvement under `better`. `Recorder`, which one trial's two
`fit` calls share, keeps the best epoch with its trained pieces and validation predictions, the
history of every epoch, and stops a trial that diverged. It reports every epoch to an
`EpochReport` (the display and the epoch log); `BatchProgress` passes the running metrics of every
batch to the live view.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tuner.config import TIEBREAK
from tuner.errors import TrialError
from tuner.metrics import log_loss, scores
from tuner.models.network import Pieces
from tuner.ui.display import SearchDisplay

# What `Validation` logs every epoch, each as `val_<name>` (`tuner.metrics.scores`): the
# unweighted cross-entropy, accuracy, balanced accuracy, macro F1, and ROC AUC (two classes only,
# and only when the validation set holds both).
VAL_METRICS = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "auc")


def better(logs: dict[str, float], than: dict[str, float], objective: str, direction: str) -> bool:
    """Whether an epoch's `logs` beat `than` on `objective` ("max" or "min" `direction`); a tie
    goes to the better `TIEBREAK` metric, and a tie on both is no improvement. The best epoch,
    early stopping and the leaderboard's ranking all follow this rule."""
    sign = 1.0 if direction == "max" else -1.0
    a, b = sign * logs[objective], sign * than[objective]
    if a != b:
        return a > b
    tie, tie_direction = TIEBREAK.get(objective, (objective, direction))
    if tie not in logs or tie not in than:
        return False
    return logs[tie] > than[tie] if tie_direction == "max" else logs[tie] < than[tie]


class Validation(keras.callbacks.Callback):
    """Scores the model on the validation set at the end of every epoch and writes the
    `VAL_METRICS` into that epoch's logs, from one prediction pass.

    Put it first in the callback list, and do not give `fit` validation data: Keras's
    `CallbackList.on_epoch_end` hands the same logs dict to each callback in order
    (docs/design.md §2), so early stopping, the recorder and Keras's History all see what this
    wrote, and no second validation pass runs.

    Args:
        batches: the validation batches, in the order of `labels`; their labels are ignored.
        labels: the validation images' class indices.
        n_classes: the number of classes.
        recorder: told each epoch's validation probabilities (`Recorder.predictions`), to keep
            those of the best epoch.
        weights: one weight per validation image (its class's weight under `--class-weight
            balanced`), or None. With them `val_loss` is the weighted mean cross-entropy, the
            loss the model trains on: the tiebreak of the objective (early stopping, the best
            epoch, the oracles) then weighs a rare class's few images as much as a common
            class's many, instead of letting the common classes decide every tie.
    """

    def __init__(
        self,
        batches: Any,
        labels: np.ndarray,
        n_classes: int,
        recorder: Recorder,
        weights: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.batches = batches
        self.labels = np.asarray(labels, dtype=int).reshape(-1)
        self.n_classes = n_classes
        self.recorder = recorder
        self.weights = None if weights is None else np.asarray(weights, "float64").reshape(-1)

    def measure(self, model: keras.Model) -> dict[str, float]:
        """The `val_` metrics of `model` as it stands; its probabilities go to the recorder."""
        probabilities = np.asarray(model.predict(self.batches, verbose=0))
        if len(probabilities) != len(self.labels):
            raise ValueError(
                f"Expected {len(self.labels)} validation predictions; received "
                f"{len(probabilities)}."
            )
        figures = scores(probabilities, self.labels, self.n_classes)
        if self.weights is not None:
            figures["loss"] = log_loss(probabilities, self.labels, self.weights)
        self.recorder.predictions = probabilities
        return {
            f"val_{name}": float(figures[name])
            for name in VAL_METRICS
            if figures.get(name) is not None
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Writes the epoch's validation metrics into `logs`, for the callbacks after this one."""
        if logs is not None:
            logs.update(self.measure(self.model))


class EarlyStop(keras.callbacks.Callback):
    """Stops a phase after `patience` epochs in a row without improvement under `better` (the
    objective, ties broken by `TIEBREAK`): on a plateau of the objective, an epoch whose
    tiebreak still improves counts as progress. Make a new one per phase, as its best is the
    phase's.

    Args:
        objective: the metric that ranks epochs.
        direction: "max" or "min".
        patience: epochs without improvement before the phase stops (at least 1).
    """

    def __init__(self, objective: str, direction: str, patience: int) -> None:
        super().__init__()
        self.objective = objective
        self.direction = direction
        self.patience = patience
        self.best: dict[str, float] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None  # counted from 0, as Keras counts

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Counts the epoch as an improvement or not; stops training after `patience` without."""
        logs = dict(logs or {})
        if logs.get(self.objective) is None:
            return  # not measured this epoch: neither progress nor a wasted epoch
        if self.best is None or better(logs, self.best, self.objective, self.direction):
            self.best = logs
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True


class Recorder(keras.callbacks.Callback):
    """Tracks the best epoch across both phases, keeps its weights, and stops on divergence.

    One recorder serves both phases so that the checkpoint is always the epoch the score came
    from (docs/design.md §3).

    Args:
        objective: the metric that ranks epochs.
        direction: "max" or "min".
        capture: returns the trained pieces as they stand (called at each new best epoch).
        report: shows and logs every epoch (`EpochReport`). Defaults to none: nothing reported.
        on_batch: called after every training batch with (batches done, running logs), from
            Keras's callback thread; None (the default) adds no per-batch work at all.
    """

    def __init__(
        self,
        objective: str,
        direction: str,
        capture: Callable[[], Pieces],
        report: EpochReport | None = None,
        on_batch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.objective = objective
        self.direction = direction
        self.capture = capture
        self.report = report
        self.on_batch = on_batch
        self.best_logs: dict[str, float] | None = None
        self.best_epoch: int | None = None  # 1-based, counted across both phases
        self.best_pieces: Pieces | None = None
        # The validation probabilities of the epoch being ended (set by `Validation` before the
        # recorder sees the epoch), and those of the best epoch: its per-class figures.
        self.predictions: np.ndarray | None = None
        self.best_predictions: np.ndarray | None = None
        self.phase = 1
        self.phase_best: dict[int, dict[str, float]] = {}
        # Every epoch's logs per phase, each with its 1-based "epoch" (the learning curves).
        self.history: dict[int, list[dict[str, float]]] = {}
        self._started = 0.0

    def better(self, logs: dict[str, float], than: dict[str, float]) -> bool:
        """Whether an epoch's `logs` beat `than` (`better`, with this recorder's objective)."""
        return better(logs, than, self.objective, self.direction)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts the epoch's clock."""
        self._started = time.perf_counter()
        if self.report is not None:
            params = getattr(self, "params", None) or {}
            self.report.begin(self.phase, epoch, params.get("steps"))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Stops a diverged trial, reports the epoch, and keeps it when it is the best so far."""
        logs = {k: float(v) for k, v in (logs or {}).items()}
        predictions, self.predictions = self.predictions, None  # this epoch's, if measured
        for name in ("loss", "val_loss"):
            if name in logs and not math.isfinite(logs[name]):
                raise TrialError(
                    f"diverged: {name} became {logs[name]} at epoch {epoch + 1} (phase "
                    f"{self.phase}); a lower learning rate may help"
                )
        self.history.setdefault(self.phase, []).append({"epoch": epoch + 1, **logs})
        if self.report is not None:
            self.report.end(self.phase, epoch, logs, time.perf_counter() - self._started)
        value = logs.get(self.objective)
        if value is None:
            return
        phase_best = self.phase_best.get(self.phase)
        if phase_best is None or self.better(logs, phase_best):
            self.phase_best[self.phase] = logs
        if self.best_logs is None or self.better(logs, self.best_logs):
            self.best_logs = logs
            self.best_epoch = epoch + 1
            self.best_pieces = self.capture()
            self.best_predictions = predictions


class EpochReport:
    """Shows every epoch of one trial and hands it to the epoch log: what a `Recorder` reports.

    Args:
        display: where epochs are shown.
        epoch_log: called with (phase, epoch counted from 1, logs); None: no log.
        last_epochs: the last epoch of each phase, as the display shows "epoch 3/4".
    """

    def __init__(
        self,
        display: SearchDisplay,
        epoch_log: Callable[[int, int, dict[str, float]], None] | None,
        last_epochs: dict[int, int],
    ) -> None:
        self.display = display
        self.epoch_log = epoch_log
        self.last_epochs = last_epochs

    def begin(self, phase: int, epoch: int, steps: int | None) -> None:
        """Before an epoch (counted from 0), with its number of batches when known."""
        self.display.epoch_begin(phase, epoch + 1, self.last_epochs[phase], steps)

    def end(self, phase: int, epoch: int, logs: dict[str, float], seconds: float) -> None:
        """After an epoch (counted from 0)."""
        self.display.epoch(phase, epoch + 1, self.last_epochs[phase], logs, seconds)
        if self.epoch_log is not None:
            self.epoch_log(phase, epoch + 1, logs)


class BatchProgress(keras.callbacks.Callback):
    """Passes every training batch's running logs to `on_batch(batches done, logs)`.

    Keras has already turned the logs into Python numbers by then (docs/design.md §6), so this
    adds one Python call per step. Marked safe for asynchronous dispatch, which thread-safe
    backends use.
    """

    async_safe = True

    def __init__(self, on_batch: Callable[[int, dict[str, Any]], None]) -> None:
        super().__init__()
        self.on_batch = on_batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Reports the batch."""
        self.on_batch(batch + 1, dict(logs or {}))
