"""`python -m tuner.leaderboard PROJECT_DIR [PROJECT_DIR ...] [--csv | --json]`: the leaderboard of
a search again: each trial's score with its 95 % interval, the trials tied with the best, the
one-se pick, the exported trial, and the test set's figures when the project has them. Several
folders merge into one table, with a column naming each trial's project. The table itself is
`tuner.ui.board`'s; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys

from tuner._cli import Command


class _Leaderboard(Command):
    name = "leaderboard"
    description = (
        "Show the trials of one search, or of several merged into one ranking, best first."
    )
    # Reading changes nothing on disk.
    interrupted = "interrupted: nothing was changed."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "project_dirs",
            nargs="+",
            metavar="PROJECT_DIR",
            help="the folder a search wrote; several are merged into one table with a project "
            "column",
        )
        output = parser.add_mutually_exclusive_group()
        output.add_argument(
            "--json",
            action="store_true",
            help="print every field of every trial (interval, ties, per-class recall and "
            "confusion, the best epoch's metrics) and the test set's figures as JSON instead of "
            "a table",
        )
        output.add_argument(
            "--csv",
            action="store_true",
            help="print one CSV row per trial (interval, ties, hyperparameters, the best "
            "epoch's metrics, recall per class, both phases' metrics, epochs, times, status, "
            "learning curves) instead of a table",
        )

    def run(self, args: argparse.Namespace) -> int:
        # The leaderboard is the result, and this command prints nothing else: `--quiet` leaves
        # its output as it is.
        from tuner.ui.board import load, render

        board = load(*args.project_dirs)
        if args.json:
            print(board.to_json())
        elif args.csv:
            sys.stdout.write(board.to_csv())
        else:
            render(board)
        return 0


main = _Leaderboard().main  # main(argv) runs the command line, returns the exit status


if __name__ == "__main__":
    sys.exit(main())
