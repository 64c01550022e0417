"""Tests for tuner.engine.runner: one search from start to end, as the command line and
`tuner.search.run` run it."""

from __future__ import annotations

from tests.helpers import TINY_SEARCH
from tests.images import make_folder


def test_mirrored_strategy_on_one_cpu_device(tmp_path):
    import io

    from rich.console import Console

    from tuner import search

    out = io.StringIO()
    result = search.run(
        make_folder(tmp_path / "images"),
        **{**TINY_SEARCH, "max_trials": 1, "epochs_head": 1},
        strategy="mirrored",
        project_dir=tmp_path / "project",
        console=Console(file=out, width=100),
    )
    assert "strategy: MirroredStrategy over 1 device(s)" in out.getvalue()
    assert result.best is not None and result.export.is_file()


def test_the_end_of_trial_hook_runs_once_per_trial_after_the_trim(
    search_config, monkeypatch, tmp_path
):
    """`execute(on_trial_end=...)` is called with each trial's id once the trial has ended: after
    KerasTuner saved it and after `heap.trim()` gave its memory back."""
    import io
    import json

    from rich.console import Console

    from tuner.engine.runner import execute
    from tuner.engine.spaces import load_space
    from tuner.runtime import heap

    events: list[tuple[str, str | None]] = []
    real_trim = heap.trim

    def trim() -> None:
        real_trim()
        events.append(("trim", None))

    config = search_config(max_trials=3)

    def on_trial_end(trial_id: str) -> None:
        saved = json.loads((config.trials_dir / f"trial_{trial_id}" / "trial.json").read_text())
        assert saved["status"] == "COMPLETED"  # KerasTuner's own end-of-trial work is done
        events.append(("end", trial_id))

    monkeypatch.setattr(heap, "trim", trim)
    result = execute(
        config,
        load_space(family="tiny"),
        console=Console(file=io.StringIO()),
        on_trial_end=on_trial_end,
    )
    ended = [trial_id for kind, trial_id in events if kind == "end"]
    assert sorted(ended) == sorted(row.trial_id for row in result.leaderboard.rows)
    assert len(ended) == len(set(ended)) == 3
    for index, (kind, _) in enumerate(events):
        if kind == "end":
            assert events[index - 1][0] == "trim", events
