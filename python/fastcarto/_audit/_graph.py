"""The neighbour graph an issue type reads, chosen as cleanlab's ``set_knn_graph`` chooses it.

A graph the user gave is used whole, whatever its ``k`` (cleanlab reads every column of a given
``knn_graph``); otherwise the graph comes from :func:`.knn.knn_graph_for` (computed once per
``find_issues`` and shared) and the type reads its first ``k`` columns. A ``metric`` parameter
that differs from the shared graph's metric computes a graph with that metric, as cleanlab
recomputes when an issue type's metric differs from the stored one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from ._base import AuditInputs, KnnGraph


@dataclasses.dataclass(frozen=True)
class Neighbours:
    """The columns of a graph one issue type reads."""

    distances: npt.NDArray[np.float32]
    indices: npt.NDArray[np.int64]
    #: The graph's metric (None for a user's graph of unknown metric).
    metric: str | None
    #: Whether the user gave the graph.
    given: bool


def neighbours(
    inputs: AuditInputs,
    k: int,
    metric: str | None = None,
    *,
    features: npt.NDArray[np.floating[Any]] | None = None,
) -> Neighbours:
    """The graph for an issue type asking for ``k`` neighbours with ``metric`` (None: the shared
    graph's). ``features`` replaces ``inputs.features`` (non_iid falls back to ``pred_probs``)."""
    if inputs.knn_graph is not None:
        given = inputs.knn_graph
        return Neighbours(
            given.distances, given.indices, metric if metric is not None else given.metric, True
        )
    # The knn part's module; the ignore covers a checkout without it.
    from .knn import knn_graph_for  # type: ignore[import-not-found, unused-ignore]

    source = inputs
    if features is not None:
        source = dataclasses.replace(inputs, features=features, metric=None, _computed={})
    graph: KnnGraph = knn_graph_for(source, k)
    if metric is not None and graph.metric != metric:
        graph = knn_graph_for(dataclasses.replace(source, metric=metric, _computed={}), k)
    return Neighbours(graph.distances[:, :k], graph.indices[:, :k], graph.metric, False)


def reject_unknown(name: str, unknown: dict[str, Any], valid: tuple[str, ...]) -> None:
    """A clear error for parameters ``name`` does not take."""
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for issue type {name!r}; "
            f"it takes {', '.join(valid)}"
        )
