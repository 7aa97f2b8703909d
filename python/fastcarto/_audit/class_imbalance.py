"""The ``class_imbalance`` issue type: examples of a class much rarer than the others.

Formulas: ``docs/audit.md`` (class_imbalance); the counting is ``_core.class_imbalance``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import _core
from ._base import AuditInputs, IssueResult

NAME = "class_imbalance"
DESCRIPTION = "Examples belonging to the most under-represented class in the dataset."
#: Info keys the report prints at each verbosity (cleanlab's ``verbosity_levels``).
VERBOSITY_LEVELS: dict[int, list[str]] = {0: ["Rarest Class"], 1: [], 2: []}


def can_run(inputs: AuditInputs) -> bool:
    return inputs.labels is not None


def find(inputs: AuditInputs, *, threshold: float = 0.1) -> IssueResult:
    """``threshold``: the smallest fraction of ``1 / n_classes`` a class may hold (cleanlab's)."""
    if inputs.labels is None:
        raise ValueError("the class_imbalance issue type needs labels; pass label_name=")
    threshold = float(threshold)
    scores, is_issue, rarest, fraction, imbalanced = _core.class_imbalance(
        np.ascontiguousarray(inputs.labels, dtype=np.int64), inputs.n_classes, threshold
    )
    names = inputs.class_names
    # cleanlab names the rarest class only when it is an issue ("NA" otherwise).
    rarest_name: Any = names[rarest] if imbalanced and names is not None else "NA"
    issues = pd.DataFrame({f"is_{NAME}_issue": is_issue, f"{NAME}_score": scores})
    info: dict[str, Any] = {
        "threshold": threshold,
        "Rarest Class": rarest_name,
        "given_label": inputs.labels,
    }
    return IssueResult(issues=issues, score=float(fraction), info=info)
