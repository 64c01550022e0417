"""The export: a model that takes raw pixels in three formats, its metadata and model card."""

from tuner._lazy import exports

__all__ = [
    "export_best",
    "model_card",
    "write_export",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "write_export": "formats",
        "export_best": "bundle",
        "model_card": "card",
    },
)
