"""fastcarto.dask's datamodel statistics and exact kNN graph against the single-machine results:
an in-process LocalCluster, Dask's threaded scheduler, and one run on two worker processes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastcarto
import fastcarto.datamodels as fdm
import numpy as np
import pytest
from fastcarto import _core
from hypothesis import given
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from fastcarto.dask import datamodel_statistics, knn  # noqa: E402


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def experiment(m: int, n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.random((m, n)) < 0.5
    outputs = masks[:, :k] * 2.0 - masks[:, 1 : k + 1] + rng.normal(0, 0.5, (m, k))
    return masks, outputs


def assert_same_stats(got: _core.DatamodelStats, want: _core.DatamodelStats, y: Any) -> None:
    """Counts exactly; float sums to the rounding of a different summation order."""
    (gn, gxtx, gxty, gsy, gsyy), (wn, wxtx, wxty, wsy, wsyy) = got.parts(), want.parts()
    assert gn == wn
    np.testing.assert_array_equal(gxtx, wxtx)
    scale = np.abs(np.asarray(y, dtype=np.float64)).sum(axis=0) + 1.0
    assert (np.abs(gxty - wxty) <= 1e-14 * scale).all()
    assert (np.abs(gsy - wsy) <= 1e-14 * scale).all()
    scale2 = (np.asarray(y, dtype=np.float64) ** 2).sum(axis=0) + 1.0
    assert (np.abs(gsyy - wsyy) <= 1e-14 * scale2).all()


def test_statistics_of_dask_arrays_equal_one_pass(client: Any) -> None:
    masks, outputs = experiment(700, 40, 3, 0)
    x = da.from_array(masks, chunks=((100, 250, 1, 349), (40,)))
    y = da.from_array(outputs.astype(np.float32), chunks=((350, 350), (3,)))
    got = datamodel_statistics(x, y, client=client)
    assert_same_stats(got, fdm.statistics(masks, outputs.astype(np.float32)), outputs)
    # A given sharding gives the same bits on every run, whichever worker runs what.
    again = datamodel_statistics(x, y, client=client)
    for a, b in zip(got.parts()[1:], again.parts()[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    # One output column as a 1-d array, the threaded scheduler.
    one = datamodel_statistics(x, da.from_array(outputs[:, 0], chunks=200))
    assert_same_stats(one, fdm.statistics(masks, outputs[:, :1]), outputs[:, :1])


def test_shards_as_npy_paths_and_urls_with_packed_masks(tmp_path: Path, client: Any) -> None:
    import fsspec

    masks, outputs = experiment(300, 21, 2, 1)
    packed = np.packbits(masks, axis=1, bitorder="little")
    paths: list[Any] = []
    outs: list[Any] = []
    for i, sl in enumerate([slice(0, 90), slice(90, 91), slice(91, 300)]):
        np.save(tmp_path / f"m{i}.npy", packed[sl])
        paths.append(tmp_path / f"m{i}.npy")
        with fsspec.open(f"memory://fastcarto-test/y{i}.npy", "wb") as f:
            np.save(f, outputs[sl])
        outs.append(f"memory://fastcarto-test/y{i}.npy")
    paths[2] = f"file://{paths[2]}"
    # memory:// lives in this process: the in-process cluster's workers share it.
    got = datamodel_statistics(paths, outs, client=client, n_train=21, bitorder="little")
    assert_same_stats(got, fdm.statistics(masks, outputs), outputs)


def test_fit_on_dask_statistics_matches_fit() -> None:
    masks, outputs = experiment(1200, 30, 2, 2)
    train = datamodel_statistics(
        da.from_array(masks[:1080], chunks=((540, 540), (30,))),
        da.from_array(outputs[:1080], chunks=((540, 540), (2,))),
    )
    val = datamodel_statistics(
        da.from_array(masks[1080:], chunks=((60, 60), (30,))),
        da.from_array(outputs[1080:], chunks=((60, 60), (2,))),
    )
    got = fdm.fit_statistics(train, val)
    want = fdm.fit(masks, outputs, val_fraction=0.1)
    # The same λ of the path (the path itself starts from XᵀY, equal to rounding).
    np.testing.assert_allclose(got.lam, want.lam, rtol=1e-12)
    np.testing.assert_allclose(got.weights, want.weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.bias, want.bias, rtol=1e-9)


def test_statistics_pickle_exactly() -> None:
    masks, outputs = experiment(100, 9, 2, 3)
    stats = fdm.statistics(masks, outputs)
    back = pickle.loads(pickle.dumps(stats))
    assert isinstance(back, _core.DatamodelStats)
    for a, b in zip(stats.parts()[1:], back.parts()[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.n_rows == stats.n_rows


def test_statistics_bad_input(tmp_path: Path) -> None:
    masks, outputs = experiment(100, 9, 2, 4)
    x = da.from_array(masks, chunks=(50, 9))
    with pytest.raises(ValueError, match="100 rows"):
        datamodel_statistics(x, da.from_array(outputs[:90], chunks=(50, 2)))
    with pytest.raises(TypeError, match="both"):
        datamodel_statistics(x, outputs)
    with pytest.raises(ValueError, match="2 shards of masks but 1"):
        datamodel_statistics([masks[:50], masks[50:]], [outputs])
    with pytest.raises(ValueError, match="no shards"):
        datamodel_statistics([], [])
    with pytest.raises(TypeError, match="lists of shards"):
        datamodel_statistics(str(tmp_path / "m.npy"), str(tmp_path / "y.npy"))
    # Shards of different N: the merge refuses them.
    other, _ = experiment(100, 8, 2, 5)
    with pytest.raises(_core.IncompatibleStateError, match="9 training examples"):
        datamodel_statistics([masks[:50], other[50:]], [outputs[:50], outputs[50:]])
    # A shard whose masks and outputs have different M.
    with pytest.raises(ValueError, match="row m of both"):
        datamodel_statistics([masks[:50], masks[50:]], [outputs[:50], outputs[50:99]])
    with pytest.raises(TypeError, match="bool"):
        datamodel_statistics([masks.astype(np.float64)], [outputs])
    with pytest.raises(FileNotFoundError):
        datamodel_statistics([tmp_path / "missing.npy"], [tmp_path / "missing_y.npy"])
    bad = outputs.copy()
    bad[70, 1] = np.nan
    with pytest.raises(_core.FastcartoError, match="non-finite"):
        datamodel_statistics(x, da.from_array(bad, chunks=(50, 2)))


def features(n: int, d: int, seed: int) -> np.ndarray:
    """Coarse values (ties), repeated rows, scaled copies (cosine distance 0) and NaN rows."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, d)) * 2) / 2
    x[5:15] = x[20:30]
    x[40:44] = 2 * x[50:54]
    x[60:66] = x[61]
    x[[3, 77]] = np.nan
    return x


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_knn_equals_the_exact_search(client: Any, metric: str) -> None:
    x = features(400, 6, 6)
    want = fastcarto.knn(x, 12, metric=metric, exact=True)
    for arr, kwargs in [
        (x, {"block_rows": 96}),
        (da.from_array(x.astype(np.float32), chunks=((150, 1, 249), (3, 3))), {}),
    ]:
        got = knn(arr, 12, client=client, metric=metric, **kwargs)
        ref = (
            want if arr is x else fastcarto.knn(x.astype(np.float32), 12, metric=metric, exact=True)
        )
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_array_equal(got.distances, ref.distances)
        assert got.metric == metric


@given(
    n=st.integers(3, 50),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 50),
    cosine=st.booleans(),
)
def test_knn_blocks_match_property(n: int, d: int, seed: int, rows: int, cosine: bool) -> None:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, d)) * 2) / 2
    x[: n // 3] = x[n - n // 3 :]
    k = 1 + seed % (n - 1)
    metric = "cosine" if cosine else "euclidean"
    want = fastcarto.knn(x, k, metric=metric, exact=True)
    got = knn(x, k, metric=metric, block_rows=rows)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.distances, want.distances)


def test_knn_graph_feeds_the_audit() -> None:
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(size=(150, 5)), rng.normal(size=(150, 5)) + 3])
    labels = np.repeat([0, 1], 150)
    x[7] = x[8]
    given_graph = fastcarto.Datalab({"label": labels}, label_name="label", verbosity=0)
    given_graph.find_issues(features=x, knn_graph=knn(x, 10, block_rows=64))
    computed = fastcarto.Datalab({"label": labels}, label_name="label", verbosity=0)
    computed.find_issues(features=x)
    a, b = given_graph.get_issues(), computed.get_issues()
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_knn_bad_input() -> None:
    x = features(100, 4, 9)
    with pytest.raises(ValueError, match="k=100"):
        knn(x, 100, block_rows=30)
    with pytest.raises(ValueError, match="k=0"):
        knn(x, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        knn(x, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        knn(x, 3, metric="manhattan")
    with pytest.raises(ValueError, match="2-D"):
        knn(x[0], 3)
    with pytest.raises(ValueError, match="block_rows"):
        knn(x, 3, block_rows=0)
    with pytest.raises(TypeError, match="numeric"):
        knn(x.astype(str), 3)
    inf = x.copy()
    inf[50, 1] = np.inf
    with pytest.raises(_core.FastcartoError, match="infinite"):
        knn(inf, 3, block_rows=40)
    # k below the rows but not below the rows without NaN.
    nan = x[:10].copy()
    nan[:4, 0] = np.nan
    with pytest.raises(_core.FastcartoError, match="without NaN"):
        knn(nan, 6, block_rows=3)


def test_two_worker_processes() -> None:
    """Real worker processes: the Rust pools start in each worker, results come back exact."""
    masks, outputs = experiment(400, 20, 2, 10)
    x = features(300, 5, 11)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        got = datamodel_statistics(
            da.from_array(masks, chunks=(100, 20)),
            da.from_array(outputs, chunks=(100, 2)),
            client=c,
        )
        graph = knn(x, 8, client=c, block_rows=70)
    assert_same_stats(got, fdm.statistics(masks, outputs), outputs)
    want = fastcarto.knn(x, 8, exact=True)
    np.testing.assert_array_equal(graph.indices, want.indices)
    np.testing.assert_array_equal(graph.distances, want.distances)
