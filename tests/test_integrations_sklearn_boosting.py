"""fastcarto.sklearn, fastcarto.xgboost, fastcarto.lightgbm, fastcarto.catboost on real models:
the map equals fastcarto.compute on outputs gathered by hand, every example is recorded once per
epoch, training is unchanged, and bad input gets a clear error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import fastcarto
import fastcarto.sklearn
import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest
from helpers import assert_maps_equal, raises
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier

ROUNDS = 50


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def rows_per_epoch(path: Path) -> dict[int, Counter[int]]:
    """(epoch -> id -> how many rows) over every segment of a recording."""
    seen: dict[int, Counter[int]] = {}
    for seg in sorted(path.glob("*.arrows")):
        with pa.OSFile(str(seg)) as f:
            table = pa.ipc.open_stream(f).read_all()
        for epoch, ident in zip(
            table.column("epoch").to_pylist(), table.column("id").to_pylist(), strict=True
        ):
            seen.setdefault(epoch, Counter())[ident] += 1
    return seen


def assert_once_per_epoch(path: Path, n_epochs: int, n: int) -> None:
    seen = rows_per_epoch(path)
    assert sorted(seen) == list(range(n_epochs))
    for counts in seen.values():
        assert set(counts) == set(range(n)) and set(counts.values()) == {1}


# ---------------------------------------------------------------------------------------------
# scikit-learn


def hand_loop(estimator: Any, X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[Any, str, Any]:
    """The same partial_fit loop written out: the estimator, kind and stacked outputs."""
    classes = np.unique(y)
    outs = []
    proba = hasattr(estimator, "predict_proba")
    for _ in range(epochs):
        estimator.partial_fit(X, y, classes=classes)
        outs.append(estimator.predict_proba(X) if proba else estimator.decision_function(X))
    return estimator, "probs" if proba else "logits", np.stack(outs)


@pytest.mark.parametrize(
    ("make", "binary"),
    [
        (lambda: SGDClassifier(loss="log_loss", random_state=0), False),
        (lambda: SGDClassifier(random_state=0), False),  # hinge: decision_function
        (lambda: SGDClassifier(random_state=0), True),  # one score per example
        (lambda: MLPClassifier(hidden_layer_sizes=(16,), random_state=0), False),
    ],
)
def test_fit_epochs_equals_the_hand_loop(
    digits: tuple[np.ndarray, np.ndarray], make: Any, binary: bool, tmp_path: Path
) -> None:
    X, y = digits
    if binary:
        y = np.where(y % 2 == 0, "even", "odd")
    epochs = 4
    theirs, kind, outputs = hand_loop(make(), X, y, epochs)
    ours = make()
    dm = fastcarto.sklearn.fit_epochs(ours, X, y, epochs=epochs, path=tmp_path / "run")
    labels = np.searchsorted(theirs.classes_, y)
    expected = fastcarto.compute(
        outputs[..., None] if outputs.ndim == 2 else outputs, labels, kind=kind
    )
    assert_maps_equal(dm, expected, exact=True)
    assert_maps_equal(fastcarto.compute(tmp_path / "run"), expected, exact=True)
    assert_once_per_epoch(tmp_path / "run", epochs, len(y))
    # Recording changes nothing about training.
    for name in ("coef_", "intercept_", "coefs_", "intercepts_"):
        if hasattr(theirs, name):
            a, b = getattr(theirs, name), getattr(ours, name)
            pairs = zip(a, b, strict=True) if isinstance(a, list) else [(a, b)]
            for x, z in pairs:
                np.testing.assert_array_equal(x, z)


def test_fit_epochs_bad_input(digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, y = digits
    with raises(TypeError, "LogisticRegression has no partial_fit"):
        fastcarto.sklearn.fit_epochs(LogisticRegression(), X, y, epochs=2)
    with raises(TypeError, "maps classifiers"):
        fastcarto.sklearn.fit_epochs(SGDRegressor(), X, y.astype(float), epochs=2)
    with raises(ValueError, "one label per row"):
        fastcarto.sklearn.fit_epochs(SGDClassifier(), X, y[:-1], epochs=2)
    with raises(ValueError, "epochs"):
        fastcarto.sklearn.fit_epochs(SGDClassifier(), X, y, epochs=0)
    # A restarted run does not silently mix with the first one's files.
    run = tmp_path / "run"
    fastcarto.sklearn.fit_epochs(SGDClassifier(random_state=0), X, y, epochs=2, path=run)
    with raises(FileExistsError, "mode='append'", "mode='overwrite'"):
        fastcarto.sklearn.fit_epochs(SGDClassifier(random_state=0), X, y, epochs=2, path=run)
    again = fastcarto.sklearn.fit_epochs(
        SGDClassifier(random_state=0), X, y, epochs=3, path=run, mode="overwrite"
    )
    assert_maps_equal(fastcarto.compute(run), again, exact=True)
    # Resuming: two calls on one estimator give the map of one call with all the epochs.
    est = SGDClassifier(random_state=0)
    fastcarto.sklearn.fit_epochs(est, X, y, epochs=2, path=tmp_path / "resumed")
    resumed = fastcarto.sklearn.fit_epochs(
        est, X, y, epochs=1, path=tmp_path / "resumed", mode="append"
    )
    whole = fastcarto.sklearn.fit_epochs(SGDClassifier(random_state=0), X, y, epochs=3)
    assert_maps_equal(resumed, whole, exact=True)
    assert_once_per_epoch(tmp_path / "resumed", 3, len(y))


# ---------------------------------------------------------------------------------------------
# boosters


def train(lib: str, X: np.ndarray, y: np.ndarray) -> Any:
    if lib == "xgboost":
        import xgboost

        return xgboost.XGBClassifier(n_estimators=ROUNDS, max_depth=2, n_jobs=1).fit(X, y)
    if lib == "lightgbm":
        import lightgbm

        return lightgbm.LGBMClassifier(n_estimators=ROUNDS, num_leaves=4, verbose=-1, n_jobs=1).fit(
            X, y
        )
    import catboost

    return catboost.CatBoostClassifier(
        iterations=ROUNDS, depth=2, verbose=0, thread_count=1, allow_writing_files=False
    ).fit(X, y)


def prefix_margins(lib: str, model: Any, X: np.ndarray, rounds: int) -> np.ndarray:
    """The library's own raw scores of the first ``rounds`` rounds, predicted from scratch."""
    if lib == "xgboost":
        import xgboost

        return model.get_booster().predict(
            xgboost.DMatrix(X), output_margin=True, iteration_range=(0, rounds)
        )
    if lib == "lightgbm":
        return model.booster_.predict(X, num_iteration=rounds, raw_score=True)
    return model.predict(X, prediction_type="RawFormulaVal", ntree_end=rounds)


def module(lib: str) -> Any:
    pytest.importorskip(lib)
    import importlib

    return importlib.import_module(f"fastcarto.{lib}")


LIBS = ["xgboost", "lightgbm", "catboost"]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("binary", [False, True])
def test_booster_map_equals_prefix_predictions(
    digits: tuple[np.ndarray, np.ndarray], lib: str, binary: bool, tmp_path: Path
) -> None:
    mod = module(lib)
    X, y = digits
    if binary:
        y = (y >= 5).astype(np.int64)
    model = train(lib, X, y)
    before = model.predict_proba(X)
    every = 7
    ends = [*range(every, ROUNDS + 1, every), ROUNDS]
    dm = mod.datamap(model, X, y, every=every, path=tmp_path / "run")
    margins = np.stack([prefix_margins(lib, model, X, r) for r in ends]).astype(np.float64)
    if margins.ndim == 2:
        margins = margins[..., None]
    expected = fastcarto.compute(margins, y, kind="logits")
    # Accumulated per-round contributions vs prefixes predicted from scratch: float32 rounding.
    assert_maps_equal(dm, expected, rtol=1e-4, atol=1e-5)
    assert_maps_equal(fastcarto.compute(tmp_path / "run"), dm, exact=True)
    assert_once_per_epoch(tmp_path / "run", len(ends), len(y))
    np.testing.assert_array_equal(model.predict_proba(X), before)


@pytest.mark.parametrize("lib", LIBS)
def test_booster_bad_input(digits: tuple[np.ndarray, np.ndarray], lib: str, tmp_path: Path) -> None:
    mod = module(lib)
    X, y = digits
    model = train(lib, X[:, :40], y)
    # A booster trained on other data.
    with raises(ValueError, "trained on 40 features but X has 64"):
        mod.datamap(model, X, y)
    other = np.where(y == 9, 10, y)
    with raises(ValueError, "label 10", "not one of the 10 classes"):
        mod.datamap(model, X[:, :40], other)
    with raises(ValueError, "every"):
        mod.datamap(model, X[:, :40], y, every=0)
    with raises(TypeError, "expected"):
        mod.datamap(SGDClassifier(), X[:, :40], y)
    mod.datamap(model, X[:, :40], y, every=10, path=tmp_path / "run")
    with raises(FileExistsError, "mode='overwrite'"):
        mod.datamap(model, X[:, :40], y, every=10, path=tmp_path / "run")
    with raises(ValueError, "mapped whole"):
        mod.datamap(model, X[:, :40], y, every=10, path=tmp_path / "run", mode="append")


@pytest.mark.parametrize("lib", LIBS)
def test_booster_regression_refused(digits: tuple[np.ndarray, np.ndarray], lib: str) -> None:
    mod = module(lib)
    X, y = digits
    if lib == "xgboost":
        import xgboost

        model: Any = xgboost.XGBRegressor(n_estimators=3).fit(X, y)
    elif lib == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y)
    else:
        import catboost

        model = catboost.CatBoostRegressor(iterations=3, verbose=0, allow_writing_files=False)
        model.fit(X, y)
    with raises((ValueError, TypeError), "classifier"):
        mod.datamap(model, X, y)
