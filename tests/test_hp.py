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


def test_an_inactive_hyperparameter_reads_as_its_default_in_the_space():
    import keras_tuner as kt

    from tuner.engine.spaces import load_space

    space = kt.HyperParameters()
    load_space("tiny").declare(space)
    trial = space.copy()
    trial.values = {"head/units": 0, "finetune/unfreeze_blocks": 0}  # a linear head, no phase 2
    values = hp.TrialValues.of(trial, "tiny")
    assert (values.units, values.unfreeze_blocks) == (0, 0)
    assert (values.dropout, values.head_lr, values.finetune_lr) == (0.2, 1e-2, 3e-3)
    # Given as a plain dict, the defaults come from `defaults`; without one it is a caller's bug.
    plain = {"head/units": 0, "finetune/unfreeze_blocks": 0}
    given = {"head/dropout": 0.1, "head/learning_rate": 1e-3, "finetune/learning_rate": 1e-4}
    assert hp.TrialValues.of(plain, "tiny", given).dropout == 0.1
    try:
        hp.TrialValues.of(plain, "tiny")
    except KeyError as error:
        assert "head/dropout" in str(error)
    else:
        raise AssertionError("a missing value without a default must not pass")
    # A trial of an older project holds every value; they are read as they are.
    assert hp.TrialValues.of(VALUES, "tiny").head_lr == 0.001


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
