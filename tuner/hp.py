"""The searched hyperparameters: their names, a typed view of one trial's values, and how a value
reads on screen.

KerasTuner hands a trial's values over as a dict keyed by namespaced strings ("head/units"). This
module is the one place those strings are spelled: the rest of the package reads a `TrialValues`.
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
    def of(cls, values: Mapping[str, Any], default_backbone: str) -> TrialValues:
        """Reads `values` (a trial's `hyperparameters.values`); `default_backbone` is the one
        backbone of a search that does not declare `backbone`."""
        epochs = values.get(EPOCHS)
        return cls(
            backbone=str(values.get(BACKBONE, default_backbone)),
            units=int(values[UNITS]),
            dropout=float(values[DROPOUT]),
            head_lr=float(values[HEAD_LR]),
            unfreeze_blocks=int(values[UNFREEZE_BLOCKS]),
            finetune_lr=float(values[FINETUNE_LR]),
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
