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
    "compute_npy_epochs",
    "discover",
    "inspect_npy",
    "knn",
    "map_dense",
    "prob_sum_tolerance",
    "read_keyed",
    "thread_count",
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
def prob_sum_tolerance(n_classes: int, itemsize: int) -> float: ...

_Columns = tuple[str, str, str, str | None]
_Progress = Callable[[int, int, int], None]

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
