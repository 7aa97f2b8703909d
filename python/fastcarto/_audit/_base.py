"""What every issue type receives and returns.

An issue type is a module of this package with a ``find(inputs, **params)`` function, a
``NAME`` (cleanlab's issue name), a ``DESCRIPTION`` (one sentence for the report) and
``can_run(inputs)`` saying whether the inputs it needs were given. The orchestrator
(:class:`fastcarto.Datalab`) builds one :class:`AuditInputs` per ``find_issues`` call and
collects the :class:`IssueResult` of each type; the numeric work behind ``find`` lives in the
Rust core (``_core``), the modules only shape the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

    from .._datamap import DataMap


@dataclass(frozen=True)
class KnnGraph:
    """Each example's ``k`` nearest other examples.

    Attributes
    ----------
    distances:
        ``(n, k)`` ``float32``, ascending along each row.
    indices:
        ``(n, k)`` ``int64`` row numbers of the neighbours (never the row itself).
    metric:
        ``"euclidean"`` or ``"cosine"`` (cosine distance, ``1 - cos``), or None if unknown
        (a graph the user gave).
    """

    distances: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int64]
    metric: str | None = None

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


@dataclass
class AuditInputs:
    """The dataset under audit, as arrays the engine takes.

    Attributes
    ----------
    n:
        Number of examples (rows of the dataset).
    labels:
        ``int64`` class codes ``0..n_classes-1`` per example, or None (no label column).
    class_names:
        The original label values; ``class_names[code]`` is the label a user gave.
    features:
        2-D ``float32``/``float64`` array (a memmap is fine), NaN allowed, or None.
    pred_probs:
        ``(n, n_classes)`` out-of-sample probabilities, or None.
    dynamics:
        A :class:`fastcarto.DataMap` aligned with the rows (row ``i`` is example ``i``), or None.
    knn_graph:
        A user-given neighbour graph, or None; :meth:`knn` computes one from ``features``.
    """

    n: int
    labels: npt.NDArray[np.int64] | None = None
    class_names: npt.NDArray[Any] | None = None
    features: npt.NDArray[np.floating[Any]] | None = None
    pred_probs: npt.NDArray[np.floating[Any]] | None = None
    dynamics: DataMap | None = None
    knn_graph: KnnGraph | None = None
    metric: str | None = None
    _computed: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_classes(self) -> int:
        if self.class_names is not None:
            return len(self.class_names)
        if self.pred_probs is not None:
            return int(self.pred_probs.shape[1])
        return 0


@dataclass
class IssueResult:
    """One issue type's findings.

    Attributes
    ----------
    issues:
        ``n`` rows in dataset order: ``is_<name>_issue`` (bool), ``<name>_score`` (float in
        [0, 1], lower = more severe) and the type's extra columns, named as cleanlab names them.
    score:
        The summary score of the type over the dataset, in [0, 1] (lower = more severe).
    info:
        What ``Datalab.get_info(name)`` returns: statistics and intermediate results.
    """

    issues: pd.DataFrame
    score: float
    info: dict[str, Any] = field(default_factory=dict)
