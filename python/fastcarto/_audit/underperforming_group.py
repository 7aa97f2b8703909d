"""The ``underperforming_group`` issue type: a cluster of similar examples the model does badly on.

As cleanlab's ``UnderperformingGroupIssueManager``: DBSCAN on the kNN distance graph
(``_core.dbscan``, scikit-learn's algorithm) or the user's ``cluster_ids``, then each cluster's
mean self-confidence against the mean over all clustered examples
(``_core.underperforming_groups``). Formulas in ``docs/audit.md``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ._base import AuditInputs, IssueResult
from .label import _graph

NAME = "underperforming_group"
DESCRIPTION = (
    "An underperforming group refers to a cluster of similar examples (i.e. a slice) in the "
    "dataset for which the ML model predictions are particularly poor (loss evaluation over "
    "this subpopulation is high)."
)

#: cleanlab's defaults.
DEFAULT_K = 10
DEFAULT_THRESHOLD = 0.1
DEFAULT_MIN_CLUSTER_SAMPLES = 5
#: scikit-learn's DBSCAN defaults.
DEFAULT_EPS = 0.5
DEFAULT_MIN_SAMPLES = 5

#: DBSCAN parameters that change nothing on a precomputed graph.
_NO_EFFECT = ("metric", "metric_params", "algorithm", "leaf_size", "p", "n_jobs")

#: cleanlab's ``NO_UNDERPERFORMING_CLUSTER_ID``.
NO_UNDERPERFORMING_CLUSTER_ID = -2


def can_run(inputs: AuditInputs) -> bool:
    """Labels, ``pred_probs`` and a way to find neighbours."""
    return (
        inputs.labels is not None
        and inputs.pred_probs is not None
        and (inputs.features is not None or inputs.knn_graph is not None)
    )


def find(
    inputs: AuditInputs,
    *,
    metric: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    k: int = DEFAULT_K,
    clustering_kwargs: dict[str, Any] | None = None,
    min_cluster_samples: int = DEFAULT_MIN_CLUSTER_SAMPLES,
    cluster_ids: npt.ArrayLike | None = None,
) -> IssueResult:
    """Find the underperforming group (see the module's documentation)."""
    import pandas as pd

    if inputs.labels is None or inputs.pred_probs is None:
        raise ValueError("the underperforming_group issue type needs labels and pred_probs")
    threshold = float(threshold)
    if threshold < 0:
        warnings.warn(
            f"threshold {threshold} is less than 0; setting it to 0", UserWarning, stacklevel=2
        )
        threshold = 0.0
    for name, value in (("k", k), ("min_cluster_samples", min_cluster_samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    labels = np.ascontiguousarray(inputs.labels, dtype=np.int64)
    pred_probs = np.ascontiguousarray(inputs.pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or pred_probs.shape[0] != inputs.n:
        raise ValueError(f"pred_probs must have {inputs.n} rows, got shape {pred_probs.shape}")
    info: dict[str, Any] = {"k": int(k), "metric": metric, "threshold": threshold}
    if cluster_ids is None:
        eps, min_samples = _dbscan_params(clustering_kwargs or {})
        if k < 1:
            raise ValueError("k must be at least 1 to cluster on the neighbour graph")
        graph = _graph(inputs, int(k))
        if metric is not None and graph.metric is not None and metric != graph.metric:
            raise ValueError(
                f"metric={metric!r} but the neighbour graph is {graph.metric}; set the metric "
                "of the whole audit instead, so that every issue type uses one graph"
            )
        info["metric"] = graph.metric if graph.metric is not None else metric
        ids = _core.dbscan(
            np.ascontiguousarray(graph.indices, dtype=np.int64),
            np.ascontiguousarray(graph.distances, dtype=np.float32),
            eps=eps,
            min_samples=min_samples,
        )
        info["nearest_neighbor"] = graph.indices[:, 0].tolist()
        info["distance_to_nearest_neighbor"] = graph.distances[:, 0].astype(np.float64).tolist()
        clustering: dict[str, Any] = {"algorithm": "DBSCAN", "params": {"metric": "precomputed"}}
    else:
        if clustering_kwargs:
            warnings.warn(
                "`clustering_kwargs` will not be used since `cluster_ids` have been passed.",
                UserWarning,
                stacklevel=2,
            )
        ids = np.asarray(cluster_ids)
        if ids.ndim != 1 or len(ids) != inputs.n or ids.dtype.kind not in "iu":
            raise ValueError(
                f"cluster_ids must be {inputs.n} integers, got shape {ids.shape} of {ids.dtype}"
            )
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        clustering = {"algorithm": None, "params": {}}
    try:
        out = _core.underperforming_groups(
            labels,
            pred_probs,
            ids,
            min_cluster_samples=int(min_cluster_samples),
            threshold=threshold,
        )
    except _core.EmptyInputError as err:
        raise ValueError(
            "No meaningful clusters were generated for determining underperforming group."
        ) from err
    issues = pd.DataFrame(
        {
            "is_underperforming_group_issue": out["is_issue"],
            "underperforming_group_score": out["score"],
        }
    )
    clustering["stats"] = {
        "n_clusters": out["n_clusters"],
        "cluster_ids": ids,
        "underperforming_cluster_id": out["worst_cluster_id"],
    }
    info["clustering"] = clustering
    return IssueResult(issues=issues, score=float(out["worst_ratio"]), info=info)


def _dbscan_params(kwargs: dict[str, Any]) -> tuple[float, int]:
    """``eps`` and ``min_samples`` from cleanlab's ``clustering_kwargs`` (DBSCAN's arguments)."""
    rest = {k: v for k, v in kwargs.items() if k not in ("eps", "min_samples", *_NO_EFFECT)}
    if rest:
        raise ValueError(
            f"clustering_kwargs {sorted(rest)} are not supported; DBSCAN on the neighbour "
            "graph takes eps and min_samples"
        )
    eps = kwargs.get("eps")
    min_samples = kwargs.get("min_samples")
    eps = DEFAULT_EPS if eps is None else float(eps)
    if min_samples is None:
        min_samples = DEFAULT_MIN_SAMPLES
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)):
        raise ValueError(f"min_samples must be an int, got {min_samples!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}")
    return eps, int(min_samples)
