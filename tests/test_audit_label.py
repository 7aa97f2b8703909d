"""The ``label`` and ``underperforming_group`` issue types against cleanlab's ``Datalab``."""

from __future__ import annotations

import warnings
from typing import Any

import fastcarto
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import scipy.sparse
from conftest import FEW_EXAMPLES, FEWEST_EXAMPLES
from fastcarto import _core
from fastcarto._audit import label, underperforming_group
from fastcarto._audit._base import AuditInputs, KnnGraph
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("cleanlab")
pytest.importorskip("datasets")  # cleanlab's Datalab imports it
from cleanlab import Datalab


def _stable_round_preserving_sum(iterable: Any) -> npt.NDArray[np.int64]:
    """cleanlab's ``round_preserving_sum`` with numpy's sort made stable."""
    floats = np.asarray(iterable, dtype=float)
    ints = floats.round()
    orig_sum = np.sum(floats).round()
    int_sum = np.sum(ints).round()
    while abs(int_sum - orig_sum) > 1e-6:
        diff = np.round(orig_sum - int_sum)
        increment = -1 if int(diff < 0.0) else 1
        changes = min(int(abs(diff)), len(iterable))
        indices = np.argsort(floats - ints, kind="stable")[::-increment][:changes]
        ints[indices] += increment
        int_sum = np.sum(ints).round()
    return ints.astype(int)


def _stable_prune_by_count(args: list[Any]) -> npt.NDArray[np.bool_]:
    """cleanlab's ``filter._prune_by_count`` with numpy's sort made stable."""
    import cleanlab.filter

    k, min_examples_per_class, arrays = args
    if arrays is None:
        pred_probs = cleanlab.filter.pred_probs_by_class[k]  # type: ignore[attr-defined]
        prune_count_matrix = cleanlab.filter.prune_count_matrix_cols[k]  # type: ignore[attr-defined]
    else:
        pred_probs, prune_count_matrix = arrays
    mask = np.zeros(pred_probs.shape[0], dtype=bool)
    if pred_probs.shape[0] <= min_examples_per_class:
        return mask
    for j in range(pred_probs.shape[1]):
        num2prune = prune_count_matrix[j]
        if k != j and num2prune > 0:
            margin = pred_probs[:, j] - pred_probs[:, k]
            mask[np.argsort(-margin, kind="stable")[:num2prune]] = True
    return mask


@pytest.fixture(autouse=True)
def stable_cleanlab(monkeypatch: pytest.MonkeyPatch) -> None:
    """cleanlab with numpy's sorts made stable.

    cleanlab breaks ties (equal rounding residuals of the calibrated confident joint, equal
    pruning margins) by the order of numpy's default ``argsort``, which is not stable and, on
    AVX-512 machines, is a SIMD sort whose order among equal values is the hardware's: cleanlab's
    own flags differ between machines there. fastcarto breaks ties by row order; these tests
    check that it equals cleanlab with that one choice made stable, and nothing else changed.
    """
    import cleanlab.filter
    import cleanlab.internal.util

    monkeypatch.setattr(
        cleanlab.internal.util, "round_preserving_sum", _stable_round_preserving_sum
    )
    monkeypatch.setattr(cleanlab.filter, "_prune_by_count", _stable_prune_by_count)


def knn_graph(features: npt.NDArray[Any], k: int, metric: str = "euclidean") -> KnnGraph:
    """What cleanlab computes: scikit-learn's exact neighbours, the example itself left out."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(features)
    dist, idx = nn.kneighbors()
    return KnnGraph(dist.astype(np.float32), idx.astype(np.int64), metric)


def csr(graph: KnnGraph) -> scipy.sparse.csr_matrix:
    n, k = graph.indices.shape
    return scipy.sparse.csr_matrix(
        (graph.distances.ravel(), graph.indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)
    )


def inputs_of(labels: npt.NDArray[np.int64], **kwargs: Any) -> AuditInputs:
    k = int(kwargs["pred_probs"].shape[1]) if kwargs.get("pred_probs") is not None else None
    n_classes = k if k is not None else int(labels.max()) + 1
    names = np.array([f"c{i}" for i in range(n_classes)])
    return AuditInputs(n=len(labels), labels=labels, class_names=names, **kwargs)


def cleanlab_lab(labels: npt.NDArray[np.int64], issue_types: dict[str, Any], **kwargs: Any) -> Any:
    names = np.array([f"c{i}" for i in range(int(labels.max()) + 1)])
    lab = Datalab({"y": names[labels]}, label_name="y", verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(issue_types=issue_types, **kwargs)
    return lab


def score_of(lab: Any, name: str) -> float:
    summary = lab.get_issue_summary()
    return float(summary.loc[summary["issue_type"] == name, "score"].iloc[0])


def assert_label_agrees(ours: Any, lab: Any) -> None:
    theirs = lab.get_issues("label")
    np.testing.assert_array_equal(ours.issues["is_label_issue"], theirs["is_label_issue"])
    np.testing.assert_allclose(ours.issues["label_score"], theirs["label_score"], rtol=1e-12)
    np.testing.assert_array_equal(ours.issues["given_label"], theirs["given_label"])
    np.testing.assert_array_equal(ours.issues["predicted_label"], theirs["predicted_label"])
    assert ours.score == pytest.approx(score_of(lab, "label"), rel=1e-12)
    info = lab.get_info("label")
    assert ours.info["num_label_issues"] == info["num_label_issues"]
    assert ours.info["average_label_quality"] == pytest.approx(info["average_label_quality"])
    np.testing.assert_array_equal(ours.info["confident_joint"], info["confident_joint"])
    for key in ("py", "noise_matrix", "inverse_noise_matrix", "confident_thresholds"):
        np.testing.assert_allclose(ours.info[key], info[key], rtol=1e-9, atol=1e-15)
    assert ours.info["find_issues_inputs"] == info["find_issues_inputs"]
    for key, by in (
        ("classes_by_label_quality", ["Class Index"]),
        ("overlapping_classes", ["Class Index A", "Class Index B"]),
    ):
        a = ours.info[key].sort_values(by).reset_index(drop=True)
        b = info[key].sort_values(by).reset_index(drop=True)
        assert list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, atol=1e-12)


def noisy(
    rng: np.random.Generator, n: int, k: int, noise: float, sharp: float = 3.0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Labels with a fraction flipped, and probabilities of a model that knows the truth."""
    truth = rng.integers(0, k, n)
    labels = np.where(rng.random(n) < noise, rng.integers(0, k, n), truth)
    logits = rng.normal(size=(n, k)) + sharp * np.eye(k)[truth]
    p = np.exp(logits)
    return labels.astype(np.int64), p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("seed", "n", "k", "noise"),
    [(0, 200, 3, 0.2), (1, 400, 10, 0.3), (2, 150, 2, 0.1), (3, 300, 5, 0.0), (4, 120, 4, 0.6)],
)
def test_label_from_pred_probs_agrees_with_cleanlab(
    seed: int, n: int, k: int, noise: float
) -> None:
    rng = np.random.default_rng(seed)
    labels, p = noisy(rng, n, k, noise)
    ours = label.find(inputs_of(labels, pred_probs=p))
    assert_label_agrees(ours, cleanlab_lab(labels, {"label": {}}, pred_probs=p))


def test_label_on_uninformative_pred_probs_agrees_with_cleanlab() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 250).astype(np.int64)
    p = rng.dirichlet(np.ones(3), 250)
    ours = label.find(inputs_of(labels, pred_probs=p))
    assert_label_agrees(ours, cleanlab_lab(labels, {"label": {}}, pred_probs=p))


def adversarial() -> list[tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    rng = np.random.default_rng(7)
    cases = []
    # ties: probabilities on a coarse grid, many identical rows and margins
    labels, p = noisy(rng, 16, 3, 0.3)
    grid = np.round(p * 4) + 0.5
    cases.append(("ties", labels, grid / grid.sum(axis=1, keepdims=True)))
    # identical rows everywhere
    labels = rng.integers(0, 3, 15).astype(np.int64)
    cases.append(("identical", labels, np.tile([0.5, 0.3, 0.2], (15, 1))))
    # one class dominant
    labels, p = noisy(rng, 300, 3, 0.1)
    labels[rng.random(300) < 0.85] = 0
    cases.append(("dominant", labels, p))
    # a class with no confident example: class 2 is never likely
    labels, p = noisy(rng, 200, 3, 0.2)
    p[:, 2] = 0.01
    p /= p.sum(axis=1, keepdims=True)
    cases.append(("never-confident", labels, p))
    # a class with fewer than min_examples_per_class examples
    labels, p = noisy(rng, 200, 3, 0.2)
    labels[labels == 2] = 1
    labels[:6] = 2
    cases.append(("tiny-class", labels, p))
    # exactly one-hot predictions
    labels, p = noisy(rng, 100, 4, 0.2, sharp=50.0)
    cases.append(("one-hot", labels, np.eye(4)[p.argmax(axis=1)]))
    return cases


@pytest.mark.parametrize(("name", "labels", "p"), adversarial(), ids=lambda c: str(c)[:16])
def test_label_on_adversarial_pred_probs_agrees_with_cleanlab(
    name: str, labels: npt.NDArray[np.int64], p: npt.NDArray[np.float64]
) -> None:
    ours = label.find(inputs_of(labels, pred_probs=p))
    assert_label_agrees(ours, cleanlab_lab(labels, {"label": {}}, pred_probs=p))


@FEWEST_EXAMPLES
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 120),
    k=st.integers(2, 5),
    noise=st.floats(0.0, 0.8),
    sharp=st.floats(0.0, 6.0),
)
def test_label_agrees_with_cleanlab_on_random_inputs(
    seed: int, n: int, k: int, noise: float, sharp: float
) -> None:
    rng = np.random.default_rng(seed)
    labels, p = noisy(rng, n, k, noise, sharp)
    labels[:k] = np.arange(k)  # every class present, as Datalab's label map has them
    ours = label.find(inputs_of(labels, pred_probs=p))
    assert_label_agrees(ours, cleanlab_lab(labels, {"label": {}}, pred_probs=p))


def test_label_thresholds_and_min_examples_agree_with_cleanlab() -> None:
    rng = np.random.default_rng(11)
    labels, p = noisy(rng, 200, 3, 0.3)
    t = [0.4, 0.5, 0.6]
    ours = label.find(inputs_of(labels, pred_probs=p), thresholds=t)
    assert_label_agrees(ours, cleanlab_lab(labels, {"label": {"thresholds": t}}, pred_probs=p))
    kwargs = {"find_label_issues_kwargs": {"min_examples_per_class": 80}}
    ours = label.find(inputs_of(labels, pred_probs=p), clean_learning_kwargs=kwargs)
    lab = cleanlab_lab(labels, {"label": {"clean_learning_kwargs": kwargs}}, pred_probs=p)
    assert_label_agrees(ours, lab)


@pytest.mark.parametrize("seed", [0, 1])
def test_label_from_features_agrees_with_cleanlab(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4, size=(3, 6))
    truth = rng.integers(0, 3, 240)
    x = centers[truth] + rng.normal(size=(240, 6))
    labels = np.where(rng.random(240) < 0.15, rng.integers(0, 3, 240), truth).astype(np.int64)
    graph = knn_graph(x, 10)
    ours = label.find(inputs_of(labels, features=x, knn_graph=graph))
    lab = cleanlab_lab(labels, {"label": {}}, features=x)
    assert ours.info["find_issues_inputs"] == {"features": True, "pred_probs": False}
    assert_label_agrees(ours, lab)


def test_label_from_dynamics_follows_the_map_ids() -> None:
    from fastcarto import _regions

    rng = np.random.default_rng(3)
    n, k, epochs = 60, 3, 4
    labels = rng.integers(0, k, n).astype(np.int64)
    p = rng.dirichlet(np.ones(k), size=(epochs, n))
    dm = fastcarto.compute(p, labels, kind="probs")
    # the map in another order, one example missing; its own rule's flags (the count of wrong
    # labels is estimated from the map it is given), put back in dataset order
    order = rng.permutation(n)[:-1]
    shuffled = _regions.subset(dm, order)
    expected = shuffled.label_issues().set_index(pd.Index(order)).reindex(np.arange(n))
    ours = label.find(inputs_of(labels, pred_probs=p[-1], dynamics=shuffled))
    got = ours.issues
    assert list(got.columns) == [
        "is_label_issue",
        "label_score",
        "given_label",
        "predicted_label",
        "region",
    ]
    missing = np.setdiff1d(np.arange(n), order)
    np.testing.assert_array_equal(
        got["is_label_issue"].to_numpy()[order],
        expected["is_label_issue"].to_numpy()[order].astype(bool),
    )
    np.testing.assert_allclose(
        got["label_score"].to_numpy()[order],
        expected["label_score"].to_numpy()[order].astype(float),
    )
    assert not got["is_label_issue"].to_numpy()[missing].any()
    assert np.isnan(got["label_score"].to_numpy()[missing]).all()
    regions = dm.regions().to_numpy()
    np.testing.assert_array_equal(got["region"].to_numpy()[order], regions[order])
    assert got["region"].isna().to_numpy()[missing].all()
    names = np.array([f"c{i}" for i in range(k)])
    np.testing.assert_array_equal(got["given_label"], names[labels])
    pred = expected["predicted_label"].to_numpy()[order].astype(np.int64)
    np.testing.assert_array_equal(got["predicted_label"].to_numpy()[order], names[pred])
    assert ours.info["num_label_issues"] == int(expected["is_label_issue"].to_numpy()[order].sum())
    assert ours.score == pytest.approx(1 - ours.info["num_label_issues"] / n)


def test_label_bad_input_is_a_clear_error() -> None:
    rng = np.random.default_rng(0)
    labels, p = noisy(rng, 50, 3, 0.1)
    with pytest.raises(TypeError, match="unknown parameter"):
        label.find(inputs_of(labels, pred_probs=p), thershold=0.3)
    with pytest.raises(ValueError, match="does not support noise_matrix"):
        label.find(inputs_of(labels, pred_probs=p), noise_matrix=np.eye(3))
    with pytest.raises(ValueError, match="shape"):
        label.find(inputs_of(labels, pred_probs=p[:-1]))
    bad = p.copy()
    bad[4, 1] = np.nan
    with pytest.raises(fastcarto.FastcartoError, match=r"pred_probs\[4\]"):
        label.find(inputs_of(labels, pred_probs=bad))
    out_of_range = labels.copy()
    out_of_range[3] = 7
    inputs = inputs_of(labels, pred_probs=p)
    inputs.labels = out_of_range
    with pytest.raises(fastcarto.LabelError):
        label.find(inputs)
    one_class = AuditInputs(
        n=50,
        labels=np.zeros(50, np.int64),
        class_names=np.array(["a"]),
        pred_probs=np.ones((50, 1)),
    )
    with pytest.raises(fastcarto.FastcartoError, match="at least 2 classes"):
        label.find(one_class)
    with pytest.raises(ValueError, match="thresholds"):
        label.find(inputs_of(labels, pred_probs=p), thresholds=[0.5])
    with pytest.raises(ValueError, match="k must be"):
        label.find(inputs_of(labels, features=rng.normal(size=(50, 2))), k=0)
    with pytest.raises(ValueError, match="features or a kNN graph"):
        label.find(inputs_of(labels))
    assert not label.can_run(inputs_of(labels))
    assert label.can_run(inputs_of(labels, pred_probs=p))


def blobs(
    rng: np.random.Generator, per_blob: int = 60
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Four tight 2-D blobs; the model is wrong on the last one."""
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    blob = np.repeat(np.arange(4), per_blob)
    x = centers[blob] + rng.normal(scale=0.4, size=(len(blob), 2))
    labels = rng.integers(0, 2, len(blob)).astype(np.int64)
    p = np.full((len(blob), 2), 0.05)
    p[np.arange(len(blob)), labels] = 0.95
    bad = blob == 3
    p[bad] = p[bad][:, ::-1]
    return x, labels, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_underperforming_group_agrees_with_cleanlab(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, labels, p = blobs(rng)
    p[:180][rng.random(180) < 0.1] = [0.5, 0.5]  # some doubt outside the bad blob
    graph = knn_graph(x, 10)
    ours = underperforming_group.find(inputs_of(labels, pred_probs=p, knn_graph=graph))
    lab = cleanlab_lab(labels, {"underperforming_group": {}}, pred_probs=p, knn_graph=csr(graph))
    theirs = lab.get_issues("underperforming_group")
    np.testing.assert_array_equal(
        ours.issues["is_underperforming_group_issue"], theirs["is_underperforming_group_issue"]
    )
    np.testing.assert_allclose(
        ours.issues["underperforming_group_score"],
        theirs["underperforming_group_score"],
        rtol=1e-12,
    )
    assert 50 <= ours.issues["is_underperforming_group_issue"].sum() <= 60  # the bad blob
    assert ours.score == pytest.approx(score_of(lab, "underperforming_group"), rel=1e-12)
    info = lab.get_info("underperforming_group")
    stats, their_stats = ours.info["clustering"]["stats"], info["clustering"]["stats"]
    np.testing.assert_array_equal(stats["cluster_ids"], their_stats["cluster_ids"])
    assert stats["n_clusters"] == their_stats["n_clusters"]
    assert stats["underperforming_cluster_id"] == their_stats["underperforming_cluster_id"]
    assert ours.info["nearest_neighbor"] == info["nearest_neighbor"]
    np.testing.assert_allclose(
        ours.info["distance_to_nearest_neighbor"], info["distance_to_nearest_neighbor"]
    )


def test_underperforming_group_with_cluster_ids_and_threshold_agrees_with_cleanlab() -> None:
    rng = np.random.default_rng(4)
    labels, p = noisy(rng, 300, 3, 0.3)
    ids = rng.integers(-1, 8, 300)
    for params in ({"cluster_ids": ids}, {"cluster_ids": ids, "threshold": 0.9}):
        ours = underperforming_group.find(inputs_of(labels, pred_probs=p), **params)
        lab = cleanlab_lab(labels, {"underperforming_group": params}, pred_probs=p)
        theirs = lab.get_issues("underperforming_group")
        np.testing.assert_array_equal(
            ours.issues["is_underperforming_group_issue"], theirs["is_underperforming_group_issue"]
        )
        np.testing.assert_allclose(
            ours.issues["underperforming_group_score"], theirs["underperforming_group_score"]
        )
        assert ours.score == pytest.approx(score_of(lab, "underperforming_group"))


@FEW_EXAMPLES
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 80),
    k=st.integers(1, 8),
    eps=st.floats(0.05, 1.5),
    min_samples=st.integers(1, 8),
)
def test_dbscan_matches_scikit_learn(
    seed: int, n: int, k: int, eps: float, min_samples: int
) -> None:
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(seed)
    k = min(k, n - 1)
    x = rng.normal(size=(n, 2))
    if n > 4:
        x[1] = x[0]  # an exact duplicate: distance 0 stays an edge
    graph = knn_graph(x, k)
    ours = _core.dbscan(graph.indices, graph.distances, eps=eps, min_samples=min_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(
            csr(graph)
        )
    np.testing.assert_array_equal(ours, theirs)


def test_underperforming_group_bad_input_is_a_clear_error() -> None:
    rng = np.random.default_rng(0)
    x, labels, p = blobs(rng, per_blob=10)
    inputs = inputs_of(labels, pred_probs=p, knn_graph=knn_graph(x, 10))
    with pytest.raises(TypeError):
        underperforming_group.find(inputs, treshold=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="clustering_kwargs"):
        underperforming_group.find(inputs, clustering_kwargs={"min_cluster_size": 3})
    with pytest.raises(ValueError, match="eps"):
        underperforming_group.find(inputs, clustering_kwargs={"eps": 0})
    with pytest.raises(ValueError, match="No meaningful clusters"):
        underperforming_group.find(inputs, clustering_kwargs={"eps": 1e-9})
    with pytest.raises(ValueError, match="cluster_ids"):
        underperforming_group.find(inputs, cluster_ids=np.zeros(3, np.int64))
    with pytest.raises(fastcarto.FastcartoError, match="cluster ids"):
        underperforming_group.find(inputs, cluster_ids=np.full(len(labels), -5))
    with pytest.warns(UserWarning, match="less than 0"):
        underperforming_group.find(inputs, threshold=-1.0)
    with pytest.raises(ValueError, match="metric"):
        underperforming_group.find(inputs, metric="cosine")
    assert not underperforming_group.can_run(inputs_of(labels, pred_probs=p))
    assert underperforming_group.can_run(inputs)
