"""Tests for tuner.cluster.chief: the chief checks every request and watches its workers, and whole
clusters of processes on 127.0.0.1 run a search with the tiny backbone."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from scripts import local_cluster
from tests.helpers import choice, python_env, search_flags, write_space
from tests.images import make_folder
from tuner.cluster import chief as cluster

# --------------------------------------------------------------------------------------------
# The chief's service, with a raw client


@pytest.fixture(params=[1.0])
def chief(tmp_path, request):
    """A random-search oracle over one Choice, served on a free port in a thread; workers silent
    for `request.param` seconds lose their trial."""
    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_accuracy", "max"), max_trials=2, seed=1
    )
    oracle._set_project_dir(str(tmp_path), "trials")
    space = kt.HyperParameters()
    space.Choice("head/units", [16, 32, 64])
    oracle.update_space(space)
    port = local_cluster.free_port()
    said: list[str] = []
    result: dict = {}

    def run():
        result["stats"] = cluster.serve(
            oracle, "127.0.0.1", port, worker_timeout=request.param, say=said.append, poll=0.1
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield oracle, f"127.0.0.1:{port}", said, result, thread


def call(address: str, method: str, request, metadata=()):
    import grpc
    from keras_tuner.src import protos

    service = protos.get_service()
    response = {
        "GetSpace": service.GetSpaceResponse,
        "CreateTrial": service.CreateTrialResponse,
        "UpdateTrial": service.UpdateTrialResponse,
        "EndTrial": service.EndTrialResponse,
        "GetTrial": service.GetTrialResponse,
        "GetBestTrials": service.GetBestTrialsResponse,
    }.get(method)
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            f"/keras_tuner.Oracle/{method}",
            request_serializer=lambda r: r if isinstance(r, bytes) else r.SerializeToString(),
            response_deserializer=response.FromString if response else None,
        )
        return stub(request, timeout=10, wait_for_ready=True, metadata=metadata)


def status_of(error) -> str:
    return error.code().name


@pytest.mark.parametrize("chief", [30.0], indirect=True)
def test_bad_requests_get_errors_and_leave_the_oracle_working(chief):
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    oracle, address, _, result, thread = chief
    service = protos.get_service()
    bad = [
        ("EndTrial", b"\xff\xfe not a protobuf", "INTERNAL"),
        ("UpdateTrial", service.UpdateTrialRequest(trial_id="99", metrics={"x": 1.0}), "NOT_FOUND"),
        ("CreateTrial", service.CreateTrialRequest(tuner_id=""), "INVALID_ARGUMENT"),
        ("CreateTrial", service.CreateTrialRequest(tuner_id="chief2"), "INVALID_ARGUMENT"),
        ("GetTrial", service.GetTrialRequest(trial_id="nope"), "NOT_FOUND"),
        ("Shutdown", b"", "UNIMPLEMENTED"),
    ]
    for method, request, code in bad:
        with pytest.raises(grpc.RpcError) as info:
            call(address, method, request)
        assert status_of(info.value) == code, (method, info.value)

    # The oracle still works: a worker takes a trial, reports and ends it.
    trial = trial_module.Trial.from_proto(
        call(address, "CreateTrial", service.CreateTrialRequest(tuner_id="w1")).trial
    )
    assert trial.status == "RUNNING"
    # Ending it as a status a trial cannot end with, or with a foreign hyperparameter, is refused
    # and changes nothing.
    wrong = trial_module.Trial(trial.hyperparameters.copy(), trial_id=trial.trial_id)
    wrong.status = "STOPPED"
    with pytest.raises(grpc.RpcError) as info:
        call(address, "EndTrial", service.EndTrialRequest(trial=wrong.to_proto()))
    assert status_of(info.value) == "INVALID_ARGUMENT"
    assert oracle.trials[trial.trial_id].status == "RUNNING"

    metrics = {"val_accuracy": 0.75}
    call(
        address,
        "UpdateTrial",
        service.UpdateTrialRequest(trial_id=trial.trial_id, metrics=metrics, step=0),
    )
    trial.status = "COMPLETED"
    call(address, "EndTrial", service.EndTrialRequest(trial=trial.to_proto()))
    with pytest.raises(grpc.RpcError) as info:  # ending it twice
        call(address, "EndTrial", service.EndTrialRequest(trial=trial.to_proto()))
    assert status_of(info.value) == "FAILED_PRECONDITION"
    best = call(address, "GetBestTrials", service.GetBestTrialsRequest(num_trials=5)).trials
    assert [t.trial_id for t in best] == [trial.trial_id]
    assert json.loads((Path(oracle._project_dir) / "oracle.json").read_text())
    assert result.get("stats") is None and thread.is_alive()


def test_a_silent_workers_trial_goes_back_to_the_queue_then_fails(chief, tmp_path):
    from keras_tuner.src import protos
    from keras_tuner.src.engine import trial as trial_module

    oracle, address, said, result, thread = chief
    service = protos.get_service()

    def create(name):
        response = call(address, "CreateTrial", service.CreateTrialRequest(tuner_id=name))
        return trial_module.Trial.from_proto(response.trial)

    first = create("w1")
    time.sleep(2.0)  # w1 never speaks again: its trial is taken back
    assert any("worker w1 stopped responding" in line for line in said), said
    again = create("w2")
    assert again.trial_id == first.trial_id  # the same trial, from the queue
    time.sleep(2.0)  # w2 goes silent too: now the trial fails
    assert oracle.trials[first.trial_id].status == "FAILED"
    assert "stopped responding" in oracle.trials[first.trial_id].message
    from tuner.project.trials import read_ranking

    failed = next(r for r in read_ranking(tmp_path).rows if r.trial_id == first.trial_id)
    assert failed.status == "FAILED" and "worker w2 stopped responding" in failed.reason
    # A heartbeat keeps a worker's trial: w3 beats while its trial "trains".
    third = create("w3")
    for _ in range(6):
        call(address, "GetSpace", service.GetSpaceRequest(), metadata=(("tuner-id", "w3"),))
        time.sleep(0.4)
    assert oracle.trials[third.trial_id].status == "RUNNING"
    third.status = "COMPLETED"
    call(
        address,
        "UpdateTrial",
        service.UpdateTrialRequest(trial_id=third.trial_id, metrics={"val_accuracy": 0.5}),
    )
    call(address, "EndTrial", service.EndTrialRequest(trial=third.to_proto()))
    assert create("w3").status == "STOPPED"  # max_trials reached
    thread.join(timeout=10)
    stats = result["stats"]
    assert stats.requeued == [first.trial_id] and stats.failed == [first.trial_id]


# --------------------------------------------------------------------------------------------
# Whole clusters


def cluster_args(data: Path, project: Path, *extra: str) -> list[str]:
    return [*search_flags(data, project), *extra]


def trial_states(project: Path) -> dict[str, dict]:
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted((project / "trials").glob("trial_*/trial.json"))
    }


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """A whole search by a chief and two workers, each a real `python -m tuner.search` process,
    run once for the module: its exit status, the processes' logs, its folders and lock log."""
    root = tmp_path_factory.mktemp("cluster")
    data = make_folder(root / "images")
    project = root / "project"
    locks = root / "locks.jsonl"
    run = local_cluster.Cluster(
        cluster_args(data, project), workers=2, env=python_env(TUNER_LOCK_LOG=str(locks))
    )
    run.start()
    code = run.wait(timeout=900)
    logs = {name: run.log(name) for name in ("chief", "w1", "w2")}
    return code, logs, data, project, locks


@pytest.mark.slow
def test_a_chief_and_two_workers_run_every_trial_once_and_the_chief_exports(two_workers):
    code, logs, _, project, locks = two_workers
    assert code == 0, logs
    # The images were decoded, and every cache entry built, by one process each.
    records = [json.loads(line) for line in locks.read_text().splitlines()]
    built = [r["file"] for r in records if r["built"]]
    assert built and len(built) == len(set(built)), records
    assert any(r["entry"].startswith("pixels-") for r in records)

    states = trial_states(project)
    assert len(states) == 4 and all(s["status"] == "COMPLETED" for s in states.values()), states
    # Each trial ran once: one summary each, and the workers' own lines account for all four.
    ran = [line for name in ("w1", "w2") for line in logs[name].splitlines() if " done in " in line]
    assert len(ran) == 4, logs
    assert logs["chief"].splitlines()[0].startswith("chief: serving the oracle on 127.0.0.1:")
    assert "Trials by val_accuracy" in logs["chief"]
    assert (project / "export" / "model.keras").is_file()
    from tuner.ui.board import load

    board = load(project)
    assert [row.rank for row in board.rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_does_not_stop_the_search(tmp_path):
    data = make_folder(tmp_path / "images")
    project = tmp_path / "project"
    # Hidden layers only: a linear head's phase 1 is one closed-form fit, not 40 epochs.
    space = write_space(tmp_path / "space.toml", "varied", {"head.units": choice(16, 32)})
    run = local_cluster.Cluster(
        # Full-model epochs (--no-cache), enough of them that w1 is killed in the middle of a
        # trial (it is killed as its first epoch starts); every other trial runs them all.
        cluster_args(
            data,
            project,
            "--worker-timeout",
            "8",
            "--epochs-head",
            "12",
            "--no-cache",
            "--space",
            str(space),
            # Two trials: w1's, which w2 takes over after the kill, and w2's own.
            "--max-trials",
            "2",
        ),
        workers=2,
        env=python_env(),
    )
    run.start()
    deadline = time.monotonic() + 300
    while "phase 1 (head) epoch 1/" not in run.log("w1"):
        assert time.monotonic() < deadline, run.log("w1")
        assert run.workers["w1"].poll() is None, run.log("w1")
        time.sleep(0.2)
    run.workers["w1"].kill()
    run.workers["w1"].wait()
    del run.workers["w1"]
    code = run.wait(timeout=900)
    logs = {name: run.log(name) for name in ("chief", "w1", "w2")}
    assert code == 0, logs
    assert "worker w1 stopped responding" in logs["chief"], logs["chief"]
    states = trial_states(project)
    assert len(states) == 2 and all(s["status"] == "COMPLETED" for s in states.values()), states
    assert (project / "export" / "model.keras").is_file()


@pytest.mark.slow
def test_a_worker_with_other_settings_is_refused(two_workers, tmp_path, capsys):
    # tuner.cluster.sharing's check, here beside the cluster whose folder it reads: a worker
    # compares its settings with the run.json the chief wrote in the shared folder before it asks
    # the chief for anything, so the cluster's own folder (copied) shows it.
    import shutil

    from tuner import search

    _, _, data, finished, _ = two_workers
    project = tmp_path / "project"
    shutil.copytree(finished, project)
    other = cluster_args(data, project, "--epochs-head", "3")
    address = f"127.0.0.1:{local_cluster.free_port()}"
    code = search.main([*other, "--worker", address, "--worker-id", "odd"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "settings differ from the chief's: --epochs-head 3" in err
