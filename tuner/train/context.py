"""What every trial of one search shares, as one typed object: `TrialContext`.

The engine makes it once per process (`tuner.engine.transfer.prepare`) and hands it to each trial
(`tuner.train.trial.train_trial`) and to the refit (`tuner.train.refit.refit_trial`), which read
what they need from it and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras

from tuner.frozen.context import SearchContext
from tuner.frozen.features import Features
from tuner.hp import TrialValues
from tuner.models.network import build_classifier, build_head, compile_model
from tuner.models.registry import get_backbone
from tuner.train.reuse import TrainingModels


@dataclass(frozen=True)
class TrialContext(SearchContext):
    """The configuration, the images, the display and the overhead clock (`SearchContext`), with
    the frozen backbones and the compiled models every trial of one search shares."""

    features: Features  # the frozen backbones, their cached activations and the linear head
    # Compiled training models, one per graph, reused by every trial (docs/design.md §2).
    models: TrainingModels

    def values(self, hyperparameters: Mapping[str, Any] | Any) -> TrialValues:
        """The typed view of a trial's hyperparameters: `trial.hyperparameters`, whose space
        gives the defaults of inactive ones (`TrialValues.of`), or its values."""
        return TrialValues.of(hyperparameters, self.config.backbones[0])

    def build_model(
        self, values: TrialValues, seed: int | None = None, *, augment: bool | None = None
    ) -> keras.Model:
        """The full classifier for `values`: pretrained backbone, untrained head (initialised from
        `seed`, standardizing with the training set's feature statistics), compiled for phase 1.

        Args:
            values: the trial's hyperparameters.
            seed: the head's initialisation seed. Defaults to `--seed`.
            augment: put the layers of `--augment`'s operations in front (they act only in
                training). Defaults to `--augment`; models that are served or evaluated are
                built without them, since a direct call `model(x)` would run them.
        """
        config, features = self.config, self.features
        name = values.backbone
        spec = get_backbone(name)
        backbone = features.build_backbone(name)
        backbone.trainable = False
        head = build_head(
            int(backbone.output.shape[-1]),
            units=values.units,
            dropout=values.dropout,
            n_classes=self.data.n_classes,
            seed=config.seed if seed is None else seed,
            stats=features.feature_stats(name),
        )
        augment = config.augment if augment is None else augment
        model = build_classifier(
            backbone,
            head,
            image_size=features.image_sizes[name],
            preprocessing=spec.preprocessing,
            augment_seed=config.seed if augment else None,
            augmentations=config.augmentations,
        )
        compile_model(model, values.head_lr, self.data.n_classes)
        return model
