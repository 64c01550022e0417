"""The KerasTuner oracles a search can run, each trying the space's defaults first.

`make_oracle` turns `--oracle` into KerasTuner 1.4.8's random, Bayesian or Hyperband oracle. Their
first candidate is the space's defaults (`_DefaultsFirst`); the failed-trial limit is counted by
`tuner.engine.transfer.TransferTuner` instead of the oracle (docs/design.md §3).
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from tuner.config import SearchConfig


class _DefaultsFirst:
    """Makes an oracle's first candidate the space's defaults, then samples as usual.

    The defaults are a known-good configuration (the bundled spaces default to the linear head,
    fitted as a logistic regression, then fine-tuned: LP-FT), so every search measures it, whatever
    the oracle draws after it. KerasTuner 1.4.8's random, Bayesian and Hyperband oracles all draw
    new candidates through `Oracle._random_values`, and skip values already tried, so overriding it
    is enough and the defaults are tried once, also across a resume.
    """

    def _random_values(self) -> dict[str, Any] | None:
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:  # type: ignore[attr-defined]
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.default
        if not self._duplicate(hps.values):  # type: ignore[attr-defined]
            return hps.values
        return super()._random_values()  # type: ignore[misc]


class _RandomSearchOracle(_DefaultsFirst, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOptimizationOracle(_DefaultsFirst, kt.oracles.BayesianOptimizationOracle):
    pass


class _HyperbandOracle(_DefaultsFirst, kt.oracles.HyperbandOracle):
    pass


def make_oracle(config: SearchConfig, *, max_retries: int = 0) -> kt.Oracle:
    """The KerasTuner oracle named by `--oracle`; its first trial is the space's defaults.

    Hyperband's budget is phase-2 epochs (`max_epochs = --epochs-finetune`): every trial runs its
    whole phase 1 in its first round, and brackets share out fine-tuning, so survivors are chosen
    on fine-tuned scores.
    """
    objective = kt.Objective(config.objective, direction=config.direction)
    common: dict[str, Any] = {
        "objective": objective,
        "seed": config.seed,
        "max_retries_per_trial": max_retries,
        # Counted by TransferTuner.on_trial_end instead; see there.
        "max_consecutive_failed_trials": None,
    }
    if config.oracle == "random":
        return _RandomSearchOracle(max_trials=config.max_trials, **common)
    if config.oracle == "bayesian":
        return _BayesianOptimizationOracle(max_trials=config.max_trials, **common)
    return _HyperbandOracle(
        max_epochs=config.epochs_finetune, factor=3, hyperband_iterations=1, **common
    )
