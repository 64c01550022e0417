"""Tests for tuner.engine.oracles: the oracles rank trials as the leaderboard does (the objective,
ties to its tiebreak), try the defaults first and never run two trials identical in effect."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import choice, tiny_config, write_space
from tuner.engine.oracles import RANKING, RESOLUTION_FLOOR, make_oracle, ranking_score, resolution
from tuner.engine.spaces import load_space
from tuner.hp import TrialValues

kt = pytest.importorskip("keras_tuner")


def score(objective: str, value: float, tie: float | None, counts) -> float:
    metrics = {objective: value}
    if tie is not None:
        metrics["val_loss" if objective != "val_loss" else "val_accuracy"] = tie
    return ranking_score(metrics, objective, counts)


def assert_order_kept(objective: str, values, exact, counts, best_tie, worst_tie) -> None:
    """Every distinct value of the objective, at its best tiebreak, still ranks below the next
    value at its worst: the tiebreak never reorders distinct values. `values` are the floats a
    trial would report; `exact` says which are the same number (one float per rational can come
    out a bit apart, by the order of a sum)."""
    floats, first = np.unique(np.asarray(values, dtype="float64"), return_index=True)
    keys = np.asarray(exact)[first]
    high: dict[int, float] = {}
    low: dict[int, float] = {}
    for value, key in zip(floats, keys, strict=True):
        high[key] = max(high.get(key, -math.inf), score(objective, float(value), best_tie, counts))
        low[key] = min(low.get(key, math.inf), score(objective, float(value), worst_tie, counts))
    ordered = sorted(high)
    assert len(ordered) > 1
    for below, above in itertools.pairwise(ordered):
        assert high[below] < low[above], (below, above)


# --------------------------------------------------------------------------------------------
# The ranking score: the objective first, then the tiebreak


@pytest.mark.parametrize("n", [1, 2, 7, 90, 310, 1000])
def test_accuracy_steps_of_one_image_are_never_reordered_by_the_loss(n):
    counts = [n // 2, n - n // 2]
    assert resolution("val_accuracy", counts) == pytest.approx(1 / n)
    # As Keras computes it (float32 k / N) and exactly.
    for dtype in ("float32", "float64"):
        values = (np.arange(n + 1, dtype=dtype) / np.asarray(n, dtype)).astype("float64")
        # Best tiebreak: a loss of 0; worst: an infinite loss.
        assert_order_kept("val_accuracy", values, np.arange(n + 1), counts, 0.0, math.inf)


@pytest.mark.parametrize("counts", [[3, 4, 5], [2, 7], [10, 150, 150], [1, 1, 6], [9, 0, 4]])
def test_balanced_accuracy_s_finer_steps_are_never_reordered_by_the_loss(counts):
    from tuner.metrics import balanced_accuracy

    present = [c for c in counts if c]
    hits = np.array(list(itertools.product(*(range(c + 1) for c in present))), dtype="float64")
    values = np.mean(hits / np.array(present, dtype="float64"), axis=1)
    # The same values as tuner.metrics computes them from a confusion matrix (exactly, there).
    for row in np.random.default_rng(0).choice(len(hits), 20):
        matrix = np.zeros((len(present), len(present)), dtype=int)
        for c, (hit, n) in enumerate(zip(hits[row].astype(int), present, strict=True)):
            matrix[c, c], matrix[c, (c + 1) % len(present)] = hit, n - hit
        assert balanced_accuracy(matrix) == pytest.approx(values[row], rel=0, abs=1e-12)
    step = resolution("val_balanced_accuracy", counts)
    lcm = math.lcm(*present)
    assert step == pytest.approx(1 / (len(present) * lcm))
    # The exact value is a whole number of steps: sum(hits_c * lcm / n_c) / (classes * lcm).
    exact = (hits @ np.array([lcm // n for n in present], dtype="float64")).astype(np.int64)
    assert_order_kept("val_balanced_accuracy", values, exact, counts, 0.0, math.inf)
    # Distinct exact values are a whole step apart: the tiebreak's quarter step fits between.
    assert len(np.unique(exact)) > 1


def test_auc_counts_half_pairs_and_keeps_its_order():
    counts = [3, 4]
    assert resolution("val_auc", counts) == pytest.approx(1 / 24)
    values = np.arange(25) / 24
    assert_order_kept("val_auc", values, np.arange(25), counts, 0.0, math.inf)


def test_without_a_known_resolution_values_a_floor_apart_keep_their_order():
    assert resolution("val_macro_f1", [5, 5]) is None and resolution("val_loss", [5, 5]) is None
    values = np.array([0.5, 0.5 + RESOLUTION_FLOOR, 0.5 + 2 * RESOLUTION_FLOOR, 0.75])
    assert_order_kept("val_macro_f1", values, np.arange(4), [5, 5], 0.0, math.inf)
    # A loss to minimize: the lower loss ranks first whatever the accuracy (its tiebreak).
    worse, better = score("val_loss", 0.3, 1.0, [5, 5]), score("val_loss", 0.2, 0.0, [5, 5])
    assert better < worse


def test_ties_on_the_objective_go_to_the_lower_val_loss():
    counts = [45, 45]
    ranked = [score("val_accuracy", 1.0, loss, counts) for loss in (0.01, 0.2, 3.0)]
    assert ranked[0] > ranked[1] > ranked[2]
    assert score("val_accuracy", 1.0, None, counts) < ranked[2]  # a missing tiebreak is worst
    assert score("val_accuracy", 1.0, math.nan, counts) == score("val_accuracy", 1.0, None, counts)
    # Ties on a loss go to the higher accuracy, and the score goes down (it is minimized).
    assert score("val_loss", 0.2, 0.9, counts) < score("val_loss", 0.2, 0.8, counts)
    # The objective's own value is within a quarter step of the score.
    assert abs(ranked[0] - 1.0) <= 0.25 / 90
    assert math.isnan(score("val_accuracy", math.nan, 0.1, counts))


# --------------------------------------------------------------------------------------------
# The oracles


def run_oracle(oracle, config, space_path: Path | None = None, family: str = "tiny"):
    """Sets `oracle` up as a tuner would: its project folder, then the space declared."""
    oracle.verbose = 0
    oracle._set_project_dir(str(config.project_dir), "trials")
    hp = oracle.get_space()
    load_space(family, space_path).declare(hp)
    oracle.update_space(hp)
    return oracle


def report(oracle, trial, val_accuracy: float, val_loss: float, counts=(45, 45)) -> None:
    metrics = {"val_accuracy": val_accuracy, "val_loss": val_loss}
    metrics[RANKING] = ranking_score(metrics, "val_accuracy", counts)
    oracle.update_trial(trial.trial_id, metrics)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def first_promotion(oracle, losses: list[float]):
    """Runs a Hyperband bracket's first round, every trial at val_accuracy 1.0 with the given
    losses in trial order, until the oracle promotes one; returns (promoted id, trial ids)."""
    ids = []
    for _ in range(20):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        if "tuner/trial_id" in values:
            return values["tuner/trial_id"], ids
        ids.append(trial.trial_id)
        report(oracle, trial, 1.0, losses[len(ids) - 1])
    raise AssertionError("Hyperband promoted nothing")


def test_hyperband_promotes_the_lower_val_loss_among_ties_not_the_earlier_trial(tmp_path):
    config = tiny_config(
        tmp_path,
        tmp_path / "project",
        oracle="hyperband",
        epochs_finetune=3,
        objective="val_accuracy",
    )
    losses = [0.9, 0.7, 0.5, 0.3, 0.1, 0.05, 0.01, 0.005, 0.001]  # later trials are better
    promoted, ids = first_promotion(run_oracle(make_oracle(config), config), losses)
    assert len(ids) > 1
    assert promoted == ids[-1], "the tie at 1.0 went to the lowest val_loss: the last trial"

    # KerasTuner's own objective (the raw val_accuracy) promotes the first trial of the tie.
    plain = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=3, factor=3, seed=1
    )
    plain_config = config.replace(project_dir=tmp_path / "plain")
    run_oracle(plain, plain_config)
    order = []
    for _ in range(20):
        trial = plain.create_trial("tuner0")
        if "tuner/trial_id" in trial.hyperparameters.values:
            assert trial.hyperparameters.values["tuner/trial_id"] == order[0]
            break
        order.append(trial.trial_id)
        trial_metrics = {"val_accuracy": 1.0, "val_loss": losses[len(order) - 1]}
        plain.update_trial(trial.trial_id, trial_metrics)
        trial.status = "COMPLETED"
        plain.end_trial(trial)
    else:
        raise AssertionError("Hyperband promoted nothing")


def test_the_trial_records_the_true_direction_of_every_objective(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "project", objective="val_balanced_accuracy")
    oracle = run_oracle(make_oracle(config), config)
    assert oracle.objective.name == RANKING and oracle.objective.direction == "max"
    trial = oracle.create_trial("tuner0")
    metrics = {"val_balanced_accuracy": 0.8, "val_loss": 0.4, "val_macro_f1": 0.7}
    metrics[RANKING] = ranking_score(metrics, "val_balanced_accuracy", [5, 5])
    oracle.update_trial(trial.trial_id, metrics)
    directions = {name: trial.metrics.get_direction(name) for name in metrics}
    assert directions == {
        "val_balanced_accuracy": "max",
        "val_loss": "min",
        "val_macro_f1": "max",
        RANKING: "max",
    }


def effect(values: TrialValues) -> tuple:
    """What a trial's hyperparameters do: the ones that cannot act are left out."""
    head = (values.dropout, values.head_lr) if values.units > 0 else ()
    finetune = (values.finetune_lr,) if values.unfreeze_blocks > 0 else ()
    # A fine-tuned linear head applies the space's default dropout in phase 2.
    linear = (values.dropout,) if values.units == 0 and values.unfreeze_blocks > 0 else ()
    return (values.units, *head, values.unfreeze_blocks, *finetune, *linear)


def test_a_random_search_with_a_linear_head_never_runs_two_trials_identical_in_effect(tmp_path):
    space = write_space(
        tmp_path / "space.toml",
        "fixed",
        {
            "head.units": choice(0, 8, default=0),
            "head.dropout": choice(0.0, 0.2, 0.4, default=0.2),
            "head.learning_rate": choice(1e-3, 1e-2, 3e-2, default=1e-2),
            "finetune.unfreeze_blocks": choice(0, 1, default=1),
            "finetune.learning_rate": choice(1e-4, 1e-3, default=1e-3),
        },
    )
    config = tiny_config(tmp_path, tmp_path / "project", max_trials=60, objective="val_accuracy")
    oracle = run_oracle(make_oracle(config), config, space, family=None)
    trials = []
    for _ in range(60):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        trials.append(trial)
        report(oracle, trial, 0.5, 1.0)
    effects = [effect(TrialValues.of(t.hyperparameters, "tiny")) for t in trials]
    assert len(effects) == len(set(effects)), "two trials identical in effect"
    # The linear head: 1 without fine-tuning + 2 fine-tuning rates; 8 units: 3 x 3 x (1 + 2).
    assert len(effects) <= 3 + 27
    # Defaults first, with only the values that act.
    assert trials[0].hyperparameters.values == {
        "head/units": 0,
        "finetune/unfreeze_blocks": 1,
        "finetune/learning_rate": 1e-3,
    }
    assert TrialValues.of(trials[0].hyperparameters, "tiny").dropout == 0.2
    linear = [t for t in trials if t.hyperparameters.values["head/units"] == 0]
    assert all("head/learning_rate" not in t.hyperparameters.values for t in linear)
    assert 1 < len(linear) <= 3


def test_the_bayesian_oracle_replaces_a_repeat_of_the_gaussian_process(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, tmp_path / "project", oracle="bayesian", max_trials=10)
    config = config.replace(objective="val_accuracy")
    oracle = run_oracle(make_oracle(config), config)
    first = oracle.create_trial("tuner0")
    report(oracle, first, 0.5, 1.0)
    repeat = dict(first.hyperparameters.values)
    monkeypatch.setattr(
        kt.oracles.BayesianOptimizationOracle,
        "populate_space",
        lambda self, trial_id: {"status": "RUNNING", "values": dict(repeat)},
    )
    second = oracle.create_trial("tuner0")
    assert second.status == "RUNNING"
    assert second.hyperparameters.values != repeat


def test_condition_protos_are_quiet_and_round_trip(tmp_path, capsys):
    config = tiny_config(tmp_path, tmp_path / "project", objective="val_accuracy")
    make_oracle(config)
    hp = kt.HyperParameters()
    load_space("tiny").declare(hp)
    capsys.readouterr()
    received = kt.HyperParameters.from_proto(hp.to_proto())
    assert capsys.readouterr().out == ""
    assert [c.get_config() for p in received.space for c in p.conditions] == [
        c.get_config() for p in hp.space for c in p.conditions
    ]
    assert any(p.conditions for p in received.space)


def test_an_older_project_s_trials_read_as_before(tmp_path):
    """A trial of a project searched before conditions existed holds every value."""
    old = kt.HyperParameters()
    for param in load_space().params:
        param.declare(old)
    values = TrialValues.of(old, "tiny")
    assert (values.units, values.dropout, values.head_lr) == (0, 0.2, 1e-3)
