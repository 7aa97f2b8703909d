"""Training a scikit-learn estimator on many random subsets: the data datamodels are fit on."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_META = "subsets.json"


def _margins(
    est: Any, X: np.ndarray[Any, Any], y: np.ndarray[Any, Any], classes: np.ndarray[Any, Any]
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Correct-class margins: the score of the true class minus the best other score.

    Scores are ``decision_function`` (else log ``predict_proba``), laid out over all
    ``classes``; a class missing from a subset gets the row's lowest score, as a class never
    seen cannot be predicted above the others.
    """
    if hasattr(est, "decision_function"):
        s = np.asarray(est.decision_function(X), dtype=np.float64)
        if s.ndim == 1:  # binary: the score of classes_[1]
            s = np.stack([-s, s], axis=1) / 2
    else:
        # A probability of 0 scores log(tiny) = -708: finite, and margins of such scores still
        # fit the float32 outputs (a floor near float64's lowest overflowed them to inf).
        tiny = np.finfo(np.float64).tiny
        s = np.log(np.maximum(np.asarray(est.predict_proba(X), dtype=np.float64), tiny))
    full = np.empty((X.shape[0], classes.size))
    full[:] = s.min(axis=1, keepdims=True)
    full[:, np.searchsorted(classes, est.classes_)] = s
    true = np.searchsorted(classes, y)
    correct: np.ndarray[Any, np.dtype[np.float64]] = full[np.arange(y.size), true]
    full[np.arange(y.size), true] = -np.inf
    margin: np.ndarray[Any, np.dtype[np.float32]] = (correct - full.max(axis=1)).astype(np.float32)
    return margin


@functools.cache
def _threadpool_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController()


def _train(
    estimator: Any,
    X: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    mask: np.ndarray[Any, Any],
    X_t: np.ndarray[Any, Any],
    y_t: np.ndarray[Any, Any],
    classes: np.ndarray[Any, Any],
) -> np.ndarray[Any, np.dtype[np.float32]]:
    from sklearn.base import clone

    # One BLAS thread per model: models already run in parallel, and a BLAS pool per small fit
    # costs more than the fit (10x on 2 cores). The controller is built once per process:
    # building it (threadpool_limits does, each time) inspects every loaded library, ~6 ms.
    with _threadpool_controller().limit(limits=1):
        est = clone(estimator).fit(X[mask], y[mask])
        return _margins(est, X_t, y_t, classes)


class Subsets:
    """Trains an estimator on many random subsets: the data datamodels are fitted on.

    Trains ``estimator`` on ``n_models`` random subsets of ``(X, y)`` (each of
    ``round(alpha * N)`` examples, drawn without replacement) and records every model's
    correct-class margin on ``(X_targets, y_targets)``, in the directory ``out``:
    ``masks.npy`` ``(n_models, N)`` bool, ``outputs.npy`` ``(n_models, K)`` float32 and
    ``done.npy`` (which models are trained), all memory maps, so a run stopped half way
    resumes where it stopped (:meth:`run` again with the same arguments). Models train in
    parallel with joblib (``n_jobs``). The margin is the true class's score minus the best
    other class's (``decision_function``, else log ``predict_proba``).

    Parameters
    ----------
    estimator:
        A scikit-learn classifier (cloned for each model).
    X, y:
        The ``N`` training examples and their labels.
    X_targets, y_targets:
        The ``K`` targets whose margins are recorded, and their labels (classes of ``y``).
    n_models:
        How many models to train.
    out:
        The directory of the memory maps (created if missing).
    alpha:
        The share of the training examples in each subset, in (0, 1).
    seed:
        Seed of the subsets.
    n_jobs:
        joblib's ``n_jobs`` (None: one process, unless in a ``parallel_config``).

    Raises
    ------
    ValueError
        ``X``/``y`` or ``X_targets``/``y_targets`` of mismatched lengths, ``alpha`` outside
        (0, 1), ``n_models < 1``, or a target class that ``y`` lacks.

    Examples
    --------
    >>> import numpy as np, tempfile, fastcarto.datamodels as fdm
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     masks, outputs = fdm.Subsets(LogisticRegression(), X, y, X[:5], y[:5],
    ...                                  n_models=8, out=d).run()
    ...     masks.shape, outputs.shape, int(masks.sum(1)[0])
    ((8, 40), (8, 5), 20)
    """

    def __init__(
        self,
        estimator: Any,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        X_targets: npt.ArrayLike,
        y_targets: npt.ArrayLike,
        *,
        n_models: int,
        out: str | Path,
        alpha: float = 0.5,
        seed: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.X, self.y = np.asarray(X), np.asarray(y)
        self.X_targets, self.y_targets = np.asarray(X_targets), np.asarray(y_targets)
        n = self.X.shape[0] if self.X.ndim else 0
        if self.y.shape != (n,) or n < 2:
            raise ValueError(
                "X and y must describe the same N >= 2 examples, got "
                f"{self.X.shape} and {self.y.shape}"
            )
        k = self.X_targets.shape[0] if self.X_targets.ndim else 0
        if self.y_targets.shape != (k,) or k < 1:
            raise ValueError(
                f"X_targets and y_targets must describe the same K >= 1 targets, got "
                f"{self.X_targets.shape} and {self.y_targets.shape}"
            )
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if int(n_models) != n_models or n_models < 1:
            raise ValueError(f"n_models must be a positive integer, got {n_models}")
        self.classes = np.unique(self.y)
        if not np.isin(self.y_targets, self.classes).all():
            raise ValueError("y_targets holds a class that y does not")
        self.n_models, self.alpha, self.seed, self.n_jobs = int(n_models), alpha, seed, n_jobs
        self.out = Path(out)
        self.size = max(1, round(alpha * n))

    def _open(self) -> tuple[np.memmap[Any, Any], np.memmap[Any, Any], np.memmap[Any, Any]]:
        n, k = self.X.shape[0], self.X_targets.shape[0]
        meta = {
            "n_models": self.n_models,
            "n_train": n,
            "n_targets": k,
            "alpha": self.alpha,
            "seed": self.seed,
            "size": self.size,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        mp = self.out / _META
        if mp.exists():
            old = json.loads(mp.read_text(encoding="utf-8"))
            if old != meta:
                raise ValueError(
                    f"{self.out} holds a run with other settings ({old}); use another directory"
                )
            mode = "r+"
        else:
            mode = "w+"
        open_memmap = np.lib.format.open_memmap
        masks = open_memmap(
            self.out / "masks.npy", mode=mode, dtype=np.bool_, shape=(self.n_models, n)
        )
        outputs = open_memmap(
            self.out / "outputs.npy", mode=mode, dtype=np.float32, shape=(self.n_models, k)
        )
        done = open_memmap(self.out / "done.npy", mode=mode, dtype=np.bool_, shape=(self.n_models,))
        if mode == "w+":
            rng = np.random.default_rng(self.seed)
            for start in range(0, self.n_models, 4096):
                stop = min(start + 4096, self.n_models)
                keys = rng.random((stop - start, n))
                chosen = np.argpartition(keys, self.size - 1, axis=1)[:, : self.size]
                block = np.zeros((stop - start, n), dtype=bool)
                np.put_along_axis(block, chosen, True, axis=1)
                masks[start:stop] = block
            masks.flush()
            mp.write_text(json.dumps(meta) + "\n", encoding="utf-8")
        return masks, outputs, done

    def run(
        self, *, batch: int = 64, progress: bool = False
    ) -> tuple[np.memmap[Any, Any], np.memmap[Any, Any]]:
        """Trains the models not trained yet.

        Parameters
        ----------
        batch:
            Models handed to joblib at a time (and written to disk after each batch).
        progress:
            Show a progress bar (tqdm).

        Returns
        -------
        tuple of numpy.memmap
            ``(masks, outputs)``: ``(n_models, N)`` bool and ``(n_models, K)`` float32, ready
            for :func:`fit`.

        Raises
        ------
        ValueError
            ``out`` holds a run with other settings.

        Examples
        --------
        >>> import numpy as np, tempfile, fastcarto.datamodels as fdm
        >>> from sklearn.naive_bayes import GaussianNB
        >>> X = np.arange(20.0).reshape(10, 2); y = np.arange(10) % 2
        >>> with tempfile.TemporaryDirectory() as d:
        ...     subsets = fdm.Subsets(GaussianNB(), X, y, X[:2], y[:2], n_models=3, out=d)
        ...     masks, outputs = subsets.run(batch=2)
        ...     masks.shape, outputs.shape, bool(np.isfinite(outputs).all())
        ((3, 10), (3, 2), True)
        """
        from joblib import Parallel, delayed  # type: ignore[import-untyped]

        masks, outputs, done = self._open()
        todo = np.flatnonzero(~np.asarray(done))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.n_models, initial=self.n_models - todo.size, unit="model")
        with Parallel(n_jobs=self.n_jobs) as parallel:
            for start in range(0, todo.size, batch):
                ids = todo[start : start + batch]
                results = parallel(
                    delayed(_train)(
                        self.estimator,
                        self.X,
                        self.y,
                        np.asarray(masks[i]),
                        self.X_targets,
                        self.y_targets,
                        self.classes,
                    )
                    for i in ids
                )
                outputs[ids] = np.stack(results)
                outputs.flush()
                done[ids] = True
                done.flush()
                if bar is not None:
                    bar.update(ids.size)
        if bar is not None:
            bar.close()
        return masks, outputs
