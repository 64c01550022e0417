"""Tests for tuner.cluster.sharing: the shared project folder's locks and the checks each process
of a distributed search makes in it before the search."""

from __future__ import annotations

import pytest

from scripts import local_cluster
from tests.helpers import search_flags
from tests.images import make_folder
from tuner.cluster import sharing
from tuner.errors import ConfigError


def test_a_filesystem_without_locks_is_refused_at_start(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ConfigError, match="cannot lock files .*No locks available"):
        sharing.check_locks(tmp_path)


def test_the_chief_refuses_overwrite_under_running_workers(tmp_path, capsys):
    from tuner import search

    data = make_folder(tmp_path / "images")
    project = tmp_path / "project"
    with sharing.worker_presence(project, "w7"):
        code = search.main(
            [
                *search_flags(data, project),
                "--overwrite",
                "--chief",
                f"127.0.0.1:{local_cluster.free_port()}",
            ]
        )
    err = capsys.readouterr().err
    assert code == 2 and "Workers are running on" in err and "(w7)" in err, err


def test_worker_presence_is_exclusive_and_seen_by_the_chief(tmp_path):
    with sharing.worker_presence(tmp_path, "w1"):
        assert sharing.live_workers(tmp_path) == ["w1"]
        with pytest.raises(ConfigError, match="already running"):
            with sharing.worker_presence(tmp_path, "w1"):
                pass
    assert sharing.live_workers(tmp_path) == []
