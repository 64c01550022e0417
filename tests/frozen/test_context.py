"""Tests for tuner.frozen.context: the overhead clock counts nested blocks once."""

from __future__ import annotations

import time

from tuner.frozen.context import Overhead


def test_overhead_counts_a_block_inside_another_once():
    overhead = Overhead()
    with overhead.timed():
        time.sleep(0.01)
        with overhead.timed():
            time.sleep(0.01)
    once = overhead.seconds
    assert once >= 0.02
    with overhead.timed():
        pass
    assert overhead.seconds >= once and overhead.cache_build_seconds == 0.0
