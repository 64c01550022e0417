"""Tests for tuner.engine.runner: one search from start to end, as the command line and
`tuner.search.run` run it."""

from __future__ import annotations

from tests.images import TINY_SEARCH, make_folder


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
