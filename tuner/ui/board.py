"""The leaderboard of a search, shown: a rich table of its trials, best first.

Reading and ranking the trials is `tuner.project.trials`' (`read_ranking` gives a `Ranking`, plain
data); this module shows them. Building the table (`build_table`) is separate from printing it
(`render`), so callers can embed the table in their own layout, and tests can render it to a
fixed-width console. `load` (the public `tuner.load`) returns a `Board`: a `Ranking` that renders
itself, in a terminal and in a notebook. It never imports TensorFlow.

The command line, `python -m tuner.leaderboard`, is `tuner.leaderboard`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from tuner import hp
from tuner.errors import TunerError
from tuner.hp import format_value
from tuner.project.layout import number
from tuner.project.trials import (
    FAILED,
    RUNNING,
    UNREADABLE,
    Ranking,
    Row,
    merge,
    read_ranking,
    to_csv,
    to_json,
)
from tuner.ui.boardtext import (
    EXPORT_MARK,
    MISSING,
    caption,
    format_interval,
    format_metric,
    format_seconds,
    sparkline,
    versus_best,
)

__all__ = [
    "Board",
    "build_table",
    "load",
    "render",
]

_HP_HEADERS = {
    hp.BACKBONE: "backbone",
    hp.UNITS: "units",
    hp.DROPOUT: "dropout",
    hp.HEAD_LR: "head lr",
    hp.UNFREEZE_BLOCKS: "unfreeze",
    hp.FINETUNE_LR: "ft lr",
}
_PREFIX_ABBREVIATIONS = {"head": "head", "phase1": "head", "finetune": "ft", "phase2": "ft"}
_LEAF_ABBREVIATIONS = {"learning_rate": "lr", "unfreeze_blocks": "unfreeze"}


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Board(Ranking):
    """A leaderboard that shows itself: as the rich table when printed by rich, and as that table
    in a notebook (HTML, with a text form for plain front ends).

    `records()`, `to_csv()` and `to_json()` give it as data.
    """

    def __rich__(self) -> Table:
        return build_table(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from tuner.ui.live import RichOutput

        return RichOutput(build_table(self), width=_natural_width(self))._repr_mimebundle_()

    def to_csv(self) -> str:
        """The records as CSV (`tuner.project.trials.to_csv`)."""
        return to_csv(self)

    def to_json(self) -> str:
        """Every row as JSON (`tuner.project.trials.to_json`)."""
        return to_json(self)

    def __repr__(self) -> str:
        best = next((row for row in self.rows if row.rank == 1), None)
        shown = f", best trial {best.trial_id} ({format_metric(best.score)})" if best else ""
        return (
            f"<Board {', '.join(self.projects) or '?'}: {len(self.rows)} trials by "
            f"{self.objective}{shown}>"
        )


def load(*project_dirs: str | os.PathLike[str]) -> Board:
    """The leaderboard of one project, or of several merged into one ranking.

    Args:
        *project_dirs: The folders searches wrote.

    Raises:
        TunerError: A folder holds no search, or the projects rank by different objectives.
    """
    if not project_dirs:
        raise TunerError("no project folder given; pass the --project-dir of a search")
    boards = [read_ranking(Path(directory)) for directory in project_dirs]
    board = merge(boards)
    return Board(**{f.name: getattr(board, f.name) for f in dataclasses.fields(board)})


# --------------------------------------------------------------------------------------------
# Showing


def build_table(board: Ranking, *, title: str | None = None, width: int | None = None) -> Table:
    """Builds the leaderboard as a rich table, without printing it.

    The columns are the rank, trial id (marked `*` for the trial the export takes), status, the
    objective at the best epoch, its 95 % interval, how the trial stands against the best
    ("best", "tied" when its interval holds the best score, "one-se" for the cheapest tied
    trial), accuracy and balanced accuracy at the best epoch when some trial's differ by more
    than a point (`BALANCE_GAP`), validation accuracy after each phase, one column per searched
    hyperparameter, epochs, the time of each phase and the learning curve. The best trial's row
    is bold; the caption gives the weights, augmentation, trial counts, the best trial, the ties
    and the one-se pick, the exported trial and why, one line per failed trial saying why it
    failed, and the test set's figures when the project has them.

    Args:
        board: The trials, from `load` or `tuner.project.trials.read_ranking`.
        title: A title above the table. Defaults to one naming the objective and its direction.
        width: The width to fit, in characters. When the table is wider, the least important
            columns (epochs, then the times, the curve, the per-phase accuracies, the interval,
            then accuracy and balanced accuracy; `_HIDE_ORDER`) are left out and the caption
            names them; the rank, objective, "vs best" and hyperparameters always stay.
            Defaults to `None`: every column is shown.

    Returns:
        The table, ready for `Console.print`.
    """
    columns = _columns(board)
    # A column with no value in any row (no interval in an older project) says nothing: it goes
    # first.
    empty = [c.header for c in columns if c.header in _HIDE_ORDER and set(c.cells) <= {MISSING}]
    order = [*empty, *(header for header in _HIDE_ORDER if header not in empty)]
    hidden: list[str] = []
    for header in order:
        if width is None or _table_width(columns) <= width:
            break
        if not any(column.header == header for column in columns):
            continue
        columns = [column for column in columns if column.header != header]
        hidden.append(header)

    better = "higher" if board.direction == "max" else "lower"
    text = caption(board, hidden=hidden)
    # The caption wraps at the table's width; a table narrower than its caption (few trials, few
    # columns) widens to it rather than break a line of facts, as far as `width` allows.
    longest = max((len(line) for line in text.plain.splitlines()), default=0)
    table = Table(
        title=title if title is not None else f"Trials by {board.objective} ({better} is better)",
        caption=text,
        caption_justify="left",
        min_width=min(longest, width) if width is not None else longest,
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
# after it, and all of them are in the JSON output. The interval goes before accuracy and
# balanced accuracy: its verdict stays in "vs best".
INTERVAL_HEADER = "95% interval"
_HIDE_ORDER = (
    "epochs",
    "ft time",
    "head time",
    "curve",
    "val acc head",
    "val acc fine-tune",
    INTERVAL_HEADER,
    "val acc",
    "val bal acc",
)

ACCURACY = "val_accuracy"
BALANCED_ACCURACY = "val_balanced_accuracy"
# Accuracy and balanced accuracy are both shown when, for some trial, they differ by more than
# this: the classes are imbalanced enough for accuracy alone to mislead.
BALANCE_GAP = 0.01


def _accuracies_differ(rows: tuple[Row, ...]) -> bool:
    for row in rows:
        accuracy = number(row.metrics_best.get(ACCURACY))
        balanced = number(row.metrics_best.get(BALANCED_ACCURACY))
        if accuracy is not None and balanced is not None and abs(accuracy - balanced) > BALANCE_GAP:
            return True
    return False


def _accuracy_columns(board: Ranking) -> list[_Column]:
    # Beside the objective: whichever of accuracy and balanced accuracy it is not.
    if not _accuracies_differ(board.rows):
        return []
    return [
        _Column(
            header, [format_metric(number(r.metrics_best.get(metric))) for r in board.rows], False
        )
        for header, metric in (("val acc", ACCURACY), ("val bal acc", BALANCED_ACCURACY))
        if metric != board.objective
    ]


def _columns(board: Ranking) -> list[_Column]:
    rows = board.rows
    names = _hp_names(rows)
    headers = _hp_headers(names)
    missing = MISSING
    project = (
        [_Column("project", [r.project or missing for r in rows], True, can_fold=True)]
        if len(board.runs) > 1
        else []
    )
    return [
        _Column("#", [str(r.rank) if r.rank is not None else missing for r in rows], False),
        *project,
        _Column("trial", [r.trial_id + (EXPORT_MARK if r.exported else "") for r in rows], True),
        _Column("status", [r.status.lower() for r in rows], True),
        _Column(board.objective, [format_metric(r.score) for r in rows], False),
        _Column(INTERVAL_HEADER, [format_interval(r.interval) for r in rows], False),
        _Column("vs best", [versus_best(r) for r in rows], True),
        *_accuracy_columns(board),
        _Column("val acc head", [format_metric(r.val_accuracy_head) for r in rows], False),
        _Column(
            "val acc fine-tune",
            [
                "skipped" if r.finetune_skipped else format_metric(r.val_accuracy_finetune)
                for r in rows
            ],
            False,
        ),
        *(
            _Column(
                headers[name],
                [format_value(name, r.hyperparameters.get(name)) for r in rows],
                is_text=_is_text_hp(rows, name),
                can_fold=_is_text_hp(rows, name),
            )
            for name in names
        ),
        _Column(
            "epochs", [str(r.epochs) if r.epochs is not None else missing for r in rows], False
        ),
        _Column("head time", [format_seconds(r.seconds_head) for r in rows], False),
        _Column("ft time", [format_seconds(r.seconds_finetune) for r in rows], False),
        _Column("curve", _curves(rows), True),
    ]


def _curves(rows: tuple[Row, ...]) -> list[str]:
    # One scale for the whole table: a taller curve is a better (or, for a loss, worse) trial.
    values = [v for row in rows for v in row.curve if v is not None]
    low, high = (min(values), max(values)) if values else (None, None)
    return [
        sparkline(row.curve_head, row.curve_finetune, low=low, high=high) or MISSING for row in rows
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


def render(board: Ranking, *, console: Console | None = None) -> None:
    """Prints the leaderboard table.

    In a terminal the table fits the window, leaving out the least important columns when it
    must. Anywhere else (a file, a pipe, a CI log) there is no window to fit: every column is
    printed, at the table's own width, so no line is wrapped or cut.

    Args:
        board: The trials, from `load` or `tuner.project.trials.read_ranking`.
        console: Where to print. Defaults to a new `Console()` on standard output.
    """
    console = console or Console()
    if console.is_terminal or console.is_jupyter:
        console.print(build_table(board, width=console.width))
    else:
        # Console.print caps `width` at the console's own, so a console as wide as the table
        # prints it, to the same file.
        wide = Console(
            file=console.file,
            width=max(console.width, _natural_width(board)),
            color_system=console.color_system,
            no_color=console.no_color,
        )
        wide.print(build_table(board))


def _natural_width(board: Ranking) -> int:
    # The width at which every column and caption line fits unbroken.
    columns = _columns(board)
    lines = [len(line) for line in caption(board, hidden=[]).plain.splitlines()]
    title_width = len(f"Trials by {board.objective} (higher is better)")
    return max([_table_width(columns), title_width, *lines, 20])


def _row_style(row: Row) -> str:
    if row.rank == 1:
        return "bold green"
    if row.exported:
        return "bold"
    if row.status in FAILED or row.status == UNREADABLE:
        return "red"
    if row.status in RUNNING:
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
