"""fastcarto on a Dask cluster: the data map of files where they live, with the numbers
:func:`fastcarto.compute` gives on one machine.

``import fastcarto`` does not import Dask; ``import fastcarto.dask`` does (the ``dask`` extra:
``pip install 'fastcarto[dask]'``). See ``docs/dask.md`` ("Scaling out").
"""

from ._accumulator import merge_accumulators
from ._compute import compute

# Datamodels statistics and the audit's kNN on a cluster (``_datamodels.py``, ``_knn.py``)
# add their names below and to ``__all__``.

__all__ = [
    "compute",
    "merge_accumulators",
]
