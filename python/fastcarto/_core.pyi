"""Type stubs of the compiled engine bindings (kept by hand; checked with mypy.stubtest)."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "DATA_SUFFIXES",
    "TABLE_SUFFIXES",
    "BatchChecker",
    "DatamodelStats",
    "EmptyInputError",
    "EpochOrderError",
    "FastcartoError",
    "FileFormatError",
    "IncompatibleStateError",
    "InterleavedEpochsError",
    "InvalidProbabilitiesError",
    "LabelError",
    "NonFiniteError",
    "State",
    "__version__",
    "check_keyed_parts",
    "class_imbalance",
    "compute_npy_epochs",
    "datamodels_fit",
    "datamodels_fit_fixed",
    "dbscan",
    "discover",
    "epoch_in_name",
    "id_split_points",
    "inspect_npy",
    "knn",
    "knn_block",
    "knn_finish",
    "knn_merge",
    "knn_outliers",
    "knn_pred_probs",
    "label_issues",
    "map_dense",
    "merge_by_id",
    "near_duplicates",
    "non_iid",
    "null_scan",
    "prob_outliers",
    "prob_sum_tolerance",
    "read_keyed",
    "read_keyed_part",
    "thread_count",
    "underperforming_groups",
]

__version__: str
TABLE_SUFFIXES: tuple[str, ...]
DATA_SUFFIXES: tuple[str, ...]

class FastcartoError(ValueError): ...
class NonFiniteError(FastcartoError): ...
class InvalidProbabilitiesError(FastcartoError): ...
class LabelError(FastcartoError): ...
class EpochOrderError(FastcartoError): ...
class InterleavedEpochsError(EpochOrderError): ...
class IncompatibleStateError(FastcartoError): ...
class FileFormatError(FastcartoError): ...
class EmptyInputError(FastcartoError): ...

@final
class State:
    @staticmethod
    def empty(
        n_examples: int,
        n_classes: int,
        *,
        kind: str,
        multilabel: bool = False,
        allow_label_change: bool = False,
    ) -> State: ...
    def update(
        self,
        outputs: npt.NDArray[np.floating[Any]],
        labels: npt.NDArray[np.int64],
        *,
        epoch: int,
        index: npt.NDArray[np.uint64] | None = None,
        nan_policy: str = "raise",
        threads: int | None = None,
    ) -> None: ...
    def merge(self, other: State) -> None: ...
    def finalize(
        self, *, compat: str | None = None, ddof: int = 0, ids: Any = None
    ) -> pa.RecordBatch: ...
    def take_table(
        self, *, compat: str | None = None, ddof: int = 0, ids: Any = None
    ) -> pa.RecordBatch: ...
    def to_arrow(self) -> pa.RecordBatch: ...
    @staticmethod
    def from_arrow(data: Any) -> State: ...
    def to_ipc(self) -> bytes: ...
    @staticmethod
    def from_ipc(data: bytes) -> State: ...
    def __reduce__(self) -> tuple[Any, tuple[bytes]]: ...
    @property
    def n_examples(self) -> int: ...
    @property
    def n_classes(self) -> int: ...
    @property
    def multilabel(self) -> bool: ...
    @property
    def kind(self) -> str: ...
    @property
    def allow_label_change(self) -> bool: ...
    @allow_label_change.setter
    def allow_label_change(self, allow: bool) -> None: ...
    @property
    def last_epoch(self) -> int | None: ...

# The epoch selection every entry point takes: None (all), int k (the first k), a slice or a
# list of epoch numbers (for a dense array, positions).
_Epochs = int | slice | list[int] | None

def map_dense(
    outputs: npt.NDArray[np.floating[Any]] | str | PathLike[str],
    labels: npt.NDArray[np.int64],
    *,
    kind: str,
    epochs: _Epochs = None,
    multilabel: bool = False,
    nan_policy: str = "raise",
    threads: int | None = None,
    compat: str | None = None,
    ddof: int = 0,
) -> pa.RecordBatch: ...
def inspect_npy(path: str | PathLike[str]) -> tuple[tuple[int, int, int], str]: ...
def thread_count(threads: int | None = None) -> int: ...
def knn(
    features: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    k: int,
    *,
    metric: str = "cosine",
    exact: bool | None = None,
    seed: int = 0,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...

# A part of the exact graph in blocks: (start, distances (q, k) float64, indices (q, k) int64,
# dups (q, k) int64, n_dups (q,) uint64, searchable (q,) bool, n_reference, n_reference_searchable).
_KnnPart = tuple[
    int,
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint64],
    npt.NDArray[np.bool_],
    int,
    int,
]

def knn_block(
    queries: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    q_start: int,
    reference: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    r_start: int,
    k: int,
    *,
    metric: str = "cosine",
    threads: int | None = None,
) -> _KnnPart: ...
def knn_merge(a: _KnnPart, b: _KnnPart) -> _KnnPart: ...
def knn_finish(part: _KnnPart, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def prob_sum_tolerance(n_classes: int, itemsize: int) -> float: ...

_Columns = tuple[str, str, str, str | None]
_Progress = Callable[[int, int, int], None]

def merge_by_id(
    a: State, a_ids: pa.Array | None, b: State, b_ids: pa.Array | None
) -> tuple[State, pa.Array | None]: ...

# source: a file, directory or glob (str), or Arrow data (__arrow_c_stream__/__arrow_c_array__).
def read_keyed(
    source: str | Any,
    *,
    kind: str,
    columns: _Columns,
    nan_policy: str,
    epochs: _Epochs = None,
    require_complete: bool,
    progress: _Progress | None = None,
    threads: int | None = None,
) -> tuple[State, pa.Array]: ...

# source: a path (str), a list of (file path, epoch in its name) read in that order, or Arrow
# data; returns (state, ids, epochs, rows, folded one epoch at a time).
def read_keyed_part(
    source: str | list[tuple[str, int | None]] | Any,
    *,
    kind: str,
    columns: _Columns,
    nan_policy: str,
    epochs: _Epochs = None,
    threads: int | None = None,
    id_range: tuple[int | str | None, int | str | None] | None = None,
    epoch_at_a_time: bool = False,
) -> tuple[State | None, pa.Array | None, list[int], int, bool]: ...
def id_split_points(
    files: list[tuple[str, int | None]], *, kind: str, columns: _Columns, parts: int
) -> list[int] | list[str]: ...
def epoch_in_name(path: str) -> int | None: ...
def check_keyed_parts(
    state: State | None,
    ids: pa.Array | None,
    *,
    rows: int,
    epochs_present: list[int],
    epochs: _Epochs = None,
    require_complete: bool,
) -> None: ...

@final
class BatchChecker:
    def __new__(
        cls, *, kind: str, n_examples: int | None = None, across_batches: bool = True
    ) -> BatchChecker: ...
    def check(
        self,
        outputs: npt.NDArray[np.floating[Any]],
        labels: npt.NDArray[np.int64],
        ids: npt.NDArray[np.int64] | pa.Array,
        *,
        epoch: int,
    ) -> None: ...
    def add(self, ids: npt.NDArray[np.int64] | pa.Array, *, epoch: int) -> None: ...

def discover(source: str) -> list[tuple[Path, str, int | None, int]]: ...
def compute_npy_epochs(
    files: Sequence[tuple[str | PathLike[str], int]],
    labels: npt.NDArray[np.int64],
    *,
    kind: str,
    nan_policy: str = "raise",
    epochs: _Epochs = None,
    threads: int | None = None,
) -> State: ...

@final
class DatamodelStats:
    def __new__(cls, n_cols: int, n_targets: int) -> DatamodelStats: ...
    def update(
        self, masks: npt.NDArray[Any], outputs: npt.NDArray[Any], *, threads: int | None = None
    ) -> None: ...
    def update_packed(
        self,
        packed: npt.NDArray[np.uint8],
        outputs: npt.NDArray[Any],
        *,
        n_cols: int,
        little: bool = False,
        threads: int | None = None,
    ) -> None: ...
    def merge(self, other: DatamodelStats) -> None: ...
    def copy(self) -> DatamodelStats: ...
    @property
    def n_rows(self) -> int: ...
    @property
    def n_cols(self) -> int: ...
    @property
    def n_targets(self) -> int: ...
    def parts(
        self,
    ) -> tuple[
        int,
        npt.NDArray[np.uint32],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
    ]: ...
    @staticmethod
    def from_parts(
        n_rows: int,
        xtx: npt.NDArray[np.uint32],
        xty: npt.NDArray[np.float64],
        sum_y: npt.NDArray[np.float64],
        sum_y2: npt.NDArray[np.float64],
    ) -> DatamodelStats: ...

def datamodels_fit(
    train: DatamodelStats,
    val: DatamodelStats,
    *,
    n_lambdas: int = 100,
    lambda_ratio: float = 1e-3,
    patience: int | None = ...,
    tol: float = 1e-4,
    path_tol: float | None = None,
    max_iter: int = 1000,
    step: int = 8,
    threads: int | None = None,
) -> dict[str, npt.NDArray[Any]]: ...
def datamodels_fit_fixed(
    parts: Sequence[DatamodelStats],
    lam: npt.NDArray[np.float64],
    *,
    tol: float = 1e-4,
    max_iter: int = 1000,
    threads: int | None = None,
) -> dict[str, npt.NDArray[Any]]: ...

# The audit: null and class_imbalance (fastcarto_core::audit).
def null_scan(
    features: npt.NDArray[np.float32] | npt.NDArray[np.float64], *, threads: int | None = None
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.bool_],
    npt.NDArray[np.float64],
    tuple[str, npt.NDArray[np.uint64]] | None,
]: ...
def class_imbalance(
    labels: npt.NDArray[np.int64], n_classes: int, threshold: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], int, float, bool]: ...

# The audit: label and underperforming_group (fastcarto_core::audit).
def label_issues(
    labels: npt.NDArray[np.int64],
    pred_probs: npt.NDArray[np.float64],
    *,
    thresholds: Sequence[float] | None = None,
    min_examples_per_class: int = 10,
) -> dict[str, Any]: ...
def knn_pred_probs(
    labels: npt.NDArray[np.int64], indices: npt.NDArray[np.int64], k: int, n_classes: int
) -> npt.NDArray[np.float64]: ...
def dbscan(
    indices: npt.NDArray[np.int64],
    distances: npt.NDArray[np.float32],
    *,
    eps: float = 0.5,
    min_samples: int = 5,
) -> npt.NDArray[np.int64]: ...
def underperforming_groups(
    labels: npt.NDArray[np.int64],
    pred_probs: npt.NDArray[np.float64],
    cluster_ids: npt.NDArray[np.int64],
    *,
    min_cluster_samples: int = 5,
    threshold: float = 0.1,
) -> dict[str, Any]: ...

# The audit's outlier, near_duplicate and non_iid issue types (audit.rs).
def knn_outliers(
    distances: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    *,
    threshold: float | None = None,
    t: float = 1.0,
    scaling_factor: float | None = None,
    metric: str | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], float, float, float]: ...
def prob_outliers(
    pred_probs: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.int64] | None = None,
    *,
    threshold: float | None = None,
    method: str = "entropy",
    adjust_pred_probs: bool = True,
    confident_thresholds: Sequence[float] | npt.NDArray[np.float64] | None = None,
    m: int = 100,
    gamma: float = 0.1,
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.bool_], float, float, npt.NDArray[np.float64] | None
]: ...
def near_duplicates(
    distances: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    *,
    threshold: float = 0.13,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.bool_],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    float,
]: ...
def non_iid(
    distances: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    *,
    num_permutations: int = 25,
    seed: int = 0,
    significance_threshold: float = 0.05,
    threads: int | None = None,
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.bool_], float, float, npt.NDArray[np.float64]
]: ...
