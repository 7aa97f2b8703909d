"""Training dynamics of scikit-learn estimators trained with ``partial_fit``, one call per epoch.

>>> import numpy as np, fastcarto.sklearn
>>> from sklearn.linear_model import SGDClassifier
>>> rng = np.random.default_rng(0)
>>> X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
>>> dm = fastcarto.sklearn.fit_epochs(SGDClassifier(random_state=0), X, y, epochs=5)
>>> len(dm), int(dm.to_pandas()["n_epochs"].min())
(60, 5)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._datamap import DataMap
from ._epochs import EpochSink, class_positions, n_rows
from ._inputs import Kind, check_positive
from ._recorder import Mode

__all__ = ["fit_epochs"]


def fit_epochs(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    epochs: int,
    classes: Any = None,
    path: str | os.PathLike[str] | None = None,
    mode: Mode = "create",
    **fit_params: Any,
) -> DataMap:
    """Trains ``estimator`` for ``epochs`` calls of ``partial_fit(X, y)`` and maps its outputs
    on ``X`` after each one.

    The outputs are ``predict_proba`` (``kind="probs"``) when the estimator has it, else
    ``decision_function`` (``kind="logits"``: a linear model's scores are read as logits,
    softmax-normalized by the metrics; a binary model's single score is its one logit).
    Labels are the positions of ``y`` in ``estimator.classes_``. The estimator is trained in
    place, exactly as the same loop of ``partial_fit`` calls would train it (predicting does not
    touch its state or random state).

    Parameters
    ----------
    estimator:
        A classifier with ``partial_fit`` (``SGDClassifier``, ``MLPClassifier``,
        ``Perceptron``, ``PassiveAggressiveClassifier``, the naive Bayes models...), fresh or
        already partly trained.
    X, y:
        The training examples and their labels; the map has one row per example, in order.
    epochs:
        Number of ``partial_fit`` calls (epochs).
    classes:
        Every class, passed to the first ``partial_fit`` (default: those of an already fitted
        estimator, else ``np.unique(y)``).
    path:
        Also record each epoch's outputs to this directory through :class:`fastcarto.Recorder`
        (``fastcarto.compute(path)`` reads them back, as does every other tool).
    mode:
        The recorder's ``mode``: ``"create"`` refuses a directory that holds a recording,
        ``"overwrite"`` replaces it, ``"append"`` continues it (to go on training an estimator
        that an earlier call trained: epochs are numbered after the recorded ones).
    **fit_params:
        Passed to every ``partial_fit`` call (``sample_weight=...``).

    Returns
    -------
    DataMap
        One row per example of ``X``, with ``epochs`` epochs.

    Raises
    ------
    TypeError
        An estimator without ``partial_fit``, or without ``predict_proba`` and
        ``decision_function``.
    ValueError
        ``y`` of another length than ``X``, labels outside ``classes``, or ``epochs < 1``.
    FileExistsError
        A recording ``path`` that already holds one (``mode="create"``).

    Examples
    --------
    >>> import numpy as np, tempfile, fastcarto, fastcarto.sklearn
    >>> from sklearn.naive_bayes import GaussianNB
    >>> X, y = np.array([[0.0], [0.2], [1.0], [1.2]]), np.array([0, 0, 1, 1])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     dm = fastcarto.sklearn.fit_epochs(GaussianNB(), X, y, epochs=3, path=tmp)
    ...     again = fastcarto.compute(tmp)
    >>> dm.to_pandas()["n_epochs"].tolist()
    [3, 3, 3, 3]
    >>> bool((again["confidence"] == dm["confidence"]).all())
    True
    """
    epochs = check_positive("epochs", epochs)
    if not callable(getattr(estimator, "partial_fit", None)):
        raise TypeError(
            f"{type(estimator).__name__} has no partial_fit: use an incremental classifier "
            "(SGDClassifier, MLPClassifier, ...), or record your own loop with "
            "fastcarto.Recorder"
        )
    proba = _has(estimator, "predict_proba")
    if not proba and not _has(estimator, "decision_function"):
        raise TypeError(
            f"{type(estimator).__name__} has neither predict_proba nor decision_function: "
            "fit_epochs maps classifiers"
        )
    y_arr = np.asarray(y)
    n = n_rows(X)
    if y_arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of X, got {y_arr.shape}")
    if classes is None:
        fitted = getattr(estimator, "classes_", None)
        classes = np.unique(y_arr) if fitted is None else fitted
    classes = np.asarray(classes)
    kind: Kind = "probs" if proba else "logits"
    n_out = 1 if (not proba and classes.size == 2) else int(classes.size)
    sink: EpochSink | None = None
    try:
        for epoch in range(epochs):
            estimator.partial_fit(X, y_arr, classes=classes, **fit_params)
            if sink is None:
                # After the first call, classes_ is the estimator's own order.
                labels = class_positions(y_arr, estimator.classes_, what=type(estimator).__name__)
                sink = EpochSink(path, kind=kind, n_examples=n, n_classes=n_out, mode=mode)
            out = estimator.predict_proba(X) if proba else estimator.decision_function(X)
            sink.add(sink.first_epoch + epoch, np.asarray(out), labels)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    assert sink is not None
    return sink.finish()


def _has(estimator: Any, method: str) -> bool:
    # ``hasattr`` honours scikit-learn's ``available_if`` (e.g. SGDClassifier's predict_proba
    # exists only for its probabilistic losses).
    try:
        return callable(getattr(estimator, method, None))
    except AttributeError:
        return False
