"""`tuner.runtime.pipeline.ahead`: the same items in the same order, errors where they happened, and no
thread left running once the consumer has gone."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tuner.runtime.pipeline import ahead


def test_items_come_in_order_produced_in_another_thread():
    where = []

    def source():
        for i in range(50):
            where.append(threading.current_thread().name)
            yield i

    assert list(ahead(source(), depth=3, name="probe")) == list(range(50))
    assert set(where) == {"probe"}
    assert list(ahead([])) == []


def test_nothing_starts_before_the_first_item_is_asked_for():
    started = threading.Event()

    def source():
        started.set()
        yield 1

    items = ahead(source())
    time.sleep(0.2)
    assert not started.is_set()
    assert next(items) == 1
    items.close()


def test_the_producer_runs_at_most_depth_items_ahead():
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield i

    items = ahead(source(), depth=2)
    assert next(items) == 0
    time.sleep(0.3)
    # One handed out, two waiting, and one more held by the producer until a slot frees up.
    assert len(produced) <= 4
    items.close()


def test_an_error_is_raised_at_its_item_with_its_traceback():
    def source():
        yield 1
        yield 2
        raise KeyError("third")

    got = []
    with pytest.raises(KeyError, match="third") as caught:
        for item in ahead(source()):
            got.append(item)
    assert got == [1, 2]
    assert any(entry.name == "source" for entry in caught.traceback)


def test_closing_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()
    produced = []

    def source():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    items = ahead(source(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set(), "the source was closed before close() returned"
    count = len(produced)
    time.sleep(0.2)
    assert len(produced) == count, "nothing ran on after close()"
    assert threading.active_count() == before


def test_an_error_in_the_consumer_stops_the_producer():
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    with pytest.raises(RuntimeError):
        for item in ahead(source()):
            if item == 5:
                raise RuntimeError("consumer failed")
    assert closed.is_set()


def test_the_context_is_entered_in_the_producing_thread():
    state = threading.local()

    @contextlib.contextmanager
    def scope():
        state.inside = True
        try:
            yield
        finally:
            state.inside = False

    def source():
        yield getattr(state, "inside", False)

    assert list(ahead(source(), context=scope)) == [True]
    assert not getattr(state, "inside", False), "not in the consumer's thread"


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be at least 1"):
        next(ahead([1], depth=0))
