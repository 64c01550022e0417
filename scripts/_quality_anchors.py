"""The quality benchmark's two anchors: the seed's fixed recipe, and a linear probe.

(a) `run_recipe`: plain Keras, the full model every epoch: the backbone frozen, a new head
    Dense(512, relu) + the output layer trained with Adam 1e-3, then the last 25% of the backbone's
    layers unfrozen (33 for Xception; BatchNormalization layers stay frozen and the backbone runs
    in inference mode) and trained on with Adam 5e-5. `kind` "/255" scales inputs by 1/255 as the
    seed did; "own-preproc" uses the backbone's own preprocessing (`tuner.models.preprocessing`).
(b) `run_probe`: pooled backbone features (own preprocessing) -> StandardScaler ->
    LogisticRegression(C=1), fit on TRAIN.

Both train on TRAIN only (the recipe shows VAL accuracy for display; nothing selects on it) and
score on TEST.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from scripts._quality_cases import (
    PROBE_BATCH_SIZE,
    PROBE_C,
    PROBE_MAX_ITER,
    RECIPE_BATCH_SIZE,
    RECIPE_FINETUNE_LR,
    RECIPE_HEAD_LR,
    RECIPE_HEAD_UNITS,
    RECIPE_UNFREEZE_FRACTION,
    RECIPE_XCEPTION_UNFREEZE,
    Case,
    Row,
    Settings,
    initial_backbone,
    load_split,
    predicted_classes,
)


def input_layers(kind: str, spec) -> list:
    """The recipe's input scaling: 1/255 as the seed did, or the backbone's own preprocessing."""

    import keras

    from tuner.models.preprocessing import preprocessing_layers

    if kind == "/255":
        return [keras.layers.Rescaling(1.0 / 255, name="rescale_255")]
    return preprocessing_layers(spec.preprocessing)


def unfreeze_count(backbone, name: str) -> int:
    """How many of the backbone's last layers the recipe unfreezes."""
    if name == "xception":
        return RECIPE_XCEPTION_UNFREEZE
    return max(1, round(RECIPE_UNFREEZE_FRACTION * len(backbone.layers)))


def run_recipe(case: Case, weights: str, kind: str, dirs: dict[str, Path], s: Settings) -> Row:
    """Row (a): the recipe with input scaling `kind`, trained on TRAIN, scored on TEST."""

    import keras
    import numpy as np

    from tuner.models.registry import get_backbone

    row = Row(f"recipe {kind}")
    start = time.perf_counter()
    spec = get_backbone(case.backbone)
    train, x_train, y_train = load_split(dirs["train"], case.image_size)
    _, x_val, y_val = load_split(dirs["val"], case.image_size, train.class_names)
    test_start = time.perf_counter()
    _, x_test, y_test = load_split(dirs["test"], case.image_size, train.class_names)
    test_s = time.perf_counter() - test_start
    n_classes = len(train.class_names)

    keras.backend.clear_session()
    backbone = initial_backbone(case, weights)  # seeds first, so the init matches the search's
    backbone.trainable = False
    inputs = keras.Input((case.image_size, case.image_size, 3), name="image")
    x = inputs
    for layer in input_layers(kind, spec):
        x = layer(x)
    x = backbone(x, training=False)  # BatchNorm in inference mode in both phases, as in the guide
    x = keras.layers.Dense(RECIPE_HEAD_UNITS, activation="relu", name="head_dense")(x)
    if n_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="head_output")(x)
        loss = "binary_crossentropy"
    else:
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="head_output")(x)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, outputs)
    fit = {
        "x": x_train,
        "y": y_train,
        "batch_size": RECIPE_BATCH_SIZE,
        "validation_data": (x_val, y_val),  # display only
        "shuffle": True,
        "verbose": 2 if s.verbose else 0,
    }
    model.compile(keras.optimizers.Adam(RECIPE_HEAD_LR), loss=loss, metrics=["accuracy"])
    head = model.fit(epochs=s.head_epochs, **fit)

    n_unfreeze = unfreeze_count(backbone, case.backbone)
    backbone.trainable = True
    for layer in backbone.layers[:-n_unfreeze]:
        layer.trainable = False
    for layer in backbone.layers[-n_unfreeze:]:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    trainable = int(sum(np.prod(w.shape) for w in backbone.trainable_weights))
    model.compile(keras.optimizers.Adam(RECIPE_FINETUNE_LR), loss=loss, metrics=["accuracy"])
    tune = model.fit(epochs=s.head_epochs + s.finetune_epochs, initial_epoch=s.head_epochs, **fit)
    test_start = time.perf_counter()
    predicted = predicted_classes(model.predict(x_test, batch_size=64, verbose=0))
    row.wall_s = time.perf_counter() - start
    test_s += time.perf_counter() - test_start
    row.test_accuracy = float(np.mean(predicted == y_test))
    val_history = head.history["val_accuracy"] + tune.history["val_accuracy"]
    row.val_accuracy = float(val_history[-1])
    row.details = {
        "epochs": [s.head_epochs, s.finetune_epochs],
        "unfrozen_layers": n_unfreeze,
        "backbone_layers": len(backbone.layers),
        "unfrozen_weights": trainable,
        "val_accuracy_per_epoch": [float(v) for v in val_history],
        "train_accuracy_per_epoch": [
            float(v) for v in head.history["accuracy"] + tune.history["accuracy"]
        ],
        "images": [len(y_train), len(y_val), len(y_test)],
        "predicted_counts": np.bincount(predicted, minlength=n_classes).tolist(),
        "test_eval_s": test_s,
        "train_s": row.wall_s - test_s,
    }
    del model, backbone
    gc.collect()
    return row


def features(model, pixels, batch: int = PROBE_BATCH_SIZE):
    """The pooled backbone features of `pixels`."""
    return model.predict(pixels, batch_size=batch, verbose=0)


def run_probe(case: Case, weights: str, dirs: dict[str, Path], s: Settings) -> Row:
    """Row (b): the linear probe on pooled features, fit on TRAIN, scored on TEST."""

    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from tuner.models.registry import get_backbone

    row = Row("linear probe")
    start = time.perf_counter()
    spec = get_backbone(case.backbone)
    train, x_train, y_train = load_split(dirs["train"], case.image_size)
    _, x_val, y_val = load_split(dirs["val"], case.image_size, train.class_names)
    _, x_test, y_test = load_split(dirs["test"], case.image_size, train.class_names)
    keras.backend.clear_session()
    backbone = initial_backbone(case, weights)
    inputs = keras.Input((case.image_size, case.image_size, 3))
    x = inputs
    for layer in input_layers("own", spec):
        x = layer(x)
    extractor = keras.Model(inputs, backbone(x, training=False))
    f_train, f_val, f_test = (features(extractor, p) for p in (x_train, x_val, x_test))
    scaler = StandardScaler().fit(f_train)
    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER)
    probe.fit(scaler.transform(f_train), y_train)
    predicted = probe.predict(scaler.transform(f_test))
    row.test_accuracy = float(np.mean(predicted == y_test))
    row.val_accuracy = float(probe.score(scaler.transform(f_val), y_val))  # display only
    row.wall_s = time.perf_counter() - start
    row.details = {
        "features": int(f_train.shape[1]),
        "train_accuracy": float(probe.score(scaler.transform(f_train), y_train)),
        "iterations": int(max(probe.n_iter_)),
        "predicted_counts": np.bincount(predicted, minlength=len(train.class_names)).tolist(),
    }
    del extractor, backbone
    gc.collect()
    return row
