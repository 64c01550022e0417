"""One trial's training: what trials share, both phases, the best epoch, compiled models kept
across trials, and the refit."""

from tuner._lazy import exports

__all__ = [
    "Recorder",
    "TrainingModels",
    "TrialContext",
    "refit_trial",
    "train_trial",
]
__getattr__, __dir__ = exports(
    __name__,
    {
        "train_trial": "trial",
        "Recorder": "recorder",
        "TrainingModels": "reuse",
        "TrialContext": "context",
        "refit_trial": "refit",
    },
)
