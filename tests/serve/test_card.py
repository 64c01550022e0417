"""The model card from metadata alone: the test figures first, the validation figures labelled
as optimistic (none in the headline of a refit model), the confusion matrices, the calibration,
the class weights, the objective and the augmentation; metadata of an older export still
renders."""

from __future__ import annotations

import copy

from tuner.serve.card import model_card

METADATA = {
    "class_names": ["cat", "dog", "owl"],
    "input": {"image_size": 64},
    "backbone": "tiny",
    "weights": "none",
    "output": "softmax probabilities over class_names",
    "formats": {"keras": "model.keras"},
    "quantize": "none",
    "trial_id": "07",
    "objective": {"name": "val_balanced_accuracy", "direction": "max", "value": 0.875},
    "validation_interval": [0.71, 0.96],
    "validation_per_class": {
        "recall": [1.0, 0.75, 0.5],
        "confusion": [[4, 0, 0], [1, 3, 0], [0, 1, 1]],
        "images": 10,
    },
    "hyperparameters": {"head/units": 0},
    "phases": {"head": {"epochs": 3, "best": {"val_accuracy": 0.8}}, "finetune": None},
    "data": {
        "folder": "/data/train",
        "counts": {
            "train": {"cat": 16, "dog": 16, "owl": 4},
            "val": {"cat": 4, "dog": 4, "owl": 2},
        },
    },
    "class_weight": "balanced",
    "class_weights": {"cat": 0.75, "dog": 0.75, "owl": 3.0},
    "select": "best",
    "augment": True,
    "augmentations": ["rotate", "zoom"],
    "calibration": {
        "method": "temperature",
        "temperature": 1.8,
        "fitted": 1.8,
        "images": 10,
        "trial_id": "07",
        "refit": False,
        "note": None,
        "validation": {
            "before": {"accuracy": 0.8, "balanced_accuracy": 0.75, "ece": 0.21, "loss": 0.93},
            "after": {"accuracy": 0.8, "balanced_accuracy": 0.75, "ece": 0.06, "loss": 0.52},
        },
    },
    "test": {
        "trial_id": "07",
        "export": "/p/export",
        "refit": False,
        "folder": "/data/test",
        "class_names": ["cat", "dog", "owl"],
        "images": 30,
        "skipped": 1,
        "temperature": 1.8,
        "accuracy": 0.8,
        "balanced_accuracy": 0.8,
        "macro_f1": 0.79,
        "loss": 0.55,
        "ece": 0.04,
        "recall": [0.9, 0.8, 0.7],
        "confusion": [[9, 1, 0], [2, 8, 0], [1, 2, 7]],
    },
    "refit": None,
    "versions": {"keras": "3"},
}


def test_the_card_opens_with_the_test_figures_and_calls_validation_optimistic():
    card = model_card(METADATA)
    lines = card.splitlines()
    assert lines[2] == (
        "Exported by tuner from trial 07 of a search. On 30 held-out test images: accuracy "
        "80.0 %, balanced accuracy 80.0 %."
    )
    order = ["## Test", "## Validation (selected on: optimistic)", "## Calibration", "## Model"]
    assert [card.index(h) for h in order] == sorted(card.index(h) for h in order)
    test = card[card.index("## Test") : card.index("## Validation")]
    assert "`/data/test`" in test and "1 unreadable file skipped" in test
    assert "| balanced accuracy | 80.0 % |" in test and "| ECE | 0.0400 |" in test
    assert "| log-loss | 0.5500 |" in test
    assert "| owl | 1 | 2 | 7 | 70.0 % |" in test  # the test confusion matrix, with recall
    validation = card[card.index("## Validation") : card.index("## Calibration")]
    assert "val_balanced_accuracy 0.8750 (95 % interval 0.7100 to 0.9600)" in validation
    assert "| owl | 0 | 1 | 1 | 50.0 % |" in validation  # summary.json's per_class
    calibration = card[card.index("## Calibration") : card.index("## Model")]
    assert "T = 1.8" in calibration and "the 10 validation images of trial 07" in calibration
    assert (
        "| before | 0.2100 | 0.9300 |" in calibration
        and "| after | 0.0600 | 0.5200 |" in calibration
    )
    assert "| test (calibrated) | 0.0400 | 0.5500 |" in calibration
    assert "| owl | 4 | 2 | 10 |" in card  # train, validation and test images per class
    assert "- Objective: val_balanced_accuracy (max), trial picked by `--select best`." in card
    assert "- Class weights: balanced: cat 0.75, dog 0.75, owl 3." in card
    assert "- Augmentation: rotate, zoom (training only" in card


def test_without_a_test_set_the_validation_headline_says_it_is_optimistic():
    metadata = {k: v for k, v in METADATA.items() if k != "test"}
    card = model_card(metadata)
    assert "selected on: optimistic" in card.splitlines()[2]
    assert "val_balanced_accuracy 0.8750" in card.splitlines()[2]
    assert "## Test" not in card and "test (calibrated)" not in card
    assert "| class | train images | validation images |" in card


def test_a_refit_model_gets_no_validation_headline():
    metadata = copy.deepcopy(METADATA)
    metadata["refit"] = {"epochs_head": 3, "epochs_finetune": 0}
    metadata["calibration"]["refit"] = True
    metadata["test"]["refit"] = True
    card = model_card(metadata)
    headline = card.splitlines()[2]
    assert "`--refit`" in headline and "held-out test images" in headline
    assert "val_" not in headline and "optimistic" not in headline
    assert "## Validation (of the searched trial, not of this model)" in card
    assert "the refit model trained on them, so its temperature is the searched model's" in card
    assert "the refit model (`model.keras`" in card
    del metadata["test"]
    headline = model_card(metadata).splitlines()[2]
    assert "no score of its own" in headline and "val_" not in headline


def test_calibration_off_or_kept_at_1_says_so():
    metadata = copy.deepcopy(METADATA)
    metadata["calibration"].update(method="none", temperature=1.0)
    del metadata["calibration"]["validation"]["after"]
    assert "Not calibrated (`--calibrate none`)" in model_card(metadata)
    metadata["calibration"].update(
        method="temperature",
        note="every validation image is predicted right, so ...; T = 1 kept",
    )
    card = model_card(metadata)
    assert "but T = 1 was kept: every validation image is predicted right" in card
    metadata["calibration"].update(note=None, temperature=1.2, fitted=1.6)
    assert "The log-loss optimum, T = 1.6, would raise the validation ECE" in model_card(metadata)


def test_an_older_exports_metadata_still_renders():
    keys = ("calibration", "test", "validation_per_class", "validation_interval", "class_weight")
    old = {k: v for k, v in METADATA.items() if k not in (*keys, "class_weights", "select")}
    old.pop("augmentations")
    card = model_card(old)
    assert "## Calibration" not in card and "| true" not in card
    assert "- Augmentation: on (training only" in card
    assert "selected on: optimistic" in card.splitlines()[2]
