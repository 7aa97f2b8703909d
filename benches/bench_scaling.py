"""How `fastcarto.compute` scales with threads, on in-memory arrays and on an Arrow IPC file.

    python benches/bench_scaling.py                       # threads 1, 2, 4, ... up to the CPUs
    python benches/bench_scaling.py --threads 1 2 --examples 200000

For each thread count: the best of `--repeat` runs of `compute` on E=10, N=1,000,000, C=10
float32 logits, on the softmax of the same logits, and on the same logits written as a
long-format Arrow IPC file (ids shuffled per epoch). The vectorized numpy baseline and one
`np.sum` over the probabilities run once, single-threaded as numpy is, for scale. Speed-ups are
relative to one thread in the same run.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastcarto
from bench_compute import best_of, data_arguments, make_data
from numpy_baseline import numpy_metrics


def write_long_table(path: Path, logits: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """The dense logits as fastcarto's long table, rows of each epoch in a random order."""
    e, n, c = logits.shape
    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            ("epoch", pa.int64()),
            ("id", pa.int64()),
            ("label", pa.int64()),
            ("logits", pa.list_(pa.float32(), c)),
        ]
    )
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for epoch in range(e):
            order = rng.permutation(n)
            for lo in range(0, n, 1 << 16):
                ids = order[lo : lo + (1 << 16)]
                values = pa.array(logits[epoch, ids].reshape(-1))
                writer.write_batch(
                    pa.record_batch(
                        [
                            pa.array(np.full(len(ids), epoch)),
                            pa.array(ids),
                            pa.array(labels[ids]),
                            pa.FixedSizeListArray.from_arrays(values, c),
                        ],
                        schema=schema,
                    )
                )


def main() -> None:
    ap = data_arguments(__doc__)
    ap.add_argument("--threads", type=int, nargs="*", default=None)
    ap.add_argument("--no-ipc", action="store_true", help="skip the Arrow IPC file")
    args = ap.parse_args()

    e, n, c = args.epochs, args.examples, args.classes
    rows = e * n
    cpus = os.cpu_count() or 1
    threads = args.threads or sorted({1, *(2**k for k in range(1, 8) if 2**k <= cpus), cpus})
    labels, logits, probs = make_data(e, n, c)

    print(
        f"E={e} N={n:,} C={c} float32, {rows:,} rows, {cpus} cpus, "
        f"{platform.machine()}, Python {platform.python_version()}"
    )
    t_np = best_of(lambda: numpy_metrics(logits, labels, "logits"), 1)
    t_sum = best_of(lambda: probs.sum(), args.repeat)
    print(f"numpy baseline (logits, 1 thread) {rows / t_np / 1e6:8.1f} M rows/s")
    print(f"one np.sum over the probabilities {rows / t_sum / 1e6:8.1f} M rows/s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.arrow"
        if not args.no_ipc:
            write_long_table(path, logits, labels, seed=1)
        header = f"{'threads':>7} {'logits M rows/s':>16} {'x1':>6} {'x numpy':>8} "
        header += f"{'probs M rows/s':>15} {'x1':>6} {'/ np.sum':>9}"
        if not args.no_ipc:
            header += f" {'IPC M rows/s':>13} {'x1':>6}"
        print(header)
        first: dict[str, float] = {}
        for t in threads:
            got = {
                "logits": best_of(
                    partial(fastcarto.compute, logits, labels, kind="logits", threads=t),
                    args.repeat,
                ),
                "probs": best_of(
                    partial(fastcarto.compute, probs, labels, kind="probs", threads=t), args.repeat
                ),
            }
            if not args.no_ipc:
                got["ipc"] = best_of(
                    partial(fastcarto.compute, path, threads=t, progress=False), args.repeat
                )
            first = first or got
            line = f"{t:>7} {rows / got['logits'] / 1e6:16.1f} "
            line += f"{first['logits'] / got['logits']:6.2f} {t_np / got['logits']:8.1f} "
            line += f"{rows / got['probs'] / 1e6:15.1f} {first['probs'] / got['probs']:6.2f} "
            line += f"{got['probs'] / t_sum:9.2f}"
            if "ipc" in got:
                line += f" {rows / got['ipc'] / 1e6:13.1f} {first['ipc'] / got['ipc']:6.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
