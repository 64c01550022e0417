"""Tests for tuner.train.context: one frozen object carries what every trial shares, reads a
trial's hyperparameters, and builds its full model."""

from __future__ import annotations

import dataclasses

import pytest


def test_the_context_is_frozen_and_builds_the_full_model(search_config, prepared):
    from tuner.hp import DROPOUT, FINETUNE_LR, HEAD_LR, UNFREEZE_BLOCKS, UNITS
    from tuner.models.network import BACKBONE_NAME, HEAD_NAME
    from tuner.train.context import TrialContext

    context = prepared(search_config())
    assert isinstance(context, TrialContext)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.config = search_config(max_trials=1)  # type: ignore[misc]
    values = context.values(
        {UNITS: 16, DROPOUT: 0.0, HEAD_LR: 0.01, UNFREEZE_BLOCKS: 1, FINETUNE_LR: 0.001}
    )
    assert values.backbone == "tiny" and values.units == 16
    model = context.build_model(values, seed=3)
    assert not model.get_layer(BACKBONE_NAME).trainable
    head = model.get_layer(HEAD_NAME)
    assert int(head.output.shape[-1]) == 1  # two classes: one sigmoid unit
    served = context.build_model(values, seed=3, augment=False)
    for a, b in zip(head.get_weights(), served.get_layer(HEAD_NAME).get_weights(), strict=True):
        assert (a == b).all()  # the same seed draws the same head
