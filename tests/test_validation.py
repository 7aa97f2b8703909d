"""One validation path and one list of each thing: the Recorder's checks are the engine's, a
duplicate (epoch, id) is ``EpochOrderError`` on every path, the file suffixes and the file
discovery are the readers', and errors are told apart by class and attributes, not by text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from fastcarto import (
    Accumulator,
    EpochOrderError,
    InterleavedEpochsError,
    InvalidProbabilitiesError,
    NonFiniteError,
    Recorder,
    _core,
    cli,
)
from fastcarto._arguments import argument_error


def long_table(epochs: list[int], ids: list[Any], n_classes: int = 2) -> pa.Table:
    """A long table of logits: row i has epoch ``epochs[i]``, id ``ids[i]``, label 0."""
    rng = np.random.default_rng(len(ids))
    logits = rng.normal(size=(len(ids), n_classes))
    return pa.table(
        {
            "epoch": pa.array(epochs, pa.int64()),
            "id": pa.array(ids),
            "label": pa.array([0] * len(ids), pa.int64()),
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), n_classes),
        }
    )


# --------------------------------------------------------------------------------------------
# the Recorder's checks are the engine's


def _engine_accepts(rows: np.ndarray[Any, Any]) -> bool:
    try:
        fastcarto.compute(rows[None], np.zeros(len(rows), np.int64), kind="probs")
    except InvalidProbabilitiesError:
        return False
    return True


def _recorder_accepts(path: Path, rows: np.ndarray[Any, Any]) -> bool:
    with Recorder(path, kind="probs", mode="overwrite") as rec:
        try:
            rec.record(rows, np.zeros(len(rows), np.int64), epoch=0, ids=np.arange(len(rows)))
        except InvalidProbabilitiesError:
            return False
    return True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_tolerance_is_the_engines(tmp_path: Path, dtype: type) -> None:
    # Rows whose sum lies just inside and just outside the tolerance, in the input's precision.
    cols = 7
    tol = 1e-3 + 4.0 * cols * float(np.finfo(dtype).eps)
    for k, off in enumerate([0.5 * tol, 0.99 * tol, 1.01 * tol, 2 * tol, -0.99 * tol, -1.01 * tol]):
        row = np.full((1, cols), 1.0 / cols, dtype=dtype)
        row[0, 0] += dtype(off)
        engine = _engine_accepts(row)
        assert _recorder_accepts(tmp_path / str(k), row) == engine, (off / tol, engine)
        assert engine == (abs(off) < tol)


def test_recorder_messages_name_epoch_id_and_row(tmp_path: Path) -> None:
    out = np.zeros((3, 2), np.float32)
    out[2, 1] = np.nan
    with Recorder(tmp_path, kind="logits") as rec:
        with pytest.raises(NonFiniteError) as info:
            rec.record(out, [0, 1, 0], epoch=4, ids=["a", "b", "c"])
    message = str(info.value)
    assert 'at epoch 4, example with id "c" (row 2 of this batch)' in message
    # The Recorder has no nan_policy: no hint to pass one.
    assert "nan_policy" not in message and not hasattr(info.value, "argument")


def test_engine_hints_carry_their_argument() -> None:
    x = np.zeros((1, 2, 2))
    x[0, 1, 0] = np.inf
    with pytest.raises(NonFiniteError) as info:
        fastcarto.compute(x, [0, 1], kind="logits")
    err: Any = info.value
    assert str(err).endswith('; pass nan_policy="omit" to skip such observations')
    assert (err.argument, err.value) == ("nan_policy", "omit")
    assert err.template.format(arg="X") == str(err).replace('nan_policy="omit"', "X")
    with pytest.raises(InvalidProbabilitiesError) as info:
        fastcarto.compute(np.full((1, 2, 2), 2.0), [0, 1], kind="probs")
    assert str(info.value).endswith('if these are logits, pass kind="logits"')


# --------------------------------------------------------------------------------------------
# a duplicate (epoch, id) is EpochOrderError everywhere


def test_duplicate_in_one_accumulator_update() -> None:
    acc = Accumulator(5, 2, kind="logits")
    with pytest.raises(EpochOrderError, match="example 3 already has an observation for epoch 2"):
        acc.update(np.zeros((3, 2)), np.array([0, 1, 0]), epoch=2, ids=np.array([3, 1, 3]))
    assert acc.last_epoch is None


def test_duplicate_across_accumulator_updates() -> None:
    acc = Accumulator(5, 2, kind="logits")
    acc.update(np.zeros((2, 2)), np.array([0, 1]), epoch=0, ids=np.array([1, 2]))
    with pytest.raises(EpochOrderError, match="example 2 already has an observation for epoch 0"):
        acc.update(np.zeros((1, 2)), np.array([1]), epoch=0, ids=np.array([2]))


@pytest.mark.parametrize("n_examples", [None, 10])
def test_duplicate_in_recorder_batches(tmp_path: Path, n_examples: int | None) -> None:
    # Checked at each call (the default checks a block of rows at a time: test_recorder.py).
    with Recorder(tmp_path, kind="logits", n_examples=n_examples, eager_checks=True) as rec:
        with pytest.raises(EpochOrderError, match=r"rows 0 and 2 of this batch.*epoch 1"):
            rec.record(np.zeros((3, 2)), np.array([0, 1, 0]), epoch=1, ids=np.array([4, 5, 4]))
        rec.record(np.zeros((2, 2)), np.array([0, 1]), epoch=1, ids=np.array([4, 5]))
        with pytest.raises(EpochOrderError, match=r"id 5 \(row 0 .* for epoch 1"):
            rec.record(np.zeros((1, 2)), np.array([1]), epoch=1, ids=np.array([5]))
        rec.record(np.zeros((1, 2)), np.array([1]), epoch=2, ids=np.array([5]))  # another epoch
    assert fastcarto.compute(tmp_path)["n_epochs"].tolist() == [1, 2]


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_duplicate_rows_in_a_file(tmp_path: Path, suffix: str) -> None:
    table = long_table([0, 0, 1, 0], [7, 8, 7, 7])
    path = tmp_path / f"run{suffix}"
    if suffix == ".parquet":
        pq.write_table(table, path)
    else:
        feather.write_feather(table, path)
    with pytest.raises(EpochOrderError, match="epoch 0"):
        fastcarto.compute(path)
    with pytest.raises(EpochOrderError, match="epoch 0"):
        fastcarto.compute(table)


def test_duplicate_rows_in_trajectories(tmp_path: Path) -> None:
    table = long_table([0, 1, 1], [7, 7, 7])
    with pytest.raises(EpochOrderError, match=r"id 7 has more than one row for epoch 1"):
        fastcarto.trajectories([7], table, kind="logits")


# --------------------------------------------------------------------------------------------
# structured errors


def test_interleaved_epochs_have_their_own_class() -> None:
    assert issubclass(InterleavedEpochsError, EpochOrderError)
    assert fastcarto.InterleavedEpochsError is _core.InterleavedEpochsError
    table = long_table([0, 2, 1], [1, 1, 1])
    batches = [table.slice(i, 1).to_batches()[0] for i in range(3)]
    stream = pa.RecordBatchReader.from_batches(table.schema, batches)
    with pytest.raises(InterleavedEpochsError, match="interleave"):
        fastcarto.compute(stream)
    # In memory, the table is read again in epoch order; a duplicate is still an error.
    assert fastcarto.compute(table)["n_epochs"].tolist() == [3]
    dup = long_table([0, 2, 0], [1, 1, 1])
    with pytest.raises(EpochOrderError) as info:
        fastcarto.compute(dup)
    assert not isinstance(info.value, InterleavedEpochsError)


def test_cli_writes_its_own_options() -> None:
    err = argument_error(ValueError, "{arg} selects no epochs", "epochs", 0)
    assert str(err) == "epochs=0 selects no epochs"
    assert cli._message(err) == "--epochs 0 selects no epochs"
    empty = argument_error(ValueError, "the selection {value} is empty", "epochs", slice(9, None))
    assert str(empty) == "the selection slice(9, None, None) is empty"
    assert cli._message(empty) == "the selection '9:' is empty"
    listed = argument_error(ValueError, "{arg} is bad", "epochs", [0, 2])
    assert cli._message(listed) == "--epochs 0,2 is bad"
    # An argument the commands do not take keeps the API's words.
    other = argument_error(ValueError, "{arg} is unknown", "columns", {"id": "x"})
    assert cli._message(other) == str(other) == "columns={'id': 'x'} is unknown"
    # Braces in the engine's neutral text survive the template.
    x = np.zeros((1, 2, 2))
    x[0, 0, 1] = np.nan
    with pytest.raises(NonFiniteError) as info:
        fastcarto.compute(x, [0, 1], kind="logits")
    assert cli._message(info.value).endswith("; pass --nan-policy omit to skip such observations")


def test_cli_epochs_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = long_table([0, 1], [1, 1])
    pq.write_table(table, tmp_path / "t.parquet")
    code = cli.main(["map", str(tmp_path / "t.parquet"), "--epochs", "0", "-o", "-"])
    assert code == 2
    assert "--epochs" in capsys.readouterr().err


def test_cli_npy_directory_without_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run").mkdir()
    for e in range(2):
        np.save(tmp_path / "run" / f"epoch_{e}.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "run" / "labels.npy", np.array([0, 1, 0]))
    code = cli.main(["map", str(tmp_path / "run"), "-o", "-"])
    err = capsys.readouterr().err
    assert code == 2 and "need --kind (logits or probs)" in err and "kind=" not in err
    assert cli.main(["map", str(tmp_path / "run"), "--kind", "logits", "-q", "-o", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # header and three examples


# --------------------------------------------------------------------------------------------
# one list of suffixes, one discovery


def test_suffixes_come_from_the_core() -> None:
    assert set(_core.TABLE_SUFFIXES) == {".arrow", ".arrows", ".feather", ".ipc", ".parquet", ".pq"}
    assert set(_core.TABLE_SUFFIXES) < set(_core.DATA_SUFFIXES)
    assert {".jsonl", ".npy"} < set(_core.DATA_SUFFIXES)


@pytest.mark.parametrize("suffix", [".pq", ".ipc", ".PARQUET"])
def test_every_suffix_reads_and_traces(tmp_path: Path, suffix: str) -> None:
    table = long_table([0, 0, 1, 1], [1, 2, 1, 2])
    path = tmp_path / f"run{suffix}"
    if suffix.lower() in (".pq", ".parquet"):
        pq.write_table(table, path)
    else:
        feather.write_feather(table, path)
    dm = fastcarto.compute(path)
    frame = fastcarto.trajectories([1, 2], path, kind="logits")
    assert frame.shape == (2, 2)
    np.testing.assert_allclose(frame.mean().to_numpy(), dm.to_pandas()["confidence"].to_numpy())


def test_trajectories_discover_as_the_readers_do(tmp_path: Path) -> None:
    table = long_table([0, 0, 1, 1], [1, 2, 1, 2])
    (tmp_path / "run").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "run" / "a.pq")
    feather.write_feather(table.slice(2), tmp_path / "run" / "b.ipc")
    (tmp_path / "run" / "_SUCCESS.parquet").write_bytes(b"skipped: names starting with _")
    for source in [tmp_path / "run", str(tmp_path / "run" / "[ab].*")]:
        frame = fastcarto.trajectories([1, 2], source, kind="logits")
        assert frame.index.tolist() == [0, 1], source
    np.save(tmp_path / "arrays.npy", np.zeros((2, 2, 2)))
    (tmp_path / "npys").mkdir()
    np.save(tmp_path / "npys" / "epoch_0.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="trajectories read long tables"):
        fastcarto.trajectories([1], tmp_path / "npys", kind="logits")
    with pytest.raises(fastcarto.EmptyInputError, match="no data files"):
        fastcarto.trajectories([1], str(tmp_path / "none*.pq"), kind="logits")


@pytest.mark.parametrize("name", ["other.pq", "other.ipc", "other.jsonl"])
def test_recorder_refuses_what_compute_would_read(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileExistsError, match=name):
        Recorder(tmp_path, kind="logits")
