"""A search read back from its project directory: its trials, ranked.

This module owns reading a finished or running search from disk. It reads the JSON files directly
(`run.json`, `trials/trial_<id>/trial.json` as KerasTuner 1.4.8 writes it, and our engine's
`trials/trial_<id>/summary.json` through `tuner.project.TrialSummary`) and never imports
TensorFlow, Keras or KerasTuner: importing `keras_tuner` loads TensorFlow, which would make every
look at a running search cost seconds. `tuner.leaderboard` shows what this module reads.
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
from tuner.project import (
    RUN_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    TrialSummary,
    failure_reason,
    number,
    one_line,
)

__all__ = ["Leaderboard", "Row", "load_leaderboard", "to_json"]

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


@dataclass(frozen=True)
class Leaderboard:
    """All trials of one search, in leaderboard order."""

    objective: str  # the metric trials are ranked by, e.g. "val_accuracy"
    direction: str  # "max" or "min"
    rows: tuple[Row, ...]  # completed by score, then running, then failed and others
    run: dict[str, Any]  # the contents of run.json; empty when the file is missing


# --------------------------------------------------------------------------------------------
# Reading


def load_leaderboard(project_dir: str | os.PathLike[str]) -> Leaderboard:
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

    rows = [
        _make_row(trial_id, state, trials_dir / f"trial_{trial_id}", error, objective)
        for trial_id, state, error in states
    ]
    return Leaderboard(
        objective=objective,
        direction=direction,
        rows=_rank(rows, direction, objective),
        run=run,
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
    )


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


def _rank(rows: list[Row], direction: str, objective: str = "") -> tuple[Row, ...]:
    sign = -1.0 if direction == "max" else 1.0
    tie_sign = -1.0 if TIEBREAK.get(objective, ("", "min"))[1] == "max" else 1.0

    def key(row: Row) -> tuple[int, float, float, tuple[int, int, str]]:
        score = sign * row.score if _is_ranked(row) else 0.0
        tie = tie_sign * row.tiebreak if _is_ranked(row) and row.tiebreak is not None else math.inf
        return (_group(row), score, tie, _trial_id_key(row.trial_id))

    # Ranked trials sort first, so a ranked trial's position is its rank.
    return tuple(
        dataclasses.replace(row, rank=position if _is_ranked(row) else None)
        for position, row in enumerate(sorted(rows, key=key), 1)
    )


def to_json(board: Leaderboard) -> str:
    """Returns the leaderboard as JSON: objective, direction, run.json and one object per row.

    Non-finite numbers (a NaN score) become `null` so that any JSON parser can read the output.

    Args:
        board: The leaderboard, from `load_leaderboard`.

    Returns:
        The JSON text, indented by two spaces.
    """
    data = {
        "objective": board.objective,
        "direction": board.direction,
        "run": board.run,
        "rows": [dataclasses.asdict(row) for row in board.rows],
    }
    return json.dumps(_finite(data), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
