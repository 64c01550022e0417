"""The quality benchmark's anchors: the seed's fixed recipe, and two linear probes.

(a) `recipe_row`: plain Keras, the full model every epoch: the backbone frozen, a new head
    Dense(512, relu) + the output layer trained with Adam 1e-3, then the last 25% of the backbone's
    layers unfrozen (33 for Xception; BatchNormalization layers stay frozen and the backbone runs
    in inference mode) and trained on with Adam 5e-5. `kind` "own-preproc" uses the backbone's own
    preprocessing (`tuner.models.preprocessing`); "/255" scales inputs by 1/255 as the seed did.
(b) `probe_rows`: pooled backbone features (own preprocessing) -> StandardScaler -> logistic
    regression, as two rows: C = 1, and C chosen by stratified k-fold cross-validation over the
    package's grid of C (`LogisticRegressionCV`, log-loss). With `case.class_weight` "balanced"
    (the imbalanced case) both use scikit-learn's balanced class weights.

Both fit on TRAIN+VAL, every labelled image, as a user of either would (the search uses VAL to
select); nothing runs on VAL for display, so the recipe's `train_s` is decoding, building and the
two phases of fitting. Both score on TEST.
"""

from __future__ import annotations

import gc
import time
import warnings
from pathlib import Path
from typing import Any

from scripts._quality_cases import (
    PROBE_BATCH_SIZE,
    PROBE_C,
    PROBE_C_GRID,
    PROBE_CV_FOLDS,
    PROBE_MAX_ITER,
    RECIPE_BATCH_SIZE,
    RECIPE_FINETUNE_LR,
    RECIPE_HEAD_LR,
    RECIPE_HEAD_UNITS,
    RECIPE_UNFREEZE_FRACTION,
    RECIPE_XCEPTION_UNFREEZE,
    SEARCH_SEED,
    Case,
    CaseData,
    Row,
    Settings,
    initial_backbone,
    load_case_data,
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


def run_recipe(
    case: Case, weights: str, kind: str, dirs: dict[str, Path], s: Settings, seed: int = SEARCH_SEED
) -> Row:
    """Row (a) from the split folders: decodes them, then `recipe_row`."""
    return recipe_row(case, weights, kind, load_case_data(dirs, case.image_size), s, seed)


def recipe_row(
    case: Case, weights: str, kind: str, data: CaseData, s: Settings, seed: int = SEARCH_SEED
) -> Row:
    """Row (a): the recipe with input scaling `kind`, trained on TRAIN+VAL with seed `seed`,
    scored on TEST. `train_s` counts decoding TRAIN and VAL (`data.fit_decode_s`), building and
    both phases; `wall_s` adds decoding and predicting TEST."""

    import keras
    import numpy as np

    from tuner.models.registry import get_backbone

    row = Row(f"recipe {kind}", seed=seed)
    start = time.perf_counter()
    spec = get_backbone(case.backbone)
    x_fit, y_fit = data.train_val()
    n_classes = data.n_classes

    keras.backend.clear_session()
    backbone = initial_backbone(case, weights, seed)  # seeds first: the search's init and draws
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
        "x": x_fit,
        "y": y_fit,
        "batch_size": RECIPE_BATCH_SIZE,
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
    train_s = time.perf_counter() - start + data.fit_decode_s
    test_start = time.perf_counter()
    probabilities = model.predict(data.test.pixels, batch_size=64, verbose=0)
    test_s = time.perf_counter() - test_start + data.test.seconds
    row.score(probabilities, data.test.labels, n_classes)
    row.wall_s = train_s + test_s
    row.details = {
        "epochs": [s.head_epochs, s.finetune_epochs],
        "unfrozen_layers": n_unfreeze,
        "backbone_layers": len(backbone.layers),
        "unfrozen_weights": trainable,
        "train_accuracy_per_epoch": [
            float(v) for v in head.history["accuracy"] + tune.history["accuracy"]
        ],
        "images": [len(y_fit), len(data.test.labels)],
        "predicted_counts": np.bincount(row.predicted, minlength=n_classes).tolist(),
        "decode_s": data.fit_decode_s,
        "test_eval_s": test_s,
        "train_s": train_s,
    }
    del model, backbone
    gc.collect()
    return row


def features(model, pixels, batch: int = PROBE_BATCH_SIZE):
    """The pooled backbone features of `pixels`."""
    return model.predict(pixels, batch_size=batch, verbose=0)


def probe_features(case: Case, weights: str, data: CaseData, seed: int) -> dict[str, Any]:
    """Pooled features (own preprocessing) of TRAIN+VAL and TEST from the backbone seed `seed`
    starts from, and the seconds they took (decoding included)."""
    import keras

    from tuner.models.registry import get_backbone

    start = time.perf_counter()
    spec = get_backbone(case.backbone)
    keras.backend.clear_session()
    backbone = initial_backbone(case, weights, seed)
    inputs = keras.Input((case.image_size, case.image_size, 3))
    x = inputs
    for layer in input_layers("own", spec):
        x = layer(x)
    extractor = keras.Model(inputs, backbone(x, training=False))
    x_fit, y_fit = data.train_val()
    fit_features = features(extractor, x_fit)
    fit_s = time.perf_counter() - start + data.fit_decode_s
    test_start = time.perf_counter()
    test_features = features(extractor, data.test.pixels)
    test_s = time.perf_counter() - test_start + data.test.seconds
    del extractor, backbone
    gc.collect()
    return {
        "fit": fit_features,
        "labels": y_fit,
        "test": test_features,
        "fit_s": fit_s,
        "test_s": test_s,
        "seed": seed,
    }


def cv_folds(labels) -> int:
    """Stratified folds for the CV probe: PROBE_CV_FOLDS, fewer when the smallest class has
    fewer images (each fold needs one of every class)."""
    import numpy as np

    smallest = int(np.bincount(np.asarray(labels)).min())
    if smallest < 2:
        raise ValueError(f"a class has {smallest} training image(s); cross-validation needs 2")
    return min(PROBE_CV_FOLDS, smallest)


def probe_rows(
    case: Case, data: CaseData, extracted: dict[str, Any], seed: int, reused: bool
) -> list[Row]:
    """Rows (b): the C = 1 probe and the cross-validated one, fit on TRAIN+VAL features with
    seed `seed` (the folds), scored on TEST. `reused`: the features were pooled for an earlier
    seed (a pretrained backbone gives the same features for every seed); the rows' times still
    count their pooling."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scaler = StandardScaler().fit(extracted["fit"])
    x_fit = scaler.transform(extracted["fit"])
    x_test = scaler.transform(extracted["test"])
    y_fit = extracted["labels"]
    shared_s = time.perf_counter() - start + extracted["fit_s"] + extracted["test_s"]
    weight = case.class_weight
    suffix = ", balanced" if weight == "balanced" else ""
    folds = cv_folds(y_fit)
    models = (
        (
            f"linear probe C=1{suffix}",
            LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, class_weight=weight),
        ),
        (
            f"linear probe CV{suffix}",
            LogisticRegressionCV(
                Cs=list(PROBE_C_GRID),
                l1_ratios=(0.0,),
                cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                scoring="neg_log_loss",
                max_iter=PROBE_MAX_ITER,
                class_weight=weight,
                use_legacy_attributes=False,
            ),
        ),
    )
    rows = []
    for name, model in models:
        row = Row(name, seed=seed)
        fit_start = time.perf_counter()
        with warnings.catch_warnings():
            # A weakly regularized fold on separable features stops at max_iter; the folds'
            # log-loss then judges that C like any other.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_fit, y_fit)
        fit_s = time.perf_counter() - fit_start
        row.score(model.predict_proba(x_test), data.test.labels, data.n_classes)
        row.wall_s = shared_s + fit_s
        chosen = getattr(model, "C_", PROBE_C)
        row.details = {
            "features": int(x_fit.shape[1]),
            "C": float(np.ravel(chosen)[0]),
            "folds": folds if name.startswith("linear probe CV") else None,
            "class_weight": weight,
            # Not model.score: LogisticRegressionCV's is its CV scoring (log-loss).
            "train_accuracy": float(np.mean(model.predict(x_fit) == y_fit)),
            "iterations": int(np.max(model.n_iter_)),
            "predicted_counts": np.bincount(row.predicted, minlength=data.n_classes).tolist(),
            "fit_s": fit_s,
            "pooling_s": extracted["fit_s"] + extracted["test_s"],
            "features_reused": reused,
            "train_s": row.wall_s - extracted["test_s"],
        }
        rows.append(row)
    return rows
