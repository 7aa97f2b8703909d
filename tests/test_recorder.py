"""`fastcarto.Recorder`: what is written is what was recorded, segments are always complete (even
when the training process is SIGKILLed), bad input is refused before anything is kept, and the
live accumulator agrees with `fastcarto.compute`.

Recordings are read back row by row with pyarrow in :func:`read_back` (an independent reader,
for checking what is on disk) and mapped with ``fastcarto.compute(directory)`` in
:func:`datamap_of`; the dense path on the same rows (:func:`dense_map`) is the reference.
"""

from __future__ import annotations

import os
import pickle
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import recorder_child
from fastcarto import (
    EpochOrderError,
    InvalidProbabilitiesError,
    LabelError,
    NonFiniteError,
    Recorder,
)

SEGMENT = re.compile(r"^epoch-(\d{6})-(?:shard-\d{3}-)?part-(\d{5})\.arrows$")


# --------------------------------------------------------------------------------------------
# reading a recording back


def read_back(path: Path) -> pa.Table:
    """Every segment in ``path`` as one long table, as `fastcarto.compute(path)` reads it: files
    whose names start with "." are ignored."""
    tables = []
    for f in sorted(path.iterdir()):
        if f.name.startswith("."):
            continue
        with pa.ipc.open_stream(f) as reader:
            tables.append(reader.read_all())
    return pa.concat_tables(tables)


def to_dense(table: pa.Table, kind: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A long table of ids 0..N-1 and consecutive epochs as a dense (E, N, C) array, and labels;
    asserts every (epoch, id) is there exactly once and labels never change."""
    epochs = table.column("epoch").to_numpy()
    ids = table.column("id").to_numpy()
    labels = table.column("label").to_numpy()
    n_classes = table.schema.field(kind).type.list_size
    outputs = table.column(kind).combine_chunks().flatten().to_numpy()
    outputs = outputs.reshape(-1, n_classes)
    e0, n = int(epochs.min()), int(ids.max()) + 1
    n_epochs = int(epochs.max()) - e0 + 1
    dense = np.full((n_epochs, n, n_classes), np.nan, dtype=outputs.dtype)
    count = np.zeros((n_epochs, n), dtype=np.int64)
    np.add.at(count, (epochs - e0, ids), 1)
    assert (count == 1).all(), "every (epoch, id) exactly once"
    dense[epochs - e0, ids] = outputs
    lab = np.full(n, -1, dtype=np.int64)
    lab[ids] = labels
    assert (lab[ids] == labels).all(), "labels never change"
    return dense, lab


def datamap_of(path: Path, kind: str = "logits") -> pd.DataFrame:
    """The metrics of the recording in ``path``, as ``fastcarto.compute`` reads the directory;
    checked against the dense path on the rows pyarrow reads back."""
    got = fastcarto.compute(path, progress=False).to_pandas()
    assert_maps_equal(got, dense_map(read_back(path), kind))
    return got


def dense_map(table: pa.Table, kind: str = "logits") -> pd.DataFrame:
    """The dense path on a long table of ids 0..N-1 in which examples may miss some epochs
    (NaN there, ``nan_policy="omit"``), over the epoch numbers present."""
    epochs = table.column("epoch").to_numpy()
    ids = table.column("id").to_numpy()
    n_classes = table.schema.field(kind).type.list_size
    outputs = table.column(kind).combine_chunks().flatten().to_numpy().reshape(-1, n_classes)
    dense = np.full((epochs.max() + 1, ids.max() + 1, n_classes), np.nan, dtype=outputs.dtype)
    dense[epochs, ids] = outputs
    labels = np.zeros(ids.max() + 1, dtype=np.int64)
    labels[ids] = table.column("label").to_numpy()
    present = sorted(set(epochs.tolist()))
    return fastcarto.compute(
        dense, labels, kind=kind, epochs=present, nan_policy="omit"
    ).to_pandas()


def sorted_rows(table: pa.Table, kind: str) -> pd.DataFrame:
    """A long table as a DataFrame sorted by (epoch, id), outputs as a tuple per row."""
    df = pd.DataFrame(
        {
            "epoch": table.column("epoch").to_numpy(),
            "id": table.column("id").to_pylist(),
            "label": table.column("label").to_numpy(),
            "out": [tuple(v) for v in table.column(kind).to_pylist()],
        }
    )
    return df.sort_values(["epoch", "id"], kind="stable").reset_index(drop=True)


def assert_maps_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)


def minibatches(rng: np.random.Generator, n: int) -> Iterator[np.ndarray[Any, Any]]:
    """A random permutation of ``0..n`` cut into minibatches of random sizes (some empty)."""
    order = rng.permutation(n)
    cuts = np.sort(rng.integers(0, n + 1, size=7))
    yield from np.split(order, cuts)


# --------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("id_kind", ["int", "string"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("limit", [{"buffer_rows": 23}, {"buffer_bytes": 1500}])
def test_round_trip(tmp_path: Path, id_kind: str, dtype: type, limit: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    n, c, n_epochs = 97, 4, 4
    labels = rng.integers(0, c, size=n)
    names = np.array([f"ex-{i:03d}-é" for i in range(n)], dtype=object)
    expected = []
    with Recorder(tmp_path / "run", kind="logits", **limit) as rec:
        for epoch in range(n_epochs):
            for idx in minibatches(rng, n):
                out = rng.normal(size=(len(idx), c)).astype(dtype)
                ids = idx if id_kind == "int" else names[idx]
                rec.record(out, labels[idx], epoch=epoch, ids=ids)
                expected += [
                    (epoch, i, labels[j], tuple(o))
                    for i, j, o in zip(ids, idx, out.tolist(), strict=True)
                ]
            rec.end_epoch(epoch)
        assert rec.rows_buffered == 0
    assert rec.rows_written == n * n_epochs
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == sorted(p.name for p in rec.segments)
    assert all(SEGMENT.match(f) for f in files)
    per_epoch = [sum(f.startswith(f"epoch-{e:06d}-") for f in files) for e in range(n_epochs)]
    assert min(per_epoch) >= 3, per_epoch

    value = pa.float32() if dtype == np.float32 else pa.float64()
    expected_schema = pa.schema(
        [
            pa.field("epoch", pa.int64(), nullable=False),
            pa.field("id", pa.int64() if id_kind == "int" else pa.string(), nullable=False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field("logits", pa.list_(value, c), nullable=False),
        ],
        metadata={"fastcarto.format": "long-table/1", "fastcarto.kind": "logits"},
    )
    for seg in rec.segments:
        with pa.ipc.open_stream(seg) as reader:
            assert reader.schema.equals(expected_schema, check_metadata=True)
            part = reader.read_all()
        epoch = int(SEGMENT.match(seg.name).group(1))
        assert set(part.column("epoch").to_pylist()) == {epoch}, "one epoch per segment"
        if "buffer_rows" in limit:
            assert part.num_rows <= limit["buffer_rows"]

    got = sorted_rows(read_back(tmp_path / "run"), "logits")
    want = pd.DataFrame(expected, columns=["epoch", "id", "label", "out"])
    want = want.sort_values(["epoch", "id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_values_are_copied(tmp_path: Path) -> None:
    out = np.ones((3, 2), dtype=np.float32)
    ids, labels = np.array([0, 1, 2]), np.array([0, 1, 0])
    with Recorder(tmp_path, kind="logits", mode="overwrite") as rec:
        rec.record(out, labels, epoch=0, ids=ids)
        out[:] = 7.0  # a training loop reusing its buffers
        ids[:] = [5, 6, 7]
        labels[:] = 1
    table = read_back(tmp_path)
    assert table.column("id").to_pylist() == [0, 1, 2]
    assert table.column("label").to_pylist() == [0, 1, 0]
    assert table.column("logits").to_pylist() == [[1.0, 1.0]] * 3


def test_large_call_is_split_and_published_before_returning(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    out = rng.normal(size=(1000, 3))
    with Recorder(tmp_path / "r", kind="logits", buffer_rows=300) as rec:
        rec.record(out, rng.integers(0, 3, size=1000), epoch=2, ids=np.arange(1000))
        assert rec.rows_written == 900 and rec.rows_buffered == 100
        assert [p.name for p in rec.segments] == [
            f"epoch-000002-part-{i:05d}.arrows" for i in range(3)
        ]
        # A new epoch publishes the previous one's rows.
        rec.record(out[:2], np.array([0, 1]), epoch=3, ids=np.arange(2))
        assert rec.rows_written == 1000 and rec.segments[-1].name.startswith("epoch-000002-")
    assert rec.segments[-1].name == "epoch-000003-part-00000.arrows"
    table = read_back(tmp_path / "r")
    assert table.num_rows == 1002
    first = table.filter(pa.compute.equal(table.column("epoch"), 2))
    np.testing.assert_array_equal(
        np.stack(first.column("logits").to_numpy(zero_copy_only=False)), out
    )


def test_float_conversions(tmp_path: Path) -> None:
    ids, labels = np.arange(2), np.array([0, 1])
    with Recorder(tmp_path / "a", kind="logits") as rec:
        rec.record(np.ones((2, 2), dtype=np.float16), labels, epoch=0, ids=ids)  # widened
        rec.record(
            np.ones((2, 2), dtype=np.float64), labels, epoch=1, ids=ids
        )  # to the first call's
    assert rec.float_dtype == np.float32
    assert read_back(tmp_path / "a").schema.field("logits").type.value_type == pa.float32()
    with Recorder(tmp_path / "b", kind="logits", float_dtype="float64") as rec:
        rec.record(np.ones((2, 2), dtype=np.float32), labels, epoch=0, ids=ids)
    assert read_back(tmp_path / "b").schema.field("logits").type.value_type == pa.float64()


def test_binary_single_column_and_probs(tmp_path: Path) -> None:
    p = np.array([0.9, 0.2, 0.6])
    with Recorder(tmp_path / "bin", kind="probs", n_classes=1) as rec:
        rec.record(p, np.array([1, 0, 1]), epoch=0, ids=np.arange(3))  # 1-D: one column
    table = read_back(tmp_path / "bin")
    assert table.schema.field("probs").type == pa.list_(pa.float64(), 1)
    assert table.schema.metadata[b"fastcarto.kind"] == b"probs"
    probs = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    with Recorder(tmp_path / "p", kind="probs") as rec:
        rec.record(probs, [1, 0], epoch=0, ids=["a", "b"])
        rec.record(probs, [1, 0], epoch=1, ids=np.array(["a", "b"]))  # numpy unicode
        rec.record(probs, pa.array([0, 1]), epoch=2, ids=pa.array(["b", "a"]))  # Arrow arrays
        rec.record(np.empty((0, 2)), [], epoch=3, ids=[])  # an empty batch records nothing
    table = read_back(tmp_path / "p")
    assert table.column("id").to_pylist() == ["a", "b", "a", "b", "b", "a"]
    assert table.column("label").to_pylist() == [1, 0, 1, 0, 0, 1]


def test_options_compression_shard_no_fsync(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    out = rng.normal(size=(50, 3)).astype(np.float32)
    lab = rng.integers(0, 3, size=50)
    for shard in (0, 1):
        with Recorder(tmp_path, kind="logits", shard=shard, compression="zstd", fsync=False) as rec:
            rec.record(
                out[shard * 25 :][:25],
                lab[:25],
                epoch=0,
                ids=np.arange(shard * 25, shard * 25 + 25),
            )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "epoch-000000-shard-000-part-00000.arrows",
        "epoch-000000-shard-001-part-00000.arrows",
    ]
    table = read_back(tmp_path)
    assert sorted(table.column("id").to_pylist()) == list(range(50))
    with pytest.raises(FileExistsError, match="shard"):
        Recorder(tmp_path, kind="logits", shard=0)
    with pytest.raises(FileExistsError, match="did not write"):
        Recorder(tmp_path, kind="logits")  # an unsharded run among sharded segments


def test_exception_in_with_block_keeps_recorded_rows(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="diverged"), Recorder(tmp_path, kind="logits") as rec:
        rec.record(np.zeros((2, 2)), np.array([0, 1]), epoch=0, ids=np.arange(2))
        raise RuntimeError("training diverged")
    assert rec.closed and read_back(tmp_path).num_rows == 2


def test_repr_and_properties(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "r", kind="logits", buffer_rows=4)
    assert rec.n_classes is None and rec.ids is None and rec.accumulator is None
    assert (
        repr(rec) == f"Recorder({str(tmp_path / 'r')!r}, logits; open, 0 segments, 0 rows written)"
    )
    rec.record(
        np.zeros((6, 3), dtype=np.float32), np.zeros(6, dtype=int), epoch=0, ids=np.arange(6)
    )
    assert rec.path == tmp_path / "r" and rec.kind == "logits"
    assert (rec.n_classes, rec.ids, rec.rows_written, rec.rows_buffered) == (3, "int64", 4, 2)
    assert repr(rec).endswith("3 classes, int64 ids; open, 1 segment, 4 rows written, 2 buffered)")
    rec.close()
    rec.close()  # idempotent
    assert repr(rec).endswith("closed, 2 segments, 6 rows written)")


# --------------------------------------------------------------------------------------------
# crash safety: a real training process killed with SIGKILL


def _run_child_and_kill(directory: Path, wait_for_epochs: int, delay: float) -> list[int]:
    """Starts the recording child, waits until it reports ``wait_for_epochs`` flushed epochs,
    sleeps ``delay`` seconds, SIGKILLs it; returns the epochs it reported as flushed."""
    env = dict(os.environ)
    # The child imports the same fastcarto as this process, wherever that was found.
    package_root = str(Path(fastcarto.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    script = Path(recorder_child.__file__).resolve()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    reported: list[int] = []
    buffer = b""
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while len(reported) < wait_for_epochs:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the child did not report epochs in time"
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:  # the child exited: show why
                proc.wait(timeout=10)
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"the child exited early ({proc.returncode}):\n{stderr}")
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            reported += [int(line.split()[1]) for line in lines if line.startswith(b"epoch ")]
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # Epochs reported between the last read and the kill were flushed too.
        assert proc.stdout is not None
        rest = buffer + proc.stdout.read()
        reported += [
            int(line.split()[1]) for line in rest.split(b"\n") if line.startswith(b"epoch ")
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return reported


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("delay", [0.0, 0.013])
def test_sigkill_leaves_only_complete_segments(tmp_path: Path, delay: float) -> None:
    directory = tmp_path / "run"
    reported = _run_child_and_kill(directory, wait_for_epochs=3, delay=delay)
    assert reported == list(range(len(reported))) and len(reported) >= 3

    n, c = recorder_child.N_EXAMPLES, recorder_child.N_CLASSES
    labels = recorder_child.labels()
    present: dict[int, list[pa.Table]] = {}
    for f in sorted(directory.iterdir()):
        if f.name.startswith("."):
            # At most the one segment being written when the process died.
            assert re.fullmatch(r"\.epoch-\d{6}-part-\d{5}\.arrows\.tmp", f.name), f.name
            continue
        m = SEGMENT.match(f.name)
        assert m, f.name
        with pa.ipc.open_stream(f) as reader:  # complete: the end-of-stream marker is there
            table = reader.read_all()
        assert 0 < table.num_rows <= recorder_child.BUFFER_ROWS
        present.setdefault(int(m.group(1)), []).append(table)
    assert len([f for f in directory.iterdir() if f.name.startswith(".")]) <= 1

    # Every row on disk is exactly what the child recorded; reported epochs are all there.
    for epoch, tables in present.items():
        table = pa.concat_tables(tables)
        ids = table.column("id").to_numpy()
        assert len(np.unique(ids)) == len(ids)
        _, logits = recorder_child.epoch_data(epoch)
        np.testing.assert_array_equal(
            table.column("logits").combine_chunks().flatten().to_numpy().reshape(-1, c),
            logits[ids],
        )
        np.testing.assert_array_equal(table.column("label").to_numpy(), labels[ids])
        if epoch in reported:
            assert len(ids) == n
    assert set(reported) <= set(present) <= set(range(max(reported) + 2))

    # fastcarto.compute reads the killed run's directory as it is: every published segment,
    # the partly flushed epoch included, and not the unpublished ".tmp" one.
    on_disk = pa.concat_tables([t for tables in present.values() for t in tables])
    got = fastcarto.compute(directory, progress=False).to_pandas()
    assert got["id"].tolist() == list(range(n))
    assert got["n_epochs"].sum() == on_disk.num_rows
    assert_maps_equal(got, dense_map(on_disk))
    assert_maps_equal(
        fastcarto.compute(directory, epochs=reported).to_pandas(),
        fastcarto.compute(
            np.stack([recorder_child.epoch_data(e)[1] for e in reported]), labels, kind="logits"
        ).to_pandas(),
    )

    # The metrics of the flushed epochs match those of the outputs the child computed.
    complete = pa.concat_tables([t for e in reported for t in present[e]])
    dense, lab = to_dense(complete, "logits")
    reference = np.stack([recorder_child.epoch_data(e)[1] for e in reported])
    np.testing.assert_array_equal(lab, labels)
    assert_maps_equal(
        fastcarto.compute(dense, lab, kind="logits").to_pandas(),
        fastcarto.compute(reference, labels, kind="logits").to_pandas(),
    )

    # The run can be resumed from its last complete epoch.
    resume = max(reported) + 1
    with Recorder(directory, kind="logits", mode="append", resume_epoch=resume) as rec:
        order, logits = recorder_child.epoch_data(resume)
        rec.record(logits[order], labels[order], epoch=resume, ids=order)
    assert not [f for f in directory.iterdir() if f.name.startswith(".")]
    reference = np.stack([recorder_child.epoch_data(e)[1] for e in range(resume + 1)])
    assert_maps_equal(
        datamap_of(directory), fastcarto.compute(reference, labels, kind="logits").to_pandas()
    )


# --------------------------------------------------------------------------------------------
# tensors without their framework


class FakeTensor:
    """Speaks DLPack only, by delegating to a numpy array (as a CPU torch/jax tensor would)."""

    def __init__(self, array: np.ndarray[Any, Any], device: tuple[int, int] = (1, 0)) -> None:
        self._array = array
        self._device = device

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._device


class ArrayOnly:
    """Speaks ``__array__`` only (as a TensorFlow eager tensor)."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self._array = array

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray[Any, Any]:
        return self._array if dtype is None else self._array.astype(dtype)


def test_tensors_through_dlpack_and_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    out = rng.normal(size=(5, 3)).astype(np.float32)
    lab = np.array([0, 1, 2, 1, 0])
    with Recorder(tmp_path, kind="logits") as rec:
        rec.record(FakeTensor(out), FakeTensor(lab), epoch=0, ids=FakeTensor(np.arange(5)))
        rec.record(ArrayOnly(out), ArrayOnly(lab), epoch=1, ids=ArrayOnly(np.arange(5)))
    table = read_back(tmp_path)
    assert table.column("id").to_pylist() == [0, 1, 2, 3, 4] * 2
    assert table.column("label").to_pylist() == lab.tolist() * 2
    np.testing.assert_array_equal(
        table.column("logits").combine_chunks().flatten().to_numpy().reshape(10, 3),
        np.vstack([out, out]),
    )


def test_gpu_tensor_is_refused_with_advice(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, kind="logits")
    gpu = FakeTensor(np.zeros((2, 3), dtype=np.float32), device=(2, 0))
    with pytest.raises(TypeError, match=r"outputs live on a CUDA device.*\.cpu\(\)"):
        rec.record(gpu, np.array([0, 1]), epoch=0, ids=np.arange(2))
    with pytest.raises(TypeError, match=r"labels live on a CUDA device"):
        rec.record(
            np.zeros((2, 3)), FakeTensor(np.array([0, 1]), (2, 0)), epoch=0, ids=np.arange(2)
        )
    rec.close()
    assert rec.rows_written == 0 and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# bad input: refused before anything is kept

IDS, OUT, LAB = np.arange(4), np.zeros((4, 3), dtype=np.float32), np.array([0, 1, 2, 0])


def with_value(array: np.ndarray[Any, Any], index: Any, value: Any) -> np.ndarray[Any, Any]:
    copy = array.copy()
    copy[index] = value
    return copy


# (case, (epoch, ids, outputs, labels), exception, message)
BAD_CALLS: list[tuple[str, tuple[Any, ...], type[BaseException], str]] = [
    ("epoch negative", (-1, IDS, OUT, LAB), ValueError, "epoch must be a non-negative"),
    ("epoch float", (1.0, IDS, OUT, LAB), ValueError, "epoch must be a non-negative"),
    ("outputs 1-D", (0, IDS, OUT[:, 0], LAB), ValueError, r"shape \(rows, classes\).*n_classes=1"),
    ("outputs 3-D", (0, IDS, OUT[None], LAB), ValueError, r"shape \(rows, classes\)"),
    ("outputs int", (0, IDS, OUT.astype(int), LAB), TypeError, "float32 or float64"),
    ("outputs a path", (0, IDS, "x.npy", LAB), TypeError, "expected an array"),
    ("classes change", (0, IDS, np.zeros((4, 2)), LAB % 2), ValueError, "cannot change"),
    ("nan", (0, IDS, with_value(OUT, (2, 1), np.nan), LAB), NonFiniteError, r"0, .*id 2 \(row 2"),
    ("inf", (0, IDS, with_value(OUT, (3, 0), np.inf), LAB), NonFiniteError, r"id 3 \(row 3 [^;]*$"),
    ("label too big", (0, IDS, OUT, with_value(LAB, 1, 3)), LabelError, r"label 3 of .*\(row 1 "),
    ("label negative", (0, IDS, OUT, with_value(LAB, 0, -100)), LabelError, "label -100"),
    ("labels float", (0, IDS, OUT, LAB.astype(float)), TypeError, "labels must be integers"),
    ("labels short", (0, IDS, OUT, LAB[:3]), ValueError, r"labels must have shape \(rows,\)"),
    ("labels none", (0, IDS, OUT, None), ValueError, "labels are required"),
    ("multilabel", (0, IDS, OUT, np.zeros((4, 3), dtype=int)), NotImplementedError, "multi-label"),
    ("ids float", (0, IDS.astype(float), OUT, LAB), TypeError, "non-integer"),
    ("ids short", (0, IDS[:3], OUT, LAB), ValueError, r"ids must have shape \(rows,\)"),
    ("ids bool", (0, IDS > 1, OUT, LAB), TypeError, "integers or strings"),
    ("ids mixed", (0, np.array([1, "a", 2, 3], dtype=object), OUT, LAB), TypeError, "strings"),
    ("ids mixed list", (0, [1, "a", 2, 3], OUT, LAB), TypeError, "all integers or all strings"),
    ("ids none", (0, ["a", None, "b", "c"], OUT, LAB), (TypeError, ValueError), "None|null|str"),
    ("ids change type", (0, ["a", "b", "c", "d"], OUT, LAB), TypeError, "cannot change"),
    (
        "id twice in batch",
        (0, np.array([0, 1, 1, 2]), OUT, LAB),
        EpochOrderError,
        r"id 1 \(rows 1 and 2 of this batch\) already has an observation for epoch 0",
    ),
    (
        "id twice in epoch",
        (0, np.array([7, 8, 9, 10]), OUT, LAB),
        EpochOrderError,
        r"id 7 \(row 0 of this batch, recorded before in this epoch\)",
    ),
    (
        "uint64 too big",
        (0, np.array([2**63, 1, 2, 3], dtype=np.uint64), OUT, LAB),
        ValueError,
        "int64",
    ),
]


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "block"])
@pytest.mark.parametrize(
    ("case", "args", "exc", "message"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
def test_bad_record_calls(
    tmp_path: Path,
    case: str,
    args: tuple[Any, ...],
    exc: type[BaseException],
    message: str,
    eager: bool,
) -> None:
    with Recorder(tmp_path / "r", kind="logits", eager_checks=eager) as rec:
        first = np.array([5, 6, 7, 0])
        rec.record(OUT, LAB, epoch=0, ids=first)  # fixes 3 classes, int ids, float32
        rec.record(OUT[:1], LAB[:1], epoch=0, ids=np.array([9]))
        kept = rec.rows_buffered + rec.rows_written
        before = (rec.rows_buffered, rec.rows_written)
        epoch, ids, outputs, labels = args
        try:
            rec.record(outputs, labels, epoch=epoch, ids=ids)
        except exc as raised:  # at the call: always with eager_checks, else shapes and types
            assert re.search(message, str(raised)), str(raised)
            assert "record call" not in str(raised)
            assert (rec.rows_buffered, rec.rows_written) == before, "nothing was kept"
        else:
            assert not eager, "eager checks raise at the call"
            # Checked with its block: the error names the batch, the others are kept.
            with pytest.raises(exc) as info:
                rec.flush()
            assert re.search(message, str(info.value)), str(info.value)
            assert "in the batch of record call 2 of epoch 0" in str(info.value)
            assert (rec.rows_buffered, rec.rows_written) == (0, kept)
        rec.record(OUT, LAB, epoch=1, ids=IDS)  # still usable
    assert read_back(tmp_path / "r").num_rows == 9


def test_block_checks_keep_the_good_batches_and_name_the_bad_one(tmp_path: Path) -> None:
    """A bad batch among good ones in one block: the error comes at end_epoch, names the first
    bad batch (its call number in the epoch), every good batch is written once, and the
    recording equals the eager one of the good batches."""
    rng = np.random.default_rng(7)
    n, batch, c = 600, 20, 4
    labels = rng.integers(0, c, size=n)
    bad = {3: "nan", 11: "dup"}  # call number -> what is wrong
    good_rows: list[tuple[int, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
    with Recorder(tmp_path / "r", kind="logits", n_examples=n, accumulator=True) as rec:
        for epoch in range(2):
            order = rng.permutation(n)
            for call, start in enumerate(range(0, n, batch)):
                idx = order[start : start + batch]
                out = rng.normal(size=(len(idx), c)).astype(np.float32)
                if epoch == 1 and bad.get(call) == "nan":
                    out[5, 2] = np.nan
                elif epoch == 1 and bad.get(call) == "dup":
                    idx = np.concatenate([idx[:-1], order[:1]])  # the epoch's first id again
                else:
                    good_rows.append((epoch, idx, out))
                rec.record(torch_like(out), labels[idx], epoch=epoch, ids=idx)
            if epoch == 0:
                rec.end_epoch(epoch)
                continue
            with pytest.raises(NonFiniteError) as info:
                rec.end_epoch(epoch)
            assert "in the batch of record call 3 of epoch 1" in str(info.value)
            assert rec.rows_buffered == 0  # the good rows were published anyway
        live = rec.datamap().to_pandas()
    table = read_back(tmp_path / "r")
    assert table.num_rows == sum(len(i) for _, i, _ in good_rows)
    with Recorder(tmp_path / "eager", kind="logits", eager_checks=True) as ref:
        for epoch, idx, out in good_rows:
            ref.record(out, labels[idx], epoch=epoch, ids=idx)
    assert read_back(tmp_path / "eager").equals(table)
    want = fastcarto.compute(tmp_path / "eager").to_pandas()
    assert_maps_equal(live, want)


def torch_like(array: np.ndarray[Any, Any]) -> Any:
    """``array`` as a CPU torch tensor when torch is installed (the fast path reads it)."""
    try:
        import torch
    except ImportError:
        return array
    return torch.from_numpy(array)


def test_record_in_the_old_positional_order_is_a_clear_type_error(tmp_path: Path) -> None:
    with Recorder(tmp_path / "r", kind="logits") as rec:
        with pytest.raises(
            TypeError, match=r"rec\.record\(outputs, labels, epoch=epoch, ids=ids\)"
        ):
            rec.record(0, IDS, OUT, LAB)
        with pytest.raises(TypeError, match="ids= is missing"):
            rec.record(OUT, LAB, epoch=0)
        with pytest.raises(TypeError, match="epoch= is missing"):
            rec.record(OUT, LAB, ids=IDS)
        assert (rec.rows_buffered, rec.rows_written) == (0, 0)
        rec.record(OUT, LAB, epoch=0, ids=IDS)
    assert read_back(tmp_path / "r").num_rows == len(IDS)


def test_duplicates_across_calls_with_n_examples(tmp_path: Path) -> None:
    with Recorder(tmp_path, kind="logits", n_examples=10, buffer_rows=2, eager_checks=True) as rec:
        rec.record(np.zeros((3, 2)), np.array([0, 1, 0]), epoch=0, ids=np.array([3, 4, 5]))
        with pytest.raises(EpochOrderError, match=r"id 4 \(row 1 .* for epoch 0"):
            rec.record(
                np.zeros((2, 2)), np.array([0, 1]), epoch=0, ids=np.array([9, 4])
            )  # published
        rec.record(np.zeros((2, 2)), np.array([0, 1]), epoch=1, ids=np.array([3, 4]))  # a new epoch
        with pytest.raises(ValueError, match=r"id 10 in row 1 is out of range.* 0 to 9"):
            rec.record(np.zeros((2, 2)), np.array([0, 1]), epoch=1, ids=np.array([0, 10]))
        with pytest.raises(ValueError, match="out of range"):
            rec.record(np.zeros((1, 2)), np.array([0]), epoch=1, ids=np.array([-1]))


def test_string_duplicates_and_check_off(tmp_path: Path) -> None:
    with Recorder(tmp_path / "a", kind="logits") as rec:
        rec.record(np.zeros((2, 2)), [0, 1], epoch=0, ids=["x", "y"])
        with pytest.raises(EpochOrderError, match='id "y" \\(row 1 '):
            rec.record(np.zeros((2, 2)), [0, 1], epoch=0, ids=["z", "y"])
        with pytest.raises(EpochOrderError, match='id "q" \\(rows 0 and 1 '):
            rec.record(np.zeros((2, 2)), [0, 1], epoch=0, ids=["q", "q"])
    with Recorder(tmp_path / "b", kind="logits", check_duplicates=False) as rec:
        rec.record(np.zeros((1, 2)), [0], epoch=0, ids=["x"])
        rec.record(np.zeros((1, 2)), [0], epoch=0, ids=["x"])  # left to the reader
    assert read_back(tmp_path / "b").num_rows == 2


def test_invalid_probabilities(tmp_path: Path) -> None:
    with Recorder(tmp_path, kind="probs") as rec:
        with pytest.raises(InvalidProbabilitiesError, match=r"id 1 .*sums to 1\.5"):
            rec.record(np.array([[0.5, 0.5], [1.0, 0.5]]), [0, 1], epoch=0, ids=[0, 1])
        with pytest.raises(
            InvalidProbabilitiesError, match=r"id 0 .*value 1\.1 in column 0 is outside \[0, 1\]"
        ):
            rec.record(np.array([[1.1, -0.1], [0.5, 0.5]]), [0, 1], epoch=0, ids=[0, 1])
        rec.record(np.array([[0.25, 0.75], [0.5, 0.5]]), [0, 1], epoch=0, ids=[0, 1])


def test_bad_constructor_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Recorder(tmp_path, kind="logit")
    with pytest.raises(ValueError, match="mode must be one of"):
        Recorder(tmp_path, kind="logits", mode="w")
    with pytest.raises(ValueError, match="buffer_bytes must be a positive integer"):
        Recorder(tmp_path, kind="logits", buffer_bytes=0)
    with pytest.raises(ValueError, match="needs n_examples="):
        Recorder(tmp_path, kind="logits", accumulator=True)
    with pytest.raises(ValueError, match="integer ids"):
        Recorder(tmp_path, kind="logits", accumulator=True, n_examples=3, ids="string")
    with pytest.raises(TypeError, match="float_dtype must be float32 or float64"):
        Recorder(tmp_path, kind="logits", float_dtype="float16")
    with pytest.raises(ValueError, match="resume_epoch= only applies with mode='append'"):
        Recorder(tmp_path, kind="logits", resume_epoch=3)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        Recorder(tmp_path / "file", kind="logits")
    with Recorder(tmp_path / "r", kind="logits") as rec:
        with pytest.raises(TypeError, match="holds an open file and cannot be pickled"):
            pickle.dumps(rec)


def test_closed_recorder(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, kind="logits")
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        rec.record(OUT, LAB, epoch=0, ids=IDS)
    with pytest.raises(ValueError, match="closed"):
        rec.flush()


def test_end_epoch_checks_the_epoch(tmp_path: Path) -> None:
    with Recorder(tmp_path, kind="logits") as rec:
        rec.record(OUT, LAB, epoch=4, ids=IDS)
        with pytest.raises(
            ValueError, match=r"end_epoch\(3\) but the buffered rows are of epoch 4"
        ):
            rec.end_epoch(3)
        rec.end_epoch(4)
        assert rec.rows_written == 4


# --------------------------------------------------------------------------------------------
# an existing directory


def test_existing_directory_modes(tmp_path: Path) -> None:
    def run(epochs: range, **kwargs: Any) -> Recorder:
        with Recorder(tmp_path, kind="logits", buffer_rows=3, **kwargs) as rec:
            for e in epochs:
                rec.record(OUT + e, LAB, epoch=e, ids=IDS)
        return rec

    run(range(2))
    with pytest.raises(
        FileExistsError, match=r"4 recorded segments \(epochs 0 to 1\).*mode='append'"
    ):
        run(range(2, 3))
    rec = run(range(1, 3), mode="append")  # epoch 1 again: the reader will see duplicates
    assert [p.name for p in rec.segments] == [
        "epoch-000001-part-00002.arrows",
        "epoch-000001-part-00003.arrows",
        "epoch-000002-part-00000.arrows",
        "epoch-000002-part-00001.arrows",
    ]
    with pytest.raises(fastcarto.FileFormatError, match="classes"):
        Recorder(tmp_path, kind="logits", mode="append", n_classes=4)
    with pytest.raises(fastcarto.FileFormatError, match="records logits outputs"):
        Recorder(tmp_path, kind="probs", mode="append")
    rec = run(range(1, 2), mode="append", resume_epoch=1)  # drops epochs 1 and 2 first
    assert sorted({int(n.name[6:12]) for n in tmp_path.iterdir()}) == [0, 1]
    assert read_back(tmp_path).num_rows == 8
    run(range(5, 6), mode="overwrite")
    assert read_back(tmp_path).column("epoch").to_pylist() == [5] * 4

    # A crashed run's unpublished segment is removed; other data files are never mixed in.
    (tmp_path / ".epoch-000007-part-00000.arrows.tmp").write_bytes(b"partial")
    run(range(6, 7), mode="append")
    assert not (tmp_path / ".epoch-000007-part-00000.arrows.tmp").exists()
    (tmp_path / "other.parquet").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"did not write \(other\.parquet\)"):
        run(range(1), mode="overwrite")
    assert (tmp_path / "other.parquet").exists()


# --------------------------------------------------------------------------------------------
# the live accumulator


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_live_accumulator_matches_compute_after_every_epoch(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(4)
    n, c, n_epochs = 60, 3, 4
    labels = rng.integers(0, c, size=n)
    dense = rng.normal(size=(n_epochs, n, c))
    if kind == "probs":
        dense = np.exp(dense) / np.exp(dense).sum(axis=2, keepdims=True)
    with Recorder(tmp_path, kind=kind, n_examples=n, accumulator=True, buffer_rows=25) as rec:
        assert rec.accumulator is None  # made at the first call, once the classes are known
        for epoch in range(n_epochs):
            for idx in minibatches(rng, n):
                rec.record(dense[epoch, idx], labels[idx], epoch=epoch, ids=idx)
            rec.end_epoch(epoch)
            want = fastcarto.compute(dense[: epoch + 1], labels, kind=kind)
            assert_maps_equal(rec.datamap().to_pandas(), want.to_pandas())
            assert_maps_equal(datamap_of(tmp_path, kind), want.to_pandas())
    assert isinstance(rec.accumulator, fastcarto.Accumulator)

    # Appending with a fresh live accumulator reads the earlier segments first.
    extra = rng.normal(size=(n, c))
    if kind == "probs":
        extra = np.exp(extra) / np.exp(extra).sum(axis=1, keepdims=True)
    with Recorder(tmp_path, kind=kind, mode="append", n_examples=n, accumulator=True) as rec:
        rec.record(extra, labels, epoch=n_epochs, ids=np.arange(n))
    want = fastcarto.compute(np.concatenate([dense, extra[None]]), labels, kind=kind)
    assert_maps_equal(rec.datamap().to_pandas(), want.to_pandas())


def test_given_accumulator_and_its_errors(tmp_path: Path) -> None:
    acc = fastcarto.Accumulator(n_examples=4, n_classes=3, kind="logits")
    rec = Recorder(tmp_path, kind="logits", accumulator=acc, eager_checks=True)
    assert rec.accumulator is acc and rec.n_examples == 4 and rec.n_classes == 3
    rec.record(OUT, LAB, epoch=0, ids=IDS)
    # The accumulator's own checks apply too, and a refused call records nothing.
    with pytest.raises(LabelError, match="label"):
        rec.record(OUT, (LAB + 1) % 3, epoch=1, ids=IDS)
    assert (rec.rows_buffered, rec.rows_written) == (0, 4)  # epoch 0 was published first
    assert acc.last_epoch == 0
    other = Recorder(tmp_path / "s", kind="logits", n_examples=4, accumulator=True)
    with pytest.raises(TypeError, match="live accumulator needs integer ids"):
        other.record(OUT, LAB, epoch=1, ids=["a", "b", "c", "d"])
    other.close()
    rec.close()
    assert acc.finalize().to_pandas()["n_epochs"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="accumulator has 4 examples"):
        Recorder(tmp_path / "x", kind="logits", accumulator=acc, n_examples=5)
    with pytest.raises(ValueError, match="for logits but the recorder for probs"):
        Recorder(tmp_path / "x", kind="probs", accumulator=acc)
    with pytest.raises(ValueError, match="accumulator=True"):
        Recorder(tmp_path / "y", kind="logits").datamap()


# --------------------------------------------------------------------------------------------
# the segment-file protocol (fastcarto._segments) on its own


def test_segment_names_round_trip() -> None:
    from fastcarto import _segments

    assert _segments.segment_name(3, 7, None) == "epoch-000003-part-00007.arrows"
    assert _segments.segment_name(3, 7, 1) == "epoch-000003-shard-001-part-00007.arrows"
    for shard in (None, 0, 12):
        name = _segments.segment_name(41, 2, shard)
        assert SEGMENT.match(name)
        assert _segments.segment_key(name) == (41, 2)


def test_list_directory_sorts_entries_by_shard(tmp_path: Path) -> None:
    from fastcarto import _segments

    names = [
        "epoch-000000-part-00000.arrows",
        "epoch-000000-shard-001-part-00000.arrows",
        "epoch-000001-shard-002-part-00000.arrows",
        ".epoch-000002-shard-001-part-00000.arrows.tmp",
        ".epoch-000002-part-00001.arrows.tmp",
        "other.parquet",
        ".hidden.arrow",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    plain = _segments.list_directory(tmp_path, None)
    assert [p.name for p in plain.ours] == [names[0]]
    assert [p.name for p in plain.stale] == [names[4]]
    assert sorted(p.name for p in plain.foreign) == sorted([names[1], names[2], names[5]])
    one = _segments.list_directory(tmp_path, 1)
    assert [p.name for p in one.ours] == [names[1]]
    assert [p.name for p in one.stale] == [names[3]]
    # Another shard's segments belong to the same sharded recording, not foreign to it.
    assert sorted(p.name for p in one.foreign) == sorted([names[0], names[5]])


def test_publish_is_all_or_nothing(tmp_path: Path) -> None:
    from fastcarto import _segments

    schema = _segments.make_schema("logits", 2, np.dtype(np.float32), "int64")
    rows = np.arange(3, dtype=np.int64)
    outputs = np.arange(6, dtype=np.float32).reshape(3, 2)
    batch = _segments.record_batch(schema, 4, rows, rows % 2, outputs)
    options = pa.ipc.IpcWriteOptions()
    final = tmp_path / _segments.segment_name(4, 0, None)

    def failing() -> Iterator[pa.RecordBatch]:
        yield batch
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _segments.publish(final, schema, failing(), options=options, fsync=False)
    assert list(tmp_path.iterdir()) == []  # neither the segment nor its temporary file
    _segments.publish(final, schema, [batch, batch], options=options, fsync=True)
    assert [p.name for p in tmp_path.iterdir()] == [final.name]
    assert _segments.read_schema(final, "logits") == (2, np.dtype(np.float32), "int64")
    back = pa.Table.from_batches(list(_segments.read_batches(final)))
    assert back.column("epoch").to_pylist() == [4] * 6
    assert back.column("logits").to_pylist()[:3] == outputs.tolist()
    with pytest.raises(fastcarto.FileFormatError, match="records logits outputs"):
        _segments.read_schema(final, "probs")


def test_adopt_schema_takes_or_checks_the_shape(tmp_path: Path) -> None:
    from fastcarto import _segments

    schema = _segments.make_schema("probs", 3, np.dtype(np.float64), "string")
    seg = tmp_path / _segments.segment_name(0, 0, None)
    _segments.publish(seg, schema, [], options=pa.ipc.IpcWriteOptions(), fsync=False)
    shape = (3, np.dtype(np.float64), "string")
    assert _segments.adopt_schema(seg, "probs", None, None, None) == shape
    assert _segments.adopt_schema(seg, "probs", *shape) == shape
    for mine, what in [
        ((2, None, None), "for its classes"),
        ((None, np.dtype(np.float32), None), "for its float type"),
        ((None, None, "int64"), "for its id type"),
    ]:
        with pytest.raises(fastcarto.FileFormatError, match=f"{what}, but this recorder"):
            _segments.adopt_schema(seg, "probs", *mine)
