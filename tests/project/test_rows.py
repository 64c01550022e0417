"""The leaderboard as data (tuner.project.rows): records, CSV and JSON, on project folders written
by hand (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.project.folders import (
    TEST_JSON,
    make_project,
    make_scored_project,
)
from tuner.project.csvtext import read_csv
from tuner.project.rows import Row, rows_from_json, to_csv, to_json
from tuner.project.trials import read_ranking


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    return make_scored_project(tmp_path / "scored")


def test_csv_has_a_recall_column_per_class_and_the_best_epochs_metrics(scored: Path) -> None:
    board = read_ranking(scored)

    text = to_csv(board)

    header = text.splitlines()[0].split(",")
    assert header[:10] == [
        "project",
        "rank",
        "trial_id",
        "status",
        "score",
        "interval_low",
        "interval_high",
        "tied",
        "one_se",
        "exported",
    ]
    for column in ("recall_cat", "recall_dog", "val_loss_best", "val_accuracy_best"):
        assert column in header
    records = {r["trial_id"]: r for r in read_csv(text)}
    assert read_csv(text) == board.records()
    assert records["00"]["recall_dog"] == 0.9 and records["00"]["val_loss_best"] == 0.3
    assert (records["00"]["interval_low"], records["00"]["interval_high"]) == (0.88, 0.98)
    assert records["03"]["one_se"] is True and records["03"]["exported"] is True
    assert records["04"]["tied"] is False
    assert records["00"]["validation_images"] == 90


def test_an_older_projects_records_have_the_new_columns_empty(tmp_path: Path) -> None:
    board = read_ranking(make_project(tmp_path / "old"))
    record = board.records()[1]
    assert record["interval_low"] is None and record["tied"] is None
    assert not any(name.startswith("recall_") for name in record)
    assert read_csv(to_csv(board)) == board.records()


def test_json_has_the_rows_and_the_test_set_figures(scored: Path) -> None:
    (scored / "test.json").write_text(json.dumps(TEST_JSON))
    board = read_ranking(scored)

    data = json.loads(to_json(board))

    assert data["test"] == TEST_JSON
    assert data["tests"] == {"scored": TEST_JSON}
    assert rows_from_json(to_json(board)) == list(board.rows)
    first = data["rows"][0]
    assert first["recall"] == {"cat": 1.0, "dog": 0.9}
    assert first["metrics_best"]["val_accuracy"] == 0.95
    assert first["interval"] == [0.88, 0.98]
    assert [row["trial_id"] for row in data["rows"] if row["exported"]] == ["03"]


def test_json_without_a_test_set_and_rows_of_an_older_output(scored: Path) -> None:
    data = json.loads(to_json(read_ranking(scored)))
    assert data["test"] is None and data["tests"] == {}

    # Rows written before issue 25 lack the new fields: they read back with the defaults.
    old = {k: v for k, v in data["rows"][0].items() if k in _FIELDS_BEFORE}
    row = Row.from_dict(old)
    assert row.interval is None and row.recall == {} and row.tied is None and not row.exported


_FIELDS_BEFORE = {
    f.name
    for f in dataclasses.fields(Row)
    if f.name
    not in {
        "metrics_best",
        "recall",
        "confusion",
        "validation_images",
        "interval",
        "tied",
        "one_se",
        "exported",
    }
}
