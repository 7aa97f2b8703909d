"""Keyed sources: long tables (one row per (epoch, example)) in files, directories, globs and
Arrow objects, plus directories of per-epoch ``.npy`` arrays. The reading and folding happen in
the engine; this module only decides which reader a source needs and shows progress."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from ._arguments import argument_error
from ._inputs import EpochSelection, Kind, as_path, check_epoch_selection, read_labels

DEFAULT_COLUMNS = {"epoch": "epoch", "id": "id", "label": "label", "outputs": None}

#: Files in a directory of per-epoch ``.npy`` arrays that are not epochs.
NPY_LABELS, NPY_IDS = "labels.npy", "ids.npy"


def column_names(columns: Mapping[str, str] | None) -> tuple[str, str, str, str | None]:
    names: dict[str, str | None] = dict(DEFAULT_COLUMNS)
    for key, value in (columns or {}).items():
        if key not in DEFAULT_COLUMNS:
            raise ValueError(
                f"unknown column role {key!r}; columns= maps {sorted(DEFAULT_COLUMNS)} to names"
            )
        if not isinstance(value, str):
            raise TypeError(f"columns[{key!r}] must be a column name (str), got {value!r}")
        names[key] = value
    epoch, id_, label = names["epoch"], names["id"], names["label"]
    assert epoch is not None and id_ is not None and label is not None
    return epoch, id_, label, names["outputs"]


def epoch_filter(epochs: EpochSelection) -> int | slice | list[int] | None:
    """``epochs=`` for keyed sources, where epochs are numbers, not positions: checked, and in
    the one form every ``_core`` entry point takes (None: all; int k: the first k; a slice or a
    list of epoch numbers)."""
    if epochs is None:
        return None
    check_epoch_selection(epochs)
    if isinstance(epochs, (int, np.integer)):
        if epochs < 1:
            raise argument_error(ValueError, "{arg} selects no epochs", "epochs", int(epochs))
        if epochs >= 2**32:
            raise argument_error(
                ValueError, "{arg} is more epochs than a run can hold", "epochs", int(epochs)
            )
        # The first k: epoch numbers 0..k-1, all of which the read checks are present.
        return int(epochs)
    if isinstance(epochs, slice):
        start, stop, step = epochs.start or 0, epochs.stop, epochs.step or 1
        if start < 0 or (stop is not None and stop < 0) or step < 1:
            raise ValueError(
                "with a keyed source, epochs= slices take non-negative epoch numbers and a "
                "positive step"
            )
        return slice(int(start), None if stop is None else int(stop), int(step))
    chosen = []
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0:
            raise TypeError(f"epochs must hold non-negative epoch numbers, got {e!r}")
        chosen.append(int(e))
    if not chosen:
        raise _core.EmptyInputError("the epoch selection is empty")
    return chosen


def _outputs_kind(names: list[str], outputs: str | None) -> Kind:
    """The kind a table declares by naming its outputs column ``logits`` or ``probs``."""
    if outputs is not None:
        raise ValueError(
            f"the outputs column is named {outputs!r}: pass kind='logits' or kind='probs'"
        )
    has = [k for k in ("logits", "probs") if k in names]
    if len(has) != 1:
        raise ValueError(
            "pass kind='logits' or kind='probs': the table "
            + ("has both a 'logits' and a 'probs' column" if has else "has neither column")
            + f" (columns: {names})"
        )
    kind: Kind = "logits" if has[0] == "logits" else "probs"
    return kind


def _files_kind(files: list[tuple[Path, str, int | None, int]], outputs: str | None) -> Kind:
    """The kind every file's outputs column declares (each schema is read: metadata only);
    files that disagree are an error naming two of them."""
    first: tuple[Path, Kind] | None = None
    for path, fmt, _, _ in files:
        if fmt == "cartography-jsonl":
            continue
        # The schema's own errors already name the file; only the column check's do not.
        names = _file_schema(str(path), fmt).names
        try:
            kind = _outputs_kind(names, outputs)
        except ValueError as err:
            raise type(err)(f"{path}: {err}") from err
        if first is None:
            first = (path, kind)
        elif kind != first[1]:
            raise ValueError(
                f"{first[0]} holds {first[1]} but {path} holds {kind}: the files of one read "
                "must hold the same kind of outputs"
            )
    assert first is not None, "discover() returns at least one file"
    return first[1]


def _file_schema(path: str, fmt: str) -> pa.Schema:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path)
        import pyarrow.ipc as ipc

        with pa.memory_map(path) as f:
            if fmt == "ipc-file":
                return ipc.open_file(f).schema
            return ipc.open_stream(f).schema
    except (pa.ArrowException, OSError) as err:
        # The system's errors (missing file, permissions) stay as they are; truncated or corrupt
        # data (pyarrow reports a bad footer as a bare OSError) is fastcarto's error, naming the
        # file.
        if isinstance(err, OSError) and err.errno is not None:
            raise
        why = (str(err).strip().splitlines() or ["unreadable"])[0]
        raise _core.FileFormatError(
            f"{path}: cannot read the schema ({why}); the file is corrupt or truncated, "
            "write it again"
        ) from err


@contextmanager
def progress_bar(enabled: bool, total: int | None, desc: str) -> Iterator[Any]:
    """A tqdm bar fed by the engine's `(bytes_done, bytes_total, rows)` callback, or None."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=desc, leave=False)
    state = {"done": 0}

    def update(done: int, _total: int, rows: int) -> None:
        if done > state["done"]:
            bar.update(done - state["done"])
            state["done"] = done
        bar.set_postfix(rows=f"{rows:,}", refresh=False)

    try:
        yield update
    finally:
        bar.close()


def _refuse_labels(labels: Any) -> None:
    if labels is not None:
        raise ValueError(
            "labels are given only with an array (labels=, --labels); a long table carries its "
            "labels in its label column (in Python, columns={'label': ...} names another one)"
        )


def read_keyed(
    source: Any,
    labels: Any,
    *,
    kind: Kind | None,
    columns: Mapping[str, str] | None,
    nan_policy: str,
    epochs: EpochSelection,
    require_complete: bool,
    progress: bool,
    threads: int | None,
) -> tuple[Any, Any, Kind]:
    """Reads a long table from a file, directory or glob (a path, which may also name per-epoch
    ``.npy`` arrays) or from an in-memory table or Arrow stream: returns (state, ids or None,
    kind)."""
    files: list[tuple[Path, str, int | None, int]] | None = None
    path = as_path(source)
    if path is not None:
        text = os.fspath(path)
        files = _core.discover(text)
        formats = {fmt for _, fmt, _, _ in files}
        if formats == {"npy"}:
            return _read_npy_epochs(
                text,
                files,
                labels,
                kind=kind,
                nan_policy=nan_policy,
                epochs=epochs,
                threads=threads,
            )
    _refuse_labels(labels)
    names = column_names(columns)
    if files is not None:
        data, in_memory, total = text, False, sum(size for *_, size in files)
        show = progress and total > 64 << 20
        if kind is None:
            if formats == {"cartography-jsonl"}:
                kind = "logits"
            else:
                kind = _files_kind(files, names[3])
    else:
        # Tables are read with no progress bar: they are in memory, or a stream of unknown size.
        data, in_memory, kind = _arrow_source(source, kind, names[3])
        show, total = False, 0
    chosen: Kind = kind

    def read(data: Any) -> tuple[Any, Any]:
        with progress_bar(show, total, "fastcarto") as update:
            state, ids = _core.read_keyed(
                data,
                kind=chosen,
                columns=names,
                nan_policy=nan_policy,
                epochs=epoch_filter(epochs),
                require_complete=require_complete,
                progress=update,
                threads=threads,
            )
        return state, ids

    try:
        state, ids = read(data)
    except _core.InterleavedEpochsError:
        # A table is in memory, so it can be read again in epoch order (a stable sort keeps
        # duplicates adjacent, so they are still reported); files the engine re-reads itself.
        if not in_memory:
            raise
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        state, ids = read(table.sort_by([(names[0], "ascending")]))
    return state, ids, chosen


def _read_npy_epochs(
    text: str,
    files: list[tuple[Path, str, int | None, int]],
    labels: Any,
    *,
    kind: Kind | None,
    nan_policy: str,
    epochs: EpochSelection,
    threads: int | None,
) -> tuple[Any, Any, Kind]:
    if kind is None:
        raise ValueError("pass kind='logits' or kind='probs' for .npy arrays")
    special = {NPY_LABELS, NPY_IDS}
    epoch_files = [(p, e) for p, _, e, _ in files if p.name not in special]
    by_name = {p.name: p for p, *_ in files if p.name in special}
    if not epoch_files:
        raise _core.EmptyInputError(f"{text}: no per-epoch .npy files")
    unnamed = [str(p) for p, e in epoch_files if e is None]
    if unnamed:
        raise ValueError(
            f"cannot tell the epoch of {unnamed[0]}: name per-epoch files like epoch_3.npy"
        )
    if labels is None:
        if NPY_LABELS not in by_name:
            raise ValueError(f"{text}: pass labels= or put the labels in {NPY_LABELS}")
        labels = np.load(by_name[NPY_LABELS], allow_pickle=False)
    elif isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels)
    flat = np.asarray(labels)
    if flat.ndim != 1 or flat.dtype.kind not in "iu":
        raise _core.LabelError(
            f"labels must be a 1-d integer array for per-epoch .npy files, got shape "
            f"{flat.shape} dtype {flat.dtype}"
        )
    state = _core.compute_npy_epochs(
        [(p, int(e)) for p, e in epoch_files if e is not None],
        np.ascontiguousarray(flat, dtype=np.int64),
        kind=kind,
        nan_policy=nan_policy,
        epochs=epoch_filter(epochs),
        threads=threads,
    )
    ids = None
    if NPY_IDS in by_name:
        raw = np.load(by_name[NPY_IDS], allow_pickle=False)
        if raw.shape != flat.shape:
            raise ValueError(f"{NPY_IDS} has shape {raw.shape} but there are {flat.size} labels")
        if len(np.unique(raw)) != raw.size:
            raise ValueError(f"{NPY_IDS} holds duplicate ids")
        ids = pa.array(raw)
    return state, ids, kind


def is_table(source: Any) -> bool:
    """Arrow data (anything with ``__arrow_c_stream__``, pyarrow datasets and scanners), or a
    pandas DataFrame."""
    if hasattr(source, "__arrow_c_stream__") or _is_dataset(source):
        return True
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(source, pd.DataFrame)


def _is_dataset(source: Any) -> bool:
    """A ``pyarrow.dataset`` Dataset or Scanner: Arrow data that does not speak the stream
    protocol."""
    import sys

    ds = sys.modules.get("pyarrow.dataset")
    return ds is not None and isinstance(source, (ds.Dataset, ds.Scanner))


def as_arrow_stream(source: Any) -> Any:
    """``source``, or a reader scanning it (in bounded memory) where it is a pyarrow Dataset or
    Scanner."""
    if not _is_dataset(source):
        return source
    import pyarrow.dataset as ds

    scanner = source if isinstance(source, ds.Scanner) else source.scanner()
    return scanner.to_reader()


def _arrow_source(source: Any, kind: Kind | None, outputs: str | None) -> tuple[Any, bool, Kind]:
    """An in-memory table or Arrow stream as the engine reads it: (data, whether it is in memory,
    kind), the kind from the outputs column's name where not given."""
    import sys

    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(source, pd.DataFrame):
        source = pa.Table.from_pandas(source, preserve_index=False)
    source = as_arrow_stream(source)
    in_memory = isinstance(source, (pa.Table, pa.RecordBatch))
    if kind is None:
        schema = (
            source.schema
            if isinstance(source, (pa.Table, pa.RecordBatch, pa.RecordBatchReader))
            else None
        )
        if schema is None:
            polars = sys.modules.get("polars")
            if polars is not None and isinstance(source, polars.DataFrame):
                source = source.to_arrow()
                in_memory, schema = True, source.schema
        if schema is None:
            # Any other Arrow stream (a DuckDB result...): importing it gives its schema without
            # reading a batch; the reader is then read as the stream.
            source = pa.RecordBatchReader.from_stream(source)
            schema = source.schema
        kind = _outputs_kind(schema.names, outputs)
    return source, in_memory, kind
