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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from fastcarto import (
    EmptyInputError,
    EpochOrderError,
    FastcartoError,
    FileFormatError,
    LabelError,
    NonFiniteError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

Array = np.ndarray[Any, Any]

ID_MODES = ("dense", "sparse", "negative", "huge", "string", "direct-then-hashed")


def scaled(n: int) -> int:
    """``n`` examples under the default "ci" profile, scaled with HYPOTHESIS_PROFILE."""
    return max(1, n * settings.default.max_examples // 100)


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
        words = {f"{rng.choice(['ex', 'é', 'Z', ''])}{rng.integers(0, 10 * n + 10)}" for _ in range(n)}
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


def long_table(
    dyn: Dynamics, rng: np.random.Generator, *, variable_list: bool = False
) -> pa.Table:
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
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


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
                            e, chunk.column("id"), outputs, chunk.column("label").to_numpy()
                        )
                rec.end_epoch(e)
        return directory
    raise AssertionError(fmt)


#: Layouts that hand each example's epochs to the reader in increasing order whatever the order
#: of the rows: files named after their epoch, and the one-pass stream (sorted by epoch).
ORDERED = {"dir-epoch-names", "hive", "glob", "reader", "recorder"}

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
    "recorder",
)



def declared(fmt: str, kind: str) -> dict[str, str]:
    """A one-pass stream needs ``kind=`` (the others declare it by their column's name)."""
    return {"kind": kind} if fmt == "reader" else {}


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
    got = fastcarto.compute(source, progress=False, **declared(fmt, kind))
    assert_same(got, expected(dyn), exact=presorted or fmt in ORDERED)


@settings(max_examples=scaled(120))
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
    got = fastcarto.compute(
        source, compat=compat, progress=False, threads=threads, **declared(fmt, kind)
    )
    assert_same(got, expected(dyn, compat=compat), exact=presorted or fmt in ORDERED)
