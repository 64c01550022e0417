"""Benchmark the cached path against `--no-cache`: the same search twice, side by side.

Usage:
    python -m scripts.bench                   # Xception @96px, 300 images, 5 trials (4-5 min)
    python -m scripts.bench --quick           # tiny backbone @64px, 2 trials (under a minute)
    python -m scripts.bench --large           # Xception @128px, 2,000 images, 8 trials
    python -m scripts.bench --memory          # peak RSS as data grows (scripts/bench_memory.py)
    python -m scripts.bench --effort          # time to quality (scripts/bench_effort.py)
    python -m scripts.bench --all             # the four cases in one run

Every number goes to `--json FILE` (default: scripts/results/bench[-CASES][-quick].json).

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

This module is the command line over the cases; the speed case's runs are in `_speed_runs`, its
step bounds in `_speed_bounds`, its figures in `_speed_numbers` and its tables in `_speed_tables`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts import _datasets, _harness, _report
from scripts._speed_runs import SPACE_TOML, benchmark, say

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
CLASSES = 3  # the demo's textures (`_datasets.texture_folder`)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m scripts.bench`."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=(
            "Run the same search with the activation cache and with --no-cache, and compare "
            "wall time, best val accuracy, time to reach the no-cache best, phase-2 epoch time "
            "and time outside training."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: tiny backbone at 64px, 120 images, 2 trials (with --memory or "
        "--effort: their smoke runs)",
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
        "(scripts/bench_effort.py)",
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
        help=f"synthetic images to generate, over {CLASSES} classes "
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
    _report.add_json_flag(parser, "bench[-CASES]")
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


def settings_from_args(args: argparse.Namespace, large: bool) -> dict[str, Any]:
    """The benchmark settings: the issue's defaults, `--quick` or the large case over them,
    explicit flags last."""
    settings = dict(DEFAULTS) | {"nocache_trials": None}
    if args.quick:
        settings.update(QUICK)
    if large:
        settings.update(LARGE)
    if args.nocache_trials is not None:
        settings["nocache_trials"] = args.nocache_trials
    for name in DEFAULTS:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value.lower() if isinstance(value, str) else value
    settings.update(oracle=args.oracle.lower(), seed=args.seed, batch_size=args.batch_size)
    if settings["images"] < 5 * CLASSES:
        raise SystemExit(
            f"error: --images must be >= {5 * CLASSES} (a few per class and "
            f"split). Received: images={settings['images']}"
        )
    return settings


def speed_case(settings: dict[str, Any], args: argparse.Namespace, work: Path, console: Any) -> Any:
    """One cached-vs-no-cache comparison, printed; returns its JSON-able numbers."""
    from scripts._speed_numbers import compare
    from scripts._speed_tables import bounds_table, build_table, jsonable, notes, summary_line

    if args.data is not None:
        data = args.data
        settings["data"] = str(data)
    else:
        data = _datasets.texture_folder(work / "data", settings["images"], settings["seed"])
        settings["data"] = f"generated: {settings['images']} images, {CLASSES} classes"
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
    _report.print_targets(console, numbers["targets"])
    for line in notes(result, numbers):
        console.print(line, highlight=False)
    print(summary_line(numbers), flush=True)
    return jsonable(result, numbers)


def memory_case(args: argparse.Namespace, work: Path, console: Any) -> Any:
    """The memory case (`scripts/bench_memory.py`), printed; returns its numbers."""
    from scripts import bench_memory

    space = work / "space.toml"
    space.write_text(SPACE_TOML)
    plan = bench_memory.QUICK if args.quick else bench_memory.FULL
    say(
        f"memory case: cached searches on {plan.sizes} images and a "
        f"{plan.growth_trials}-trial run, one child process each"
    )
    result = bench_memory.memory_case(work / "memory", space, args.seed, plan)
    console.print(bench_memory.memory_table(result))
    _report.print_targets(console, result["targets"])
    return result


def effort_case(args: argparse.Namespace, work: Path, console: Any) -> Any:
    """The effort case (`scripts/bench_effort.py`), printed; returns its numbers."""
    from scripts import bench_effort

    result = bench_effort.effort_case(work / "effort", args.quick)
    console.print(bench_effort.effort_table(result))
    for run in result["runs"]:
        console.print(bench_effort.trials_table(run))
    _report.print_targets(console, result["targets"])
    return result


def cases_from_args(args: argparse.Namespace) -> list[str]:
    """The cases to run, in order."""
    if args.all:
        return ["small", "large", "memory", "effort"]
    cases = [case for case in ("large", "memory", "effort") if getattr(args, case)]
    return cases or ["small"]


def result_name(args: argparse.Namespace, cases: list[str]) -> str:
    """The JSON result's name: bench, bench-large, bench-memory-effort, ..., or bench-all."""
    if args.all:
        return "bench-all"
    return "bench" if cases == ["small"] else "bench-" + "-".join(cases)


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen cases, prints them and writes their JSON; returns the exit status."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    _harness.start_tensorflow()  # imported here so that neither run pays for it
    from tuner.errors import TunerError

    cases = cases_from_args(args)
    own_work = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tuner-bench-")) if own_work else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    say(f"work dir {work}; cases: {', '.join(cases)}")
    console = _report.make_console(100)
    out: dict[str, Any] = {}
    try:
        for case in cases:
            case_started = time.perf_counter()
            if case == "memory":
                out[case] = memory_case(args, work, console)
            elif case == "effort":
                out[case] = effort_case(args, work, console)
            else:
                settings = settings_from_args(args, large=case == "large")
                out[case] = speed_case(settings, args, work / case, console)
            say(f"{case} case: {time.perf_counter() - case_started:.0f}s")
    except TunerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
        if out:
            result = out if len(cases) > 1 else out[cases[0]]
            path = _report.result_file(args, result_name(args, cases))
            _report.write_result(path, "scripts.bench", result, argv)
    say(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
