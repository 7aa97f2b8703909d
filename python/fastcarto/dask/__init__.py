"""fastcarto on Dask: the same numbers as on one machine, computed where the data lives.

Needs ``dask[distributed]`` (the ``dask`` extra); ``import fastcarto`` does not import this.
"""

from ._datamodels import datamodel_statistics
from ._knn import knn

__all__ = ["datamodel_statistics", "knn"]
