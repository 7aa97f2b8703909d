"""End-to-end example on generated training dynamics (no training framework needed).

Simulates the per-epoch logits of a 10-class model on 200,000 examples: most are learned early
(easy), some hover near the decision boundary (ambiguous), and 5% carry a wrong label, so the
model never puts much probability on it (hard to learn). Then maps them with fastcarto,
streams the same epochs through an Accumulator as a training loop would, and writes the table.

    python examples/quickstart.py [--out out/quickstart.parquet]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import fastcarto


def simulate(n_examples: int, n_epochs: int, n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n_examples)
    labels = true.copy()
    flipped = rng.random(n_examples) < 0.05
    labels[flipped] = (true[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    difficulty = 0.5 + rng.gamma(2.0, 1.0, n_examples)  # how slowly an example is learned
    logits = rng.normal(0.0, 1.0, (n_epochs, n_examples, n_classes)).astype(np.float32)
    for e in range(n_epochs):
        progress = (e + 1) / n_epochs
        strength = 6.0 * progress / difficulty + rng.normal(0.0, 0.8, n_examples)
        logits[e, np.arange(n_examples), true] += strength.astype(np.float32)
    return logits, labels, flipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("out/quickstart.parquet"))
    args = ap.parse_args()

    logits, labels, flipped = simulate(args.examples, args.epochs, 10)

    t0 = time.perf_counter()
    dm = fastcarto.compute(logits, labels, kind="logits")
    elapsed = time.perf_counter() - t0
    rows = logits.shape[0] * logits.shape[1]
    print(dm)
    print(f"computed in {elapsed:.3f} s ({rows / elapsed / 1e6:.0f}M rows/s)")

    # The same map, built epoch by epoch as inside a training loop.
    acc = fastcarto.Accumulator(n_examples=args.examples, n_classes=10, kind="logits")
    for epoch_logits in logits:
        acc.update(epoch_logits, labels)
    streamed = acc.finalize().to_pandas()

    df = dm.to_pandas()
    assert np.allclose(df["confidence"], streamed["confidence"], rtol=1e-12)

    # Mislabeled examples sit low on the map: low confidence, low variability, never learned.
    suspects = df[(df.confidence < 0.2) & (df.variability < 0.15)]
    caught = flipped[suspects.id].sum()
    print(
        f"{len(suspects):,} examples with confidence < 0.2 and variability < 0.15; "
        f"{caught:,} of them ({caught / max(len(suspects), 1):.0%}) are the injected label flips "
        f"(recall {caught / flipped.sum():.0%})"
    )
    print(f"lowest AUM (most likely mislabeled):\n{df.nsmallest(5, 'aum')[['id', 'label', 'confidence', 'aum']]}")
    dm.to_arrow()  # a pyarrow.Table; write it anywhere
    import pyarrow.parquet as pq

    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(dm.to_arrow(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
