"""The leaderboard as data: a trial's `Row`, a `Ranking` of them, and their JSON and CSV forms.

`tuner.project.trials` reads a project into a `Ranking`; `tuner.project.selection` marks its ties
and picks. `to_json` writes every field of every row and the test figures (`rows_from_json`
reads the rows back); `records` flattens each row to one dict with the same keys as every other
(`record_columns`), which `to_csv` writes and `tuner.project.csvtext.read_csv` reads back
exactly. Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from tuner.config import SELECTIONS
from tuner.errors import TunerError
from tuner.project.csvtext import write_csv
from tuner.project.layout import number

__all__ = [
    "Ranking",
    "Row",
    "record_columns",
    "records",
    "rows_from_json",
    "to_csv",
    "to_json",
]


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
    # Ranking facts (`tuner.project.selection.mark`): its interval holds the best score (True
    # for the best itself; None: no interval, or not ranked); the cheapest tied trial; the trial
    # the export takes.
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
        return records(self)


# --------------------------------------------------------------------------------------------
# JSON


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
    return json.dumps(finite(data), indent=2, allow_nan=False)


def rows_from_json(text: str) -> list[Row]:
    """The rows of `to_json`'s output."""
    return [Row.from_dict(row) for row in json.loads(text)["rows"]]


def finite(value: Any) -> Any:
    """`value` with every non-finite float (at any depth) as None, lists for tuples: JSON any
    parser reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
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
    return finite(record)


def records(board: Ranking) -> list[dict[str, Any]]:
    """One flat dict per row, best first, every row with the same keys (`record_columns`)."""
    columns = record_columns(board)
    flat = [_record(row) for row in board.rows]
    return [{name: record.get(name) for name in columns} for record in flat]


def to_csv(board: Ranking) -> str:
    """The leaderboard's records as CSV, one row per trial, with a header (`tuner.project.csvtext`):
    `read_csv` gives back exactly `board.records()`."""
    return write_csv(record_columns(board), records(board))
