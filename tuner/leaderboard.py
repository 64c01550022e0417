"""The leaderboard of a search: reads a project directory and ranks its trials.

This module owns reading a finished or running search back from disk and showing it. It reads the
JSON files directly (`run.json`, `trials/trial_<id>/trial.json` as KerasTuner 1.4.8 writes it, and
our engine's `trials/trial_<id>/summary.json`) and never imports TensorFlow, Keras or KerasTuner:
importing `keras_tuner` loads TensorFlow, which would make `--help` and every look at a running
search cost seconds.

Building the table (`build_table`) is separate from printing it (`render`), so callers can embed the
table in their own layout, and tests can render it to a fixed-width console.

Run it as `python -m tuner.leaderboard PROJECT_DIR [--json]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner.errors import TunerError

__all__ = [
    "Leaderboard",
    "Row",
    "build_table",
    "load_leaderboard",
    "main",
    "render",
    "to_json",
]

# KerasTuner's project lives in PROJECT_DIR/trials (directory=PROJECT_DIR, project_name="trials").
_TRIALS_DIR = "trials"
_RUN_FILE = "run.json"
_TRIAL_FILE = "trial.json"
_SUMMARY_FILE = "summary.json"
# KerasTuner reserves this prefix for its own bookkeeping (Hyperband's epochs and predecessor id).
_TUNER_PREFIX = "tuner/"
_REASON_LIMIT = 100
_MISSING = "-"

# Statuses as KerasTuner writes them, plus one of ours for a trial.json that cannot be parsed (a
# search killed mid-write leaves a torn file; the leaderboard should still show everything else).
_COMPLETED = "COMPLETED"
_RUNNING = frozenset({"RUNNING", "IDLE"})
_FAILED = frozenset({"FAILED", "INVALID"})
_UNREADABLE = "UNREADABLE"

# Short column headers for the hyperparameters our search spaces declare; anything else gets a
# header derived by `_hp_header`, so a new hyperparameter never breaks the table.
_HP_HEADERS = {
    "backbone": "backbone",
    "head/units": "units",
    "head/dropout": "dropout",
    "head/learning_rate": "head lr",
    "finetune/unfreeze_blocks": "unfreeze",
    "finetune/learning_rate": "ft lr",
}
_PREFIX_ABBREVIATIONS = {"head": "head", "phase1": "head", "finetune": "ft", "phase2": "ft"}
_LEAF_ABBREVIATIONS = {"learning_rate": "lr", "unfreeze_blocks": "unfreeze"}


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
    trials_dir = root / _TRIALS_DIR
    if not trials_dir.is_dir():
        raise TunerError(
            f"no search found in {root}: expected {trials_dir}{os.sep}; "
            "run python -m tuner.search first"
        )
    run = _read_run(root / _RUN_FILE)
    states: list[tuple[str, dict[str, Any] | None, str | None]] = []
    for trial_dir in sorted(trials_dir.glob("trial_*")):
        trial_file = trial_dir / _TRIAL_FILE
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
            states.append((trial_id, None, f"{_TRIAL_FILE} unreadable: {error}"))
            continue
        states.append((trial_id, state, None))

    objective = run.get("objective") or _objective_from_trials(states) or "score"
    if not isinstance(objective, str):
        raise TunerError(
            f"{root / _RUN_FILE}: `objective` must be a metric name, but got {objective!r}"
        )
    direction = run.get("direction") or _direction_from_trials(objective, states) or "max"
    if direction not in ("max", "min"):
        raise TunerError(
            f"{root / _RUN_FILE}: `direction` must be 'max' or 'min', but got {direction!r}"
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
        score = _number(_get(state, "score"))
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


# Ties on the objective are common on a small validation set (several trials at val_accuracy
# 1.0): they are broken by the other metric of the pair, at the same best epoch. The recorder that
# picks a trial's best epoch (tuner.engine) and the ranking here use the same rule, so the
# leaderboard's first row is the model that is exported.
TIEBREAK: dict[str, tuple[str, str]] = {
    "val_accuracy": ("val_loss", "min"),
    "val_loss": ("val_accuracy", "max"),
    "accuracy": ("loss", "min"),
    "loss": ("accuracy", "max"),
}


def _make_row(
    trial_id: str,
    state: dict[str, Any] | None,
    trial_dir: Path,
    error: str | None,
    objective: str = "",
) -> Row:
    if state is None:
        return _empty_row(trial_id, _UNREADABLE, _one_line(error))
    values = _get(state, "hyperparameters", "values")
    values = values if isinstance(values, dict) else {}
    summary, summary_error = _read_summary(trial_dir / _SUMMARY_FILE)
    phase1 = summary.get("phase1") if isinstance(summary.get("phase1"), dict) else {}
    phase2 = summary.get("phase2") if isinstance(summary.get("phase2"), dict) else {}
    reason = failure_reason(summary.get("reason"), state.get("message")) or summary_error
    return Row(
        rank=None,
        trial_id=str(state.get("trial_id", trial_id)),
        status=str(state.get("status") or _UNREADABLE),
        score=_number(state.get("score")),
        val_accuracy_head=_phase_accuracy(phase1),
        val_accuracy_finetune=_phase_accuracy(phase2),
        hyperparameters={k: v for k, v in values.items() if not k.startswith(_TUNER_PREFIX)},
        epochs=_integer(summary.get("epochs_run")),
        seconds_head=_number(phase1.get("seconds")),
        seconds_finetune=_number(phase2.get("seconds")),
        reason=reason,
        tuner_values={k: v for k, v in values.items() if k.startswith(_TUNER_PREFIX)},
        tiebreak=_number((summary.get("best") or {}).get(TIEBREAK[objective][0]))
        if isinstance(summary.get("best"), dict) and objective in TIEBREAK
        else None,
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


def _read_summary(path: Path) -> tuple[dict[str, Any], str | None]:
    # summary.json is missing for a trial that is still running or was killed; that is normal.
    if not path.exists():
        return {}, None
    try:
        summary = _read_json(path)
    except (OSError, ValueError) as error:
        return {}, _one_line(f"{_SUMMARY_FILE} unreadable: {error}")
    return (summary, None) if isinstance(summary, dict) else ({}, None)


def _phase_accuracy(phase: dict[str, Any]) -> float | None:
    value = _number(phase.get("val_accuracy"))
    if value is None:
        value = _number(_get(phase, "best", "val_accuracy"))
    return value


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _number(value: Any) -> float | None:
    # bool is an int subclass, and a true/false here is a writer's bug, not a measurement.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(text: Any, limit: int = _REASON_LIMIT) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line


# A traceback's last line names the exception by its full dotted path
# ("tuner.errors.TrialError: diverged ..."); the class name alone reads better in a narrow table.
_DOTTED_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*(?::|$).*)$")


def _last_line(message: Any, limit: int = _REASON_LIMIT) -> str | None:
    if not isinstance(message, str):
        return None
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return None
    return _one_line(_DOTTED_EXCEPTION.sub(r"\1", lines[-1]), limit)


def failure_reason(summary_reason: Any, message: Any, *, limit: int = _REASON_LIMIT) -> str | None:
    """A failed trial's one-line reason: the engine's own (summary.json) first, else the last line
    of KerasTuner's traceback (trial.json "message") without the exception's module path."""
    return _one_line(summary_reason, limit) or _last_line(message, limit)


def _trial_id_key(trial_id: str) -> tuple[int, int, str]:
    # KerasTuner zero-pads ids to the width of max_trials, but resumed or foreign searches may not;
    # comparing digits as numbers keeps "10" after "9" either way.
    return (0, int(trial_id), trial_id) if trial_id.isdigit() else (1, 0, trial_id)


def _is_ranked(row: Row) -> bool:
    return row.status == _COMPLETED and row.score is not None and math.isfinite(row.score)


def _group(row: Row) -> int:
    if _is_ranked(row):
        return 0
    if row.status == _COMPLETED:
        return 1
    if row.status in _RUNNING:
        return 2
    if row.status in _FAILED:
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


# --------------------------------------------------------------------------------------------
# Showing


def build_table(board: Leaderboard, *, title: str | None = None, width: int | None = None) -> Table:
    """Builds the leaderboard as a rich table, without printing it.

    The columns are the rank, trial id, status, the objective, validation accuracy after each
    phase, one column per searched hyperparameter, epochs and the time of each phase. The best
    trial's row is bold; the caption gives the weights, augmentation, trial counts, the best trial
    and one line per failed trial saying why it failed.

    Args:
        board: The leaderboard, from `load_leaderboard`.
        title: A title above the table. Defaults to one naming the objective and its direction.
        width: The width to fit, in characters. When the table is wider, the least important
            columns (epochs, then the times, then the per-phase accuracies) are left out and the
            caption names them; the rank, objective and hyperparameters always stay. Defaults to
            `None`: every column is shown.

    Returns:
        The table, ready for `Console.print`.
    """
    columns = _columns(board)
    hidden: list[str] = []
    for header in _HIDE_ORDER:
        if width is None or _table_width(columns) <= width:
            break
        columns = [column for column in columns if column.header != header]
        hidden.append(header)

    better = "higher" if board.direction == "max" else "lower"
    table = Table(
        title=title if title is not None else f"Trials by {board.objective} ({better} is better)",
        caption=_caption(board, hidden=hidden),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        # Fifteen-odd columns must fit 100 characters: the box's blank separator is the only space
        # between columns, and there is none at the edges.
        padding=0,
        show_edge=False,
    )
    for column in columns:
        table.add_column(
            column.wrapped_header,
            justify="left" if column.is_text else "right",
            # Rich shrinks only wrappable columns when the table is still too wide; a number cut
            # to "0.94" would mislead, a backbone name folded onto two lines does not.
            no_wrap=not column.can_fold,
            overflow="fold",
        )
    for index, row in enumerate(board.rows):
        table.add_row(*(column.cells[index] for column in columns), style=_row_style(row))
    return table


@dataclass(frozen=True)
class _Column:
    header: str
    cells: list[str]
    is_text: bool  # left-aligned
    can_fold: bool = False  # may fold onto several lines when the table is still too wide

    @property
    def wrapped_header(self) -> str:
        return _wrap_header(self.header, max((len(cell) for cell in self.cells), default=1))

    @property
    def width(self) -> int:
        lines = [*self.wrapped_header.splitlines(), *self.cells]
        return max(len(line) for line in lines)


# Columns left out first when the table does not fit: each says less about a trial than the ones
# after it, and all of them are in the JSON output.
_HIDE_ORDER = ("epochs", "ft time", "head time", "val acc head", "val acc fine-tune")


def _columns(board: Leaderboard) -> list[_Column]:
    rows = board.rows
    names = _hp_names(rows)
    headers = _hp_headers(names)
    missing = _MISSING
    return [
        _Column("#", [str(r.rank) if r.rank is not None else missing for r in rows], False),
        _Column("trial", [r.trial_id for r in rows], True),
        _Column("status", [r.status.lower() for r in rows], True),
        _Column(board.objective, [_format_metric(r.score) for r in rows], False),
        _Column("val acc head", [_format_metric(r.val_accuracy_head) for r in rows], False),
        _Column(
            "val acc fine-tune", [_format_metric(r.val_accuracy_finetune) for r in rows], False
        ),
        *(
            _Column(
                headers[name],
                [_format_hp(name, r.hyperparameters.get(name)) for r in rows],
                is_text=_is_text_hp(rows, name),
                can_fold=_is_text_hp(rows, name),
            )
            for name in names
        ),
        _Column(
            "epochs", [str(r.epochs) if r.epochs is not None else missing for r in rows], False
        ),
        _Column("head time", [_format_seconds(r.seconds_head) for r in rows], False),
        _Column("ft time", [_format_seconds(r.seconds_finetune) for r in rows], False),
    ]


def _table_width(columns: list[_Column]) -> int:
    # One separator between neighbouring columns, none at the edges (see the Table's box).
    return sum(column.width for column in columns) + len(columns) - 1


_HEADER_PIECE = re.compile(r"[^_-]+[_-]*|[_-]+")
_HEADER_LINES = 3


def _wrap_header(header: str, width: int) -> str:
    # A header as wide as "val acc fine-tune" over a column of "0.9431" would cost more width than
    # the table has; break it into lines no wider than the values (at spaces, and after "-" or "_"),
    # widening only as far as needed to stay within three lines.
    words = [_HEADER_PIECE.findall(word) for word in header.split()]
    width = max(width, *(len(piece) for pieces in words for piece in pieces))
    while True:
        lines: list[str] = []
        for pieces in words:
            for index, piece in enumerate(pieces):
                joiner = "" if index else " "
                if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
                    lines[-1] += joiner + piece
                else:
                    lines.append(piece)
        if len(lines) <= _HEADER_LINES or width >= len(header):
            return "\n".join(lines)
        width += 1


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


def render(board: Leaderboard, *, console: Console | None = None) -> None:
    """Prints the leaderboard table.

    Args:
        board: The leaderboard, from `load_leaderboard`.
        console: Where to print. Defaults to a new `Console()` on standard output.
    """
    console = console or Console()
    console.print(build_table(board, width=console.width))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _row_style(row: Row) -> str:
    if row.rank == 1:
        return "bold green"
    if row.status in _FAILED or row.status == _UNREADABLE:
        return "red"
    if row.status in _RUNNING:
        return "yellow"
    return ""


def _hp_names(rows: tuple[Row, ...]) -> list[str]:
    # Rows keep KerasTuner's declaration order; a conditional hyperparameter that only some trials
    # have still gets one column.
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.hyperparameters))
    return list(names)


def _hp_headers(names: list[str]) -> dict[str, str]:
    headers = {name: _HP_HEADERS.get(name) or _hp_header(name) for name in names}
    # Two hyperparameters with the same leaf ("head/units", "neck/units") must stay apart.
    counts: dict[str, int] = {}
    for header in headers.values():
        counts[header] = counts.get(header, 0) + 1
    return {
        name: name.replace("_", " ") if counts[header] > 1 else header
        for name, header in headers.items()
    }


def _hp_header(name: str) -> str:
    prefix, _, leaf = name.rpartition("/")
    leaf = _LEAF_ABBREVIATIONS.get(leaf, leaf).replace("_", " ")
    if leaf == "lr" and prefix:
        # "lr" alone does not say which phase; those differ by orders of magnitude.
        scope = prefix.rpartition("/")[2]
        return f"{_PREFIX_ABBREVIATIONS.get(scope, scope)} lr"
    return leaf


def _is_text_hp(rows: tuple[Row, ...], name: str) -> bool:
    return any(isinstance(row.hyperparameters.get(name), str) for row in rows)


def _is_learning_rate(name: str) -> bool:
    leaf = name.rpartition("/")[2]
    return "learning_rate" in leaf or leaf == "lr" or leaf.endswith("_lr")


def _format_hp(name: str, value: Any) -> str:
    if value is None:
        return _MISSING
    if name == "head/units" and value == 0:
        return "linear"  # the logistic-regression head (LP-FT), see search_spaces/default.toml
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if _is_learning_rate(name) or (value != 0 and abs(value) < 1e-3):
            # "1e-04" and "3.2e-04" compare at a glance; 0.0001 and 0.00032 do not.
            return f"{value:.1e}".replace(".0e", "e")
        return f"{value:.4g}"
    return str(value)


def _format_metric(value: float | None) -> str:
    if value is None:
        return _MISSING
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def _format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return _MISSING
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _caption(board: Leaderboard, *, hidden: list[str]) -> Text:
    run = board.run
    facts = [_weights_fact(run.get("weights"))]
    if "augment" in run:
        views = _integer(run.get("augment_views")) or 0
        augment = "on" if run["augment"] else "off"
        if run["augment"] and views:
            augment += f" ({views} cached views)"
        facts.append(f"augmentation {augment}")
    backbones = run.get("backbones")
    if isinstance(backbones, list) and backbones:
        size = run.get("image_size")
        facts.append(", ".join(map(str, backbones)) + (f" at {size}px" if size else ""))
    facts.append(_counts(board.rows))

    lines = [Text(" · ".join(facts))]
    best = next((row for row in board.rows if row.rank == 1), None)
    if best is not None:
        lines.append(
            Text(f"best: trial {best.trial_id} ({board.objective} {_format_metric(best.score)})")
        )
    if hidden:
        lines.append(Text(f"not shown, for width: {', '.join(hidden)} (--json has every column)"))
    # Rich tables cannot span a cell across columns, so reasons go below the table, where a full
    # line is available, instead of into a column squeezed to a few characters.
    for row in board.rows:
        if row.reason and row.rank is None and row.status != _COMPLETED:
            lines.append(Text(f"trial {row.trial_id} {row.status.lower()}: {row.reason}"))
    return Text("\n").join(lines)


def _weights_fact(weights: Any) -> str:
    if not isinstance(weights, str) or not weights:
        return "weights unknown"
    if weights == "none":
        return "weights none (random init)"
    if weights.startswith("file:"):
        return f"weights from file {weights[len('file:') :]}"
    return f"weights {weights}"


def _counts(rows: tuple[Row, ...]) -> str:
    completed = sum(row.status == _COMPLETED for row in rows)
    failed = sum(row.status in _FAILED for row in rows)
    running = sum(row.status in _RUNNING for row in rows)
    other = len(rows) - completed - failed - running
    parts = [f"{completed} completed", f"{failed} failed"]
    if running:
        parts.append(f"{running} running")
    if other:
        parts.append(f"{other} other")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.leaderboard",
        description="Show the trials of a search, best first.",
    )
    parser.add_argument("project_dir", metavar="PROJECT_DIR", help="the folder the search wrote")
    parser.add_argument(
        "--json", action="store_true", help="print the leaderboard as JSON instead of a table"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback when something goes wrong"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line: shows the leaderboard of PROJECT_DIR.

    Args:
        argv: The arguments, without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 on a usage error or a `TunerError` (reported as one line
        on standard error; with `--debug`, as the full traceback).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on usage errors (after printing them); returning the code
        # keeps main() callable from tests and other code.
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        board = load_leaderboard(args.project_dir)
    except TunerError as error:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(to_json(board))
    else:
        render(board)
    return 0


if __name__ == "__main__":
    sys.exit(main())
