"""The outlier, near_duplicate and non_iid issue types against cleanlab's Datalab.

Both sides get the same neighbour graph (cleanlab's own, built by scikit-learn with its
exact-duplicate correction, its distances rounded to float32 as fastcarto's graphs are), so
flags must agree exactly and scores to rounding.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from cleanlab.datalab.datalab import Datalab
from cleanlab.internal.neighbor.knn_graph import create_knn_graph_and_index
from cleanlab.outlier import OutOfDistribution
from conftest import FEWEST_EXAMPLES
from fastcarto import FastcartoError
from fastcarto._audit import near_duplicate, non_iid, outlier
from fastcarto._audit._base import AuditInputs, KnnGraph
from fastcarto._audit.knn import knn_graph_for
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse import csr_matrix

Array = npt.NDArray[Any]


def dataset(seed: int, n: int = 240, dims: int = 6, classes: int = 3) -> tuple[Array, Array]:
    """A Gaussian mixture with a few far rows, exact and near duplicates."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(0, 4, (classes, dims))
    x = centres[labels] + rng.normal(0, 1, (n, dims))
    x[:4] += rng.normal(0, 25, (4, dims))  # far away
    x[10:13] = x[20]  # exact copies
    x[30] = x[31] + 1e-4  # a near copy
    return x, labels


def graphs(x: Array, k: int, metric: str | None = None) -> tuple[KnnGraph, csr_matrix]:
    """cleanlab's graph of ``x``, as a KnnGraph (float32) and as the CSR cleanlab reads."""
    csr, _ = create_knn_graph_and_index(x, n_neighbors=k, metric=metric)
    n = x.shape[0]
    d32 = csr.data.reshape(n, k).astype(np.float32)
    idx = csr.indices.reshape(n, k).astype(np.int64)
    same = csr_matrix((d32.ravel().astype(np.float64), csr.indices, csr.indptr), shape=(n, n))
    return KnnGraph(d32, idx, None), same


def run_cleanlab(labels: Array, name: str, params: dict[str, Any], **inputs: Any) -> Any:
    """cleanlab's Datalab on one issue type: (issues, summary row, info)."""
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("ignore")
        lab.find_issues(issue_types={name: dict(params)}, **inputs)  # it adds to the dict
    assert name in set(lab.get_issue_summary()["issue_type"]), out.getvalue()
    return lab.get_issues(name), lab.get_issue_summary(name), lab.get_info(name)


def assert_same(
    ours: pd.DataFrame, theirs: pd.DataFrame, name: str, rtol: float, atol: float = 0.0
) -> None:
    flag, score = f"is_{name}_issue", f"{name}_score"
    np.testing.assert_array_equal(ours[flag].to_numpy(), theirs[flag].to_numpy())
    np.testing.assert_allclose(
        ours[score].to_numpy(), theirs[score].to_numpy(), rtol=rtol, atol=atol
    )


# --- outlier ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"threshold": 0.1},
        {"threshold": 0.9, "t": 3},
        {"threshold": 1.0},
        {"scaling_factor": 0.5, "metric": "euclidean"},
    ],
)
def test_outlier_from_graph_matches_cleanlab(seed: int, params: dict[str, Any]) -> None:
    x, labels = dataset(seed)
    graph, csr = graphs(x, 10, "euclidean")
    theirs, summary, info = run_cleanlab(labels, "outlier", params, knn_graph=csr)
    result = outlier.find(AuditInputs(n=len(x), labels=labels, knn_graph=graph), **params)
    assert_same(result.issues, theirs, "outlier", rtol=1e-12)
    assert result.score == pytest.approx(summary["score"].iloc[0], rel=1e-12)
    for key in ("threshold", "issue_threshold", "scaling_factor", "k", "t"):
        assert result.info[key] == pytest.approx(info[key], rel=1e-12), key
    assert result.info["metric"] == info["metric"]
    assert result.info["nearest_neighbor"] == info["nearest_neighbor"]
    assert result.issues["is_outlier_issue"].iloc[:4].all()


def test_outlier_duplicates_score_one_under_a_metric() -> None:
    x, labels = dataset(2)
    x[50:62] = x[49]  # more copies than neighbours: average distance 0
    graph, csr = graphs(x, 10, "cosine")
    theirs, _, _ = run_cleanlab(labels, "outlier", {"metric": "cosine"}, knn_graph=csr)
    result = outlier.find(AuditInputs(n=len(x), labels=labels, knn_graph=graph), metric="cosine")
    assert_same(result.issues, theirs, "outlier", rtol=1e-12)
    assert (result.issues["outlier_score"].iloc[49:62] == 1.0).all()


def pred_probs(seed: int, n: int = 300, classes: int = 4) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), labels] += rng.uniform(0, 4, n)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[:5] = 1.0 / classes  # maximally uncertain
    p[5:8] = np.eye(classes)[labels[5:8]]  # one-hot
    return p, labels


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("threshold", [None, 0.5])
def test_outlier_from_pred_probs_matches_cleanlab(seed: int, threshold: float | None) -> None:
    p, labels = pred_probs(seed)
    params = {} if threshold is None else {"threshold": threshold}
    theirs, summary, info = run_cleanlab(labels, "outlier", params, pred_probs=p)
    result = outlier.find(AuditInputs(n=len(p), labels=labels, pred_probs=p), **params)
    assert_same(result.issues, theirs, "outlier", rtol=1e-12)
    assert result.score == pytest.approx(summary["score"].iloc[0], rel=1e-12)
    assert result.info["issue_threshold"] == pytest.approx(info["issue_threshold"], rel=1e-12)
    np.testing.assert_allclose(result.info["confident_thresholds"], info["confident_thresholds"])
    assert result.info["find_issues_inputs"] == info["find_issues_inputs"]


@pytest.mark.parametrize("method", ["entropy", "least_confidence", "gen"])
@pytest.mark.parametrize("adjust", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ood_scores_match_cleanlabs_out_of_distribution(
    method: str, adjust: bool, dtype: type
) -> None:
    # cleanlab's Datalab passes no OOD parameter through to its pred_probs path, so the
    # methods are compared with OutOfDistribution itself.
    p, labels = pred_probs(4, classes=5)
    labels[labels == 4] = 3  # class 4 has no examples: its confident threshold is 2
    p = p.astype(dtype)
    ood = OutOfDistribution(params={"method": method, "adjust_pred_probs": adjust, "M": 3})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        want = ood.fit_score(pred_probs=p, labels=labels if adjust else None)
    result = outlier.find(
        AuditInputs(n=len(p), labels=labels, pred_probs=p),
        method=method,
        adjust_pred_probs=adjust,
        M=3,
    )
    # cleanlab computes float32 input in float32 where nothing promotes it; fastcarto in float64.
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(result.issues["outlier_score"], want, rtol=tol, atol=tol)


# --- near_duplicate ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.13, 0.0, 0.6])
def test_near_duplicate_matches_cleanlab(seed: int, threshold: float) -> None:
    x, labels = dataset(seed)
    graph, csr = graphs(x, 10)
    params = {"threshold": threshold}
    theirs, summary, info = run_cleanlab(labels, "near_duplicate", params, knn_graph=csr)
    result = near_duplicate.find(AuditInputs(n=len(x), labels=labels, knn_graph=graph), **params)
    assert_same(result.issues, theirs, "near_duplicate", rtol=1e-12)
    assert result.score == pytest.approx(summary["score"].iloc[0], rel=1e-12)
    ours_sets = result.issues["near_duplicate_sets"]
    assert len(ours_sets) == len(theirs["near_duplicate_sets"])
    for a, b in zip(ours_sets, theirs["near_duplicate_sets"], strict=True):
        assert a.tolist() == list(b)
    np.testing.assert_array_equal(
        result.issues["distance_to_nearest_neighbor"], theirs["distance_to_nearest_neighbor"]
    )
    assert result.info["median_distance_to_nearest_neighbor"] == pytest.approx(
        info["median_distance_to_nearest_neighbor"], rel=1e-12
    )
    if threshold > 0:
        assert result.issues["is_near_duplicate_issue"].iloc[[10, 11, 12, 20]].all()
        groups = result.info["near_duplicate_groups"]
        assert len({groups[i] for i in (10, 11, 12, 20)}) == 1


@given(
    n=st.integers(3, 40),
    k=st.integers(1, 6),
    copies=st.integers(0, 12),
    threshold=st.sampled_from([0.0, 0.13, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
@FEWEST_EXAMPLES
def test_near_duplicate_sets_match_cleanlab_on_random_graphs(
    n: int, k: int, copies: int, threshold: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, 2)).astype(np.float64)  # many exact ties
    x[: min(copies, n)] = x[0]
    k = min(k, n - 1)
    graph, csr = graphs(x, k, "euclidean")
    labels = np.zeros(n, dtype=np.int64)
    theirs, _, _ = run_cleanlab(labels, "near_duplicate", {"threshold": threshold}, knn_graph=csr)
    result = near_duplicate.find(
        AuditInputs(n=n, labels=labels, knn_graph=graph), threshold=threshold
    )
    assert_same(result.issues, theirs, "near_duplicate", rtol=1e-12)
    pairs = zip(result.issues["near_duplicate_sets"], theirs["near_duplicate_sets"], strict=True)
    for a, b in pairs:
        assert a.tolist() == list(b)


# --- non_iid -------------------------------------------------------------------------------


def drifting(seed: int, n: int = 300, drift: float = 0.0) -> Array:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 4)) + drift * np.linspace(0, 1, n)[:, None]


@pytest.mark.parametrize(
    ("seed", "drift", "params"),
    [
        (0, 0.0, {}),
        (1, 0.0, {"seed": 7}),
        (2, 3.0, {}),
        (3, 1.0, {"num_permutations": 10, "significance_threshold": 0.2}),
        (4, 6.0, {"k": 4}),
    ],
)
def test_non_iid_matches_cleanlab(seed: int, drift: float, params: dict[str, Any]) -> None:
    x = drifting(seed, drift=drift)
    # A user graph is read whole: with k=15 columns, every type reads all 15, as cleanlab does.
    graph, csr = graphs(x, 15)
    labels = np.zeros(len(x), dtype=np.int64)
    theirs, summary, info = run_cleanlab(labels, "non_iid", params, knn_graph=csr)
    result = non_iid.find(AuditInputs(n=len(x), labels=labels, knn_graph=graph), **params)
    assert_same(result.issues, theirs, "non_iid", rtol=1e-9)
    assert result.info["p-value"] == pytest.approx(info["p-value"], rel=1e-9, abs=1e-300)
    assert result.score == pytest.approx(summary["score"].iloc[0], rel=1e-9, abs=1e-300)
    if drift >= 3:
        assert result.issues["is_non_iid_issue"].sum() == 1


def test_non_iid_seed_none_follows_numpys_global_state() -> None:
    x = drifting(5)
    graph, _ = graphs(x, 10)
    inputs = AuditInputs(n=len(x), knn_graph=graph)
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what seed=None reads)
    a = non_iid.find(inputs, seed=None).info["p-value"]
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what seed=None reads)
    b = non_iid.find(inputs, seed=None).info["p-value"]
    assert a == b


# --- without neighbours, and bad input -----------------------------------------------------


def test_rows_without_neighbours_are_not_flagged() -> None:
    # As the search leaves rows with NaN features: no neighbours (-1, +inf), and never a
    # neighbour of another row.
    x, labels = dataset(0)
    missing = np.array([0, 1, 10])  # a far row and an exact copy among them
    present = np.setdiff1d(np.arange(len(x)), missing)
    sub, _ = graphs(x[present], 10)
    d = np.full((len(x), 10), np.inf, dtype=np.float32)
    idx = np.full((len(x), 10), -1, dtype=np.int64)
    d[present] = sub.distances
    idx[present] = present[sub.indices]
    inputs = AuditInputs(n=len(x), labels=labels, knn_graph=KnnGraph(d, idx, None))
    for module in (outlier, near_duplicate, non_iid):
        result = module.find(inputs)
        name = module.NAME
        assert not result.issues[f"is_{name}_issue"].iloc[missing].any()
        assert (result.issues[f"{name}_score"].iloc[missing] == 1.0).all()
        assert np.isfinite(result.score)
        # The other rows are scored as in the graph without the missing rows.
        alone = module.find(AuditInputs(n=len(present), labels=labels[present], knn_graph=sub))
        if name != "non_iid":  # non_iid depends on positions, which the missing rows shift
            np.testing.assert_array_equal(
                result.issues[f"{name}_score"].iloc[present], alone.issues[f"{name}_score"]
            )


def test_unknown_parameters_are_errors() -> None:
    x, labels = dataset(0, n=40)
    graph, _ = graphs(x, 5)
    inputs = AuditInputs(n=len(x), labels=labels, knn_graph=graph)
    for module in (outlier, near_duplicate, non_iid):
        with pytest.raises(ValueError, match=f"unknown parameter.*'treshold'.*{module.NAME}"):
            module.find(inputs, treshold=0.1)


@pytest.mark.parametrize(
    ("module", "params", "match"),
    [
        (outlier, {"threshold": 1.5}, "between 0 and 1"),
        (outlier, {"threshold": -0.1}, "between 0 and 1"),
        (outlier, {"metric": "manhattan"}, "metric must be"),
        (near_duplicate, {"threshold": -1.0}, ">= 0"),
        (near_duplicate, {"threshold": float("nan")}, ">= 0"),
        (non_iid, {"num_permutations": 0}, "at least 1"),
    ],
)
def test_bad_parameters_are_clear_errors(module: Any, params: dict[str, Any], match: str) -> None:
    x, labels = dataset(0, n=40)
    graph, _ = graphs(x, 5)
    with pytest.raises(FastcartoError, match=match):
        module.find(AuditInputs(n=len(x), labels=labels, knn_graph=graph), **params)


@pytest.mark.parametrize(
    ("distances", "indices", "match"),
    [
        ([[0.5], [0.5], [0.5]], [[1], [3], [0]], "outside"),
        ([[0.5], [0.5], [0.5]], [[1], [1], [0]], "itself"),
        ([[np.nan], [0.5], [0.5]], [[1], [0], [0]], "finite"),
        ([[0.5], [0.5]], [[1], [0], [0]], "shape"),
    ],
)
def test_bad_graphs_are_clear_errors(distances: Any, indices: Any, match: str) -> None:
    graph = KnnGraph(
        np.asarray(distances, dtype=np.float32), np.asarray(indices, dtype=np.int64), None
    )
    inputs = AuditInputs(n=3, labels=np.zeros(3, dtype=np.int64), knn_graph=graph)
    for module in (outlier, near_duplicate, non_iid):
        with pytest.raises(FastcartoError, match=match):
            module.find(inputs)


def test_pred_probs_outliers_need_valid_inputs() -> None:
    p, labels = pred_probs(0, n=20)
    with pytest.raises(FastcartoError, match="out of range"):
        outlier.find(AuditInputs(n=20, labels=labels + 4, pred_probs=p))
    with pytest.raises(FastcartoError, match="need labels"):
        outlier.find(AuditInputs(n=20, pred_probs=p))
    bad = p.copy()
    bad[3, 0] = np.nan
    with pytest.raises(FastcartoError, match="example 3"):
        outlier.find(AuditInputs(n=20, labels=labels, pred_probs=bad))
    with pytest.raises(FastcartoError, match="not a valid OOD"):
        outlier.find(AuditInputs(n=20, labels=labels, pred_probs=p), method="typo")
    assert not outlier.can_run(AuditInputs(n=20, pred_probs=p))
    assert not near_duplicate.can_run(AuditInputs(n=20, pred_probs=p))
    assert non_iid.can_run(AuditInputs(n=20, pred_probs=p))


# --- through the shared graph (needs the knn part's knn_graph_for) -------------------------


@pytest.mark.parametrize("dims", [2, 8])
def test_features_path_matches_cleanlab(dims: int) -> None:
    pytest.importorskip("fastcarto._audit.knn")
    x, labels = dataset(6, dims=dims)
    x = x.astype(np.float32)
    inputs = AuditInputs(n=len(x), labels=labels, features=x)
    # Each side computes its own graph. scikit-learn's float32 cosine distances (1 - cos, absolute
    # error ~1e-7) against fastcarto's float64 rescoring move a near-duplicate's distance of ~1e-3
    # by ~1e-4 relative, and can swap two almost equally near neighbours (or pick another of
    # tied copies): flags must agree everywhere, scores on the rows whose neighbours agree.
    ours_graph = knn_graph_for(inputs, 10)
    theirs_graph, _ = graphs(x, 10)
    same = (np.sort(ours_graph.indices, axis=1) == np.sort(theirs_graph.indices, axis=1)).all(1)
    assert same.mean() > 0.9
    for module in (outlier, near_duplicate, non_iid):
        theirs, summary, _ = run_cleanlab(labels, module.NAME, {}, features=x)
        result = module.find(inputs)
        flag = f"is_{module.NAME}_issue"
        np.testing.assert_array_equal(result.issues[flag], theirs[flag])
        assert_same(result.issues[same], theirs[same], module.NAME, rtol=2e-4, atol=1e-8)
        # the summary (non_iid's p-value) reads every row: equal up to the swapped neighbours
        assert result.score == pytest.approx(summary["score"].iloc[0], rel=0.02, abs=1e-12)


def test_non_iid_from_pred_probs_matches_cleanlab() -> None:
    pytest.importorskip("fastcarto._audit.knn")
    p, labels = pred_probs(1)
    theirs, summary, _ = run_cleanlab(labels, "non_iid", {}, pred_probs=p)
    result = non_iid.find(AuditInputs(n=len(p), labels=labels, pred_probs=p))
    # rows 0-7 repeat (uniform and one-hot rows): among equally near neighbours fastcarto keeps
    # the lower rows, scikit-learn an arbitrary one, and non_iid scores index distances; so
    # scores are compared on the rows whose neighbours include no repeated row
    graph, _ = create_knn_graph_and_index(p, n_neighbors=10)
    touched = np.isin(graph.indices.reshape(len(p), -1), np.arange(8)).any(axis=1)
    touched[:8] = True
    ours_rows, theirs_rows = result.issues[~touched], theirs[~touched]
    np.testing.assert_array_equal(result.issues["is_non_iid_issue"], theirs["is_non_iid_issue"])
    assert_same(ours_rows, theirs_rows, "non_iid", rtol=1e-5, atol=1e-8)
    assert result.score == pytest.approx(summary["score"].iloc[0], rel=0.02, abs=1e-12)
