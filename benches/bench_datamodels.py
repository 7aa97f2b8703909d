"""Datamodels: fastcarto.datamodels against the scikit-learn protocol, in one process.

The digits case of issue 22: logistic regressions on random halves of 1,000 of scikit-learn's
digits (``Subsets``), margins on the other 797; 5,000 models to fit on and 1,000 held out.
The scikit-learn protocol is the best CPU one we know: masks standardized once, ``lasso_path``
with one shared Gram matrix over 100 λ (``eps=1e-3``), λ chosen per target on the last 10% of
the models, refit with ``Lasso(precompute=Gram)`` on all models at that λ. It runs in one
process (``--sk-targets`` times it on a subset and scales per target) and, for "both cores", in
``--sk-jobs`` processes over targets. fastcarto runs with all cores and with one thread.

    python benches/bench_datamodels.py --cache bench-datamodels          # the issue's figures
    python benches/bench_datamodels.py --no-compare --counterfactual --figure cf.png
    python benches/bench_datamodels.py --no-compare --scale

``--counterfactual`` removes the top-k weighted training digits of 20 targets (k = 5..80; the
digits whose removal the datamodel predicts lowers the margin most), retrains, and compares the
predicted change (``model.counterfactual``) with the actual one, against removing k random
digits. Two controls, as the paper's appendix F: the full training set (logistic regression is
deterministic, so one retrain each), and random halves (``--cf-subsets`` paired halves per
removed set, each trained with and without the removed digits; predicted and actual changes are
averaged over them). ``--figure`` draws predicted against actual change.

``--scale`` writes synthetic masks (N = 10,000 training examples, M = 50,000 models, as bool and
bit-packed ``.npy``) and outputs (K = 1,000 targets from sparse true datamodels plus noise) to
disk, then times the statistics pass (from the memory-mapped files) and the fit, each in a child
process that reports its wall and CPU time (on a shared machine, CPU seconds over the cores is
the better guide) and its peak memory: peak RSS, which counts the pages of the memory-mapped
inputs that were read, and the peak of what the process allocated (``RssAnon``); it runs the
statistics pass at smaller N for several M (``--stream-models``) to check that it streams, then
the bit-packed and one-target (``XᵀX`` alone) passes at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

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


def compare(masks, outputs, hm, ho, sk_targets: int | None, jobs: int) -> fdm.Datamodel:
    """The issue's speed and LDS figures; returns fastcarto's model (all cores)."""
    k = outputs.shape[1]
    t0 = time.perf_counter()
    model = fdm.fit(masks, outputs)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    fdm.fit(masks, outputs, threads=1)
    ours1 = time.perf_counter() - t0
    n_sk = k if sk_targets is None else min(sk_targets, k)
    t0 = time.perf_counter()
    sklearn_protocol(masks, outputs, list(range(n_sk)), 1)
    sk1 = (time.perf_counter() - t0) * k / n_sk
    t0 = time.perf_counter()
    w, b = sklearn_protocol(masks, outputs, list(range(k)), jobs)
    skn = time.perf_counter() - t0
    sk_model = fdm.Datamodel.from_weights(w, b)
    lds_ours, lds_sk = fdm.lds(model, hm, ho), fdm.lds(sk_model, hm, ho)
    print(f"digits: N={masks.shape[1]}, M={masks.shape[0]}, K={k}, held out {hm.shape[0]}")
    print(f"fastcarto fit: {ours:.2f} s ({os.cpu_count()} cores), {ours1:.2f} s (1 thread)")
    print(
        f"scikit-learn protocol: {skn:.1f} s ({jobs} processes), {sk1:.1f} s "
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
    return model


# --- the counterfactual check --------------------------------------------------------------


def _target_margin(X, y, keep, Xt_one, yt_one, classes) -> float:
    from fastcarto.datamodels._subsets import _train
    from sklearn.linear_model import LogisticRegression

    return float(
        _train(LogisticRegression(solver="newton-cg"), X, y, keep, Xt_one, yt_one, classes)[0]
    )


def pick_targets(yt: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` targets spread evenly over the classes (as the paper's class-balanced sample)."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(yt == c))) for c in np.unique(yt)]
    out: list[int] = []
    while len(out) < n:
        for pool in pools:
            if pool and len(out) < n:
                out.append(int(pool.pop()))
    return sorted(out)


def counterfactual(
    data, model: fdm.Datamodel, targets: list[int], ks: list[int], n_subsets: int, jobs, seed=0
) -> dict[str, Any]:
    """Predicted vs actual change of each target's margin when its top-k (or k random)
    training examples are removed, against two controls; prints the table, returns the rows."""
    from joblib import Parallel, delayed

    X, y, Xt, yt = data
    n = len(y)
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    # Paired random halves (Bernoulli(1/2) masks, as the paper's "random control"): each is
    # trained as is (the control) and without the removed examples.
    halves = rng.random((n_subsets, n)) < 0.5
    removals = []  # (target, k, kind, removed ids)
    for t in targets:
        top = np.argsort(-model.weights[:, t], kind="stable")
        for k in ks:
            removals.append((t, k, "top", top[:k]))
            removals.append((t, k, "random", np.sort(rng.choice(n, k, replace=False))))
    jobs_list: list[tuple[int, np.ndarray]] = []  # (target, keep mask)
    full = np.ones(n, dtype=bool)
    for t in targets:
        jobs_list.append((t, full))
        jobs_list.extend((t, h) for h in halves)
    for t, _, _, ids in removals:
        keep = full.copy()
        keep[ids] = False
        jobs_list.append((t, keep))
        jobs_list.extend((t, h & keep) for h in halves)
    t0 = time.perf_counter()
    margins = Parallel(n_jobs=jobs, batch_size=16)(
        delayed(_target_margin)(X, y, keep, Xt[[t]], yt[[t]], classes) for t, keep in jobs_list
    )
    seconds = time.perf_counter() - t0
    it = iter(margins)
    base: dict[int, tuple[float, np.ndarray]] = {}
    for t in targets:
        base[t] = (next(it), np.array([next(it) for _ in halves]))
    rows = []
    max_diff = 0.0
    for t, k, kind, ids in removals:
        actual_full = next(it) - base[t][0]
        actual_half = float(np.mean(np.array([next(it) for _ in halves]) - base[t][1]))
        pred_full = model.counterfactual(t, remove=ids)
        pred_half = float(np.mean([model.counterfactual(t, remove=ids[h[ids]]) for h in halves]))
        # model.counterfactual is the datamodel's own prediction: f(1 - 1_R) - f(1).
        keep = full.copy()
        keep[ids] = False
        via_predict = model.predict(np.stack([keep, full]))[:, t]
        max_diff = max(max_diff, abs(pred_full - (via_predict[0] - via_predict[1])))
        rows.append(
            {
                "target": t,
                "k": k,
                "kind": kind,
                "predicted_full": pred_full,
                "actual_full": actual_full,
                "predicted_half": pred_half,
                "actual_half": actual_half,
                "margin_full": base[t][0],
            }
        )
    if max_diff > 1e-3:
        raise AssertionError(
            f"model.counterfactual differs from model.predict's difference by {max_diff:.3g}"
        )
    print(
        f"counterfactual check: {len(targets)} targets x k in {tuple(ks)}, top-k and random "
        f"removal; {len(jobs_list)} logistic regressions retrained in {seconds:.0f} s "
        f"({n_subsets} paired random halves per removal); model.counterfactual agrees with "
        f"model.predict(without) - model.predict(all) to {max_diff:.1e}"
    )
    print(
        "mean change of the margin per k, predicted / actual (flips: targets right with all\n"
        "training digits and wrong without the top k, actual):\n"
        f"{'':>5} {'full training set control':^35} {'random halves control':^35}\n"
        f"{'k':>5} {'top k':^17} {'random k':^17} {'top k':^17} {'random k':^17} flips"
    )
    for k in ks:
        sel = {
            kind: [r for r in rows if r["k"] == k and r["kind"] == kind]
            for kind in ("top", "random")
        }
        cells = []
        for ctl in ("full", "half"):
            for kind in ("top", "random"):
                p = np.mean([r[f"predicted_{ctl}"] for r in sel[kind]])
                a = np.mean([r[f"actual_{ctl}"] for r in sel[kind]])
                cells.append(f"{p:+7.3f} / {a:+7.3f}")
        flips = sum(
            r["margin_full"] > 0 and r["margin_full"] + r["actual_full"] < 0 for r in sel["top"]
        )
        print(f"{k:>5} " + " ".join(cells) + f" {flips}/{len(sel['top'])}")
    for ctl, name in (("full", "full training set"), ("half", "random halves")):
        for kinds in (("top",), ("random",), ("top", "random")):
            p = np.array([r[f"predicted_{ctl}"] for r in rows if r["kind"] in kinds])
            a = np.array([r[f"actual_{ctl}"] for r in rows if r["kind"] in kinds])
            print(
                f"  {name:<17} {'+'.join(kinds):<10} removal: Pearson r = {_pearson(p, a):.3f}, "
                f"Spearman = {_spearman(p, a):.3f} over {p.size} (target, k)"
            )
    return {"rows": rows, "ks": ks}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def counterfactual_figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, ks = result["rows"], result["ks"]
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(ks)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, ctl, title in (
        (axes[0], "full", "control: the full training set"),
        (axes[1], "half", "control: random halves (paired, averaged)"),
    ):
        rand = [r for r in rows if r["kind"] == "random"]
        ax.scatter(
            [r[f"predicted_{ctl}"] for r in rand],
            [r[f"actual_{ctl}"] for r in rand],
            s=14,
            c="0.6",
            label="k random",
            zorder=2,
        )
        for k, colour in zip(ks, colours, strict=True):
            top = [r for r in rows if r["kind"] == "top" and r["k"] == k]
            ax.scatter(
                [r[f"predicted_{ctl}"] for r in top],
                [r[f"actual_{ctl}"] for r in top],
                s=18,
                color=colour,
                label=f"top {k}",
                zorder=3,
            )
        p = np.array([r[f"predicted_{ctl}"] for r in rows])
        a = np.array([r[f"actual_{ctl}"] for r in rows])
        lo, hi = min(p.min(), a.min()), max(p.max(), a.max())
        pad = 0.05 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", c="0.3", lw=0.8, zorder=1)
        ax.axhline(0, c="0.85", lw=0.6, zorder=0)
        ax.axvline(0, c="0.85", lw=0.6, zorder=0)
        ax.set_title(f"{title}\nPearson r = {_pearson(p, a):.2f} (all removals)", fontsize=10)
        ax.set_xlabel("predicted change of the margin (datamodel)")
        ax.set_ylabel("actual change of the margin (retrained)")
    axes[1].legend(fontsize=8, loc="lower right", title="removed", title_fontsize=8)
    n_t = len({r["target"] for r in rows})
    fig.suptitle(
        f"Removing each target's top-k training digits: predicted vs actual ({n_t} targets)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"figure written to {path}")


# --- scale ---------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory of this process: ``ru_maxrss`` (all resident pages, including the
    pages of memory-mapped input files, which the kernel may drop at will) and the peak of the
    anonymous part (``RssAnon``, what the process allocated), sampled every 20 ms."""

    def __init__(self) -> None:
        self.anon = self._anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _anon() -> int:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) << 10
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.anon = max(self.anon, self._anon())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.anon = max(self.anon, self._anon())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform != "darwin":  # kilobytes on Linux, bytes on macOS
            rss <<= 10
        return {"peak_rss_gib": rss / 2**30, "peak_anon_gib": self.anon / 2**30}


def make_scale_data(d: Path, n: int, m: int, k: int, density: float = 0.01, seed: int = 0) -> None:
    """Synthetic masks (Bernoulli(1/2), bool and bit-packed ``.npy``) and outputs ``X W + b + ε``
    with a sparse ``W`` (``density`` of the weights non-zero, standard normal) and noise of the
    signal's standard deviation (signal-to-noise 1), written in chunks."""
    import scipy.sparse as sp

    meta = {"n": n, "m": m, "k": k, "density": density, "seed": seed}
    if (d / "meta.json").exists() and json.loads((d / "meta.json").read_text()) == meta:
        return
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    w = sp.random(
        n, k, density=density, format="csc", random_state=rng, data_rvs=rng.standard_normal
    )
    np.save(d / "true_weights.npy", w.toarray().astype(np.float32))
    noise = np.sqrt(0.25 * np.asarray(w.multiply(w).sum(0)).ravel()) + 1e-3
    bias = rng.normal(size=k)
    open_memmap = np.lib.format.open_memmap
    masks = open_memmap(d / "masks.npy", mode="w+", dtype=np.bool_, shape=(m, n))
    packed = open_memmap(d / "masks_packed.npy", mode="w+", dtype=np.uint8, shape=(m, -(-n // 8)))
    outputs = open_memmap(d / "outputs.npy", mode="w+", dtype=np.float32, shape=(m, k))
    for start in range(0, m, 2000):
        stop = min(start + 2000, m)
        x = rng.random((stop - start, n)) < 0.5
        masks[start:stop] = x
        packed[start:stop] = np.packbits(x, axis=1)
        y = np.asarray((w.T @ x.T.astype(np.float32)).T) + bias
        outputs[start:stop] = y + rng.normal(size=y.shape) * noise
    for a in (masks, packed, outputs):
        a.flush()
    del masks, packed, outputs
    (d / "meta.json").write_text(json.dumps(meta))
    print(f"  wrote synthetic N={n} M={m} K={k} to {d} in {time.perf_counter() - t0:.0f} s")


def scale_child(part: str, d: Path) -> None:
    """One measured step in this (child) process; prints one JSON line."""
    meta = json.loads((d / "meta.json").read_text())
    n, m = meta["n"], meta["m"]
    n_val = max(1, round(0.1 * m))
    peak = PeakMemory()
    base = dict(peak.stop())  # the interpreter with numpy and fastcarto loaded
    peak = PeakMemory()
    out: dict[str, Any] = {"part": part, **{f"base_{k}": v for k, v in base.items()}}
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    if part in ("stats", "stats-packed", "stats-k1"):
        packed = part == "stats-packed"
        masks = np.load(d / ("masks_packed.npy" if packed else "masks.npy"), mmap_mode="r")
        outputs = np.load(d / "outputs.npy", mmap_mode="r")
        if part == "stats-k1":  # one target: the cost of XᵀX alone
            outputs = outputs[:, :1]
        opts: dict[str, Any] = {"n_train": n} if packed else {}
        train = fdm.statistics(masks[: m - n_val], outputs[: m - n_val], **opts)
        val = fdm.statistics(masks[m - n_val :], outputs[m - n_val :], **opts)
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = _cpu_seconds() - cpu0
        out.update(peak.stop())  # before the copies below
        if part == "stats":
            for name, st in (("train", train), ("val", val)):
                for i, a in enumerate(st.parts()):
                    np.save(d / f"stats_{name}_{i}.npy", np.asarray(a))
        out["xtx_sum"] = int(train.parts()[1].sum(dtype=np.uint64))
    elif part == "fit":
        parts = [
            fdm.DatamodelStats.from_parts(
                int(np.load(d / f"stats_{name}_0.npy")),
                *(np.load(d / f"stats_{name}_{i}.npy") for i in range(1, 5)),
            )
            for name in ("train", "val")
        ]
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        model = fdm.fit_statistics(*parts)
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = _cpu_seconds() - cpu0
        w_true = np.load(d / "true_weights.npy")
        nnz = (model.weights != 0).sum(0)
        out["median_nnz"] = int(np.median(nnz))
        out["true_nnz"] = int(np.median((w_true != 0).sum(0)))
        out["weights_corr"] = float(np.corrcoef(model.weights.ravel(), w_true.ravel())[0, 1])
        out["converged"] = int(model.converged.sum())
        out.update(peak.stop())
    else:
        raise ValueError(f"unknown scale step {part!r}")
    print(json.dumps(out), flush=True)


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: on a shared machine, the wall time this step
    would take alone is about this divided by the cores it keeps busy."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _secs(r: dict[str, Any]) -> str:
    return f"{r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} CPU-s"


def _run_child(part: str, d: Path) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, __file__, "--scale-child", part, str(d)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mem(r: dict[str, Any]) -> str:
    return (
        f"peak RSS {r['peak_rss_gib']:.2f} GiB, of which allocated {r['peak_anon_gib']:.2f} GiB "
        f"(the bare interpreter: {r['base_peak_rss_gib']:.2f}, {r['base_peak_anon_gib']:.2f})"
    )


def _print_fit(label: str, r: dict[str, Any], k: int) -> None:
    print(
        f"  {label}: {_secs(r)}, {_mem(r)}; median {r['median_nnz']} non-zero weights per "
        f"target (true {r['true_nnz']}), correlation with the true weights "
        f"{r['weights_corr']:.3f}, {r['converged']}/{k} converged"
    )


def scale(
    root: Path, size: tuple[int, int, int], stream_n: int, stream_k: int, stream_ms: list[int]
) -> None:
    n, m, k = size
    threads = os.cpu_count()
    print(
        f"scale (N, M, K) = ({n}, {m}, {k}) on {threads} cores; every step in its own process, "
        "masks and outputs memory-mapped from .npy files"
    )
    d = root / f"scale-{n}-{m}-{k}"
    make_scale_data(d, n, m, k)
    st = _run_child("stats", d)
    print(f"  statistics pass, bool masks: {_secs(st)}, {_mem(st)}")
    _print_fit("fit", _run_child("fit", d), k)
    print(f"  streaming: the statistics pass at N={stream_n}, K={stream_k} for M in {stream_ms}")
    for sm in stream_ms:
        sd = root / f"scale-{stream_n}-{sm}-{stream_k}"
        make_scale_data(sd, stream_n, sm, stream_k)
        r = _run_child("stats", sd)
        print(f"    M={sm}: {_secs(r)}, {_mem(r)}")
    _print_fit(
        f"fit at N={stream_n}, M={stream_ms[-1]}, K={stream_k}", _run_child("fit", sd), stream_k
    )
    sp = _run_child("stats-packed", d)
    if sp["xtx_sum"] != st["xtx_sum"]:
        raise AssertionError("bit-packed and bool masks gave different statistics")
    print(f"  statistics pass, bit-packed masks: {_secs(sp)}, {_mem(sp)}")
    k1 = _run_child("stats-k1", d)
    print(f"  statistics pass, bool masks, one target (XᵀX alone): {_secs(k1)}, {_mem(k1)}")


# --- the command line -----------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_list(text: str) -> list[int]:
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers, got nothing")
    return [_positive(p.strip()) for p in parts]


def _figure_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise argparse.ArgumentTypeError(
            f"the figure's name must end in .png, .pdf, .svg or .jpg, got {text!r}"
        )
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory for the figure: {path.parent}")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path("bench-datamodels"),
        help="trained models and synthetic data",
    )
    ap.add_argument("--models", type=_positive, default=5000)
    ap.add_argument("--heldout", type=_positive, default=1000)
    ap.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1)
    ap.add_argument(
        "--sk-targets",
        type=_positive,
        default=None,
        help="time the one-process scikit-learn protocol on this many targets",
    )
    ap.add_argument(
        "--no-compare", action="store_true", help="skip the timing against scikit-learn"
    )
    ap.add_argument("--counterfactual", action="store_true")
    ap.add_argument(
        "--cf-targets", type=_positive, default=20, metavar="T", help="targets (default 20)"
    )
    ap.add_argument(
        "--cf-k",
        type=_positive_list,
        default=[5, 10, 20, 40, 80],
        metavar="K,K,...",
        help="removal sizes",
    )
    ap.add_argument(
        "--cf-subsets",
        type=_positive,
        default=6,
        metavar="S",
        help="paired random halves per removal",
    )
    ap.add_argument(
        "--figure", type=_figure_path, default=None, help="counterfactual figure (.png, .pdf, .svg)"
    )
    ap.add_argument("--scale", action="store_true")
    ap.add_argument(
        "--scale-size",
        type=_positive,
        nargs=3,
        default=[10000, 50000, 1000],
        metavar=("N", "M", "K"),
    )
    ap.add_argument(
        "--stream-size",
        type=_positive,
        nargs=2,
        default=[2000, 100],
        metavar=("N", "K"),
        help="N and K of the streaming check",
    )
    ap.add_argument(
        "--stream-models", type=_positive_list, default=[10000, 50000, 100000], metavar="M,M,..."
    )
    ap.add_argument("--scale-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.figure is not None and not args.counterfactual:
        ap.error("--figure draws the counterfactual check: add --counterfactual")
    if args.no_compare and not (args.counterfactual or args.scale):
        ap.error("--no-compare leaves nothing to do: add --counterfactual or --scale")
    if args.counterfactual and max(args.cf_k) >= 1000:
        ap.error(f"--cf-k must be below the 1,000 training digits, got {max(args.cf_k)}")
    if args.heldout < 3:
        ap.error(
            f"--heldout must be at least 3 (the LDS is a rank correlation), got {args.heldout}"
        )
    if args.models < 20:
        ap.error(
            f"--models must be at least 20 to choose λ on validation models, got {args.models}"
        )
    m = args.scale_size[1]
    if m < 20:
        ap.error(f"--scale-size needs M of at least 20 models, got {m}")
    if any(sm < 20 for sm in args.stream_models):
        ap.error("--stream-models needs at least 20 models each")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scale_child:
        scale_child(args.scale_child[0], Path(args.scale_child[1]))
        return
    if not args.no_compare or args.counterfactual:
        data, masks, outputs, hm, ho = digits_case(args.cache, args.models, args.heldout, args.jobs)
        k = outputs.shape[1]
        if args.counterfactual and args.cf_targets > k:
            raise SystemExit(f"--cf-targets {args.cf_targets} exceeds the {k} targets")
        if args.no_compare:
            model = fdm.fit(masks, outputs)
            print(f"digits: LDS {fdm.lds(model, hm, ho):.4f} on {hm.shape[0]} held-out models")
        else:
            model = compare(masks, outputs, hm, ho, args.sk_targets, args.jobs)
        if args.counterfactual:
            res = counterfactual(
                data,
                model,
                pick_targets(data[3], args.cf_targets, 0),
                args.cf_k,
                args.cf_subsets,
                args.jobs,
            )
            if args.figure is not None:
                counterfactual_figure(res, args.figure)
    if args.scale:
        scale(args.cache, tuple(args.scale_size), *args.stream_size, args.stream_models)


if __name__ == "__main__":
    main()
