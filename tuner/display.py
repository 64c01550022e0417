"""What the user watches while a search runs: trial headers, epoch lines and cache-build bars.

Rendering only: this module imports rich and never TensorFlow, and the engine calls it through the
small `SearchDisplay` interface, so tests can pass a console that writes to a string.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from tuner.hp import format_values


class RateColumn(ProgressColumn):
    """Images per second of a cache build."""

    def render(self, task: Task) -> Text:
        """The speed of a cache build, in images per second."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} img/s")


class SearchDisplay:
    """Prints the search as it goes.

    Args:
        console: where to print. Defaults to a console on stdout.
        verbose: 0 prints nothing but errors, 1 a line per epoch, 2 also Keras's own output.
    """

    def __init__(self, *, console: Console | None = None, verbose: int = 1) -> None:
        self.console = console or Console()
        self.verbose = verbose

    def message(self, text: str, *, style: str | None = None) -> None:
        """Prints one line, unless quiet."""
        if self.verbose:
            self.console.print(text, style=style, highlight=False)

    def warning(self, text: str) -> None:
        """Prints a warning, even when quiet."""
        self.console.print(f"[yellow]warning:[/yellow] {text}", highlight=False)

    def trial_begin(
        self, trial_id: str, number: int | None, total: int | None, values: Mapping[str, Any]
    ) -> None:
        """Announces a trial and its hyperparameters."""
        if not self.verbose:
            return
        count = f" ({number}/{total})" if number and total else f" (#{number})" if number else ""
        self.console.rule(f"trial {trial_id}{count}", style="cyan")
        self.console.print(format_values(values), highlight=False)

    def epoch(
        self, phase: int, epoch: int, last: int, logs: Mapping[str, float], seconds: float
    ) -> None:
        """Prints one epoch's metrics and time."""
        if not self.verbose:
            return
        shown = "  ".join(
            f"{k}={v:.4f}" for k, v in logs.items() if isinstance(v, float) and math.isfinite(v)
        )
        label = "head" if phase == 1 else "fine-tune"
        self.console.print(
            f"  phase {phase} ({label}) epoch {epoch}/{last}  {shown}  [{seconds:.1f}s]",
            highlight=False,
        )

    def trial_end(
        self,
        trial_id: str,
        status: str,
        score: float | None,
        objective: str,
        reason: str | None = None,
    ) -> None:
        """Prints how a trial ended: its best score, or why it failed."""
        if not self.verbose:
            return
        if reason:
            self.console.print(
                f"  trial {trial_id} {status}: {reason}", style="red", highlight=False
            )
        elif score is not None:
            self.console.print(
                f"  trial {trial_id} {status}: best {objective}={score:.4f}",
                style="green",
                highlight=False,
            )

    @contextlib.contextmanager
    def build_progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar for a cache build; yields `update(n_done)`."""
        if not self.verbose:
            yield lambda n: None
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.update(task, completed=n)
