"""The ``near_duplicate`` issue type: cleanlab's ``NearDuplicateIssueManager``.

Formulas in ``docs/audit.md`` and ``fastcarto_core::audit::near_duplicate``. Besides cleanlab's
columns and info, ``info["near_duplicate_groups"]`` numbers the connected groups of near
duplicates (-1 for rows in none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import _core
from ._base import AuditInputs, IssueResult
from ._graph import neighbours, reject_unknown

NAME = "near_duplicate"
DESCRIPTION = (
    "Examples that are exact or near copies of others: atypically close to another example "
    "relative to the rest of the dataset."
)
_PARAMS = ("metric", "threshold", "k")


def can_run(inputs: AuditInputs) -> bool:
    """Needs features or a neighbour graph."""
    return inputs.features is not None or inputs.knn_graph is not None


def find(
    inputs: AuditInputs,
    *,
    metric: str | None = None,
    threshold: float = 0.13,
    k: int = 10,
    **unknown: Any,
) -> IssueResult:
    """Near-duplicate flags, scores and sets; parameters as cleanlab's."""
    reject_unknown(NAME, unknown, _PARAMS)
    if not can_run(inputs):
        raise ValueError("the near_duplicate issue type needs features or a knn_graph")
    graph = neighbours(inputs, k, metric)
    scores, is_issue, offsets, members, groups, median = _core.near_duplicates(
        graph.distances, graph.indices, threshold=threshold
    )
    # One numpy array per row, built by Arrow rather than a Python loop.
    sets = pa.ListArray.from_arrays(pa.array(offsets), pa.array(members)).to_numpy(
        zero_copy_only=False
    )
    nn_distance = graph.distances[:, 0].astype(np.float64)
    issues = pd.DataFrame(
        {
            "is_near_duplicate_issue": is_issue,
            "near_duplicate_score": scores,
            "near_duplicate_sets": sets,
            "distance_to_nearest_neighbor": nn_distance,
        }
    )
    score = float(scores.mean())
    info: dict[str, Any] = {
        "average_near_duplicate_score": score,
        "near_duplicate_sets": list(sets),
        "metric": graph.metric,
        "k": k,
        "threshold": threshold,
        "nearest_neighbor": graph.indices[:, 0].tolist(),
        "distance_to_nearest_neighbor": nn_distance.tolist(),
        "median_distance_to_nearest_neighbor": median,
        "near_duplicate_groups": groups,
    }
    return IssueResult(issues=issues, score=score, info=info)
