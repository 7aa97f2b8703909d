"""Times `fastcarto.compute` against a vectorized numpy implementation in the same process.

    python benches/bench_compute.py                 # E=10, N=1,000,000, C=10 (the README table)
    python benches/bench_compute.py --examples 200000 --repeat 3

Reports the best of `--repeat` runs for each method, rows/s (one row = one example at one
epoch) and ratios measured within this run: fastcarto vs numpy on logits, and fastcarto on
probabilities vs one `np.sum` over the same array (a memory-bandwidth probe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastcarto
from numpy_baseline import numpy_metrics


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def softmax32(logits: np.ndarray) -> np.ndarray:
    out = np.empty_like(logits)
    for e in range(logits.shape[0]):
        z = logits[e] - logits[e].max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[e] = z
    return out


def data_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The command line shared by the array benchmarks: the data's shape and the repeat count."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    return ap


def make_data(e: int, n: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, float32 logits that learn over the epochs, and their softmax (seeded)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, size=n)
    logits = (rng.standard_normal((e, n, c), dtype=np.float32) * 3.0).astype(np.float32)
    logits[:, np.arange(n), labels] += np.linspace(0.0, 4.0, e, dtype=np.float32)[:, None]
    return labels, logits, softmax32(logits)


def main() -> None:
    ap = data_arguments(__doc__)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    e, n, c = args.epochs, args.examples, args.classes
    rows = e * n
    labels, logits, probs = make_data(e, n, c)

    threads = args.threads
    results: dict[str, float] = {}
    results["numpy_logits"] = best_of(
        lambda: numpy_metrics(logits, labels, "logits"), max(1, args.repeat // 2)
    )
    results["fastcarto_logits"] = best_of(
        lambda: fastcarto.compute(logits, labels, kind="logits", threads=threads), args.repeat
    )
    results["numpy_probs"] = best_of(
        lambda: numpy_metrics(probs, labels, "probs"), max(1, args.repeat // 2)
    )
    results["fastcarto_probs"] = best_of(
        lambda: fastcarto.compute(probs, labels, kind="probs", threads=threads), args.repeat
    )
    results["np_sum_probs"] = best_of(lambda: np.sum(probs), args.repeat)

    used = fastcarto._core.thread_count(threads)
    print(
        f"E={e} N={n:,} C={c} float32, {rows:,} rows, fastcarto threads={used}, "
        f"{os.cpu_count()} cpus, {platform.processor() or platform.machine()}"
    )
    print(f"{'method':<28}{'seconds':>10}{'rows/s':>16}")
    for name, t in results.items():
        print(f"{name:<28}{t:>10.4f}{rows / t:>16,.0f}")
    speedup_logits = results["numpy_logits"] / results["fastcarto_logits"]
    speedup_probs = results["numpy_probs"] / results["fastcarto_probs"]
    probs_vs_sum = results["fastcarto_probs"] / results["np_sum_probs"]
    print(f"fastcarto / numpy speed-up, logits: {speedup_logits:.1f}x")
    print(f"fastcarto / numpy speed-up, probs:  {speedup_probs:.1f}x")
    print(f"fastcarto probs time / np.sum time: {probs_vs_sum:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "shape": [e, n, c],
                    "threads": used,
                    "seconds": results,
                    "speedup_logits": speedup_logits,
                    "speedup_probs": speedup_probs,
                    "probs_over_np_sum": probs_vs_sum,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
