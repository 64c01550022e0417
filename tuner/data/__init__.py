"""From image folders to pixels: scanning, decoding, the demo dataset and the decoded store."""

from tuner._lazy import exports

__all__ = [
    "ImageSet",
    "SearchData",
    "demo_dataset",
    "prepare_data",
    "scan",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "ImageSet": "folders",
        "scan": "folders",
        "demo_dataset": "demo",
        "SearchData": "pixels",
        "prepare_data": "pixels",
    },
)
