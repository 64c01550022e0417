"""Tests for tuner.train.trial: what one trial measures every epoch (our own validation pass), the
class weights in every fit, early stopping under the best-epoch rule, and the per-class figures
and interval of the best epoch, on the cached and the full-model path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.helpers import choice
from tests.images import draw, write_png

VAL_KEYS = {"val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_auc"}


def _folder(root, counts: dict[str, tuple[str, int]]):
    """Class folders of PNG images: {class name: (kind drawn, images)}."""
    rng = np.random.default_rng(0)
    for name, (kind, n) in counts.items():
        for i in range(n):
            write_png(root / name / f"{i:03d}.png", draw(kind, rng))
    return root


@pytest.fixture
def imbalanced(tmp_path):
    """Two learnable classes, 4:1 (16 and 4 training images, 4 and 1 for validation)."""
    return _folder(tmp_path / "imbalanced", {"bright": ("bright", 20), "dark": ("dark", 5)})


def _values(context, units=16, head_lr=0.01, unfreeze=1, finetune_lr=0.001, **extra):
    from tuner.hp import DROPOUT, FINETUNE_LR, HEAD_LR, UNFREEZE_BLOCKS, UNITS

    return context.values(
        {
            UNITS: units,
            DROPOUT: 0.0,
            HEAD_LR: head_lr,
            UNFREEZE_BLOCKS: unfreeze,
            FINETUNE_LR: finetune_lr,
            **extra,
        }
    )


def _with(context, **changes):
    """The same workbench (backbones, caches, compiled models) under other settings."""
    return dataclasses.replace(context, config=context.config.replace(**changes))


def _train(context, values, phases, seed=5):
    """A new plan for `values`, fitted `phases` ((phase, first epoch, last epoch), ...); returns
    (plan, recorder, the pieces after each phase)."""
    import keras

    from tuner.train.recorder import Recorder
    from tuner.train.trial import _make_plan

    keras.utils.set_random_seed(seed)
    plan = _make_plan(context, values, seed)
    recorder = Recorder(context.config.objective, context.config.direction, plan.capture)
    pieces = []
    for phase, first, last in phases:
        recorder.phase = phase
        plan.fit(phase, first, last, recorder, seed)
        pieces.append(plan.capture())
    return plan, recorder, pieces


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# Our own validation, every epoch


def test_every_epoch_is_scored_by_one_validation_pass_on_both_paths(
    search_config, imbalanced, prepared, tmp_path, monkeypatch
):
    """Every epoch of both phases logs Keras's training loss and accuracy and our validation
    metrics, from one prediction pass (Keras's own evaluation never runs); the figures are
    `tuner.metrics.scores` of the model's predictions, val_loss the unweighted cross-entropy
    Keras computes; and the cached and full paths log the same figures epoch by epoch."""
    import keras

    from tuner.metrics import scores
    from tuner.train.recorder import Validation

    config = search_config(
        data=imbalanced, class_weight="balanced", cache_dtype="float32", objective="val_loss"
    )
    cached = prepared(config)
    full = prepared(config.replace(cache=False))  # the same project: the same random init
    passes = []
    real_measure = Validation.measure

    def measure(self, model):
        passes.append(len(self.labels))
        return real_measure(self, model)

    def no_keras_evaluation(*args, **kwargs):
        raise AssertionError("Keras's own validation pass ran")

    histories = {}
    for name, context in (("cached", cached), ("full", full)):
        passes.clear()
        monkeypatch.setattr(Validation, "measure", measure)
        monkeypatch.setattr(keras.Model, "evaluate", no_keras_evaluation)
        plan, recorder, _ = _train(context, _values(context), [(1, 0, 2), (2, 2, 3)])
        monkeypatch.undo()
        assert passes == [len(context.data.labels("val"))] * 3  # one pass per epoch
        history = recorder.history[1] + recorder.history[2]
        assert [h["epoch"] for h in history] == [1, 2, 3]
        for logs in history:
            assert set(logs) == {"epoch", "loss", "accuracy"} | VAL_KEYS
        histories[name] = history
        # The last epoch's figures are those of the model as it stands.
        model, _, val = plan._phase(0, 0)
        labels = context.data.labels("val")
        figures = scores(model.predict(val, verbose=0), labels, 2)
        last = history[-1]
        for key in VAL_KEYS:
            assert last[key] == pytest.approx(figures[key.removeprefix("val_")], abs=1e-6), key
        keras_logs = model.evaluate(val, verbose=0, return_dict=True)  # unweighted batches
        assert last["val_loss"] == pytest.approx(keras_logs["loss"], abs=1e-4)
        assert last["val_accuracy"] == pytest.approx(keras_logs["accuracy"], abs=1e-6)
    for a, b in zip(histories["cached"], histories["full"], strict=True):
        for key in ("loss", "val_loss", "val_auc"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key
        for key in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1"):
            assert a[key] == b[key], key


def test_a_continuation_with_nothing_to_train_is_scored_by_the_same_pass(
    search_config, imbalanced, prepared, tmp_path
):
    """A Hyperband round whose trial has no epoch left (here: no phase 2) scores what it inherited
    with the same validation metrics, per-class figures and interval."""
    from tuner.project.layout import TrialSummary
    from tuner.train.trial import train_trial

    context = prepared(search_config(data=imbalanced, objective="val_balanced_accuracy"))
    first = _values(context, unfreeze=0)
    summary = TrialSummary("0")
    logs = train_trial(context, first, summary, seed=3, checkpoint=tmp_path / "a.npz")
    assert VAL_KEYS <= set(logs)
    later = _values(context, unfreeze=0, **{"tuner/epochs": 2, "tuner/initial_epoch": 1})
    later = dataclasses.replace(later, predecessor="0")
    again = TrialSummary("1")
    logs_again = train_trial(
        context,
        later,
        again,
        seed=4,
        checkpoint=tmp_path / "b.npz",
        predecessor_checkpoint=tmp_path / "a.npz",
    )
    assert again.phase1 is None and again.phase2 is None
    assert set(logs_again) == VAL_KEYS
    for key in VAL_KEYS:
        assert logs_again[key] == pytest.approx(logs[key], abs=1e-6), key
    assert again.per_class == summary.per_class
    assert again.interval is not None and again.interval == pytest.approx(summary.interval)


# --------------------------------------------------------------------------------------------
# Class weights


@pytest.mark.parametrize("cache", [True, False])
def test_class_weights_change_what_each_phase_trains(search_config, imbalanced, prepared, cache):
    """The same data, seed and hyperparameters with --class-weight balanced and none train
    different dense heads in phase 1 and different blocks in phase 2; the same setting twice
    trains the same weights, so the weights are the only difference."""
    context = prepared(search_config(data=imbalanced, class_weight="none", cache=cache))
    values = _values(context)
    trained = {}
    runs = ("balanced", "none", "none") if cache else ("balanced", "none")
    for run, weighting in enumerate(runs):
        weighted = _with(context, class_weight=weighting)
        if weighting == "balanced":
            # Each training row's weight is its class's: 4:1 gives 0.625 and 2.5.
            plan, _, _ = _train(weighted, values, [])
            _, train, val = plan._phase(1, 5)
            assert len(train.element_spec) == 3 and len(val.element_spec) == 2
            _, _, rows = next(iter(train))
            assert sorted(set(np.round(rows.numpy(), 4))) == [0.625, 2.5]
            # And the validation loss weighs each image by its class's weight, as training does.
            assert sorted(set(np.round(plan._validation(val, None).weights, 4))) == [0.625, 2.5]
        else:
            plan, _, _ = _train(weighted, values, [])
            assert plan._validation(plan._phase(1, 5)[2], None).weights is None
        _, _, (head, finetuned) = _train(weighted, values, [(1, 0, 1), (2, 1, 2)])
        trained[run] = (head, finetuned)
    (head_b, tuned_b), (head_n, tuned_n) = trained[0], trained[1]
    assert not _same(head_b.head, head_n.head), "phase 1 ignored the class weights"
    assert tuned_b.backbone.keys() == tuned_n.backbone.keys() and tuned_b.backbone
    assert not all(_same(tuned_b.backbone[i], tuned_n.backbone[i]) for i in tuned_b.backbone), (
        "phase 2 ignored the class weights"
    )
    if cache:
        head_again, tuned_again = trained[2]
        assert _same(head_n.head, head_again.head)
        assert all(_same(tuned_n.backbone[i], tuned_again.backbone[i]) for i in tuned_n.backbone)


def test_keras_minimizes_the_weighted_loss(search_config, tmp_path, prepared):
    """On images that say nothing about their class (both classes drawn alike, 4:1), a head
    learns the class prior: unweighted it predicts the majority, balanced it moves toward the
    minority. And the training loss Keras reports is the class-weighted cross-entropy."""
    from tuner.metrics import log_loss

    data = _folder(tmp_path / "alike", {"many": ("bright", 40), "few": ("bright", 10)})
    context = prepared(search_config(data=data, class_weight="none", batch_size=16))
    minority = {}
    for weighting in ("none", "balanced"):
        weighted = _with(context, class_weight=weighting)
        # Three epochs at 0.01: the head learns the prior before it memorizes the images.
        plan, _, _ = _train(weighted, _values(weighted), [(1, 0, 3)])
        model, train, _ = plan._phase(1, 5)
        # "few" is class 0 (classes are sorted by name); the sigmoid gives class 1's probability.
        minority[weighting] = float(np.mean(1.0 - model.predict(train, verbose=0)))
    # 0.24 against 0.37 when this was written (the minority is 0.2 of the images).
    assert minority["none"] < 0.3 < minority["balanced"], minority
    # The loss Keras reports over an epoch that does not move the weights (learning rate 0).
    weighted = _with(context, class_weight="balanced")
    plan, recorder, _ = _train(weighted, _values(weighted, head_lr=0.0), [(1, 0, 1)])
    model, train, _ = plan._phase(1, 5)
    probabilities, labels, rows = [], [], []
    for x, y, w in train:
        probabilities.append(model.predict_on_batch(x))
        labels.append(y.numpy().reshape(-1))
        rows.append(w.numpy())
    p, y, w = (np.concatenate(a) for a in (probabilities, labels, rows))
    from tuner.metrics import EPSILON, as_matrix

    per_row = -np.log(np.clip(as_matrix(p), EPSILON, 1 - EPSILON)[np.arange(len(y)), y.astype(int)])
    reported = recorder.history[1][0]["loss"]
    assert reported == pytest.approx(float(np.sum(w * per_row) / len(y)), rel=1e-4)
    assert reported != pytest.approx(log_loss(p, y), rel=1e-3)


# --------------------------------------------------------------------------------------------
# Early stopping in a real fit


def _scripted(monkeypatch, epochs: list[tuple[float, float]]):
    """Makes every validation pass log the next (val_accuracy, val_loss) of `epochs`."""
    from tuner.train.recorder import Validation

    script = iter(epochs)

    def measure(self, model):
        accuracy, loss = next(script)
        return {"val_accuracy": accuracy, "val_loss": loss}

    monkeypatch.setattr(Validation, "measure", measure)


@pytest.mark.parametrize(
    ("losses", "run", "best"),
    [
        # val_accuracy stays at 1.0 while val_loss keeps falling: every epoch improves.
        ([0.9, 0.5, 0.4, 0.3, 0.2], 5, 5),
        # From epoch 3 nothing improves under the rule: patience 2 ends the phase after epoch 4.
        ([0.9, 0.5, 0.6, 0.7, 0.1], 4, 2),
    ],
)
def test_early_stopping_in_a_fit_follows_the_best_epoch_rule(
    search_config, image_folder, prepared, monkeypatch, losses, run, best
):
    context = prepared(search_config(patience=2))
    _scripted(monkeypatch, [(0.5, losses[0])] + [(1.0, loss) for loss in losses[1:]])
    _, recorder, _ = _train(context, _values(context), [(1, 0, 5)])
    assert [h["epoch"] for h in recorder.history[1]] == list(range(1, run + 1))
    assert recorder.best_epoch == best


# --------------------------------------------------------------------------------------------
# The best epoch's per-class figures and interval, for every objective


def _best_by_rule(history, objective, direction):
    from tuner.train.recorder import better

    best = None
    for logs in history:
        if best is None or better(logs, best, objective, direction):
            best = logs
    return best


@pytest.mark.parametrize("objective", ["val_balanced_accuracy", "val_macro_f1", "val_auc"])
def test_a_search_ranks_by_the_objective_and_records_the_best_epoch_s_figures(
    search_config, imbalanced, fixed_space, searched, objective
):
    """A search ranked by `objective` runs end to end; summary.json holds the per-class recall,
    the confusion matrix and the objective's interval at the best epoch, which is the best of
    every epoch by the objective (ties to val_loss), and whose checkpoint gives those figures."""
    from tuner.metrics import scores

    space = fixed_space(1, {"head.learning_rate": choice(0.01, 0.003)})
    config = search_config(
        data=imbalanced,
        space=space,
        objective=objective,
        # Two trials for one objective (the second draws the other learning rate), one for the
        # others: each is checked on its own.
        max_trials=2 if objective == "val_balanced_accuracy" else 1,
        epochs_head=2,
        epochs_finetune=2,
        cache_dtype="float32",
    )
    bench, tuner = searched(config)
    assert bench.config.class_weight == "balanced"  # auto: 4:1 is imbalanced
    labels = bench.data.labels("val")
    pixels = np.asarray(bench.data.pixels("val", 32), "float32")
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(done) == config.max_trials
    for trial in done:
        path = config.trials_dir / f"trial_{trial.trial_id}" / "summary.json"
        summary = json.loads(path.read_text())
        best, per_class = summary["best"], summary["per_class"]
        assert VAL_KEYS <= set(best)
        # The oracle's score folds the val_loss tiebreak in (`ranking_score`); the objective
        # itself is recorded as it was measured.
        assert trial.metrics.get_last_value(objective) == pytest.approx(best[objective])
        assert -1e-9 < trial.score - best[objective] < 0.5 / len(bench.data.labels("val"))
        history = summary["phase1"]["history"] + summary["phase2"]["history"]
        chosen = _best_by_rule(history, objective, "max")
        assert summary["best_epoch"] == chosen["epoch"]
        assert best == {k: v for k, v in chosen.items() if k != "epoch"}
        assert per_class["images"] == len(labels) == sum(map(sum, per_class["confusion"]))
        assert len(per_class["recall"]) == 2
        low, high = summary["interval"]
        assert 0.0 <= low <= best[objective] <= high <= 1.0
        # The checkpoint is that epoch: its predictions give the recorded figures.
        model = tuner.load_model(trial)
        figures = scores(model.predict(pixels, verbose=0), labels, 2)
        assert figures["confusion"] == per_class["confusion"]
        assert figures["recall"] == per_class["recall"]
        assert best[objective] == pytest.approx(figures[objective.removeprefix("val_")], abs=1e-4)


def test_the_interval_is_the_objective_s_on_the_best_epoch_s_predictions():
    from tuner.metrics import score_interval, wilson
    from tuner.train.trial import validation_figures

    labels = np.array([0, 0, 0, 1, 1])
    probabilities = np.array([[0.1], [0.2], [0.7], [0.8], [0.4]])
    per_class, interval = validation_figures("val_accuracy", probabilities, labels, 2, seed=0)
    assert per_class == {"recall": [2 / 3, 0.5], "confusion": [[2, 1], [1, 1]], "images": 5}
    assert interval == pytest.approx(list(wilson(3, 5)))
    _, interval = validation_figures("val_macro_f1", probabilities, labels, 2, seed=4)
    expected = score_interval("val_macro_f1", probabilities, labels, 2, seed=4)
    assert interval == pytest.approx(list(expected))
    assert validation_figures("loss", probabilities, labels, 2, seed=0)[1] is None  # training
    assert validation_figures("val_auc", probabilities, np.zeros(5, int), 2, seed=0)[1] is None
