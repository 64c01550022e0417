"""`tuner.heap`: one malloc arena per core, set before TensorFlow starts its threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only"
)


def _arenas(mode: str) -> int:
    """How many heaps glibc's malloc_info reports after eight threads allocated at once."""
    code = textwrap.dedent(
        """
        import ctypes, os, sys, tempfile, threading
        sys.path.insert(0, os.getcwd())
        if sys.argv[1] == "limit":
            from tuner import heap
            assert heap.limit_arenas(2)
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        barrier = threading.Barrier(8)
        def work():
            barrier.wait()
            for _ in range(50000):
                libc.free(libc.malloc(256))
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        path = tempfile.mktemp()
        stream = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        print(open(path).read().count("<heap nr="))
        os.remove(path)
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    result = subprocess.run(
        [sys.executable, "-c", code, mode],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return int(result.stdout.strip())


def test_limit_arenas_caps_the_arenas_threads_get() -> None:
    """Without the cap, eight threads allocating at once get arenas of their own; with it, at
    most two exist."""
    assert _arenas("limit") <= 2
    assert _arenas("plain") > 2


def test_the_environment_decides_when_it_sets_the_limit(monkeypatch) -> None:
    from tuner import heap

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.limit_arenas() is False


def test_the_command_line_sets_the_limit_before_anything_else(monkeypatch) -> None:
    from tuner import heap, search

    calls = []
    monkeypatch.setattr(heap, "limit_arenas", lambda: calls.append(True) or True)
    assert search.main(["--list-backbones"]) == 0
    assert calls == [True]
