"""The dataset audit: cleanlab's Datalab issue types, computed by fastcarto's engine.

Each issue type is one module here (see :mod:`._base` for the contract); ``ISSUE_TYPES`` lists
them in cleanlab's default order, which is also the order ``find_issues`` runs them in.
"""

from __future__ import annotations

#: cleanlab 2.x's default issue types for classification, in its order.
ISSUE_TYPES = (
    "null",
    "label",
    "outlier",
    "near_duplicate",
    "non_iid",
    "class_imbalance",
    "underperforming_group",
)
