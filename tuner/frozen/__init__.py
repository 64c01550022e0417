"""The frozen part of the network: activations computed once and cached, and the features
trials derive from them."""

from tuner._lazy import exports

__all__ = [
    "BackboneSession",
    "Features",
    "Overhead",
    "SearchContext",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "BackboneSession": "activations",
        "Features": "features",
        "Overhead": "context",
        "SearchContext": "context",
    },
)
