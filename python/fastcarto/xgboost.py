"""Training dynamics of an XGBoost classifier: its boosting rounds as epochs.

>>> import numpy as np, xgboost, fastcarto.xgboost
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
>>> model = xgboost.XGBClassifier(n_estimators=20, max_depth=2).fit(X, y)
>>> dm = fastcarto.xgboost.datamap(model, X, y, every=5)
>>> len(dm), int(dm.to_pandas()["n_epochs"].max())
(80, 4)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ._datamap import DataMap
from ._epochs import (
    accumulated,
    boosting_map,
    check_every,
    check_features,
    epoch_ends,
    fitted_classes,
    n_rows,
)
from ._recorder import Mode

__all__ = ["datamap"]


def datamap(
    model: Any,
    X: Any,
    y: Any,
    *,
    every: int = 1,
    path: str | os.PathLike[str] | None = None,
    mode: Mode = "create",
) -> DataMap:
    """The map of a trained XGBoost classifier on its training data, each ``every`` boosting
    rounds one epoch (the last epoch ends at the last round).

    The outputs are the raw margins (``kind="logits"``) after each epoch's rounds. They are
    accumulated: each epoch predicts only its own rounds (``iteration_range=(start, stop)`` on a
    matrix whose ``base_margin`` is zero) and adds them, in float64, to the previous epoch's
    margins, so mapping ``R`` rounds costs one prediction of every tree rather than ``R``
    predictions of growing prefixes. The intercept (``base_score``) is added once. The sums
    equal XGBoost's own prefix predictions up to float32 rounding (about 1e-6).

    Parameters
    ----------
    model:
        An ``xgboost.XGBClassifier`` or a ``Booster`` with a ``binary:`` or ``multi:``
        objective and tree boosters.
    X, y:
        The data to map (the training data) and its labels (``model.classes_`` values for a
        classifier, ``0..classes-1`` for a ``Booster``).
    every:
        Boosting rounds per epoch.
    path:
        Also record the margins to this directory through :class:`fastcarto.Recorder`.
    mode:
        The recorder's ``mode``.
    Returns
    -------
    DataMap
        One row per row of ``X``; ``n_epochs`` is the number of epochs of ``every`` rounds.

    Raises
    ------
    TypeError
        A model of another kind, or ``X`` given as a ``DMatrix``.
    ValueError
        An unfitted model, an objective that is not a classifier's, labels that are not the
        model's classes, or ``X`` and ``y`` of different lengths.
    FileExistsError
        A recording ``path`` that already holds one (``mode="create"``).

    See Also
    --------
    fastcarto.compute : maps outputs recorded any other way.

    Examples
    --------
    >>> import numpy as np, xgboost, fastcarto.xgboost
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> model = xgboost.XGBClassifier(n_estimators=4, max_depth=1).fit(X, y)
    >>> dm = fastcarto.xgboost.datamap(model, X, y, every=2)
    >>> dm.to_pandas()["n_epochs"].tolist()
    [2, 2, 2, 2]
    """
    import xgboost as xgb

    every = check_every(every)
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not isinstance(booster, xgb.Booster):
        raise TypeError(
            f"expected an xgboost.XGBClassifier or xgboost.Booster, got {type(model).__name__}"
        )
    config = json.loads(booster.save_config())
    objective = str(config["learner"]["objective"]["name"])
    if not objective.startswith(("binary:", "multi:")):
        raise ValueError(
            f"the booster's objective is {objective!r}: training dynamics need a classifier "
            "(binary: or multi: objective)"
        )
    n_rounds = booster.num_boosted_rounds()
    if n_rounds == 0:
        raise ValueError("the booster has no boosting rounds: train it first")
    n_class = int(config["learner"]["learner_model_param"].get("num_class", "0"))
    classes = fitted_classes(model, n_class)
    if isinstance(X, xgb.DMatrix):
        raise TypeError("pass X as an array or DataFrame (fastcarto builds the DMatrix)")
    check_features(booster.num_features(), X, "the booster")
    n = n_rows(X)
    margin_shape = (n, n_class) if n_class > 1 else (n,)
    plain = xgb.DMatrix(X)
    # A zero base margin replaces base_score: predictions are then the trees' sums alone.
    trees_only = xgb.DMatrix(X, base_margin=np.zeros(margin_shape, dtype=np.float32))
    ends = epoch_ends(n_rounds, every)

    def stages() -> Iterator[npt.NDArray[np.float64]]:
        try:
            first = booster.predict(plain, output_margin=True, iteration_range=(0, 1))
            total = first.astype(np.float64) - booster.predict(
                trees_only, output_margin=True, iteration_range=(0, 1)
            )
        except xgb.core.XGBoostError as exc:
            raise ValueError(
                f"XGBoost could not predict rounds of this booster ({exc}); "
                "fastcarto.xgboost.datamap needs tree boosters (not gblinear)"
            ) from exc
        yield from accumulated(
            total,
            ends,
            lambda start, stop: booster.predict(
                trees_only, output_margin=True, iteration_range=(start, stop)
            ),
        )

    return boosting_map(
        stages(),
        y=y,
        classes=classes,
        n_examples=n,
        n_outputs=n_class if n_class > 1 else 1,
        path=path,
        mode=mode,
        what="the booster",
    )
