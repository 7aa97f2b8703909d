"""Datamodels (Ilyas et al., 2022): which training examples cause a prediction.

Train many models on random subsets of the training set, record each model's output on the
targets, and fit, per target, a sparse linear model from the subset mask to the output
(:func:`fit`, in the Rust core: a many-target lasso on one shared Gram matrix). The weights say
which training examples help or hurt a prediction (:meth:`Datamodel.most_influential`), what
removing some would do (:meth:`Datamodel.counterfactual`), how brittle it is
(:meth:`Datamodel.brittleness`), and which examples behave alike (:meth:`Datamodel.similar`);
:func:`lds` scores them on held-out models and :class:`Subsets` trains the models.

Imported on its own (``import fastcarto.datamodels as fdm``); scikit-learn and joblib are needed
only by :class:`Subsets`. See ``docs/datamodels.md``.
"""

from .._core import DatamodelStats
from ._inputs import DatamodelWarning, statistics
from ._model import Datamodel, Influential, Similar, fit, fit_statistics, lds
from ._subsets import Subsets

__all__ = [
    "Datamodel",
    "DatamodelStats",
    "DatamodelWarning",
    "Influential",
    "Similar",
    "Subsets",
    "fit",
    "fit_statistics",
    "lds",
    "statistics",
]
