"""The same distributed search with 1 worker and with 2, side by side on this machine.

    python -m scripts.bench_distributed            # MobileNetV2 at 96 px, 600 images, 8 trials
    python -m scripts.bench_distributed --quick    # a smoke run: tiny backbone, 60 images, 2 trials

Prints, for each run: the wall time, the chief's idle time (no trial running on any worker), the
trials each worker ran, whether any trial ran twice, and every wait on a shared lock (a cache
entry, or the decoding of the images) next to the build it waited for. Then the ratio of the two
wall times. On 2 CPU cores expect little gain: two workers share the same two cores; the figures
that matter are that no trial runs twice and that no wait outlasts the build it waits for.
Every number goes to `--json FILE` (default: scripts/results/bench_distributed[-quick].json).

The images are a `_datasets.texture_folder`; each run is `local_cluster.Cluster` over
`python -m tuner.search` processes (`_harness.cli_flags`), its waits read from the lock log that
`TUNER_LOCK_LOG` asks the cache to write (`tuner.cache.files`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts import _datasets, _harness, _report
from scripts.local_cluster import Cluster

LOCK_SLACK_S = 1.0  # a wait may outlast the build by this much (polling, process start)
QUICK: dict[str, Any] = {
    "backbone": "tiny",
    "image_size": 32,
    "images": 60,
    "max_trials": 2,
    "epochs_head": 1,
    "epochs_finetune": 1,
    "timeout": 600,
}


def search_args(args: argparse.Namespace, data: Path, project: Path) -> list[str]:
    """The `python -m tuner.search` flags every process of a run shares."""
    return _harness.cli_flags(
        data=data,
        backbone=args.backbone,
        weights="none",
        max_trials=args.max_trials,
        epochs_head=args.epochs_head,
        epochs_finetune=args.epochs_finetune,
        patience=0,
        project_dir=project,
        image_size=args.image_size or None,
    )


def run(args: argparse.Namespace, data: Path, work: Path, workers: int) -> dict:
    """One distributed search with `workers` workers: its wall time, who ran what, the waits."""
    project = work / f"workers-{workers}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    lock_log = project / "locks.jsonl"
    env = _harness.child_env({"TUNER_LOCK_LOG": str(lock_log)})
    cluster = Cluster(search_args(args, data, project), workers, env=env)
    started = time.perf_counter()
    cluster.start()
    code = cluster.wait(args.timeout)
    wall = time.perf_counter() - started
    chief = cluster.log("chief")
    idle = re.search(r"idle ([\d.]+)s with no trial running", chief)
    ran = {
        f"w{i}": [
            m.group(1)
            for m in re.finditer(r"trial (\S+)(?: \(\S+\))? done in", cluster.log(f"w{i}"))
        ]
        for i in range(1, workers + 1)
    }
    every = [t for trials in ran.values() for t in trials]
    locks = (
        [json.loads(line) for line in lock_log.read_text().splitlines()]
        if lock_log.exists()
        else []
    )
    builds: dict[str, float] = {}
    for record in locks:
        if record["built"]:
            builds[record["entry"]] = max(builds.get(record["entry"], 0.0), record["held_s"])
    waits = [
        {
            "entry": r["entry"],
            "waited_s": r["waited_s"],
            "build_s": builds.get(r["entry"]),
            "ok": r["waited_s"] <= builds.get(r["entry"], 0.0) + LOCK_SLACK_S,
        }
        for r in locks
        if not r["built"] and r["waited_s"] > 0.05
    ]
    return {
        "workers": workers,
        "exit": code,
        "wall_s": wall,
        "chief_idle_s": float(idle.group(1)) if idle else None,
        "trials_by_worker": ran,
        "trials_run": len(every),
        "ran_twice": sorted({t for t in every if every.count(t) > 1}),
        "builds": {name: round(seconds, 2) for name, seconds in sorted(builds.items())},
        "waits": waits,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m scripts.bench_distributed`."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_distributed",
        description="The same distributed search with 1 worker and with 2 on this machine.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs-head", type=int, default=4)
    parser.add_argument("--epochs-finetune", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    _report.add_json_flag(parser, "bench_distributed")
    parser.add_argument("--work-dir", type=Path, help="default: a temporary folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs both searches, prints them and writes their JSON; exit 1 when a check failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        # --quick sets what the command line left at its default.
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tuner-bench-dist-"))
    _harness.start_tensorflow()  # the images are encoded with TensorFlow: without its start-up
    data = _datasets.texture_folder(work / "data", args.images, seed=1)
    results = [run(args, data, work, workers) for workers in (1, 2)]
    for result in results:
        print(
            f"{result['workers']} worker(s): wall {result['wall_s']:.1f}s, chief idle "
            f"{result['chief_idle_s']}s, {result['trials_run']} trials run "
            f"({', '.join(f'{w}: {len(t)}' for w, t in result['trials_by_worker'].items())}), "
            f"ran twice: {result['ran_twice'] or 'none'}, exit {result['exit']}"
        )
        for wait in result["waits"]:
            print(
                f"  waited {wait['waited_s']:.2f}s for {wait['entry']} "
                f"(its build took {wait['build_s']}s){'' if wait['ok'] else '  <- longer'}"
            )
    one, two = results
    print(f"wall time, 1 worker / 2 workers: {one['wall_s'] / two['wall_s']:.2f}x")
    ok = all(r["exit"] == 0 and not r["ran_twice"] for r in results) and all(
        w["ok"] for r in results for w in r["waits"]
    )
    print(f"no trial ran twice, no wait outlasted its build: {'yes' if ok else 'NO'}")
    result = {"runs": results, "ratio_1_to_2": one["wall_s"] / two["wall_s"], "ok": ok}
    path = _report.result_file(args, "bench_distributed")
    _report.write_result(path, "scripts.bench_distributed", result, argv)
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
