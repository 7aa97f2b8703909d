"""The Recorder's fast paths against its eager path: a call of the block's types and shape goes
straight into the block, published blocks are reused, and the framework integrations' first
record of an (epoch, id) wins a block at a time. Whatever the mix of array types, dtypes, batch
sizes, block and buffer boundaries, the segments hold what ``eager_checks=True`` writes of the
same calls (with the repeats dropped by hand, call by call, for first-wins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import FEW_EXAMPLES
from fastcarto import EpochOrderError, Recorder
from fastcarto._first_wins import FirstWins
from hypothesis import given
from hypothesis import strategies as st

FLOATS = (np.float16, np.float32, np.float64, np.dtype(">f4"))
INTS = (np.int64, np.int32, np.uint8, np.int16, np.dtype(">i8"))


def read_back(path: Path) -> pa.Table:
    tables = []
    for f in sorted(path.iterdir()):
        if not f.name.startswith("."):
            with pa.ipc.open_stream(f) as reader:
                tables.append(reader.read_all())
    return pa.concat_tables(tables)


def as_given(array: np.ndarray[Any, Any], how: int) -> Any:
    """``array`` as a numpy array (0), a CPU torch tensor (1), one that requires grad (2), or a
    Python list (3); torch only when installed."""
    if how in (1, 2) and array.dtype.isnative:  # (torch takes native byte order only)
        torch = pytest.importorskip("torch")
        t = torch.from_numpy(array.copy())
        if how == 2 and t.is_floating_point():
            t.requires_grad_(True)
        return t
    if how == 3 and array.size:  # (an empty list loses the outputs' class count)
        return array.tolist()
    return array


@st.composite
def recordings(draw: Any, *, repeats: bool = False) -> dict[str, Any]:
    """Calls of a few epochs: batches of 1-40 rows (some empty) of one float and one int dtype
    per call, each array given as numpy, a tensor or a list; ids a permutation of each epoch's
    examples (with ``repeats``, some ids of earlier batches and of the same batch again)."""
    n = draw(st.integers(1, 90))
    classes = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    calls = []
    for epoch in range(draw(st.integers(1, 3))):
        order = rng.permutation(n)
        start = 0
        while start < n:
            rows = int(draw(st.integers(1, 40)))
            ids = order[start : start + rows]
            start += rows
            if draw(st.integers(0, 9)) == 9:
                ids = ids[:0]  # an empty batch (it does not advance the epoch's order)
                start -= rows
            if repeats and len(ids) and draw(st.booleans()):
                extra = rng.choice(order[:start], size=int(rng.integers(1, 6)))
                ids = rng.permutation(np.concatenate([ids, extra]))
            fdt = FLOATS[draw(st.integers(0, 3))]
            idt = INTS[draw(st.sampled_from([0, 1, 4] if n > 255 else [0, 1, 2, 3, 4]))]
            outputs = rng.normal(size=(len(ids), classes)).astype(fdt)
            labels = rng.integers(0, max(classes, 2), size=len(ids)).astype(idt)
            how = [draw(st.integers(0, 3)) for _ in range(3)]
            calls.append((epoch, outputs, labels, ids.astype(idt), how))
    return {
        "n": n,
        "classes": classes,
        "calls": calls,
        "buffer_rows": draw(st.sampled_from([None, 1, 7, 50])),
    }


def record_all(rec: Recorder, calls: list[Any]) -> None:
    epoch = None
    for e, outputs, labels, ids, how in calls:
        if epoch is not None and e != epoch:
            rec.end_epoch(epoch)
        epoch = e
        rec.record(
            as_given(outputs, how[0]), as_given(labels, how[1]), epoch=e, ids=as_given(ids, how[2])
        )
    rec.close()


@FEW_EXAMPLES
@given(case=recordings())
def test_block_fast_path_writes_what_the_eager_path_writes(
    tmp_path_factory: pytest.TempPathFactory, case: dict[str, Any]
) -> None:
    root = tmp_path_factory.mktemp("fast")
    common = {
        "kind": "logits",
        "n_classes": case["classes"],
        "n_examples": case["n"],
        "fsync": False,
    }
    eager = Recorder(root / "eager", eager_checks=True, buffer_rows=case["buffer_rows"], **common)
    record_all(eager, case["calls"])
    block = Recorder(root / "block", buffer_rows=case["buffer_rows"], **common)
    record_all(block, case["calls"])
    if eager.rows_written == 0:
        assert block.rows_written == 0
        return
    assert read_back(root / "block").equals(read_back(root / "eager"))
    assert [p.name for p in block.segments] == [p.name for p in eager.segments]


def test_reused_blocks_never_show_earlier_rows(tmp_path: Path) -> None:
    """Blocks filled, published and refilled many times (buffer of 5 rows, batches of 3): every
    segment holds exactly its own calls' rows."""
    rng = np.random.default_rng(1)
    n, c = 30, 3
    written = []
    with Recorder(tmp_path / "r", kind="logits", n_examples=n, buffer_rows=5) as rec:
        for epoch in range(4):
            order = rng.permutation(n)
            for start in range(0, n, 3):
                idx = order[start : start + 3]
                out = rng.normal(size=(3, c)).astype(np.float32)
                rec.record(out, idx % c, epoch=epoch, ids=idx)
                written.append((epoch, idx, out.copy()))
                out[:] = np.nan  # the caller reuses its buffer: the recorder copied it
            rec.end_epoch(epoch)
    table = read_back(tmp_path / "r").sort_by([("epoch", "ascending"), ("id", "ascending")])
    want_rows = sorted((e, int(i), tuple(o[k])) for e, idx, o in written for k, i in enumerate(idx))
    got = list(
        zip(
            table.column("epoch").to_pylist(),
            table.column("id").to_pylist(),
            (tuple(np.float32(v) for v in r) for r in table.column("logits").to_pylist()),
            strict=True,
        )
    )
    assert got == [(e, i, tuple(np.float32(v) for v in o)) for e, i, o in want_rows]


@FEW_EXAMPLES
@given(case=recordings(repeats=True))
def test_first_wins_by_block_equals_first_wins_by_call(
    tmp_path_factory: pytest.TempPathFactory, case: dict[str, Any]
) -> None:
    """The integrations' recorder drops the repeats of an (epoch, id) a block at a time; the
    reference drops them call by call (``FirstWins`` as each batch arrives) and records the
    rest eagerly: the same rows are written."""
    from fastcarto._training import BatchRecorder

    root = tmp_path_factory.mktemp("first")
    first = FirstWins()
    kept = []
    for epoch, outputs, labels, ids, _ in case["calls"]:
        keep = first.keep(ids, epoch)
        kept.append((epoch, outputs[keep], labels[keep], ids[keep], [0, 0, 0]))
    eager = Recorder(
        root / "eager",
        kind="logits",
        n_classes=case["classes"],
        eager_checks=True,
        buffer_rows=case["buffer_rows"],
        fsync=False,
    )
    record_all(eager, kept)
    batch = BatchRecorder(
        root / "batch", n_classes=case["classes"], buffer_rows=case["buffer_rows"], fsync=False
    )
    epoch = None
    for e, outputs, labels, ids, how in case["calls"]:
        if epoch is not None and e != epoch:
            batch.end_epoch(epoch)
        epoch = e
        batch.record(
            as_given(outputs, min(how[0], 2)),
            as_given(labels, how[1]),
            as_given(ids, min(how[2], 2)),
            e,
            where="test",
        )
    batch.close()
    if eager.rows_written == 0:
        assert batch.recorder.rows_written == 0
        return
    assert read_back(root / "batch").equals(read_back(root / "eager"))


def test_first_wins_by_block_names_a_refused_batch(tmp_path: Path) -> None:
    """A negative id, refused by the first-wins bookkeeping when its block is committed: the
    error names the batch, the other batches are recorded."""
    from fastcarto._training import BatchRecorder

    out = np.zeros((2, 3), dtype=np.float32)
    rec = BatchRecorder(tmp_path / "r")
    rec.record(out, np.array([0, 1]), np.array([0, 1]), 0, where="t")  # fixes the types
    rec.record(out, np.array([0, 1]), np.array([2, 3]), 0, where="t")
    rec.record(out, np.array([0, 1]), np.array([4, -5]), 0, where="t")
    rec.record(out, np.array([0, 1]), np.array([2, 6]), 0, where="t")  # 2 again: dropped
    rec.record(out, np.array([0, 1]), np.array([6, 2]), 0, where="t")  # both again: no rows
    with pytest.raises(ValueError, match=r"non-negative.*record call 2 of epoch 0"):
        rec.end_epoch(0)
    rec.close()
    assert sorted(read_back(tmp_path / "r").column("id").to_pylist()) == [0, 1, 2, 3, 6]


def test_recorder_without_first_wins_still_refuses_repeats(tmp_path: Path) -> None:
    """Only the integrations drop repeats: a plain Recorder's block raises, naming the batch."""
    out = np.zeros((2, 3), dtype=np.float32)
    with Recorder(tmp_path / "r", kind="logits") as rec:
        rec.record(out, np.array([0, 1]), epoch=0, ids=np.array([0, 1]))
        rec.record(out, np.array([0, 1]), epoch=0, ids=np.array([2, 0]))
        with pytest.raises(EpochOrderError, match="record call 1 of epoch 0"):
            rec.end_epoch(0)
