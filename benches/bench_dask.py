"""Times `fastcarto.dask.compute` on 1 to N local worker processes against `fastcarto.compute`
on the same files, in one process, alternating (so the ratios share the machine's state).

    python benches/bench_dask.py                        # N=1,000,000, E=8, C=10, one file per epoch
    python benches/bench_dask.py --examples 200000 --repeat 3 --workers 1 2 4
    python benches/bench_dask.py --layout shards        # files of disjoint examples, every epoch
    python benches/bench_dask.py --layout shards --split files   # each file read by one task

Each run checks that the Dask table equals `compute`'s bit for bit. Reports, per worker count,
the best of `--repeat` runs, its ratio to `compute` (the overhead: 1.10 is 10% slower), the
median ratio of the repeats' back-to-back pairs, and the speed-up over one worker. Workers are
processes with one thread each (`threads_per_worker=1`), so the engine in each task runs one
thread: N workers use N cores, as `compute` with N threads does. Cluster start-up is not timed
(a cluster is started once and reused).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fastcarto
import fastcarto.dask
import numpy as np
import pyarrow as pa


def write_run(root: Path, n: int, epochs: int, classes: int, layout: str, files: int) -> Path:
    """The long table of a run: one Arrow IPC stream per epoch (``epochs``), or ``files``
    shards of disjoint examples holding every epoch (``shards``)."""
    d = root / f"{layout}-{n}-{epochs}-{classes}-{files}"
    if d.exists():
        return d
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, size=n)

    def table(epoch_list: list[int], ids: np.ndarray) -> pa.Table:
        m = len(ids) * len(epoch_list)
        logits = rng.normal(size=(m, classes)).astype(np.float32)
        return pa.table(
            {
                "epoch": np.repeat(np.array(epoch_list, dtype=np.int64), len(ids)),
                "id": np.tile(ids, len(epoch_list)),
                "label": np.tile(labels[ids], len(epoch_list)),
                "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), classes),
            }
        )

    def write(path: Path, t: pa.Table) -> None:
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, t.schema) as w:
            w.write_table(t, max_chunksize=1 << 16)

    if layout == "epochs":
        ids = rng.permutation(n)
        for e in range(epochs):
            write(d / f"epoch-{e:04d}.arrows", table([e], ids))
    else:
        for s, part in enumerate(np.array_split(np.arange(n), files)):
            write(d / f"shard-{s:04d}.arrows", table(list(range(epochs)), part))
    return d


def same_bits(a: object, b: object) -> bool:
    ta, tb = pa.table(a), pa.table(b)
    if ta.schema != tb.schema:
        return False
    for name in ta.column_names:
        ca, cb = ta[name].combine_chunks(), tb[name].combine_chunks()
        if pa.types.is_floating(ca.type):
            va = ca.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
            vb = cb.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
            if not np.array_equal(va, vb) or not ca.is_null().equals(cb.is_null()):
                return False
        elif not ca.equals(cb):
            return False
    return True


def breakdown(client: object, source: str, repeat: int) -> dict[str, float]:
    """Best times of `fastcarto.dask.compute` with its range tasks replaced by ones that read
    their range and build its table but drop it (no handoff to the client), and by ones that
    build no table. The differences to a full run are what handing over and building the table
    cost."""
    from fastcarto.dask import _compute

    real = _compute._read_range_table

    # Defined here, so that Dask sends them to the workers by value.
    def built(files: Any, id_range: Any, *, compat: Any, ddof: int, **opts: Any) -> Any:
        opts.pop("client_host")
        part = _compute._read_range(files, id_range, **opts)
        if part.state is not None:
            part.state.finalize(compat=compat, ddof=ddof, ids=part.ids)
        return _compute._meta(part), None

    def read_only(files: Any, id_range: Any, *, compat: Any, ddof: int, **opts: Any) -> Any:
        opts.pop("client_host")
        return _compute._meta(_compute._read_range(files, id_range, **opts)), None

    out: dict[str, float] = {}
    try:
        for name, fake in (("built_not_handed_s", built), ("no_tables_s", read_only)):
            _compute._read_range_table = fake
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                try:
                    fastcarto.dask.compute(source, client=client)
                except ValueError:
                    pass  # no table came back, as intended
                times.append(time.perf_counter() - t0)
            out[name] = min(times)
    finally:
        _compute._read_range_table = real
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--layout", choices=["epochs", "shards"], default="epochs")
    ap.add_argument("--files", type=int, default=8, help="shards (layout=shards)")
    ap.add_argument("--split", choices=["examples", "files"], default="examples")
    ap.add_argument("--workers", type=int, nargs="+", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "fastcarto-bench-dask"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time runs whose table tasks only build the table, and none at all (where "
        "the overhead goes; those runs return nothing)",
    )
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    workers = args.workers or sorted({1, *range(2, cores + 1, 2), cores})
    d = write_run(Path(args.dir), args.examples, args.epochs, args.classes, args.layout, args.files)
    size = sum(p.stat().st_size for p in d.iterdir())
    rows = args.examples * args.epochs
    print(
        f"{args.layout}: {args.examples:,} examples x {args.epochs} epochs x {args.classes} "
        f"classes = {rows:,} rows, {size / 2**20:,.0f} MiB in {len(list(d.iterdir()))} files; "
        f"{cores} cores; {platform.processor() or platform.machine()}"
    )
    want = fastcarto.compute(str(d), progress=False)
    results = []
    for w in workers:
        with (
            LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            run = {"client": client, "split": args.split}
            assert same_bits(fastcarto.dask.compute(str(d), **run), want)
            local, dist = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fastcarto.compute(str(d), progress=False, threads=w)
                local.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                fastcarto.dask.compute(str(d), **run)
                dist.append(time.perf_counter() - t0)
            extra = breakdown(client, str(d), args.repeat) if args.breakdown else {}
        # Each repeat's two runs are back to back: the median of their ratios is less moved by a
        # noisy neighbour than the ratio of the two bests.
        paired = float(np.median([x / y for x, y in zip(dist, local, strict=True)]))
        results.append(
            {"workers": w, "compute_s": min(local), "dask_s": min(dist), "paired_ratio": paired}
        )
        r = results[-1]
        r.update(extra)
        print(
            f"{w} worker(s): dask {r['dask_s']:.2f} s, compute(threads={w}) "
            f"{r['compute_s']:.2f} s, ratio {r['dask_s'] / r['compute_s']:.2f} "
            f"(median of pairs {paired:.2f}), "
            f"speed-up over 1 worker {results[0]['dask_s'] / r['dask_s']:.2f}",
            flush=True,
        )
        if extra:
            print(
                f"  tables built but not handed over {extra['built_not_handed_s']:.2f} s, "
                f"no tables {extra['no_tables_s']:.2f} s (best of {args.repeat})"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "cores": cores, "results": results}, indent=1)
        )


if __name__ == "__main__":
    sys.exit(main())
