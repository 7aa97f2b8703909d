"""Training dynamics of a LightGBM classifier: its boosting rounds as epochs.

>>> import numpy as np, lightgbm, fastcarto.lightgbm
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
>>> model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
>>> dm = fastcarto.lightgbm.datamap(model, X, y, every=5)
>>> len(dm), int(dm.to_pandas()["n_epochs"].max())
(80, 4)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

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

_CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "softmax", "cross_entropy", "xentropy")


def datamap(
    model: Any,
    X: Any,
    y: Any,
    *,
    every: int = 1,
    path: str | os.PathLike[str] | None = None,
    mode: Mode = "create",
) -> DataMap:
    """The map of a trained LightGBM classifier on its training data, each ``every`` boosting
    rounds one epoch (the last epoch ends at the last round).

    The outputs are the raw scores (``kind="logits"``). Each epoch predicts only its own rounds
    (``start_iteration=start, num_iteration=stop - start, raw_score=True``; LightGBM silently
    ignores XGBoost's ``iteration_range``) and adds them in float64 to the previous epoch's
    scores. LightGBM folds its initial score into the first tree, so the sums equal its own
    prefix predictions up to rounding.

    Parameters
    ----------
    model:
        A ``lightgbm.LGBMClassifier`` or a ``lightgbm.Booster`` with a binary or multi-class
        objective.
    X, y:
        The data to map (the training data) and its labels (``model.classes_`` values for a
        classifier, ``0..classes-1`` for a ``Booster``).
    every, path, mode:
        As in :func:`fastcarto.xgboost.datamap`.
    Returns
    -------
    DataMap
        One row per row of ``X``; ``n_epochs`` is the number of epochs of ``every`` rounds.

    Raises
    ------
    TypeError
        A model of another kind.
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
    >>> import numpy as np, lightgbm, fastcarto.lightgbm
    >>> X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    >>> model = lightgbm.LGBMClassifier(n_estimators=4, min_child_samples=2, verbose=-1)
    >>> dm = fastcarto.lightgbm.datamap(model.fit(X, y), X, y, every=2)
    >>> len(dm), int(dm.to_pandas()["n_epochs"].max())
    (20, 2)
    """
    import lightgbm as lgb

    every = check_every(every)
    booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
    if not isinstance(booster, lgb.Booster):
        raise TypeError(
            f"expected a lightgbm.LGBMClassifier or lightgbm.Booster, got {type(model).__name__}"
        )
    objective = str(getattr(model, "objective_", None) or booster.params.get("objective", ""))
    if objective and not objective.startswith(_CLASSIFIER_OBJECTIVES):
        raise ValueError(
            f"the booster's objective is {objective!r}: training dynamics need a classifier "
            "(binary or multiclass objective)"
        )
    n_rounds = booster.current_iteration()
    if n_rounds == 0:
        raise ValueError("the booster has no boosting rounds: train it first")
    n_class = booster.num_model_per_iteration()
    classes = fitted_classes(model, n_class)
    check_features(booster.num_feature(), X, "the booster")
    n = n_rows(X)
    ends = epoch_ends(n_rounds, every)

    stages = accumulated(
        np.zeros((n, n_class) if n_class > 1 else (n,), dtype=np.float64),
        ends,
        lambda start, stop: booster.predict(
            X, start_iteration=start, num_iteration=stop - start, raw_score=True
        ),
    )
    return boosting_map(
        stages,
        y=y,
        classes=classes,
        n_examples=n,
        n_outputs=n_class if n_class > 1 else 1,
        path=path,
        mode=mode,
        what="the booster",
    )
