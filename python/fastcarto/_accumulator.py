"""`Accumulator`: the data map built inside a training loop, one batch or epoch at a time."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pyarrow as pa

from . import _core
from ._datamap import DataMap
from ._inputs import (
    COMPATS,
    KINDS,
    MAX_CLASSES,
    NAN_POLICIES,
    Compat,
    Kind,
    NanPolicy,
    as_float_array,
    as_index,
    as_labels,
    check_choice,
    check_ddof,
    check_epoch,
    check_positive,
    check_threads,
    sample_rows,
    warn_if_probabilities,
)


class Accumulator:
    """Streaming training-dynamics state for ``n_examples`` examples.

    Memory is fixed (64 bytes per example; 88 once an epoch number reaches 4,095 or with more
    than 65,535 classes) whatever the number of epochs: past epochs are never kept. Call
    :meth:`update` with each epoch's outputs (whole epochs, or minibatches with their example
    ``ids``), and :meth:`finalize` whenever a map is wanted. Two accumulators of the same
    examples merge exactly (:meth:`merge`), so shards, workers and resumed runs combine.
    Accumulators pickle, and convert to and from Arrow (:meth:`to_arrow`).

    Parameters
    ----------
    n_examples, n_classes:
        Size of the training set and number of output columns (1 for a binary model with one
        logit or probability of the positive class).
    kind:
        ``"logits"`` or ``"probs"``; declared, never guessed.
    multilabel:
        ``True`` for independent per-class sigmoid outputs with 0/1 targets of shape
        ``(rows, n_classes)``; metrics are then per (example, class) pair.
    compat:
        Published convention for :meth:`finalize` (see :func:`fastcarto.compute`). ``"aum"``
        also accepts targets that change between updates, as the ``aum`` package does.
    nan_policy, threads:
        As in :func:`fastcarto.compute`.

    Examples
    --------
    >>> import numpy as np, fastcarto
    >>> acc = fastcarto.Accumulator(n_examples=4, n_classes=3, kind="logits")
    >>> rng = np.random.default_rng(0)
    >>> labels = np.array([0, 1, 2, 0])
    >>> for epoch in range(3):
    ...     for idx in (np.array([0, 2]), np.array([1, 3])):   # two minibatches
    ...         acc.update(rng.normal(size=(2, 3)).astype(np.float32), labels[idx],
    ...                    epoch=epoch, ids=idx)
    >>> acc.finalize().to_pandas()["n_epochs"].tolist()
    [3, 3, 3, 3]
    """

    __slots__ = ("_compat", "_kind_checked", "_nan_policy", "_state", "_threads")

    def __init__(
        self,
        n_examples: int,
        n_classes: int,
        *,
        kind: Kind,
        multilabel: bool = False,
        compat: Compat | None = None,
        nan_policy: NanPolicy = "raise",
        threads: int | None = None,
    ) -> None:
        check_choice("kind", kind, KINDS)
        check_choice("compat", compat, COMPATS, optional=True)
        check_choice("nan_policy", nan_policy, NAN_POLICIES)
        check_threads(threads)
        n_examples = check_positive("n_examples", n_examples)
        n_classes = check_positive("n_classes", n_classes, most=MAX_CLASSES)
        self._state = _core.State.empty(
            n_examples,
            n_classes,
            kind=kind,
            multilabel=multilabel,
            allow_label_change=compat == "aum",
        )
        self._compat = compat
        self._nan_policy = nan_policy
        self._threads = threads
        self._kind_checked = False

    @property
    def n_examples(self) -> int:
        """The number of examples (rows of the map)."""
        return self._state.n_examples

    @property
    def n_classes(self) -> int:
        """The number of output columns (classes)."""
        return self._state.n_classes

    @property
    def kind(self) -> str:
        """``"logits"`` or ``"probs"``, as declared."""
        return self._state.kind

    @property
    def multilabel(self) -> bool:
        """Whether outputs are independent per-class sigmoids (metrics per example and class)."""
        return self._state.multilabel

    @property
    def compat(self) -> str | None:
        """The published convention :meth:`finalize` follows, or None for fastcarto's own."""
        return self._compat

    @property
    def last_epoch(self) -> int | None:
        """The latest epoch any example has seen, or None before the first update."""
        return self._state.last_epoch

    def update(
        self,
        outputs: Any,
        labels: Any,
        *,
        epoch: int | None = None,
        ids: Any = None,
        index: Any = None,
    ) -> None:
        """Adds one epoch's outputs for some or all examples.

        ``outputs`` has shape ``(rows, n_classes)`` (or ``(rows,)`` when ``n_classes == 1``);
        ``labels`` one label per row (``(rows, n_classes)`` targets for multi-label). Without
        ``ids`` the rows are examples ``0..n_examples`` and ``epoch`` defaults to the one after
        the latest seen; with ``ids`` (minibatches: the rows' example positions, one per row)
        ``epoch`` is required. The arguments are those of :meth:`fastcarto.Recorder.record`, in
        the same order. The update is all-or-nothing: after an error the accumulator is
        unchanged.

        Parameters
        ----------
        outputs:
            Logits or probabilities (as declared by ``kind``), ``(rows, n_classes)``.
        labels:
            Gold labels, one integer per row, or ``(rows, n_classes)`` 0/1 targets when
            ``multilabel``.
        epoch:
            The epoch these outputs belong to; required with ``ids``.
        ids:
            The rows' example positions in ``0..n_examples`` (minibatches).
        index:
            The former name of ``ids=``, accepted with a ``DeprecationWarning`` for one
            release.

        Raises
        ------
        ValueError
            Outputs of the wrong shape, a multi-label mismatch, ``ids`` without ``epoch``.
        fastcarto.LabelError
            A label out of range, or one that changes between epochs (unless
            ``compat="aum"``).
        fastcarto.NonFiniteError
            A NaN or infinite output with ``nan_policy="raise"``.
        fastcarto.EpochOrderError
            An epoch an example has already seen.
        fastcarto.InvalidProbabilitiesError
            ``kind="probs"`` outputs outside [0, 1] or not summing to 1.

        Warns
        -----
        fastcarto.KindWarning
            The first update's ``kind="logits"`` outputs look like probabilities.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> acc = fastcarto.Accumulator(n_examples=3, n_classes=2, kind="probs")
        >>> acc.update(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), [0, 1, 1])
        >>> acc.update(np.array([[0.3, 0.7]]), [1], epoch=1, ids=[2])
        >>> acc.last_epoch
        1
        """
        if index is not None:
            if ids is not None:
                raise TypeError("pass ids= only (index= is its deprecated former name)")
            warnings.warn(
                "Accumulator.update(index=...) is deprecated; pass ids=... (the same values)",
                DeprecationWarning,
                stacklevel=2,
            )
            ids = index
        if self.n_classes == 1 and np.ndim(outputs) == 1:
            # One logit / probability per row: the (rows, 1) column the engine reads.
            arr = as_float_array(np.asarray(outputs)[:, None], ndim=2, what="outputs")
        else:
            arr = as_float_array(outputs, ndim=2, what="outputs")
        rows = arr.shape[0]
        if arr.shape[1] != self.n_classes:
            raise ValueError(
                f"outputs have {arr.shape[1]} columns but the accumulator has "
                f"{self.n_classes} classes"
            )
        flat, multilabel = as_labels(labels, n_examples=rows, n_classes=self.n_classes)
        if multilabel != self.multilabel:
            raise ValueError(
                "labels of shape (rows, classes) need Accumulator(..., multilabel=True)"
                if multilabel
                else "a multi-label accumulator needs targets of shape (rows, classes)"
            )
        ix = None if ids is None else as_index(ids, rows=rows)
        if epoch is None:
            if ix is not None:
                raise ValueError("pass epoch= when updating a subset of examples with ids=")
            last = self._state.last_epoch
            epoch = 0 if last is None else last + 1
        epoch = check_epoch(epoch)
        self._state.update(
            arr, flat, epoch=epoch, index=ix, nan_policy=self._nan_policy, threads=self._threads
        )
        if not self._kind_checked:
            # A sample of the first update's rows (of this object): a flag, not the state's
            # last epoch, which costs a pass over every example.
            self._kind_checked = True
            if self.kind == "logits" and not self.multilabel:
                sample = arr[sample_rows(rows)]
                warn_if_probabilities(sample, where="the first update", stacklevel=2)

    def merge(self, other: Accumulator) -> None:
        """Folds ``other`` into this one, exactly.

        ``other`` covers the same examples: other epochs (that neither overlap nor interleave
        with this one's, per example), or other examples.

        Parameters
        ----------
        other:
            Another accumulator of the same examples, classes and kind; left unchanged.

        Raises
        ------
        TypeError
            ``other`` is not an :class:`Accumulator`.
        fastcarto.IncompatibleStateError
            A different number of examples or classes, or another kind.
        fastcarto.InterleavedEpochsError
            An example's epochs in the two interleave (forgetting depends on order).
        fastcarto.EpochOrderError
            An example has the same epoch in both.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> first = fastcarto.Accumulator(2, 2, kind="probs")
        >>> second = fastcarto.Accumulator(2, 2, kind="probs")
        >>> first.update(np.array([[0.9, 0.1], [0.4, 0.6]]), [0, 1], epoch=0)
        >>> second.update(np.array([[0.8, 0.2], [0.3, 0.7]]), [0, 1], epoch=1)
        >>> first.merge(second)
        >>> first.finalize().to_pandas()["n_epochs"].tolist()
        [2, 2]
        """
        if not isinstance(other, Accumulator):
            raise TypeError(f"can only merge another Accumulator, got {type(other).__name__}")
        # Merging with itself is merging with an equal copy (an error as soon as it holds an
        # epoch: every observation would be a duplicate); the state cannot be both borrowed.
        state = other._state if other is not self else _core.State.from_ipc(other._state.to_ipc())
        self._state.merge(state)

    def finalize(self, *, ddof: int = 0) -> DataMap:
        """The data map of everything seen so far (the accumulator stays usable).

        Parameters
        ----------
        ddof:
            Delta degrees of freedom of the variability (0: the population standard deviation
            of Swayamdipta et al.; 1: the sample one).

        Returns
        -------
        DataMap
            One row per example, the columns of :func:`fastcarto.compute`.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> acc = fastcarto.Accumulator(2, 2, kind="probs")
        >>> acc.update(np.array([[0.9, 0.1], [0.4, 0.6]]), [0, 1])
        >>> acc.update(np.array([[0.7, 0.3], [0.2, 0.8]]), [0, 1])
        >>> acc.finalize().to_pandas()["confidence"].round(2).tolist()
        [0.8, 0.7]
        """
        check_ddof(ddof)
        table = self._state.finalize(compat=self._compat, ddof=int(ddof))
        return DataMap(table, kind=self.kind, compat=self._compat)

    def to_arrow(self) -> pa.RecordBatch:
        """The raw per-example state as an Arrow record batch (see :meth:`from_arrow`).

        Returns
        -------
        pyarrow.RecordBatch
            One row per example: its running sums and counts, versioned.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> acc = fastcarto.Accumulator(2, 2, kind="probs")
        >>> acc.update(np.array([[0.9, 0.1], [0.4, 0.6]]), [0, 1])
        >>> acc.to_arrow().num_rows
        2
        """
        return self._state.to_arrow()

    @classmethod
    def from_arrow(
        cls,
        data: Any,
        *,
        compat: Compat | None = None,
        nan_policy: NanPolicy = "raise",
        threads: int | None = None,
    ) -> Accumulator:
        """Rebuilds an accumulator from :meth:`to_arrow`'s output (any Arrow batch or stream).

        ``compat`` applies from now on, as in the constructor (``"aum"`` accepts labels that
        change between updates).

        Parameters
        ----------
        data:
            A ``pyarrow.RecordBatch`` or anything speaking the Arrow PyCapsule interface.
        compat, nan_policy, threads:
            As in the constructor.

        Returns
        -------
        Accumulator
            The same state, ready for more updates.

        Raises
        ------
        fastcarto.FastcartoError
            Not a state :meth:`to_arrow` wrote, of a version this release cannot read, or
            with inconsistent counts.

        Examples
        --------
        >>> import numpy as np, fastcarto
        >>> acc = fastcarto.Accumulator(2, 2, kind="probs")
        >>> acc.update(np.array([[0.9, 0.1], [0.4, 0.6]]), [0, 1])
        >>> again = fastcarto.Accumulator.from_arrow(acc.to_arrow())
        >>> again.update(np.array([[0.7, 0.3], [0.2, 0.8]]), [0, 1])
        >>> again.last_epoch
        1
        """
        check_choice("compat", compat, COMPATS, optional=True)
        check_choice("nan_policy", nan_policy, NAN_POLICIES)
        check_threads(threads)
        self = cls.__new__(cls)
        self._state = _core.State.from_arrow(data)
        # The convention chosen now decides, as in the constructor.
        self._state.allow_label_change = compat == "aum"
        self._compat = compat
        self._nan_policy = nan_policy
        self._threads = threads
        self._kind_checked = False
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {
            "state": self._state.to_ipc(),
            "compat": self._compat,
            "nan_policy": self._nan_policy,
            "threads": self._threads,
        }

    def __setstate__(self, data: dict[str, Any]) -> None:
        # A pickle is untrusted input: check what __getstate__ wrote before using any of it.
        if not isinstance(data, dict):
            raise _core.FastcartoError(
                f"not a pickled fastcarto Accumulator: its state is a {type(data).__name__}, "
                "not a dict; the pickle is corrupt or from another program"
            )
        missing = [k for k in ("state", "compat", "nan_policy", "threads") if k not in data]
        if missing:
            raise _core.FastcartoError(
                f"not a pickled fastcarto Accumulator: {', '.join(map(repr, missing))} "
                "missing from its state; the pickle is corrupt or from another program"
            )
        if not isinstance(data["state"], bytes):
            raise _core.FastcartoError(
                "not a pickled fastcarto Accumulator: its 'state' is a "
                f"{type(data['state']).__name__}, not bytes; the pickle is corrupt"
            )
        try:
            check_choice("compat", data["compat"], COMPATS, optional=True)
            check_choice("nan_policy", data["nan_policy"], NAN_POLICIES)
            check_threads(data["threads"])
        except (TypeError, ValueError) as err:
            raise _core.FastcartoError(
                f"not a pickled fastcarto Accumulator: {err}; the pickle is corrupt"
            ) from err
        self._state = _core.State.from_ipc(data["state"])
        self._compat = data["compat"]
        self._nan_policy = data["nan_policy"]
        self._threads = data["threads"]
        self._kind_checked = False

    def __repr__(self) -> str:
        last = self.last_epoch
        seen = "no epochs yet" if last is None else f"up to epoch {last}"
        return (
            f"Accumulator({self.n_examples:,} examples, {self.n_classes} classes, {self.kind}"
            f"{', multilabel' if self.multilabel else ''}; {seen})"
        )
