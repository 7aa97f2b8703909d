"""The ``non_iid`` issue type: cleanlab's ``NonIIDIssueManager``.

A permutation test of whether neighbours in feature space sit close together in the dataset's
order. The permutations are numpy's (``np.random.seed(seed)``, ``np.random.permutation``), drawn
in Rust, so the p-value is cleanlab's. Formulas in ``docs/audit.md`` and
``fastcarto_core::audit::non_iid``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _core
from ._base import AuditInputs, IssueResult
from ._graph import neighbours, reject_unknown

NAME = "non_iid"
DESCRIPTION = (
    "Whether the dataset's order violates the IID assumption (drift, shift, autocorrelation): "
    "examples near each other in the order tend to have similar feature values."
)
_PARAMS = ("metric", "k", "num_permutations", "seed", "significance_threshold")


def can_run(inputs: AuditInputs) -> bool:
    """Needs features, a neighbour graph, or ``pred_probs`` (a graph on them)."""
    return (
        inputs.features is not None or inputs.knn_graph is not None or inputs.pred_probs is not None
    )


def find(
    inputs: AuditInputs,
    *,
    metric: str | None = None,
    k: int = 10,
    num_permutations: int = 25,
    seed: int | None = 0,
    significance_threshold: float = 0.05,
    **unknown: Any,
) -> IssueResult:
    """The non-IID test's flag (at most one row) and per-row scores; parameters as cleanlab's.

    ``seed=None`` draws the seed from numpy's global random state, as cleanlab then permutes
    with it.
    """
    reject_unknown(NAME, unknown, _PARAMS)
    if not can_run(inputs):
        raise ValueError("the non_iid issue type needs features, a knn_graph or pred_probs")
    substitute = None
    if inputs.features is None and inputs.knn_graph is None:
        substitute = inputs.pred_probs
    graph = neighbours(inputs, k, metric, features=substitute)
    if seed is None:
        # The legacy global state on purpose: the one cleanlab permutes with.
        seed = int(np.random.randint(0, 2**32, dtype=np.int64))  # noqa: NPY002
    scores, is_issue, p_value, _, _ = _core.non_iid(
        graph.distances,
        graph.indices,
        num_permutations=num_permutations,
        seed=seed,
        significance_threshold=significance_threshold,
    )
    issues = pd.DataFrame({"is_non_iid_issue": is_issue, "non_iid_score": scores})
    info: dict[str, Any] = {"p-value": p_value, "metric": graph.metric, "k": k}
    return IssueResult(issues=issues, score=p_value, info=info)
