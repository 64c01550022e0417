"""The KerasTuner oracles a search can run: each tries the space's defaults first, never runs two
trials identical in effect, and ranks trials as the leaderboard does.

`make_oracle` turns `--oracle` into KerasTuner 1.4.8's random, Bayesian or Hyperband oracle. Their
first candidate is the space's defaults (`_DefaultsFirst`); the failed-trial limit is counted by
`tuner.engine.transfer.TransferTuner` instead of the oracle (docs/design.md §3).

The oracle's objective is not the search's objective but `RANKING`, a metric `TransferTuner`
adds to every trial's results (`ranking_score`): the objective, its ties broken by
`tuner.config.TIEBREAK`, in one number. Hyperband promotes by it and the Bayesian oracle models
it, so neither breaks a tie at val_accuracy 1.0 by trial order or by nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner as kt

from tuner.config import OBJECTIVES, TIEBREAK, SearchConfig

RANKING = "ranking_score"
"""The metric every oracle optimizes, in the search objective's direction (`ranking_score`)."""

RESOLUTION_FLOOR = 1e-9
"""The finest grid `ranking_score` rounds an objective to: a metric without a known resolution
(macro F1, a loss), or one finer than this, counts values closer than this as tied."""

# How much of one grid step the tiebreak may add: under half a step, so that two distinct values
# of the objective (a whole step apart at least) are never reordered by it.
_TIE_SHARE = 0.25


def resolution(objective: str, counts: Sequence[int]) -> float | None:
    """The smallest difference two distinct values of `objective` can have when it is measured on
    images of these class counts; None when there is no useful bound.

    - accuracy is k / N: steps of 1 / N;
    - balanced accuracy is the mean over the C classes with images of k_c / N_c, a multiple of
      1 / (C * lcm(N_c)): with 10 / 150 / 150 images that is 1 / 450, while accuracy's is 1 / 310;
    - two-class AUC counts ordered pairs, ties as half: steps of 1 / (2 * N_0 * N_1);
    - macro F1's terms 2 TP / (N_c + predicted_c) have denominators up to twice the images, and
      their mean has no bound worth using; a loss is continuous.
    """
    present = [int(c) for c in counts if c > 0]
    if not present:
        return None
    metric = objective.removeprefix("val_")
    if metric == "accuracy":
        return 1.0 / sum(present)
    if metric == "balanced_accuracy":
        return 1.0 / (len(present) * math.lcm(*present))
    if metric == "auc" and len(present) == 2:
        return 1.0 / (2 * present[0] * present[1])
    return None


def ranking_score(metrics: Mapping[str, Any], objective: str, counts: Sequence[int]) -> float:
    """The objective with its tiebreak folded in: what the oracles rank trials by.

    With step = `resolution(objective, counts)` (at least `RESOLUTION_FLOOR`), k = the objective
    rounded to a whole number of steps, and t in [0, 1] the tiebreak's goodness (1 / (1 + loss)
    for a loss, the accuracy itself for an accuracy; 0 when missing or not finite):

        ranking_score = k * step + t * step / 4   (an objective to maximize)
        ranking_score = k * step - t * step / 4   (an objective to minimize)

    The tiebreak moves the score by at most a quarter step and distinct objective values are a
    whole step apart, so the order is the leaderboard's: the objective first, then the tiebreak.

    Args:
        metrics: a trial's metrics at its best epoch, the objective's tiebreak among them.
        objective: the search's objective (a key of `tuner.config.OBJECTIVES`).
        counts: images per class of the set the objective is measured on (validation for a
            `val_` metric, training otherwise).

    Returns:
        The score; the objective itself when it is not finite (KerasTuner then fails the trial).
    """
    value = float(metrics[objective])
    if not math.isfinite(value):
        return value
    step = max(resolution(objective, counts) or 0.0, RESOLUTION_FLOOR)
    tie_name, tie_direction = TIEBREAK.get(objective, ("", "min"))
    goodness = _goodness(metrics.get(tie_name), tie_direction)
    sign = 1.0 if OBJECTIVES.get(objective, "max") == "max" else -1.0
    return round(value / step) * step + sign * _TIE_SHARE * step * goodness


def _goodness(value: Any, direction: str) -> float:
    """A tiebreak metric mapped to [0, 1], higher is better; 0 when missing or not finite."""
    if value is None or not math.isfinite(float(value)):
        return 0.0
    value = float(value)
    if direction == "min":
        return 1.0 / (1.0 + max(value, 0.0))
    return min(max(value, 0.0), 1.0)


class _Ranked:
    """Registers the search's metrics with their true direction in each trial.

    KerasTuner infers the direction of every metric but the oracle's objective from its name
    (`metrics_tracking.infer_metric_direction`), which takes `val_balanced_accuracy` for a metric
    to minimize. trial.json then says so, and a leaderboard that reads directions from it (a
    project without run.json) would rank backwards.
    """

    @kt.synchronized
    def update_trial(self, trial_id: str, metrics: Mapping[str, Any], step: int = 0) -> Any:
        trial = self.trials[trial_id]  # type: ignore[attr-defined]
        for name in metrics:
            if name in OBJECTIVES and not trial.metrics.exists(name):
                trial.metrics.register(name, direction=OBJECTIVES[name])
        return super().update_trial(trial_id, metrics, step=step)  # type: ignore[misc]


class _DefaultsFirst:
    """Makes an oracle's first candidate the space's defaults, then samples as usual.

    The defaults are a known-good configuration (the bundled spaces default to the linear head,
    fitted as a logistic regression, then fine-tuned: LP-FT), so every search measures it, whatever
    the oracle draws after it. KerasTuner 1.4.8's random, Bayesian and Hyperband oracles all draw
    new candidates through `Oracle._random_values`, and skip values already tried, so overriding it
    is enough and the defaults are tried once, also across a resume. Only active hyperparameters
    get a value (a linear head's trial holds no `head/learning_rate`), as KerasTuner's own sampling
    does, so the duplicate check compares what acts.
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


class _RandomSearchOracle(_Ranked, _DefaultsFirst, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOptimizationOracle(_Ranked, _DefaultsFirst, kt.oracles.BayesianOptimizationOracle):
    """The Bayesian oracle, which never proposes a trial already run.

    KerasTuner 1.4.8 returns the Gaussian process's optimum unchecked (`BayesianOptimizationOracle
    .populate_space`): L-BFGS-B often ends on a bound, so the same values come back, and with
    conditional hyperparameters two optima that differ only in an inactive one are the same
    trial. A repeat is replaced by a fresh draw (`_random_values`, which skips tried values).
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        response = super().populate_space(trial_id)
        values = response.get("values")
        if values is not None and self._duplicate(values):
            values = self._random_values()
            if values is None:
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            response = {**response, "values": values}
        return response


class _HyperbandOracle(_Ranked, _DefaultsFirst, kt.oracles.HyperbandOracle):
    pass


def make_oracle(config: SearchConfig, *, max_retries: int = 0) -> kt.Oracle:
    """The KerasTuner oracle named by `--oracle`; its first trial is the space's defaults, and it
    ranks trials by `RANKING` in the objective's direction.

    Hyperband's budget is phase-2 epochs (`max_epochs = --epochs-finetune`): every trial runs its
    whole phase 1 in its first round, and brackets share out fine-tuning, so survivors are chosen
    on fine-tuned scores.
    """
    _quiet_condition_protos()
    objective = kt.Objective(RANKING, direction=config.direction)
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


def _quiet_condition_protos() -> None:
    """Removes a stray debug `print` from KerasTuner's condition protos.

    KerasTuner 1.4.8's `conditions.Parent.to_proto` starts with `print(self.values[0])`, and a
    distributed search turns the space and every trial into protos (each heartbeat included): with
    conditional hyperparameters the chief's and the workers' terminals would fill with numbers.
    The replacement builds the same proto without printing; it is installed once, only over that
    exact KerasTuner method.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.engine import conditions

    original = conditions.Parent.to_proto
    if getattr(original, "_tuner_quiet", False):
        return

    def to_proto(self: Any) -> Any:
        kinds = (
            (str, "string_value"),
            (bool, "boolean_value"),
            (int, "int_value"),
        )
        first = self.values[0]
        field = next((name for kind, name in kinds if isinstance(first, kind)), "float_value")
        values = [protos.get_proto().Value(**{field: value}) for value in self.values]
        return protos.get_proto().Condition(
            parent=protos.get_proto().Condition.Parent(name=self.name, values=values)
        )

    to_proto._tuner_quiet = True  # type: ignore[attr-defined]
    conditions.Parent.to_proto = to_proto
