"""The neighbour graph the issue types share: computed once per ``find_issues`` call by the Rust
core (``_core.knn``), or the user's own ``knn_graph``.

Graphs follow cleanlab's conventions (``cleanlab/internal/neighbor/``): the metric is cosine
above 3 feature columns and euclidean otherwise (``decide_default_metric``), and exact
duplicates are listed first at distance 0 (``correct_knn_distances_and_indices``, done in the
core). Rows with a NaN feature are left out of the search: their row is distance ``inf`` and
index ``-1``, and no row lists them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ._base import AuditInputs, KnnGraph

#: cleanlab's ``DEFAULT_K``: the neighbours computed when no issue type asks for more.
DEFAULT_K = 10
#: cleanlab's ``HIGH_DIMENSION_CUTOFF``: above this many columns the default metric is cosine.
HIGH_DIMENSION_CUTOFF = 3

_METRICS = ("euclidean", "cosine")


def default_metric(features: Any) -> str:
    """cleanlab's ``decide_default_metric``: ``"cosine"`` for more than 3 columns, else
    ``"euclidean"`` (cleanlab computes it with scipy below 100 rows, the same distance)."""
    return "cosine" if features.shape[1] > HIGH_DIMENSION_CUTOFF else "euclidean"


def _as_features(features: Any) -> npt.NDArray[np.floating[Any]]:
    """A float32/float64 array as the core takes it (memory maps stay mapped); other numeric
    dtypes become float64."""
    a = features if isinstance(features, np.ndarray) else np.asarray(features)
    if a.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise TypeError(f"features must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (n_examples, n_features), got shape {a.shape}"
        )
    return a


def knn(
    features: Any,
    k: int = DEFAULT_K,
    *,
    metric: str | None = None,
    exact: bool | None = None,
    seed: int = 0,
) -> KnnGraph:
    """Each row's ``k`` nearest other rows of ``features``.

    Parameters
    ----------
    features:
        ``(n, d)`` array (float32/float64 used as they are, a memory map included).
    k:
        Neighbours per row, ``1 <= k < n``.
    metric:
        ``"euclidean"`` or ``"cosine"`` (``1 - cos``); None chooses as cleanlab does.
    exact:
        True: exact search; False: approximate (an inverted file, recall@10 above 0.95 on
        clustered data); None: exact up to 30,000 rows.
    seed:
        Seeds the approximate index.

    Returns
    -------
    KnnGraph
        ``(n, k)`` distances (ascending along each row) and indices.

    Raises
    ------
    TypeError
        ``k`` is not an int, or features that are not numeric.
    ValueError
        An unknown metric, ``k`` outside ``1 <= k < n``, or features that are not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> g = knn(np.array([[0.0], [1.0], [3.0]]), k=1)
    >>> g.indices.ravel().tolist(), g.distances.ravel().tolist()
    ([1, 0, 1], [1.0, 1.0, 2.0])
    """
    x = _as_features(features)
    if metric is None:
        metric = default_metric(x)
    elif metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k < x.shape[0]:
        raise ValueError(
            f"k={k} neighbours need 1 <= k < n_examples, and features have {x.shape[0]} rows"
        )
    distances, indices = _core.knn(x, int(k), metric=metric, exact=exact, seed=seed)
    return KnnGraph(distances, indices, metric)


def _first(graph: KnnGraph, k: int) -> KnnGraph:
    if graph.k == k:
        return graph
    return KnnGraph(graph.distances[:, :k], graph.indices[:, :k], graph.metric)


def knn_graph_for(inputs: AuditInputs, k: int) -> KnnGraph:
    """The first ``k`` neighbours of every example, for an issue type.

    The user's ``knn_graph`` when it has at least ``k`` neighbours per row (or when there are
    no features to compute a bigger one from: cleanlab then uses the given graph as it is);
    otherwise one graph computed from ``inputs.features`` and kept in ``inputs._computed``,
    with ``max(k, DEFAULT_K, inputs._computed.get("knn_k", 0))`` neighbours (capped at
    ``n - 1``) so that every issue type of the call reads the same graph. The orchestrator may
    set ``_computed["knn_k"]`` to the largest ``k`` any type will ask for, and
    ``_computed["knn_exact"]`` to force exact (True) or approximate (False) search.
    """
    given = inputs.knn_graph
    if given is not None and (given.k >= k or inputs.features is None):
        return _first(given, min(k, given.k))
    cached: KnnGraph | None = inputs._computed.get("knn_graph")
    if cached is not None and cached.k >= k:
        return _first(cached, k)
    if inputs.features is None:
        raise ValueError("this issue type needs features or a knn_graph; pass one to find_issues")
    n = inputs.features.shape[0]
    want = max(k, min(max(DEFAULT_K, int(inputs._computed.get("knn_k", 0))), n - 1))
    graph = knn(
        inputs.features,
        want,
        metric=inputs.metric,
        exact=inputs._computed.get("knn_exact"),
    )
    inputs._computed["knn_graph"] = graph
    return _first(graph, k)
