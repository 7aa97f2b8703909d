"""Times fastcarto's neighbour graph against faiss-cpu and scikit-learn in the same process.

    python benches/bench_knn.py                       # N = 20,000 and 60,000, 64 dims, k = 10
    python benches/bench_knn.py --sizes 20000 --repeat 3
    python benches/bench_knn.py --million             # also N = 1,000,000, approximate only

Data: a mixture of 100 Gaussian clusters (float32). Exact search, euclidean: fastcarto
``exact=True`` vs faiss ``IndexFlatL2`` (k + 1 neighbours, self dropped) vs scikit-learn's
brute ``NearestNeighbors``, alternating, best of ``--repeat``; the ratios are measured within
this run. Approximate search (``exact=False``): time and recall@10 against the exact graph (at
1,000,000 rows against faiss's exact search of 2,000 sampled rows), and faiss's
``IndexHNSWFlat`` (M = 32, efSearch = 64) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import fastcarto
import numpy as np


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def mixture(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((100, d)).astype(np.float32)
    x = centres[rng.integers(0, 100, n)]
    x += rng.standard_normal((n, d), dtype=np.float32)
    return x


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float((approx[:, :, None] == exact[:, None, :]).any(axis=2).mean())


def faiss_flat(x: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, idx = index.search(x if queries is None else queries, k + 1)
    return idx[:, 1:]


def faiss_hnsw(x: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], 32)
    index.add(x)
    index.hnsw.efSearch = 64
    _, idx = index.search(x, k + 1)
    return idx[:, 1:]


def sklearn_brute(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors()[1]


def bench_size(n: int, d: int, k: int, repeat: int, sklearn: bool) -> dict[str, Any]:
    x = mixture(n, d)
    best: dict[str, float] = {}
    graphs: dict[str, np.ndarray] = {}
    runs: dict[str, Callable[[], Any]] = {
        "fastcarto_exact": lambda: fastcarto.knn(x, k, metric="euclidean", exact=True).indices,
        "faiss_flat": lambda: faiss_flat(x, k),
        "fastcarto_approx": lambda: fastcarto.knn(x, k, metric="euclidean", exact=False).indices,
        "faiss_hnsw": lambda: faiss_hnsw(x, k),
    }
    if sklearn:
        runs["sklearn_brute"] = lambda: sklearn_brute(x, k)
    for _ in range(repeat):
        for name, fn in runs.items():
            t, graphs[name] = timed(fn)
            best[name] = min(best.get(name, np.inf), t)
    exact = graphs["fastcarto_exact"]
    return {
        "n": n,
        "seconds": best,
        "exact_vs_faiss": best["fastcarto_exact"] / best["faiss_flat"],
        "recall_exact_vs_faiss": recall(exact, graphs["faiss_flat"]),
        "recall_approx": recall(graphs["fastcarto_approx"], exact),
        "recall_faiss_hnsw": recall(graphs["faiss_hnsw"], exact),
    }


def bench_million(d: int, k: int, n: int = 1_000_000) -> dict[str, Any]:
    x = mixture(n, d)
    t, g = timed(lambda: fastcarto.knn(x, k, metric="euclidean", exact=False))
    sample = np.random.default_rng(1).choice(n, 2000, replace=False)
    truth = faiss_flat(x, k, queries=x[sample])
    return {"n": n, "seconds_approx": t, "recall_approx": recall(g.indices[sample], truth)}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000])
    p.add_argument("--dims", type=int, default=64)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--no-sklearn", action="store_true", help="leave out scikit-learn (slowest)")
    p.add_argument("--million", action="store_true", help="also N = 1,000,000, approximate only")
    a = p.parse_args()
    print(f"# cores: {os.cpu_count()}, threads: {fastcarto._core.thread_count()}")
    for n in a.sizes:
        print(json.dumps(bench_size(n, a.dims, a.k, a.repeat, not a.no_sklearn)))
    if a.million:
        print(json.dumps(bench_million(a.dims, a.k)))


if __name__ == "__main__":
    main()
