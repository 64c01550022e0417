"""One search, start to end: the engine's one entry point, which the command line and
`tuner.search.run` both call.

`execute` starts TensorFlow quietly (`tuner.runtime.startup`), picks the view for the output
(`tuner.ui.live.make_display`), makes the demo's data and weights when asked, prepares the search
(`tuner.engine.transfer.prepare`) and runs it (inside `--strategy mirrored`'s scope, when given),
and exports the best model; it returns a `SearchResult`, the leaderboard with the export.

Running the prepared search is `_search`: a project that holds a search with other settings is
refused before anything is written, `run.json` is written, the roles of a distributed search are
set up, and the `TransferTuner` runs until its trials or its time budget are spent. A
`--test-data` folder is checked against the training classes before any trial, and read again
only after the export, to score it. The chief of a distributed search checks its port first and
ends with what it saw; a worker asks its chief nothing after its last trial and exports nothing.
Light to import: TensorFlow loads inside `execute`.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config import CONFIG_FILE, SearchConfig, config_to_json
from tuner.data.demo import DEMO_FALLBACK_SETTINGS, DEMO_WEIGHTS, demo_settings
from tuner.errors import ConfigError, TunerError

if TYPE_CHECKING:
    from tuner.engine.spaces import Space
    from tuner.engine.transfer import TransferTuner, Workbench
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
    # The exported model's scores on --test-data (PROJECT_DIR/test.json); None without one.
    test: dict[str, Any] | None = None

    @property
    def best(self) -> Row | None:
        """The leaderboard's first row, when a trial completed."""
        rows = self.leaderboard.rows
        return rows[0] if rows and rows[0].rank == 1 else None

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per trial, best first (`Ranking.records`)."""
        return self.leaderboard.records()

    def __rich__(self) -> Any:
        return self.leaderboard.__rich__()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.leaderboard._repr_mimebundle_(include, exclude)


def execute(
    config: SearchConfig,
    space: Space,
    *,
    console: Any = None,
    debug: bool = False,
    on_trial_end: Callable[[str], None] | None = None,
) -> SearchResult:
    """Load the data, search, and export the best model; returns the leaderboard with the export.

    Args:
        config: the search configuration.
        space: the search space (`tuner.engine.spaces.Space`).
        console: a rich `Console`. Defaults to a new one on standard output.
        debug: show TensorFlow's start-up lines and KerasTuner's traceback of each failed trial.
            Defaults to `False`.
        on_trial_end: called with each trial's id once the trial has ended: after KerasTuner's
            own end-of-trial work and after `tuner.runtime.heap.trim()`. Defaults to none.

    Raises:
        TunerError: the search cannot start or go on; finished trials are kept.
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
        _announce_chief(config, console)
    if config.demo:
        config = _demo(config, display)
    from tuner.engine.transfer import prepare

    if config.test_data is not None and config.role != "worker":
        # A missing or empty test folder is found before the training images are decoded; its
        # classes are checked against theirs in `_search`.
        from tuner.serve.evaluate import scan_test_set

        scan_test_set(config.test_data)
    try:
        with _strategy_scope(config, display):
            bench = prepare(config, space, display)
            tuner = _search(
                bench, debug=debug, started=started_monotonic, on_trial_end=on_trial_end
            )
    finally:
        display.close()
    return _result(tuner, config, display, started)


def _announce_chief(config: SearchConfig, console: Any) -> None:
    """Checks the chief's port, and says where it serves and that the service is open."""
    from tuner.cluster.address import check_port, parse_address

    check_port(*parse_address(str(config.oracle_address), "--chief"))
    console.print(
        f"chief: serving the oracle on {config.oracle_address} (this address only) for "
        "workers. It has no authentication: keep the port on a trusted network or a tunnel.",
        soft_wrap=True,
        highlight=False,
    )


def _demo(config: SearchConfig, display: Any) -> SearchConfig:
    """`--demo`: the configuration with the demo's generated images and, for the demo's weights,
    the converted weights file."""
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
    return config


def _strategy_scope(config: SearchConfig, display: Any) -> Any:
    """`--strategy mirrored`: the scope every model of the search is built in, so each trial
    trains on all local GPUs (`tf.distribute.MirroredStrategy`); else a no-op."""
    if config.strategy != "mirrored":
        return contextlib.nullcontext()
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    devices = ", ".join(strategy.extended.worker_devices)
    display.message(
        f"strategy: MirroredStrategy over {strategy.num_replicas_in_sync} device(s): {devices}"
    )
    return strategy.scope()


def _search(
    bench: Workbench,
    *,
    debug: bool = False,
    started: float | None = None,
    on_trial_end: Callable[[str], None] | None = None,
) -> TransferTuner:
    """Runs the search on a prepared `Workbench`; returns the `TransferTuner`.

    A project that holds a search with other settings (`tuner.project.layout.RESUME_SETTINGS`) is
    refused with a message naming the difference, before anything is written.

    Args:
        bench: what the search shares (`tuner.engine.transfer.prepare`).
        debug: let KerasTuner print the traceback of every failed trial. Defaults to `False`: a
            failed trial shows its one-line reason, and its traceback stays in its trial.json.
        started: `time.monotonic()` when the command started, from which `--time-budget` counts.
            Defaults to now.
        on_trial_end: called with each trial's id once it has ended (`execute`). Defaults to none.

    Raises:
        TunerError: the search cannot go on; finished trials are kept.
    """
    from keras_tuner.src import config as kt_config

    from tuner.cluster import sharing

    # KerasTuner 1.4.8 ships with DEBUG = True, which prints a full traceback on stderr for every
    # failed trial; there is no public switch.
    kt_config.DEBUG = debug
    config = bench.config
    if config.test_data is not None and config.role != "worker":
        # Scored only at the end, but a wrong folder is found before any trial runs.
        from tuner.serve.evaluate import load_test_set

        load_test_set(config.test_data, bench.data.class_names, (bench.data.train, bench.data.val))
    _record_settings(bench)
    _set_roles(config)
    with (
        sharing.worker_presence(config.project_dir, str(config.worker_id))
        if config.role == "worker"
        else contextlib.nullcontext()
    ):
        return _run_tuner(bench, started, on_trial_end)


def _record_settings(bench: Workbench) -> None:
    """Checks a resumed search's settings against its `run.json` (and a worker's against its
    chief's), then writes `run.json` and the configuration, unless this is a worker."""
    from tuner.cluster import sharing
    from tuner.project.layout import (
        RUN_FILE,
        atomic_write_text,
        changed_settings,
        read_run,
        run_settings,
    )

    config, features = bench.config, bench.features
    settings = run_settings(
        config,
        space=bench.space,
        class_names=bench.data.class_names,
        image_sizes=features.image_sizes,
        weights={name: features.weights(name).origin for name in config.backbones},
    )
    sharing.check_role(config, settings, bench.display.message)
    if config.role == "worker":  # the chief owns run.json: a worker only reads it
        return
    if not config.overwrite and any(config.trials_dir.glob("trial_*")):
        changes = changed_settings(read_run(config.project_dir) or {}, settings)
        if changes:
            raise ConfigError(
                f"{config.project_dir} holds a search with other settings: "
                f"{'; '.join(changes)}. Pass --overwrite to start over, or --project-dir "
                "DIR to keep both searches."
            )
    atomic_write_text(config.project_dir / RUN_FILE, json.dumps(settings, indent=2))
    atomic_write_text(config.project_dir / CONFIG_FILE, config_to_json(config))


def _set_roles(config: SearchConfig) -> None:
    """Sets KerasTuner's environment for this process's role in a distributed search, or clears
    it for a search of one process."""
    from tuner.cluster import address, sharing

    if config.role == "single":
        address.clear_environment()
        return
    sharing.check_locks(config.project_dir)
    host, port = address.parse_address(str(config.oracle_address), f"--{config.role}")
    address.set_environment(config.role, host, port, config.worker_id)


def _run_tuner(
    bench: Workbench, started: float | None, on_trial_end: Callable[[str], None] | None
) -> TransferTuner:
    """Makes the `TransferTuner` (KerasTuner reloads a project it finds) and runs its search."""
    import keras_tuner as kt

    from tuner.engine.oracles import make_oracle
    from tuner.engine.transfer import TransferTuner
    from tuner.project.layout import first_line
    from tuner.project.tblogs import LOGS_DIR, write_experiment

    config, display = bench.config, bench.display
    deadline = None
    if config.time_budget is not None:
        deadline = (time.monotonic() if started is None else started) + config.time_budget
    # KerasTuner prints "Reloading Tuner from ..." on a resume: shown through the display.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tuner = TransferTuner(
            make_oracle(config), bench, deadline=deadline, on_trial_end=on_trial_end
        )
    for line in printed.getvalue().splitlines():
        if line.strip():
            display.message(line.strip())
    if config.role != "worker":
        write_experiment(
            config.project_dir / LOGS_DIR, tuner.oracle.get_space().space, config.objective
        )
        # KerasTuner's own printing (and its notebook display, which clears the cell) stays off:
        # the display shows the search.
        tuner.oracle.verbose = 0
    total, done, note = _progress(tuner, config)
    display.search_begin(total, done, note=note)
    try:
        tuner.search(verbose=0)
    except kt.errors.FatalError as error:
        cause = error.__cause__
        if isinstance(cause, TunerError):
            raise cause from error
        raise TunerError(
            f"The search stopped: {first_line(error)}. Finished trials are "
            "kept; fix the cause and rerun the same command to resume."
        ) from error
    finally:
        display.search_end()
    if tuner.out_of_time:
        display.message(
            f"time budget of {config.time_budget:g}s spent: no further trial started; rerun the "
            "same command (with a larger --time-budget) to continue the search"
        )
    return tuner


def _progress(tuner: TransferTuner, config: SearchConfig) -> tuple[int | None, int, str | None]:
    """What the display starts the search with: how many trials in all (None: unknown), how many
    are done already, and a note on this process's role."""
    if config.role == "chief":
        return None, 0, f"chief: waiting for workers to run {config.max_trials} trials"
    if config.role == "worker":  # the chief shares the trials out
        note = f"worker {config.worker_id}: running trials for the chief at {config.oracle_address}"
        return None, 0, note
    done = sum(1 for t in tuner.oracle.trials.values() if t.status != "RUNNING")
    return (None if config.oracle == "hyperband" else config.max_trials), done, None


def _result(
    tuner: TransferTuner, config: SearchConfig, display: Any, started: float
) -> SearchResult:
    """The leaderboard, with the best trial exported (by any process but a worker): calibrated,
    and scored once on `--test-data` when given."""
    from tuner.engine.transfer import completed_trials
    from tuner.project.layout import TEST_FILE
    from tuner.serve.bundle import export_trial
    from tuner.ui.board import load

    if tuner.chief_stats is not None:
        display.message(_chief_summary(tuner, tuner.chief_stats))
    if config.role == "worker":
        # The chief may be gone once the last trial ended: ask it nothing more. It exports.
        display.message(f"worker {config.worker_id}: no trial left; the chief exports")
        board = load(config.project_dir)
        return SearchResult(board, config.project_dir, None, time.perf_counter() - started)
    if tuner.out_of_time and not tuner.oracle.trials:
        raise TunerError(
            f"The time budget ({config.time_budget:g}s) was spent before the first trial "
            "started (data loading and caching count too); pass a larger --time-budget. What "
            "was decoded and cached is kept, so a rerun starts faster."
        )
    best = completed_trials(tuner)
    export = test = None
    if best:
        # Calibrated on the trial's validation images; scored on the test images only now,
        # once, on the written model (`tuner.serve.bundle`).
        export = export_trial(
            tuner, best[0], config.resolved_export_dir, test_data=config.test_data
        )["keras"]
        if config.test_data is not None:
            test = json.loads((config.project_dir / TEST_FILE).read_text())
    elif config.verbose:
        display.warning("no trial completed, so nothing was exported; the leaderboard says why")
    # Loaded after the export, so that the leaderboard can show the test figures.
    board = load(config.project_dir)
    return SearchResult(board, config.project_dir, export, time.perf_counter() - started, test)


def _chief_summary(tuner: TransferTuner, stats: Any) -> str:
    """The chief's closing line: what it saw of its workers (`tuner.cluster.chief.ChiefStats`)."""
    return (
        f"chief: {len(tuner.oracle.trials)} trials by {len(stats.workers)} workers "
        f"({', '.join(sorted(stats.workers)) or 'none'}) in {stats.seconds:.1f}s; idle "
        f"{stats.idle_seconds:.1f}s with no trial running; {len(stats.requeued)} trials "
        f"requeued and {len(stats.failed)} failed when their worker went silent; "
        f"{stats.refused} requests refused"
    )
