"""What the parts of one search read and report to: the configuration, the images, the display
and the clock of time spent outside training.

`SearchContext` is made once per process by `tuner.engine.transfer.prepare` and handed to the
frozen backbones (`tuner.frozen.features.Features`); `tuner.train.context.TrialContext` extends it
with what only trials need. Light to import.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tuner.config import SearchConfig
from tuner.data.pixels import SearchData
from tuner.ui.display import SearchDisplay


class Overhead:
    """Seconds a search spends outside training (building, tracing, cache I/O, checkpoints),
    summed over every part that reports it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cache_build_seconds = 0.0  # the part spent building cache entries (frozen passes)
        self._depth = 0

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Adds the time spent inside the `with` block; a block inside another counts once."""
        start = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.seconds += time.perf_counter() - start


@dataclass(frozen=True)
class SearchContext:
    """What every part of one search shares, made once per process."""

    config: SearchConfig
    data: SearchData  # the images, decoded
    display: SearchDisplay  # where progress and messages go
    overhead: Overhead  # seconds outside training, for benchmarks

    def class_weights(self) -> np.ndarray | None:
        """Each class's loss weight under `--class-weight balanced` (`tuner.metrics.class_weights`
        of the training counts), float32; None when the classes are not weighed. Every fit
        applies them: the closed-form linear head, both phases, the refit."""
        if self.config.class_weight != "balanced":
            return None
        from tuner.metrics import class_weights

        counts = list(self.data.train.counts().values())
        return class_weights(counts).astype("float32")

    def sample_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """One weight per row of `labels` (class indices), or None when classes are not weighed."""
        weights = self.class_weights()
        if weights is None:
            return None
        return weights[np.asarray(labels, dtype=int).reshape(-1)]
