"""p(gold) trajectories: the chosen examples' outputs read back from what a map was computed
from (a dense array, a ``.npy`` file or a long table), and their plot.

p(gold) at each epoch is the engine's ``confidence`` of that single observation; no metric is
re-derived here. matplotlib is imported only when a plot is drawn (through ``_plots``' helpers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._core import EpochOrderError, InvalidProbabilitiesError, LabelError, prob_sum_tolerance
from ._dense import dense_table
from ._inputs import KINDS, check_choice
from ._metric_table import MetricTable
from ._plots import OKABE_ITO, _figure, _finish
from ._tables import as_arrow_stream, is_table

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from matplotlib.figure import Figure

    from ._inputs import Kind


def is_table_source(source: Any) -> bool:
    """Whether ``source`` is read as a long table (one row per (epoch, example)): an Arrow /
    Parquet file, a directory of them, or an object speaking the Arrow PyCapsule stream
    interface."""
    if isinstance(source, (str, os.PathLike)):
        # As `compute` decides: everything but a `.npy` array goes to the readers' discovery
        # (files, directories, globs), which names what it cannot read.
        path = Path(source)
        return path.is_dir() or path.suffix.lower() != ".npy"
    return is_table(source) and not isinstance(source, np.ndarray)


def dense_shape(source: Any) -> tuple[int, ...] | None:
    """The shape of a dense source (an array, or a ``.npy`` path, of which only the header is
    read), or None when it has none."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() != ".npy" or not path.is_file():
            return None
        shape: tuple[int, ...] = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return shape
    try:
        return tuple(np.shape(source))
    except (TypeError, ValueError):  # ragged nested lists: the reader reports them
        return None


def trajectories(
    ids: npt.ArrayLike,
    source: Any,
    labels: npt.ArrayLike | None = None,
    *,
    kind: Kind,
) -> pd.DataFrame:
    """p(gold) at every epoch for the examples ``ids``: a DataFrame indexed by epoch, one
    column per id (in the order given).

    ``source`` is what the map was computed from: a dense ``(epochs, examples, classes)``
    array or ``.npy`` path (``ids`` are then row positions and ``labels`` the examples'
    labels), or a long table — an Arrow IPC / Parquet file, a directory of them, or any Arrow
    stream — with columns ``epoch``, ``id``, ``label`` and ``logits`` or ``probs`` (a list of
    floats per row), whose ``id`` values are matched and whose labels are used. Only the chosen
    examples are read. p(gold) at each epoch is the engine's ``confidence`` of that single
    observation, so it agrees with the map exactly.

    Parameters
    ----------
    ids:
        The examples: row positions for a dense source, ``id`` values for a long table.
    source:
        The outputs, as above.
    labels:
        The examples' labels, for a dense source (a long table carries its own).
    kind:
        ``"logits"`` or ``"probs"``.

    Returns
    -------
    pandas.DataFrame
        Indexed by epoch, one column per id, in the order given.

    Raises
    ------
    ValueError
        No ``labels`` for a dense source, labels of the wrong length, or ids that are not in
        a long table.
    IndexError
        A row position outside a dense source.
    fastcarto.FileFormatError
        A file that is not in a format fastcarto reads.

    See Also
    --------
    plot_trajectories, DataMap.plot_trajectories

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> z = np.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    >>> fastcarto.trajectories([1], z, [1, 1], kind="logits").round(3)[1].tolist()
    [0.731, 0.269]
    """
    check_choice("kind", kind, KINDS)
    frame, _ = _trajectories(ids, source, labels, kind=kind)
    return frame


def _trajectories(
    ids: npt.ArrayLike, source: Any, labels: npt.ArrayLike | None, *, kind: Kind
) -> tuple[pd.DataFrame, dict[Any, Any]]:
    """The trajectories and each id's label."""
    import pandas as pd

    wanted = np.atleast_1d(np.asarray(ids))
    if wanted.ndim != 1 or wanted.size == 0:
        raise ValueError("ids must be a non-empty list of example ids")
    repeated = pd.Index(wanted)[pd.Index(wanted).duplicated()]
    if len(repeated):
        raise ValueError(f"ids must be distinct; {repeated.tolist()[0]!r} is given more than once")
    if is_table_source(source):
        if labels is not None:
            raise ValueError("labels come from the table's 'label' column; do not pass labels=")
        epoch, row_ids, row_labels, outputs = _read_long_rows(source, wanted, kind)
    else:
        epoch, row_ids, row_labels, outputs = _read_dense_rows(source, wanted, labels)
    # One engine pass over the chosen (epoch, example) observations, each as its own example:
    # its confidence is p(gold) at that epoch.
    try:
        table = dense_table(outputs[None], row_labels, kind=kind, nan_policy="omit")
    except (LabelError, InvalidProbabilitiesError) as err:
        # The engine saw each observation as its own example, so its message names a row of
        # this internal layout; name the epoch and id the user asked for instead.
        row = _first_rejected_row(err, outputs, row_labels)
        if row is None:
            raise
        ident = row_ids[row : row + 1].tolist()[0]
        if isinstance(err, LabelError):
            top = max(outputs.shape[1], 2) - 1
            message = (
                f"label {int(row_labels[row])} of id {ident!r} is out of range for "
                f"{outputs.shape[1]} classes (valid labels: 0 to {top})"
            )
        else:
            message = (
                f"the outputs of id {ident!r} at epoch {int(epoch[row])} are not probabilities "
                "(values in [0, 1] that sum to 1); if these are logits, pass kind='logits'"
            )
        raise type(err)(message) from err
    gold = MetricTable(table, kind=kind)["confidence"]
    long = pd.DataFrame({"epoch": epoch, "id": row_ids, "p": gold})
    repeated_rows = long.duplicated(["epoch", "id"]).to_numpy()
    if repeated_rows.any():
        at = int(np.argmax(repeated_rows))
        dup_id, dup_epoch = row_ids.tolist()[at], int(epoch[at])
        shown = repr(dup_id) if isinstance(dup_id, str) else dup_id
        raise EpochOrderError(
            f"example with id {shown} has more than one row for epoch {dup_epoch} (duplicate row)"
        )
    frame = long.pivot(index="epoch", columns="id", values="p")
    order = wanted.tolist()
    frame = frame.reindex(columns=order)
    frame.columns.name = "id"
    label_of = dict(zip(row_ids.tolist(), row_labels.tolist(), strict=True))
    return frame, label_of


def _first_rejected_row(
    err: Exception, outputs: npt.NDArray[Any], labels: npt.NDArray[np.int64]
) -> int | None:
    """The first row the engine rejected (a label out of range, or, for probabilities, a row
    outside [0, 1] or off a sum of 1 by more than the engine's tolerance), or None."""
    if isinstance(err, LabelError):
        top = max(outputs.shape[1], 2) - 1  # one column: a binary model's 0/1 labels
        bad = (labels < 0) | (labels > top)
    else:
        tol = prob_sum_tolerance(outputs.shape[1], outputs.dtype.itemsize)
        total = outputs.sum(axis=1, dtype=np.float64)
        bad = ((outputs < 0) | (outputs > 1)).any(axis=1)
        if outputs.shape[1] > 1:
            bad |= np.abs(total - 1.0) > tol
    return int(np.argmax(bad)) if bad.any() else None


def _read_dense_rows(
    source: Any, wanted: npt.NDArray[Any], labels: npt.ArrayLike | None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any]]:
    if isinstance(source, (str, os.PathLike)):
        # A `.npy` file (`is_table_source` sends every other path to the readers).
        arr: npt.NDArray[Any] = np.load(source, mmap_mode="r", allow_pickle=False)
    else:
        arr = np.asarray(source)
    if arr.ndim != 3:
        raise ValueError(f"outputs must have shape (epochs, examples, classes), got {arr.shape}")
    if labels is None:
        raise ValueError("pass labels= (one label per example) with an array source")
    y = np.asarray(labels)
    n_epochs, n_examples, n_classes = arr.shape
    if y.shape != (n_examples,):
        raise ValueError(
            f"labels has shape {y.shape} but the source has {n_examples} examples (outputs of "
            f"shape {arr.shape}): pass the labels and the outputs of the same run"
        )
    if wanted.dtype.kind not in "iu":
        raise TypeError("ids of an array source are row positions (integers)")
    # Ids are the map's ids, the rows' positions: no Python-style negative indices, whose
    # curves would be labelled with an id that no example has.
    outside = wanted[(wanted < 0) | (wanted >= n_examples)]
    if outside.size:
        raise IndexError(
            f"ids of an array source are row positions 0 to {n_examples - 1}, got {outside[0]}"
        )
    rows = wanted
    # Only the chosen rows are read (a memory map reads just those pages).
    picked = np.ascontiguousarray(arr[:, rows, :])
    epoch = np.repeat(np.arange(n_epochs), rows.size)
    return (
        epoch,
        np.tile(wanted, n_epochs),
        np.tile(y[rows], n_epochs).astype(np.int64),
        picked.reshape(n_epochs * rows.size, n_classes),
    )


def _read_long_rows(
    source: Any, wanted: npt.NDArray[Any], kind: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    epochs: list[npt.NDArray[Any]] = []
    ids: list[npt.NDArray[Any]] = []
    labels: list[npt.NDArray[Any]] = []
    outputs: list[npt.NDArray[Any]] = []
    width: int | None = None
    for batch in _long_batches(source, wanted, kind):
        missing = [c for c in ("epoch", "id", "label", kind) if c not in batch.schema.names]
        if missing:
            raise ValueError(
                f"the table lacks column(s) {', '.join(missing)}; it has "
                f"{', '.join(batch.schema.names)}"
            )
        try:
            keep = pc.is_in(batch.column("id"), value_set=pa.array(wanted.tolist()))
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise TypeError(
                f"the ids {wanted[:3].tolist()} do not match the table's ids, of type "
                f"{batch.column('id').type}"
            ) from err
        batch = batch.filter(keep)
        if batch.num_rows == 0:
            continue
        column = batch.column(kind)
        if pa.types.is_fixed_size_list(column.type):
            size = column.type.list_size
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            size = int(lengths[0])
            if (lengths != size).any():
                raise ValueError(f"rows of {kind!r} have different numbers of classes")
        else:
            raise TypeError(f"column {kind!r} must be a list of floats, got {column.type}")
        if width is not None and size != width:
            raise ValueError(f"rows of {kind!r} have different numbers of classes")
        width = size
        values = column.flatten().to_numpy(zero_copy_only=False)
        outputs.append(np.asarray(values).reshape(-1, size))
        epochs.append(batch.column("epoch").to_numpy(zero_copy_only=False))
        ids.append(np.asarray(batch.column("id").to_pylist()))
        labels.append(batch.column("label").to_numpy(zero_copy_only=False))
    if not ids:
        raise ValueError(f"none of the ids {wanted[:5].tolist()} is in the table")
    row_ids = np.concatenate(ids)
    absent = [i for i in wanted.tolist() if i not in set(row_ids.tolist())]
    if absent:
        raise ValueError(f"ids not found in the table: {absent[:5]}")
    out = np.concatenate(outputs)
    if out.dtype not in (np.float32, np.float64):
        out = out.astype(np.float64)
    return np.concatenate(epochs), row_ids, np.concatenate(labels).astype(np.int64), out


def _long_batches(source: Any, wanted: npt.NDArray[Any], kind: str) -> Iterator[pa.RecordBatch]:
    """Record batches of a long table, reading only the needed columns where the format
    allows (Parquet row groups whose id statistics exclude every wanted id are skipped)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    columns = ["epoch", "id", "label", kind]
    if not isinstance(source, (str, os.PathLike)):
        reader = pa.RecordBatchReader.from_stream(as_arrow_stream(source))
        yield from reader
        return
    # The readers' own discovery: a file, a directory (hidden names skipped) or a glob.
    for file, fmt, _, _ in _core.discover(os.fspath(source)):
        if fmt == "parquet":
            dataset = ds.dataset(file, format="parquet")
            names = dataset.schema.names
            wanted_filter = ds.field("id").isin(wanted.tolist()) if "id" in names else None
            yield from dataset.to_batches(
                columns=[c for c in columns if c in names], filter=wanted_filter
            )
        elif fmt in ("ipc-file", "ipc-stream"):
            yield from _ipc_batches(file, stream=fmt == "ipc-stream")
        else:
            raise ValueError(
                f"{file}: trajectories read long tables ({', '.join(_core.TABLE_SUFFIXES)}) or one "
                ".npy array of shape (epochs, examples, classes)"
            )


def _ipc_batches(file: Path, *, stream: bool) -> Iterator[pa.RecordBatch]:
    """Batches of an Arrow IPC stream, or of an IPC file (memory-mapped)."""
    import pyarrow as pa

    with pa.memory_map(str(file)) as source:
        if stream:
            yield from pa.ipc.open_stream(source)
            return
        reader: Any = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def plot_trajectories(
    ids: npt.ArrayLike,
    source: Any,
    labels: npt.ArrayLike | None = None,
    *,
    kind: Kind,
    title: str | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Figure:
    """p(gold) over the epochs for some examples, one line each.

    The values are read back from ``source`` as in :func:`fastcarto.trajectories`; above ten
    examples the lines are grey and their mean is drawn.

    Parameters
    ----------
    ids, source, labels, kind:
        As in :func:`fastcarto.trajectories`.
    title:
        The figure's title.
    save:
        A path to write the figure to (PNG, PDF, SVG, ... by suffix).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    Raises
    ------
    ValueError, IndexError
        As :func:`fastcarto.trajectories`.

    Examples
    --------
    >>> import matplotlib.pyplot as plt, numpy as np, fastcarto
    >>> z = np.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    >>> fig = fastcarto.plot_trajectories([0, 1], z, [0, 1], kind="logits")
    >>> len(fig.axes[0].lines)
    3
    >>> plt.close(fig)
    """
    check_choice("kind", kind, KINDS)
    frame, label_of = _trajectories(ids, source, labels, kind=kind)
    fig = _figure((6.8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    columns: Sequence[Any] = list(frame.columns)
    many = len(columns) > 10
    for i, column in enumerate(columns):
        if many:
            ax.plot(frame.index, frame[column], color="0.55", linewidth=0.7, alpha=0.6)
        else:
            ax.plot(frame.index, frame[column], marker="o", markersize=3, linewidth=1.5,
                    color=OKABE_ITO[i % len(OKABE_ITO)],
                    label=f"id {column} (given label {label_of.get(column)})")  # fmt: skip
    if many:
        ax.plot(frame.index, frame.mean(axis=1), color=OKABE_ITO[0], linewidth=2.2,
                label=f"mean of {len(columns)} examples")  # fmt: skip
    ax.axhline(0.5, color="0.5", linestyle=":", linewidth=1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("p(gold): probability of the given label")
    ax.legend(frameon=False, fontsize=8, loc="best")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else "Training dynamics of chosen examples")
    return _finish(fig, save)
