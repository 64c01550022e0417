"""A search spread over processes: the chief's address, the chief, the worker's client, and the
shared folder."""

from tuner._lazy import exports

__all__ = [
    "ChiefStats",
    "WorkerOracle",
    "check_worker_id",
    "parse_address",
    "serve",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "parse_address": "address",
        "check_worker_id": "address",
        "ChiefStats": "chief",
        "serve": "chief",
        "WorkerOracle": "client",
    },
)
