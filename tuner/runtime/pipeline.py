"""Run an iterator ahead of its consumer, in a thread: the stages of a cache build overlap.

A cache build reads pixels, runs the frozen forward pass and writes what comes out (cast,
checked, hashed). Run one after another, the writes wait for the forward pass and the forward
pass waits for the writes. `ahead` lets a stage produce its next items while the consumer still
works on the last one. TensorFlow's kernels, numpy's casts and copies, hashlib on large buffers
and file writes all release the GIL, so the stages really run at once.

The items are the same, in the same order, as iterating the source directly.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# How often a blocked producer checks whether the consumer has gone.
_POLL_SECONDS = 0.1


def ahead(
    items: Iterable[T],
    depth: int = 2,
    *,
    context: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    name: str = "tuner-ahead",
) -> Iterator[T]:
    """Yields `items` in order while a thread produces up to `depth` more.

    Nothing starts before the first item is asked for. An exception raised while producing is
    raised to the consumer at the item where it happened, with its traceback. When the consumer
    stops early (closes the generator, or an exception goes through it), the thread stops after
    the item it is producing and the source is closed; this waits for that item, so nothing of
    the source runs on after the consumer has moved on.

    Args:
        items: the source; iterated in the thread only.
        depth: how many produced items may wait for the consumer (at least 1).
        context: entered in the thread around the whole iteration, for thread-local state the
            source needs (a `tf.distribute` strategy's scope, for one).
        name: the thread's name.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1. Received: depth={depth}")
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            with context() if context is not None else contextlib.nullcontext():
                for item in source:
                    if not put("item", item):
                        return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put("error", error)
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        put("done", None)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()
