"""Reading training dynamics from files: fastcarto against baselines run in the same process.

    python benches/bench_readers.py ipc            # long-format Arrow IPC vs pyarrow + numpy
    python benches/bench_readers.py cartography    # allenai/cartography's directory and code
    python benches/bench_readers.py billion        # 1e9 rows (N=1e8, E=10, C=2) from one IPC file

Each prints rows/s and the ratio to its baseline (best of --repeat runs). Files are written to a
temporary directory (``--dir``) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc


def best_of(repeat: int, f: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def long_table_batches(
    n: int, epochs: int, c: int, seed: int, *, chunk: int = 1 << 20, narrow: bool = False
) -> tuple[pa.Schema, Any]:
    """Batches of a long table with ids shuffled within every epoch (generated lazily)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    center = rng.normal(size=(n, c)).astype(np.float32)
    id_type, label_type, epoch_type = (
        (pa.int32(), pa.int8(), pa.int16()) if narrow else (pa.int64(), pa.int64(), pa.int64())
    )
    schema = pa.schema(
        [
            ("epoch", epoch_type),
            ("id", id_type),
            ("label", label_type),
            ("logits", pa.list_(pa.float32(), c)),
        ],
        metadata={"fastcarto.format": "long-table/1", "fastcarto.kind": "logits"},
    )

    def batches() -> Any:
        for e in range(epochs):
            order = rng.permutation(n)
            for lo in range(0, n, chunk):
                ids = order[lo : lo + chunk]
                noise = rng.standard_normal(size=(len(ids), c), dtype=np.float32)
                logits = center[ids] * (1 + 0.3 * e) + noise
                yield pa.record_batch(
                    [
                        pa.array(np.full(len(ids), e), epoch_type),
                        pa.array(ids, id_type),
                        pa.array(labels[ids], label_type),
                        pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), c),
                    ],
                    schema=schema,
                )

    return schema, batches()


def write_ipc(path: Path, schema: pa.Schema, batches: Any) -> None:
    with ipc.new_file(str(path), schema) as w:
        for b in batches:
            w.write_batch(b)


def numpy_baseline(path: Path, n: int) -> dict[str, np.ndarray]:
    """pyarrow reads the memory-mapped file; numpy does softmax and scatter-adds by id
    (confidence, variability, correctness only: no forgetting, which needs epoch order)."""
    s1, s2, correct, count = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    with pa.memory_map(str(path)) as f:
        reader = ipc.open_file(f)
        for i in range(reader.num_record_batches):
            b = reader.get_batch(i)
            ids = b.column("id").to_numpy()
            y = b.column("label").to_numpy()
            c = b.column("logits").type.list_size
            z = b.column("logits").flatten().to_numpy().reshape(-1, c)
            z = z - z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            g = p[np.arange(len(y)), y]
            s1 += np.bincount(ids, weights=g, minlength=n)
            s2 += np.bincount(ids, weights=g * g, minlength=n)
            correct += np.bincount(ids, weights=p.argmax(axis=1) == y, minlength=n)
            count += np.bincount(ids, minlength=n)
    mean = s1 / count
    return {
        "confidence": mean,
        "variability": np.sqrt(np.maximum(s2 / count - mean * mean, 0)),
        "correctness": correct / count,
    }


def bench_ipc(args: argparse.Namespace, tmp: Path) -> None:
    n, e, c = args.n, args.epochs, args.classes
    path = tmp / "dynamics.arrow"
    schema, batches = long_table_batches(n, e, c, seed=0, chunk=1 << 16)
    write_ipc(path, schema, batches)
    size = path.stat().st_size
    rows = n * e
    print(f"long-format Arrow IPC (uncompressed): N={n:,} E={e} C={c}, {size / 1e9:.2f} GB")
    t_np, ref = best_of(args.repeat, lambda: numpy_baseline(path, n))
    t_fc, dm = best_of(args.repeat, lambda: fastcarto.compute(path, progress=False))
    got = dm.to_pandas()
    for k in ("confidence", "variability", "correctness"):
        assert np.allclose(got[k].to_numpy(), ref[k], atol=1e-6), k
    print(f"  pyarrow + numpy   {rows / t_np / 1e6:8.1f} M rows/s  ({t_np:.2f} s)")
    print(f"  fastcarto         {rows / t_fc / 1e6:8.1f} M rows/s  ({t_fc:.2f} s)")
    print(f"  ratio             {t_np / t_fc:8.1f} x")


# --- allenai/cartography ----------------------------------------------------------------------
# Their reader (selection_utils.read_training_dynamics) and metric loop
# (train_dy_filtering.compute_train_dy_metrics), transcribed with the same per-example Python
# loop; torch's softmax is replaced by numpy's (torch is not installed here).


def cartography_read(td_dir: Path) -> dict[Any, dict[str, Any]]:
    dynamics: dict[Any, dict[str, Any]] = {}
    num_epochs = len([f for f in os.listdir(td_dir) if (td_dir / f).is_file()])
    for epoch in range(num_epochs):
        with open(td_dir / f"dynamics_epoch_{epoch}.jsonl") as infile:
            for line in infile:
                record = json.loads(line.strip())
                guid = record["guid"]
                if guid not in dynamics:
                    dynamics[guid] = {"gold": record["gold"], "logits": []}
                dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch}"])
    return dynamics


def cartography_metrics(dynamics: dict[Any, dict[str, Any]]) -> dict[str, dict[Any, float]]:
    def forgetfulness(trend: list[bool]) -> int:
        if not any(trend):
            return 1000
        learnt, forgotten = False, 0
        for ok in trend:
            if learnt and not ok:
                learnt, forgotten = False, forgotten + 1
            elif not learnt and ok:
                learnt = True
        return forgotten

    out: dict[str, dict[Any, float]] = {
        k: {} for k in ("confidence", "variability", "correctness", "forgetfulness")
    }
    for guid, record in dynamics.items():
        probs_trend, correct_trend = [], []
        for epoch_logits in record["logits"]:
            z = np.asarray(epoch_logits, dtype=np.float32)
            p = np.exp(z - z.max())
            p /= p.sum()
            probs_trend.append(float(p[record["gold"]]))
            correct_trend.append(bool(np.argmax(epoch_logits) == record["gold"]))
        out["correctness"][guid] = sum(correct_trend)
        out["confidence"][guid] = float(np.mean(probs_trend))
        out["variability"][guid] = float(np.std(probs_trend))
        out["forgetfulness"][guid] = forgetfulness(correct_trend)
    return out


def bench_cartography(args: argparse.Namespace, tmp: Path) -> None:
    n, e, c = args.n, args.epochs, args.classes
    td = tmp / "training_dynamics"
    td.mkdir()
    rng = np.random.default_rng(1)
    gold = rng.integers(0, c, size=n)
    for epoch in range(e):
        logits = rng.normal(size=(n, c)).astype(np.float32)
        logits[np.arange(n), gold] += 0.4 * epoch
        with open(td / f"dynamics_epoch_{epoch}.jsonl", "w") as f:
            for i in rng.permutation(n):
                row = {"guid": int(i), f"logits_epoch_{epoch}": logits[i].tolist()}
                f.write(json.dumps(row | {"gold": int(gold[i])}) + "\n")
    rows = n * e
    print(f"allenai/cartography training_dynamics/: N={n:,} E={e} C={c}")
    t_ref, ref = best_of(1, lambda: cartography_metrics(cartography_read(td)))
    t_fc, dm = best_of(
        args.repeat, lambda: fastcarto.compute(td, compat="cartography", progress=False)
    )
    got = dm.to_pandas().set_index("guid")
    for k in ("confidence", "variability", "correctness", "forgetfulness"):
        want = np.array([ref[k][g] for g in got.index])
        assert np.allclose(got[k].to_numpy(), want, rtol=1e-6, atol=1e-7), k
    print(f"  cartography code  {rows / t_ref / 1e3:8.1f} k rows/s  ({t_ref:.2f} s)")
    print(f"  fastcarto         {rows / t_fc / 1e3:8.1f} k rows/s  ({t_fc:.2f} s)")
    print(f"  ratio             {t_ref / t_fc:8.1f} x")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_billion(args: argparse.Namespace, tmp: Path) -> None:
    n, e, c = args.n, args.epochs, args.classes
    path = tmp / "billion.arrow"
    if args.file is not None:
        path = args.file  # written by an earlier run with --keep: N, E, C must match
    else:
        t0 = time.perf_counter()
        schema, batches = long_table_batches(n, e, c, seed=2, chunk=1 << 20, narrow=True)
        write_ipc(path, schema, batches)
        del batches
        gc.collect()
        print(
            f"written in {time.perf_counter() - t0:.0f} s; "
            f"peak RSS while writing {peak_rss_gib():.1f} GiB"
        )
        if args.keep is not None:
            shutil.move(path, args.keep)
            path = args.keep
    size = path.stat().st_size
    print(f"{n * e:,} rows (N={n:,}, E={e}, C={c}) in one Arrow IPC file of {size / 1e9:.1f} GB")
    before = peak_rss_gib()
    t = time.perf_counter()
    dm = fastcarto.compute(path, compat=args.compat, progress=False)
    wall = time.perf_counter() - t
    print(
        f"  fastcarto         {n * e / wall / 1e6:8.1f} M rows/s  ({wall:.1f} s wall), "
        f"{len(dm):,} examples, peak RSS {peak_rss_gib():.1f} GiB (before: {before:.1f} GiB)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("which", choices=("ipc", "cartography", "billion"))
    p.add_argument("--n", type=int, default=None, help="examples")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compat", default="cartography", help="billion: column set of the result")
    p.add_argument("--dir", default=None, help="where to write the temporary files")
    p.add_argument("--keep", type=Path, default=None, help="billion: keep the file here")
    p.add_argument("--file", type=Path, default=None, help="billion: read this file (from --keep)")
    args = p.parse_args()
    defaults = {"ipc": (1_000_000, 10), "cartography": (100_000, 3), "billion": (100_000_000, 2)}
    n, c = defaults[args.which]
    args.n = args.n or n
    args.classes = args.classes or c
    tmp = Path(tempfile.mkdtemp(prefix="fastcarto-bench-", dir=args.dir))
    try:
        {"ipc": bench_ipc, "cartography": bench_cartography, "billion": bench_billion}[args.which](
            args, tmp
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
