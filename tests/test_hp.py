"""The hyperparameters: the typed view of a trial's values, and the one formatter both views use."""

from __future__ import annotations

import io

from rich.console import Console

from tuner import hp
from tuner.ui.display import SearchDisplay
from tuner.ui.live import LiveDisplay

VALUES = {
    "head/units": 0,
    "head/dropout": 0.2,
    "head/learning_rate": 0.001,
    "finetune/unfreeze_blocks": 2,
    "finetune/learning_rate": 2.5e-05,
}


def test_a_trial_s_values_are_read_once_into_a_typed_view():
    values = hp.TrialValues.of(VALUES, "tiny")
    assert values == hp.TrialValues("tiny", 0, 0.2, 0.001, 2, 2.5e-05)
    assert values.epochs is None and values.initial_epoch == 0 and values.predecessor is None
    hyperband = {
        **VALUES,
        "backbone": "vgg16",
        "tuner/epochs": 3,
        "tuner/initial_epoch": 1,
        "tuner/trial_id": "0004",
    }
    values = hp.TrialValues.of(hyperband, "tiny")
    assert (values.backbone, values.epochs, values.initial_epoch, values.predecessor) == (
        "vgg16",
        3,
        1,
        "0004",
    )
    assert hp.searched(hyperband) == {**VALUES, "backbone": "vgg16"}
    assert set(hp.schedule(hyperband)) == {"tuner/epochs", "tuner/initial_epoch", "tuner/trial_id"}


def test_values_read_as_a_person_reads_them():
    assert hp.format_value(hp.UNITS, 0) == "linear"
    assert hp.format_value(hp.UNITS, 256) == "256"
    assert hp.format_value(hp.HEAD_LR, 0.001) == "1e-03"
    assert hp.format_value(hp.FINETUNE_LR, 2.5e-05) == "2.5e-05"
    assert hp.format_value(hp.DROPOUT, 0.2) == "0.2"
    assert hp.format_value("neck/gain", 0.0004) == "4e-04"
    assert hp.format_value("augment", True) == "yes"
    assert hp.format_value(hp.DROPOUT, None) == "-"


def test_the_live_view_shows_values_as_the_leaderboard_does():
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    live = LiveDisplay(console=console, verbose=1)
    live.trial_begin("03", 1, 2, {**VALUES, "tuner/epochs": 2})
    console.print(live.view())
    lines = SearchDisplay(console=console, verbose=1)
    lines.trial_begin("03", 1, 2, {**VALUES, "tuner/epochs": 2})
    lines.trial_end("03", "done", 0.9, "val_accuracy")
    text = out.getvalue()
    for name, value in VALUES.items():
        assert text.count(f"{name}={hp.format_value(name, value)}") == 2
    assert "head/units=linear" in text and "head/learning_rate=1e-03" in text
    assert "tuner/epochs" not in text
