"""A search read back and ranked (tuner.project.trials): the score at the best epoch, intervals,
per-class recall and the test figures, on project folders written by hand (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.project.folders import (
    make_project,
    make_scored_project,
    write_scored_trial,
)
from tuner.metrics import wilson
from tuner.project.trials import (
    read_ranking,
)


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    return make_scored_project(tmp_path / "scored")


def test_the_score_is_the_objective_at_the_best_epoch_not_kerastuners(scored: Path) -> None:
    board = read_ranking(scored)

    # trial.json's scores (a composite for the oracle) would put 04 first, at 0.99.
    assert [(r.rank, r.trial_id, r.score) for r in board.rows] == [
        (1, "00", 0.95),
        (2, "01", 0.93),
        (3, "02", 0.92),
        (4, "03", 0.9),
        (5, "04", 0.8),
    ]


def test_an_older_summary_without_the_objective_falls_back_to_kerastuners_score(
    tmp_path: Path,
) -> None:
    board = read_ranking(make_project(tmp_path / "old"))
    assert [(r.trial_id, r.score) for r in board.rows[:3]] == [
        ("02", 0.9431),
        ("00", 0.9125),
        ("01", 0.875),
    ]


def test_an_older_accuracy_project_gets_wilson_intervals_from_its_validation_size(
    tmp_path: Path,
) -> None:
    root = make_project(tmp_path / "old")
    assert read_ranking(root).rows[0].interval is None  # no validation size known
    metadata = {"data": {"counts": {"train": {"cat": 200, "dog": 200}, "val": {"cat": 40}}}}
    (root / "export").mkdir()
    (root / "export" / "metadata.json").write_text(json.dumps(metadata))

    board = read_ranking(root)

    assert board.rows[0].interval == pytest.approx(wilson(round(0.9431 * 40), 40))
    assert board.rows[1].interval == pytest.approx(wilson(round(0.9125 * 40), 40))
    # On 40 images, 0.9431 lies inside the others' intervals.
    assert [r.tied for r in board.rows[:3]] == [True, True, True]
    assert board.one_se.trial_id == "01"  # no phase 2: no block fine-tuned


def test_per_class_recall_confusion_and_best_epoch_metrics_are_read(scored: Path) -> None:
    row = read_ranking(scored).rows[0]

    assert row.recall == {"cat": 1.0, "dog": 0.9}  # by run.json's class names
    assert row.confusion == [[45, 0], [4, 41]]
    assert row.validation_images == 90
    assert row.metrics_best["val_loss"] == 0.3 and row.metrics_best["val_accuracy"] == 0.95


def test_recall_is_by_label_index_when_the_class_names_are_unknown(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "trials").mkdir(parents=True)
    write_scored_trial(root, "0", accuracy=0.5, recall=[0.5, None, 1.0], images=6)
    assert read_ranking(root).rows[0].recall == {"0": 0.5, "1": None, "2": 1.0}


def test_an_unreadable_test_json_is_left_out(scored: Path) -> None:
    (scored / "test.json").write_text('{"trial_id": "0')
    assert read_ranking(scored).test is None
