"""Label issues from training dynamics: the default rule (confident learning's count of wrong
labels, ranked by AUM), the plain AUM < 0 rule, AUM threshold samples (Pleiss et al., 2020),
per-class summaries and the text report.

The scores are transforms of columns the engine computed (``aum``, ``confidence``, ...); nothing
here re-derives a training-dynamics metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ._metric_table import MetricTable
from ._regions import REGIONS, RegionRule, region_codes, require

if TYPE_CHECKING:
    import pandas as pd

#: Percentile of the threshold samples' AUM used as the mislabeling threshold (Pleiss et al.).
DEFAULT_PERCENTILE = 99.0

#: The rules :meth:`DataMap.label_issues` knows (its ``method=``).
Method = Literal["count", "aum", "threshold"]
METHODS: tuple[str, ...] = ("count", "aum", "threshold")

#: Slack of the per-class thresholds, as cleanlab's ``compute_confident_joint`` has it
#: (``pred_probs >= thresholds - 1e-6``).
_THRESHOLD_SLACK = 1e-6


def threshold_samples(
    labels: npt.ArrayLike,
    n_classes: int,
    *,
    seed: int | np.random.Generator | None = None,
    exclude: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Training targets with AUM threshold samples (Pleiss et al., 2020, section 3).

    A random ``N // (n_classes + 1)`` of the examples are given the label ``n_classes``, an
    extra class that no example really belongs to: they are mislabeled on purpose. Train with
    ``n_classes + 1`` outputs on the returned targets, compute the map from that run, then
    :meth:`DataMap.label_issues` with ``threshold_mask=mask`` flags the examples whose AUM is
    below the 99th percentile of the threshold samples' AUM.

    The threshold samples themselves are not judged in that run. Pleiss et al. train a second
    time with a different subset: pass ``exclude=mask`` of the first run to draw a disjoint one.

    Parameters
    ----------
    labels:
        One integer label from 0 to ``n_classes - 1`` per example.
    n_classes:
        The number of real classes ``C``; the extra class is ``C``.
    seed:
        Seed (or ``numpy.random.Generator``) of the random subset.
    exclude:
        Boolean mask of examples never chosen (e.g. the previous run's threshold samples).

    Returns
    -------
    (targets, mask)
        ``targets`` (int64, the labels with the chosen examples set to ``n_classes``) and the
        boolean ``mask`` of the chosen examples.

    Raises
    ------
    TypeError
        Labels or ``n_classes`` that are not integers.
    ValueError
        Labels that are not 1-D or out of range, an ``exclude`` mask of another shape, or
        too few examples (or too few left after ``exclude``) to draw ``N // (C + 1)``.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> targets, mask = fastcarto.threshold_samples(np.arange(12) % 3, 3, seed=0)
    >>> int(mask.sum()), sorted(set(targets[mask].tolist()))
    (3, [3])
    >>> bool((targets[~mask] == (np.arange(12) % 3)[~mask]).all())
    True
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (examples,), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise TypeError(f"n_classes must be an integer, got {n_classes!r}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y.min() if y.min() < 0 else y.max()
        raise ValueError(f"label {bad} is out of range for {n_classes} classes")
    candidates = np.arange(y.size)
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.dtype != np.bool_ or ex.shape != y.shape:
            raise ValueError(f"exclude must be a boolean mask of shape {y.shape}")
        candidates = candidates[~ex]
    k = y.size // (int(n_classes) + 1)
    if k == 0:
        raise ValueError(f"{y.size} examples are too few for threshold samples: N // (C + 1) = 0")
    if k > candidates.size:
        raise ValueError(
            f"need {k} threshold samples but only {candidates.size} examples are not excluded"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=k, replace=False)
    mask = np.zeros(y.size, dtype=bool)
    mask[chosen] = True
    targets = y.astype(np.int64, copy=True)
    targets[mask] = int(n_classes)
    return targets, mask


def _threshold_mask(dm: MetricTable, threshold_mask: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    if "class" in dm.columns:
        raise ValueError("threshold samples apply to single-label maps, not multi-label ones")
    mask = np.asarray(threshold_mask)
    if mask.dtype != np.bool_:
        if mask.dtype.kind not in "iu":
            raise TypeError("threshold_mask must be a boolean mask or integer row positions")
        positions = mask
        mask = np.zeros(len(dm), dtype=bool)
        mask[positions] = True
    if mask.shape != (len(dm),):
        raise ValueError(
            f"threshold_mask must have one entry per example ({len(dm)}), got shape {mask.shape}"
        )
    if not mask.any():
        raise ValueError("threshold_mask selects no example")
    labels = dm["label"]
    chosen = np.unique(labels[mask])
    top = np.nanmax(labels)
    if chosen.size != 1 or chosen[0] != top:
        raise ValueError(
            "threshold samples must all carry the extra class (the largest label, "
            f"{top:g}) in the map; they carry {', '.join(f'{c:g}' for c in chosen[:5])}. "
            "Compute the map from the run trained on threshold_samples()'s targets"
        )
    return mask


def aum_threshold(
    dm: MetricTable, threshold_mask: npt.ArrayLike, *, percentile: float = DEFAULT_PERCENTILE
) -> float:
    """The ``percentile`` of the threshold samples' AUM (see :meth:`DataMap.aum_threshold`)."""
    require(dm, "aum_threshold", "aum", "label")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile!r}")
    mask = _threshold_mask(dm, threshold_mask)
    aum = dm["aum"][mask]
    aum = aum[np.isfinite(aum)]
    if aum.size == 0:
        raise ValueError("no threshold sample has an AUM (none was observed)")
    return float(np.percentile(aum, percentile))


def label_scores(dm: MetricTable) -> npt.NDArray[np.float64]:
    """``label_score``: the AUM mapped monotonically onto [0, 1], 0.5 at AUM = 0."""
    aum = np.asarray(dm["aum"], dtype=np.float64)
    if dm.kind == "probs":
        # The probability margin lies in [-1, 1]; (m + 1) / 2 is cleanlab's normalized_margin,
        # here averaged over epochs.
        return np.clip((aum + 1.0) / 2.0, 0.0, 1.0)
    # Logistic of the mean logit margin, written with tanh (no overflow for large |aum|).
    return 0.5 * (1.0 + np.tanh(0.5 * aum))


def _method(method: str | None, threshold_mask: npt.ArrayLike | None) -> str:
    """The rule to apply: ``method`` checked, or the default for the arguments given."""
    if method is None:
        return "count" if threshold_mask is None else "threshold"
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method == "threshold" and threshold_mask is None:
        raise ValueError("method='threshold' needs threshold_mask (see threshold_samples)")
    if method != "threshold" and threshold_mask is not None:
        raise ValueError(
            f"threshold_mask is used by method='threshold' only, not method={method!r}"
        )
    return method


def other_probability(dm: MetricTable) -> npt.NDArray[np.float64]:
    """Each row's mean probability of its most likely other class, as far as the map's columns
    give it.

    - multi-label rows (two outcomes per row): ``1 - confidence``, exactly;
    - ``kind="probs"``: ``confidence - aum``, exactly (the AUM is the mean of
      ``p(gold) - max_other p``);
    - ``kind="logits"``: ``min(confidence * exp(-aum), 1 - confidence)``. At each epoch the
      best other class has ``p = p(gold) * exp(-margin)`` (a ratio of softmax terms), and never
      more than ``1 - p(gold)``; the map keeps the means of ``p(gold)`` and of the margin, not of
      that product, so their product stands in for it.
    """
    conf = np.asarray(dm["confidence"], dtype=np.float64)
    if "class" in dm.columns:
        return 1.0 - conf
    aum = np.asarray(dm["aum"], dtype=np.float64)
    if dm.kind == "probs":
        return np.clip(conf - aum, 0.0, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = conf * np.exp(-aum)
    # 0 * inf (p(gold) underflowed to 0, exp(-aum) overflowed) is NaN: the cap is the answer.
    return np.where(np.isnan(ratio), 1.0 - conf, np.minimum(ratio, 1.0 - conf))


def _confident_count_parts(
    dm: MetricTable, observed: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per observed row, its group (0 for single-label maps, its class for multi-label ones),
    and per group the estimated number of wrong labels (see :func:`estimated_issues`)."""
    conf = np.asarray(dm["confidence"], dtype=np.float64)[observed]
    other = other_probability(dm)[observed]
    label = np.asarray(dm["label"], dtype=np.float64)[observed].astype(np.int64)
    pred = np.asarray(dm["final_pred"], dtype=np.float64)[observed].astype(np.int64)
    if "class" in dm.columns:
        # Each class is its own two-outcome problem: the keys are (class, 0/1), and the other
        # outcome is always the other value.
        cls = np.asarray(dm["class"], dtype=np.float64)[observed].astype(np.int64)
        group = cls
        key = 2 * cls + label
        other_key = 2 * cls + (1 - label)
        n_groups = int(cls.max()) + 1 if cls.size else 0
        n_keys = 2 * n_groups
        key_group = np.arange(n_keys) // 2
        has_other = np.ones(key.size, dtype=bool)
    else:
        group = np.zeros(label.size, dtype=np.int64)
        key = label
        # The most likely other class is known only where the last epoch predicted another
        # class; elsewhere the row can only vote for its own label.
        has_other = pred != label
        other_key = np.where(has_other, pred, label)
        n_groups = 1 if label.size else 0
        n_keys = int(max(label.max(), pred.max())) + 1 if label.size else 0
        key_group = np.zeros(n_keys, dtype=np.int64)
    n_key = np.bincount(key, minlength=n_keys).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Per-class threshold: the mean probability of the class over the rows labeled with it
        # (NaN for a class nobody carries: nothing reaches it).
        threshold = np.bincount(key, weights=conf, minlength=n_keys) / n_key
    above_own = conf >= threshold[key] - _THRESHOLD_SLACK
    above_other = has_other & (other >= threshold[other_key] - _THRESHOLD_SLACK)
    counted = above_own | above_other
    votes_other = counted & has_other & (other > conf)
    off = np.bincount(key, weights=votes_other, minlength=n_keys)
    row = np.bincount(key, weights=counted, minlength=n_keys)
    confident = row > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        wrong = np.where(confident, n_key * off / row, 0.0)
    wrong_g = np.bincount(key_group, weights=wrong, minlength=n_groups)
    carried = np.bincount(key_group, weights=np.where(confident, n_key, 0.0), minlength=n_groups)
    size_g = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(carried > 0, wrong_g / carried, 0.0)
    return group, np.rint(fraction * size_g).astype(np.int64)


def estimated_issues(dm: MetricTable) -> int:
    """How many labels confident learning estimates to be wrong (see
    :meth:`DataMap.label_issues`, ``method="count"``), summed over classes for multi-label
    maps. Rows never observed are left out."""
    require(dm, "estimated_issues", "label", "aum", "confidence", "final_pred")
    observed = np.isfinite(np.asarray(dm["aum"], dtype=np.float64))
    return int(_confident_count_parts(dm, observed)[1].sum())


def _lowest_per_group(
    score: npt.NDArray[np.float64], group: npt.NDArray[np.int64], count: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Marks the ``count[g]`` rows of lowest ``score`` in each group ``g`` (ties: earlier row
    first)."""
    order = np.lexsort((np.arange(score.size), score, group))
    sorted_group = group[order]
    start = np.searchsorted(sorted_group, np.arange(count.size))
    rank = np.arange(score.size) - start[sorted_group]
    flagged = np.zeros(score.size, dtype=bool)
    flagged[order] = rank < count[sorted_group]
    return flagged


def label_issues(
    dm: MetricTable,
    *,
    method: str | None = None,
    threshold_mask: npt.ArrayLike | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> pd.DataFrame:
    """See :meth:`DataMap.label_issues`."""
    import pandas as pd

    method = _method(method, threshold_mask)
    require(dm, "label_issues", "id", "label", "aum", "final_pred", "confidence")
    aum = np.asarray(dm["aum"], dtype=np.float64)
    score = label_scores(dm)
    observed = np.isfinite(aum)
    hidden = np.zeros(len(dm), dtype=bool)
    if method == "count":
        flagged = np.zeros(len(dm), dtype=bool)
        group, count = _confident_count_parts(dm, observed)
        flagged[observed] = _lowest_per_group(aum[observed], group, count)
    elif method == "aum":
        flagged = observed & (aum < 0.0)
    else:
        assert threshold_mask is not None  # _method requires it for "threshold"
        hidden = _threshold_mask(dm, threshold_mask)
        threshold = aum_threshold(dm, hidden, percentile=percentile)
        flagged = observed & (aum < threshold) & ~hidden
        score = np.where(hidden, np.nan, score)
    table = dm.to_arrow()
    given, given_na = _int_and_mask(table.column("label"))
    predicted, predicted_na = _int_and_mask(table.column("final_pred"))
    suggested = np.where(flagged, predicted, given)
    suggested_na = np.where(flagged, predicted_na, given_na) | hidden
    out: dict[str, Any] = {"id": table.column("id").to_pandas()}
    if "class" in table.column_names:
        out["class"] = table.column("class").to_pandas()
    out.update(
        is_label_issue=flagged,
        label_score=score,
        given_label=pd.arrays.IntegerArray(given, given_na),
        predicted_label=pd.arrays.IntegerArray(predicted, predicted_na),
        suggested_label=pd.arrays.IntegerArray(suggested, suggested_na),
    )
    return pd.DataFrame(out, copy=False)


def _int_and_mask(column: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """An Arrow integer column as int64 values (0 where null) and its null mask, the parts of
    a pandas ``Int64`` array, without going through Python objects."""
    import pyarrow as pa

    values = column.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
    mask = column.is_null().to_numpy(zero_copy_only=False)
    return np.array(values, dtype=np.int64), np.array(mask, dtype=bool)  # writable copies


def class_summary(
    dm: MetricTable,
    *,
    rule: RegionRule | None = None,
    method: str | None = None,
    threshold_mask: npt.ArrayLike | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> pd.DataFrame:
    """See :meth:`DataMap.class_summary`."""
    import pandas as pd

    issues = label_issues(dm, method=method, threshold_mask=threshold_mask, percentile=percentile)
    by = "class" if "class" in dm.columns else "label"
    keys = np.asarray(dm[by], dtype=np.float64)
    keep = np.isfinite(keys)
    if threshold_mask is not None:
        keep &= ~_threshold_mask(dm, threshold_mask)
    codes = region_codes(dm, rule)
    confidence = np.asarray(dm["confidence"], dtype=np.float64)
    score = issues["label_score"].to_numpy(dtype=np.float64)
    flagged = issues["is_label_issue"].to_numpy(dtype=bool)
    # Labels (and classes) are small non-negative integers: count with bincount, no sort.
    key = keys[keep].astype(np.int64)
    size = int(key.max()) + 1 if key.size else 0
    present = np.bincount(key, minlength=size) > 0
    classes = np.flatnonzero(present)

    def per_class(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        total = np.bincount(key, weights=values[keep].astype(np.float64), minlength=size)
        return np.asarray(total[present], dtype=np.float64)

    def mean_per_class(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        finite = np.isfinite(values)
        total = per_class(np.where(finite, values, 0.0))
        count = per_class(finite)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count

    examples = np.bincount(key, minlength=size)[present]
    n_issues = per_class(flagged).astype(np.int64)
    table: dict[str, Any] = {
        by: classes,
        "examples": examples,
        "label_issues": n_issues,
        "label_noise": n_issues / np.maximum(examples, 1),
    }
    for code, region in enumerate(REGIONS):
        table[region] = per_class((codes == code).astype(np.float64)).astype(np.int64)
    table["mean_confidence"] = mean_per_class(confidence)
    table["mean_label_score"] = mean_per_class(score)
    df = pd.DataFrame(table)
    df = df.sort_values(["label_noise", by], ascending=[False, True], kind="stable")
    return df.reset_index(drop=True)


def report(
    dm: MetricTable,
    *,
    rule: RegionRule | None = None,
    method: str | None = None,
    threshold_mask: npt.ArrayLike | None = None,
    percentile: float = DEFAULT_PERCENTILE,
) -> str:
    """See :meth:`DataMap.report`."""
    rule = rule or RegionRule()
    n = len(dm)
    unit = "rows" if "class" in dm.columns else "examples"
    lines = [repr(dm)]
    codes = region_codes(dm, rule)
    counts = [int((codes == i).sum()) for i in range(len(REGIONS))]
    parts = [f"{r} {c:,} ({_pct(c, n)})" for r, c in zip(REGIONS, counts, strict=True)]
    none = int((codes < 0).sum())
    if none:
        parts.append(f"no region (not observed) {none:,}")
    lines.append("regions: " + ", ".join(parts))
    lines.append("  rule: " + rule.describe(dm["variability"]))
    issues = label_issues(dm, method=method, threshold_mask=threshold_mask, percentile=percentile)
    flagged = int(issues["is_label_issue"].sum())
    method = _method(method, threshold_mask)
    if method == "count":
        how = "the lowest AUM, as many as confident learning estimates are wrong"
    elif method == "aum":
        how = "mean margin (AUM) < 0: the given label was on average not the top class"
    else:
        assert threshold_mask is not None  # _method requires it for "threshold"
        thr = aum_threshold(dm, threshold_mask, percentile=percentile)
        how = f"AUM < {thr:.4g}, the {percentile:g}th percentile of the threshold samples"
    lines.append(f"label issues: {flagged:,} of {n:,} {unit} ({_pct(flagged, n)}); {how}")
    if "forgetting" in dm.columns and "never_learned" in dm.columns:
        never = int(np.sum(dm["never_learned"]))
        forgotten = int(np.sum(np.asarray(dm["forgetting"]) > 0))
        lines.append(
            f"never learned: {never:,} ({_pct(never, n)}); forgotten at least once: "
            f"{forgotten:,} ({_pct(forgotten, n)})"
        )
    summary = class_summary(
        dm, rule=rule, method=method, threshold_mask=threshold_mask, percentile=percentile
    )
    worst = summary[summary["label_issues"] > 0].head(3)
    if len(worst) and len(summary) > 1:
        by = summary.columns[0]
        text = ", ".join(
            f"{int(row[by])} ({int(row['label_issues']):,} of {int(row['examples']):,}, "
            f"{100 * row['label_noise']:.1f}%)"
            for _, row in worst.iterrows()
        )
        lines.append(f"classes with the most label issues: {text}")
    return "\n".join(lines)


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"
