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

    See Also
    --------
    fastcarto.knn : computes one from features.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> g = fastcarto.KnnGraph(np.array([[1.0], [1.0], [2.0]], dtype=np.float32),
    ...                        np.array([[1], [0], [1]]), metric="euclidean")
    >>> g.k
    1
    """

    distances: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int64]
    metric: str | None = None

    @property
    def k(self) -> int:
        """The number of neighbours per row."""
        return int(self.indices.shape[1])

    @classmethod
    def from_csr(cls, matrix: Any, metric: str | None = None) -> KnnGraph:
        """The graph of a scipy sparse matrix as cleanlab's ``knn_graph`` holds it: ``(n, n)``,
        row ``i`` stores its ``k`` neighbours' distances in ascending order (what
        ``NearestNeighbors.kneighbors_graph(mode="distance")`` gives). A row with no entries
        is a row left out of the search (distance ``inf``, index ``-1``).

        Parameters
        ----------
        matrix:
            A ``scipy.sparse`` ``(n, n)`` matrix with the same number of entries in every
            non-empty row.
        metric:
            The metric the distances were computed with, if known.

        Returns
        -------
        KnnGraph
            The same neighbours, as ``(n, k)`` arrays.

        Raises
        ------
        TypeError
            ``matrix`` is not a scipy sparse matrix.
        ValueError
            Not square, rows with different numbers of neighbours, negative or non-finite
            distances, rows not sorted by distance, or a row listing itself.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> m = sp.csr_matrix(([1.0, 1.0, 2.0], [1, 0, 1], [0, 1, 2, 3]), shape=(3, 3))
        >>> KnnGraph.from_csr(m).indices.ravel().tolist()
        [1, 0, 1]
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(f"knn_graph must be a scipy sparse matrix, got {type(matrix).__name__}")
        csr = sp.csr_matrix(matrix)
        n = csr.shape[0]
        if csr.shape != (n, n) or n == 0:
            raise ValueError(f"knn_graph must be a square (n, n) matrix, got shape {csr.shape}")
        counts = np.diff(csr.indptr)
        full = counts > 0
        k = int(counts.max())
        if k == 0:
            raise ValueError("knn_graph has no entries")
        if np.any(counts[full] != k):
            row = int(np.flatnonzero(full & (counts != k))[0])
            raise ValueError(
                f"knn_graph row {row} has {counts[row]} neighbours but others have {k}; every row "
                "needs the same k (a row of exact duplicates loses its zero distances to "
                "eliminate_zeros())"
            )
        distances = np.full((n, k), np.inf, dtype=np.float32)
        indices = np.full((n, k), -1, dtype=np.int64)
        distances[full] = csr.data.reshape(-1, k)
        indices[full] = csr.indices.reshape(-1, k)
        kept = distances[full]
        if not np.all(np.isfinite(kept)) or np.any(kept < 0):
            raise ValueError("knn_graph distances must be finite and non-negative")
        if np.any(np.diff(kept, axis=1) < 0):
            row = int(
                np.flatnonzero(full)[np.flatnonzero(np.any(np.diff(kept, axis=1) < 0, axis=1))[0]]
            )
            raise ValueError(
                f"knn_graph row {row} is not sorted by distance; store each row's neighbours "
                "nearest first, as kneighbors_graph does"
            )
        if np.any(indices == np.arange(n)[:, None]):
            row = int(np.flatnonzero(np.any(indices == np.arange(n)[:, None], axis=1))[0])
            raise ValueError(
                f"knn_graph row {row} lists itself as a neighbour; leave self loops out"
            )
        return cls(distances, indices, metric)

    def to_csr(self) -> Any:
        """The graph as cleanlab's ``knn_graph``.

        Returns
        -------
        scipy.sparse.csr_matrix
            ``(n, n)``, each row's distances in ascending order; rows left out have no
            entries.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> g = fastcarto.knn(np.array([[0.0], [1.0], [3.0]]), k=1)
        >>> g.to_csr().toarray().tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
        """
        import scipy.sparse as sp

        n = self.indices.shape[0]
        kept = self.indices >= 0
        indptr = np.concatenate([[0], np.cumsum(kept.sum(axis=1))])
        return sp.csr_matrix((self.distances[kept], self.indices[kept], indptr), shape=(n, n))


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
