"""The errors tuner raises, and what each means to the search.

This module imports nothing heavy so that the CLI, the renderers and the tests can use it without
loading TensorFlow. The mapping onto KerasTuner's own semantics lives in `tuner.engine.transfer`: a
`TunerError` found before the search stops it before anything trains (exit code 2 on the command
line, `tuner._cli`); a `TrialError` raised inside a trial fails that trial alone and the search
goes on.
"""

from __future__ import annotations


class TunerError(Exception):
    """A problem the user can fix: bad input, bad configuration, missing weights.

    A command prints `str(error)` as one line on stderr and exits with code 2 (`tuner._cli`).
    """


class ConfigError(TunerError):
    """An invalid flag, option or combination of options."""


class SpaceError(ConfigError):
    """An invalid search-space file: the message names the key, the rule and the value."""


class DataError(TunerError):
    """The data folder cannot give a usable dataset (missing, empty, one class, ...)."""


class WeightsError(TunerError):
    """Pretrained weights could not be found, downloaded or loaded."""


class CacheError(TunerError):
    """The activation cache cannot be read or written (disk full, read-only, ...)."""


class TrialError(Exception):
    """One trial failed (diverged, ran out of memory, broke inside the model).

    The search marks that trial FAILED with `str(error)` as its one-line reason and goes on.
    """
