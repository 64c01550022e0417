"""Search spaces: read TOML space files, lay them over one another, and declare them on KerasTuner.

A search space is data, not code: `search_spaces/default.toml`, then the backbone family's file,
then the user's `--space FILE`, each read by `tuner.engine.spacefile` (parsed with `tomllib` and
validated) and laid over the one before, key by key. The format, the layering and the rules are in
docs/spaces.md. The set of hyperparameters is fixed (`tuner.hp.NAMES`); an unknown key is
rejected with a suggestion. A hyperparameter that acts only when its parent is above 0
(`tuner.hp.ACTS_WHEN_POSITIVE`) is declared under a KerasTuner condition on the parent's values,
so a trial in which it would do nothing neither holds nor searches it.

This module imports neither TensorFlow nor KerasTuner: `declare` takes the `HyperParameters`
object duck-typed, so the CLI can load and validate a space before anything heavy is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuner.config import SearchConfig
from tuner.engine.spacefile import KEYS, PARAM_NAMES, Param, read_file, suggest
from tuner.errors import SpaceError
from tuner.hp import ACTS_WHEN_POSITIVE, UNFREEZE_BLOCKS

__all__ = [
    "FAMILIES",
    "PARAM_NAMES",
    "SPACES_DIR",
    "Param",
    "Space",
    "load_space",
    "space_for",
    "validate_unfreeze",
]

SPACES_DIR: Path = Path(__file__).resolve().parents[2] / "search_spaces"
"""The bundled space files: `default.toml` plus one file per family whose defaults differ."""

FAMILIES: tuple[str, ...] = (
    "vgg",
    "resnet",
    "resnetv2",
    "inception",
    "xception",
    "mobilenet",
    "densenet",
    "nasnet",
    "efficientnet",
    "efficientnetv2",
    "convnext",
    "tiny",  # The test backbone.
)
"""Backbone families `load_space` accepts; a family without its own file uses the default."""

# The condition of a hyperparameter that can never act (its parent is fixed at 0): no value of
# the parent, whose rule is `>= 0`, meets it.
_NEVER: tuple[int, ...] = (-1,)


@dataclass(frozen=True)
class Space:
    """A validated search space: every hyperparameter in `PARAM_NAMES`, in that order."""

    params: tuple[Param, ...]  # One per name in PARAM_NAMES, in that order.
    sources: tuple[str, ...]  # The files it was read from, lowest priority first.

    @property
    def names(self) -> tuple[str, ...]:
        """The hyperparameter names, in declaration order."""
        return tuple(param.name for param in self.params)

    def declare(self, hp: Any) -> dict[str, Any]:
        """Declares every hyperparameter on `hp`, always in the same order with the same conditions.

        KerasTuner learns the space by calling `build()`, and a worker of a distributed search
        declares it again: the same names, order and conditions in every process keep one space.
        A hyperparameter of `ACTS_WHEN_POSITIVE` is declared under the condition that its parent
        takes one of its values above 0 (`conditional_scope` needs the values listed); where the
        parent takes no other value the condition is dropped, and where it takes none the
        hyperparameter is a `Fixed` default that is never active. A name `hp` already holds
        without a condition (the space of a project made before conditions existed, reloaded by
        its oracle) stays so, and its trials keep holding every value.

        Args:
            hp: A `keras_tuner.HyperParameters`.

        Returns:
            `{name: value}` for the current trial; None for an inactive hyperparameter.
        """
        values: dict[str, Any] = {}
        for param in self.params:
            parent = ACTS_WHEN_POSITIVE.get(param.name)
            active = None if parent is None else self.get(parent).positive_values()
            if active is None or _declared_plainly(hp, param.name):
                values[param.name] = param.declare(hp)
                continue
            assert parent is not None
            with hp.conditional_scope(parent, list(active or _NEVER)):
                if active:
                    values[param.name] = param.declare(hp)
                else:
                    values[param.name] = hp.Fixed(param.name, param.default)
        return values

    def get(self, name: str) -> Param:
        """Returns the hyperparameter called `name` (`head/units`).

        Raises:
            KeyError: `name` is not in the space; a caller's bug, not a user's.
        """
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(f"No hyperparameter {name!r}.{suggest(name, self.names)}")

    def max_unfreeze_blocks(self) -> int:
        """The largest number of backbone blocks any trial may unfreeze in phase 2."""
        return int(self.get(UNFREEZE_BLOCKS).largest())


def _declared_plainly(hp: Any, name: str) -> bool:
    """Whether `hp` already holds `name` without a condition."""
    return any(p.name == name and not p.conditions for p in getattr(hp, "space", ()))


def load_space(family: str | None = None, path: str | os.PathLike[str] | None = None) -> Space:
    """Loads and validates `default.toml`, then the family's file, then the user's file.

    Args:
        family: A backbone family in `FAMILIES`; its file overrides the default when it exists.
            Defaults to `None` (the default space alone).
        path: A user's space file (`--space FILE`), applied last. Defaults to `None`.

    Returns:
        The merged `Space`.

    Raises:
        SpaceError: A file is missing, is not valid TOML, or breaks a rule; the message names the
            file, the key, the rule and the value.
    """
    layers = [SPACES_DIR / "default.toml"]
    if family is not None:
        if family not in FAMILIES:
            raise SpaceError(
                f"Unknown backbone family {family!r}; expected one of {', '.join(FAMILIES)}."
                f"{suggest(family, FAMILIES)}"
            )
        family_file = SPACES_DIR / f"{family}.toml"
        if family_file.is_file():
            layers.append(family_file)
    if path is not None:
        layers.append(Path(os.fspath(path)).expanduser())

    merged: dict[str, Param] = {}
    for layer in layers:
        merged.update(read_file(layer))
    sources = tuple(str(layer) for layer in layers)
    for name in PARAM_NAMES:
        if name not in merged:
            raise SpaceError(
                f"{', '.join(sources)}: no entry for [{name.replace('/', '.')}]; "
                f"every space must define {', '.join(KEYS)}."
            )
    return Space(params=tuple(merged[name] for name in PARAM_NAMES), sources=sources)


def space_for(config: SearchConfig) -> Space:
    """The space a search configuration searches: `load_space` with the family of its backbone
    (when it searches one; several share the default) and its `--space` file.

    With `--epochs-finetune 0` no trial fine-tunes, so `finetune/unfreeze_blocks` is fixed at 0
    (and `finetune/learning_rate`, which acts only above 0, is never searched): trials that
    differed only in them would be the same trial.
    """
    from tuner.models.registry import get_backbone  # loads Keras: only once a search is decided

    one = len(config.backbones) == 1
    space = load_space(get_backbone(config.backbones[0]).family if one else None, config.space)
    if config.epochs_finetune == 0:
        space = _without_finetuning(space)
    return space


def _without_finetuning(space: Space) -> Space:
    """`space` with `finetune/unfreeze_blocks` fixed at 0."""
    params = tuple(
        replace(
            param,
            kind="fixed",
            values=None,
            min=None,
            max=None,
            step=None,
            sampling=None,
            default=0,
            source="--epochs-finetune 0",
        )
        if param.name == UNFREEZE_BLOCKS
        else param
        for param in space.params
    )
    return replace(space, params=params)


def validate_unfreeze(space: Space, n_blocks: int, backbone: str) -> None:
    """Checks that no trial can unfreeze more blocks than `backbone` has.

    Args:
        space: The loaded space.
        n_blocks: How many blocks the backbone's registry entry can unfreeze.
        backbone: The backbone's name, for the message.

    Raises:
        SpaceError: The space's largest `finetune.unfreeze_blocks` exceeds `n_blocks`.
    """
    param = space.get(UNFREEZE_BLOCKS)
    largest = space.max_unfreeze_blocks()
    if largest > n_blocks:
        raise SpaceError(
            f"{param.source}: [{param.key}] `unfreeze_blocks <= blocks of the backbone` must hold "
            f"for backbone {backbone!r}, but got (max={largest}, blocks={n_blocks}); "
            f"lower it to at most {n_blocks} in a --space file."
        )
