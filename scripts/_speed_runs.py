"""The speed case's two searches: cached, then no-cache on the same init, trials and seeds.

`benchmark` runs the cached search (the default path), then the no-cache one (`cache=False`) from
the very same random-init file, with the same oracle, seed, trials and epochs; or, with
`--nocache-trials`, on a subset of the cached run's trials only, replayed by `ReplayOracle`. Then it
measures the step bounds and the backbone's predict throughput (`_speed_bounds`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from scripts import _harness
from scripts._harness import TimedSearch, trial_order
from scripts._speed_bounds import PHASES, predict_throughput, step_bounds, step_key

# Every trial fine-tunes: unfreeze_blocks >= 1 makes phase 2 happen, so its per-epoch cost can be
# compared. Layered last, over default.toml and the backbone family's file.
SPACE_TOML = """\
# Written by python -m scripts.bench: every trial fine-tunes one or two blocks.
[finetune.unfreeze_blocks]
type = "int"
min = 1
max = 2
default = 1
"""


def say(text: str) -> None:
    """One progress line on standard error."""
    _harness.say("bench", text)


def cover_trials(trials: list[dict[str, Any]]) -> list[str]:
    """The fewest of `trials` (greedily) that measure every phase the search ran at least once:
    phase 1 of a dense head, and phase 2 at each unfreeze depth. A trial that measures more of
    the phases still missing goes first; among equals, the earlier one."""

    def groups(trial: dict[str, Any]) -> set[tuple[int, int]]:
        keys = (step_key(trial, phase) for phase in PHASES)
        return {key[:2] for key in keys if key is not None}

    needed = set().union(*(groups(t) for t in trials)) if trials else set()
    chosen: list[dict[str, Any]] = []
    while needed:
        best = max(
            (t for t in trials if t not in chosen),
            key=lambda t: (len(groups(t) & needed), -trial_order(t["trial_id"])[0]),
        )
        chosen.append(best)
        needed -= groups(best)
    return sorted((t["trial_id"] for t in chosen), key=trial_order)


def nocache_subset(which: Any, trials: list[dict[str, Any]]) -> list[str] | None:
    """The trial ids the no-cache run trains (`--nocache-trials`), in order; None: all."""
    ids = [t["trial_id"] for t in trials]
    if which is None or which == "all":
        return None
    if which == "cover":
        chosen = cover_trials(trials)
    elif isinstance(which, int):
        chosen = ids[:which]
    else:
        unknown = sorted(set(which) - set(ids), key=trial_order)
        if unknown:
            raise SystemExit(
                f"error: --nocache-trials names trials the cached run did not have: "
                f"{', '.join(unknown)}. It ran: {', '.join(ids)}"
            )
        chosen = sorted(set(which), key=trial_order)
    return None if chosen == ids else chosen


def replay_oracle(config: Any, trials: list[dict[str, Any]]) -> Any:
    """A KerasTuner oracle that hands out exactly `trials` (rows of the cached run), in order,
    each with its hyperparameters and under its own trial id, then stops."""
    import keras_tuner as kt

    class ReplayOracle(kt.oracles.RandomSearchOracle):
        def __init__(self) -> None:
            super().__init__(
                objective=kt.Objective(config.objective, direction=config.direction),
                max_trials=len(trials),
                seed=config.seed,
                max_retries_per_trial=0,
                max_consecutive_failed_trials=None,
            )
            self.verbose = 0  # the search's display shows the trials, not KerasTuner
            self.queue = [(t["trial_id"], dict(t["hyperparameters"])) for t in trials]

        # KerasTuner numbers a new trial by how many it holds; a replay keeps the number of the
        # trial it replays, since the trial's seed is drawn from it (`tuner.train.trial`). The
        # rest is `Oracle.create_trial` of KerasTuner 1.4.8 for a trial that runs.
        @kt.synchronized
        def create_trial(self, tuner_id: str) -> Any:
            if not self.queue:
                return kt.engine.trial.Trial(
                    self.hyperparameters.copy(), status=kt.engine.trial.TrialStatus.STOPPED
                )
            trial_id, values = self.queue.pop(0)
            hyperparameters = self.hyperparameters.copy()
            hyperparameters.values = values
            trial = kt.engine.trial.Trial(
                hyperparameters, trial_id=trial_id, status=kt.engine.trial.TrialStatus.RUNNING
            )
            self._record_values(trial)
            self.ongoing_trials[tuner_id] = trial
            self.trials[trial_id] = trial
            self.start_order.append(trial_id)
            self._save_trial(trial)
            self.save()
            self._display.on_trial_begin(trial)
            return trial

    return ReplayOracle()


def benchmark(settings: dict[str, Any], work: Path, data: Path, verbose: bool) -> dict[str, Any]:
    """Runs the cached search, then the no-cache one from the same random init."""
    from tuner.engine.spaces import space_for
    from tuner.models.registry import file_sha256, get_backbone

    spec = get_backbone(settings["backbone"])
    if settings["image_size"] < spec.min_size:
        raise SystemExit(
            f"error: --image-size must be at least {spec.min_size} for "
            f"{spec.name}. Received: image_size={settings['image_size']}"
        )
    space_file = work / "space.toml"
    space_file.write_text(SPACE_TOML)
    projects = {"cached": work / "cached", "no-cache": work / "nocache"}
    for project in projects.values():
        shutil.rmtree(project, ignore_errors=True)  # a stale cache or init would skew the run

    def config(label: str, trials: int) -> Any:
        return _harness.search_config(
            data=data,
            backbone=spec.name,
            project=projects[label],
            image_size=settings["image_size"],
            space=space_file,
            oracle=settings["oracle"],
            max_trials=trials,
            epochs_head=settings["epochs_head"],
            epochs_finetune=settings["epochs_finetune"],
            batch_size=settings["batch_size"],
            patience=0,  # both runs train every epoch
            seed=settings["seed"],
            cache=label == "cached",
            verbose=1 if verbose else 0,
        )

    def run(label: str, trials: int, oracle: Any = None) -> TimedSearch:
        settings_ = config(label, trials)
        space = space_for(settings_)
        return _harness.timed_search(settings_, space, label=label, verbose=verbose, oracle=oracle)

    init_name = f"{spec.name}-{settings['image_size']}.weights.h5"
    say(f"cached run: {spec.name} @{settings['image_size']}px, {settings['max_trials']} trials")
    cached = run("cached", settings["max_trials"])
    say(f"cached run done in {cached.wall_s:.1f}s")
    subset = nocache_subset(settings.get("nocache_trials"), cached.trials)

    # The no-cache run must start from the very same random init: put the cached run's file where
    # the no-cache search looks, so it is loaded instead of drawn again.
    init = projects["no-cache"] / "init" / init_name
    init.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(projects["cached"] / "init" / init_name, init)
    say(
        "no-cache run (same init, hyperparameters, trial seeds and epochs"
        + (f"; trials {', '.join(subset)} only)" if subset else ")")
    )
    ids = [t["trial_id"] for t in cached.trials]
    if subset is None or subset == ids[: len(subset)]:  # all, or the first N: the same oracle
        nocache = run("no-cache", len(subset) if subset else settings["max_trials"])
    else:
        picked = [t for t in cached.trials if t["trial_id"] in subset]
        replay = config("no-cache", len(picked))
        nocache = run("no-cache", len(picked), replay_oracle(replay, picked))
    say(f"no-cache run done in {nocache.wall_s:.1f}s")
    say("step bounds: full vs cached train step on one batch, for each model the trials trained")
    bounds = step_bounds(
        settings, projects["cached"] / "init" / init_name, cached.n_classes, cached.trials
    )
    say("model.predict throughput of the backbone, for the cache builds to be measured against")
    predict = predict_throughput(settings, projects["cached"] / "init" / init_name)
    built = (
        (cached.train_images + cached.val_images) if settings.get("augment") is not True else None
    )
    return {
        "settings": settings,
        "bounds": bounds,
        "build_vs_predict": {
            "predict_images_per_s": predict,
            "build_images": built,
            "build_s": cached.cache_build_s,
            "build_images_per_s": built / cached.cache_build_s
            if built and cached.cache_build_s
            else None,
        },
        "checks": _checks(cached, nocache, file_sha256),
        "runs": {"cached": cached, "nocache": nocache},
    }


def _checks(cached: TimedSearch, nocache: TimedSearch, sha256: Any) -> dict[str, Any]:
    """Whether the two runs are like for like: the same init, trials and epochs, and how far
    apart their per-trial scores are."""
    by_id = {t["trial_id"]: t for t in cached.trials}
    matched = [by_id[t["trial_id"]] for t in nocache.trials if t["trial_id"] in by_id]
    # The two paths train the same steps (docs/design.md §1), so per-trial scores should agree up
    # to float16 cache rounding; a large gap points at a bug in one path, not at speed.
    gaps = [
        abs(a["best"]["val_accuracy"] - b["best"]["val_accuracy"])
        for a, b in zip(matched, nocache.trials, strict=False)
        if (a.get("best") or {}).get("val_accuracy") is not None
        and (b.get("best") or {}).get("val_accuracy") is not None
    ]
    return {
        "same_init": sha256(cached.init_file) == sha256(nocache.init_file),
        "same_trials": [t["hyperparameters"] for t in matched]
        == [t["hyperparameters"] for t in nocache.trials],
        "same_epochs": [t.get("epochs_run") for t in matched]
        == [t.get("epochs_run") for t in nocache.trials],
        "max_trial_accuracy_gap": max(gaps) if gaps else None,
    }
