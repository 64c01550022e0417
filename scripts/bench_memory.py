"""The memory case of `python -m scripts.bench`: peak resident memory of a cached search as data
grows.

Usage (through bench, which generates the images and starts one child process per run):
    python -m scripts.bench --memory            # about 7 minutes on 2 cores
    python -m scripts.bench --memory --quick    # a smoke run: the tiny backbone, few images

Each run is a child process (`python -m scripts.bench_memory --child ...`) that runs one cached
search and nothing else (`_harness.timed_search`), and reports its own peak resident set size: the
high-water mark of its address space (`_harness.peak_rss_mb`, VmHWM), which starts at exec, so
nothing of the parent (the image generation, earlier runs, the other cases of `bench --all`) is
counted. The child also reports its resident memory after every trial, read from the engine's
end-of-trial hook after a `gc.collect()`, which shows whether anything grows per trial.

Runs:
    scale     a cached search on `sizes[0]` and on `sizes[1]` generated images at 224 px with a
              small backbone, the same trials and epochs: the target is peak(20,000) <= 1.5 x
              peak(2,000).
    growth    `growth_trials` trials on `sizes[0]` images in a space of one graph (the head width
              and the unfreeze depth fixed; learning rates and dropout searched): resident memory
              after the last trial against that after trial 2, with the search's own malloc
              set-up (`tuner.runtime.heap`, applied before TensorFlow is imported, as the command
              line does). How far it grows depends on which threads allocated where, so the run is
              repeated `growth_runs` times and the target holds for the largest growth. In a space
              of several graphs, memory also grows by one compiled model per graph the first time
              a trial needs it (`tuner.train.reuse`), then stays.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import _harness

RSS_TARGET = 1.5  # peak at sizes[1] at most this many times the peak at sizes[0]
GROWTH_TARGET_MB = 5.0  # "within a few MB": resident memory after the last trial vs trial 2
GROWTH_SPACE = """\
# Written by python -m scripts.bench --memory: one graph (head width and unfreeze depth fixed).
[head.units]
type = "fixed"
value = 128

[finetune.unfreeze_blocks]
type = "fixed"
value = 1
"""


@dataclass(frozen=True)
class Plan:
    """What the memory case runs."""

    settings: dict[str, Any] = field(
        default_factory=lambda: {
            "backbone": "mobilenetv3small",
            "image_size": 224,
            "max_trials": 2,
            "epochs_head": 1,
            "epochs_finetune": 1,
            "batch_size": 32,
        }
    )
    sizes: tuple[int, int] = (2000, 20000)  # images of the two scale runs
    growth_trials: int = 20
    growth_runs: int = 3  # growth varies from run to run; every run must meet the target


FULL = Plan()
# A smoke run: every step of the case in a minute or two, its figures meaning little.
QUICK = Plan(
    settings={
        "backbone": "tiny",
        "image_size": 64,
        "max_trials": 2,
        "epochs_head": 1,
        "epochs_finetune": 1,
        "batch_size": 32,
    },
    sizes=(60, 240),
    growth_trials=4,
    growth_runs=1,
)


def child(args: argparse.Namespace) -> int:
    """Runs one cached search and writes what it measured to `args.out` (JSON)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tuner.engine.spaces import space_for
    from tuner.runtime import heap

    heap.limit_arenas()  # before TensorFlow starts its threads, as `python -m tuner.search` does
    _harness.start_tensorflow()
    config = _harness.search_config(
        data=args.data,
        backbone=args.backbone,
        project=args.project,
        image_size=args.image_size,
        space=args.space,
        max_trials=args.max_trials,
        epochs_head=args.epochs_head,
        epochs_finetune=args.epochs_finetune,
        batch_size=args.batch_size,
        patience=0,
    )
    after: dict[str, float] = {}
    after_trial: list[float] = []

    def trial_ended(trial_id: str) -> None:
        gc.collect()  # what is retained, not garbage Python has yet to collect
        after_trial.append(_harness.rss_mb())

    run = _harness.timed_search(
        config,
        space_for(config),
        after_prepare=lambda: after.update(prepare=_harness.rss_mb()),
        after_trial=trial_ended,
    )
    result = {
        "images": run.train_images + run.val_images,
        "wall_s": run.wall_s,
        "trials_completed": sum(t["status"] == "COMPLETED" for t in run.trials),
        "rss_after_prepare_mb": after["prepare"],
        "rss_after_trial_mb": after_trial,
        "peak_rss_mb": _harness.peak_rss_mb(),
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


def run_child(data: Path, work: Path, name: str, space: Path, settings: dict[str, Any]) -> Any:
    """Starts one child search and returns what it measured, its peak RSS included."""
    args = ["--child", "--data", str(data), "--project", str(work / name), "--space", str(space)]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    result = _harness.run_child("scripts.bench_memory", args, work / f"{name}.json")
    result["name"] = name
    return result


def memory_case(work: Path, space: Path, seed: int, plan: Plan = FULL) -> dict[str, Any]:
    """The scale and growth runs of `plan`, on generated texture folders."""
    from scripts._datasets import texture_folder

    runs = []
    growth = []
    growth_space = work / "growth.toml"
    growth_space.parent.mkdir(parents=True, exist_ok=True)
    growth_space.write_text(GROWTH_SPACE)
    for n in plan.sizes:
        folder = texture_folder(work / f"images-{n}", n, seed)
        runs.append(run_child(folder, work, f"scale-{n}", space, plan.settings))
        if n == plan.sizes[0]:
            settings = plan.settings | {"max_trials": plan.growth_trials}
            growth = [
                run_child(folder, work, f"growth-{i + 1}", growth_space, settings)
                for i in range(plan.growth_runs)
            ]
    small, large = runs
    grew = [_grew(run) for run in growth]
    worst = None if None in grew else max(g for g in grew if g is not None)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    first, second = plan.sizes
    return {
        "settings": plan.settings,
        "sizes": plan.sizes,
        "runs": runs,
        "growth": growth,
        "growth_mb": grew,
        "peak_ratio": ratio,
        "targets": {
            f"peak RSS at {second:,} images <= {RSS_TARGET:g}x that at {first:,}": ratio
            <= RSS_TARGET,
            f"RSS after trial {plan.growth_trials} within {GROWTH_TARGET_MB:g} MB of trial 2, in "
            f"each of {plan.growth_runs} runs": worst is not None and worst <= GROWTH_TARGET_MB,
        },
    }


def _grew(run: dict[str, Any]) -> float | None:
    """MB of resident memory a growth run gained from trial 2 to its last trial."""
    after = run["rss_after_trial_mb"]
    return after[-1] - after[1] if len(after) >= 2 else None


def memory_table(result: dict[str, Any]) -> Any:
    """The memory case as a rich `Table`."""
    from rich.table import Table

    s = result["settings"]
    table = Table(
        title=f"memory: cached search, {s['backbone']} @{s['image_size']}px, peak RSS of a child "
        "process (its VmHWM)",
        title_justify="left",
    )
    for column in ("run", "images", "trials", "wall", "RSS after prepare", "peak RSS"):
        table.add_column(column, justify="right")
    for run in [*result["runs"], *result["growth"]]:
        table.add_row(
            run["name"],
            f"{run['images']:,}",
            str(run["trials_completed"]),
            f"{run['wall_s']:.0f}s",
            f"{run['rss_after_prepare_mb']:.0f} MB",
            f"{run['peak_rss_mb']:.0f} MB",
        )
    first, second = result["sizes"]
    lines = [f"peak ratio {second:,}/{first:,}: {result['peak_ratio']:.2f}x"]
    for run, grew in zip(result["growth"], result["growth_mb"], strict=True):
        after = run["rss_after_trial_mb"]
        if grew is not None:
            lines.append(
                f"{run['name']}: RSS after trial 2 {after[1]:.1f} MB, after trial {len(after)} "
                f"{after[-1]:.1f} MB ({grew:+.1f} MB)"
            )
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def main(argv: list[str] | None = None) -> int:
    """The child's command line (`--child`): one search, measured; run by `memory_case`."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_memory",
        description="One child run of the memory case; run the case with "
        "`python -m scripts.bench --memory`.",
    )
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--space", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    for key, value in FULL.settings.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    return child(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
