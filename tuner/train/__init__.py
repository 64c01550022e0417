"""One trial's training: both phases, the best epoch, compiled models kept across trials, and
the refit."""

from tuner._lazy import exports

__all__ = [
    "Recorder",
    "TrainingModels",
    "refit_trial",
    "train_trial",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "train_trial": "trial",
        "Recorder": "recorder",
        "TrainingModels": "reuse",
        "refit_trial": "refit",
    },
)
