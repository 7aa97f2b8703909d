"""Dense outputs (arrays and ``.npy`` files) through the engine in one pass, straight to the
metrics table: no per-example state is kept.

It returns the plain Arrow table, below :class:`fastcarto.DataMap`, so that modules needing the
engine's per-row metrics (the trajectories) call it without depending on the data map.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from ._inputs import (
    Compat,
    EpochSelection,
    Kind,
    NanPolicy,
    as_float_array,
    as_labels,
    as_path,
    read_labels,
    resolve_epochs,
    warn_if_dense_probabilities,
)


def dense_table(
    source: Any,
    labels: Any,
    *,
    kind: Kind,
    epochs: EpochSelection = None,
    nan_policy: NanPolicy = "raise",
    threads: int | None = None,
    compat: Compat | None = None,
    ddof: int = 0,
    stacklevel: int = 2,
) -> pa.Table:
    """The metrics table of dense ``source`` (an ``(epochs, examples, classes)`` array or a
    ``.npy`` path, memory-mapped by the engine), as :func:`fastcarto.compute` documents.

    ``labels`` may be the path of a labels file (:func:`read_labels`). A ``kind="logits"``
    input whose sampled rows are all distributions warns, pointing ``stacklevel`` frames up.
    """
    path = as_path(source)
    data: Any
    if path is not None:
        (n_epochs, n_examples, n_classes), _ = _core.inspect_npy(path)
        data = path
    else:
        data = as_float_array(source, ndim=3, what="outputs")
        n_epochs, n_examples, n_classes = data.shape
    if isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels)
    flat, multilabel = as_labels(labels, n_examples=n_examples, n_classes=n_classes)
    chosen = resolve_epochs(epochs, n_epochs)
    table = _core.map_dense(
        data,
        flat,
        kind=kind,
        epochs=chosen,
        multilabel=multilabel,
        nan_policy=nan_policy,
        threads=threads,
        compat=compat,
        ddof=int(ddof),
    )
    if kind == "logits" and not multilabel:
        outputs = np.load(path, mmap_mode="r", allow_pickle=False) if path is not None else data
        warn_if_dense_probabilities(outputs, chosen, stacklevel=stacklevel + 1)
    return table
