"""Start a distributed search on this machine: a chief and N workers on 127.0.0.1.

    python -m scripts.local_cluster --workers 2 -- --backbone xception --data ./my_images \
        --project-dir runs/x

Everything after `--` is passed to every process's `python -m tuner.search` (the chief adds
`--chief 127.0.0.1:PORT`, each worker `--worker 127.0.0.1:PORT --worker-id wN`). Each process
writes its own log under `PROJECT_DIR/cluster-logs/`; the chief's output (its leaderboard) is
printed at the end. The exit status is the chief's, or the first failing worker's.

Standard library only, and no import of this package: `python -m scripts.bench_distributed` and the
cluster tests start their processes with `Cluster`.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def project_dir(search_args: list[str]) -> Path:
    """The --project-dir in the search's flags (required: every process must share it)."""
    for index, arg in enumerate(search_args):
        if arg == "--project-dir" and index + 1 < len(search_args):
            return Path(search_args[index + 1])
        if arg.startswith("--project-dir="):
            return Path(arg.split("=", 1)[1])
    raise SystemExit("error: pass --project-dir DIR after --: every process must share it")


class Cluster:
    """A chief and its workers, as child processes of this one."""

    def __init__(
        self, search_args: list[str], workers: int, *, port: int | None = None, env=None
    ) -> None:
        self.search_args = list(search_args)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.logs = project_dir(search_args) / "cluster-logs"
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONUNBUFFERED"] = "1"  # each log line appears as it is printed
        self.chief: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.count = workers

    def _start(self, name: str, role_args: list[str]) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("w")
        return subprocess.Popen(
            [sys.executable, "-m", "tuner.search", *self.search_args, *role_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def start(self) -> None:
        """Starts the chief, then the workers."""
        self.chief = self._start("chief", ["--chief", self.address])
        for index in range(1, self.count + 1):
            name = f"w{index}"
            self.workers[name] = self._start(name, ["--worker", self.address, "--worker-id", name])

    def log(self, name: str) -> str:
        """What process `name` ("chief", "w1", ...) printed so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, timeout: float) -> int:
        """Waits for every process; returns the chief's exit status, or a worker's when one
        failed. Kills everything left at `timeout`."""
        deadline = time.monotonic() + timeout
        processes = {"chief": self.chief, **self.workers}
        try:
            for name, process in processes.items():
                assert process is not None
                left = max(1.0, deadline - time.monotonic())
                try:
                    process.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    print(f"local_cluster: {name} still running after {timeout:.0f}s; stopping")
                    raise
        except subprocess.TimeoutExpired:
            self.stop()
            return 124
        codes = {name: process.returncode for name, process in processes.items()}
        failed = [name for name, code in codes.items() if code not in (0, None)]
        return codes[failed[0]] if failed else 0

    def stop(self) -> None:
        """Kills every process still running."""
        for process in [self.chief, *self.workers.values()]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    """Starts the cluster, waits for it and prints the chief's output; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    search_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, search_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m scripts.local_cluster", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="workers to start (default: 2)")
    parser.add_argument("--port", type=int, help="the chief's port (default: a free one)")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before everything is stopped"
    )
    args = parser.parse_args(argv)
    if not search_args:
        parser.error("pass the search's flags after --, with --project-dir DIR")
    cluster = Cluster(search_args, args.workers, port=args.port)
    started = time.perf_counter()
    cluster.start()
    print(
        f"local_cluster: chief on {cluster.address}, {args.workers} workers; logs in "
        f"{cluster.logs}",
        flush=True,
    )
    try:
        code = cluster.wait(args.timeout)
    except KeyboardInterrupt:
        cluster.stop()
        return 130
    print(cluster.log("chief"), end="")
    print(f"local_cluster: done in {time.perf_counter() - started:.1f}s, exit status {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
