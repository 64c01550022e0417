"""The networks: the backbone registry, cut points, preprocessing, the head, the linear probe
and pretrained weights."""

from tuner._lazy import exports

__all__ = [
    "Backbone",
    "LinearHead",
    "build_backbone",
    "convert",
    "describe",
    "fit_linear_head",
    "get_backbone",
    "list_backbones",
    "register_backbone",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "Backbone": "registry",
        "get_backbone": "registry",
        "list_backbones": "registry",
        "register_backbone": "registry",
        "build_backbone": "registry",
        "LinearHead": "probe",
        "fit_linear_head": "probe",
        "convert": "pretrained",
        "describe": "pretrained",
    },
)
