"""`Recorder`: training dynamics written to disk from inside a training loop, crash-safe.

Rows are checked, buffered (a bounded amount) and published as *segments*: complete Arrow IPC
stream files of fastcarto's long table, each written to a dot-named temporary file, synced, and
renamed into place, so a directory only ever holds complete segments whatever instant the
training process dies at. The file protocol (names, schema, atomic publication, directory scan)
is in ``_segments``; the format and the guarantee are described in ``docs/recorder.md``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.ipc

from . import _core
from ._accumulator import Accumulator
from ._datamap import DataMap
from ._device import CopyQueue, start_copy, torch_gpu_tensor
from ._first_wins import FirstWins
from ._inputs import (
    KINDS,
    MAX_CLASSES,
    Kind,
    check_choice,
    check_ddof,
    check_epoch,
    check_positive,
)
from ._segments import (
    BATCH_ROWS,
    adopt_schema,
    make_schema,
    prepare_directory,
    publish,
    read_batches,
    record_batch,
    segment_key,
    segment_name,
)

Mode = Literal["create", "append", "overwrite"]
IdType = Literal["int64", "string"]

MODES = ("create", "append", "overwrite")
ID_TYPES = ("int64", "string")
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
# The block of rows checked at once (unless eager_checks): large enough that the engine's checks
# and the writer run rarely, small enough to stay in cache-sized memory.
BLOCK_ROWS = 32_768
BLOCK_BYTES = 8 * 1024 * 1024
# DLPack device types numpy can read: CPU, CUDA pinned host memory, ROCm host, CUDA managed.
_HOST_DEVICES = (1, 3, 11, 13)
_DEVICE_NAMES = {2: "CUDA", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 10: "ROCm", 14: "oneAPI"}


@dataclass
class _Chunk:
    """Rows of one epoch waiting in the buffer (ids: int64 numpy array or Arrow strings)."""

    ids: npt.NDArray[np.int64] | pa.Array
    labels: npt.NDArray[np.int64]
    outputs: npt.NDArray[np.floating[Any]]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.labels.nbytes + self.outputs.nbytes)

    def slice(self, start: int, stop: int) -> _Chunk:
        return _Chunk(self.ids[start:stop], self.labels[start:stop], self.outputs[start:stop])

    def owned(self) -> _Chunk:
        """A copy that shares no memory with the caller's arrays (Arrow strings are ours)."""
        ids = self.ids.copy() if isinstance(self.ids, np.ndarray) else self.ids
        return _Chunk(ids, self.labels.copy(), self.outputs.copy())


@dataclass
class _Stage:
    """The block: rows of one epoch copied in by :meth:`Recorder.record`, not yet checked;
    ``calls`` holds each batch's rows and its number among the epoch's calls."""

    epoch: int
    capacity: int
    outputs: npt.NDArray[np.floating[Any]]
    labels: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int64]
    calls: list[tuple[int, int, int]]
    rows: int = 0

    @staticmethod
    def empty(epoch: int, capacity: int, n_classes: int, float_dt: np.dtype[Any]) -> _Stage:
        return _Stage(
            epoch,
            capacity,
            np.empty((capacity, n_classes), dtype=float_dt),
            np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.int64),
            [],
        )


class Recorder:
    """Writes a model's outputs on training examples to a directory, from inside any training
    loop, so that :func:`fastcarto.compute` can map them later, even after a crash.

    Call :meth:`record` with each minibatch's outputs (logits or probabilities), labels, epoch
    and example ids. Rows are copied into a buffer of at most ``buffer_bytes`` and published as
    *segments* in ``path``: Arrow IPC stream files named
    ``epoch-{epoch:06d}-part-{seq:05d}.arrows``, one epoch per segment, each holding fastcarto's
    long table (columns ``epoch``, ``id``, ``label`` and ``logits`` / ``probs``). A segment is
    written to a temporary file whose name starts with ``"."`` (readers ignore such names),
    flushed to disk and renamed into place, so however the process dies (even ``SIGKILL``), the
    directory holds complete segments only: everything published before the crash is readable.
    The buffer is published when it is full, when the epoch changes, and on :meth:`end_epoch`,
    :meth:`flush`, :meth:`close` and on leaving a ``with`` block.

    With ``accumulator=True`` every recorded batch also updates a live
    :class:`fastcarto.Accumulator`, so :meth:`datamap` gives the map after any epoch without
    reading anything back; that needs integer ids ``0..n_examples-1`` and ``n_examples``.

    Parameters
    ----------
    path:
        Directory of the segments (created if missing).
    kind:
        ``"logits"`` or ``"probs"``; names the outputs column.
    n_classes:
        Output columns per row; taken from the first :meth:`record` call when omitted.
        ``1`` is a binary model's single logit / positive-class probability (labels 0/1), and
        then 1-D outputs are accepted too.
    n_examples:
        Size of the training set. When given, ids must be integers in ``[0, n_examples)``, and
        duplicate ids within an epoch are found with one bit per example. Required for a live
        accumulator.
    ids:
        ``"int64"`` or ``"string"``; taken from the first :meth:`record` call when omitted.
    mode:
        ``"create"`` (default) refuses a directory that already holds segments or other data
        files, so that two runs are never silently mixed; ``"append"`` adds segments to those of
        an earlier run (same kind, classes, id type and float type; numbering continues);
        ``"overwrite"`` deletes the earlier run's segments first.
    resume_epoch:
        With ``mode="append"``: the first epoch this run records. Segments of that epoch and
        later (left by the run being resumed, possibly a partial epoch) are deleted first.
    buffer_bytes, buffer_rows:
        Publish a segment when the buffered rows reach this many bytes (default 64 MiB) or rows
        (default: no row limit). Larger segments mean fewer files; smaller ones lose less in a
        crash.
    accumulator:
        ``True`` to keep a live :class:`fastcarto.Accumulator` (``kind``, ``n_examples``,
        ``n_classes``), or an existing one to update. With ``mode="append"`` and ``True``, the
        new accumulator first reads the segments already there.
    float_dtype:
        ``"float32"`` or ``"float64"`` for the outputs column; by default the first call's
        (float16 is widened to float32). Later calls are converted to it.
    shard:
        For several processes recording into one directory (one per data-parallel rank, each
        with its own examples): the shard number goes into the file names
        (``epoch-000003-shard-001-part-00000.arrows``), and ``mode`` checks and deletes only
        this shard's segments.
    compression:
        ``None`` (default; segments can be memory-mapped), ``"lz4"`` or ``"zstd"`` (Arrow IPC
        buffer compression).
    fsync:
        Sync each segment and the directory to disk before and after publishing it (default).
        ``False`` is faster and still never shows a partial segment after the *process* dies,
        but a power loss or kernel crash may then lose or truncate recent segments.
    check_duplicates:
        Refuse an id recorded twice in the current epoch (see :meth:`record`). Without
        ``n_examples`` this keeps the current epoch's ids in a set (about 10-20 bytes per
        integer id, plus the text of string ids).
    eager_checks:
        Check each :meth:`record` call's rows as it is made, so that a bad batch raises at its
        own call. By default (``False``) integer-id batches are copied into a block of rows
        and checked once per block (when it fills, at most ``BLOCK_ROWS`` rows, and at
        :meth:`end_epoch`, :meth:`flush`, :meth:`close` and :meth:`datamap`), which removes
        most of the fixed cost of a call; an error is then raised by that later call, names
        the batch it came from (its epoch and its number among the epoch's calls), and only
        that batch is left out.

    Examples
    --------
    >>> import tempfile, numpy as np, fastcarto
    >>> rng = np.random.default_rng(0)
    >>> labels = np.array([0, 1, 2, 1, 0, 2])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with fastcarto.Recorder(tmp, kind="logits", n_examples=6, accumulator=True) as rec:
    ...         for epoch in range(3):
    ...             for idx in np.array_split(rng.permutation(6), 2):    # two minibatches
    ...                 logits = rng.normal(size=(len(idx), 3)).astype(np.float32)
    ...                 rec.record(logits, labels[idx], epoch=epoch, ids=idx)
    ...             rec.end_epoch(epoch)
    ...     print(rec.rows_written, [p.name for p in rec.segments][:2])
    ...     print(rec.datamap().to_pandas()["n_epochs"].tolist())   # the live map
    18 ['epoch-000000-part-00000.arrows', 'epoch-000001-part-00000.arrows']
    [3, 3, 3, 3, 3, 3]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kind: Kind,
        n_classes: int | None = None,
        n_examples: int | None = None,
        ids: IdType | None = None,
        mode: Mode = "create",
        resume_epoch: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        buffer_rows: int | None = None,
        accumulator: bool | Accumulator | None = None,
        float_dtype: str | np.dtype[Any] | type | None = None,
        shard: int | None = None,
        compression: Literal["lz4", "zstd"] | None = None,
        fsync: bool = True,
        check_duplicates: bool = True,
        eager_checks: bool = False,
    ) -> None:
        check_choice("kind", kind, KINDS)
        check_choice("mode", mode, MODES)
        check_choice("ids", ids, ID_TYPES, optional=True)
        check_choice("compression", compression, ("lz4", "zstd"), optional=True)
        _check_positive("n_classes", n_classes, optional=True, most=MAX_CLASSES)
        _check_positive("n_examples", n_examples, optional=True)
        _check_positive("buffer_bytes", buffer_bytes)
        _check_positive("buffer_rows", buffer_rows, optional=True)
        if shard is not None and (
            isinstance(shard, bool) or not isinstance(shard, int) or shard < 0
        ):
            raise ValueError(f"shard must be a non-negative integer or None, got {shard!r}")
        if resume_epoch is not None:
            if mode != "append":
                raise ValueError("resume_epoch= only applies with mode='append'")
            resume_epoch = check_epoch(resume_epoch)

        self._path = Path(path)
        self._kind: str = kind
        self._n_classes = n_classes
        self._n_examples = n_examples
        self._id_type: str | None = ids
        self._float: np.dtype[Any] | None = None
        if float_dtype is not None:
            dt = np.dtype(float_dtype)
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise TypeError(f"float_dtype must be float32 or float64, got {dt}")
            self._float = dt
        self._buffer_bytes = int(buffer_bytes)
        self._buffer_rows = None if buffer_rows is None else int(buffer_rows)
        self._shard = shard
        self._fsync = bool(fsync)
        self._check_duplicates = bool(check_duplicates)
        self._eager = bool(eager_checks)
        self._write_options = pa.ipc.IpcWriteOptions(compression=compression)

        self._acc: Accumulator | None = None
        feed_existing = False
        if isinstance(accumulator, Accumulator):
            self._acc = self._adopt_accumulator(accumulator)
        elif accumulator is True:
            if n_examples is None:
                raise ValueError(
                    "a live accumulator needs n_examples= (ids are example positions "
                    "0 to n_examples - 1)"
                )
            feed_existing = mode == "append"
        elif accumulator not in (None, False):
            raise TypeError(
                f"accumulator must be True, False, None or a fastcarto.Accumulator, "
                f"got {type(accumulator).__name__}"
            )
        self._live = accumulator is True or isinstance(accumulator, Accumulator)
        if self._live and self._id_type == "string":
            raise ValueError(
                "a live accumulator needs integer ids 0 to n_examples - 1, not ids='string'"
            )

        # Buffer and bookkeeping.
        self._chunks: list[_Chunk] = []
        self._buf_epoch: int | None = None
        self._buf_rows = 0
        self._buf_bytes = 0
        # Rows recorded but not yet checked: one block of one epoch, filled call by call.
        self._stage: _Stage | None = None
        # Blocks whose rows are all in the buffer (their memory is reused once published: a
        # fresh block's pages would otherwise be faulted in by the calls that fill it), and
        # one published block ready for reuse.
        self._buffered_blocks: list[_Stage] = []
        self._spare: _Stage | None = None
        # The (dtypes, shapes) of batches `_simple_batch` accepted: `record`'s fast path; the
        # last one's dtypes (2-D outputs of the recording's classes, 1-D labels and ids).
        self._simple: set[tuple[Any, ...]] = set()
        self._last_simple: tuple[Any, Any, Any] = (None, None, None)
        # Set by the framework integrations (`_training.BatchRecorder`): the first record of an
        # (epoch, id) wins, later ones are dropped instead of refused as duplicates; applied to
        # a block at once, in the order of the calls.
        self._first: FirstWins | None = None
        # Which call of its epoch a batch is (named by errors found later).
        self._call_epoch: int | None = None
        self._call_index = 0
        # The engine's checks of each batch; it remembers the current epoch's ids.
        self._checker = _core.BatchChecker(
            kind=self._kind, n_examples=self._n_examples, across_batches=self._check_duplicates
        )
        self._next_part: dict[int, int] = {}
        self._segments: list[Path] = []
        self._rows_written = 0
        self._closed = False
        self._schema: pa.Schema | None = None
        # GPU batches being copied to the host (torch tensors; see ``_device``).
        self._copies = CopyQueue()
        self._streams: dict[Any, Any] = {}

        existing = self._prepare_directory(mode, resume_epoch)
        if self._acc is None and accumulator is True:
            # n_examples was checked above; n_classes may still be unknown (made on first use).
            self._make_accumulator()
        if feed_existing and existing:
            self._feed_accumulator(existing)

    # ----------------------------------------------------------------------------------------
    # public API

    @property
    def path(self) -> Path:
        """The directory segments are published in."""
        return self._path

    @property
    def kind(self) -> str:
        """``"logits"`` or ``"probs"``: the outputs column's name."""
        return self._kind

    @property
    def n_classes(self) -> int | None:
        """Output columns per row, or None before the first :meth:`record`."""
        return self._n_classes

    @property
    def n_examples(self) -> int | None:
        """The size of the training set, or None when not given."""
        return self._n_examples

    @property
    def ids(self) -> str | None:
        """``"int64"`` or ``"string"``, or None before the first :meth:`record`."""
        return self._id_type

    @property
    def float_dtype(self) -> np.dtype[Any] | None:
        """The outputs column's float type, or None before the first :meth:`record`."""
        return self._float

    @property
    def segments(self) -> list[Path]:
        """Segments this recorder has published, in order (not those of an earlier run)."""
        return list(self._segments)

    @property
    def rows_written(self) -> int:
        """Rows in the segments this recorder has published."""
        return self._rows_written

    @property
    def rows_buffered(self) -> int:
        """Rows recorded but not yet published (lost if the process dies now)."""
        return self._buf_rows + (self._stage.rows if self._stage is not None else 0)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (or the ``with`` block left)."""
        return self._closed

    @property
    def accumulator(self) -> Accumulator | None:
        """The live accumulator (``accumulator=``), or None. The rows of the block being filled
        reach it when the block is checked (:meth:`datamap`, :meth:`end_epoch` and
        :meth:`flush` check it first)."""
        return self._acc

    def record(
        self,
        outputs: Any,
        labels: Any,
        *args: Any,
        epoch: int | None = None,
        ids: Any = None,
    ) -> None:
        """Records one minibatch: the model's outputs on some examples at ``epoch``.

        ``record(outputs, labels, epoch=epoch, ids=ids)``: the arguments of
        :meth:`fastcarto.Accumulator.update`, in the same order; ``epoch`` and ``ids`` are
        required, by keyword.

        Every row is checked before anything is kept: shapes, dtypes, a class count that
        matches earlier calls, finite outputs, probabilities that lie in [0, 1] and sum to 1
        (``kind="probs"``), labels in range, and ids not seen before in this epoch (within the
        call, and across the epoch's calls while ``check_duplicates`` is on). A call that raises
        records nothing. Labels that change between epochs, and duplicates across separate runs
        of an epoch, are found by the reader (or by the live accumulator).

        Parameters
        ----------
        outputs:
            Shape ``(rows, classes)`` float32/float64 logits or probabilities (float16 is
            widened): a numpy array, or any CPU tensor, read through DLPack (``__dlpack__``) or
            ``__array__`` without importing its framework (a CPU tensor is read in place, and
            one that requires grad is detached). PyTorch CUDA/ROCm tensors (outputs, labels or
            ids) are copied off the GPU without stalling training: on a side stream, into pinned
            host memory, after the work already queued on the current stream; the batch is
            recorded once its copy has completed (at a later call, or at :meth:`end_epoch`,
            :meth:`flush` or :meth:`close`, which wait for the copies), so its checks' errors
            are raised there. Other GPU arrays are refused: copy them to the host first. The
            values are copied, so the caller may reuse its buffers.
        labels:
            Shape ``(rows,)`` integer labels in ``[0, classes)`` (0/1 for one output column).
        epoch:
            Non-negative integer. Record epochs one after the other: a new epoch publishes the
            previous epoch's buffered rows (a segment never mixes epochs).
        ids:
            Shape ``(rows,)``: integer ids (int64 range; ``[0, n_examples)`` when
            ``n_examples`` is set) or strings, the same type in every call.
        args:
            Refused: a third positional argument raises ``TypeError`` naming the call's
            form (``epoch`` and ``ids`` are keyword-only).

        Raises
        ------
        TypeError
            ``epoch`` or ``ids`` missing, extra positional arguments, or arrays of the wrong
            type.
        ValueError
            Shapes or a class count that do not match, or a closed recorder.
        fastcarto.EpochOrderError
            An id recorded twice in the epoch.
        fastcarto.FastcartoError
            An id outside ``[0, n_examples)``.
        fastcarto.NonFiniteError
            A NaN or infinite output.
        fastcarto.InvalidProbabilitiesError
            ``kind="probs"`` rows outside [0, 1] or not summing to 1.
        fastcarto.LabelError
            A label out of range (or, with a live accumulator, one that changed).

        Notes
        -----
        Every row is checked before it is kept: shapes, dtypes and a class count that matches
        earlier calls at the call; finite outputs, probabilities that lie in [0, 1] and sum to 1
        (``kind="probs"``), labels in range, and ids not seen before in this epoch (within the
        call, and across the epoch's calls while ``check_duplicates`` is on) by the engine,
        once per block of rows (see ``eager_checks``): a batch that fails is not recorded, and
        its error names it (its epoch and its number among the epoch's calls); a call that
        raises at the call records nothing. Labels that change between epochs, and duplicates
        across separate runs of an epoch, are found by the reader (or by the live
        accumulator).

        Examples
        --------
        >>> import tempfile, numpy as np, fastcarto
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rec = fastcarto.Recorder(tmp.name, kind="probs", n_examples=2, accumulator=True)
        >>> rec.record(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1], epoch=0, ids=[0, 1])
        >>> rec.rows_buffered
        2
        >>> rec.close()
        >>> tmp.cleanup()
        """
        # `epoch` and `ids` default to None only so that a positional call in the order
        # record(epoch, ids, outputs, labels) gets this message rather than Python's
        # "takes 3 positional arguments but 5 were given".
        if args or epoch is None or ids is None:
            raise TypeError(
                "Recorder.record takes (outputs, labels, *, epoch, ids): call "
                "rec.record(outputs, labels, epoch=epoch, ids=ids)"
                + (
                    f"; got {2 + len(args)} positional arguments (the order "
                    "record(epoch, ids, outputs, labels) is no longer accepted)"
                    if args
                    else f"; {'epoch=' if epoch is None else 'ids='} is missing"
                )
            )
        if self._closed:
            self._check_open()
        if type(epoch) is not int or not 0 <= epoch < 2**32 - 1:
            epoch = check_epoch(epoch)
        if epoch != self._call_epoch:
            self._call_epoch, self._call_index = epoch, 0
        call = self._call_index
        self._call_index += 1
        o, lab, i = _fast_host(outputs), _fast_host(labels), _fast_host(ids)
        stage = self._stage
        if (
            stage is not None
            and stage.epoch == epoch
            and o is not None
            and lab is not None
            and i is not None
            and not self._copies.queue
        ):
            # The common call: into the block being filled, as the general path below would
            # (a batch of the block's types and shape that fits; `_simple_batch` decides once
            # per combination of dtypes and shapes, and the last one is compared first, by
            # identity: numpy's built-in dtypes are singletons).
            rows = o.shape[0]
            start = stage.rows
            stop = start + rows
            last = self._last_simple
            if (
                0 < rows
                and stop < stage.capacity
                and lab.shape[0] == rows
                and i.shape[0] == rows
                and (
                    (
                        o.dtype is last[0]
                        and lab.dtype is last[1]
                        and i.dtype is last[2]
                        and o.ndim == 2
                        and lab.ndim == 1
                        and i.ndim == 1
                        and o.shape[1] == self._n_classes
                    )
                    or self._is_simple(o, lab, i)
                )
            ):
                stage.outputs[start:stop] = o
                stage.labels[start:stop] = lab
                stage.ids[start:stop] = i
                stage.calls.append((start, stop, call))
                stage.rows = stop
                return
        if o is None or lab is None or i is None:
            if torch_gpu_tensor(outputs) or torch_gpu_tensor(labels) or torch_gpu_tensor(ids):
                # Copied off the GPU without stalling training; recorded once the copy is done.
                self._record_copied(wait=False)
                self._copies.push(start_copy(outputs, labels, ids, epoch, self._streams, call))
                return
            o, lab, i = outputs, labels, ids
        if len(self._copies):
            self._record_copied(wait=True)  # a host batch keeps its place after GPU ones
        self._record_host(o, lab, epoch, i, call)

    def _is_simple(self, o: Any, lab: Any, i: Any) -> bool:
        """Whether numpy arrays of these dtypes and shapes were accepted by `_simple_batch`
        before (then the last accepted)."""
        if _signature(o, lab, i) not in self._simple:
            return False
        self._last_simple = (o.dtype, lab.dtype, i.dtype)
        return True

    def _record_copied(self, *, wait: bool) -> None:
        """Records the GPU batches whose copies to the host are complete (all, with ``wait``)."""
        for item in self._copies.ready(wait=wait):
            self._record_host(item.outputs, item.labels, item.epoch, item.ids, item.call)

    def _record_host(self, outputs: Any, labels: Any, epoch: int, ids: Any, call: int) -> None:
        if not self._eager and self._schema is not None and self._id_type == "int64":
            simple = _simple_batch(outputs, labels, ids, self._n_classes)
            if simple and self._stage_rows(outputs, labels, ids, epoch, call):
                # `record`'s fast path takes batches of these types and shape from now on.
                self._simple.add(_signature(outputs, labels, ids))
                self._last_simple = (outputs.dtype, labels.dtype, ids.dtype)
                return
        arr, n_classes, float_dt = self._outputs(outputs)
        rows = arr.shape[0]
        lab = self._labels(labels, rows, n_classes)
        id_arr, id_type = self._ids(ids, rows)
        if (
            not self._eager
            and self._schema is not None
            and id_type == "int64"
            and rows
            and self._stage_rows(arr, lab, id_arr, epoch, call)
        ):
            return
        # Checked at this call: the first batch (it fixes the recording's types), string ids,
        # empty batches, batches larger than a block, and everything with eager_checks.
        self._commit_stage()
        if self._first is not None:
            if not isinstance(id_arr, np.ndarray):
                raise TypeError("example ids must be integers, got strings")
            keep = self._first.keep(id_arr, epoch)
            if not keep.all():
                arr, lab, id_arr = arr[keep], lab[keep], id_arr[keep]
        self._record_now(arr, lab, id_arr, id_type, n_classes, float_dt, epoch)

    def _record_now(
        self,
        arr: npt.NDArray[np.floating[Any]],
        lab: npt.NDArray[np.int64],
        id_arr: npt.NDArray[np.int64] | pa.Array,
        id_type: str,
        n_classes: int,
        float_dt: np.dtype[Any],
        epoch: int,
    ) -> None:
        rows = arr.shape[0]
        # Finite outputs, probabilities, label range, ids in range and not seen this epoch.
        self._checker.check(arr, lab, id_arr, epoch=epoch)

        # Everything is valid: commit, in an order that keeps the accumulator and the files
        # consistent (the previous epoch is published before the new rows touch anything).
        if self._buf_epoch is not None and self._buf_epoch != epoch:
            self._flush()
        first = self._schema is None
        if first:
            previous = (self._n_classes, self._float, self._id_type, self._acc)
            self._n_classes, self._float, self._id_type = n_classes, float_dt, id_type
            if self._live and self._acc is None:
                self._make_accumulator()
        if self._acc is not None and rows:
            assert isinstance(id_arr, np.ndarray)
            try:
                self._acc.update(arr, lab, epoch=epoch, ids=id_arr)
            except BaseException:
                if first:
                    self._n_classes, self._float, self._id_type, self._acc = previous
                raise
        if first:
            self._schema = self._make_schema()
        self._checker.add(id_arr, epoch=epoch)
        if rows:
            self._buffer(epoch, _Chunk(id_arr, lab, arr))

    # ----------------------------------------------------------------------------------------
    # the block of unchecked rows

    def _stage_rows(self, outputs: Any, labels: Any, ids: Any, epoch: int, call: int) -> bool:
        """Copies a batch of integer ids into the block (numpy arrays of the recording's
        shape; the copy converts their dtypes); False when it is larger than a block."""
        rows = int(outputs.shape[0])
        stage = self._stage
        if stage is not None and (stage.epoch != epoch or stage.rows + rows > stage.capacity):
            self._commit_stage()
            stage = None
        if stage is None:
            assert self._float is not None and self._n_classes is not None
            if self._buf_epoch is not None and self._buf_epoch != epoch:
                self._flush()  # a new epoch publishes the previous one's rows
            row_bytes = 16 + self._n_classes * self._float.itemsize
            capacity = min(BLOCK_ROWS, BLOCK_BYTES // row_bytes, self._room(row_bytes))
            if rows > capacity:
                return False
            stage = self._spare
            if (
                stage is not None
                and stage.capacity == capacity
                and stage.outputs.shape[1] == self._n_classes
                and stage.outputs.dtype == self._float
            ):
                self._spare = None
                stage.epoch, stage.rows, stage.calls = epoch, 0, []
            else:
                stage = _Stage.empty(epoch, capacity, self._n_classes, self._float)
            self._stage = stage
        start = stage.rows
        stop = start + rows
        stage.outputs[start:stop] = outputs
        stage.labels[start:stop] = labels
        stage.ids[start:stop] = ids
        stage.calls.append((start, stop, call))
        stage.rows = stop
        if stop == stage.capacity:
            self._commit_stage()
        return True

    def _commit_stage(self) -> None:
        """Checks the block's rows and buffers them. A bad batch is left out and its error is
        raised, naming the batch, after the block's other batches were kept."""
        stage = self._stage
        if stage is None or not stage.rows:
            self._stage = None
            return
        n, epoch = stage.rows, stage.epoch
        if self._buf_epoch is not None and self._buf_epoch != epoch:
            self._flush()  # the previous epoch's rows (on an error the block stays)
        self._stage = None
        out, lab, ids = stage.outputs[:n], stage.labels[:n], stage.ids[:n]
        calls = stage.calls
        error: tuple[Exception, int] | None = None
        if self._first is not None:
            out, lab, ids, calls, error = _first_records(self._first, out, lab, ids, calls, epoch)
        if error is None:
            try:
                self._admit(out, lab, ids, epoch)
            except Exception:
                pass
            else:
                if out.shape[0]:  # (first-wins may have dropped every row)
                    self._buffer(epoch, _Chunk(ids, lab, out), owned=True)
                self._buffered_blocks.append(stage)
                return
        # One batch or more is bad: find them, keeping the others, in order.
        for start, stop, call in calls:
            try:
                self._admit(out[start:stop], lab[start:stop], ids[start:stop], epoch)
            except Exception as exc:
                if error is None or call < error[1]:
                    error = (exc, call)
                continue
            if stop > start:
                piece = _Chunk(ids[start:stop], lab[start:stop], out[start:stop])
                self._buffer(epoch, piece, owned=True)
        self._buffered_blocks.append(stage)
        if error is not None:
            raise _named(error[0], epoch, error[1])

    def _admit(
        self,
        out: npt.NDArray[np.floating[Any]],
        lab: npt.NDArray[np.int64],
        ids: npt.NDArray[np.int64],
        epoch: int,
    ) -> None:
        """Checks rows of one epoch and takes them into the accumulator and the epoch's ids;
        changes nothing when it raises."""
        self._checker.check(out, lab, ids, epoch=epoch)
        if self._acc is not None:
            self._acc.update(out, lab, epoch=epoch, ids=ids)
        self._checker.add(ids, epoch=epoch)

    def end_epoch(self, epoch: int | None = None) -> None:
        """Publishes the buffered rows: call after an epoch's last :meth:`record`.

        Parameters
        ----------
        epoch:
            When given, must be the epoch of the buffered rows (a check that the loop and the
            recorder agree).

        Raises
        ------
        ValueError
            ``epoch`` differs from the buffered rows', or the recorder is closed.

        Examples
        --------
        >>> import tempfile, numpy as np, fastcarto
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rec = fastcarto.Recorder(tmp.name, kind="probs", n_examples=2, accumulator=True)
        >>> rec.record(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1], epoch=0, ids=[0, 1])
        >>> rec.end_epoch(0)
        >>> rec.rows_written, rec.rows_buffered
        (2, 0)
        >>> rec.close()
        >>> tmp.cleanup()
        """
        self._check_open()
        self._record_copied(wait=True)
        if epoch is not None:
            epoch = check_epoch(epoch)
            pending = self._stage.epoch if self._stage is not None else self._buf_epoch
            if pending is not None and pending != epoch:
                raise ValueError(f"end_epoch({epoch}) but the buffered rows are of epoch {pending}")
        try:
            self._commit_stage()
        finally:
            self._flush()  # the good rows, even when a batch of the block was bad

    def flush(self) -> None:
        """Publishes the buffered rows as a segment now (nothing happens when none are).

        Raises
        ------
        ValueError
            The recorder is closed.

        Examples
        --------
        >>> import tempfile, numpy as np, fastcarto
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rec = fastcarto.Recorder(tmp.name, kind="probs", n_examples=2, accumulator=True)
        >>> rec.record(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1], epoch=0, ids=[0, 1])
        >>> rec.flush()
        >>> [p.name for p in rec.segments]
        ['epoch-000000-part-00000.arrows']
        >>> rec.close()
        >>> tmp.cleanup()
        """
        self._check_open()
        self._record_copied(wait=True)
        try:
            self._commit_stage()
        finally:
            self._flush()

    def close(self) -> None:
        """Publishes the buffered rows and closes the recorder (calling it again does nothing).

        Examples
        --------
        >>> import tempfile, numpy as np, fastcarto
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rec = fastcarto.Recorder(tmp.name, kind="probs", n_examples=2, accumulator=True)
        >>> rec.record(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1], epoch=0, ids=[0, 1])
        >>> rec.close()
        >>> rec.closed, rec.rows_written
        (True, 2)
        >>> tmp.cleanup()
        """
        if self._closed:
            return
        try:
            self._record_copied(wait=True)
        finally:
            try:
                self._commit_stage()
            finally:
                try:
                    self._flush()
                finally:
                    self._closed = True

    def datamap(self, *, ddof: int = 0) -> DataMap:
        """The map of everything recorded so far, from the live accumulator (no reading).

        Parameters
        ----------
        ddof:
            As in :meth:`fastcarto.Accumulator.finalize`.

        Returns
        -------
        DataMap
            One row per example of ``0..n_examples-1``.

        Raises
        ------
        ValueError
            The recorder has no live accumulator (``accumulator=True`` and ``n_examples``).
        fastcarto.EmptyInputError
            Nothing has been recorded yet.

        See Also
        --------
        fastcarto.compute : the map read back from the directory.

        Examples
        --------
        >>> import tempfile, numpy as np, fastcarto
        >>> tmp = tempfile.TemporaryDirectory()
        >>> rec = fastcarto.Recorder(tmp.name, kind="probs", n_examples=2, accumulator=True)
        >>> rec.record(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 1], epoch=0, ids=[0, 1])
        >>> rec.datamap().to_pandas()["confidence"].tolist()
        [0.9, 0.7]
        >>> rec.close()
        >>> tmp.cleanup()
        """
        if self._acc is None:
            if self._live:
                raise _core.EmptyInputError("nothing has been recorded yet")
            raise ValueError(
                "datamap() needs a live accumulator: create the recorder with accumulator=True "
                "(and n_examples=), or read the directory back with fastcarto.compute"
            )
        check_ddof(ddof)
        if not self._closed:
            self._commit_stage()
        return self._acc.finalize(ddof=ddof)

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Recorder holds an open file and cannot be pickled: create one in the process "
            "that trains (each with its own file or shard name)"
        )

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Rows recorded before an exception in the training loop are valid: keep them.
        self.close()

    def __repr__(self) -> str:
        parts = [repr(str(self._path)), self._kind]
        if self._n_classes is not None:
            parts.append(f"{self._n_classes} classes")
        if self._id_type is not None:
            parts.append(f"{self._id_type} ids")
        state = "closed" if self._closed else "open"
        n = len(self._segments)
        status = f"{state}, {n} segment{'s' if n != 1 else ''}, {self._rows_written:,} rows written"
        if self.rows_buffered:
            status += f", {self.rows_buffered:,} buffered"
        return f"Recorder({', '.join(parts)}; {status})"

    # ----------------------------------------------------------------------------------------
    # input conversion and checks (no state changes)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the recorder of {self._path} is closed")

    def _outputs(self, outputs: Any) -> tuple[npt.NDArray[np.floating[Any]], int, np.dtype[Any]]:
        arr = _host_array(outputs, "outputs")
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (2, 4, 8):
            raise TypeError(
                f"outputs must hold float32 or float64 values, got dtype {arr.dtype}; "
                "convert with .float() / .astype(np.float32)"
            )
        if arr.ndim == 1 and self._n_classes == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            hint = ""
            if arr.ndim == 1:
                hint = (
                    "; for a binary model with one output column pass n_classes=1 to the "
                    "Recorder or outputs[:, None]"
                )
            raise ValueError(f"outputs must have shape (rows, classes), got {arr.shape}{hint}")
        n_classes = int(arr.shape[1])
        if n_classes < 1:
            raise ValueError(f"outputs must have at least one column, got shape {arr.shape}")
        if self._n_classes is not None and n_classes != self._n_classes:
            raise ValueError(
                f"outputs have {n_classes} columns but the recorder has {self._n_classes} "
                "classes (the class count cannot change within a recording)"
            )
        target = self._float
        if target is None:
            target = (
                np.dtype(np.float32) if arr.dtype.itemsize == 2 else arr.dtype.newbyteorder("=")
            )
        if arr.dtype != target:
            arr = arr.astype(target)
        return np.ascontiguousarray(arr), n_classes, target

    def _labels(self, labels: Any, rows: int, n_classes: int) -> npt.NDArray[np.int64]:
        if labels is None:
            raise ValueError("labels are required: pass one integer label per row")
        arr = _host_array(labels, "labels")
        if arr.dtype == np.bool_ or (arr.size == 0 and arr.dtype.kind == "f"):  # or `[]`
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
        if arr.ndim == 2 and arr.shape == (rows, n_classes) and n_classes > 1:
            raise NotImplementedError(
                "multi-label targets of shape (rows, classes) cannot be recorded yet; use "
                "fastcarto.Accumulator(..., multilabel=True) in the training loop instead"
            )
        if arr.shape != (rows,):
            raise ValueError(
                f"labels must have shape (rows,) = ({rows},) to match outputs, got {arr.shape}"
            )
        # The range is checked with the outputs (`_core.BatchChecker`).
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _ids(self, ids: Any, rows: int) -> tuple[npt.NDArray[np.int64] | pa.Array, str]:
        if ids is None:
            raise ValueError("ids are required: pass one id per row")
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if isinstance(ids, pa.Array):
            if pa.types.is_integer(ids.type):
                if ids.null_count:
                    raise ValueError("ids contain nulls")
                arr: Any = ids.to_numpy(zero_copy_only=False)
            elif pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
                arr = ids.cast(pa.string())
            else:
                raise TypeError(f"ids must be integers or strings, got Arrow type {ids.type}")
        elif isinstance(ids, (list, tuple)) and ids and all(isinstance(v, str) for v in ids):
            arr = pa.array(ids, type=pa.string())
        elif isinstance(ids, (list, tuple)) and any(isinstance(v, str) for v in ids):
            # numpy would turn the integers into strings ("0"): ids are one type or the other.
            odd = next(v for v in ids if not isinstance(v, str))
            raise TypeError(f"ids must be all integers or all strings; got {odd!r} among strings")
        else:
            arr = _host_array(ids, "ids")
            if arr.size == 0 and arr.dtype.kind == "f":  # `[]`
                arr = arr.astype(np.int64)
            if arr.dtype.kind in "UO":
                if arr.ndim != 1:
                    raise ValueError(f"ids must have shape (rows,) = ({rows},), got {arr.shape}")
                try:
                    arr = pa.array(arr, type=pa.string(), from_pandas=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise TypeError(f"ids must be integers or strings ({exc})") from exc
        if isinstance(arr, pa.Array):
            if len(arr) != rows:
                raise ValueError(f"got {len(arr)} ids for {rows} rows of outputs")
            if arr.null_count:
                raise ValueError("ids contain None / null values")
            id_type = "string"
        else:
            if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
                what = "non-integer numbers" if arr.dtype.kind == "f" else f"dtype {arr.dtype}"
                raise TypeError(f"ids must be integers or strings, got {what}")
            if arr.shape != (rows,):
                raise ValueError(f"ids must have shape (rows,) = ({rows},), got {arr.shape}")
            if rows and arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
                raise ValueError(f"id {arr.max()} does not fit in int64")
            arr = np.ascontiguousarray(arr, dtype=np.int64)
            id_type = "int64"
        if self._id_type is not None and id_type != self._id_type:
            if rows == 0:  # an empty batch has no id type of its own
                if self._id_type == "string":
                    return pa.array([], pa.string()), "string"
                return np.zeros(0, dtype=np.int64), "int64"
            raise TypeError(
                f"ids are {id_type} but the recorder records {self._id_type} ids "
                "(the id type cannot change within a recording)"
            )
        if id_type == "string" and self._live:
            raise TypeError(
                "a live accumulator needs integer ids 0 to n_examples - 1, got string ids"
            )
        return arr, id_type

    # ----------------------------------------------------------------------------------------
    # accumulator

    def _adopt_accumulator(self, acc: Accumulator) -> Accumulator:
        if acc.kind != self._kind:
            raise ValueError(f"the accumulator is for {acc.kind} but the recorder for {self._kind}")
        if acc.multilabel:
            raise NotImplementedError("the recorder does not record multi-label targets yet")
        if self._n_examples is None:
            self._n_examples = acc.n_examples
        elif self._n_examples != acc.n_examples:
            raise ValueError(
                f"n_examples={self._n_examples} but the accumulator has {acc.n_examples} examples"
            )
        if self._n_classes is None:
            self._n_classes = acc.n_classes
        elif self._n_classes != acc.n_classes:
            raise ValueError(
                f"n_classes={self._n_classes} but the accumulator has {acc.n_classes} classes"
            )
        return acc

    def _make_accumulator(self) -> None:
        if self._n_classes is not None and self._n_examples is not None:
            kind: Kind = "logits" if self._kind == "logits" else "probs"
            self._acc = Accumulator(self._n_examples, self._n_classes, kind=kind)

    def _feed_accumulator(self, segments: list[Path]) -> None:
        """Updates the new live accumulator with an earlier run's segments (mode='append')."""
        if self._id_type == "string":
            raise ValueError(
                "a live accumulator needs integer ids, but the existing segments have string ids"
            )
        acc = self._acc
        if acc is None:
            return
        keyed = sorted(segments, key=lambda p: segment_key(p.name))
        col = self._kind
        for seg in keyed:
            for batch in read_batches(seg):
                if not batch.num_rows:
                    continue
                epochs = batch.column("epoch").to_numpy()
                values = batch.column(col).flatten().to_numpy()
                outputs = values.reshape(batch.num_rows, acc.n_classes)
                acc.update(
                    outputs,
                    batch.column("label").to_numpy(),
                    epoch=int(epochs[0]),
                    ids=batch.column("id").to_numpy(),
                )

    # ----------------------------------------------------------------------------------------
    # the directory

    def _prepare_directory(self, mode: str, resume_epoch: int | None) -> list[Path]:
        """Checks (and in mode 'overwrite' / resume, cleans) the directory; returns the
        segments of an earlier run that this recorder continues (mode 'append'), whose part
        numbers it continues and whose schema it takes."""
        ours = prepare_directory(self._path, self._shard, mode, resume_epoch, fsync=self._fsync)
        for seg in ours:
            epoch, part = segment_key(seg.name)
            self._next_part[epoch] = max(self._next_part.get(epoch, 0), part + 1)
            self._adopt_schema(seg)
        return ours

    def _adopt_schema(self, seg: Path) -> None:
        """Takes (or checks against) an earlier run's segment schema, for mode='append'."""
        self._n_classes, self._float, self._id_type = adopt_schema(
            seg, self._kind, self._n_classes, self._float, self._id_type
        )
        if self._live and self._id_type == "string":
            raise ValueError(
                "a live accumulator needs integer ids, but the existing segments have string ids"
            )
        self._schema = self._make_schema()

    def _make_schema(self) -> pa.Schema:
        assert self._n_classes is not None and self._float is not None
        return make_schema(self._kind, self._n_classes, self._float, self._id_type or "int64")

    # ----------------------------------------------------------------------------------------
    # buffering and publishing

    def _buffer(self, epoch: int, chunk: _Chunk, *, owned: bool = False) -> None:
        """Adds ``chunk`` (views of the caller's arrays unless ``owned``), publishing full
        buffers."""
        n = len(chunk)
        row_bytes = chunk.nbytes / n
        start = 0
        borrowed = False
        while start < n:
            room = self._room(row_bytes)
            if room <= 0:
                if self._buf_rows:
                    self._flush()
                    continue
                room = 1  # one row larger than the whole buffer
            take = min(room, n - start)
            piece = chunk if take == n else chunk.slice(start, start + take)
            self._chunks.append(piece)
            self._buf_epoch = epoch
            self._buf_rows += take
            self._buf_bytes += piece.nbytes
            start += take
            borrowed = True
            if self._room(row_bytes) <= 0:
                self._flush()
                borrowed = False
        if borrowed and not owned:
            # The caller may reuse its arrays once we return: keep a copy of what stays.
            self._chunks[-1] = self._chunks[-1].owned()

    def _room(self, row_bytes: float) -> int:
        room = math.floor((self._buffer_bytes - self._buf_bytes) / row_bytes)
        if self._buffer_rows is not None:
            room = min(room, self._buffer_rows - self._buf_rows)
        return room

    def _flush(self) -> None:
        if not self._buf_rows:
            return
        assert self._buf_epoch is not None and self._schema is not None
        epoch = self._buf_epoch
        part = self._next_part.get(epoch, 0)
        final = self._path / segment_name(epoch, part, self._shard)
        # On an error nothing is published; the rows stay buffered for a later flush.
        publish(
            final,
            self._schema,
            self._batches(epoch),
            options=self._write_options,
            fsync=self._fsync,
        )
        self._next_part[epoch] = part + 1
        self._segments.append(final)
        self._rows_written += self._buf_rows
        self._chunks = []
        self._buf_rows = 0
        self._buf_bytes = 0
        self._buf_epoch = None
        # Every block whose rows were all buffered is published now: nothing refers to its
        # memory any more (the segment was written from it; the accumulator copies).
        if self._buffered_blocks:
            self._spare = self._buffered_blocks[-1]
            self._buffered_blocks = []

    def _batches(self, epoch: int) -> Iterator[pa.RecordBatch]:
        """The buffered rows as record batches of about ``BATCH_ROWS`` rows."""
        pending: list[_Chunk] = []
        rows = 0
        for chunk in self._chunks:
            for start in range(0, len(chunk), BATCH_ROWS):
                piece = chunk.slice(start, start + BATCH_ROWS)
                pending.append(piece)
                rows += len(piece)
                if rows >= BATCH_ROWS:
                    yield self._batch(epoch, pending)
                    pending, rows = [], 0
        if pending:
            yield self._batch(epoch, pending)

    def _batch(self, epoch: int, chunks: list[_Chunk]) -> pa.RecordBatch:
        assert self._schema is not None and self._n_classes is not None
        if len(chunks) == 1:
            labels, outputs, ids = chunks[0].labels, chunks[0].outputs, chunks[0].ids
        else:
            labels = np.concatenate([c.labels for c in chunks])
            outputs = np.concatenate([c.outputs for c in chunks])
            if isinstance(chunks[0].ids, np.ndarray):
                ids = np.concatenate([c.ids for c in chunks])
            else:
                ids = pa.concat_arrays([c.ids for c in chunks])
        return record_batch(self._schema, epoch, ids, labels, outputs)


# --------------------------------------------------------------------------------------------
# helpers


def _check_positive(
    name: str, value: object, *, optional: bool = False, most: int = 2**63 - 1
) -> None:
    if not (optional and value is None):
        check_positive(name, value, most=most)


def _fast_host(obj: Any) -> Any:
    """A numpy array as it is, a CPU torch tensor's numpy view, else None (the general path)."""
    if type(obj) is np.ndarray:
        return obj
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor) and obj.is_cpu:
        try:
            return (obj.detach() if obj.requires_grad else obj).numpy()
        except (TypeError, RuntimeError):  # bfloat16, conjugate or negative views, sparse
            return None
    return None


def _simple_batch(outputs: Any, labels: Any, ids: Any, n_classes: int | None) -> bool:
    """Whether a batch's arrays need no conversion beyond a dtype cast into the block: 2-D
    floats of the recording's class count, and 1-D signed (or small unsigned) integers."""
    if not (type(outputs) is np.ndarray and type(labels) is np.ndarray and type(ids) is np.ndarray):
        return False
    rows = outputs.shape[0]
    return (
        outputs.ndim == 2
        and outputs.shape[1] == n_classes
        and outputs.dtype.kind == "f"
        and outputs.dtype.itemsize in (2, 4, 8)
        and rows > 0
        and labels.shape == (rows,)
        and ids.shape == (rows,)
        and labels.dtype.kind in "iu"
        and ids.dtype.kind in "iu"
        and labels.dtype != np.uint64  # could wrap to negative in the int64 copy
        and ids.dtype != np.uint64
    )


def _first_records(
    first: FirstWins,
    out: npt.NDArray[np.floating[Any]],
    lab: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    calls: list[tuple[int, int, int]],
    epoch: int,
) -> tuple[
    npt.NDArray[np.floating[Any]],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    list[tuple[int, int, int]],
    tuple[Exception, int] | None,
]:
    """A block's rows without the repeats of an (epoch, id) recorded before (the first record
    wins, in the order of the calls), the calls' rows renumbered, and the first call whose ids
    ``first`` refused (its rows are dropped) with its error."""
    error: tuple[Exception, int] | None = None
    try:
        keep = first.keep(ids, epoch)  # the whole block at once: rows are in call order
    except Exception:
        # Some call's ids are refused (checked before anything is remembered): call by call.
        keep = np.zeros(ids.shape[0], dtype=bool)
        for start, stop, call in calls:
            try:
                keep[start:stop] = first.keep(ids[start:stop], epoch)
            except Exception as exc:
                if error is None:
                    error = (exc, call)
    if keep.all():
        return out, lab, ids, calls, error
    at = np.concatenate([[0], np.cumsum(keep)])
    renumbered = [(int(at[start]), int(at[stop]), call) for start, stop, call in calls]
    return out[keep], lab[keep], ids[keep], renumbered, error


def _signature(o: Any, lab: Any, i: Any) -> tuple[Any, ...]:
    """What `_simple_batch` decides on, besides matching row counts."""
    return (o.dtype, o.shape[1:], lab.dtype, lab.ndim, i.dtype, i.ndim)


def _named(exc: Exception, epoch: int, call: int) -> Exception:
    """``exc`` (a batch's check error) with the batch it came from in its message."""
    # No semicolon: the engine's hints follow one, and this names the batch only.
    message = (
        f"{exc} (in the batch of record call {call} of epoch {epoch}, counting from 0: batches "
        "are checked a block of rows at a time, so a later call raises this. That batch was "
        "not recorded, the others were. eager_checks=True raises at the call itself)"
    )
    try:
        named = type(exc)(message)
    except Exception:
        return exc
    named.__cause__ = exc
    return named


def _host_array(obj: Any, what: str) -> npt.NDArray[Any]:
    """A numpy view (or copy) of ``obj``: numpy arrays as they are, framework tensors through
    DLPack or ``__array__`` (no framework is imported), sequences through ``np.asarray``."""
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, (str, bytes, os.PathLike)):
        raise TypeError(f"{what}: expected an array or a tensor, got {type(obj).__name__}")
    if getattr(obj, "requires_grad", False) is True and callable(getattr(obj, "detach", None)):
        obj = obj.detach()  # a view without the autograd graph; DLPack refuses the tensor
    device = getattr(obj, "__dlpack_device__", None)
    if device is not None and hasattr(obj, "__dlpack__"):
        try:
            device_type, device_id = (int(v) for v in device())
        except Exception as exc:
            raise TypeError(f"{what}: could not query the tensor's device ({exc})") from exc
        if device_type not in _HOST_DEVICES:
            name = _DEVICE_NAMES.get(device_type, f"non-CPU (DLPack device type {device_type})")
            raise TypeError(
                f"{what} live on a {name} device (device {device_id}); the recorder reads host "
                "memory: pass tensor.detach().cpu() (it copies the values anyway)"
            )
        try:
            return np.from_dlpack(obj)
        except Exception as exc:
            # e.g. bfloat16, which numpy does not have, or a tensor that requires grad.
            if hasattr(obj, "__array__"):
                try:
                    return np.asarray(obj)
                except Exception:
                    pass
            raise TypeError(
                f"{what} could not be read through DLPack ({exc}); pass a numpy array or a CPU "
                "tensor (detach it first; convert bfloat16 with .float())"
            ) from exc
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(
            f"{what} could not be read as an array ({exc}); pass a numpy array or a CPU tensor "
            "(detach it first)"
        ) from exc
