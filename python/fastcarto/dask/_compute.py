"""`fastcarto.dask.compute`: the data map of files on a Dask cluster, with ``compute``'s numbers.

The plan, all of it fixed before any task runs except the grouping of the merges:

1. **Parts.** Each data file (or each partition of a ``dask.dataframe``) is one task,
   ``fastcarto-read-…``: the worker folds it into a partial state with the engine
   (``_core.read_keyed_part``, the GIL released, the Rust pool sized to the worker's threads).
   A remote file is first copied to a local temporary directory through fsspec (the readers
   memory-map local files and read the epoch of Hive-style ``epoch=3/`` folders from the path).
2. **Merges.** The parts are merged by id (``_core.merge_by_id``) in the order ``compute`` reads
   the files (by the epoch in their name, then by path): consecutive parts that each hold one
   and the same epoch are merged as a pairwise tree (their examples cannot share an epoch), and
   those groups are folded left to right, ``fastcarto-merge-…`` tasks. A state merged with one
   more epoch of an example is exactly ``compute``'s update, so files of one epoch each (the
   Recorder's, cartography's, shards per rank and epoch) and files of disjoint examples give
   ``compute``'s table bit for bit; files that each hold several epochs of one example merge
   with the pairwise update (counts exact, floats to rounding; see ``docs/dask.md``).
3. **Checks and table.** The client checks the whole (some rows, the selected epochs present,
   ``require_complete``) with the engine's checks and writes the table.

States travel between workers pickled, which is their Arrow IPC stream (``State.to_ipc``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import _core, _tables
from .._datamap import DataMap
from .._inputs import (
    COMPATS,
    NAN_POLICIES,
    Compat,
    EpochSelection,
    Kind,
    NanPolicy,
    check_choice,
    check_ddof,
    check_threads,
)

#: Formats a part may hold (per-epoch ``.npy`` arrays are dense: ``fastcarto.compute``).
_LONG_FORMATS = {"ipc-file", "ipc-stream", "parquet", "cartography-jsonl"}


@dataclass(frozen=True)
class _File:
    """One data file to read in one task: where it is, the path ``compute`` would order it by,
    and the relative path whose folders may name its epoch."""

    url: str
    local: bool
    order: tuple[int, int, str]
    relative: str
    storage_options: Mapping[str, Any]


@dataclass(frozen=True)
class _Part:
    """What a read task returns (pickled: the state as Arrow IPC bytes)."""

    state: Any
    ids: Any
    epochs: tuple[int, ...]
    rows: int
    kind: str
    name: str


def _client(client: Any) -> Any:
    try:
        from distributed import get_client
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            "fastcarto.dask needs Dask's distributed scheduler: pip install 'fastcarto[dask]'"
        ) from err
    if client is not None:
        return client
    try:
        return get_client()
    except ValueError as err:
        raise ValueError(
            "no Dask client: pass client=distributed.Client(...) or create one first"
        ) from err


def _worker_threads() -> int | None:
    """The threads the worker running this task was given (None outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    state = getattr(worker, "state", None)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    return int(n) if n else None


def _order(name_epoch: int | None, path: str) -> tuple[int, int, str]:
    # discover() sorts by (epoch in the name, path), None first.
    return (0, 0, path) if name_epoch is None else (1, name_epoch, path)


def _local_files(text: str) -> list[_File]:
    out = []
    for path, fmt, name_epoch, _ in _core.discover(text):
        _check_format(str(path), fmt)
        alone = _core.discover(str(path))[0][2]
        # A file read alone names its epoch from its own name; one whose epoch comes from a
        # folder (epoch=3/part-0.parquet) is read through a link that keeps that folder.
        relative = path.name if alone == name_epoch else _relative_naming(path, name_epoch)
        out.append(_File(str(path), True, _order(name_epoch, str(path)), relative, {}))
    return out


def _relative_naming(path: Path, name_epoch: int | None) -> str:
    """The shortest tail of ``path`` that names the epoch ``discover`` found."""
    parts = path.parts
    for k in range(2, len(parts) + 1):
        tail = str(PurePosixPath(*parts[-k:]))
        if _core.epoch_in_name(tail) == name_epoch:
            return tail
    return path.name


def _check_format(path: str, fmt: str) -> None:
    if fmt not in _LONG_FORMATS:
        raise ValueError(
            f"{path}: fastcarto.dask reads long tables (Arrow, Parquet, cartography .jsonl); "
            "per-epoch .npy arrays go to fastcarto.compute"
        )


def _remote_files(url: str, storage_options: Mapping[str, Any]) -> list[_File]:
    try:
        import fsspec
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("URLs are read through fsspec: pip install 'fastcarto[dask]'") from err
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as err:
        raise ValueError(f"{url}: fsspec cannot open this URL ({err})") from err
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if any(c in root for c in "*?["):
        found, base = sorted(fs.glob(root)), ""
    elif fs.isdir(root):
        found, base = sorted(fs.find(root)), root.rstrip("/")
    elif fs.exists(root):
        found, base = [root], str(PurePosixPath(root).parent)
    else:
        raise FileNotFoundError(f"{url}: no such file or directory")
    out = []
    for path in found:
        rel = path[len(base) :].lstrip("/") if base else path
        name = PurePosixPath(path).name
        hidden = any(p.startswith((".", "_")) for p in PurePosixPath(rel).parts)
        if hidden or not name.lower().endswith(_core.DATA_SUFFIXES):
            continue
        if name.lower().endswith(".npy"):
            _check_format(path, "npy")
        full = fs.unstrip_protocol(path) if protocol not in ("file", "local") else path
        out.append(_File(full, False, _order(_core.epoch_in_name(rel), path), rel, storage_options))
    if not out:
        raise _core.EmptyInputError(f"{url}: no data files ({', '.join(_core.DATA_SUFFIXES)})")
    return out


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _files(source: Any, storage_options: Mapping[str, Any]) -> list[_File]:
    entries = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not entries:
        raise _core.EmptyInputError("no sources: pass a path, URL, glob or a list of them")
    files: list[_File] = []
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(
                f"a source is a path, URL or glob (or a list of them), got {type(entry).__name__}"
            )
        text = os.fspath(entry)
        if text.startswith("file://"):
            text = text[len("file://") :]
        files += _remote_files(text, storage_options) if _is_url(text) else _local_files(text)
    files.sort(key=lambda f: f.order)
    seen = set()
    for f in files:
        if f.url in seen:
            raise ValueError(f"{f.url} is given twice: every file is one part of the read")
        seen.add(f.url)
    return files


def _read_part(
    file: _File,
    *,
    kind: Kind | None,
    names: tuple[str, str, str, str | None],
    nan_policy: str,
    epochs: Any,
    threads: int | None,
) -> _Part:
    """A read task: one file folded into a partial state on a worker."""
    threads = threads or _worker_threads()
    tmp = None
    try:
        if file.local and file.relative == Path(file.url).name:
            path = file.url
        else:
            tmp = tempfile.mkdtemp(prefix="fastcarto-dask-")
            path = os.path.join(tmp, *PurePosixPath(file.relative).parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if file.local:
                os.symlink(os.path.abspath(file.url), path)
            else:
                import fsspec

                with fsspec.open(file.url, "rb", **file.storage_options) as src:
                    with open(path, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            # The directory, so that the folders of the relative path name the epoch.
            path = tmp
        files = _core.discover(path)
        chosen: Kind
        if kind is not None:
            chosen = kind
        elif {fmt for _, fmt, _, _ in files} == {"cartography-jsonl"}:
            chosen = "logits"
        else:
            chosen = _tables._files_kind(files, names[3])
        state, ids, got, rows = _core.read_keyed_part(
            path,
            kind=chosen,
            columns=names,
            nan_policy=nan_policy,
            epochs=epochs,
            threads=threads,
        )
        return _Part(state, ids, tuple(got), rows, chosen, file.url)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_frame(
    frame: Any,
    name: str,
    *,
    kind: Kind | None,
    names: tuple[str, str, str, str | None],
    nan_policy: str,
    epochs: Any,
    threads: int | None,
) -> _Part:
    """A read task: one partition of a ``dask.dataframe`` (a pandas DataFrame)."""
    import pyarrow as pa

    threads = threads or _worker_threads()
    data, _, chosen = _tables._arrow_source(frame, kind, names[3])

    def read(data: Any) -> Any:
        return _core.read_keyed_part(
            data, kind=chosen, columns=names, nan_policy=nan_policy, epochs=epochs, threads=threads
        )

    try:
        state, ids, got, rows = read(data)
    except _core.InterleavedEpochsError:
        # In memory, so read again in epoch order, as fastcarto.compute does with a table.
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        state, ids, got, rows = read(table.sort_by([(names[0], "ascending")]))
    return _Part(state, ids, tuple(got), rows, chosen, name)


def _merge(a: _Part, b: _Part) -> _Part:
    """A merge task: two parts by id (the engine orders each example's epochs itself)."""
    if a.kind != b.kind:
        raise ValueError(
            f"{a.name} holds {a.kind} but {b.name} holds {b.kind}: the files of one read must "
            "hold the same kind of outputs"
        )
    epochs = tuple(sorted(set(a.epochs) | set(b.epochs)))
    if a.state is None or b.state is None:
        keep = b if a.state is None else a
        return _Part(keep.state, keep.ids, epochs, a.rows + b.rows, a.kind, a.name)
    try:
        state, ids = _core.merge_by_id(a.state, a.ids, b.state, b.ids)
    except _core.FastcartoError as err:
        raise type(err)(
            f"{err} (merging {a.name} with {b.name}: parts split by epoch must not share an "
            "example's epochs, and each example's epochs in one part must not interleave with "
            "another part's)"
        ) from err
    return _Part(state, ids, epochs, a.rows + b.rows, a.kind, a.name)


def _groups(parts: Sequence[_Part]) -> list[list[int]]:
    """Consecutive parts of one and the same single epoch form a group (merged as a tree);
    every other part is a group of its own. Groups are then folded in order."""
    groups: list[list[int]] = []
    last: int | None = None
    for i, part in enumerate(parts):
        single = part.epochs[0] if len(part.epochs) == 1 else None
        if single is not None and single == last and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
        last = single
    return groups


def compute(
    source: Any,
    labels: Any = None,
    *,
    client: Any = None,
    kind: Kind | None = None,
    compat: Compat | None = None,
    epochs: EpochSelection = None,
    nan_policy: NanPolicy = "raise",
    ddof: int = 0,
    columns: Mapping[str, str] | None = None,
    require_complete: bool = False,
    threads: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> DataMap:
    """:func:`fastcarto.compute` on a Dask cluster: each file is read by a worker, and the
    partial states merge into the same table.

    Parameters
    ----------
    source:
        Long tables: a path, glob or directory (a Recorder's directory, shards included), an
        fsspec URL of one (``s3://``, ``gs://``, ``memory://``, ``file://``...), or a list of
        them; or a ``dask.dataframe.DataFrame`` of the long table (one part per partition,
        merged in partition order). Per-epoch ``.npy`` arrays and in-memory arrays are
        :func:`fastcarto.compute`'s.
    labels:
        Must be None: a long table carries its labels (as in :func:`fastcarto.compute`).
    client:
        The ``distributed.Client`` to run on (default: the current one).
    kind, compat, epochs, nan_policy, ddof, columns, require_complete:
        As in :func:`fastcarto.compute`.
    threads:
        Engine threads per task (default: the threads of the worker that runs it).
    storage_options:
        Passed to fsspec for URLs (credentials, endpoints).

    Returns
    -------
    DataMap
        The table :func:`fastcarto.compute` gives on the same data: bit for bit when every file
        holds one epoch or the examples of different files are disjoint (see
        ``docs/dask.md``). Progress shows in the Dask dashboard (tasks ``fastcarto-read`` and
        ``fastcarto-merge``); a task lost with its worker is run again with the same result.

    Examples
    --------
    >>> import numpy as np, pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> import fastcarto, fastcarto.dask
    >>> from distributed import Client
    >>> d = tempfile.mkdtemp()
    >>> rng = np.random.default_rng(0)
    >>> for e in range(3):
    ...     pq.write_table(pa.table({"epoch": [e] * 4, "id": [0, 1, 2, 3], "label": [0, 1, 0, 1],
    ...         "logits": rng.normal(size=(4, 2)).tolist()}), os.path.join(d, f"epoch_{e}.parquet"))
    >>> with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0"):
    ...     dm = fastcarto.dask.compute(d)
    >>> pa.table(dm).equals(pa.table(fastcarto.compute(d, progress=False)))
    True
    """
    check_choice("compat", compat, COMPATS, optional=True)
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    check_choice("kind", kind, ("logits", "probs"), optional=True)
    check_threads(threads)
    check_ddof(ddof)
    _tables._refuse_labels(labels)
    names = _tables.column_names(columns)
    chosen_epochs = _tables.epoch_filter(epochs)
    client = _client(client)
    token = uuid.uuid4().hex[:12]
    opts: dict[str, Any] = {
        "kind": kind,
        "names": names,
        "nan_policy": nan_policy,
        "epochs": chosen_epochs,
        "threads": threads,
    }

    if _is_dask_frame(source):
        # The partitions as futures, in partition order (a Delayed is not a task's argument).
        delayed = client.compute(list(source.to_delayed()))
        futures = [
            client.submit(
                _read_frame, d, f"partition {i}", key=f"fastcarto-read-{token}-{i}", **opts
            )
            for i, d in enumerate(delayed)
        ]
    else:
        files = _files(source, storage_options or {})
        futures = [
            client.submit(_read_part, f, key=f"fastcarto-read-{token}-{i}", **opts)
            for i, f in enumerate(files)
        ]
    if not futures:
        raise _core.EmptyInputError("the source has no parts to read")

    # The grouping needs each part's epochs: small, fetched alone (the states stay on workers).
    metas = client.gather(
        [client.submit(_meta, f, key=f"fastcarto-meta-{token}-{i}") for i, f in enumerate(futures)]
    )
    merged = _merge_plan(client, futures, _groups(metas), token)
    final: _Part = merged.result()
    _core.check_keyed_parts(
        final.state,
        final.ids,
        rows=final.rows,
        epochs_present=list(final.epochs),
        epochs=chosen_epochs,
        require_complete=require_complete,
    )
    chosen_kind: Kind = "logits" if final.kind == "logits" else "probs"
    table = final.state.take_table(compat=compat, ddof=int(ddof), ids=final.ids)
    return DataMap(table, kind=chosen_kind, compat=compat)


def _meta(part: _Part) -> _Part:
    return _Part(None, None, part.epochs, part.rows, part.kind, part.name)


def _merge_plan(client: Any, futures: list[Any], groups: list[list[int]], token: str) -> Any:
    """Submits the merges: a pairwise tree inside each group, then the groups left to right."""
    counter = iter(range(1 << 62))

    def merge(a: Any, b: Any) -> Any:
        return client.submit(_merge, a, b, key=f"fastcarto-merge-{token}-{next(counter)}")

    def tree(items: list[Any]) -> Any:
        while len(items) > 1:
            nxt = [merge(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]
            if len(items) % 2:
                nxt.append(items[-1])
            items = nxt
        return items[0]

    acc = None
    for group in groups:
        g = tree([futures[i] for i in group])
        acc = g if acc is None else merge(acc, g)
    return acc


def _is_dask_frame(source: Any) -> bool:
    import sys

    dd = sys.modules.get("dask.dataframe")
    return dd is not None and isinstance(source, dd.DataFrame)
