"""The memory case of `scripts/bench.py`: peak resident memory of a cached search as data grows.

Usage (through bench.py, which generates the images and starts one child process per run):
    python scripts/bench.py --memory

Each run is a child process (`python scripts/bench_memory.py --child ...`) that runs one cached
search and nothing else, and reports its own peak resident set size: the high-water mark of its
address space (VmHWM in /proc/self/status), which starts at exec, so nothing of the parent (the
image generation, earlier runs, the other cases of `bench.py --all`) is counted. `os.wait4`'s
ru_maxrss is not that: Linux carries the high-water mark of the forked parent's memory over exec
into the child's, so after the large case had grown the parent to 6.7 GB, every run of
`bench.py --all` read 6729 MB there. The child also reports its resident memory after every
trial, which shows whether anything grows per trial.

Runs:
    scale     a cached search on SIZES[0] and on SIZES[1] generated images at 224 px with a small
              backbone, the same trials and epochs: the target is peak(20,000) <= 1.5 x
              peak(2,000).
    growth    GROWTH_TRIALS trials on SIZES[0] images in a space of one graph (the head width and
              the unfreeze depth fixed; learning rates and dropout searched): resident memory
              after the last trial against that after trial 2, with the search's own malloc
              set-up (`tuner.runtime.heap`, applied before TensorFlow is imported, as the command line
              does). How far it grows depends on which threads allocated where, so the run is
              repeated GROWTH_RUNS times and the target holds for the largest growth. In a space
              of several graphs, memory also grows by one compiled model per graph the first time
              a trial needs it (`tuner.train.reuse`), then stays.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, Any] = {
    "backbone": "mobilenetv3small",
    "image_size": 224,
    "max_trials": 2,
    "epochs_head": 1,
    "epochs_finetune": 1,
    "batch_size": 32,
}
SIZES = (2000, 20000)
GROWTH_TRIALS = 20
GROWTH_RUNS = 3  # growth varies from run to run; every run must meet the target
RSS_TARGET = 1.5  # peak at SIZES[1] at most this many times the peak at SIZES[0]
GROWTH_SPACE = """\
# Written by scripts/bench_memory.py: one graph (head width and unfreeze depth fixed).
[head.units]
type = "fixed"
value = 128

[finetune.unfreeze_blocks]
type = "fixed"
value = 1
"""
GROWTH_TARGET_MB = 5.0  # "within a few MB": resident memory after the last trial vs trial 2


def _rss_mb() -> float:
    """This process's resident set size now, in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's peak resident set size since exec, in MB (VmHWM, Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(args: argparse.Namespace) -> int:
    """Runs one cached search and writes what it measured to `args.out` (JSON)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tuner.runtime import heap

    heap.limit_arenas()  # before TensorFlow starts its threads, as `python -m tuner.search` does
    from tuner.config import SearchConfig
    from tuner.engine import runner
    from tuner.engine import transfer as engine
    from tuner.engine.spaces import load_space
    from tuner.models.registry import get_backbone

    spec = get_backbone(args.backbone)
    space = load_space(family=spec.family, path=args.space)
    config = SearchConfig(
        data=args.data,
        backbones=(spec.name,),
        project_dir=args.project,
        weights="none",
        image_size=args.image_size,
        space=args.space,
        max_trials=args.max_trials,
        epochs_head=args.epochs_head,
        epochs_finetune=args.epochs_finetune,
        batch_size=args.batch_size,
        patience=0,
        overwrite=True,
        verbose=0,
    )
    after_trial: list[float] = []
    real_end = engine.TransferTuner.on_trial_end

    def on_trial_end(self: Any, trial: Any) -> None:
        real_end(self, trial)
        gc.collect()  # what is retained, not garbage Python has yet to collect
        after_trial.append(_rss_mb())

    engine.TransferTuner.on_trial_end = on_trial_end  # type: ignore[method-assign]
    started = time.perf_counter()
    bench = engine.prepare(config, space)
    after_prepare = _rss_mb()
    tuner = runner._search(bench)
    completed = len(engine.completed_trials(tuner))
    result = {
        "images": len(bench.data.train) + len(bench.data.val),
        "wall_s": time.perf_counter() - started,
        "trials_completed": completed,
        "rss_after_prepare_mb": after_prepare,
        "rss_after_trial_mb": after_trial,
        "peak_rss_mb": _peak_rss_mb(),
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


def run_child(
    data: Path,
    work: Path,
    name: str,
    space: Path,
    settings: dict[str, Any],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Starts one child search and returns what it measured, its peak RSS included."""
    out = work / f"{name}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--data",
        str(data),
        "--project",
        str(work / name),
        "--space",
        str(space),
        "--out",
        str(out),
    ]
    for key, value in settings.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    code = subprocess.run(command, env=os.environ | (env or {}), check=False).returncode
    if code != 0:
        raise SystemExit(f"error: the memory run {name} failed (exit {code})")
    result = json.loads(out.read_text())
    result["name"] = name
    return result


def memory_case(work: Path, space: Path, make_images: Any, seed: int) -> dict[str, Any]:
    """The scale and growth runs; `make_images(folder, n, seed)` writes a generated image set."""
    runs = []
    growth = []
    growth_space = work / "growth.toml"
    growth_space.parent.mkdir(parents=True, exist_ok=True)
    growth_space.write_text(GROWTH_SPACE)
    for n in SIZES:
        folder = make_images(work / f"images-{n}", n, seed)
        runs.append(run_child(folder, work, f"scale-{n}", space, SETTINGS))
        if n == SIZES[0]:
            growth = [
                run_child(
                    folder,
                    work,
                    f"growth-{i + 1}",
                    growth_space,
                    SETTINGS | {"max_trials": GROWTH_TRIALS},
                )
                for i in range(GROWTH_RUNS)
            ]
    small, large = runs
    grew = [_grew(run) for run in growth]
    worst = None if None in grew else max(g for g in grew if g is not None)
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    return {
        "settings": SETTINGS,
        "runs": runs,
        "growth": growth,
        "growth_mb": grew,
        "peak_ratio": ratio,
        "targets": {
            f"peak RSS at {SIZES[1]:,} images <= {RSS_TARGET:g}x that at {SIZES[0]:,}": ratio
            <= RSS_TARGET,
            f"RSS after trial {GROWTH_TRIALS} within {GROWTH_TARGET_MB:g} MB of trial 2, in each "
            f"of {GROWTH_RUNS} runs": worst is not None and worst <= GROWTH_TARGET_MB,
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
    lines = [f"peak ratio {SIZES[1]:,}/{SIZES[0]:,}: {result['peak_ratio']:.2f}x"]
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
    parser = argparse.ArgumentParser(prog="python scripts/bench_memory.py")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--space", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    for key, value in SETTINGS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    return child(parser.parse_args(argv))


if __name__ == "__main__":
    repo = Path(__file__).resolve().parent.parent
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    sys.exit(main())
