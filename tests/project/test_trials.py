"""A search read back and ranked (tuner.project.trials): scores at the best epoch, intervals, ties
with the best, the one-se pick, the exported trial, per-class recall and the test figures, on
project folders written by hand (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.project.folders import (
    RUN,
    TEST_JSON,
    make_project,
    make_scored_project,
    write_scored_trial,
)
from tuner.errors import TunerError
from tuner.metrics import wilson
from tuner.project.trials import (
    Row,
    cost,
    merge,
    read_csv,
    read_ranking,
    rows_from_json,
    to_csv,
    to_json,
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


def test_trials_whose_interval_holds_the_best_score_are_tied_with_it(scored: Path) -> None:
    board = read_ranking(scored)

    assert {r.trial_id: r.tied for r in board.rows} == {
        "00": True,  # the best
        "01": True,
        "02": True,
        "03": True,  # 0.95 is the end of its interval: inside
        "04": False,
    }
    assert [r.trial_id for r in board.tied] == ["00", "01", "02", "03"]
    assert board.rows[0].interval == (0.88, 0.98)


def test_the_one_se_pick_is_the_cheapest_tied_trial_and_select_one_se_exports_it(
    scored: Path,
) -> None:
    board = read_ranking(scored)

    assert board.best.trial_id == "00"
    assert board.one_se.trial_id == "03"
    assert board.exported.trial_id == "03"  # run.json: "select": "one-se"
    assert board.pick("best").trial_id == "00"
    assert board.pick("one-se").trial_id == "03"
    assert [r.trial_id for r in board.rows if r.one_se or r.exported] == ["03"]
    with pytest.raises(TunerError, match="unknown --select 'cheapest'"):
        board.pick("cheapest")


def test_select_best_exports_the_best_and_older_projects_default_to_it(tmp_path: Path) -> None:
    board = read_ranking(make_scored_project(tmp_path / "best", select="best"))
    assert board.exported.trial_id == "00"
    assert board.one_se.trial_id == "03"  # still said, not exported

    old = read_ranking(make_project(tmp_path / "old"))  # run.json without "select"
    assert old.exported.trial_id == "02"


def test_cost_counts_fine_tuned_blocks_then_head_units_then_epochs_then_time(scored: Path) -> None:
    rows = {r.trial_id: r for r in read_ranking(scored).rows}

    # 02 unfroze a block, but its checkpoint is from phase 1: no block was fine-tuned.
    assert rows["02"].best_phase == 1 and cost(rows["02"])[:2] == (0.0, 128.0)
    assert rows["01"].best_phase == 2 and cost(rows["01"])[:2] == (2.0, 0.0)
    assert sorted(rows, key=lambda trial_id: cost(rows[trial_id])) == [
        "03",  # nothing fine-tuned, linear head
        "04",
        "02",  # nothing fine-tuned, a dense head
        "01",  # two blocks fine-tuned, linear head
        "00",
    ]
    # Same blocks and head: fewer epochs, then less time, is cheaper.
    short = dataclasses.replace(rows["03"], best_epoch=2)
    quick = dataclasses.replace(rows["03"], seconds_head=1.0)
    assert cost(short) < cost(rows["03"]) and cost(quick) < cost(rows["03"])


def test_without_intervals_only_the_best_is_tied(tmp_path: Path) -> None:
    board = read_ranking(make_project(tmp_path / "old"))

    assert [(r.trial_id, r.tied) for r in board.rows] == [
        ("02", True),
        ("00", None),
        ("01", None),
        ("04", None),  # running: not ranked
        ("03", None),
    ]
    assert board.one_se.trial_id == "02"


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


def test_an_unreadable_test_json_is_left_out(scored: Path) -> None:
    (scored / "test.json").write_text('{"trial_id": "0')
    assert read_ranking(scored).test is None


def test_merged_projects_tie_against_the_best_of_all_and_export_none(
    scored: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    (other / "trials").mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({**RUN, "select": "best"}))
    write_scored_trial(other, "00", accuracy=0.97, interval=(0.94, 0.99))
    (other / "test.json").write_text(json.dumps({**TEST_JSON, "trial_id": "00"}))

    board = merge([read_ranking(scored), read_ranking(other)])

    assert (board.best.project, board.best.trial_id) == ("other", "00")
    # 0.97 lies in 00's and 01's intervals of the first project, not in 02's or 03's.
    tied = [(r.project, r.trial_id) for r in board.tied]
    assert tied == [("other", "00"), ("scored", "00"), ("scored", "01")]
    assert board.exported is None
    assert board.test is None and set(board.tests) == {"other"}
