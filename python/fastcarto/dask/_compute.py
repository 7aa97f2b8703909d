"""`fastcarto.dask.compute`: the data map of files on a Dask cluster, with ``compute``'s numbers.

Two plans (``split=``), both fixed before any task runs:

``"examples"`` (the default for files):
1. **Split points**: quantiles of the ids of every file's first batch cut the id space into one
   range per worker (read by the client for local files, by a task, ``fastcarto-split-…``, for
   remote ones).
2. **Reads and tables** (``fastcarto-range-…``, one per range): every file, in ``compute``'s
   order, folding only the range's examples (``_core.read_keyed_part(id_range=)``, the GIL
   released, the Rust pool sized to the worker's threads), then the range's table (handed to
   the client through a mapped file when the worker shares the client's machine). Each example
   meets its rows in ``compute``'s order, so its state is ``compute``'s bit for bit.
3. **Checks** on the whole, on the client; the result holds the tables in range order, one
   chunk each. When some range had to fold one epoch at a time (some example's epochs
   interleave), or with ``require_complete`` (a check that needs every range's epochs), the
   reads (``fastcarto-read-…``) keep their states instead, the client checks, the ranges that
   folded in one pass are read again one epoch at a time, and table tasks
   (``fastcarto-table-…``) build the tables.

``"files"`` (and every ``dask.dataframe``): one task per file or partition, folded into a
partial state; the states (pickled: their Arrow IPC stream) merge by id (``_core.merge_by_id``)
in the order ``compute`` reads the files: consecutive parts that each hold one and the same
epoch as a pairwise tree, those groups left to right. Files of one epoch each and files of
disjoint examples give ``compute``'s table bit for bit; files that each hold several epochs of
one example merge with the pairwise update (counts exact, floats to rounding; ``docs/dask.md``).
When the parts' id spans do not overlap, nothing merges: each part's table is built where it is
(``fastcarto-table-…``) and the tables, in id order, are the result.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

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

#: How ``compute`` shares the work between tasks.
Split = Literal["examples", "files"]
SPLITS: tuple[str, ...] = ("examples", "files")

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

    @property
    def epoch(self) -> int | None:
        """The epoch the file's name (or folder) gives."""
        return self.order[1] if self.order[0] == 1 else None


@dataclass(frozen=True)
class _Part:
    """What a read task returns (pickled: the state as Arrow IPC bytes)."""

    state: Any
    ids: Any
    epochs: tuple[int, ...]
    rows: int
    kind: str
    name: str
    #: Folded one epoch at a time (some example's epochs interleave in the part).
    by_epoch: bool = False
    #: The smallest and largest id of the part's examples (``None``: no examples).
    span: tuple[Any, Any] | None = None


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
        out.append(_File(str(path), True, _order(name_epoch, str(path)), path.name, {}))
    return out


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


def _files_kind(files: list[Any], kind: Kind | None, outputs: str | None) -> Kind:
    """The kind given, else the one the files' schemas declare (cartography's files: logits)."""
    if kind is not None:
        return kind
    if {fmt for _, fmt, _, _ in files} == {"cartography-jsonl"}:
        return "logits"
    return _tables._files_kind(files, outputs)


def _split_points(
    files: Sequence[_File], *, names: tuple[str, str, str, str | None], parts: int
) -> list[Any]:
    """A task: split points that divide the ids of the files' first batches into ``parts`` even
    ranges (of a remote source, the first file's only: the others are not fetched for it)."""
    sample = files if all(f.local for f in files) else files[:1]
    with _local_copies(sample) as listed:
        kind = _files_kind([_core.discover(p)[0] for p, _ in listed], None, names[3])
        return _core.id_split_points(listed, kind=kind, columns=names, parts=parts)


@contextmanager
def _local_copies(files: Sequence[_File]) -> Iterator[list[tuple[str, int | None]]]:
    """The files as ``[(local path, epoch in name)]`` in order: local files as they are,
    remote ones copied to a temporary directory removed on exit."""
    tmp = None
    try:
        out = []
        for i, f in enumerate(files):
            if f.local:
                out.append((f.url, f.epoch))
                continue
            import fsspec

            tmp = tmp or tempfile.mkdtemp(prefix="fastcarto-dask-")
            path = os.path.join(tmp, f"{i:06d}-{PurePosixPath(f.relative).name}")
            fs, remote = fsspec.core.url_to_fs(f.url, **f.storage_options)
            protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
            if "memory" in protocols:
                # fsspec's memory filesystem hands every opener one shared file object, whose
                # position threads reading at once would move under each other.
                with open(path, "wb") as dst:
                    dst.write(fs.cat_file(remote))
            else:
                with fs.open(remote, "rb") as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            out.append((path, f.epoch))
        yield out
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _read_part(file: _File, **opts: Any) -> _Part:
    """A read task of ``split="files"``: one file folded into a partial state."""
    return _read_range([file], None, **opts)


def _read_range(
    files: Sequence[_File],
    id_range: tuple[Any, Any] | None,
    *,
    kind: Kind | None,
    names: tuple[str, str, str, str | None],
    nan_policy: str,
    epochs: Any,
    threads: int | None,
    epoch_at_a_time: bool = False,
) -> _Part:
    """A read task: every file, in ``compute``'s order, folding only the examples whose id is
    in ``id_range`` (``(lo, hi)``, ``lo <= id < hi``, ``None`` for an open end)."""
    threads = threads or _worker_threads()
    with _local_copies(files) as listed:
        chosen = _files_kind([_core.discover(p)[0] for p, _ in listed], kind, names[3])
        if id_range == (None, None):
            id_range = None
        state, ids, got, rows, by_epoch = _core.read_keyed_part(
            listed,
            kind=chosen,
            columns=names,
            nan_policy=nan_policy,
            epochs=epochs,
            threads=threads,
            id_range=id_range,
            epoch_at_a_time=epoch_at_a_time,
        )
    if id_range is None:
        name = files[0].url if len(files) == 1 else "the examples"
    else:
        lo, hi = id_range
        name = "the examples with " + ("" if lo is None else f"{lo!r} <= ") + "id"
        name += "" if hi is None else f" < {hi!r}"
    return _Part(state, ids, tuple(got), rows, chosen, name, by_epoch)


def _range_table(
    part: _Part,
    *,
    rows: int,
    epochs_present: list[int],
    require_complete: bool,
    compat: Compat | None,
    ddof: int,
    client_host: str,
) -> Any:
    """A task: the metrics table of one range's examples (``None`` when it has none), or on the
    client's machine a :class:`_Handoff` of it."""
    if part.state is None:
        return None
    if require_complete:
        _core.check_keyed_parts(
            part.state,
            part.ids,
            rows=rows,
            epochs_present=epochs_present,
            require_complete=True,
        )
    # finalize, not take_table: a task run again (its result lost) finds the state intact.
    batch = part.state.finalize(compat=compat, ddof=ddof, ids=part.ids)
    if client_host != _host_id():
        return batch
    # On the client's machine the table goes through a file the client maps (the page cache),
    # not through the scheduler's sockets: an order of magnitude faster for large tables.
    import pyarrow as pa

    # Memory (tmpfs) where the system has it: the file only lives until the client maps it.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="fastcarto-dask-", suffix=".arrow", dir=shm)
    try:
        with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, batch.schema) as writer:
            writer.write_batch(batch)
    except BaseException:
        os.unlink(path)
        raise
    return _Handoff(path, _host_id())


@dataclass(frozen=True)
class _Handoff:
    """A range's table left in a file on the client's machine (``_range_table``)."""

    path: str
    host: str


def _host_id() -> str:
    """This machine (a name and, on Linux, the boot): tasks on it can hand files to the client."""
    import socket

    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _take_handoff(result: Any) -> Any:
    """The table a ``_range_table`` task returned, mapping (then removing) a handed-off file."""
    if not isinstance(result, _Handoff):
        return result
    import pyarrow as pa

    try:
        # The batch's buffers keep the mapping alive after the file is removed.
        return pa.ipc.open_file(pa.memory_map(result.path)).get_batch(0)
    finally:
        os.unlink(result.path)


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
        state, ids, got, rows, _ = read(data)
    except _core.InterleavedEpochsError:
        # In memory, so read again in epoch order, as fastcarto.compute does with a table.
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        state, ids, got, rows, _ = read(table.sort_by([(names[0], "ascending")]))
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
    split: Split = "examples",
    partitions: int | None = None,
) -> DataMap:
    """:func:`fastcarto.compute` on a Dask cluster, with the same table bit for bit.

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
    split:
        How the work is shared. ``"examples"`` (files and directories; the default): the ids
        are split into ``partitions`` ranges (from the ids of every file's first batch), and
        one task per range reads every file and folds only its examples, in ``compute``'s
        order: each example's state is ``compute``'s, always, and the ranges' tables
        concatenate; every task reads all the data (a remote file is fetched by each).
        ``"files"``: one task per file, partial states merged by id; as exact as ``compute``
        when every file holds one epoch or files hold disjoint examples (several epochs of one
        example in two files merge with the pairwise update: counts exact, sums to rounding).
        A ``dask.dataframe`` is always read one part per partition, as ``"files"``.
    partitions:
        Ranges of ids for ``split="examples"`` (default: the number of workers).

    Returns
    -------
    DataMap
        The table :func:`fastcarto.compute` gives on the same data (see ``docs/dask.md``).
        Progress shows in the Dask dashboard (tasks ``fastcarto-read``, ``fastcarto-merge``,
        ``fastcarto-table``); a task lost with its worker is run again with the same result.

    Raises
    ------
    ValueError
        A bad option, a source that is not a long table, no client; and every error
        :func:`fastcarto.compute` raises on the same data.

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
    check_choice("split", split, SPLITS)
    if partitions is not None and (
        isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1
    ):
        raise ValueError(f"partitions must be a positive integer, got {partitions!r}")
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
        if split == "examples":
            return _by_example(
                client,
                files,
                opts,
                partitions=partitions,
                token=token,
                require_complete=require_complete,
                compat=compat,
                ddof=int(ddof),
            )
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
    order = _disjoint_order(metas)
    if order is not None:
        # No example is in two parts (shards of disjoint examples): each part's states are the
        # merged ones, so each part's table is built where it is, and the tables in id order
        # are the result. Nothing merges, nothing but the tables moves.
        ordered = [metas[i] for i in order]
        rows, epochs_present = _check_whole(ordered, chosen_epochs)
        tables = _table_tasks(
            client,
            [futures[i] for i in order],
            token,
            rows=rows,
            epochs_present=epochs_present,
            require_complete=require_complete,
            compat=compat,
            ddof=int(ddof),
        )
        return _datamap(_collect(tables), ordered, compat)
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
    """What the client needs of a part to plan the rest: all but its states."""
    span = None
    if part.state is not None and part.ids is None:
        # Ids 0..n-1, the default ids of a table.
        n = part.state.n_examples
        span = (0, n - 1) if n else None
    elif part.state is not None and len(part.ids):
        # Sorted: a state's examples are in increasing id order.
        span = (part.ids[0].as_py(), part.ids[-1].as_py())
    return _Part(None, None, part.epochs, part.rows, part.kind, part.name, part.by_epoch, span)


def _disjoint_order(metas: Sequence[_Part]) -> list[int] | None:
    """The parts that hold examples, in increasing id order, when their id spans do not
    overlap (no example in two parts), all parts hold one kind of outputs and ids, and all
    folded the same way (one pass, or one epoch at a time); otherwise ``None``."""
    held = [(m.span, i) for i, m in enumerate(metas) if m.span is not None]
    if not held:
        return None
    if len({metas[i].kind for _, i in held}) != 1 or len({type(s[0]) for s, _ in held}) != 1:
        return None
    if len({m.by_epoch for m in metas}) != 1:
        return None
    held.sort(key=lambda t: t[0][0])
    for (a, _), (b, _) in itertools.pairwise(held):
        if b[0] <= a[1]:
            return None
    return [i for _, i in held]


def _by_example(
    client: Any,
    files: list[_File],
    opts: dict[str, Any],
    *,
    partitions: int | None,
    token: str,
    require_complete: bool,
    compat: Compat | None,
    ddof: int,
) -> DataMap:
    """``split="examples"``: a task per range of ids reads every file; its table is a chunk of
    the result."""
    workers = sorted(client.nthreads())
    n = partitions or max(1, len(workers))
    points: list[Any] = []
    if n > 1 and all(f.local for f in files):
        # The client listed these files, so it reads their first batches itself (a few ms):
        # a task would add a round trip through the scheduler.
        points = _split_points(files, names=opts["names"], parts=n)
    elif n > 1:
        points = client.submit(
            _split_points, files, names=opts["names"], parts=n, key=f"fastcarto-split-{token}"
        ).result()
    ranges = list(zip([None, *points], [*points, None], strict=True))

    def read(i: int, id_range: tuple[Any, Any], **more: Any) -> Any:
        return client.submit(
            _read_range,
            files,
            id_range,
            key=f"fastcarto-read-{token}-{i}{'-by-epoch' if more else ''}",
            **_placed(workers, i),
            **opts,
            **more,
        )

    host = _host_id()
    again: dict[str, Any] = {}
    if not require_complete:
        # The common case: each range's task also builds its table, so the whole read is one
        # round of tasks. Its checks on the whole (and the rare re-read of some ranges one
        # epoch at a time) come after, from what the tasks report.
        fused = [
            client.submit(
                _read_range_table,
                files,
                r,
                compat=compat,
                ddof=ddof,
                client_host=host,
                key=f"fastcarto-range-{token}-{i}",
                **_placed(workers, i),
                **opts,
            )
            for i, r in enumerate(ranges)
        ]
        results = _collect(fused, lambda r: (r[0], _take_handoff(r[1])))
        metas = [m for m, _ in results]
        if all(m.by_epoch == metas[0].by_epoch for m in metas):
            _check_whole(metas, opts["epochs"])
            return _datamap([t for _, t in results], metas, compat)
        # Some range's examples interleave their epochs, so compute folds everything one epoch
        # at a time: every range is read again that way (the tables are dropped).
        again = {"epoch_at_a_time": True}

    futures = [read(i, r, **again) for i, r in enumerate(ranges)]
    metas = [
        f.result()
        for f in [
            client.submit(_meta, f, key=f"fastcarto-meta-{token}-{i}")
            for i, f in enumerate(futures)
        ]
    ]
    if any(m.by_epoch for m in metas) and not all(m.by_epoch for m in metas):
        # Some range's examples interleave their epochs, so compute would fold everything one
        # epoch at a time: the other ranges are read again that way (the order changes rounding).
        for i, m in enumerate(metas):
            if not m.by_epoch:
                futures[i] = read(i, ranges[i], epoch_at_a_time=True)
    rows, epochs_present = _check_whole(metas, opts["epochs"])
    tables = _table_tasks(
        client,
        futures,
        token,
        rows=rows,
        epochs_present=epochs_present,
        require_complete=require_complete,
        compat=compat,
        ddof=ddof,
    )
    return _datamap(_collect(tables), metas, compat)


def _table_tasks(client: Any, parts: Sequence[Any], token: str, **table: Any) -> list[Any]:
    """One ``_range_table`` task per part (futures, in the result's order)."""
    host = _host_id()
    return [
        client.submit(
            _range_table, f, client_host=host, key=f"fastcarto-table-{token}-{i}", **table
        )
        for i, f in enumerate(parts)
    ]


def _placed(workers: list[Any], i: int) -> dict[str, Any]:
    """Range ``i`` starts on worker ``i`` (spread evenly; any worker may take it over)."""
    if not workers:
        return {}
    return {"workers": [workers[i % len(workers)]], "allow_other_workers": True}


def _read_range_table(
    files: Sequence[_File],
    id_range: tuple[Any, Any] | None,
    *,
    compat: Compat | None,
    ddof: int,
    client_host: str,
    **opts: Any,
) -> tuple[_Part, Any]:
    """A task: one range read and its table built (``_read_range``, then ``_range_table``
    without ``require_complete``); returns the part's metadata and the table."""
    part = _read_range(files, id_range, **opts)
    table = _range_table(
        part,
        rows=part.rows,
        epochs_present=list(part.epochs),
        require_complete=False,
        compat=compat,
        ddof=ddof,
        client_host=client_host,
    )
    return _meta(part), table


def _collect(futures: list[Any], take: Any = _take_handoff) -> list[Any]:
    """The results of table tasks in range order, each through ``take`` (which takes a handed-off
    table: maps it and removes its file). Every handed-off file is taken before the first error,
    in range order (so that it names the example compute's would), is raised."""
    from distributed import wait

    wait(futures)
    taken = [take(f.result()) if f.status == "finished" else None for f in futures]
    for f in futures:
        if f.status != "finished":
            f.result()
    return taken


def _check_whole(metas: Sequence[_Part], epochs: Any) -> tuple[int, list[int]]:
    """The checks on the whole read (some rows, the selected epochs present); returns the rows
    and the epochs present."""
    kinds = {m.kind for m in metas}
    assert len(kinds) == 1, "every range reads the same files, so they declare one kind"
    rows = sum(m.rows for m in metas)
    epochs_present = sorted({e for m in metas for e in m.epochs})
    _core.check_keyed_parts(
        None,
        None,
        rows=rows,
        epochs_present=epochs_present,
        epochs=epochs,
        require_complete=False,
    )
    return rows, epochs_present


def _datamap(tables: Sequence[Any], metas: Sequence[_Part], compat: Compat | None) -> DataMap:
    """The ranges' tables, in range order, as one map: one chunk per range, as they came (no
    copy of the whole table on the client)."""
    import numpy as np
    import pyarrow as pa

    batches = [b for b in tables if b is not None]
    table = pa.Table.from_batches(batches)
    if compat == "cartography" and len(batches) > 1:
        # cartography's ``index`` is the row's position in the whole table, which each range
        # numbered from 0.
        i = table.schema.get_field_index("index")
        position = pa.array(np.arange(table.num_rows, dtype=np.int64))
        table = table.set_column(i, table.schema.field(i), position)
    chosen_kind: Kind = "logits" if metas[0].kind == "logits" else "probs"
    return DataMap(table, kind=chosen_kind, compat=compat)


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
