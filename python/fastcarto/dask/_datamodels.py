"""Datamodel statistics on a Dask cluster: each task folds one shard of models, a tree merge
adds the shards up."""

from __future__ import annotations

import copyreg
import importlib
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .. import _core
from ..datamodels._inputs import check_masks, check_outputs, fold, load

#: ``(n_rows, xtx, xty, sum_y, sum_y2)``: statistics as they travel between tasks.
Parts = tuple[int, np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], Any]


def _from_parts(n_rows: int, xtx: Any, xty: Any, sum_y: Any, sum_y2: Any) -> _core.DatamodelStats:
    return _core.DatamodelStats.from_parts(n_rows, xtx, xty, sum_y, sum_y2)


def _reduce_stats(stats: _core.DatamodelStats) -> tuple[Any, Parts]:
    return _from_parts, stats.parts()


# Statistics pickle as their arrays (checked again by `from_parts` when unpickled), so they
# can be returned from any task, not only from these functions.
copyreg.pickle(_core.DatamodelStats, _reduce_stats)


def _read(shard: Any, what: str) -> np.ndarray[Any, Any]:
    """A shard: an array, a local ``.npy`` path (memory-mapped) or an fsspec URL (read whole)."""
    if isinstance(shard, str) and "://" in shard and not shard.startswith("file://"):
        fsspec: Any = importlib.import_module("fsspec")
        with fsspec.open(shard, "rb") as f:
            arr = np.load(f, allow_pickle=False)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{what}: {shard} is not a .npy file")
        return arr
    if isinstance(shard, str) and shard.startswith("file://"):
        shard = shard[len("file://") :]
    return load(shard, what)


def _shard_stats(
    masks: Any,
    outputs: Any,
    n_train: int | None,
    bitorder: Literal["big", "little"],
    threads: int | None,
) -> Parts:
    """The statistics of one shard of models, as arrays."""
    m, y = _read(masks, "masks"), _read(outputs, "outputs")
    n = check_masks(m, n_train)
    y = check_outputs(y, m.shape[0])
    stats = _core.DatamodelStats(n, y.shape[1])
    fold(stats, m, y, slice(0, m.shape[0]), n_train=n_train, bitorder=bitorder, threads=threads)
    return stats.parts()


def _merge(a: Parts, b: Parts) -> Parts:
    stats = _from_parts(*a)
    stats.merge(_from_parts(*b))
    return stats.parts()


def datamodel_statistics(
    masks: Any,
    outputs: Any,
    *,
    client: Any = None,
    n_train: int | None = None,
    bitorder: Literal["big", "little"] = "big",
    threads: int | None = 1,
) -> _core.DatamodelStats:
    """:func:`fastcarto.datamodels.statistics` on a Dask cluster: the sufficient statistics of
    models sharded across workers, for :func:`fastcarto.datamodels.fit_statistics`.

    Each task folds its shard in the Rust core (``threads`` threads each: Dask already runs
    one task per worker thread), the shards' statistics travel as numpy arrays and are added
    in a binary tree in shard order. The counts (``n_rows``, the mask Gram matrix) equal
    :func:`~fastcarto.datamodels.statistics` on all the models exactly; the float sums
    (``XᵀY``, ``ΣY``, ``ΣY²``) are added in another order than one pass adds them, so they
    agree to rounding (within ``1e-14 · Σ|y|`` per entry), and a given sharding gives
    the same bits on every run.

    Parameters
    ----------
    masks:
        A ``dask.array`` with one row per model (each block of rows is one task), or a list of
        shards: arrays, ``.npy`` paths (memory-mapped where the task runs) or fsspec URLs
        (``s3://``, ``gs://``, ``memory://``...). Bool, uint8 0/1, or bit-packed uint8 rows
        with ``n_train``, as :func:`~fastcarto.datamodels.fit` takes them.
    outputs:
        The models' outputs on the targets, ``(models, targets)``, in the same form and the
        same shards (shard ``i`` of both describes the same models).
    client:
        A ``distributed.Client`` (default: Dask's current scheduler).
    n_train:
        The number of training examples, for bit-packed masks.
    bitorder:
        The bit order of bit-packed masks (numpy's ``packbits``).
    threads:
        Rust threads per task.

    Returns
    -------
    DatamodelStats
        The statistics of all the models, as :func:`fastcarto.datamodels.statistics` returns.

    Raises
    ------
    ValueError
        Shards of different numbers of training examples, masks and outputs of different
        numbers of models or shards, non-finite outputs.
    TypeError
        ``masks`` a ``dask.array`` and ``outputs`` not (or the reverse).

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastcarto.datamodels as fdm
    >>> from fastcarto.dask import datamodel_statistics
    >>> rng = np.random.default_rng(0)
    >>> masks, outputs = rng.random((300, 20)) < 0.5, rng.normal(size=(300, 4))
    >>> stats = datamodel_statistics(da.from_array(masks, chunks=(100, 20)),
    ...                              da.from_array(outputs, chunks=(100, 4)))
    >>> whole = fdm.statistics(masks, outputs)
    >>> bool((stats.parts()[1] == whole.parts()[1]).all()), stats.n_rows
    (True, 300)
    """
    # Loosely typed: dask's own annotations are partial.
    dask: Any = importlib.import_module("dask")
    shards = _shards(masks, outputs)
    parts = [
        dask.delayed(_shard_stats, pure=True)(m, y, n_train, bitorder, threads) for m, y in shards
    ]
    while len(parts) > 1:
        merged = [
            dask.delayed(_merge, pure=True)(a, b)
            for a, b in zip(parts[::2], parts[1::2], strict=False)
        ]
        parts = merged + parts[len(merged) * 2 :]
    if client is not None:
        (result,) = client.compute(parts, sync=True)
    else:
        (result,) = dask.compute(*parts)
    return _from_parts(*result)


def _shards(masks: Any, outputs: Any) -> list[tuple[Any, Any]]:
    """Pairs of (masks, outputs) shards, one per task."""
    da: Any = importlib.import_module("dask.array")
    if isinstance(masks, da.Array) or isinstance(outputs, da.Array):
        if not (isinstance(masks, da.Array) and isinstance(outputs, da.Array)):
            raise TypeError("masks and outputs must both be dask arrays, or both lists of shards")
        if outputs.ndim == 1:
            outputs = outputs[:, None]
        if masks.ndim != 2 or outputs.ndim != 2:
            raise ValueError(
                f"masks and outputs must be 2-d (models, ...), got {masks.shape} and "
                f"{outputs.shape}"
            )
        if masks.shape[0] != outputs.shape[0]:
            raise ValueError(
                f"masks have {masks.shape[0]} rows (models) but outputs have "
                f"{outputs.shape[0]}; row m of both must describe the same model"
            )
        if masks.shape[0] == 0:
            raise ValueError("masks have no rows (models)")
        masks = masks.rechunk({1: -1})
        outputs = outputs.rechunk({0: masks.chunks[0], 1: -1})
        return list(zip(masks.to_delayed().ravel(), outputs.to_delayed().ravel(), strict=True))
    if isinstance(masks, (str, os.PathLike)) or isinstance(outputs, (str, os.PathLike)):
        raise TypeError("pass lists of shards (one path or URL per shard), not a single path")
    if not isinstance(masks, Sequence) or not isinstance(outputs, Sequence):
        raise TypeError(
            f"masks and outputs must be dask arrays or lists of shards, got "
            f"{type(masks).__name__} and {type(outputs).__name__}"
        )
    if len(masks) != len(outputs):
        raise ValueError(
            f"{len(masks)} shards of masks but {len(outputs)} of outputs; shard i of both must "
            "describe the same models"
        )
    if not masks:
        raise ValueError("no shards given")
    norm = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in [*masks, *outputs]]
    return list(zip(norm[: len(masks)], norm[len(masks) :], strict=True))
