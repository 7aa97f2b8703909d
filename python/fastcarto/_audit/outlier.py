"""The ``outlier`` issue type: cleanlab's ``OutlierIssueManager``.

From the neighbour graph when there are features (or a graph), else from ``pred_probs`` and
labels (cleanlab's ``OutOfDistribution``). The formulas are in ``docs/audit.md`` and
``fastcarto_core::audit::outlier``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _core
from ._base import AuditInputs, IssueResult
from ._graph import neighbours, reject_unknown

NAME = "outlier"
DESCRIPTION = (
    "Examples that are very different from the rest of the dataset "
    "(potentially out-of-distribution or rare/anomalous instances)."
)
_PARAMS = (
    "k",
    "t",
    "metric",
    "scaling_factor",
    "threshold",
    "method",
    "adjust_pred_probs",
    "confident_thresholds",
    "M",
    "gamma",
)


def can_run(inputs: AuditInputs) -> bool:
    """Features or a graph; else ``pred_probs`` with labels (cleanlab skips it without labels)."""
    return (
        inputs.features is not None
        or inputs.knn_graph is not None
        or (inputs.pred_probs is not None and inputs.labels is not None)
    )


def find(
    inputs: AuditInputs,
    *,
    k: int = 10,
    t: float = 1,
    metric: str | None = None,
    scaling_factor: float | None = None,
    threshold: float | None = None,
    method: str = "entropy",
    adjust_pred_probs: bool = True,
    confident_thresholds: Any = None,
    M: int = 100,
    gamma: float = 0.1,
    **unknown: Any,
) -> IssueResult:
    """Outlier flags and scores; parameters as cleanlab's ``issue_types={"outlier": {...}}``."""
    reject_unknown(NAME, unknown, _PARAMS)
    ood_params: dict[str, Any] = {
        "k": k,
        "t": 1,
        "knn": None,
        "method": method,
        "adjust_pred_probs": adjust_pred_probs,
        "confident_thresholds": confident_thresholds,
        "M": M,
        "gamma": gamma,
        "scaling_factor": None,
    }
    if inputs.features is not None or inputs.knn_graph is not None:
        graph = neighbours(inputs, k, metric)
        scores, is_issue, threshold, issue_threshold, scaling_factor = _core.knn_outliers(
            graph.distances,
            graph.indices,
            threshold=threshold,
            t=t,
            scaling_factor=scaling_factor,
            metric=graph.metric,
        )
        extra: dict[str, Any] = {
            "k": k,
            "nearest_neighbor": graph.indices[:, 0].tolist(),
            "distance_to_nearest_neighbor": graph.distances[:, 0].tolist(),
            "metric": graph.metric,
            "scaling_factor": scaling_factor,
            "t": t,
            "knn": None,
        }
        used = {"features": False, "pred_probs": False, "knn_graph": True}
    elif inputs.pred_probs is not None:
        thresholds = None
        if confident_thresholds is not None:
            thresholds = np.asarray(confident_thresholds, dtype=np.float64).ravel().tolist()
        scores, is_issue, threshold, issue_threshold, fitted = _core.prob_outliers(
            inputs.pred_probs,
            inputs.labels,
            threshold=threshold,
            method=method,
            adjust_pred_probs=adjust_pred_probs,
            confident_thresholds=thresholds,
            m=M,
            gamma=gamma,
        )
        extra = {"confident_thresholds": fitted}
        used = {"features": False, "pred_probs": True, "knn_graph": False}
    else:
        raise ValueError("the outlier issue type needs features, a knn_graph or pred_probs")
    issues = pd.DataFrame({"is_outlier_issue": is_issue, "outlier_score": scores})
    score = float(scores.mean())
    info: dict[str, Any] = {
        "average_ood_score": score,
        "threshold": threshold,
        "issue_threshold": issue_threshold,
        "ood": None,
        **ood_params,
        **extra,
        "find_issues_inputs": used,
    }
    return IssueResult(issues=issues, score=score, info=info)
