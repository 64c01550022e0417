"""The chief of a distributed search: KerasTuner's oracle served over gRPC, every request checked
and silent workers watched.

The chief (`--chief HOST:PORT`) holds the oracle and serves it; workers (`tuner.cluster.client`)
ask it for trials, train them and report back. All of them share `--project-dir` on a shared
filesystem (`tuner.cluster.sharing`): the trials, the cache and the export live there.

KerasTuner 1.4.8's own server leaves two things to the caller (docs/design.md §7):

- its server loop (`oracle_chief.start_server`) never notices a worker that died mid-trial: the
  trial stays "ongoing" and the chief waits for it forever. `serve` runs the same servicer with
  a watch: a worker silent for `worker_timeout` seconds loses its trial, which goes back to the
  queue once (and fails, with that reason, the second time);
- its servicer passes requests straight to the oracle, whose `synchronized` lock is not released
  when a method raises: one request with an unknown trial id would leave the lock held and the
  chief deadlocked. `Servicer` checks every request before it touches the oracle, answers a bad
  one with a gRPC error, and leaves the oracle as it was.

The oracle service has no authentication: whoever reaches the port can take trials and report
scores. The chief binds only the address it is given; keep it on a trusted network or a tunnel.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from keras_tuner.src import protos
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import trial as trial_module

from tuner.cluster.address import CHIEF_ID, TUNER_ID_METADATA
from tuner.errors import ConfigError

_SERVICE = protos.get_service()
_STATUS = trial_module.TrialStatus


@dataclass
class ChiefStats:
    """What the chief saw: for the closing line and `scripts/bench_distributed.py`."""

    seconds: float = 0.0
    idle_seconds: float = 0.0  # time with no trial running on any worker, after the first one
    workers: set[str] = field(default_factory=set)
    requeued: list[str] = field(default_factory=list)  # trials taken from a silent worker
    failed: list[str] = field(default_factory=list)  # trials failed when their worker went silent
    refused: int = 0  # requests answered with an error


def _repair_oracle_lock(oracle: Any) -> None:
    # KerasTuner's `synchronized` acquires a per-oracle lock and releases it only when the method
    # returns: an exception leaves it held (docs/design.md §7). Put it back as it was.
    if oracle_module.THREADS[oracle] is not None:
        oracle_module.THREADS[oracle] = None
        try:
            oracle_module.LOCKS[oracle].release()
        except RuntimeError:
            pass


class _Refused(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Servicer(protos.get_service_grpc().OracleServicer):
    """KerasTuner's oracle servicer with every request checked before it reaches the oracle, and
    a watch on silent workers (see the module docstring).

    Args:
        oracle: the search's oracle.
        stats: where the chief counts what it saw.
        clock: seconds, for the watch. Defaults to `time.monotonic`.
    """

    def __init__(
        self, oracle: Any, stats: ChiefStats, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.oracle = oracle
        self.stats = stats
        self.clock = clock
        self.lock = threading.RLock()
        self.last_seen: dict[str, float] = {}
        self.stop_triggered = False

    # --------------------------------------------------------------- bookkeeping
    def seen(self, tuner_id: str | None) -> None:
        if tuner_id:
            self.last_seen[tuner_id] = self.clock()
            self.stats.workers.add(tuner_id)

    def seen_in(self, context: Any) -> None:
        for key, value in context.invocation_metadata() or ():
            if key == TUNER_ID_METADATA:
                self.seen(value)

    def owner(self, trial_id: str) -> str | None:
        for tuner_id, trial in self.oracle.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    @contextmanager
    def guarded(self, context: Any) -> Iterator[None]:
        with self.lock:
            try:
                yield
            except _Refused as refusal:
                self.stats.refused += 1
                context.abort(refusal.code, refusal.message)
            except Exception as error:  # noqa: BLE001 - the chief must keep serving
                if isinstance(error, grpc.RpcError) or type(error).__name__ == "_Abort":
                    raise
                _repair_oracle_lock(self.oracle)
                self.stats.refused += 1
                context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    def others_may_need_help(self, tuner_id: str) -> bool:
        full = bool(self.oracle.max_trials) and len(self.oracle.trials) >= self.oracle.max_trials
        others = [t for t in self.oracle.ongoing_trials if t != tuner_id]
        return full and not self.oracle._retry_queue and bool(others)

    def known_ongoing(self, trial_id: str) -> str:
        if trial_id not in self.oracle.trials:
            raise _Refused(grpc.StatusCode.NOT_FOUND, f"no trial {trial_id!r}")
        owner = self.owner(trial_id)
        if owner is None:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"trial {trial_id!r} is not running (it ended, or went to another worker)",
            )
        return owner

    def same_space(self, hps: Any) -> None:
        names = {hp.name for hp in hps.space}
        known = {hp.name for hp in self.oracle.get_space().space}
        if not names <= known:
            raise _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown hyperparameters: {', '.join(sorted(names - known))}",
            )

    # --------------------------------------------------------------- the service
    def GetSpace(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            self.seen_in(context)
            return _SERVICE.GetSpaceResponse(hyperparameters=self.oracle.get_space().to_proto())

    def UpdateSpace(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            hps = hp_module.HyperParameters.from_proto(request.hyperparameters)
            self.same_space(hps)
            self.oracle.update_space(hps)
            return _SERVICE.UpdateSpaceResponse()

    def CreateTrial(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            tuner_id = request.tuner_id
            if not tuner_id or CHIEF_ID in tuner_id.lower():
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "a worker needs a tuner id")
            self.seen(tuner_id)
            if self.others_may_need_help(tuner_id):
                # KerasTuner would answer STOPPED and let this worker exit while a trial of
                # another worker may still come back to the queue: wait instead.
                idle = trial_module.Trial(self.oracle.get_space(), status=_STATUS.IDLE)
                return _SERVICE.CreateTrialResponse(trial=idle.to_proto())
            trial = self.oracle.create_trial(tuner_id)
            if trial.status == _STATUS.STOPPED:
                self.stop_triggered = True
            return _SERVICE.CreateTrialResponse(trial=trial.to_proto())

    def UpdateTrial(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            self.seen(self.known_ongoing(request.trial_id))
            metrics = dict(request.metrics)
            if not metrics or not all(isinstance(v, float) for v in metrics.values()):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "metrics must be numbers")
            if not math.isfinite(request.step):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "step must be finite")
            trial = self.oracle.update_trial(request.trial_id, metrics, step=request.step)
            return _SERVICE.UpdateTrialResponse(trial=trial.to_proto())

    def EndTrial(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            trial = trial_module.Trial.from_proto(request.trial)
            self.seen(self.known_ongoing(trial.trial_id))
            if trial.status not in (_STATUS.COMPLETED, _STATUS.FAILED, _STATUS.INVALID):
                raise _Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a trial ends COMPLETED, FAILED or INVALID, not {trial.status!r}",
                )
            self.same_space(trial.hyperparameters)
            self.oracle.end_trial(trial)
            return _SERVICE.EndTrialResponse()

    def GetTrial(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            self.seen_in(context)
            if request.trial_id not in self.oracle.trials:
                raise _Refused(grpc.StatusCode.NOT_FOUND, f"no trial {request.trial_id!r}")
            trial = self.oracle.get_trial(request.trial_id)
            return _SERVICE.GetTrialResponse(trial=trial.to_proto())

    def GetBestTrials(self, request: Any, context: Any) -> Any:
        with self.guarded(context):
            count = max(0, min(int(request.num_trials), len(self.oracle.trials)))
            trials = self.oracle.get_best_trials(count) if count else []
            return _SERVICE.GetBestTrialsResponse(trials=[t.to_proto() for t in trials])

    # --------------------------------------------------------------- the watch
    def reap(self, timeout: float) -> list[str]:
        """Takes the trials of workers silent for `timeout` seconds; returns what it did."""
        events = []
        with self.lock:
            now = self.clock()
            for tuner_id in list(self.oracle.tuner_ids):
                silent = now - self.last_seen.get(tuner_id, now)
                if silent < timeout:
                    continue
                trial = self.oracle.ongoing_trials.pop(tuner_id, None)
                self.oracle.tuner_ids.discard(tuner_id)
                self.last_seen.pop(tuner_id, None)
                if trial is None:
                    events.append(f"worker {tuner_id} went silent while idle")
                    continue
                reason = (
                    f"worker {tuner_id} stopped responding (no contact for {silent:.0f}s) "
                    f"during trial {trial.trial_id}"
                )
                if trial.trial_id not in self.stats.requeued:
                    self.stats.requeued.append(trial.trial_id)
                    self.oracle._retry_queue.append(trial.trial_id)
                    self.oracle.save()
                    events.append(f"{reason}; the trial goes back to the queue")
                else:
                    trial.status = _STATUS.FAILED
                    trial.message = reason
                    self.oracle.ongoing_trials[tuner_id] = trial  # end_trial pops it
                    try:
                        self.oracle.end_trial(trial)
                    except Exception as error:  # noqa: BLE001 - the chief keeps serving
                        _repair_oracle_lock(self.oracle)
                        self.oracle.ongoing_trials.pop(tuner_id, None)
                        events.append(f"could not end trial {trial.trial_id}: {error}")
                    self.stats.failed.append(trial.trial_id)
                    events.append(f"{reason} again; the trial is marked failed")
        return events

    def finished(self) -> bool:
        with self.lock:
            return (
                self.stop_triggered
                and not self.oracle.ongoing_trials
                and not self.oracle.tuner_ids
                and not self.oracle._retry_queue
            )

    def running(self) -> bool:
        with self.lock:
            return bool(self.oracle.ongoing_trials)


class _Refused(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def serve(
    oracle: Any,
    host: str,
    port: int,
    *,
    worker_timeout: float,
    say: Callable[[str], None],
    poll: float = 0.5,
) -> ChiefStats:
    """Serves `oracle` on `host:port` until every trial has ended and every worker left.

    Args:
        oracle: the search's oracle.
        host, port: the address to bind, and only that one.
        worker_timeout: seconds of silence after which a worker's trial is taken from it.
        say: prints one line (the chief's events).
        poll: seconds between two looks at the workers.

    Raises:
        ConfigError: the address cannot be bound.
    """
    stats = ChiefStats()
    servicer = Servicer(oracle, stats)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        bound = 0
        detail = str(error)
    else:
        detail = ""
    if not bound:
        raise ConfigError(
            f"The chief cannot listen on {host}:{port}{f' ({detail})' if detail else ''}: the "
            "port may be in use; pick another --chief HOST:PORT."
        )
    started = last = time.monotonic()
    server.start()
    try:
        while not servicer.finished():
            time.sleep(poll)
            now = time.monotonic()
            if stats.workers and not servicer.running():
                stats.idle_seconds += now - last
            last = now
            for event in servicer.reap(worker_timeout):
                say(event)
    finally:
        server.stop(grace=2).wait()
    stats.seconds = time.monotonic() - started
    return stats
