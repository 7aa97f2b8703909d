"""Turning what users pass (arrays, memory maps, tensors, paths, label lists) into what the
engine takes, with a clear error for everything else. No arithmetic on outputs happens here."""

from __future__ import annotations

import errno
import itertools
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._arguments import argument_error

Kind = Literal["logits", "probs"]
Compat = Literal["cartography", "aum", "dataiq", "toneva"]
NanPolicy = Literal["raise", "omit"]
EpochSelection = int | slice | Sequence[int] | None

KINDS = ("logits", "probs")
COMPATS = ("cartography", "aum", "dataiq", "toneva")
NAN_POLICIES = ("raise", "omit")
#: Files of labels: ``labels=`` and ``--labels`` (see :func:`read_labels`).
LABEL_SUFFIXES = (".npy", ".txt", ".csv")


class KindWarning(UserWarning):
    """Outputs declared ``kind="logits"`` look like probabilities: every row checked is a
    distribution (values in [0, 1] that sum to 1 within the engine's tolerance)."""


#: Rows per epoch that :func:`warn_if_probabilities` looks at: a sample spread evenly over the
#: examples, so the check costs the same for 1 thousand rows and for 400 MB.
KIND_SAMPLE_ROWS = 256


def sample_rows(n_rows: int) -> npt.NDArray[np.intp]:
    """At most :data:`KIND_SAMPLE_ROWS` row positions spread evenly over ``n_rows``."""
    if n_rows <= 0:
        return np.zeros(0, dtype=np.intp)
    return np.unique(np.linspace(0, n_rows - 1, min(n_rows, KIND_SAMPLE_ROWS)).astype(np.intp))


def warn_if_probabilities(rows: npt.NDArray[Any], *, where: str, stacklevel: int) -> None:
    """Warns with :class:`KindWarning` when every finite row of ``rows`` (a sample of outputs
    declared logits, shape ``(rows, classes)``) is a probability distribution.

    One column is never warned about: a binary model's logit and its probability differ in
    range only, and a sample of logits may well all lie in [0, 1]. Nor are one-hot rows alone
    (every value 0 or 1): logits written by hand look the same.
    """
    if rows.ndim != 2 or rows.shape[1] < 2:
        return
    rows = np.ascontiguousarray(rows[np.isfinite(rows).all(axis=1)])
    if rows.shape[0] == 0 or ((rows == 0) | (rows == 1)).all():
        return
    from ._core import BatchChecker, InvalidProbabilitiesError

    # The engine's own test of a probability row (range and tolerance), not a copy of it.
    checker = BatchChecker(kind="probs", across_batches=False)
    n = rows.shape[0]
    try:
        checker.check(rows, np.zeros(n, np.int64), np.arange(n, dtype=np.int64), epoch=0)
    except InvalidProbabilitiesError:
        return
    warnings.warn(
        KindWarning(
            f"kind='logits', but every row checked ({rows.shape[0]} rows of {where}) is a "
            "probability distribution (values in [0, 1] that sum to 1); if these are "
            "probabilities, pass kind='probs': the softmax of probabilities is not the model's "
            "prediction"
        ),
        stacklevel=stacklevel + 1,
    )


def warn_if_dense_probabilities(
    outputs: npt.NDArray[Any], epochs: Sequence[int], *, stacklevel: int
) -> None:
    """:func:`warn_if_probabilities` on a sample of dense ``(epochs, examples, classes)``
    outputs: :data:`KIND_SAMPLE_ROWS` rows of the first and of the last epoch used (of a memory
    map, only those rows' pages are read)."""
    if outputs.shape[1] == 0 or outputs.shape[2] < 2 or not epochs:
        return
    rows = sample_rows(outputs.shape[1])
    chosen = sorted({epochs[0], epochs[-1]})
    sample = np.concatenate([np.asarray(outputs[e, rows]) for e in chosen])
    where = "epoch" + ("s " if len(chosen) > 1 else " ") + " and ".join(map(str, chosen))
    warn_if_probabilities(sample, where=where, stacklevel=stacklevel + 1)


def check_choice(
    name: str, value: object, choices: Sequence[str], *, optional: bool = False
) -> None:
    if optional and value is None:
        return
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")


def check_ddof(ddof: int) -> None:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or not 0 <= ddof < 2**32:
        raise ValueError(f"ddof must be a non-negative integer, got {ddof!r}")


def check_epoch(epoch: object) -> int:
    if (
        isinstance(epoch, bool)
        or not isinstance(epoch, (int, np.integer))
        or not 0 <= epoch < 2**32 - 1
    ):
        raise ValueError(f"epoch must be a non-negative integer below 2**32 - 1, got {epoch!r}")
    return int(epoch)


#: Bounds of the engine's counts: classes are 32-bit; threads are a small pool.
MAX_CLASSES = 2**32 - 1
MAX_THREADS = 1 << 16


def check_positive(name: str, value: object, *, most: int = 2**63 - 1) -> int:
    """``value`` as an int: a positive Python or numpy integer (not a bool), at most ``most``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > most:
        raise ValueError(f"{name} must be at most {most}, got {value!r}")
    return int(value)


def check_threads(threads: int | None) -> None:
    if threads is not None:
        check_positive("threads (a positive integer or None)", threads, most=MAX_THREADS)


def as_float_array(obj: Any, *, ndim: int, what: str) -> npt.NDArray[np.floating[Any]]:
    """A float32/float64 numpy view of ``obj`` (numpy array, memmap, CPU tensor, nested list).

    Zero-copy whenever ``obj`` already is such an array with contiguous rows; otherwise the
    smallest copy that makes it one.
    """
    if isinstance(obj, (str, bytes, os.PathLike)):
        raise TypeError(f"{what}: expected an array here, got a path ({obj!r})")
    try:
        arr = np.asarray(obj)
    except Exception as exc:  # e.g. a tensor that requires grad
        raise TypeError(
            f"{what} could not be read as an array ({exc}); pass a numpy array or a CPU tensor "
            "(detach it first)"
        ) from exc
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(
            f"{what} must hold float32 or float64 values, got dtype {arr.dtype}; "
            "convert with .astype(np.float32)"
        )
    if arr.ndim != ndim:
        hint = ""
        if ndim == 3 and arr.ndim == 2:
            hint = (
                "; for a single epoch add an epoch axis (outputs[None]) or use Accumulator.update"
            )
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {arr.shape}{hint}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    # The engine reads each epoch as one C-contiguous [examples, classes] block.
    inner_ok = arr.strides[-1] == arr.itemsize and (
        arr.ndim < 2 or arr.strides[-2] == arr.shape[-1] * arr.itemsize
    )
    if not inner_ok:
        arr = np.ascontiguousarray(arr)
    return arr


def as_labels(
    labels: Any, *, n_examples: int, n_classes: int
) -> tuple[npt.NDArray[np.int64], bool]:
    """Integer labels as a flat int64 array, and whether they are multi-label targets."""
    if labels is None:
        raise ValueError("labels are required: pass one integer label per example")
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        multilabel = False
        if arr.shape[0] != n_examples:
            raise ValueError(f"got {arr.shape[0]} labels for {n_examples} examples")
    elif arr.ndim == 2:
        multilabel = True
        if arr.shape != (n_examples, n_classes):
            raise ValueError(
                f"multi-label targets must have shape (examples, classes) = "
                f"({n_examples}, {n_classes}), "
                f"got {arr.shape}"
            )
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i, c = np.argwhere(bad)[0]
            raise _label_error(
                f"multi-label target of example {i}, class {c} is {arr[i, c]}; expected 0 or 1"
            )
    else:
        raise ValueError(
            f"labels must have shape (examples,) or (examples, classes), got {arr.shape}"
        )
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        # Named as the engine names the others: the first such label and its example.
        first = int(np.argmax(arr.reshape(-1) > np.iinfo(np.int64).max))
        example = first // (arr.shape[1] if multilabel else 1)
        raise _label_error(
            f"label {arr.reshape(-1)[first]} of example {example} is out of range for "
            f"{n_classes} classes"
        )
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.int64), multilabel


def _label_error(msg: str) -> Exception:
    from ._core import LabelError

    return LabelError(msg)


def as_index(ids: Any, *, rows: int) -> npt.NDArray[np.uint64]:
    """``Accumulator.update``'s ``ids=`` (example positions) as the engine's row index."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids must hold integers (example positions), got dtype {arr.dtype}")
    if arr.shape != (rows,):
        raise ValueError(f"ids must have one entry per row ({rows}), got shape {arr.shape}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"ids contain a negative value ({arr.min()})")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def check_epoch_selection(epochs: object) -> None:
    """Refuses what is not an int, a slice or an iterable (of epochs, checked by the caller)."""
    if isinstance(epochs, (bool, str, bytes)) or not isinstance(
        epochs, (int, np.integer, slice, Iterable)
    ):
        raise TypeError(
            f"epochs must be an int, a slice or a sequence of ints, not {type(epochs).__name__}"
        )


def resolve_epochs(epochs: EpochSelection, n_epochs: int) -> list[int]:
    """Positions along the epoch axis selected by ``epochs`` (see ``compute``)."""
    if epochs is None:
        return list(range(n_epochs))
    check_epoch_selection(epochs)
    if isinstance(epochs, (int, np.integer)):
        k = int(epochs)
        if not 1 <= k <= n_epochs:
            template = f"{{arg}} selects the first {k} epochs, but there are {n_epochs}"
            raise argument_error(ValueError, template, "epochs", k)
        return list(range(k))
    if isinstance(epochs, slice):
        chosen = list(range(n_epochs))[epochs]
        if chosen != sorted(set(chosen)):
            raise ValueError(
                "epochs must select epochs in increasing order (a positive slice step)"
            )
    else:
        chosen = []
        for e in epochs:
            if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
                raise TypeError(f"epochs must hold integers, got {e!r}")
            e = int(e)
            if not -n_epochs <= e < n_epochs:
                raise ValueError(f"epoch {e} is out of range for {n_epochs} epochs")
            chosen.append(e % n_epochs)
        if any(b <= a for a, b in itertools.pairwise(chosen)):
            raise ValueError(
                f"epochs must be strictly increasing without repeats, got {list(epochs)}"
            )
    if not chosen:
        from ._core import EmptyInputError

        raise argument_error(
            EmptyInputError,
            f"the epoch selection {{value}} is empty (there are {n_epochs} epochs)",
            "epochs",
            epochs,
        )
    return chosen


def as_path(source: Any) -> Path | None:
    """``source`` as a path, or None when it is not one. Bytes are a path too, decoded with the
    file system's encoding (``os.fsdecode``), as ``open`` and ``numpy.load`` take them; numpy
    would otherwise read them as an array of one byte string."""
    if isinstance(source, bytes):
        return Path(os.fsdecode(source))
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    return None


def read_labels(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Labels from a ``.npy`` file (any shape; checked by ``compute``) or a text file.

    A ``.txt`` file holds whitespace-separated integers and a ``.csv`` file comma-separated ones,
    one example per line: a single column gives labels of shape ``(examples,)``, several columns
    multi-label targets of shape ``(examples, classes)``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported labels file; use a .npy file, or a .txt/.csv file with one "
            "integer per line"
        )
    check_readable_file(p)
    if suffix == ".npy":
        with open(p, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ValueError(f"{path}: not a .npy file (no .npy header)")
        try:
            labels: npt.NDArray[Any] = np.load(p, allow_pickle=False)
        except ValueError as exc:  # not a .npy file, object arrays, ...
            raise ValueError(f"{path}: not a readable .npy file of labels ({exc})") from None
        if not isinstance(labels, np.ndarray):
            raise ValueError(f"{path}: not a .npy array of labels")
        return labels
    with warnings.catch_warnings():
        # An empty file is an error below, not a UserWarning on stderr.
        warnings.simplefilter("ignore", UserWarning)
        try:
            table = np.loadtxt(
                p, dtype=np.int64, delimiter="," if suffix == ".csv" else None, ndmin=2
            )
        except ValueError as exc:
            raise ValueError(f"{path}: expected one integer label per line ({exc})") from None
    if table.size == 0:
        raise ValueError(f"{path}: the labels file is empty")
    return table[:, 0] if table.shape[1] == 1 else table


def check_readable_file(path: Path) -> None:
    """Raises the ``OSError`` users expect for a missing path or a directory."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
