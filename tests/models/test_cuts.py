"""Tests for tuner.models.cuts: valid cuts, blocks, splitting and freezing.

The registry-wide tests build backbones once each (a module-scoped fixture, so pytest runs all the
tests of one backbone before building the next), at its minimum size with random weights, and
check that splitting at block boundaries reproduces the full model. The suite builds one of each
keras.applications builder (`REPRESENTATIVES`: the variants of a family, such as EfficientNetB1 to
B7, are the same builder at other widths and depths, under the same block pattern);
`TUNER_ALL_BACKBONES=1 python -m pytest tests/models/test_cuts.py` builds all of them (about 2
minutes more on 2 cores). Each boundary costs a forward pass of its top part, so a backbone with
more than `ALL_BOUNDARIES_UP_TO` blocks is checked at a representative set of boundaries: the top 3
blocks (where fine-tuning cuts) and the bottom one (the stem, cut at the input layer, which splits
off the most). The structure of every block (contiguous, on valid cuts, unique
names, named by the pattern) is checked for all of them.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from tuner.errors import ConfigError
from tuner.models.cuts import (
    Block,
    blocks,
    freeze_for_finetune,
    split,
    trainable_layer_indices,
    unfreeze_cut,
    valid_cuts,
)
from tuner.models.registry import build_backbone, get_backbone, list_backbones

ALL_BOUNDARIES_UP_TO = 6
# One backbone per keras.applications builder (MobileNetV3 small and large share one, as do the
# EfficientNets B0-B7, EfficientNetV2 B0-B3, DenseNets, ResNets, ResNetV2s and VGGs).
REPRESENTATIVES = (
    "convnexttiny",
    "densenet121",
    "efficientnetb0",
    "efficientnetv2b0",
    "efficientnetv2s",
    "inceptionresnetv2",
    "inceptionv3",
    "mobilenet",
    "mobilenetv2",
    "mobilenetv3small",
    "nasnetmobile",
    "resnet50",
    "resnet50v2",
    "tiny",
    "vgg16",
    "xception",
)
BUILT = list_backbones() if os.environ.get("TUNER_ALL_BACKBONES") else list(REPRESENTATIVES)


def test_the_representatives_are_registered_backbones():
    assert set(REPRESENTATIVES) <= set(list_backbones())


@pytest.fixture(scope="module", params=BUILT)
def built(request):
    """One backbone at a time, built once for all the tests that use it. (No gc.collect() in
    `clear_session`: a full collection costs about 0.5 s here, and Python's own frees the models.)"""
    keras.backend.clear_session(free_memory=False)
    backbone = get_backbone(request.param)
    model = build_backbone(backbone, backbone.min_size, None)
    yield backbone, model
    keras.backend.clear_session(free_memory=False)


def _boundaries(found: list[Block]) -> list[Block]:
    if len(found) <= ALL_BOUNDARIES_UP_TO:
        return found
    picked = {0, 1, 2, len(found) - 1}
    return [found[i] for i in sorted(picked)]


def test_blocks_are_contiguous_valid_and_uniquely_named(built):
    backbone, model = built
    cuts = valid_cuts(model)
    found = blocks(model, backbone.block_pattern)
    assert len(found) >= 1
    assert cuts[0] == 0 and cuts[-1] == len(model.layers) - 1
    assert found[0].end == len(model.layers) - 1
    assert found[-1].cut == cuts[0]
    for upper, lower in zip(found, found[1:], strict=False):
        assert upper.cut == lower.end
    for block in found:
        assert block.cut < block.end
        assert block.cut in cuts and block.end in cuts
    names = [block.name for block in found]
    assert len(set(names)) == len(names), names
    if backbone.block_pattern is not None:
        # The pattern must name the blocks: only the stem may be unlabelled.
        import re

        for block in found:
            labels = [
                re.match(backbone.block_pattern, layer.name)
                for layer in model.layers[block.cut + 1 : block.end + 1]
            ]
            assert block.name == "stem" or any(labels), block


def test_split_at_block_boundaries_reproduces_the_model(built):
    backbone, model = built
    rng = np.random.default_rng(0)
    scale = 255.0 if backbone.preprocessing == "none" else 1.0
    size = backbone.min_size
    x = (rng.uniform(0, 1, size=(1, size, size, 3)) * scale).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    bound = 1e-5 * (1.0 + float(np.max(np.abs(expected))))
    checked = _boundaries(blocks(model, backbone.block_pattern))
    splits = [split(model, block.cut) for block in checked]
    # One pass through a model with every checked cut as an output gives all the bottoms' outputs
    # at the cost of one forward pass instead of one per boundary; the middle boundary's own
    # `bottom` is still run and compared against it.
    probe = keras.Model(model.inputs, [bottom.outputs[0] for bottom, _ in splits])
    activations = probe(x, training=False)
    middle = len(splits) // 2
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(splits[middle][0](x, training=False)),
        keras.ops.convert_to_numpy(activations[middle]),
    )
    for block, (_, top), activation in zip(checked, splits, activations, strict=True):
        got = keras.ops.convert_to_numpy(top(activation, training=False))
        assert got.shape == expected.shape
        assert float(np.max(np.abs(got - expected))) <= bound, (backbone.name, block)


_RESNET_TOP = ["conv5_block3", "conv5_block2", "conv5_block1"]
_DENSENET_TOP = [f"conv5_block{i}" for i in (32, 31, 30, 29)]

# The top four blocks of every registered backbone, as measured (min size, weights=None).
EXPECTED_TOP_BLOCKS = {
    "tiny": ["block3", "block2", "block1", "stem"],
    "vgg16": ["block5", "block4", "block3", "block2"],
    "vgg19": ["block5", "block4", "block3", "block2"],
    "resnet50": [*_RESNET_TOP, "conv4_block6"],
    "resnet101": [*_RESNET_TOP, "conv4_block23"],
    "resnet152": [*_RESNET_TOP, "conv4_block36"],
    "resnet50v2": [*_RESNET_TOP, "conv4_block6"],
    "resnet101v2": [*_RESNET_TOP, "conv4_block23"],
    "resnet152v2": [*_RESNET_TOP, "conv4_block36"],
    "xception": ["block14", "block13", "block12", "block11"],
    "inceptionv3": ["mixed10", "mixed9", "mixed8", "mixed7"],
    "inceptionresnetv2": ["conv_7b", "block8_10", "block8_9", "block8_8"],
    "mobilenet": ["conv_pw_13", "conv_dw_13", "conv_pw_12", "conv_dw_12"],
    "mobilenetv2": ["Conv_1", "block_16", "block_15", "block_14"],
    "mobilenetv3small": ["conv_1", "expanded_conv_10", "expanded_conv_9", "expanded_conv_8"],
    "mobilenetv3large": ["conv_1", "expanded_conv_14", "expanded_conv_13", "expanded_conv_12"],
    "densenet121": [f"conv5_block{i}" for i in (16, 15, 14, 13)],
    "densenet169": _DENSENET_TOP,
    "densenet201": _DENSENET_TOP,
    "nasnetmobile": ["stem_1", "stem"],
    "nasnetlarge": ["stem_1", "stem"],
    "efficientnetb0": ["top", "block7a", "block6d", "block6c"],
    "efficientnetb1": ["top", "block7b", "block7a", "block6e"],
    "efficientnetb2": ["top", "block7b", "block7a", "block6e"],
    "efficientnetb3": ["top", "block7b", "block7a", "block6f"],
    "efficientnetb4": ["top", "block7b", "block7a", "block6h"],
    "efficientnetb5": ["top", "block7c", "block7b", "block7a"],
    "efficientnetb6": ["top", "block7c", "block7b", "block7a"],
    "efficientnetb7": ["top", "block7d", "block7c", "block7b"],
    "efficientnetv2b0": ["top", "block6h", "block6g", "block6f"],
    "efficientnetv2b1": ["top", "block6i", "block6h", "block6g"],
    "efficientnetv2b2": ["top", "block6j", "block6i", "block6h"],
    "efficientnetv2b3": ["top", "block6l", "block6k", "block6j"],
    "efficientnetv2s": ["top", "block6o", "block6n", "block6m"],
    "convnexttiny": ["stage_3", "stage_2", "stage_1", "stage_0"],
}


def test_block_names_are_the_backbones_own(built):
    backbone, model = built
    if backbone.family == "densenet":  # the transitions between dense blocks are blocks too
        names = {block.name for block in blocks(model, backbone.block_pattern)}
        assert {"pool2", "pool3", "pool4"} <= names
    found = [block.name for block in blocks(model, backbone.block_pattern)[:4]]
    assert found == EXPECTED_TOP_BLOCKS[backbone.name]


# --- valid_cuts on hand-built graphs ------------------------------------------------------------


def _dense(units: int = 4, name: str | None = None) -> keras.layers.Dense:
    return keras.layers.Dense(units, name=name)


def test_every_layer_of_a_linear_chain_is_a_cut():
    inputs = keras.Input((3,))
    x = _dense()(inputs)
    x = _dense()(x)
    x = _dense(2)(x)
    model = keras.Model(inputs, x)
    assert valid_cuts(model) == [0, 1, 2, 3]


def test_no_cut_inside_a_residual_block():
    inputs = keras.Input((4,))
    a = _dense()(inputs)  # 1
    b = _dense()(a)  # 2: inside, a is still alive
    c = _dense()(b)  # 3: inside
    s = keras.layers.Add()([a, c])  # 4
    out = _dense(2)(s)  # 5
    model = keras.Model(inputs, out)
    assert valid_cuts(model) == [0, 1, 4, 5]


def test_no_cut_inside_a_concat():
    inputs = keras.Input((4,))
    left = _dense()(inputs)
    right = _dense()(_dense()(inputs))
    joined = keras.layers.Concatenate()([left, right])
    out = _dense(2)(joined)
    model = keras.Model(inputs, out)
    names = [model.layers[i] for i in valid_cuts(model)]
    assert names == [model.layers[0], joined._keras_history[0], out._keras_history[0]]


def test_an_op_that_is_not_a_layer_still_keeps_its_inputs_alive():
    inputs = keras.Input((4,))
    a = _dense()(inputs)  # 1
    b = _dense()(a)  # 2: a is alive until the `+` below
    s = a + b  # a keras.ops call: not in model.layers
    out = _dense(2)(s)  # 3
    model = keras.Model(inputs, out)
    assert len(model.layers) == 4
    assert valid_cuts(model) == [0, 1, 3]
    bottom, top = split(model, 1)
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(top(bottom(x)), model(x))


def test_layers_with_several_outputs_or_calls_are_never_cuts():
    inputs = keras.Input((5, 3))
    out, h, c = keras.layers.LSTM(4, return_state=True)(inputs)  # 1: three outputs
    s = keras.layers.Add()([out, h, c])  # 2
    shared = _dense()
    y = shared(shared(s))  # 3: one layer, two calls
    y = _dense(2)(y)  # 4
    model = keras.Model(inputs, y)
    assert valid_cuts(model) == [0, 2, 4]


def test_splitting_does_not_change_the_cuts_of_the_model():
    inputs = keras.Input((4,))
    x = _dense()(inputs)
    x = keras.layers.Add()([x, _dense()(x)])
    x = _dense()(x)
    x = _dense(2)(x)
    model = keras.Model(inputs, x)
    before = valid_cuts(model)
    bottom, top = split(model, before[1])
    assert valid_cuts(model) == before
    # Its own input layer, then (after the dense inside the residual) the add and the tail.
    assert valid_cuts(top) == [0, 2, 3, 4]


def test_split_rejects_an_invalid_cut():
    inputs = keras.Input((4,))
    a = _dense()(inputs)
    b = _dense()(a)
    model = keras.Model(inputs, keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="cut=2"):
        split(model, 2)


# --- blocks, unfreezing and freezing on the tiny backbone ---------------------------------------


@pytest.fixture
def tiny():
    keras.backend.clear_session(free_memory=False)
    backbone = get_backbone("tiny")
    yield backbone, build_backbone(backbone, 32, None)
    keras.backend.clear_session(free_memory=False)


def test_tiny_blocks_put_the_pooling_in_the_top_block(tiny):
    backbone, model = tiny
    found = blocks(model, backbone.block_pattern)
    assert [block.name for block in found] == ["block3", "block2", "block1", "stem"]
    names = [layer.name for layer in model.layers]
    assert found[0].end == names.index("avg_pool")
    assert found[0].cut == names.index("block2_add")
    assert found[-1].cut == 0 and found[-1].end == names.index("stem_relu")


def test_blocks_without_pattern_are_named_after_their_top_layer(tiny):
    _, model = tiny
    found = blocks(model, None)
    cuts = valid_cuts(model)
    assert [block.end for block in found] == cuts[:0:-1]
    assert found[0].name == "avg_pool"
    assert blocks(model, r"(nothing_matches)") == found


def test_unfreeze_cut_bounds(tiny):
    backbone, model = tiny
    found = blocks(model, backbone.block_pattern)
    assert unfreeze_cut(model, backbone.block_pattern, 0) == len(model.layers) - 1
    assert unfreeze_cut(model, backbone.block_pattern, 1) == found[0].cut
    assert unfreeze_cut(model, backbone.block_pattern, len(found)) == 0
    with pytest.raises(ConfigError) as info:
        unfreeze_cut(model, backbone.block_pattern, len(found) + 1)
    message = str(info.value)
    assert f"k={len(found) + 1}" in message and f"between 0 and {len(found)}" in message
    with pytest.raises(ConfigError, match="k=-1"):
        unfreeze_cut(model, backbone.block_pattern, -1)


def _bn(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def test_freeze_for_finetune(tiny):
    backbone, model = tiny
    model.trainable = False  # as after phase 1
    cut = unfreeze_cut(model, backbone.block_pattern, 1)
    freeze_for_finetune(model, cut)
    for index, layer in enumerate(model.layers):
        if _bn(layer) or index <= cut:
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable, layer.name
    assert model.trainable
    trainable = {id(v) for v in model.trainable_weights}
    for index in trainable_layer_indices(model, cut):
        layer = model.layers[index]
        assert index > cut and layer.weights
        assert all((id(w) in trainable) == (not _bn(layer)) for w in layer.trainable_weights)

    # Going from 1 block to 2 and back again must not leave stale freezes behind.
    wider = unfreeze_cut(model, backbone.block_pattern, 2)
    freeze_for_finetune(model, wider)
    assert any(layer.trainable for layer in model.layers[wider + 1 : cut + 1])
    freeze_for_finetune(model, cut)
    assert not any(layer.trainable for layer in model.layers[: cut + 1])


def test_frozen_batchnorm_keeps_its_statistics_under_fit(tiny):
    backbone, model = tiny
    freeze_for_finetune(model, unfreeze_cut(model, backbone.block_pattern, 2))
    inputs = keras.Input((32, 32, 3))
    classifier = keras.Model(inputs, keras.layers.Dense(2)(model(inputs)))
    classifier.compile(optimizer="sgd", loss="mse")
    bns = [layer for layer in model.layers if _bn(layer)]
    before = [w.copy() for layer in bns for w in layer.get_weights()]
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    classifier.fit(x, np.zeros((4, 2), "float32"), epochs=1, verbose=0)
    after = [w for layer in bns for w in layer.get_weights()]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_freeze_rejects_an_out_of_range_cut(tiny):
    _, model = tiny
    with pytest.raises(ValueError, match="cut=999"):
        freeze_for_finetune(model, 999)


def test_nested_batchnorm_is_frozen_too():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization()(_dense()(inner_in)))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, _dense(2)(inner(_dense()(inputs))))
    freeze_for_finetune(model, 0)
    nested = [layer for layer in inner.layers if _bn(layer)]
    assert nested and not any(layer.trainable for layer in nested)
    assert [layer.trainable for layer in inner.layers if isinstance(layer, keras.layers.Dense)] == [
        True
    ]
