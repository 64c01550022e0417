"""The network of one trial: preprocessing, backbone and head, and the weights that move.

`build_head` makes the new classifier head, `build_classifier` assembles the full model that takes
raw 0-255 RGB pixels, and `Pieces` holds just the weights a trial changed (the head, plus the
backbone layers above the cut when it fine-tuned) so that checkpoints stay small and the frozen rest
is never written per trial.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tuner.config import DEFAULT_AUGMENTATIONS
from tuner.models.preprocessing import preprocessing_layers

HEAD_NAME = "head"
BACKBONE_NAME = "backbone"


# The standardizing layer divides by sqrt(variance + epsilon). Channel variances are floored
# (FeatureStats) well above zero, so epsilon only has to keep the division defined; a usual 1e-3
# would swamp the variances of a random-init backbone, whose pooled features measure about 1e-5
# (Xception at 96 px) to 1e-12 (MobileNetV2 at 48 px): see docs/design.md §4.
STANDARDIZE_EPSILON = 1e-37
# Channels whose variance is below this fraction of the largest are treated as constant: without a
# floor, a dead ReLU channel (variance 0) or a near-dead one would be blown up to unit variance.
VARIANCE_FLOOR = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    """Per-channel mean and (floored) variance of a backbone's pooled features on the training set.

    The head standardizes its input with these, so it sees features of unit scale whatever the
    backbone, its weights or its input size (random-init pooled features can be 1e-12 in size,
    pretrained ones O(1)).
    """

    mean: np.ndarray  # float32, one value per channel
    variance: np.ndarray  # float32, one value per channel, floored at VARIANCE_FLOOR * max

    @classmethod
    def of(cls, features: np.ndarray, *, chunk: int = 4096) -> FeatureStats:
        """Computes the statistics of `features` (rows x channels; may be a memory map) in float64.

        Raises:
            TunerError: the features are constant (every channel's variance is zero) or not
                finite, so no classifier can learn from them.
        """
        from tuner.errors import TunerError

        n = len(features)
        total = np.zeros(features.shape[-1], dtype="float64")
        for start in range(0, n, chunk):
            total += np.asarray(features[start : start + chunk], dtype="float64").sum(axis=0)
        mean = total / max(n, 1)
        squares = np.zeros_like(total)
        for start in range(0, n, chunk):
            centred = np.asarray(features[start : start + chunk], dtype="float64") - mean
            squares += (centred * centred).sum(axis=0)
        variance = squares / max(n, 1)
        largest = float(variance.max()) if variance.size else 0.0
        if not np.all(np.isfinite(variance)) or not np.all(np.isfinite(mean)):
            raise TunerError(
                "The frozen backbone's pooled features hold NaN or inf, so no head can learn from "
                "them. Check the weights (--weights) and the input size (--image-size)."
            )
        # float32 must hold the floor without underflow: below ~1e-30 nothing is left to scale.
        if largest < 1e-30:
            raise TunerError(
                "The frozen backbone's pooled features are the same for every training image "
                f"(largest per-channel variance {largest:.3g}), so no head can learn from them. "
                "Check the weights (--weights) and the input size (--image-size)."
            )
        variance = np.maximum(variance, VARIANCE_FLOOR * largest)
        return cls(mean.astype("float32"), variance.astype("float32"))

    @classmethod
    def identity(cls, channels: int) -> FeatureStats:
        """Mean 0, variance 1: a placeholder for a head whose weights are loaded afterwards."""
        return cls(np.zeros(channels, "float32"), np.ones(channels, "float32"))

    def standardize(self, features: np.ndarray) -> np.ndarray:
        """What the head's first layer computes, in NumPy (float32)."""
        scale = 1.0 / np.sqrt(self.variance.astype("float64") + STANDARDIZE_EPSILON)
        return ((np.asarray(features, "float64") - self.mean) * scale).astype("float32")


def build_head(
    n_features: int,
    *,
    units: int,
    dropout: float,
    n_classes: int,
    seed: int = 0,
    stats: FeatureStats | None = None,
    dropout_layer: Callable[..., keras.layers.Layer] = keras.layers.Dropout,
) -> keras.Model:
    """The classifier head: standardize, dropout, Dense(units, relu) unless `units` is 0, output.

    The first layer standardizes the pooled features with `stats` (a frozen BatchNormalization
    holding the training set's per-channel mean and variance: a builtin layer, so the export keeps
    it and loads in safe mode). `units == 0` makes a linear head, which phase 1 fits as a
    logistic regression (see `tuner.models.probe`). Two classes give one sigmoid unit (binary
    cross-entropy); more give a softmax. Initial weights and dropout masks come from `seed` alone,
    not from the global random state, so the cached and the full-model path start a trial from
    the same head. `dropout_layer(rate, seed=, name=)` makes the dropout layer (training swaps in
    one whose rate is a variable: `tuner.train.reuse.TrialDropout`).
    """
    stats = stats or FeatureStats.identity(n_features)
    outputs = 1 if n_classes == 2 else n_classes
    activation = "sigmoid" if n_classes == 2 else "softmax"
    standardize = keras.layers.BatchNormalization(
        epsilon=STANDARDIZE_EPSILON, name="head_standardize"
    )
    # Frozen: a BatchNormalization layer with trainable=False runs in inference mode under fit(),
    # so it applies the fixed statistics and never updates them.
    standardize.trainable = False
    layers: list[keras.layers.Layer] = [
        keras.Input((n_features,), name="features"),
        standardize,
        dropout_layer(dropout, seed=seed, name="head_dropout"),
    ]
    if units:
        layers.append(
            keras.layers.Dense(
                units,
                activation="relu",
                name="head_dense",
                kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
            )
        )
    layers.append(
        keras.layers.Dense(
            outputs,
            activation=activation,
            name="head_output",
            kernel_initializer=keras.initializers.GlorotUniform(seed + 2),
        )
    )
    head = keras.Sequential(layers, name=HEAD_NAME)
    gamma, beta = np.ones(n_features, "float32"), np.zeros(n_features, "float32")
    standardize.set_weights([gamma, beta, stats.mean, stats.variance])
    return head


def augmentation_layers(seed: int, operations: Sequence[str]) -> list[keras.layers.Layer]:
    """The augmentation `operations` (of `tuner.config.AUGMENTATIONS`) as builtin layers, active
    only in training, in a fixed order whatever the order asked: flip, rotate, zoom.

    The horizontal flip is one of them only when asked: it changes a class defined by its
    orientation (digits, text, arrows). Each layer draws from its own seed, so an operation
    transforms the same way with or without the others.

    Raises:
        ValueError: an operation that is not one of these.
    """
    unknown = sorted(set(operations) - set(_AUGMENTATION_LAYERS))
    if unknown:
        raise ValueError(
            f"Unknown augmentation {', '.join(unknown)}. Expected some of "
            f"{', '.join(_AUGMENTATION_LAYERS)}."
        )
    return [
        make(seed + offset)
        for offset, (name, make) in enumerate(_AUGMENTATION_LAYERS.items())
        if name in operations
    ]


# The operations `--augment` can ask for (tuner.config.AUGMENTATIONS), each with its layer.
_AUGMENTATION_LAYERS: dict[str, Callable[[int], keras.layers.Layer]] = {
    "flip": lambda seed: keras.layers.RandomFlip("horizontal", seed=seed, name="augment_flip"),
    "rotate": lambda seed: keras.layers.RandomRotation(0.05, seed=seed, name="augment_rotation"),
    "zoom": lambda seed: keras.layers.RandomZoom(0.1, seed=seed, name="augment_zoom"),
}


def build_classifier(
    backbone: keras.Model,
    head: keras.Model,
    *,
    image_size: int,
    preprocessing: str,
    augment_seed: int | None = None,
    augmentations: Sequence[str] = DEFAULT_AUGMENTATIONS,
) -> keras.Model:
    """The full model: raw RGB pixels (0-255) in, class probabilities out.

    The backbone's own preprocessing runs inside, so callers never need it. With an
    `augment_seed`, the `augmentations` layers (`augmentation_layers`) come first.
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    if augment_seed is not None:
        for layer in augmentation_layers(augment_seed, augmentations):
            x = layer(x)
    for layer in preprocessing_layers(preprocessing):
        x = layer(x)
    x = backbone(x)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="classifier")


def loss_and_metrics(n_classes: int) -> tuple[str, list[str]]:
    """The loss and metrics for `n_classes` (binary cross-entropy for two)."""
    return ("binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"), [
        "accuracy"
    ]


def compile_model(model: keras.Model, learning_rate: float, n_classes: int) -> None:
    """Compiles `model` with Adam at `learning_rate` and the loss for `n_classes`."""
    loss, metrics = loss_and_metrics(n_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics
    )


@dataclass
class Pieces:
    """The weights one trial trained: the head, and backbone layers by index above `cut`.

    Backbone layers are addressed by their index in `backbone.layers`, since auto-generated layer
    names depend on the session (docs/design.md §2).
    """

    head: list[np.ndarray]
    backbone: dict[int, list[np.ndarray]] = field(default_factory=dict)
    cut: int | None = None  # the cut the backbone layers were trained above; None: head only

    @classmethod
    def capture(cls, head: keras.Model, backbone: keras.Model | None, cut: int | None) -> Pieces:
        """The trainable pieces of a trial as they stand: the head, and the backbone above `cut`."""
        layers: dict[int, list[np.ndarray]] = {}
        if backbone is not None and cut is not None:
            for index in range(cut + 1, len(backbone.layers)):
                weights = backbone.layers[index].get_weights()
                if weights:
                    layers[index] = [np.array(w, copy=True) for w in weights]
        return cls(
            head=[np.array(w, copy=True) for w in head.get_weights()], backbone=layers, cut=cut
        )

    def apply(self, head: keras.Model, backbone: keras.Model | None) -> None:
        """Puts these pieces back on a head and a backbone."""
        head.set_weights(self.head)
        if self.backbone:
            if backbone is None:
                raise ValueError("These pieces hold backbone weights but no backbone was given.")
            for index, weights in self.backbone.items():
                backbone.layers[index].set_weights(weights)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically as .npz (no pickled objects), so a killed run never leaves a checkpoint
        that a later run trusts."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for i, w in enumerate(self.head):
            arrays[f"head/{i}"] = w
        for index, weights in self.backbone.items():
            for j, w in enumerate(weights):
                arrays[f"backbone/{index}/{j}"] = w
        meta = {
            "cut": self.cut,
            "head": len(self.head),
            "backbone": {str(k): len(v) for k, v in self.backbone.items()},
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pieces:
        """Reads pieces saved by `save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            head = [data[f"head/{i}"] for i in range(meta["head"])]
            backbone = {
                int(k): [data[f"backbone/{k}/{j}"] for j in range(n)]
                for k, n in meta["backbone"].items()
            }
        return cls(head=head, backbone=backbone, cut=meta["cut"])


def layer_weights(layers: Sequence[keras.layers.Layer]) -> list[list[np.ndarray]]:
    """Copies of each layer's weights, in layer order."""
    return [[np.array(w, copy=True) for w in layer.get_weights()] for layer in layers]
