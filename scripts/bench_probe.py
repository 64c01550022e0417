"""The linear head's cost: C chosen by k-fold on the training features against the old grid.

`tuner.models.probe.fit_linear_head` chooses C by stratified k-fold log-loss on the training
features, with warm starts along the C path, then refits. Before issue 25 the probe fitted one
logistic regression per C on the training features and kept the best on the validation set
(`grid_on_validation` below, the same code). The new way must not cost more. Both run here on the
same features, alternately, `--repeats` times; the medians and their ratio are printed.

The features are those of the issue's figure: 1,348 training images of the ten classes of
`sklearn.datasets.load_digits()` (449 held out: the old grid's validation set, and where both heads
are scored for information), each glyph drawn as the quality benchmark draws it
(`scripts._datasets.draw_digit`) at 48 px, through a random-init MobileNetV2 (1,280 pooled
features), standardized with the training rows' statistics. `--synthetic` uses Gaussian features of
the same shape instead (no TensorFlow).

    python -m scripts.bench_probe                 # 1.5 minutes on 2 cores
    python -m scripts.bench_probe --synthetic --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np

from scripts import _report

NAME = "bench_probe"
TRAIN_IMAGES = 1348
N_CLASSES = 10
IMAGE_SIZE = 48
SEED = 0


def digit_features(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooled random-init MobileNetV2 features of the drawn digits: train and held-out rows."""
    import keras
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from scripts._datasets import draw_digit
    from tuner.frozen.activations import with_preprocessing
    from tuner.models.registry import build_backbone, get_backbone

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pixels = np.stack(
        [
            tf.image.resize(draw_digit(glyph, rng), (IMAGE_SIZE, IMAGE_SIZE)).numpy()
            for glyph in digits.images
        ]
    )
    keras.utils.set_random_seed(seed)
    spec = get_backbone("mobilenetv2")
    model = with_preprocessing(build_backbone(spec, IMAGE_SIZE, None), spec, IMAGE_SIZE)
    features = model.predict(pixels, batch_size=128, verbose=0).astype("float64")
    train, held, y_train, y_held = train_test_split(
        features, digits.target, train_size=TRAIN_IMAGES, stratify=digits.target, random_state=seed
    )
    return train, y_train, held, y_held


def synthetic_features(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian class clusters of the same shape, through a ReLU like pooled features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLASSES, 1280)) * 0.1
    y = rng.integers(0, N_CLASSES, TRAIN_IMAGES + 449)
    x = np.maximum(centres[y] + rng.normal(size=(len(y), 1280)), 0.0)
    return x[:TRAIN_IMAGES], y[:TRAIN_IMAGES], x[TRAIN_IMAGES:], y[TRAIN_IMAGES:]


def grid_on_validation(train, y_train, val, y_val) -> dict[str, Any]:
    """The probe before issue 25: one cold fit per C of `C_GRID` on the training rows, the best
    on validation kept (accuracy, ties to the lower log-loss)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from tuner.models.probe import C_GRID

    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train, y_train)
        accuracy, loss = _scores(model.predict_proba(val), y_val)
        if best is None or (-accuracy, loss) < best[0]:
            best = ((-accuracy, loss), c)
    assert best is not None
    return {"C": best[1]}


def _scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    return float(np.mean(p.argmax(axis=1) == labels)), float(loss)


def _held_out(kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray):
    logits = x @ kernel.astype("float64") + bias
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return _scores(p, y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--synthetic", action="store_true", help="Gaussian features, no backbone")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        metavar="N",
        help="limit NumPy's BLAS to N threads for both (default: as the process starts); on a "
        "shared machine 1 keeps the timings stable",
    )
    _report.add_json_flag(parser, NAME)
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression

    from tuner.models.probe import fit_linear_head

    started = time.perf_counter()
    make = synthetic_features if args.synthetic else digit_features
    train, y_train, held, y_held = make(SEED)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    train, held = (train - mean) / std, (held - mean) / std
    print(
        f"features: {train.shape[0]} train x {train.shape[1]} ({N_CLASSES} classes), "
        f"{len(held)} held out; {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )

    from threadpoolctl import threadpool_limits

    old_s, new_s = [], []
    old = new = None
    limit = threadpool_limits(args.blas_threads, user_api="blas") if args.blas_threads else None
    for _ in range(args.repeats):
        t = time.perf_counter()
        old = grid_on_validation(train, y_train, held, y_held)
        old_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        new = fit_linear_head(train, y_train, N_CLASSES)
        new_s.append(time.perf_counter() - t)
    if limit is not None:
        limit.restore_original_limits()
    assert old is not None and new is not None

    reference = LogisticRegression(C=old["C"], max_iter=2000).fit(train, y_train)
    old_scores = _scores(reference.predict_proba(held), y_held)
    new_scores = _held_out(new.kernel, new.bias, held, y_held)
    result = {
        "features": "synthetic" if args.synthetic else "digits, MobileNetV2 random init, 48 px",
        "shape": [int(train.shape[0]), int(train.shape[1]), N_CLASSES],
        "held_out": len(held),
        "repeats": args.repeats,
        "blas_threads": args.blas_threads,
        "grid_on_validation": {
            "seconds": old_s,
            "median_s": statistics.median(old_s),
            "C": old["C"],
            "held_out_accuracy": old_scores[0],
            "held_out_loss": old_scores[1],
        },
        "kfold_on_train": {
            "seconds": new_s,
            "median_s": statistics.median(new_s),
            "C": new.C,
            "cv_loss": new.cv_loss,
            "held_out_accuracy": new_scores[0],
            "held_out_loss": new_scores[1],
        },
    }
    ratio = statistics.median(new_s) / statistics.median(old_s)
    result["ratio"] = ratio
    print(
        f"grid on validation (5 fits):  {_report.seconds(statistics.median(old_s))}  "
        f"C={old['C']:g}  held-out accuracy {old_scores[0]:.4f}, log-loss {old_scores[1]:.4f}"
    )
    print(
        f"k-fold on train (warm path):  {_report.seconds(statistics.median(new_s))}  "
        f"C={new.C:g}  cv log-loss {new.cv_loss:.4f}; held-out accuracy {new_scores[0]:.4f}, "
        f"log-loss {new_scores[1]:.4f}"
    )
    print(f"ratio k-fold / grid: {_report.times(ratio)} (median of {args.repeats})")
    targets = {"the k-fold costs no more than the grid": ratio <= 1.0}
    result["targets"] = targets
    _report.print_targets(_report.make_console(80), targets)
    _report.write_result(_report.result_file(args, NAME), "scripts.bench_probe", result, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
