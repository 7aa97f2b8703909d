"""`compute`: the data map of a whole training run in one parallel pass."""

from __future__ import annotations

from typing import Any

from . import _core
from ._datamap import DataMap
from ._inputs import (
    COMPATS,
    KINDS,
    NAN_POLICIES,
    Compat,
    EpochSelection,
    Kind,
    NanPolicy,
    as_float_array,
    as_labels,
    as_path,
    check_choice,
    check_ddof,
    check_threads,
    resolve_epochs,
)


def compute(
    source: Any,
    labels: Any = None,
    *,
    kind: Kind,
    compat: Compat | None = None,
    epochs: EpochSelection = None,
    nan_policy: NanPolicy = "raise",
    ddof: int = 0,
    threads: int | None = None,
) -> DataMap:
    """Computes every training-dynamics metric for every example in one pass over the epochs.

    Parameters
    ----------
    source:
        Model outputs of shape ``(epochs, examples, classes)``, float32 or float64: a numpy array,
        an ``np.memmap``, anything ``np.asarray`` accepts (CPU tensors), or the path of a
        ``.npy`` file (memory-mapped by the engine, never read whole). ``classes == 1`` means a
        binary model's single logit / positive-class probability, with labels 0/1.
    labels:
        One integer label per example, shape ``(examples,)``; or 0/1 targets of shape
        ``(examples, classes)`` for multi-label models with independent sigmoid outputs, whose
        metrics are then reported per (example, class) pair (long form, with a ``class`` column).
    kind:
        ``"logits"`` (probabilities are their softmax, or sigmoid for one column) or ``"probs"``
        (rows must lie in [0, 1] and sum to 1). Declared by the caller, never guessed.
    compat:
        Reproduce a published implementation's conventions and column names exactly:
        ``"cartography"`` (allenai/cartography ``td_metrics``), ``"aum"`` (the ``aum`` package),
        ``"dataiq"`` (Data-IQ) or ``"toneva"`` (forgetting events). None gives fastcarto's table.
    epochs:
        Which epochs to use: an int ``k`` (the first ``k``, as cartography's burn-out), a slice, or
        increasing epoch indices. Reported epoch numbers stay positions in ``source``.
    nan_policy:
        ``"raise"`` (default) fails on NaN/inf naming the epoch and example; ``"omit"`` skips
        those (epoch, example) observations, and ``n_epochs`` counts what was used.
    ddof:
        Delta degrees of freedom of ``variability`` (0, the population std every published tool
        uses; 1 for the sample std).
    threads:
        Worker threads (default: ``FASTCARTO_NUM_THREADS`` or all cores). The GIL is released.

    Returns
    -------
    DataMap
        Columns ``id, label, confidence, variability, correctness, forgetting, never_learned,
        first_learned, stable_from, aum, threshold_closeness, el2n, loss, entropy, final_pred,
        n_epochs`` (see ``docs/metrics.md`` for every formula).

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(5, 100, 3)).astype(np.float32)   # 5 epochs, 100 examples
    >>> labels = rng.integers(0, 3, size=100)
    >>> dm = fastcarto.compute(logits, labels, kind="logits")
    >>> dm.to_pandas().columns[:5].tolist()
    ['id', 'label', 'confidence', 'variability', 'correctness']
    >>> fastcarto.compute(logits, labels, kind="logits", compat="cartography").columns[:4]
    ['guid', 'index', 'threshold_closeness', 'confidence']
    """
    check_choice("kind", kind, KINDS)
    check_choice("compat", compat, COMPATS, optional=True)
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    check_threads(threads)
    check_ddof(ddof)

    path = as_path(source)
    if path is not None:
        if path.suffix.lower() != ".npy":
            raise ValueError(f"{path}: only .npy files are supported as a path source")
        (n_epochs, n_examples, n_classes), _ = _core.inspect_npy(path)
        flat, multilabel = as_labels(labels, n_examples=n_examples, n_classes=n_classes)
        chosen = resolve_epochs(epochs, n_epochs)
        state = _core.compute_npy(
            path,
            flat,
            kind=kind,
            epochs=chosen,
            multilabel=multilabel,
            nan_policy=nan_policy,
            threads=threads,
        )
    else:
        arr = as_float_array(source, ndim=3, what="outputs")
        n_epochs, n_examples, n_classes = arr.shape
        flat, multilabel = as_labels(labels, n_examples=n_examples, n_classes=n_classes)
        chosen = resolve_epochs(epochs, n_epochs)
        state = _core.compute_array(
            arr,
            flat,
            kind=kind,
            epochs=chosen,
            multilabel=multilabel,
            nan_policy=nan_policy,
            threads=threads,
        )
    return DataMap(state.finalize(compat=compat, ddof=int(ddof)), kind=kind, compat=compat)
