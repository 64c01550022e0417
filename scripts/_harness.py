"""The one search harness every benchmark runs: a timed search in this process, or in a child.

`timed_search` runs one search through the engine, as `tuner.engine.runner.execute` does
(`prepare`, then the runner's `_search` with the engine's end-of-trial hook), without the export
(a benchmark times the search apart from it, and reads the tuner and the overhead that `execute`
keeps inside), and returns
a `TimedSearch`: the seconds of `prepare()` and of the search, the overhead the engine counted, the
best score, and one row per trial (its `summary.json`, its status, its searched hyperparameters and
when it ended, from the hook). A caller can read memory after `prepare()` and after each trial, and
score every completed trial's model. A replayed search (`oracle=`) drives the engine's
`TransferTuner` with another oracle: KerasTuner's own way to choose the trials.

`run_child` runs a module of this package in a fresh process and reads the JSON it wrote: a peak
resident set read there (`peak_rss_mb`) counts that search alone. `cli_flags` writes settings as
`python -m tuner.search` flags, for the benchmarks that measure the command line itself.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def say(tag: str, text: str) -> None:
    """One progress line on standard error, tagged with the benchmark's name."""
    print(f"[{tag}] {text}", file=sys.stderr, flush=True)


def start_tensorflow() -> None:
    """Imports TensorFlow now, without its start-up lines, so that no timed run pays for it."""
    from tuner.runtime import startup

    startup.start()


def search_config(*, data: Path, backbone: str, project: Path, **fields: Any) -> Any:
    """A `SearchConfig` for one backbone, from a random init (`weights="none"`), in a fresh
    project, quiet; `fields` set or override any other field."""
    from tuner.config import SearchConfig

    settings: dict[str, Any] = {"weights": "none", "overwrite": True, "verbose": 0}
    settings.update(fields)
    return SearchConfig(data=data, backbones=(backbone,), project_dir=project, **settings)


def trial_order(trial_id: str) -> tuple[int, str]:
    """Sort key: trial ids in numeric order."""
    return (int(trial_id), trial_id) if trial_id.isdigit() else (sys.maxsize, trial_id)


@dataclass
class TimedSearch:
    """What one search cost and scored."""

    label: str  # what the benchmark calls this run ("cached", "no-cache", ...)
    prepare_s: float  # engine.prepare(): scan, decode, split, backbone build, random init
    search_s: float  # the search itself, every trial and KerasTuner's bookkeeping between them
    overhead_s: float  # Workbench.overhead.seconds after the search
    cache_build_s: float  # the part of it spent building cache entries (the frozen passes)
    best: float | None  # the best completed trial's objective (the leaderboard's first)
    best_trial: str | None  # and its id
    n_classes: int
    class_names: tuple[str, ...]
    train_images: int
    val_images: int
    init_file: str  # the starting weights file of the (first) backbone
    trials: list[dict[str, Any]] = field(default_factory=list)  # one row per trial, in id order

    @property
    def wall_s(self) -> float:
        return self.prepare_s + self.search_s

    @property
    def trial_s(self) -> float:
        """The trials' own seconds (`summary.json`), summed."""
        return sum(t.get("seconds") or 0.0 for t in self.trials)

    def phase_totals(self, phase: str) -> tuple[float, int]:
        """(seconds, epochs) of one phase ("phase1" or "phase2"), summed over trials."""
        parts = [t[phase] for t in self.trials if t.get(phase)]
        return sum(p["seconds"] for p in parts), sum(p["epochs"] for p in parts)

    @property
    def training_s(self) -> float:
        """The `fit()` seconds of both phases, summed over trials."""
        return self.phase_totals("phase1")[0] + self.phase_totals("phase2")[0]

    def per_epoch(self, phase: str) -> float | None:
        seconds, epochs = self.phase_totals(phase)
        return seconds / epochs if epochs else None


def timed_search(
    config: Any,
    space: Any,
    *,
    label: str = "",
    verbose: bool = False,
    oracle: Any = None,
    after_prepare: Callable[[], None] | None = None,
    after_trial: Callable[[str], None] | None = None,
    score: Callable[[Any], dict[str, Any]] | None = None,
) -> TimedSearch:
    """Runs `prepare()` and the search once, in this process, and reads back every trial.

    Args:
        config: the `SearchConfig` (`search_config`).
        space: its space (`tuner.engine.spaces.space_for`).
        label: the run's name in the result.
        verbose: show each trial's epochs on standard error.
        oracle: a KerasTuner oracle to choose the trials instead of the configured one; the search
            then runs without the engine's own set-up (run.json) and end-of-trial hook, so
            `after_trial` is not called and no trial has `ended_s`.
        after_prepare: called once `prepare()` is done, outside the timed parts.
        after_trial: called with each trial's id when it has ended (the engine's hook).
        score: called with each completed trial's model, loaded as the export loads it, after the
            timing; what it returns is added to that trial's row.
    """
    import keras
    from rich.console import Console

    from tuner.engine import transfer as engine
    from tuner.engine.runner import _search
    from tuner.ui.display import SearchDisplay

    # Fresh Keras state for each run: the same auto-generated layer names, no leftover graphs.
    keras.backend.clear_session()
    gc.collect()
    display = SearchDisplay(console=Console(stderr=True), verbose=1 if verbose else 0)
    ended: dict[str, float] = {}
    started = time.perf_counter()

    def trial_ended(trial_id: str) -> None:
        ended[trial_id] = time.perf_counter() - started
        if after_trial is not None:
            after_trial(trial_id)

    bench = engine.prepare(config, space, display)
    prepared = time.perf_counter()
    if after_prepare is not None:
        after_prepare()
    resumed = time.perf_counter()
    if oracle is None:
        tuner = _search(bench, on_trial_end=trial_ended)
    else:
        tuner = engine.TransferTuner(oracle, bench)
        tuner.search(verbose=0)
    finished = time.perf_counter()

    ranked = engine.completed_trials(tuner)
    result = TimedSearch(
        label=label,
        prepare_s=prepared - started,
        search_s=finished - resumed,
        overhead_s=bench.overhead.seconds,
        cache_build_s=bench.overhead.cache_build_seconds,
        best=float(ranked[0].score) if ranked else None,
        best_trial=ranked[0].trial_id if ranked else None,
        n_classes=bench.data.n_classes,
        class_names=tuple(bench.data.class_names),
        train_images=len(bench.data.train),
        val_images=len(bench.data.val),
        init_file=str(bench.features.weights(config.backbones[0]).argument),
        trials=_trial_rows(tuner, ended, score),
    )
    del tuner, bench
    gc.collect()
    return result


def _trial_rows(
    tuner: Any, ended: dict[str, float], score: Callable[[Any], dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Each trial's `summary.json`, with its status, its searched hyperparameters, `ended_s`
    (seconds from the start of `prepare()` until its end-of-trial hook) and what `score` gave."""
    from tuner.hp import searched
    from tuner.project.layout import SUMMARY_FILE

    rows = []
    for trial_id in sorted(tuner.oracle.trials, key=trial_order):
        trial = tuner.oracle.trials[trial_id]
        path = Path(tuner.get_trial_dir(trial_id)) / SUMMARY_FILE
        row = json.loads(path.read_text()) if path.exists() else {"trial_id": trial_id}
        row["status"] = trial.status
        row["hyperparameters"] = searched(trial.hyperparameters.values)
        row["ended_s"] = ended.get(trial_id)
        if score is not None and trial.status == "COMPLETED":
            model = tuner.load_model(trial)
            row.update(score(model))
            del model
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ child processes


def rss_mb() -> float:
    """This process's resident set size now, in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size since exec, in MB (VmHWM, Linux /proc).

    Not `os.wait4`'s ru_maxrss in the parent: Linux carries the high-water mark of the forked
    parent's memory over exec into the child's, so a parent that had grown to 6.7 GB read 6729 MB
    for every child there."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this one's, TensorFlow's C++ logging quiet."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(extra or {})}


def run_child(module: str, args: list[str], out: Path) -> dict[str, Any]:
    """Runs `python -m module ARGS --out OUT` from the repository's root and returns the JSON
    the child wrote to OUT."""
    command = [sys.executable, "-m", module, *args, "--out", str(out)]
    code = subprocess.run(command, cwd=REPO, env=child_env(), check=False).returncode
    if code != 0:
        raise SystemExit(f"error: python -m {module} {' '.join(args)} failed (exit {code})")
    return json.loads(out.read_text())


def cli_flags(**settings: Any) -> list[str]:
    """`python -m tuner.search` flags: `max_trials=3` gives `--max-trials 3`, True a bare flag;
    None and False are left out."""
    flags: list[str] = []
    for name, value in settings.items():
        if value is None or value is False:
            continue
        flags.append(f"--{name.replace('_', '-')}")
        if value is not True:
            flags.append(str(value))
    return flags
