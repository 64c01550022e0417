"""The live views of a search: a terminal's, and a notebook's.

- A terminal gets `LiveDisplay`: overall progress with trials done and total, elapsed time and
  ETA; the current trial's hyperparameters, phase, epoch, batch and running metrics; the best
  trial so far; and a bar per cache build. Each finished trial leaves one line above the view, so
  the scrollback keeps the history.
- A notebook gets the same view, updated in place in one output (`NotebookDisplay`): the cell is
  never cleared, so finished trials stay readable below it. Every output it makes is a
  `RichOutput`: HTML with the styles, and plain text without colour codes.
- Anything else gets `tuner.ui.display.SearchDisplay`'s plain lines; `make_display` chooses.

Rendering only: rich, never TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tuner.hp import format_values
from tuner.ui.display import (
    PHASE_NAMES,
    RateColumn,
    SearchDisplay,
    SearchState,
    format_duration,
    format_logs,
)


class LiveDisplay(SearchDisplay):
    """The live view of a search in a terminal (see the module docstring).

    Finished trials, messages and warnings print above the view as lines without timestamps; the
    view itself is redrawn a few times a second and removed when the search ends, leaving the
    lines (and the leaderboard the caller prints next).
    """

    wants_batches = True
    refresh_per_second = 4

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._live: Any = None
        self._builds = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            auto_refresh=False,
        )

    def close(self) -> None:
        """Removes the live view."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _start(self) -> None:
        if self._live is None and self.verbose:
            from rich.live import Live

            self._live = Live(
                get_renderable=self.view,
                console=self.console,
                refresh_per_second=self.refresh_per_second,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def _started(self, note: str | None = None) -> None:
        self._start()
        if note is not None and self.verbose:
            self._line(note)

    def refresh(self) -> None:
        """Redraws the view now (it also redraws itself a few times a second)."""
        if self._live is not None:
            self._live.refresh()

    def _bar_start(self, description: str, total: int) -> Any:
        self._start()
        return self._builds.add_task(description, total=total)

    def _bar_update(self, bar: Any, done: int) -> None:
        self._builds.update(bar, completed=done)

    def _bar_end(self, bar: Any) -> None:
        self._builds.remove_task(bar)
        self.refresh()  # the bar goes before the build's line is printed above the view

    def _line(self, text: str, *, style: str | None = None) -> None:
        self._print(Text(text, style=style or ""))

    def _epoch_line(self, *args: Any) -> None:
        pass  # the view shows the epoch; the trial's line sums it up

    # ---------------------------------------------------------------------------- the view

    def view(self) -> RenderableType:
        """The view as it stands: progress, the best trial, the current trial, cache builds."""
        with self._lock:
            state = self.state
            now = time.monotonic()
            parts: list[RenderableType] = [self._progress_line(state, now)]
            if state.best_id is not None:
                parts.append(self._best_line(state))
            if state.trial_id is not None:
                parts.extend(self._trial_lines(state, now))
        if self._builds.tasks:
            parts.append(self._builds.get_renderable())
        return Group(*parts)

    def _progress_line(self, state: SearchState, now: float) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        elapsed = now - state.started if state.started is not None else None
        if state.total:
            grid.add_row(
                Text("search", style="bold cyan"),
                ProgressBar(total=state.total, completed=min(state.done, state.total), width=30),
                Text(f"{state.done}/{state.total} trials"),
                Text(f"elapsed {format_duration(elapsed)}"),
                Text(f"eta {format_duration(state.eta(now))}"),
            )
        elif state.started is None:
            grid.add_row(Text("preparing", style="bold cyan"), Text("data and backbone"))
        else:
            grid.add_row(
                Text("search", style="bold cyan"),
                Text(f"{state.done} trials done"),
                Text(f"elapsed {format_duration(elapsed)}"),
            )
        return grid

    def _best_line(self, state: SearchState) -> RenderableType:
        score = f"{state.best_score:.4f}" if state.best_score is not None else "-"
        return Text.assemble(
            ("best so far: ", "bold green"),
            f"trial {state.best_id}  {self.objective}={score}  ",
            (format_values(state.best_values), "dim"),
        )

    def _trial_lines(self, state: SearchState, now: float) -> list[RenderableType]:
        header = Text.assemble(
            (self._trial_label(), "bold"),
            f"  {format_duration(now - state.trial_started)}  ",
            (format_values(state.values), "dim"),
        )
        lines: list[RenderableType] = [header]
        if state.phase is not None:
            grid = Table.grid(padding=(0, 1))
            phase = f"phase {state.phase} ({PHASE_NAMES.get(state.phase, state.phase)})"
            epoch = f"epoch {state.epoch}/{state.last}" if state.epoch else ""
            cells: list[RenderableType] = [Text(f"  {phase}"), Text(epoch)]
            if state.steps:
                cells.append(ProgressBar(total=state.steps, completed=state.step, width=20))
                cells.append(Text(f"{state.step}/{state.steps}"))
            cells.append(Text(format_logs(state.running)))
            grid.add_row(*cells)
            lines.append(grid)
        if state.last_logs:
            lines.append(Text(f"  last epoch: {format_logs(state.last_logs)}", style="dim"))
        return lines


class NotebookDisplay(LiveDisplay):
    """The live view in a Jupyter notebook: one output updated in place, never cleared.

    Args:
        show: IPython's `display` (the default: imported when first needed); given a renderable
            with `display_id=True`, it returns a handle whose `update` replaces that output.
        min_interval: seconds between two redraws while batches run (epochs and trials redraw
            at once).
    """

    def __init__(
        self, *, show: Callable[..., Any] | None = None, min_interval: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._show = show
        self._handle: Any = None
        self._drawn = 0.0
        self.min_interval = min_interval

    def _start(self) -> None:
        if self._handle is None and self.verbose:
            self._handle = self._display(self._bundle(), display_id=True)
            self._drawn = time.monotonic()

    def _display(self, output: Any, **kwargs: Any) -> Any:
        show = self._show
        if show is None:
            from IPython.display import display as show
        return show(output, **kwargs)

    def _print(self, text: Text) -> None:
        # A line of its own below the view, never through the console: rich's notebook output
        # puts the terminal's rendering, colour codes and all, in text/plain.
        self._display(RichOutput(text, width=self.console.width, soft_wrap=True))

    def close(self) -> None:
        """Draws the view one last time and leaves it in the cell."""
        if self._handle is not None:
            self._handle.update(self._bundle())
            self._handle = None

    def refresh(self) -> None:
        """Redraws the view."""
        if self._handle is not None:
            self._handle.update(self._bundle())
            self._drawn = time.monotonic()

    def batch(self, step: int, logs: Mapping[str, Any]) -> None:
        """Records the batch; redraws at most every `min_interval` seconds."""
        super().batch(step, logs)
        if time.monotonic() - self._drawn >= self.min_interval:
            self.refresh()

    def _bundle(self) -> Any:
        return RichOutput(self.view(), width=self.console.width)


class RichOutput:
    """A rich renderable as a notebook output: HTML for notebooks, text for plain front ends.

    The text is plain, without colour codes (the HTML carries the styles).

    Args:
        renderable: what to show.
        width: the width it is laid out at. Defaults to 100.
        soft_wrap: keep each line whole instead of wrapping it at `width` (a log line). Defaults
            to False.
    """

    def __init__(
        self, renderable: RenderableType, *, width: int = 100, soft_wrap: bool = False
    ) -> None:
        self.renderable = renderable
        self.width = width
        self.soft_wrap = soft_wrap

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        console = Console(record=True, width=self.width, force_jupyter=False, file=_Null())
        console.print(self.renderable, soft_wrap=self.soft_wrap)
        text = console.export_text(clear=False)  # export_html clears what was recorded
        html = console.export_html(inline_styles=True, code_format=_HTML_FORMAT)
        return {"text/plain": text, "text/html": html}

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]


# The same <pre> rich uses for its own notebook output.
_HTML_FORMAT = (
    '<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
    "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>"
)


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def make_display(
    console: Console | None = None,
    *,
    verbose: int = 1,
    objective: str = "val_accuracy",
    direction: str = "max",
) -> SearchDisplay:
    """The view for where `console` writes: live in a terminal or a notebook, plain lines
    otherwise (a pipe, a file, a CI log)."""
    console = console or Console()
    kwargs: dict[str, Any] = {
        "console": console,
        "verbose": verbose,
        "objective": objective,
        "direction": direction,
    }
    if verbose and console.is_jupyter:
        return NotebookDisplay(**kwargs)
    if verbose and console.is_terminal and not console.is_dumb_terminal:
        return LiveDisplay(**kwargs)
    return SearchDisplay(**kwargs)
