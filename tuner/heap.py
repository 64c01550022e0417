"""One malloc arena per core, so resident memory stays flat over a long search.

glibc's malloc gives each new thread that allocates an arena of its own (and another to a thread
that finds its arena locked), up to 8 per core on 64-bit systems, and memory freed in an arena
stays there for reuse. TensorFlow's thread pools, tf.data and the decoders allocate from many
threads, so over a search more and more arenas each hold partly used pages: resident memory
climbed by about 20 MB over 20 trials of one graph, with nothing kept by the search
(docs/design.md §1). `malloc_trim` cannot hand those pages back, since each still holds live
blocks. With one arena per core the same run grows by 1-4 MB.

`limit_arenas` sets that limit with `mallopt(M_ARENA_MAX)`. glibc fixes its arena limit once,
when more than 8 arenas exist unless `mallopt` set it before (docs/design.md §1), so this must
run early: `python -m tuner.search` calls it before importing TensorFlow, and
`tuner.engine.prepare` again for callers that start a search from Python. A `MALLOC_ARENA_MAX`
set in the environment wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int | None = None) -> bool:
    """Caps glibc's malloc arenas at `arenas` (default: one per core).

    Returns:
        Whether the cap was set: False where the C library is not glibc, or where the
        environment's MALLOC_ARENA_MAX already decides.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    count = arenas if arenas is not None else max(1, len(os.sched_getaffinity(0)))
    return mallopt(M_ARENA_MAX, count) == 1
