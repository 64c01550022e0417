"""The quality benchmark's cases and what every row of it shares: the settings, the rows, the
test data, the starting backbone.

Each `Case` is a backbone at a size, its starting weights and a held-out set (`_datasets.held_out`).
Every row of a case starts from the same backbone weights (`initial_backbone`): the weights file,
or for `weights none` the random init the search itself draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import _harness

# --- (a) the recipe: the Keras transfer-learning guide ("Transfer learning & fine-tuning", its
# 2020 edition) trains the new head, then fine-tunes for 10 epochs at a much lower learning rate;
# the seed's recipe adds Dense(512, relu), Adam 1e-3 for the head, "unfreeze the last 33 layers"
# of Xception (25% of its 133 layers) and Adam 5e-5.
RECIPE_HEAD_EPOCHS = 10
RECIPE_FINETUNE_EPOCHS = 10
RECIPE_HEAD_UNITS = 512
RECIPE_HEAD_LR = 1e-3
RECIPE_FINETUNE_LR = 5e-5
RECIPE_BATCH_SIZE = 32
RECIPE_XCEPTION_UNFREEZE = 33  # the tutorial's number
RECIPE_UNFREEZE_FRACTION = 0.25  # the same share of len(backbone.layers) for other backbones

# --- (b) the linear probe
PROBE_C = 1.0
PROBE_MAX_ITER = 5000
PROBE_BATCH_SIZE = 64

# --- (c) the search
SEARCH_SEED = 1
SEARCH_MAX_TRIALS = 30  # generous: the time budget is what stops the search
BUDGET_MARGIN_S = 20.0  # T = min wall of the (a) rows minus this (startup, export, last trial)
MIN_BUDGET_S = 5.0  # floor on T

TARGET_POINTS = 1.0  # search >= max(recipe rows, probe) - this many accuracy points

# --- quick mode (a smoke run): fewer images and epochs everywhere
QUICK_RECIPE_HEAD_EPOCHS = 1
QUICK_RECIPE_FINETUNE_EPOCHS = 1
QUICK_SEARCH_EPOCHS = ("--epochs-head", "1", "--epochs-finetune", "1")
# The quick recipe rows take 10-25 s, about the search's own start-up (TensorFlow import, decode,
# backbone build): a smoke run gives the search at least this budget, with no margin, so it
# finishes a trial or more; its wall time is then not matched to the recipe's (flagged).
QUICK_MARGIN_S = 0.0
QUICK_MIN_BUDGET_S = 20.0


@dataclass(frozen=True)
class Case:
    """One comparison: a backbone at a size, its starting weights, and its held-out set."""

    name: str
    backbone: str
    image_size: int
    weights: str  # "none", or a name for tuner.models.pretrained.convert (e.g. "hed-vgg16")
    dataset: str  # a key of _datasets.DATASETS
    note: str


CASES: tuple[Case, ...] = (
    Case("binary-flat", "xception", 96, "none", "digits-2", "flat cat.N/dog.N JPEG, random init"),
    Case("five-class-folders", "mobilenetv2", 48, "none", "digits-5", "class folders PNG"),
    Case("pretrained-vgg16", "vgg16", 64, "hed-vgg16", "textures-3", "HED conv weights"),
    Case("random-vgg16", "vgg16", 64, "none", "textures-3", "same data, random init"),
)


@dataclass
class Settings:
    """How a run of the benchmark measures, from its command line."""

    quick: bool
    head_epochs: int
    finetune_epochs: int
    search_extra: tuple[str, ...]
    margin_s: float
    min_budget_s: float
    data_root: Path
    work_dir: Path
    verbose: bool

    def record(self) -> dict[str, Any]:
        """What the JSON result says about how the rows were measured."""
        return {
            "quick": self.quick,
            "recipe_epochs": [self.head_epochs, self.finetune_epochs],
            "recipe": {
                "head_units": RECIPE_HEAD_UNITS,
                "head_lr": RECIPE_HEAD_LR,
                "finetune_lr": RECIPE_FINETUNE_LR,
                "batch_size": RECIPE_BATCH_SIZE,
                "xception_unfreeze": RECIPE_XCEPTION_UNFREEZE,
                "unfreeze_fraction": RECIPE_UNFREEZE_FRACTION,
            },
            "probe": {"C": PROBE_C, "max_iter": PROBE_MAX_ITER},
            "search": {
                "seed": SEARCH_SEED,
                "max_trials": SEARCH_MAX_TRIALS,
                "margin_s": self.margin_s,
                "extra_flags": list(self.search_extra),
            },
            "target_points": TARGET_POINTS,
        }


@dataclass
class Row:
    """One row of a case's table: a model, its scores and its time."""

    name: str
    test_accuracy: float | None = None
    val_accuracy: float | None = None  # display only for (a) and (b); the objective for (c)
    wall_s: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def say(text: str) -> None:
    """One progress line on standard error."""
    _harness.say("quality", text)


def search_settings(case: Case, weights: str, dirs: dict[str, Path]) -> dict[str, Any]:
    """What a search of `case` starts from, as `SearchConfig` fields and `python -m tuner.search`
    flags alike: the backbone, TRAIN and VAL, the starting weights, the size and the seed."""
    return {
        "backbone": case.backbone,
        "data": dirs["train"],
        "val_data": dirs["val"],
        "weights": weights,
        "image_size": case.image_size,
        "seed": SEARCH_SEED,
    }


def load_split(folder: Path, size: int, class_names: tuple[str, ...] | None = None):
    """Scan and decode one split with the search's own loader; labels follow `class_names`."""
    import numpy as np

    from tuner.data import decode
    from tuner.data import folders as data

    images, skipped = data.scan(folder)
    kept, pixels, bad = decode.load_pixels(images, size)
    if skipped or bad:
        raise RuntimeError(f"{folder}: {data.summarize_skipped(list(skipped) + list(bad))}")
    labels = np.asarray(kept.labels)
    if class_names is not None and tuple(kept.class_names) != tuple(class_names):
        index = {n: i for i, n in enumerate(class_names)}
        labels = np.array([index[kept.class_names[i]] for i in labels], dtype=np.int32)
    return kept, pixels.astype("float32"), labels


def resolve_weights(case: Case) -> tuple[str, str]:
    """(weights argument for build_backbone and --weights, a description)."""
    if case.weights == "none":
        return "none", "none (random init, seed-drawn)"
    from tuner.models.pretrained import convert

    path = Path(convert(case.weights))
    return str(path), f"{case.weights} ({path})"


def initial_backbone(case: Case, weights: str):
    """The backbone exactly as the search starts it (random init: the search's own draw)."""
    import keras

    from tuner.models.registry import build_backbone, get_backbone

    # The search draws `--weights none` with set_random_seed(--seed) then build_backbone
    # (tuner.frozen.features.resolve_weights); doing the same gives the same weights.
    keras.utils.set_random_seed(SEARCH_SEED)
    return build_backbone(get_backbone(case.backbone), case.image_size, weights)


def predicted_classes(probabilities):
    """Class indices from a classifier's output: Keras's 0.5 threshold on a single sigmoid
    column (two classes), else the most probable class."""
    import numpy as np

    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] == 1:
        return (probabilities.reshape(-1) > 0.5).astype(np.int64)
    return probabilities.argmax(axis=-1)
