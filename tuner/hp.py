"""The searched hyperparameters: their names, a typed view of one trial's values, and how a value
reads on screen.

KerasTuner hands a trial's values over as a dict keyed by namespaced strings ("head/units"). This
module is the one place those strings are spelled: the rest of the package reads a `TrialValues`.
A hyperparameter that does nothing in a trial is not searched in it (`ACTS_WHEN_POSITIVE`): the
space declares it under a KerasTuner condition, the trial's values leave it out, and `TrialValues`
reads it as its default in the space.
KerasTuner adds values of its own under the `tuner/` prefix (Hyperband's `tuner/epochs`,
`tuner/initial_epoch`, `tuner/trial_id`); `searched` drops them, and `TrialValues` reads them as
the schedule they are. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKBONE = "backbone"  # declared only when several backbones are searched
UNITS = "head/units"  # 0: the linear head (LP-FT)
DROPOUT = "head/dropout"
HEAD_LR = "head/learning_rate"
UNFREEZE_BLOCKS = "finetune/unfreeze_blocks"
FINETUNE_LR = "finetune/learning_rate"
# The hyperparameters every space declares, in declaration order.
NAMES = (UNITS, DROPOUT, HEAD_LR, UNFREEZE_BLOCKS, FINETUNE_LR)
# Hyperparameters that act only when another one (their parent, declared before them) is above 0,
# and so are searched only then (docs/spaces.md): phase 1 of a linear head (`head/units = 0`) is
# a closed-form fit that reads neither its learning rate nor its dropout (a linear head that is
# fine-tuned applies the space's default dropout in phase 2), and no blocks unfrozen means no
# phase 2.
ACTS_WHEN_POSITIVE: dict[str, str] = {
    DROPOUT: UNITS,
    HEAD_LR: UNITS,
    FINETUNE_LR: UNFREEZE_BLOCKS,
}

# KerasTuner's own values (Hyperband's schedule): never searched, never shown as a hyperparameter.
TUNER_PREFIX = "tuner/"
EPOCHS = "tuner/epochs"
INITIAL_EPOCH = "tuner/initial_epoch"
PREDECESSOR = "tuner/trial_id"


def searched(values: Mapping[str, Any]) -> dict[str, Any]:
    """The searched values of a trial, without KerasTuner's `tuner/...` ones."""
    return {k: v for k, v in values.items() if not k.startswith(TUNER_PREFIX)}


def schedule(values: Mapping[str, Any]) -> dict[str, Any]:
    """KerasTuner's `tuner/...` values of a trial (empty outside Hyperband)."""
    return {k: v for k, v in values.items() if k.startswith(TUNER_PREFIX)}


@dataclass(frozen=True)
class TrialValues:
    """One trial's hyperparameters, read once from KerasTuner's values.

    Attributes:
        backbone: the backbone this trial trains.
        units: the head's hidden width; 0 is the linear head.
        dropout: dropout before the head's output layer.
        head_lr: phase 1's learning rate.
        unfreeze_blocks: how many of the backbone's top blocks phase 2 trains; 0 skips phase 2.
        finetune_lr: phase 2's learning rate.
        epochs: Hyperband's budget for this round in phase-2 epochs; None outside Hyperband.
        initial_epoch: phase-2 epochs a Hyperband predecessor already trained.
        predecessor: the trial a Hyperband round continues from; None for a fresh trial.
    """

    backbone: str
    units: int
    dropout: float
    head_lr: float
    unfreeze_blocks: int
    finetune_lr: float
    epochs: int | None = None
    initial_epoch: int = 0
    predecessor: str | None = None

    @classmethod
    def of(
        cls,
        values: Mapping[str, Any] | Any,
        default_backbone: str,
        defaults: Mapping[str, Any] | None = None,
    ) -> TrialValues:
        """Reads a trial's hyperparameters.

        Args:
            values: the trial's `hyperparameters` (a `keras_tuner.HyperParameters`, duck-typed:
                its `values` and the defaults of its `space`), or its `hyperparameters.values`.
            default_backbone: the one backbone of a search that does not declare `backbone`.
            defaults: a value for each hyperparameter the values leave out; they override the
                space's. Defaults to none.

        A hyperparameter inactive in the trial (`ACTS_WHEN_POSITIVE`) is left out of its values
        and reads as its default; a trial of an older project holds every value.

        Raises:
            KeyError: a hyperparameter has neither a value nor a default.
        """
        space = getattr(values, "space", None)
        fallback: dict[str, Any] = {}
        if space is not None:
            fallback = {hp.name: hp.default for hp in space}
            values = values.values
        fallback.update(defaults or {})

        def get(name: str) -> Any:
            if name in values:
                return values[name]
            if name in fallback:
                return fallback[name]
            raise KeyError(f"{name!r} has no value in the trial and no default in its space")

        epochs = values.get(EPOCHS)
        return cls(
            backbone=str(values.get(BACKBONE, default_backbone)),
            units=int(get(UNITS)),
            dropout=float(get(DROPOUT)),
            head_lr=float(get(HEAD_LR)),
            unfreeze_blocks=int(get(UNFREEZE_BLOCKS)),
            finetune_lr=float(get(FINETUNE_LR)),
            epochs=None if epochs is None else int(epochs),
            initial_epoch=int(values.get(INITIAL_EPOCH, 0)),
            predecessor=values.get(PREDECESSOR) or None,
        )


def format_value(name: str, value: Any) -> str:
    """A hyperparameter value as a person reads it, the same in the live view and the leaderboard.

    Learning rates and values below 1e-3 in exponent form ("1e-03", "3.2e-04": they compare at a
    glance where 0.0001 and 0.00032 do not), others to 4 significant digits, `head/units = 0` as
    "linear", booleans as yes/no and a missing value as "-".
    """
    if value is None:
        return "-"
    if name == UNITS and value == 0:
        return "linear"  # the logistic-regression head (LP-FT), see search_spaces/default.toml
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if is_learning_rate(name) or (value != 0 and abs(value) < 1e-3):
            return f"{value:.1e}".replace(".0e", "e")
        return f"{value:.4g}"
    return str(value)


def is_learning_rate(name: str) -> bool:
    """Whether a hyperparameter's name says it is a learning rate."""
    leaf = name.rpartition("/")[2]
    return "learning_rate" in leaf or leaf == "lr" or leaf.endswith("_lr")


def format_values(values: Mapping[str, Any]) -> str:
    """A trial's searched values on one line: "head/units=linear  head/dropout=0.2  ..."."""
    return "  ".join(f"{name}={format_value(name, v)}" for name, v in searched(values).items())
