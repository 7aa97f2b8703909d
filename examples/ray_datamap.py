"""A data map on Ray Data: per-shard states as Arrow IPC bytes, merged in shard order.

The dataset is fastcarto's long table (one row per epoch and example: ``epoch``, ``id`` in
``0..n_examples``, ``label``, ``logits``), in any order and any number of blocks. Rows are
grouped by ``id % shards``, so every example's epochs land in one group: each group is folded
into a state epoch by epoch (as one machine folds it), and the states, covering disjoint
examples, merge exactly. The result equals ``fastcarto.compute`` on the same rows, bit for bit.

python examples/ray_datamap.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa


def fold_shard(table: pa.Table, n_examples: int, n_classes: int, kind: str) -> pa.Table:
    """The state of the examples in ``table`` (all their epochs), as one row of IPC bytes."""
    acc = fastcarto.Accumulator(n_examples, n_classes, kind=kind)  # type: ignore[arg-type]
    epoch = table.column("epoch").to_numpy()
    ids = table.column("id").to_numpy()
    labels = table.column("label").to_numpy()
    logits = np.asarray(table.column("logits").combine_chunks().flatten()).reshape(-1, n_classes)
    # One update per epoch, in epoch order: the order a single machine folds them in.
    for e in np.unique(epoch):
        rows = np.flatnonzero(epoch == e)
        acc.update(logits[rows], labels[rows], epoch=int(e), ids=ids[rows])
    sink = pa.BufferOutputStream()
    batch = acc.to_arrow()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    shard = int(table.column("shard")[0].as_py())
    return pa.table({"shard": [shard], "state": [sink.getvalue().to_pybytes()]})


def ray_datamap(
    ds: Any, *, n_examples: int, n_classes: int, kind: str, shards: int = 8
) -> fastcarto.DataMap:
    """The data map of the long-table Ray ``Dataset`` ``ds``."""

    def add_shard(batch: pa.Table) -> pa.Table:
        ids = batch.column("id").to_numpy()
        return batch.append_column("shard", pa.array(ids % shards))

    states = (
        ds.map_batches(add_shard, batch_format="pyarrow")
        .groupby("shard", num_partitions=shards)
        .map_groups(
            fold_shard,
            batch_format="pyarrow",
            fn_kwargs={"n_examples": n_examples, "n_classes": n_classes, "kind": kind},
        )
        .to_arrow_refs()
    )
    import ray

    table = pa.concat_tables(ray.get(states)).sort_by("shard")
    # Shard order: disjoint examples merge exactly in any order; a fixed one is easy to check.
    merged: fastcarto.Accumulator | None = None
    for blob in table.column("state").to_pylist():
        acc = fastcarto.Accumulator.from_arrow(pa.ipc.open_stream(blob).read_all())
        if merged is None:
            merged = acc
        else:
            merged.merge(acc)
    if merged is None:
        raise ValueError("the dataset has no rows")
    return merged.finalize()


def long_table(n_examples: int, n_classes: int, epochs: int, seed: int = 0) -> pa.Table:
    """Random logits as a long table, rows shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_examples)
    epoch = np.repeat(np.arange(epochs), n_examples)
    ids = np.tile(np.arange(n_examples), epochs)
    logits = rng.normal(size=(epochs * n_examples, n_classes)).astype(np.float32)
    order = rng.permutation(epochs * n_examples)
    return pa.table(
        {
            "epoch": pa.array(epoch[order]),
            "id": pa.array(ids[order]),
            "label": pa.array(labels[ids[order]]),
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits[order].ravel()), n_classes),
        }
    )


if __name__ == "__main__":
    import ray

    # The workers import this file's functions: put its folder on their path.
    here = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": here}})
    table = long_table(1000, 3, 5)
    dm = ray_datamap(
        ray.data.from_arrow(table).repartition(4), n_examples=1000, n_classes=3, kind="logits"
    )
    same = dm.to_arrow().equals(fastcarto.compute(table, kind="logits", progress=False).to_arrow())
    print(f"{len(dm)} examples; equal to fastcarto.compute: {same}")
