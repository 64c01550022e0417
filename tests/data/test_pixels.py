"""Tests for tuner.data.pixels: the staging files of decoded pixels."""

from __future__ import annotations

import os
import subprocess
import sys

from tuner.data.pixels import STAGING, sweep_staging


def test_a_killed_process_s_staging_file_is_removed_by_the_next_and_no_other(tmp_path):
    """A process killed while it decoded (SIGKILL, out of memory) leaves its staging file; the
    next decode removes it, and leaves the files of running processes and of older versions."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    dead = tmp_path / f"{STAGING}{int(gone.stdout)}-32-abc123.tmp"
    alive = tmp_path / f"{STAGING}{os.getpid()}-32-def456.tmp"
    older = tmp_path / f"{STAGING}32-ghi789.tmp"  # no process id: not ours to judge
    other = tmp_path / "someone-else-1-2.tmp"
    for path in (dead, alive, older, other):
        path.write_bytes(b"\0" * 16)
    assert sweep_staging(str(tmp_path)) == [dead]
    assert not dead.exists() and alive.exists() and older.exists() and other.exists()
