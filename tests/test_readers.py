"""Keyed sources: ``fastcarto.compute`` on long tables (files, directories, globs, Arrow objects,
the Recorder's output), allenai/cartography's ``training_dynamics/`` and per-epoch ``.npy``
arrays, against the dense path.

The contract: one row per id in increasing id order, and every metric *identical* (bitwise) to
``fastcarto.compute(dense, labels, kind=...)`` on the same values, where example ``j`` of the
dense array is the ``j``-th smallest id. An example missing some epochs is compared with a dense
array holding NaN there and ``nan_policy="omit"``; epochs are epoch *numbers* (not positions),
so the dense array has ``max(epoch) + 1`` epochs and the reference selects the numbers present.

Layouts are randomized: rows shuffled within and across epochs, epochs split over batches and
files in interleaving order, ids dense, sparse, negative, huge, strings, or dense first and huge
later (the id index switches from direct addressing to hashing mid-read).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import fastcarto
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import SOME_MORE_EXAMPLES
from fastcarto import (
    EmptyInputError,
    EpochOrderError,
    FastcartoError,
    FileFormatError,
    LabelError,
    NonFiniteError,
)
from hypothesis import given
from hypothesis import strategies as st

Array = np.ndarray[Any, Any]

ID_MODES = ("dense", "sparse", "negative", "huge", "string", "direct-then-hashed")


# --------------------------------------------------------------------------------------------
# Training dynamics and their reference


@dataclass
class Dynamics:
    """Outputs of ``n`` examples at some epoch numbers; ``outputs[e, j]`` is NaN where example
    ``j`` (the ``j``-th smallest id) has no row at epoch ``e``."""

    outputs: Array  # (max epoch + 1, n, c), float32/float64
    labels: Array  # (n,) int64
    ids: list[Any]  # sorted, int or str
    epochs: list[int]  # epoch numbers that hold rows, increasing
    present: Array  # (max epoch + 1, n) bool
    kind: str

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def c(self) -> int:
        return int(self.outputs.shape[2])

    @property
    def complete(self) -> bool:
        return bool(self.present[self.epochs].all())


def softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_ids(rng: np.random.Generator, n: int, mode: str) -> list[Any]:
    if mode == "dense":
        values = np.arange(n)
    elif mode == "sparse":
        values = rng.choice(3 * n + 5, size=n, replace=False)
    elif mode == "negative":
        values = rng.choice(4 * n + 5, size=n, replace=False) - 2 * n - 2
    elif mode == "huge":
        values = rng.choice(2**62, size=n, replace=False) * rng.choice([-1, 1], size=n)
        values = np.unique(values)
        while len(values) < n:  # pragma: no cover - collisions are astronomically unlikely
            values = np.unique(np.append(values, rng.integers(-(2**62), 2**62)))
    elif mode == "direct-then-hashed":
        small = n - n // 2
        values = np.concatenate([np.arange(small), 10**12 + rng.choice(10 * n + 1, n - small)])
        values = np.unique(values)
        while len(values) < n:
            values = np.unique(np.append(values, 10**12 + rng.integers(0, 10**9)))
    elif mode == "string":
        words = {
            f"{rng.choice(['ex', 'é', 'Z', ''])}{rng.integers(0, 10 * n + 10)}" for _ in range(n)
        }
        while len(words) < n:
            words.add(f"x{rng.integers(0, 10**9)}")
        return sorted(words)
    else:
        raise AssertionError(mode)
    return sorted(int(v) for v in values)


def make_dynamics(
    rng: np.random.Generator,
    *,
    n_epochs: int,
    n: int,
    c: int,
    dtype: Any,
    kind: str,
    id_mode: str = "dense",
    epoch_gaps: bool = False,
    missing: float = 0.0,
) -> Dynamics:
    """Random dynamics; ``epoch_gaps``: epoch numbers are not 0..E-1; ``missing``: fraction of
    (epoch, example) observations dropped (each example keeps at least one)."""
    epochs = sorted(rng.choice(3 * n_epochs, size=n_epochs, replace=False).tolist())
    if not epoch_gaps:
        epochs = list(range(n_epochs))
    total = epochs[-1] + 1
    labels = rng.integers(0, max(c, 2), size=n).astype(np.int64)
    z = rng.normal(size=(total, n, c)) * rng.choice([0.5, 2.0, 6.0])
    z[:, np.arange(n), np.minimum(labels, c - 1)] += np.linspace(-1, 2, total)[:, None]
    if kind == "probs":
        z = 1 / (1 + np.exp(-z)) if c == 1 else softmax(z)
    present = np.zeros((total, n), dtype=bool)
    present[epochs] = True
    if missing:
        drop = rng.random((len(epochs), n)) < missing
        drop[rng.integers(0, len(epochs), size=n), np.arange(n)] = False
        present[epochs] &= ~drop
    outputs = z.astype(dtype)
    outputs[~present] = np.nan
    ids = make_ids(rng, n, id_mode)
    return Dynamics(outputs, labels, ids, epochs, present, kind)


def expected(dyn: Dynamics, **options: Any) -> pd.DataFrame:
    """The dense path on the same values, ids put in."""
    chosen = options.pop("epochs", None)
    epochs = dyn.epochs if chosen is None else chosen
    holes = not dyn.present[epochs].all() or np.isnan(dyn.outputs[epochs]).any()
    nan_policy = options.pop("nan_policy", "omit" if holes else "raise")
    dm = fastcarto.compute(
        dyn.outputs, dyn.labels, kind=dyn.kind, epochs=epochs, nan_policy=nan_policy, **options
    )
    df = dm.to_pandas()
    keep = dyn.present[epochs].any(axis=0)
    df = df[keep].reset_index(drop=True)
    id_col = "guid" if options.get("compat") == "cartography" else df.columns[0]
    df[id_col] = pd.Series(np.asarray(dyn.ids, dtype=object)[keep], dtype=object)
    return df


def assert_same(got: fastcarto.DataMap | pd.DataFrame, want: pd.DataFrame, exact: bool) -> None:
    """Metrics bitwise equal (``exact``) or within float64 rounding; ids as Python values."""
    df = got.to_pandas() if isinstance(got, fastcarto.DataMap) else got
    assert list(df.columns) == list(want.columns)
    for name in df.columns:
        a, b = df[name].to_numpy(), want[name].to_numpy()
        if a.dtype.kind == "f" and exact:
            np.testing.assert_array_equal(a, b, err_msg=name, strict=True)
        elif a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name, strict=True)
        else:
            assert a.tolist() == b.tolist(), name


# --------------------------------------------------------------------------------------------
# Long tables and how they are laid out


def long_table(dyn: Dynamics, rng: np.random.Generator, *, variable_list: bool = False) -> pa.Table:
    """One row per present (epoch, example), shuffled across epochs."""
    e, j = np.nonzero(dyn.present)
    order = rng.permutation(len(e))
    e, j = e[order], j[order]
    values = dyn.outputs[e, j].reshape(-1)
    value_type = pa.from_numpy_dtype(dyn.outputs.dtype)
    if variable_list:
        offsets = pa.array(np.arange(len(e) + 1, dtype=np.int32) * dyn.c)
        outputs: pa.Array = pa.ListArray.from_arrays(offsets, pa.array(values, value_type))
    else:
        outputs = pa.FixedSizeListArray.from_arrays(pa.array(values, value_type), dyn.c)
    ids = pa.array([dyn.ids[k] for k in j])
    return pa.table(
        {
            "epoch": pa.array(e, pa.int64()),
            "id": ids,
            "label": pa.array(dyn.labels[j], pa.int64()),
            dyn.kind: outputs,
        }
    )


def random_split(rng: np.random.Generator, table: pa.Table, parts: int) -> list[pa.Table]:
    """``table`` cut at random places into ``parts`` pieces (some may be empty)."""
    cuts = np.sort(rng.integers(0, table.num_rows + 1, size=parts - 1))
    bounds = [0, *cuts.tolist(), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def by_epoch(table: pa.Table) -> dict[int, pa.Table]:
    epochs = table.column("epoch").to_numpy()
    return {int(e): table.filter(pa.array(epochs == e)) for e in np.unique(epochs)}


def sort_by_epoch(table: pa.Table) -> pa.Table:
    """Stable: rows stay shuffled within each epoch."""
    return table.take(np.argsort(table.column("epoch").to_numpy(), kind="stable"))


def presort(table: pa.Table, dyn: Dynamics, rng: np.random.Generator) -> pa.Table:
    """Rows in epoch order (still shuffled within epochs), small ids first when the ids switch
    from direct addressing to hashing, so that the first batches hold only small ids."""
    if all(isinstance(i, int) for i in dyn.ids) and max(dyn.ids, default=0) >= 10**12:
        big = pa.array(np.asarray(table.column("id").to_numpy()) >= 10**12)
        table = table.take(np.argsort(big.to_numpy(zero_copy_only=False), kind="stable"))
    return sort_by_epoch(table)


def batches(rng: np.random.Generator, table: pa.Table) -> list[pa.RecordBatch]:
    parts = random_split(rng, table, int(rng.integers(1, 6)))
    return [b for p in parts for b in p.combine_chunks().to_batches()] or table.to_batches()


def write_ipc_file(path: Path, table: pa.Table, rng: np.random.Generator, **kw: Any) -> None:
    with ipc.new_file(path, table.schema, options=ipc.IpcWriteOptions(**kw)) as w:
        for b in batches(rng, table):
            w.write_batch(b)


def write_ipc_stream(path: Path, table: pa.Table, rng: np.random.Generator) -> None:
    with ipc.new_stream(path, table.schema) as w:
        for b in batches(rng, table):
            w.write_batch(b)


def write_parquet(path: Path, table: pa.Table, rng: np.random.Generator) -> None:
    pq.write_table(table, path, row_group_size=int(rng.integers(1, 40)))


WRITERS: dict[str, Callable[[Path, pa.Table, np.random.Generator], None]] = {
    ".arrow": write_ipc_file,
    ".feather": lambda p, t, r: write_ipc_file(p, t, r, compression="lz4"),
    ".ipc": lambda p, t, r: write_ipc_file(p, t, r, compression="zstd"),
    ".arrows": write_ipc_stream,
    ".parquet": write_parquet,
}


def lay_out(fmt: str, table: pa.Table, tmp: Path, rng: np.random.Generator, dyn: Dynamics) -> Any:
    """The source ``compute`` reads, for each layout (``table`` rows are shuffled)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if fmt in ("ipc-file", "ipc-file-lz4", "ipc-file-zstd"):
        compression = {"ipc-file": None, "ipc-file-lz4": "lz4", "ipc-file-zstd": "zstd"}[fmt]
        path = tmp / "dynamics.arrow"
        write_ipc_file(path, table, rng, compression=compression)
        return path
    if fmt == "feather":
        path = tmp / "dynamics.feather"
        feather.write_feather(table, path, chunksize=max(1, table.num_rows // 3))
        return path
    if fmt == "ipc-stream":
        path = tmp / "dynamics.arrows"
        write_ipc_stream(path, table, rng)
        return path
    if fmt == "parquet":
        path = tmp / "dynamics.parquet"
        write_parquet(path, table, rng)
        return path
    if fmt == "dir":  # shards in random formats, with an epoch column, names without epochs
        directory = tmp / "dir"
        directory.mkdir()
        for k, part in enumerate(random_split(rng, table, int(rng.integers(1, 6)))):
            ext = str(rng.choice(list(WRITERS)))
            path = directory / f"part-{k:03d}-{rng.integers(0, 10**6)}{ext}"
            if k % 2:  # in a subdirectory; files stay in the order of k
                (directory / f"part-{k:03d}").mkdir()
                path = directory / f"part-{k:03d}" / f"data{ext}"
            WRITERS[ext](path, part, rng)
        (directory / "_SUCCESS").write_text("")
        (directory / ".part-9.arrow.tmp").write_bytes(b"partial")
        (directory / "README.txt").write_text("not data")
        return directory
    if fmt in ("dir-epoch-names", "hive", "glob"):  # one or more files per epoch, no column
        directory = tmp / fmt
        directory.mkdir()
        for e, part in by_epoch(table).items():
            part = part.drop(["epoch"])
            for k, shard in enumerate(random_split(rng, part, int(rng.integers(1, 4)))):
                if fmt == "hive":
                    (directory / f"epoch={e}").mkdir(exist_ok=True)
                    path = directory / f"epoch={e}" / f"part-{k}.arrow"
                elif fmt == "glob":
                    path = directory / f"dyn_epoch{e:03d}_shard{k}.parquet"
                else:
                    path = directory / f"epoch_{e}-part{k}{rng.choice(list(WRITERS))}"
                WRITERS[path.suffix](path, shard, rng)
        if fmt == "glob":
            write_parquet(directory / "other_epoch_0.parquet", table.slice(0, 1), rng)
            return str(directory / "dyn_*.parquet")
        return directory
    if fmt == "table":
        return pa.Table.from_batches(batches(rng, table), schema=table.schema)
    if fmt == "record-batch":
        return table.combine_chunks().to_batches()[0] if table.num_rows else table
    if fmt == "reader":  # read once: batches in epoch order, rows shuffled within epochs
        ordered = sort_by_epoch(table)
        return pa.RecordBatchReader.from_batches(table.schema, batches(rng, ordered))
    if fmt == "polars":
        return pl.from_arrow(table)
    if fmt == "pandas":
        return table.to_pandas()
    if fmt == "duckdb":  # a DuckDB query result, read through its Arrow stream
        return duckdb.connect().from_arrow(table).filter("epoch >= 0")
    if fmt in ("dataset", "scanner"):  # pyarrow.dataset over Parquet files, one pass
        directory = tmp / fmt
        directory.mkdir()
        ordered = sort_by_epoch(table)
        for k, shard in enumerate(random_split(rng, ordered, int(rng.integers(1, 4)))):
            write_parquet(directory / f"part-{k}.parquet", shard, rng)
        dataset = ds.dataset(directory, format="parquet", schema=table.schema)
        return dataset if fmt == "dataset" else dataset.scanner(batch_size=16)
    if fmt == "recorder":
        directory = tmp / "run"
        with fastcarto.Recorder(
            directory, kind=dyn.kind, n_classes=dyn.c, buffer_rows=int(rng.integers(1, 50))
        ) as rec:
            for e, part in sorted(by_epoch(table).items()):
                for chunk in random_split(rng, part, int(rng.integers(1, 4))):
                    if chunk.num_rows:
                        outputs = np.stack(chunk.column(dyn.kind).to_numpy(zero_copy_only=False))
                        rec.record(
                            outputs,
                            chunk.column("label").to_numpy(),
                            epoch=e,
                            ids=chunk.column("id"),
                        )
                rec.end_epoch(e)
        return directory
    raise AssertionError(fmt)


#: Layouts that hand each example's epochs to the reader in increasing order whatever the order
#: of the rows: files named after their epoch, and the one-pass stream (sorted by epoch).
ORDERED = {"dir-epoch-names", "hive", "glob", "reader", "dataset", "scanner", "recorder"}

FORMATS = (
    "ipc-file",
    "ipc-file-lz4",
    "ipc-file-zstd",
    "feather",
    "ipc-stream",
    "parquet",
    "dir",
    "dir-epoch-names",
    "hive",
    "glob",
    "table",
    "record-batch",
    "reader",
    "polars",
    "pandas",
    "duckdb",
    "dataset",
    "scanner",
    "recorder",
)


# --------------------------------------------------------------------------------------------
# Differential: every layout against the dense path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("id_mode", "dtype", "kind", "c"),
    [
        ("dense", np.float32, "logits", 3),
        ("string", np.float64, "probs", 4),
        ("huge", np.float64, "logits", 1),
        ("direct-then-hashed", np.float32, "probs", 2),
    ],
)
@pytest.mark.parametrize("presorted", [True, False])
def test_every_layout_matches_dense(
    tmp_path: Path, fmt: str, id_mode: str, dtype: Any, kind: str, c: int, presorted: bool
) -> None:
    rng = np.random.default_rng([FORMATS.index(fmt), ID_MODES.index(id_mode), presorted])
    dyn = make_dynamics(
        rng, n_epochs=4, n=57, c=c, dtype=dtype, kind=kind, id_mode=id_mode, epoch_gaps=c == 1
    )
    table = long_table(dyn, rng)
    if presorted:
        table = presort(table, dyn, rng)
    source = lay_out(fmt, table, tmp_path, rng, dyn)
    got = fastcarto.compute(source, progress=False)
    assert_same(got, expected(dyn), exact=presorted or fmt in ORDERED)


@SOME_MORE_EXAMPLES
@given(
    seed=st.integers(0, 2**32 - 1),
    fmt=st.sampled_from(FORMATS),
    n_epochs=st.integers(1, 6),
    n=st.integers(1, 80),
    c=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    kind=st.sampled_from(["logits", "probs"]),
    id_mode=st.sampled_from(ID_MODES),
    epoch_gaps=st.booleans(),
    missing=st.sampled_from([0.0, 0.0, 0.3]),
    presorted=st.booleans(),
    compat=st.sampled_from([None, None, "cartography", "aum", "dataiq", "toneva"]),
)
def test_random_layouts_match_dense(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    fmt: str,
    n_epochs: int,
    n: int,
    c: int,
    dtype: Any,
    kind: str,
    id_mode: str,
    epoch_gaps: bool,
    missing: float,
    presorted: bool,
    compat: str | None,
) -> None:
    rng = np.random.default_rng(seed)
    dyn = make_dynamics(
        rng,
        n_epochs=n_epochs,
        n=n,
        c=c,
        dtype=dtype,
        kind=kind,
        id_mode=id_mode,
        epoch_gaps=epoch_gaps,
        missing=missing,
    )
    table = long_table(dyn, rng, variable_list=bool(rng.random() < 0.2))
    if fmt == "recorder" and isinstance(table.schema.field(kind).type, pa.ListType):
        fmt = "ipc-file"
    if presorted:
        table = presort(table, dyn, rng)
    source = lay_out(fmt, table, tmp_path_factory.mktemp("t"), rng, dyn)
    threads = int(rng.integers(1, 3))
    got = fastcarto.compute(source, compat=compat, progress=False, threads=threads)
    assert_same(got, expected(dyn, compat=compat), exact=presorted or fmt in ORDERED)


def test_direct_ids_switch_to_hashed_mid_stream(tmp_path: Path) -> None:
    """The first batches hold ids 0..n (slots addressed directly), later ones ids near 1e12
    (the index becomes a hash table, keeping the states gathered so far)."""
    rng = np.random.default_rng(7)
    dyn = make_dynamics(rng, n_epochs=3, n=40, c=3, dtype=np.float64, kind="logits")
    dyn = replace(dyn, ids=[*range(20), *(10**12 + 3 * k for k in range(20))])
    table = long_table(dyn, rng)
    big = pa.array(table.column("id").to_numpy() >= 10**12).to_numpy(zero_copy_only=False)
    epochs = table.column("epoch").to_numpy()
    order = np.lexsort((big, epochs))  # per epoch: small ids, then big ones
    parts = [table.take(order[k : k + 10]) for k in range(0, len(order), 10)]
    assert parts[0].column("id").to_numpy().max() < 20 <= parts[-1].column("id").to_numpy().min()
    want = expected(dyn)
    reader = pa.RecordBatchReader.from_batches(
        table.schema, [p.combine_chunks().to_batches()[0] for p in parts]
    )
    assert_same(fastcarto.compute(reader, kind="logits"), want, exact=True)
    for k, part in enumerate(parts):
        write_ipc_stream(tmp_path / f"part-{k:03d}.arrows", part, rng)
    assert_same(fastcarto.compute(tmp_path), want, exact=True)
    # Hashed from the start (a negative id first), and ids that leave direct addressing only
    # because they are too sparse for the examples seen.
    for first in (-1, 5_000_000):
        dyn2 = replace(dyn, ids=sorted([first, *range(10**6, 10**6 + 39)]))
        assert_same(fastcarto.compute(long_table(dyn2, rng)), expected(dyn2), exact=False)


def test_shuffled_dense_ids_return_to_direct_addressing() -> None:
    """Ids 0..n shuffled within each epoch: the first batches look sparse (a sample spread over
    a range much larger than the ids seen), so the index starts hashed; once half the range is
    seen it goes back to direct addressing, permuting the states in place. Results are those of
    the dense path, bit for bit."""
    rng = np.random.default_rng(11)
    n, epochs, batch = 2_500_000, 2, 100_000
    logits = rng.normal(size=(epochs, n, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=n)
    schema = pa.schema(
        [
            ("epoch", pa.int64()),
            ("id", pa.int64()),
            ("label", pa.int64()),
            ("logits", pa.list_(pa.float32(), 1)),
        ]
    )
    batches = []
    for e in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n, batch):
            ids = order[lo : lo + batch]
            batches.append(
                pa.record_batch(
                    [
                        pa.array(np.full(len(ids), e)),
                        pa.array(ids),
                        pa.array(labels[ids]),
                        pa.FixedSizeListArray.from_arrays(pa.array(logits[e, ids, 0]), 1),
                    ],
                    schema=schema,
                )
            )
    first = batches[0].column("id").to_numpy()
    assert first.max() > 2 * len(first) + 2**20  # looks sparse: starts hashed
    got = fastcarto.compute(pa.Table.from_batches(batches, schema), progress=False).to_pandas()
    want = fastcarto.compute(logits, labels, kind="logits").to_pandas()
    pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize(
    ("n_classes", "numbers"),
    [(3, [0, 4093, 4094]), (3, [0, 4094, 5000]), (70_000, [0, 1])],
    ids=["largest-packed-epoch", "epoch-past-packed", "classes-past-packed"],
)
def test_epochs_and_classes_past_the_packed_state(n_classes: int, numbers: list[int]) -> None:
    """Long reads keep each state in 64 bytes while epochs stay below 4,095 and classes at most
    65,535, and widen them at the first epoch or class past that: the same results as the
    dense path either way, whatever the order the epochs come in."""
    rng = np.random.default_rng(5)
    n = 6
    z = rng.normal(size=(numbers[-1] + 1, n, n_classes)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n)
    y[:2] = [n_classes - 1, 0]
    z[numbers[-1], np.arange(n), y] += 10.0  # learned at the end: predictions past 65,535 too
    rows = [(e, i) for e in numbers for i in rng.permutation(n)]
    table = pa.table(
        {
            "epoch": pa.array([e for e, _ in rows], pa.int64()),
            "id": pa.array([i for _, i in rows], pa.int64()),
            "label": pa.array([y[i] for _, i in rows], pa.int64()),
            "logits": pa.FixedSizeListArray.from_arrays(
                pa.array(np.stack([z[e, i] for e, i in rows]).reshape(-1)), n_classes
            ),
        }
    )
    want = fastcarto.compute(z, y, kind="logits", epochs=numbers).to_pandas()
    for order in (table, table.take(np.arange(len(rows))[::-1].copy())):
        got = fastcarto.compute(order, progress=False).to_pandas()
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    assert want["stable_from"].max() == numbers[-1]


# --------------------------------------------------------------------------------------------
# Semantics: missing epochs, duplicates, labels, classes, epoch order, selections, NaN


def small_table(rows: list[tuple[int, Any, int, list[float]]], kind: str = "logits") -> pa.Table:
    """A long table from ``(epoch, id, label, outputs)`` tuples."""
    e, i, y, out = zip(*rows, strict=True)
    return pa.table(
        {
            "epoch": pa.array(e, pa.int64()),
            "id": pa.array(i),
            "label": pa.array(y, pa.int64()),
            kind: pa.array(out, pa.list_(pa.float64(), len(out[0]))),
        }
    )


def test_missing_epochs_and_require_complete(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    dyn = make_dynamics(rng, n_epochs=5, n=30, c=3, dtype=np.float64, kind="logits", missing=0.4)
    assert not dyn.complete
    table = long_table(dyn, rng)
    got = fastcarto.compute(table).to_pandas()
    assert got["n_epochs"].tolist() == dyn.present[dyn.epochs].sum(axis=0).tolist()
    assert_same(got, expected(dyn), exact=False)
    short = int(np.flatnonzero(dyn.present[dyn.epochs].sum(axis=0) < 5)[0])
    write_parquet(tmp_path / "d.parquet", sort_by_epoch(table), rng)
    for source in (table, tmp_path / "d.parquet"):
        with pytest.raises(FastcartoError, match=r"every example must have all") as info:
            fastcarto.compute(source, require_complete=True)
        assert "of the 5 epochs present" in str(info.value)
    # The first incomplete id in id order is named.
    with pytest.raises(FastcartoError, match=rf"id {dyn.ids[short]} has \d of the 5 epochs"):
        fastcarto.compute(tmp_path / "d.parquet", require_complete=True)
    complete = make_dynamics(rng, n_epochs=3, n=10, c=2, dtype=np.float32, kind="probs")
    fastcarto.compute(long_table(complete, rng), require_complete=True)


@pytest.mark.parametrize("where", ["batch", "batches", "files", "epoch-files", "stream"])
@pytest.mark.parametrize("ids", ["int", "string"])
def test_duplicate_rows_name_the_id(tmp_path: Path, where: str, ids: str) -> None:
    name: Any = "img-7" if ids == "string" else 7
    other: Any = "img-8" if ids == "string" else 8
    rows = [(0, name, 1, [0.0, 1.0]), (0, other, 0, [1.0, 0.0]), (1, name, 1, [0.0, 1.0])]
    dup = (0, name, 1, [0.5, 0.5])
    shown = f"[\"']{name}[\"']" if ids == "string" else str(name)
    pattern = rf"id {shown} already has an observation for epoch 0 \(duplicate row\)"
    rng = np.random.default_rng(0)
    source: Any
    if where == "batch":
        source = small_table([*rows, dup])
    elif where == "batches":
        source = pa.Table.from_batches(
            [*small_table(rows).to_batches(), *small_table([dup]).to_batches()]
        )
    elif where == "stream":
        source = pa.RecordBatchReader.from_batches(
            small_table(rows).schema,
            [*small_table(rows).to_batches(), *small_table([dup]).to_batches()],
        )
    elif where == "files":
        write_ipc_file(tmp_path / "a.arrow", small_table(rows), rng)
        write_parquet(tmp_path / "b.parquet", small_table([dup]), rng)
        source = tmp_path
    else:  # two shards of epoch 0 without an epoch column
        write_parquet(tmp_path / "epoch_0-a.parquet", small_table(rows[:2]).drop(["epoch"]), rng)
        write_parquet(tmp_path / "epoch_0-b.parquet", small_table([dup]).drop(["epoch"]), rng)
        source = tmp_path
    with pytest.raises(EpochOrderError, match=pattern) as info:
        fastcarto.compute(source, kind="logits")
    if where in ("files", "epoch-files"):
        assert "b.parquet" in str(info.value)


@pytest.mark.parametrize("ids", ["int", "string"])
def test_label_change_names_the_id(tmp_path: Path, ids: str) -> None:
    name: Any = "x y" if ids == "string" else -12
    rows = [
        (0, name, 1, [0.0, 1.0, 0.0]),
        (0, 3, 0, [1.0, 0.0, 0.0]),
        (2, name, 2, [0.0, 1.0, 0.0]),
    ]
    if ids == "string":
        rows[1] = (0, "3", 0, [1.0, 0.0, 0.0])
    shown = f"[\"']{name}[\"']" if ids == "string" else str(name)
    with pytest.raises(LabelError, match=rf"id {shown} has label 2 but was recorded with label 1"):
        fastcarto.compute(small_table(rows))
    rng = np.random.default_rng(0)
    write_ipc_stream(tmp_path / "epoch_2.arrows", small_table(rows[2:]).drop(["epoch"]), rng)
    write_ipc_stream(tmp_path / "epoch_0.arrows", small_table(rows[:2]).drop(["epoch"]), rng)
    with pytest.raises(LabelError, match=rf"epoch_2\.arrows.*id {shown} has label 2"):
        fastcarto.compute(tmp_path)
    # Label out of range for the classes.
    with pytest.raises(LabelError, match="label 3"):
        fastcarto.compute(small_table([(0, 1, 3, [0.0, 1.0, 0.0])]))


def test_class_count_change_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_parquet(tmp_path / "epoch_0.parquet", small_table([(0, 1, 0, [0.0, 1.0])]), rng)
    write_parquet(tmp_path / "epoch_1.parquet", small_table([(1, 1, 0, [0.0, 1.0, 2.0])]), rng)
    with pytest.raises(FastcartoError, match=r"epoch_1\.parquet.*3 output columns here but 2"):
        fastcarto.compute(tmp_path)
    # ids of another type in a later file
    for p in tmp_path.iterdir():
        p.unlink()
    write_parquet(tmp_path / "epoch_0.parquet", small_table([(0, 1, 0, [0.0, 1.0])]), rng)
    write_parquet(tmp_path / "epoch_1.parquet", small_table([(1, "1", 0, [0.0, 1.0])]), rng)
    with pytest.raises(FastcartoError, match=r"epoch_1\.parquet.*ids are strings here"):
        fastcarto.compute(tmp_path)


def learned_forgotten(rng: np.random.Generator, n: int, n_epochs: int) -> Dynamics:
    """Logits whose argmax flips between the label and another class from epoch to epoch, so
    forgetting counts depend on the order of the epochs."""
    labels = rng.integers(0, 2, size=n)
    hit = rng.random((n_epochs, n)) < 0.5
    z = np.zeros((n_epochs, n, 2))
    z[:, np.arange(n), labels] = np.where(hit, 2.0, -2.0) + rng.normal(size=(n_epochs, n)) * 0.1
    return Dynamics(
        z, labels, list(range(n)), list(range(n_epochs)), np.ones(hit.shape, bool), "logits"
    )


@pytest.mark.parametrize(
    "file_epochs",
    [
        [[3, 4], [0, 1, 2]],  # later epochs in the first file: every example arrives in reverse
        [[2], [0], [4], [1], [3]],  # one epoch per file, files in a shuffled order
        [[0, 3], [1, 4], [2]],  # interleaving: folded again, one epoch at a time
        [[4, 0], [2, 1, 3]],
    ],
)
@pytest.mark.parametrize("ext", [".arrow", ".arrows", ".parquet"])
def test_out_of_order_epochs_across_files(
    tmp_path: Path, file_epochs: list[list[int]], ext: str
) -> None:
    rng = np.random.default_rng(len(file_epochs))
    dyn = learned_forgotten(rng, 64, 5)
    table = long_table(dyn, rng)
    parts = by_epoch(table)
    for k, group in enumerate(file_epochs):
        part = pa.concat_tables([parts[e] for e in group])
        WRITERS[ext](tmp_path / f"part-{k}{ext}", part.take(rng.permutation(part.num_rows)), rng)
    got = fastcarto.compute(tmp_path).to_pandas()
    want = expected(dyn)
    assert got["forgetting"].sum() > 10
    assert_same(got, want, exact=False)
    assert got["forgetting"].tolist() == want["forgetting"].tolist()
    assert got["first_learned"].tolist() == want["first_learned"].tolist()


def test_interleaved_one_pass_stream_is_an_error_and_a_table_works() -> None:
    rng = np.random.default_rng(5)
    dyn = learned_forgotten(rng, 20, 3)
    parts = by_epoch(long_table(dyn, rng))
    order = [parts[0], parts[2], parts[1]]
    schema = parts[0].schema
    stream = pa.RecordBatchReader.from_batches(schema, [p.to_batches()[0] for p in order])
    with pytest.raises(EpochOrderError) as info:
        fastcarto.compute(stream, kind="logits")
    message = str(info.value)
    assert "batch 2 of the stream" in message
    assert "interleave" in message and "sort it by epoch" in message
    assert "pass a table or file" in message
    table = pa.Table.from_batches([p.to_batches()[0] for p in order])
    assert_same(fastcarto.compute(table), expected(dyn), exact=True)
    # Epochs in reverse order are fine for a stream too.
    reverse = pa.RecordBatchReader.from_batches(
        schema, [parts[e].to_batches()[0] for e in (2, 1, 0)]
    )
    assert_same(fastcarto.compute(reverse, kind="logits"), expected(dyn), exact=False)


@pytest.mark.parametrize(
    ("selection", "numbers"),
    [
        (slice(3), [1, 2]),  # epoch *numbers* 0..2, of which 1 and 2 exist
        (slice(2, None), [2, 4, 7, 9]),
        (slice(1, 8, 3), [1, 4, 7]),
        ([7, 1], [1, 7]),
        (range(4, 100), [4, 7, 9]),
    ],
)
@pytest.mark.parametrize("fmt", ["table", "dir-epoch-names", "parquet"])
def test_epoch_selection_by_number(
    tmp_path: Path, selection: Any, numbers: list[int], fmt: str
) -> None:
    rng = np.random.default_rng(3)
    dyn = make_dynamics(rng, n_epochs=5, n=25, c=3, dtype=np.float32, kind="logits")
    keep = [1, 2, 4, 7, 9]
    outputs = np.full((10, 25, 3), np.nan, dtype=np.float32)
    outputs[keep] = dyn.outputs
    present = np.zeros((10, 25), dtype=bool)
    present[keep] = True
    dyn = replace(dyn, outputs=outputs, present=present, epochs=keep)
    source = lay_out(fmt, presort(long_table(dyn, rng), dyn, rng), tmp_path, rng, dyn)
    got = fastcarto.compute(source, epochs=selection, progress=False)
    assert_same(got, expected(dyn, epochs=numbers), exact=True)
    assert set(got.to_pandas()["first_learned"].dropna()) <= set(numbers)


def test_epoch_selection_errors(tmp_path: Path) -> None:
    table = small_table([(2, 0, 0, [0.0, 1.0]), (3, 0, 0, [1.0, 0.0])])
    with pytest.raises(EmptyInputError, match="no rows in the selected epochs"):
        fastcarto.compute(table, epochs=[5])
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(EmptyInputError, match="no rows in the selected epochs"):
        fastcarto.compute(tmp_path / "t.parquet", epochs=2)
    with pytest.raises(EmptyInputError):
        fastcarto.compute(table, epochs=[])
    with pytest.raises(ValueError, match="non-negative"):
        fastcarto.compute(table, epochs=slice(-2, None))
    with pytest.raises(TypeError):
        fastcarto.compute(table, epochs=[1.5])


@pytest.mark.parametrize("fmt", ["table", "reader", "dir-epoch-names", "parquet", "npy-epochs"])
@pytest.mark.parametrize("numbers", [[0, 1, 2, 3], [1, 2, 3, 4], [0, 2, 3, 5]])
def test_first_k_epochs_must_all_be_present(tmp_path: Path, fmt: str, numbers: list[int]) -> None:
    """``epochs=k`` is the first k epochs, numbered 0..k-1: a run numbered from 1, or with a gap,
    is an error naming the epochs found, never a silently shorter selection."""
    rng = np.random.default_rng(11)
    dyn = make_dynamics(rng, n_epochs=4, n=9, c=3, dtype=np.float32, kind="logits")
    outputs = np.full((max(numbers) + 1, 9, 3), np.nan, dtype=np.float32)
    outputs[numbers] = dyn.outputs
    present = np.zeros(outputs.shape[:2], dtype=bool)
    present[numbers] = True
    run = replace(dyn, outputs=outputs, present=present, epochs=numbers)
    source: Any
    options: dict[str, Any] = {"epochs": 3, "progress": False}
    if fmt == "npy-epochs":
        source = tmp_path / "npy"
        source.mkdir()
        for e in numbers:
            np.save(source / f"epoch_{e}.npy", outputs[e])
        np.save(source / "labels.npy", np.asarray(dyn.labels))
        options["kind"] = "logits"
    else:
        source = lay_out(fmt, presort(long_table(run, rng), run, rng), tmp_path, rng, run)
    if numbers[:3] == [0, 1, 2]:
        got = fastcarto.compute(source, **options)
        assert_same(got, expected(run, epochs=[0, 1, 2]), exact=True)
    else:
        kept = ", ".join(str(e) for e in numbers if e < 3)
        with pytest.raises(ValueError, match=rf"the first 3 epochs were selected, .* \({kept}\)"):
            fastcarto.compute(source, **options)


@pytest.mark.parametrize("fmt", ["table", "ipc-file", "dir-epoch-names"])
def test_nan_policy(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(9)
    dyn = make_dynamics(rng, n_epochs=4, n=30, c=3, dtype=np.float64, kind="logits")
    dyn.outputs[2, 5, 1] = np.nan
    dyn.outputs[0, 7, 0] = np.inf
    source = lay_out(fmt, long_table(dyn, rng), tmp_path, rng, dyn)
    with pytest.raises(NonFiniteError, match=r"epoch [02], example with id [57]"):
        fastcarto.compute(source, progress=False)
    got = fastcarto.compute(source, nan_policy="omit", progress=False).to_pandas()
    assert got["n_epochs"][5] == 3 and got["n_epochs"][7] == 3
    assert_same(got, expected(dyn, nan_policy="omit"), exact=fmt == "dir-epoch-names")


def test_invalid_probabilities_name_the_id() -> None:
    rows = [(0, "a", 0, [0.5, 0.5]), (0, "b", 1, [0.9, 0.3])]
    with pytest.raises(fastcarto.InvalidProbabilitiesError, match=r"example with id \"b\""):
        fastcarto.compute(small_table(rows, "probs"))


def test_files_that_disagree_on_the_kind(tmp_path: Path) -> None:
    table = small_table([(0, 0, 0, [0.0, 1.0])])
    feather.write_feather(table, tmp_path / "epoch_0.arrow")
    probs = table.rename_columns(["epoch", "id", "label", "probs"])
    pq.write_table(probs.set_column(0, "epoch", pa.array([1])), tmp_path / "epoch_1.parquet")
    with pytest.raises(ValueError, match=r"epoch_0\.arrow holds logits but .*epoch_1\.parquet"):
        fastcarto.compute(tmp_path)
    pq.write_table(table.drop(["logits"]), tmp_path / "epoch_1.parquet")
    with pytest.raises(ValueError, match=r"epoch_1\.parquet: pass kind=.*has neither column"):
        fastcarto.compute(tmp_path)


def test_labels_are_refused_for_long_tables(tmp_path: Path) -> None:
    table = small_table([(0, 0, 0, [0.0, 1.0])])
    pq.write_table(table, tmp_path / "t.parquet")
    for source in (table, tmp_path / "t.parquet"):
        with pytest.raises(ValueError, match=r"labels are given only with an array .*column"):
            fastcarto.compute(source, np.array([0]))


def test_columns_option(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    dyn = make_dynamics(rng, n_epochs=3, n=10, c=2, dtype=np.float32, kind="probs")
    table = long_table(dyn, rng).rename_columns(["step", "guid", "y", "scores"])
    columns = {"epoch": "step", "id": "guid", "label": "y", "outputs": "scores"}
    with pytest.raises(ValueError, match="pass kind='logits' or kind='probs'"):
        fastcarto.compute(table, columns=columns)
    assert_same(fastcarto.compute(table, kind="probs", columns=columns), expected(dyn), exact=False)
    pq.write_table(table, tmp_path / "t.parquet")
    got = fastcarto.compute(tmp_path / "t.parquet", kind="probs", columns=columns)
    assert_same(got, expected(dyn), exact=False)
    with pytest.raises(ValueError, match="unknown column role"):
        fastcarto.compute(table, kind="probs", columns={"ids": "guid"})


# --------------------------------------------------------------------------------------------
# allenai/cartography's training_dynamics/ directory


def write_training_dynamics(
    directory: Path, z: Array, labels: Array, guids: list[Any], style: str, rng: np.random.Generator
) -> None:
    """``dynamics_epoch_{e}.jsonl`` as allenai/cartography writes them (``log_training_dynamics``:
    a pandas DataFrame of guid, ``logits_epoch_{e}`` and gold, ``to_json(lines=True,
    orient="records")``), or one ``json.dumps`` per line; rows in a different order each epoch."""
    directory.mkdir(parents=True)
    for e in range(z.shape[0]):
        order = rng.permutation(len(guids))
        path = directory / f"dynamics_epoch_{e}.jsonl"
        if style == "pandas":
            df = pd.DataFrame(
                {
                    "guid": [guids[i] for i in order],
                    f"logits_epoch_{e}": [z[e, i].tolist() for i in order],
                    "gold": labels[order],
                }
            )
            df.to_json(path, lines=True, orient="records")
        else:
            with open(path, "w", encoding="utf-8") as f:
                for i in order:
                    record = {"guid": guids[i], f"logits_epoch_{e}": z[e, i].tolist()}
                    record["gold"] = int(labels[i])
                    f.write(json.dumps(record) + "\n")


def read_training_dynamics(directory: Path, n_epochs: int) -> tuple[Array, Array, list[Any]]:
    """What allenai/cartography's ``read_training_dynamics`` reads (``json.loads`` per line):
    a dense (epochs, examples, classes) array over the sorted guids, and the labels."""
    logits: dict[Any, list[list[float]]] = {}
    gold: dict[Any, int] = {}
    for e in range(n_epochs):
        with open(directory / f"dynamics_epoch_{e}.jsonl", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line.strip())
                logits.setdefault(record["guid"], []).append(record[f"logits_epoch_{e}"])
                gold[record["guid"]] = record["gold"]
    guids = sorted(logits)
    dense = np.array([logits[g] for g in guids]).transpose(1, 0, 2)
    return dense, np.array([gold[g] for g in guids]), guids


@pytest.mark.parametrize("style", ["pandas", "json.dumps"])
@pytest.mark.parametrize("guid", ["int", "string"])
def test_cartography_directory_matches_the_dense_preset(
    tmp_path: Path, style: str, guid: str
) -> None:
    rng = np.random.default_rng(21)
    n, c, n_epochs = 300, 3, 5
    z = rng.normal(size=(n_epochs, n, c)) * 3 + rng.normal(size=(n_epochs, n, c)) * 1e-9
    labels = rng.integers(0, c, size=n)
    guids: list[Any] = rng.choice(10**6, size=n, replace=False).tolist()
    if guid == "string":
        guids = [f"train-{g}" for g in guids]
    directory = tmp_path / "training_dynamics"
    write_training_dynamics(directory, z, labels, guids, style, rng)
    dense, gold, order = read_training_dynamics(directory, n_epochs)
    want = fastcarto.compute(dense, gold, kind="logits", compat="cartography").to_pandas()
    want["guid"] = pd.Series(order, dtype=object)
    for source in (directory, str(directory / "dynamics_epoch_*.jsonl")):
        got = fastcarto.compute(source, compat="cartography")
        assert got.columns[:2] == ["guid", "index"]
        # Values as Python's json parses them, so bitwise equal.
        assert_same(got, want, exact=True)
    # cartography's burn-out: the first k epochs.
    got = fastcarto.compute(directory, compat="cartography", epochs=3)
    want3 = fastcarto.compute(dense[:3], gold, kind="logits", compat="cartography").to_pandas()
    want3["guid"] = pd.Series(order, dtype=object)
    assert_same(got, want3, exact=True)


def test_cartography_directory_golden_values(tmp_path: Path, golden: dict[str, Any]) -> None:
    import test_golden as g

    z, labels = golden["logits"], golden["labels"]
    directory = tmp_path / "training_dynamics"
    write_training_dynamics(
        directory, z, labels, list(range(len(labels))), "json.dumps", np.random.default_rng(0)
    )
    got = fastcarto.compute(directory, compat="cartography").to_pandas()
    want = golden["expected"]
    for column, key in [
        ("confidence", g.CONFIDENCE),
        ("variability", g.VAR_DDOF0),
        ("correctness", g.CORRECT_COUNT),
        ("forgetfulness", g.FORGET_CARTOGRAPHY),
        ("threshold_closeness", g.THRESHOLD_CLOSENESS),
    ]:
        np.testing.assert_allclose(got[column], want[key], rtol=0, atol=1e-6, err_msg=column)
    dense = fastcarto.compute(z, labels, kind="logits", compat="cartography").to_pandas()
    assert_same(got, dense, exact=True)


#: A second line after a good one, and the error it must give (the file and line named).
BAD_SECOND_LINES = [
    ('{"guid": 2, "logits_epoch_0": [0.5], "gold": 0}', r"epoch_0\.jsonl: line 2: 1 logits"),
    ('{"guid": 2, "logits_epoch_1": [0.5, 1], "gold": 0}', r"line 2: key \"logits_epoch_1\" in"),
    ('{"guid": 2, "logits_epoch_0": [0.5, 1]}', r"line 2: no \"gold\" key"),
    ('{"guid": 2, "logits_epoch_0": [0.5, "x"], "gold": 0}', r"line 2: .*"),
    ('{"guid": 2, "logits_epoch_0": [0.5, 1], "gold": 0', r"line 2: EOF while parsing"),
    ('{"guid": null, "logits_epoch_0": [0.5, 1], "gold": 0}', r"line 2: .*guid"),
    ('{"guid": "2", "logits_epoch_0": [0.5, 1], "gold": 0}', r"line 2: string guid where earlier"),
    ('{"guid": 2, "logits_epoch_0": [NaN, 1], "gold": 0}', r"line 2: .*NaN is not JSON: write"),
    # After a blank line (no row): the line numbers still count it.
    ('\n{"guid": 2, "logits_epoch_0": [0.5], "gold": 0}', r"epoch_0\.jsonl: line 3: 1 logits"),
    ('\n{"guid": "2", "logits_epoch_0": [0.5, 1], "gold": 0}', r"line 3: string guid"),
]
GOOD_LINE = '{"guid": 1, "logits_epoch_0": [0.5, 1.5], "gold": 1}\n'


@pytest.mark.parametrize(("line", "pattern"), BAD_SECOND_LINES)
def test_cartography_bad_lines(tmp_path: Path, line: str, pattern: str) -> None:
    (tmp_path / "dynamics_epoch_0.jsonl").write_text(GOOD_LINE + line + "\n")
    with pytest.raises(FileFormatError, match=pattern):
        fastcarto.compute(tmp_path)


def test_cartography_directory_errors(tmp_path: Path) -> None:
    d = tmp_path / "training_dynamics"
    d.mkdir()
    good = GOOD_LINE
    # null (pandas' to_json spelling of NaN) is a non-finite value, for nan_policy to judge.
    (d / "dynamics_epoch_0.jsonl").write_text(
        good + '{"guid": 2, "logits_epoch_0": [null, 1], "gold": 0}\n'
    )
    with pytest.raises(NonFiniteError, match=r"epoch 0, example with id 2 \(line 2\)"):
        fastcarto.compute(d)
    omitted = fastcarto.compute(d, nan_policy="omit").to_pandas()
    assert omitted["n_epochs"].tolist() == [1, 0]
    (d / "dynamics_epoch_0.jsonl").write_bytes(good.encode() + b'{"guid": 3, "\xff": 1}\n')
    with pytest.raises(FileFormatError, match="not UTF-8"):
        fastcarto.compute(d)
    (d / "dynamics_epoch_0.jsonl").write_text(good)
    with pytest.raises(FileFormatError, match="hold logits"):
        fastcarto.compute(d, kind="probs")
    (d / "dynamics_epoch_1.jsonl").write_text(
        good.replace("_0", "_1").replace('"gold": 1', '"gold": 0')
    )
    with pytest.raises(
        LabelError, match=r"dynamics_epoch_1\.jsonl, line 1: .*id 1 \(line 1\) has label 0"
    ):
        fastcarto.compute(d)
    # A duplicate guid is named with its own line, within the batch of lines it was read in.
    lines = [f'{{"guid": {n}, "logits_epoch_1": [0.5, 1], "gold": 1}}' for n in range(10)]
    lines.insert(8, lines[6])
    lines.insert(3, "")  # blank lines count as lines, not rows
    (d / "dynamics_epoch_1.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        EpochOrderError, match=r"dynamics_epoch_1\.jsonl, lines 1-12: example with id 6 \(line 10\)"
    ):
        fastcarto.compute(d)
    (d / "dynamics_epoch_1.jsonl").unlink()
    (d / "dynamics.jsonl").write_text(good)
    with pytest.raises(FileFormatError, match="cannot tell the epoch"):
        fastcarto.compute(d)


# --------------------------------------------------------------------------------------------
# Directories of per-epoch .npy arrays


def test_npy_epoch_directory(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(4, 30, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=30)
    for e in (3, 0, 2, 1):
        np.save(tmp_path / f"epoch_{e}.npy", z[e])
    np.save(tmp_path / "labels.npy", labels)
    want = fastcarto.compute(z, labels, kind="logits").to_pandas()
    assert_same(fastcarto.compute(tmp_path, kind="logits"), want, exact=True)
    ids = rng.choice(1000, size=30, replace=False)
    np.save(tmp_path / "ids.npy", ids)
    got = fastcarto.compute(tmp_path, kind="logits", epochs=[1, 3]).to_pandas()
    want = fastcarto.compute(z, labels, kind="logits", epochs=[1, 3]).to_pandas()
    assert got["id"].tolist() == ids.tolist()
    assert_same(got.drop(columns="id"), want.drop(columns="id"), exact=True)
    with pytest.raises(ValueError, match="kind="):
        fastcarto.compute(tmp_path)
    np.save(tmp_path / "epoch_4.npy", z[0][:, :2])
    with pytest.raises(FileFormatError, match=r"epoch_4\.npy: shape \[30, 2\] differs"):
        fastcarto.compute(tmp_path, kind="logits")
    np.save(tmp_path / "epoch_4.npy", z[0].astype(np.float64))
    with pytest.raises(FileFormatError, match=r"epoch_4\.npy: its dtype differs"):
        fastcarto.compute(tmp_path, kind="logits")
    (tmp_path / "epoch_4.npy").unlink()
    np.save(tmp_path / "ids.npy", np.zeros(30, dtype=np.int64))
    with pytest.raises(ValueError, match="duplicate ids"):
        fastcarto.compute(tmp_path, kind="logits")
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(ValueError, match=r"pass labels= or put the labels in labels\.npy"):
        fastcarto.compute(tmp_path, kind="logits")


# --------------------------------------------------------------------------------------------
# Bad input: a clear exception naming the file, never a crash, hang or wrong number

#: What a bad file may raise: fastcarto's errors (ValueError subclasses) or an OSError.
READ_ERRORS = (FastcartoError, OSError)


def sample_table(rng: np.random.Generator, n: int = 40, n_epochs: int = 3) -> pa.Table:
    dyn = make_dynamics(rng, n_epochs=n_epochs, n=n, c=3, dtype=np.float32, kind="logits")
    return presort(long_table(dyn, rng), dyn, rng)


def file_bytes(ext: str, table: pa.Table, tmp: Path, **kw: Any) -> bytes:
    path = tmp / f"whole{ext}"
    if ext == ".parquet":
        pq.write_table(table, path, row_group_size=15)
    elif ext == ".arrows":
        with ipc.new_stream(path, table.schema) as w:
            for b in table.to_batches(max_chunksize=15):
                w.write_batch(b)
    else:
        with ipc.new_file(path, table.schema, options=ipc.IpcWriteOptions(**kw)) as w:
            for b in table.to_batches(max_chunksize=15):
                w.write_batch(b)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.mark.parametrize(
    ("ext", "options"),
    [(".arrow", {}), (".arrow", {"compression": "zstd"}), (".arrows", {}), (".parquet", {})],
)
def test_truncated_files(tmp_path: Path, ext: str, options: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    table = sample_table(rng)
    data = file_bytes(ext, table, tmp_path, **options)
    whole = fastcarto.compute(table)
    path = tmp_path / f"cut{ext}"
    cuts = sorted({*range(0, 80), *rng.integers(0, len(data), size=60).tolist(), len(data) - 1})
    for cut in cuts:
        path.write_bytes(data[:cut])
        # Every cut is an error, a stream's cut between two messages included (its end-of-stream
        # marker is missing).
        with pytest.raises(FastcartoError) as info:
            fastcarto.compute(path)
        assert str(path) in str(info.value) or isinstance(info.value, EmptyInputError), (cut, info)
    path.write_bytes(data)
    assert_same(fastcarto.compute(path), whole.to_pandas(), exact=True)


@pytest.mark.parametrize(
    ("ext", "options"),
    [(".arrow", {}), (".arrow", {"compression": "lz4"}), (".arrows", {}), (".parquet", {})],
)
def test_corrupt_bytes(tmp_path: Path, ext: str, options: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    data = bytearray(file_bytes(ext, sample_table(rng), tmp_path, **options))
    path = tmp_path / f"bad{ext}"
    for trial in range(150):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(mutated)))
            if trial % 3 == 0:
                mutated[at] ^= 1 << int(rng.integers(0, 8))
            elif trial % 3 == 1:
                mutated[at] = int(rng.integers(0, 256))
            else:  # a run of 0xff / 0x00 (lengths, offsets)
                mutated[at : at + 8] = bytes([int(rng.choice([0, 255]))] * 8)
        path.write_bytes(bytes(mutated))
        try:
            # Without kind=, the schema is read first (in Python, through pyarrow).
            fastcarto.compute(path, **({"kind": "logits"} if trial % 2 else {}))
        except FastcartoError as err:
            assert str(path) in str(err), (trial, err)


def test_wrong_and_missing_columns(tmp_path: Path) -> None:
    table = sample_table(np.random.default_rng(2))
    for drop in ("id", "label", "epoch"):
        bad = table.drop([drop])
        with pytest.raises(
            FastcartoError, match=rf"no \w+ column \"{drop}\"; the columns present are \["
        ):
            fastcarto.compute(bad)
        pq.write_table(bad, tmp_path / "t.parquet")
        with pytest.raises(FastcartoError, match=rf"t\.parquet, batch 0: no \w+ column \"{drop}\""):
            fastcarto.compute(tmp_path / "t.parquet")
    with pytest.raises(
        ValueError, match=r"has neither column \(columns: \['epoch', 'id', 'label', 'scores'\]\)"
    ):
        fastcarto.compute(table.rename_columns(["epoch", "id", "label", "scores"]))
    with pytest.raises(FastcartoError, match=r"no outputs column \"probs\".*read it as logits"):
        fastcarto.compute(table, kind="probs")
    both = table.append_column("probs", table.column("logits"))
    with pytest.raises(ValueError, match="has both a 'logits' and a 'probs' column"):
        fastcarto.compute(both)


def replace_column(table: pa.Table, name: str, values: Any) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_bad_values(tmp_path: Path) -> None:
    table = sample_table(np.random.default_rng(3), n=4, n_epochs=2)
    n = table.num_rows
    logits = table.column("logits").combine_chunks()
    cases: list[tuple[pa.Table, type[BaseException], str]] = [
        (
            replace_column(table, "logits", pa.array([["a", "b", "c"]] * n)),
            FastcartoError,
            r"column \"logits\" holds (Large)?Utf8 values; model outputs must be float",
        ),
        (
            replace_column(table, "logits", pa.array([[1, 2, 3]] * n, pa.list_(pa.int64(), 3))),
            FastcartoError,
            "holds Int64 values",
        ),
        (
            replace_column(table, "logits", pa.array(["x"] * n)),
            FastcartoError,
            "must be a list of floats per row",
        ),
        (
            replace_column(table, "logits", pa.array([[0.5, 1.0, 2.0]] * (n - 1) + [[0.5, 1.0]])),
            FastcartoError,
            rf"column \"logits\": row {n - 1} has 2 values but row 0 has 3",
        ),
        (
            replace_column(table, "logits", pa.array([[]] * n, pa.list_(pa.float32(), 0))),
            FastcartoError,
            "empty lists: no classes",
        ),
        (
            replace_column(table, "logits", pa.array([None, *logits.to_pylist()[1:]], logits.type)),
            FastcartoError,
            r"column \"logits\" has 1 missing \(null\) values",
        ),
        (
            replace_column(
                table, "logits", pa.array([[0.5, None, 1.0], *logits.to_pylist()[1:]], logits.type)
            ),
            FastcartoError,
            r"column \"logits.item\" has 1 missing",
        ),
        (
            replace_column(table, "id", pa.array([None, *table.column("id").to_pylist()[1:]])),
            FastcartoError,
            r"column \"id\" has 1 missing",
        ),
        (
            replace_column(
                table, "label", pa.array([None, *table.column("label").to_pylist()[1:]])
            ),
            FastcartoError,
            r"column \"label\" has 1 missing",
        ),
        (
            replace_column(table, "epoch", pa.array([-1] * n)),
            FastcartoError,
            'epoch -1 in column "epoch" is negative',
        ),
        (
            replace_column(table, "label", pa.array([0.5] * n)),
            FastcartoError,
            r"column \"label\" must hold integers, not Float64",
        ),
        (
            replace_column(table, "id", pa.array([1.5] * n)),
            FastcartoError,
            "must hold integer or string ids, not Float64",
        ),
        (
            replace_column(table, "id", pa.array([2**63 + k for k in range(n)], pa.uint64())),
            FastcartoError,
            r"column \"id\" does not fit in int64",
        ),
        (
            replace_column(table, "label", pa.array([2**63 + k for k in range(n)], pa.uint64())),
            FastcartoError,
            r"column \"label\" does not fit in int64",
        ),
        (
            replace_column(table, "epoch", pa.array([2**63] * n, pa.uint64())),
            FastcartoError,
            r"column \"epoch\" does not fit in int64",
        ),
        (
            replace_column(table, "label", pa.array([-1] + [0] * (n - 1), pa.int8())),
            LabelError,
            "label -1",
        ),
        (
            replace_column(table, "epoch", pa.array([3] + [2**32 - 1] * (n - 1), pa.uint32())),
            FastcartoError,
            "epoch 4294967295 in column",
        ),
    ]
    for k, (bad, exc, message) in enumerate(cases):
        with pytest.raises(exc, match=message):
            fastcarto.compute(bad)
        path = tmp_path / f"bad{k}.arrow"
        feather.write_feather(bad, path, compression="uncompressed")
        with pytest.raises(exc, match=rf"bad{k}\.arrow, batch 0: .*{message}"):
            fastcarto.compute(path)
    # Accepted conversions: float16 outputs, int32 / uint8 columns, dictionary-encoded ids.
    fine = replace_column(table, "logits", pa.array(logits.to_pylist(), pa.list_(pa.float16(), 3)))
    fine = replace_column(fine, "label", table.column("label").cast(pa.uint8()))
    fine = replace_column(fine, "epoch", table.column("epoch").cast(pa.int32()))
    fastcarto.compute(fine)
    # Integer columns of every width read as they are (no copy to int64) and give the same map,
    # whether a batch holds one epoch or several.
    want = fastcarto.compute(table).to_pandas()
    for width in (
        pa.int8(),
        pa.uint8(),
        pa.int16(),
        pa.uint16(),
        pa.int32(),
        pa.uint32(),
        pa.uint64(),
    ):
        narrow = replace_column(table, "label", table.column("label").cast(width))
        narrow = replace_column(narrow, "epoch", table.column("epoch").cast(width))
        for batches in (narrow, pa.Table.from_batches(narrow.to_batches(max_chunksize=7))):
            got = fastcarto.compute(batches).to_pandas()
            pd.testing.assert_frame_equal(got, want)
    ids = pa.array([str(i) for i in table.column("id").to_pylist()]).dictionary_encode()
    assert fastcarto.compute(replace_column(table, "id", ids)).to_pandas()["id"].tolist() == sorted(
        {str(i) for i in table.column("id").to_pylist()}
    )


def test_empty_and_unreadable_sources(tmp_path: Path) -> None:
    table = sample_table(np.random.default_rng(4))
    with pytest.raises(FileNotFoundError, match=r"nowhere\.arrow"):
        fastcarto.compute(tmp_path / "nowhere.arrow")
    with pytest.raises(FileNotFoundError):
        fastcarto.compute(tmp_path / "nowhere")
    with pytest.raises(EmptyInputError, match="no data files match"):
        fastcarto.compute(str(tmp_path / "nothing-*.parquet"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyInputError, match="no data files"):
        fastcarto.compute(empty)
    (empty / ".hidden.arrow").write_bytes(b"")
    (empty / "_SUCCESS").write_bytes(b"")
    (empty / "notes.txt").write_text("x")
    with pytest.raises(EmptyInputError, match="no data files"):
        fastcarto.compute(empty)
    for ext in (".arrow", ".arrows", ".feather", ".parquet", ".jsonl"):
        path = tmp_path / f"zero{ext}"
        path.write_bytes(b"")
        with pytest.raises(READ_ERRORS, match=f"zero\\{ext}"):
            fastcarto.compute(path, kind="logits")
    for ext in (".arrow", ".arrows", ".parquet"):
        path = tmp_path / f"no-rows{ext}"
        WRITERS[ext](path, table.slice(0, 0), np.random.default_rng(0))
        with pytest.raises(EmptyInputError, match="no rows"):
            fastcarto.compute(path)
    with pytest.raises(EmptyInputError, match="no rows"):
        fastcarto.compute(table.slice(0, 0))
    (tmp_path / "dynamics.csv").write_text("epoch,id\n")
    with pytest.raises(FileFormatError, match=r"dynamics\.csv: unknown file type"):
        fastcarto.compute(tmp_path / "dynamics.csv")
    with pytest.raises(FileFormatError, match="not an Arrow IPC stream"):
        (tmp_path / "text.arrows").write_text("hello, world, this is not arrow")
        fastcarto.compute(tmp_path / "text.arrows", kind="logits")


def test_mixed_file_types(tmp_path: Path) -> None:
    table = sample_table(np.random.default_rng(5))
    pq.write_table(table, tmp_path / "a.parquet")
    (tmp_path / "dynamics_epoch_0.jsonl").write_text(
        '{"guid": 1, "logits_epoch_0": [0.5, 1], "gold": 0}\n'
    )
    with pytest.raises(FastcartoError, match="mixes file types"):
        fastcarto.compute(tmp_path)
    (tmp_path / "dynamics_epoch_0.jsonl").unlink()
    np.save(tmp_path / "epoch_0.npy", np.zeros((3, 3)))
    with pytest.raises(FastcartoError, match="mixes file types"):
        fastcarto.compute(tmp_path, kind="logits")
    (tmp_path / "epoch_0.npy").unlink()
    # Arrow and Parquet mix freely: both hold long tables.
    feather.write_feather(table.slice(0, 0), tmp_path / "b.arrow")
    fastcarto.compute(tmp_path)
