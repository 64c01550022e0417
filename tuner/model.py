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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from tuner.preprocessing import preprocessing_layers

HEAD_NAME = "head"
BACKBONE_NAME = "backbone"


def build_head(
    n_features: int, *, units: int, dropout: float, n_classes: int, seed: int = 0
) -> keras.Model:
    """The classifier head: dropout, Dense(units, relu), then the output layer.

    Two classes give one sigmoid unit (binary cross-entropy); more give a softmax. Its initial
    weights and dropout masks come from `seed` alone, not from the global random state, so the
    cached and the full-model path start a trial from the same head.
    """
    outputs = 1 if n_classes == 2 else n_classes
    activation = "sigmoid" if n_classes == 2 else "softmax"
    return keras.Sequential(
        [
            keras.Input((n_features,), name="features"),
            keras.layers.Dropout(dropout, seed=seed, name="head_dropout"),
            keras.layers.Dense(
                units,
                activation="relu",
                name="head_dense",
                kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
            ),
            keras.layers.Dense(
                outputs,
                activation=activation,
                name="head_output",
                kernel_initializer=keras.initializers.GlorotUniform(seed + 2),
            ),
        ],
        name=HEAD_NAME,
    )


def augmentation_layers(seed: int) -> list[keras.layers.Layer]:
    """Flip, small rotation and zoom: builtin layers, active only in training."""
    return [
        keras.layers.RandomFlip("horizontal", seed=seed, name="augment_flip"),
        keras.layers.RandomRotation(0.05, seed=seed + 1, name="augment_rotation"),
        keras.layers.RandomZoom(0.1, seed=seed + 2, name="augment_zoom"),
    ]


def build_classifier(
    backbone: keras.Model,
    head: keras.Model,
    *,
    image_size: int,
    preprocessing: str,
    augment_seed: int | None = None,
) -> keras.Model:
    """The full model: raw RGB pixels (0-255) in, class probabilities out.

    The backbone's own preprocessing runs inside, so callers never need it.
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = inputs
    if augment_seed is not None:
        for layer in augmentation_layers(augment_seed):
            x = layer(x)
    for layer in preprocessing_layers(preprocessing):
        x = layer(x)
    x = backbone(x)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="classifier")


def loss_and_metrics(n_classes: int) -> tuple[str, list[str]]:
    return ("binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"), [
        "accuracy"
    ]


def compile_model(model: keras.Model, learning_rate: float, n_classes: int) -> None:
    loss, metrics = loss_and_metrics(n_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics
    )


@dataclass
class Pieces:
    """The weights one trial trained: the head, and backbone layers by index above `cut`.

    Backbone layers are addressed by their index in `backbone.layers`, since auto-generated layer
    names depend on the session (DESIGN.md section 2).
    """

    head: list[np.ndarray]
    backbone: dict[int, list[np.ndarray]] = field(default_factory=dict)
    cut: int | None = None  # the cut the backbone layers were trained above; None: head only

    @classmethod
    def capture(cls, head: keras.Model, backbone: keras.Model | None, cut: int | None) -> Pieces:
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
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            head = [data[f"head/{i}"] for i in range(meta["head"])]
            backbone = {
                int(k): [data[f"backbone/{k}/{j}"] for j in range(n)]
                for k, n in meta["backbone"].items()
            }
        return cls(head=head, backbone=backbone, cut=meta["cut"])


def layer_weights(layers: Sequence[keras.layers.Layer]) -> list[list[np.ndarray]]:
    return [[np.array(w, copy=True) for w in layer.get_weights()] for layer in layers]
