"""Times `Accumulator.update` inside a training loop: one call per shuffled minibatch, against
the per-example running sums a user would keep by hand in numpy (same process, same batches).

    python benches/bench_minibatch.py                      # N=100,000, C=10, batches of 256
    python benches/bench_minibatch.py --batch 32 --examples 1000000

Reports microseconds per update (best of `--repeat` epochs) and the ratio. Small updates are
dominated by fixed costs (argument checks, dispatch), which is what this measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastcarto
from numpy_baseline import RunningSums


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--examples", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3, help="epochs timed (best one reported)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    n, c, b = args.examples, args.classes, args.batch
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    epochs = []
    for _ in range(args.repeat + 1):
        order = rng.permutation(n)
        epochs.append([order[s : s + b] for s in range(0, n, b)])

    acc = fastcarto.Accumulator(n, c, kind="logits", threads=args.threads)
    sums = RunningSums(n)
    best = {"fastcarto": np.inf, "numpy": np.inf}
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for e, order in enumerate(epochs):
        batches = [(i, logits[i], labels[i]) for i in order]
        t0 = time.perf_counter()
        for i, z, y in batches:
            acc.update(z, y, epoch=e, ids=i)
        t1 = time.perf_counter()
        for i, z, y in batches:
            sums.update(z, y, i, "logits")
        t2 = time.perf_counter()
        if e > 0:  # the first epoch touches fresh memory on both sides
            best["fastcarto"] = min(best["fastcarto"], (t1 - t0) / len(batches))
            best["numpy"] = min(best["numpy"], (t2 - t1) / len(batches))
    print(f"N={n:,} C={c} batches of {b} ({len(batches)} updates per epoch), float32 logits")
    for name, t in best.items():
        print(f"  {name:<10} {t * 1e6:9.1f} us/update  ({b / t / 1e6:6.2f} M rows/s)")
    print(f"  numpy / fastcarto time: {best['numpy'] / best['fastcarto']:.2f}x")


if __name__ == "__main__":
    main()
