"""One malloc arena, trimmed after every trial, so resident memory stays flat over a search.

glibc's malloc gives each new thread that allocates an arena of its own (and another to a thread
that finds its arena locked), up to 8 per core on 64-bit systems, and memory freed in an arena
stays there, resident, for reuse. TensorFlow's thread pools, tf.data and the decoders allocate
from many threads, so over a search more and more arenas each hold partly used pages: resident
memory climbed by about 20 MB over 20 trials of one graph, with nothing kept by the search.

Two things keep it flat (docs/design.md §1 gives the runs):
- `limit_arenas` caps malloc at one arena, with `mallopt(M_ARENA_MAX)`. glibc fixes its arena
  limit once, when more than 8 arenas exist unless `mallopt` set it before, and a thread keeps
  the arena it was given, so this must run early: `python -m tuner.search` calls it before
  importing TensorFlow, and `tuner.engine.transfer.prepare` again for callers that start a search from
  Python. A `MALLOC_ARENA_MAX` set in the environment wins: on a machine with many cores, where
  one arena may become a point of contention, `MALLOC_ARENA_MAX=<cores>` gives one per core.
- `trim` runs `malloc_trim(0)` after every trial. Even in one arena, which free chunks each trial
  reuses varies, so over the trials more of the arena's free pages become resident (its size and
  the bytes in use stayed the same while resident memory grew 0.6-11.4 MB over 18 trials).
  `malloc_trim` hands the free pages back to the system, in 1.3-5.5 ms.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 1  # the default cap; measured against one per core in docs/design.md §1


def _libc(name: str, argtypes: list[Any]) -> Any:
    """The C library's function `name` with its argument types set, or None where it has none
    (not Linux, or not glibc)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)  # the C library already in this process
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def limit_arenas(arenas: int | None = None) -> bool:
    """Caps glibc's malloc arenas at `arenas`.

    Args:
        arenas: the most arenas malloc may use. Defaults to `ARENAS` (one).

    Returns:
        Whether the cap was set: False where the C library is not glibc, or where the
        environment's MALLOC_ARENA_MAX already decides.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc("mallopt", [ctypes.c_int, ctypes.c_int])
    count = arenas if arenas is not None else ARENAS
    return mallopt is not None and mallopt(M_ARENA_MAX, count) == 1


def trim() -> bool:
    """Hands the free pages of malloc's arenas back to the system (glibc's `malloc_trim(0)`).

    Returns:
        Whether glibc released any memory: False also where the C library is not glibc.
    """
    malloc_trim = _libc("malloc_trim", [ctypes.c_size_t])
    return malloc_trim is not None and malloc_trim(0) == 1
