"""A search read back from its project directory: its trials, ranked.

This module owns reading a finished or running search from disk. It reads the JSON files directly
(`run.json`, `trials/trial_<id>/trial.json` as KerasTuner 1.4.8 writes it, and our engine's
`trials/trial_<id>/summary.json` through `tuner.project.layout.TrialSummary`, and the exported
model's `test.json`) and never imports TensorFlow, Keras or KerasTuner: importing `keras_tuner` loads
TensorFlow, which would make every look at a running search cost seconds. `read_ranking` gives a
`Ranking`, plain data; `tuner.ui.board` shows it (its `Board` is a `Ranking` that renders itself).

The ranking is the one the export follows (`tuner.engine.transfer.completed_trials` reads it):

1. A trial's score is its objective at its best epoch (summary.json `best`), else KerasTuner's
   score (older projects; KerasTuner's score may be a composite of the objective and its
   tiebreak, which is for the oracle, not for people).
2. Trials rank by score, ties by `TIEBREAK` at the best epoch, then by trial id.
3. Each trial's 95 % interval is summary.json's `interval`; for an older project ranked by
   val_accuracy whose validation size is known, Wilson's. Ties with the best, the one-se pick and
   the exported trial follow from it (`tuner.project.selection`).

`Row` and `Ranking`, and their JSON and CSV forms, are `tuner.project.rows`' (re-exported here).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.config import SELECTIONS, TIEBREAK
from tuner.errors import TunerError
from tuner.hp import schedule, searched
from tuner.project.csvtext import read_csv as read_csv  # re-exported: the reader of to_csv
from tuner.project.layout import (
    RUN_FILE,
    TEST_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    TrialSummary,
    failure_reason,
    integer,
    number,
    one_line,
)

# Re-exported: callers take the leaderboard's data (`tuner.project.rows`) and its cost rule
# (`tuner.project.selection`) from the module that reads them.
from tuner.project.rows import Ranking as Ranking
from tuner.project.rows import Row as Row
from tuner.project.rows import record_columns as record_columns
from tuner.project.rows import rows_from_json as rows_from_json
from tuner.project.rows import to_csv as to_csv
from tuner.project.rows import to_json as to_json
from tuner.project.selection import cost as cost
from tuner.project.selection import mark

__all__ = [
    "Ranking",
    "Row",
    "cost",
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
    facts = _ProjectFacts(
        objective, _class_names(run.get("class_names")), _validation_size(root, run)
    )
    rows = [
        dataclasses.replace(
            _make_row(trial_id, state, trials_dir / f"trial_{trial_id}", error, facts),
            project=name,
        )
        for trial_id, state, error in states
    ]
    select = run.get("select") if run.get("select") in SELECTIONS else "best"
    test = _read_test(root / TEST_FILE)
    return Ranking(
        objective=objective,
        direction=direction,
        rows=mark(_rank(rows, direction, objective), select),
        run=run,
        runs={name: run},
        tests={name: test} if test is not None else {},
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
    tests: dict[str, dict[str, Any]] = {}
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
            if name in board.tests:
                tests[unique] = board.tests[name]
        rows += [
            dataclasses.replace(row, rank=None, project=renamed.get(row.project, row.project))
            for row in board.rows
        ]
    first = boards[0]
    order = {name: index for index, name in enumerate(runs)}
    return Ranking(
        objective=first.objective,
        direction=first.direction,
        # Ties are against the best of all projects; each project exported its own trial, so no
        # row of the merged table is "the" export.
        rows=mark(_rank(rows, first.direction, first.objective, order), None),
        run={},
        runs=runs,
        tests=tests,
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


def _read_test(path: Path) -> dict[str, Any] | None:
    # test.json is written atomically once the export was scored; a project without one (no
    # --test-data, or an older engine) has no test figures, and one that cannot be read is
    # treated the same rather than hiding the trials.
    try:
        test = _read_json(path)
    except (OSError, ValueError):
        return None
    return test if isinstance(test, dict) else None


def _class_names(names: Any) -> tuple[str, ...]:
    return tuple(map(str, names)) if isinstance(names, list) else ()


def _validation_size(root: Path, run: dict[str, Any]) -> int | None:
    # How many validation images scored each trial, for an older project's Wilson interval (a
    # new one records its interval, and its size, in summary.json). run.json's `val_images` when
    # a writer records it, else the counts the default export's metadata.json records.
    size = integer(run.get("val_images"))
    if size:
        return size
    try:
        metadata = _read_json(root / "export" / "metadata.json")
    except (OSError, ValueError):
        return None
    counts = _get(metadata, "data", "counts", "val")
    if not isinstance(counts, dict):
        return None
    values = [integer(count) for count in counts.values()]
    return sum(values) if values and None not in values else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class _ProjectFacts:
    """What every row of one project is read with."""

    objective: str
    class_names: tuple[str, ...]  # run.json's, in label order; empty when unknown
    validation_size: int | None  # images in the validation split, when known


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
    facts: _ProjectFacts | None = None,
) -> Row:
    if state is None:
        return _empty_row(trial_id, UNREADABLE, one_line(error))
    facts = facts or _ProjectFacts("", (), None)
    objective = facts.objective
    values = _get(state, "hyperparameters", "values")
    values = values if isinstance(values, dict) else {}
    found, summary_error = TrialSummary.read(trial_dir)
    summary = found or TrialSummary(trial_id)
    reason = failure_reason(summary.reason, state.get("message")) or summary_error
    tie = TIEBREAK.get(objective, ("", ""))[0]
    head, finetune = summary.phase1, summary.phase2
    best = summary.best or {}
    # The objective itself, not KerasTuner's score: the oracle may rank by a composite.
    score = number(best.get(objective)) if objective else None
    if score is None:
        score = number(state.get("score"))
    per_class = summary.per_class or {}
    images = integer(per_class.get("images"))
    return Row(
        rank=None,
        trial_id=str(state.get("trial_id", trial_id)),
        status=str(state.get("status") or UNREADABLE),
        score=score,
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
        metrics_best={str(k): v for k, v in best.items() if number(v) is not None},
        recall=_recall(per_class.get("recall"), facts.class_names),
        confusion=_confusion(per_class.get("confusion")),
        validation_images=images,
        interval=_interval(summary.interval, objective, score, images or facts.validation_size),
    )


def _recall(values: Any, class_names: tuple[str, ...]) -> dict[str, float | None]:
    # By class name, so that CSV columns and merged projects line up by class; by label index
    # when run.json does not name as many classes.
    if not isinstance(values, list):
        return {}
    names = class_names if len(class_names) == len(values) else tuple(map(str, range(len(values))))
    return {name: number(value) for name, value in zip(names, values, strict=True)}


def _confusion(matrix: Any) -> list[list[int]] | None:
    if not isinstance(matrix, list) or not all(isinstance(line, list) for line in matrix):
        return None
    return [[integer(count) or 0 for count in line] for line in matrix]


def _interval(
    recorded: list[float] | None, objective: str, score: float | None, images: int | None
) -> tuple[float, float] | None:
    if recorded is not None:
        return (recorded[0], recorded[1])
    if objective != "val_accuracy" or score is None or not math.isfinite(score) or not images:
        return None
    # An older project: accuracy is a count of correct images, so Wilson's interval follows from
    # the score and the validation size alone. NumPy (under tuner.metrics) loads only here.
    from tuner.metrics import wilson

    return wilson(round(score * images), images)


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
