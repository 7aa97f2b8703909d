"""Datamodels: fastcarto.datamodels against the scikit-learn protocol, in one process.

The digits case of issue 22: logistic regressions on random halves of 1,000 of scikit-learn's
digits (``Subsets``), margins on the other 797; 5,000 models to fit on and 1,000 held out.
The scikit-learn protocol is the best CPU one we know: masks standardized once, ``lasso_path``
with one shared Gram matrix over 100 λ (``eps=1e-3``), λ chosen per target on the last 10% of
the models, refit with ``Lasso(precompute=Gram)`` on all models at that λ. It runs in one
process (``--sk-targets`` times it on a subset and scales per target) and, for "both cores", in
``--sk-jobs`` processes over targets. fastcarto runs with all cores and with one thread.

    python benches/bench_datamodels.py --cache bench-dm            # the issue's figures
    python benches/bench_datamodels.py --cache bench-dm --counterfactual --scale

``--counterfactual`` removes the top-k weighted training digits of 20 targets (k = 5..80),
retrains, and correlates predicted with actual changes, against removing k random digits.
``--scale`` times the statistics pass and the fit for N = 10,000, M = 50,000, K = 1,000
(synthetic masks) in a child process and reports its peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import fastcarto.datamodels as fdm
import numpy as np


def digits_case(cache: Path, n_models: int, n_heldout: int, jobs: int | None):
    from fastcarto.datamodels._demo import digits_split
    from sklearn.linear_model import LogisticRegression

    X, y, Xt, yt, _, _ = digits_split(1000, 0)
    est = LogisticRegression(solver="newton-cg")
    t0 = time.perf_counter()
    masks, outputs = fdm.Subsets(
        est, X, y, Xt, yt, n_models=n_models, out=cache / "train", seed=0, n_jobs=jobs
    ).run(progress=True)
    held = fdm.Subsets(
        est, X, y, Xt, yt, n_models=n_heldout, out=cache / "heldout", seed=1, n_jobs=jobs
    ).run(progress=True)
    print(f"models trained or loaded in {time.perf_counter() - t0:.0f} s")
    return (X, y, Xt, yt), np.asarray(masks), np.asarray(outputs), *map(np.asarray, held)


def _sk_targets(masks, outputs, targets, val_fraction=0.1):
    """The scikit-learn protocol for some targets: (raw weights (N, len), bias)."""
    from sklearn.linear_model import Lasso, lasso_path
    from sklearn.preprocessing import StandardScaler

    warnings.simplefilter("ignore")
    m = masks.shape[0]
    ntr = m - max(1, round(val_fraction * m))
    x = masks.astype(np.float64)
    sc = StandardScaler().fit(x[:ntr])
    xs = sc.transform(x[:ntr])
    gram = xs.T @ xs
    full_sc = StandardScaler().fit(x)
    xf = full_sc.transform(x)
    full_gram = xf.T @ xf
    weights, bias = np.zeros((masks.shape[1], len(targets))), np.zeros(len(targets))
    for col, t in enumerate(targets):
        yt = outputs[:ntr, t].astype(np.float64)
        yc = yt - yt.mean()
        alphas, coefs, _ = lasso_path(xs, yc, alphas=100, eps=1e-3, precompute=gram, Xy=xs.T @ yc)
        raw = coefs / sc.scale_[:, None]
        b = yt.mean() - sc.mean_ @ raw
        mse = ((x[ntr:] @ raw + b - outputs[ntr:, t][:, None]) ** 2).mean(0)
        alpha = alphas[int(np.argmin(mse))]
        ya = outputs[:, t].astype(np.float64)
        las = Lasso(alpha=alpha, precompute=full_gram).fit(xf, ya)
        weights[:, col] = las.coef_ / full_sc.scale_
        bias[col] = las.intercept_ - full_sc.mean_ @ weights[:, col]
    return weights, bias


def sklearn_protocol(masks, outputs, targets, jobs):
    if jobs == 1:
        return _sk_targets(masks, outputs, targets)
    from joblib import Parallel, delayed

    parts = np.array_split(np.asarray(targets), jobs)
    res = Parallel(n_jobs=jobs)(delayed(_sk_targets)(masks, outputs, list(p)) for p in parts)
    return np.concatenate([r[0] for r in res], axis=1), np.concatenate([r[1] for r in res])


def counterfactual(data, model, targets, ks, seed=0):
    from fastcarto.datamodels._subsets import _margins
    from sklearn.linear_model import LogisticRegression

    X, y, Xt, yt = data
    classes = np.unique(y)
    full = _margins(LogisticRegression(solver="newton-cg").fit(X, y), Xt, yt, classes)
    rng = np.random.default_rng(seed)
    rows = []
    for t in targets:
        order = np.argsort(-model.weights[:, t])
        for k in ks:
            for kind, ids in (("top", order[:k]), ("random", rng.choice(len(y), k, replace=False))):
                keep = np.ones(len(y), dtype=bool)
                keep[ids] = False
                est = LogisticRegression(solver="newton-cg").fit(X[keep], y[keep])
                actual = _margins(est, Xt[[t]], yt[[t]], classes)[0] - full[t]
                rows.append((kind, k, model.counterfactual(t, remove=ids), actual))
    for kind in ("top", "random"):
        pred = np.array([r[2] for r in rows if r[0] == kind])
        act = np.array([r[3] for r in rows if r[0] == kind])
        r = np.corrcoef(pred, act)[0, 1]
        print(
            f"counterfactual, remove {kind:>6} k: predicted vs actual change r = {r:.3f}, "
            f"mean actual {act.mean():+.3f}, mean predicted {pred.mean():+.3f}"
        )


def scale_child(n: int, m: int, k: int) -> None:
    rng = np.random.default_rng(0)
    train = fdm.DatamodelStats(n, k)
    val = fdm.DatamodelStats(n, k)
    w = np.zeros((n, k), dtype=np.float32)
    hot = rng.random((n, k)) < 0.01
    w[hot] = rng.normal(size=int(hot.sum()))
    t0 = time.perf_counter()
    gen = 0.0
    for start in range(0, m, 2000):
        g0 = time.perf_counter()
        x = rng.random((min(2000, m - start), n)) < 0.5
        y = x.astype(np.float32) @ w + rng.normal(size=(x.shape[0], k)).astype(np.float32)
        gen += time.perf_counter() - g0
        (val if start >= m * 0.9 else train).update(x, y)
    stats_s = time.perf_counter() - t0 - gen
    rss_stats = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    model = fdm.fit_statistics(train, val)
    fit_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"scale N={n} M={m} K={k}: statistics {stats_s:.1f} s (peak {rss_stats:.2f} GiB), "
        f"fit {fit_s:.1f} s (peak {rss:.2f} GiB), "
        f"median nnz {int(np.median((model.weights != 0).sum(0)))}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("bench-datamodels"))
    ap.add_argument("--models", type=int, default=5000)
    ap.add_argument("--heldout", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument(
        "--sk-targets",
        type=int,
        default=None,
        help="time the one-process scikit-learn protocol on this many targets",
    )
    ap.add_argument("--counterfactual", action="store_true")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--scale-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_child:
        scale_child(*args.scale_child)
        return
    data, masks, outputs, hm, ho = digits_case(args.cache, args.models, args.heldout, args.jobs)
    k = outputs.shape[1]
    t0 = time.perf_counter()
    model = fdm.fit(masks, outputs)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    fdm.fit(masks, outputs, threads=1)
    ours1 = time.perf_counter() - t0
    n_sk = k if args.sk_targets is None else min(args.sk_targets, k)
    t0 = time.perf_counter()
    sklearn_protocol(masks, outputs, list(range(n_sk)), 1)
    sk1 = (time.perf_counter() - t0) * k / n_sk
    t0 = time.perf_counter()
    w, b = sklearn_protocol(masks, outputs, list(range(k)), args.jobs)
    skn = time.perf_counter() - t0
    sk_model = fdm.Datamodel.from_weights(w, b)
    lds_ours, lds_sk = fdm.lds(model, hm, ho), fdm.lds(sk_model, hm, ho)
    print(f"digits: N={masks.shape[1]}, M={masks.shape[0]}, K={k}, held out {hm.shape[0]}")
    print(f"fastcarto fit: {ours:.2f} s ({os.cpu_count()} cores), {ours1:.2f} s (1 thread)")
    print(
        f"scikit-learn protocol: {skn:.1f} s ({args.jobs} processes), {sk1:.1f} s "
        f"(1 process{'' if n_sk == k else f', from {n_sk} targets'})"
    )
    print(
        f"ratio: {skn / ours:.0f}x (both on all cores), {sk1 / ours1:.0f}x (one core each), "
        f"{sk1 / ours:.0f}x (fastcarto on all cores vs one scikit-learn process)"
    )
    print(
        f"LDS: fastcarto {lds_ours:.4f}, scikit-learn {lds_sk:.4f}, "
        f"difference {lds_ours - lds_sk:+.4f}"
    )
    if args.counterfactual:
        counterfactual(data, model, list(range(0, k, max(1, k // 20)))[:20], (5, 10, 20, 40, 80))
    if args.scale:
        subprocess.run(
            [sys.executable, __file__, "--scale-child", "10000", "50000", "1000"], check=True
        )


if __name__ == "__main__":
    main()
