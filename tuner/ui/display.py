"""What the user watches while a search runs: the events a search reports, and the plain form.

`SearchDisplay` receives the search's events (trial and epoch begin and end, batches, cache
builds, messages) and keeps the state every view shows (`SearchState`). It prints them as plain
timestamped lines, one per epoch, one per trial and one per cache build, never wrapped: the form
for output that is not a terminal (a CI log, a pipe, a file). The live views of a terminal and of
a notebook are in `tuner.ui.live`, and `tuner.ui.live.make_display` picks one by where the output goes.

`verbose=0` prints nothing but warnings (the caller prints the leaderboard); `verbose=2` adds
Keras's own epoch output. Rendering only: this module imports rich and never TensorFlow, and the
engine calls it through `SearchDisplay`'s methods, so tests can pass a console that writes to a
string.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    ProgressColumn,
    Task,
)
from rich.text import Text

from tuner.hp import format_values

PHASE_NAMES = {1: "head", 2: "fine-tune"}


class RateColumn(ProgressColumn):
    """Images per second of a cache build."""

    def render(self, task: Task) -> Text:
        """The speed of a cache build, in images per second."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} img/s")


def format_logs(logs: Mapping[str, Any]) -> str:
    """An epoch's metrics on one line: "loss=0.4127  accuracy=0.8750  val_loss=...".

    Only finite numbers are shown; Keras's bookkeeping entries (the learning rate) are left out.
    """
    return "  ".join(
        f"{k}={v:.4f}"
        for k, v in logs.items()
        if k not in ("learning_rate", "lr")
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    )


def format_duration(seconds: float | None) -> str:
    """Seconds as "42s", "3m05s" or "1h02m"; "-" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class SearchState:
    """What the views show, kept up to date by `SearchDisplay`'s methods."""

    total: int | None = None  # trials the search will run; None for Hyperband (epoch-sized)
    done: int = 0  # trials finished, this run and earlier ones of a resumed search
    started: float | None = None  # time.monotonic() when this search began
    trial_seconds: list[float] = field(default_factory=list)  # this run's finished trials
    trial_id: str | None = None
    number: int | None = None  # the current trial's position, counted over the whole project
    values: dict[str, Any] = field(default_factory=dict)
    trial_started: float = 0.0
    phase: int | None = None
    epoch: int | None = None  # the epoch running now, 1-based, counted across both phases
    last: int | None = None  # the current phase's last epoch
    steps: int | None = None  # batches per epoch, when known
    step: int = 0  # batches done in this epoch
    running: dict[str, float] = field(default_factory=dict)  # this epoch's metrics so far
    last_logs: dict[str, float] = field(default_factory=dict)  # the previous epoch's logs
    best_id: str | None = None
    best_score: float | None = None
    best_values: dict[str, Any] = field(default_factory=dict)

    def eta(self, now: float) -> float | None:
        """Seconds until the search ends, from this run's mean trial time; None when unknown."""
        if self.total is None or not self.trial_seconds:
            return None
        mean = sum(self.trial_seconds) / len(self.trial_seconds)
        left = max(0, self.total - self.done)
        running = now - self.trial_started if self.trial_id is not None else 0.0
        return max(0.0, left * mean - min(running, mean))


class SearchDisplay:
    """Prints the search as plain timestamped lines, one per epoch and one per trial.

    This is the form for output that is not a terminal; `make_display` picks the live views for
    terminals and notebooks. Every line is printed whole, never wrapped, so a log keeps one event
    per line at any width.

    Args:
        console: where to print. Defaults to a console on stdout.
        verbose: 0 prints nothing but warnings, 1 the search as it goes, 2 also Keras's own
            epoch output.
        objective: the metric that ranks trials (the best-so-far line).
        direction: "max" or "min", which way `objective` improves.
    """

    wants_batches = False  # whether `batch` should be called after every training batch

    def __init__(
        self,
        *,
        console: Console | None = None,
        verbose: int = 1,
        objective: str = "val_accuracy",
        direction: str = "max",
    ) -> None:
        self.console = console or Console()
        self.verbose = verbose
        self.objective = objective
        self.direction = direction
        self.state = SearchState()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------- events

    def set_objective(self, objective: str, direction: str) -> None:
        """The metric that ranks trials, for the best-so-far line."""
        self.objective = objective
        self.direction = direction

    def search_begin(self, total: int | None, done: int = 0, *, note: str | None = None) -> None:
        """The search starts: `total` trials (None when unknown), `done` of them already run;
        `note` replaces the line that says so."""
        with self._lock:
            self.state.total = total
            self.state.done = done
            self.state.started = time.monotonic()
        self._started(note)

    def search_end(self) -> None:
        """The search is over (also after an error): the live view, if any, goes away."""
        self.close()

    def close(self) -> None:
        """Stops any live view; lines already printed stay."""

    def message(self, text: str, *, style: str | None = None) -> None:
        """Prints one line, unless quiet."""
        if self.verbose:
            self._line(text, style=style)

    def warning(self, text: str) -> None:
        """Prints a warning, even when quiet."""
        self._print(Text.assemble(("warning:", "yellow"), " ", text))

    def trial_begin(
        self, trial_id: str, number: int | None, total: int | None, values: Mapping[str, Any]
    ) -> None:
        """A trial starts, with its hyperparameters."""
        with self._lock:
            state = self.state
            state.trial_id, state.number, state.values = trial_id, number, dict(values)
            state.trial_started = time.monotonic()
            state.phase = state.epoch = state.last = state.steps = None
            state.step, state.running, state.last_logs = 0, {}, {}
            if total is not None:
                state.total = total
        self.refresh()

    def epoch_begin(self, phase: int, epoch: int, last: int, steps: int | None) -> None:
        """Epoch `epoch` of phase `phase` starts (1-based, counted across both phases; the phase
        ends at `last`); `steps` batches make it, when known."""
        with self._lock:
            state = self.state
            state.phase, state.epoch, state.last, state.steps = phase, epoch, last, steps
            state.step, state.running = 0, {}
        self.refresh()

    def batch(self, step: int, logs: Mapping[str, Any]) -> None:
        """A training batch ended: `step` batches of this epoch are done, with `logs` so far."""
        with self._lock:
            self.state.step = step
            self.state.running = {
                k: float(v) for k, v in logs.items() if isinstance(v, (int, float))
            }

    def epoch(
        self, phase: int, epoch: int, last: int, logs: Mapping[str, float], seconds: float
    ) -> None:
        """An epoch ended, with its metrics and time."""
        with self._lock:
            self.state.last_logs = dict(logs)
        if self.verbose:
            self._epoch_line(phase, epoch, last, logs, seconds)
        self.refresh()

    def trial_end(
        self,
        trial_id: str,
        status: str,
        score: float | None,
        objective: str,
        reason: str | None = None,
    ) -> None:
        """A trial ended: its best score, or why it failed."""
        with self._lock:
            state = self.state
            now = time.monotonic()
            seconds = now - state.trial_started if state.trial_id == trial_id else None
            if seconds is not None:
                state.trial_seconds.append(seconds)
            state.done += 1
            values = dict(state.values)
            if score is not None and not reason and self._improves(score):
                state.best_id, state.best_score, state.best_values = trial_id, score, values
            state.trial_id = None
        if self.verbose:
            self._trial_line(trial_id, status, score, objective, reason, seconds, values)
        self.refresh()

    @contextlib.contextmanager
    def build_progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Progress of a cache build over `total` images; yields `update(n_done)`."""
        if not self.verbose:
            yield lambda n: None
            return
        bar = self._bar_start(description, total)
        started = time.monotonic()
        done = [0]

        def update(n: int) -> None:
            done[0] = n
            self._bar_update(bar, n)

        try:
            yield update
        finally:
            self._bar_end(bar)
        seconds = time.monotonic() - started
        rate = f" ({done[0] / seconds:,.0f} img/s)" if seconds > 0 and done[0] else ""
        self._line(f"{description}: {done[0]}/{total} images in {seconds:.1f}s{rate}")

    # A live view draws a bar per build; the lines form has none.
    def _bar_start(self, description: str, total: int) -> Any:
        return None

    def _bar_update(self, bar: Any, done: int) -> None:
        pass

    def _bar_end(self, bar: Any) -> None:
        pass

    def refresh(self) -> None:
        """Redraws the live view, if any."""

    # ---------------------------------------------------------------------------- lines

    def _improves(self, score: float) -> bool:
        best = self.state.best_score
        if not math.isfinite(score):
            return False
        if best is None:
            return True
        return score > best if self.direction == "max" else score < best

    def _started(self, note: str | None = None) -> None:
        total = self.state.total
        done = self.state.done
        if note is not None:
            if self.verbose:
                self._line(note)
        elif self.verbose and (total is None or done < total):
            count = f"{total} trials" if total is not None else "trials sized by Hyperband"
            resumed = f", {done} already done" if done else ""
            self._line(f"search: {count}{resumed}")

    def _trial_label(self) -> str:
        state = self.state
        if state.number and state.total:
            return f"trial {state.trial_id} ({state.number}/{state.total})"
        return f"trial {state.trial_id}"

    def _epoch_line(
        self, phase: int, epoch: int, last: int, logs: Mapping[str, float], seconds: float
    ) -> None:
        self._line(
            f"{self._trial_label()}  phase {phase} ({PHASE_NAMES.get(phase, phase)}) epoch "
            f"{epoch}/{last}  {format_logs(logs)}  [{seconds:.1f}s]"
        )

    def _trial_line(
        self,
        trial_id: str,
        status: str,
        score: float | None,
        objective: str,
        reason: str | None,
        seconds: float | None,
        values: Mapping[str, Any],
    ) -> None:
        state = self.state
        count = f" ({state.done}/{state.total})" if state.total else ""
        took = f" in {format_duration(seconds)}" if seconds is not None else ""
        if reason:
            self._line(f"trial {trial_id}{count} {status}{took}: {reason}", style="red")
            return
        shown = f"{objective}={score:.4f}" if score is not None else f"{objective}=-"
        best = "  (best so far)" if state.best_id == trial_id else ""
        self._line(
            f"trial {trial_id}{count} {status}{took}: {shown}{best}  {format_values(values)}",
            style="green" if best else None,
        )

    def _line(self, text: str, *, style: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._print(Text(f"{stamp}  {text}", style=style or ""))

    def _print(self, text: Text) -> None:
        # soft_wrap: the line is written whole, never broken at the console's width.
        self.console.print(text, soft_wrap=True, highlight=False)
