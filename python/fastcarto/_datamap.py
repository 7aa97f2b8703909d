"""`DataMap`: the per-example metrics table and what users do with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

# Integer columns that are missing for some examples (never learned, wrong at the end, ...):
# pandas gets them as nullable Int64 rather than float64 with NaN.
_NULLABLE_INT = ("label", "first_learned", "stable_from", "final_pred")


class DataMap:
    """Training-dynamics metrics, one row per example (per (example, class) for multi-label).

    Built by :func:`fastcarto.compute` or :meth:`fastcarto.Accumulator.finalize`; the columns are
    documented in ``docs/metrics.md``. Speaks pandas, pyarrow and polars, and the Arrow PyCapsule
    interface, so ``pl.DataFrame(datamap)`` and ``pa.table(datamap)`` work without copies.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> logits = np.array([[[2.0, 0.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 0.0]]], dtype=np.float32)
    >>> dm = fastcarto.compute(logits, [0, 1], kind="logits")
    >>> len(dm)
    2
    >>> dm.to_pandas()["correctness"].tolist()
    [1.0, 0.5]
    """

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
        """The metrics as a ``pyarrow.Table`` (no copy)."""
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        """The metrics as a ``pandas.DataFrame``; optional integers use the nullable ``Int64``."""
        import pandas as pd

        df = self._table.to_pandas()
        for name in _NULLABLE_INT:
            if name in df.columns and self._table.column(name).null_count:
                df[name] = pd.array(self._table.column(name).to_pylist(), dtype="Int64")
        return df

    def to_polars(self) -> pl.DataFrame:
        """The metrics as a ``polars.DataFrame`` (requires polars)."""
        import polars as pl

        out = pl.from_arrow(self._table)
        assert isinstance(out, pl.DataFrame)
        return out

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self._table.__arrow_c_stream__(requested_schema)

    def __repr__(self) -> str:
        n = len(self)
        parts = [f"{n:,} {'rows' if 'class' in self.columns else 'examples'}", self._kind]
        if self._compat:
            parts.append(f"compat={self._compat!r}")
        if "n_epochs" in self.columns and n:
            epochs = self._table.column("n_epochs").to_numpy()
            lo, hi = int(epochs.min()), int(epochs.max())
            parts.append(f"{hi} epochs" if lo == hi else f"{lo}-{hi} epochs")
        stats = []
        for name in ("confidence", "variability"):
            values = self[name] if name in self.columns else np.empty(0)
            if np.isfinite(values).any():
                stats.append(f"{name} {np.nanmean(values):.3f}")
        if "never_learned" in self.columns and n:
            stats.append(f"never learned {100 * float(np.mean(self['never_learned'])):.1f}%")
        tail = f"; mean {', '.join(stats)}" if stats else ""
        return f"DataMap({', '.join(parts)}{tail})"
