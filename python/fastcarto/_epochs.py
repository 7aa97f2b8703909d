"""Whole-epoch outputs of the framework integrations (scikit-learn ``partial_fit``, boosting
rounds) to a map: a live :class:`Accumulator`, or a :class:`Recorder` on disk (``path=``) that
keeps one too. Also the mapping of a classifier's labels to class positions they share."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from ._accumulator import Accumulator
from ._datamap import DataMap
from ._inputs import Kind, check_positive
from ._recorder import Mode, Recorder


class EpochSink:
    """Takes each epoch's outputs on all ``n_examples`` examples, in order."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        kind: Kind,
        n_examples: int,
        n_classes: int,
        mode: Mode = "create",
    ) -> None:
        self._recorder: Recorder | None = None
        self._ids = np.arange(n_examples, dtype=np.int64)
        if path is None:
            self._acc = Accumulator(n_examples, n_classes, kind=kind)
        else:
            self._recorder = Recorder(
                path,
                kind=kind,
                n_examples=n_examples,
                n_classes=n_classes,
                mode=mode,
                accumulator=True,
            )
            acc = self._recorder.accumulator
            assert acc is not None
            self._acc = acc
        last = self._acc.last_epoch
        #: With ``mode="append"``, the epoch after the earlier run's last one.
        self.first_epoch = 0 if last is None else last + 1

    def add(self, epoch: int, outputs: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> None:
        if self._recorder is None:
            self._acc.update(outputs, labels, epoch=epoch, ids=self._ids)
        else:
            self._recorder.record(outputs, labels, epoch=epoch, ids=self._ids)
            self._recorder.end_epoch(epoch)

    def finish(self) -> DataMap:
        if self._recorder is not None:
            self._recorder.close()
        return self._acc.finalize()

    def abort(self) -> None:
        """Publishes what was recorded (complete epochs only are ever buffered here)."""
        if self._recorder is not None:
            self._recorder.close()


def class_positions(y: Any, classes: npt.NDArray[Any], *, what: str) -> npt.NDArray[np.int64]:
    """The position of each label of ``y`` in ``classes`` (sorted, as scikit-learn's
    ``classes_``); a label that is not one of them is an error naming it."""
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must have shape (examples,), got {labels.shape}")
    classes = np.asarray(classes)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"{what} has no classes")
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    try:
        pos = np.searchsorted(sorted_classes, labels)
    except TypeError as exc:
        raise TypeError(
            f"y holds {labels.dtype} labels but {what}'s classes are {classes.dtype} ({exc})"
        ) from exc
    pos = np.minimum(pos, sorted_classes.size - 1)
    bad = sorted_classes[pos] != labels
    if np.any(bad):
        first = labels[np.flatnonzero(bad)[0]].item()
        raise ValueError(
            f"label {first!r} of y is not one of the {classes.size} classes {what} knows "
            f"({classes[:10].tolist()}{'...' if classes.size > 10 else ''}): pass the labels "
            "the model was trained on"
        )
    return np.ascontiguousarray(order[pos], dtype=np.int64)


def n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return len(X)


def boosting_map(
    stages: Any,
    *,
    y: Any,
    classes: npt.NDArray[Any],
    n_examples: int,
    n_outputs: int,
    path: str | os.PathLike[str] | None,
    mode: Mode,
    what: str,
) -> DataMap:
    """The map of a booster whose rounds are epochs: ``stages`` yields the raw scores (margins)
    after each epoch's last round, shape ``(examples,)`` for a binary model or
    ``(examples, classes)``; they are logits."""
    if mode == "append":
        raise ValueError(
            "a booster's rounds are mapped whole: record into a new directory or pass "
            "mode='overwrite'"
        )
    labels = class_positions(y, classes, what=what)
    sink = EpochSink(path, kind="logits", n_examples=n_examples, n_classes=n_outputs, mode=mode)
    try:
        for epoch, margin in enumerate(stages):
            out = np.asarray(margin)
            if out.ndim == 1:
                out = out[:, None]
            sink.add(epoch, out, labels)
    except BaseException:
        sink.abort()
        raise
    return sink.finish()


def accumulated(
    total: npt.NDArray[np.float64],
    ends: list[int],
    predict_rounds: Callable[[int, int], Any],
) -> Iterator[npt.NDArray[np.float64]]:
    """The margins after each epoch: ``total`` (the margins before the first round) plus each
    epoch's rounds ``[start, stop)``, predicted alone by ``predict_rounds(start, stop)`` and
    added in float64, so no prefix is predicted from scratch."""
    start = 0
    for stop in ends:
        total += predict_rounds(start, stop)
        start = stop
        yield total


def fitted_classes(model: Any, n_class: int) -> npt.NDArray[Any]:
    """A fitted classifier's ``classes_``; a bare booster's ``0..classes-1``."""
    fitted = getattr(model, "classes_", None)
    return np.asarray(fitted if fitted is not None else np.arange(max(n_class, 2)))


def check_every(every: object) -> int:
    return check_positive("every", every)


def check_features(n_model: int, X: Any, what: str) -> None:
    """``X`` must have the columns the booster was trained on."""
    shape = getattr(X, "shape", None)
    n_x = int(shape[1]) if shape is not None and len(shape) == 2 else None
    if n_x is None:
        raise ValueError(f"X must be 2-D (examples, features), got shape {shape}")
    if n_x != n_model:
        raise ValueError(
            f"{what} was trained on {n_model} features but X has {n_x}: pass the training data "
            "the booster was trained on (same columns, same order)"
        )


def epoch_ends(n_rounds: int, every: int) -> list[int]:
    """The round counts after which an epoch ends: every ``every`` rounds, and the last."""
    ends = list(range(every, n_rounds + 1, every))
    if not ends or ends[-1] != n_rounds:
        ends.append(n_rounds)
    return ends
