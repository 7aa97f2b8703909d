"""The exact neighbour graph on a Dask cluster, in blocks of rows."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .. import _core
from .._audit._base import KnnGraph
from .._audit.knn import _METRICS, default_metric

#: Rows per block when ``features`` is a numpy array: a block pair's scores stay small and
#: ``(n / block_rows)²`` tasks keep a few workers busy.
BLOCK_ROWS = 8192


def _floats(block: Any) -> np.ndarray[Any, Any]:
    a = np.asarray(block)
    if a.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise TypeError(f"features must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
    return a


def _block(
    queries: Any,
    q_start: int,
    reference: Any,
    r_start: int,
    k: int,
    metric: str,
    threads: int | None,
) -> Any:
    return _core.knn_block(
        _floats(queries), q_start, _floats(reference), r_start, k, metric=metric, threads=threads
    )


def _finish(part: Any, n: int) -> Any:
    return _core.knn_finish(part, n)


def knn(
    features: Any,
    k: int = 10,
    *,
    client: Any = None,
    metric: str | None = None,
    block_rows: int | None = None,
    threads: int | None = 1,
) -> KnnGraph:
    """:func:`fastcarto.knn` with ``exact=True`` on a Dask cluster: each row's ``k`` nearest
    other rows, for :meth:`fastcarto.Datalab.find_issues` (``knn_graph=``).

    Every query block is searched against every reference block in one task each (the core's
    exact search), the parts of a query block merge in a binary tree by (distance, row
    number), and cleanlab's exact-duplicate correction is applied from the identical rows each
    part reports. The graph equals ``fastcarto.knn(features, k, exact=True)``: same
    neighbours in the same order, same ``float32`` distances (each is computed in ``float64``
    from its two rows alone, whatever the blocks).

    Parameters
    ----------
    features:
        An ``(n, d)`` ``dask.array`` (each block of rows is a block of the search; columns are
        put in one block) or a numpy array (cut into ``block_rows`` rows).
    k:
        Neighbours per row, fewer than the number of rows.
    client:
        A ``distributed.Client`` (default: Dask's current scheduler).
    metric:
        ``"euclidean"`` or ``"cosine"`` (None: cleanlab's choice by the number of columns).
    block_rows:
        Rows per block when ``features`` is a numpy array.
    threads:
        Rust threads per task.

    Returns
    -------
    KnnGraph
        The neighbour graph, as :func:`fastcarto.knn` returns it.

    Raises
    ------
    TypeError
        ``k`` not an integer.
    ValueError
        ``features`` not 2-D, ``k`` not below the number of rows, ``block_rows`` below 1, an
        unknown metric.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> from fastcarto.dask import knn
    >>> x = np.random.default_rng(0).normal(size=(500, 8))
    >>> g = knn(x, 5, block_rows=128)
    >>> want = fastcarto.knn(x, 5, exact=True)
    >>> bool((g.indices == want.indices).all() and (g.distances == want.distances).all())
    True
    """
    # Loosely typed: dask's own annotations are partial.
    dask: Any = importlib.import_module("dask")
    da: Any = importlib.import_module("dask.array")

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if isinstance(features, da.Array):
        x = features
    else:
        arr = features if isinstance(features, np.ndarray) else np.asarray(features)
        rows = BLOCK_ROWS if block_rows is None else int(block_rows)
        if rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        if arr.ndim != 2:
            raise ValueError(
                f"features must be a 2-D array (n_examples, n_features), got shape {arr.shape}"
            )
        x = da.from_array(arr, chunks=(rows, -1))
    if x.ndim != 2:
        raise ValueError(
            f"features must be a 2-D array (n_examples, n_features), got shape {x.shape}"
        )
    n = int(x.shape[0])
    if metric is None:
        metric = default_metric(x)
    elif metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    if not 1 <= k < n:
        raise ValueError(f"k={k} neighbours need 1 <= k < n_examples, and features have {n} rows")
    x = x.rechunk({1: -1})
    blocks = list(x.to_delayed().ravel())
    starts = np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]]).astype(int).tolist()
    rows_out = []
    for qb, qs in zip(blocks, starts, strict=True):
        parts = [
            dask.delayed(_block, pure=True)(qb, qs, rb, rs, int(k), metric, threads)
            for rb, rs in zip(blocks, starts, strict=True)
        ]
        while len(parts) > 1:
            merged = [
                dask.delayed(_core.knn_merge, pure=True)(a, b)
                for a, b in zip(parts[::2], parts[1::2], strict=False)
            ]
            parts = merged + parts[len(merged) * 2 :]
        rows_out.append(dask.delayed(_finish, pure=True)(parts[0], n))
    if client is not None:
        graphs = client.compute(rows_out, sync=True)
    else:
        graphs = dask.compute(*rows_out)
    distances = np.concatenate([g[0] for g in graphs])
    indices = np.concatenate([g[1] for g in graphs])
    return KnnGraph(distances, indices, metric)
