"""The best epoch of a trial, across both phases, and what each epoch reports.

`Recorder` is the Keras callback that one trial's two `fit` calls share: it keeps the best epoch
by the objective (ties to `tuner.config.TIEBREAK`) with its trained pieces, the history of every
epoch, and stops a trial that diverged. It reports every epoch to an `EpochReport` (the display
and the epoch log); `BatchProgress` passes the running metrics of every batch to the live view.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras

from tuner.config import TIEBREAK
from tuner.errors import TrialError
from tuner.models.network import Pieces
from tuner.ui.display import SearchDisplay


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
        self.phase = 1
        self.phase_best: dict[int, dict[str, float]] = {}
        # Every epoch's logs per phase, each with its 1-based "epoch" (the learning curves).
        self.history: dict[int, list[dict[str, float]]] = {}
        self._started = 0.0

    def better(self, logs: dict[str, float], than: dict[str, float]) -> bool:
        """Whether an epoch's `logs` beat `than` on the objective; a tie goes to the better
        `TIEBREAK` metric (the leaderboard ranks trials by the same rule)."""
        sign = 1.0 if self.direction == "max" else -1.0
        a, b = sign * logs[self.objective], sign * than[self.objective]
        if a != b:
            return a > b
        tie, direction = TIEBREAK.get(self.objective, (self.objective, self.direction))
        if tie not in logs or tie not in than:
            return False
        return logs[tie] > than[tie] if direction == "max" else logs[tie] < than[tie]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Starts the epoch's clock."""
        self._started = time.perf_counter()
        if self.report is not None:
            params = getattr(self, "params", None) or {}
            self.report.begin(self.phase, epoch, params.get("steps"))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Stops a diverged trial, reports the epoch, and keeps it when it is the best so far."""
        logs = {k: float(v) for k, v in (logs or {}).items()}
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
