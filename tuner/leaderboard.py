"""The leaderboard of a search, shown: a rich table of its trials, best first, and its command line.

Reading and ranking the trials is `tuner.trials`'; this module shows them. Building the table
(`build_table`) is separate from printing it (`render`), so callers can embed the table in their
own layout, and tests can render it to a fixed-width console. It never imports TensorFlow.

Run it as `python -m tuner.leaderboard PROJECT_DIR [--json]`.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuner import hp
from tuner.errors import TunerError
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
    to_json,
)

__all__ = [
    "Leaderboard",
    "Row",
    "build_table",
    "load_leaderboard",
    "main",
    "render",
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

    Args:
        board: The leaderboard, from `load_leaderboard`.
        console: Where to print. Defaults to a new `Console()` on standard output.
    """
    console = console or Console()
    console.print(build_table(board, width=console.width))


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
    run = board.run
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
    facts.append(_counts(board.rows))

    lines = [Text(" · ".join(facts))]
    best = next((row for row in board.rows if row.rank == 1), None)
    if best is not None:
        lines.append(
            Text(f"best: trial {best.trial_id} ({board.objective} {_format_metric(best.score)})")
        )
    skipped = sum(1 for row in board.rows if row.finetune_skipped)
    if skipped:
        keep = integer(run.get("finetune_contenders"))
        lines.append(
            Text(
                f"phase 2 skipped in {skipped} trial{'s' if skipped > 1 else ''}: head-only score "
                f"not among the {keep or 'N'} best so far (--finetune-contenders)"
            )
        )
    if hidden:
        lines.append(Text(f"not shown, for width: {', '.join(hidden)} (--json has every column)"))
    # Rich tables cannot span a cell across columns, so reasons go below the table, where a full
    # line is available, instead of into a column squeezed to a few characters.
    for row in board.rows:
        if row.reason and row.rank is None and row.status != COMPLETED:
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
