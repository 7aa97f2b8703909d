"""Masks and outputs as arrays, memory maps or ``.npy`` paths, read in chunks of models."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import numpy.typing as npt

from .. import _core

ArrayOrPath = Union[npt.ArrayLike, str, "os.PathLike[str]"]

#: Bytes of masks folded per call into the engine: bounded memory for masks of any size.
CHUNK_BYTES = 64 << 20


class DatamodelWarning(UserWarning):
    """The datamodels can be fitted, but something about the input makes them poor or partial."""


def load(obj: ArrayOrPath, what: str) -> np.ndarray[Any, Any]:
    """An array, a memory map, or the memory map of a ``.npy`` path (never read whole)."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"{what}: no such file: {path}")
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{what}: {path} is not a .npy file")
        return arr
    return np.asarray(obj)


def check_masks(masks: np.ndarray[Any, Any], n_train: int | None) -> int:
    """The number of training examples of ``masks``, after checking their dtype and shape."""
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2-d (models, training examples), got shape {masks.shape}")
    if n_train is not None:
        if masks.dtype != np.uint8:
            raise TypeError(f"bit-packed masks (n_train given) must be uint8, got {masks.dtype}")
        if n_train < 1 or masks.shape[1] != -(-n_train // 8):
            raise ValueError(
                f"bit-packed masks of n_train={n_train} training examples have "
                f"{-(-max(n_train, 1) // 8)} bytes per row, got {masks.shape[1]}"
            )
        return n_train
    if masks.dtype not in (np.bool_, np.uint8):
        raise TypeError(
            f"masks must be bool (or uint8 0/1; bit-packed uint8 with n_train=...), got "
            f"{masks.dtype}; convert with masks.astype(bool)"
        )
    if masks.shape[1] == 0:
        raise ValueError("masks have no columns (training examples)")
    return int(masks.shape[1])


def check_outputs(outputs: np.ndarray[Any, Any], n_models: int) -> np.ndarray[Any, Any]:
    """``outputs`` as (models, targets), after checking dtype and length."""
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if outputs.ndim != 2:
        raise ValueError(f"outputs must be 2-d (models, targets), got shape {outputs.shape}")
    if outputs.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"outputs must be float16, float32 or float64, got {outputs.dtype}")
    if outputs.shape[0] != n_models:
        raise ValueError(
            f"masks have {n_models} rows (models) but outputs have {outputs.shape[0]}; "
            "row m of both must describe the same model"
        )
    if outputs.shape[1] == 0:
        raise ValueError("outputs have no columns (targets)")
    return outputs


def chunks(n_rows: int, row_bytes: int) -> Iterator[slice]:
    step = max(64, CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def fold(
    stats: _core.DatamodelStats,
    masks: np.ndarray[Any, Any],
    outputs: np.ndarray[Any, Any],
    rows: slice,
    *,
    n_train: int | None,
    bitorder: Literal["big", "little"],
    threads: int | None,
) -> None:
    """Folds models ``rows`` into ``stats``, one chunk at a time."""
    for part in chunks(rows.stop - rows.start, masks.shape[1]):
        sl = slice(rows.start + part.start, rows.start + part.stop)
        m = np.ascontiguousarray(masks[sl])
        y = np.ascontiguousarray(outputs[sl])
        if y.dtype == np.float16:
            y = y.astype(np.float32)
        if n_train is None:
            stats.update(m, y, threads=threads)
        else:
            stats.update_packed(m, y, n_cols=n_train, little=bitorder == "little", threads=threads)


def statistics(
    masks: ArrayOrPath,
    outputs: ArrayOrPath,
    *,
    n_train: int | None = None,
    bitorder: Literal["big", "little"] = "big",
    threads: int | None = None,
) -> _core.DatamodelStats:
    """The sufficient statistics of ``masks`` and ``outputs`` (one pass, any size).

    The result is additive: statistics of shards of models, trained in several batches or on
    several machines, combine with ``merge``; pass them to :func:`fit_statistics`.

    Parameters
    ----------
    masks:
        ``(M, N)`` bool (or uint8 0/1) masks of the training examples each model saw, or
        uint8 rows of ``numpy.packbits(masks, axis=1)`` with ``n_train=N``; an array, a
        memory map or a ``.npy`` path.
    outputs:
        ``(M, K)`` (or ``(M,)``) float outputs of each model on the targets.
    n_train:
        ``N``, for bit-packed masks.
    bitorder:
        The ``bitorder`` the masks were packed with.
    threads:
        Worker threads (default: ``FASTCARTO_NUM_THREADS`` or all cores).

    Returns
    -------
    DatamodelStats
        ``XᵀX``, ``XᵀY``, ``ΣY`` and ``ΣY²`` of the models, with their count.

    Raises
    ------
    TypeError
        Masks that are not bool/uint8 (bit-packed: uint8), or outputs that are not float.
    ValueError
        Arrays of the wrong shape, or masks and outputs of different numbers of models.
    FileNotFoundError
        A ``.npy`` path that does not exist.
    fastcarto.FastcartoError
        An output that is NaN or infinite.

    Examples
    --------
    >>> import numpy as np, fastcarto.datamodels as fdm
    >>> rng = np.random.default_rng(0)
    >>> masks = rng.random((200, 30)) < 0.5
    >>> outputs = masks[:, :1] * 2.0 + rng.normal(size=(200, 1))
    >>> a = fdm.statistics(masks[:120], outputs[:120])
    >>> a.merge(fdm.statistics(masks[120:], outputs[120:]))
    >>> a.n_rows, a.n_cols, a.n_targets
    (200, 30, 1)
    """
    m, y = load(masks, "masks"), load(outputs, "outputs")
    n = check_masks(m, n_train)
    y = check_outputs(y, m.shape[0])
    stats = _core.DatamodelStats(n, y.shape[1])
    fold(stats, m, y, slice(0, m.shape[0]), n_train=n_train, bitorder=bitorder, threads=threads)
    return stats


def warn_small(n_models: int, n_train: int) -> None:
    if n_models < n_train:
        warnings.warn(
            f"{n_models} models for {n_train} training examples: datamodels need many more models "
            "than training examples to be accurate (the paper uses 10 to 60 times as many)",
            DatamodelWarning,
            stacklevel=3,
        )
