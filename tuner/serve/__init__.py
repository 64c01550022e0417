"""The export: a model that takes raw pixels in three formats, its metadata and model card.

`export_trial` is the one way a trial becomes an export folder: the end of a search and
`python -m tuner.export` both go through it.
"""

from tuner._lazy import exports

__all__ = [
    "export_trial",
    "model_card",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "export_trial": "bundle",
        "model_card": "card",
    },
)
