"""A search spread over processes: KerasTuner's chief and workers, and the shared folder."""

from tuner._lazy import exports

__all__ = [
    "ChiefStats",
    "WorkerOracle",
    "parse_address",
    "serve",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "parse_address": "service",
        "ChiefStats": "service",
        "serve": "service",
        "WorkerOracle": "service",
    },
)
