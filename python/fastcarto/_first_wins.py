"""The first record of an (epoch, id) wins: which rows of a batch to record when samplers pad or
repeat examples (a distributed sampler evening out the ranks' batches, a sampler with
replacement). Rows are dropped, never merged: a later record of an example in the same epoch is
a repeat of one already recorded."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

# Ids below this get a bit mask; larger ones a sorted array (the mask would be too big).
_MASK_LIMIT = 1 << 28


class FirstWins:
    """Remembers the ids recorded in the current epoch (one byte per id up to the largest)."""

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._mask = np.zeros(0, dtype=bool)
        self._large = np.zeros(0, dtype=np.int64)
        # For each id below the mask's size, the row it last had in a batch (finds repeats
        # within a batch without sorting it).
        self._row = np.zeros(0, dtype=np.int64)

    def keep(self, ids: Any, epoch: int) -> npt.NDArray[np.bool_]:
        """Which rows of a batch with these ids are first records in ``epoch`` (earlier rows of
        the batch before later ones); they are remembered as recorded."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._mask.fill(False)
            self._large = np.zeros(0, dtype=np.int64)
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(
                f"example ids must be a 1-D array of integers, got dtype {arr.dtype} and shape "
                f"{arr.shape}"
            )
        arr = arr.astype(np.int64, copy=False)
        keep = np.zeros(arr.shape[0], dtype=bool)
        if arr.size == 0:
            return keep
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            raise ValueError(f"example ids must be non-negative, got {low}")
        if high < self._mask.size:
            fresh = self._fresh(arr)
            if fresh is not None:
                return fresh
        keep[np.unique(arr, return_index=True)[1]] = True  # first row of each id in the batch
        small = arr < _MASK_LIMIT
        top = int(arr[small].max()) + 1 if small.any() else 0
        if top > self._mask.size:
            grown = np.zeros(max(top, 2 * self._mask.size), dtype=bool)
            grown[: self._mask.size] = self._mask
            self._mask = grown
            self._row = np.zeros(grown.size, dtype=np.int64)
        seen = np.zeros(arr.shape[0], dtype=bool)
        seen[small] = self._mask[arr[small]]
        if (~small).any():
            seen[~small] = np.isin(arr[~small], self._large)
        keep &= ~seen
        self._mask[arr[keep & small]] = True
        if (keep & ~small).any():
            self._large = np.union1d(self._large, arr[keep & ~small])
        return keep

    def _fresh(self, arr: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_] | None:
        """The common case, without sorting: every id below the mask's size, none seen before
        in the epoch, none twice in the batch; then all rows are kept (and remembered). None
        when that is not so (nothing is changed then)."""
        if self._mask[arr].any():
            return None
        rows = np.arange(arr.shape[0])
        self._row[arr] = rows
        if not np.array_equal(self._row[arr], rows):
            return None  # an id twice in the batch: its first row's entry was overwritten
        self._mask[arr] = True
        return np.ones(arr.shape[0], dtype=bool)

    def keep_across(self, ids_by_rank: list[Any], rank: int, epoch: int) -> npt.NDArray[np.bool_]:
        """For data-parallel ranks that each see every rank's ids of a step: the rows this rank
        records. Ranks are taken in order (a lower rank's record of an id wins within a step),
        so every rank keeps the same memory and exactly one record of each id survives."""
        mine = np.zeros(0, dtype=bool)
        for r, ids in enumerate(ids_by_rank):
            k = self.keep(ids, epoch)
            if r == rank:
                mine = k
        return mine
