"""Tests for tuner.cluster.client: a worker backs off while the chief has no trial ready."""

from __future__ import annotations

import time

import pytest

from tuner.cluster.client import WorkerOracle


class FakeClient:
    """KerasTuner's OracleClient as a worker sees it: IDLE twice, then a trial."""

    def __init__(self) -> None:
        self.answers = ["IDLE", "IDLE", "RUNNING"]
        self.stub = None  # the heartbeat's calls fail quietly

    def create_trial(self, tuner_id):
        from types import SimpleNamespace

        return SimpleNamespace(status=self.answers.pop(0))


def test_an_idle_worker_backs_off_instead_of_asking_at_once():
    worker = WorkerOracle(FakeClient(), "w1", heartbeat=60, backoff=(0.05, 0.08))
    started = time.monotonic()
    trial = worker.create_trial("w1")
    worker.close()
    assert trial.status == "RUNNING"
    assert worker.idle_answers == 2 and worker.idle_seconds == pytest.approx(0.13)
    assert time.monotonic() - started >= 0.13
