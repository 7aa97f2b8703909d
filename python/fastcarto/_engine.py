"""The engine call behind :func:`fastcarto.compute`: a source (array, ``.npy`` file, long table,
files) checked, routed to the reader it needs, and turned into the metrics table.

It returns the plain Arrow table, below :class:`fastcarto.DataMap`, so modules that need the
engine's per-row metrics (the trajectories) call it without depending on the data map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from . import _core, _tables
from ._inputs import (
    COMPATS,
    KINDS,
    NAN_POLICIES,
    Compat,
    EpochSelection,
    Kind,
    NanPolicy,
    as_float_array,
    as_labels,
    as_path,
    check_choice,
    check_ddof,
    check_threads,
    resolve_epochs,
)


def compute_table(
    source: Any,
    labels: Any = None,
    *,
    kind: Kind | None = None,
    compat: Compat | None = None,
    epochs: EpochSelection = None,
    nan_policy: NanPolicy = "raise",
    ddof: int = 0,
    columns: Mapping[str, str] | None = None,
    require_complete: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> tuple[pa.Table, Kind]:
    """The metrics table of :func:`fastcarto.compute` (see there for the arguments) and the
    kind of outputs it was computed from (a long table declares it by its column name)."""
    check_choice("kind", kind, KINDS, optional=True)
    check_choice("compat", compat, COMPATS, optional=True)
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    check_threads(threads)
    check_ddof(ddof)

    path = as_path(source)
    keyed = None
    if path is not None and (path.suffix.lower() != ".npy" or path.is_dir()):
        keyed = _tables.read_files
    elif path is None and _tables.is_table(source):
        keyed = _tables.read_table
    if keyed is not None:
        state, ids, kind = keyed(
            source,
            labels,
            kind=kind,
            columns=columns,
            nan_policy=nan_policy,
            epochs=epochs,
            require_complete=require_complete,
            progress=progress,
            threads=threads,
        )
        # The state is not kept: its memory is released as the table is written.
        table = state.take_table(compat=compat, ddof=int(ddof), ids=ids)
        return table, kind
    if columns is not None:
        raise ValueError("columns= names the columns of a long table, not of an array")
    if kind is None:
        raise ValueError("pass kind='logits' or kind='probs': fastcarto never guesses it")
    # Arrays and .npy files: one pass, straight to the table (no per-example state kept).
    data: Any
    if path is not None:
        (n_epochs, n_examples, n_classes), _ = _core.inspect_npy(path)
        data = path
    else:
        data = as_float_array(source, ndim=3, what="outputs")
        n_epochs, n_examples, n_classes = data.shape
    flat, multilabel = as_labels(labels, n_examples=n_examples, n_classes=n_classes)
    table = _core.map_dense(
        data,
        flat,
        kind=kind,
        epochs=resolve_epochs(epochs, n_epochs),
        multilabel=multilabel,
        nan_policy=nan_policy,
        threads=threads,
        compat=compat,
        ddof=int(ddof),
    )
    return table, kind
