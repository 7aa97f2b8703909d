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
    shown = _figure(model, X, y, Xt, yt, out / "influence.png", target_ids=te, train_ids=tr)
    for t in shown:
        inf = model.most_influential(t, k=3)
        say(
            f"test digit #{te[t]} (a {yt[t]}): helped most by training digits "
            f"{[int(tr[i]) for i in inf.helpful]} (labels {y[inf.helpful].tolist()}), hurt most by "
            f"{[int(tr[i]) for i in inf.harmful]} (labels {y[inf.harmful].tolist()})"
        )
    (out / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return DemoResult(model, score, seconds, tr, te)


def _shown_targets(model: Datamodel, yt: Any, n: int = 4) -> list[int]:
    """Test digits worth a look: the least confidently right ones (average margin just above
    0), one per class, and the most confidently wrong one when a digit is wrong on average."""
    margin = model.mean_output
    shown: list[int] = []
    for t in np.argsort(np.where(margin > 0, margin, np.inf)):
        if margin[t] <= 0 or len(shown) == n - 1:
            break
        if all(yt[t] != yt[s] for s in shown):
            shown.append(int(t))
    wrong = np.flatnonzero(margin < 0)
    if wrong.size:
        shown.append(int(wrong[np.argmin(margin[wrong])]))
    return shown


def _figure(
    model: Datamodel,
    X: Any,
    y: Any,
    Xt: Any,
    yt: Any,
    path: Path,
    k: int = 4,
    target_ids: Any = None,
    train_ids: Any = None,
) -> list[int]:
    """A few test digits (:func:`_shown_targets`), each with its ``k`` most helpful (largest
    positive weight: removing them lowers the margin) and ``k`` most harmful (most negative
    weight) training images, with their labels and weights; returns the targets shown."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    helpful_c, harmful_c = "#1a7f37", "#c2185b"
    shown = _shown_targets(model, yt)
    n_rows = len(shown)
    widths = [1.0, 0.35] + [1.0] * k + [0.35] + [1.0] * k
    fig = plt.figure(figsize=(0.95 * sum(widths) + 0.4, 1.55 * n_rows + 0.9))
    grid = fig.add_gridspec(
        n_rows,
        len(widths),
        width_ratios=widths,
        wspace=0.12,
        hspace=0.6,
        left=0.045,
        right=0.99,
        top=1 - 0.85 / (1.55 * n_rows + 0.9),
        bottom=0.02,
    )

    def image(ax: Any, pixels: Any, colour: str) -> None:
        ax.imshow(pixels.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.5)

    tid = target_ids if target_ids is not None else np.arange(len(yt))
    trid = train_ids if train_ids is not None else np.arange(len(y))
    heads: dict[str, list[Any]] = {"helpful": [], "harmful": []}
    for row, t in enumerate(shown):
        inf = model.most_influential(t, k=k)
        ax = fig.add_subplot(grid[row, 0])
        image(ax, Xt[t], "black")
        right = "right" if model.mean_output[t] > 0 else "wrong"
        ax.set_title(
            f"test #{tid[t]}: a {yt[t]}\nmargin {model.mean_output[t]:+.2f} ({right})",
            fontsize=8,
            fontweight="bold",
        )
        for name, ids, ws, first, colour in (
            ("helpful", inf.helpful, inf.helpful_weights, 2, helpful_c),
            ("harmful", inf.harmful, inf.harmful_weights, 3 + k, harmful_c),
        ):
            for j in range(k):
                ax = fig.add_subplot(grid[row, first + j])
                if row == 0:
                    heads[name].append(ax)
                if j >= len(ids):
                    ax.set_axis_off()
                    continue
                image(ax, X[ids[j]], colour)
                ax.set_title(
                    f"#{trid[ids[j]]}: a {y[ids[j]]}\nw = {ws[j]:+.3f}", fontsize=7.5, color=colour
                )
    fig.canvas.draw()
    for name, colour, text in (
        ("helpful", helpful_c, "most helpful: removing them lowers the margin"),
        ("harmful", harmful_c, "most harmful: removing them raises the margin"),
    ):
        boxes = [ax.get_position() for ax in heads[name]]
        fig.text(
            (boxes[0].x0 + boxes[-1].x1) / 2,
            1 - 0.3 / (1.55 * n_rows + 0.9),
            text,
            ha="center",
            va="center",
            fontsize=9,
            color=colour,
            fontweight="bold",
        )
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return shown
