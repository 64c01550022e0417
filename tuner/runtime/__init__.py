"""Running in one process: TensorFlow started quietly, one malloc arena, stages that overlap."""

from tuner._lazy import exports

__all__ = [
    "ahead",
    "limit_arenas",
    "start",
    "trim",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "start": "startup",
        "limit_arenas": "heap",
        "trim": "heap",
        "ahead": "pipeline",
    },
)
