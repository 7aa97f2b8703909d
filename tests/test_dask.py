"""fastcarto.dask: the same table as fastcarto.compute, bit for bit, on a Dask cluster.

Shards are written split by epoch, by example and both; the cluster reads them in any order it
likes. Equality is checked column by column on the bits (NaNs included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FEWEST_EXAMPLES
from hypothesis import given
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")
fdask = pytest.importorskip("fastcarto.dask")

N, C, EPOCHS = 300, 3, 5


def same_bits(a: Any, b: Any) -> None:
    """Every column of two tables equal bit for bit, nulls and NaNs included."""
    ta, tb = pa.table(a), pa.table(b)
    assert ta.schema == tb.schema
    assert ta.num_rows == tb.num_rows
    for name in ta.column_names:
        ca, cb = ta[name].combine_chunks(), tb[name].combine_chunks()
        assert ca.null_count == cb.null_count, name
        assert ca.is_null().equals(cb.is_null()), name
        if pa.types.is_floating(ca.type):
            va = ca.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
            vb = cb.fill_null(0).to_numpy(zero_copy_only=False).view(np.uint64)
            np.testing.assert_array_equal(va, vb, err_msg=name)
        else:
            assert ca.equals(cb), name


def rows(epochs: list[int], ids: np.ndarray, seed: int = 0, nan: bool = False) -> pa.Table:
    """A long table of the given epochs and ids; the outputs depend only on (epoch, id)."""
    ep = np.repeat(np.array(epochs, dtype=np.int64), len(ids))
    ix = np.tile(ids, len(epochs))
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(EPOCHS, N, C)) * 2
    logits = base[ep, ix]
    if nan:
        logits[(ep == 1) & (ix % 37 == 0), 0] = np.nan
    return pa.table(
        {
            "epoch": ep,
            "id": ix,
            "label": (ix * 7) % C,
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), C),
        }
    )


def write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=97)
    else:
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
            w.write_table(table, max_chunksize=89)


def by_epoch(d: Path, suffix: str = ".parquet") -> Path:
    ids = np.random.default_rng(1).permutation(N)
    for e in range(EPOCHS):
        write(d / f"epoch_{e}{suffix}", rows([e], ids))
    return d


def by_example(d: Path) -> Path:
    for s, part in enumerate(np.array_split(np.random.default_rng(2).permutation(N), 4)):
        write(d / f"shard-{s}.parquet", rows(list(range(EPOCHS)), np.sort(part)))
    return d


def by_both(d: Path) -> Path:
    """The Recorder's layout: one file per (epoch, rank), ranks reshuffled every epoch (as a
    DistributedSampler does), in Hive-style epoch folders."""
    for e in range(EPOCHS):
        perm = np.random.default_rng(10 + e).permutation(N)
        for r, part in enumerate(np.array_split(perm, 3)):
            write(d / f"epoch={e}" / f"rank-{r}.arrows", rows([e], part).drop(["epoch"]))
    return d


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=":0"
    ) as c:
        yield c


@pytest.mark.parametrize("layout", [by_epoch, by_example, by_both])
@pytest.mark.parametrize("compat", [None, "cartography", "toneva"])
@pytest.mark.parametrize("split", ["examples", "files"])
def test_layouts_equal_compute_bit_for_bit(tmp_path, client, layout, compat, split) -> None:
    d = layout(tmp_path / "run")
    want = fastcarto.compute(str(d), compat=compat, progress=False)
    got = fdask.compute(str(d), compat=compat, client=client, split=split)
    same_bits(got, want)
    if split == "examples":
        for partitions in (1, 3, 7):
            got = fdask.compute(str(d), compat=compat, client=client, partitions=partitions)
            same_bits(got, want)


def test_a_table_in_chunks_works_as_one(tmp_path, client) -> None:
    """Ranges give a table of one chunk per range (the client copies nothing): every method
    gives what it gives on compute's table of one chunk."""
    import pandas as pd

    d = by_epoch(tmp_path / "run")
    for compat in (None, "cartography"):
        want = fastcarto.compute(str(d), compat=compat, progress=False)
        got = fdask.compute(str(d), compat=compat, client=client, partitions=3)
        assert got.to_arrow().column(0).num_chunks == 3
        pd.testing.assert_frame_equal(got.to_pandas(), want.to_pandas())
        pd.testing.assert_frame_equal(got.to_polars().to_pandas(), want.to_polars().to_pandas())
        pd.testing.assert_series_equal(got.regions(), want.regions())
        if compat is None:
            pd.testing.assert_frame_equal(got.label_issues(), want.label_issues())
        same_bits(
            got.select("confidence", 0.3).to_arrow(), want.select("confidence", 0.3).to_arrow()
        )
        np.testing.assert_array_equal(got["confidence"], want["confidence"])


@pytest.mark.parametrize("compat", [None, "cartography"])
def test_shards_of_disjoint_id_blocks_merge_nothing(tmp_path, client, compat) -> None:
    """split="files" on shards that each hold one block of ids (named against id order): each
    shard's table is built where it was read, one chunk each, in id order; no state merges. A
    require_complete failure names the example compute's names."""
    d = tmp_path / "run"
    for s, part in enumerate(np.array_split(np.arange(N), 4)):
        write(d / f"shard-{3 - s}.parquet", rows(list(range(EPOCHS)), part))
    want = fastcarto.compute(str(d), compat=compat, progress=False)
    got = fdask.compute(str(d), client=client, split="files", compat=compat)
    same_bits(got, want)
    assert got.to_arrow().column(0).num_chunks == 4

    # String ids, one shard short of an epoch for its examples.
    d = tmp_path / "short"
    for s, part in enumerate(np.array_split(np.arange(N), 3)):
        table = rows(list(range(EPOCHS - (s == 1))), part)
        ids = pa.array([f"x{i:04d}" for i in np.asarray(table["id"])])
        write(d / f"shard-{s}.parquet", table.set_column(1, "id", ids))
    same_bits(
        fdask.compute(str(d), client=client, split="files"),
        fastcarto.compute(str(d), progress=False),
    )
    with pytest.raises(ValueError, match="every example must have all of them") as got_err:
        fdask.compute(str(d), client=client, split="files", require_complete=True)
    with pytest.raises(ValueError) as want_err:
        fastcarto.compute(str(d), progress=False, require_complete=True)
    assert str(got_err.value) == str(want_err.value)


@FEWEST_EXAMPLES
@given(
    n=st.integers(1, 60),
    epochs=st.integers(1, 4),
    files_per_epoch=st.integers(1, 3),
    partitions=st.integers(1, 6),
    string_ids=st.booleans(),
    spread=st.sampled_from([1, 3, 1 << 40]),
    seed=st.integers(0, 2**16),
)
def test_ranges_of_any_ids_equal_compute(
    tmp_path_factory, client, n, epochs, files_per_epoch, partitions, string_ids, spread, seed
) -> None:
    """Any ids (negative, sparse, strings), shuffled every epoch and spread over several files
    per epoch, in any number of ranges: compute's table bit for bit."""
    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("ranges")
    ids = (np.arange(n, dtype=np.int64) - n // 2) * spread
    labels = rng.integers(0, C, size=n)
    for e in range(epochs):
        perm = rng.permutation(n)
        for f, part in enumerate(np.array_split(perm, files_per_epoch)):
            key = ids[part]
            table = pa.table(
                {
                    "epoch": np.full(len(part), e, dtype=np.int64),
                    "id": [f"x{k}" for k in key] if string_ids else key,
                    "label": labels[part],
                    "logits": pa.FixedSizeListArray.from_arrays(
                        pa.array(rng.normal(size=len(part) * C)), C
                    ),
                }
            )
            write(d / f"epoch_{e}" / f"part-{f}.arrows", table)
    want = fastcarto.compute(str(d), progress=False)
    same_bits(fdask.compute(str(d), client=client, partitions=partitions), want)


def test_files_given_out_of_order_and_options(tmp_path, client) -> None:
    d = by_epoch(tmp_path / "run", ".arrows")
    files = [str(p) for p in sorted(d.iterdir(), reverse=True)]
    for kw in (
        {"epochs": 3},
        {"epochs": slice(1, None, 2)},
        {"epochs": [0, 4]},
        {"ddof": 1},
        {"require_complete": True},
    ):
        want = fastcarto.compute(str(d), progress=False, **kw)
        same_bits(fdask.compute(files, client=client, **kw), want)


def test_nan_policy_and_string_ids(tmp_path, client) -> None:
    d = tmp_path / "run"
    for e in range(EPOCHS):
        t = rows([e], np.arange(N), nan=True)
        t = t.set_column(1, "id", pa.array([f"ex-{i:04d}" for i in t["id"].to_pylist()]))
        write(d / f"epoch_{e}.parquet", t)
    with pytest.raises(fastcarto.NonFiniteError):
        fdask.compute(str(d), client=client)
    want = fastcarto.compute(str(d), nan_policy="omit", progress=False)
    same_bits(fdask.compute(str(d), nan_policy="omit", client=client), want)


def test_epoch_ranges_merge_in_epoch_order(tmp_path, client) -> None:
    """Files of several epochs each: split by example, bit for bit; split by file, counts and
    forgetting exact, floats to rounding."""
    d = tmp_path / "run"
    ids = np.arange(N)
    write(d / "b.parquet", rows([3, 4], ids))
    write(d / "a.parquet", rows([0, 1, 2], ids))
    same_bits(fdask.compute(str(d), client=client), fastcarto.compute(str(d), progress=False))
    want = fastcarto.compute(str(d), progress=False).to_pandas()
    got = fdask.compute(str(d), client=client, split="files").to_pandas()
    for col in want.columns:
        if want[col].dtype.kind == "f":
            np.testing.assert_allclose(got[col], want[col], rtol=1e-12, atol=1e-15, err_msg=col)
        else:
            assert got[col].equals(want[col]), col


def test_overlapping_and_interleaved_epochs_are_refused_when_split_by_file(
    tmp_path, client
) -> None:
    d = tmp_path / "overlap"
    write(d / "a.parquet", rows([0, 1, 2], np.arange(N)))
    write(d / "b.parquet", rows([2, 3], np.arange(N)))
    with pytest.raises(fastcarto.FastcartoError, match="merging"):
        fdask.compute(str(d), client=client, split="files")
    # Split by example, each task reads as compute does: compute's error.
    with pytest.raises(fastcarto.FastcartoError, match="duplicate row"):
        fdask.compute(str(d), client=client)
    with pytest.raises(fastcarto.FastcartoError, match="duplicate row"):
        fastcarto.compute(str(d), progress=False)
    d = tmp_path / "interleave"
    write(d / "a.parquet", rows([0, 2], np.arange(N)))
    write(d / "b.parquet", rows([1, 3], np.arange(N)))
    with pytest.raises(fastcarto.InterleavedEpochsError):
        fdask.compute(str(d), client=client, split="files")
    # compute folds interleaved epochs one epoch at a time, and so does every range.
    same_bits(fdask.compute(str(d), client=client), fastcarto.compute(str(d), progress=False))


def test_a_range_that_interleaves_makes_every_range_fold_by_epoch(tmp_path, client) -> None:
    # Only the examples of the upper half interleave their epochs (3 before 1): compute then
    # folds everything one epoch at a time, and the lower half (whose rows come in reverse
    # epoch order, which one pass also accepts) must be folded the same way to match it.
    low, high = np.arange(N // 2), np.arange(N // 2, N)
    d = tmp_path / "mixed"
    write(d / "a.parquet", pa.concat_tables([rows([2], low), rows([0, 2], high)]))
    write(d / "b.parquet", pa.concat_tables([rows([1], low), rows([1, 3], high)]))
    write(d / "c.parquet", rows([0], low))
    want = fastcarto.compute(str(d), progress=False)
    for partitions in (1, 2, 3):
        same_bits(fdask.compute(str(d), client=client, partitions=partitions), want)


def test_bad_split_options(tmp_path, client) -> None:
    d = by_epoch(tmp_path / "run")
    with pytest.raises(ValueError, match="split"):
        fdask.compute(str(d), client=client, split="rows")  # type: ignore[arg-type]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="partitions"):
            fdask.compute(str(d), client=client, partitions=bad)  # type: ignore[arg-type]
    # More ranges than distinct ids: the split points stop at the ids there are.
    same_bits(
        fdask.compute(str(d), client=client, partitions=10 * N),
        fastcarto.compute(str(d), progress=False),
    )


def test_id_ranges_in_the_engine(tmp_path) -> None:
    from fastcarto import _core

    d = by_epoch(tmp_path / "run")
    names = ("epoch", "id", "label", None)
    files = [(str(p), e) for e, p in enumerate(sorted(d.iterdir()))]
    points = _core.id_split_points(files[:1], kind="logits", columns=names, parts=3)
    # From the first batch (a parquet row group of 97 shuffled ids): about N/3 and 2N/3.
    assert len(points) == 2 and N // 6 < points[0] < N // 2 < points[1] < 5 * N // 6
    # Shards of examples: each file's first batch is its own block of ids, so the points come
    # from all of them and still cut the ids evenly.
    shards = by_example(tmp_path / "shards")
    listed = [(str(p), None) for p in sorted(shards.iterdir())]
    (middle,) = _core.id_split_points(listed, kind="logits", columns=names, parts=2)
    assert N // 4 < middle < 3 * N // 4
    kw: dict[str, Any] = {"kind": "logits", "columns": names, "nan_policy": "raise"}
    state, ids, epochs, n_rows, by_epoch_ = _core.read_keyed_part(
        files, id_range=(points[0], points[1]), **kw
    )
    assert state is not None and state.n_examples == points[1] - points[0]
    assert ids.to_pylist() == list(range(points[0], points[1]))
    assert (epochs, n_rows, by_epoch_) == (list(range(EPOCHS)), EPOCHS * len(ids), False)
    with pytest.raises(ValueError, match="ids are integers but the id range's ends are not"):
        _core.read_keyed_part(files, id_range=("a", None), **kw)
    with pytest.raises(ValueError, match="not below"):
        _core.read_keyed_part(files, id_range=(5, 5), **kw)
    with pytest.raises(ValueError, match="Arrow stream"):
        _core.read_keyed_part(rows([0], np.arange(3)), id_range=(0, None), **kw)
    with pytest.raises(ValueError, match="at least one part"):
        _core.id_split_points(files, kind="logits", columns=names, parts=0)


def test_tables_travel_through_the_scheduler_off_the_clients_machine(tmp_path) -> None:
    from fastcarto.dask import _compute

    d = by_epoch(tmp_path / "run")
    files = _compute._files(str(d), {})
    opts: dict[str, Any] = {
        "kind": None,
        "names": ("epoch", "id", "label", None),
        "nan_policy": "raise",
        "epochs": None,
        "threads": 1,
    }
    part = _compute._read_range(files, None, **opts)
    kw: dict[str, Any] = {"rows": part.rows, "epochs_present": list(part.epochs)}
    kw |= {"require_complete": True, "compat": None, "ddof": 0}
    there = _compute._range_table(part, client_host="another machine", **kw)
    assert isinstance(there, pa.RecordBatch)
    here = _compute._range_table(part, client_host=_compute._host_id(), **kw)
    assert isinstance(here, _compute._Handoff) and os.path.exists(here.path)
    same_bits(_compute._take_handoff(here), there)
    assert not os.path.exists(here.path)
    same_bits(there, fastcarto.compute(str(d), progress=False))


def test_a_failing_range_leaves_no_handed_off_file(tmp_path, client) -> None:
    # The upper range's examples miss an epoch: require_complete fails there, while the lower
    # range hands its table over through a file, which must not be left behind.
    d = tmp_path / "run"
    for e in range(EPOCHS):
        ids = np.arange(N) if e < EPOCHS - 1 else np.arange(N // 3)
        write(d / f"epoch_{e}.parquet", rows([e], ids))
    shm = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    before = set(shm.glob("fastcarto-dask-*"))
    with pytest.raises(ValueError, match="every example must have all of them") as got:
        fdask.compute(str(d), client=client, partitions=2, require_complete=True)
    with pytest.raises(ValueError) as want:
        fastcarto.compute(str(d), progress=False, require_complete=True)
    assert str(got.value) == str(want.value)
    assert set(shm.glob("fastcarto-dask-*")) == before

    # Without require_complete each range's task builds its table as it reads: an upper range
    # that fails (a label out of range) leaves no file of the lower range's table either, and
    # nor does a check on the whole that fails after every range succeeded (epochs=).
    bad = tmp_path / "bad"
    for e in range(EPOCHS):
        table = rows([e], np.arange(N))
        if e == 2:
            label = np.asarray(table["label"]).copy()
            label[-5] = 99
            table = table.set_column(2, "label", pa.array(label))
        write(bad / f"epoch_{e}.parquet", table)
    with pytest.raises(ValueError, match="label 99") as got:
        fdask.compute(str(bad), client=client, partitions=2)
    with pytest.raises(ValueError) as want:
        fastcarto.compute(str(bad), progress=False)
    assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match="epoch") as got:
        fdask.compute(str(d), client=client, partitions=2, epochs=EPOCHS + 2)
    with pytest.raises(ValueError) as want:
        fastcarto.compute(str(d), progress=False, epochs=EPOCHS + 2)
    assert str(got.value) == str(want.value)
    assert set(shm.glob("fastcarto-dask-*")) == before


def test_bad_input_is_a_clear_error(tmp_path, client) -> None:
    with pytest.raises(fastcarto.EmptyInputError):
        fdask.compute([], client=client)
    (tmp_path / "empty").mkdir()
    with pytest.raises(fastcarto.EmptyInputError):
        fdask.compute(str(tmp_path / "empty"), client=client)
    with pytest.raises(ValueError, match="fsspec cannot open"):
        fdask.compute("nosuchscheme://bucket/run", client=client)
    mixed = tmp_path / "mixed"
    write(mixed / "epoch_0.parquet", rows([0], np.arange(10)))
    probs = rows([1], np.arange(10)).drop(["logits"])
    flat = pa.array(np.full(10 * C, 1 / C))
    probs = probs.append_column("probs", pa.FixedSizeListArray.from_arrays(flat, C))
    write(mixed / "epoch_1.parquet", probs)
    with pytest.raises(ValueError, match="same kind"):
        fdask.compute(str(mixed), client=client)
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="npy"):
        fdask.compute(str(tmp_path / "x.npy"), client=client)
    with pytest.raises(ValueError, match="labels"):
        fdask.compute(str(mixed), np.zeros(10), client=client)
    with pytest.raises(ValueError, match="compat"):
        fdask.compute(str(mixed), compat="nope", client=client)
    d = by_epoch(tmp_path / "run")
    with pytest.raises(ValueError, match="first 7 epochs"):
        fdask.compute(str(d), epochs=7, client=client)
    with pytest.raises(fastcarto.EmptyInputError, match="selected epochs"):
        fdask.compute(str(d), epochs=[9], client=client)


def test_memory_urls_through_fsspec(tmp_path, client) -> None:
    fsspec = pytest.importorskip("fsspec")
    d = by_both(tmp_path / "run")
    fs = fsspec.filesystem("memory")
    for p in sorted(d.rglob("*.arrows")):
        fs.pipe(f"/fastcarto-test/run/{p.relative_to(d).as_posix()}", p.read_bytes())
    try:
        got = fdask.compute("memory://fastcarto-test/run", client=client)
        same_bits(got, fastcarto.compute(str(d), progress=False))
        got = fdask.compute(f"file://{d}", client=client)
        same_bits(got, fastcarto.compute(str(d), progress=False))
    finally:
        fs.rm("/fastcarto-test", recursive=True)


def test_dask_dataframe(tmp_path, client) -> None:
    dd = pytest.importorskip("dask.dataframe")

    table = pa.concat_tables([rows([e], np.arange(N)) for e in range(EPOCHS)])
    import pandas as pd

    # Arrow-backed columns: the list column stays a list of floats in every partition.
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    ddf = dd.from_pandas(frame, npartitions=EPOCHS, sort=False)
    got = fdask.compute(ddf, client=client)
    same_bits(got, fastcarto.compute(frame))


def test_accumulators_merged_on_the_cluster(client) -> None:
    labels = np.arange(N) % C

    def shard(rank: int) -> fastcarto.Accumulator:
        acc = fastcarto.Accumulator(n_examples=N, n_classes=C, kind="logits")
        rng = np.random.default_rng(rank)
        ids = np.arange(rank, N, 3)
        for epoch in range(EPOCHS):
            acc.update(rng.normal(size=(len(ids), C)), labels[ids], epoch=epoch, ids=ids)
        return acc

    futures = [client.submit(shard, r, pure=False) for r in range(3)]
    merged = fdask.merge_accumulators(futures, client=client)
    local = [shard(r) for r in range(3)]
    want = local[0]
    for other in local[1:]:
        want.merge(other)
    same_bits(merged.finalize(), want.finalize())
    with pytest.raises(TypeError):
        fdask.merge_accumulators([futures[0], client.submit(lambda: 3)], client=client)
    with pytest.raises(ValueError, match="no accumulators"):
        fdask.merge_accumulators([], client=client)


@pytest.mark.slow
def test_two_processes_and_a_worker_killed_mid_run(tmp_path) -> None:
    """Real worker processes (the Rust pool in forked/spawned workers), one of which dies in the
    middle of the read: Dask runs its tasks again and the table is the same."""
    d = by_both(tmp_path / "run")
    want = fastcarto.compute(str(d), progress=False)
    marker = str(tmp_path / "killed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        same_bits(fdask.compute(str(d), client=c), want)
        # The first read task to run kills its worker process (the marker file remembers it);
        # the nanny starts a new worker and Dask runs the lost tasks again.
        from fastcarto.dask import _compute

        # The task each split submits (pickled by value when it is this test's function).
        for split, task in (("examples", "_read_range_table"), ("files", "_read_part")):
            original = getattr(_compute, task)

            def dying(*args: Any, original: Any = original, **kwargs: Any) -> Any:
                if not os.path.exists(marker):
                    with open(marker, "w") as f:
                        f.write("killed")
                    os._exit(1)
                return original(*args, **kwargs)

            setattr(_compute, task, dying)
            try:
                same_bits(fdask.compute(str(d), client=c, split=split), want)
            finally:
                setattr(_compute, task, original)
            assert os.path.exists(marker)
            os.remove(marker)


def test_cli_map_on_a_scheduler(tmp_path, client) -> None:
    from fastcarto import cli

    d = by_epoch(tmp_path / "run")
    out = tmp_path / "map.parquet"
    assert cli.main(["map", str(d), "--dask", client.scheduler.address, "-o", str(out), "-q"]) == 0
    same_bits(pq.read_table(out), pq.read_table(_written(tmp_path, d)))


def _written(tmp_path: Path, d: Path) -> Path:
    from fastcarto import cli

    out = tmp_path / "local.parquet"
    assert cli.main(["map", str(d), "-o", str(out), "-q"]) == 0
    return out


FORKED_WORKERS = """
import sys
import dask, distributed, fastcarto, fastcarto.dask as fdask
import pyarrow as pa, pyarrow.parquet as pq

run = sys.argv[1]
want = fastcarto.compute(run, progress=False, threads=2)  # starts the engine's pool here
if __name__ == "__main__":
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        got = fdask.compute(run, client=c, threads=2)
    pq.write_table(pa.table(got), "got.parquet")
    pq.write_table(pa.table(want), "want.parquet")
"""


@pytest.mark.slow
def test_forked_workers_after_the_pool_started(tmp_path) -> None:
    """Workers forked from a process whose engine pool already runs (Dask spawns by default;
    fork is its option): each child builds its own pool instead of waiting on the parent's.

    Run in a fresh interpreter: forking the test process itself would also fork whatever
    the other tests left running (torch's and BLAS's thread pools), which is not what this
    checks, and a hang must fail the test rather than the suite."""
    d = by_epoch(tmp_path / "run")
    script = tmp_path / "forked.py"
    script.write_text(FORKED_WORKERS)
    done = subprocess.run(
        [sys.executable, str(script), str(d)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    same_bits(pq.read_table(tmp_path / "got.parquet"), pq.read_table(tmp_path / "want.parquet"))
