"""The shared project folder of a distributed search (`tuner.cluster`): what each process checks
in it before the search, and the locks that keep the processes apart.

- Workers search exactly what the chief serves: a worker waits for the chief's `run.json` and is
  refused when its own settings differ (`check_role`).
- A worker holds `PROJECT_DIR/.workers/<name>.lock` while it runs (`worker_presence`): a second
  worker with the same name is refused, and so is the chief's `--overwrite` (`live_workers`).
- The cache and the pixel store build each entry once under `flock`; a filesystem that cannot
  lock is refused at start (`check_locks`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tuner.config import SearchConfig
from tuner.errors import ConfigError
from tuner.project.layout import RUN_FILE, changed_settings


def check_role(config: SearchConfig, settings: dict[str, Any], say: Callable[[str], None]) -> None:
    """Before a distributed search starts: a worker waits for the chief's run.json and must match
    it; the chief may not `--overwrite` under running workers."""
    if config.role == "worker":
        chief = wait_for_chief(config.project_dir, config.worker_timeout, say)
        changes = changed_settings(chief, settings)
        if changes:
            raise ConfigError(
                f"This worker's settings differ from the chief's: {'; '.join(changes)}. Start "
                "the worker with the chief's flags (--chief HOST:PORT becomes --worker HOST:PORT "
                "--worker-id NAME)."
            )
    elif config.role == "chief" and config.overwrite:
        running = live_workers(config.project_dir)
        if running:
            raise ConfigError(
                f"Workers are running on {config.project_dir} ({', '.join(running)}): "
                "--overwrite would delete the trials under them. Stop them first, or pass "
                "--project-dir DIR for a new search."
            )


WORKERS_DIR = ".workers"  # PROJECT_DIR/.workers/<name>.lock, locked while that worker runs


def check_locks(directory: Any) -> None:
    """Refuses, at start, a shared folder whose filesystem cannot lock files: the cache and the
    pixel store rely on `flock` to build each entry once (docs/design.md §7)."""
    import fcntl
    import tempfile
    from pathlib import Path

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
    except OSError as error:
        raise ConfigError(
            f"{folder} cannot lock files ({error.strerror or error}); a distributed search needs "
            "file locks on the shared --project-dir (NFSv4, or a cluster filesystem mounted with "
            "flock support)."
        ) from error


@contextmanager
def worker_presence(project_dir: Any, worker_id: str) -> Iterator[None]:
    """Holds `.workers/<worker_id>.lock` while a worker runs: the chief's `--overwrite` sees it, and
    a second worker with the same name is refused."""
    import fcntl
    from pathlib import Path

    folder = Path(project_dir) / WORKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{worker_id}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"A worker named {worker_id!r} is already running on {project_dir}; give each "
                "worker its own --worker-id."
            ) from None
        yield
    finally:
        os.close(fd)


def live_workers(project_dir: Any) -> list[str]:
    """The names of the workers running on `project_dir` now (their presence lock is held)."""
    import fcntl
    from pathlib import Path

    live = []
    for path in sorted((Path(project_dir) / WORKERS_DIR).glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live.append(path.stem)
        finally:
            os.close(fd)
    return live


def wait_for_chief(project_dir: Any, timeout: float, say: Callable[[str], None]) -> dict:
    """The chief's run.json, once it is written (a worker may start first)."""
    import json
    from pathlib import Path

    path = Path(project_dir) / RUN_FILE
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ConfigError(
                f"No chief wrote {path} within {timeout:.0f}s; start the chief (--chief HOST:PORT) "
                "with the same --project-dir."
            )
        if not told:
            say(f"waiting for the chief to write {path}")
            told = True
        time.sleep(1.0)
