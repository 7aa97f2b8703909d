"""`merge_accumulators`: per-worker :class:`fastcarto.Accumulator` objects merged on the cluster.

The pattern for online use across workers: each task (one per shard, rank or worker) builds an
``Accumulator`` of the whole training set and updates it with the rows it sees (``ids=``, the
examples' positions); the accumulators are then merged in the order given, as a pairwise tree of
``fastcarto-merge-acc`` tasks. Accumulators of disjoint examples, or of the same examples at
epochs that neither overlap nor interleave, merge exactly (``Accumulator.merge``); the order of
the tree is fixed by the order of the list, so a rerun gives the same bits.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Sequence
from typing import Any

from .._accumulator import Accumulator
from ._compute import _client


def _merge_two(a: Accumulator, b: Accumulator) -> Accumulator:
    if not isinstance(a, Accumulator):
        raise TypeError(f"can only merge Accumulators, got {type(a).__name__}")
    # A copy: a task must not change its inputs (Dask may run it again, or hand the same
    # object to another task on this worker).
    merged: Accumulator = pickle.loads(pickle.dumps(a))
    merged.merge(b)
    return merged


def merge_accumulators(accumulators: Sequence[Any], *, client: Any = None) -> Accumulator:
    """Merges accumulators (or Dask futures of them) on the cluster, in a fixed pairwise tree in
    the order given, and returns the merged one.

    Parameters
    ----------
    accumulators:
        :class:`fastcarto.Accumulator` objects, or futures that resolve to them (the results of
        tasks that built them), all of the same examples, classes and kind.
    client:
        The ``distributed.Client`` to run on (default: the current one).

    Returns
    -------
    Accumulator
        One accumulator holding every input's epochs.

    Raises
    ------
    ValueError
        No accumulators, or accumulators of different examples, classes or kind.

    Examples
    --------
    >>> import numpy as np, fastcarto, fastcarto.dask
    >>> from distributed import Client
    >>> labels = np.array([0, 1, 2, 0, 1, 2])
    >>> def shard(rank):   # one task per data-parallel rank: its examples, every epoch
    ...     rng = np.random.default_rng(rank)
    ...     acc = fastcarto.Accumulator(n_examples=6, n_classes=3, kind="logits")
    ...     ids = np.arange(rank, 6, 2)
    ...     for epoch in range(3):
    ...         acc.update(rng.normal(size=(3, 3)), labels[ids], epoch=epoch, ids=ids)
    ...     return acc
    >>> with Client(processes=False, n_workers=1, dashboard_address=":0") as client:
    ...     parts = [client.submit(shard, rank) for rank in range(2)]
    ...     acc = fastcarto.dask.merge_accumulators(parts)
    >>> acc.finalize().to_pandas()["n_epochs"].tolist()
    [3, 3, 3, 3, 3, 3]
    """
    items = list(accumulators)
    if not items:
        raise ValueError("no accumulators to merge")
    client = _client(client)
    token = uuid.uuid4().hex[:12]
    counter = iter(range(1 << 62))
    while len(items) > 1:
        merged = [
            client.submit(
                _merge_two,
                items[i],
                items[i + 1],
                key=f"fastcarto-merge-acc-{token}-{next(counter)}",
            )
            for i in range(0, len(items) - 1, 2)
        ]
        if len(items) % 2:
            merged.append(items[-1])
        items = merged
    last = items[0]
    result = last.result() if hasattr(last, "result") else last
    if not isinstance(result, Accumulator):
        raise TypeError(f"can only merge Accumulators, got {type(result).__name__}")
    return result
