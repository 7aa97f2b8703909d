"""A data map on PySpark: per-partition states as Arrow IPC bytes (``mapInArrow``), merged in
partition order.

The DataFrame is fastcarto's long table (one row per epoch and example: ``epoch``, ``id`` in
``0..n_examples``, ``label``, ``logits`` an array of floats), in any order. It is repartitioned
by ``id % shards``, so every example's epochs land in one partition: each partition is folded
into a state epoch by epoch (as one machine folds it), and the states, covering disjoint
examples, merge exactly. The result equals ``fastcarto.compute`` on the same rows, bit for bit.

python examples/spark_datamap.py
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa


def fold_partition(
    batches: Iterator[pa.RecordBatch], n_examples: int, n_classes: int, kind: str
) -> Iterator[pa.RecordBatch]:
    """The state of the examples of one partition (all their epochs), as one row of IPC bytes."""
    parts = list(batches)
    table = pa.Table.from_batches(parts) if parts else None
    if table is None or table.num_rows == 0:
        return
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
    first = int(ids.min())
    yield pa.RecordBatch.from_pydict({"first_id": [first], "state": [sink.getvalue().to_pybytes()]})


def spark_datamap(
    df: Any, *, n_examples: int, n_classes: int, kind: str, shards: int = 8
) -> fastcarto.DataMap:
    """The data map of the long-table Spark DataFrame ``df``."""
    from pyspark.sql import functions as F

    def fold(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return fold_partition(batches, n_examples, n_classes, kind)

    rows = (
        df.repartition(shards, (F.col("id") % shards))
        .mapInArrow(fold, "first_id long, state binary")
        .orderBy("first_id")
        .collect()
    )
    # A fixed order (disjoint examples merge exactly in any order; a fixed one is easy to check).
    merged: fastcarto.Accumulator | None = None
    for row in rows:
        acc = fastcarto.Accumulator.from_arrow(pa.ipc.open_stream(bytes(row.state)).read_all())
        if merged is None:
            merged = acc
        else:
            merged.merge(acc)
    if merged is None:
        raise ValueError("the DataFrame has no rows")
    return merged.finalize()


if __name__ == "__main__":
    from pyspark.sql import SparkSession
    from ray_datamap import long_table

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    # The workers import this file's functions by module name.
    spark.sparkContext.addPyFile(__file__)
    table = long_table(1000, 3, 5)
    pdf = table.to_pandas()
    pdf["logits"] = [list(map(float, v)) for v in pdf["logits"]]
    df = spark.createDataFrame(pdf)
    dm = spark_datamap(df, n_examples=1000, n_classes=3, kind="logits")
    same = dm.to_arrow().equals(fastcarto.compute(table, kind="logits", progress=False).to_arrow())
    print(f"{len(dm)} examples; equal to fastcarto.compute: {same}")
    spark.stop()
