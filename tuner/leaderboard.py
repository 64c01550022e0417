"""`python -m tuner.leaderboard PROJECT_DIR [PROJECT_DIR ...] [--csv | --json]`: the leaderboard of
a search again. Several folders merge into one table, with a column naming each trial's project.
The table itself is `tuner.ui.board`'s; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys

from tuner.errors import TunerError, report
from tuner.ui.board import load, render


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
