"""Faults and bad input: a search keeps working through them, or stops with one clear line.

Kills (real subprocesses, SIGKILL) and resumes, failed trials (divergence, out of memory, an error
inside the model), bad command lines, a full disk (simulated: tests run as root, so permissions
cannot make a folder read-only) and data that must never execute. Hostile image files are covered
one by one in tests/data/test_folders.py; here one end-to-end search runs over a folder holding some.
Damaged and pickled cache entries are covered at the cache level in tests/cache/test_store.py
(`test_damaged_entry_is_rebuilt`, `test_killed_writer_is_never_trusted`); here the search is
checked to go through the same verified lookups.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    choice,
    python_env,
    run_python,
    search_flags,
    space_path,
    start_python,
    write_space,
)
from tests.images import make_folder, write_jpeg, write_png
from tuner import search as cli
from tuner.data.pixels import STAGING

# --------------------------------------------------------------------------------------------
# Helpers


def cli_args(
    data: Path,
    project: Path,
    *,
    trials: int = 2,
    head: int = 2,
    finetune: int = 1,
    quiet: bool = True,
) -> list[str]:
    settings = dict(max_trials=trials, epochs_head=head, epochs_finetune=finetune, patience=None)
    args = search_flags(data, project, **settings)
    return args + (["--quiet"] if quiet else [])


def trial_states(project: Path) -> dict[str, dict]:
    return {
        p.parent.name.removeprefix("trial_"): json.loads(p.read_text())
        for p in sorted((project / "trials").glob("trial_*/trial.json"))
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[Path]:
    """Temporary files and staging folders of writers that did not finish."""
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(".export.")]


def one_line_error(err: str) -> str:
    text = err.strip()
    assert len(text.splitlines()) == 1, text
    assert "Traceback" not in text
    assert text.startswith("error: ")
    return text


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# --------------------------------------------------------------------------------------------
# 1. Kill and resume, with a real process and SIGKILL


def child_env() -> dict[str, str]:
    return python_env(PYTHONUNBUFFERED="1", COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="2")


def search_command(data: Path, project: Path, trials: int = 3) -> list[str]:
    """`python -m tuner.search` arguments: `trials` trials, long enough to be killed mid-way."""
    settings = dict(max_trials=trials, epochs_head=3, epochs_finetune=2, patience=None)
    flags = search_flags(data, project, **settings)
    return ["-m", "tuner.search", *flags]


def start_and_kill_when(command: list[str], cwd: Path, log: Path, ready, timeout: float = 120):
    """Start `command`, SIGKILL it as soon as `ready(output_so_far)` holds; returns the output."""
    with open(log, "w") as out:
        proc = start_python(*command, cwd=cwd, env=child_env(), stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    try:
        while True:
            text = log.read_text(errors="replace")
            if ready(text):
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(
                    f"the search ended (rc={proc.returncode}) before the kill point:\n"
                    + text[-3000:]
                )
            if time.monotonic() > deadline:
                pytest.fail("the kill point never came:\n" + text[-3000:])
            time.sleep(0.003)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return log.read_text(errors="replace")


def started(trial_id: str, out: str) -> bool:
    """Whether the search output shows the rule line that opens this trial."""
    return re.search(rf"trial {trial_id} \(\d+/\d+\)", out) is not None


def rerun(command: list[str], cwd: Path) -> str:
    done = run_python(*command, cwd=cwd, env=child_env(), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_sigkill_during_a_trial_then_rerun_keeps_finished_trials(tmp_path):
    data = make_folder(tmp_path / "data")
    project = tmp_path / "project"
    command = search_command(data, project)

    def second_trial_training(text: str) -> bool:
        # The second trial's rule line, then its first epoch line: it is mid-training (a linear
        # head's phase 1 is one closed-form fit, shown as its last epoch; phase 2 follows).
        match = re.search(r"trial \S+ \(2/3\)", text)
        return bool(match) and "phase 1 (head) epoch " in text[match.end() :]

    start_and_kill_when(command, tmp_path, tmp_path / "run1.log", second_trial_training)

    states = trial_states(project)
    finished = {i: s for i, s in states.items() if s["status"] == "COMPLETED"}
    interrupted = {i for i, s in states.items() if s["status"] == "RUNNING"}
    assert finished and interrupted, {i: s["status"] for i, s in states.items()}
    kept = {}
    for trial_id, state in finished.items():
        checkpoint = project / "trials" / f"trial_{trial_id}" / "checkpoint.npz"
        kept[trial_id] = (state["score"], sha(checkpoint), checkpoint.stat().st_mtime_ns)

    out = rerun(command, tmp_path)

    states = trial_states(project)
    assert len(states) == 3, sorted(states)  # the interrupted trial kept its id: no extra trial
    assert all(s["status"] == "COMPLETED" for s in states.values())
    for trial_id, (score, digest, mtime) in kept.items():
        checkpoint = project / "trials" / f"trial_{trial_id}" / "checkpoint.npz"
        assert states[trial_id]["score"] == score
        assert (sha(checkpoint), checkpoint.stat().st_mtime_ns) == (digest, mtime)
        assert not started(trial_id, out), f"finished trial {trial_id} ran again"
    for trial_id in interrupted:
        assert started(trial_id, out), f"interrupted trial {trial_id} did not run again"
        assert (project / "trials" / f"trial_{trial_id}" / "checkpoint.npz").exists()
    assert (project / "export" / "model.keras").exists()
    assert not leftovers(project)


@pytest.mark.slow
def test_sigkill_during_a_cache_build_then_rerun_never_trusts_the_partial_file(
    tmp_path, monkeypatch
):
    from tuner.cache.store import ArrayCache

    data = make_folder(tmp_path / "data")
    project = tmp_path / "project"
    cache_dir = project / "cache"
    staging = tmp_path / "tmp"  # the children's temporary folder, where pixels are staged
    staging.mkdir()
    monkeypatch.setenv("TMPDIR", str(staging))
    command = search_command(data, project, trials=1)  # the kill comes before any trial

    def building(_text: str) -> bool:
        return cache_dir.is_dir() and any(cache_dir.glob(".*.tmp.npy"))

    start_and_kill_when(command, tmp_path, tmp_path / "run1.log", building)
    killed_at = time.time()
    # Pixels are staged in TMPDIR until stored; whether the kill left one depends on when it
    # came, so a file of a process that is surely gone stands in for it.
    gone = run_python("-c", "import os; print(os.getpid())", capture_output=True, check=True)
    (staging / f"{STAGING}{int(gone.stdout)}-32-killed.tmp").write_bytes(b"\0" * 16)

    (partial,) = cache_dir.glob(".*.tmp.npy")
    stem = re.match(r"^\.(.+)\.\d+\.[0-9a-f]+\.tmp\.npy$", partial.name).group(1)
    assert not (cache_dir / f"{stem}.json").exists()
    # Worse than a leftover temp file: the partial data under the entry's own name, as a crash
    # between publishing the data and its sidecar would leave it. It must not be used either.
    (cache_dir / f"{stem}.npy").write_bytes(partial.read_bytes())

    rerun(command, tmp_path)

    states = trial_states(project)
    assert len(states) == 1 and all(s["status"] == "COMPLETED" for s in states.values())
    assert not list(cache_dir.glob(".*.tmp.*"))
    cache = ArrayCache(cache_dir)
    entries = cache.entries()
    assert entries and all(e["complete"] for e in entries)
    for sidecar in cache_dir.glob("*.json"):
        meta = json.loads(sidecar.read_text())
        # lookup() verifies the key, the header, the size and the checksum of the data.
        assert cache.lookup(meta["name"], meta["key"]) is not None, sidecar.name
    rebuilt = json.loads((cache_dir / f"{stem}.json").read_text())
    assert rebuilt["created"] > killed_at
    assert not list(staging.glob(f"{STAGING}*")), "the killed search's staging file is left"


# --------------------------------------------------------------------------------------------
# 2. A failed trial is one failed trial


def two_trial_space(tmp_path: Path, *, units=(8, 16), head_lr=(0.01,)) -> Path:
    """Two candidates exactly, so that two trials of the random oracle try both."""
    entries = {"head.units": choice(*units), "head.learning_rate": choice(*head_lr)}
    return write_space(tmp_path / "space.toml", "fixed", entries)


def inject_failure(kind: str, monkeypatch) -> None:
    """Make the first trial fail in one way, from inside the trial."""
    import tensorflow as tf

    from tuner.engine import transfer as engine
    from tuner.train import context
    from tuner.train import trial as training

    if kind == "oom":
        real_run = engine.TransferTuner._run

        def run(self, *args, **kwargs):
            if self.trial_number == 1:
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
            return real_run(self, *args, **kwargs)

        monkeypatch.setattr(engine.TransferTuner, "_run", run)
    elif kind == "model":
        real_head = training.build_head
        calls = []

        def build_head(n_features, **kwargs):
            calls.append(n_features)
            # The first trial's head expects the wrong feature width: Keras raises as it is built.
            return real_head(n_features + (3 if len(calls) == 1 else 0), **kwargs)

        # The cached path builds heads in tuner.train.trial, the full model in tuner.train.context.
        monkeypatch.setattr(training, "build_head", build_head)
        monkeypatch.setattr(context, "build_head", build_head)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("diverged", r"^diverged: loss became nan at epoch 1 \(phase 1\)"),
        ("oom", r"^out of memory: OOM when allocating tensor; a smaller --batch-size may help$"),
        ("model", r"^ValueError: Layer head_standardize weight shape \(67,\) is not compatible"),
    ],
    ids=["diverged", "out-of-memory", "error-in-model"],
)
def test_a_failed_trial_is_one_failed_trial_and_the_search_goes_on(
    search_config, tmp_path, monkeypatch, kind, expected, prepared
):
    from tuner.engine.runner import _search
    from tuner.engine.spaces import load_space
    from tuner.ui.board import load

    if kind == "diverged":
        # Adam steps of 1e30 overflow float32 at once: a real NaN loss, no monkeypatching.
        space = two_trial_space(tmp_path, units=(8,), head_lr=(1e30, 0.01))
    else:
        space = two_trial_space(tmp_path)
        inject_failure(kind, monkeypatch)
    config = search_config(space=space, max_trials=2, epochs_head=2, epochs_finetune=1)
    bench = prepared(config, load_space(family="tiny", path=space))
    tuner = _search(bench)

    statuses = sorted(t.status for t in tuner.oracle.trials.values())
    assert statuses == ["COMPLETED", "FAILED"]
    (failed,) = [t for t in tuner.oracle.trials.values() if t.status == "FAILED"]
    summary = json.loads(
        (config.trials_dir / f"trial_{failed.trial_id}" / "summary.json").read_text()
    )
    reason = summary["reason"]
    assert "\n" not in reason and re.search(expected, reason), reason
    rows = {row.trial_id: row for row in load(config.project_dir).rows}
    assert rows[failed.trial_id].status == "FAILED"
    shown = rows[failed.trial_id].reason  # the leaderboard shortens long reasons with '…'
    assert shown == reason or (shown.endswith("…") and reason.startswith(shown[:-1]))
    (done,) = [row for row in rows.values() if row.status == "COMPLETED"]
    assert done.rank == 1 and done.reason is None
    assert (config.trials_dir / f"trial_{done.trial_id}" / "checkpoint.npz").exists()


def test_repeated_failures_stop_with_one_line_and_the_project_resumes(
    tmp_path, capsys, monkeypatch, image_folder
):
    import tensorflow as tf

    from tuner.train import trial as training
    from tuner.ui.board import load

    project = tmp_path / "project"
    args = cli_args(image_folder, project, trials=4, head=1, finetune=1)
    real_fit = training._Plan.fit

    def out_of_memory(self, *a, **k):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(training._Plan, "fit", out_of_memory)
    assert cli.main(args) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "3 consecutive failed trials" in err
    assert "the last one said: out of memory: OOM when allocating tensor;" in err
    assert "FailedTrialError" not in err and "keras_tuner" not in err
    assert [s["status"] for s in trial_states(project).values()] == ["FAILED"] * 3

    # The cause is fixed: the same command continues the search where it stopped.
    monkeypatch.setattr(training._Plan, "fit", real_fit)
    assert cli.main(args) == 0
    rows = load(project).rows
    assert sorted(r.status for r in rows) == ["COMPLETED", "FAILED", "FAILED", "FAILED"]
    assert all(r.reason.startswith("out of memory") for r in rows if r.status == "FAILED")
    assert (project / "export" / "model.keras").exists()


def test_a_failed_trial_prints_its_reason_not_a_traceback(
    tmp_path, capsys, monkeypatch, image_folder
):
    # KerasTuner 1.4.8 ships with DEBUG = True and would print every failed trial's traceback.
    project = tmp_path / "project"
    inject_failure("oom", monkeypatch)
    args = cli_args(image_folder, project, trials=2, head=1, finetune=0, quiet=False)
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "failed: out of memory: OOM when allocating tensor" in captured.out
    # With --debug, the traceback is shown.
    project2 = tmp_path / "project2"
    assert (
        cli.main(cli_args(image_folder, project2, trials=2, head=1, finetune=0) + ["--debug"]) == 0
    )
    assert "Traceback" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# 3. Bad command lines: one line on stderr, exit 2, no traceback, and no file anywhere

BAD_FLAGS = [
    (["--max-trials", "0"], "max-trials"),
    (["--max-trials", "-2"], "max-trials"),
    (["--image-size", "15"], "image-size"),
    (["--image-size", "0"], "image-size"),
    (["--image-size", "-32"], "image-size"),
    (["--backbone", "tiny,nosuchnet"], "nosuchnet"),
    (["--backbone", " , "], "backbone"),
    (["--oracle", "gridsearch"], "oracle"),
    (["--objective", "val_f1"], "objective"),
    (["--space", "{spaces}/typo.toml"], "head.learning_rat"),
    (["--space", "{spaces}/field.toml"], "type"),
    (["--space", "{spaces}/syntax.toml"], "TOML"),
    (["--space", "{spaces}/range.toml"], "head.dropout"),
    (["--space", "{spaces}/missing.toml"], "does not exist"),
    (["--val-split", "0"], "val-split"),
    (["--val-split", "1"], "val-split"),
    (["--val-split", "-0.2"], "val-split"),
    (["--val-split", "nan"], "val-split"),
    (["--epochs-head", "0"], "epochs-head"),
    (["--epochs-head", "-1"], "epochs-head"),
    (["--epochs-finetune", "-1"], "epochs-finetune"),
    (["--patience", "-1"], "patience"),
    (["--batch-size", "-8"], "batch-size"),
    (["--augment", "--augment-views", "0"], "augment-views"),
    (["--augment-views", "-1"], "augment-views"),
]


@pytest.mark.parametrize("demo", [False, True], ids=["data", "demo"])
@pytest.mark.parametrize(
    ("extra", "word"),
    BAD_FLAGS,
    ids=["=".join(extra).replace("{spaces}/", "").strip("-") for extra, _ in BAD_FLAGS],
)
def test_bad_command_line_creates_nothing(tmp_path, capsys, monkeypatch, extra, word, demo):
    data = make_folder(tmp_path / "data", per_class=2) if not demo else None
    specs = space_path("invalid/typo").parent  # tests/fixtures/spaces/invalid
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TUNER_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = sorted(tmp_path.rglob("*"))
    # No --project-dir: the default (runs/<backbone> under the working directory) is checked too.
    args = ["--backbone", "tiny", "--weights", "none", "--quiet"]
    args += ["--demo"] if demo else ["--data", str(data)]
    args += [a.replace("{spaces}", str(specs)) for a in extra]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert word.lower() in one_line_error(captured.err).lower()
    assert captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------------------------
# 4. A full disk: one line, exit 2, nothing half-written trusted, and a rerun completes


def test_full_disk_while_writing_a_checkpoint(tmp_path, capsys, monkeypatch, image_folder):
    from tuner.models.network import Pieces

    project = tmp_path / "project"
    args = cli_args(image_folder, project)
    real_savez = np.savez

    def savez_then_full(file, *a, **k):
        file.write(b"PK\x03\x04 half a checkpoint")
        enospc()

    monkeypatch.setattr(np, "savez", savez_then_full)
    assert cli.main(args) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "checkpoint" in err and "No space left on device" in err and "rerun" in err
    assert not list(project.rglob("checkpoint.npz"))
    assert not leftovers(project)

    monkeypatch.setattr(np, "savez", real_savez)
    assert cli.main(args) == 0
    states = trial_states(project)
    assert len(states) == 2 and all(s["status"] == "COMPLETED" for s in states.values())
    for trial_id in states:
        Pieces.load(project / "trials" / f"trial_{trial_id}" / "checkpoint.npz")
    assert not leftovers(project)


def test_full_disk_while_writing_a_cache_entry(tmp_path, capsys, monkeypatch, image_folder):
    from tuner.cache import files as cache_io
    from tuner.cache import store as cache_module

    project = tmp_path / "project"
    args = cli_args(image_folder, project)
    real_write = cache_io.write_bytes
    writes = []

    def write_until_full(f, data):
        if ".tmp.npy" in str(getattr(f, "name", "")):
            writes.append(len(writes))
            if len(writes) > 1:  # the first batch fits, the second does not
                enospc()
        real_write(f, data)

    monkeypatch.setattr(cache_io, "write_bytes", write_until_full)
    assert cli.main(args) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in err and "--cache-dir" in err
    cache_dir = project / "cache"
    assert not leftovers(cache_dir)
    assert not [p for p in cache_dir.glob("*.npy") if not p.with_suffix(".json").exists()]

    monkeypatch.setattr(cache_io, "write_bytes", real_write)
    assert cli.main(args) == 0
    states = trial_states(project)
    assert len(states) == 2 and all(s["status"] == "COMPLETED" for s in states.values())
    cache = cache_module.ArrayCache(cache_dir)
    for sidecar in cache_dir.glob("*.json"):
        meta = json.loads(sidecar.read_text())
        assert cache.lookup(meta["name"], meta["key"]) is not None
    assert not leftovers(project)


def test_full_disk_while_exporting(tmp_path, capsys, monkeypatch, image_folder):
    import keras
    from keras.src.saving import saving_lib

    project = tmp_path / "project"
    args = cli_args(image_folder, project, trials=1)
    model_file = project / "export" / "model.keras"
    real_save = saving_lib._save_model_to_fileobj

    def save_half(model, fileobj, weights_format):
        fileobj.write(b"PK\x03\x04 half a model")
        enospc()

    monkeypatch.setattr(saving_lib, "_save_model_to_fileobj", save_half)
    assert cli.main(args) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "export" in err and "No space left on device" in err
    assert not model_file.exists() and not leftovers(project)

    # Disk fixed: the finished search is reloaded and exported.
    monkeypatch.setattr(saving_lib, "_save_model_to_fileobj", real_save)
    assert cli.main(args) == 0
    keras.saving.load_model(model_file, safe_mode=True)
    good = sha(model_file)

    # Full again: the export that was there is left whole, never replaced by half of one.
    monkeypatch.setattr(saving_lib, "_save_model_to_fileobj", save_half)
    assert cli.main(args) == 2
    capsys.readouterr()
    assert sha(model_file) == good and not leftovers(project)


# --------------------------------------------------------------------------------------------
# 5. Nothing executes from data


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_export_and_cache_hold_data_only(finished, tmp_path, monkeypatch, prepared):
    import pickle

    import keras

    from tuner.cache.store import ArrayCache
    from tuner.engine.runner import _search
    from tuner.engine.spaces import load_space
    from tuner.engine.transfer import completed_trials
    from tuner.serve.bundle import export_trial

    config = finished(max_trials=1)  # a copy of the session's one-trial search
    space = load_space(family="tiny")
    tuner = _search(prepared(config, space))
    path = export_trial(tuner, completed_trials(tuner)[0], tmp_path / "export")["keras"]

    keras.saving.load_model(path, safe_mode=True)
    with zipfile.ZipFile(path) as archive:
        model_config = json.loads(archive.read("config.json"))
    objects = [n for n in walk(model_config) if "class_name" in n]
    assert objects
    assert not [n for n in objects if n["class_name"] == "Lambda"]
    # Builtin Keras classes only: nothing a loader would have to import from elsewhere.
    modules = {n.get("module") for n in objects if n.get("module")}
    assert all(m.split(".")[0] == "keras" for m in modules), modules

    # Cache files tampered with: validation entries replaced by pickled object arrays (sidecar
    # kept), training entries by valid arrays of the right shape but made-up values with the
    # sidecar gone (as a crash between publishing the data and its sidecar would leave them). A
    # resumed search trusts none of them, unpickles nothing and rebuilds what it reads.
    cache_dir = config.resolved_cache_dir
    metas = {
        npy: json.loads(npy.with_suffix(".json").read_text())
        for npy in sorted(cache_dir.glob("*.npy"))
    }
    assert any("-train-" in m["name"] for m in metas.values())
    for npy, meta in metas.items():
        if "-train-" in meta["name"]:
            np.save(npy, np.full(meta["shape"], 7.0, dtype=meta["dtype"]))
            npy.with_suffix(".json").unlink()
        else:
            np.save(npy, np.array([{"payload": 1}], dtype=object), allow_pickle=True)

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    tuner = _search(prepared(config.replace(max_trials=2), space))
    assert sorted(t.status for t in tuner.oracle.trials.values()) == ["COMPLETED"] * 2
    # The pooled features every trial reads were rebuilt; an entry the new trial did not read is
    # discarded by its first lookup.
    cache = ArrayCache(cache_dir)
    rebuilt = set()
    for meta in metas.values():
        entry = cache.lookup(meta["name"], meta["key"])
        if entry is not None:
            assert entry.array.dtype == np.dtype(meta["dtype"]) and not np.all(entry.array == 7)
            rebuilt.add(meta["name"].split("-")[2] if "-cut" in meta["name"] else meta["name"])
    # The activations, and the decoded pixels with their index (pickled above), were rebuilt.
    assert rebuilt == {"train", "val", "pixels-32", "pixels-32-index"}


def test_space_files_are_data_not_code(tmp_path, capsys, monkeypatch, image_folder):
    from tuner.engine.spaces import load_space

    marker = tmp_path / "EXECUTED"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    files = {
        "value.toml": f'[head.units]\ntype = "fixed"\nvalue = "{code}"\n',
        "values.toml": f'[head.units]\ntype = "choice"\nvalues = ["{code}"]\n',
        "type.toml": f'[head.units]\ntype = "{code}"\nvalue = 8\n',
        "key.toml": f'["{code}"]\ntype = "fixed"\nvalue = 8\n',
        "space.py": f"{code}\n",
    }
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text)
        project = tmp_path / f"p-{name}"
        assert cli.main(cli_args(image_folder, project) + ["--space", str(path)]) == 2, name
        one_line_error(capsys.readouterr().err)
        assert not project.exists()
    # Code in a comment is just a comment.
    commented = tmp_path / "commented.toml"
    commented.write_text(f'# {code}\n[head.units]\ntype = "fixed"\nvalue = 8  # {code}\n')
    assert load_space(family="tiny", path=commented).get("head/units").kind == "fixed"
    assert not marker.exists()


def test_search_over_hostile_folder_skips_reports_and_imports_nothing(
    tmp_path, capsys, monkeypatch
):
    data = make_folder(tmp_path / "data", per_class=8)
    rng = np.random.default_rng(3)
    picture = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    write_png(data / "bright" / "été à la plage 1.png", picture + 0)  # usable, odd name
    write_jpeg(data / "dark" / "whole.jpg", picture)
    whole = (data / "dark" / "whole.jpg").read_bytes()
    (data / "dark" / "whole.jpg").unlink()
    hostile = {
        "bright/zero bytes.jpg": b"",
        "dark/notes.png": b"This is a text file saved as a picture.\n",
        "dark/truncated ünïcode.jpg": whole[: len(whole) // 2],
    }
    for name, content in hostile.items():
        (data / name).write_bytes(content)
    # Python files that would leave a marker if anything imported or ran them.
    marker = tmp_path / "IMPORTED"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    for name in (
        "__init__.py",
        "bright/__init__.py",
        "dark/__init__.py",
        "dark/evil.py",
        "setup.py",
        "conftest.py",
        "bright/evil.png.py",
    ):
        (data / name).write_text(payload)

    project = tmp_path / "project"
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    assert cli.main(cli_args(data, project, trials=1, head=1, finetune=0, quiet=False)) == 0
    out = capsys.readouterr().out
    assert "skipped 3 files that could not be used" in out
    assert "skipped.txt" in out
    counts = re.search(r"(\d+) training and (\d+) validation images", out)
    assert int(counts[1]) + int(counts[2]) == 8 * 2 + 1  # the odd name was used

    lines = (project / "skipped.txt").read_text(encoding="utf-8").splitlines()
    reasons = {Path(path).name: reason for path, reason in (ln.split("\t") for ln in lines)}
    assert reasons == {
        "zero bytes.jpg": "zero-byte file",
        "notes.png": "not an image (a text file)",
        "truncated ünïcode.jpg": "not a decodable image (truncated JPEG)",
    }
    assert not marker.exists()
    assert not {m for m in set(sys.modules) - before if "evil" in m or m in ("bright", "dark")}
