"""Hostile inputs, at CI size: files truncated while they are read, streams cut at every message
boundary, byte flips in checksummed Parquet pages, tampered states and pickles, threads sharing
an accumulator, values at the edge of float32. Each must give a Python exception with a one-line
message naming what is wrong (or the right answer), never a signal, a panic or a silent loss.

The same probes at full size (many more cuts, flips and tamperings) run from `fuzz/`
(`python fuzz/hostile.py`, see `fuzz/README.md`).
"""

from __future__ import annotations

import inspect
import io
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import fastcarto
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from fastcarto import Accumulator, FastcartoError, FileFormatError

# How many cuts, flips and trials each probe makes, in multiples of the CI size; `fuzz/hostile.py`
# runs these tests with a larger scale.
SCALE = int(os.environ.get("FASTCARTO_HOSTILE_SCALE", "1"))

# --------------------------------------------------------------------------------------------
# helpers


def long_table(n: int = 30, epochs: int = 4, c: int = 3, seed: int = 0) -> pa.Table:
    """fastcarto's long table: (epoch, id, label, logits) rows, epoch by epoch."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(epochs * n, c)).astype(np.float32)
    return pa.table(
        {
            "epoch": np.repeat(np.arange(epochs), n),
            "id": np.tile(np.arange(n), epochs),
            "label": np.tile(rng.integers(0, c, size=n), epochs),
            "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), c),
        }
    )


def stream_with_boundaries(table: pa.Table, rows: int) -> tuple[bytes, list[int]]:
    """An IPC stream of ``table`` in batches of ``rows``, and the offset after each message
    (the schema's, each batch's); the last offset is before the end-of-stream marker."""
    sink = pa.BufferOutputStream()
    writer = ipc.new_stream(sink, table.schema)
    bounds = [sink.tell()]
    for batch in table.to_batches(max_chunksize=rows):
        writer.write_batch(batch)
        bounds.append(sink.tell())
    writer.close()
    return sink.getvalue().to_pybytes(), bounds


def assert_readable(err: BaseException, *names: str) -> None:
    """One line, naming each of ``names``, without what a dependency or Rust leaves behind."""
    msg = str(err)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)
    assert msg.count(names[0]) == 1 if names else True, msg
    assert not re.search(r"\{[A-Za-z_][A-Za-z0-9_]*\}", msg), msg  # unfilled placeholders
    # Rust ranges (the label range's "(valid: 0..=N)" is first-contact's part of issue 20).
    assert not re.search(r"\d\.\.=?\d", re.sub(r" \(valid: 0\.\.=\d+\)$", "", msg)), msg
    assert not re.search(r"\w+ \{ \w+: ", msg), msg  # Rust debug structs


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )


def assert_no_signal(child: subprocess.CompletedProcess[str]) -> None:
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        pytest.fail(f"the child died by {name}:\n{child.stdout}\n{child.stderr}")
    assert child.returncode == 0, child.stdout + child.stderr


# --------------------------------------------------------------------------------------------
# files truncated while they are read (memory-mapped inputs)

_CUT_WHILE_READING = """
    import os, sys
    import numpy as np, pyarrow as pa, pyarrow.ipc as ipc
    from fastcarto import _core

    path = sys.argv[1] if len(sys.argv) > 1 else {path!r}
    cut = []

    def progress(done, total, rows):
        # After the first batch: another process truncates the file.
        if not cut:
            os.truncate(path, os.path.getsize(path) // 8)
            cut.append(rows)

    try:
        _core.read_keyed(
            path, kind="logits", columns=("epoch", "id", "label", None), nan_policy="raise",
            epochs=None, require_complete=False, progress=progress, threads=1,
        )
    except OSError as err:
        print("OSError:", err)
    else:
        print("read without error")
"""


@pytest.mark.skipif(sys.platform not in ("linux", "darwin"), reason="guarded maps: Linux, macOS")
@pytest.mark.parametrize("ext", [".arrow", ".arrows"])
def test_a_file_truncated_while_read_is_an_error_not_a_signal(tmp_path: Path, ext: str) -> None:
    table = long_table(n=4000, epochs=8, c=10)
    path = tmp_path / f"run{ext}"
    # Small batches: the first is folded (and the file cut) long before the last is read.
    if ext == ".arrows":
        with ipc.new_stream(path, table.schema) as w:
            for b in table.to_batches(max_chunksize=500):
                w.write_batch(b)
    else:
        with ipc.new_file(path, table.schema) as w:
            for b in table.to_batches(max_chunksize=500):
                w.write_batch(b)
    child = run_child(_CUT_WHILE_READING.format(path=str(path)))
    assert_no_signal(child)
    assert "OSError:" in child.stdout, child.stdout
    assert "truncated by another process" in child.stdout, child.stdout
    assert str(path) in child.stdout


_NPY_CUT_WHILE_READING = """
    import os, sys, threading, time
    import numpy as np
    import fastcarto

    path, n = {path!r}, {n}
    labels = np.zeros(n, dtype=np.int64)
    header = 128

    def cut_once_mapped():
        # Another process truncates the file as soon as fastcarto has mapped it.
        while True:
            with open("/proc/self/maps") as f:
                if path in f.read():
                    break
        os.truncate(path, header + 4096)

    outcomes = []
    for trial in range({trials}):
        np.save(path, np.ones((8, n, 10), dtype=np.float32))
        t = threading.Thread(target=cut_once_mapped, daemon=True)
        t.start()
        try:
            fastcarto.compute(path, labels, kind="logits", threads=1, progress=False)
            outcomes.append("finished")
        except OSError as err:
            outcomes.append("OSError: " + str(err))
        t.join()
    print(outcomes)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="watches /proc/self/maps")
def test_a_npy_truncated_while_computed_is_an_error_not_a_signal(tmp_path: Path) -> None:
    path = tmp_path / "logits.npy"
    child = run_child(_NPY_CUT_WHILE_READING.format(path=str(path), n=200_000, trials=5 * SCALE))
    assert_no_signal(child)
    outcomes = child.stdout
    # Each trial either finished before the cut landed or reports it; at least one is cut.
    assert "truncated by another process" in outcomes, outcomes
    assert "finished" in outcomes or "OSError" in outcomes


# --------------------------------------------------------------------------------------------
# IPC streams cut at message boundaries (no end-of-stream marker)


def test_a_stream_cut_at_any_message_boundary_is_an_error(tmp_path: Path) -> None:
    table = long_table()
    data, bounds = stream_with_boundaries(table, rows=17)
    path = tmp_path / "run.arrows"
    assert len(bounds) > 5
    for cut in bounds:
        path.write_bytes(data[:cut])
        with pytest.raises(FileFormatError) as info:
            fastcarto.compute(path)
        assert_readable(info.value, str(path))
        if cut > bounds[0]:
            assert "end-of-stream marker" in str(info.value)
    path.write_bytes(data)
    assert fastcarto.compute(path).to_pandas()["n_epochs"].tolist() == [4] * 30


def test_recorder_segments_end_with_their_marker(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with fastcarto.Recorder(tmp_path, kind="logits", n_examples=6) as rec:
        for epoch in range(2):
            # All by keyword: the same call before and after `record`'s arguments were reordered.
            out = rng.normal(size=(6, 3)).astype(np.float32)
            rec.record(outputs=out, labels=np.arange(6) % 3, epoch=epoch, ids=np.arange(6))
    segments = sorted(tmp_path.glob("*.arrows"))
    assert segments
    for seg in segments:
        assert seg.read_bytes()[-8:] == b"\xff\xff\xff\xff\x00\x00\x00\x00"
    assert len(fastcarto.compute(tmp_path)) == 6


# --------------------------------------------------------------------------------------------
# Parquet page checksums


def test_parquet_page_checksums_are_verified(tmp_path: Path) -> None:
    table = long_table(n=200, epochs=3)
    path = tmp_path / "run.parquet"
    pq.write_table(table, path, write_page_checksum=True, compression="none")
    data = path.read_bytes()
    whole = fastcarto.compute(path).to_pandas()
    rng = np.random.default_rng(0)
    meta = pq.ParquetFile(path).metadata
    # Flips inside the column chunks (data pages), not the footer.
    start = min(
        meta.row_group(g).column(k).data_page_offset
        for g in range(meta.num_row_groups)
        for k in range(meta.num_columns)
    )
    end = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    bad = tmp_path / "bad.parquet"
    rejected_by_pyarrow = 0
    for _ in range(40 * SCALE):
        flipped = bytearray(data)
        flipped[int(rng.integers(start, end))] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(flipped))
        try:
            pq.read_table(bad, page_checksum_verification=True)
        except (OSError, pa.ArrowException):
            rejected_by_pyarrow += 1
            with pytest.raises(FastcartoError) as info:
                fastcarto.compute(bad)
            assert_readable(info.value, str(bad))
            continue
        # Not a page's bytes (a page header field pyarrow tolerates): the same values or an error.
        try:
            got = fastcarto.compute(bad).to_pandas()
        except FastcartoError:
            continue
        assert got.equals(whole)
    assert rejected_by_pyarrow > 20 * SCALE


# --------------------------------------------------------------------------------------------
# tampered states


def real_state() -> pa.RecordBatch:
    rng = np.random.default_rng(0)
    acc = Accumulator(n_examples=5, n_classes=3, kind="probs")
    for epoch in range(4):
        p = rng.dirichlet(np.ones(3), size=5)
        acc.update(p, np.array([0, 1, 2, 0, 1]), epoch=epoch)
    return acc.to_arrow()


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("sum_loss", float("nan"), "sum_loss is NaN"),
        ("sum_loss", -1.67, "sum_loss is -1.67"),
        ("sum_el2n", -0.33, "sum_el2n is -0.33"),
        ("sum_el2n", 100.0, "sum_el2n is 100"),
        ("sum_entropy", -0.1, "sum_entropy is -0.1"),
        ("sum_entropy", 50.0, "sum_entropy is 50"),
        ("sum_margin", float("inf"), "sum_margin is inf"),
        ("m2", 5.8e149, "m2 is 5.8e149"),
        ("m2", -1e-3, "m2 is -0.001"),
        ("mean", 1.5, "mean is 1.5"),
    ],
)
def test_impossible_float_states_are_refused(column: str, value: float, fragment: str) -> None:
    batch = real_state()
    values = batch.column(column).to_numpy().copy()
    values[2] = value
    tampered = batch.set_column(batch.schema.get_field_index(column), column, pa.array(values))
    with pytest.raises(FastcartoError) as info:
        Accumulator.from_arrow(tampered)
    assert_readable(info.value, "not a fastcarto state", "row 2", fragment)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("forgetting", 3, "forgetting exceeds"),
        ("stable_from", 9, "stable_from"),
        ("first_learned", 9, "first_learned"),
        ("n_confident", 9, "n_confident"),
    ],
)
def test_impossible_count_states_are_refused(column: str, value: int, fragment: str) -> None:
    batch = real_state()
    values = batch.column(column).to_numpy().copy()
    values[2] = value
    tampered = batch.set_column(
        batch.schema.get_field_index(column), pa.field(column, pa.uint32(), False), pa.array(values)
    )
    with pytest.raises(FastcartoError) as info:
        Accumulator.from_arrow(tampered)
    assert_readable(info.value, "not a fastcarto state", fragment)


def test_real_states_load(tmp_path: Path) -> None:
    batch = real_state()
    back = Accumulator.from_arrow(batch)
    assert back.to_arrow().equals(batch)


# --------------------------------------------------------------------------------------------
# pickles


def test_a_corrupt_pickle_says_what_is_wrong() -> None:
    acc = Accumulator(n_examples=3, n_classes=2, kind="logits")
    acc.update(np.zeros((3, 2), np.float32), np.array([0, 1, 0]))
    state = acc.__getstate__()
    for broken, fragment in [
        ({k: v for k, v in state.items() if k != "compat"}, "'compat' missing"),
        ({**state, "state": "text"}, "'state' is a str"),
        ({**state, "nan_policy": "sometimes"}, "nan_policy must be one of"),
        ([1, 2], "is a list"),
    ]:
        fresh = Accumulator.__new__(Accumulator)
        with pytest.raises(FastcartoError) as info:
            fresh.__setstate__(broken)  # type: ignore[arg-type]
        assert_readable(info.value, "not a pickled fastcarto Accumulator", fragment)
    data = bytearray(pickle.dumps(acc))
    errors = 0
    for at in range(len(data) // 2, len(data), max(1, 7 // SCALE)):
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        try:
            pickle.loads(bytes(flipped))
        except FastcartoError as err:
            assert "\n" not in str(err)
            errors += 1
        except Exception:  # the pickle module's own errors, raised before ours
            pass
    assert errors > 0


# --------------------------------------------------------------------------------------------
# one accumulator, many threads


def test_an_accumulator_updated_from_threads_is_safe() -> None:
    n, c, epochs = 4000, 5, 3
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(epochs, n, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    shared = Accumulator(n_examples=n, n_classes=c, kind="logits", threads=1)
    parts = np.array_split(np.arange(n), 4)
    errors: list[BaseException] = []
    # `update` names the rows' examples `ids` (formerly `index`, then a deprecated alias).
    ids_keyword = "ids" if "ids" in inspect.signature(Accumulator.update).parameters else "index"

    def work(idx: np.ndarray) -> None:
        try:
            for epoch in range(epochs):
                for chunk in np.array_split(idx, 10):
                    rows = {ids_keyword: chunk}
                    shared.update(logits[epoch, chunk], labels[chunk], epoch=epoch, **rows)
                    shared.finalize()
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    alone = Accumulator(n_examples=n, n_classes=c, kind="logits")
    for epoch in range(epochs):
        alone.update(logits[epoch], labels, epoch=epoch)
    assert shared.finalize().to_pandas().equals(alone.finalize().to_pandas())


def test_a_state_merged_with_itself_in_the_core() -> None:
    acc = Accumulator(n_examples=2, n_classes=2, kind="logits")
    state = acc._state
    state.merge(state)  # nothing observed yet: the identity
    acc.update(np.zeros((2, 2), np.float32), np.array([0, 1]))
    with pytest.raises(fastcarto.EpochOrderError):
        state.merge(state)


# --------------------------------------------------------------------------------------------
# values and arguments at the edges


def test_float32_logits_near_the_largest_value_give_a_finite_loss() -> None:
    n = 70  # a full group of 64 rows and a tail
    logits32 = np.tile(np.array([3e38, -3e38], np.float32), (1, n, 1))
    labels = np.ones(n, dtype=np.int64)
    got = fastcarto.compute(logits32, labels, kind="logits").to_pandas()["loss"]
    want = fastcarto.compute(logits32.astype(np.float64), labels, kind="logits")
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want.to_pandas()["loss"], rtol=1e-12)


def test_a_bytes_path_is_a_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 2)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 1])
    path = tmp_path / "logits.npy"
    np.save(path, logits)
    from_bytes = fastcarto.compute(os.fsencode(path), labels, kind="logits", progress=False)
    from_str = fastcarto.compute(str(path), labels, kind="logits", progress=False)
    assert from_bytes.to_pandas().equals(from_str.to_pandas())
    table = pa.table(
        {
            "epoch": np.repeat(np.arange(3), 5),
            "id": np.tile(np.arange(5), 3),
            "label": np.tile(labels, 3),
            "logits": pa.FixedSizeListArray.from_arrays(logits.ravel(), 2),
        }
    )
    pq.write_table(table, tmp_path / "long.parquet")
    long_bytes = fastcarto.compute(os.fsencode(tmp_path / "long.parquet"), progress=False)
    long_str = fastcarto.compute(str(tmp_path / "long.parquet"), progress=False)
    assert long_bytes.to_pandas().equals(long_str.to_pandas())
    acc = Accumulator(n_examples=5, n_classes=2, kind="logits")
    with pytest.raises(TypeError, match="expected an array here, got a path"):
        acc.update(os.fsencode(path), labels)


# --------------------------------------------------------------------------------------------
# messages: one line, the file named once, no dependency or Rust leftovers


def test_messages_for_corrupt_files_are_one_readable_line(tmp_path: Path) -> None:
    table = long_table(n=40, epochs=3)
    rng = np.random.default_rng(3)
    files: dict[str, bytes] = {}
    buf = io.BytesIO()
    with ipc.new_file(buf, table.schema) as w:
        for b in table.to_batches(max_chunksize=20):
            w.write_batch(b)
    files[".arrow"] = buf.getvalue()
    files[".arrows"] = stream_with_boundaries(table, rows=20)[0]
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=20, write_page_checksum=True)
    files[".parquet"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, rng.normal(size=(3, 40, 3)).astype(np.float32))
    files[".npy"] = buf.getvalue()
    labels = np.zeros(40, dtype=np.int64)
    seen = 0
    for ext, data in files.items():
        path = tmp_path / f"x{ext}"
        for trial in range(60 * SCALE):
            bad = bytearray(data)
            if trial % 2:
                bad = bad[: int(rng.integers(0, len(bad)))]
            else:
                for _ in range(3):
                    bad[int(rng.integers(0, len(bad)))] ^= 0xFF
            path.write_bytes(bytes(bad))
            args: tuple[Any, ...] = (path, labels) if ext == ".npy" else (path,)
            kw: dict[str, Any] = {"kind": "logits"} if ext == ".npy" else {}
            try:
                fastcarto.compute(*args, progress=False, **kw)
            except (FastcartoError, OSError) as err:
                seen += 1
                assert_readable(err, str(path))
    assert seen > 100 * SCALE


def test_incompatible_states_name_the_tasks_in_words() -> None:
    a = Accumulator(n_examples=2, n_classes=4, kind="logits")
    b = Accumulator(n_examples=2, n_classes=3, kind="logits")
    with pytest.raises(fastcarto.IncompatibleStateError) as info:
        a.merge(b)
    assert_readable(info.value)
    assert "4 classes vs 3 classes" in str(info.value)
