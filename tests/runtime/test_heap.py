"""`tuner.runtime.heap`: one malloc arena, set before TensorFlow starts its threads."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.helpers import python_env, run_python

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only"
)


def _arenas(mode: str) -> int:
    """How many heaps glibc's malloc_info reports after eight threads allocated at once."""
    code = textwrap.dedent(
        """
        import ctypes, os, sys, tempfile, threading
        if sys.argv[1] != "plain":
            from tuner.runtime import heap
            assert heap.limit_arenas(2 if sys.argv[1] == "two" else None)
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
    result = run_python("-c", code, mode, check=True, env=python_env(MALLOC_ARENA_MAX=None))
    return int(result.stdout.strip())


def test_limit_arenas_caps_the_arenas_threads_get() -> None:
    """Without the cap, eight threads allocating at once get arenas of their own; with a cap of
    two, at most two exist; by default, one: the main arena."""
    assert _arenas("plain") > 2
    assert _arenas("two") <= 2
    assert _arenas("default") == 1


def test_the_environment_decides_when_it_sets_the_limit(monkeypatch) -> None:
    from tuner.runtime import heap

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.limit_arenas() is False


def test_the_command_line_sets_the_limit_before_anything_else(monkeypatch) -> None:
    from tuner import search
    from tuner.runtime import heap

    calls = []
    monkeypatch.setattr(heap, "limit_arenas", lambda: calls.append(True) or True)
    assert search.main(["--list-backbones"]) == 0
    assert calls == [True]


def test_trim_hands_the_freed_pages_back_to_the_system() -> None:
    """Freed blocks between live ones stay resident until `trim`: it gives their pages back."""
    code = textwrap.dedent(
        """
        import ctypes, os, sys
        from tuner.runtime import heap
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        def rss_mb():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        size = 100_000  # under glibc's mmap threshold: the blocks come from the arena
        blocks, keep = [], []
        for _ in range(1000):
            blocks.append(libc.malloc(size))
            ctypes.memset(blocks[-1], 1, size)  # resident
            keep.append(libc.malloc(64))  # a live block after each: nothing to shrink at the top
        for block in blocks:
            libc.free(block)
        freed = rss_mb()
        assert heap.trim()
        print(freed - rss_mb())
        """
    )
    result = run_python("-c", code, check=True, env=python_env(MALLOC_ARENA_MAX=None))
    assert float(result.stdout) > 50  # of the 95 MB freed


def test_every_trial_ends_with_a_trim(monkeypatch, search_config, searched) -> None:
    from tuner.runtime import heap

    calls = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(True) or True)
    searched(search_config(max_trials=2))
    assert len(calls) == 2
