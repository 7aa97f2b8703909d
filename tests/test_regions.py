"""Regions, cartography-style selection and interval queries on a data map.

The oracle for ``select`` is allenai/cartography's own procedure
(``cartography/selection/train_dy_filtering.py``) written with pandas: sort by the metric in
that metric's direction, take the head, and for ``both_ends`` 70% from the head and the rest
from the tail. fastcarto differs on purpose in three documented places (one row fewer, a stable
sort, NaN never selected), each checked here.
"""

from __future__ import annotations

from typing import Any

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastcarto import REGIONS, RegionRule
from fastcarto._regions import SELECT_ASCENDING


@pytest.fixture(scope="module")
def dm() -> fastcarto.DataMap:
    rng = np.random.default_rng(3)
    e, n, c = 6, 300, 4
    logits = rng.normal(scale=2.0, size=(e, n, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    logits[:, np.arange(n), labels] += rng.normal(1.0, 2.0, size=n).astype(np.float32)
    return fastcarto.compute(logits, labels, kind="logits")


# --------------------------------------------------------------------------------------------
# regions


def test_rule_on_hand_made_values() -> None:
    conf = np.array([0.9, 0.1, 0.5, 0.4, 0.5, np.nan])
    var = np.array([0.05, 0.05, 0.3, 0.1, 0.2, 0.1])
    rule = RegionRule(variability=0.2, confidence=0.5)
    # variability >= 0.2 is ambiguous (boundary included); confidence >= 0.5 easy (included)
    assert rule.codes(conf, var).tolist() == [0, 2, 1, 2, 1, -1]
    assert rule.thresholds(var) == (0.2, 0.5)


def test_default_rule_is_the_top_third_of_variability(dm: fastcarto.DataMap) -> None:
    var, conf = dm["variability"], dm["confidence"]
    v, c = RegionRule().thresholds(var)
    assert v == pytest.approx(np.quantile(var, 2 / 3)) and c == 0.5
    regions = dm.regions()
    assert isinstance(regions, pd.Series) and regions.name == "region"
    assert list(regions.cat.categories) == list(REGIONS)
    assert len(regions) == len(dm)
    expected = np.where(
        var >= v, "ambiguous", np.where(conf >= c, "easy-to-learn", "hard-to-learn")
    )
    assert regions.astype(str).tolist() == expected.tolist()
    assert (regions == "ambiguous").mean() == pytest.approx(1 / 3, abs=0.01)


def test_rule_is_configurable(dm: fastcarto.DataMap) -> None:
    var, conf = dm["variability"], dm["confidence"]
    got = dm.regions(RegionRule(variability_quantile=0.9, confidence=0.7))
    v = np.quantile(var, 0.9)
    assert ((got == "ambiguous").to_numpy() == (var >= v)).all()
    assert ((got == "easy-to-learn").to_numpy() == ((var < v) & (conf >= 0.7))).all()
    assert (dm.regions(RegionRule(variability=10.0)) != "ambiguous").all()


def test_examples_never_observed_have_no_region() -> None:
    acc = fastcarto.Accumulator(n_examples=4, n_classes=2, kind="logits")
    acc.update(np.array([[2.0, 0.0], [0.0, 1.0]]), [0, 0], ids=[0, 1], epoch=0)
    acc.update(np.array([[1.0, 0.0], [0.0, 3.0]]), [0, 0], ids=[0, 1], epoch=1)
    regions = acc.finalize().regions()
    assert regions.isna().tolist() == [False, False, True, True]


@pytest.mark.parametrize(
    "kwargs",
    [{"variability_quantile": 1.5}, {"variability": float("nan")}, {"confidence": float("inf")}],
)
def test_rule_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RegionRule(**kwargs)


def test_regions_of_a_compat_table_name_what_is_missing() -> None:
    logits = np.zeros((2, 3, 2))
    dm = fastcarto.compute(logits, [0, 1, 0], kind="logits", compat="aum")
    with pytest.raises(ValueError, match=r"confidence.*compat='aum'"):
        dm.regions()


# --------------------------------------------------------------------------------------------
# select


def cartography_selection(
    df: pd.DataFrame, metric: str, fraction: float, worst: bool, both_ends: bool
) -> list[int]:
    """allenai/cartography's write_filtered_data, with a stable sort and head(n) instead of
    head(n + 1)."""
    ascending = SELECT_ASCENDING[metric]
    if worst:
        ascending = not ascending
    ranked = df.sort_values(by=[metric], ascending=ascending, kind="stable")
    n = int(fraction * len(df))
    if both_ends:
        hardest = ranked.head(n=int(n * 0.7))
        easiest = ranked.tail(n=n - hardest.shape[0])
        return [*hardest["id"], *easiest["id"]]
    return list(ranked.head(n=n)["id"])


@pytest.mark.parametrize("metric", list(SELECT_ASCENDING))
@pytest.mark.parametrize(("worst", "both_ends"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1667, 0.5, 1.0])
def test_select_reproduces_cartography(
    dm: fastcarto.DataMap, metric: str, worst: bool, both_ends: bool, fraction: float
) -> None:
    df = dm.to_pandas()
    if metric == "forgetfulness":  # cartography's column: never learned counts 1000
        df["forgetfulness"] = np.where(df["never_learned"], 1000, df["forgetting"])
    got = dm.select(metric, fraction, worst=worst, both_ends=both_ends)
    assert isinstance(got, fastcarto.DataMap) and got.kind == dm.kind
    assert got["id"].tolist() == cartography_selection(df, metric, fraction, worst, both_ends)
    assert len(got) == int(fraction * len(dm))


def test_select_directions(dm: fastcarto.DataMap) -> None:
    ambiguous = dm.select("variability", 0.1)["variability"]
    hard = dm.select("confidence", 0.1)["confidence"]
    easy = dm.select("confidence", 0.1, worst=True)["confidence"]
    assert (np.diff(ambiguous) <= 0).all() and ambiguous.min() >= np.quantile(
        dm["variability"], 0.89
    )
    assert (np.diff(hard) >= 0).all() and hard.max() <= np.quantile(dm["confidence"], 0.11)
    assert (np.diff(easy) <= 0).all() and easy.min() >= np.quantile(dm["confidence"], 0.89)


def test_select_writes_one_row_less_than_cartography(dm: fastcarto.DataMap) -> None:
    # cartography writes sorted_scores.head(n=num_samples + 1); fastcarto exactly num_samples.
    df = dm.to_pandas().sort_values("variability", ascending=False, kind="stable")
    n = int(0.25 * len(dm))
    theirs = df.head(n + 1)["id"].tolist()
    assert dm.select("variability", 0.25)["id"].tolist() == theirs[:-1]


def test_select_ties_keep_row_order() -> None:
    p = np.array([[[0.6, 0.4]] * 5] * 2)
    dm = fastcarto.compute(p, [0, 0, 0, 0, 0], kind="probs")  # identical metrics
    assert dm.select("confidence", 0.6)["id"].tolist() == [0, 1, 2]
    assert dm.select("confidence", 0.6, worst=True)["id"].tolist() == [0, 1, 2]


def test_select_never_picks_unobserved_examples() -> None:
    acc = fastcarto.Accumulator(n_examples=4, n_classes=2, kind="probs")
    acc.update(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 0], ids=[1, 3], epoch=0)
    dm = acc.finalize()
    assert dm.select("confidence", 1.0)["id"].tolist() == [3, 1]
    assert dm.select("confidence", 1.0, both_ends=True)["id"].tolist() == [3, 1]


def test_select_on_a_cartography_table_matches_the_default_table(dm: fastcarto.DataMap) -> None:
    table = dm.to_arrow()
    carto = fastcarto.DataMap(
        pa.table(
            {
                "guid": table.column("id"),
                "forgetfulness": pa.array(
                    np.where(dm["never_learned"], 1000, dm["forgetting"]).astype(np.int64)
                ),
            }
        ),
        kind="logits",
        compat="cartography",
    )
    assert (
        carto.select("forgetfulness", 0.3)["guid"].tolist()
        == dm.select("forgetfulness", 0.3)["id"].tolist()
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("accuracy", 0.1), ValueError),
        (("confidence", 1.5), ValueError),
        (("confidence", -0.1), ValueError),
        (("confidence", "0.1"), TypeError),
        (("confidence", True), TypeError),
    ],
)
def test_select_bad_arguments(dm: fastcarto.DataMap, args: tuple[Any, ...], error: type) -> None:
    with pytest.raises(error):
        dm.select(*args)


# --------------------------------------------------------------------------------------------
# query


def test_query_half_open_intervals() -> None:
    p = np.array([[[0.3, 0.7], [0.5, 0.5], [0.7, 0.3], [1.0, 0.0]]] * 2)
    dm = fastcarto.compute(p, [0, 0, 0, 0], kind="probs")
    assert dm["confidence"].tolist() == [0.3, 0.5, 0.7, 1.0]
    assert dm.query(confidence=(0.3, 0.7))["id"].tolist() == [0, 1]  # lo in, hi out
    assert dm.query(confidence=(0.5, None))["id"].tolist() == [1, 2, 3]  # 1.0 included
    assert dm.query(confidence=(None, 0.5))["id"].tolist() == [0]
    assert dm.query(confidence=(None, None))["id"].tolist() == [0, 1, 2, 3]
    assert dm.query(confidence=0.5)["id"].tolist() == [1]


def test_query_combines_conditions(dm: fastcarto.DataMap) -> None:
    df = dm.to_pandas()
    got = dm.query(confidence=(None, 0.3), variability=(None, 0.15), never_learned=True)
    expected = df[(df.confidence < 0.3) & (df.variability < 0.15) & df.never_learned]
    assert got["id"].tolist() == expected["id"].tolist()
    got = dm.query(confidence=(0.35, 0.5), variability=(0.05, 0.18), forgetting=0)
    expected = df[
        (df.confidence >= 0.35)
        & (df.confidence < 0.5)
        & (df.variability >= 0.05)
        & (df.variability < 0.18)
        & (df.forgetting == 0)
    ]
    assert got["id"].tolist() == expected["id"].tolist()
    assert dm.query(never_learned=False)["id"].tolist() == df[~df.never_learned]["id"].tolist()
    assert got.kind == "logits" and got.columns == dm.columns


def test_query_regions_and_nullable_columns(dm: fastcarto.DataMap) -> None:
    regions = dm.regions()
    hard = dm.query(region="hard-to-learn")
    assert hard["id"].tolist() == np.flatnonzero(regions == "hard-to-learn").tolist()
    both = dm.query(region=["hard-to-learn", "ambiguous"])
    assert len(both) == int(regions.isin(["hard-to-learn", "ambiguous"]).sum())
    rule = RegionRule(confidence=0.9)
    assert len(dm.query(region="easy-to-learn", rule=rule)) == int(
        (dm.regions(rule) == "easy-to-learn").sum()
    )
    # first_learned is null for never-learned examples: they never match an interval
    early = dm.query(first_learned=(None, 2))
    first = dm.to_pandas()["first_learned"]
    assert early["id"].tolist() == dm["id"][(first < 2).fillna(False).to_numpy(bool)].tolist()


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"accuracy": (0, 1)}, ValueError, "no column 'accuracy'"),
        ({"confidence": True}, TypeError, "boolean columns"),
        ({"never_learned": (0, 1)}, TypeError, "never_learned=True"),
        ({"confidence": (0, 1, 2)}, ValueError, "two bounds"),
        ({"confidence": ("a", 1)}, TypeError, "numbers or None"),
        ({"confidence": "high"}, TypeError, "half-open interval"),
        ({"region": "easy"}, ValueError, "unknown region 'easy'"),
    ],
)
def test_query_errors(
    dm: fastcarto.DataMap, kwargs: dict[str, Any], error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        dm.query(**kwargs)
