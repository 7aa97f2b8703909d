"""fastcarto: which training examples a model learns easily, finds ambiguous, or cannot learn.

Dataset cartography (Swayamdipta et al., 2020), forgetting events (Toneva et al., 2019), area
under the margin (Pleiss et al., 2020) and more, computed from training dynamics by a parallel,
streaming Rust engine.

>>> import numpy as np, fastcarto
>>> logits = np.random.default_rng(0).normal(size=(4, 10, 3)).astype(np.float32)
>>> dm = fastcarto.compute(logits, np.arange(10) % 3, kind="logits")
>>> len(dm)
10
"""

from ._accumulator import Accumulator
from ._audit._base import KnnGraph
from ._audit.knn import knn
from ._compute import compute
from ._core import (
    EmptyInputError,
    EpochOrderError,
    FastcartoError,
    FileFormatError,
    IncompatibleStateError,
    InterleavedEpochsError,
    InvalidProbabilitiesError,
    LabelError,
    NonFiniteError,
)
from ._core import __version__ as __version__
from ._datalab import Datalab
from ._datamap import DataMap
from ._inputs import KindWarning
from ._label_issues import threshold_samples
from ._recorder import Recorder
from ._regions import REGIONS, RegionRule
from ._trajectories import plot_trajectories, trajectories

__all__ = [
    "REGIONS",
    "Accumulator",
    "DataMap",
    "Datalab",
    "EmptyInputError",
    "EpochOrderError",
    "FastcartoError",
    "FileFormatError",
    "IncompatibleStateError",
    "InterleavedEpochsError",
    "InvalidProbabilitiesError",
    "KindWarning",
    "KnnGraph",
    "LabelError",
    "NonFiniteError",
    "Recorder",
    "RegionRule",
    "compute",
    "knn",
    "plot_trajectories",
    "threshold_samples",
    "trajectories",
]
