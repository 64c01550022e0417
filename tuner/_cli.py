"""The command-line harness the five commands share: `python -m tuner.search`, `tuner.leaderboard`,
`tuner.export`, `tuner.predict` and `tuner.weights`.

A command is a `Command`: its name, its description, the flags it adds, what it does, and what a
Ctrl-C leaves behind. The harness declares the common flags (`--quiet`, `--debug`) once and ends
every command the same way, with one line on stderr for anything but success:

- the command ran, or `--help`: exit 0;
- a usage error (a flag argparse refuses): `error: MESSAGE (see python -m tuner.X --help)`, exit 2;
- a `TunerError` (bad input the user can fix): `error: MESSAGE`, exit 2;
- Ctrl-C: `interrupted: ...`, saying what is kept and how to go on, exit 130;
- any other exception (a bug): `error: unexpected NAME: MESSAGE; rerun with --debug ...`, exit 1.

`--debug` prints the traceback above the line. `Command.main` returns the exit status instead of
exiting, so tests and other code call it in-process. Light to import: a command's `--help` must
answer before anything heavy loads.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from tuner.errors import TunerError

USAGE_ERROR = 2  # argparse's own code for a usage error, kept for a TunerError too
UNEXPECTED = 1
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C

# The help of the flags every command takes, declared here only (`Command.build_parser`).
QUIET_HELP = "print only the result and errors: no progress lines or notes"
DEBUG_HELP = "show the traceback of an error, and TensorFlow's start-up messages"


class _UsageError(Exception):
    """A command line argparse refused; its message is argparse's, without the usage text."""


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors reach `Command.main` as an exception, so that they
    become one line (argparse itself prints the whole usage text, then exits)."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


class Command:
    """One command line: a subclass names it, adds its own flags and runs; the harness does the
    rest (the common flags, and how the command ends).

    Subclasses set `name`, `description` and `interrupted`, and override `add_arguments` and
    `run`.
    """

    name: str = ""  # the module under tuner: `python -m tuner.<name>`
    description: str = ""  # the first paragraph of `--help`
    # The one line a Ctrl-C prints: what is kept, and how to go on.
    interrupted: str = "interrupted."

    @property
    def prog(self) -> str:
        """How the command is run, as its usage line names it."""
        return f"python -m tuner.{self.name}"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Adds the command's own flags (not `--quiet` or `--debug`) to `parser`."""
        raise NotImplementedError

    def run(self, args: argparse.Namespace) -> int:
        """Does the command's work; returns its exit status. Raises `TunerError` for bad input."""
        raise NotImplementedError

    def build_parser(self) -> argparse.ArgumentParser:
        """The command's argument parser: its own flags, then the common ones."""
        parser = _Parser(prog=self.prog, description=self.description)
        self.add_arguments(parser)
        parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Runs the command line and returns the exit status (see the module docstring).

        Args:
            argv: The arguments, without the program name. Defaults to `sys.argv[1:]`.
        """
        parser = self.build_parser()
        try:
            args = parser.parse_args(argv)
        except _UsageError as error:
            return _fail(f"error: {error} (see {self.prog} --help)", USAGE_ERROR, debug=False)
        except SystemExit as exit_:  # --help (and --version-like actions) exit after printing
            return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR
        debug = bool(args.debug)
        try:
            return self.run(args)
        except TunerError as error:
            return _fail(f"error: {error}", USAGE_ERROR, debug=debug)
        except KeyboardInterrupt:
            return _fail(self.interrupted, INTERRUPTED, debug=debug)
        except Exception as error:  # noqa: BLE001 - a bug: one line, its name and the way to see more
            return _fail(
                f"error: unexpected {type(error).__name__}: {_first_line(error)}; rerun with "
                "--debug for the traceback",
                UNEXPECTED,
                debug=debug,
            )


def _fail(line: str, status: int, *, debug: bool) -> int:
    # Called inside the `except` block, so the traceback printed is the error's.
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr)
    return status


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[0] if lines else "(no message)"
    return line if len(line) <= 200 else line[:197] + "..."
