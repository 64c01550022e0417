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
