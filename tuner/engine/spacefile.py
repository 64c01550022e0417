"""One search-space file: its TOML entries, the rules their values must meet, and the `Param`
each entry becomes.

`read_file` parses one file with the standard library's `tomllib` (data only, nothing is
evaluated) and validates every entry; a message names the file, the `[key]`, the rule and the
value, with a "did you mean" (docs/spaces.md). `tuner.engine.spaces` lays the files over one
another and declares the result on KerasTuner. This module imports neither TensorFlow nor
KerasTuner.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError
from tuner.hp import DROPOUT, FINETUNE_LR, HEAD_LR, NAMES, TUNER_PREFIX, UNFREEZE_BLOCKS, UNITS

KINDS: tuple[str, ...] = ("choice", "int", "float", "fixed")
SAMPLINGS: tuple[str, ...] = ("linear", "log", "reverse_log")
RESERVED_PREFIX = TUNER_PREFIX

_FIELDS: dict[str, tuple[str, ...]] = {
    "choice": ("type", "values", "default"),
    "int": ("type", "min", "max", "step", "sampling", "default"),
    "float": ("type", "min", "max", "step", "sampling", "default"),
    "fixed": ("type", "value"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "choice": ("values",),
    "int": ("min", "max"),
    "float": ("min", "max"),
    "fixed": ("value",),
}


@dataclass(frozen=True)
class _Rule:
    """What the model builder needs of one hyperparameter's values."""

    integer: bool  # Only integers make sense (a layer width, a count of blocks).
    holds: Callable[[float], bool]  # True for every value the model can be built with.
    text: str  # The rule as written in messages.


# Checked on min and max (an interval holds a convex rule iff both ends do), on every choice and
# on a fixed value. The upper bound of unfreeze_blocks depends on the backbone: validate_unfreeze.
_RULES: dict[str, _Rule] = {
    # 0 is the linear head: fitted as a logistic regression in phase 1, then fine-tuned (LP-FT).
    UNITS: _Rule(True, lambda v: v >= 0, "`head.units >= 0`"),
    DROPOUT: _Rule(False, lambda v: 0 <= v < 1, "`0 <= head.dropout < 1`"),
    HEAD_LR: _Rule(False, lambda v: v > 0, "`head.learning_rate > 0`"),
    UNFREEZE_BLOCKS: _Rule(True, lambda v: v >= 0, "`finetune.unfreeze_blocks >= 0`"),
    FINETUNE_LR: _Rule(False, lambda v: v > 0, "`finetune.learning_rate > 0`"),
}
assert tuple(_RULES) == NAMES

PARAM_NAMES: tuple[str, ...] = tuple(_RULES)
"""Every hyperparameter a space declares, in declaration order (KerasTuner needs it stable)."""

KEYS: tuple[str, ...] = tuple(name.replace("/", ".") for name in PARAM_NAMES)
_GROUPS: frozenset[str] = frozenset(key.split(".")[0] for key in KEYS)


@dataclass(frozen=True)
class Param:
    """One validated hyperparameter and how to declare it on KerasTuner."""

    name: str  # Namespaced KerasTuner name, e.g. "head/units".
    kind: str  # "choice" | "int" | "float" | "fixed".
    values: tuple[Any, ...] | None  # The choices; None unless kind == "choice".
    min: float | None  # Inclusive lower bound for int and float; None otherwise.
    max: float | None  # Inclusive upper bound for int and float; None otherwise.
    step: float | None  # Grid step for int and float (a multiplier under log sampling).
    sampling: str | None  # "linear" | "log" | "reverse_log" for int and float; None otherwise.
    default: Any  # Never None: an omitted default is resolved to what KerasTuner would use.
    source: str = ""  # The file the entry was read from, for messages.

    @property
    def key(self) -> str:
        """The name as written in a space file (`head.units`)."""
        return self.name.replace("/", ".")

    def declare(self, hp: Any) -> Any:
        """Declares this hyperparameter on `hp` and returns its value in the current trial.

        Args:
            hp: A `keras_tuner.HyperParameters`, duck-typed so this module never imports it.

        Returns:
            The value KerasTuner holds for this trial; the default on a fresh `hp`.
        """
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values or ()), default=self.default)
        if self.kind == "int":
            return hp.Int(
                self.name,
                min_value=self.min,
                max_value=self.max,
                step=self.step,
                sampling=self.sampling,
                default=self.default,
            )
        if self.kind == "float":
            return hp.Float(
                self.name,
                min_value=self.min,
                max_value=self._float_max_value(),
                step=self.step,
                sampling=self.sampling,
                default=self.default,
            )
        return hp.Fixed(self.name, self.default)

    def _float_max_value(self) -> float:
        """The `max_value` to hand KerasTuner so that a stepped float can reach `max`.

        KerasTuner 1.4.8 counts a linear grid with `(max - min) // step + 1`, and floor division
        is exact: `0.5 // 0.1 == 4.0`, so `0.0..0.5 step 0.1` would never sample 0.5. Nudging the
        bound by a billionth of a step restores the count the file means without adding a point.
        """
        assert self.min is not None and self.max is not None
        if self.step is None or self.sampling != "linear":
            return self.max
        ratio = (self.max - self.min) / self.step
        if (self.max - self.min) // self.step < round(ratio) and math.isclose(
            ratio, round(ratio), rel_tol=0.0, abs_tol=1e-9
        ):
            return self.max + self.step * 1e-9
        return self.max

    def positive_values(self) -> tuple[Any, ...] | None:
        """The values above 0 this hyperparameter can take, as a condition on it lists them; None
        when it takes no other value (every value is above 0). Only integer hyperparameters are
        parents (`ACTS_WHEN_POSITIVE`); an int range below 1 is linear (log needs `min > 0`)."""
        if self.kind == "choice":
            values: tuple[Any, ...] = tuple(self.values or ())
        elif self.kind == "fixed":
            values = (self.default,)
        else:
            assert self.kind == "int" and self.min is not None and self.max is not None
            if self.min > 0:
                return None
            values = tuple(range(int(self.min), int(self.max) + 1, int(self.step or 1)))
        positive = tuple(value for value in values if value > 0)
        return None if len(positive) == len(values) else positive

    def largest(self) -> Any:
        """The largest value this hyperparameter can take."""
        if self.kind == "choice":
            return max(self.values or ())
        if self.kind == "fixed":
            return self.default
        return self.max


def read_file(path: Path) -> dict[str, Param]:
    """Parses one space file into validated entries, keyed by hyperparameter name."""
    src = str(path)
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError as err:
        raise SpaceError(f"{src}: the space file does not exist.") from err
    except tomllib.TOMLDecodeError as err:
        # tomllib's message ends with "(at line L, column C)", which is the part the user needs.
        raise SpaceError(f"{src}: invalid TOML: {err}.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise SpaceError(f"{src}: cannot read the space file: {err}.") from err
    return {
        key.replace(".", "/"): _parse_entry(src, key, entry)
        for key, entry in _entries(src, document)
    }


def _entries(src: str, document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields `(dotted key, table)` for every entry, rejecting keys that are not hyperparameters."""
    for group, table in document.items():
        first = next(iter(table), None) if isinstance(table, dict) and table else None
        if group == "tuner" or group.startswith(RESERVED_PREFIX):
            key = f"{group}.{first}" if first and group == "tuner" else group
            raise SpaceError(
                f"{src}: [{key}] uses the `tuner/` prefix, which KerasTuner reserves for its own "
                f"hyperparameters (tuner/epochs, tuner/trial_id, ...); rename it."
            )
        if group == "backbone":
            raise SpaceError(
                f"{src}: [backbone] does not belong in a space file: the tuner declares "
                f"`backbone` itself from the backbones being searched."
            )
        if group not in _GROUPS:
            key = f"{group}.{first}" if first else group.replace("/", ".")
            raise _unknown_key(src, key)
        members = ", ".join(k for k in KEYS if k.startswith(group + "."))
        _require_table(src, group, table, f"a table of hyperparameters ({members}), but got")
        for name, entry in table.items():
            key = f"{group}.{name}"
            if key not in KEYS:
                raise _unknown_key(src, key)
            fix = f'; for a constant write type = "fixed" and value = {_show(entry)}'
            _require_table(src, key, entry, "a table with a `type` field, but got", fix)
            yield key, entry


def _require_table(src: str, key: str, value: Any, what: str, fix: str = "") -> None:
    """Raises a `SpaceError` saying `[key]` must be `what`, unless `value` is a table."""
    if not isinstance(value, dict):
        raise SpaceError(f"{src}: [{key}] must be {what} {key} = {_show(value)}{fix}.")


def _parse_entry(src: str, key: str, entry: dict[str, Any]) -> Param:
    """Validates one entry and turns it into a `Param`."""
    where = f"{src}: [{key}]"
    kind = entry.get("type")
    if kind is None:
        raise SpaceError(
            f"{where} is missing the required field `type` (one of {', '.join(KINDS)})."
        )
    if kind not in KINDS:
        raise SpaceError(
            f"{where} has unknown type = {_show(kind)}; expected one of {', '.join(KINDS)}."
            f"{suggest(str(kind), KINDS)}"
        )
    for field in entry:
        if field not in _FIELDS[kind]:
            others = [other for other in KINDS if field in _FIELDS[other]]
            if others:
                hint = f" It applies to type = {' or '.join(_show(o) for o in others)}."
            else:
                hint = suggest(field, _FIELDS[kind], "`{}`")
            raise SpaceError(
                f"{where} has unknown field `{field}` for type = {_show(kind)}; "
                f"its fields are {', '.join(_FIELDS[kind])}.{hint}"
            )
    for field in _REQUIRED[kind]:
        if field not in entry:
            raise SpaceError(
                f"{where} is missing the required field `{field}` for type = {_show(kind)}."
            )

    name = key.replace(".", "/")
    rule = _RULES[name]
    if kind == "choice":
        return _parse_choice(where, name, rule, entry, src)
    if kind == "fixed":
        return _parse_fixed(where, name, rule, entry, src)
    return _parse_range(where, name, kind, rule, entry, src)


def _parse_choice(where: str, name: str, rule: _Rule, entry: dict[str, Any], src: str) -> Param:
    values = entry["values"]
    if not isinstance(values, list):
        raise SpaceError(f"{where} `values` must be a list, but got values = {_show(values)}.")
    if not values:
        raise SpaceError(f"{where} `values` must not be empty, but got values = [].")
    kinds = {type(value) for value in values}
    if len(kinds) > 1:
        # KerasTuner's Choice rejects mixed types; TOML reads 1 as int and 1.0 as float.
        names = ", ".join(sorted(t.__name__ for t in kinds))
        hint = " Write floats with a decimal point (1.0, not 1)." if kinds == {int, float} else ""
        raise SpaceError(
            f"{where} all `values` must have one type, "
            f"but got values = {_show(values)} ({names}).{hint}"
        )
    value_type = kinds.pop()
    if value_type not in (int, float, str, bool):
        raise SpaceError(
            f"{where} `values` must be integers, floats, strings or booleans, "
            f"but got values = {_show(values)}."
        )
    if len(set(values)) != len(values):
        raise SpaceError(f"{where} `values` must be distinct, but got values = {_show(values)}.")
    default = entry.get("default", values[0])
    if type(default) is not value_type or default not in values:
        raise SpaceError(
            f"{where} `default in values` must hold, but got "
            f"(values={_show(values)}, default={_show(default)})."
        )
    _check_type(where, rule, value_type, f"values = {_show(values)}")
    for index, value in enumerate(values):
        _check_value(where, rule, f"values[{index}]", value)
    return Param(name, "choice", tuple(values), None, None, None, None, default, src)


def _parse_fixed(where: str, name: str, rule: _Rule, entry: dict[str, Any], src: str) -> Param:
    value = entry["value"]
    if type(value) not in (int, float, str, bool):
        raise SpaceError(
            f"{where} `value` must be an integer, float, string or boolean, "
            f"but got value = {_show(value)}."
        )
    _check_type(where, rule, type(value), f"value = {_show(value)}")
    _check_value(where, rule, "value", value)
    return Param(name, "fixed", None, None, None, None, None, value, src)


def _parse_range(
    where: str, name: str, kind: str, rule: _Rule, entry: dict[str, Any], src: str
) -> Param:
    integer = kind == "int"
    if rule.integer and not integer:
        raise SpaceError(
            f'{where} takes integer values: use type = "int" or a choice of integers, '
            f"but got type = {_show(kind)}."
        )
    low = _number(where, "min", entry["min"], integer)
    high = _number(where, "max", entry["max"], integer)
    if low > high:
        raise SpaceError(f"{where} `min <= max` must hold, but got (min={low}, max={high}).")
    sampling = entry.get("sampling", "linear")
    if sampling not in SAMPLINGS:
        raise SpaceError(
            f"{where} `sampling` must be one of {', '.join(SAMPLINGS)}, "
            f"but got sampling = {_show(sampling)}.{suggest(str(sampling), SAMPLINGS)}"
        )
    if sampling != "linear" and low <= 0:
        raise SpaceError(
            f"{where} `min > 0` must hold with sampling = {_show(sampling)}, but got (min={low})."
        )
    step = entry.get("step")
    if step is not None:
        step = _number(where, "step", step, integer)
        if sampling == "linear" and step <= 0:
            raise SpaceError(f"{where} `step > 0` must hold, but got (step={step}).")
        if sampling != "linear" and step <= 1:
            # Under log sampling KerasTuner multiplies by the step instead of adding it.
            raise SpaceError(
                f"{where} `step > 1` must hold with sampling = {_show(sampling)} (the step is a "
                f"multiplier), but got (step={step})."
            )
    default = _number(where, "default", entry.get("default", low), integer)
    if not low <= default <= high:
        raise SpaceError(
            f"{where} `min <= default <= max` must hold, but got "
            f"(min={low}, default={default}, max={high})."
        )
    if step is not None and not _on_grid(default, low, high, step, sampling):
        # A default off the grid would be tried once and never again by the search.
        raise SpaceError(
            f"{where} `default` must lie on the grid of `step` from `min`, but got "
            f"(min={low}, step={step}, sampling={_show(sampling)}, default={default})."
        )
    for field, value in (("min", low), ("max", high)):
        _check_value(where, rule, field, value)
    return Param(name, kind, None, low, high, step, sampling, default, src)


def _number(where: str, field: str, value: Any, integer: bool) -> Any:
    """Returns `value` as an int (for type "int") or a float, or raises a `SpaceError`."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer and not (is_number and isinstance(value, int)):
        raise SpaceError(
            f'{where} `{field}` must be an integer for type = "int", '
            f"but got {field} = {_show(value)}."
        )
    if not is_number:
        raise SpaceError(f"{where} `{field}` must be a number, but got {field} = {_show(value)}.")
    if not math.isfinite(value):
        raise SpaceError(f"{where} `{field}` must be finite, but got {field} = {_show(value)}.")
    return value if integer else float(value)


def _check_type(where: str, rule: _Rule, value_type: type, shown: str) -> None:
    """Rejects values of a type the model builder cannot use for this hyperparameter."""
    if rule.integer and value_type is not int:
        raise SpaceError(f"{where} takes integer values, but got {shown}.")
    if value_type not in (int, float):
        raise SpaceError(f"{where} takes numeric values, but got {shown}.")


def _check_value(where: str, rule: _Rule, field: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(f"{where} `{field}` must be finite, but got {field} = {_show(value)}.")
    if not rule.holds(value):
        raise SpaceError(f"{where} {rule.text} must hold, but got ({field}={value}).")


def _on_grid(value: float, low: float, high: float, step: float, sampling: str) -> bool:
    """Whether `value` is one of the points KerasTuner samples for this stepped range."""
    if sampling == "linear":
        index = (value - low) / step
    elif sampling == "log":
        index = math.log(value / low, step)
    else:
        index = math.log((high - value + low) / low, step)
    return math.isclose(index, round(index), rel_tol=0.0, abs_tol=1e-6)


def suggest(word: str, candidates: tuple[str, ...], template: str = "{}") -> str:
    """` Did you mean X?` for the closest candidate (written with `template`), or ``."""
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" Did you mean {template.format(matches[0])}?" if matches else ""


def _unknown_key(src: str, key: str) -> SpaceError:
    hint = suggest(key, KEYS, "[{}]") or f" The known keys are {', '.join(KEYS)}."
    return SpaceError(f"{src}: [{key}] is not a known hyperparameter.{hint}")


def _show(value: Any) -> str:
    """Writes a value from a space file the way TOML writes it (`"log"`, `true`, `[1, 2]`)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_show(item)}" for key, item in value.items()) + "}"
    return str(value)
