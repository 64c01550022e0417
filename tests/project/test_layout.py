"""The project directory: the typed trial summary, run.json's settings and failure reasons."""

from __future__ import annotations

import json
from pathlib import Path

from tuner.config import SearchConfig
from tuner.engine.spaces import load_space
from tuner.project import layout as project
from tuner.project.layout import PhaseSummary, TrialSummary


def test_a_trial_summary_round_trips_through_its_file(tmp_path: Path):
    summary = TrialSummary("07", augment=True, cache=False, backbone="tiny")
    history = [{"epoch": 1, "loss": 0.6, "val_accuracy": 0.75, "val_loss": 0.5}]
    summary.phase1 = PhaseSummary(1, 0.25, {"val_accuracy": 0.75, "val_loss": 0.5}, history)
    summary.phase2 = PhaseSummary(3, 1.5, {"val_accuracy": 0.875, "val_loss": 0.25})
    summary.epochs_run, summary.seconds, summary.best = 4, 2.0, summary.phase2.best
    summary.best_epoch = 3
    summary.write(tmp_path)
    data = json.loads((tmp_path / project.SUMMARY_FILE).read_text())
    assert data["phase1"] == {
        "epochs": 1,
        "seconds": 0.25,
        "val_accuracy": 0.75,
        "best": {"val_accuracy": 0.75, "val_loss": 0.5},
        "history": history,
    }
    assert data["best_epoch"] == 3
    assert data["phase2"]["val_accuracy"] == 0.875 and data["reason"] is None
    again, problem = TrialSummary.read(tmp_path)
    assert problem is None and again == summary


def test_a_missing_summary_is_none_and_an_unreadable_one_says_so(tmp_path: Path):
    assert TrialSummary.read(tmp_path) == (None, None)
    (tmp_path / project.SUMMARY_FILE).write_text("{not json")
    summary, problem = TrialSummary.read(tmp_path)
    assert summary is None and problem.startswith("summary.json unreadable:")


def test_run_settings_hold_resolved_sizes_and_a_change_names_its_flag(tmp_path: Path):
    config = SearchConfig(data=tmp_path, backbones=("tiny",), project_dir=tmp_path)
    settings = project.run_settings(
        config,
        space=load_space(family="tiny"),
        class_names=("a", "b"),
        image_sizes={"tiny": 32},
        weights={"tiny": "none"},
    )
    assert settings["image_size"] == 32 and settings["image_sizes"] == {"tiny": 32}
    assert settings["weights"] == "none" and settings["class_names"] == ["a", "b"]
    changed = {**settings, "image_sizes": {"tiny": 48}, "epochs_head": 9}
    assert project.changed_settings(settings, changed) == [
        "--image-size tiny=48 (this project: tiny=32)",
        "--epochs-head 9 (this project: 4)",
    ]
    assert project.changed_settings({}, changed) == []  # an older run.json is not compared


def test_a_failure_reason_is_one_line_without_the_exception_s_module_path():
    traceback = "Traceback (most recent call last):\n  ...\ntuner.errors.TrialError: diverged"
    assert project.failure_reason(None, traceback) == "TrialError: diverged"
    assert project.failure_reason("out of memory\n  here", traceback) == "out of memory here"
    assert project.failure_reason(None, None) is None


def test_a_resume_with_other_class_weights_selection_or_augmentation_is_named(tmp_path: Path):
    config = SearchConfig(
        data=tmp_path,
        backbones=("tiny",),
        project_dir=tmp_path,
        class_weight="balanced",
        objective="val_balanced_accuracy",
        augment=True,
    )
    settings = project.run_settings(
        config,
        space=load_space(family="tiny"),
        class_names=("a", "b"),
        image_sizes={"tiny": 32},
        weights={"tiny": "none"},
    )
    assert settings["augmentations"] == ["rotate", "zoom"]
    changed = {
        **settings,
        "class_weight": "none",
        "objective": "val_accuracy",
        "select": "one-se",
        "augmentations": ["flip", "rotate", "zoom"],
    }
    assert project.changed_settings(settings, changed) == [
        "--objective val_accuracy (this project: val_balanced_accuracy)",
        "--augment flip,rotate,zoom (this project: rotate,zoom)",
        "--class-weight none (this project: balanced)",
        "--select one-se (this project: best)",
    ]
