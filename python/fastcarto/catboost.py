"""Training dynamics of a CatBoost classifier: its boosting rounds as epochs.

>>> import numpy as np, catboost, fastcarto.catboost
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
>>> model = catboost.CatBoostClassifier(
...     iterations=20, depth=2, verbose=0, allow_writing_files=False
... ).fit(X, y)
>>> dm = fastcarto.catboost.datamap(model, X, y, every=5)
>>> len(dm), int(dm.to_pandas()["n_epochs"].max())
(80, 4)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ._datamap import DataMap
from ._epochs import boosting_map, check_every, check_features, epoch_ends, n_rows
from ._recorder import Mode

__all__ = ["datamap"]

_CLASSIFIER_LOSSES = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")


def datamap(
    model: Any,
    X: Any,
    y: Any,
    *,
    every: int = 1,
    path: str | os.PathLike[str] | None = None,
    mode: Mode = "create",
) -> DataMap:
    """The map of a trained CatBoost classifier on its training data, each ``every`` trees one
    epoch (the last epoch ends at the last tree).

    The outputs are the raw formula values (``kind="logits"``) from
    ``model.staged_predict(X, prediction_type="RawFormulaVal", eval_period=every)``, which
    CatBoost accumulates itself, tree by tree. ``MultiClassOneVsAll`` scores are independent
    sigmoids' logits, read here as softmax logits like the others.

    Parameters
    ----------
    model:
        A fitted ``catboost.CatBoostClassifier`` (or ``CatBoost``) with a classification loss.
    X, y:
        The data to map (the training data; a ``Pool`` is refused, pass its features) and its
        labels (``model.classes_`` values).
    every, path, mode:
        As in :func:`fastcarto.xgboost.datamap`.
    Returns
    -------
    DataMap
        One row per row of ``X``; ``n_epochs`` is the number of epochs of ``every`` rounds.

    Raises
    ------
    TypeError
        A model of another kind, or ``X`` given as a ``Pool``.
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
    >>> import numpy as np, catboost, fastcarto.catboost
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> model = catboost.CatBoostClassifier(iterations=4, depth=1, verbose=0,
    ...                                     allow_writing_files=False).fit(X, y)
    >>> dm = fastcarto.catboost.datamap(model, X, y, every=2)
    >>> dm.to_pandas()["n_epochs"].tolist()
    [2, 2, 2, 2]
    """
    import catboost

    every = check_every(every)
    if not isinstance(model, catboost.CatBoost):
        raise TypeError(f"expected a catboost.CatBoostClassifier, got {type(model).__name__}")
    if not model.is_fitted():
        raise ValueError("the model is not fitted: train it first")
    loss = str(model.get_all_params().get("loss_function", ""))
    if loss.split(":")[0] not in _CLASSIFIER_LOSSES:
        raise ValueError(
            f"the model's loss is {loss!r}: training dynamics need a classifier "
            f"({', '.join(_CLASSIFIER_LOSSES)})"
        )
    if isinstance(X, catboost.Pool):
        raise TypeError("pass X as an array or DataFrame, not a Pool")
    n_trees = int(model.tree_count_)
    classes: npt.NDArray[Any] = np.asarray(model.classes_)
    check_features(len(model.feature_names_), X, "the model")
    n = n_rows(X)
    n_outputs = 1 if classes.size == 2 else int(classes.size)
    ends = epoch_ends(n_trees, every)

    def stages() -> Iterator[npt.NDArray[Any]]:
        staged = model.staged_predict(X, prediction_type="RawFormulaVal", eval_period=every)
        for _, margin in zip(ends, staged, strict=True):
            yield margin

    return boosting_map(
        stages(),
        y=y,
        classes=classes,
        n_examples=n,
        n_outputs=n_outputs,
        path=path,
        mode=mode,
        what="the model",
    )
