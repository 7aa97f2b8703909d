"""``fastcarto demo``: the main job end to end on a dataset that ships with scikit-learn.

Trains a small neural network (``MLPClassifier``, one ``partial_fit`` pass per epoch) on the
8x8 handwritten digits with a known fraction of labels flipped, records its logits every epoch
with :class:`fastcarto.Recorder`, computes the data map from the recording, and writes the
picture, the metrics and the label issues. The flipped labels are known, so the demo reports how
many the label-issue rule found. ``benches/eval_label_noise.py`` and the tests reuse the helpers
here.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._datamap import DataMap

#: What the demo writes into its directory, and what each holds (``fastcarto demo --help`` lists
#: them from here).
FILES = {
    "datamap.png": "the data map, with the flagged labels marked as really flipped or not",
    "trajectories.png": "p(gold) per epoch of three flagged (flipped) and two unflagged examples",
    "metrics.parquet": "every metric of every example",
    "label_issues.csv": "every example's label score and flag, its true label, whether flipped",
    "report.txt": "the summary printed by the demo (regions, label issues)",
    "dynamics/": "the recorded logits of every epoch (fastcarto.Recorder's Arrow IPC segments)",
}

#: The network of the demo: one hidden layer of this many ReLU units.
HIDDEN_UNITS = 128
BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError:
        raise ImportError(
            "fastcarto demo needs scikit-learn: python -m pip install 'fastcarto[demo]'"
        ) from None
    return sklearn


def noisy_digits(
    noise: float, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """scikit-learn's digits (1,797 8x8 images, 10 classes) scaled to [0, 1], with a fraction
    ``noise`` of the labels flipped uniformly to another class.

    Returns ``(X, noisy_labels, true_labels)``.
    """
    _sklearn()
    from sklearn.datasets import load_digits

    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must lie in [0, 1], got {noise!r}")
    x, y = load_digits(return_X_y=True)
    x = np.asarray(x, dtype=np.float64) / 16.0
    y = np.asarray(y, dtype=np.int64)
    n_classes = int(y.max()) + 1
    rng = np.random.default_rng(seed)
    flipped = rng.choice(y.size, size=round(noise * y.size), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, size=flipped.size)) % n_classes
    return x, noisy, y


def mlp_logits(clf: Any, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The pre-softmax outputs (logits) of a fitted ``MLPClassifier`` on ``x``: its forward
    pass from the public ``coefs_`` / ``intercepts_`` without the output activation
    (``predict_proba`` is their softmax)."""
    hidden: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]] = {
        "relu": lambda a: np.maximum(a, 0.0),
        "tanh": np.tanh,
        "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)),
        "identity": lambda a: a,
    }
    act = hidden[clf.activation]
    a = x
    for w, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1], strict=True):
        a = act(a @ w + b)
    return np.asarray(a @ clf.coefs_[-1] + clf.intercepts_[-1], dtype=np.float32)


def train_epochs(
    x: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    epochs: int,
    seed: int = 0,
    n_classes: int | None = None,
) -> Any:
    """Yields ``(epoch, logits on x)`` after each epoch (one ``partial_fit`` pass) of an
    ``MLPClassifier`` trained on ``(x, labels)``."""
    _sklearn()
    from sklearn.neural_network import MLPClassifier

    classes = np.arange(n_classes if n_classes is not None else int(labels.max()) + 1)
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN_UNITS,),
        batch_size=BATCH_SIZE,
        learning_rate_init=LEARNING_RATE,
        random_state=seed,
    )
    for epoch in range(epochs):
        clf.partial_fit(x, labels, classes=classes)
        yield epoch, mlp_logits(clf, x)


def train_and_map(
    x: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    epochs: int,
    seed: int = 0,
    n_classes: int | None = None,
    record_to: str | os.PathLike[str] | None = None,
) -> DataMap:
    """Trains as :func:`train_epochs` and returns the data map of the run.

    RECORDING happens here, and only here. With ``record_to``, every epoch's logits are written
    with :class:`fastcarto.Recorder` (Arrow IPC stream segments in that directory) and the map
    is computed by reading that directory back with :func:`fastcarto.compute`, as a user would
    after training; without, an :class:`fastcarto.Accumulator` is updated in memory.
    """
    from ._accumulator import Accumulator
    from ._compute import compute
    from ._recorder import Recorder

    n_out = n_classes if n_classes is not None else int(labels.max()) + 1
    if record_to is None:
        acc = Accumulator(n_examples=labels.size, n_classes=n_out, kind="logits")
        for epoch, logits in train_epochs(x, labels, epochs=epochs, seed=seed, n_classes=n_out):
            acc.update(logits, labels, epoch=epoch)
        return acc.finalize()
    ids = np.arange(labels.size)
    with Recorder(
        record_to, kind="logits", n_classes=n_out, n_examples=labels.size, mode="overwrite"
    ) as rec:
        for epoch, logits in train_epochs(x, labels, epochs=epochs, seed=seed, n_classes=n_out):
            rec.record(logits, labels, epoch=epoch, ids=ids)
    return compute(record_to, kind="logits", progress=False)


@dataclass
class DemoResult:
    """What :func:`run_demo` computed and wrote."""

    datamap: DataMap
    issues: pd.DataFrame
    flipped: npt.NDArray[np.bool_]
    precision: float
    recall: float
    files: list[Path]


def precision_recall(
    flagged: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """Precision and recall of ``flagged`` against the known ``truth``."""
    hits = int(np.sum(flagged & truth))
    precision = hits / int(flagged.sum()) if flagged.any() else float("nan")
    recall = hits / int(truth.sum()) if truth.any() else float("nan")
    return precision, recall


def run_demo(
    out: str | os.PathLike[str],
    *,
    noise: float = 0.2,
    epochs: int = 30,
    seed: int = 0,
    stream: IO[str] | None = sys.stdout,
) -> DemoResult:
    """Runs the demo and writes its files into ``out`` (created if missing)."""

    def say(text: str) -> None:
        if stream is not None:
            print(text, file=stream, flush=True)

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    x, noisy, true = noisy_digits(noise, seed)
    flipped = noisy != true
    say(
        f"digits: {noisy.size:,} 8x8 images of handwritten digits (scikit-learn), "
        f"{int(flipped.sum()):,} labels ({100 * flipped.mean():.0f}%) flipped to another digit"
    )
    say(
        f"training an MLP ({HIDDEN_UNITS} hidden units) for {epochs} epochs, one partial_fit "
        "each, recording its logits on every training example after each epoch ..."
    )
    start = time.perf_counter()
    dynamics = out_dir / "dynamics"
    dm = train_and_map(x, noisy, epochs=epochs, seed=seed, record_to=dynamics)
    say(f"  done in {time.perf_counter() - start:.1f} s -> {dynamics}/")
    say("")
    say(dm.report())

    issues = dm.label_issues()
    flagged = issues["is_label_issue"].to_numpy(dtype=bool)
    precision, recall = precision_recall(flagged, flipped)
    say("")
    say(
        f"flipped labels found: {int((flagged & flipped).sum()):,} of {int(flipped.sum()):,} "
        f"(recall {100 * recall:.1f}%); {int(flagged.sum()):,} flagged, "
        f"{int((flagged & flipped).sum()):,} of them really flipped "
        f"(precision {100 * precision:.1f}%)"
    )
    codes = np.asarray(dm.regions().cat.codes)
    hard = codes == 2
    if hard.any():
        say(
            f"hard-to-learn region: {int(hard.sum()):,} examples, "
            f"{100 * float(flipped[hard].mean()):.0f}% of them flipped "
            f"(vs {100 * float(flipped.mean()):.0f}% overall)"
        )

    files = _write_outputs(dm, issues, true, flipped, dynamics, out_dir)
    say("")
    say(f"wrote {', '.join(str(f) for f in files)}")
    return DemoResult(dm, issues, flipped, precision, recall, files)


def _write_outputs(
    dm: DataMap,
    issues: pd.DataFrame,
    true: npt.NDArray[np.int64],
    flipped: npt.NDArray[np.bool_],
    dynamics: Path,
    out_dir: Path,
) -> list[Path]:
    import pyarrow.parquet as pq

    files = []
    path = out_dir / "datamap.png"
    flagged = issues["is_label_issue"].to_numpy(dtype=bool)
    fig = dm.plot(
        title=f"Data map of an MLP on digits with {100 * flipped.mean():.0f}% flipped labels"
    )
    mark_label_issues(fig, dm, flagged, flipped)
    fig.savefig(path, dpi=150)
    files.append(path)

    path = out_dir / "metrics.parquet"
    pq.write_table(dm.to_arrow(), path)
    files.append(path)

    path = out_dir / "label_issues.csv"
    table = issues.assign(true_label=true, flipped=flipped)
    table.to_csv(path, index=False)
    files.append(path)

    path = out_dir / "report.txt"
    path.write_text(dm.report() + "\n", encoding="utf-8")
    files.append(path)

    # p(gold) of a few flagged and a few unflagged examples, read back from the recording.
    ids = [*np.flatnonzero(flagged & flipped)[:3], *np.flatnonzero(~flagged)[:2]]
    path = out_dir / "trajectories.png"
    dm.plot_trajectories(
        [int(i) for i in ids],
        dynamics,
        title="p(gold) per epoch: three flagged (flipped) and two unflagged examples",
        save=path,
    )
    files.append(path)
    files.append(dynamics)
    return files


#: How :func:`mark_label_issues` draws each group: (label, marker, colour).
_ISSUE_MARKERS = (
    ("flagged, really flipped", "o", "#D55E00"),
    ("flagged, label was right", "X", "#56B4E9"),
    ("flipped, not flagged", "P", "#000000"),
)


def mark_label_issues(
    fig: Figure, dm: DataMap, flagged: npt.NDArray[np.bool_], flipped: npt.NDArray[np.bool_]
) -> Axes:
    """Marks, on the data map ``fig`` (from :meth:`DataMap.plot`, one row per example in id
    order), the flagged examples that were really flipped, those whose label was right, and the
    flipped ones the rule missed, with a legend giving each count. Returns the map's axes."""
    ax = next(a for a in fig.axes if a.get_xlabel().startswith("variability"))
    var, conf = dm["variability"], dm["confidence"]
    groups = (flagged & flipped, flagged & ~flipped, ~flagged & flipped)
    for mask, (label, marker, colour) in zip(groups, _ISSUE_MARKERS, strict=True):
        hollow = marker == "o"
        ax.scatter(
            var[mask], conf[mask], marker=marker, s=26 if hollow else 22,
            linewidths=0.8 if hollow else 0.4, facecolors="none" if hollow else colour,
            edgecolors=colour if hollow else "white",
            label=f"{label} ({int(mask.sum()):,})", zorder=4,
        )  # fmt: skip
    ax.legend(
        loc="best", fontsize=7.5, framealpha=0.85, title="label issues",
        title_fontsize=7.5,
    )  # fmt: skip
    return ax
