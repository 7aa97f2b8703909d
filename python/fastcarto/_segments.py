"""The segment-file protocol of :class:`fastcarto.Recorder` (``docs/recorder.md``).

A recording is a directory of *segments*: complete Arrow IPC stream files of fastcarto's long
table, named ``epoch-{epoch:06d}-[shard-{shard:03d}-]part-{part:05d}.arrows``. A segment is
written to a dot-named temporary file, synced, and renamed into place (:func:`publish`), so a
directory only ever holds complete segments whatever instant the writing process dies at. This
module holds the names, the schema, the atomic publication and the directory scan; the Recorder
decides what to write and when.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc

from . import _core

FORMAT = "long-table/1"
"""Value of the ``fastcarto.format`` schema metadata key of every segment."""

# Rows per Arrow record batch inside a segment: large enough that per-batch overhead vanishes,
# small enough that readers can process a segment's batches in parallel.
BATCH_ROWS = 65_536

_SEGMENT = re.compile(r"^epoch-(\d+)-(?:shard-(\d+)-)?part-(\d+)\.arrows$")
_TEMPORARY = re.compile(r"^\.epoch-\d+-(?:shard-(\d+)-)?part-\d+\.arrows\.tmp$")


def segment_name(epoch: int, part: int, shard: int | None) -> str:
    """The file name of part ``part`` of ``epoch`` (of ``shard``)."""
    prefix = "" if shard is None else f"shard-{shard:03d}-"
    return f"epoch-{epoch:06d}-{prefix}part-{part:05d}.arrows"


def segment_key(name: str) -> tuple[int, int]:
    """``(epoch, part)`` of a segment's file name."""
    m = _SEGMENT.match(name)
    assert m is not None
    return int(m.group(1)), int(m.group(3))


def _shard_of(group: str | None) -> int | None:
    return None if group is None else int(group)


@dataclass
class Listing:
    """What a recording directory holds, as seen by the recorder of one shard."""

    #: This shard's published segments.
    ours: list[Path] = field(default_factory=list)
    #: Data files ``fastcarto.compute`` would read along with the recording: other files, and
    #: segments of a sharded recording seen by an unsharded recorder (or the reverse).
    foreign: list[Path] = field(default_factory=list)
    #: This shard's unpublished temporary files, left by a crashed run.
    stale: list[Path] = field(default_factory=list)


def list_directory(path: Path, shard: int | None) -> Listing:
    """Sorts the entries of the recording directory ``path`` for the recorder of ``shard``."""
    listing = Listing()
    for entry in sorted(path.iterdir()):
        name = entry.name
        m = _SEGMENT.match(name)
        if m:
            theirs = _shard_of(m.group(2))
            if theirs == shard:
                listing.ours.append(entry)
            elif shard is None or theirs is None:
                listing.foreign.append(entry)  # a sharded and an unsharded recording
            continue
        t = _TEMPORARY.match(name)
        if t and _shard_of(t.group(1)) == shard:
            listing.stale.append(entry)  # a crashed run's unpublished segment
        elif not name.startswith(".") and name.lower().endswith(_core.DATA_SUFFIXES):
            listing.foreign.append(entry)
    return listing


def prepare_directory(
    path: Path, shard: int | None, mode: str, resume_epoch: int | None, *, fsync: bool
) -> list[Path]:
    """Checks the recording directory ``path`` for the recorder of ``shard`` (creating it when
    missing): refuses foreign data files, and this shard's earlier segments in mode 'create';
    removes stale temporaries, and the earlier segments in mode 'overwrite' (from
    ``resume_epoch`` on when resuming). Returns the earlier segments that stay (mode 'append')."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a directory")
    if not path.exists():
        # exist_ok: the ranks of a distributed run create their shared directory concurrently
        path.mkdir(parents=True, exist_ok=True)
        if fsync:
            fsync_dir(path.parent)
        return []
    listing = list_directory(path, shard)
    ours, foreign, stale = listing.ours, listing.foreign, listing.stale
    if foreign:
        shown = ", ".join(p.name for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise FileExistsError(
            f"{path} holds data files the recorder did not write ({shown}); "
            "fastcarto.compute would read them along with the recording: choose another "
            "directory"
        )
    removed = False
    for tmp in stale:
        tmp.unlink(missing_ok=True)
        removed = True
    if ours and mode == "create":
        epochs = sorted({segment_key(p.name)[0] for p in ours})
        raise FileExistsError(
            f"{path} already holds {len(ours)} recorded segments (epochs "
            f"{epochs[0]} to {epochs[-1]}); pass mode='append' to add to them, "
            "mode='overwrite' to replace them, or choose another directory"
        )
    if mode == "overwrite" or resume_epoch is not None:
        keep = []
        for seg in ours:
            if mode == "overwrite" or segment_key(seg.name)[0] >= (resume_epoch or 0):
                seg.unlink()
                removed = True
            else:
                keep.append(seg)
        ours = keep
    if removed and fsync:
        fsync_dir(path)
    return ours


def adopt_schema(
    seg: Path,
    kind: str,
    n_classes: int | None,
    float_dt: np.dtype[Any] | None,
    id_type: str | None,
) -> tuple[int, np.dtype[Any], str]:
    """The shape of the earlier segment ``seg`` (:func:`read_schema`) that a recorder appending
    to it takes; a :class:`fastcarto.FileFormatError` where the recorder's own ``n_classes``,
    ``float_dt`` or ``id_type`` (None: not fixed yet) differ."""
    theirs = read_schema(seg, kind)
    for name, mine, their in zip(
        ("classes", "float type", "id type"), (n_classes, float_dt, id_type), theirs, strict=True
    ):
        if mine is not None and mine != their:
            raise _core.FileFormatError(
                f"{seg} has {their} for its {name}, but this recorder {mine}; append only "
                "to a recording of the same shape"
            )
    return theirs


def make_schema(kind: str, n_classes: int, float_dt: np.dtype[Any], id_type: str) -> pa.Schema:
    """The schema of every segment of a recording."""
    value = pa.float32() if float_dt == np.float32 else pa.float64()
    return pa.schema(
        [
            pa.field("epoch", pa.int64(), nullable=False),
            pa.field("id", pa.string() if id_type == "string" else pa.int64(), False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field(kind, pa.list_(value, n_classes), nullable=False),
        ],
        metadata={"fastcarto.format": FORMAT, "fastcarto.kind": kind},
    )


def read_schema(seg: Path, kind: str) -> tuple[int, np.dtype[Any], str]:
    """``(n_classes, float dtype, id type)`` of the segment ``seg`` of a ``kind`` recording;
    a :class:`fastcarto.FileFormatError` when it is unreadable or records the other kind."""
    try:
        with pa.OSFile(str(seg), "rb") as f, pa.ipc.open_stream(f) as reader:
            schema = reader.schema
    except (OSError, pa.ArrowInvalid) as exc:
        raise _core.FileFormatError(f"{seg}: not a readable segment ({exc})") from exc
    meta = schema.metadata or {}
    theirs = meta.get(b"fastcarto.kind", b"").decode()
    if theirs != kind or kind not in schema.names:
        raise _core.FileFormatError(
            f"{seg} records {theirs or 'unknown'} outputs, but this recorder {kind}"
        )
    out = schema.field(kind).type
    n_classes, float_dt = int(out.list_size), np.dtype(out.value_type.to_pandas_dtype())
    id_type = "string" if pa.types.is_string(schema.field("id").type) else "int64"
    return n_classes, float_dt, id_type


def read_batches(seg: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of the segment ``seg``."""
    with pa.OSFile(str(seg), "rb") as f, pa.ipc.open_stream(f) as reader:
        yield from reader


def record_batch(
    schema: pa.Schema,
    epoch: int,
    ids: npt.NDArray[np.int64] | pa.Array,
    labels: npt.NDArray[np.int64],
    outputs: npt.NDArray[np.floating[Any]],
) -> pa.RecordBatch:
    """Rows of one epoch as a record batch of ``schema`` (:func:`make_schema`)."""
    n = labels.shape[0]
    value_type = schema.field(3).type
    columns = [
        pa.array(np.full(n, epoch, dtype=np.int64)),
        ids if isinstance(ids, pa.Array) else pa.array(ids),
        pa.array(labels),
        pa.FixedSizeListArray.from_arrays(pa.array(outputs.reshape(-1)), type=value_type),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def publish(
    final: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    options: pa.ipc.IpcWriteOptions,
    fsync: bool,
) -> None:
    """Writes ``batches`` as the segment ``final``, atomically: to a dot-named temporary file
    first, synced (``fsync``), then renamed into place and the directory synced. On any error
    nothing is published and the temporary file is removed."""
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            with pa.ipc.new_stream(f, schema, options=options) as writer:
                for batch in batches:
                    writer.write_batch(batch)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(final.parent)


def fsync_dir(path: Path) -> None:
    """Makes a rename (or creation) in ``path`` durable; a no-op where directories cannot be
    opened (Windows, where the rename is durable once the file's data is)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
