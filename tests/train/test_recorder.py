"""Tests for tuner.train.recorder: the best epoch across phases, and what each epoch reports."""

from __future__ import annotations

import math

import pytest


class Display:
    """The display's epoch calls, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def epoch_begin(self, *args) -> None:
        self.calls.append(("begin", *args))

    def epoch(self, phase, epoch, last, logs, seconds) -> None:
        self.calls.append(("end", phase, epoch, last))


def test_every_epoch_is_shown_with_its_phase_and_logged():
    from tuner.train.recorder import EpochReport, Recorder

    display, logged = Display(), []
    report = EpochReport(display, lambda *args: logged.append(args), {1: 2, 2: 5})
    recorder = Recorder("val_accuracy", "max", lambda: "pieces", report)
    for phase, epochs in ((1, (0, 1)), (2, (2, 3, 4))):
        recorder.phase = phase
        for epoch in epochs:
            recorder.on_epoch_begin(epoch)
            recorder.on_epoch_end(epoch, {"val_accuracy": 0.5 + epoch / 10})
    assert [c for c in display.calls if c[0] == "end"] == [
        ("end", 1, 1, 2),
        ("end", 1, 2, 2),
        ("end", 2, 3, 5),
        ("end", 2, 4, 5),
        ("end", 2, 5, 5),
    ]
    assert [c[:4] for c in display.calls if c[0] == "begin"][0] == ("begin", 1, 1, 2)
    assert [(phase, epoch) for phase, epoch, _ in logged] == [
        (1, 1),
        (1, 2),
        (2, 3),
        (2, 4),
        (2, 5),
    ]
    assert recorder.best_epoch == 5 and recorder.best_pieces == "pieces"
    assert sorted(recorder.history) == [1, 2] and len(recorder.history[2]) == 3


def test_a_diverged_epoch_stops_the_trial_with_its_phase():
    from tuner.errors import TrialError
    from tuner.train.recorder import Recorder

    recorder = Recorder("val_accuracy", "max", lambda: None)
    recorder.phase = 2
    with pytest.raises(TrialError, match=r"diverged: loss became nan at epoch 3 \(phase 2\)"):
        recorder.on_epoch_end(2, {"loss": math.nan, "val_accuracy": 0.5})


def _early_stop(patience: int, objective: str = "val_accuracy", direction: str = "max"):
    from types import SimpleNamespace

    from tuner.train.recorder import EarlyStop

    stop = EarlyStop(objective, direction, patience)
    stop.set_model(SimpleNamespace(stop_training=False))
    return stop


def _feed(stop, epochs) -> int:
    """Feeds (objective, val_loss) pairs as epochs; returns how many ran before the stop."""
    for epoch, (value, loss) in enumerate(epochs):
        stop.on_epoch_end(epoch, {"loss": 0.1, stop.objective: value, "val_loss": loss})
        if stop.model.stop_training:
            return epoch + 1
    return len(epochs)


def test_a_plateau_of_the_objective_does_not_stop_while_val_loss_falls():
    # val_accuracy stuck at 1.0 (or at the majority's rate) is a tie: val_loss decides.
    assert _feed(_early_stop(1), [(1.0, 0.5), (1.0, 0.4), (1.0, 0.3), (1.0, 0.2)]) == 4
    assert _feed(_early_stop(1), [(0.8, 0.5), (0.8, 0.45), (0.8, 0.41), (0.8, 0.4)]) == 4
    # Keras's EarlyStopping on val_accuracy (min_delta 0), which this replaces, stops at once.
    from types import SimpleNamespace

    import keras

    keras_stop = keras.callbacks.EarlyStopping("val_accuracy", patience=1, mode="max")
    keras_stop.set_model(SimpleNamespace(stop_training=False))
    keras_stop.on_train_begin()
    keras_stop.objective = "val_accuracy"
    assert _feed(keras_stop, [(1.0, 0.5), (1.0, 0.4), (1.0, 0.3), (1.0, 0.2)]) == 2


def test_patience_counts_epochs_without_improvement_under_the_rule():
    # Epoch 2 is the best; 3 and 4 tie on the objective with a higher val_loss, 5 is lower.
    epochs = [(0.5, 0.9), (1.0, 0.5), (1.0, 0.6), (1.0, 0.5), (0.9, 0.1), (1.0, 0.4)]
    assert _feed(_early_stop(1), epochs) == 3
    assert _feed(_early_stop(2), epochs) == 4  # an equal val_loss is no improvement
    assert _feed(_early_stop(3), epochs) == 5  # a lower objective is none either
    assert _feed(_early_stop(4), epochs) == 6  # epoch 6 beats epoch 2 on the tiebreak
    stop = _early_stop(2)
    _feed(stop, epochs)
    assert stop.stopped_epoch == 3  # counted from 0, as Keras counts
    # A minimized objective: val_loss, ties broken by the higher val_accuracy.
    loss = _early_stop(1, "val_loss", "min")
    for epoch, (accuracy, value) in enumerate([(0.5, 0.4), (0.6, 0.4), (0.6, 0.4)]):
        loss.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": value})
    assert loss.model.stop_training and loss.stopped_epoch == 2
    # An epoch without the objective neither improves nor counts.
    quiet = _early_stop(1)
    for epoch, logs in enumerate([{"val_accuracy": 0.5}, {"loss": 0.3}, {"val_accuracy": 0.6}]):
        quiet.on_epoch_end(epoch, logs)
    assert not quiet.model.stop_training and quiet.wait == 0


def test_the_best_epoch_and_early_stopping_follow_one_rule():
    from tuner.train.recorder import better

    rule = {"objective": "val_balanced_accuracy", "direction": "max"}
    tied = {"val_balanced_accuracy": 0.5, "val_loss": 0.3}
    assert better({"val_balanced_accuracy": 0.6, "val_loss": 0.9}, tied, **rule)
    assert better({"val_balanced_accuracy": 0.5, "val_loss": 0.2}, tied, **rule)
    assert not better(dict(tied), tied, **rule)
    assert not better({"val_balanced_accuracy": 0.5}, tied, **rule)  # no tiebreak: no win
    for objective in ("val_macro_f1", "val_auc"):
        assert better(
            {objective: 0.7, "val_loss": 0.2}, {objective: 0.7, "val_loss": 0.3}, objective, "max"
        )


def test_validation_writes_its_metrics_into_the_logs_the_later_callbacks_get():
    """Keras's CallbackList hands one logs dict to each callback in turn: what `Validation`
    writes first, early stopping, the recorder and Keras's History all see."""
    import keras
    import numpy as np

    from tuner.metrics import scores
    from tuner.train.recorder import EarlyStop, Recorder, Validation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    labels = np.array([0, 1, 2] * 4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    recorder = Recorder("val_macro_f1", "max", lambda: "pieces")
    validation = Validation(x, labels, 3, recorder)
    history = keras.callbacks.History()
    stop = EarlyStop("val_macro_f1", "max", 1)
    callbacks = keras.callbacks.CallbackList([validation, stop, recorder, history], model=model)
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    callbacks.on_epoch_end(0, {"loss": 0.7, "accuracy": 0.4})
    figures = scores(model.predict(x, verbose=0), labels, 3)
    logs = recorder.history[1][0]
    assert set(logs) == {
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_macro_f1",
    }  # no val_auc for three classes
    assert logs["val_macro_f1"] == pytest.approx(figures["macro_f1"])
    assert logs["val_loss"] == pytest.approx(figures["loss"])
    assert stop.best is not None and stop.best["val_macro_f1"] == logs["val_macro_f1"]
    assert history.history["val_balanced_accuracy"] == [logs["val_balanced_accuracy"]]
    # The best epoch keeps its predictions (for its per-class figures); the next epoch's
    # predictions replace them only when it is better.
    assert recorder.best_predictions is not None and recorder.predictions is None
    kept = recorder.best_predictions
    recorder.on_epoch_end(1, {**logs, "val_macro_f1": logs["val_macro_f1"] - 0.1})
    assert recorder.best_predictions is kept and recorder.best_epoch == 1


def test_with_class_weights_the_validation_loss_is_the_weighted_one():
    """Under `--class-weight balanced` val_loss is the class-weighted cross-entropy (each class
    counts alike, however few its images); the other figures are the same either way."""
    import numpy as np

    from tuner.metrics import log_loss, scores
    from tuner.train.recorder import Recorder, Validation

    class Fixed:  # a model whose predictions are given
        def __init__(self, probabilities):
            self.probabilities = probabilities

        def predict(self, batches, verbose=0):
            return self.probabilities

    labels = np.array([0] * 9 + [1])
    probabilities = np.full((10, 2), 0.5)
    probabilities[:9] = [0.9, 0.1]  # the common class: sure and right
    probabilities[9] = [0.8, 0.2]  # the rare one: wrong
    model = Fixed(probabilities)
    plain = Validation(None, labels, 2, Recorder("val_accuracy", "max", lambda: None))
    weights = np.where(labels == 1, 5.0, 10 / 18)  # balanced: 10 / (2 x count)
    weighted = Validation(None, labels, 2, Recorder("val_accuracy", "max", lambda: None), weights)
    a, b = plain.measure(model), weighted.measure(model)
    assert a["val_loss"] == pytest.approx(scores(probabilities, labels, 2)["loss"])
    assert b["val_loss"] == pytest.approx(log_loss(probabilities, labels, weights))
    # The rare class's one wrong image is half of the weighted loss, a tenth of the plain one.
    assert b["val_loss"] == pytest.approx((-np.log(0.9) - np.log(0.2)) / 2)
    assert {k: v for k, v in a.items() if k != "val_loss"} == {
        k: v for k, v in b.items() if k != "val_loss"
    }
