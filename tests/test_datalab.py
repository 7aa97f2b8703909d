"""fastcarto.Datalab: the orchestration, the ``null`` and ``class_imbalance`` issue types
against cleanlab's Datalab on the same inputs, the report, the plots and bad input."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import FEW_EXAMPLES
from fastcarto import Datalab
from fastcarto._plots import ISSUE_COLORS
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex


def cleanlab_lab(data: Any, label_name: str | None, **find: Any) -> Any:
    """cleanlab's Datalab after find_issues, silent."""
    from cleanlab import Datalab as CleanlabDatalab

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        lab = CleanlabDatalab(data=data, label_name=label_name, verbosity=0)
        lab.find_issues(**find)
    return lab


def assert_same_type(ours: Datalab, theirs: Any, name: str) -> None:
    """Flags equal, scores and the summary score within float noise, info as cleanlab's."""
    a, b = ours.get_issues(name), theirs.get_issues(name)
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a[f"is_{name}_issue"], b[f"is_{name}_issue"])
    np.testing.assert_allclose(a[f"{name}_score"], b[f"{name}_score"], rtol=1e-6)
    sa, sb = ours.get_issue_summary(name), theirs.get_issue_summary(name)
    assert sa["num_issues"].tolist() == sb["num_issues"].tolist()
    np.testing.assert_allclose(sa["score"], sb["score"], rtol=1e-6)


def features_with_nulls(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    x[rng.random((n, d)) < 0.15] = np.nan
    x[rng.choice(n, size=max(1, n // 20), replace=False)] = np.nan
    return x


# ---------------------------------------------------------------------------------------------
# null and class_imbalance against cleanlab


@pytest.mark.parametrize("seed", range(4))
def test_null_matches_cleanlab(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = 150 + 50 * seed, 1 + 2 * seed
    x = features_with_nulls(rng, n, d)
    labels = rng.integers(0, 3, n)
    ours = Datalab({"y": labels}, label_name="y", verbosity=0)
    ours.find_issues(features=x.astype(np.float32) if seed % 2 else x, issue_types={"null": {}})
    theirs = cleanlab_lab({"y": labels}, "y", features=x, issue_types={"null": {}})
    assert_same_type(ours, theirs, "null")
    mine, cl = ours.get_info("null"), theirs.get_info("null")
    assert mine["most_common_issue"] == cl["most_common_issue"]
    np.testing.assert_allclose(mine["column_impact"], cl["column_impact"])
    np.testing.assert_allclose(mine["average_null_score"], cl["average_null_score"])


def test_an_issue_types_dict_reused_from_cleanlab_works() -> None:
    # cleanlab writes features= into each type's parameters, in place.
    x = features_with_nulls(np.random.default_rng(5), 80, 3)
    labels = np.arange(80) % 4
    issue_types: dict[str, dict[str, Any]] = {"null": {}, "class_imbalance": {}}
    theirs = cleanlab_lab({"y": labels}, "y", features=x, issue_types=issue_types)
    assert "features" in issue_types["null"]
    ours = Datalab({"y": labels}, label_name="y", verbosity=0)
    ours.find_issues(features=x, issue_types=issue_types)
    assert_same_type(ours, theirs, "null")
    with pytest.raises(ValueError, match=r"pass it to find_issues\(features=...\)"):
        ours.find_issues(features=x.copy(), issue_types=issue_types)


def test_null_without_any_nan_matches_cleanlab() -> None:
    x = np.random.default_rng(0).normal(size=(50, 4))
    ours = Datalab({"y": np.arange(50) % 2}, label_name="y", verbosity=0)
    ours.find_issues(features=x, issue_types={"null": {}})
    theirs = cleanlab_lab({"y": np.arange(50) % 2}, "y", features=x, issue_types={"null": {}})
    assert (
        ours.get_info("null")["most_common_issue"]
        == theirs.get_info("null")["most_common_issue"]
        == {"pattern": "no_null", "rows_affected": [], "count": 0}
    )
    assert_same_type(ours, theirs, "null")


@pytest.mark.parametrize(
    ("counts", "threshold"),
    [
        ([100, 100, 3], 0.1),  # imbalanced
        ([100, 100, 40], 0.1),  # balanced
        ([50, 50, 50, 50], 0.1),  # ties go to class 0
        ([300], 0.1),  # a single class
        ([90, 10], 0.2),  # p = 0.1 = threshold / K exactly: not an issue
        ([95, 5], 0.5),
    ],
)
def test_class_imbalance_matches_cleanlab(counts: list[int], threshold: float) -> None:
    rng = np.random.default_rng(1)
    names = np.array(["cat", "dog", "emu", "fox"])
    labels = rng.permutation(np.repeat(names[: len(counts)], counts))
    params = {"class_imbalance": {"threshold": threshold}}
    ours = Datalab({"y": labels}, label_name="y", verbosity=0)
    ours.find_issues(issue_types=params)
    theirs = cleanlab_lab({"y": labels}, "y", issue_types=params)
    assert_same_type(ours, theirs, "class_imbalance")
    mine, cl = ours.get_info("class_imbalance"), theirs.get_info("class_imbalance")
    assert mine["Rarest Class"] == cl["Rarest Class"]
    assert mine["threshold"] == cl["threshold"]
    assert mine["class_names"] == cl["class_names"]
    np.testing.assert_array_equal(mine["given_label"], cl["given_label"])
    np.testing.assert_array_equal(
        ours.get_issues("class_imbalance")["given_label"],
        theirs.get_issues("class_imbalance")["given_label"],
    )


@FEW_EXAMPLES
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=120),
    threshold=st.floats(0.0, 3.0),
)
def test_class_imbalance_matches_cleanlab_on_random_labels(
    labels: list[int], threshold: float
) -> None:
    y = np.array(labels)
    params = {"class_imbalance": {"threshold": threshold}}
    ours = Datalab({"y": y}, label_name="y", verbosity=0)
    ours.find_issues(issue_types=params)
    theirs = cleanlab_lab({"y": y}, "y", issue_types=params)
    assert_same_type(ours, theirs, "class_imbalance")
    assert (
        ours.get_info("class_imbalance")["Rarest Class"]
        == theirs.get_info("class_imbalance")["Rarest Class"]
    )


# ---------------------------------------------------------------------------------------------
# the Datalab's API


@pytest.fixture
def small() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    n = 240
    labels = np.where(rng.random(n) < 0.5, "a", "z-rare")
    labels = np.where(np.arange(n) < 3, "z-rare", np.where(labels == "a", "a", "b"))
    x = rng.normal(size=(n, 4))
    x[10] = np.nan
    x[11, 2] = np.nan
    return {"labels": labels, "x": x, "n": n}


def test_data_of_every_kind_gives_the_same_audit(small: dict[str, Any]) -> None:
    import polars as pl

    frames: list[Any] = [
        {"label": small["labels"]},
        pd.DataFrame({"label": small["labels"], "other": 1}),
        pa.table({"label": small["labels"]}),
        pl.DataFrame({"label": small["labels"]}),
        {"label": small["labels"].tolist()},
    ]
    datasets = pytest.importorskip("datasets")
    frames.append(datasets.Dataset.from_dict({"label": small["labels"].tolist()}))
    results = []
    for data in frames:
        lab = Datalab(data, label_name="label", verbosity=0)
        lab.find_issues(features=small["x"], issue_types={"null": {}, "class_imbalance": {}})
        results.append(lab.get_issues())
        assert lab.class_names == ["a", "b", "z-rare"]
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0], other)


def test_a_class_label_column_keeps_its_names() -> None:
    datasets = pytest.importorskip("datasets")
    codes = np.r_[np.zeros(50, dtype=int), np.ones(3, dtype=int), np.full(40, 2)]
    features = datasets.Features({"label": datasets.ClassLabel(names=["zebra", "ant", "cat"])})
    data = datasets.Dataset.from_dict({"label": codes.tolist()}, features=features)
    ours = Datalab(data, label_name="label", verbosity=0)
    assert ours.class_names == ["zebra", "ant", "cat"]
    np.testing.assert_array_equal(ours.labels, codes)
    ours.find_issues(issue_types={"class_imbalance": {}})
    theirs = cleanlab_lab(data, "label", issue_types={"class_imbalance": {}})
    assert_same_type(ours, theirs, "class_imbalance")
    assert ours.get_info("class_imbalance")["Rarest Class"] == "ant"
    assert theirs.get_info("class_imbalance")["Rarest Class"] == "ant"


def test_default_types_follow_the_inputs(small: dict[str, Any]) -> None:
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}})
    assert lab.get_issue_summary()["issue_type"].tolist() == ["null"]
    # Without features only class_imbalance (of the types that need no model output) can run.
    lab2 = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    plan = lab2._plan(
        fastcarto._audit._base.AuditInputs(
            n=small["n"], labels=lab2.labels, class_names=np.array(lab2.class_names)
        ),
        None,
    )
    assert "class_imbalance" in plan
    assert "null" not in plan
    unlabeled = Datalab({"x": np.zeros(small["n"])}, verbosity=0)
    plan = unlabeled._plan(
        fastcarto._audit._base.AuditInputs(n=small["n"], features=small["x"]), None
    )
    assert "class_imbalance" not in plan
    assert "null" in plan


def test_results_accessors(small: dict[str, Any]) -> None:
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}, "class_imbalance": {}})
    issues = lab.issues
    assert list(issues.columns) == [
        "is_null_issue",
        "null_score",
        "is_class_imbalance_issue",
        "class_imbalance_score",
    ]
    assert len(issues) == small["n"]
    summary = lab.issue_summary
    assert summary.dtypes["num_issues"] == np.int64
    assert summary["num_issues"].tolist() == [1, int((small["labels"] == "z-rare").sum())]
    stats = lab.get_info("statistics")
    assert stats["num_examples"] == small["n"]
    assert stats["num_classes"] == 3
    assert stats["health_score"] == pytest.approx(summary["score"].mean())
    assert set(lab.get_info()) == {"statistics", "null", "class_imbalance"}
    assert lab.get_issues("class_imbalance")["given_label"].tolist() == small["labels"].tolist()
    assert "Datalab(240 examples, 3 classes" in repr(lab)
    # A second call adds to (and replaces) the types found, as cleanlab does.
    lab.find_issues(features=small["x"] * 2, issue_types={"null": {}})
    assert lab.get_issue_summary()["issue_type"].tolist() == ["class_imbalance", "null"]


def test_features_from_files_memmaps_and_arrow(small: dict[str, Any], tmp_path: Path) -> None:
    x = small["x"].astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    variants: list[Any] = [
        x,
        path,
        str(path),
        np.load(path, mmap_mode="r"),
        np.asfortranarray(x),
        pa.table({f"f{j}": x[:, j] for j in range(x.shape[1])}),
        pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])}),
        pd.DataFrame(x),
    ]
    expected = None
    for features in variants:
        lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
        lab.find_issues(features=features, issue_types={"null": {}})
        got = lab.get_issues("null")
        if expected is None:
            expected = got
        pd.testing.assert_frame_equal(got, expected)


def test_report_lists_the_most_severe_first(small: dict[str, Any]) -> None:
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}, "class_imbalance": {}})
    text = lab.get_report(num_examples=3)
    assert text.startswith(f"Dataset Information: num_examples: {small['n']}, num_classes: 3")
    # class_imbalance has more issues than null, so it comes first in the table and sections.
    assert text.index("class_imbalance issues") < text.index("null issues")
    assert "Rarest Class: z-rare" in text
    assert "Found 1 examples with null values in all features" in text
    assert "Found 1 examples with null values in some features" in text
    null_section = text[text.index("null issues") :]
    assert "\n10 " in null_section  # the wholly missing row is the first example shown
    assert "score" not in text.split("\n\n")[2]
    assert "lower score" in lab.get_report(show_summary_score=True)
    assert "most_common_issue" in lab.get_report(verbosity=2)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        lab.report(num_examples=3)
    assert out.getvalue() == text + "\n"
    with pytest.raises(ValueError, match="Verbosity level 9"):
        lab.get_report(verbosity=9)


def test_report_of_a_clean_dataset() -> None:
    lab = Datalab({"y": np.arange(40) % 2}, label_name="y", verbosity=0)
    lab.find_issues(features=np.ones((40, 2)), issue_types={"null": {}, "class_imbalance": {}})
    assert lab.get_report().startswith("No issues found in the data. Good job!")
    assert "null issues" in lab.get_report(show_all_issues=True)


def test_report_shows_the_data_map_region_of_label_issues(small: dict[str, Any]) -> None:
    import pandas as pd
    from fastcarto._audit._base import IssueResult

    pytest.importorskip("fastcarto._audit.label")
    rng = np.random.default_rng(0)
    n = small["n"]
    codes = np.unique(small["labels"], return_inverse=True)[1]
    dm = fastcarto.compute(rng.normal(size=(4, n, 3)).astype(np.float32), codes, kind="logits")
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}}, dynamics=dm)
    # A label result as the label type returns one; the report adds each row's region.
    scores = rng.random(n)
    lab._results["label"] = IssueResult(
        issues=pd.DataFrame({"is_label_issue": scores < 0.1, "label_score": scores}),
        score=0.5,
        info={"given_label": codes, "predicted_label": codes},
    )
    section = lab.get_report(num_examples=4).split("- label issues -")[1]
    regions = dm.regions().to_numpy()
    worst = np.argsort(scores, kind="stable")[:4]
    for row in worst:
        line = next(ln for ln in section.splitlines() if ln.startswith(f"{row} "))
        assert line.rstrip().endswith(str(regions[row]))


# ---------------------------------------------------------------------------------------------
# dynamics and knn graphs as inputs


def test_dynamics_rows_are_aligned_by_id(small: dict[str, Any], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = small["n"]
    codes = np.unique(small["labels"], return_inverse=True)[1]
    logits = rng.normal(size=(3, n, 3)).astype(np.float32)
    dm = fastcarto.compute(logits, codes, kind="logits")
    order = rng.permutation(n)
    shuffled = fastcarto.DataMap(
        dm.to_arrow().take(pa.array(order)),  # its id column numbers the rows
        kind="logits",
    )
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}}, dynamics=shuffled)
    assert lab._dynamics is not None
    np.testing.assert_array_equal(lab._dynamics["confidence"], dm["confidence"])
    with pytest.raises(TypeError, match="kind"):
        lab.find_issues(issue_types={"null": {}}, features=small["x"], dynamics=logits)
    with pytest.raises(ValueError, match=r"240 examples 0\.\.239 once each \(got 10 rows"):
        lab.find_issues(issue_types={"null": {}}, features=small["x"], dynamics=dm_head(dm))


def test_a_sparse_knn_graph_becomes_sorted_rows() -> None:
    from fastcarto._datalab import _read_knn_graph
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(0).normal(size=(60, 3))
    graph = NearestNeighbors(n_neighbors=5).fit(x).kneighbors_graph(mode="distance")
    distances, indices = NearestNeighbors(n_neighbors=5).fit(x).kneighbors()
    # Rows kept in column order (sort_indices) are put back in distance order.
    by_column = graph.copy()
    by_column.sort_indices()
    for matrix in (graph, by_column, by_column.tocoo()):
        knn = _read_knn_graph(matrix, 60)
        assert knn is not None
        np.testing.assert_array_equal(knn.indices, indices)
        np.testing.assert_allclose(knn.distances, distances, rtol=1e-6)
        assert knn.distances.dtype == np.float32 and knn.indices.dtype == np.int64
    with pytest.raises(TypeError, match=r"scipy\.sparse"):
        _read_knn_graph(np.zeros((60, 60)), 60)
    with pytest.raises(ValueError, match="60 rows but the dataset has 50"):
        _read_knn_graph(graph, 50)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_a_clear_error(small: dict[str, Any]) -> None:
    labels, x, n = small["labels"], small["x"], small["n"]
    with pytest.raises(KeyError, match="label_name 'nope'"):
        Datalab({"y": labels}, label_name="nope")
    with pytest.raises(ValueError, match="different lengths"):
        Datalab({"y": labels, "z": labels[:-1]}, label_name="y")
    with pytest.raises(ValueError, match="missing value"):
        Datalab({"y": np.array([1.0, np.nan, 2.0])}, label_name="y")
    with pytest.raises(TypeError, match="mix types"):
        Datalab({"y": np.array([1, "a"], dtype=object)}, label_name="y")
    with pytest.raises(TypeError, match="data must be"):
        Datalab([1, 2, 3], label_name="y")
    with pytest.raises(ValueError, match="classification"):
        Datalab({"y": labels}, task="regression", label_name="y")
    lab = Datalab({"y": labels}, label_name="y", verbosity=0)
    with pytest.raises(ValueError, match="call find_issues"):
        lab.get_issues()
    with pytest.raises(ValueError, match=f"features have {n - 1} rows"):
        lab.find_issues(features=x[:-1])
    with pytest.raises(ValueError, match="2-d"):
        lab.find_issues(features=x[:, 0])
    with pytest.raises(TypeError, match="numeric"):
        lab.find_issues(features=np.full((n, 2), "a"))
    with pytest.raises(ValueError, match="pred_probs have 2 columns but the labels have 3"):
        lab.find_issues(pred_probs=np.full((n, 2), 0.5))
    with pytest.raises(ValueError, match=f"pred_probs have {n + 1} rows"):
        lab.find_issues(pred_probs=np.full((n + 1, 3), 1 / 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        lab.find_issues(pred_probs=np.full((n, 3), np.nan))
    with pytest.raises(ValueError, match="unknown issue type 'outliers'"):
        lab.find_issues(features=x, issue_types={"outliers": {}})
    with pytest.raises(ValueError, match=r"unknown parameter.*'k'.*class_imbalance"):
        lab.find_issues(issue_types={"class_imbalance": {"k": 3}})
    with pytest.raises(ValueError, match=r"null.*needs features"):
        lab.find_issues(issue_types={"null": {}})
    with pytest.raises(ValueError, match="empty"):
        lab.find_issues(issue_types={})
    with pytest.raises(FileNotFoundError):
        lab.find_issues(features="missing.npy")
    with pytest.raises(ValueError, match="no issue type can run"):
        Datalab({"x": np.zeros(5)}, verbosity=0).find_issues()
    with pytest.raises(ValueError, match="no results for issue type"):
        lab.find_issues(features=x, issue_types={"null": {}})
        lab.get_issues("outlier")


def test_constant_duplicated_and_all_nan_features_are_flagged_not_errors() -> None:
    n = 30
    labels = np.arange(n) % 3
    for x, flagged in [
        (np.ones((n, 3)), 0),
        (np.tile(np.arange(3.0), (n, 1)), 0),
        (np.full((n, 3), np.nan), n),
    ]:
        lab = Datalab({"y": labels}, label_name="y", verbosity=0)
        lab.find_issues(features=x, issue_types={"null": {}, "class_imbalance": {}})
        assert lab.get_issue_summary("null")["num_issues"].item() == flagged


# ---------------------------------------------------------------------------------------------
# plots


def test_plot_colours_each_example_by_its_first_issue(small: dict[str, Any]) -> None:
    x = np.random.default_rng(2).normal(size=(small["n"], 5))
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=x, issue_types={"class_imbalance": {}, "null": {}})
    fig = lab.plot()
    ax = fig.axes[0]
    points = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    rare = int((small["labels"] == "z-rare").sum())
    assert set(points) == {f"no issue ({small['n'] - rare})", f"class_imbalance ({rare})"}
    flagged = points[f"class_imbalance ({rare})"]
    assert len(flagged.get_offsets()) == rare
    assert to_hex(flagged.get_facecolor()[0]) == ISSUE_COLORS["class_imbalance"].lower()
    # The points are the first two principal components of the features.
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    pcs = centred @ vt[:2].T
    rows = np.flatnonzero(small["labels"] == "z-rare")
    np.testing.assert_allclose(np.abs(flagged.get_offsets()), np.abs(pcs[rows]), atol=1e-9)
    small_fig = lab.plot(max_points=50)
    total = sum(
        len(c.get_offsets()) for c in small_fig.axes[0].collections if isinstance(c, PathCollection)
    )
    assert total == 50


def test_plot_without_features_is_an_error() -> None:
    lab = Datalab({"y": np.arange(10) % 2}, label_name="y", verbosity=0)
    lab.find_issues(issue_types={"class_imbalance": {}})
    with pytest.raises(ValueError, match="features"):
        lab.plot()


def test_datamap_plot_marks_outliers_and_near_duplicates(small: dict[str, Any]) -> None:
    import pandas as pd
    from fastcarto._audit._base import IssueResult

    rng = np.random.default_rng(4)
    n = small["n"]
    codes = np.unique(small["labels"], return_inverse=True)[1]
    dm = fastcarto.compute(rng.normal(size=(4, n, 3)).astype(np.float32), codes, kind="logits")
    lab = Datalab({"y": small["labels"]}, label_name="y", verbosity=0)
    lab.find_issues(features=small["x"], issue_types={"null": {}})
    with pytest.raises(ValueError, match="neither"):
        dm.plot(issues=lab)
    outliers = np.zeros(n, dtype=bool)
    outliers[[3, 50, 70]] = True
    dups = np.zeros(n, dtype=bool)
    dups[[5, 6]] = True
    for name, flags in (("outlier", outliers), ("near_duplicate", dups)):
        lab._results[name] = IssueResult(
            issues=pd.DataFrame({f"is_{name}_issue": flags, f"{name}_score": 1.0 - flags}),
            score=0.9,
        )
    fig = dm.plot(issues=lab)
    labels = {c.get_label(): c for c in fig.axes[0].collections}
    marked = labels["outlier (3)"].get_offsets()
    np.testing.assert_allclose(
        marked, np.column_stack([dm["variability"], dm["confidence"]])[[3, 50, 70]]
    )
    assert len(labels["near duplicate (2)"].get_offsets()) == 2
    with pytest.raises(ValueError, match="by_class"):
        dm.plot(issues=lab, by_class=True)
    with pytest.raises(ValueError, match="audits 240 examples"):
        dm_head(dm).plot(issues=lab)


def dm_head(dm: fastcarto.DataMap) -> fastcarto.DataMap:
    return fastcarto.DataMap(dm.to_arrow().slice(0, 10), kind="logits")
