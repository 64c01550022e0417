"""The same distributed search with 1 worker and with 2, side by side on this machine.

    python scripts/bench_distributed.py            # MobileNetV2 at 96 px, 600 images, 8 trials
    python scripts/bench_distributed.py --backbone tiny --image-size 32   # a smoke run

Prints, for each run: the wall time, the chief's idle time (no trial running on any worker), the
trials each worker ran, whether any trial ran twice, and every wait on a shared lock (a cache
entry, or the decoding of the images) next to the build it waited for. Then the ratio of the two
wall times. On 2 CPU cores expect little gain: two workers share the same two cores; the figures
that matter are that no trial runs twice and that no wait outlasts the build it waits for.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import local_cluster  # noqa: E402

LOCK_SLACK_S = 1.0  # a wait may outlast the build by this much (polling, process start)


def make_data(folder: Path, images: int) -> Path:
    from bench import make_dataset

    from tuner.runtime import startup as runtime

    runtime.start()  # the generator uses TensorFlow's JPEG encoder: without its start-up lines
    if not folder.exists():
        make_dataset(folder, images, seed=1)
    return folder


def search_args(args: argparse.Namespace, data: Path, project: Path) -> list[str]:
    flags = [
        "--data",
        str(data),
        "--backbone",
        args.backbone,
        "--weights",
        "none",
        "--max-trials",
        str(args.max_trials),
        "--epochs-head",
        str(args.epochs_head),
        "--epochs-finetune",
        str(args.epochs_finetune),
        "--patience",
        "0",
        "--project-dir",
        str(project),
    ]
    if args.image_size:
        flags += ["--image-size", str(args.image_size)]
    return flags


def run(args: argparse.Namespace, data: Path, work: Path, workers: int) -> dict:
    project = work / f"workers-{workers}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    lock_log = project / "locks.jsonl"
    env = dict(__import__("os").environ, TUNER_LOCK_LOG=str(lock_log))
    cluster = local_cluster.Cluster(search_args(args, data, project), workers, env=env)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/bench_distributed.py", description=__doc__
    )
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs-head", type=int, default=4)
    parser.add_argument("--epochs-finetune", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, help="also save the numbers here")
    parser.add_argument("--work-dir", type=Path, help="default: a temporary folder")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tuner-bench-dist-"))
    data = make_data(work / "data", args.images)
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
