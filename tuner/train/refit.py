"""`--refit`: retrain a trial's hyperparameters on the training and validation images together.

For a small dataset, the fifth of it held out for validation is a real loss once the search has
chosen the hyperparameters. The refit trains what the search scored: the trial's model again, from
the same starting weights and head seed, on every image, for the epochs that led to the trial's
best epoch (`refit_epochs`), and keeps the last: nothing is held out to choose another.

- The best epoch is counted from 1 across both phases; phase 1 has `--epochs-head` epochs, and a
  linear head's closed form counts as its last one. Phase 1 trains up to its best epoch, since
  fine-tuning starts from the best head; phase 2 up to the best epoch. Epochs run after it
  (patience) are not trained.
- A best epoch in phase 1 means the search kept the head and rejected fine-tuning: the refit does
  not fine-tune.
- A Hyperband continuation starts from its predecessor's checkpoint, the predecessor's best epoch,
  and numbers its own phase-2 epochs on from `tuner/initial_epoch` (`tuner.train.trial._epochs`):
  the predecessors' epochs up to their best are counted, back to the trial that ran phase 1.

It trains the full model on pixels, as `--no-cache` does (the cache holds the training images'
activations only), with the search's augmentation and class weights; a linear head
(`head/units = 0`) is fitted as the search fitted it, at the regularization the search chose, on
the features of every image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from tuner.hp import INITIAL_EPOCH, PREDECESSOR
from tuner.models import cuts
from tuner.models.network import BACKBONE_NAME, HEAD_NAME, Pieces, compile_model
from tuner.models.probe import fit_linear_head
from tuner.models.registry import get_backbone
from tuner.project.layout import TRIAL_FILE, TrialSummary, integer, trial_dir
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


@dataclass(frozen=True)
class Link:
    """One trial of a refit's chain: the trial itself, then each Hyperband predecessor in turn."""

    trial_id: str
    summary: TrialSummary | None  # None: its summary.json is missing or unreadable
    initial_epoch: int = 0  # `tuner/initial_epoch`: phase-2 epochs numbered before its own
    predecessor: str | None = None  # `tuner/trial_id`: the trial it continued from


@dataclass(frozen=True)
class RefitEpochs:
    """The epochs a refit trains in each phase, and where they came from."""

    head: int  # phase-1 epochs (a linear head's closed form counts as one)
    finetune: int  # phase-2 epochs; 0 skips phase 2
    best_epoch: int | None  # the trial's best epoch, counted from 1 across both phases
    source: str  # how `head` and `finetune` were found, in words
    # The trials continued from, nearest first: {"trial_id", "best_epoch", "finetune_epochs"}.
    predecessors: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The epochs as metadata.json's `refit.epochs` holds them."""
        return {
            "head": self.head,
            "finetune": self.finetune,
            "best_epoch": self.best_epoch,
            "source": self.source,
            "predecessors": self.predecessors,
        }


def refit_epochs(
    chain: Sequence[Link], epochs_head: int, *, linear: bool, finetunes: bool
) -> RefitEpochs:
    """The phase-1 and phase-2 epochs that produced the checkpoint of `chain[0]`.

    Args:
        chain: the trial, then its predecessors, nearest first (`read_chain`).
        epochs_head: the search's `--epochs-head`: phase 2's epochs are numbered after it.
        linear: the head is linear (`head/units = 0`): phase 1 is the closed form.
        finetunes: the trial unfreezes blocks (`finetune/unfreeze_blocks > 0`).

    Returns:
        The epochs per phase. A summary written before best epochs were recorded gives the
        epochs its trial ran, as `--refit` counted them before.
    """
    finetune = 0
    head: int | None = None
    sources: list[str] = []
    predecessors: list[dict[str, Any]] = []
    for position, link in enumerate(chain):
        summary = link.summary
        best = summary.best_epoch if summary is not None else None
        ran_head, ran_finetune = _epochs_run(summary)
        root = link.predecessor is None
        if best is None:
            # No best epoch: a continuation that had nothing left to train (it kept what it
            # inherited, and ran no epoch), or a summary from before best epochs were recorded.
            own = ran_finetune
            if root:
                head = ran_head or epochs_head
            sources.append(f"trial {link.trial_id}: epochs run")
        elif not root:
            # A continuation numbers its own epochs after those its predecessors were given.
            own = max(best - epochs_head - link.initial_epoch, 0)
            sources.append(f"trial {link.trial_id}: best epoch {best}")
        elif best <= epochs_head:
            head, own = best, 0
            sources.append(f"trial {link.trial_id}: best epoch {best}, in phase 1")
        else:
            head, own = _best_head_epoch(summary, epochs_head), best - epochs_head
            sources.append(f"trial {link.trial_id}: best epoch {best}, in phase 2")
        finetune += own
        if position:
            predecessors.append(
                {"trial_id": link.trial_id, "best_epoch": best, "finetune_epochs": own}
            )
        if root:
            break
    if head is None:
        missing = chain[-1].predecessor if chain else None
        head = epochs_head
        sources.append(f"trial {missing} (continued from) not found: --epochs-head for phase 1")
    return RefitEpochs(
        head=1 if linear else head,
        finetune=finetune if finetunes else 0,
        best_epoch=chain[0].summary.best_epoch if chain and chain[0].summary else None,
        source="; ".join(sources),
        predecessors=predecessors,
    )


def _epochs_run(summary: TrialSummary | None) -> tuple[int, int]:
    """The epochs a trial ran in each phase (0 where it has no summary)."""
    if summary is None:
        return 0, 0
    head = summary.phase1.epochs if summary.phase1 else 0
    finetune = summary.phase2.epochs if summary.phase2 else 0
    return head, finetune


def _best_head_epoch(summary: TrialSummary, epochs_head: int) -> int:
    """The best phase-1 epoch of a trial whose best epoch is in phase 2: fine-tuning started
    from that head (`tuner.train.trial.train_trial`).

    It is the first epoch of phase 1's history whose logs are the phase's best logs, compared on
    the metrics both hold (the recorder keeps the first of equal epochs); where the history does
    not hold them, the epochs phase 1 ran.
    """
    phase1 = summary.phase1
    if phase1 is None:
        return epochs_head
    for logs in phase1.history:
        epoch = integer(logs.get("epoch"))
        shared = [k for k in phase1.best if k in logs and k != "epoch"]
        if epoch is not None and shared and all(logs[k] == phase1.best[k] for k in shared):
            return min(epoch, epochs_head)
    return phase1.epochs or epochs_head


def read_chain(project_dir: Path, trial_id: str, values: dict[str, Any]) -> list[Link]:
    """The trial `trial_id` (its hyperparameter `values`), then each Hyperband predecessor it
    continued from (`tuner/trial_id`), read from their trial.json and summary.json."""
    chain: list[Link] = []
    seen: set[str] = set()
    current: str | None = trial_id
    while current is not None and current not in seen:
        seen.add(current)
        folder = trial_dir(project_dir, current)
        if current != trial_id:
            values = _trial_values(folder)
            if values is None:
                break  # a predecessor without trial.json: `refit_epochs` says so
        summary, _ = TrialSummary.read(folder)
        predecessor = values.get(PREDECESSOR) or None
        chain.append(
            Link(
                trial_id=current,
                summary=summary,
                initial_epoch=integer(values.get(INITIAL_EPOCH)) or 0,
                predecessor=None if predecessor is None else str(predecessor),
            )
        )
        current = chain[-1].predecessor
    return chain


def _trial_values(folder: Path) -> dict[str, Any] | None:
    """The hyperparameter values in a trial's trial.json (KerasTuner's), or None."""
    try:
        data = json.loads((folder / TRIAL_FILE).read_text(encoding="utf-8"))
        values = data["hyperparameters"]["values"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(values) if isinstance(values, dict) else None


def refit_trial(
    context: TrialContext, trial: kt.engine.trial.Trial
) -> tuple[keras.Model, dict[str, Any]]:
    """Trains `trial`'s hyperparameters on train + val for the epochs of its best epoch; returns
    the model (without augmentation layers, ready to export) and what the refit did, for the
    metadata."""
    started = time.perf_counter()
    config, data = context.config, context.data
    values = context.values(trial.hyperparameters)
    chain = read_chain(config.project_dir, trial.trial_id, dict(trial.hyperparameters.values))
    epochs = refit_epochs(
        chain,
        config.epochs_head,
        linear=values.units == 0,
        finetunes=values.unfreeze_blocks > 0,
    )
    # The trial that ran phase 1 drew the head's starting weights from its own seed.
    first = chain[-1].trial_id if chain and chain[-1].predecessor is None else trial.trial_id
    seed = trial_seed(config.seed, first)
    size = context.features.image_sizes[values.backbone]
    n_classes = data.n_classes
    labels = np.concatenate([data.labels("train"), data.labels("val")])
    y = labels_for(labels, n_classes)
    weights = context.sample_weights(labels)
    x = _Rows(data.pixels("train", size), data.pixels("val", size))
    model = context.build_model(values, seed, augment=config.augment)
    backbone = model.get_layer(BACKBONE_NAME)
    head = model.get_layer(HEAD_NAME)
    context.display.message(
        f"refit: trial {trial.trial_id}'s hyperparameters on {len(y)} images (train + val), "
        f"{epochs.head} + {epochs.finetune} epochs ({epochs.source})"
    )

    def fit(phase: int, count: int) -> None:
        batches = make_dataset(
            x,
            y,
            config.batch_size,
            shuffle_seed=seed + phase if config.shuffle else None,
            sample_weights=weights,
        )
        model.fit(
            batches,
            epochs=count,
            shuffle=False,  # the dataset shuffles itself, seeded (see make_dataset)
            verbose=0 if config.verbose < 2 else 2,
        )

    if values.units == 0:
        _fit_linear(context, values.backbone, head)
    else:
        backbone.trainable = False
        compile_model(model, values.head_lr, n_classes)
        fit(1, epochs.head)
    cut = None
    if epochs.finetune:
        cut = cuts.unfreeze_cut(
            backbone, get_backbone(values.backbone).block_pattern, values.unfreeze_blocks
        )
        cuts.freeze_for_finetune(backbone, cut)
        compile_model(model, values.finetune_lr, n_classes)
        fit(2, epochs.finetune)
    served = context.build_model(values, seed, augment=False)
    Pieces.capture(head, backbone, cut).apply(
        served.get_layer(HEAD_NAME), served.get_layer(BACKBONE_NAME)
    )
    record = {
        "images": int(len(y)),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "epochs_head": int(epochs.head),
        "epochs_finetune": int(epochs.finetune),
        "epochs": epochs.record(),
        "augment": list(config.augmentations) if config.augment else None,
        "class_weight": config.class_weight,
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
    labels = np.concatenate([np.tile(data.labels("train"), views), data.labels("val")])
    linear = fit_linear_head(
        stats.standardize(every),
        labels,
        data.n_classes,
        sample_weight=context.sample_weights(labels),
        grid=(chosen.C,),
    )
    head.get_layer("head_output").set_weights([linear.kernel, linear.bias])
