"""The search: the hypermodel and tuner, the oracles, the search spaces, the effort rule and
the run from start to end."""

from tuner._lazy import exports

__all__ = [
    "SearchResult",
    "Space",
    "TransferHyperModel",
    "TransferTuner",
    "execute",
    "make_oracle",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "TransferHyperModel": "transfer",
        "TransferTuner": "transfer",
        "Space": "spaces",
        "SearchResult": "runner",
        "execute": "runner",
        "make_oracle": "oracles",
    },
)
