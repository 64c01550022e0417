"""`--refit`: retrain a trial's hyperparameters on the training and validation images together.

For a small dataset, the fifth of it held out for validation is a real loss once the search has
chosen the hyperparameters. The refit trains the trial's model again, from the same starting
weights and head seed, on every image, for the trial's own number of epochs in each phase (the
epochs it ran, early stopping included), and keeps the last epoch: nothing is held out to choose
another. It trains the full model on pixels, as `--no-cache` does, since the cache holds the
training images' activations only; a linear head (`head/units = 0`) is fitted as the search fitted
it, at the regularization the search chose, on the features of every image.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from tuner.models import cuts
from tuner.models.network import BACKBONE_NAME, HEAD_NAME, Pieces, compile_model
from tuner.models.probe import fit_linear_head
from tuner.models.registry import get_backbone
from tuner.project.layout import TrialSummary, trial_dir
from tuner.train.context import TrialContext
from tuner.train.trial import labels_for, make_dataset, trial_seed


class _Rows:
    """Two row arrays (in memory or on disk) read as one: the first's rows, then the second's."""

    def __init__(self, first: Any, second: Any) -> None:
        self.parts = (first, second)
        self.split = len(first)
        self.shape = (len(first) + len(second), *first.shape[1:])
        self.dtype = first.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        low = rows < self.split
        if low.any():
            out[low] = self.parts[0][rows[low]]
        if (~low).any():
            out[~low] = self.parts[1][rows[~low] - self.split]
        return out


def refit_trial(
    context: TrialContext, trial: kt.engine.trial.Trial
) -> tuple[keras.Model, dict[str, Any]]:
    """Trains `trial`'s hyperparameters on train + val; returns the model (without augmentation
    layers, ready to export) and what the refit did, for the metadata."""
    started = time.perf_counter()
    config, data = context.config, context.data
    values = context.values(trial.hyperparameters)
    summary, _ = TrialSummary.read(trial_dir(config.project_dir, trial.trial_id))
    phase1 = summary.phase1.epochs if summary and summary.phase1 else None
    phase2 = summary.phase2.epochs if summary and summary.phase2 else None
    epochs_head = phase1 or config.epochs_head
    epochs_finetune = (phase2 or 0) if values.unfreeze_blocks > 0 else 0
    seed = trial_seed(config.seed, trial.trial_id)
    size = context.features.image_sizes[values.backbone]
    n_classes = data.n_classes
    labels = np.concatenate([data.labels("train"), data.labels("val")])
    y = labels_for(labels, n_classes)
    x = _Rows(data.pixels("train", size), data.pixels("val", size))
    model = context.build_model(values, seed)
    backbone = model.get_layer(BACKBONE_NAME)
    head = model.get_layer(HEAD_NAME)
    context.display.message(
        f"refit: trial {trial.trial_id}'s hyperparameters on {len(y)} images (train + val), "
        f"{epochs_head} + {epochs_finetune} epochs"
    )

    def fit(phase: int, epochs: int) -> None:
        batches = make_dataset(
            x, y, config.batch_size, shuffle_seed=seed + phase if config.shuffle else None
        )
        model.fit(batches, epochs=epochs, verbose=0 if config.verbose < 2 else 2)

    if values.units == 0:
        _fit_linear(context, values.backbone, head)
    else:
        backbone.trainable = False
        compile_model(model, values.head_lr, n_classes)
        fit(1, epochs_head)
    cut = None
    if epochs_finetune:
        cut = cuts.unfreeze_cut(
            backbone, get_backbone(values.backbone).block_pattern, values.unfreeze_blocks
        )
        cuts.freeze_for_finetune(backbone, cut)
        compile_model(model, values.finetune_lr, n_classes)
        fit(2, epochs_finetune)
    served = context.build_model(values, seed, augment=False)
    Pieces.capture(head, backbone, cut).apply(
        served.get_layer(HEAD_NAME), served.get_layer(BACKBONE_NAME)
    )
    record = {
        "images": int(len(y)),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "epochs_head": int(epochs_head),
        "epochs_finetune": int(epochs_finetune),
        "from_trial": trial.trial_id,
        "seconds": round(time.perf_counter() - started, 1),
        "note": "trained on the training and validation images together; the validation "
        "metrics recorded here are the search's, from before the refit",
    }
    return served, record


def _fit_linear(context: TrialContext, name: str, head: keras.Model) -> None:
    """Sets a linear `head` to the search's logistic regression, at its chosen C, fitted on the
    features of every image."""
    data, features = context.data, context.features
    stats = features.feature_stats(name)
    train, val = features.pooled(name, "train"), features.pooled(name, "val")
    views = len(train) // len(data.train)
    chosen = features.linear_head(name)
    every = np.concatenate([np.asarray(train, "float32"), np.asarray(val, "float32")])
    linear = fit_linear_head(
        stats.standardize(every),
        np.concatenate([np.tile(data.labels("train"), views), data.labels("val")]),
        data.n_classes,
        grid=(chosen.C,),
    )
    head.get_layer("head_output").set_weights([linear.kernel, linear.bias])
