"""One search, start to end: what the command line and `tuner.search.run` both call.

`execute` starts TensorFlow quietly (`tuner.runtime.startup`), picks the view for the output
(`tuner.ui.live.make_display`), makes the demo's data and weights when asked, prepares and runs the
search (inside `--strategy mirrored`'s scope, when given), and exports the best model; it returns
a `SearchResult`, the leaderboard with the export. The chief of a distributed search checks its
port first and ends with what it saw; a worker asks its chief nothing after its last trial and
exports nothing. Light to import: TensorFlow loads inside `execute`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config import SearchConfig
from tuner.data.demo import DEMO_FALLBACK_SETTINGS, DEMO_WEIGHTS, demo_settings
from tuner.errors import TunerError

if TYPE_CHECKING:
    from tuner.engine.spaces import Space
    from tuner.project.trials import Row
    from tuner.ui.board import Board


@dataclass(frozen=True)
class SearchResult:
    """What `tuner.search.run` returns: the search's leaderboard, and where its best model went.

    In a notebook it renders as the leaderboard's table; `records()` gives one dict per trial
    (the rows of `python -m tuner.leaderboard --csv`).
    """

    leaderboard: Board  # every trial, best first: the table the command line prints
    project_dir: Path  # trials, logs (TensorBoard), cache and export
    export: Path | None  # the best model's model.keras; None when no trial completed
    seconds: float  # wall time of the whole run

    @property
    def best(self) -> Row | None:
        """The leaderboard's first row, when a trial completed."""
        rows = self.leaderboard.rows
        return rows[0] if rows and rows[0].rank == 1 else None

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per trial, best first (`Leaderboard.records`)."""
        return self.leaderboard.records()

    def __rich__(self) -> Any:
        return self.leaderboard.__rich__()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.leaderboard._repr_mimebundle_(include, exclude)


def strategy_scope(config: SearchConfig, display: Any) -> Any:
    """`--strategy mirrored`: the scope every model of the search is built in, so each trial
    trains on all local GPUs (`tf.distribute.MirroredStrategy`); else a no-op."""
    import contextlib

    if config.strategy != "mirrored":
        return contextlib.nullcontext()
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    devices = ", ".join(strategy.extended.worker_devices)
    display.message(
        f"strategy: MirroredStrategy over {strategy.num_replicas_in_sync} device(s): {devices}"
    )
    return strategy.scope()


def execute(
    config: SearchConfig,
    space: Space,
    *,
    console: Any = None,
    debug: bool = False,
    on_trial_end: Callable[[str], None] | None = None,
) -> SearchResult:
    """Load the data, search, and export the best model; returns the leaderboard with the export.

    `space` is a `tuner.engine.spaces.Space`; `console` a rich `Console` (default: a new one on standard
    output); `debug` shows TensorFlow's start-up lines and KerasTuner's traceback of each failed
    trial; `on_trial_end` is called with each trial's id once the trial has ended (after
    KerasTuner's own end-of-trial work and `heap.trim()`).
    """
    from tuner.runtime import startup as runtime

    started = time.perf_counter()
    started_monotonic = time.monotonic()
    runtime.start(debug=debug)
    from rich.console import Console

    from tuner.ui.live import make_display

    console = console or Console()
    display = make_display(
        console, verbose=config.verbose, objective=config.objective, direction=config.direction
    )
    if config.role == "chief":
        from tuner.cluster.service import check_port, parse_address

        check_port(*parse_address(str(config.oracle_address), "--chief"))
        console.print(
            f"chief: serving the oracle on {config.oracle_address} (this address only) for "
            "workers. It has no authentication: keep the port on a trusted network or a tunnel.",
            soft_wrap=True,
            highlight=False,
        )
    if config.demo:
        from tuner.data.demo import demo_dataset

        _, note = demo_settings()
        if note and config.backbones == DEMO_FALLBACK_SETTINGS["backbones"]:
            display.message(note)
        config = config.replace(data=demo_dataset())
        if config.weights == DEMO_WEIGHTS:
            from tuner.models.pretrained import convert, describe

            config = config.replace(weights=str(convert(DEMO_WEIGHTS)))
            display.message(f"demo: weights {describe(config.weights)}, from {config.weights}")
        display.message(
            f"demo: {config.data} (generated images), backbone {', '.join(config.backbones)}"
        )
    from tuner.engine import transfer as engine
    from tuner.serve import bundle as artifact
    from tuner.ui.board import load

    try:
        with strategy_scope(config, display):
            bench = engine.prepare(config, space, display)
            tuner = engine.run_search(
                bench, debug=debug, started=started_monotonic, on_trial_end=on_trial_end
            )
    finally:
        display.close()

    stats = getattr(tuner, "chief_stats", None)
    if stats is not None:
        display.message(
            f"chief: {len(tuner.oracle.trials)} trials by {len(stats.workers)} workers "
            f"({', '.join(sorted(stats.workers)) or 'none'}) in {stats.seconds:.1f}s; idle "
            f"{stats.idle_seconds:.1f}s with no trial running; {len(stats.requeued)} trials "
            f"requeued and {len(stats.failed)} failed when their worker went silent; "
            f"{stats.refused} requests refused"
        )
    if config.role == "worker":
        # The chief may be gone once the last trial ended: ask it nothing more. It exports.
        display.message(f"worker {config.worker_id}: no trial left; the chief exports")
        return SearchResult(
            leaderboard=load(config.project_dir),
            project_dir=config.project_dir,
            export=None,
            seconds=time.perf_counter() - started,
        )
    if tuner.out_of_time and not tuner.oracle.trials:
        raise TunerError(
            f"The time budget ({config.time_budget:g}s) was spent before the first trial "
            "started (data loading and caching count too); pass a larger --time-budget. What "
            "was decoded and cached is kept, so a rerun starts faster."
        )
    board = load(config.project_dir)
    best = engine.completed_trials(tuner)
    export = None
    if best:
        export = artifact.export_best(tuner, best[0], config.resolved_export_dir)["keras"]
    elif config.verbose:
        display.warning("no trial completed, so nothing was exported; the leaderboard says why")
    return SearchResult(
        leaderboard=board,
        project_dir=config.project_dir,
        export=export,
        seconds=time.perf_counter() - started,
    )
