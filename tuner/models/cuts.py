"""Cut points of a backbone: where its graph can be split, grouped into the backbone's own blocks.

A layer is a *valid cut* when its single output is the only tensor alive at its position in the
topological order (no residual or concat path crosses it): everything below it can then be frozen
and computed once, and the part above it trained on the cached activation (docs/design.md §1).
Fine-tuning "the top k blocks" means training everything above the cut just below the k-th block.

Only the nodes of the model's own graph count. Splitting a model adds nodes to the layers of its top
part (Keras clones them for the new input), so a layer's total inbound node count says nothing
about the graph of the model at hand.

Blocks (`blocks`) are made from the segments between consecutive valid cuts:

1. Each segment `(c_prev, c]` is labelled with group 1 of the first layer name in it that the
   backbone's `block_pattern` matches (`re.match`); segments with no match stay unlabelled.
2. Consecutive segments with the same label merge (a block with several valid cuts inside, such as
   Xception's linear block14, is one block).
3. An unlabelled segment joins the block below it: the global pooling joins the last block
   (Xception's `avg_pool` is part of block14; ResNetV2's `post_bn`, `post_relu` and `avg_pool` are
   part of `conv5_block3`), and a pooling between blocks joins the block it closes.
4. Unlabelled segments at the very bottom (the stem: the preprocessing layers EfficientNet holds,
   ResNet's `conv1`/`pool1`, ...) form a block named `"stem"`. The stem is the LAST block:
   unfreezing all blocks trains the whole backbone, which is a legitimate fine-tuning choice.
5. With no pattern, or a pattern that matches no layer, every segment is a block named after its
   top layer. Such names may be auto-generated (`add_10`) and then differ between two models built
   in one process; block patterns match only names the architecture sets explicitly.

Measured on every registered backbone (min size, random weights): valid cuts / blocks are, e.g.,
Xception 26/14, VGG16 20/5, ResNet50 40/17, InceptionV3 30/12, MobileNetV2 75/19, DenseNet121
80/62, EfficientNetB0 84/18, ConvNeXtTiny 8/5 (its residual `+` is a `keras.ops` call, not a layer,
so only the downsampling layers between stages are cuts), NASNet 6/2 (each cell reads the two cells
below it, so no cut exists between cells).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = [
    "Block",
    "blocks",
    "freeze_for_finetune",
    "split",
    "trainable_layer_indices",
    "unfreeze_cut",
    "valid_cuts",
]

STEM = "stem"


@dataclass(frozen=True)
class Block:
    """A group of layers that is unfrozen as a whole."""

    name: str  # the backbone's own name for it: "block14", "conv5_block3", "mixed10", "stem"
    cut: int  # valid cut just below the block: unfreezing it trains layers[cut + 1:]
    end: int  # index of the block's last layer (itself a valid cut)


def _own_nodes(model: Any) -> set[int]:
    """Returns the ids of the nodes that belong to `model`'s own graph."""
    return {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}


def _cut_tensors(model: Any) -> tuple[list[int], dict[int, Any]]:
    """Finds the valid cuts of `model` and the tensor each one outputs.

    One sweep over the operations in topological order (`model.operations` includes the
    `keras.ops` calls that are not layers, such as ConvNeXt's residual `+`): for each operation the
    position of the last operation consuming its outputs; position p is a cut iff no earlier
    operation's output is consumed after p.

    Returns:
        The valid cuts as indices into `model.layers`, ascending, and a map from cut index to the
        output tensor of that layer in this model's graph.
    """
    from keras.src.layers import Layer

    own = _own_nodes(model)
    operations = model.operations
    producer: dict[int, int] = {}  # id(tensor) -> position of the operation that outputs it
    nodes_of: list[list[Any]] = []
    for position, op in enumerate(operations):
        nodes = [node for node in op._inbound_nodes if id(node) in own]
        nodes_of.append(nodes)
        for node in nodes:
            for tensor in node.outputs:
                producer[id(tensor)] = position

    last_use = [-1] * len(operations)
    for position, nodes in enumerate(nodes_of):
        for node in nodes:
            for tensor in node.input_tensors:
                source = producer.get(id(tensor))
                if source is not None:
                    last_use[source] = max(last_use[source], position)
    for tensor in model.outputs:
        source = producer.get(id(tensor))
        if source is not None:
            last_use[source] = len(operations)

    layer_index = {id(layer): index for index, layer in enumerate(model.layers)}
    cuts: list[int] = []
    tensors: dict[int, Any] = {}
    alive_until = -1  # the latest position at which an output of an earlier operation is used
    for position, op in enumerate(operations):
        nodes = nodes_of[position]
        if (
            isinstance(op, Layer)
            and id(op) in layer_index
            and len(nodes) == 1
            and len(nodes[0].outputs) == 1
            and alive_until <= position
            and last_use[position] > position
        ):
            cuts.append(layer_index[id(op)])
            tensors[layer_index[id(op)]] = nodes[0].outputs[0]
        alive_until = max(alive_until, last_use[position])
    return cuts, tensors


def valid_cuts(model: keras.Model) -> list[int]:
    """Returns the indices into `model.layers` where the graph can be split in two.

    Index 0 (the input layer of a single-input model) and the last layer (the pooled output) are
    always among them. Layers with several outputs, or called more than once in this graph, never
    are.
    """
    return _cut_tensors(model)[0]


def blocks(model: keras.Model, pattern: str | None) -> list[Block]:
    """Groups the valid cuts of `model` into the backbone's own blocks, top block first.

    See the module docstring for the grouping rules.

    Args:
        model: a functional model, usually from `tuner.models.registry.build_backbone`.
        pattern: the backbone's `block_pattern`: a regex whose group 1, matched (`re.match`) on a
            layer name, names the block that layer belongs to; `None` for one block per segment.

    Returns:
        The blocks, `blocks[0]` the topmost; empty when the model has no two valid cuts.
    """
    layers = model.layers
    cuts = valid_cuts(model)
    regex = re.compile(pattern) if pattern else None

    segments: list[tuple[str | None, int, int]] = []  # (label, cut, end), bottom first
    for low, high in zip(cuts, cuts[1:], strict=False):
        label = None
        if regex is not None:
            for layer in layers[low + 1 : high + 1]:
                match = regex.match(layer.name)
                if match:
                    label = match.group(1)
                    break
        segments.append((label, low, high))

    if not any(label for label, _, _ in segments):
        return [Block(layers[high].name, low, high) for _, low, high in reversed(segments)]

    grouped: list[list[Any]] = []  # [name, cut, end], bottom first
    for label, low, high in segments:
        if label is None:
            if grouped:
                grouped[-1][2] = high  # unlabelled: joins the block below
            else:
                grouped.append([STEM, low, high])
        elif grouped and grouped[-1][0] == label:
            grouped[-1][2] = high
        else:
            grouped.append([label, low, high])
    return [Block(name, cut, end) for name, cut, end in reversed(grouped)]


def unfreeze_cut(model: keras.Model, pattern: str | None, k: int) -> int:
    """Returns the cut index that leaves the top `k` blocks of `model` trainable.

    Args:
        model: the backbone.
        pattern: the backbone's `block_pattern`.
        k: number of blocks to unfreeze, from the top; 0 trains nothing of the backbone.

    Returns:
        `len(model.layers) - 1` for `k == 0`, else `blocks(model, pattern)[k - 1].cut`.

    Raises:
        ConfigError: `k` is negative or larger than the number of blocks.
    """
    found = blocks(model, pattern)
    if not 0 <= k <= len(found):
        raise ConfigError(
            f"The number of blocks to unfreeze must be between 0 and {len(found)} for this "
            f"backbone ({len(found)} blocks, top first: "
            f"{', '.join(block.name for block in found[:4])}{', ...' if len(found) > 4 else ''}). "
            f"Received: k={k}. Lower the upper bound of `finetune/unfreeze_blocks` to "
            f"{len(found)}."
        )
    if k == 0:
        return len(model.layers) - 1
    return found[k - 1].cut


def split(model: keras.Model, cut: int) -> tuple[keras.Model, keras.Model]:
    """Splits `model` at the valid cut `cut` into a bottom and a top model sharing its layers.

    `top(bottom(x))` equals `model(x)`. Each split adds a graph node to every layer of `top`, so
    split once per built model, not in a loop.

    Returns:
        `(bottom, top)`: `bottom` maps the model inputs to the output of `layers[cut]`; `top`
        maps that tensor to the model outputs.

    Raises:
        ValueError: `cut` is not a valid cut of `model`.
    """
    cuts, tensors = _cut_tensors(model)
    if cut not in tensors:
        raise ValueError(
            f"Expected a valid cut of model {model.name!r} (an index into model.layers where no "
            f"other path crosses). Received: cut={cut}. Valid cuts: {cuts}."
        )
    import keras

    tensor = tensors[cut]
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    bottom = keras.Model(model.inputs, tensor, name=f"{model.name}_bottom")
    top = keras.Model(tensor, outputs, name=f"{model.name}_top")
    return bottom, top


def _all_layers(model: Any) -> list[Any]:
    """Returns every layer of `model`, nested models included (without `model` itself)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def freeze_for_finetune(model: keras.Model, cut: int) -> None:
    """Makes `layers[cut + 1:]` of `model` trainable and everything else frozen.

    The order matters (docs/design.md §2): Keras only resets children when `trainable` goes from False
    to True, so every layer is set explicitly. Every BatchNormalization layer, wherever it is, is
    frozen so that it runs in inference mode (a frozen BN layer ignores `training=True` from
    `fit()`). Call `compile()` afterwards: changes take effect only at compile.

    Raises:
        ValueError: `cut` is not an index into `model.layers`.
    """
    from keras import layers as keras_layers

    layers = model.layers
    if not -1 <= cut < len(layers):
        raise ValueError(
            f"Expected -1 <= cut < {len(layers)} (an index into model.layers). Received: cut={cut}."
        )
    model.trainable = True
    for index, layer in enumerate(layers):
        value = index > cut
        layer.trainable = value
        for sublayer in _all_layers(layer):
            sublayer.trainable = value
    for layer in _all_layers(model):
        if isinstance(layer, keras_layers.BatchNormalization):
            layer.trainable = False


def trainable_layer_indices(model: keras.Model, cut: int) -> list[int]:
    """Returns the indices above `cut` of the layers that hold weights (trainable or not)."""
    return [index for index, layer in enumerate(model.layers) if index > cut and layer.weights]
