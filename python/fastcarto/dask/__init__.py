"""fastcarto on a Dask cluster: the data map of files where they live, with the numbers
:func:`fastcarto.compute` gives on one machine; datamodel statistics and the audit's neighbour
graph computed blockwise.

``import fastcarto`` does not import Dask; ``import fastcarto.dask`` does (the ``dask`` extra:
``pip install 'fastcarto[dask]'``). See ``docs/dask.md`` ("Scaling out").
"""

from ._accumulator import merge_accumulators
from ._compute import compute
from ._datamodels import datamodel_statistics
from ._knn import knn

__all__ = [
    "compute",
    "datamodel_statistics",
    "knn",
    "merge_accumulators",
]
