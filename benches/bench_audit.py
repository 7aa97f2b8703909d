"""Times `fastcarto.Datalab.find_issues` against cleanlab's `Datalab.find_issues` on the same
inputs, in the same process (issue 21's figures).

    python benches/bench_audit.py                     # N = 5,000, 20,000, 60,000
    python benches/bench_audit.py --sizes 5000 --repeat 3
    python benches/bench_audit.py --million           # fastcarto alone at N = 1,000,000

Both audit features and out-of-sample pred_probs with every default issue type: 64 features,
10 classes. The data is a Gaussian mixture (one component per class) with 5% of the labels
flipped, 1% of the rows duplicated (plus tiny noise) and 0.5% moved far away; pred_probs come
from a nearest-centroid model fitted on the other half of the data (two folds). The two
libraries alternate (fastcarto, cleanlab, fastcarto, ...), and each size reports the best of
`--repeat` runs of each, their ratio, and how many examples each flags per issue type.
`--million` times fastcarto alone at 1,000,000 examples in a fresh process and reports its
wall time and peak resident memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np

D, K = 64, 10


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (float32), labels and nearest-centroid pred_probs of a noisy Gaussian mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.6, size=(K, D)).astype(np.float32)
    truth = rng.integers(0, K, n)
    x = centres[truth] + rng.normal(size=(n, D)).astype(np.float32)
    dup = rng.choice(n, size=n // 100, replace=False)
    x[dup] = x[rng.choice(n, size=dup.size)] + rng.normal(scale=1e-3, size=(dup.size, D))
    far = rng.choice(n, size=n // 200, replace=False)
    x[far] += rng.normal(scale=12.0, size=(far.size, D)).astype(np.float32)
    labels = truth.copy()
    flip = rng.choice(n, size=n // 20, replace=False)
    labels[flip] = (labels[flip] + rng.integers(1, K, flip.size)) % K
    # Out-of-sample probabilities: each half scored by centroids of the other half.
    probs = np.empty((n, K), dtype=np.float32)
    fold = rng.random(n) < 0.5
    for part in (fold, ~fold):
        other = ~part
        mu = np.stack([x[other & (labels == c)].mean(axis=0) for c in range(K)])
        d2 = (x[part] ** 2).sum(axis=1, keepdims=True) - 2 * x[part] @ mu.T + (mu**2).sum(axis=1)
        z = -d2 / (2.0 * D)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        probs[part] = p / p.sum(axis=1, keepdims=True)
    return x, labels, probs


def run_fastcarto(x: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> Any:
    import fastcarto

    lab = fastcarto.Datalab({"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=x, pred_probs=probs)
    return lab


def run_cleanlab(x: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> Any:
    from cleanlab import Datalab

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        lab = Datalab({"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(features=x, pred_probs=probs)
    return lab


def counts(lab: Any) -> dict[str, int]:
    summary = lab.get_issue_summary()
    return dict(zip(summary["issue_type"], summary["num_issues"].astype(int), strict=True))


def agreement(ours: Any, theirs: Any) -> dict[str, float]:
    """Per type, the fraction of examples whose flag is the same in both."""
    out = {}
    for name in counts(ours):
        column = f"is_{name}_issue"
        if column in theirs.issues.columns:
            a = ours.issues[column].to_numpy()
            b = theirs.issues[column].to_numpy()
            out[name] = float(np.mean(a == b))
    return out


def compare(n: int, repeat: int) -> dict[str, Any]:
    x, labels, probs = synthetic(n)
    times: dict[str, list[float]] = {"fastcarto": [], "cleanlab": []}
    labs: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in (("fastcarto", run_fastcarto), ("cleanlab", run_cleanlab)):
            t0 = time.perf_counter()
            labs[name] = fn(x, labels, probs)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {
        "n": n,
        "fastcarto_s": round(best["fastcarto"], 3),
        "cleanlab_s": round(best["cleanlab"], 3),
        "speedup": round(best["cleanlab"] / best["fastcarto"], 1),
        "fastcarto_issues": counts(labs["fastcarto"]),
        "cleanlab_issues": counts(labs["cleanlab"]),
        "flag_agreement": agreement(labs["fastcarto"], labs["cleanlab"]),
    }


def million(n: int) -> dict[str, Any]:
    """fastcarto alone on ``n`` examples; run in a child so ru_maxrss is the audit's own."""
    x, labels, probs = synthetic(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    lab = run_fastcarto(x, labels, probs)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": n,
        "fastcarto_s": round(wall, 1),
        "peak_rss_gib": round(peak / 2**20, 2),
        "rss_before_audit_gib": round(before / 2**20, 2),
        "inputs_gib": round((x.nbytes + probs.nbytes + labels.nbytes) / 2**30, 2),
        "fastcarto_issues": counts(lab),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 60_000])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--million", action="store_true", help="fastcarto alone at 1,000,000")
    ap.add_argument("--million-size", type=int, default=1_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(million(args.million_size)))
        return
    print(f"# cores: {os.cpu_count()}; {D} features, {K} classes", flush=True)
    if args.million:
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--million-size", str(args.million_size)],
            check=True,
            capture_output=True,
            text=True,
        )
        print(child.stdout.strip().splitlines()[-1], flush=True)
        return
    # Imports and first-call set-up (numba, scikit-learn, ...) are not part of either audit.
    warm = synthetic(500, seed=1)
    run_fastcarto(*warm)
    run_cleanlab(*warm)
    for n in args.sizes:
        print(json.dumps(compare(n, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
