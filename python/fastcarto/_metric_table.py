"""`MetricTable`: the per-example metrics table that regions, label issues and plots read.

It sits below :class:`fastcarto.DataMap` (which adds the conversions and the user-facing
methods), so the modules that rank, threshold and draw the columns depend on this small class
and `DataMap`'s methods call down into them: no module imports back up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


class MetricTable:
    """A metrics table (``pyarrow.Table``) with what it was computed from: ``kind`` and
    ``compat``. Columns are read as numpy arrays with ``table[name]``."""

    __slots__ = ("_compat", "_kind", "_table")

    def __init__(
        self, table: pa.Table | pa.RecordBatch, *, kind: str, compat: str | None = None
    ) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self._table: pa.Table = table
        self._kind = kind
        self._compat = compat

    @property
    def kind(self) -> str:
        """``"logits"`` or ``"probs"``: what the metrics were computed from."""
        return self._kind

    @property
    def compat(self) -> str | None:
        """The published convention the table follows, or None for fastcarto's own."""
        return self._compat

    @property
    def columns(self) -> list[str]:
        """The column names, in table order."""
        return list(self._table.column_names)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def __getitem__(self, column: str) -> np.ndarray[Any, Any]:
        """One column as a numpy array (nullable integer columns become float with NaN)."""
        if column not in self._table.column_names:
            raise KeyError(f"no column {column!r}; columns are {self.columns}")
        col = self._table.column(column)
        if col.null_count:
            col = col.cast(pa.float64())
        return np.asarray(col.to_numpy())

    def to_arrow(self) -> pa.Table:
        """The metrics as a ``pyarrow.Table`` (no copy).

        Returns
        -------
        pyarrow.Table
            The columns documented in ``docs/metrics.md``.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> dm = fastcarto.compute(np.array([[[.9, .1], [.3, .7]]]), [0, 1], kind="probs")
        >>> dm.to_arrow().num_rows
        2
        """
        return self._table
