"""A search spread over processes and machines, on KerasTuner's own chief and worker mode.

The chief (`--chief HOST:PORT`) holds the oracle and serves it over gRPC; workers
(`--worker HOST:PORT --worker-id NAME`) ask it for trials, train them and report back. All of them
share `--project-dir` on a shared filesystem: the trials, the cache and the export live there.
KerasTuner reads the roles from its `KERASTUNER_*` environment variables (`set_environment`).

KerasTuner 1.4.8's own server and client leave several things to the caller (docs/design.md §7):

- its server loop (`oracle_chief.start_server`) never notices a worker that died mid-trial: the
  trial stays "ongoing" and the chief waits for it forever. `serve` runs the same servicer with
  a watch: a worker silent for `worker_timeout` seconds loses its trial, which goes back to the
  queue once (and fails, with that reason, the second time);
- its servicer passes requests straight to the oracle, whose `synchronized` lock is not released
  when a method raises: one request with an unknown trial id would leave the lock held and the
  chief deadlocked. `Servicer` checks every request before it touches the oracle, answers a bad
  one with a gRPC error, and leaves the oracle as it was;
- its worker loop asks again at once when the oracle answers IDLE (Hyperband between brackets):
  `WorkerOracle` backs off, and sends a heartbeat while a trial trains.

The oracle service has no authentication: whoever reaches the port can take trials and report
scores. The chief binds only the address it is given; keep it on a trusted network or a tunnel.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import ConfigError

ENV_IP = "KERASTUNER_ORACLE_IP"
ENV_PORT = "KERASTUNER_ORACLE_PORT"
ENV_ID = "KERASTUNER_TUNER_ID"
CHIEF_ID = "chief"  # KerasTuner takes any tuner id containing "chief" for the chief
TUNER_ID_METADATA = "tuner-id"  # gRPC metadata naming the worker behind a heartbeat


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{flag} must be HOST:PORT, for example 127.0.0.1:8470. Received: {text!r}"
        )
    return host, int(port)


def check_worker_id(name: str) -> str:
    """A worker's name, checked: KerasTuner would take any name holding "chief" for the chief."""
    name = name.strip()
    if not name or CHIEF_ID in name.lower() or any(c.isspace() for c in name):
        raise ConfigError(
            "--worker-id must be a name without spaces that does not contain 'chief' (KerasTuner "
            f"takes any such id for the chief). Received: {name!r}"
        )
    return name


def set_environment(role: str, host: str, port: int, worker_id: str | None = None) -> None:
    """Sets KerasTuner's `KERASTUNER_*` variables for `role` ("chief" or "worker")."""
    os.environ[ENV_IP] = host
    os.environ[ENV_PORT] = str(port)
    os.environ[ENV_ID] = CHIEF_ID if role == "chief" else str(worker_id)


def clear_environment() -> None:
    """Removes KerasTuner's distributed variables (a single-process search after a cluster run in
    the same process)."""
    for name in (ENV_IP, ENV_PORT, ENV_ID):
        os.environ.pop(name, None)


def check_port(host: str, port: int) -> None:
    """Refuses, as a one-line error, an address the chief cannot listen on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ConfigError(f"--chief {host}:{port}: cannot resolve {host!r} ({error}).") from error
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == 98 or "in use" in str(error).lower():
                raise ConfigError(
                    f"Port {port} on {host} is already in use (another chief, or another "
                    "program); pick another --chief HOST:PORT, or stop what holds it."
                ) from error
            raise ConfigError(
                f"--chief {host}:{port}: cannot listen there ({error.strerror or error}); pass "
                "an address of this machine."
            ) from error


# --------------------------------------------------------------------------------------------
# The chief


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
    from keras_tuner.src.engine import oracle as oracle_module

    if oracle_module.THREADS[oracle] is not None:
        oracle_module.THREADS[oracle] = None
        try:
            oracle_module.LOCKS[oracle].release()
        except RuntimeError:
            pass


def make_servicer(oracle: Any, stats: ChiefStats, clock: Callable[[], float] = time.monotonic):
    """KerasTuner's oracle servicer with every request checked first (see the module docstring)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import hyperparameters as hp_module
    from keras_tuner.src.engine import trial as trial_module

    service = protos.get_service()
    status = trial_module.TrialStatus

    class Servicer(protos.get_service_grpc().OracleServicer):
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.last_seen: dict[str, float] = {}
            self.stop_triggered = False

        # --------------------------------------------------------------- bookkeeping
        def seen(self, tuner_id: str | None) -> None:
            if tuner_id:
                self.last_seen[tuner_id] = clock()
                stats.workers.add(tuner_id)

        def seen_in(self, context: Any) -> None:
            for key, value in context.invocation_metadata() or ():
                if key == TUNER_ID_METADATA:
                    self.seen(value)

        def owner(self, trial_id: str) -> str | None:
            for tuner_id, trial in oracle.ongoing_trials.items():
                if trial.trial_id == trial_id:
                    return tuner_id
            return None

        @contextmanager
        def guarded(self, context: Any) -> Iterator[None]:
            with self.lock:
                try:
                    yield
                except _Refused as refusal:
                    stats.refused += 1
                    context.abort(refusal.code, refusal.message)
                except Exception as error:  # noqa: BLE001 - the chief must keep serving
                    if isinstance(error, grpc.RpcError) or type(error).__name__ == "_Abort":
                        raise
                    _repair_oracle_lock(oracle)
                    stats.refused += 1
                    context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

        def others_may_need_help(self, tuner_id: str) -> bool:
            full = bool(oracle.max_trials) and len(oracle.trials) >= oracle.max_trials
            others = [t for t in oracle.ongoing_trials if t != tuner_id]
            return full and not oracle._retry_queue and bool(others)

        def known_ongoing(self, trial_id: str) -> str:
            if trial_id not in oracle.trials:
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
            known = {hp.name for hp in oracle.get_space().space}
            if not names <= known:
                raise _Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unknown hyperparameters: {', '.join(sorted(names - known))}",
                )

        # --------------------------------------------------------------- the service
        def GetSpace(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                self.seen_in(context)
                return service.GetSpaceResponse(hyperparameters=oracle.get_space().to_proto())

        def UpdateSpace(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                hps = hp_module.HyperParameters.from_proto(request.hyperparameters)
                self.same_space(hps)
                oracle.update_space(hps)
                return service.UpdateSpaceResponse()

        def CreateTrial(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                tuner_id = request.tuner_id
                if not tuner_id or CHIEF_ID in tuner_id.lower():
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "a worker needs a tuner id")
                self.seen(tuner_id)
                if self.others_may_need_help(tuner_id):
                    # KerasTuner would answer STOPPED and let this worker exit while a trial of
                    # another worker may still come back to the queue: wait instead.
                    idle = trial_module.Trial(oracle.get_space(), status=status.IDLE)
                    return service.CreateTrialResponse(trial=idle.to_proto())
                trial = oracle.create_trial(tuner_id)
                if trial.status == status.STOPPED:
                    self.stop_triggered = True
                return service.CreateTrialResponse(trial=trial.to_proto())

        def UpdateTrial(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                self.seen(self.known_ongoing(request.trial_id))
                metrics = dict(request.metrics)
                if not metrics or not all(isinstance(v, float) for v in metrics.values()):
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "metrics must be numbers")
                if not math.isfinite(request.step):
                    raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "step must be finite")
                trial = oracle.update_trial(request.trial_id, metrics, step=request.step)
                return service.UpdateTrialResponse(trial=trial.to_proto())

        def EndTrial(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                trial = trial_module.Trial.from_proto(request.trial)
                self.seen(self.known_ongoing(trial.trial_id))
                if trial.status not in (status.COMPLETED, status.FAILED, status.INVALID):
                    raise _Refused(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"a trial ends COMPLETED, FAILED or INVALID, not {trial.status!r}",
                    )
                self.same_space(trial.hyperparameters)
                oracle.end_trial(trial)
                return service.EndTrialResponse()

        def GetTrial(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                self.seen_in(context)
                if request.trial_id not in oracle.trials:
                    raise _Refused(grpc.StatusCode.NOT_FOUND, f"no trial {request.trial_id!r}")
                trial = oracle.get_trial(request.trial_id)
                return service.GetTrialResponse(trial=trial.to_proto())

        def GetBestTrials(self, request: Any, context: Any) -> Any:
            with self.guarded(context):
                count = max(0, min(int(request.num_trials), len(oracle.trials)))
                trials = oracle.get_best_trials(count) if count else []
                return service.GetBestTrialsResponse(trials=[t.to_proto() for t in trials])

        # --------------------------------------------------------------- the watch
        def reap(self, timeout: float) -> list[str]:
            """Takes the trials of workers silent for `timeout` seconds; returns what it did."""
            events = []
            with self.lock:
                now = clock()
                for tuner_id in list(oracle.tuner_ids):
                    silent = now - self.last_seen.get(tuner_id, now)
                    if silent < timeout:
                        continue
                    trial = oracle.ongoing_trials.pop(tuner_id, None)
                    oracle.tuner_ids.discard(tuner_id)
                    self.last_seen.pop(tuner_id, None)
                    if trial is None:
                        events.append(f"worker {tuner_id} went silent while idle")
                        continue
                    reason = (
                        f"worker {tuner_id} stopped responding (no contact for {silent:.0f}s) "
                        f"during trial {trial.trial_id}"
                    )
                    if trial.trial_id not in stats.requeued:
                        stats.requeued.append(trial.trial_id)
                        oracle._retry_queue.append(trial.trial_id)
                        oracle.save()
                        events.append(f"{reason}; the trial goes back to the queue")
                    else:
                        trial.status = status.FAILED
                        trial.message = reason
                        oracle.ongoing_trials[tuner_id] = trial  # end_trial pops it
                        try:
                            oracle.end_trial(trial)
                        except Exception as error:  # noqa: BLE001 - the chief keeps serving
                            _repair_oracle_lock(oracle)
                            oracle.ongoing_trials.pop(tuner_id, None)
                            events.append(f"could not end trial {trial.trial_id}: {error}")
                        stats.failed.append(trial.trial_id)
                        events.append(f"{reason} again; the trial is marked failed")
            return events

        def finished(self) -> bool:
            with self.lock:
                return (
                    self.stop_triggered
                    and not oracle.ongoing_trials
                    and not oracle.tuner_ids
                    and not oracle._retry_queue
                )

        def running(self) -> bool:
            with self.lock:
                return bool(oracle.ongoing_trials)

    return Servicer()


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
    import grpc
    from keras_tuner.src import protos

    stats = ChiefStats()
    servicer = make_servicer(oracle, stats)
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


# --------------------------------------------------------------------------------------------
# A worker


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
        from keras_tuner.src import protos

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
