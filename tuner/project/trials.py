"""A search read back from its project directory: its trials, ranked.

This module owns reading a finished or running search from disk. It reads the JSON files directly
(`run.json`, `trials/trial_<id>/trial.json` as KerasTuner 1.4.8 writes it, and our engine's
`trials/trial_<id>/summary.json` through `tuner.project.layout.TrialSummary`, and the exported
model's `test.json`) and never imports TensorFlow, Keras or KerasTuner: importing `keras_tuner` loads
TensorFlow, which would make every look at a running search cost seconds. `read_ranking` gives a
`Ranking`, plain data; `tuner.ui.board` shows it (its `Board` is a `Ranking` that renders itself).

Which trial is picked is decided here too, so the leaderboard and the export agree
(`tuner.engine.transfer.completed_trials` reads this ranking):

1. A trial's score is its objective at its best epoch (summary.json `best`), else KerasTuner's
   score (older projects; KerasTuner's score may be a composite of the objective and its
   tiebreak, which is for the oracle, not for people).
2. Trials rank by score, ties by `TIEBREAK` at the best epoch, then by trial id.
3. A trial is tied with the best when its 95 % interval (summary.json `interval`; for an older
   project ranked by val_accuracy whose validation size is known, Wilson's) holds the best score.
4. The one-standard-error pick is the cheapest tied trial (`cost`): fewest backbone blocks
   fine-tuned in the checkpoint, then the smaller head (linear before dense, fewer units), then
   fewer epochs trained, then less time, then rank. `--select one-se` exports it; `--select best`
   (the default) exports the best.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import hp
from tuner.config import SELECTIONS, TIEBREAK
from tuner.errors import TunerError
from tuner.hp import schedule, searched
from tuner.project.csvtext import read_csv as read_csv  # re-exported: the reader of to_csv
from tuner.project.csvtext import write_csv
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


@dataclass(frozen=True)
class Row:
    """One trial of the search, as the leaderboard shows it."""

    rank: int | None  # 1.. for completed trials in objective order; None for every other trial
    trial_id: str  # KerasTuner's id, e.g. "03"; the folder is trials/trial_<id>
    status: str  # KerasTuner's status ("COMPLETED", "RUNNING", "FAILED", ...) or "UNREADABLE"
    # The objective at the trial's best epoch (summary.json `best`); KerasTuner's score when the
    # summary lacks it (an older project).
    score: float | None
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
    # The logs of the best epoch (summary.json `best`): the checkpoint's validation metrics
    # (val_loss, val_accuracy, val_balanced_accuracy, val_macro_f1, val_auc) and training ones.
    metrics_best: dict[str, float] = field(default_factory=dict)
    # Validation recall at the best epoch, by class name (None: the class had no image).
    recall: dict[str, float | None] = field(default_factory=dict)
    confusion: list[list[int]] | None = None  # validation, true class x predicted, best epoch
    validation_images: int | None = None  # images the best epoch was scored on, when known
    interval: tuple[float, float] | None = None  # the score's 95 % interval; None: unknown
    # Ranking facts (`_mark`): its interval holds the best score (True for the best itself;
    # None: no interval, or not ranked); the cheapest tied trial; the trial the export takes.
    tied: bool | None = None
    one_se: bool = False
    exported: bool = False

    @property
    def curve(self) -> tuple[float | None, ...]:
        """The objective after every epoch, both phases on one axis."""
        return self.curve_head + self.curve_finetune

    @property
    def best_phase(self) -> int | None:
        """The phase whose epoch the checkpoint holds: 1 (head only) or 2 (fine-tuned); None
        when unknown (no summary.json)."""
        if self.best_epoch is not None and self.epochs_head is not None:
            # Phase 2's epochs are numbered on from `--epochs-head`, past every phase-1 epoch run;
            # a Hyperband continuation runs no phase 1 (epochs_head 0).
            return 1 if self.best_epoch <= self.epochs_head else 2
        if self.epochs_finetune is None:
            return None
        return 2 if self.epochs_finetune else 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """A row from `dataclasses.asdict` (the rows of `to_json`); fields an older output lacks
        take their defaults."""
        data = dict(data)
        for name in ("curve_head", "curve_finetune"):
            data[name] = tuple(data.get(name) or ())
        if data.get("interval") is not None:
            data["interval"] = tuple(data["interval"])
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
    # Each project's test.json (the exported model scored once on `--test-data`), by project
    # name; a project without one is absent.
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def projects(self) -> tuple[str, ...]:
        """The projects the rows come from, in the order they were given."""
        return tuple(self.runs)

    @property
    def test(self) -> dict[str, Any] | None:
        """The project's test.json; None without one, and for merged projects (see `tests`)."""
        if len(self.runs) > 1 or not self.tests:
            return None
        return next(iter(self.tests.values()))

    @property
    def best(self) -> Row | None:
        """The best-ranked trial; None when no trial completed with a score."""
        return next((row for row in self.rows if row.rank == 1), None)

    @property
    def tied(self) -> tuple[Row, ...]:
        """The trials tied with the best (the best among them), best first."""
        return tuple(row for row in self.rows if row.rank is not None and row.tied)

    @property
    def one_se(self) -> Row | None:
        """The one-standard-error pick: the cheapest trial tied with the best (`cost`)."""
        return next((row for row in self.rows if row.one_se), None)

    @property
    def exported(self) -> Row | None:
        """The trial the export takes, as run.json's `select` says; None for merged projects."""
        return next((row for row in self.rows if row.exported), None)

    def pick(self, select: str) -> Row | None:
        """The trial `--select` picks: "best" the best, "one-se" the cheapest tied with it."""
        if select not in SELECTIONS:
            raise TunerError(
                f"unknown --select {select!r}; expected one of {', '.join(SELECTIONS)}"
            )
        return self.one_se if select == "one-se" else self.best

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row, best first, every row with the same keys (`record_columns`):
        what `to_csv` writes and `read_csv` reads back."""
        columns = record_columns(self)
        records = [_record(row) for row in self.rows]
        return [{name: record.get(name) for name in columns} for record in records]


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
        rows=_mark(_rank(rows, direction, objective), select),
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
        rows=_mark(_rank(rows, first.direction, first.objective, order), None),
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


# --------------------------------------------------------------------------------------------
# Ties with the best, and the one-standard-error pick

# A score equal to an interval's end is inside it, whatever the last bit of a float says.
_EDGE = 1e-9


def cost(row: Row) -> tuple[float, float, float, float, float]:
    """What a trial's model costs, for the one-standard-error pick (lower is cheaper).

    In order: the backbone blocks fine-tuned in the checkpoint (0 when its best epoch was in
    phase 1, whatever `finetune/unfreeze_blocks` says: those weights were never changed), the
    head's hidden units (0: the linear head, so linear comes before any dense head), the epochs
    the checkpoint was trained for (its best epoch, counted across both phases), the seconds
    both phases took, and last the rank. Unknown parts count as the most expensive.
    """
    blocks = integer(row.hyperparameters.get(hp.UNFREEZE_BLOCKS)) or 0
    if row.best_phase == 1:
        blocks = 0
    units = integer(row.hyperparameters.get(hp.UNITS)) or 0
    epochs = row.best_epoch if row.best_epoch is not None else row.epochs
    seconds = [row.seconds_head, row.seconds_finetune]
    known = [value for value in seconds if value is not None]
    return (
        float(blocks),
        float(units),
        float(epochs) if epochs is not None else math.inf,
        sum(known) if known else math.inf,
        float(row.rank) if row.rank is not None else math.inf,
    )


def _mark(rows: tuple[Row, ...], select: str | None) -> tuple[Row, ...]:
    """`rows` with `tied`, `one_se` and `exported` set: which trials' intervals hold the best
    score, the cheapest of those, and (`select`, None for merged projects) the export's trial."""
    first = next((index for index, row in enumerate(rows) if row.rank == 1), None)
    target = rows[first].score if first is not None else None
    if first is None or target is None:
        return tuple(
            dataclasses.replace(row, tied=None, one_se=False, exported=False) for row in rows
        )
    best = rows[first]

    def tied(row: Row) -> bool | None:
        if row.rank is None:
            return None
        if row is best:
            return True
        if row.interval is None:
            return None
        low, high = row.interval
        return low - _EDGE <= target <= high + _EDGE

    marked = [dataclasses.replace(row, tied=tied(row)) for row in rows]
    cheapest = min((row for row in marked if row.rank is not None and row.tied), key=cost)
    picked = cheapest if select == "one-se" else marked[first] if select else None
    return tuple(
        dataclasses.replace(row, one_se=row is cheapest, exported=row is picked) for row in marked
    )


def to_json(board: Ranking) -> str:
    """Returns the leaderboard as JSON: objective, direction, each project's run.json, one
    object per row (every field of `Row`; `rows_from_json` reads them back), and the test
    figures: `test` is the project's test.json (null without one, and for merged projects),
    `tests` each project's, by name.

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
        "test": board.test,
        "tests": board.tests,
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
_SELECTION_COLUMNS = ("interval_low", "interval_high", "tied", "one_se", "exported")
_LAST_COLUMNS = (
    "validation_images",
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
RECALL_PREFIX = "recall_"  # a per-class recall column: recall_<class name>
BEST_SUFFIX = "_best"  # a metric at the best epoch: val_balanced_accuracy_best, ...


def record_columns(board: Ranking) -> list[str]:
    """The keys of every record: the row's identity and score; its 95 % interval
    ("interval_low", "interval_high") and whether it is tied with the best, the one-se pick and
    the exported trial; each hyperparameter by its name ("head/units"), KerasTuner's schedule
    values ("tuner/epochs") after them; each metric at the best epoch ("val_loss_best",
    "val_balanced_accuracy_best"); the validation recall of each class ("recall_cat"); each
    metric of each phase's best epoch ("val_accuracy_head", "val_accuracy_finetune"); the
    validation size, epochs, times, status notes and both learning curves."""
    hps: dict[str, None] = {}
    schedule_values: dict[str, None] = {}
    best: dict[str, None] = {}
    classes: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for row in board.rows:
        hps.update(dict.fromkeys(row.hyperparameters))
        schedule_values.update(dict.fromkeys(row.tuner_values))
        best.update(dict.fromkeys(row.metrics_best))
        classes.update(dict.fromkeys(row.recall))
        metrics.update(dict.fromkeys(row.metrics_head))
        metrics.update(dict.fromkeys(row.metrics_finetune))
    return [
        *_FIRST_COLUMNS,
        *_SELECTION_COLUMNS,
        *hps,
        *schedule_values,
        *(f"{name}{BEST_SUFFIX}" for name in best),
        *(f"{RECALL_PREFIX}{name}" for name in classes),
        *(f"{name}_head" for name in metrics),
        *(f"{name}_finetune" for name in metrics),
        *_LAST_COLUMNS,
    ]


def _record(row: Row) -> dict[str, Any]:
    # Every value the row has, under its column's name (`record_columns`); a column the row
    # lacks (a conditional hyperparameter, a metric its phase did not log) is None.
    low, high = row.interval or (None, None)
    record: dict[str, Any] = {name: getattr(row, name) for name in _FIRST_COLUMNS}
    record.update(interval_low=low, interval_high=high)
    record.update({name: getattr(row, name) for name in _SELECTION_COLUMNS[2:]})
    record.update(row.hyperparameters)
    record.update(row.tuner_values)
    record.update({f"{name}{BEST_SUFFIX}": number(v) for name, v in row.metrics_best.items()})
    record.update({f"{RECALL_PREFIX}{name}": v for name, v in row.recall.items()})
    record.update({f"{name}_head": number(v) for name, v in row.metrics_head.items()})
    record.update({f"{name}_finetune": number(v) for name, v in row.metrics_finetune.items()})
    record.update({name: getattr(row, name) for name in _LAST_COLUMNS})
    record["curve_head"], record["curve_finetune"] = list(row.curve_head), list(row.curve_finetune)
    return _finite(record)


def to_csv(board: Ranking) -> str:
    """The leaderboard's records as CSV, one row per trial, with a header (`tuner.project.csvtext`):
    `read_csv` gives back exactly `board.records()`."""
    return write_csv(record_columns(board), board.records())
