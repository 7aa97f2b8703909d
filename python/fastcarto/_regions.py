"""Regions of the data map, cartography-style selection and interval queries.

Everything here ranks, thresholds or filters the metric columns the engine computed; no
training-dynamics arithmetic happens in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ._metric_table import MetricTable

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T", bound=MetricTable)

Region = Literal["easy-to-learn", "ambiguous", "hard-to-learn"]

#: The three regions of a data map, in the order plots and summaries list them.
REGIONS: tuple[Region, Region, Region] = ("easy-to-learn", "ambiguous", "hard-to-learn")

#: ``select`` metrics and whether the most "valuable" examples (those selected first) have the
#: *lowest* values. The first five are allenai/cartography's ``consider_ascending_order``
#: (``cartography/selection/train_dy_filtering.py``); the others follow the same logic (hard
#: examples first).
SELECT_ASCENDING: dict[str, bool] = {
    "variability": False,
    "confidence": True,
    "threshold_closeness": False,
    "forgetfulness": False,
    "correctness": True,
    "forgetting": False,
    "aum": True,
    "el2n": False,
    "loss": False,
    "entropy": False,
}

#: The selection each region stands for in Swayamdipta et al. (2020, section 4): the most
#: variable examples (ambiguous), the least confident (hard-to-learn), the most confident
#: (easy-to-learn, cartography's ``--metric confidence --worst``).
REGION_SELECTION: dict[str, tuple[str, bool]] = {
    "ambiguous": ("variability", False),
    "hard-to-learn": ("confidence", False),
    "easy-to-learn": ("confidence", True),
}


@dataclass(frozen=True)
class RegionRule:
    """The rule that places every example of a data map in one of three regions.

    1. **ambiguous**: ``variability >= v``, where ``v`` is ``variability`` when given, else the
       ``variability_quantile`` quantile of the map's variability (default 2/3: the third of the
       examples with the highest variability, Swayamdipta et al.'s "top 33% ambiguous");
    2. otherwise **easy-to-learn** when ``confidence >= confidence`` (default 0.5: on average the
       model gives the gold label more than half its probability);
    3. otherwise **hard-to-learn** (low variability *and* low confidence: the model consistently
       disagrees with the label, which is where most label errors end up).

    Swayamdipta et al. (2020) name the regions from the map's shape and select fixed fractions
    (the 33% most variable = ambiguous, the 33% most / least confident = easy / hard); those
    fractions overlap and leave examples in none, so fastcarto keeps their ambiguous third and
    splits the rest by a confidence threshold, which labels every example exactly once. For
    their fixed-fraction subsets use :meth:`DataMap.select`. Examples with a non-finite
    confidence or variability (never observed, or one epoch with ``ddof=1``) get no region.

    Parameters
    ----------
    variability_quantile:
        The quantile of the map's variability above which examples are ambiguous, in [0, 1]
        (used when ``variability`` is None).
    variability:
        A fixed variability threshold instead of the quantile.
    confidence:
        The confidence threshold between easy-to-learn and hard-to-learn.

    Raises
    ------
    ValueError
        ``variability_quantile`` outside [0, 1], or a threshold that is not a finite number.

    Examples
    --------
    >>> import numpy as np
    >>> rule = RegionRule(variability=0.2, confidence=0.5)
    >>> rule.assign(np.array([0.9, 0.1, 0.5, 0.4]), np.array([0.05, 0.05, 0.3, 0.1])).tolist()
    ['easy-to-learn', 'hard-to-learn', 'ambiguous', 'hard-to-learn']
    """

    variability_quantile: float = 2 / 3
    variability: float | None = None
    confidence: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.variability_quantile <= 1.0:
            raise ValueError(
                f"variability_quantile must lie in [0, 1], got {self.variability_quantile!r}"
            )
        if self.variability is not None and not math.isfinite(self.variability):
            raise ValueError(f"variability must be a finite number, got {self.variability!r}")
        if not math.isfinite(self.confidence):
            raise ValueError(f"confidence must be a finite number, got {self.confidence!r}")

    def thresholds(self, variability: npt.ArrayLike) -> tuple[float, float]:
        """The variability and confidence thresholds this rule uses on a map.

        Parameters
        ----------
        variability:
            The map's variability column (NaN where there is none).

        Returns
        -------
        tuple of float
            ``(v, c)``: ``v`` is ``inf`` when no variability is finite.

        Examples
        --------
        >>> RegionRule(variability_quantile=0.5).thresholds([0.1, 0.2, 0.3])
        (0.2, 0.5)
        """
        if self.variability is not None:
            return float(self.variability), float(self.confidence)
        v = np.asarray(variability, dtype=np.float64)
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            return math.inf, float(self.confidence)
        return float(np.quantile(finite, self.variability_quantile)), float(self.confidence)

    def codes(self, confidence: npt.ArrayLike, variability: npt.ArrayLike) -> npt.NDArray[np.int8]:
        """Region of each example as a code: its position in :data:`REGIONS`, or -1 for none.

        Parameters
        ----------
        confidence, variability:
            The map's columns, one value per example.

        Returns
        -------
        numpy.ndarray
            ``int8`` codes: 0 easy-to-learn, 1 ambiguous, 2 hard-to-learn, -1 none.

        Examples
        --------
        >>> import numpy as np
        >>> RegionRule(variability=0.2).codes([0.9, 0.1, 0.5, np.nan], [0.0, 0.0, 0.3, 0.0])
        array([ 0,  2,  1, -1], dtype=int8)
        """
        conf = np.asarray(confidence, dtype=np.float64)
        var = np.asarray(variability, dtype=np.float64)
        v, c = self.thresholds(var)
        codes = np.where(conf >= c, np.int8(0), np.int8(2))
        codes[var >= v] = 1
        codes[~(np.isfinite(conf) & np.isfinite(var))] = -1
        return codes.astype(np.int8, copy=False)

    def assign(self, confidence: npt.ArrayLike, variability: npt.ArrayLike) -> pd.Categorical:
        """Region of each example, as a ``pandas.Categorical`` over :data:`REGIONS`.

        Parameters
        ----------
        confidence, variability:
            The map's columns, one value per example.

        Returns
        -------
        pandas.Categorical
            NaN where an example has no region.

        Examples
        --------
        >>> RegionRule(variability=0.2).assign([0.9, 0.1], [0.0, 0.3]).tolist()
        ['easy-to-learn', 'ambiguous']
        """
        import pandas as pd

        return pd.Categorical.from_codes(self.codes(confidence, variability), categories=REGIONS)

    def describe(self, variability: npt.ArrayLike) -> str:
        """The rule in words, with the thresholds it takes on this map.

        Parameters
        ----------
        variability:
            The map's variability column.

        Returns
        -------
        str
            One line.

        Examples
        --------
        >>> for part in RegionRule(variability=0.2).describe([0.1, 0.3]).split("; "):
        ...     print(part)
        ambiguous: variability >= 0.2 (given)
        otherwise easy-to-learn: confidence >= 0.5, else hard-to-learn
        """
        v, c = self.thresholds(variability)
        source = (
            "given"
            if self.variability is not None
            else f"the top {100 * (1 - self.variability_quantile):.3g}% of variability"
        )
        return (
            f"ambiguous: variability >= {v:.3g} ({source}); otherwise easy-to-learn: "
            f"confidence >= {c:g}, else hard-to-learn"
        )


# --------------------------------------------------------------------------------------------
# columns a method needs


def metric(dm: MetricTable, name: str) -> npt.NDArray[np.float64]:
    """Column ``name`` of ``dm`` as float64 (NaN for nulls), with the derived
    ``forgetfulness`` (allenai/cartography's: never-learned examples count as infinitely often
    forgotten) when the table has no such column."""
    columns = dm.columns
    if name in columns:
        return np.asarray(dm[name], dtype=np.float64)
    if name == "forgetfulness" and {"forgetting", "never_learned"} <= set(columns):
        forgetting = np.asarray(dm["forgetting"], dtype=np.float64)
        return np.where(np.asarray(dm["never_learned"], dtype=bool), np.inf, forgetting)
    raise KeyError(f"no column {name!r} in this map; columns are {columns}")


def require(dm: MetricTable, what: str, *names: str) -> None:
    """Raises a ``ValueError`` naming what is missing when ``dm`` lacks any of ``names``."""
    missing = [n for n in names if n not in dm.columns]
    if missing:
        hint = (
            f" (a compat={dm.compat!r} table renames or drops columns; compute the map without "
            "compat= for this)"
            if dm.compat
            else ""
        )
        raise ValueError(f"{what} needs the column(s) {', '.join(missing)}{hint}")


def region_codes(dm: MetricTable, rule: RegionRule | None) -> npt.NDArray[np.int8]:
    require(dm, "regions", "confidence", "variability")
    return (rule or RegionRule()).codes(dm["confidence"], dm["variability"])


def subset(dm: T, rows: npt.NDArray[Any]) -> T:
    """The rows of ``dm`` at positions ``rows`` (in that order), or where a mask is True, as a
    table of the same class (a :class:`fastcarto.DataMap` for a data map)."""
    table = dm.to_arrow()
    if rows.dtype == np.bool_:
        table = table.filter(pa.array(rows))
    else:
        table = table.take(pa.array(rows.astype(np.int64, copy=False)))
    return type(dm)(table, kind=dm.kind, compat=dm.compat)


# --------------------------------------------------------------------------------------------
# select: allenai/cartography's filtering


def select_rows(
    dm: MetricTable, metric_name: str, fraction: float, *, worst: bool, both_ends: bool
) -> npt.NDArray[np.int64]:
    """Row positions chosen by :meth:`DataMap.select`, in selection order."""
    if metric_name not in SELECT_ASCENDING:
        raise ValueError(
            f"cannot select by {metric_name!r}; choose one of {', '.join(SELECT_ASCENDING)}"
        )
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise TypeError(f"fraction must be a number in [0, 1], got {fraction!r}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
    values = metric(dm, metric_name)
    ascending = SELECT_ASCENDING[metric_name] != bool(worst)
    ranked = np.flatnonzero(~np.isnan(values))  # NaN (never observed) is never selected
    key = values[ranked] if ascending else -values[ranked]
    ranked = ranked[np.argsort(key, kind="stable")]  # ties keep row order
    n = int(float(fraction) * len(dm))
    if both_ends:
        head = ranked[: int(n * 0.7)]
        rest = ranked[len(head) :]
        tail = rest[len(rest) - min(n - len(head), len(rest)) :]
        return np.concatenate([head, tail]).astype(np.int64, copy=False)
    return ranked[:n].astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# query: interval conditions on columns


def query_mask(
    dm: MetricTable,
    conditions: Mapping[str, Any],
    *,
    region: str | Iterable[str] | None = None,
    rule: RegionRule | None = None,
) -> npt.NDArray[np.bool_]:
    """Rows of ``dm`` that meet every condition of :meth:`DataMap.query`."""
    mask = np.ones(len(dm), dtype=bool)
    for name, condition in conditions.items():
        mask &= _condition_mask(dm, name, condition)
    if region is not None:
        wanted = [region] if isinstance(region, str) else list(region)
        unknown = [r for r in wanted if r not in REGIONS]
        if unknown:
            raise ValueError(
                f"unknown region {unknown[0]!r}; regions are {', '.join(map(repr, REGIONS))}"
            )
        codes = region_codes(dm, rule)
        mask &= np.isin(codes, [REGIONS.index(r) for r in wanted])
    return mask


def _condition_mask(dm: MetricTable, name: str, condition: Any) -> npt.NDArray[np.bool_]:
    if name not in dm.columns and name != "forgetfulness":
        raise ValueError(f"no column {name!r} to query; columns are {dm.columns}")
    column = dm.to_arrow().column(name) if name in dm.columns else None
    is_bool = column is not None and pa.types.is_boolean(column.type)
    if isinstance(condition, (bool, np.bool_)):
        if not is_bool:
            raise TypeError(f"{name}={condition!r}: True/False only applies to boolean columns")
        assert column is not None
        values = np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        return values if condition else ~values
    if is_bool:
        raise TypeError(f"{name} is a boolean column: query it with {name}=True or False")
    values = metric(dm, name)
    if isinstance(condition, tuple):
        if len(condition) != 2:
            raise ValueError(f"{name}=(lo, hi) needs exactly two bounds, got {condition!r}")
        lo, hi = condition
        mask = ~np.isnan(values)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                mask &= values >= _bound(name, lo)
            if hi is not None:
                mask &= values < _bound(name, hi)
        return mask
    if isinstance(condition, (int, float, np.integer, np.floating)):
        return np.asarray(values == float(condition))
    raise TypeError(
        f"{name}={condition!r}: give a half-open interval (lo, hi) with None for an open end, "
        "a number (equality), or True/False for a boolean column"
    )


def _bound(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: interval bounds must be numbers or None, got {value!r}")
    return float(value)
