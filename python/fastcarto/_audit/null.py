"""The ``null`` issue type: examples whose features are all missing (cleanlab's ``null``).

Formulas: ``docs/audit.md`` (null); the scan is ``_core.null_scan``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _core
from ._base import AuditInputs, IssueResult

NAME = "null"
DESCRIPTION = (
    "Examples identified with the null issue correspond to rows that have null/missing values "
    "across all feature columns (i.e. the entire row is missing values)."
)
#: Info keys the report prints at each verbosity (cleanlab's ``verbosity_levels``).
VERBOSITY_LEVELS: dict[int, list[str]] = {0: [], 1: [], 2: ["most_common_issue"]}


def can_run(inputs: AuditInputs) -> bool:
    return inputs.features is not None


def find(inputs: AuditInputs) -> IssueResult:
    if inputs.features is None:
        raise ValueError("the null issue type needs features; pass features=")
    scores, is_issue, column_impact, most_common = _core.null_scan(inputs.features)
    if most_common is None:
        pattern, rows = "no_null", []
    else:
        pattern, rows = most_common[0], most_common[1].tolist()
    issues = pd.DataFrame({f"is_{NAME}_issue": is_issue, f"{NAME}_score": scores})
    score = float(np.mean(scores))
    info: dict[str, Any] = {
        "average_null_score": score,
        "most_common_issue": {"pattern": pattern, "rows_affected": rows, "count": len(rows)},
        "column_impact": column_impact.tolist(),
    }
    return IssueResult(issues=issues, score=score, info=info)


def report_notes(issues: pd.DataFrame) -> str:
    """What cleanlab appends to the null section: how many rows are wholly or partly missing."""
    flagged = issues[f"is_{NAME}_issue"].to_numpy()
    full = int(flagged.sum())
    partial = int(((issues[f"{NAME}_score"].to_numpy() < 1.0) & ~flagged).sum())
    text = ""
    if full:
        text += (
            f"\n\nFound {full} examples with null values in all features. These examples should "
            "be removed from the dataset before running other issue managers."
        )
    if partial:
        text += (
            f"\n\nFound {partial} examples with null values in some features. Please address "
            "these issues before running other issue managers."
        )
    return text
