"""Fitting datamodels and asking them questions."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _core
from ._inputs import (
    ArrayOrPath,
    DatamodelWarning,
    check_masks,
    check_outputs,
    chunks,
    fold,
    load,
    warn_small,
)

FORMAT_VERSION = 1
_ARRAYS = (
    "weights",
    "bias",
    "lam",
    "lambdas",
    "val_mse",
    "gap",
    "converged",
    "constant_columns",
    "mean_output",
)


class Influential(NamedTuple):
    """The training examples with the largest positive and negative weights of one target.

    What :meth:`Datamodel.most_influential` returns.

    Attributes
    ----------
    helpful:
        ``int64`` training examples with positive weights, strongest first.
    helpful_weights:
        Their weights.
    harmful:
        ``int64`` training examples with negative weights, most negative first.
    harmful_weights:
        Their weights.

    Examples
    --------
    >>> import fastcarto.datamodels as fdm
    >>> dm = fdm.Datamodel.from_weights([[0.5], [-0.25], [0.0]], bias=[1.0])
    >>> helpful, helpful_weights, harmful, harmful_weights = dm.most_influential(0)
    >>> helpful.tolist(), harmful.tolist()
    ([0], [1])
    """

    helpful: np.ndarray[Any, np.dtype[np.int64]]
    helpful_weights: np.ndarray[Any, np.dtype[np.float32]]
    harmful: np.ndarray[Any, np.dtype[np.int64]]
    harmful_weights: np.ndarray[Any, np.dtype[np.float32]]


class Similar(NamedTuple):
    """For each target, the ``k`` most similar targets by their datamodel embeddings.

    What :meth:`Datamodel.similar` returns.

    Attributes
    ----------
    indices:
        ``(K, k)`` ``int64`` target indices, most similar first.
    similarity:
        ``(K, k)`` ``float32`` cosine similarities of the embeddings.

    Examples
    --------
    >>> import fastcarto.datamodels as fdm
    >>> dm = fdm.Datamodel.from_weights([[1.0, 1.0, 0.0], [0.0, 0.1, 1.0]], bias=[0, 0, 0])
    >>> indices, similarity = dm.similar(k=1)
    >>> indices.ravel().tolist()
    [1, 0, 1]
    """

    indices: np.ndarray[Any, np.dtype[np.int64]]
    similarity: np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, eq=False)
class Datamodel:
    """Fitted datamodels, one linear model per target.

    For each target ``k``, the output of a model trained on the subset ``x`` (a 0/1 mask over
    the ``N`` training examples) is predicted as ``x @ weights[:, k] + bias[k]``. Made by
    :func:`fit`, :func:`fit_statistics`, :meth:`from_weights` or :meth:`load`.

    Attributes
    ----------
    weights:
        ``(N, K)`` float32, in raw mask units.
    bias:
        ``(K,)``.
    lam:
        ``(K,)`` the λ of each target (NaN for a constant target, whose weights are zero).
    lambdas, val_mse:
        ``(K, n_lambdas)`` each target's λ path and validation mean squared error along it
        (NaN past the early stop; empty when λ was given).
    gap:
        ``(K,)`` duality gap of the final solve, in units of the lasso objective.
    converged:
        ``(K,)`` whether the final solve met the tolerance.
    constant_columns:
        Training examples in every model or in none: their weights are zero.
    mean_output:
        ``(K,)`` the mean output over the models fitted on.

    Examples
    --------
    >>> import numpy as np, fastcarto.datamodels as fdm
    >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
    >>> dm.n_train, dm.n_targets
    (3, 2)
    >>> dm.predict(np.array([[True, True, False]])).round(2).tolist()
    [[1.25, 0.1]]
    """

    weights: np.ndarray[Any, np.dtype[np.float32]]
    bias: np.ndarray[Any, np.dtype[np.float64]]
    lam: np.ndarray[Any, np.dtype[np.float64]]
    lambdas: np.ndarray[Any, np.dtype[np.float64]]
    val_mse: np.ndarray[Any, np.dtype[np.float64]]
    gap: np.ndarray[Any, np.dtype[np.float64]]
    converged: np.ndarray[Any, np.dtype[np.bool_]]
    constant_columns: np.ndarray[Any, np.dtype[np.int64]]
    mean_output: np.ndarray[Any, np.dtype[np.float64]]

    @property
    def n_train(self) -> int:
        """Training examples ``N``."""
        return int(self.weights.shape[0])

    @property
    def n_targets(self) -> int:
        """Targets ``K``."""
        return int(self.weights.shape[1])

    def _target(self, target: int) -> int:
        t = int(target)
        if t != target or not -self.n_targets <= t < self.n_targets:
            raise IndexError(f"target {target!r} is out of range for {self.n_targets} targets")
        return t % self.n_targets

    def predict(
        self,
        masks: ArrayOrPath,
        *,
        n_train: int | None = None,
        bitorder: Literal["big", "little"] = "big",
    ) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Predicted outputs of models trained on some subsets.

        Parameters
        ----------
        masks:
            Bool ``(M', N)`` masks (or uint8 rows bit-packed with ``n_train``): arrays, memory
            maps or ``.npy`` paths.
        n_train:
            ``N``, for bit-packed masks.
        bitorder:
            The ``bitorder`` the masks were packed with.

        Returns
        -------
        numpy.ndarray
            ``(M', K)`` float64 predictions.

        Raises
        ------
        ValueError
            Masks over another number of training examples, or of the wrong shape.
        TypeError
            Masks that are not bool/uint8.

        Examples
        --------
        >>> import numpy as np, fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
        >>> dm.predict(np.packbits([[1, 0, 1]], axis=1), n_train=3).round(2).tolist()
        [[1.5, 0.3]]
        """
        m = load(masks, "masks")
        n = check_masks(m, n_train)
        if n != self.n_train:
            raise ValueError(f"masks have {n} training examples, the datamodels {self.n_train}")
        out = np.empty((m.shape[0], self.n_targets))
        for sl in chunks(m.shape[0], 4 * n):
            x = np.asarray(m[sl])
            if n_train is not None:
                x = np.unpackbits(x, axis=1, count=n_train, bitorder=bitorder)
            out[sl] = x.astype(np.float32) @ self.weights
        out += self.bias
        return out

    def counterfactual(self, target: int, remove: npt.ArrayLike) -> float:
        """Predicted change of the target's output when the training examples ``remove`` are
        left out of the training set: ``-Σ_{i ∈ remove} weights[i, target]``.

        Parameters
        ----------
        target:
            The target's index (negative counts from the end).
        remove:
            Training example ids, or a boolean mask over the ``N`` examples.

        Returns
        -------
        float
            The predicted change of the output.

        Raises
        ------
        IndexError
            A target or an id out of range.
        TypeError
            Ids that are not integers.
        ValueError
            Repeated ids, or a boolean mask of the wrong length.

        Examples
        --------
        >>> import numpy as np
        >>> dm = Datamodel.from_weights(np.array([[0.5], [-0.25], [0.0]]), bias=[1.0])
        >>> dm.counterfactual(0, remove=[0, 1])
        -0.25
        """
        t = self._target(target)
        ids = self._ids(remove)
        return -float(self.weights[ids, t].astype(np.float64).sum())

    def _ids(self, ids: npt.ArrayLike) -> np.ndarray[Any, np.dtype[np.int64]]:
        a = np.asarray(ids)
        if a.dtype == np.bool_:
            if a.shape != (self.n_train,):
                raise ValueError(f"a boolean `remove` needs {self.n_train} entries, got {a.shape}")
            return np.flatnonzero(a)
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"training example ids must be integers, got {a.dtype}")
        a = a.astype(np.int64).ravel()
        if a.size and (a.min() < 0 or a.max() >= self.n_train):
            raise IndexError(
                f"training example ids must be in [0, {self.n_train}), got {a.min()}..{a.max()}"
            )
        if np.unique(a).size != a.size:
            raise ValueError("training example ids to remove are repeated")
        return a

    def brittleness(
        self,
        target: int,
        *,
        output: float | None = None,
    ) -> np.ndarray[Any, np.dtype[np.int64]] | None:
        """The smallest set of training examples whose removal is predicted to flip the sign of
        the target's output, or ``None`` when no set is (Ilyas et al., 2022, appendix F.3: the
        heuristic "the smallest k such that the k largest weights add up to the margin").

        ``output`` is the output to flip (default: the mean output over the models, the
        average margin). For a positive output the examples are those with the largest
        positive weights, strongest first; for a negative one, the most negative.

        Parameters
        ----------
        target:
            The target's index.
        output:
            The output to flip; None for the mean output over the models.

        Returns
        -------
        numpy.ndarray or None
            The training example ids, strongest first (empty for an output of 0), or None
            when removing every example of the right sign does not reach the margin.

        Raises
        ------
        IndexError
            A target out of range.
        ValueError
            A non-finite output.

        Examples
        --------
        >>> import numpy as np
        >>> dm = Datamodel.from_weights(np.array([[0.5], [0.2], [0.4], [-1.0]]), bias=[0.0])
        >>> dm.brittleness(0, output=0.8).tolist()
        [0, 2]
        """
        t = self._target(target)
        value = float(self.mean_output[t]) if output is None else float(output)
        if not math.isfinite(value):
            raise ValueError(f"output must be finite, got {value}")
        w = self.weights[:, t].astype(np.float64) * (1.0 if value >= 0 else -1.0)
        order = np.argsort(-w, kind="stable")
        order = order[w[order] > 0]
        reach = np.cumsum(w[order])
        k = int(np.searchsorted(reach, abs(value), side="left"))
        if value == 0:
            return order[:0]
        return order[: k + 1] if k < order.size else None

    def most_influential(self, target: int, k: int = 10) -> Influential:
        """The training examples that help and hurt one target most.

        The ``k`` with the largest positive and the ``k`` with the most negative weights
        (fewer when fewer weights are non-zero).

        Parameters
        ----------
        target:
            The target's index.
        k:
            How many of each, at least 1.

        Returns
        -------
        Influential
            ``helpful``, ``helpful_weights``, ``harmful``, ``harmful_weights``.

        Raises
        ------
        IndexError
            A target out of range.
        ValueError
            ``k < 1``.

        Examples
        --------
        >>> import numpy as np, fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
        >>> top = dm.most_influential(1, k=2)
        >>> top.helpful.tolist(), top.harmful.tolist()
        ([2, 1], [])
        """
        t = self._target(target)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        w = self.weights[:, t]
        order = np.argsort(-w, kind="stable")
        pos = order[: min(k, int((w > 0).sum()))]
        neg = order[::-1][: min(k, int((w < 0).sum()))]
        return Influential(pos, w[pos], neg, w[neg])

    @property
    def embeddings(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """``(K, N)`` datamodel embeddings: each target's weights scaled to unit length (zero
        for a target whose weights are all zero)."""
        e = self.weights.T.copy()
        norm = np.linalg.norm(e, axis=1, keepdims=True)
        np.divide(e, norm, out=e, where=norm > 0)
        return e

    def similar(self, k: int = 10, *, among: npt.ArrayLike | None = None) -> Similar:
        """For each target, the ``k`` targets (of ``among``, default all; never itself) with
        the most similar datamodel embeddings (cosine). When targets include the training
        examples (``among`` = their target indices), these are the training examples that
        behave alike: near-copies, and train-test leakage (Ilyas et al., 2022, section 4).

        Parameters
        ----------
        k:
            Neighbours per target.
        among:
            The candidate target indices; None for all.

        Returns
        -------
        Similar
            ``indices`` and ``similarity``, ``(K, k)``, most similar first.

        Raises
        ------
        IndexError
            ``among`` holds indices out of range.
        ValueError
            ``k`` outside ``[1, number of candidates]``.

        Examples
        --------
        >>> import fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[1.0, 0.9, 0.0], [0.0, 0.1, 1.0]], bias=[0, 0, 0])
        >>> dm.similar(k=1).indices.ravel().tolist()
        [1, 0, 1]
        >>> dm.similar(k=1, among=[2]).indices.ravel().tolist()
        [2, 2, 2]
        """
        e = self.embeddings
        pool = np.arange(self.n_targets) if among is None else np.asarray(among, dtype=np.int64)
        if pool.ndim != 1 or (pool.size and (pool.min() < 0 or pool.max() >= self.n_targets)):
            raise IndexError(f"`among` must be target indices in [0, {self.n_targets})")
        if not 1 <= k < max(pool.size, 1) + (0 if among is None else 1):
            raise ValueError(
                f"k must be in [1, {pool.size - (1 if among is None else 0)}], got {k}"
            )
        sim = e @ e[pool].T
        sim[pool[None, :] == np.arange(self.n_targets)[:, None]] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, 1), 1), 1)
        return Similar(pool[ordered], np.take_along_axis(sim, ordered, 1).astype(np.float32))

    @classmethod
    def from_weights(cls, weights: npt.ArrayLike, bias: npt.ArrayLike) -> Datamodel:
        """Datamodels with given weights and bias (no fit information).

        Parameters
        ----------
        weights:
            ``(N, K)``, stored as float32.
        bias:
            ``(K,)``.

        Returns
        -------
        Datamodel
            ``lam`` NaN, empty λ paths, ``mean_output`` equal to ``bias``.

        Raises
        ------
        ValueError
            Shapes that do not match.

        Examples
        --------
        >>> import numpy as np, fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
        >>> dm.weights.dtype, dm.mean_output.tolist()
        (dtype('float32'), [1.0, 0.0])
        """
        w = np.asarray(weights, dtype=np.float32)
        b = np.asarray(bias, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"weights must be (N, K) and bias (K,), got {w.shape} and {b.shape}")
        k = w.shape[1]
        return cls(
            w,
            b,
            np.full(k, np.nan),
            np.zeros((k, 0)),
            np.zeros((k, 0)),
            np.zeros(k),
            np.ones(k, dtype=bool),
            np.zeros(0, dtype=np.int64),
            b.copy(),
        )

    def save(self, path: str | Path) -> None:
        """Writes the datamodels to a directory; :meth:`load` reads them back.

        Parameters
        ----------
        path:
            The directory (created if missing): one ``.npy`` per array and a
            ``datamodel.json``.

        Examples
        --------
        >>> import numpy as np, fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     dm.save(tmp)
        ...     fdm.Datamodel.load(tmp).weights.shape
        (3, 2)
        """
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(d / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {
            "format": "fastcarto.datamodels",
            "version": FORMAT_VERSION,
            "n_train": self.n_train,
            "n_targets": self.n_targets,
        }
        (d / "datamodel.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Datamodel:
        """Reads datamodels written by :meth:`save`.

        Parameters
        ----------
        path:
            The directory :meth:`save` wrote.

        Returns
        -------
        Datamodel
            The saved datamodels.

        Raises
        ------
        FileNotFoundError
            The directory holds no ``datamodel.json``.
        fastcarto.FileFormatError
            Not a fastcarto datamodel of this format version, or arrays that do not match.

        Examples
        --------
        >>> import numpy as np, fastcarto.datamodels as fdm
        >>> dm = fdm.Datamodel.from_weights([[0.5, 0.0], [-0.25, 0.1], [0.0, 0.3]], bias=[1.0, 0.0])
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     dm.save(tmp)
        ...     fdm.Datamodel.load(tmp).predict(np.ones((1, 3), dtype=bool)).round(2).tolist()
        [[1.25, 0.4]]
        """
        d = Path(path)
        meta_path = d / "datamodel.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{d} holds no datamodel.json: not a saved Datamodel")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != "fastcarto.datamodels" or meta.get("version") != FORMAT_VERSION:
            raise _core.FileFormatError(
                f"{meta_path}: not a fastcarto datamodel of version {FORMAT_VERSION}"
            )
        arrays = {n: np.load(d / f"{n}.npy", allow_pickle=False) for n in _ARRAYS}
        dm = cls(**arrays)
        if dm.weights.shape != (meta["n_train"], meta["n_targets"]):
            raise _core.FileFormatError(
                f"{d}: weights of shape {dm.weights.shape} do not match {meta_path}"
            )
        return dm


def _model_from(result: dict[str, Any], mean_output: np.ndarray[Any, Any]) -> Datamodel:
    dm = Datamodel(
        weights=result["weights"].astype(np.float32),
        bias=result["bias"],
        lam=result["lam"],
        lambdas=result["lambdas"],
        val_mse=result["val_mse"],
        gap=result["gap"],
        converged=result["converged"],
        constant_columns=result["constant_columns"].astype(np.int64),
        mean_output=mean_output,
    )
    if dm.constant_columns.size:
        warnings.warn(
            f"{dm.constant_columns.size} training examples are in every model or in none (first: "
            f"{dm.constant_columns[:5].tolist()}); their effect cannot be told from the bias, so "
            "their weights are zero",
            DatamodelWarning,
            stacklevel=3,
        )
    return dm


def fit_statistics(
    train: _core.DatamodelStats,
    val: _core.DatamodelStats | None = None,
    *,
    lam: float | npt.ArrayLike | None = None,
    n_lambdas: int = 100,
    lambda_ratio: float = 1e-3,
    patience: int | None = 5,
    step: int = 8,
    tol: float = 1e-4,
    path_tol: float | None = None,
    max_iter: int = 1000,
    threads: int | None = None,
) -> Datamodel:
    """:func:`fit` on statistics (see :func:`statistics`): λ chosen on ``val``, or given.

    Parameters
    ----------
    train:
        Statistics of the training models.
    val:
        Statistics of the validation models, on which λ is chosen; the final fit uses both.
        Not needed with ``lam``.
    lam, n_lambdas, lambda_ratio, patience, step, tol, path_tol, max_iter, threads:
        As in :func:`fit`.

    Returns
    -------
    Datamodel
        One datamodel per target.

    Raises
    ------
    ValueError
        Neither ``val`` nor ``lam``, or ``patience`` or ``step`` below 1.
    fastcarto.IncompatibleStateError
        ``train`` and ``val`` of different shapes.

    Warns
    -----
    DatamodelWarning
        Fewer models than training examples, or examples in every model or in none.

    Examples
    --------
    >>> import numpy as np, fastcarto.datamodels as fdm
    >>> rng = np.random.default_rng(0)
    >>> masks = rng.random((600, 20)) < 0.5
    >>> outputs = masks[:, [2]] * 1.0 + rng.normal(0, 0.1, (600, 1))
    >>> train = fdm.statistics(masks[:500], outputs[:500])
    >>> val = fdm.statistics(masks[500:], outputs[500:])
    >>> model = fdm.fit_statistics(train, val)
    >>> model.most_influential(0, k=1).helpful.tolist()
    [2]
    """
    parts = [train] if val is None else [train, val]
    total = sum(p.n_rows for p in parts)
    sums = sum(p.parts()[3] for p in parts)
    mean_output = np.asarray(sums, dtype=np.float64) / max(total, 1)
    warn_small(total, train.n_cols)
    if lam is not None:
        lams = np.broadcast_to(np.asarray(lam, dtype=np.float64), (train.n_targets,)).copy()
        res = _core.datamodels_fit_fixed(parts, lams, tol=tol, max_iter=max_iter, threads=threads)
    else:
        if val is None:
            raise ValueError("choosing λ needs validation statistics (val=...) or pass lam=...")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be at least 1 or None, got {patience}")
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        res = _core.datamodels_fit(
            train,
            val,
            n_lambdas=n_lambdas,
            lambda_ratio=lambda_ratio,
            patience=patience,
            tol=tol,
            path_tol=path_tol,
            max_iter=max_iter,
            step=step,
            threads=threads,
        )
    return _model_from(res, mean_output)


def fit(
    masks: ArrayOrPath,
    outputs: ArrayOrPath,
    *,
    val_fraction: float = 0.1,
    lam: float | npt.ArrayLike | None = None,
    n_lambdas: int = 100,
    lambda_ratio: float = 1e-3,
    patience: int | None = 5,
    step: int = 8,
    tol: float = 1e-4,
    path_tol: float | None = None,
    max_iter: int = 1000,
    n_train: int | None = None,
    bitorder: Literal["big", "little"] = "big",
    threads: int | None = None,
) -> Datamodel:
    """Fits one sparse linear datamodel per target (Ilyas et al., 2022).

    ``masks`` ``(M, N)`` says which of the ``N`` training examples each of ``M`` models was
    trained on (bool, or uint8 rows of ``numpy.packbits(masks, axis=1)`` with ``n_train=N``);
    ``outputs`` ``(M, K)`` is each model's output (e.g. the correct-class margin) on ``K``
    targets. Arrays, memory maps and ``.npy`` paths are read in chunks, never whole.

    Per target, a lasso on the standardized masks with an unpenalized bias, solved in the
    Rust core along ``n_lambdas`` log-spaced λ from the largest useful one down to
    ``lambda_ratio`` times it; the last ``val_fraction`` of the models are held out, the λ with
    the lowest validation error is chosen (the path stops once ``patience`` λ in a row did not
    improve it), and the model is refit on all models at that λ. The path visits every
    ``step``-th λ first, then the λ nearest the vertex of the parabola through the best of
    those and its two neighbours (``step=1``: every λ, as scikit-learn's ``lasso_path``);
    ``val_mse`` is NaN at the λ not visited. The solves along the path only choose λ and stop
    at ``path_tol`` (default ``10 * tol``; in ``float32`` when it is at least ``1e-5``); the
    refit (``float64``) meets
    ``tol`` (scikit-learn's convergence tests; the duality gap is reported as ``gap``). With
    ``lam`` (one value or one per target) there is no path: every model is fitted at that λ.
    λ is scikit-learn's ``Lasso(alpha=λ)`` on ``StandardScaler``-ed masks (see
    ``docs/datamodels.md``).

    Parameters
    ----------
    masks:
        ``(M, N)`` bool masks (or bit-packed uint8 with ``n_train``): arrays, memory maps or
        ``.npy`` paths.
    outputs:
        ``(M, K)`` (or ``(M,)``) float outputs.
    val_fraction:
        The share of the models (the last ones) held out to choose λ, in (0, 1).
    lam:
        A fixed λ (one, or one per target) instead of the path.
    n_lambdas:
        Length of the λ path.
    lambda_ratio:
        The smallest λ of the path as a fraction of the largest.
    patience:
        Stop the path after this many λ in a row without improvement (None: never).
    step:
        Visit every ``step``-th λ first, then the one nearest the validation curve's
        parabolic minimum.
    tol:
        Duality-gap tolerance of each solve.
    path_tol:
        Tolerance of the path's solves, which only choose λ (None: ``10 * tol``); the refit
        at the chosen λ meets ``tol``.
    max_iter:
        Coordinate-descent passes per solve.
    n_train:
        ``N``, for bit-packed masks.
    bitorder:
        The ``bitorder`` the masks were packed with.
    threads:
        Worker threads (default: ``FASTCARTO_NUM_THREADS`` or all cores).

    Returns
    -------
    Datamodel
        One datamodel per target.

    Raises
    ------
    TypeError
        Masks that are not bool/uint8 (bit-packed: uint8), or outputs that are not float.
    ValueError
        Arrays of the wrong shape, masks and outputs of different numbers of models,
        ``val_fraction`` outside (0, 1), or too few models to hold some out.
    FileNotFoundError
        A ``.npy`` path that does not exist.
    fastcarto.FastcartoError
        An output that is NaN or infinite.

    Warns
    -----
    DatamodelWarning
        Fewer models than training examples, or examples in every model or in none.

    See Also
    --------
    lds : scores the datamodels on held-out models.

    Examples
    --------
    >>> import numpy as np, fastcarto.datamodels as fdm
    >>> rng = np.random.default_rng(0)
    >>> masks = rng.random((2000, 50)) < 0.5
    >>> outputs = masks[:, [3]] * 2.0 - masks[:, [7]] + rng.normal(0, 0.5, (2000, 1))
    >>> model = fdm.fit(masks, outputs)
    >>> top = model.most_influential(0, k=1)
    >>> top.helpful.tolist(), top.harmful.tolist()
    ([3], [7])
    >>> abs(model.counterfactual(0, remove=[3]) + 2.0) < 0.2  # removing 3 costs about 2
    True
    """
    m, y = load(masks, "masks"), load(outputs, "outputs")
    n = check_masks(m, n_train)
    y = check_outputs(y, m.shape[0])
    n_models = m.shape[0]
    opts: dict[str, Any] = {"n_train": n_train, "bitorder": bitorder, "threads": threads}
    if lam is not None:
        stats = _core.DatamodelStats(n, y.shape[1])
        fold(stats, m, y, slice(0, n_models), **opts)
        return fit_statistics(stats, lam=lam, tol=tol, max_iter=max_iter, threads=threads)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(val_fraction * n_models))
    if n_models - n_val < 2:
        raise ValueError(
            f"{n_models} models are too few: choosing λ needs at least 2 training and 1 "
            "validation models (datamodels want thousands)"
        )
    train = _core.DatamodelStats(n, y.shape[1])
    val = _core.DatamodelStats(n, y.shape[1])
    fold(train, m, y, slice(0, n_models - n_val), **opts)
    fold(val, m, y, slice(n_models - n_val, n_models), **opts)
    return fit_statistics(
        train,
        val,
        n_lambdas=n_lambdas,
        lambda_ratio=lambda_ratio,
        patience=patience,
        step=step,
        tol=tol,
        path_tol=path_tol,
        max_iter=max_iter,
        threads=threads,
    )


def _ranks(a: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Average ranks of each column (ties share their mean rank), as scipy's ``rankdata``."""
    order = np.argsort(a, axis=0, kind="stable")
    s = np.take_along_axis(a, order, axis=0)
    m = a.shape[0]
    pos = np.arange(m, dtype=np.float64)[:, None] * np.ones((1, a.shape[1]))
    new = np.ones_like(s, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=0)
    last_new = np.ones_like(new)
    last_new[:-1] = new[1:]
    last = np.minimum.accumulate(np.where(last_new, pos, m - 1)[::-1], axis=0)[::-1]
    ranks = np.empty_like(pos)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=0)
    return ranks


def lds(
    model: Datamodel,
    masks: ArrayOrPath,
    outputs: ArrayOrPath,
    *,
    per_target: bool = False,
    n_train: int | None = None,
    bitorder: Literal["big", "little"] = "big",
) -> Any:
    """The linear datamodeling score: the Spearman correlation, over held-out models, between
    predicted and actual outputs, averaged over targets (Park et al., 2023; Ilyas et al., 2022).
    Targets whose outputs or predictions are constant have no correlation (NaN) and are left
    out of the mean.

    Parameters
    ----------
    model:
        The fitted datamodels.
    masks, outputs:
        Held-out models (not those fitted on), as in :func:`fit`; at least 3.
    per_target:
        Return each target's correlation instead of the mean.
    n_train, bitorder:
        For bit-packed masks, as in :func:`fit`.

    Returns
    -------
    float or numpy.ndarray
        The mean correlation (NaN when no target has one), or the ``(K,)`` correlations.

    Raises
    ------
    ValueError
        Masks or outputs that do not match the datamodels, or fewer than 3 models.
    fastcarto.NonFiniteError
        A held-out output that is NaN or infinite.

    Examples
    --------
    >>> import numpy as np, fastcarto.datamodels as fdm
    >>> dm = fdm.Datamodel.from_weights([[1.0], [0.5], [0.0]], bias=[0.0])
    >>> masks = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    >>> fdm.lds(dm, masks, np.array([0.9, 0.6, 1.4, 0.1]))
    1.0
    """
    pred = model.predict(masks, n_train=n_train, bitorder=bitorder)
    y = check_outputs(load(outputs, "outputs"), pred.shape[0]).astype(np.float64)
    if y.shape[1] != model.n_targets:
        raise ValueError(f"outputs have {y.shape[1]} targets, the datamodels {model.n_targets}")
    if pred.shape[0] < 3:
        raise ValueError(
            f"a rank correlation needs at least 3 held-out models, got {pred.shape[0]}"
        )
    if not np.isfinite(y).all():
        raise _core.NonFiniteError("held-out outputs hold NaN or infinite values")
    ra, rb = _ranks(pred), _ranks(y)
    ra -= ra.mean(0)
    rb -= rb.mean(0)
    den = np.sqrt((ra**2).sum(0) * (rb**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ra * rb).sum(0) / np.where(den > 0, den, 1), np.nan)
    if per_target:
        return rho
    if np.isnan(rho).all():
        return float("nan")
    return float(np.nanmean(rho))
