"""The leaderboard of a search, shown: a rich table of its trials, best first, and its command line.

Reading and ranking the trials is `tuner.trials`'; this module shows them. Building the table
(`build_table`) is separate from printing it (`render`), so callers can embed the table in their
own layout, and tests can render it to a fixed-width console. `load` returns a `Board`, which
renders itself in a notebook. It never imports TensorFlow.

Run it as `python -m tuner.leaderboard PROJECT_DIR [PROJECT_DIR ...] [--csv | --json]`: several
folders merge into one table, with a column naming each trial's project.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner import hp
from tuner.errors import TunerError, report
from tuner.hp import format_value
from tuner.project import integer
from tuner.trials import (
    COMPLETED,
    FAILED,
    RUNNING,
    UNREADABLE,
    Leaderboard,
    Row,
    load_leaderboard,
    merge,
    read_csv,
    rows_from_json,
    to_csv,
    to_json,
)

__all__ = [
    "Board",
    "Leaderboard",
    "Row",
    "build_table",
    "load",
    "load_leaderboard",
    "main",
    "read_csv",
    "render",
    "rows_from_json",
    "sparkline",
    "to_csv",
    "to_json",
]

_MISSING = "-"
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
class Board(Leaderboard):
    """A leaderboard that shows itself: as the rich table when printed by rich, and as that table
    in a notebook (HTML, with a text form for plain front ends).

    `records()`, `to_csv()` and `to_json()` give it as data.
    """

    def __rich__(self) -> Table:
        return build_table(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from tuner.display import RichOutput

        return RichOutput(build_table(self), width=_natural_width(self))._repr_mimebundle_()

    def to_csv(self) -> str:
        """The records as CSV (`tuner.trials.to_csv`)."""
        return to_csv(self)

    def to_json(self) -> str:
        """Every row as JSON (`tuner.trials.to_json`)."""
        return to_json(self)

    def __repr__(self) -> str:
        best = next((row for row in self.rows if row.rank == 1), None)
        shown = f", best trial {best.trial_id} ({_format_metric(best.score)})" if best else ""
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
    boards = [load_leaderboard(Path(directory)) for directory in project_dirs]
    board = merge(boards)
    return Board(**{f.name: getattr(board, f.name) for f in dataclasses.fields(board)})


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
    caption = _caption(board, hidden=hidden)
    # The caption wraps at the table's width; a table narrower than its caption (few trials, few
    # columns) widens to it rather than break a line of facts, as far as `width` allows.
    longest = max((len(line) for line in caption.plain.splitlines()), default=0)
    table = Table(
        title=title if title is not None else f"Trials by {board.objective} ({better} is better)",
        caption=caption,
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
# after it, and all of them are in the JSON output.
_HIDE_ORDER = ("epochs", "ft time", "head time", "curve", "val acc head", "val acc fine-tune")


def _columns(board: Leaderboard) -> list[_Column]:
    rows = board.rows
    names = _hp_names(rows)
    headers = _hp_headers(names)
    missing = _MISSING
    project = (
        [_Column("project", [r.project or missing for r in rows], True, can_fold=True)]
        if len(board.runs) > 1
        else []
    )
    return [
        _Column("#", [str(r.rank) if r.rank is not None else missing for r in rows], False),
        *project,
        _Column("trial", [r.trial_id for r in rows], True),
        _Column("status", [r.status.lower() for r in rows], True),
        _Column(board.objective, [_format_metric(r.score) for r in rows], False),
        _Column("val acc head", [_format_metric(r.val_accuracy_head) for r in rows], False),
        _Column(
            "val acc fine-tune",
            [
                "skipped" if r.finetune_skipped else _format_metric(r.val_accuracy_finetune)
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
        _Column("head time", [_format_seconds(r.seconds_head) for r in rows], False),
        _Column("ft time", [_format_seconds(r.seconds_finetune) for r in rows], False),
        _Column("curve", _curves(rows), True),
    ]


SPARK = "▁▂▃▄▅▆▇█"
PHASE_MARK = "|"  # between a trial's last head epoch and its first fine-tuning epoch


def sparkline(
    head: tuple[float | None, ...],
    finetune: tuple[float | None, ...] = (),
    *,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """A learning curve in block characters, one per epoch, "|" where phase 2 starts.

    Heights run from `low` to `high` (default: the curve's own range), so curves drawn with the
    same bounds compare by height; a missing value is a space.
    """
    values = [v for v in (*head, *finetune) if v is not None]
    if not values:
        return ""
    low = min(values) if low is None else low
    high = max(values) if high is None else high

    def char(value: float | None) -> str:
        if value is None:
            return " "
        if high <= low:
            return SPARK[len(SPARK) // 2]
        share = (min(max(value, low), high) - low) / (high - low)
        return SPARK[round(share * (len(SPARK) - 1))]

    text = "".join(map(char, head))
    if finetune:
        text += (PHASE_MARK if head else "") + "".join(map(char, finetune))
    return text


def _curves(rows: tuple[Row, ...]) -> list[str]:
    # One scale for the whole table: a taller curve is a better (or, for a loss, worse) trial.
    values = [v for row in rows for v in row.curve if v is not None]
    low, high = (min(values), max(values)) if values else (None, None)
    return [
        sparkline(row.curve_head, row.curve_finetune, low=low, high=high) or _MISSING
        for row in rows
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


def render(board: Leaderboard, *, console: Console | None = None) -> None:
    """Prints the leaderboard table.

    In a terminal the table fits the window, leaving out the least important columns when it
    must. Anywhere else (a file, a pipe, a CI log) there is no window to fit: every column is
    printed, at the table's own width, so no line is wrapped or cut.

    Args:
        board: The leaderboard, from `load_leaderboard` or `load`.
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


def _natural_width(board: Leaderboard) -> int:
    # The width at which every column and caption line fits unbroken.
    columns = _columns(board)
    caption = _caption(board, hidden=[])
    lines = [len(line) for line in caption.plain.splitlines()]
    title_width = len(f"Trials by {board.objective} (higher is better)")
    return max([_table_width(columns), title_width, *lines, 20])


def _row_style(row: Row) -> str:
    if row.rank == 1:
        return "bold green"
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
    if len(board.runs) > 1:
        lines = [
            Text(
                f"{name}: "
                + " · ".join(_run_facts(run, [r for r in board.rows if r.project == name]))
            )
            for name, run in board.runs.items()
        ]
    else:
        lines = [Text(" · ".join(_run_facts(board.run, list(board.rows))))]
    best = next((row for row in board.rows if row.rank == 1), None)
    if best is not None:
        where = f" of {best.project}" if len(board.runs) > 1 else ""
        lines.append(
            Text(
                f"best: trial {best.trial_id}{where} ({board.objective} "
                f"{_format_metric(best.score)})"
            )
        )
    skipped = sum(1 for row in board.rows if row.finetune_skipped)
    if skipped:
        keeps = {integer(run.get("finetune_contenders")) for run in board.runs.values()}
        keep = keeps.pop() if len(keeps) == 1 else None
        lines.append(
            Text(
                f"phase 2 skipped in {skipped} trial{'s' if skipped > 1 else ''}: head-only score "
                f"not among the {keep or 'N'} best so far (--finetune-contenders)"
            )
        )
    if any(row.curve for row in board.rows):
        lines.append(
            Text(
                f"curve: {board.objective} per epoch, one scale for the table; "
                f"{PHASE_MARK} where fine-tuning starts"
            )
        )
    if hidden:
        lines.append(Text(f"not shown, for width: {', '.join(hidden)} (--json has every column)"))
    # Rich tables cannot span a cell across columns, so reasons go below the table, where a full
    # line is available, instead of into a column squeezed to a few characters.
    for row in board.rows:
        if row.reason and row.rank is None and row.status != COMPLETED:
            where = f" ({row.project})" if len(board.runs) > 1 else ""
            lines.append(Text(f"trial {row.trial_id}{where} {row.status.lower()}: {row.reason}"))
    return Text("\n").join(lines)


def _run_facts(run: dict[str, Any], rows: list[Row]) -> list[str]:
    facts = [_weights_fact(run.get("weights"))]
    if "augment" in run:
        views = integer(run.get("augment_views")) or 0
        augment = "on" if run["augment"] else "off"
        if run["augment"] and views:
            augment += f" ({views} cached views)"
        facts.append(f"augmentation {augment}")
    backbones = run.get("backbones")
    if isinstance(backbones, list) and backbones:
        size = run.get("image_size")
        facts.append(", ".join(map(str, backbones)) + (f" at {size}px" if size else ""))
    facts.append(_counts(tuple(rows)))
    return facts


def _weights_fact(weights: Any) -> str:
    if not isinstance(weights, str) or not weights:
        return "weights unknown"
    if weights == "none":
        return "weights none (random init)"
    if weights.startswith("file:"):
        return f"weights from file {weights[len('file:') :]}"
    return f"weights {weights}"


def _counts(rows: tuple[Row, ...]) -> str:
    completed = sum(row.status == COMPLETED for row in rows)
    failed = sum(row.status in FAILED for row in rows)
    running = sum(row.status in RUNNING for row in rows)
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
        description="Show the trials of one search, or of several merged into one ranking, "
        "best first.",
    )
    parser.add_argument(
        "project_dirs",
        nargs="+",
        metavar="PROJECT_DIR",
        help="the folder a search wrote; several are merged into one table with a project column",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print every field of every trial as JSON instead of a table",
    )
    output.add_argument(
        "--csv",
        action="store_true",
        help="print one CSV row per trial (hyperparameters, both phases' metrics, epochs, times, "
        "status, learning curves) instead of a table",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback when something goes wrong"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line: shows the leaderboard of the PROJECT_DIRs.

    Args:
        argv: The arguments, without the program name. Defaults to `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 on a usage error or a `TunerError` (reported as one line
        on standard error; with `--debug`, after the full traceback).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits on --help and on usage errors (after printing them); returning the code
        # keeps main() callable from tests and other code.
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        board = load(*args.project_dirs)
    except TunerError as error:
        return report(error, debug=args.debug)
    if args.json:
        print(board.to_json())
    elif args.csv:
        sys.stdout.write(board.to_csv())
    else:
        render(board)
    return 0


if __name__ == "__main__":
    sys.exit(main())
