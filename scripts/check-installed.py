"""Smoke test of an installed fastcarto (a wheel), run by scripts/build-wheel and by CI.

Checks that the imported package is the installed one, not a source checkout, and that the
compiled extension works end to end: dense outputs, an Accumulator, a zstd Parquet long
table and the command line. Run it from a directory that holds no ``fastcarto`` package.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastcarto import cli

location = Path(fastcarto.__file__).resolve()
assert "site-packages" in location.parts, f"fastcarto imported from {location}, not a wheel"

rng = np.random.default_rng(0)
logits = rng.normal(size=(3, 50, 4)).astype(np.float32)
labels = np.arange(50) % 4
dm = fastcarto.compute(logits, labels, kind="logits")
assert len(dm) == 50 and np.isfinite(dm.to_pandas()["confidence"]).all()

acc = fastcarto.Accumulator(n_examples=50, n_classes=4, kind="logits")
for epoch_logits in logits:
    acc.update(epoch_logits, labels)
assert np.allclose(acc.finalize().to_pandas()["confidence"], dm.to_pandas()["confidence"])

with tempfile.TemporaryDirectory() as tmp:
    long = pa.table(
        {
            "epoch": np.repeat(np.arange(3), 50),
            "id": np.tile(np.arange(50), 3),
            "label": np.tile(labels, 3),
            "logits": pa.FixedSizeListArray.from_arrays(logits.ravel(), 4),
        }
    )
    pq.write_table(long, Path(tmp) / "dynamics.parquet", compression="zstd")
    again = fastcarto.compute(Path(tmp) / "dynamics.parquet", progress=False)
    assert np.allclose(again.to_pandas()["confidence"], dm.to_pandas()["confidence"])
    np.save(Path(tmp) / "logits.npy", logits)
    np.save(Path(tmp) / "labels.npy", labels)
    argv = [str(Path(tmp) / "logits.npy"), "--labels", str(Path(tmp) / "labels.npy")]
    out = str(Path(tmp) / "metrics.csv")
    assert cli.main(["map", *argv, "--kind", "logits", "-o", out, "--quiet"]) == 0

print(f"fastcarto {fastcarto.__version__} (Python {sys.version.split()[0]}) from {location}: ok")
