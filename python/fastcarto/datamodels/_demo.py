"""``fastcarto datamodels demo``: datamodels of scikit-learn's digits, end to end.

Thousands of logistic regressions, each trained on a random half of 1,000 training digits,
record their correct-class margins on the other 797 digits (:class:`Subsets`); datamodels are fit
on them (:func:`fit`) and scored on further held-out models (:func:`lds`); a figure shows, for a
few test digits, the training images that help and hurt them most.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._model import Datamodel, fit, lds
from ._subsets import Subsets

#: What the demo writes into its directory.
FILES = {
    "train/": "masks.npy, outputs.npy: the models the datamodels are fit on (Subsets)",
    "heldout/": "the same for the held-out models the LDS is computed on",
    "model/": "the fitted datamodels (Datamodel.save)",
    "influence.png": "test digits with their most helpful and most harmful training images",
    "report.txt": "the summary printed by the demo",
}


@dataclass(frozen=True)
class DemoResult:
    model: Datamodel
    lds: float
    fit_seconds: float
    train_ids: np.ndarray[Any, Any]
    target_ids: np.ndarray[Any, Any]


def digits_split(
    n_train: int, seed: int
) -> tuple[Any, Any, Any, Any, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Scikit-learn's digits (pixels scaled to [0, 1]) split into ``n_train`` training examples
    and the rest as targets: ``(X, y, X_targets, y_targets, train_ids, target_ids)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the datamodels demo needs scikit-learn: python -m pip install 'fastcarto[demo]'"
        ) from None
    X, y = load_digits(return_X_y=True)
    if not 10 <= n_train < len(y):
        raise ValueError(f"--train must be in [10, {len(y) - 1}], got {n_train}")
    order = np.random.default_rng(seed).permutation(len(y))
    tr, te = order[:n_train], order[n_train:]
    return X[tr] / 16, y[tr], X[te] / 16, y[te], tr, te


def run_demo(
    out: str | Path,
    *,
    n_models: int = 5000,
    n_heldout: int = 1000,
    n_train: int = 1000,
    seed: int = 0,
    n_jobs: int | None = None,
    stream: IO[str] | None = sys.stdout,
) -> DemoResult:
    """Runs the demo into the directory ``out`` (see :data:`FILES`)."""
    from sklearn.linear_model import LogisticRegression

    out = Path(out)
    X, y, Xt, yt, tr, te = digits_split(n_train, seed)
    est = LogisticRegression(solver="newton-cg")
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        if stream is not None:
            print(text, file=stream, flush=True)

    t0 = time.perf_counter()
    masks, outputs = Subsets(
        est, X, y, Xt, yt, n_models=n_models, out=out / "train", seed=seed, n_jobs=n_jobs
    ).run(progress=stream is not None)
    held_m, held_y = Subsets(
        est, X, y, Xt, yt, n_models=n_heldout, out=out / "heldout", seed=seed + 1, n_jobs=n_jobs
    ).run(progress=stream is not None)
    say(
        f"trained {n_models} + {n_heldout} logistic regressions on random halves of "
        f"{n_train} digits ({time.perf_counter() - t0:.0f} s)"
    )
    t0 = time.perf_counter()
    model = fit(masks, outputs)
    seconds = time.perf_counter() - t0
    score = lds(model, held_m, held_y)
    say(
        f"datamodels of {model.n_targets} test digits fit in {seconds:.2f} s; "
        f"median {int(np.median((model.weights != 0).sum(0)))} non-zero weights per target"
    )
    say(f"LDS on {n_heldout} held-out models: {score:.3f}")
    model.save(out / "model")
    shown = _figure(model, X, y, Xt, yt, out / "influence.png")
    for t in shown:
        inf = model.most_influential(t, k=3)
        say(
            f"test digit #{te[t]} (a {yt[t]}): helped most by training digits "
            f"{[int(tr[i]) for i in inf.helpful]} (labels {y[inf.helpful].tolist()}), hurt most by "
            f"{[int(tr[i]) for i in inf.harmful]} (labels {y[inf.harmful].tolist()})"
        )
    (out / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return DemoResult(model, score, seconds, tr, te)


def _figure(
    model: Datamodel, X: Any, y: Any, Xt: Any, yt: Any, path: Path, k: int = 4
) -> list[int]:
    """Three test digits (the least confidently right ones) with their ``k`` most helpful and
    ``k`` most harmful training images; returns the targets shown."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    margin = model.mean_output
    shown = [int(t) for t in np.argsort(np.where(margin > 0, margin, np.inf))[:3]]
    fig, axes = plt.subplots(len(shown), 1 + 2 * k, figsize=(1.3 * (1 + 2 * k), 1.6 * len(shown)))
    for row, t in zip(np.atleast_2d(axes), shown, strict=True):
        inf = model.most_influential(t, k=k)
        row[0].imshow(Xt[t].reshape(8, 8), cmap="gray_r")
        row[0].set_title(f"target: {yt[t]}", fontsize=8)
        for j in range(k):
            for ax, ids, ws, name in (
                (row[1 + j], inf.helpful, inf.helpful_weights, "+"),
                (row[1 + k + j], inf.harmful, inf.harmful_weights, "-"),
            ):
                if j < len(ids):
                    ax.imshow(X[ids[j]].reshape(8, 8), cmap="Greens" if name == "+" else "Reds")
                    ax.set_title(f"{name} {y[ids[j]]} ({ws[j]:+.2f})", fontsize=7)
        for ax in row:
            ax.set_axis_off()
    fig.suptitle("most helpful (green) and most harmful (red) training digits", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return shown
