"""Benchmark the cached path against `--no-cache`: the same search twice, side by side.

Usage:
    python scripts/bench.py                   # Xception @96px, 300 images, 5 trials (10-20 min)
    python scripts/bench.py --quick           # tiny backbone @64px, 2 trials (under a minute)
    python scripts/bench.py --json out.json   # also save every number

One process runs the search once on cached frozen activations (the default path) and once on the
full model every epoch (`--no-cache`), with the same oracle, seed, trials, epochs, data and random
init, then prints a table and one plain summary line. The target the issue sets for the default
settings: cached >= 5x faster end to end, with best val accuracy within 1 point.

What is counted:
    wall          `prepare()` (scan, decode, split, build the backbone once, draw the random init)
                  plus `search()`; TensorFlow is imported before either run starts.
    time to reach the cached run's `prepare()` seconds plus its per-trial `summary.json` seconds,
                  cumulative in trial order, through the first trial whose best val accuracy
                  reaches the no-cache run's best. Trial seconds include that trial's cache builds
                  and checkpoint write; KerasTuner's own bookkeeping between trials is not in
                  them and is reported separately ("between trials").
    training      the `fit()` seconds of both phases from `summary.json` (first-epoch tracing
                  included; cache builds excluded).
    outside       (wall - training) / wall; `Workbench.overhead.seconds` is reported beside it,
                  and the part of it that built cache entries (the frozen forward pass over
                  every image, and the layers between cuts), which no cached search can skip.
    bound         per phase (and per unfreeze depth the search used), the full model's train step
                  over its cached counterpart's, on the same batch in-process: the most the cache
                  can win per epoch of that phase, printed beside the per-epoch ratio the two
                  searches measured on the same trials. Each trial's own models are timed (its
                  head width, its cut), the full and cached steps in alternation (median of 9
                  rounds after 2 warm-up steps each), fed uint8 pixels and float16 activations
                  as the search feeds them; a phase's bound weights its trials by their epochs.

The cached run goes first and pays for TensorFlow's first-use warm-up, which favours the no-cache
run. Both runs share 2 noisy CPU cores with whatever else runs on the machine: rerun before
trusting a small difference.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python scripts/bench.py` from a checkout without an install
    sys.path.insert(0, str(REPO))

DEFAULTS: dict[str, Any] = {
    "backbone": "xception",
    "image_size": 96,
    "images": 300,
    "max_trials": 5,
    "epochs_head": 4,
    "epochs_finetune": 2,
}
QUICK: dict[str, Any] = {
    "backbone": "tiny",
    "image_size": 64,
    "images": 120,
    "max_trials": 2,
}
# The larger case: enough images and epochs that fixed costs stop dominating. The no-cache run
# trains only a subset of the same trials ("cover": `cover_trials`); the rest are extrapolated per
# trial from them (`extrapolate`), and the output says so.
LARGE: dict[str, Any] = {
    "backbone": "xception",
    "image_size": 128,
    "images": 2000,
    "max_trials": 8,
    "epochs_head": 4,
    "epochs_finetune": 4,
    "nocache_trials": "cover",
}
CLASSES = ("checks", "dots", "stripes")
DRAW_SIZE = 128  # pixels of the generated images; the search resizes them to --image-size
SPEED_TARGET = 5.0  # cached at least this many times faster end to end
BOUND_SHARE_TARGET = 0.8  # each phase's per-epoch ratio at least this share of its step bound
OUTSIDE_TARGET = 0.10  # at most this share of cached wall time outside training
IDEAL_SHARE_TARGET = 0.8  # end to end at least this share of the ideal ratio
ACCURACY_TARGET = 1.0  # best val accuracy within this many points of the no-cache run
STEP_REPEATS = 9  # timed rounds (one full step, one cached step) per bound, after 2 warm-ups each
# Every trial fine-tunes: unfreeze_blocks >= 1 makes phase 2 happen, so its per-epoch cost can be
# compared. Layered last, over default.toml and the backbone family's file.
SPACE_TOML = """\
# Written by scripts/bench.py: every trial fine-tunes one or two blocks.
[finetune.unfreeze_blocks]
type = "int"
min = 1
max = 2
default = 1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/bench.py",
        description=(
            "Run the same search with the activation cache and with --no-cache, and compare "
            "wall time, best val accuracy, time to reach the no-cache best, phase-2 epoch time "
            "and time outside training."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: tiny backbone at 64px, 120 images, 2 trials",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help=f"the larger case: {LARGE['backbone']} at {LARGE['image_size']}px, "
        f"{LARGE['images']} images, {LARGE['max_trials']} trials x ({LARGE['epochs_head']} + "
        f"{LARGE['epochs_finetune']}) epochs, no-cache on a subset of the trials only "
        f"(--nocache-trials {LARGE['nocache_trials']}; the rest extrapolated)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="the memory case: peak RSS of cached searches on 2,000 and 20,000 generated images "
        "at 224px, and RSS after each of 20 trials (scripts/bench_memory.py)",
    )
    parser.add_argument(
        "--effort",
        action="store_true",
        help="the effort case: the seed's recipe against 10-trial searches with and without "
        "--finetune-contenders, by wall time and time to quality on held-out images "
        "(scripts/bench_effort.py; --quick for a smoke run)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="the default case, then --large, --memory and --effort",
    )
    parser.add_argument(
        "--nocache-trials",
        type=nocache_trials_arg,
        metavar="WHICH",
        help="which of the cached run's trials the no-cache run trains, with the same "
        "hyperparameters and trial seeds; the others are extrapolated from them. N: the first N; "
        "a comma list of trial ids (2,4); 'cover': the fewest that measure every phase the "
        "search ran (dense-head phase 1, and phase 2 at each unfreeze depth) at least once; "
        "'all' (the default; 'cover' with --large)",
    )
    parser.add_argument("--backbone", help=f"default: {DEFAULTS['backbone']}")
    parser.add_argument("--image-size", type=int, help=f"default: {DEFAULTS['image_size']}")
    parser.add_argument(
        "--images",
        type=int,
        help=f"synthetic images to generate, over {len(CLASSES)} classes "
        f"(default: {DEFAULTS['images']}); ignored with --data",
    )
    parser.add_argument("--data", type=Path, help="use this image folder instead of generating one")
    parser.add_argument("--max-trials", type=int, help=f"default: {DEFAULTS['max_trials']}")
    parser.add_argument("--epochs-head", type=int, help=f"default: {DEFAULTS['epochs_head']}")
    parser.add_argument(
        "--epochs-finetune", type=int, help=f"default: {DEFAULTS['epochs_finetune']}"
    )
    parser.add_argument("--oracle", default="random", help="default: random")
    parser.add_argument("--seed", type=int, default=1, help="default: 1")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep data and both projects here (its cached/ and nocache/ are "
        "wiped first); default: a temporary folder, deleted afterwards",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also save the numbers here")
    parser.add_argument("--verbose", action="store_true", help="show each run's epochs")
    return parser


def nocache_trials_arg(text: str) -> int | str | list[str]:
    """`--nocache-trials`: 'all', 'cover', a count, or a comma list of trial ids."""
    text = text.strip().lower()
    if text in ("all", "cover"):
        return text
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f"expected at least 1 trial. Received: {text}")
        return int(text)
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids or not all(part.isdigit() for part in ids):
        raise argparse.ArgumentTypeError(
            f"expected 'all', 'cover', a count or trial ids like 2,4. Received: {text}"
        )
    return ids


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark settings: the issue's defaults, `--quick` over them, explicit flags last."""
    settings = dict(DEFAULTS) | {"nocache_trials": None}
    if args.quick:
        settings.update(QUICK)
    if args.large:
        settings.update(LARGE)
    if args.nocache_trials is not None:
        settings["nocache_trials"] = args.nocache_trials
    for name in DEFAULTS:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value.lower() if isinstance(value, str) else value
    settings.update(oracle=args.oracle.lower(), seed=args.seed, batch_size=args.batch_size)
    if settings["images"] < 5 * len(CLASSES):
        raise SystemExit(
            f"error: --images must be >= {5 * len(CLASSES)} (a few per class and "
            f"split). Received: images={settings['images']}"
        )
    return settings


# ---------------------------------------------------------------------------------------- data


def draw(label: str, rng: Any, size: int = DRAW_SIZE) -> Any:
    """One uint8 RGB texture of class `label`: the demo's drawing, at `size` pixels."""
    from tuner.data.demo import draw as draw_texture

    return draw_texture(label, rng, size)


def make_dataset(folder: Path, images: int, seed: int) -> Path:
    """Writes `images` JPEGs, spread over `CLASSES` in class subfolders, and returns `folder`."""
    import numpy as np
    import tensorflow as tf

    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (folder / label).mkdir(parents=True)
    for i in range(images):
        label = CLASSES[i % len(CLASSES)]  # interleaved: every class sees the same stream
        data = tf.io.encode_jpeg(draw(label, rng), quality=90).numpy()
        (folder / label / f"{label}_{i:04d}.jpg").write_bytes(data)
    return folder


# ---------------------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    """What one search cost and scored."""

    label: str  # "cached" or "no-cache"
    prepare_s: float  # engine.prepare(): scan, decode, split, backbone build, random init
    search_s: float  # the search (tuner.engine.runner._search)
    overhead_s: float  # Workbench.overhead.seconds after the search
    cache_build_s: float  # the part of it spent building cache entries (the frozen passes)
    best: float | None  # the oracle's best val_accuracy over completed trials
    n_classes: int
    train_images: int
    val_images: int
    init_file: str  # the random-init weights file the run used
    trials: list[dict[str, Any]] = field(default_factory=list)  # summary.json, in trial order

    @property
    def wall_s(self) -> float:
        return self.prepare_s + self.search_s

    @property
    def trial_s(self) -> float:
        return sum(t.get("seconds") or 0.0 for t in self.trials)

    def phase_totals(self, phase: str) -> tuple[float, int]:
        """(seconds, epochs) of one phase ("phase1" or "phase2"), summed over trials."""
        parts = [t[phase] for t in self.trials if t.get(phase)]
        return sum(p["seconds"] for p in parts), sum(p["epochs"] for p in parts)

    @property
    def training_s(self) -> float:
        return self.phase_totals("phase1")[0] + self.phase_totals("phase2")[0]

    def per_epoch(self, phase: str) -> float | None:
        seconds, epochs = self.phase_totals(phase)
        return seconds / epochs if epochs else None

    def time_to_reach(self, target: float | None) -> tuple[float | None, str | None]:
        """Seconds from the start of `prepare()` until a finished trial scored >= `target`,
        counting `prepare()` and the trials' own seconds; and the id of that trial."""
        if target is None:
            return None, None
        elapsed = self.prepare_s
        for trial in self.trials:
            elapsed += trial.get("seconds") or 0.0
            score = (trial.get("best") or {}).get("val_accuracy")
            if score is not None and score >= target - 1e-9:
                return elapsed, trial["trial_id"]
        return None, None


def _trial_order(trial_id: str) -> tuple[int, str]:
    return (int(trial_id), trial_id) if trial_id.isdigit() else (sys.maxsize, trial_id)


def run_search(
    label: str, config: Any, space: Any, verbose: bool, before_search: Any = None
) -> RunResult:
    """Runs `prepare()` and `search()` once and reads back every trial's summary."""
    import keras
    from rich.console import Console

    from tuner.engine import runner
    from tuner.engine import transfer as engine
    from tuner.hp import searched
    from tuner.project.layout import SUMMARY_FILE
    from tuner.ui.display import SearchDisplay

    # Fresh Keras state for each run: the same auto-generated layer names, no leftover graphs.
    keras.backend.clear_session()
    gc.collect()
    display = SearchDisplay(console=Console(stderr=True), verbose=1 if verbose else 0)
    started = time.perf_counter()
    bench = engine.prepare(config, space, display)
    prepared = time.perf_counter()
    if before_search is not None:
        before_search(bench)
    resumed = time.perf_counter()
    tuner = runner._search(bench)
    finished = time.perf_counter()

    trials = []
    for trial_id in sorted(tuner.oracle.trials, key=_trial_order):
        path = Path(tuner.get_trial_dir(trial_id)) / SUMMARY_FILE
        summary = json.loads(path.read_text()) if path.exists() else {"trial_id": trial_id}
        summary["status"] = tuner.oracle.trials[trial_id].status
        summary["hyperparameters"] = searched(tuner.oracle.trials[trial_id].hyperparameters.values)
        trials.append(summary)
    completed = engine.completed_trials(tuner)
    result = RunResult(
        label=label,
        prepare_s=prepared - started,
        search_s=finished - resumed,
        overhead_s=bench.overhead.seconds,
        cache_build_s=bench.overhead.cache_build_seconds,
        best=float(completed[0].score) if completed else None,
        n_classes=bench.data.n_classes,
        train_images=len(bench.data.train),
        val_images=len(bench.data.val),
        init_file=str(bench.features.weights(config.backbones[0]).argument),
        trials=trials,
    )
    del tuner, bench
    gc.collect()
    return result


def cover_trials(trials: list[dict[str, Any]]) -> list[str]:
    """The fewest of `trials` (greedily) that measure every phase the search ran at least once:
    phase 1 of a dense head, and phase 2 at each unfreeze depth. A trial that measures more of
    the phases still missing goes first; among equals, the earlier one."""

    def groups(trial: dict[str, Any]) -> set[tuple[int, int]]:
        keys = (_step_key(trial, phase) for phase in ("phase1", "phase2"))
        return {key[:2] for key in keys if key is not None}

    needed = set().union(*(groups(t) for t in trials)) if trials else set()
    chosen: list[dict[str, Any]] = []
    while needed:
        best = max(
            (t for t in trials if t not in chosen),
            key=lambda t: (len(groups(t) & needed), -_trial_order(t["trial_id"])[0]),
        )
        chosen.append(best)
        needed -= groups(best)
    return sorted((t["trial_id"] for t in chosen), key=_trial_order)


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
        unknown = sorted(set(which) - set(ids), key=_trial_order)
        if unknown:
            raise SystemExit(
                f"error: --nocache-trials names trials the cached run did not have: "
                f"{', '.join(unknown)}. It ran: {', '.join(ids)}"
            )
        chosen = sorted(set(which), key=_trial_order)
    return None if chosen == ids else chosen


@contextlib.contextmanager
def replaying(trials: list[dict[str, Any]]) -> Any:
    """While open, a search trains exactly `trials` (the cached run's), in their order, each with
    its hyperparameters and its trial seed: an oracle that hands out those values, and the seed
    of the original trial id for the replayed one. The replayed run numbers its trials 0, 1, ...;
    `original_ids` maps them back."""
    import keras_tuner as kt

    from tuner.engine import oracles
    from tuner.engine import transfer as engine

    values = [dict(t["hyperparameters"]) for t in trials]
    ids = [t["trial_id"] for t in trials]

    class Replay(kt.oracles.RandomSearchOracle):
        def populate_space(self, trial_id: str) -> dict[str, Any]:
            index = int(trial_id)
            if index >= len(values):
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values[index]}

    def make_oracle(config: Any, *, max_retries: int = 0) -> Any:
        return Replay(
            objective=kt.Objective(config.objective, direction=config.direction),
            max_trials=len(values),
            seed=config.seed,
            max_retries_per_trial=max_retries,
            max_consecutive_failed_trials=None,
        )

    def trial_seed(seed: int, trial_id: str) -> int:
        return original_seed(seed, ids[int(trial_id)])

    original_oracle, original_seed = oracles.make_oracle, engine.trial_seed
    oracles.make_oracle, engine.trial_seed = make_oracle, trial_seed
    try:
        yield ids
    finally:
        oracles.make_oracle, engine.trial_seed = original_oracle, original_seed


def benchmark(settings: dict[str, Any], work: Path, data: Path, verbose: bool) -> dict[str, Any]:
    """Runs the cached search, then the no-cache one from the same random init."""
    from tuner.config import SearchConfig
    from tuner.engine.spaces import load_space
    from tuner.models.registry import file_sha256, get_backbone

    spec = get_backbone(settings["backbone"])
    if settings["image_size"] < spec.min_size:
        raise SystemExit(
            f"error: --image-size must be at least {spec.min_size} for "
            f"{spec.name}. Received: image_size={settings['image_size']}"
        )
    space_file = work / "space.toml"
    space_file.write_text(SPACE_TOML)
    space = load_space(family=spec.family, path=space_file)
    projects = {"cached": work / "cached", "no-cache": work / "nocache"}
    for project in projects.values():
        shutil.rmtree(project, ignore_errors=True)  # a stale cache or init would skew the run

    def config(label: str, trials: int) -> SearchConfig:
        return SearchConfig(
            data=data,
            backbones=(spec.name,),
            project_dir=projects[label],
            weights="none",
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
            overwrite=True,
            verbose=1 if verbose else 0,
        )

    init_name = f"{spec.name}-{settings['image_size']}.weights.h5"
    say(f"cached run: {spec.name} @{settings['image_size']}px, {settings['max_trials']} trials")
    cached = run_search("cached", config("cached", settings["max_trials"]), space, verbose)
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
        trials = len(subset) if subset else settings["max_trials"]
        nocache = run_search("no-cache", config("no-cache", trials), space, verbose)
    else:
        picked = [t for t in cached.trials if t["trial_id"] in subset]
        with replaying(picked) as original_ids:
            nocache = run_search("no-cache", config("no-cache", len(picked)), space, verbose)
        for trial, original in zip(nocache.trials, original_ids, strict=False):
            trial["replayed_as"], trial["trial_id"] = trial["trial_id"], original
    say(f"no-cache run done in {nocache.wall_s:.1f}s")

    same_init = file_sha256(cached.init_file) == file_sha256(nocache.init_file)
    by_id = {t["trial_id"]: t for t in cached.trials}
    matched = [by_id[t["trial_id"]] for t in nocache.trials if t["trial_id"] in by_id]
    same_trials = [t["hyperparameters"] for t in matched] == [
        t["hyperparameters"] for t in nocache.trials
    ]
    same_epochs = [t.get("epochs_run") for t in matched] == [
        t.get("epochs_run") for t in nocache.trials
    ]
    # The two paths train the same steps (docs/design.md §1), so per-trial scores should agree up
    # to float16 cache rounding; a large gap points at a bug in one path, not at speed.
    gaps = [
        abs(a["best"]["val_accuracy"] - b["best"]["val_accuracy"])
        for a, b in zip(matched, nocache.trials, strict=False)
        if (a.get("best") or {}).get("val_accuracy") is not None
        and (b.get("best") or {}).get("val_accuracy") is not None
    ]
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
        "checks": {
            "same_init": same_init,
            "same_trials": same_trials,
            "same_epochs": same_epochs,
            "max_trial_accuracy_gap": max(gaps) if gaps else None,
        },
        "runs": {"cached": cached, "nocache": nocache},
    }


def _alternating_steps(
    full: Any, full_batch: tuple[Any, Any], cached: Any, cached_batch: tuple[Any, Any]
) -> tuple[float, float]:
    """Median seconds of one `train_on_batch` step of each model, timed in alternation.

    Two warm-up steps each first (tracing), then `STEP_REPEATS` rounds of one full step and one
    cached step: a slow spell on the machine lands on both sides, not on whichever was timed in
    it."""
    for _ in range(2):
        full.train_on_batch(*full_batch)
        cached.train_on_batch(*cached_batch)
    times: dict[str, list[float]] = {"full": [], "cached": []}
    for _ in range(STEP_REPEATS):
        for name, model, batch in (("full", full, full_batch), ("cached", cached, cached_batch)):
            start = time.perf_counter()
            model.train_on_batch(*batch)
            times[name].append(time.perf_counter() - start)
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    return median["full"], median["cached"]


def predict_throughput(settings: dict[str, Any], init_file: Path, images: int = 256) -> float:
    """Images per second of `model.predict` on the whole frozen backbone (raw pixels in, pooled
    features out, the backbone's preprocessing inside) at the cache builds' batch size, after a
    warm-up: what the builds, which also write every entry, are measured against."""
    import keras
    import numpy as np

    from tuner.frozen.activations import build_batch, with_preprocessing
    from tuner.models.registry import build_backbone, get_backbone

    spec = get_backbone(settings["backbone"])
    size = settings["image_size"]
    keras.backend.clear_session()
    model = with_preprocessing(build_backbone(spec, size, str(init_file)), spec, size)
    batch = build_batch(SimpleNamespace(batch_size=settings["batch_size"]))
    x = np.random.default_rng(settings["seed"]).uniform(0, 255, (images, size, size, 3))
    x = x.astype("float32")
    model.predict(x[:batch], batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    return images / (time.perf_counter() - start)


def _units(trial: dict[str, Any]) -> int:
    return int(trial.get("hyperparameters", {}).get("head/units", 0))


def _step_key(trial: dict[str, Any], phase: str) -> tuple[int, int, int] | None:
    """(phase, unfreeze blocks, head units): the models a trial trained in `phase`, as
    `step_bounds` times them; None where the phase ran no gradient epochs (a linear head's phase
    1 is a closed-form fit and one scoring pass)."""
    if not _epochs(trial, phase):
        return None
    if phase == "phase1":
        return None if _linear(trial) else (1, 0, _units(trial))
    return (2, _k(trial), _units(trial))


def _bounds_by_key(bounds: list[dict[str, Any]]) -> dict[tuple[int, int, int], dict[str, Any]]:
    """`step_bounds` rows by their `_step_key`."""
    return {(r["phase"], r["unfreeze_blocks"], r["units"]): r for r in bounds}


def step_bounds(
    settings: dict[str, Any], init_file: Path, n_classes: int, trials: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What the cache can win per training step, measured in-process on the same batch, for the
    very models the search's `trials` trained.

    One row per (phase, unfreeze depth, head width) among the trials. Phase 1: the full model with
    the backbone frozen against the head alone on pooled features. Phase 2: the full model with
    the top k blocks trainable against those blocks and the head on activations cached at the
    cut. Each side is fed what the search feeds it: uint8 pixels to the full model, float16
    activations (the cache's dtype) to the cached one, both widened inside the traced step. The
    ratio of the two steps is the bound on the per-epoch speed-up of that phase.
    """
    import keras
    import numpy as np

    from tuner.frozen.activations import with_preprocessing
    from tuner.models import cuts
    from tuner.models.network import build_classifier, build_head, compile_model
    from tuner.models.registry import build_backbone, get_backbone
    from tuner.train.trial import _TopAndHead, labels_for

    spec = get_backbone(settings["backbone"])
    size = settings["image_size"]
    batch = settings["batch_size"]
    rng = np.random.default_rng(settings["seed"])
    x = rng.integers(0, 256, (batch, size, size, 3), dtype="uint8")
    y = labels_for(rng.integers(0, n_classes, batch), n_classes)
    keys = sorted(
        {key for t in trials for phase in ("phase1", "phase2") if (key := _step_key(t, phase))}
    )
    rows = []
    for phase, k, units in keys:
        keras.backend.clear_session()
        backbone = build_backbone(spec, size, str(init_file))
        head = build_head(
            int(backbone.output.shape[-1]), units=units, dropout=0.2, n_classes=n_classes
        )
        full = build_classifier(backbone, head, image_size=size, preprocessing=spec.preprocessing)
        cut = cuts.unfreeze_cut(backbone, spec.block_pattern, k) if k else len(backbone.layers) - 1
        if k:
            cuts.freeze_for_finetune(backbone, cut)
        else:
            backbone.trainable = False
        compile_model(full, 1e-5, n_classes)
        if k:
            bottom, top = cuts.split(backbone, cut)
            inputs = with_preprocessing(bottom, spec, size).predict(x, verbose=0)
            cached = _TopAndHead(top, head)
        else:
            inputs = with_preprocessing(backbone, spec, size).predict(x, verbose=0)
            cached = head
        compile_model(cached, 1e-5, n_classes)
        full_s, cached_s = _alternating_steps(full, (x, y), cached, (inputs.astype("float16"), y))
        rows.append(
            {
                "phase": phase,
                "unfreeze_blocks": k,
                "units": units,
                "full_step_s": full_s,
                "cached_step_s": cached_s,
                "bound": full_s / cached_s if cached_s else None,
            }
        )
    return rows


def bounds_table(numbers: dict[str, Any]) -> Any:
    """Per phase (and cut): the per-epoch ratio the searches measured beside the step bound."""
    from rich.table import Table

    table = Table(
        title="what the cache can win per step (bound) and what each phase got",
        title_justify="left",
        caption="on the trials both runs trained (phase 1: dense heads only); heads: their widths "
        "(0: linear); steps: the medians of each trial's own models, epoch-weighted; bound: "
        "full over cached step; measured/epoch: no-cache over cached seconds per epoch",
        caption_justify="left",
    )
    columns = (
        "phase",
        "unfreeze",
        "heads",
        "trials",
        "full step",
        "cached step",
        "bound",
        "measured/epoch",
        "share",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in numbers["per_phase"]:
        table.add_row(
            str(row["phase"]),
            str(row["unfreeze_blocks"] or "-"),
            ",".join(str(u) for u in row["units"]),
            f"{row['trials']} ({row['epochs']} ep)",
            f"{1000 * row['full_step_s']:.0f} ms",
            f"{1000 * row['cached_step_s']:.1f} ms",
            _x(row["bound"]),
            _x(row["measured"]),
            _pct(row["share_of_bound"]),
        )
    return table


# ----------------------------------------------------------------------------------- numbers


def ratio(slow: float | None, fast: float | None) -> float | None:
    return slow / fast if slow is not None and fast else None


def _k(trial: dict[str, Any]) -> int:
    return int(trial.get("hyperparameters", {}).get("finetune/unfreeze_blocks", 0))


def _linear(trial: dict[str, Any]) -> bool:
    return int(trial.get("hyperparameters", {}).get("head/units", 1)) == 0


def _epochs(trial: dict[str, Any], phase: str) -> int:
    return int((trial.get(phase) or {}).get("epochs") or 0)


def _per_epoch(trials: list[dict[str, Any]], phase: str, pick: Any = None) -> float | None:
    """Seconds per epoch of `phase` over the `trials` that `pick` selects."""
    parts = [t[phase] for t in trials if t.get(phase) and (pick is None or pick(t))]
    epochs = sum(p["epochs"] for p in parts)
    return sum(p["seconds"] for p in parts) / epochs if epochs else None


def extrapolate(
    cached: RunResult, nocache: RunResult, bounds: list[dict[str, Any]]
) -> tuple[float, int]:
    """Seconds the no-cache run would have added for the cached run's trials it did not run, and
    how many those are.

    Each such trial costs its own epochs at the no-cache run's seconds per epoch: phase 1 by head
    kind (a linear head's phase 1 is one scoring pass, a dense head's is gradient epochs), phase 2
    by unfreeze depth. A depth the no-cache run never trained is scaled from the nearest one it did
    by the ratio of their full-model steps (`step_bounds`). Every trial also pays the no-cache
    run's mean seconds per trial outside `fit()` (cache-free set-up, scoring, checkpoint,
    KerasTuner's bookkeeping).
    """
    ran = {t["trial_id"] for t in nocache.trials}
    missing = [t for t in cached.trials if t["trial_id"] not in ran]
    if not missing or not nocache.trials:
        return 0.0, 0
    sub = nocache.trials
    any_p1 = _per_epoch(sub, "phase1")
    p1 = {
        kind: _per_epoch(sub, "phase1", lambda t, kind=kind: _linear(t) == kind) for kind in (0, 1)
    }
    p2 = {
        k: v
        for k in {_k(t) for t in sub}
        if (v := _per_epoch(sub, "phase2", lambda t, k=k: _k(t) == k))
    }
    full: dict[int, list[float]] = {}
    for row in bounds:
        if row["phase"] == 2:
            full.setdefault(row["unfreeze_blocks"], []).append(row["full_step_s"])
    full_k = {k: sum(v) / len(v) for k, v in full.items()}  # mean over the head widths
    outside = (nocache.search_s - nocache.training_s) / len(sub)
    total = 0.0
    for trial in missing:
        k = _k(trial)
        per_p2 = p2.get(k)
        if per_p2 is None and p2 and _epochs(trial, "phase2"):
            near = min(p2, key=lambda m: abs(m - k))
            per_p2 = p2[near] * full_k[k] / full_k[near]
        per_p1 = p1.get(int(_linear(trial))) or any_p1 or 0.0
        total += _epochs(trial, "phase1") * per_p1 + _epochs(trial, "phase2") * (per_p2 or 0.0)
        total += outside
    return total, len(missing)


def per_phase(
    cached: RunResult, nocache: RunResult, bounds: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per phase (and unfreeze depth), on the trials both runs trained: the per-epoch ratio the
    two searches measured, beside the bound of the same trials.

    Both are ratios of sums over those trials' epochs. The measured one divides the no-cache
    seconds by the cached seconds; the bound divides the full steps by the cached steps, each
    trial's own models (its head width, its cut) weighted by its epochs. Phase 1 counts dense-head
    trials only: a linear head's phase 1 is a closed-form fit and one scoring pass, not steps.
    """
    steps = _bounds_by_key(bounds)
    ran = {t["trial_id"] for t in nocache.trials}
    mine = [t for t in cached.trials if t["trial_id"] in ran]
    # (phase, unfreeze depth) -> the trials of that group, each with its epochs and its bound row
    groups: dict[tuple[int, int], list[tuple[dict[str, Any], int, dict[str, Any]]]] = {}
    for trial in mine:
        for phase in ("phase1", "phase2"):
            key = _step_key(trial, phase)
            if key is not None and key in steps:
                groups.setdefault(key[:2], []).append((trial, _epochs(trial, phase), steps[key]))
    rows = []
    for (number, k), members in sorted(groups.items()):
        phase = f"phase{number}"
        trials = [trial for trial, _, _ in members]
        epochs = sum(e for _, e, _ in members)
        full = sum(e * row["full_step_s"] for _, e, row in members)
        fast = sum(e * row["cached_step_s"] for _, e, row in members)
        picked = {t["trial_id"] for t in trials}
        pick = lambda t, picked=picked: t["trial_id"] in picked  # noqa: E731
        measured = ratio(_per_epoch(nocache.trials, phase, pick), _per_epoch(mine, phase, pick))
        bound = ratio(full, fast)
        rows.append(
            {
                "phase": number,
                "unfreeze_blocks": k,
                "units": sorted({_units(t) for t in trials}),
                "trials": len(trials),
                "epochs": int(epochs),
                "full_step_s": full / epochs,
                "cached_step_s": fast / epochs,
                "bound": bound,
                "measured": measured,
                "share_of_bound": measured / bound if measured is not None and bound else None,
            }
        )
    return rows


def ideal_ratio(trials: list[dict[str, Any]], bounds: list[dict[str, Any]]) -> float | None:
    """The end-to-end ratio if every epoch cost its step time on both paths and nothing else did:
    each trial's epochs per phase weighted by the full and the cached step of its own models."""
    steps = _bounds_by_key(bounds)
    full = cached = 0.0
    for trial in trials:
        for phase in ("phase1", "phase2"):
            key = _step_key(trial, phase)
            if key is not None and key in steps:
                full += _epochs(trial, phase) * steps[key]["full_step_s"]
                cached += _epochs(trial, phase) * steps[key]["cached_step_s"]
    return ratio(full, cached)


def compare(
    cached: RunResult, nocache: RunResult, bounds: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every number the report shows, as plain data."""
    bounds = bounds or []
    reach_s, reach_trial = cached.time_to_reach(nocache.best)
    own_s, own_trial = nocache.time_to_reach(nocache.best)
    delta = (
        100 * (cached.best - nocache.best)
        if cached.best is not None and nocache.best is not None
        else None
    )

    def side(run: RunResult) -> dict[str, Any]:
        return {
            "wall_s": run.wall_s,
            "prepare_s": run.prepare_s,
            "search_s": run.search_s,
            "trials_s": run.trial_s,
            "between_trials_s": run.search_s - run.trial_s,
            "training_s": run.training_s,
            "outside_training_s": run.wall_s - run.training_s,
            "outside_training_share": (run.wall_s - run.training_s) / run.wall_s,
            "overhead_seconds": run.overhead_s,
            "cache_build_s": run.cache_build_s,
            "cache_build_share": run.cache_build_s / run.wall_s,
            "outside_without_cache_build_share": (run.wall_s - run.training_s - run.cache_build_s)
            / run.wall_s,
            "best_val_accuracy": run.best,
            "phase1_s_per_epoch": run.per_epoch("phase1"),
            "phase2_s_per_epoch": run.per_epoch("phase2"),
            "phase1_epochs": run.phase_totals("phase1")[1],
            "phase2_epochs": run.phase_totals("phase2")[1],
            "trials_completed": sum(t["status"] == "COMPLETED" for t in run.trials),
            "trials": len(run.trials),
        }

    ran = {t["trial_id"] for t in nocache.trials}
    matched = [t for t in cached.trials if t["trial_id"] in ran]
    extra_s, extra_trials = extrapolate(cached, nocache, bounds)
    nocache_wall = nocache.wall_s + extra_s
    speedup = ratio(nocache_wall, cached.wall_s)
    ideal = ideal_ratio(cached.trials, bounds)
    phases = per_phase(cached, nocache, bounds)
    outside = (cached.wall_s - cached.training_s) / cached.wall_s
    return {
        "nocache_extrapolated_trials": extra_trials,
        "nocache_extrapolated_s": extra_s,
        "nocache_wall_s": nocache_wall,
        "ideal_ratio": ideal,
        "share_of_ideal": speedup / ideal if speedup is not None and ideal else None,
        "per_phase": phases,
        "targets": {
            "each phase >= 80% of its bound": bool(phases)
            and all((r["share_of_bound"] or 0) >= BOUND_SHARE_TARGET for r in phases),
            "<= 10% of cached wall outside training": outside <= OUTSIDE_TARGET,
            "end to end >= 80% of the ideal ratio": speedup is not None
            and ideal is not None
            and speedup >= IDEAL_SHARE_TARGET * ideal,
        },
        "cached": side(cached),
        "nocache": side(nocache),
        "speedup_wall": speedup,
        "speedup_search": ratio(nocache_wall - nocache.prepare_s, cached.search_s),
        # On the trials both runs trained (all of them unless --nocache-trials).
        "speedup_phase1_epoch": ratio(nocache.per_epoch("phase1"), _per_epoch(matched, "phase1")),
        "speedup_phase2_epoch": ratio(nocache.per_epoch("phase2"), _per_epoch(matched, "phase2")),
        "accuracy_delta_points": delta,
        "chance_accuracy": 1 / cached.n_classes,
        "cached_time_to_nocache_best_s": reach_s,
        "cached_trial_reaching_nocache_best": reach_trial,
        "nocache_time_to_own_best_s": own_s,
        "nocache_trial_of_own_best": own_trial,
        "speed_target_met": speedup is not None and speedup >= SPEED_TARGET,
        "accuracy_target_met": delta is not None and abs(delta) <= ACCURACY_TARGET,
    }


# --------------------------------------------------------------------------------- rendering


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def build_table(numbers: dict[str, Any], title: str) -> Any:
    """The comparison as a rich `Table` (not printed)."""
    from rich.table import Table

    c, n = numbers["cached"], numbers["nocache"]
    table = Table(
        title=title,
        title_justify="left",
        caption="ratios: no-cache / cached (above 1: cached is faster); Δ: cached - no-cache",
        caption_justify="left",
    )
    table.add_column("measure")
    table.add_column("cached", justify="right")
    table.add_column("no-cache", justify="right")
    table.add_column("no-cache/cached", justify="right")
    extra = numbers["nocache_extrapolated_trials"]
    table.add_row(
        "wall, end to end",
        _s(c["wall_s"]),
        _s(numbers["nocache_wall_s"]) + (" *" if extra else ""),
        _x(numbers["speedup_wall"]),
    )
    if extra:
        table.add_row(
            f"  * no-cache ran {n['trials']} trials: {extra} more extrapolated",
            "",
            f"{_s(n['wall_s'])} + {_s(numbers['nocache_extrapolated_s'])}",
            "",
        )
    table.add_row(
        "  ideal: step bounds x epoch mix",
        "",
        "",
        f"{_x(numbers['ideal_ratio'])} (measured {_pct(numbers['share_of_ideal'])})",
    )
    table.add_row(
        "  prepare: decode, build, init",
        _s(c["prepare_s"]),
        _s(n["prepare_s"]),
        _x(ratio(n["prepare_s"], c["prepare_s"])),
    )
    table.add_row("  search", _s(c["search_s"]), _s(n["search_s"]), _x(numbers["speedup_search"]))
    table.add_row("    between trials", _s(c["between_trials_s"]), _s(n["between_trials_s"]), "")
    table.add_row(
        "training: fit() of both phases",
        _s(c["training_s"]),
        _s(n["training_s"]),
        _x(ratio(n["training_s"], c["training_s"])),
    )
    table.add_row(
        "outside training / wall",
        _pct(c["outside_training_share"]),
        _pct(n["outside_training_share"]),
        "",
    )
    table.add_row(
        "  Workbench.overhead.seconds", _s(c["overhead_seconds"]), _s(n["overhead_seconds"]), ""
    )
    table.add_row(
        "  of which cache builds",
        f"{_s(c['cache_build_s'])} ({_pct(c['cache_build_share'])})",
        "-",
        "",
    )
    table.add_row(
        "  outside, cache builds excluded",
        _pct(c["outside_without_cache_build_share"]),
        _pct(n["outside_without_cache_build_share"]),
        "",
    )
    table.add_row(
        "phase 1 per epoch (mean)",
        _s(c["phase1_s_per_epoch"], 2),
        _s(n["phase1_s_per_epoch"], 2),
        _x(numbers["speedup_phase1_epoch"]),
    )
    table.add_row(
        "phase 2 per epoch (mean)",
        _s(c["phase2_s_per_epoch"], 2),
        _s(n["phase2_s_per_epoch"], 2),
        _x(numbers["speedup_phase2_epoch"]),
    )
    table.add_row(
        "epochs run (phase 1 + phase 2)",
        f"{c['phase1_epochs']} + {c['phase2_epochs']}",
        f"{n['phase1_epochs']} + {n['phase2_epochs']}",
        "",
    )
    table.add_row(
        "trials completed",
        f"{c['trials_completed']}/{c['trials']}",
        f"{n['trials_completed']}/{n['trials']}",
        "",
    )
    delta = numbers["accuracy_delta_points"]
    table.add_row(
        "best val_accuracy",
        _acc(c["best_val_accuracy"]),
        _acc(n["best_val_accuracy"]),
        "-" if delta is None else f"Δ {delta:+.1f} pt",
    )
    reach = numbers["cached_time_to_nocache_best_s"]
    table.add_row(
        "time to reach no-cache best",
        "not reached"
        if reach is None
        else f"{reach:.1f}s (trial {numbers['cached_trial_reaching_nocache_best']})",
        _s(numbers["nocache_time_to_own_best_s"])
        + (
            f" (trial {numbers['nocache_trial_of_own_best']})"
            if numbers["nocache_trial_of_own_best"] is not None
            else ""
        ),
        _x(ratio(numbers["nocache_time_to_own_best_s"], reach)),
    )
    return table


def summary_line(numbers: dict[str, Any]) -> str:
    c, n = numbers["cached"], numbers["nocache"]
    delta = numbers["accuracy_delta_points"]
    reach = numbers["cached_time_to_nocache_best_s"]
    met = {True: "met", False: "NOT met"}
    return (
        f"bench: cached {c['wall_s']:.1f}s vs no-cache {numbers['nocache_wall_s']:.1f}s"
        + (" (extrapolated)" if numbers["nocache_extrapolated_trials"] else "")
        + " end to end = "
        f"{_x(numbers['speedup_wall'])} (target >= {SPEED_TARGET:g}x: "
        f"{met[numbers['speed_target_met']]}); best val_accuracy {_acc(c['best_val_accuracy'])} "
        f"vs {_acc(n['best_val_accuracy'])} = "
        f"{'-' if delta is None else f'{delta:+.1f}'} pt (target within {ACCURACY_TARGET:g} pt: "
        f"{met[numbers['accuracy_target_met']]}; chance {numbers['chance_accuracy']:.3f}); "
        f"cached reached the no-cache best after "
        f"{'never' if reach is None else f'{reach:.1f}s'}; phase-2 epoch "
        f"{_x(numbers['speedup_phase2_epoch'])} faster; outside training "
        f"{_pct(c['outside_training_share'])} cached, {_pct(n['outside_training_share'])} no-cache"
    )


def notes(result: dict[str, Any], numbers: dict[str, Any]) -> list[str]:
    """Caveats a reader needs next to the numbers."""
    out = []
    checks = result["checks"]
    for name, text in (
        ("same_init", "the random init files differ"),
        ("same_trials", "the two runs tried different hyperparameters"),
        ("same_epochs", "the two runs trained different numbers of epochs"),
    ):
        if not checks[name]:
            out.append(f"warning: {text}; the comparison is not like for like")
    gap = checks["max_trial_accuracy_gap"]
    if gap is not None:
        out.append(
            f"per-trial best val_accuracy, cached vs no-cache: largest gap {100 * gap:.1f} pt"
        )
    build = result.get("build_vs_predict") or {}
    if build.get("build_images_per_s") and build.get("predict_images_per_s"):
        out.append(
            f"cache builds: {build['build_images']} images (train + val) in "
            f"{build['build_s']:.1f}s, {build['build_images_per_s']:.1f} img/s for every entry "
            f"(one pass of the backbone, the derived cuts, the writes), against model.predict "
            f"of the backbone at {build['predict_images_per_s']:.1f} img/s: "
            f"{100 * build['build_images_per_s'] / build['predict_images_per_s']:.0f} %"
        )
    chance = numbers["chance_accuracy"]
    bests = [numbers[k]["best_val_accuracy"] for k in ("cached", "nocache")]
    if all(b is not None and b <= chance + 0.05 for b in bests):
        out.append(
            f"note: both best accuracies sit within 5 points of chance ({chance:.3f}): "
            "the accuracy comparison says little"
        )
    return out


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def jsonable(result: dict[str, Any], numbers: dict[str, Any]) -> dict[str, Any]:
    runs = {}
    for key, run in result["runs"].items():
        runs[key] = asdict(run) | {"wall_s": run.wall_s}
    return {
        "settings": result["settings"],
        "checks": result["checks"],
        "numbers": numbers,
        "bounds": result.get("bounds", []),
        "build_vs_predict": result.get("build_vs_predict"),
        "runs": runs,
    }


def speed_case(settings: dict[str, Any], args: argparse.Namespace, work: Path, console: Any) -> Any:
    """One cached-vs-no-cache comparison, printed; returns its JSON-able numbers."""
    if args.data is not None:
        data = args.data
        settings["data"] = str(data)
    else:
        data = make_dataset(work / "data", settings["images"], settings["seed"])
        settings["data"] = f"generated: {settings['images']} images, {len(CLASSES)} classes"
    result = benchmark(settings, work, data, args.verbose)
    numbers = compare(result["runs"]["cached"], result["runs"]["nocache"], result["bounds"])
    cached = result["runs"]["cached"]
    title = (
        f"{settings['backbone']} @{settings['image_size']}px, {cached.train_images}+"
        f"{cached.val_images} images, {cached.n_classes} classes, {settings['oracle']} oracle, "
        f"{settings['max_trials']} trials x ({settings['epochs_head']} head + "
        f"{settings['epochs_finetune']} fine-tune) epochs, batch {settings['batch_size']}, "
        f"seed {settings['seed']}, weights none"
    )
    console.print(build_table(numbers, title))
    console.print(bounds_table(numbers))
    for name, met in numbers["targets"].items():
        console.print(f"target: {name}: {'met' if met else 'NOT met'}", highlight=False)
    for line in notes(result, numbers):
        console.print(line, highlight=False)
    print(summary_line(numbers), flush=True)
    return jsonable(result, numbers)


def memory_case(args: argparse.Namespace, work: Path, console: Any) -> Any:
    """The memory case (`scripts/bench_memory.py`), printed; returns its numbers."""
    import bench_memory

    space = work / "space.toml"
    space.write_text(SPACE_TOML)
    say(
        f"memory case: cached searches on {bench_memory.SIZES} images and a "
        f"{bench_memory.GROWTH_TRIALS}-trial run, one child process each"
    )
    result = bench_memory.memory_case(work / "memory", space, make_dataset, args.seed)
    console.print(bench_memory.memory_table(result))
    for name, met in result["targets"].items():
        console.print(f"target: {name}: {'met' if met else 'NOT met'}", highlight=False)
    return result


def effort_case(args: argparse.Namespace, work: Path, console: Any) -> Any:
    """The effort case (`scripts/bench_effort.py`), printed; returns its numbers."""
    import bench_effort

    result = bench_effort.effort_case(work / "effort", args.quick, say)
    console.print(bench_effort.effort_table(result))
    for run in result["runs"]:
        console.print(bench_effort.trials_table(run))
    for name, met in result["targets"].items():
        console.print(f"target: {name}: {'met' if met else 'NOT met'}", highlight=False)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import tensorflow as tf  # noqa: F401 - imported here so neither run pays for it
    from rich.console import Console

    from tuner.errors import TunerError

    cases: list[str] = []
    if args.all:
        cases = ["small", "large", "memory", "effort"]
    else:
        if args.large:
            cases.append("large")
        if args.memory:
            cases.append("memory")
        if args.effort:
            cases.append("effort")
        cases = cases or ["small"]
    own_work = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tuner-bench-")) if own_work else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    say(f"work dir {work}; cases: {', '.join(cases)}")
    console = Console(width=max(100, Console().width))
    out: dict[str, Any] = {}
    try:
        for case in cases:
            case_started = time.perf_counter()
            if case == "memory":
                out[case] = memory_case(args, work, console)
            elif case == "effort":
                out[case] = effort_case(args, work, console)
            else:
                args.large = case == "large"
                settings = settings_from_args(args)
                out[case] = speed_case(settings, args, work / case, console)
            say(f"{case} case: {time.perf_counter() - case_started:.0f}s")
    except TunerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
        if args.json is not None and out:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(out if len(cases) > 1 else out[cases[0]], indent=2) + "\n"
            )
            say(f"numbers saved to {args.json}")
    say(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
