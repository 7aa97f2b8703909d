"""The ``label`` issue type: examples whose given label looks wrong.

Three sources, the first one given wins:

- ``dynamics`` (a :class:`fastcarto.DataMap`): the flags and scores of
  :meth:`DataMap.label_issues`, aligned with the dataset through the map's ``id`` column, with
  each example's data-map ``region``;
- ``pred_probs``: confident learning exactly as cleanlab's ``Datalab`` runs it
  (``_core.label_issues``);
- ``features`` (or a given neighbour graph): out-of-sample probabilities from the labels of each
  example's ``k`` nearest neighbours (``_core.knn_pred_probs``, cleanlab's kNN classifier), then
  confident learning on them.

The formulas and constants are in ``docs/audit.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import _core
from ._base import AuditInputs, IssueResult, KnnGraph

if TYPE_CHECKING:
    import pandas as pd

NAME = "label"
DESCRIPTION = (
    "Examples whose given label is estimated to be potentially incorrect "
    "(e.g. due to annotation error) are flagged as having label issues."
)

#: cleanlab's ``LabelIssueManager`` default number of neighbours.
DEFAULT_K = 10

#: Parameters cleanlab accepts that fastcarto does not implement: only their default (None).
_UNSUPPORTED = ("noise_matrix", "inverse_noise_matrix", "clf_kwargs", "validation_func")


def can_run(inputs: AuditInputs) -> bool:
    """Labels, and something to judge them by."""
    return inputs.labels is not None and (
        inputs.dynamics is not None
        or inputs.pred_probs is not None
        or inputs.features is not None
        or inputs.knn_graph is not None
    )


def find(
    inputs: AuditInputs,
    *,
    k: int = DEFAULT_K,
    thresholds: npt.ArrayLike | None = None,
    clean_learning_kwargs: dict[str, Any] | None = None,
    health_summary_parameters: dict[str, Any] | None = None,
    save_space: bool = False,
    **unsupported: Any,
) -> IssueResult:
    """Find label issues (see the module's documentation for the sources)."""
    bad = [name for name in unsupported if name not in _UNSUPPORTED]
    if bad:
        raise TypeError(
            f"unknown parameter(s) for the label issue type: {', '.join(sorted(bad))}; "
            f"known: k, thresholds, clean_learning_kwargs, health_summary_parameters, "
            f"save_space, {', '.join(_UNSUPPORTED)}"
        )
    given = [name for name, value in unsupported.items() if value is not None]
    if given:
        raise ValueError(
            f"fastcarto's label issue type does not support {', '.join(sorted(given))}; "
            "leave them None (confident learning estimates the noise from pred_probs)"
        )
    min_examples, asymmetric = _options(clean_learning_kwargs, health_summary_parameters)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if inputs.labels is None:
        raise ValueError("the label issue type needs labels (label_name=)")
    labels = np.ascontiguousarray(inputs.labels, dtype=np.int64)
    names = _class_names(inputs)
    if inputs.dynamics is not None:
        return _from_dynamics(inputs, labels, names)
    used = {"features": False, "pred_probs": inputs.pred_probs is not None}
    if inputs.pred_probs is not None:
        pred_probs = np.ascontiguousarray(inputs.pred_probs, dtype=np.float64)
    else:
        used["features"] = True
        graph = _graph(inputs, int(k))
        pred_probs = _core.knn_pred_probs(labels, graph.indices[:, : int(k)], int(k), len(names))
    if pred_probs.ndim != 2 or pred_probs.shape != (inputs.n, len(names)):
        raise ValueError(
            f"pred_probs must have shape (n_examples, n_classes) = ({inputs.n}, {len(names)}), "
            f"got {pred_probs.shape}"
        )
    t = None if thresholds is None else [float(v) for v in np.asarray(thresholds).ravel()]
    out = _core.label_issues(labels, pred_probs, thresholds=t, min_examples_per_class=min_examples)
    return _result(inputs, labels, names, out, used, asymmetric)


def _options(
    clean_learning_kwargs: dict[str, Any] | None, health: dict[str, Any] | None
) -> tuple[int, bool]:
    """``min_examples_per_class`` and ``asymmetric``, the only options of those two dicts."""
    min_examples = 10
    cl = dict(clean_learning_kwargs or {})
    fl = dict(cl.pop("find_label_issues_kwargs", None) or {})
    if cl:
        raise ValueError(
            f"clean_learning_kwargs {sorted(cl)} are not supported (fastcarto trains no "
            "classifier); only find_label_issues_kwargs={'min_examples_per_class': ...}"
        )
    if "min_examples_per_class" in fl:
        min_examples = fl.pop("min_examples_per_class")
        if isinstance(min_examples, bool) or not isinstance(min_examples, (int, np.integer)):
            raise ValueError(f"min_examples_per_class must be an int, got {min_examples!r}")
        min_examples = max(int(min_examples), 0)
    if fl.pop("filter_by", "prune_by_noise_rate") != "prune_by_noise_rate" or fl:
        raise ValueError(
            "find_label_issues_kwargs supports only min_examples_per_class (and "
            "filter_by='prune_by_noise_rate', cleanlab's default)"
        )
    hs = dict(health or {})
    asymmetric = bool(hs.pop("asymmetric", False))
    hs.pop("verbose", None)
    if hs:
        raise ValueError(
            f"health_summary_parameters {sorted(hs)} are not supported; only asymmetric"
        )
    return min_examples, asymmetric


def _class_names(inputs: AuditInputs) -> npt.NDArray[Any]:
    if inputs.class_names is not None:
        return np.asarray(inputs.class_names)
    n_classes = inputs.n_classes
    if n_classes == 0 and inputs.labels is not None and len(inputs.labels):
        n_classes = int(np.max(inputs.labels)) + 1
    return np.arange(n_classes)


def _graph(inputs: AuditInputs, k: int) -> KnnGraph:
    """The neighbour graph with at least ``k`` neighbours per example."""
    if inputs.knn_graph is not None and inputs.knn_graph.k >= k:
        return inputs.knn_graph
    if inputs.features is None:
        have = "no features" if inputs.knn_graph is None else f"a graph of k={inputs.knn_graph.k}"
        raise ValueError(
            f"label issues without pred_probs need features or a kNN graph of k >= {k}, got {have}"
        )
    # The audit's one graph, computed once per find_issues (by name: the kNN part of the
    # audit lands on its own branch).
    knn = importlib.import_module("fastcarto._audit.knn")
    graph: KnnGraph = knn.knn_graph_for(inputs, k)
    return graph


def _named(names: npt.NDArray[Any], codes: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    return names[codes]


def _result(
    inputs: AuditInputs,
    labels: npt.NDArray[np.int64],
    names: npt.NDArray[Any],
    out: dict[str, Any],
    used: dict[str, bool],
    asymmetric: bool,
) -> IssueResult:
    import pandas as pd

    n = inputs.n
    given = _named(names, labels)
    predicted = _named(names, out["predicted"])
    issues = pd.DataFrame(
        {
            "is_label_issue": out["is_issue"],
            "label_score": out["score"],
            "given_label": given,
            "predicted_label": predicted,
        }
    )
    joint = out["joint"]
    info: dict[str, Any] = {
        "num_label_issues": int(out["is_issue"].sum()),
        "average_label_quality": float(issues["label_score"].mean()),
        "given_label": given,
        "predicted_label": predicted,
        "confident_joint": out["confident_joint"],
        "classes_by_label_quality": _classes_by_label_quality(joint, n, names),
        "overlapping_classes": _overlapping_classes(joint, n, names, asymmetric),
        "py": out["py"],
        "noise_matrix": out["noise_matrix"],
        "inverse_noise_matrix": out["inverse_noise_matrix"],
        "confident_thresholds": out["confident_thresholds"].tolist(),
        "find_issues_inputs": used,
        "class_names": list(names),
    }
    return IssueResult(issues=issues, score=1.0 - out["num_off_diagonal"] / n, info=info)


def _classes_by_label_quality(
    joint: npt.NDArray[np.float64], n: int, names: npt.NDArray[Any]
) -> pd.DataFrame:
    """cleanlab's ``rank_classes_by_label_quality`` table of the joint ``[given, true]``."""
    import pandas as pd

    eps = 1e-6  # cleanlab's EPSILON
    diag = joint.diagonal()
    given_noise = joint.sum(axis=1) - diag
    true_noise = joint.sum(axis=0) - diag
    given_cond = given_noise / np.clip(joint.sum(axis=1), eps, None)
    true_cond = true_noise / np.clip(joint.sum(axis=0), eps, None)
    df = pd.DataFrame(
        {
            "Class Name": names,
            "Class Index": np.arange(len(joint)),
            "Label Issues": (given_noise * n).round().astype(int),
            "Inverse Label Issues": (true_noise * n).round().astype(int),
            "Label Noise": given_cond,
            "Inverse Label Noise": true_cond,
            "Label Quality Score": 1 - given_cond,
        }
    )
    return df.sort_values(by="Label Quality Score", ascending=True).reset_index(drop=True)


def _overlapping_classes(
    joint: npt.NDArray[np.float64], n: int, names: npt.NDArray[Any], asymmetric: bool
) -> pd.DataFrame:
    """cleanlab's ``find_overlapping_classes`` table of the joint."""
    import pandas as pd

    k = len(joint)
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if asymmetric:
        keep, values = a != b, joint
    else:
        keep, values = a < b, np.triu(joint) + np.tril(joint).T
    df = pd.DataFrame(
        {
            "Class Name A": names[a[keep]],
            "Class Name B": names[b[keep]],
            "Class Index A": a[keep],
            "Class Index B": b[keep],
            "Num Overlapping Examples": (values[keep] * n).round().astype(int),
            "Joint Probability": values[keep],
        }
    )
    return df.sort_values(by="Joint Probability", ascending=False).reset_index(drop=True)


def _from_dynamics(
    inputs: AuditInputs, labels: npt.NDArray[np.int64], names: npt.NDArray[Any]
) -> IssueResult:
    """The data map's label issues, moved onto the dataset's rows by the map's ``id``."""
    import pandas as pd

    dm = inputs.dynamics
    assert dm is not None
    found = dm.label_issues()
    if "id" not in found.columns:
        raise ValueError(
            "label issues from dynamics need a multi-class data map (one row per example, "
            "with an id column)"
        )
    ids = np.asarray(found["id"])
    if ids.dtype.kind not in "iu":
        raise ValueError(
            f"the data map's ids must be the dataset's row numbers 0..{inputs.n - 1}, "
            f"got {ids.dtype} ids"
        )
    if len(ids) and (ids.min() < 0 or ids.max() >= inputs.n):
        raise ValueError(
            f"the data map's ids must be the dataset's row numbers 0..{inputs.n - 1}, "
            f"got ids from {ids.min()} to {ids.max()}"
        )
    if len(np.unique(ids)) != len(ids):
        raise ValueError("the data map has an id more than once")
    n = inputs.n
    flags = np.zeros(n, dtype=bool)
    scores = np.full(n, np.nan)
    predicted_codes = np.full(n, -1, dtype=np.int64)
    flags[ids] = found["is_label_issue"].to_numpy(dtype=bool)
    scores[ids] = found["label_score"].to_numpy(dtype=np.float64)
    pred = found["predicted_label"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(pred) & (pred >= 0) & (pred < len(names))
    predicted_codes[ids[ok]] = pred[ok].astype(np.int64)
    regions = dm.regions()
    region_codes = np.full(n, -1, dtype=np.int8)
    region_codes[ids] = regions.cat.codes.to_numpy()
    region = pd.Categorical.from_codes(region_codes, categories=regions.cat.categories)
    predicted = names[np.maximum(predicted_codes, 0)].astype(object)
    predicted[predicted_codes < 0] = None
    given = _named(names, labels)
    issues = pd.DataFrame(
        {
            "is_label_issue": flags,
            "label_score": scores,
            "given_label": given,
            "predicted_label": predicted,
            "region": region,
        }
    )
    num = int(flags.sum())
    info: dict[str, Any] = {
        "num_label_issues": num,
        "average_label_quality": float(np.nanmean(scores)) if np.isfinite(scores).any() else np.nan,
        "given_label": given,
        "predicted_label": predicted,
        "find_issues_inputs": {"features": False, "pred_probs": False, "dynamics": True},
        "class_names": list(names),
    }
    return IssueResult(issues=issues, score=1.0 - num / n, info=info)
