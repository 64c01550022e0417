"""tuner.config: `--class-weight auto` and `--objective auto` decided by the training counts, the
new settings validated, and config.json read back (older ones too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.config import (
    SearchConfig,
    config_from_json,
    config_to_json,
    parse_augmentations,
    resolve_for_data,
)
from tuner.errors import ConfigError


def _config(**changes) -> SearchConfig:
    return SearchConfig(data=Path("d"), backbones=("tiny",), project_dir=Path("p"), **changes)


def test_auto_weighs_imbalanced_classes_and_ranks_by_balanced_accuracy():
    config, notes = resolve_for_data(_config(), [150, 150, 10], ["a", "b", "c"])
    assert (config.class_weight, config.objective) == ("balanced", "val_balanced_accuracy")
    assert notes[0].startswith("class weights: balanced (--class-weight auto: ")
    assert "(a, 150 images) is 15.0x the smallest (c, 10)" in notes[0]
    assert notes[1].startswith("objective: val_balanced_accuracy (--objective auto")


def test_auto_leaves_balanced_classes_alone():
    config, notes = resolve_for_data(_config(), [40, 30, 20], ["a", "b", "c"])
    assert (config.class_weight, config.objective) == ("none", "val_accuracy")
    assert "balanced within 3x (2.0x)" in notes[0]


def test_explicit_choices_are_kept():
    config, notes = resolve_for_data(
        _config(class_weight="none", objective="val_macro_f1"), [150, 10], ["a", "b"]
    )
    assert (config.class_weight, config.objective) == ("none", "val_macro_f1")
    assert notes == ["class weights: none (--class-weight)"]


def test_val_auc_ranks_two_classes_only():
    resolve_for_data(_config(objective="val_auc"), [10, 10], ["a", "b"])
    with pytest.raises(ConfigError, match="val_auc ranks two classes; these data have 3"):
        resolve_for_data(_config(objective="val_auc"), [10, 10, 10], ["a", "b", "c"])
    # A validation split without one of the two classes: no epoch could be scored.
    resolve_for_data(_config(objective="val_auc"), [10, 10], ["a", "b"], [3, 1])
    with pytest.raises(ConfigError, match="has none of class 'b'"):
        resolve_for_data(_config(objective="val_auc"), [10, 10], ["a", "b"], [3, 0])


@pytest.mark.parametrize(
    ("field", "value"),
    [("class_weight", "inverse"), ("select", "worst"), ("calibrate", "platt")],
)
def test_unknown_choices_name_their_flag(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ConfigError, match=f"`{flag}` must be one of"):
        _config(**{field: value})


def test_augmentations_parse_in_a_fixed_order_and_reject_unknown_ones():
    assert parse_augmentations("zoom, flip") == ("flip", "zoom")
    with pytest.raises(ConfigError, match="--augment takes a comma-separated list"):
        parse_augmentations("flip,shear")
    with pytest.raises(ConfigError, match="`--augment` takes"):
        _config(augmentations=())


def test_config_json_round_trips_the_new_settings(tmp_path):
    config = _config(
        class_weight="balanced",
        objective="val_balanced_accuracy",
        select="one-se",
        calibrate="none",
        test_data=tmp_path / "test",
        augment=True,
        augmentations=("flip", "zoom"),
    )
    back = config_from_json(config_to_json(config))
    assert back.augmentations == ("flip", "zoom")
    assert back.test_data == (tmp_path / "test").absolute()
    assert (back.class_weight, back.objective, back.select, back.calibrate) == (
        "balanced",
        "val_balanced_accuracy",
        "one-se",
        "none",
    )


def test_an_older_config_json_reads_as_it_ran():
    # Written before objective auto, class weights and augmentation choices existed.
    data = json.loads(config_to_json(_config(augment=True)))
    for name in ("class_weight", "select", "calibrate", "test_data", "augmentations"):
        data.pop(name)
    data.pop("objective")
    old = config_from_json(json.dumps(data))
    assert (old.objective, old.class_weight) == ("val_accuracy", "none")
    assert old.augmentations == ("flip", "rotate", "zoom")  # every view was flipped then


def test_augmenting_needs_a_view_besides_the_clean_one():
    with pytest.raises(ConfigError, match="`--augment-views` must be >= 2 with --augment"):
        _config(augment=True, augment_views=1)
    _config(augment=True, augment_views=1, cache=False)  # the full model augments every epoch
