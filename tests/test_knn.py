"""The neighbour graph (``fastcarto.knn``, ``_audit.knn``) against scikit-learn's
``NearestNeighbors``, faiss's ``IndexFlatL2``, cleanlab's own graph and a numpy brute force."""

from __future__ import annotations

from typing import Any

import fastcarto
import numpy as np
import pytest
import scipy.sparse as sp
from fastcarto import KnnGraph, _core
from fastcarto._audit import knn as audit_knn
from fastcarto._audit._base import AuditInputs
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def brute(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Every pair in float64, sorted by (distance, row), then cleanlab's duplicate correction."""
    from cleanlab.internal.neighbor.knn_graph import correct_knn_distances_and_indices

    x = x.astype(np.float64)
    if metric == "euclidean":
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    else:
        norm = np.linalg.norm(x, axis=1)
        unit = np.divide(x, norm[:, None], out=np.zeros_like(x), where=norm[:, None] > 0)
        d = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(d, np.inf)
    n = len(x)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d), axis=1)[:, :k]
    dist = np.take_along_axis(d, order, axis=1)
    return correct_knn_distances_and_indices(x, dist, order)


def clustered(n: int, d: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((c, d))
    return (centres[rng.integers(0, c, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scikit_learn(metric: str, dtype: Any) -> None:
    from sklearn.neighbors import NearestNeighbors

    x = clustered(3000, 20, 8, 1).astype(dtype)
    g = fastcarto.knn(x, 10, metric=metric, exact=True)
    d_ref, i_ref = NearestNeighbors(n_neighbors=10, metric=metric).fit(x).kneighbors()
    assert g.distances.dtype == np.float32 and g.indices.dtype == np.int64
    np.testing.assert_allclose(g.distances, d_ref, rtol=1e-5, atol=1e-6)
    # scikit-learn's float32 cosine rounds at 1e-7: only near-ties may swap.
    assert (g.indices == i_ref).mean() > 0.999


def test_matches_faiss_flat_l2() -> None:
    faiss = pytest.importorskip("faiss")
    x = np.random.default_rng(2).standard_normal((4000, 64)).astype(np.float32)
    index = faiss.IndexFlatL2(64)
    index.add(x)
    dist, idx = index.search(x, 11)
    g = fastcarto.knn(x, 10, metric="euclidean", exact=True)
    assert (g.indices == idx[:, 1:]).all()
    np.testing.assert_allclose(g.distances, np.sqrt(np.maximum(dist[:, 1:], 0)), rtol=1e-4)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_graph_matches_cleanlab_with_repeated_rows(metric: str) -> None:
    from cleanlab.internal.neighbor.knn_graph import create_knn_graph_and_index

    rng = np.random.default_rng(3)
    base = rng.standard_normal((150, 6))
    # sets of 2, 3, 12 (more than k + 1) identical rows and a far row
    x = np.vstack([base, base[:20], base[:10], np.repeat(base[30:31], 11, axis=0), 50 + base[:1]])
    x = rng.permutation(x).astype(np.float32)
    ref, _ = create_knn_graph_and_index(x, n_neighbors=10, metric=metric)
    ours = fastcarto.knn(x, 10, metric=metric, exact=True).to_csr()
    assert (ours.indptr == ref.indptr).all()
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-5, atol=1e-6)
    # Rows at exactly equal distance (a duplicated neighbour) come in scikit-learn's heap
    # order there and by row number here: compare each row sorted by (distance, row), except
    # where a tie straddles the k-th neighbour (which of the tied rows make the cut is
    # arbitrary there; here the lower rows do).
    d_ours, i_ours = ours.data.reshape(-1, 10), ours.indices.reshape(-1, 10)
    d_ref, i_ref = ref.data.reshape(-1, 10).astype(np.float32), ref.indices.reshape(-1, 10)
    if metric == "cosine":  # float32 rounding of scikit-learn's cosine: compare at 1e-6
        d_ours, d_ref = np.round(d_ours, 6), np.round(d_ref, 6)
    for d, i in ((d_ours, i_ours), (d_ref, i_ref)):
        order = np.lexsort((i, d), axis=1)
        d[:], i[:] = np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)
    cut = d_ref == d_ref[:, -1:]
    assert (i_ours == i_ref)[~cut].all()


def test_constant_features_are_all_duplicates() -> None:
    from cleanlab.internal.neighbor.knn_graph import create_knn_graph_and_index

    x = np.full((40, 5), 2.5)
    ref, _ = create_knn_graph_and_index(x, n_neighbors=4)
    for exact in (True, False):
        g = fastcarto.knn(x, 4, exact=exact).to_csr()
        assert (g.indices == ref.indices).all() and (g.data == 0).all()


@given(
    arrays(np.int8, st.tuples(st.integers(2, 30), st.integers(1, 4)), elements=st.integers(-3, 3)),
    st.data(),
)
def test_small_integer_grids_match_brute_force(x: np.ndarray, data: st.DataObject) -> None:
    # Integer coordinates: squared distances are exact, so every tie is a true tie.
    k = data.draw(st.integers(1, len(x) - 1))
    g = fastcarto.knn(x, k, metric="euclidean", exact=True)
    d_ref, i_ref = brute(x, k, "euclidean")
    np.testing.assert_array_equal(g.indices, i_ref)
    np.testing.assert_allclose(g.distances, d_ref, rtol=1e-6)
    d_cos, _ = brute(x, k, "cosine")
    zero = ~x.any(axis=1)
    got = fastcarto.knn(x, k, metric="cosine", exact=True).distances
    np.testing.assert_allclose(got[~zero], d_cos[~zero], atol=1e-6)


def test_nan_rows_are_left_out() -> None:
    x = np.random.default_rng(4).standard_normal((300, 8))
    x[[5, 77], 3] = np.nan
    g = fastcarto.knn(x, 5, exact=True)
    assert (g.indices[[5, 77]] == -1).all() and np.isinf(g.distances[[5, 77]]).all()
    assert not np.isin(g.indices, [5, 77]).any()
    keep = np.setdiff1d(np.arange(300), [5, 77])
    _, i_ref = brute(x[keep], 5, "cosine")
    np.testing.assert_array_equal(g.indices[keep], keep[i_ref])
    csr = g.to_csr()
    assert csr.getrow(5).nnz == 0
    back = KnnGraph.from_csr(csr)
    np.testing.assert_array_equal(back.indices, g.indices)


def test_approximate_recall_on_a_gaussian_mixture() -> None:
    x = clustered(12_000, 64, 50, 5)
    exact = fastcarto.knn(x, 10, metric="euclidean", exact=True).indices
    approx = fastcarto.knn(x, 10, metric="euclidean", exact=False, seed=3).indices
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=2).mean()
    assert hits >= 0.95
    again = fastcarto.knn(x, 10, metric="euclidean", exact=False, seed=3).indices
    np.testing.assert_array_equal(approx, again)


def test_memory_map_and_strided_input(tmp_path: Any) -> None:
    x = clustered(500, 12, 4, 6).astype(np.float64)
    np.save(tmp_path / "f.npy", x)
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    want = fastcarto.knn(x, 7, exact=True)
    got = fastcarto.knn(mapped, 7, exact=True)
    np.testing.assert_array_equal(got.indices, want.indices)
    fortran = fastcarto.knn(np.asfortranarray(x), 7, exact=True)
    np.testing.assert_array_equal(fortran.indices, want.indices)


@pytest.mark.parametrize(
    ("features", "k", "error", "match"),
    [
        (np.zeros((5, 2)), 5, ValueError, "k=5"),
        (np.zeros((5, 2)), 0, ValueError, "k=0"),
        (np.zeros(5), 1, ValueError, "2-D"),
        (np.zeros((2, 2, 2)), 1, ValueError, "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), 1, TypeError, "numeric"),
        (np.zeros((0, 3)), 1, ValueError, "k=1"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [1.0, 1.0]]), 1, fastcarto.FastcartoError, "row 0"),
        (np.array([[np.nan], [np.nan], [1.0]]), 1, fastcarto.FastcartoError, "without NaN"),
    ],
)
def test_bad_input(features: np.ndarray, k: int, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        fastcarto.knn(features, k)


def test_core_errors() -> None:
    with pytest.raises(fastcarto.EmptyInputError):
        _core.knn(np.zeros((0, 3), np.float32), 1)
    with pytest.raises(ValueError, match="at least 1"):
        _core.knn(np.zeros((3, 3), np.float32), -1)
    with pytest.raises(TypeError, match="float32 or float64"):
        _core.knn(np.zeros((3, 3), np.int32), 1)
    with pytest.raises(ValueError, match="2-D"):
        _core.knn(np.zeros(3, np.float32), 1)
    with pytest.raises(fastcarto.FastcartoError, match="metric"):
        _core.knn(np.zeros((3, 3), np.float32), 1, metric="manhattan")
    with pytest.raises(TypeError):
        fastcarto.knn(np.zeros((3, 3)), True)
    with pytest.raises(ValueError, match="metric"):
        fastcarto.knn(np.zeros((3, 3)), 1, metric="l1")


def test_graph_for_computes_once_and_reuses() -> None:
    x = np.random.default_rng(7).standard_normal((200, 5))
    inputs = AuditInputs(n=200, features=x)
    g3 = audit_knn.knn_graph_for(inputs, 3)
    assert g3.k == 3 and g3.metric == "cosine"
    cached = inputs._computed["knn_graph"]
    assert cached.k == audit_knn.DEFAULT_K
    g10 = audit_knn.knn_graph_for(inputs, 10)
    assert inputs._computed["knn_graph"] is cached
    np.testing.assert_array_equal(g10.indices[:, :3], g3.indices)
    g15 = audit_knn.knn_graph_for(inputs, 15)
    assert g15.k == 15 and inputs._computed["knn_graph"].k == 15
    # three columns: euclidean, as cleanlab's decide_default_metric
    small = AuditInputs(n=50, features=x[:50, :3])
    assert audit_knn.knn_graph_for(small, 2).metric == "euclidean"
    forced = AuditInputs(n=50, features=x[:50], metric="euclidean")
    assert audit_knn.knn_graph_for(forced, 2).metric == "euclidean"


def test_graph_for_prefers_the_users_graph() -> None:
    x = np.random.default_rng(8).standard_normal((100, 4))
    user = fastcarto.knn(x, 5, metric="euclidean")
    inputs = AuditInputs(n=100, features=x, knn_graph=user)
    assert audit_knn.knn_graph_for(inputs, 5) is user
    assert audit_knn.knn_graph_for(inputs, 2).k == 2
    assert "knn_graph" not in inputs._computed
    assert audit_knn.knn_graph_for(inputs, 8).k == 8  # too small: computed from features
    only = AuditInputs(n=100, knn_graph=user)
    assert audit_knn.knn_graph_for(only, 8) is user  # no features: cleanlab uses it as it is
    with pytest.raises(ValueError, match="features or a knn_graph"):
        audit_knn.knn_graph_for(AuditInputs(n=100), 3)


def test_csr_round_trip_matches_cleanlab_layout() -> None:
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(9).standard_normal((80, 3))
    ref = NearestNeighbors(n_neighbors=4).fit(x).kneighbors_graph(mode="distance")
    g = KnnGraph.from_csr(ref)
    assert g.k == 4 and (np.diff(g.distances, axis=1) >= 0).all()
    back = g.to_csr()
    assert (back.indptr == ref.indptr).all() and (back.indices == ref.indices).all()
    np.testing.assert_allclose(back.data, ref.data, rtol=1e-6)


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (np.eye(3), "scipy sparse"),
        (sp.csr_matrix(np.ones((2, 3))), "square"),
        (sp.csr_matrix(([1.0, 2.0, 1.0], [1, 2, 0], [0, 2, 3, 3]), shape=(3, 3)), "same k"),
        (sp.csr_matrix(([2.0, 1.0, 1.0, 1.0], [1, 2, 0, 1], [0, 2, 4, 4]), shape=(3, 3)), "sorted"),
        (sp.csr_matrix(([1.0, 1.0], [0, 0], [0, 1, 2]), shape=(2, 2)), "itself"),
        (sp.csr_matrix(([-1.0, 1.0], [1, 0], [0, 1, 2]), shape=(2, 2)), "non-negative"),
        (sp.csr_matrix((2, 2)), "no entries"),
    ],
)
def test_bad_user_graph(matrix: Any, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        KnnGraph.from_csr(matrix)
