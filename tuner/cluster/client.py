"""A worker of a distributed search: KerasTuner's oracle client, with back-off and a heartbeat.

A worker (`--worker HOST:PORT --worker-id NAME`) asks the chief (`tuner.cluster.chief`) for trials,
trains them and reports back. KerasTuner 1.4.8's worker loop asks again at once when the oracle
answers IDLE (Hyperband between brackets), and says nothing while a trial trains, so the chief
cannot tell a long trial from a dead worker (docs/design.md §7): `WorkerOracle` backs off, and
sends a heartbeat the chief's watch reads.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from keras_tuner.src import protos

from tuner.cluster.address import TUNER_ID_METADATA


class WorkerOracle:
    """KerasTuner's `OracleClient` on a worker, with back-off when the chief has no trial ready
    (IDLE) and a heartbeat the chief's watch reads while a trial trains.

    Args:
        client: KerasTuner's `OracleClient`.
        tuner_id: this worker's name.
        heartbeat: seconds between two heartbeats.
        backoff: (first, longest) wait in seconds after an IDLE answer; it doubles each time.
    """

    def __init__(
        self,
        client: Any,
        tuner_id: str,
        *,
        heartbeat: float,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self._client = client
        self.tuner_id = tuner_id
        self.backoff = backoff
        self.idle_seconds = 0.0
        self.idle_answers = 0
        self._stop = threading.Event()
        self._beat = threading.Thread(
            target=self._heartbeat, args=(heartbeat,), name="tuner-heartbeat", daemon=True
        )
        self._beat.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_trial(self, tuner_id: str) -> Any:
        """The next trial; waits, backing off, while the chief answers IDLE."""
        delay = self.backoff[0]
        while True:
            trial = self._client.create_trial(tuner_id)
            if trial.status != "IDLE":
                return trial
            self.idle_answers += 1
            time.sleep(delay)
            self.idle_seconds += delay
            delay = min(delay * 2, self.backoff[1])

    def _heartbeat(self, every: float) -> None:
        request = protos.get_service().GetSpaceRequest()
        while not self._stop.wait(every):
            try:
                self._client.stub.GetSpace(
                    request, metadata=((TUNER_ID_METADATA, self.tuner_id),), timeout=every
                )
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                pass

    def close(self) -> None:
        """Stops the heartbeat."""
        self._stop.set()
