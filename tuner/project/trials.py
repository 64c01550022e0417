"""A search read back from its project directory: its trials, ranked.

This module owns reading a finished or running search from disk. It reads the JSON files directly
(`run.json`, `trials/trial_<id>/trial.json` as KerasTuner 1.4.8 writes it, and our engine's
`trials/trial_<id>/summary.json` through `tuner.project.layout.TrialSummary`) and never imports
TensorFlow, Keras or KerasTuner: importing `keras_tuner` loads TensorFlow, which would make every
look at a running search cost seconds. `read_ranking` gives a `Ranking`, plain data;
`tuner.ui.board` shows it (its `Board` is a `Ranking` that renders itself).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.config import TIEBREAK
from tuner.errors import TunerError
from tuner.hp import schedule, searched
from tuner.project.csvtext import read_csv as read_csv  # re-exported: the reader of to_csv
from tuner.project.csvtext import write_csv
from tuner.project.layout import (
    RUN_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    TrialSummary,
    failure_reason,
    number,
    one_line,
)

__all__ = [
    "Ranking",
    "Row",
    "read_ranking",
    "merge",
    "read_csv",
    "rows_from_json",
    "to_csv",
    "to_json",
]

# KerasTuner's trial statuses, and ours for a trial.json that cannot be read.
COMPLETED = "COMPLETED"
RUNNING = frozenset({"RUNNING", "IDLE"})
FAILED = frozenset({"FAILED", "INVALID"})
UNREADABLE = "UNREADABLE"


@dataclass(frozen=True)
class Row:
    """One trial of the search, as the leaderboard shows it."""

    rank: int | None  # 1.. for completed trials in objective order; None for every other trial
    trial_id: str  # KerasTuner's id, e.g. "03"; the folder is trials/trial_<id>
    status: str  # KerasTuner's status ("COMPLETED", "RUNNING", "FAILED", ...) or "UNREADABLE"
    score: float | None  # the objective's best value, as KerasTuner recorded it
    val_accuracy_head: float | None  # after phase 1 (new head on the frozen backbone)
    val_accuracy_finetune: float | None  # after phase 2; None when the trial had no phase 2
    hyperparameters: dict[str, Any]  # the searched values, without KerasTuner's `tuner/...` ones
    epochs: int | None  # epochs run over both phases; None without summary.json
    seconds_head: float | None  # wall time of phase 1
    seconds_finetune: float | None  # wall time of phase 2
    reason: str | None  # one line saying why the trial failed (at most about 100 characters)
    # KerasTuner's `tuner/...` values (Hyperband's `tuner/epochs`, `tuner/trial_id`, ...), kept
    # apart because they describe the schedule, not the model, and would crowd the table.
    tuner_values: dict[str, Any] = field(default_factory=dict)
    # The tie-breaking metric at the trial's best epoch (`TIEBREAK`), from summary.json.
    tiebreak: float | None = None
    # Why phase 2 was skipped (`--finetune-contenders`); None when it ran or was never planned.
    finetune_skipped: str | None = None
    # The project the trial belongs to (its folder's name); several when leaderboards are merged.
    project: str | None = None
    # Each phase's metrics at its best epoch (loss, accuracy, val_loss, val_accuracy).
    metrics_head: dict[str, float] = field(default_factory=dict)
    metrics_finetune: dict[str, float] = field(default_factory=dict)
    epochs_head: int | None = None  # epochs run in phase 1; None without summary.json
    epochs_finetune: int | None = None  # epochs run in phase 2 (0 when it did not run)
    best_epoch: int | None = None  # the epoch the checkpoint holds, from 1 across both phases
    # The objective after every epoch of each phase: the learning curve.
    curve_head: tuple[float | None, ...] = ()
    curve_finetune: tuple[float | None, ...] = ()

    @property
    def curve(self) -> tuple[float | None, ...]:
        """The objective after every epoch, both phases on one axis."""
        return self.curve_head + self.curve_finetune

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """A row from `dataclasses.asdict` (the rows of `to_json`)."""
        data = dict(data)
        for name in ("curve_head", "curve_finetune"):
            data[name] = tuple(data.get(name) or ())
        return cls(**data)


@dataclass(frozen=True)
class Ranking:
    """All trials of one search (or of several, `merge`d), in leaderboard order: what
    `read_ranking` read, as plain data. `tuner.ui.board.Board` is the one that shows itself."""

    objective: str  # the metric trials are ranked by, e.g. "val_accuracy"
    direction: str  # "max" or "min"
    rows: tuple[Row, ...]  # completed by score, then running, then failed and others
    run: dict[str, Any]  # the contents of run.json; empty when the file is missing
    # Merged leaderboards (`merge`): each project's name and its run.json. One project: its own.
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def projects(self) -> tuple[str, ...]:
        """The projects the rows come from, in the order they were given."""
        return tuple(self.runs)

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row, best first, every row with the same keys (`record_columns`):
        what `to_csv` writes and `read_csv` reads back."""
        columns = record_columns(self)
        return [{name: _record_value(row, name) for name in columns} for row in self.rows]


# --------------------------------------------------------------------------------------------
# Reading


def read_ranking(project_dir: str | os.PathLike[str]) -> Ranking:
    """Reads a search's project directory and ranks its trials.

    Args:
        project_dir: The folder the search wrote (the one holding `run.json` and `trials/`).

    Returns:
        The leaderboard: completed trials ranked by the objective (ties broken by `TIEBREAK`,
        then by trial id), then
        running trials, then failed, invalid and unreadable ones, all unranked.

    Raises:
        TunerError: The folder is missing, holds no search, or `run.json` cannot be read.
    """
    root = Path(project_dir)
    trials_dir = root / TRIALS_DIR
    if not trials_dir.is_dir():
        raise TunerError(
            f"no search found in {root}: expected {trials_dir}{os.sep}; "
            "run python -m tuner.search first"
        )
    run = _read_run(root / RUN_FILE)
    states: list[tuple[str, dict[str, Any] | None, str | None]] = []
    for trial_dir in sorted(trials_dir.glob("trial_*")):
        trial_file = trial_dir / TRIAL_FILE
        # KerasTuner creates the folder a moment before it writes trial.json; a folder without it
        # is not a trial yet.
        if not trial_file.is_file():
            continue
        trial_id = trial_dir.name[len("trial_") :]
        try:
            state = _read_json(trial_file)
            if not isinstance(state, dict):
                raise ValueError(f"expected a JSON object, got {type(state).__name__}")
        except (OSError, ValueError) as error:
            states.append((trial_id, None, f"{TRIAL_FILE} unreadable: {error}"))
            continue
        states.append((trial_id, state, None))

    objective = run.get("objective") or _objective_from_trials(states) or "score"
    if not isinstance(objective, str):
        raise TunerError(
            f"{root / RUN_FILE}: `objective` must be a metric name, but got {objective!r}"
        )
    direction = run.get("direction") or _direction_from_trials(objective, states) or "max"
    if direction not in ("max", "min"):
        raise TunerError(
            f"{root / RUN_FILE}: `direction` must be 'max' or 'min', but got {direction!r}"
        )

    name = project_name(root)
    rows = [
        dataclasses.replace(
            _make_row(trial_id, state, trials_dir / f"trial_{trial_id}", error, objective),
            project=name,
        )
        for trial_id, state, error in states
    ]
    return Ranking(
        objective=objective,
        direction=direction,
        rows=_rank(rows, direction, objective),
        run=run,
        runs={name: run},
    )


def project_name(root: Path) -> str:
    """How a project is named in the leaderboard: its folder's name."""
    return root.name or root.resolve().name or str(root)


def merge(boards: list[Ranking]) -> Ranking:
    """One leaderboard of several projects' trials, ranked together (two backbones searched
    apart, say); each row keeps its `project`.

    Projects with the same folder name are told apart by a number ("runs", "runs-2").

    Raises:
        TunerError: the projects rank their trials by different objectives.
    """
    if len(boards) == 1:
        return boards[0]
    objectives = {board.objective for board in boards}
    if len(objectives) > 1:
        raise TunerError(
            "the projects rank trials by different objectives "
            f"({', '.join(sorted(objectives))}), so one ranking cannot hold them; compare "
            "projects searched with the same --objective"
        )
    runs: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for board in boards:
        renamed: dict[str | None, str] = {}
        for name, run in board.runs.items() or {None: board.run}.items():
            unique = name or "project"
            suffix = 2
            while unique in runs:
                unique = f"{name or 'project'}-{suffix}"
                suffix += 1
            runs[unique] = run
            renamed[name] = unique
        rows += [
            dataclasses.replace(row, rank=None, project=renamed.get(row.project, row.project))
            for row in board.rows
        ]
    first = boards[0]
    order = {name: index for index, name in enumerate(runs)}
    return Ranking(
        objective=first.objective,
        direction=first.direction,
        rows=_rank(rows, first.direction, first.objective, order),
        run={},
        runs=runs,
    )


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_run(path: Path) -> dict[str, Any]:
    if not path.exists():
        # A search started by an older engine, or killed before it wrote run.json: the trials are
        # still worth showing, ranked by KerasTuner's score.
        return {}
    try:
        run = _read_json(path)
    except (OSError, ValueError) as error:
        raise TunerError(f"cannot read {path}: {_first_line(str(error))}") from error
    if not isinstance(run, dict):
        raise TunerError(f"{path}: expected a JSON object, but got {type(run).__name__}")
    return run


def _objective_from_trials(
    states: list[tuple[str, dict[str, Any] | None, str | None]],
) -> str | None:
    # Without run.json the objective is the metric whose value at the best step is the score in
    # every scored trial (KerasTuner records all metrics at that step, the objective among them).
    candidates: set[str] | None = None
    for _, state, _ in states:
        score = number(_get(state, "score"))
        metrics = _get(state, "metrics", "metrics")
        if score is None or not isinstance(metrics, dict):
            continue
        best_step = _get(state, "best_step")
        matches = {
            name
            for name, history in metrics.items()
            for observation in (_get(history, "observations") or [])
            if isinstance(observation, dict)
            and observation.get("step") == best_step
            and score in (observation.get("value") or [])
        }
        candidates = matches if candidates is None else candidates & matches
    return next(iter(candidates)) if candidates and len(candidates) == 1 else None


def _direction_from_trials(
    objective: str, states: list[tuple[str, dict[str, Any] | None, str | None]]
) -> str | None:
    # Without run.json, KerasTuner's own metric history still says which way the objective goes.
    for _, state, _ in states:
        history = _get(state, "metrics", "metrics", objective)
        if isinstance(history, dict) and history.get("direction") in ("max", "min"):
            return history["direction"]
    return None


def _make_row(
    trial_id: str,
    state: dict[str, Any] | None,
    trial_dir: Path,
    error: str | None,
    objective: str = "",
) -> Row:
    if state is None:
        return _empty_row(trial_id, UNREADABLE, one_line(error))
    values = _get(state, "hyperparameters", "values")
    values = values if isinstance(values, dict) else {}
    found, summary_error = TrialSummary.read(trial_dir)
    summary = found or TrialSummary(trial_id)
    reason = failure_reason(summary.reason, state.get("message")) or summary_error
    tie = TIEBREAK.get(objective, ("", ""))[0]
    head, finetune = summary.phase1, summary.phase2
    return Row(
        rank=None,
        trial_id=str(state.get("trial_id", trial_id)),
        status=str(state.get("status") or UNREADABLE),
        score=number(state.get("score")),
        val_accuracy_head=summary.phase1.val_accuracy if summary.phase1 else None,
        val_accuracy_finetune=summary.phase2.val_accuracy if summary.phase2 else None,
        hyperparameters=searched(values),
        epochs=summary.epochs_run if found else None,
        seconds_head=summary.phase1.seconds if summary.phase1 else None,
        seconds_finetune=summary.phase2.seconds if summary.phase2 else None,
        reason=reason,
        tuner_values=schedule(values),
        tiebreak=number(summary.best.get(tie)) if summary.best is not None and tie else None,
        finetune_skipped=summary.skipped,
        metrics_head=dict(head.best) if head else {},
        metrics_finetune=dict(finetune.best) if finetune else {},
        epochs_head=(head.epochs if head else 0) if found else None,
        epochs_finetune=(finetune.epochs if finetune else 0) if found else None,
        best_epoch=summary.best_epoch,
        curve_head=_curve(head, objective),
        curve_finetune=_curve(finetune, objective),
    )


def _curve(phase: Any, objective: str) -> tuple[float | None, ...]:
    if phase is None:
        return ()
    return tuple(_finite_number(logs.get(objective)) for logs in phase.history)


def _finite_number(value: Any) -> float | None:
    value = number(value)
    return value if value is not None and math.isfinite(value) else None


def _empty_row(trial_id: str, status: str, reason: str | None) -> Row:
    return Row(
        rank=None,
        trial_id=trial_id,
        status=status,
        score=None,
        val_accuracy_head=None,
        val_accuracy_finetune=None,
        hyperparameters={},
        epochs=None,
        seconds_head=None,
        seconds_finetune=None,
        reason=reason,
    )


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _trial_id_key(trial_id: str) -> tuple[int, int, str]:
    # KerasTuner zero-pads ids to the width of max_trials, but resumed or foreign searches may not;
    # comparing digits as numbers keeps "10" after "9" either way.
    return (0, int(trial_id), trial_id) if trial_id.isdigit() else (1, 0, trial_id)


def _is_ranked(row: Row) -> bool:
    return row.status == COMPLETED and row.score is not None and math.isfinite(row.score)


def _group(row: Row) -> int:
    if _is_ranked(row):
        return 0
    if row.status == COMPLETED:
        return 1
    if row.status in RUNNING:
        return 2
    if row.status in FAILED:
        return 3
    return 4


def _rank(
    rows: list[Row], direction: str, objective: str = "", projects: dict[str, int] | None = None
) -> tuple[Row, ...]:
    sign = -1.0 if direction == "max" else 1.0
    tie_sign = -1.0 if TIEBREAK.get(objective, ("", "min"))[1] == "max" else 1.0
    projects = projects or {}

    def key(row: Row) -> tuple[int, float, float, int, tuple[int, int, str]]:
        score = sign * row.score if _is_ranked(row) else 0.0
        tie = tie_sign * row.tiebreak if _is_ranked(row) and row.tiebreak is not None else math.inf
        project = projects.get(row.project or "", 0)
        return (_group(row), score, tie, project, _trial_id_key(row.trial_id))

    # Ranked trials sort first, so a ranked trial's position is its rank.
    return tuple(
        dataclasses.replace(row, rank=position if _is_ranked(row) else None)
        for position, row in enumerate(sorted(rows, key=key), 1)
    )


def to_json(board: Ranking) -> str:
    """Returns the leaderboard as JSON: objective, direction, each project's run.json and one
    object per row (every field of `Row`; `rows_from_json` reads them back).

    Non-finite numbers (a NaN score) become `null` so that any JSON parser can read the output.

    Args:
        board: The trials, from `read_ranking` or `merge`.

    Returns:
        The JSON text, indented by two spaces.
    """
    data = {
        "objective": board.objective,
        "direction": board.direction,
        "run": board.run,
        "runs": board.runs,
        "rows": [dataclasses.asdict(row) for row in board.rows],
    }
    return json.dumps(_finite(data), indent=2, allow_nan=False)


def rows_from_json(text: str) -> list[Row]:
    """The rows of `to_json`'s output."""
    return [Row.from_dict(row) for row in json.loads(text)["rows"]]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------
# Records and CSV

_FIRST_COLUMNS = ("project", "rank", "trial_id", "status", "score")
_LAST_COLUMNS = (
    "epochs",
    "epochs_head",
    "epochs_finetune",
    "best_epoch",
    "seconds_head",
    "seconds_finetune",
    "finetune_skipped",
    "reason",
    "curve_head",
    "curve_finetune",
)


def record_columns(board: Ranking) -> list[str]:
    """The keys of every record: the row's identity and score; each hyperparameter by its name
    ("head/units"), KerasTuner's schedule values ("tuner/epochs") after them; each metric of
    each phase's best epoch ("val_accuracy_head", "val_accuracy_finetune"); epochs, times,
    status notes and both learning curves."""
    hps: dict[str, None] = {}
    schedule_values: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for row in board.rows:
        hps.update(dict.fromkeys(row.hyperparameters))
        schedule_values.update(dict.fromkeys(row.tuner_values))
        metrics.update(dict.fromkeys(row.metrics_head))
        metrics.update(dict.fromkeys(row.metrics_finetune))
    return [
        *_FIRST_COLUMNS,
        *hps,
        *schedule_values,
        *(f"{name}_head" for name in metrics),
        *(f"{name}_finetune" for name in metrics),
        *_LAST_COLUMNS,
    ]


def _record_value(row: Row, column: str) -> Any:
    if column in row.hyperparameters:
        return _finite(row.hyperparameters[column])
    if column in row.tuner_values:
        return _finite(row.tuner_values[column])
    if "/" in column:  # a hyperparameter this row does not have (a conditional one)
        return None
    if column in ("curve_head", "curve_finetune"):
        return [_finite(value) for value in getattr(row, column)]
    if column in _FIRST_COLUMNS or column in _LAST_COLUMNS:
        return _finite(getattr(row, column))
    for suffix, metrics in (("_head", row.metrics_head), ("_finetune", row.metrics_finetune)):
        if column.endswith(suffix) and column[: -len(suffix)] in metrics:
            return _finite(number(metrics[column[: -len(suffix)]]))
    return None  # a metric this row's phase did not log


def to_csv(board: Ranking) -> str:
    """The leaderboard's records as CSV, one row per trial, with a header (`tuner.project.csvtext`):
    `read_csv` gives back exactly `board.records()`."""
    return write_csv(record_columns(board), board.records())
